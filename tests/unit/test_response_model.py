"""The response object and its parts, checked as the public API checks them: what is
accepted comes out in the shape the ``openai`` package's model reads, and what is not is
a ``ValidationError`` naming the parameter."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.responses import Response as OpenAIResponse
from tables import response_in

from runstate import Response, ResponseEngine, ResponseStatus, ValidationError
from runstate._validate import MAX_ITEMS, validate_output, validate_response_usage

FUNCTION = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}


def test_every_kind_of_tool_and_choice_reads_back_in_the_sdks_shape() -> None:
    engine = ResponseEngine()
    tools = [
        FUNCTION,
        {"type": "function", "name": "ping", "parameters": None},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "web_search_preview"},
    ]
    for choice in (
        "none",
        "required",
        {"type": "function", "name": "ping"},
        {"type": "file_search"},
    ):
        response = engine.create(model="gpt-4o", input="hi", tools=tools, tool_choice=choice)
        OpenAIResponse.model_validate(response.to_dict())
        assert Response.from_dict(response.to_dict()) == response
    assert response.tools[1] == {
        "type": "function",
        "name": "ping",
        "parameters": None,
        "strict": True,
    }
    assert response.tools[0] == FUNCTION


@pytest.mark.parametrize(
    ("tools", "param", "message"),
    [
        ("f", "tools", "Invalid type for 'tools': expected an array, but got a string instead."),
        (
            [{"type": "function", "name": "f", "description": 3}],
            "tools[0].description",
            "Invalid type for 'tools[0].description': expected a string, but got a number instead.",
        ),
        (
            [{"type": "function", "name": "f", "parameters": "{}"}],
            "tools[0].parameters",
            "Invalid type for 'tools[0].parameters': expected an object, but got a string instead.",
        ),
        (
            [{"type": "function", "name": "f", "parameters": {"a": float("nan")}}],
            "tools",
            "Invalid 'tools[0].parameters.a': nan is not a JSON number.",
        ),
        (
            [{"type": "file_search", "vector_store_ids": [], "x": {1, 2}}],
            "tools",
            "Invalid 'tools[0].x': a set is not a JSON value.",
        ),
        (
            [{"type": "function", "name": "f"}] * 129,
            "tools",
            "Invalid 'tools': array too long. Expected an array with maximum length 128, but got an array with length 129 instead.",
        ),
    ],
)
def test_bad_tools_name_where(tools: Any, param: str, message: str) -> None:
    engine = ResponseEngine()
    with pytest.raises(ValidationError) as info:
        engine.create(model="m", input="hi", tools=tools)
    assert (info.value.param, info.value.message) == (param, message)


@pytest.mark.parametrize(
    ("choice", "param"),
    [
        ({"type": "function", "name": "f", "extra": 1}, "tool_choice.extra"),
        ({"type": "file_search", "extra": 1}, "tool_choice.extra"),
        ({"type": "teleport"}, "tool_choice"),
        ("sometimes", "tool_choice"),
        (3, "tool_choice"),
    ],
)
def test_bad_tool_choices(choice: Any, param: str) -> None:
    with pytest.raises(ValidationError) as info:
        ResponseEngine().create(model="m", input="hi", tool_choice=choice)
    assert info.value.param == param


def test_output_items_are_bounded_objects_with_a_type() -> None:
    assert validate_output(()) == []
    with pytest.raises(ValidationError, match="array too long") as info:
        validate_output([{"type": "message"}] * (MAX_ITEMS + 1))
    assert info.value.param == "output"
    with pytest.raises(ValidationError, match=r"Invalid 'output\[1\]'"):
        validate_output([{"type": "message"}, {"type": 3}])
    with pytest.raises(ValidationError, match="Invalid 'output': expected an array, got dict"):
        validate_output({"type": "message"})


def test_usage_fills_its_details_and_checks_its_sum() -> None:
    usage = validate_response_usage({"input_tokens": 3, "output_tokens": 2})
    assert usage == {
        "input_tokens": 3,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 5,
    }
    given = {
        "input_tokens": 3,
        "output_tokens": 2,
        "total_tokens": 5,
        "input_tokens_details": {"cached_tokens": 1},
        "output_tokens_details": {"reasoning_tokens": 2},
    }
    assert validate_response_usage(given)["input_tokens_details"]["cached_tokens"] == 1  # type: ignore[index]
    for bad in (
        {"input_tokens": 3},
        {"input_tokens": 3, "output_tokens": 2, "total_tokens": 6},
        {"input_tokens": 3, "output_tokens": 2, "output_tokens_details": []},
        {"input_tokens": 3, "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": -1}},
        {"input_tokens": True, "output_tokens": 2},
        [3, 2],
    ):
        with pytest.raises(ValidationError) as info:
            validate_response_usage(bad)
        assert info.value.param == "usage"


def ended(status: str) -> dict[str, Any]:
    """A stored response's public dict in ``status``, with the fields that go with it."""
    return response_in(ResponseEngine(), ResponseStatus(status)).to_dict()


@pytest.mark.parametrize(
    ("status", "change", "param"),
    [
        ("completed", {"error": {"code": "server_error"}}, "error"),
        ("failed", {"error": {"code": "nope", "message": "m"}}, "error"),
        ("failed", {"error": None}, "error"),
        ("incomplete", {"incomplete_details": {"reason": "tired"}}, "incomplete_details"),
        ("incomplete", {"incomplete_details": "max_output_tokens"}, "incomplete_details"),
        ("in_progress", {"incomplete_details": {"reason": "content_filter"}}, "incomplete_details"),
        ("in_progress", {"background": "yes"}, "background"),
        ("in_progress", {"instructions": 5}, "instructions"),
        ("in_progress", {"created_at": -1}, "created_at"),
        ("in_progress", {"previous_response_id": "run_1"}, "previous_response_id"),
        ("in_progress", {"output": [{"no": "type"}]}, "output"),
        ("in_progress", {"metadata": {"k": 1}}, "metadata"),
        ("in_progress", {"model": ""}, "model"),
        ("in_progress", {"status": "expired"}, "status"),
        ("in_progress", {"temperature": 9}, "temperature"),
    ],
)
def test_from_dict_refuses_a_malformed_response(
    status: str, change: dict[str, Any], param: str
) -> None:
    data = ended(status)
    assert data["status"] == status
    Response.from_dict(data)
    with pytest.raises(ValidationError) as info:
        Response.from_dict({**data, **change})
    assert info.value.param == param


@pytest.mark.parametrize("data", [None, [], "response", 3])
def test_from_dict_needs_an_object(data: Any) -> None:
    with pytest.raises(ValidationError, match="A response must be a JSON object"):
        Response.from_dict(data)


def test_the_response_object_is_the_sdks() -> None:
    data = ended("completed")
    assert list(data) == [
        "id",
        "object",
        "created_at",
        "status",
        "background",
        "completed_at",
        "error",
        "incomplete_details",
        "instructions",
        "max_output_tokens",
        "max_tool_calls",
        "model",
        "output",
        "parallel_tool_calls",
        "previous_response_id",
        "prompt_cache_key",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "store",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "truncation",
        "usage",
        "user",
        "metadata",
    ]
    parsed = OpenAIResponse.model_validate(data)
    assert parsed.output_text == Response.from_dict(data).output_text == "Hello"
    assert parsed.status == "completed" and str(ResponseStatus.COMPLETED) == "completed"
