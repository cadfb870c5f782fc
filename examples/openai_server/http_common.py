"""What both APIs of the example server share: request bodies that forbid unknown
fields, the public error body for every refusal (a ``RunStateError``, a malformed
request, an HTTP error), and a limit on request bodies (413)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runstate import ObjectNotFoundError, RunStateError

#: Seconds between a stream's fallback reads when no change wakes it (the sweeper's
#: time-outs are writes, and wake the streams they end; a lost LISTEN connection wakes
#: every stream when it is back). Each idle stream costs one read per period: 1,000 of
#: them read 33 times a second at 30 s (100 at 10 s, a few percent of a core).
STREAM_POLL = 30.0


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def error_body(
    status: int,
    message: str,
    param: str | None = None,
    headers: dict[str, str] | None = None,
    code: str | None = None,
) -> JSONResponse:
    body = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
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


#: What a path parameter names, for the 404 an id that cannot exist gets.
_NOUNS = {"response_id": "response", "run_id": "run", "thread_id": "thread"}


def impossible_path_id(request: Request) -> ObjectNotFoundError | None:
    """The 404 for an id in the path that no object can have (a NUL, a lone surrogate:
    runstate never makes one), which the engine refuses as malformed (a 400): such an id
    is answered as any unknown id is. Looked for only when a request is refused."""
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


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal as the public error body."""

    @app.exception_handler(RunStateError)
    def run_state_error(request: Request, exc: RunStateError) -> JSONResponse:
        if exc.http_status == 400:
            exc = impossible_path_id(request) or exc
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
