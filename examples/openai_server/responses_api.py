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
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from http_common import STREAM_POLL, Body
from scripted_executor import read_script
from starlette.exceptions import HTTPException

from runstate import Response, validate_metadata

if TYPE_CHECKING:
    from serve import Engines


class ResponseCreate(Body):
    model: str
    input: Any
    instructions: str | None = None
    background: bool | None = None
    stream: bool | None = None
    metadata: Any = None
    tools: Any = None
    tool_choice: Any = "auto"
    parallel_tool_calls: Any = True
    temperature: Any = None
    top_p: Any = None
    max_output_tokens: Any = None
    previous_response_id: str | None = None
    store: bool | None = None  # accepted as the API does; runstate keeps every response


def add_responses_routes(app: FastAPI, engines: Engines) -> None:
    def sse(response_id: str, after: int | None) -> StreamingResponse:
        # Bad input is a 400 now. The fallback read (for a missed notification) is slow:
        # the sweeper times responses out, and its writes wake the streams.
        events = engines.responses.follow(response_id, after=after, poll=STREAM_POLL)

        async def frames() -> AsyncIterator[str]:
            async for event in events:
                yield event.to_sse()

        return StreamingResponse(frames(), media_type="text/event-stream")

    @app.post("/v1/responses", response_model=None)
    async def create_response(
        request: Request, body: ResponseCreate
    ) -> JSONResponse | StreamingResponse:
        read_script(validate_metadata(body.metadata))  # the executor's script, checked now
        background = bool(body.background)
        response = await engines.responses.create(
            model=body.model,
            input=body.input,
            instructions=body.instructions,
            background=background,
            metadata=body.metadata,
            tools=body.tools,
            tool_choice=body.tool_choice,
            parallel_tool_calls=body.parallel_tool_calls,
            temperature=body.temperature,
            top_p=body.top_p,
            max_output_tokens=body.max_output_tokens,
            previous_response_id=body.previous_response_id,
            idempotency_key=request.headers.get("idempotency-key"),
        )
        if not background:  # generated here, now: the caller waits for it (or streams it)
            generating = asyncio.ensure_future(engines.executor.play_response(response, None))
            engines.inline.add(generating)
            generating.add_done_callback(engines.inline.discard)
            if not body.stream:
                await generating
                response = await engines.responses.get(response.id)
        if body.stream:
            return sse(response.id, None)
        return JSONResponse(response.to_dict())

    @app.get("/v1/responses/{response_id}", response_model=None)
    async def get_response(
        response_id: str, stream: bool = False, starting_after: int | None = None
    ) -> JSONResponse | StreamingResponse:
        found: Response = await engines.responses.get(response_id)
        if stream:
            return sse(response_id, starting_after)
        if starting_after is not None:
            raise HTTPException(400, "'starting_after' is only for a stream (stream=true).")
        return JSONResponse(found.to_dict())

    @app.post("/v1/responses/{response_id}/cancel")
    async def cancel_response(response_id: str) -> JSONResponse:
        return JSONResponse((await engines.responses.cancel(response_id)).to_dict())

    @app.delete("/v1/responses/{response_id}")
    async def delete_response(response_id: str) -> JSONResponse:
        if not await engines.responses.delete(response_id):
            raise HTTPException(404, f"No response found with id '{response_id}'.")
        return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})
