"""The HTTP face: FastAPI routes for threads and runs, shaped as the public Assistants API.

Every refusal is a ``RunStateError`` turned into the public error body by one handler;
request bodies are pydantic models that forbid unknown fields, their errors turned into
400s with the public API's wording; a body over ``max_body_bytes`` is a 413 with the same
body, and every other HTTP error (404, 405 with its ``Allow`` header) has it too.
Streams (``stream: true``) are Server-Sent Events read from the engine's event log, so
they show transitions made by executors in other processes as well as in this one.

A run is created in the shape the request's ``OpenAI-Beta`` header names, as the public
API did: ``assistants=v2`` (what the official client sends on every call) makes the
final shape, ``assistants=v1`` or no header the seed's. Each run is then served in the
shape it was created with.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from scripted_executor import read_script
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runstate import (
    DONE_SSE,
    Run,
    RunEngine,
    RunNotFoundError,
    RunStateError,
    validate_metadata,
)

# Streams end when the run stops for the caller: a terminal status or requires_action.
STREAM_ENDS = {"requires_action", "completed", "failed", "cancelled", "expired"}


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


class ThreadAndRunCreate(RunFields):
    thread: ThreadCreate | None = None


class RunUpdate(Body):
    metadata: Any = None


class ToolOutputs(Body):
    tool_outputs: Any
    stream: bool | None = None


def error_body(
    status: int,
    message: str,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


class BodyLimit:
    """Refuse a request body over ``max_bytes`` with a 413: at once when its
    Content-Length says so, or as soon as a body sent in chunks grows past it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def message(self) -> str:
        return f"Request body too large: the limit is {self.max_bytes} bytes."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await error_body(413, self.message())(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # the app's error handler answers this one
                raise HTTPException(413, self.message())
            return message

        await self.app(scope, counted, send)


def create_app(
    engine: RunEngine,
    *,
    poll_after_ms: int = 100,
    stream_poll: float = 0.02,
    max_body_bytes: int = 1 << 20,
) -> FastAPI:
    """The app, serving runs from ``engine``. Clients are told to poll every
    ``poll_after_ms``; streams look for new events every ``stream_poll`` seconds;
    request bodies over ``max_body_bytes`` (1 MiB) are refused."""
    app = FastAPI(title="runstate: OpenAI-compatible runs")
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    threads: dict[str, dict[str, Any]] = {}
    threads_lock = threading.Lock()

    @app.exception_handler(RunStateError)
    def run_state_error(request: Request, exc: RunStateError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(
            str(part) for part in first["loc"] if part not in ("body", "query", "path")
        )
        if first["type"] == "extra_forbidden":
            return error_body(400, f"Unrecognized request argument supplied: {where}", where)
        if first["type"] == "missing":
            return error_body(400, f"Missing required parameter: '{where}'.", where)
        if first["type"] == "json_invalid":
            return error_body(400, "We could not parse the JSON body of your request.")
        return error_body(400, f"Invalid value for '{where}': {first['msg']}.", where)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_body(exc.status_code, str(exc.detail), headers=exc.headers)

    def known_thread(thread_id: str) -> None:
        if thread_id in threads or engine.list(thread_id, limit=1).data:
            return
        raise HTTPException(404, f"No thread found with id '{thread_id}'.")

    def run_of(thread_id: str, run_id: str) -> Run:
        run = engine.get(run_id)
        if run.thread_id != thread_id:
            raise RunNotFoundError(run_id)
        return run

    def respond(run: Run) -> JSONResponse:
        return JSONResponse(run.to_dict(), headers={"openai-poll-after-ms": str(poll_after_ms)})

    def stream(run_id: str, after_seq: int) -> StreamingResponse:
        def frames() -> Iterator[str]:
            seq = after_seq
            while True:
                events = engine.events(after_seq=seq, run_id=run_id)
                for event in events:
                    seq = event.seq or seq
                    yield event.to_sse()
                    if event.to_status in STREAM_ENDS:
                        yield DONE_SSE
                        return
                if not events:
                    engine.get(run_id)  # expires the run if it is due, which is an event
                    time.sleep(stream_poll)

        return StreamingResponse(frames(), media_type="text/event-stream")

    def new_thread(body: ThreadCreate | None, param: str = "metadata") -> dict[str, Any]:
        return {
            "id": "thread_" + secrets.token_hex(12),
            "object": "thread",
            "created_at": engine.lifecycle.now(),
            "metadata": validate_metadata(body.metadata if body else None, param),
            "tool_resources": None,
        }

    def keep(thread: dict[str, Any]) -> dict[str, Any]:
        with threads_lock:
            threads[thread["id"]] = thread
        return thread

    def start_run(
        thread_id: str, body: RunFields, instructions: str, version: str
    ) -> JSONResponse | StreamingResponse:
        read_script(validate_metadata(body.metadata))  # the executor's script, checked now
        run = engine.create(
            thread_id=thread_id,
            assistant_id=body.assistant_id,
            model=body.model or "gpt-4o",
            instructions=instructions,
            tools=body.tools,
            metadata=body.metadata,
            version=version,
            **body.settings(),
        )
        return stream(run.id, 0) if body.stream else respond(run)

    @app.post("/v1/threads")
    def create_thread(body: ThreadCreate | None = None) -> dict[str, Any]:
        return keep(new_thread(body))

    @app.post("/v1/threads/runs", response_model=None)
    def create_thread_and_run(
        request: Request, body: ThreadAndRunCreate
    ) -> JSONResponse | StreamingResponse:
        thread = new_thread(body.thread, "thread.metadata")
        response = start_run(thread["id"], body, body.instructions or "", version_of(request))
        keep(thread)  # only once its run exists: a refused request leaves no thread
        return response

    @app.post("/v1/threads/{thread_id}/runs", response_model=None)
    def create_run(
        request: Request, thread_id: str, body: RunCreate
    ) -> JSONResponse | StreamingResponse:
        version = version_of(request)
        known_thread(thread_id)
        instructions = body.instructions or ""
        if body.additional_instructions:
            instructions = f"{instructions}\n{body.additional_instructions}".strip()
        return start_run(thread_id, body, instructions, version)

    @app.get("/v1/threads/{thread_id}/runs")
    def list_runs(
        thread_id: str,
        limit: int = 20,
        order: Literal["asc", "desc"] = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> dict[str, Any]:
        known_thread(thread_id)
        return engine.list(
            thread_id, limit=limit, order=order, after=after, before=before
        ).to_dict()

    @app.get("/v1/threads/{thread_id}/runs/{run_id}")
    def get_run(thread_id: str, run_id: str) -> JSONResponse:
        return respond(run_of(thread_id, run_id))

    @app.post("/v1/threads/{thread_id}/runs/{run_id}")
    def update_run(thread_id: str, run_id: str, body: RunUpdate) -> JSONResponse:
        run = run_of(thread_id, run_id)
        if body.metadata is None:  # nothing to change
            return respond(run)
        return respond(engine.update_metadata(run_id, body.metadata))

    @app.post("/v1/threads/{thread_id}/runs/{run_id}/cancel")
    def cancel_run(thread_id: str, run_id: str) -> JSONResponse:
        run_of(thread_id, run_id)
        return respond(engine.cancel(run_id))

    @app.post("/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", response_model=None)
    def submit_tool_outputs(
        thread_id: str, run_id: str, body: ToolOutputs
    ) -> JSONResponse | StreamingResponse:
        run_of(thread_id, run_id)
        history = engine.history(run_id)
        run = engine.submit_tool_outputs(run_id, body.tool_outputs)
        return stream(run_id, history[-1].seq or 0) if body.stream else respond(run)

    return app
