"""runstate logs under the ``runstate`` logger with structured fields, and never one
record per transition at INFO."""

from __future__ import annotations

import logging

import pytest

from runstate import ManualClock, RunEngine


def test_each_step_is_a_debug_record_with_its_fields(caplog: pytest.LogCaptureFixture) -> None:
    engine = RunEngine()
    with caplog.at_level(logging.DEBUG, logger="runstate"):
        run = engine.create(thread_id="t", assistant_id="a")
        engine.claim("w1")
        engine.complete(run.id, worker_id="w1")
    records = [r for r in caplog.records if r.name == "runstate"]
    assert [r.event for r in records] == [  # type: ignore[attr-defined]
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.completed",
    ]
    assert all(r.levelno == logging.DEBUG for r in records)
    assert {r.object_id for r in records} == {run.id}  # type: ignore[attr-defined]
    assert {r.lifecycle for r in records} == {"run"}  # type: ignore[attr-defined]
    claimed = records[2]
    assert (claimed.from_status, claimed.to_status, claimed.worker) == (  # type: ignore[attr-defined]
        "queued",
        "in_progress",
        "w1",
    )


def test_nothing_per_transition_at_info_and_a_line_per_sweep(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(1_000)
    engine = RunEngine(clock=clock, ttl=5, lease_seconds=2)
    with caplog.at_level(logging.INFO, logger="runstate"):
        for i in range(20):
            run = engine.create(thread_id=f"t{i}", assistant_id="a")
            engine.cancel(run.id)
        assert [r for r in caplog.records if r.name == "runstate"] == []
        engine.create(thread_id="due", assistant_id="a")
        engine.create(thread_id="stalled", assistant_id="a")
        engine.claim("w")
        clock.advance(2)
        engine.recover_stalled()
        clock.advance(5)
        engine.expire_due()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "runstate"]
    assert lines == [("INFO", "recovered stalled 1 run(s)"), ("INFO", "timed out 2 run(s)")]
    assert len(caplog.records[-1].object_ids) == 2  # type: ignore[attr-defined]
