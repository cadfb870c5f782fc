"""The Run object: its public shape, ids, metadata limits, and reading untrusted dicts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tables import SEED_KEYS, V1_STATUSES

from runstate import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    Run,
    RunLifecycle,
    RunStatus,
    ValidationError,
)

TIMESTAMPS = ["created_at", "expires_at", "started_at", "cancelled_at", "failed_at", "completed_at"]


def test_statuses() -> None:
    assert [s.value for s in RunStatus] == [
        "queued",
        "in_progress",
        "requires_action",
        "cancelling",
        "cancelled",
        "failed",
        "completed",
        "expired",
        "incomplete",  # the second version's
    ]
    assert {s.value for s in ACTIVE_STATUSES} == {
        "queued",
        "in_progress",
        "requires_action",
        "cancelling",
    }
    assert {s.value for s in TERMINAL_STATUSES} == {
        "cancelled",
        "failed",
        "completed",
        "expired",
        "incomplete",
    }
    assert RunStatus.QUEUED == "queued" and str(RunStatus.QUEUED) == "queued"
    assert RunStatus.EXPIRED.is_terminal and RunStatus.CANCELLING.is_active


@pytest.mark.parametrize("status", V1_STATUSES)
def test_to_dict_has_the_seed_shape_and_round_trips(
    status: RunStatus, run_in: Callable[[RunStatus], Run]
) -> None:
    run = run_in(status)
    data = run.to_dict()
    assert list(data) == SEED_KEYS
    assert data["object"] == "thread.run"
    assert data["status"] == status.value and type(data["status"]) is str
    for key in TIMESTAMPS:
        assert data[key] is None or type(data[key]) is int
    for key in ("id", "thread_id", "assistant_id", "model", "instructions"):
        assert type(data[key]) is str
    assert json.loads(json.dumps(data)) == data
    again = Run.from_dict(json.loads(json.dumps(data)))
    assert again == run and again.to_dict() == data


def test_to_dict_is_a_copy(run_in: Callable[[RunStatus], Run]) -> None:
    run = run_in(RunStatus.REQUIRES_ACTION)
    data = run.to_dict()
    data["required_action"]["submit_tool_outputs"]["tool_calls"].clear()
    data["metadata"]["x"] = "y"
    assert len(run.pending_tool_calls) == 2 and run.metadata == {}


def test_new_ids_are_run_plus_24_alphanumerics(lifecycle: RunLifecycle) -> None:
    ids = {lifecycle.create(thread_id=f"t{i}", assistant_id="a").id for i in range(2000)}
    assert len(ids) == 2000
    assert all(re.fullmatch(r"run_[A-Za-z0-9]{24}", i) for i in ids)
    assert len({c for i in ids for c in i[4:]}) == 62  # every character turns up


def valid() -> dict[str, Any]:
    return {
        "id": "run_abc",
        "object": "thread.run",
        "created_at": 1,
        "thread_id": "thread_1",
        "assistant_id": "asst_1",
        "status": "requires_action",
        "required_action": {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ]
            },
        },
        "last_error": None,
        "expires_at": 601,
        "started_at": 1,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": None,
        "model": "gpt-4o",
        "instructions": "",
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "file_ids": [],
        "metadata": {},
    }


MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("id", {"id": "thread_abc"}, "must start with 'run_'"),
    ("id", {"id": "run_"}, "must start with 'run_'"),
    ("id", {"id": 5}, "must be a string"),
    ("object", {"object": "thread"}, "'object' must be 'thread.run'"),
    ("status", {"status": "paused"}, "Unknown status 'paused'"),
    ("status", {"status": None}, "Unknown status None"),
    ("created_at", {"created_at": "1"}, "Unix timestamp"),
    ("created_at", {"created_at": None}, "Unix timestamp"),
    ("created_at", {"created_at": 1.5}, "Unix timestamp"),
    ("created_at", {"created_at": True}, "Unix timestamp"),
    ("expires_at", {"expires_at": -1}, "Unix timestamp"),
    ("started_at", {"started_at": []}, "Unix timestamp"),
    ("thread_id", {"thread_id": ""}, "must not be empty"),
    ("assistant_id", {"assistant_id": None}, "must be a string"),
    ("model", {"model": 4}, "must be a string"),
    ("instructions", {"instructions": None}, "must be a string"),
    ("required_action", {"required_action": {"type": "other"}}, "required_action"),
    ("required_action", {"required_action": None}, "exactly when status is 'requires_action'"),
    (
        "required_action",
        {
            "required_action": {
                "type": "submit_tool_outputs",
                "submit_tool_outputs": {"tool_calls": []},
            }
        },
        "non-empty",
    ),
    ("last_error", {"last_error": {"code": "server_error"}}, "last_error"),
    ("last_error", {"last_error": {"code": "nope", "message": "m"}}, "Invalid error code"),
    (
        "last_error",
        {
            "status": "in_progress",
            "required_action": None,
            "last_error": {"code": "server_error", "message": "m"},
        },
        "only be set when status is 'failed'",
    ),
    ("tools", {"tools": [{"type": "browser"}]}, "tools"),
    ("tools", {"tools": {"type": "function"}}, "expected an array"),
    (
        "tools",
        {"tools": [{"type": "function", "function": {}}]},
        "function.name': expected a string of 1 to 64",
    ),
    ("file_ids", {"file_ids": [1]}, "file_ids"),
    ("metadata", {"metadata": {"k": 1}}, "metadata"),
    ("metadata", {"metadata": []}, "expected an object"),
]


@pytest.mark.parametrize(("field", "change", "message"), MALFORMED)
def test_from_dict_refuses_malformed_input_naming_the_field(
    field: str, change: dict[str, Any], message: str
) -> None:
    data = valid() | change
    with pytest.raises(ValidationError, match=re.escape(message)) as caught:
        Run.from_dict(data)
    assert caught.value.param == field
    assert caught.value.http_status == 400


@pytest.mark.parametrize("key", SEED_KEYS)
def test_from_dict_refuses_a_missing_field(key: str) -> None:
    data = valid()
    del data[key]
    with pytest.raises(ValidationError, match=f"Missing required field '{key}'"):
        Run.from_dict(data)


def test_from_dict_refuses_unknown_fields_and_non_objects() -> None:
    with pytest.raises(ValidationError, match="Unknown field 'usage'"):
        Run.from_dict(valid() | {"usage": None})
    for thing in (None, [], "run", 3):
        with pytest.raises(ValidationError, match="must be a JSON object"):
            Run.from_dict(thing)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300)
@given(key=st.sampled_from(SEED_KEYS), value=json_values)
def test_fuzzed_field_values_give_a_run_or_a_validation_error(key: str, value: Any) -> None:
    data = valid()
    data[key] = value
    try:
        run = Run.from_dict(data)
    except ValidationError as exc:
        assert exc.param is not None
    else:
        assert Run.from_dict(run.to_dict()) == run


@settings(max_examples=200)
@given(data=json_values | st.dictionaries(st.sampled_from(SEED_KEYS), json_values))
def test_fuzzed_documents_give_only_validation_errors(data: Any) -> None:
    with pytest.raises(ValidationError):
        Run.from_dict(data)


# --- metadata ---------------------------------------------------------------------------------

METADATA_CASES: list[tuple[Any, str]] = [
    (
        {f"k{i}": "v" for i in range(17)},
        "too many properties. Expected an object with at most 16 properties, but got an object with 17",
    ),
    (
        {"k" * 65: "v"},
        f"key '{'k' * 65}' is too long. Expected a key with maximum length 64, but got a key with length 65",
    ),
    (
        {"k": "v" * 513},
        "Invalid 'metadata.k': string too long. Expected a string with maximum length 512, but got a string with length 513",
    ),
    ({"k": 1}, "Invalid 'metadata.k': expected a string, got int"),
    ({1: "v"}, "keys must be strings"),
    (["k", "v"], "expected an object, got list"),
]


@pytest.mark.parametrize(("metadata", "message"), METADATA_CASES)
def test_metadata_limits_on_create(metadata: Any, message: str, lifecycle: RunLifecycle) -> None:
    with pytest.raises(ValidationError) as caught:
        lifecycle.create(thread_id="t", assistant_id="a", metadata=metadata)
    assert message in caught.value.message
    assert caught.value.param == "metadata"


@pytest.mark.parametrize(("metadata", "message"), METADATA_CASES)
def test_metadata_limits_on_update_change_nothing(
    metadata: Any, message: str, run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle
) -> None:
    run = run_in(RunStatus.IN_PROGRESS)
    lifecycle.update_metadata(run, {"keep": "me"})
    before = run.to_dict()
    with pytest.raises(ValidationError, match=re.escape(message)):
        lifecycle.update_metadata(run, metadata)
    assert run.to_dict() == before


def test_metadata_at_the_limits_is_accepted(lifecycle: RunLifecycle) -> None:
    metadata = {f"{i:0>64}": "v" * 512 for i in range(16)}
    run = lifecycle.create(thread_id="t", assistant_id="a", metadata=metadata)
    assert run.metadata == metadata
    assert run.metadata is not metadata


@pytest.mark.parametrize("status", V1_STATUSES)
def test_metadata_update_replaces_the_whole_object_in_any_status(
    status: RunStatus, run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle
) -> None:
    run = run_in(status)
    lifecycle.update_metadata(run, {"a": "1", "b": "2"})
    lifecycle.update_metadata(run, {"c": "3"})
    assert run.metadata == {"c": "3"}
    assert run.status is status


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("thread_id", ""),
        ("thread_id", None),
        ("assistant_id", 3),
        ("model", None),
        ("instructions", 1),
    ],
)
def test_create_refuses_bad_fields(field: str, value: Any, lifecycle: RunLifecycle) -> None:
    kwargs: dict[str, Any] = {"thread_id": "t", "assistant_id": "a", field: value}
    with pytest.raises(ValidationError) as caught:
        lifecycle.create(**kwargs)
    assert caught.value.param == field


def test_object_and_pending_calls_of_a_run_that_waits_for_nothing(
    run_in: Callable[[RunStatus], Run],
) -> None:
    run = run_in(RunStatus.QUEUED)
    assert run.object == "thread.run"
    assert run.pending_tool_calls == []


def test_ids_made_later_sort_later(monkeypatch: pytest.MonkeyPatch) -> None:
    from runstate._model import new_id

    made = []
    for millis in (0, 1, 61, 62, 1_700_000_000_000, 1_700_000_000_001, 218_340_105_584_895):
        monkeypatch.setattr("runstate._model.time.time_ns", lambda m=millis: m * 1_000_000)
        made.append(new_id("resp"))
    assert made == sorted(made)  # the time, in base 62, leads: string order is time order
    assert made[0].startswith("resp_00000000") and made[-1].startswith("resp_zzzzzzzz")
    tails = {new_id("run")[12:] for _ in range(50)}
    assert len(tails) == 50  # the 16 random characters differ
