"""UpstreamHandler: runstate as a durable gateway in front of an OpenAI-compatible server.

``UpstreamHandler(base_url)`` is a handler for ``runstate.Worker`` and
``runstate.server.create_app``: each response's job calls the model server at
``base_url`` (vLLM, SGLang, Ollama, llama.cpp, LM Studio... or OpenAI) and streams what
it generates into the response, one stored event per piece, so that the response
survives a restart, resumes on any replica, cancels from anywhere and gets pruned, as
every runstate response does. The upstream is called with the official ``openai``
client (its SSE decoding and errors); it needs the ``upstream`` extra.

Two ways to call it (``api``):

- ``"responses"``: ``POST {base}/responses`` with the request as it came (its context
  resolved into ``input``) and ``stream: true``, ``background: false``, ``store:
  false``. The upstream's text and function calls become this response's own items and
  events, numbered in its own sequence; its usage and its ending carry over.
- ``"chat"``: ``POST {base}/chat/completions`` with ``stream: true`` and
  ``stream_options.include_usage``; the request is translated (``translate_request``)
  and the chunks become the Responses events (text and function calls, each piece
  stored as it comes).
- ``"auto"`` (the default): the first job tries ``/responses``; an upstream that has no
  such route (404, 405) is called with ``chat`` from then on. Found once, remembered.

Errors: a connect error, a 429 or a 5xx before the first token is retried with backoff
(``max_retries`` times), then fails the response (``rate_limit_exceeded`` or
``server_error``); another 4xx fails it with the upstream's message (``invalid_prompt``
for 400 and 422, where the input is at fault); a stream that breaks or ends unfinished
after it began, a time-out, something that is not the API, or a malformed chunk fail it
with a message that says which. Nothing is ever presented as complete that the upstream
did not finish. A cancel closes the upstream request at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._errors import ValidationError
from ._requests import Capabilities
from ._validate import RESPONSE_ERROR_CODES, require_int, require_seconds
from ._worker import Completed, Failed, Incomplete, Job

__all__ = ["APIS", "UpstreamHandler", "translate_request"]

log = logging.getLogger("runstate.upstream")

APIS = ("auto", "responses", "chat")
#: The first retry's wait, doubled each time (with jitter), up to ``MAX_BACKOFF``.
BACKOFF = 0.5
MAX_BACKOFF = 8.0
#: The most a ``Retry-After`` from the upstream is honoured for.
MAX_RETRY_AFTER = 60.0
#: What is left out of a request sent on to ``/responses``: runstate keeps the state.
_STATEFUL = (
    "background",
    "store",
    "stream",
    "stream_options",
    "previous_response_id",
    "conversation",
    "metadata",
    "prompt",
)


class _Retry(Exception):
    """A failure before the first token that another try may not meet."""

    def __init__(self, failed: Failed, wait: float | None = None) -> None:
        super().__init__(failed.message)
        self.failed, self.wait = failed, wait


class _NoRoute(Exception):
    """The upstream has no ``/responses`` (``api="auto"`` then calls ``chat``)."""


class UpstreamHandler:
    """A handler that generates each response by calling an OpenAI-compatible server
    (see the module). ``base_url`` is the API's root (``http://127.0.0.1:8000/v1``);
    ``api_key`` is sent as a bearer token; ``timeout``: the seconds the upstream may take
    to connect and between two chunks; ``max_retries``: tries after the first, before
    the first token; ``backoff``: the first retry's wait in seconds."""

    #: What it honours: function tools, and the create parameters it carries over.
    capabilities = Capabilities()

    def __init__(
        self,
        base_url: str,
        *,
        api: str = "auto",
        api_key: str | None = None,
        timeout: float = 300.0,
        max_retries: int = 2,
        backoff: float = BACKOFF,
    ) -> None:
        if (
            not isinstance(base_url, str)
            or urlsplit(base_url).scheme not in ("http", "https")
            or not urlsplit(base_url).netloc
        ):
            raise ValidationError(
                f"Invalid 'base_url': expected the http(s) URL of an OpenAI-compatible API "
                f"(such as 'http://127.0.0.1:8000/v1'), got {base_url!r}.",
                param="base_url",
            )
        if api not in APIS:
            raise ValidationError(
                f"Invalid 'api': expected one of {list(APIS)}, got {api!r}.", param="api"
            )
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            raise ValidationError(
                "Invalid 'api_key': expected a non-empty string.", param="api_key"
            )
        require_seconds(timeout, "timeout")
        require_int(max_retries, "max_retries", minimum=0, maximum=100)
        require_seconds(backoff, "backoff", zero=True)
        self.base_url = base_url.rstrip("/")
        self.api = api
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self._api_key = api_key
        self._clients: dict[int, Any] = {}  # one client per event loop
        self._found: str | None = None if api == "auto" else api

    def __repr__(self) -> str:
        return f"UpstreamHandler({self.base_url!r}, api={self.api!r})"

    @property
    def found_api(self) -> str | None:
        """The API it calls: ``api``, or what ``"auto"`` found (None until then)."""
        return self._found

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(id(loop))
        if client is None:
            import openai  # the upstream extra

            client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key or "runstate",  # an upstream without auth ignores it
                max_retries=0,  # retried here, where the first token is known
                timeout=self.timeout,
            )
            self._clients = {id(loop): client}  # a loop's client is not for another loop
        return client

    async def aclose(self) -> None:
        """Close the HTTP connections of this loop's client."""
        client = self._clients.pop(id(asyncio.get_running_loop()), None)
        if client is not None:
            await client.close()

    # --- a job --------------------------------------------------------------------------

    async def __call__(self, job: Job) -> Completed:
        if job.kind != "response":
            raise Failed(
                "server_error", "The upstream handler generates responses; a run has no upstream."
            )
        attempt = 0
        while True:
            try:
                return await self._generate(job)
            except _NoRoute:
                self._found = "chat"
                log.info("%s has no /responses: calling /chat/completions", self.base_url)
                continue
            except _Retry as retry:
                if attempt >= self.max_retries:
                    raise retry.failed from None
                wait = retry.wait
                if wait is None:
                    wait = min(self.backoff * 2**attempt, MAX_BACKOFF)
                    wait *= 0.75 + random.random() / 2  # jitter: replicas do not retry together
                attempt += 1
                log.warning(
                    "%s: %s; retry %d of %d in %.2fs",
                    job.id,
                    retry.failed.message,
                    attempt,
                    self.max_retries,
                    wait,
                )
                await asyncio.sleep(wait)

    async def _generate(self, job: Job) -> Completed:
        api = self._found or "responses"  # "auto" tries /responses first
        sink = _Sink(job)
        if api == "chat":
            path, body, read = (
                "/chat/completions",
                translate_request(job.request, job.input),
                _read_chat,
            )
        else:
            path, body, read = (
                "/responses",
                _responses_body(job.request, job.input),
                _read_responses,
            )
        stream = await self._open(path, body, probing=self._found is None)  # or _NoRoute
        self._found = api
        try:
            ending = await read(_chunks(stream, self), sink)
        except _Broken as broken:
            if sink.started:  # never a silent truncation: what was streamed stays, failed
                raise Failed(
                    "server_error", f"The upstream's stream broke after it began: {broken}"
                ) from None
            raise _Retry(Failed("server_error", f"The upstream's stream broke: {broken}")) from None
        finally:
            await stream.close()  # at once: on a cancel, the upstream sees the disconnect
        return await sink.end(ending)

    async def _open(self, path: str, body: dict[str, Any], *, probing: bool) -> Any:
        """The upstream's event stream for ``body``, or the error it is."""
        import openai
        from openai import AsyncStream

        try:
            stream = await self._client().post(
                path, body=body, cast_to=object, stream=True, stream_cls=AsyncStream[object]
            )
        except openai.APITimeoutError:
            raise Failed(
                "server_error",
                f"The upstream at {self.base_url} did not answer within {self.timeout:g}s.",
            ) from None
        except openai.APIConnectionError as exc:
            raise _Retry(
                Failed(
                    "server_error",
                    f"The upstream at {self.base_url} did not answer: {_cause(exc)}.",
                )
            ) from None
        except openai.APIStatusError as exc:
            raise self._refused(exc, probing) from None
        kind = stream.response.headers.get("content-type", "")
        if not kind.startswith("text/event-stream"):
            await stream.close()
            raise Failed(
                "server_error",
                f"The upstream at {self.base_url} answered {path} with {kind or 'no content type'}"
                ", not an event stream: is it an OpenAI-compatible API?",
            )
        return stream

    def _refused(self, exc: Any, probing: bool) -> Exception:
        status = exc.status_code
        message = _message_of(exc)
        if probing and status in (404, 405) and _code_of(exc) != "model_not_found":
            return _NoRoute()
        wait = _retry_after(exc.response.headers.get("retry-after"))
        if status == 429:
            return _Retry(
                Failed("rate_limit_exceeded", f"The upstream is rate limited (429): {message}"),
                wait,
            )
        if status >= 500 or status in (408, 409):
            return _Retry(
                Failed("server_error", f"The upstream failed ({status}): {message}"), wait
            )
        code = "invalid_prompt" if status in (400, 422) else "server_error"
        return Failed(code, f"The upstream refused the request ({status}): {message}")


