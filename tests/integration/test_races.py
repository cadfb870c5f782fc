"""Races between processes on the real stores: one SQLite file, one PostgreSQL schema.

Four or more processes start together (a barrier, never a sleep) and drive the same
runs. Afterwards every run has exactly one terminal status and one terminal timestamp,
a history that is a legal chain ending in that status, and no run was claimed twice.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import race_workers as workers
from tables import pg_url

from runstate import ResponseEngine, Run, RunEngine, RunStatus, open_store

T0 = 1_700_000_000
CALLS = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
OUTPUTS = [{"tool_call_id": "call_1", "output": "x"}]
TERMINAL_STAMPS = {"completed": "completed_at", "failed": "failed_at", "cancelled": "cancelled_at"}
RESPONSE_ENDS = {"completed", "failed", "cancelled", "incomplete"}
ctx = multiprocessing.get_context("spawn")
pytestmark = pytest.mark.timeout(240)


def run_all(targets: list[tuple[Any, tuple[Any, ...]]]) -> None:
    procs = [ctx.Process(target=fn, args=args) for fn, args in targets]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    for p in procs:
        if p.is_alive():
            p.kill()
        assert p.exitcode == 0, f"{p.name} exited {p.exitcode}"


def check_consistent(engine: RunEngine, run: Run) -> None:
    """One terminal status, one terminal timestamp, a legal history ending in it."""
    assert run.status.is_terminal, run
    stamps = {status: getattr(run, stamp) for status, stamp in TERMINAL_STAMPS.items()}
    assert [s for s, t in stamps.items() if t is not None] == (
        [run.status.value] if run.status.value in stamps else []
    )
    events = engine.history(run.id)
    status = "queued"
    for event in events[2:]:
        assert event.from_status == status, [e.event for e in events]
        status = event.to_status
    assert status == run.status.value
    terminal_events = [
        e for e in events if e.to_status in ("completed", "failed", "cancelled", "expired")
    ]
    assert len(terminal_events) == 1


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'race.db'}"
    return pg_url(request.getfixturevalue("pg_schema"))


def engine_on(url: str, clock: Any, **kwargs: Any) -> RunEngine:
    return RunEngine(open_store(url), clock=clock, **kwargs)


def test_cancel_races_complete(url: str) -> None:
    engine = engine_on(url, lambda: T0)
    ids = [engine.create(thread_id=f"t{i}", assistant_id="a").id for i in range(150)]
    for run_id in ids:
        engine.start(run_id)
    barrier = ctx.Barrier(4)
    run_all(
        [
            (workers.complete_all, (url, T0, ids, barrier, 1)),
            (workers.complete_all, (url, T0, ids, barrier, 2)),
            (workers.cancel_all, (url, T0, ids, barrier, 3)),
            (workers.cancel_all, (url, T0, ids, barrier, 4)),
        ]
    )
    outcomes = Counter()
    for run_id in ids:
        run = engine.get(run_id)
        check_consistent(engine, run)
        outcomes[run.status] += 1
    assert set(outcomes) <= {RunStatus.COMPLETED, RunStatus.CANCELLED}
    assert sum(outcomes.values()) == len(ids)


def test_expiry_races_tool_outputs(url: str) -> None:
    engine = engine_on(url, lambda: T0, ttl=100)
    ids = []
    for i in range(150):
        run = engine.create(thread_id=f"t{i}", assistant_id="a")
        engine.start(run.id)
        engine.require_action(run.id, CALLS)
        ids.append(run.id)
    barrier = ctx.Barrier(4)
    before_expiry, at_expiry = T0 + 99, T0 + 100
    run_all(
        [
            (workers.submit_and_finish, (url, before_expiry, ids, OUTPUTS, barrier, 1)),
            (workers.submit_and_finish, (url, before_expiry, ids, OUTPUTS, barrier, 2)),
            (workers.sweep_until_quiet, (url, at_expiry, barrier)),
            (workers.sweep_until_quiet, (url, at_expiry, barrier)),
        ]
    )
    reader = engine_on(url, lambda: before_expiry)  # reads must not expire
    statuses = Counter()
    for run_id in ids:
        run = reader.get(run_id)
        check_consistent(reader, run)
        statuses[run.status] += 1
        if run.status is RunStatus.EXPIRED:
            assert run.expires_at == at_expiry and run.required_action is None
    assert set(statuses) <= {RunStatus.COMPLETED, RunStatus.EXPIRED}


def test_expiry_races_claims(url: str) -> None:
    engine = engine_on(url, lambda: T0, ttl=100)
    ids = {engine.create(thread_id=f"t{i}", assistant_id="a").id for i in range(200)}
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    before_expiry, at_expiry = T0 + 99, T0 + 100
    run_all(
        [
            (workers.claim_and_finish, (url, before_expiry, "w1", barrier, results)),
            (workers.claim_and_finish, (url, before_expiry, "w2", barrier, results)),
            (workers.sweep_until_quiet, (url, at_expiry, barrier)),
            (workers.sweep_until_quiet, (url, at_expiry, barrier)),
        ]
    )
    claimed = [run_id for _ in range(2) for run_id in results.get(timeout=10)]
    assert len(claimed) == len(set(claimed))  # never claimed twice
    reader = engine_on(url, lambda: before_expiry)
    for run_id in ids:
        run = reader.get(run_id)
        check_consistent(reader, run)
        assert run.status in (RunStatus.COMPLETED, RunStatus.EXPIRED)
        if run.status is RunStatus.COMPLETED:
            assert run_id in claimed


def test_claims_never_overlap(url: str) -> None:
    engine = engine_on(url, lambda: T0)
    ids = {engine.create(thread_id=f"t{i}", assistant_id="a").id for i in range(300)}
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    run_all([(workers.claim_until_empty, (url, T0, f"w{i}", barrier, results)) for i in range(4)])
    claims = [results.get(timeout=10) for _ in range(4)]
    claimed = [run_id for _, ids_of_worker in claims for run_id in ids_of_worker]
    assert len(claimed) == len(set(claimed)) == len(ids)
    assert set(claimed) == ids
    for run_id in ids:
        run = engine.get(run_id)
        check_consistent(engine, run)
        assert run.status is RunStatus.COMPLETED
        starts = [e for e in engine.history(run_id) if e.event == "thread.run.in_progress"]
        assert len(starts) == 1
    assert sum(1 for _, got in claims if got) >= 2  # the work really was shared


def check_response_stream(engine: ResponseEngine, response_id: str) -> list[str]:
    """Numbered 0, 1, 2... without gaps; exactly one terminal event, and nothing after it."""
    events = engine.events(response_id)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    names = [e.event for e in events]
    ends = [i for i, e in enumerate(events) if e.to_status in RESPONSE_ENDS and not e.appended]
    assert ends == [len(events) - 1], names
    return names


def test_a_cancel_races_a_streaming_worker(url: str) -> None:
    """Two processes stream deltas and complete as the worker; two cancel. Each response
    ends once: completed, with every delta before it, or cancelled, with no delta and no
    complete after the cancel."""
    engine = ResponseEngine(open_store(url), lambda: T0)
    ids = [engine.create(model="m", input="hi").id for _ in range(120)]
    while engine.claim("w") is not None:
        pass
    barrier = ctx.Barrier(4)
    run_all(
        [
            (workers.stream_and_complete, (url, T0, ids, barrier, 1)),
            (workers.stream_and_complete, (url, T0, ids, barrier, 2)),
            (workers.cancel_responses, (url, T0, ids, barrier, 3)),
            (workers.cancel_responses, (url, T0, ids, barrier, 4)),
        ]
    )
    outcomes = Counter()
    for response_id in ids:
        response = engine.get(response_id)
        names = check_response_stream(engine, response_id)
        outcomes[response.status.value] += 1
        assert names[-1] == f"response.{response.status.value}"
        assert (response.completed_at is not None) == (response.status.value == "completed")
    assert set(outcomes) <= {"completed", "cancelled"} and sum(outcomes.values()) == len(ids)


def test_response_claims_never_overlap_and_never_take_a_run(url: str) -> None:
    responses = ResponseEngine(open_store(url), lambda: T0)
    runs = engine_on(url, lambda: T0)
    ids = {responses.create(model="m", input="hi").id for _ in range(200)}
    run_ids = [runs.create(thread_id=f"t{i}", assistant_id="a").id for i in range(20)]
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    run_all([(workers.claim_responses, (url, T0, f"w{i}", barrier, results)) for i in range(4)])
    claims = [results.get(timeout=10) for _ in range(4)]
    claimed = [i for _, got in claims for i in got]
    assert len(claimed) == len(set(claimed)) and set(claimed) == ids
    for response_id in ids:
        names = check_response_stream(responses, response_id)
        assert names.count("response.in_progress") == 1 and names[-1] == "response.completed"
    assert all(runs.get(run_id).status is RunStatus.QUEUED for run_id in run_ids)


@pytest.mark.parametrize("kind", ["run", "response"])
def test_eight_processes_creating_with_one_key_make_one_object(url: str, kind: str) -> None:
    engine_on(url, None).close()  # the schema exists before they race
    barrier = ctx.Barrier(8)
    results = ctx.Queue()
    run_all([(workers.create_with_key, (url, T0, kind, barrier, results)) for _ in range(8)])
    made = {results.get(timeout=10) for _ in range(8)}
    assert len(made) == 1  # every process got the one object
    (object_id,) = made
    if kind == "run":
        engine = engine_on(url, lambda: T0)
        assert [r.id for r in engine.list(None).data] == [object_id]
        assert len(engine.history(object_id)) == 2
    else:
        responses = ResponseEngine(open_store(url), lambda: T0)
        assert [r.id for r in responses.list().data] == [object_id]
        assert len(responses.events(object_id)) == 2


def test_one_active_run_per_thread_across_processes(url: str) -> None:
    threads = [f"thread_{i}" for i in range(100)]
    engine_on(url, None).close()
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    run_all([(workers.create_on_threads, (url, T0, threads, barrier, results)) for _ in range(4)])
    outcomes = [results.get(timeout=10) for _ in range(4)]
    won = [run_id for w, _ in outcomes for run_id in w]
    assert len(won) == len(threads)
    assert sum(len(lost) for _, lost in outcomes) == 3 * len(threads)
    engine = engine_on(url, lambda: T0)
    assert sorted(engine.get(r).thread_id for r in won) == sorted(threads)


def test_a_killed_worker_leaves_its_run_recoverable(url: str) -> None:
    engine = engine_on(url, lambda: T0)
    run = engine.create(thread_id="t", assistant_id="a")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=workers.claim_and_hang, args=(url, T0, child))
    proc.start()
    assert parent.poll(60), "the worker never claimed"
    assert parent.recv() == run.id
    os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
    proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL
    stored = engine.store.get(run.id)
    assert (stored.obj.status, stored.lease_owner) == (RunStatus.IN_PROGRESS, "doomed-worker")
    later = engine_on(url, lambda: T0 + 30)
    (recovered,) = later.recover_stalled()
    assert recovered.status is RunStatus.QUEUED
    again = later.claim("survivor")
    assert again is not None and again.id == run.id
    done = later.complete(run.id, worker_id="survivor")
    check_consistent(later, done)


@pytest.mark.parametrize("after", [3, 25, 60])
def test_sigkill_in_the_middle_of_writes_leaves_the_file_consistent(url: str, after: int) -> None:
    engine_on(url, None).close()
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=workers.churn, args=(url, T0, child))
    proc.start()
    progress = 0
    while progress < after:
        assert parent.poll(60), "the churner stopped"
        progress = parent.recv()
    os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
    proc.join(timeout=30)
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
    engine = engine_on(url, lambda: T0)
    runs = engine.list(None, limit=100).data
    assert len(runs) >= after
    for run in runs:
        history = engine.history(run.id)
        status = "queued"
        for event in history[2:]:
            assert event.from_status == status
            status = event.to_status
        assert status == run.status.value  # every write landed whole with its history row
        if run.status.is_terminal:
            check_consistent(engine, run)
