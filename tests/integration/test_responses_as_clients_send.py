"""The Responses API as real clients send it: the official openai client's helpers
(``responses.stream()``, a resumed stream, ``responses.parse()``), every input form and
create parameter, input items, ``store`` and ``previous_response_id``, and the refusals,
against the example server live on 127.0.0.1."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response as ClientResponse
from openai.types.responses import ResponseItem
from pydantic import BaseModel, TypeAdapter
from servers import SERVER

sys.path.insert(0, str(SERVER))
from scripted_executor import REPLY

pytestmark = pytest.mark.timeout(120)
WORDS = len(REPLY.split(" "))
TEXT_EVENTS = [
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * WORDS,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=url, api_key="test-key", max_retries=0) as made:
        yield made


@pytest.fixture(scope="module")
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as made:
        yield made


def strict(response: ClientResponse) -> ClientResponse:
    """The response read with the SDK's model, strictly, with nothing it does not know
    but ``store``, which the public API echoes and this SDK's model leaves out."""
    ClientResponse.model_validate(response.model_dump(mode="json", exclude_unset=True))
    assert set(response.model_extra or {}) <= {"store"}
    return response


def poll(client: openai.OpenAI, response_id: str) -> ClientResponse:
    while True:
        response = client.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress"):
            return strict(response)


def refused(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """The error of a create the server refuses with a 400, having stored nothing."""
    before = http.get("/responses/resp_missing").status_code
    answer = http.post("/responses", json=body)
    assert answer.status_code == 400, answer.text
    assert before == 404
    error: dict[str, Any] = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


# --- what the SDK's helpers read --------------------------------------------------------------


def test_the_stream_helper_rebuilds_a_text_reply(client: openai.OpenAI) -> None:
    with client.responses.stream(model="gpt-4o", input="Hi", background=True) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert types[:3] == ["response.created", "response.queued", "response.in_progress"]
    assert types[3:-1] == TEXT_EVENTS and types[-1] == "response.completed"
    assert final.output_text == REPLY and strict(final).status == "completed"
    (message,) = final.output
    assert message.type == "message" and message.content[0].logprobs == []


def test_a_resumed_stream_helper_continues_after_any_event(client: openai.OpenAI) -> None:
    created = client.responses.create(model="gpt-4o", input="Hi", background=True)
    done = poll(client, created.id)
    everything = list(client.responses.retrieve(created.id, stream=True))
    for n in (0, 4, 6, len(everything) - 2):
        with client.responses.stream(response_id=created.id, starting_after=n) as stream:
            rest = list(stream)
            final = stream.get_final_response()
        assert [e.sequence_number for e in rest] == list(range(n + 1, len(everything)))
        assert final.output_text == done.output_text == REPLY


def test_parse_returns_the_parsed_object(client: openai.OpenAI) -> None:
    class Weather(BaseModel):
        city: str
        degrees: int
        sunny: bool

    parsed = client.responses.parse(model="gpt-4o", input="Weather?", text_format=Weather)
    assert isinstance(parsed.output_parsed, Weather)
    assert parsed.output_parsed == Weather(city="text", degrees=1, sunny=True)
    assert parsed.text.format.type == "json_schema"  # echoed


def test_a_function_call_streams_its_item_and_arguments(client: openai.OpenAI) -> None:
    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    with client.responses.stream(
        model="gpt-4o", input="Find it", tools=[tool], tool_choice="required"
    ) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert types[2:-1] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    (call,) = final.output
    assert call.type == "function_call" and call.name == "lookup"
    assert json.loads(call.arguments) == {"input": "Find it"}
    # The client answers the call in a new response that continues this one.
    answer = client.responses.create(
        model="gpt-4o",
        previous_response_id=final.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "42"}],
        tools=[tool],
    )
    assert answer.output_text == REPLY and answer.previous_response_id == final.id


def test_a_cancelled_stream_ends_with_the_documented_extension(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model="gpt-4o", input="Hi", background=True, metadata={"delay": "5"}
    ) as stream:
        types = []
        for event in stream:  # the helper does not break on runstate's own end event
            types.append(event.type)
            if event.type == "response.created":
                response_id = event.response.id
            if event.type == "response.output_text.delta" and types.count(event.type) == 1:
                client.responses.cancel(response_id)
    assert types[-1] == "response.cancelled" and "response.completed" not in types
    cancelled = strict(client.responses.retrieve(response_id))
    assert cancelled.status == "cancelled"
