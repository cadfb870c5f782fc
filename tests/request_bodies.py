"""Create requests generated from the ``openai`` package's own request type: its
compiled schema walked into hypothesis strategies (no spec file in this repository)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from openai.types.responses.response_create_params import ResponseCreateParamsBase
from pydantic import TypeAdapter

#: Clean text: what a store can keep and serve back (no NUL, no lone surrogate).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**31), 2**31) | TEXT
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


def strategy_of(schema: dict[str, Any], refs: dict[str, Any], depth: int = 0) -> Any:
    """A hypothesis strategy for the JSON values pydantic-core ``schema`` accepts."""
    kind = schema["type"]
    if depth > 6 and kind == "nullable":  # deep optional structure stays out
        return st.none()
    if kind == "definitions":
        for definition in schema["definitions"]:
            refs[definition["ref"]] = definition
        return strategy_of(schema["schema"], refs, depth)
    if kind == "definition-ref":
        target = refs[schema["schema_ref"]]
        return st.deferred(lambda: strategy_of(target, refs, depth + 1))
    if kind == "typed-dict":
        required, optional = {}, {}
        for name, field in schema["fields"].items():
            value = strategy_of(field["schema"], refs, depth + 1)
            (required if field.get("required", True) else optional)[name] = value
        if depth > 4:
            optional = {}
        return st.fixed_dictionaries(required, optional=optional)
    if kind in ("list", "generator", "set", "tuple"):
        items = schema.get("items_schema")
        if items is None:
            return st.lists(JSON, max_size=2)
        return st.lists(strategy_of(items, refs, depth + 1), min_size=1, max_size=2)
    if kind == "dict":
        values = schema.get("values_schema")
        return st.dictionaries(
            TEXT, JSON if values is None else strategy_of(values, refs, depth + 1), max_size=2
        )
    if kind in ("union", "tagged-union"):
        choices = schema["choices"]
        members = choices.values() if isinstance(choices, dict) else choices
        return st.one_of(
            [strategy_of(c[0] if isinstance(c, tuple) else c, refs, depth + 1) for c in members]
        )
    if kind == "nullable":
        return st.none() | strategy_of(schema["schema"], refs, depth)
    if kind == "json-or-python":  # a value read from JSON: its JSON shape
        return strategy_of(schema["json_schema"], refs, depth)
    if kind in ("default", "function-after", "function-before", "function-wrap"):
        inner = schema["schema"]
        return strategy_of(inner, refs, depth)
    if kind == "chain":  # a value checked by each step: the first step's shape
        return strategy_of(schema["steps"][0], refs, depth)
    if kind == "literal":
        return st.sampled_from(schema["expected"])
    if kind == "str":
        return TEXT.filter(bool)
    if kind == "int":
        return st.integers(0, 1000)
    if kind == "float":
        return st.floats(0, 1, allow_nan=False)
    if kind == "bool":
        return st.booleans()
    if kind == "none":
        return st.none()
    if kind in ("any", "is-instance"):
        return JSON
    raise AssertionError(f"no strategy for {kind}")  # pragma: no cover - a new schema kind


SCHEMA = TypeAdapter(ResponseCreateParamsBase).core_schema
BODIES = strategy_of(SCHEMA, {})


def within_documented_ranges(body: dict[str, Any]) -> dict[str, Any]:
    """The body with the values the types allow but the documented ranges do not moved
    into them (``temperature`` 0-2, ``max_output_tokens`` at least 16, ...), a non-empty
    model and input, and ``store`` true for a background response."""
    body = dict(body)
    body["model"] = body.get("model") or "gpt-4o"
    if body.get("input") in (None, "", []):
        body["input"] = "Hi"
    for name, low in (("max_output_tokens", 16), ("max_tool_calls", 1)):
        if body.get(name) is not None:
            body[name] = max(body[name], low)
    if body.get("top_logprobs") is not None:
        body["top_logprobs"] = min(body["top_logprobs"], 20)
    if body.get("metadata") is not None:
        body["metadata"] = dict(list(body["metadata"].items())[:16])
    if body.get("store") is False:  # the engine's default is a background response
        body["background"] = False
    if body.get("tools"):  # a function's name: 1-64 letters, digits, _ or -
        body["tools"] = [
            {**tool, "name": f"f{i}"} if tool["type"] == "function" else tool
            for i, tool in enumerate(body["tools"])
        ]
    body.pop("previous_response_id", None)  # names a stored response: tested apart
    if isinstance(body["input"], list):  # references name stored items: tested apart
        body["input"] = [
            item
            for item in body["input"]
            if not (item.get("type") in (None, "item_reference") and set(item) <= {"id", "type"})
        ] or "Hi"
    return body
