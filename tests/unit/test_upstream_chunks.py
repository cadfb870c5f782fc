"""The chat translation, generated: any sequence of text pieces and function calls
(their arguments in any pieces), sent as chat completion chunks the way servers split
them, becomes a response whose output is the same text and calls, and whose stored
events the SDK's stream event models accept, in order. Run by a real ``Worker`` on the
memory store (hypothesis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from runstate import AsyncResponseEngine, Completed, Job, Worker
from runstate.upstream import _read_chat, _Sink

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)

text = st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=6)
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


async def feed(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item


async def generated(chunks: list[dict[str, Any]]) -> Any:
    """The response a Worker makes of ``chunks`` (a foreground response, generated now)."""
    engine = AsyncResponseEngine()

    async def handler(job: Job) -> Completed:
        sink = _Sink(job)
        return await sink.end(await _read_chat(feed(chunks), sink))

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
                [("call", "f" * 65, ["{}"])],
                "Invalid 'name': string too long. Expected a string with maximum length 64, "
                "but got a string with length 65 instead.",
            ),
        ]:
            _, done = await generated(chunks_of(segments, "stop"))
            assert done.status.value == "failed"
            assert done.error["message"] == f"The upstream sent what cannot be stored: {message}"

    asyncio.run(main())