class _Broken(Exception):
    """The upstream's stream broke (its connection, or a malformed chunk)."""


async def _chunks(stream: Any, handler: UpstreamHandler) -> AsyncIterator[dict[str, Any]]:
    """The stream's events as objects, its failures as ``_Broken`` or ``Failed``."""
    import openai

    iterator = stream.__aiter__()
    while True:
        try:
            chunk = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except openai.APITimeoutError:
            raise Failed(
                "server_error",
                f"The upstream at {handler.base_url} sent nothing for {handler.timeout:g}s.",
            ) from None
        except openai.APIConnectionError as exc:
            raise _Broken(_cause(exc)) from None
        except openai.APIError as exc:  # an error event in the stream
            raise Failed("server_error", f"The upstream failed: {exc.message}") from None
        except ValueError as exc:  # the JSON of an event
            raise Failed("server_error", f"The upstream sent a malformed event: {exc}.") from None
        if not isinstance(chunk, dict):
            raise Failed(
                "server_error",
                f"The upstream sent a malformed event: expected an object, got "
                f"{json.dumps(chunk)[:200]}.",
            )
        yield chunk


@dataclass
class _Ending:
    """How the upstream ended the response."""

    usage: dict[str, Any] | None = None
    incomplete: str | None = None  # an incomplete reason
    error: Failed | None = None


