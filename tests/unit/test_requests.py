"""The create request's check and what a response keeps, apart from any server: the
refusals the HTTP tests cannot send (a body that is no object), the capabilities a
deployment declares, and a response stored before the whole request was kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runstate import (
    GATED_PARAMETERS,
    Capabilities,
    ResponseEngine,
    SQLiteStore,
    ValidationError,
    check_shape,
)
from runstate._requests import check_create, check_includes

EVERYTHING = Capabilities.everything()


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ([], None, "The request body must be a JSON object, got list."),
        ({"input": "hi"}, "model", "Missing required parameter: 'model'."),
        ({"model": "m"}, "input", "Missing required parameter: 'input'."),
        (
            {"model": "m", "input": "hi", "stream": 1},
            "stream",
            "Invalid type for 'stream': expected a boolean, but got a number instead.",
        ),
        (
            {"model": "m", "input": "hi", "tools": [{"type": "function", "name": "a b"}]},
            "tools[0].name",
            "Invalid 'tools[0].name': expected a string of 1 to 64 letters, digits, underscores or dashes, got 'a b'.",
        ),
        ({"model": "m", "input": "hi", "\ud800": 1}, "\ud800", None),
    ],
)
def test_what_only_a_library_caller_can_send_is_refused(
    body: Any, param: str | None, message: str | None
) -> None:
    with pytest.raises(ValidationError) as info:
        check_create(body, EVERYTHING)
    assert info.value.param == param
    if message is not None:
        assert info.value.message == message


def test_a_deployment_declares_its_tools_parameters_and_endpoints() -> None:
    body = {"model": "m", "input": "hi", "prompt": {"id": "pmpt_1"}, "conversation": None}
    with pytest.raises(ValidationError, match="'prompt' is not supported"):
        check_create(body, Capabilities())
    assert check_create(body, Capabilities(parameters=frozenset({"prompt"})))["prompt"] == {
        "id": "pmpt_1"
    }  # a null gated parameter is as good as absent
    assert {"prompt", "conversation", "context_management"} <= GATED_PARAMETERS
    assert not Capabilities().serves("compact")
    assert Capabilities(endpoints=frozenset({"compact"})).serves("compact")
    assert EVERYTHING.serves("input_tokens")


def test_include_values_are_the_packages() -> None:
    assert check_includes(None) == []
    assert check_includes(("message.output_text.logprobs",)) == ["message.output_text.logprobs"]
    with pytest.raises(ValidationError, match="Invalid type for 'include': expected an array"):
        check_includes("message.output_text.logprobs")


def test_check_shape_names_the_path_under_its_parameter() -> None:
    message = {"role": "user", "content": "hi"}
    assert check_shape(message, "run.additional_message", "additional_messages[0]") == message
    with pytest.raises(ValidationError) as info:
        check_shape({"role": "user", "content": "x\x00"}, "run.additional_message", "m")
    assert info.value.param == "m"


def test_a_response_stored_with_its_input_alone_reads_back(tmp_path: Path) -> None:
    """A response stored before the whole request was kept (its row holds the input
    alone) gives its request, input items and context from that input."""
    engine = ResponseEngine(SQLiteStore(tmp_path / "r.db"))
    response, steps = engine.lifecycle.new_response(
        check_create({"model": "m", "input": "Hello"}, EVERYTHING), background=True
    )
    engine.store.insert(response, steps, "Hello", None)  # as an earlier version stored it
    assert engine.request_of(response.id) == {"model": "m", "input": "Hello"}
    assert engine.input_of(response.id) == "Hello"
    (item,) = engine.context_of(response.id)
    assert item["content"] == [{"type": "input_text", "text": "Hello"}]
    assert engine.input_items(response.id).data == [item]
    engine.close()


def test_capabilities_take_any_collection_of_known_names() -> None:
    from runstate import Capabilities

    given = Capabilities(tools=["function", "web_search"], parameters=["prompt"], endpoints=())
    assert given.tools == frozenset({"function", "web_search"})
    assert given.parameters == frozenset({"prompt"}) and given.endpoints == frozenset()
    for options, message in [
        (
            {"tools": "function"},
            "Invalid 'Capabilities.tools': expected a collection of names, got 'function'.",
        ),
        ({"tools": [1]}, "Invalid 'Capabilities.tools': expected a collection of names, got [1]."),
        ({"parameters": ["teleport"]}, "Invalid 'Capabilities.parameters': ['teleport'] not among"),
        (
            {"endpoints": ["embeddings"]},
            "Invalid 'Capabilities.endpoints': ['embeddings'] not among ['compact', 'input_tokens'].",
        ),
    ]:
        with pytest.raises(ValidationError) as refused:
            Capabilities(**options)
        assert refused.value.message.startswith(message)
