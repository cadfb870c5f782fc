"""The Responses API routes: background responses that any replica can stream, resume
and cancel, and foreground ones that the handler generates while the client waits.

- ``POST /v1/responses``: ``background: true`` queues it for a Worker (in this process
  or another, on the same store); without it the handler generates it inline, and the
  client gets it when it is done, or (``stream: true``) its events as they come.
- ``GET /v1/responses/{id}``: the response; with ``stream=true`` its events from the
  first, or after event ``starting_after``: a stream resumed on any replica, every
  event once and in order.
- ``GET /v1/responses/{id}/input_items``: its input items, a page at a time.
- ``POST /v1/responses/{id}/cancel``: cancels a background response at once; one that
  has ended comes back unchanged; a foreground one is a 400.
- ``DELETE /v1/responses/{id}``: deletes it and its events.
- ``POST /v1/responses/input_tokens`` and ``/compact``: a 400 (``unsupported``) unless
  the deployment's capabilities declare them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from .._errors import ValidationError
from ._http import STREAM_POLL, error_body, json_body, query_bool, query_int, sse

if TYPE_CHECKING:
    from ._app import Service


def add_responses_routes(router: APIRouter, service: Service) -> None:
    def stream(
        response_id: str, after: int | None, then: Callable[[], Awaitable[None]] | None = None
    ) -> StreamingResponse:
        # Bad input is a 400 now. The fallback read (for a missed notification) is slow:
        # the sweeps time responses out, and their writes wake the streams.
        events = service.responses_engine().follow(response_id, after=after, poll=STREAM_POLL)

        async def frames() -> AsyncIterator[str]:
            try:
                async for event in events:
                    yield event.to_sse()
            finally:  # the stream ended, or its client hung up: ``then`` runs either way
                if then is not None:
                    service.keep(asyncio.ensure_future(then()))

        return sse(frames(), service.keepalive)

    @router.post("/v1/responses", response_model=None)
    async def create_response(request: Request) -> JSONResponse | StreamingResponse:
        engine = service.responses_engine()
        body = await json_body(request)
        service.check(body)  # the handler's own check, before anything is stored
        background = body.get("background") is True
        if not background:
            service.require_handler()
        response = await engine.create(
            **{"background": False, **body},
            idempotency_key=request.headers.get("idempotency-key"),
        )
        streaming = body.get("stream") is True  # a boolean or null: create checked it
        if not response.background:  # generated here, now: the caller waits (or streams)
            generating = service.keep(asyncio.ensure_future(service.perform(engine, response)))

            async def forget() -> None:
                """A ``store: false`` response is not kept once it has been answered."""
                await generating
                await engine.delete(response.id)

            if not streaming:
                await generating
                response = await engine.get(response.id)
                if not response.store:
                    await forget()
                return JSONResponse(response.to_dict())
            return stream(response.id, None, None if response.store else forget)
        if streaming:
            return stream(response.id, None)
        return JSONResponse(response.to_dict())

    @router.post("/v1/responses/input_tokens")
    async def input_tokens() -> JSONResponse:
        return not_served("input_tokens", "/v1/responses/input_tokens")

    @router.post("/v1/responses/compact")
    async def compact() -> JSONResponse:
        return not_served("compact", "/v1/responses/compact")

    def not_served(endpoint: str, path: str) -> JSONResponse:
        if service.responses_engine().capabilities.serves(endpoint):
            raise HTTPException(501, f"{path} is declared but not served by runstate.server.")
        return error_body(
            400, f"{path} is not supported by this deployment's model.", code="unsupported"
        )

    @router.get("/v1/responses/{response_id}", response_model=None)
    async def get_response(
        response_id: str,
        stream_: Annotated[str | None, Query(alias="stream")] = None,
        starting_after: Annotated[str | None, Query()] = None,
        include: Annotated[list[str] | None, Query(alias="include[]")] = None,
    ) -> JSONResponse | StreamingResponse:
        streaming = query_bool(stream_, "stream")
        after = None if starting_after is None else query_int(starting_after, "starting_after")
        found = await service.responses_engine().get(response_id)
        if streaming:
            try:
                return stream(response_id, after)
            except ValidationError as exc:  # the engine names it 'after'
                raise ValidationError(
                    exc.message.replace("'after'", "'starting_after'"), param="starting_after"
                ) from None
        if after is not None:
            raise ValidationError(
                "'starting_after' can only be used with 'stream=true'.", param="starting_after"
            )
        return JSONResponse(found.to_dict())

    @router.get("/v1/responses/{response_id}/input_items")
    async def list_input_items(
        response_id: str,
        limit: Annotated[str, Query()] = "20",
        order: Annotated[str, Query()] = "desc",
        after: Annotated[str | None, Query()] = None,
        include: Annotated[list[str] | None, Query(alias="include[]")] = None,
    ) -> JSONResponse:
        page = await service.responses_engine().input_items(
            response_id,
            limit=query_int(limit, "limit"),
            order=order,  # type: ignore[arg-type]  # checked by the engine
            after=after,
            include=include,
        )
        return JSONResponse(page.to_dict())

    @router.post("/v1/responses/{response_id}/cancel")
    async def cancel_response(response_id: str) -> JSONResponse:
        return JSONResponse((await service.responses_engine().cancel(response_id)).to_dict())

    @router.delete("/v1/responses/{response_id}")
    async def delete_response(response_id: str) -> JSONResponse:
        if not await service.responses_engine().delete(response_id):
            raise HTTPException(404, f"No response found with id '{response_id}'.")
        return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})