class _Sink:
    """What a job streams from the upstream, in the response's own items: text, and
    function calls whose arguments come a piece at a time. What the store cannot take
    (a NUL character, a function name of 65 characters) fails the response, saying so."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.started = False  # a token has been stored: no retry from here on
        self.call_open = False

    async def _store(self, step: Awaitable[Any]) -> None:
        try:
            await step
        except ValidationError as exc:
            raise Failed(
                "server_error", f"The upstream sent what cannot be stored: {exc.message}"
            ) from None

    async def text(self, delta: str) -> None:
        if delta:
            self.started = True
            await self._store(self.job.text(delta))

    async def close_message(self) -> None:
        await self.job.close_message()

    async def open_call(self, name: str, call_id: str | None) -> None:
        self.started = True
        await self._store(self.job.open_function_call(name, call_id=call_id or None))
        self.call_open = True

    async def arguments(self, delta: str) -> None:
        if delta:
            await self._store(self.job.add_arguments(delta))

    async def close_call(self) -> None:
        if self.call_open:
            self.call_open = False
            await self.job.close_function_call()

    async def end(self, ending: _Ending) -> Completed:
        await self.close_call()
        if ending.error is not None:
            raise ending.error
        if ending.incomplete is not None:
            raise Incomplete(ending.incomplete, usage=ending.usage)
        return Completed(usage=ending.usage)


def _malformed(what: str, value: Any) -> Failed:
    return Failed(
        "server_error",
        f"The upstream sent a malformed event: {what}, got {json.dumps(value)[:200]}.",
    )


# --- /responses ------------------------------------------------------------------------


def _responses_body(request: Mapping[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    body = {key: value for key, value in request.items() if key not in _STATEFUL}
    body.update(input=items, stream=True, background=False, store=False)
    return body


async def _read_responses(chunks: AsyncIterator[dict[str, Any]], sink: _Sink) -> _Ending:
    """Relay an upstream response's events as this response's own."""
    relayed = 0  # the characters of the open call's arguments relayed so far
    async for event in chunks:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            delta = event.get("delta")
            if not isinstance(delta, str):
                raise _malformed("a text delta's 'delta' is a string", event)
            await sink.text(delta)
        elif kind == "response.function_call_arguments.delta":
            delta = event.get("delta")
            if not isinstance(delta, str) or not sink.call_open:
                raise _malformed("arguments' 'delta' is a string, of an open function call", event)
            await sink.arguments(delta)
            relayed += len(delta)
        elif kind in ("response.output_item.added", "response.output_item.done"):
            item = event.get("item")
            if not isinstance(item, dict):
                raise _malformed("an item event carries its 'item'", event)
            if item.get("type") == "function_call":
                name, arguments = item.get("name"), item.get("arguments", "")
                if not isinstance(name, str) or not isinstance(arguments, str):
                    raise _malformed("a function call has a 'name' and 'arguments'", item)
                if kind == "response.output_item.added":
                    await sink.open_call(name, item.get("call_id"))
                    relayed = 0
                elif sink.call_open:
                    await sink.arguments(arguments[relayed:])  # what no delta carried
                    await sink.close_call()
            elif item.get("type") == "message" and kind == "response.output_item.done":
                await sink.close_message()
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            response = event.get("response")
            if not isinstance(response, dict):
                raise _malformed("an ending event carries its 'response'", event)
            ending = _Ending(usage=_responses_usage(response.get("usage")))
            if kind == "response.incomplete":
                details = response.get("incomplete_details") or {}
                reason = details.get("reason") if isinstance(details, dict) else None
                ending.incomplete = reason if reason in _REASONS else "max_output_tokens"
            elif kind == "response.failed":
                error = response.get("error") or {}
                error = error if isinstance(error, dict) else {}
                code = error.get("code")
                ending.error = Failed(
                    code if code in RESPONSE_ERROR_CODES else "server_error",
                    f"The upstream failed: {error.get('message') or 'no message'}",
                )
            return ending
        elif kind == "error":
            raise Failed("server_error", f"The upstream failed: {event.get('message') or event}")
        elif not isinstance(kind, str):
            raise _malformed("an event has a 'type'", event)
    raise _Broken("it ended before the response did")


_REASONS = ("max_output_tokens", "content_filter")


def _responses_usage(usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    return _usage(
        usage.get("input_tokens"),
        usage.get("output_tokens"),
        _get(usage, "input_tokens_details", "cached_tokens"),
        _get(usage, "output_tokens_details", "reasoning_tokens"),
    )


# --- /chat/completions ---------------------------------------------------------------------


def translate_request(request: Mapping[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """A Responses create request (its ``input`` resolved to ``items``) as a streamed
    Chat Completions request: instructions and input items become messages; function
    tools, ``tool_choice`` and ``parallel_tool_calls`` carry over; ``text.format``
    becomes ``response_format``, ``max_output_tokens`` ``max_tokens`` (the limit every
    OpenAI-compatible server takes), ``reasoning.effort`` ``reasoning_effort``;
    ``temperature`` and ``top_p`` carry over. Raises ``Failed("invalid_prompt")`` for
    input the Chat Completions API cannot carry."""
    messages: list[dict[str, Any]] = []
    if request.get("instructions"):
        messages.append({"role": "system", "content": request["instructions"]})
    for item in items:
        _add_message(messages, item)
    body: dict[str, Any] = {
        "model": request.get("model"),
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    tools = [
        {"type": "function", "function": {k: tool[k] for k in _FUNCTION if k in tool}}
        for tool in request.get("tools") or ()
        if tool.get("type") == "function"
    ]
    if tools:
        body["tools"] = tools
        choice = request.get("tool_choice")
        if isinstance(choice, Mapping) and choice.get("type") == "function":
            body["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        elif isinstance(choice, str):
            body["tool_choice"] = choice
        if request.get("parallel_tool_calls") is not None:
            body["parallel_tool_calls"] = request["parallel_tool_calls"]
    text_format = (request.get("text") or {}).get("format") or {}
    if text_format.get("type") == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif text_format.get("type") == "json_schema":
        schema = {
            k: text_format[k]
            for k in ("name", "schema", "strict", "description")
            if k in text_format
        }
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    if request.get("max_output_tokens") is not None:
        body["max_tokens"] = request["max_output_tokens"]
    for name in ("temperature", "top_p"):
        if request.get(name) is not None:
            body[name] = request[name]
    effort = (request.get("reasoning") or {}).get("effort")
    if effort is not None:
        body["reasoning_effort"] = effort
    return body


_FUNCTION = ("name", "description", "parameters", "strict")


def _add_message(messages: list[dict[str, Any]], item: Mapping[str, Any]) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        role = "system" if role == "developer" else role  # what every local server knows
        messages.append({"role": role, "content": _content(item.get("content"), role)})
    elif kind == "function_call":
        call = {
            "id": item.get("call_id"),
            "type": "function",
            "function": {"name": item.get("name"), "arguments": item.get("arguments")},
        }
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and "tool_calls" in last:
            last["tool_calls"].append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else _text_of(output)
        messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
    elif kind != "reasoning":  # a model's reasoning is its own; the chat API has no place
        raise Failed(
            "invalid_prompt",
            f"The upstream's Chat Completions API cannot take an input item of type {kind!r}.",
        )


def _content(content: Any, role: str | None) -> Any:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content or ():
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal", "")})
        elif kind == "input_image" and role == "user":
            image = {"url": part.get("image_url")}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise Failed(
                "invalid_prompt",
                f"The upstream's Chat Completions API cannot take a {role} content part of "
                f"type {kind!r}.",
            )
    if all(part["type"] == "text" for part in parts):  # plain text: what every server reads
        return "".join(part["text"] for part in parts)
    return parts


def _text_of(output: Any) -> str:
    return "".join(part.get("text", "") for part in output or () if isinstance(part, Mapping))


async def _read_chat(chunks: AsyncIterator[dict[str, Any]], sink: _Sink) -> _Ending:
    """Turn chat completion chunks into the response's text and function calls."""
    ending = _Ending()
    calls = _Calls(sink)
    finish: str | None = None
    async for chunk in chunks:
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            ending.usage = _chat_usage(usage)
        choices = chunk.get("choices")
        if choices is None and usage is not None:
            continue  # the usage, alone
        if not isinstance(choices, list):
            raise _malformed("a chunk has a list of 'choices'", chunk)
        for choice in choices:
            delta = choice.get("delta") or {} if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                raise _malformed("a choice has a 'delta' object", chunk)
            if choice.get("index", 0) != 0:
                continue  # n > 1 is not asked for
            content = delta.get("content")
            if content is not None and not isinstance(content, str):
                raise _malformed("a delta's 'content' is a string", chunk)
            if content:
                await sink.text(content)
            for call in delta.get("tool_calls") or ():
                await calls.add(call, chunk)
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    if finish is None:
        raise _Broken("it ended without a finish reason")
    await calls.done(chunk)
    await sink.close_message()
    if finish == "length":
        ending.incomplete = "max_output_tokens"
    elif finish == "content_filter":
        ending.incomplete = "content_filter"
    return ending


