"""The gateway: ``UpstreamHandler`` in front of a stub model server that speaks the real
wire protocols (``tests/upstream_stub.py``: chat completion chunks, or Responses
events), driven by the official ``openai`` client, whose stream event models check every
event. Text, tool calls, incomplete endings, errors before and after the first token,
slow, stalled and broken streams, not-the-API answers, a cancel that closes the upstream
request, the ``auto`` choice, foreground requests, and ``runstate serve --upstream``
killed mid-stream and resumed on a second replica on one PostgreSQL."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter
from servers import in_thread, poll, server, strict
from tables import pg_url
from upstream_stub import Stub

from runstate import ValidationError
from runstate.server import create_app
from runstate.upstream import UpstreamHandler, translate_request

pytestmark = pytest.mark.timeout(120)
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
TEXT = "The quick brown fox jumps over the lazy"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}


@pytest.fixture(scope="module")
def stub() -> Iterator[tuple[Stub, str]]:
    """One stub model server for the module (scripts are per request)."""
    model = Stub()
    with in_thread(model) as base:
        yield model, base + "/v1"


@pytest.fixture(params=["chat", "responses"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gateway(stub: tuple[Stub, str], api: str) -> Iterator[openai.OpenAI]:
    """The gateway (``create_app`` with an ``UpstreamHandler``) on memory, and its client."""
    handler = UpstreamHandler(stub[1], api=api, backoff=0.01, max_retries=2, timeout=5)
    with (
        in_thread(create_app("memory://", handler=handler)) as base,
        openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0) as client,
    ):
        yield client


def unique(script: str) -> str:
    """A model name whose counters are this test's own (the stub counts tries by name)."""
    unique.n = getattr(unique, "n", 0) + 1  # type: ignore[attr-defined]
    return f"{script},n={unique.n}" if ":" in script else f"{script}:n={unique.n}"  # type: ignore[attr-defined]


def create(client: openai.OpenAI, script: str, **extra: Any) -> Any:
    created = client.responses.create(model=script, input="Hi", background=True, **extra)
    return poll(client, created.id)


def streamed(client: openai.OpenAI, response_id: str) -> list[Any]:
    """Every stored event of a response, each checked by the SDK's event models."""
    events = list(client.responses.retrieve(response_id, stream=True))
    for event in events:
        EVENTS.validate_python(event.model_dump(mode="json", exclude_unset=True), strict=True)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    return events


# --- what the upstream generates -----------------------------------------------------------


