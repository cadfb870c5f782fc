"""The Assistants runs API routes: threads and runs, shaped as the public API, on the
async run engine.

Request bodies are pydantic models that forbid unknown fields; every refusal is the
public error body. Streams (``stream: true``) are Server-Sent Events from the engine's
``follow``, woken by each change to the run, whichever process made it, so they show
transitions made by Workers elsewhere as well as here; a client that hangs up ends its
follower.

A run is created in the shape the request's ``OpenAI-Beta`` header names, as the public
API did: ``assistants=v2`` (what the official client sends on every call) makes the
final shape, ``assistants=v1`` or no header the first version's. Each run is then served
in the shape it was created with. Threads are kept in the process (there is no messages
API here): a thread is known to the replica that made it, or by its runs.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from .._errors import RunNotFoundError, ValidationError
from .._events import DONE_SSE
from .._model import Run
from .._requests import check_shape
from .._validate import validate_metadata
from ._http import STREAM_POLL, sse

if TYPE_CHECKING:
    from ._app import Service


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ThreadCreate(Body):
    messages: list[Any] | None = None
    metadata: Any = None
    tool_resources: Any = None


class V2Settings(Body):
    """The create parameters only a v2 run takes; the engine checks their values."""

    temperature: Any = None
    top_p: Any = None
    max_prompt_tokens: Any = None
    max_completion_tokens: Any = None
    truncation_strategy: Any = None
    tool_choice: Any = None
    parallel_tool_calls: Any = None
    response_format: Any = None

    def settings(self) -> dict[str, Any]:
        """The v2 settings the request gave (none for a v1 request that gave none)."""
        given = {name: getattr(self, name) for name in V2Settings.model_fields}
        return {name: value for name, value in given.items() if value is not None}


class RunFields(V2Settings):
    """What both ways of creating a run take (the v2 settings only with a v2 header)."""

    assistant_id: str
    model: str | None = None
    instructions: str | None = None
    tools: Any = None
    metadata: Any = None
    stream: bool | None = None


def version_of(request: Request) -> str:
    """The run shape the ``OpenAI-Beta`` header asks for: v1 without one."""
    header = request.headers.get("openai-beta")
    if header is None:
        return "v1"
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "assistants":
            if value in ("v1", "v2"):
                return value
            raise HTTPException(
                400, f"Invalid 'OpenAI-Beta' header: assistants={value} is not supported."
            )
    return "v1"


class RunCreate(RunFields):
    additional_instructions: str | None = None
    additional_messages: Any = None

    def messages(self) -> list[Any]:
        """The messages to add to the thread first, each checked against the ``openai``
        package's ``AdditionalMessage``."""
        return additional(self.additional_messages)


class ThreadAndRunCreate(RunFields):
    thread: ThreadCreate | None = None
    tool_resources: Any = None

    def resources(self) -> dict[str, Any] | None:
        """The assistant's tool resources for this run, checked as the API types them."""
        if self.tool_resources is None:
            return None
        checked: dict[str, Any] = check_shape(
            self.tool_resources, "thread_and_run.tool_resources", "tool_resources"
        )
        return checked


def additional(messages: Any) -> list[Any]:
    if messages is None:
        return []
    if not isinstance(messages, list):
        raise ValidationError(
            "Invalid type for 'additional_messages': expected an array.",
            param="additional_messages",
        )
    return [
        check_shape(message, "run.additional_message", f"additional_messages[{i}]")
        for i, message in enumerate(messages)
    ]


class RunUpdate(Body):
    metadata: Any = None


class ToolOutputs(Body):
    tool_outputs: Any
    stream: bool | None = None


