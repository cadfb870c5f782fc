"""Generated create requests: bodies built from the ``openai`` package's own request type
(its compiled schema, walked into hypothesis strategies: no spec file in this
repository) are accepted, stored, and answered with a response the SDK's model reads
strictly; the same bodies mutated are refused with a ``ValidationError`` and store
nothing."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import Response as ClientResponse
from request_bodies import BODIES, within_documented_ranges

from runstate import ResponseEngine, ValidationError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic serializer notes


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(BODIES.map(within_documented_ranges))
def test_every_generated_body_is_accepted_stored_and_read_by_the_sdk(body: dict[str, Any]) -> None:
    engine = ResponseEngine()
    response = engine.create(**body)
    assert engine.request_of(response.id) == {"background": True, **body}  # kept whole
    ClientResponse.model_validate(response.to_dict(), strict=True)


MUTATIONS = {
    "an unknown parameter": lambda body: {**body, "teleport": True},
    "a boolean as a string": lambda body: {**body, "background": "yes"},
    "a number as a string": lambda body: {**body, "temperature": "1"},
    "a NUL in the model": lambda body: {**body, "model": "gpt\x00"},
    "an infinite number": lambda body: {**body, "top_p": math.inf},
    "a value out of its range": lambda body: {**body, "temperature": 3},
    "an unknown tool type": lambda body: {**body, "tools": [{"type": "teleport"}]},
    "an unknown key in an item": lambda body: {
        **body,
        "input": [{"role": "user", "content": "x", "x": 1}],
    },
    "a null model": lambda body: {**body, "model": None},
    "a null input": lambda body: {**body, "input": None},
    "too deep": lambda body: {**body, "metadata": None, "text": nested(40)},
}


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(BODIES.map(within_documented_ranges), st.sampled_from(sorted(MUTATIONS)))
def test_a_mutated_body_is_refused_and_stores_nothing(body: dict[str, Any], mutation: str) -> None:
    engine = ResponseEngine()
    with pytest.raises(ValidationError) as info:
        engine.create(**MUTATIONS[mutation](body))
    assert info.value.param  # each refusal names what it refused
    assert engine.list().data == []