def test_text_becomes_the_response_s_message(gateway: openai.OpenAI) -> None:
    done = create(gateway, "text")
    assert done.status == "completed" and done.output_text == TEXT
    assert done.usage is not None and (done.usage.input_tokens, done.usage.output_tokens) == (11, 8)
    assert done.usage.total_tokens == 19 and done.usage.input_tokens_details.cached_tokens == 3
    types = [e.type for e in streamed(gateway, done.id)]
    assert types[:5] == [
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types.count("response.output_text.delta") == 8
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert done.id.startswith("resp_") and done.id != "resp_upstream"  # its own object


def test_the_sdk_stream_helper_reads_a_streamed_foreground_response(
    gateway: openai.OpenAI,
) -> None:
    with gateway.responses.stream(model="text:words=5", input="Hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "The quick brown fox jumps"
    assert final.status == "completed"
    plain = gateway.responses.create(model="text:words=2", input="Hi")  # not streamed
    assert strict(plain).output_text == "The quick" and plain.status == "completed"


def test_tool_calls_become_function_call_items(gateway: openai.OpenAI) -> None:
    done = create(gateway, "tools:calls=2", tools=[WEATHER])
    assert done.status == "completed"
    calls = [(o.type, o.call_id, o.name, o.arguments) for o in done.output]
    assert calls == [
        ("function_call", "call_0", "get_weather", '{"city": "Paris0"}'),
        ("function_call", "call_1", "get_weather", '{"city": "Paris1"}'),
    ]
    events = streamed(gateway, done.id)
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert pieces == ['{"city": ', '"Paris0"', "}", '{"city": ', '"Paris1"', "}"]  # as they came
    types = [e.type for e in events]
    assert types.count("response.function_call_arguments.done") == 2
    assert types.index("response.function_call_arguments.done") < types.index(
        "response.function_call_arguments.delta", types.index("response.output_item.done")
    )  # the first call was done before the second's arguments began


@pytest.mark.parametrize(
    ("script", "reason"), [("length", "max_output_tokens"), ("filter", "content_filter")]
)
def test_an_upstream_that_stops_early_ends_it_incomplete(
    gateway: openai.OpenAI, script: str, reason: str
) -> None:
    done = create(gateway, script)
    assert done.status == "incomplete" and done.incomplete_details.reason == reason
    assert done.output_text == "The quick brown" and done.usage is not None
    assert streamed(gateway, done.id)[-1].type == "response.incomplete"


# --- errors -----------------------------------------------------------------------------------


def test_5xx_and_429_before_the_first_token_are_retried(
    gateway: openai.OpenAI, stub: tuple[Stub, str]
) -> None:
    model = unique("status:code=503,times=2")
    assert create(gateway, model).output_text == TEXT  # two 503s, then the third try
    assert stub[0].tries[model] == 3
    model = unique("status:code=429,times=1,retry_after=0.05")
    assert create(gateway, model).status == "completed"
    assert stub[0].tries[model] == 2


@pytest.mark.parametrize(
    ("code", "error_code", "message"),
    [
        (429, "rate_limit_exceeded", "The upstream is rate limited (429): Stub says 429"),
        (503, "server_error", "The upstream failed (503): Stub says 503"),
    ],
)
def test_retries_run_out_and_fail_it(
    gateway: openai.OpenAI, stub: tuple[Stub, str], code: int, error_code: str, message: str
) -> None:
    model = unique(f"status:code={code},times=99")
    done = create(gateway, model)
    assert done.status == "failed" and (done.error.code, done.error.message) == (
        error_code,
        message,
    )
    assert stub[0].tries[model] == 3  # the first try and max_retries=2
    assert done.output == []


@pytest.mark.parametrize(
    ("code", "error_code"),
    [(400, "invalid_prompt"), (422, "invalid_prompt"), (401, "server_error")],
)
def test_another_4xx_fails_it_with_the_upstream_s_message_at_once(
    gateway: openai.OpenAI, stub: tuple[Stub, str], code: int, error_code: str
) -> None:
    model = unique(f"status:code={code},times=99")
    done = create(gateway, model)
    assert done.status == "failed" and done.error.code == error_code
    assert done.error.message == f"The upstream refused the request ({code}): Stub says {code}"
    assert stub[0].tries[model] == 1  # never retried


def test_a_stream_broken_after_its_first_token_fails_never_truncated(
    gateway: openai.OpenAI, stub: tuple[Stub, str]
) -> None:
    done = create(gateway, "break:words=3")
    assert done.status == "failed" and done.output_text == "The quick brown"
    assert done.error.message.startswith("The upstream's stream broke after it began: ")
    assert streamed(gateway, done.id)[-1].type == "response.failed"
    before = unique("break:words=0")  # broken before any token: retried, then failed
    done = create(gateway, before)
    assert done.status == "failed" and stub[0].tries[before] == 3 and done.output == []
    assert done.error.message.startswith("The upstream's stream broke: ")
    done = create(gateway, "unfinished:words=2")  # a clean end, but never finished
    assert done.status == "failed" and done.output_text == "The quick"
    assert done.error.message in (
        "The upstream's stream broke after it began: it ended without a finish reason",
        "The upstream's stream broke after it began: it ended before the response did",
    )


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (
            "malformed",
            "The upstream sent a malformed event: Expecting property name enclosed "
            "in double quotes: line 1 column 2 (char 1).",
        ),
        ("list", "The upstream sent a malformed event: expected an object, got [1, 2]."),
        ("error", "The upstream failed: the model crashed"),
    ],
)
def test_a_malformed_or_failing_stream_fails_it(
    gateway: openai.OpenAI, script: str, message: str
) -> None:
    done = create(gateway, f"{script}:words=2")
    assert done.status == "failed" and done.error.message == message
    assert done.output_text == "The quick"  # what was stored before stays, failed


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("nameless", 'The upstream sent a malformed event: a tool call has a name, got {"id": '),
        ("interleaved", "The upstream sent a malformed event: tool calls come one after another"),
    ],
)
def test_tool_calls_a_chat_stream_cannot_mean_fail_it(
    stub: tuple[Stub, str], script: str, message: str
) -> None:
    handler = UpstreamHandler(stub[1], api="chat", max_retries=0)
    with in_thread(create_app("memory://", handler=handler)) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
        done = create(client, f"{script}:words=1")
        assert done.status == "failed" and done.error.message.startswith(message)
        client.close()


