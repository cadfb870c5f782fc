"""The scripted demo model's pieces that need no server: the JSON instance it answers a
structured-output request with, the text it quotes in a function call, its name."""

from __future__ import annotations

from typing import Any

import pytest

from runstate.server import demo
from runstate.server._demo import _last_text, instance_of


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"a": "text"},
        ),
        ({"type": "object", "properties": {"a": {"type": "string"}}}, {}),
        ({"const": 7}, 7),
        ({"enum": ["x", "y"]}, "x"),
        ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, 1),
        ({"type": ["number", "null"]}, 1.5),
        ({"type": "boolean"}, True),
        ({"type": "null"}, None),
        ({"type": "array", "items": {"type": "integer"}, "minItems": 2}, [1, 1]),
        ({"type": "array", "items": {"type": "integer"}}, []),
        ({"$ref": "#/$defs/Step"}, {"n": 1}),
        ({}, {}),
    ],
)
def test_instance_of_a_schema(schema: dict[str, Any], instance: Any) -> None:
    defs = {"Step": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}
    assert instance_of(schema, defs) == instance


@pytest.mark.parametrize(
    ("given", "text"),
    [
        ("plain", "plain"),
        ([{"role": "user", "content": "a string"}], "a string"),
        ([{"role": "user", "content": [{"type": "input_text", "text": "a part"}]}], "a part"),
        (
            [
                {"role": "user", "content": [{"type": "input_image", "image_url": "x"}]},
                {"type": "function_call_output", "call_id": "c", "output": "42"},
            ],
            "",
        ),
    ],
)
def test_the_text_a_function_call_quotes(given: Any, text: str) -> None:
    assert _last_text({"input": given}) == text


def test_the_demo_model_says_what_it_is() -> None:
    assert repr(demo) == "runstate.server.demo"
    demo.check({"metadata": {"delay": "1"}})  # a good script passes
    demo.check({"metadata": {"delay": 5}})  # not a metadata map: the engine refuses it
