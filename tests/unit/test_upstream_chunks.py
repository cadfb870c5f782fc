"""The chat translation, generated: any sequence of text pieces and function calls
(their arguments in any pieces), sent as chat completion chunks the way servers split
them, becomes a response whose output is the same text and calls, and whose stored
events the SDK's stream event models accept, in order. Run by a real ``Worker`` on the
memory store (hypothesis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from runstate import AsyncResponseEngine, Completed, Job, Worker
from runstate.upstream import _read_chat, _read_responses, _Sink

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)

text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=6
)
pieces = st.lists(text, min_size=1, max_size=4)
segment = st.one_of(
    st.tuples(st.just("text"), pieces),
    st.tuples(st.just("call"), st.sampled_from(["f", "get_weather"]), pieces),
)


def chunks_of(segments: list[Any], finish: str) -> list[dict[str, Any]]:
    """Chat completion chunks for ``segments``: each piece a chunk, each call's id and
    name in its first."""
    out: list[dict[str, Any]] = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
    calls = 0
    for kind, *rest in segments:
        if kind == "text":
            out += [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in rest[0]]
            continue
        name, args = rest
        first = {"index": calls, "id": f"call_{calls}", "function": {"name": name, "arguments": ""}}
        out.append({"choices": [{"index": 0, "delta": {"tool_calls": [first]}}]})
        out += [
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": calls, "function": {"arguments": p}}]},
                    }
                ]
            }
            for p in args
        ]
        calls += 1
    out.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    out.append({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
    return out


def expected_output(segments: list[Any]) -> list[tuple[str, str, str]]:
    """(type, name, text or arguments) per output item: text pieces in a row are one
    message, until a call ends it."""
    items: list[tuple[str, str, str]] = []
    calls = 0
    for kind, *rest in segments:
        if kind == "text":
            if items and items[-1][0] == "message":
                items[-1] = ("message", "", items[-1][2] + "".join(rest[0]))
            else:
                items.append(("message", "", "".join(rest[0])))
        else:
            items.append(("function_call", rest[0], "".join(rest[1])))
            calls += 1
    return items


async def feed(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def generated(chunks: list[Any], read: Any = _read_chat) -> Any:
    """The response a Worker makes of ``chunks`` (a foreground response, generated now),
    read as chat chunks or (``read=_read_responses``) as Responses events."""
    engine = AsyncResponseEngine()

    async def handler(job: Job) -> Completed:
        sink = _Sink(job)
        return await sink.end(await read(feed(chunks), sink))

    response = await engine.create(model="m", input="Hi", background=False)
    await Worker(engine, handler).perform(response)
    return engine, await engine.get(response.id)


@settings(max_examples=60, deadline=None)
@given(
    segments=st.lists(segment, min_size=1, max_size=5),
    finish=st.sampled_from(["stop", "tool_calls", "length"]),
)
def test_any_chunked_stream_becomes_the_same_output(segments: list[Any], finish: str) -> None:
    async def main() -> None:
        engine, done = await generated(chunks_of(segments, finish))
        assert done.status.value == ("incomplete" if finish == "length" else "completed")
        got = [
            (
                item["type"],
                item.get("name", ""),
                item["content"][0]["text"] if item["type"] == "message" else item["arguments"],
            )
            for item in done.output
        ]
        assert got == expected_output(segments)
        assert all(item["status"] == "completed" for item in done.output)
        events = await engine.events(done.id)
        for event in events:
            EVENTS.validate_python(event.payload(), strict=True)
        assert done.usage is not None and done.usage["total_tokens"] == 3

    asyncio.run(main())


def test_what_the_store_cannot_take_fails_the_response_saying_so() -> None:
    async def main() -> None:
        for segments, message in [
            ([("text", ["a\x00"])], "Invalid 'text': the string holds a NUL character."),
            (
                [("text", ["\ud800"])],  # JSON may escape one: "\ud800"
                "Invalid 'text': the string is not valid UTF-8 (it holds a lone surrogate).",
            ),
            (
                [("call", "f" * 65, ["{}"])],
                "Invalid 'name': string too long. Expected a string with maximum length 64, "
                "but got a string with length 65 instead.",
            ),
        ]:
            _, done = await generated(chunks_of(segments, "stop"))
            assert done.status.value == "failed"
            assert done.error["message"] == f"The upstream sent what cannot be stored: {message}"

    asyncio.run(main())


def choice(delta: Any, **more: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, **more}]}


MALFORMED = "The upstream sent a malformed event: "
STOP = choice({}, finish_reason="stop")


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([{"choices": "x"}], 'a chunk has a list of \'choices\', got {"choices": "x"}.'),
        ([{"choices": [5]}], "a choice has a 'delta' object, got {\"choices\": [5]}."),
        (
            [choice({"content": 5})],
            'a delta\'s \'content\' is a string, got {"choices": [{"index": 0, "delta": '
            '{"content": 5}}]}.',
        ),
        (
            [choice({"tool_calls": [{"index": "a"}]})],
            "a tool call delta has an integer 'index' and a 'function', got {\"choices\": "
            '[{"index": 0, "delta": {"tool_calls": [{"index": "a"}]}}]}.',
        ),
    ],
)
def test_a_malformed_chat_chunk_fails_it_naming_what_is_wrong(
    chunks: list[Any], message: str
) -> None:
    _, done = asyncio.run(generated([*chunks, STOP]))
    assert done.status.value == "failed" and done.error["message"] == MALFORMED + message


def test_what_a_chat_stream_may_hold_besides() -> None:
    """A usage chunk with no choices, a second choice (never asked for), a usage of
    something other than counts: read past, not failed."""
    chunks = [
        choice({"content": "Hi"}),
        {"choices": [{"index": 1, "delta": {"content": "other"}}]},
        {"usage": {"prompt_tokens": "many", "completion_tokens": 1}},
        STOP,
    ]
    _, done = asyncio.run(generated(chunks))
    assert done.status.value == "completed" and done.output_text == "Hi" and done.usage is None


def event(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, **data}


CALL = {"type": "function_call", "name": "f", "call_id": "c1", "arguments": ""}
COMPLETED = event("response.completed", response={"usage": None})


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([event("response.output_text.delta", delta=5)], "a text delta's 'delta' is a string"),
        (
            [event("response.function_call_arguments.delta", delta="{}")],
            "arguments' 'delta' is a string, of an open function call",
        ),
        ([event("response.output_item.added", item=5)], "an item event carries its 'item'"),
        (
            [event("response.output_item.added", item={**CALL, "name": None})],
            "a function call has a 'name' and 'arguments'",
        ),
        ([event("response.completed", response=5)], "an ending event carries its 'response'"),
        ([{"sequence_number": 1}], "an event has a 'type'"),
    ],
)
def test_a_malformed_responses_event_fails_it(events: list[Any], message: str) -> None:
    _, done = asyncio.run(generated([*events, COMPLETED], _read_responses))
    assert done.status.value == "failed"
    assert done.error["message"].startswith(MALFORMED + message + ", got ")


def test_the_upstream_s_ending_carries_over() -> None:
    failed = event(
        "response.failed",
        response={"error": {"code": "rate_limit_exceeded", "message": "slow down"}},
    )
    _, done = asyncio.run(generated([failed], _read_responses))
    assert (done.error["code"], done.error["message"]) == (
        "rate_limit_exceeded",
        "The upstream failed: slow down",
    )
    odd = event("response.failed", response={"error": {"code": "odd"}})
    _, done = asyncio.run(generated([odd], _read_responses))
    assert (done.error["code"], done.error["message"]) == (
        "server_error",
        "The upstream failed: no message",
    )
    _, done = asyncio.run(generated([event("error", message="boom")], _read_responses))
    assert done.error["message"] == "The upstream failed: boom"
    unknown = event("response.incomplete", response={"incomplete_details": {"reason": "x"}})
    _, done = asyncio.run(generated([unknown], _read_responses))
    assert done.incomplete_details == {"reason": "max_output_tokens"}


def test_a_call_whose_arguments_came_only_with_its_end() -> None:
    """Some servers send a call's arguments only in ``output_item.done``: what no delta
    carried is added before it closes."""
    events = [
        event("response.output_item.added", item=CALL),
        event("response.function_call_arguments.delta", delta='{"a"'),
        event("response.output_item.done", item={**CALL, "arguments": '{"a": 1}'}),
        event("response.output_item.done", item={**CALL, "arguments": "late"}),  # not open
        COMPLETED,
    ]
    _, done = asyncio.run(generated(events, _read_responses))
    assert [item["arguments"] for item in done.output] == ['{"a": 1}']