def test_an_answer_that_is_not_the_api_fails_it(
    gateway: openai.OpenAI, stub: tuple[Stub, str], api: str
) -> None:
    done = create(gateway, "html")
    path = "/chat/completions" if api == "chat" else "/responses"
    assert done.status == "failed" and done.error.message == (
        f"The upstream at {stub[1]} answered {path} with text/html, not an event stream: is "
        "it an OpenAI-compatible API?"
    )
    assert done.output == []


def test_a_slow_stream_is_waited_for_and_a_silent_one_times_out(
    stub: tuple[Stub, str], api: str
) -> None:
    handler = UpstreamHandler(stub[1], api=api, timeout=0.5, max_retries=0)
    with in_thread(create_app("memory://", handler=handler)) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
        slow = create(client, "text:words=4,delay=0.2")  # each chunk within the time-out
        assert slow.status == "completed" and slow.output_text == "The quick brown fox"
        stalled = create(client, "stall")
        assert stalled.status == "failed" and stalled.error.message == (
            f"The upstream at {stub[1]} sent nothing for 0.5s."
        )
        client.close()


def test_an_upstream_that_answers_too_late_times_out(stub: tuple[Stub, str]) -> None:
    handler = UpstreamHandler(stub[1], api="chat", timeout=0.3, max_retries=0)
    with in_thread(create_app("memory://", handler=handler)) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
        done = create(client, unique("late:delay=3"))
        assert done.status == "failed" and done.error.message == (
            f"The upstream at {stub[1]} did not answer within 0.3s."
        )
        client.close()


def test_an_error_body_in_fastapi_s_shape_and_a_retry_after_that_is_no_number(
    gateway: openai.OpenAI, stub: tuple[Stub, str]
) -> None:
    model = unique("status:code=503,times=1,retry_after=soon,detail=1")
    assert create(gateway, model).status == "completed"  # retried on the backoff
    assert stub[0].tries[model] == 2
    done = create(gateway, unique("status:code=400,times=9,detail=1"))
    assert done.error.message == "The upstream refused the request (400): Stub says 400"


def test_a_base_url_that_does_not_answer_fails_after_its_retries(api: str) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"
    handler = UpstreamHandler(base, api=api, max_retries=1, backoff=0.01)
    with in_thread(create_app("memory://", handler=handler)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused")
        done = create(client, "text")
        assert done.status == "failed" and done.error.code == "server_error"
        assert done.error.message.startswith(f"The upstream at {base} did not answer: ")
        client.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("ftp://host/v1",),
            "Invalid 'base_url': expected the http(s) URL of an "
            "OpenAI-compatible API (such as 'http://127.0.0.1:8000/v1'), got 'ftp://host/v1'.",
        ),
        (
            ("localhost:8000",),
            "Invalid 'base_url': expected the http(s) URL of an "
            "OpenAI-compatible API (such as 'http://127.0.0.1:8000/v1'), got 'localhost:8000'.",
        ),
        (
            (None,),
            "Invalid 'base_url': expected the http(s) URL of an OpenAI-compatible API "
            "(such as 'http://127.0.0.1:8000/v1'), got None.",
        ),
    ],
)
def test_a_base_url_that_is_not_http_is_refused(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        UpstreamHandler(*args)
    assert refused.value.message == message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"api": "soap"},
            "Invalid 'api': expected one of ['auto', 'responses', 'chat'], got 'soap'.",
        ),
        ({"api_key": ""}, "Invalid 'api_key': expected a non-empty string."),
        (
            {"timeout": 0},
            "Invalid 'timeout': expected a finite number of seconds above 0 and at "
            "most 86400, got 0.",
        ),
        ({"max_retries": -1}, "Invalid 'max_retries': expected an integer from 0 to 100, got -1."),
        (
            {"backoff": -1},
            "Invalid 'backoff': expected a finite number of seconds from 0 to 86400, got -1.",
        ),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        UpstreamHandler("http://127.0.0.1:9/v1", **options)
    assert refused.value.message == message


