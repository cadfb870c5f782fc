"""The Responses API, on the async response engine: background responses that any
replica can stream, resume and cancel.

- ``POST /v1/responses``: ``background: true`` queues it for an executor (in this
  process or another, on the same store); without it the server generates it inline
  and answers when it is done. ``stream: true`` answers with its events as they come.
- ``GET /v1/responses/{id}``: the response; with ``stream=true`` its events from the
  first, or after event ``starting_after``: a stream resumed on any replica, every
  event once and in order.
- ``POST /v1/responses/{id}/cancel``: cancels a background response at once; one that
  has ended comes back unchanged; a foreground one is a 400.
- ``DELETE /v1/responses/{id}``: deletes it and its events.

Streams are Server-Sent Events (``event: <type>``, ``data: {"type", "sequence_number",
...}``) from the engine's ``follow``; they end at a terminal status, and a client that
hangs up ends its follower.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from http_common import STREAM_POLL, error_body
from scripted_executor import read_script
from starlette.exceptions import HTTPException

from runstate import Capabilities, Response, ValidationError

if TYPE_CHECKING:
    from serve import Engines


#: What the demo model can honour: function tools (it calls one when the tool choice
#: asks), and none of the gated parameters or extra endpoints.
DEMO_CAPABILITIES = Capabilities()


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, or the public error for a body that is not one."""
    try:
        body = await request.json()
    except ValueError:
        raise ValidationError(
            "We could not parse the JSON body of your request.", param=None
        ) from None
    if not isinstance(body, dict):
        raise ValidationError(
            f"The request body must be a JSON object, got {type(body).__name__}.", param=None
        )
    return body


def add_responses_routes(app: FastAPI, engines: Engines) -> None:
    def sse(
        response_id: str, after: int | None, then: Callable[[], Awaitable[None]] | None = None
    ) -> StreamingResponse:
        # Bad input is a 400 now. The fallback read (for a missed notification) is slow:
        # the sweeper times responses out, and its writes wake the streams.
        events = engines.responses.follow(response_id, after=after, poll=STREAM_POLL)

        async def frames() -> AsyncIterator[str]:
            try:
                async for event in events:
                    yield event.to_sse()
            finally:  # the stream ended, or its client hung up: ``then`` runs either way
                if then is not None:
                    keep(asyncio.ensure_future(then()))

        return StreamingResponse(frames(), media_type="text/event-stream")

    def keep(task: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """A task the server awaits at shutdown."""
        engines.inline.add(task)
        task.add_done_callback(engines.inline.discard)
        return task

    @app.post("/v1/responses", response_model=None)
    async def create_response(request: Request) -> JSONResponse | StreamingResponse:
        body = await json_body(request)
        metadata = body.get("metadata")
        if isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values()):
            read_script(metadata)  # the executor's script, checked before anything is stored
        response = await engines.responses.create(
            **{"background": False, **body},
            idempotency_key=request.headers.get("idempotency-key"),
        )
        streaming = body.get("stream") is True  # a boolean or null: create checked it
        if not response.background:  # generated here, now: the caller waits (or streams)
            generating = keep(asyncio.ensure_future(engines.executor.play_response(response, None)))

            async def forget() -> None:
                """A ``store: false`` response is not kept once it has been answered."""
                await generating
                await engines.responses.delete(response.id)

            if not streaming:
                await generating
                response = await engines.responses.get(response.id)
                if not response.store:
                    await forget()
                return JSONResponse(response.to_dict())
            return sse(response.id, None, None if response.store else forget)
        if streaming:
            return sse(response.id, None)
        return JSONResponse(response.to_dict())

    @app.post("/v1/responses/input_tokens")
    async def input_tokens(request: Request) -> JSONResponse:
        return not_served("input_tokens", "/v1/responses/input_tokens")

    @app.post("/v1/responses/compact")
    async def compact(request: Request) -> JSONResponse:
        return not_served("compact", "/v1/responses/compact")

    def not_served(endpoint: str, path: str) -> JSONResponse:
        if engines.responses.capabilities.serves(endpoint):  # pragma: no cover - demo lacks it
            raise HTTPException(501, f"{path} is declared but not wired in this example.")
        return error_body(
            400, f"{path} is not supported by this deployment's model.", code="unsupported"
        )

    @app.get("/v1/responses/{response_id}", response_model=None)
    async def get_response(
        response_id: str,
        stream: Annotated[str | None, Query()] = None,
        starting_after: Annotated[str | None, Query()] = None,
        include: Annotated[list[str] | None, Query(alias="include[]")] = None,
    ) -> JSONResponse | StreamingResponse:
        streaming = query_bool(stream, "stream")
        after = None if starting_after is None else query_int(starting_after, "starting_after")
        found: Response = await engines.responses.get(response_id)
        if streaming:
            try:
                return sse(response_id, after)
            except ValidationError as exc:  # the engine names it 'after'
                raise ValidationError(
                    exc.message.replace("'after'", "'starting_after'"), param="starting_after"
                ) from None
        if after is not None:
            raise ValidationError(
                "'starting_after' can only be used with 'stream=true'.", param="starting_after"
            )
        return JSONResponse(found.to_dict())

    @app.get("/v1/responses/{response_id}/input_items")
    async def list_input_items(
        response_id: str,
        limit: Annotated[str, Query()] = "20",
        order: Annotated[str, Query()] = "desc",
        after: Annotated[str | None, Query()] = None,
        include: Annotated[list[str] | None, Query(alias="include[]")] = None,
    ) -> JSONResponse:
        page = await engines.responses.input_items(
            response_id,
            limit=query_int(limit, "limit"),
            order=order,  # type: ignore[arg-type]  # checked by the engine
            after=after,
            include=include,
        )
        return JSONResponse(page.to_dict())

    @app.post("/v1/responses/{response_id}/cancel")
    async def cancel_response(response_id: str) -> JSONResponse:
        return JSONResponse((await engines.responses.cancel(response_id)).to_dict())

    @app.delete("/v1/responses/{response_id}")
    async def delete_response(response_id: str) -> JSONResponse:
        if not await engines.responses.delete(response_id):
            raise HTTPException(404, f"No response found with id '{response_id}'.")
        return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})


def query_bool(value: str | None, name: str) -> bool:
    """A boolean query parameter: ``true`` or ``false``, or a 400 naming it."""
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise ValidationError(
        f"Invalid value for '{name}': {value!r}. Supported values are 'true' or 'false'.",
        param=name,
    )


def query_int(value: str, name: str) -> int:
    """A whole-number query parameter, or a 400 naming it."""
    if not value.lstrip("-").isdigit():
        raise ValidationError(
            f"Invalid type for '{name}': expected an integer, but got {value!r} instead.",
            param=name,
        )
    return int(value)
