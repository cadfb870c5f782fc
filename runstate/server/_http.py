"""What every route of the server shares: the public error body for every refusal, the
limit on request bodies, the auth hook, and Server-Sent Events with keep-alives.

They live on the routes themselves (a route class), not on an app: a router included
in someone else's FastAPI app answers exactly as ``create_app``'s app does, whatever
exception handlers and middleware the parent has.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Message, Receive

from .._errors import ObjectNotFoundError, RunStateError, ValidationError

#: Seconds between a stream's fallback reads when no change wakes it (the sweeps'
#: time-outs are writes, and wake the streams they end; a lost LISTEN connection wakes
#: every stream when it is back). Each idle stream costs one read per period.
STREAM_POLL = 30.0
#: Seconds an SSE stream may stay silent before it sends a keep-alive comment (proxies
#: close connections that say nothing for a minute or so).
KEEPALIVE = 15.0
KEEPALIVE_FRAME = ": keep-alive\n\n"

#: The auth hook: given the request, True to serve it (it may be a coroutine function).
Auth = Callable[[Request], "bool | Awaitable[bool]"]


def error_body(
    status: int,
    message: str,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
    code: str | None = None,
) -> JSONResponse:
    """The public error body: ``{"error": {message, type, param, code}}``."""
    body = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def bearer(api_key: str) -> Auth:
    """The auth hook that serves a request carrying ``Authorization: Bearer <api_key>``
    (what ``openai.OpenAI(api_key=...)`` sends), compared in constant time."""
    if not isinstance(api_key, str) or not api_key:
        raise ValidationError("Invalid 'api_key': expected a non-empty string.", param="api_key")
    expected = api_key.encode()

    def check(request: Request) -> bool:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)

    return check


def unauthorized(request: Request) -> JSONResponse:
    """The public 401: no key given, or one that is not accepted (shown masked)."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return error_body(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    shown = given[:3] + "*" * max(len(given) - 7, 3) + given[-4:] if len(given) > 8 else "***"
    return error_body(401, f"Incorrect API key provided: {shown}.", code="invalid_api_key")


#: What a path parameter names, for the 404 an id that cannot exist gets.
_NOUNS = {"response_id": "response", "run_id": "run", "thread_id": "thread"}


def _impossible_path_id(request: Request) -> ObjectNotFoundError | None:
    """The 404 for an id in the path that no object can have (a NUL, a lone surrogate:
    runstate never makes one), which the engine refuses as malformed (a 400): such an id
    is answered as any unknown id is."""
    for name, value in request.path_params.items():
        if name in _NOUNS and ("\x00" in value or _unencodable(value)):
            return ObjectNotFoundError(value, _NOUNS[name])
    return None


def _unencodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def refusal(request: Request, exc: Exception) -> JSONResponse:
    """The public error body for ``exc``: a ``RunStateError``, a request FastAPI could
    not read into a route's parameters, or an HTTP error."""
    if isinstance(exc, RunStateError):
        if exc.http_status == 400:
            exc = _impossible_path_id(request) or exc
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)
    if isinstance(exc, RequestValidationError):
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
    assert isinstance(exc, HTTPException)
    return error_body(exc.status_code, str(exc.detail), headers=exc.headers)


def _too_large(limit: int) -> HTTPException:
    """A body over the limit (an HTTPException: FastAPI lets those through as they are)."""
    return HTTPException(413, f"Request body too large: the limit is {limit} bytes.")


def route_class(max_body_bytes: int, auth: Auth | None) -> type[APIRoute]:
    """A route class whose routes check ``auth`` first, refuse a body over
    ``max_body_bytes`` (413: at once when its Content-Length says so, or as soon as a
    body sent in chunks grows past it), and answer every refusal with the public body."""

    class Route(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Any]:
            handle = super().get_route_handler()

            async def handler(request: Request) -> Response:
                if auth is not None and not await _accepted(auth, request):
                    return unauthorized(request)
                length = request.headers.get("content-length")
                if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
                    return refusal(request, _too_large(max_body_bytes))
                limited = Request(request.scope, _counted(request.receive, max_body_bytes))
                try:
                    response: Response = await handle(limited)
                except (RunStateError, RequestValidationError, HTTPException) as exc:
                    return refusal(request, exc)
                return response

            return handler

    return Route


async def _accepted(auth: Auth, request: Request) -> bool:
    verdict = auth(request)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return verdict is True


def _counted(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _too_large(limit)
        return message

    return counted


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


def sse(frames: AsyncIterator[str], keepalive: float) -> StreamingResponse:
    """A Server-Sent Events response of ``frames``, with a keep-alive comment after
    every ``keepalive`` seconds of silence. A client that hangs up closes ``frames``
    (and with it the follower it reads from)."""
    return StreamingResponse(_kept_alive(frames, keepalive), media_type="text/event-stream")


async def _kept_alive(frames: AsyncIterator[str], keepalive: float) -> AsyncIterator[str]:
    source = aiter(frames)
    try:
        while True:
            following = asyncio.ensure_future(anext(source))
            try:
                while True:
                    done, _ = await asyncio.wait({following}, timeout=keepalive)
                    if done:
                        break
                    yield KEEPALIVE_FRAME
                frame = following.result()
            except StopAsyncIteration:
                return
            finally:
                if not following.done():  # the client hung up while we waited
                    following.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await following
                elif not following.cancelled():  # it hung up as the stream ended: not an
                    following.exception()  # error, and now it is not left unretrieved
            yield frame
    finally:
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()


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