# --- cancel, auto, what is sent ------------------------------------------------------------------


def test_a_cancel_closes_the_upstream_request(
    gateway: openai.OpenAI, stub: tuple[Stub, str]
) -> None:
    stub[0].disconnected.clear()
    created = gateway.responses.create(model=unique("stall"), input="Hi", background=True)
    while not any(body.get("model") == created.model for _, body in stub[0].seen):
        time.sleep(0.01)  # until the upstream has the request (bounded by the test's timeout)
    assert gateway.responses.cancel(created.id).status == "cancelled"
    assert stub[0].disconnected.wait(10)  # the model server saw the client go
    assert poll(gateway, created.id).status == "cancelled"


def test_auto_finds_the_chat_api_once_and_remembers() -> None:
    chat_only = Stub(apis=("chat",))
    with in_thread(chat_only) as upstream:
        handler = UpstreamHandler(upstream + "/v1")
        assert handler.found_api is None
        with in_thread(create_app("memory://", handler=handler)) as base:
            client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
            assert create(client, "text").output_text == TEXT
            assert create(client, "text").output_text == TEXT
            client.close()
        assert handler.found_api == "chat"
        assert [api for api, _ in chat_only.seen] == ["responses", "chat", "chat"]
    both = Stub()
    with in_thread(both) as upstream:
        handler = UpstreamHandler(upstream + "/v1")
        with in_thread(create_app("memory://", handler=handler)) as base:
            client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
            assert create(client, "text").status == "completed"
            client.close()
        assert handler.found_api == "responses" and [a for a, _ in both.seen] == ["responses"]


def test_what_each_api_is_sent(gateway: openai.OpenAI, stub: tuple[Stub, str], api: str) -> None:
    """The request goes on with runstate keeping the state: a follow-up's context is
    resolved into the input, and the upstream is asked to stream and store nothing."""
    first = create(gateway, "text:words=2", instructions="Be brief.", metadata={"k": "v"})
    follow = gateway.responses.create(
        model=unique("text:words=1"),
        input="And then?",
        previous_response_id=first.id,
        background=True,
        max_output_tokens=50,
        temperature=0.5,
    )
    poll(gateway, follow.id)
    sent = [body for seen_api, body in stub[0].seen if body["model"] == follow.model]
    assert len(sent) == 1
    (body,) = sent
    if api == "responses":
        assert (body["stream"], body["background"], body["store"]) == (True, False, False)
        assert "previous_response_id" not in body and "metadata" not in body
        texts = [item["content"][0]["text"] for item in body["input"]]
        assert texts == ["Hi", "The quick", "And then?"]
        assert body["max_output_tokens"] == 50 and body["temperature"] == 0.5
    else:
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        assert body["messages"] == [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "The quick"},
            {"role": "user", "content": "And then?"},
        ]
        assert body["max_tokens"] == 50 and body["temperature"] == 0.5


