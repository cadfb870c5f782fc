"""The Responses API as real clients send it: the official openai client's helpers
(``responses.stream()``, a resumed stream, ``responses.parse()``), every input form and
create parameter, input items, ``store`` and ``previous_response_id``, and the refusals,
against the server live on 127.0.0.1."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from openai.types.responses import ResponseItem
from pydantic import BaseModel, TypeAdapter
from request_bodies import BODIES, within_documented_ranges
from servers import poll, strict

from runstate import GATED_PARAMETERS
from runstate.server._demo import REPLY

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


# --- every input form, sent by the official client -------------------------------------------

IMAGE = {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"}
FILE = {"type": "input_file", "file_id": "file-abc"}
AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
INPUTS: dict[str, Any] = {
    "a string": "Hi",
    "a user message without type": [{"role": "user", "content": "Hi"}],
    "a typed message": [{"type": "message", "role": "user", "content": "Hi"}],
    "system, developer, user": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Answer in English."},
        {"role": "user", "content": "Hi"},
    ],
    "multi-turn with the assistant": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Again"},
    ],
    "content parts": [
        {"role": "user", "content": [{"type": "input_text", "text": "Look"}, IMAGE, FILE, AUDIO]}
    ],
    "a function call and its output": [
        {"role": "user", "content": "Weather?"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ],
    "a reasoning item": [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "ok"}]},
        {"role": "user", "content": "Go on"},
    ],
}


@pytest.mark.parametrize("given", INPUTS.values(), ids=INPUTS.keys())
def test_every_documented_input_form_is_accepted_and_kept(
    client: openai.OpenAI, http: httpx.Client, given: Any
) -> None:
    created = strict(client.responses.create(model="gpt-4o", input=given, background=True))
    items = client.responses.input_items.list(created.id, order="asc")
    expected = 1 if isinstance(given, str) else len(given)
    assert len(items.data) == expected and all(item.id for item in items.data)
    raw = http.get(f"/responses/{created.id}/input_items", params={"order": "asc"}).json()
    for item in raw["data"]:  # the SDK's listing model lacks the input_audio part
        if item["type"] == "message":
            item["content"] = [p for p in item["content"] if p["type"] != "input_audio"]
    listed = TypeAdapter(list[ResponseItem]).validate_python(raw["data"], strict=True)
    assert [item.type for item in listed] == [
        "message" if isinstance(given, str) else item.get("type", "message")
        for item in ([{}] if isinstance(given, str) else given)
    ]
    assert poll(client, created.id).status == "completed"


@pytest.mark.parametrize(
    ("given", "path", "message"),
    [
        (
            [
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "user", "content": [{"type": "input_text", "text": 3}]},
            ],
            "input[2].content[0].text",
            "Invalid type for 'input[2].content[0].text': expected a string, but got a number instead.",
        ),
        (
            [{"role": "robot", "content": "Hi"}],
            "input[0].role",
            "Invalid value for 'input[0].role': 'robot'. Supported values are 'user', 'assistant', 'system' or 'developer'.",
        ),
        (
            [{"role": "user", "content": "Hi", "colour": "red"}],
            "input[0].colour",
            "Unknown parameter: 'input[0].colour'.",
        ),
        (
            [{"type": "function_call_output", "call_id": "c"}],
            "input[0].output",
            "Missing required parameter: 'input[0].output'.",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": "x", "format": "ogg"}}
                    ],
                }
            ],
            "input[0].content[0].input_audio.format",
            "Invalid value for 'input[0].content[0].input_audio.format': 'ogg'. Supported values are 'mp3' or 'wav'.",
        ),
        ([], "input", "Invalid 'input': expected a non-empty string or array."),
        ("Hi\x00", "input", "Invalid 'input': the string holds a NUL character."),
    ],
)
def test_a_malformed_input_is_a_400_naming_its_path(
    http: httpx.Client, given: Any, path: str, message: str
) -> None:
    error = refused(http, {"model": "gpt-4o", "input": given, "background": True})
    assert (error["param"], error["message"]) == (path, message)


def test_an_unknown_item_type_names_the_documented_ones(http: httpx.Client) -> None:
    error = refused(http, {"model": "gpt-4o", "input": [{"type": "telepathy"}]})
    assert error["param"] == "input[0]"
    assert error["message"].startswith(
        "Invalid value for 'input[0]': expected an object whose 'type' is one of ['additional_tools',"
    )
    assert "'function_call_output'" in error["message"] and "'message'" in error["message"]


# --- every create parameter ---------------------------------------------------------------------

FUNCTION = {
    "type": "function",
    "name": "lookup",
    "description": "Look up",
    "parameters": {"type": "object"},
}


def test_defaults_nulls_hints_and_identifiers_are_never_refused(client: openai.OpenAI) -> None:
    created = strict(
        client.responses.create(
            model="gpt-4o",
            input="Hi",
            background=True,
            truncation="disabled",
            service_tier="auto",
            include=[],
            user="user-1",
            safety_identifier="hashed-user",
            prompt_cache_key="cache-1",
            prompt_cache_retention="24h",
            parallel_tool_calls=None,
            stream_options=None,
            top_logprobs=0,
            max_tool_calls=3,
            reasoning={"effort": "low", "summary": "auto"},
            text={"format": {"type": "text"}, "verbosity": "low"},
            temperature=None,
            top_p=None,
            instructions=None,
            store=True,
        )
    )
    assert created.truncation == "disabled" and created.service_tier == "auto"
    assert created.user == "user-1" and created.safety_identifier == "hashed-user"
    assert created.prompt_cache_key == "cache-1" and created.max_tool_calls == 3
    assert created.parallel_tool_calls is True  # null: the default
    assert created.reasoning is not None and created.reasoning.effort == "low"
    assert created.text is not None and created.text.verbosity == "low"
    assert (created.temperature, created.top_p, created.top_logprobs) == (1.0, 1.0, 0)


def test_the_response_echoes_the_request_with_the_documented_defaults(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    bare = http.post("/responses", json={"model": "gpt-4o", "input": "Hi", "background": True})
    echoed = {k: v for k, v in bare.json().items() if k not in ("id", "created_at", "status")}
    assert echoed == {
        "object": "response",
        "background": True,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "model": "gpt-4o",
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": None,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": None,
        "service_tier": "auto",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": {},
    }
    given = {
        "instructions": "Be brief.",
        "tools": [FUNCTION],
        "tool_choice": {"type": "function", "name": "lookup"},
        "temperature": 0.5,
        "top_p": 0.9,
        "top_logprobs": 5,
        "max_output_tokens": 100,
        "max_tool_calls": 2,
        "parallel_tool_calls": False,
        "truncation": "auto",
        "service_tier": "flex",
        "metadata": {"k": "v"},
        "user": "u",
        "safety_identifier": "s",
        "prompt_cache_key": "c",
    }
    made = strict(client.responses.create(model="gpt-4o", input="Hi", background=True, **given))
    out = http.get(f"/responses/{made.id}").json()
    for name, value in given.items():
        expected = [{**FUNCTION, "strict": True}] if name == "tools" else value
        assert out[name] == expected, name


def test_the_whole_request_is_kept_for_the_worker(http: httpx.Client, url: str) -> None:
    from runstate import ResponseEngine  # the server's store is its own; read it through HTTP

    body = {
        "model": "gpt-4o",
        "input": [{"role": "user", "content": "Hi"}],
        "background": True,
        "text": {"format": {"type": "json_object"}},
        "reasoning": {"effort": "high"},
        "include": ["message.output_text.logprobs"],
        "user": "u",
    }
    made = http.post("/responses", json=body).json()
    assert made["text"] == body["text"] and made["reasoning"] == {"effort": "high"}
    engine = ResponseEngine()
    kept = engine.create(**body)
    assert engine.request_of(kept.id) == body
    assert engine.input_of(kept.id) == body["input"]


@pytest.mark.parametrize(
    ("extra", "param", "message"),
    [
        (
            {"stream": "yes"},
            "stream",
            "Invalid type for 'stream': expected a boolean, but got a string instead.",
        ),
        (
            {"background": "yes"},
            "background",
            "Invalid type for 'background': expected a boolean, but got a string instead.",
        ),
        (
            {"store": 1},
            "store",
            "Invalid type for 'store': expected a boolean, but got a number instead.",
        ),
        (
            {"truncation": "sometimes"},
            "truncation",
            "Invalid value for 'truncation': 'sometimes'. Supported values are 'auto' or 'disabled'.",
        ),
        (
            {"temperature": 5},
            "temperature",
            "Invalid 'temperature': expected a number from 0 to 2, got 5.",
        ),
        (
            {"top_p": "1"},
            "top_p",
            "Invalid type for 'top_p': expected a number, but got a string instead.",
        ),
        (
            {"top_logprobs": 21},
            "top_logprobs",
            "Invalid 'top_logprobs': expected an integer from 0 to 20, got 21.",
        ),
        (
            {"max_output_tokens": 1},
            "max_output_tokens",
            "Invalid 'max_output_tokens': expected an integer from 16 to 9223372036854775807, got 1.",
        ),
        (
            {"max_tool_calls": 0},
            "max_tool_calls",
            "Invalid 'max_tool_calls': expected an integer from 1 to 9223372036854775807, got 0.",
        ),
        ({"include": ["everything"]}, "include[0]", None),
        (
            {"metadata": {"k": 1}},
            "metadata.k",
            "Invalid type for 'metadata.k': expected a string, but got a number instead.",
        ),
        (
            {"tools": [{"type": "function", "name": "f", "strict": "x"}]},
            "tools[0].strict",
            "Invalid type for 'tools[0].strict': expected a boolean, but got a string instead.",
        ),
        ({"tool_choice": "sometimes"}, "tool_choice", None),
        (
            {"text": {"format": {"type": "json_schema"}}},
            "text.format.name",
            "Missing required parameter: 'text.format.name'.",
        ),
        ({"teleport": True}, "teleport", "Unrecognized request argument supplied: teleport"),
        (
            {"store": False},
            "store",
            "Background mode requires 'store' to be true: a background response is kept to be polled.",
        ),
        (
            {"previous_response_id": "resp_missing"},
            "previous_response_id",
            "Previous response with id 'resp_missing' not found.",
        ),
        ({"model": ""}, "model", "Invalid 'model': expected a non-empty string."),
    ],
)
def test_a_wrong_type_or_value_is_a_400_naming_the_parameter(
    http: httpx.Client, extra: dict[str, Any], param: str, message: str | None
) -> None:
    error = refused(http, {"model": "gpt-4o", "input": "Hi", "background": True, **extra})
    assert error["param"] == param
    if message is not None:
        assert error["message"] == message


@pytest.mark.parametrize(
    ("extra", "param", "message"),
    [
        (
            {
                "tools": [
                    {"type": "mcp", "server_label": "docs", "server_url": "https://example.com/mcp"}
                ]
            },
            "tools[0].type",
            "Tool type 'mcp' is not supported by this deployment (tools[0]); it supports ['function'].",
        ),
        (
            {"tools": [{"type": "custom", "name": "grammar"}]},
            "tools[0].type",
            "Tool type 'custom' is not supported by this deployment (tools[0]); it supports ['function'].",
        ),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", None),
        (
            {"prompt": {"id": "pmpt_1"}},
            "prompt",
            "The parameter 'prompt' is not supported by this deployment.",
        ),
        (
            {"conversation": "conv_1"},
            "conversation",
            "The parameter 'conversation' is not supported by this deployment.",
        ),
        (
            {"context_management": [{"type": "compaction"}]},
            "context_management",
            "The parameter 'context_management' is not supported by this deployment.",
        ),
    ],
)
def test_what_the_deployment_cannot_honour_is_refused_by_its_capabilities(
    http: httpx.Client, extra: dict[str, Any], param: str, message: str | None
) -> None:
    error = refused(http, {"model": "gpt-4o", "input": "Hi", "background": True, **extra})
    assert error["param"] == param
    if message is not None:
        assert error["message"] == message


def test_the_engine_accepts_every_documented_shape_and_a_declared_set_refuses() -> None:
    from runstate import Capabilities, ResponseEngine, ValidationError

    tools = [
        {"type": "mcp", "server_label": "docs", "server_url": "https://example.com/mcp"},
        {"type": "custom", "name": "grammar"},
        {**FUNCTION, "defer_loading": True, "output_schema": {"type": "object"}},
    ]
    engine = ResponseEngine()
    made = engine.create(model="m", input="Hi", tools=tools, prompt={"id": "pmpt_1"})
    assert [tool["type"] for tool in made.tools] == ["mcp", "custom", "function"]
    mcp_only = ResponseEngine(engine.store, capabilities=Capabilities(tools=frozenset({"mcp"})))
    assert mcp_only.create(model="m", input="Hi", tools=tools[:1]).tools[0]["type"] == "mcp"
    with pytest.raises(ValidationError, match="'custom' is not supported") as info:
        mcp_only.create(model="m", input="Hi", tools=tools)
    assert info.value.param == "tools[1].type"
    assert len(engine.list().data) == 2  # the refused create stored nothing


# --- input items, store, the other endpoints, the stream's parameters -----------------------


def test_input_items_are_listed_as_the_api_lists_them(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    given = [{"role": "user", "content": f"Turn {i}"} for i in range(5)]
    made = client.responses.create(model="gpt-4o", input=given, background=True)
    newest_first = client.responses.input_items.list(made.id)
    assert [item.content[0].text for item in newest_first.data] == [
        f"Turn {i}" for i in range(4, -1, -1)
    ]
    assert all(
        item.id.startswith("msg_") and item.status == "completed" for item in newest_first.data
    )
    page = client.responses.input_items.list(made.id, order="asc", limit=2)
    assert [item.content[0].text for item in page.data] == ["Turn 0", "Turn 1"]
    assert page.has_more and page.first_id == page.data[0].id and page.last_id == page.data[1].id
    rest = client.responses.input_items.list(made.id, order="asc", after=page.last_id, limit=10)
    assert [item.content[0].text for item in rest.data] == ["Turn 2", "Turn 3", "Turn 4"]
    assert not rest.has_more
    everything = [item.id for item in page.data + rest.data]
    assert list(client.responses.input_items.list(made.id, order="asc", limit=1)) == [
        item for item in client.responses.input_items.list(made.id, order="asc", limit=100).data
    ]  # the client's auto-paging walks the same items
    assert len(set(everything)) == 5
    with_include = http.get(
        f"/responses/{made.id}/input_items", params={"include[]": "message.output_text.logprobs"}
    )
    assert with_include.status_code == 200
    for params, param in [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"after": "msg_nope"}, "after"),
        ({"include[]": "everything"}, "include"),
    ]:
        answer = http.get(f"/responses/{made.id}/input_items", params=params)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param, params
    assert http.get("/responses/resp_missing/input_items").status_code == 404


def test_store_false_is_answered_and_not_kept(client: openai.OpenAI, http: httpx.Client) -> None:
    answered = strict(client.responses.create(model="gpt-4o", input="Hi", store=False))
    assert answered.status == "completed" and answered.output_text == REPLY
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(answered.id)
    with pytest.raises(openai.BadRequestError, match="not found"):
        client.responses.create(model="gpt-4o", input="Go on", previous_response_id=answered.id)
    with client.responses.stream(model="gpt-4o", input="Hi", store=False) as stream:
        final = stream.get_final_response()
    assert final.output_text == REPLY
    poll_until_gone(http, final.id)


def poll_until_gone(http: httpx.Client, response_id: str) -> None:
    """A streamed ``store: false`` response is deleted once its stream has ended."""
    while http.get(f"/responses/{response_id}").status_code != 404:
        pass


def test_input_tokens_and_compact_are_refused_with_the_public_error_body(
    http: httpx.Client,
) -> None:
    for path in ("/responses/input_tokens", "/responses/compact"):
        answer = http.post(path, json={"model": "gpt-4o", "input": "Hi"})
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json() == {
            "error": {
                "message": f"/v1{path} is not supported by this deployment's model.",
                "type": "invalid_request_error",
                "param": None,
                "code": "unsupported",
            }
        }


def test_the_stream_parameters_are_named_as_the_client_sent_them(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    made = client.responses.create(model="gpt-4o", input="Hi", background=True)
    poll(client, made.id)
    cases = [
        (
            {"stream": "true", "starting_after": "-1"},
            "starting_after",
            "Invalid 'starting_after': expected an integer from 0 to 9223372036854775807, got -1.",
        ),
        (
            {"stream": "true", "starting_after": "x"},
            "starting_after",
            "Invalid type for 'starting_after': expected an integer, but got 'x' instead.",
        ),
        (
            {"starting_after": "2"},
            "starting_after",
            "'starting_after' can only be used with 'stream=true'.",
        ),
        (
            {"stream": "yes"},
            "stream",
            "Invalid value for 'stream': 'yes'. Supported values are 'true' or 'false'.",
        ),
    ]
    for params, param, message in cases:
        answer = http.get(f"/responses/{made.id}", params=params)
        assert answer.status_code == 400, (params, answer.text)
        assert answer.json()["error"]["param"] == param
        assert answer.json()["error"]["message"] == message
    streamed = http.get(f"/responses/{made.id}", params={"stream": "true", "starting_after": "3"})
    assert streamed.status_code == 200 and 'sequence_number":4' in streamed.text
    assert http.get(f"/responses/{made.id}", params={"stream": "false"}).json()["id"] == made.id


def test_a_body_that_is_not_a_json_object_is_a_400(http: httpx.Client) -> None:
    for content, message in [
        (b"{not json", "We could not parse the JSON body of your request."),
        (b"[1, 2]", "The request body must be a JSON object, got list."),
    ]:
        answer = http.post(
            "/responses", content=content, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400 and answer.json()["error"]["message"] == message


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=BODIES.map(within_documented_ranges))
def test_generated_bodies_sent_by_the_official_client(
    client: openai.OpenAI, body: dict[str, Any]
) -> None:
    """Every documented create parameter, sent by the official client: accepted, or
    refused by the demo deployment's capabilities (naming what it cannot honour)."""
    body = {**body, "background": True, "store": True, "stream": False}
    try:
        made = client.responses.create(**body)
    except openai.BadRequestError as refusal:
        error = refusal.body
        assert isinstance(error, dict)
        assert error["param"] in GATED_PARAMETERS or re.fullmatch(
            r"tools\[\d+\]\.type", error["param"]
        ), error
        assert "is not supported by this deployment" in error["message"]
    else:
        assert strict(client.responses.retrieve(made.id)).id == made.id
