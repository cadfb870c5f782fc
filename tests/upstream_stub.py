"""A stand-in for an OpenAI-compatible model server: it speaks the real wire protocol
(Server-Sent Events of chat completion chunks, or of Responses events) and plays a
script named by the request's ``model``, for the gateway's tests and bench.

A model name is ``script`` or ``script:key=value,key=value``:

- ``text``: ``words`` words (default 8), ``delay`` seconds apart (default 0), then the end
  (``stop``) and the usage;
- ``tools``: ``calls`` function calls (default 1), their arguments in three pieces each;
  ``nameless`` (chat): a tool call with no name; ``interleaved`` (chat): a piece of a call
  after the next call began;
- ``length``, ``filter``: some text, then the finish reason ``length`` or
  ``content_filter``;
- ``status``: answers HTTP ``code`` (with an OpenAI error body) the first ``times``
  requests of this model name, then plays ``text``; ``retry_after`` adds that header,
  ``detail`` answers ``{"detail": ...}`` as FastAPI does;
- ``break``: ``words`` words, then the connection is cut mid-stream;
- ``unfinished``: ``words`` words, then a clean end with no finish;
- ``stall``: the headers, then nothing until the client goes away; ``late``: nothing at
  all for ``delay`` seconds;
- ``clock``: like ``text``, but each word is the time it was due (``time.monotonic_ns``,
  from the start and ``delay``), for the benchmarks to measure what a delta waits;
- ``html``: a 200 web page; ``malformed``: ``words`` words, then an event that is not
  JSON; ``list``: an event that is JSON but not an object; ``error``: an error event.

``Stub.seen`` keeps each request's path and body; ``Stub.gone`` has the time
(``time.monotonic()``) at which each client that went away from a stream did so, also
served at ``GET /stub/gone`` for a stub in another process.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from functools import partial
from typing import Any

WORDS = [
    "The",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "and",
    "runs",
    "far",
    "away",
]


class Stub:
    """The ASGI app. ``apis``: what it serves, ``{"chat", "responses"}`` by default."""

    def __init__(self, apis: tuple[str, ...] = ("chat", "responses")) -> None:
        self.apis = apis
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.gone: list[float] = []
        self.disconnected = threading.Event()
        self.tries: Counter[str] = Counter()
        self.keys: list[str | None] = []  # each request's Authorization header

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/stub/gone":
            await _answer(send, 200, self.gone)
            return
        path = scope["path"].removeprefix("/v1")
        api = {"/chat/completions": "chat", "/responses": "responses"}.get(path, path)
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = json.loads(raw or b"{}")
        self.seen.append((api, body))
        headers = dict(scope["headers"])
        self.keys.append(
            headers[b"authorization"].decode() if b"authorization" in headers else None
        )
        if scope["method"] != "POST" or api not in self.apis:
            await _answer(send, 404, {"error": {"message": f"No route {path}", "code": None}})
            return
        script, options = _script(str(body.get("model", "text")))
        self.tries[body.get("model")] += 1
        if script == "status" and self.tries[body.get("model")] <= int(options.get("times", 1)):
            headers = {"retry-after": options["retry_after"]} if "retry_after" in options else {}
            code = int(options.get("code", 500))
            if "detail" in options:  # the way FastAPI-made servers answer
                await _answer(send, code, {"detail": f"Stub says {code}"}, headers)
                return
            await _answer(
                send, code, {"error": {"message": f"Stub says {code}", "code": None}}, headers
            )
            return
        if script == "late":  # the headers only after ``delay`` seconds
            await asyncio.sleep(float(options.get("delay", 1)))
        if script == "html":
            await _start(send, 200, b"text/html")
            await send({"type": "http.response.body", "body": b"<html>hello</html>"})
            return
        await _start(send, 200, b"text/event-stream")
        events = _chat if api == "chat" else _responses
        streaming = asyncio.ensure_future(self._stream(send, events(script, options), script))
        listening = asyncio.ensure_future(_until_gone(receive))
        done, _ = await asyncio.wait({streaming, listening}, return_when=asyncio.FIRST_COMPLETED)
        if listening in done:  # the client went away: stop generating, as a model does
            self.gone.append(time.monotonic())
            self.disconnected.set()
            streaming.cancel()
            await asyncio.gather(streaming, return_exceptions=True)
            return
        listening.cancel()
        streaming.result()  # a cut connection raises here: the server drops it

    async def _stream(self, send: Any, events: Any, script: str) -> None:
        start = time.monotonic()
        for event, delay in events:
            if delay:
                await asyncio.sleep(delay)
            if callable(event):  # a clock word: due at start + i * delay
                due, event = event(start)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            if event is _CUT:
                raise ConnectionAbortedError("the stub cuts the stream")
            await send({"type": "http.response.body", "body": event, "more_body": True})
        if script == "stall":
            await asyncio.Event().wait()
        await send({"type": "http.response.body", "body": b""})


_CUT = object()


def _clocked(chunk: Any, after: float, start: float) -> tuple[float, bytes]:
    due = start + after
    return due, chunk({"content": f"{int(due * 1e9)} "})


async def _until_gone(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _script(model: str) -> tuple[str, dict[str, str]]:
    script, _, rest = model.partition(":")
    options = dict(part.split("=", 1) for part in rest.split(",") if part)
    return script, options


async def _start(
    send: Any, status: int, kind: bytes, headers: dict[str, str] | None = None
) -> None:
    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", kind), *extra],
        }
    )


async def _answer(send: Any, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    await _start(send, status, b"application/json", headers)
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    text = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {text}\n\n".encode()


def _words(options: dict[str, str], default: int = 8) -> list[str]:
    count = int(options.get("words", default))
    return [
        (w if i == 0 else " " + w)
        for i, w in enumerate((WORDS * (count // len(WORDS) + 1))[:count])
    ]


def _calls(options: dict[str, str]) -> list[tuple[str, str, list[str]]]:
    return [
        (f"call_{i}", "get_weather", ['{"city": ', f'"Paris{i}"', "}"])
        for i in range(int(options.get("calls", 1)))
    ]


def _trouble(script: str, options: dict[str, str]) -> list[tuple[Any, float]]:
    """How a troubled script ends, in either flavour."""
    if script == "break":
        return [(_CUT, 0)]
    if script == "malformed":
        return [(b"data: {not json\n\n", 0)]
    if script == "list":
        return [(_sse([1, 2]), 0)]
    if script == "error":
        return [(_sse({"error": {"message": "the model crashed", "type": "server_error"}}), 0)]
    return []


def _chat(script: str, options: dict[str, str]) -> list[tuple[Any, float]]:
    delay = float(options.get("delay", 0))
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "stub"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    out: list[tuple[Any, float]] = [(chunk({"role": "assistant", "content": ""}), 0)]
    if script == "stall":
        return out
    words = _words(options, 3 if script in ("length", "filter") else 8)
    if script == "clock":
        due = [partial(_clocked, chunk, i * delay) for i in range(len(words))]
        out += [(word, 0) for word in due]
    elif script != "tools":
        out += [(chunk({"content": word}), delay) for word in words]
    trouble = _trouble(script, options)
    if trouble or script == "unfinished":
        return out + trouble
    if script == "nameless":  # a chat tool call that never says which function
        out.append((chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}), 0))
    if script == "interleaved":  # a piece of call 0 after call 1 began
        for index in (0, 1, 0):
            call = {"index": index, "function": {"name": "f", "arguments": "{}"}}
            out.append((chunk({"tool_calls": [call]}), 0))
    if script == "tools":
        for i, (call_id, name, pieces) in enumerate(_calls(options)):
            first = {
                "index": i,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            out.append((chunk({"tool_calls": [first]}), delay))
            out += [
                (chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]}), delay)
                for p in pieces
            ]
    finish = {"length": "length", "filter": "content_filter"}.get(script, "stop")
    finish = "tool_calls" if script in ("tools", "nameless", "interleaved") else finish
    out.append((chunk({}, finish), 0))
    usage = {
        "prompt_tokens": 11,
        "completion_tokens": len(words),
        "total_tokens": 11 + len(words),
        "prompt_tokens_details": {"cached_tokens": 3},
    }
    out.append((_sse({**base, "choices": [], "usage": usage}), 0))
    out.append((_sse("[DONE]"), 0))
    return out


def _responses(script: str, options: dict[str, str]) -> list[tuple[Any, float]]:
    delay = float(options.get("delay", 0))
    number = iter(range(10_000))
    response = {
        "id": "resp_upstream",
        "object": "response",
        "created_at": 1,
        "status": "in_progress",
        "model": "stub",
        "output": [],
        "usage": None,
    }

    def event(kind: str, **data: Any) -> bytes:
        return _sse({"type": kind, "sequence_number": next(number), **data}, kind)

    out: list[tuple[Any, float]] = [
        (event("response.created", response=response), 0),
        (event("response.in_progress", response=response), 0),
    ]
    if script == "stall":
        return out
    words = _words(options, 3 if script in ("length", "filter") else 8)
    output: list[dict[str, Any]] = []
    if script != "tools":
        item = {
            "id": "msg_up",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        out.append((event("response.output_item.added", output_index=0, item=item), 0))
        part = {"type": "output_text", "text": "", "annotations": []}
        out.append(
            (
                event(
                    "response.content_part.added",
                    item_id="msg_up",
                    output_index=0,
                    content_index=0,
                    part=part,
                ),
                0,
            )
        )
        out += [
            (
                event(
                    "response.output_text.delta",
                    item_id="msg_up",
                    output_index=0,
                    content_index=0,
                    delta=w,
                    logprobs=[],
                ),
                delay,
            )
            for w in words
        ]
    trouble = _trouble(script, options)
    if trouble or script == "unfinished":
        return out + trouble
    if script != "tools":
        text = "".join(words)
        out.append(
            (
                event(
                    "response.output_text.done",
                    item_id="msg_up",
                    output_index=0,
                    content_index=0,
                    text=text,
                    logprobs=[],
                ),
                0,
            )
        )
        done = {**item, "status": "completed", "content": [{**part, "text": text}]}
        out.append((event("response.output_item.done", output_index=0, item=done), 0))
        output.append(done)
    else:
        for i, (call_id, name, pieces) in enumerate(_calls(options)):
            call = {
                "id": f"fc_{i}",
                "type": "function_call",
                "call_id": call_id,
                "name": name,
                "arguments": "",
                "status": "in_progress",
            }
            out.append((event("response.output_item.added", output_index=i, item=call), delay))
            out += [
                (
                    event(
                        "response.function_call_arguments.delta",
                        item_id=f"fc_{i}",
                        output_index=i,
                        delta=p,
                    ),
                    delay,
                )
                for p in pieces
            ]
            done = {**call, "arguments": "".join(pieces), "status": "completed"}
            out.append((event("response.output_item.done", output_index=i, item=done), 0))
            output.append(done)
    usage = {
        "input_tokens": 11,
        "output_tokens": len(words),
        "total_tokens": 11 + len(words),
        "input_tokens_details": {"cached_tokens": 3},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    if script in ("length", "filter"):
        reason = "max_output_tokens" if script == "length" else "content_filter"
        ended = {
            **response,
            "status": "incomplete",
            "output": output,
            "usage": usage,
            "incomplete_details": {"reason": reason},
        }
        out.append((event("response.incomplete", response=ended), 0))
    else:
        ended = {**response, "status": "completed", "output": output, "usage": usage}
        out.append((event("response.completed", response=ended), 0))
    return out