def test_translate_request_carries_every_field_over() -> None:
    request = {
        "model": "m",
        "instructions": "Be brief.",
        "tools": [
            {
                "type": "function",
                "name": "f",
                "description": "d",
                "parameters": {"type": "object"},
                "strict": True,
            },
        ],
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": False,
        "text": {
            "format": {
                "type": "json_schema",
                "name": "s",
                "schema": {"type": "object"},
                "strict": True,
            }
        },
        "max_output_tokens": 99,
        "temperature": 0.2,
        "top_p": 0.9,
        "reasoning": {"effort": "low"},
    }
    items = [
        {"type": "message", "role": "developer", "content": "Use tools."},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Look at "},
                {"type": "input_image", "image_url": "https://x/i.png", "detail": "low"},
            ],
        },
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "f", "arguments": '{"a": 1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {
            "type": "function_call_output",
            "call_id": "c2",
            "output": [{"type": "input_text", "text": "two"}],
        },
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Done", "annotations": []},
            ],
        },
    ]
    assert translate_request(request, items) == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Use tools."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look at "},
                    {"type": "image_url", "image_url": {"url": "https://x/i.png", "detail": "low"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": 1}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            {"role": "tool", "tool_call_id": "c2", "content": "two"},
            {"role": "assistant", "content": "Done"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "f",
                    "description": "d",
                    "parameters": {"type": "object"},
                    "strict": True,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": True},
        },
        "max_tokens": 99,
        "temperature": 0.2,
        "top_p": 0.9,
        "reasoning_effort": "low",
    }
    json_object = translate_request(
        {"model": "m", "text": {"format": {"type": "json_object"}}, "tool_choice": "auto"}, []
    )
    assert json_object["response_format"] == {"type": "json_object"}
    assert "tool_choice" not in json_object  # no tools: nothing to choose


def test_translate_request_s_smaller_cases() -> None:
    items = [
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "refusal", "refusal": "No."}],
        },
        {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/i.png"}]},
    ]
    tools = [{"type": "function", "name": "f"}, {"type": "web_search"}]
    body = translate_request({"model": "m", "tools": tools, "tool_choice": "required"}, items)
    assert body["messages"] == [
        {"role": "assistant", "content": "No."},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://x/i.png"}}],
        },
    ]
    assert body["tools"] == [{"type": "function", "function": {"name": "f"}}]
    assert body["tool_choice"] == "required"


def test_the_handler_s_repr_and_its_client_closed() -> None:
    import asyncio

    handler = UpstreamHandler("http://127.0.0.1:9/v1/", api="chat")
    assert repr(handler) == "UpstreamHandler('http://127.0.0.1:9/v1', api='chat')"

    async def main() -> None:
        client = handler._client()
        assert handler._client() is client  # one per loop
        await handler.aclose()
        assert client.is_closed()
        await handler.aclose()  # none left: nothing to do

    asyncio.run(main())


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            {"type": "item_reference", "id": "x"},
            "The upstream's Chat Completions API cannot take an input item of type 'item_reference'.",
        ),
        (
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_file", "file_id": "f"}],
            },
            "The upstream's Chat Completions API cannot take a user content part of type "
            "'input_file'.",
        ),
    ],
)
def test_input_the_chat_api_cannot_carry_fails_it_as_invalid_prompt(
    item: dict[str, Any], message: str
) -> None:
    from runstate import Failed

    with pytest.raises(Failed) as failed:
        translate_request({"model": "m"}, [item])
    assert (failed.value.code, failed.value.message) == ("invalid_prompt", message)


def test_a_run_has_no_upstream(stub: tuple[Stub, str]) -> None:
    handler = UpstreamHandler(stub[1], api="chat")
    with in_thread(create_app("memory://", handler=handler)) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
        thread = client.beta.threads.create()
        run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_1")
        assert run.status == "failed" and run.last_error.message == (
            "The upstream handler generates responses; a run has no upstream."
        )
        client.close()