class _Calls:
    """A chat stream's tool call deltas, streamed as function calls: a call opens once
    its name has come, and each piece of its arguments is stored as it comes. Calls
    come one after another (by ``index``); a piece of a call already closed is refused."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.index: int | None = None  # the call being streamed
        self.closed: set[int] = set()
        self.id = self.name = self.waiting = ""  # until it opens: its id, name, arguments

    async def add(self, call: Any, chunk: Any) -> None:
        function = call.get("function") if isinstance(call, dict) else None
        function = {} if function is None else function
        index = call.get("index", self.index or 0) if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(index, int):
            raise _malformed("a tool call delta has an integer 'index' and a 'function'", chunk)
        if index != self.index:
            if index in self.closed:
                raise _malformed("tool calls come one after another", chunk)
            await self.done(chunk)
            self.index, self.id, self.name, self.waiting = index, "", "", ""
        self.id = str(call.get("id") or self.id)
        piece = str(function.get("arguments") or "")
        if self.sink.call_open:
            await self.sink.arguments(piece)
            return
        self.name += str(function.get("name") or "")
        self.waiting += piece
        if self.name:
            await self.sink.open_call(self.name, self.id)
            await self.sink.arguments(self.waiting)

    async def done(self, chunk: Any) -> None:
        """Close the call being streamed, if any."""
        if self.index is None:
            return
        if not self.sink.call_open:
            raise _malformed("a tool call has a name", chunk)
        await self.sink.close_call()
        self.closed.add(self.index)
        self.index = None


def _chat_usage(usage: dict[str, Any]) -> dict[str, Any] | None:
    return _usage(
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        _get(usage, "prompt_tokens_details", "cached_tokens"),
        _get(usage, "completion_tokens_details", "reasoning_tokens"),
    )


# --- small pieces ---------------------------------------------------------------------------


def _usage(tokens_in: Any, tokens_out: Any, cached: Any, reasoning: Any) -> dict[str, Any] | None:
    """A response's usage from the upstream's counts (None if they are not counts)."""
    if not all(isinstance(n, int) and n >= 0 for n in (tokens_in, tokens_out)):
        return None
    return {
        "input_tokens": tokens_in,
        "input_tokens_details": {"cached_tokens": cached if isinstance(cached, int) else 0},
        "output_tokens": tokens_out,
        "output_tokens_details": {
            "reasoning_tokens": reasoning if isinstance(reasoning, int) else 0
        },
        "total_tokens": tokens_in + tokens_out,
    }


def _get(mapping: Mapping[str, Any], key: str, name: str) -> Any:
    inner = mapping.get(key)
    return inner.get(name) if isinstance(inner, Mapping) else None


def _message_of(exc: Any) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
    text = exc.response.text.strip()
    return text[:300] if text else exc.response.reason_phrase or "no message"


def _code_of(exc: Any) -> Any:
    body = exc.body
    error = body.get("error", body) if isinstance(body, Mapping) else None
    return error.get("code") if isinstance(error, Mapping) else None


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    if seconds is None or not 0 <= seconds <= MAX_RETRY_AFTER:
        return None
    return seconds


def _cause(exc: BaseException) -> str:
    """The innermost cause's words (the transport's, not the client's wrapper)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc) or type(exc).__name__
