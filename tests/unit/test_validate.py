"""The one validation rule and its messages, value by value."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

from runstate import ValidationError
from runstate._validate import (
    MAX_DEPTH,
    json_value,
    require_int,
    require_seconds,
    require_string,
    validate_file_ids,
    validate_last_error,
    validate_metadata,
    validate_required_action,
    validate_tool_calls,
    validate_tool_outputs,
    validate_tools,
)


class Text(str):
    pass


class Number(int):
    pass


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def refused(call: Any, message: str, param: str) -> None:
    with pytest.raises(ValidationError) as caught:
        call()
    assert caught.value.message == message
    assert caught.value.param == param
    assert caught.value.http_status == 400


def test_strings() -> None:
    assert require_string("ok", "p") == "ok"
    assert require_string("héllo ✓", "p") == "héllo ✓"
    assert type(require_string(Text("sub"), "p")) is str  # a str subclass becomes a str
    assert require_string("", "p", allow_empty=True) == ""
    refused(lambda: require_string(5, "p"), "Invalid 'p': expected a string, got int.", "p")
    refused(lambda: require_string("", "p"), "Invalid 'p': expected a non-empty string.", "p")
    refused(
        lambda: require_string("abc", "p", max_length=2),
        "Invalid 'p': string too long. Expected a string with maximum length 2, but got a "
        "string with length 3 instead.",
        "p",
    )
    refused(
        lambda: require_string("a\x00", "p"), "Invalid 'p': the string holds a NUL character.", "p"
    )
    refused(
        lambda: require_string("é\x00", "p"), "Invalid 'p': the string holds a NUL character.", "p"
    )
    refused(
        lambda: require_string("\ud800", "p"),
        "Invalid 'p': the string is not valid UTF-8 (it holds a lone surrogate).",
        "p",
    )


def test_integers_and_seconds() -> None:
    assert require_int(Number(5), "n") == 5 and type(require_int(Number(5), "n")) is int
    for bad in (True, 1.0, "1", 0, 2**63):
        with pytest.raises(ValidationError, match="Invalid 'n': expected an integer from 1 to"):
            require_int(bad, "n")
    long = "x" * 100
    with pytest.raises(ValidationError) as caught:
        require_int(long, "n")
    assert caught.value.message.endswith("got '" + "x" * 56 + "....")  # cut at 60
    assert require_seconds(0.5, "s") == 0.5
    for bad in (0, -1, float("nan"), float("inf"), True, "1", 86_401):
        with pytest.raises(ValidationError, match="expected a finite number of seconds above 0"):
            require_seconds(bad, "s")
    refused(
        lambda: require_seconds(2, "s", maximum=1.5),
        "Invalid 's': expected a finite number of seconds above 0 and at most 1.5, got 2.",
        "s",
    )


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_a_value_whose_repr_fails_is_still_named() -> None:
    refused(
        lambda: require_int(BadRepr(), "n"),
        "Invalid 'n': expected an integer from 1 to 9223372036854775807, got <BadRepr>.",
        "n",
    )


def test_json_values() -> None:
    value = OrderedDict(
        a=None, b=True, c=Number(3), d=1.5, e=Text("t"), f=(1, [2, {"g": "h"}]), i=-(2**63)
    )
    assert json_value(value, "p") == {
        "a": None,
        "b": True,
        "c": 3,
        "d": 1.5,
        "e": "t",
        "f": [1, [2, {"g": "h"}]],
        "i": -(2**63),
    }
    assert json_value(nested(MAX_DEPTH), "p") == nested(MAX_DEPTH)
    refused(
        lambda: json_value(nested(MAX_DEPTH + 1), "p"),
        f"Invalid 'p{'[0]' * MAX_DEPTH}': nested deeper than 32 levels.",
        "p",
    )
    refused(
        lambda: json_value({"k": [1, 2**63]}, "p"),
        "Invalid 'p.k[1]': the integer is outside 64 bits.",
        "p",
    )
    refused(
        lambda: json_value({"k": float("nan")}, "p"),
        "Invalid 'p.k': nan is not a JSON number.",
        "p",
    )
    refused(
        lambda: json_value({"k": float("inf")}, "p"),
        "Invalid 'p.k': inf is not a JSON number.",
        "p",
    )
    refused(
        lambda: json_value({1: "v"}, "p"), "Invalid 'p': object keys must be strings, got 1.", "p"
    )
    refused(
        lambda: json_value({"\ud800": 1}, "p"),
        "Invalid 'p': the string is not valid UTF-8 (it holds a lone surrogate).",
        "p",
    )
    refused(lambda: json_value([b"x"], "p"), "Invalid 'p[0]': a bytes is not a JSON value.", "p")
    refused(lambda: json_value({1, 2}, "p"), "Invalid 'p': a set is not a JSON value.", "p")


def test_metadata() -> None:
    assert validate_metadata(None) == {}
    assert validate_metadata({Text("k"): Text("v")}) == {"k": "v"}
    refused(
        lambda: validate_metadata(["k"]),
        "Invalid 'metadata': expected an object, got list.",
        "metadata",
    )
    refused(
        lambda: validate_metadata({"k": 1}, "thread.metadata"),
        "Invalid 'thread.metadata.k': expected a string, got int.",
        "thread.metadata",
    )
    refused(
        lambda: validate_metadata({(1,): "v"}),
        "Invalid 'metadata': keys must be strings, got (1,).",
        "metadata",
    )
    refused(
        lambda: validate_metadata({"k": "a\x00"}),
        "Invalid 'metadata.k': the string holds a NUL character.",
        "metadata",
    )


FUNCTION = {"type": "function", "function": {"name": "get_weather"}}


def test_tools_as_the_public_schema_has_them() -> None:
    tools = [
        {"type": "code_interpreter"},
        {"type": "retrieval"},
        {"type": "file_search"},
        {"type": "file_search", "file_search": {"max_num_results": 5}},
        {
            "type": "function",
            "function": {
                "name": "get-weather_2",
                "description": "The weather.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                "strict": None,
            },
        },
    ]
    assert validate_tools(tuple(tools)) == tools
    assert validate_tools(None) == []
    assert validate_tools([FUNCTION] * 128) == [FUNCTION] * 128


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ({"type": "function"}, "Invalid 'tools': expected an array, got dict."),
        (
            [FUNCTION] * 129,
            "Invalid 'tools': array too long. Expected an array with maximum length 128, but got "
            "an array with length 129 instead.",
        ),
        (
            [{"type": []}],
            "Invalid 'tools[0]': expected an object whose 'type' is one of ['code_interpreter', "
            "'file_search', 'function', 'retrieval'].",
        ),
        (["function"], "Invalid 'tools[0]': expected an object whose 'type' is one of"),
        ([{"type": "retrieval", "x": 1}], "Unknown parameter: 'tools[0].x'."),
        ([{"type": "retrieval", 5: 1}], "Unknown parameter: 'tools[0].5'."),
        ([{"type": "file_search", "file_search": 3}], "Invalid 'tools[0].file_search': expected"),
        (
            [{"type": "file_search", "file_search": {"k": float("nan")}}],
            "Invalid 'tools[0].file_search.k': nan is not a JSON number.",
        ),
        ([{"type": "function"}], "Invalid 'tools[0].function': expected an object with a 'name'."),
        (
            [{"type": "function", "function": {"name": "f", "colour": 1}}],
            "Unknown parameter: 'tools[0].function.colour'.",
        ),
        (
            [{"type": "function", "function": {"name": "get weather"}}],
            "Invalid 'tools[0].function.name': expected a string of 1 to 64 letters, digits, "
            "underscores or dashes, got 'get weather'.",
        ),
        (
            [{"type": "function", "function": {"name": "f" * 65}}],
            "Invalid 'tools[0].function.name': expected a string of 1 to 64 letters",
        ),
        (
            [{"type": "function", "function": {"name": "f", "description": 5}}],
            "Invalid 'tools[0].function.description': expected a string, got int.",
        ),
        (
            [{"type": "function", "function": {"name": "f", "description": "\ud800"}}],
            "Invalid 'tools[0].function.description': the string is not valid UTF-8",
        ),
        (
            [{"type": "function", "function": {"name": "f", "parameters": []}}],
            "Invalid 'tools[0].function.parameters': expected an object, got list.",
        ),
        (
            [{"type": "function", "function": {"name": "f", "parameters": {"a": 1e999}}}],
            "Invalid 'tools[0].function.parameters.a': inf is not a JSON number.",
        ),
        (
            [{"type": "function", "function": {"name": "f", "strict": "yes"}}],
            "Invalid 'tools[0].function.strict': expected a boolean or null.",
        ),
    ],
)
def test_tools_refused(tools: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_tools(tools)
    assert caught.value.message.startswith(message)
    assert caught.value.param == "tools"


def test_file_ids() -> None:
    assert validate_file_ids(None) == [] and validate_file_ids(("f",)) == ["f"]
    refused(
        lambda: validate_file_ids(["f", 1]),
        "Invalid 'file_ids': expected an array of strings.",
        "file_ids",
    )
    refused(
        lambda: validate_file_ids(["\x00"]),
        "Invalid 'file_ids': the string holds a NUL character.",
        "file_ids",
    )


def test_tool_calls_and_outputs() -> None:
    calls = validate_tool_calls([{"function": {"name": "f"}}], lambda: "call_new")
    assert calls == [
        {"id": "call_new", "type": "function", "function": {"name": "f", "arguments": ""}}
    ]
    refused(
        lambda: validate_tool_calls([{"id": "c\ud800", "function": {"name": "f"}}], str),
        "Invalid 'tool_calls[0].id': the string is not valid UTF-8 (it holds a lone surrogate).",
        "tool_calls",
    )
    refused(
        lambda: validate_tool_calls(
            [{"id": "c", "function": {"name": "f", "arguments": "\x00"}}], str
        ),
        "Invalid 'tool_calls[0].function.arguments': the string holds a NUL character.",
        "tool_calls",
    )
    assert validate_tool_outputs([{"tool_call_id": "c"}]) == [{"tool_call_id": "c", "output": ""}]
    refused(
        lambda: validate_tool_outputs([{"tool_call_id": "c", "output": "\ud800"}]),
        "Invalid 'tool_outputs[0]': the string is not valid UTF-8 (it holds a lone surrogate).",
        "tool_outputs",
    )


def test_required_action_and_last_error_read_back() -> None:
    action = {
        "type": "submit_tool_outputs",
        "submit_tool_outputs": {
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}]
        },
    }
    assert validate_required_action(action)["submit_tool_outputs"]["tool_calls"][0]["id"] == "c"
    no_id = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": [{"id": ""}]}}
    refused(
        lambda: validate_required_action(no_id),
        "Every tool call needs a string 'id'.",
        "required_action",
    )
    refused(
        lambda: validate_last_error({"code": "server_error", "message": "\x00"}),
        "Invalid 'last_error': the string holds a NUL character.",
        "last_error",
    )
    refused(
        lambda: validate_last_error({"code": ["x"], "message": "m"}),
        "Invalid error code ['x']; expected one of ['invalid_prompt', 'rate_limit_exceeded', "
        "'server_error'].",
        "last_error",
    )
