"""The second version of thread.run: its table row by row, every refused
pair, its fields and their checks, the official client's model accepting every object,
and the first version left as it was, byte for byte."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openai.types.beta.threads import Run as ClientRun
from tables import CALLS, ROWS_V2, TTL, USAGE, refused_pairs, step

from runstate import (
    InvalidTransitionError,
    ManualClock,
    Run,
    RunLifecycle,
    RunStatus,
    RunV2,
    ValidationError,
    mermaid,
)
from runstate._definitions import RUN_V2

S = RunStatus
REFUSED = refused_pairs(ROWS_V2, list(RunStatus))
FIXTURE = Path(__file__).parents[1] / "fixtures" / "schema_v1.db"


@pytest.mark.parametrize(
    ("event", "source", "dest"), ROWS_V2, ids=[f"{e}-{s.value}" for e, s, _ in ROWS_V2]
)
def test_every_row_of_the_v2_table(
    lifecycle_v2: RunLifecycle,
    clock: ManualClock,
    run_v2_in: Callable[[RunStatus], Run],
    event: str,
    source: RunStatus,
    dest: RunStatus,
) -> None:
    run = run_v2_in(source)
    clock.advance(1)
    step(lifecycle_v2, clock, run, event)
    assert run.status is dest
    ClientRun.model_validate(run.to_dict())


@pytest.mark.parametrize(("event", "status"), REFUSED, ids=[f"{e}-{s.value}" for e, s in REFUSED])
def test_every_refused_v2_pair_changes_nothing(
    lifecycle_v2: RunLifecycle,
    clock: ManualClock,
    run_v2_in: Callable[[RunStatus], Run],
    event: str,
    status: RunStatus,
) -> None:
    run = run_v2_in(status)
    before = run.to_dict()
    with pytest.raises(InvalidTransitionError):
        if event == "expire":
            lifecycle_v2.expire(run)  # not due yet, or ended
        else:
            step(lifecycle_v2, clock, run, event)
    assert run.to_dict() == before


def test_incomplete_ends_the_run_with_its_details_and_usage(
    lifecycle_v2: RunLifecycle, clock: ManualClock, run_v2_in: Callable[[RunStatus], Run]
) -> None:
    heard: list[Any] = []
    lifecycle_v2.subscribe(heard.append)
    run = run_v2_in(S.IN_PROGRESS)
    clock.advance(5)
    lifecycle_v2.incomplete(run, reason="max_prompt_tokens", usage=USAGE)
    data = run.to_dict()
    assert data["status"] == "incomplete"
    assert data["incomplete_details"] == {"reason": "max_prompt_tokens"}
    assert data["usage"] == USAGE
    assert data["expires_at"] is None  # like every other end
    assert data["completed_at"] is None and data["failed_at"] is None  # no stamp of its own
    assert heard[-1].event == "thread.run.incomplete"
    assert S.INCOMPLETE.is_terminal and lifecycle_v2.allowed_events(run) == []


@pytest.mark.parametrize("ending", ["complete", "fail"])
def test_complete_and_fail_record_usage(
    lifecycle_v2: RunLifecycle, run_v2_in: Callable[[RunStatus], Run], ending: str
) -> None:
    run = run_v2_in(S.IN_PROGRESS)
    if ending == "complete":
        lifecycle_v2.complete(run, usage={"prompt_tokens": 10, "completion_tokens": 5})
    else:
        lifecycle_v2.fail(run, code="rate_limit_exceeded", message="slow", usage=USAGE)
    assert run.usage == USAGE  # type: ignore[attr-defined]
    ClientRun.model_validate(run.to_dict())


def test_usage_stays_null_until_given(
    lifecycle_v2: RunLifecycle, run_v2_in: Callable[[RunStatus], Run]
) -> None:
    run = run_v2_in(S.COMPLETED)
    assert run.to_dict()["usage"] is None


@pytest.mark.parametrize(
    ("usage", "message"),
    [
        ({"prompt_tokens": 1}, "Invalid 'usage': expected {'prompt_tokens': int"),
        ({"prompt_tokens": -1, "completion_tokens": 0}, "Invalid 'usage.prompt_tokens'"),
        (
            {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 4},
            "Invalid 'usage.total_tokens': expected prompt_tokens + completion_tokens (3), got 4.",
        ),
        ([1, 2], "Invalid 'usage': expected"),
    ],
)
def test_bad_usage_is_refused_and_changes_nothing(
    lifecycle_v2: RunLifecycle,
    run_v2_in: Callable[[RunStatus], Run],
    usage: Any,
    message: str,
) -> None:
    run = run_v2_in(S.IN_PROGRESS)
    before = run.to_dict()
    with pytest.raises(ValidationError) as caught:
        lifecycle_v2.complete(run, usage=usage)
    assert caught.value.message.startswith(message)
    assert run.to_dict() == before


def test_a_bad_incomplete_reason_is_refused(
    lifecycle_v2: RunLifecycle, run_v2_in: Callable[[RunStatus], Run]
) -> None:
    run = run_v2_in(S.IN_PROGRESS)
    with pytest.raises(ValidationError, match="Invalid 'reason': expected one of"):
        lifecycle_v2.incomplete(run, reason="tired")
    assert run.status is S.IN_PROGRESS


def test_the_v2_create_parameters() -> None:
    lifecycle = RunLifecycle(version="v2")
    run = lifecycle.create(
        thread_id="t",
        assistant_id="a",
        tools=[{"type": "file_search"}, {"type": "function", "function": {"name": "f"}}],
        temperature=0.7,
        top_p=1,
        max_prompt_tokens=1000,
        max_completion_tokens=256,
        truncation_strategy={"type": "last_messages", "last_messages": 4},
        tool_choice={"type": "function", "function": {"name": "f"}},
        parallel_tool_calls=False,
        response_format={"type": "json_schema", "json_schema": {"name": "out", "strict": True}},
    )
    data = run.to_dict()
    assert isinstance(run, RunV2) and run.version == "v2"
    assert "file_ids" not in data
    assert data["temperature"] == 0.7 and data["top_p"] == 1.0
    assert data["truncation_strategy"] == {"type": "last_messages", "last_messages": 4}
    assert data["parallel_tool_calls"] is False
    assert ClientRun.model_validate(data).response_format is not None
    defaults = RunLifecycle(version="v2").create(thread_id="t", assistant_id="a").to_dict()
    assert defaults["parallel_tool_calls"] is True and defaults["tool_choice"] is None


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("temperature", 2.5, "Invalid 'temperature': expected a number from 0 to 2, got 2.5."),
        ("temperature", float("nan"), "Invalid 'temperature'"),
        ("top_p", -0.1, "Invalid 'top_p': expected a number from 0 to 1"),
        ("max_prompt_tokens", 255, "Invalid 'max_prompt_tokens': expected an integer from 256"),
        ("max_completion_tokens", "9", "Invalid 'max_completion_tokens'"),
        ("truncation_strategy", {"type": "middle"}, "Invalid 'truncation_strategy'"),
        (
            "truncation_strategy",
            {"type": "last_messages", "last_messages": 0},
            "Invalid 'truncation_strategy.last_messages'",
        ),
        ("tool_choice", "sometimes", "Invalid 'tool_choice'"),
        ("tool_choice", {"type": "function", "function": {}}, "Invalid 'tool_choice'"),
        ("parallel_tool_calls", "yes", "Invalid 'parallel_tool_calls': expected a boolean"),
        ("response_format", {"type": "xml"}, "Invalid 'response_format'"),
        ("response_format", {"type": "json_schema"}, "Invalid 'response_format.json_schema'"),
        ("tools", [{"type": "retrieval"}], "Invalid 'tools[0]': expected an object whose"),
        ("file_ids", ["f"], "Invalid 'file_ids': the second version of the run has none."),
        ("colour", "red", "Unknown parameter: 'colour'."),
    ],
)
def test_bad_v2_create_parameters(param: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RunLifecycle(version="v2").create(thread_id="t", assistant_id="a", **{param: value})
    assert caught.value.message.startswith(message)
    assert caught.value.param == param


def test_the_first_version_refuses_what_only_the_second_has(
    lifecycle: RunLifecycle, run_in: Callable[[RunStatus], Run]
) -> None:
    with pytest.raises(ValidationError, match="Invalid 'temperature': a parameter of the second"):
        lifecycle.create(thread_id="t", assistant_id="a", temperature=1)
    run = run_in(S.IN_PROGRESS)
    with pytest.raises(ValidationError, match="Invalid 'usage': a field of the second version"):
        lifecycle.complete(run, usage=USAGE)
    with pytest.raises(ValidationError, match="Unknown event 'incomplete'"):
        lifecycle.incomplete(run, reason="max_prompt_tokens")
    assert run.status is S.IN_PROGRESS
    with pytest.raises(ValidationError, match="a v2 run, and this lifecycle is v1's"):
        lifecycle.start(RunLifecycle(version="v2").create(thread_id="t", assistant_id="a"))
    with pytest.raises(ValidationError, match="Invalid 'version'"):
        RunLifecycle(version="v3")


@pytest.mark.parametrize("status", list(RunStatus))
def test_a_v2_run_reads_back_from_its_json(
    run_v2_in: Callable[[RunStatus], Run], status: RunStatus
) -> None:
    run = run_v2_in(status)
    data = json.loads(json.dumps(run.to_dict()))
    assert RunV2.from_dict(data) == run
    ClientRun.model_validate(data)


def test_from_dict_keeps_the_versions_apart(run_v2_in: Callable[[RunStatus], Run]) -> None:
    data = run_v2_in(S.INCOMPLETE).to_dict()
    with pytest.raises(ValidationError, match="Missing required field 'file_ids'"):
        Run.from_dict(data)
    with pytest.raises(ValidationError, match="incomplete_details' must be set exactly when"):
        RunV2.from_dict({**data, "incomplete_details": None})
    with pytest.raises(ValidationError, match="Unknown field 'file_ids'"):
        RunV2.from_dict({**data, "file_ids": []})


def test_the_diagram_of_the_second_version() -> None:
    lines = mermaid(RUN_V2).splitlines()
    assert "    in_progress --> incomplete: incomplete" in lines
    assert "    cancelling --> incomplete: incomplete" in lines
    assert "    incomplete --> [*]" in lines
    assert "incomplete" not in mermaid()


def test_the_first_version_is_what_0_1_0_wrote_byte_for_byte() -> None:
    """Every body the 0.1.0 release stored (the schema-1 fixture) comes back out of this
    code's ``to_dict`` as the same bytes."""
    with sqlite3.connect(FIXTURE) as conn:
        bodies = [body for (body,) in conn.execute("SELECT body FROM runs")]
        bodies += [data for (data,) in conn.execute("SELECT data FROM run_events")]
    assert len(bodies) > 20
    for body in bodies:
        run = Run.from_dict(json.loads(body))
        assert type(run) is Run
        assert json.dumps(run.to_dict(), separators=(",", ":")) == body


def test_a_v2_lifecycle_stamps_like_the_first(
    clock: ManualClock, run_v2_in: Callable[[RunStatus], Run]
) -> None:
    run = run_v2_in(S.REQUIRES_ACTION)
    assert run.pending_tool_calls == CALLS
    assert run.expires_at == run.created_at + TTL
