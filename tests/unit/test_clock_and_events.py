"""Clocks (system time under freezegun, ManualClock, any callable) and events."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from freezegun import freeze_time
from tables import CALLS, OUTPUTS

from runstate import (
    DONE_SSE,
    InvalidTransitionError,
    ManualClock,
    Run,
    RunEvent,
    RunLifecycle,
    RunStatus,
    ValidationError,
)


def test_the_default_clock_follows_freezegun() -> None:
    with freeze_time("2024-01-01 00:00:00") as frozen:
        lifecycle = RunLifecycle()  # built inside or outside the freeze, it reads time.time
        run = lifecycle.create(thread_id="t", assistant_id="a")
        assert run.created_at == 1_704_067_200
        frozen.tick(42.7)
        lifecycle.start(run)
        assert run.started_at == 1_704_067_242


def test_a_lifecycle_built_before_the_freeze_follows_it_too() -> None:
    lifecycle = RunLifecycle()
    with freeze_time("2030-06-01 12:00:00"):
        assert lifecycle.now() == datetime(2030, 6, 1, 12, tzinfo=UTC).timestamp()


def test_manual_clock_moves_only_forward() -> None:
    clock = ManualClock(100)
    assert clock() == 100
    assert clock.advance(2.5) == 102.5
    assert clock.set(200) == 200
    with pytest.raises(ValidationError, match="only moves forward"):
        clock.advance(-1)
    with pytest.raises(ValidationError, match="only moves forward"):
        clock.set(199)
    for bad in (float("nan"), float("inf"), "1", None, True):
        with pytest.raises(ValidationError, match="finite number"):
            clock.advance(bad)  # type: ignore[arg-type]
    assert clock() == 200


def test_any_callable_is_a_clock_and_times_are_floored() -> None:
    lifecycle = RunLifecycle(clock=lambda: 1_000.999)
    run = lifecycle.create(thread_id="t", assistant_id="a")
    assert (run.created_at, run.expires_at) == (1_000, 1_600)


@pytest.mark.parametrize("reading", [float("nan"), float("inf"), "now", None, True])
def test_a_clock_that_returns_nonsense_is_refused_before_any_change(reading: Any) -> None:
    good = RunLifecycle(clock=ManualClock(5))
    run = good.create(thread_id="t", assistant_id="a")
    before = run.to_dict()
    bad = RunLifecycle(clock=lambda: reading)
    with pytest.raises(ValidationError, match="finite number of Unix seconds"):
        bad.start(run)
    with pytest.raises(ValidationError):
        bad.create(thread_id="t", assistant_id="a")
    assert run.to_dict() == before


def test_a_clock_must_be_callable() -> None:
    with pytest.raises(ValidationError, match="callable"):
        RunLifecycle(clock=5)  # type: ignore[arg-type]


def test_events_are_named_as_the_public_stream_and_carry_the_run_after(
    lifecycle: RunLifecycle, clock: ManualClock
) -> None:
    seen: list[RunEvent] = []
    lifecycle.subscribe(seen.append)
    run = lifecycle.create(thread_id="t", assistant_id="a")
    lifecycle.start(run)
    lifecycle.require_action(run, CALLS)
    lifecycle.submit_tool_outputs(run, OUTPUTS)
    lifecycle.start(run)
    lifecycle.cancel(run)
    lifecycle.confirm_cancel(run)
    assert [e.event for e in seen] == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.requires_action",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.cancelling",
        "thread.run.cancelled",
    ]
    assert [e.data["status"] for e in seen] == [
        "queued", "queued", "in_progress", "requires_action", "queued", "in_progress", "cancelling", "cancelled",
    ]  # fmt: skip
    assert seen[3].data["required_action"]["submit_tool_outputs"]["tool_calls"] == CALLS
    assert (seen[2].from_status, seen[2].to_status) == ("queued", "in_progress")
    assert seen[0].from_status is None
    assert all(e.run_id == run.id and e.seq is None for e in seen)
    assert seen[-1].data == run.to_dict()


@pytest.mark.parametrize(
    ("path", "last"),
    [
        (["start", "complete"], "thread.run.completed"),
        (["fail"], "thread.run.failed"),
        (["expire"], "thread.run.expired"),
    ],
)
def test_terminal_events(
    path: list[str], last: str, lifecycle: RunLifecycle, clock: ManualClock
) -> None:
    from tables import step

    seen: list[str] = []
    lifecycle.subscribe(lambda e: seen.append(e.event))
    run = lifecycle.create(thread_id="t", assistant_id="a")
    for name in path:
        step(lifecycle, clock, run, name)
    assert seen[-1] == last
    assert len(seen) == 2 + len(path)


def test_to_sse_is_a_server_sent_events_frame(lifecycle: RunLifecycle) -> None:
    seen: list[RunEvent] = []
    lifecycle.subscribe(seen.append)
    run = lifecycle.create(thread_id="t", assistant_id="a")
    frame = seen[0].to_sse()
    name_line, data_line, blank, end = frame.split("\n")
    assert name_line == "event: thread.run.created"
    assert json.loads(data_line.removeprefix("data: ")) == run.to_dict()
    assert (blank, end) == ("", "")
    assert DONE_SSE == "event: done\ndata: [DONE]\n\n"


def test_unsubscribe_and_a_failing_listener(
    lifecycle: RunLifecycle, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[str] = []

    def broken(event: RunEvent) -> None:
        raise RuntimeError("listener bug")

    lifecycle.subscribe(broken)
    unsubscribe = lifecycle.subscribe(lambda e: heard.append(e.event))
    with caplog.at_level(logging.ERROR, logger="runstate"):
        run = lifecycle.create(thread_id="t", assistant_id="a")
        lifecycle.start(run)
    assert run.status is RunStatus.IN_PROGRESS  # the broken listener did not undo anything
    assert heard == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"]
    assert "listener bug" in caplog.text
    unsubscribe()
    lifecycle.complete(run)
    assert len(heard) == 3
    with pytest.raises(ValidationError, match="callable"):
        lifecycle.subscribe("not a function")  # type: ignore[arg-type]


def test_event_data_is_a_snapshot(lifecycle: RunLifecycle) -> None:
    seen: list[RunEvent] = []
    lifecycle.subscribe(seen.append)
    run: Run = lifecycle.create(thread_id="t", assistant_id="a")
    lifecycle.start(run)
    seen[-1].data["metadata"]["x"] = "y"
    assert run.metadata == {}
    assert seen[0].data["status"] == "queued"


def test_events_for_a_refusal_after_expiry(lifecycle: RunLifecycle, clock: ManualClock) -> None:
    seen: list[str] = []
    run = lifecycle.create(thread_id="t", assistant_id="a")
    lifecycle.subscribe(lambda e: seen.append(e.event))
    clock.advance(10_000)
    with pytest.raises(InvalidTransitionError, match="Cannot start run with status 'expired'"):
        lifecycle.start(run)
    assert seen == ["thread.run.expired"]


def test_a_manual_clock_shows_its_time() -> None:
    assert repr(ManualClock(5)) == "ManualClock(5)"