def add_runs_routes(router: APIRouter, service: Service) -> None:
    """Threads and runs, served from the service's run engine. Clients are told to poll
    every ``service.poll_after_ms``; streams follow the run's events, woken by each
    change."""
    threads: dict[str, dict[str, Any]] = {}
    #: What a thread was given beside its object (no messages API here): messages added
    #: with a run (``additional_messages``), the tool resources of a thread-and-run.
    given: dict[str, dict[str, Any]] = {}

    def remember(thread_id: str, key: str, value: Any) -> None:
        kept = given.setdefault(thread_id, {"messages": [], "tool_resources": None})
        if key == "messages":
            kept["messages"].extend(value)
        else:
            kept[key] = value

    async def known_thread(thread_id: str) -> None:
        if thread_id in threads or (await service.runs_engine().list(thread_id, limit=1)).data:
            return
        raise HTTPException(404, f"No thread found with id '{thread_id}'.")

    async def run_of(thread_id: str, run_id: str) -> Run:
        run = await service.runs_engine().get(run_id)
        if run.thread_id != thread_id:
            raise RunNotFoundError(run_id)
        return run

    def respond(run: Run) -> JSONResponse:
        headers = {"openai-poll-after-ms": str(service.poll_after_ms)}
        return JSONResponse(run.to_dict(), headers=headers)

    def stream(run_id: str, after: int | None) -> StreamingResponse:
        events = service.runs_engine().follow(run_id, after=after, poll=STREAM_POLL)

        async def frames() -> AsyncIterator[str]:
            # Ends at a terminal status or requires_action; a client that hangs up
            # closes this generator, and with it the follower.
            async for event in events:
                yield event.to_sse()
            yield DONE_SSE

        return sse(frames(), service.keepalive)

    def new_thread(
        body: ThreadCreate | None, param: str = "metadata", key: str | None = None
    ) -> dict[str, Any]:
        # With an idempotency key, the thread's id comes from it: a retried request
        # names the same thread, so its run is found, not made again.
        if key is None:
            suffix = secrets.token_hex(12)
        else:
            suffix = hashlib.sha256(key.encode()).hexdigest()[:24]
        return {
            "id": "thread_" + suffix,
            "object": "thread",
            "created_at": service.runs_engine().lifecycle.now(),
            "metadata": validate_metadata(body.metadata if body else None, param),
            "tool_resources": None,
        }

    def keep(thread: dict[str, Any]) -> dict[str, Any]:
        threads[thread["id"]] = thread  # the event loop's only: no lock needed
        return thread

    async def start_run(
        request: Request, thread_id: str, body: RunFields, instructions: str, version: str
    ) -> JSONResponse | StreamingResponse:
        validate_metadata(body.metadata)
        service.check(body.model_dump(exclude_none=True))  # the handler's own check, now
        run = await service.runs_engine().create(
            thread_id=thread_id,
            assistant_id=body.assistant_id,
            model=body.model or "gpt-4o",
            instructions=instructions,
            tools=body.tools,
            metadata=body.metadata,
            version=version,
            idempotency_key=request.headers.get("idempotency-key"),
            **body.settings(),
        )
        return stream(run.id, None) if body.stream else respond(run)

    @router.post("/v1/threads")
    async def create_thread(body: ThreadCreate | None = None) -> dict[str, Any]:
        return keep(new_thread(body))

    @router.post("/v1/threads/runs", response_model=None)
    async def create_thread_and_run(
        request: Request, body: ThreadAndRunCreate
    ) -> JSONResponse | StreamingResponse:
        key = request.headers.get("idempotency-key")
        thread = new_thread(body.thread, "thread.metadata", key)
        instructions = body.instructions or ""
        resources = body.resources()  # checked before anything is made
        response = await start_run(request, thread["id"], body, instructions, version_of(request))
        keep(thread)  # only once its run exists: a refused request leaves no thread
        remember(thread["id"], "tool_resources", resources)
        return response

    @router.post("/v1/threads/{thread_id}/runs", response_model=None)
    async def create_run(
        request: Request, thread_id: str, body: RunCreate
    ) -> JSONResponse | StreamingResponse:
        version = version_of(request)
        await known_thread(thread_id)
        instructions = body.instructions or ""
        if body.additional_instructions:
            instructions = f"{instructions}\n{body.additional_instructions}".strip()
        messages = body.messages()  # checked before the run is made
        response = await start_run(request, thread_id, body, instructions, version)
        remember(thread_id, "messages", messages)
        return response

    @router.get("/v1/threads/{thread_id}/runs")
    async def list_objects(
        thread_id: str,
        limit: int = 20,
        order: Literal["asc", "desc"] = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> dict[str, Any]:
        await known_thread(thread_id)
        page = await service.runs_engine().list(
            thread_id, limit=limit, order=order, after=after, before=before
        )
        return page.to_dict()

    @router.get("/v1/threads/{thread_id}/runs/{run_id}")
    async def get_run(thread_id: str, run_id: str) -> JSONResponse:
        return respond(await run_of(thread_id, run_id))

    @router.post("/v1/threads/{thread_id}/runs/{run_id}")
    async def update_run(thread_id: str, run_id: str, body: RunUpdate) -> JSONResponse:
        run = await run_of(thread_id, run_id)
        if body.metadata is None:  # nothing to change
            return respond(run)
        return respond(await service.runs_engine().update_metadata(run_id, body.metadata))

    @router.post("/v1/threads/{thread_id}/runs/{run_id}/cancel")
    async def cancel_run(thread_id: str, run_id: str) -> JSONResponse:
        await run_of(thread_id, run_id)
        return respond(await service.runs_engine().cancel(run_id))

    @router.post("/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", response_model=None)
    async def submit_tool_outputs(
        thread_id: str, run_id: str, body: ToolOutputs
    ) -> JSONResponse | StreamingResponse:
        await run_of(thread_id, run_id)
        history = await service.runs_engine().history(run_id)
        run = await service.runs_engine().submit_tool_outputs(run_id, body.tool_outputs)
        if body.stream:
            return stream(run_id, history[-1].sequence_number)
        return respond(run)