# --- runstate serve --upstream -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--upstream", "ftp://host"],
            "Invalid 'base_url': expected the http(s) URL of an "
            "OpenAI-compatible API (such as 'http://127.0.0.1:8000/v1'), got 'ftp://host'.",
        ),
        (
            ["--upstream", "http://h/v1", "--handler", "m:f"],
            "--handler and --upstream are two handlers: give one",
        ),
        (["--upstream-api", "chat"], "--upstream-api and --upstream-key-env go with --upstream"),
        (
            ["--upstream", "http://h/v1", "--upstream-key-env", "RUNSTATE_NO_SUCH_VAR"],
            "--upstream-key-env: $RUNSTATE_NO_SUCH_VAR is not set",
        ),
    ],
)
def test_serve_refuses_bad_upstream_options(args: list[str], message: str, tmp_path: Any) -> None:
    db = tmp_path / "runs.db"
    done = subprocess.run(
        [sys.executable, "-m", "runstate", "serve", f"sqlite:///{db}", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        f"runstate serve: error: {message}"
    )
    assert not db.exists()  # nothing started


def test_a_gateway_runs_more_jobs_at_once_by_default() -> None:
    from argparse import Namespace

    from runstate._serve import concurrency_of

    assert concurrency_of(Namespace(concurrency=None, upstream="http://h/v1")) == 64
    assert concurrency_of(Namespace(concurrency=None, upstream=None)) == 8
    assert concurrency_of(Namespace(concurrency=3, upstream="http://h/v1")) == 3


def test_serve_upstream_on_sqlite_with_its_key_from_the_environment(
    stub: tuple[Stub, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``runstate serve sqlite:///... --upstream URL --upstream-key-env VAR``: the key is
    read from the environment and sent to the upstream; the SDK's helpers read it all."""
    monkeypatch.setenv("RUNSTATE_TEST_UPSTREAM_KEY", "sk-upstream")
    args = ("--upstream", stub[1], "--upstream-key-env", "RUNSTATE_TEST_UPSTREAM_KEY")
    with server(f"sqlite:///{tmp_path / 'runs.db'}", *args) as gateway:
        client = openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0)
        model = unique("text:words=3")
        with client.responses.stream(model=model, input="Hi") as stream:
            final = stream.get_final_response()
        assert final.output_text == "The quick brown"
        background = create(client, unique("tools"), tools=[WEATHER])
        assert background.output[0].arguments == '{"city": "Paris0"}'
        client.close()
    sent = [
        key
        for (_, body), key in zip(stub[0].seen, stub[0].keys, strict=True)
        if body.get("model") == model
    ]
    assert sent and set(sent) == {"Bearer sk-upstream"}


def test_a_killed_gateway_s_response_resumes_on_another_replica(
    stub: tuple[Stub, str], pg_schema: str
) -> None:
    """``runstate serve --upstream`` twice on one PostgreSQL: A generates a slow response
    and is SIGKILLed mid-stream; the client resumes on B after the last event it saw.
    The response ends by the lost-worker rule (failed: it had streamed), and what B
    streams is exactly the stored events after that point."""
    store = pg_url(pg_schema)
    args = ("--upstream", stub[1], "--upstream-api", "chat", "--lease", "2")
    with (
        server(store, *args, killed_ok=True) as a,
        server(store, *args, "--workers", "0") as b,
    ):
        on_a = openai.OpenAI(base_url=a.url, api_key="unused", max_retries=0)
        on_b = openai.OpenAI(base_url=b.url, api_key="unused", max_retries=0)
        created = on_a.responses.create(
            model=unique("text:words=400,delay=0.05"), input="Hi", background=True
        )
        seen: list[Any] = []
        with on_a.responses.retrieve(created.id, stream=True) as stream:
            for event in stream:
                seen.append(event)
                if len(seen) >= 8:
                    break
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=15)
        resumed = list(
            on_b.responses.retrieve(
                created.id, stream=True, starting_after=seen[-1].sequence_number
            )
        )
        whole = streamed(on_b, created.id)
        assert [e.model_dump() for e in resumed] == [e.model_dump() for e in whole[len(seen) :]]
        assert resumed[-1].type == "response.failed"
        final = on_b.responses.retrieve(created.id)
        assert final.status == "failed"
        assert final.error.message == "The worker generating this response was lost."
        assert final.output_text and len(final.output_text) < len(" ".join(["w"] * 400))
        on_a.close()
        on_b.close()
