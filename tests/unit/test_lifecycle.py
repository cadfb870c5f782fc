"""The run's transition table (conftest's, written apart from the declaration), row by row, and every pair it refuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tables import ACTIVE, CALLS, OUTPUTS, ROWS, TTL, V1_STATUSES, refused_pairs, step

from runstate import (
    InvalidTransitionError,
    ManualClock,
    Run,
    RunLifecycle,
    RunStatus,
    ValidationError,
)
from runstate._definitions import RUN_V1

S = RunStatus

REFUSED = refused_pairs(ROWS, V1_STATUSES)


def expected_after(before: dict[str, Any], event: str, dest: RunStatus, now: int) -> dict[str, Any]:
    """What the table says the run looks like after ``event``: every field, spelled out."""
    after = dict(before, status=dest.value)
    if before["status"] == "requires_action":
        after["required_action"] = None
    if event == "start":
        after["started_at"] = now
    elif event == "require_action":
        after["required_action"] = {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {"tool_calls": CALLS},
        }
    elif event == "complete":
        after.update(completed_at=now, expires_at=None)
    elif event == "fail":
        after.update(
            failed_at=now, expires_at=None, last_error={"code": "server_error", "message": "boom"}
        )
    elif event == "confirm_cancel":
        after.update(cancelled_at=now, expires_at=None)
    return after


@pytest.mark.parametrize(
    ("event", "source", "dest"), ROWS, ids=[f"{e}-{s.value}" for e, s, _ in ROWS]
)
def test_every_row_of_the_table(
    event: str,
    source: RunStatus,
    dest: RunStatus,
    run_in: Callable[[RunStatus], Run],
    lifecycle: RunLifecycle,
    clock: ManualClock,
) -> None:
    run = run_in(source)
    clock.advance(7)
    before = run.to_dict()
    now = run.expires_at if event == "expire" else int(clock())
    assert now is not None
    step(lifecycle, clock, run, event)
    assert run.status is dest
    assert run.to_dict() == expected_after(before, event, dest, now)


@pytest.mark.parametrize(("event", "status"), REFUSED, ids=[f"{e}-{s.value}" for e, s in REFUSED])
def test_every_refused_pair_changes_nothing(
    event: str,
    status: RunStatus,
    run_in: Callable[[RunStatus], Run],
    lifecycle: RunLifecycle,
    clock: ManualClock,
) -> None:
    run = run_in(status)
    before = run.to_dict()
    with pytest.raises(InvalidTransitionError) as caught:
        if event == "expire":
            lifecycle.expire(run)
        else:
            step(lifecycle, clock, run, event)
    error = caught.value
    assert run.to_dict() == before
    assert error.status == status.value
    assert error.event == event
    if event == "cancel":
        assert (error.http_status, error.message) == (
            400,
            f"Cannot cancel run with status '{status.value}'.",
        )
    elif event == "submit_tool_outputs":
        assert (error.http_status, error.message) == (
            400,
            f'Runs in status "{status.value}" do not accept tool outputs.',
        )
    elif event == "expire" and status in ACTIVE:
        assert error.http_status == 409
        assert error.message == (
            f"Cannot expire run with status '{status.value}': it is not due until {run.expires_at}."
        )
    else:
        assert (error.http_status, error.message) == (
            409,
            f"Cannot {event} run with status '{status.value}'.",
        )
    assert error.to_dict() == {
        "error": {
            "message": error.message,
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_create_stamps_created_and_expires(lifecycle: RunLifecycle, clock: ManualClock) -> None:
    clock.set(1_700_000_123.9)
    run = lifecycle.create(
        thread_id="thread_1",
        assistant_id="asst_1",
        model="gpt-4o",
        instructions="be brief",
        tools=[{"type": "function", "function": {"name": "lookup"}}],
        file_ids=["file_1"],
        metadata={"k": "v"},
    )
    assert run.to_dict() == {
        "id": run.id,
        "object": "thread.run",
        "created_at": 1_700_000_123,
        "thread_id": "thread_1",
        "assistant_id": "asst_1",
        "status": "queued",
        "required_action": None,
        "last_error": None,
        "expires_at": 1_700_000_123 + TTL,
        "started_at": None,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": None,
        "model": "gpt-4o",
        "instructions": "be brief",
        "tools": [{"type": "function", "function": {"name": "lookup"}}],
        "file_ids": ["file_1"],
        "metadata": {"k": "v"},
    }


def test_started_at_is_stamped_again_on_every_start(
    run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle, clock: ManualClock
) -> None:
    run = run_in(S.REQUIRES_ACTION)
    first = run.started_at
    expires = run.expires_at
    clock.advance(30)
    lifecycle.submit_tool_outputs(run, OUTPUTS)
    assert run.expires_at == expires  # submitting outputs never extends the run's life
    clock.advance(5)
    lifecycle.start(run)
    assert first is not None and run.started_at == int(clock()) == first + 1 + 35


def test_ttl_is_configurable(clock: ManualClock) -> None:
    run = RunLifecycle(clock=clock, ttl=5).create(thread_id="t", assistant_id="a")
    assert run.expires_at == run.created_at + 5


@pytest.mark.parametrize("ttl", [0, -1, 1.5, "600", True, None])
def test_bad_ttl_is_refused(ttl: Any) -> None:
    with pytest.raises(
        ValidationError, match="Invalid 'ttl': expected an integer from 1 to 3162240000"
    ):
        RunLifecycle(ttl=ttl)


# --- expiry ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ACTIVE)
@pytest.mark.parametrize(
    "operation", ["start", "require_action", "submit_tool_outputs", "complete", "cancel", "fail"]
)
def test_a_due_run_is_expired_before_any_operation(
    status: RunStatus,
    operation: str,
    run_in: Callable[[RunStatus], Run],
    lifecycle: RunLifecycle,
    clock: ManualClock,
) -> None:
    run = run_in(status)
    expires = run.expires_at
    assert expires is not None
    clock.set(expires)  # due exactly at expires_at
    events: list[str] = []
    lifecycle.subscribe(lambda e: events.append(e.event))
    with pytest.raises(InvalidTransitionError) as caught:
        step(lifecycle, clock, run, operation)
    assert run.status is S.EXPIRED
    assert run.expires_at == expires  # kept: it tells when the run expired
    assert run.required_action is None
    assert events == ["thread.run.expired"]
    assert caught.value.status == "expired"


def test_a_run_one_second_before_expiry_is_not_due(
    run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle, clock: ManualClock
) -> None:
    run = run_in(S.QUEUED)
    assert run.expires_at is not None
    clock.set(run.expires_at - 0.5)
    assert lifecycle.check_expiry(run) is False
    lifecycle.start(run)
    assert run.status is S.IN_PROGRESS


def test_check_expiry_expires_only_due_active_runs(
    run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle, clock: ManualClock
) -> None:
    done = run_in(S.COMPLETED)
    waiting = run_in(S.REQUIRES_ACTION)
    clock.advance(TTL * 2)
    assert lifecycle.check_expiry(done) is False
    assert done.status is S.COMPLETED
    assert lifecycle.check_expiry(waiting) is True
    assert waiting.status is S.EXPIRED
    assert lifecycle.check_expiry(waiting) is False


def test_allowed_events_follow_the_table_and_expiry(
    run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle, clock: ManualClock
) -> None:
    for status in V1_STATUSES:
        run = run_in(status)
        expected = sorted({e for e, s, _ in ROWS if s is status and e != "expire"})
        assert sorted(lifecycle.allowed_events(run)) == expected
    run = run_in(S.QUEUED)
    clock.advance(TTL)
    assert lifecycle.allowed_events(run) == []
    assert run.status is S.EXPIRED


# --- tool calls and outputs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "outputs",
    [
        [],
        [OUTPUTS[0]],
        [*OUTPUTS, {"tool_call_id": "call_C", "output": "3"}],
        [OUTPUTS[0], OUTPUTS[0]],
        [OUTPUTS[0], {"tool_call_id": "call_Z", "output": "2"}],
    ],
    ids=["none", "missing", "extra", "duplicate", "wrong-id"],
)
def test_tool_outputs_must_match_the_pending_calls_exactly(
    outputs: list[dict[str, str]],
    run_in: Callable[[RunStatus], Run],
    lifecycle: RunLifecycle,
) -> None:
    run = run_in(S.REQUIRES_ACTION)
    before = run.to_dict()
    with pytest.raises(ValidationError) as caught:
        lifecycle.submit_tool_outputs(run, outputs)
    got = [o["tool_call_id"] for o in outputs]
    assert (
        caught.value.message
        == f"Expected tool outputs for call_ids ['call_A', 'call_B'], got {got}"
    )
    assert caught.value.http_status == 400
    assert caught.value.param == "tool_outputs"
    assert run.to_dict() == before


def test_the_public_message_for_one_missing_output(
    run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle
) -> None:
    run = run_in(S.REQUIRES_ACTION)
    with pytest.raises(ValidationError) as caught:
        lifecycle.submit_tool_outputs(run, [{"tool_call_id": "call_A", "output": "1"}])
    assert (
        str(caught.value)
        == "Expected tool outputs for call_ids ['call_A', 'call_B'], got ['call_A']"
    )


def test_tool_outputs_in_any_order_are_accepted(
    run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle
) -> None:
    run = run_in(S.REQUIRES_ACTION)
    lifecycle.submit_tool_outputs(run, list(reversed(OUTPUTS)))
    assert run.status is S.QUEUED and run.required_action is None


@pytest.mark.parametrize(
    "outputs",
    [
        None,
        "call_A",
        [None],
        [{"output": "x"}],
        [{"tool_call_id": 3, "output": "x"}],
        [{"tool_call_id": "call_A", "output": 1}],
    ],
)
def test_malformed_tool_outputs_are_refused(
    outputs: Any, run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle
) -> None:
    run = run_in(S.REQUIRES_ACTION)
    before = run.to_dict()
    with pytest.raises(ValidationError) as caught:
        lifecycle.submit_tool_outputs(run, outputs)
    assert caught.value.param == "tool_outputs"
    assert run.to_dict() == before


@pytest.mark.parametrize(
    ("calls", "message"),
    [
        ([], "expected a non-empty array"),
        (None, "expected a non-empty array"),
        ([{"id": "call_A", "function": {"name": "f"}}] * 2, "duplicate tool call id 'call_A'"),
        ([{"id": "call_A"}], "expected {'id': str"),
        ([{"id": "call_A", "type": "retrieval", "function": {"name": "f"}}], "expected {'id': str"),
        ([{"id": "call_A", "function": {"name": "f", "arguments": {}}}], "expected {'id': str"),
        (["call_A"], "expected an object"),
    ],
)
def test_malformed_tool_calls_are_refused(
    calls: Any, message: str, run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle
) -> None:
    run = run_in(S.IN_PROGRESS)
    before = run.to_dict()
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("{", r"\{")):
        lifecycle.require_action(run, calls)
    assert run.to_dict() == before


def test_tool_calls_without_an_id_get_a_call_id(
    run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle
) -> None:
    run = run_in(S.IN_PROGRESS)
    lifecycle.require_action(run, [{"function": {"name": "f"}}])
    (call,) = run.pending_tool_calls
    assert call["id"].startswith("call_") and len(call["id"]) == 29
    assert call == {
        "id": call["id"],
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }


@pytest.mark.parametrize(
    ("code", "message"), [("bad_code", "boom"), (None, "boom"), ("server_error", 7)]
)
def test_fail_checks_its_error(
    code: Any, message: Any, run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle
) -> None:
    run = run_in(S.IN_PROGRESS)
    before = run.to_dict()
    with pytest.raises(ValidationError):
        lifecycle.fail(run, code=code, message=message)
    assert run.to_dict() == before


@pytest.mark.parametrize("code", ["server_error", "rate_limit_exceeded", "invalid_prompt"])
def test_fail_accepts_the_seed_error_codes(
    code: str, run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle
) -> None:
    run = lifecycle.fail(run_in(S.QUEUED), code=code, message="m")
    assert run.last_error == {"code": code, "message": "m"}


def test_cancellation_is_a_request_a_cancelling_run_may_still_complete_or_fail(
    run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle
) -> None:
    assert lifecycle.complete(run_in(S.CANCELLING)).status is S.COMPLETED
    assert lifecycle.fail(run_in(S.CANCELLING), message="x").status is S.FAILED


def test_unknown_event_is_a_validation_error(
    run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle
) -> None:
    run = run_in(S.QUEUED)
    with pytest.raises(ValidationError, match="Unknown event 'teleport'"):
        lifecycle.decide(run, "teleport", 0)


def test_machine_errors_never_reach_the_caller(
    run_in: Callable[[RunStatus], Run], lifecycle: RunLifecycle
) -> None:
    # decide() checks the table first; _fire() is the last line of defence.
    run = run_in(S.COMPLETED)
    with pytest.raises(InvalidTransitionError) as caught:
        lifecycle._fire(run, "start", 0)
    assert type(caught.value.__cause__).__name__ == "MachineError"


def test_one_machine_serves_every_run(lifecycle: RunLifecycle) -> None:
    runs = [lifecycle.create(thread_id=f"t{i}", assistant_id="a") for i in range(50)]
    for run in runs:
        lifecycle.start(run)
    assert lifecycle.machine.models == [] and lifecycle.machine is RUN_V1.machine  # shared
    assert RunLifecycle(ttl=5).machine is lifecycle.machine


def test_stamps_never_go_back_when_the_clock_does() -> None:
    times = [2_000, 1_900, 1_800, 1_700]  # a system clock stepped back, three times
    lifecycle = RunLifecycle(clock=lambda: times.pop(0))
    run = lifecycle.create(thread_id="t", assistant_id="a")
    lifecycle.start(run)
    assert run.started_at == 2_000
    lifecycle.cancel(run)
    lifecycle.complete(run)
    assert run.completed_at == 2_000 and run.created_at == 2_000


def test_only_a_step_the_declaration_says_all_of_is_given_as_data() -> None:
    lifecycle = RunLifecycle()
    assert lifecycle.fired_as_data("start") == (
        RunStatus.QUEUED,
        RunStatus.IN_PROGRESS,
        "thread.run.in_progress",
        None,
        "started_at",
        ("created_at", "started_at"),
    )
    assert lifecycle.fired_as_data("complete") is None  # takes an argument (usage)
    assert lifecycle.fired_as_data("cancel") is None  # from three statuses
    assert lifecycle.fired_as_data("confirm_cancel") is None  # into an ended status
    assert lifecycle.fired_as_data("nonsense") is None
