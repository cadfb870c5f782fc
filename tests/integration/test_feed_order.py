"""PostgreSQL's event order without a row that every write takes (schema 9).

An event's place is made from its transaction's id, so places no longer follow commit
order across objects. What must still hold, and what these tests force:

- a follower of the store-wide feed never misses an event, even one whose transaction
  started first and committed last, and never sees one out of its object's order;
- one object's events are placed in the order they commit: a transaction that took its
  id before another one wrote the object cannot write it afterwards;
- many processes writing at once, followers of the feed and of single objects see every
  event once, in each object's order.

A transaction is held open with ``race_workers.held_store``: the store's own statements,
on a connection whose transaction the test commits when it chooses.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections import defaultdict
from typing import Any

import psycopg
import pytest
import race_workers
from tables import PG_BASE, T0, pg_url

from runstate import (
    ConcurrentUpdateError,
    ManualClock,
    PostgresStore,
    RunEngine,
    RunEvent,
    RunStatus,
)

pytestmark = pytest.mark.timeout(240)
ctx = multiprocessing.get_context("spawn")


@pytest.fixture
def engine(pg_schema: str) -> Any:
    engine = RunEngine(PostgresStore(PG_BASE, schema=pg_schema), clock=ManualClock(T0))
    yield engine
    engine.close()


def held(pg_schema: str) -> tuple[RunEngine, psycopg.Connection[Any]]:
    """An engine whose writes wait in one open transaction, which has taken its id."""
    store, conn = race_workers.held_store(PG_BASE, pg_schema)
    conn.execute("SELECT pg_current_xact_id()")
    return RunEngine(store, clock=ManualClock(T0)), conn


def test_a_transaction_that_started_first_and_commits_last_is_not_passed_over(
    engine: RunEngine, pg_schema: str
) -> None:
    a, b, c = (engine.create(thread_id=f"t{i}", assistant_id="x").id for i in range(3))
    cursor = engine.feed(limit=100)[-1].seq
    assert cursor is not None
    late, conn = held(pg_schema)
    late.start(a)  # written, not committed
    engine.start(b)
    engine.start(c)  # committed, by younger transactions
    # Their events are committed but not yet in the feed: reading them now would move a
    # follower past the place of a's event, which commits later.
    assert engine.feed(after_seq=cursor) == []
    assert [e.event for e in engine.events(b)][-1] == "thread.run.in_progress"  # one object's read
    conn.commit()
    fresh = engine.feed(after_seq=cursor)
    assert [(e.run_id, e.event) for e in fresh] == [
        (a, "thread.run.in_progress"),
        (b, "thread.run.in_progress"),
        (c, "thread.run.in_progress"),
    ]
    assert engine.feed(after_seq=fresh[-1].seq or 0) == []
    late.close()


def test_a_rolled_back_transaction_holds_the_feed_only_while_it_runs(
    engine: RunEngine, pg_schema: str
) -> None:
    a, b = (engine.create(thread_id=f"t{i}", assistant_id="x").id for i in range(2))
    cursor = engine.feed(limit=100)[-1].seq or 0
    late, conn = held(pg_schema)
    late.start(a)
    engine.start(b)
    assert engine.feed(after_seq=cursor) == []
    conn.rollback()
    assert [(e.run_id, e.event) for e in engine.feed(after_seq=cursor)] == [
        (b, "thread.run.in_progress")
    ]
    assert engine.get(a).status is RunStatus.QUEUED  # nothing of the rolled-back write
    late.close()


def test_an_older_transaction_cannot_write_an_object_a_younger_one_wrote(
    engine: RunEngine, pg_schema: str
) -> None:
    run = engine.create(thread_id="t", assistant_id="x")
    late, conn = held(pg_schema)
    engine.start(run.id)  # a younger transaction writes the run and commits
    # The older one reads the committed run, but its write would be placed before the
    # younger one's event: the compare-and-set refuses it, every time it tries.
    with pytest.raises(ConcurrentUpdateError):
        late.complete(run.id)
    conn.rollback()
    late.close()
    assert engine.get(run.id).status is RunStatus.IN_PROGRESS
    assert [e.sequence_number for e in engine.history(run.id)] == [0, 1, 2]
    assert engine.complete(run.id).status is RunStatus.COMPLETED  # a new transaction may


def test_a_sweep_passes_over_an_object_a_younger_transaction_wrote(pg_schema: str) -> None:
    clock = ManualClock(T0)
    engine = RunEngine(PostgresStore(PG_BASE, schema=pg_schema), clock=clock)
    old = engine.create(thread_id="t0", assistant_id="x")
    young = engine.create(thread_id="t1", assistant_id="x")
    store, conn = race_workers.held_store(PG_BASE, pg_schema)
    conn.execute("SELECT pg_current_xact_id()")
    late = RunEngine(store, clock=clock)
    engine.start(young.id)  # written by a younger transaction than the sweep's
    clock.advance(3600)  # both are due
    assert [r.id for r in late.expire_due()] == [old.id]
    conn.commit()
    late.close()
    assert engine.get(old.id).status is RunStatus.EXPIRED
    assert [r.id for r in engine.expire_due()] == [young.id]  # the next sweep takes it
    engine.close()


def follow_feed(engine: RunEngine, start: int, stop: threading.Event, seen: list[RunEvent]) -> None:
    """Read the store-wide feed from ``start`` until ``stop``, then once more to its end."""
    after = start
    while True:
        finished = stop.is_set()
        while batch := engine.feed(after_seq=after, limit=500):
            seen.extend(batch)
            after = batch[-1].seq or after
        if finished:
            return


def follow_one(engine: RunEngine, run_id: str, stop: threading.Event, seen: list[int]) -> None:
    """Read one run's events as they land, by event number, until ``stop``."""
    while True:
        finished = stop.is_set()
        last = seen[-1] if seen else None
        seen.extend(e.sequence_number or 0 for e in engine.events(run_id, starting_after=last))
        if finished:
            return


def test_processes_write_while_followers_read_every_event_once_in_order(
    engine: RunEngine, pg_schema: str
) -> None:
    ids = [engine.create(thread_id=f"t{i}", assistant_id="x").id for i in range(40)]
    start = engine.feed(limit=1000)[-1].seq or 0
    stop = threading.Event()
    store_wide: list[RunEvent] = []
    singles: dict[str, list[int]] = {run_id: [] for run_id in ids[:6]}
    followers = [threading.Thread(target=follow_feed, args=(engine, start, stop, store_wide))]
    followers += [
        threading.Thread(target=follow_one, args=(engine, run_id, stop, seen))
        for run_id, seen in singles.items()
    ]
    for follower in followers:
        follower.start()
    url = pg_url(pg_schema)
    barrier = ctx.Barrier(6)
    procs = [
        ctx.Process(target=race_workers.step_many, args=(url, T0, list(ids), barrier, seed))
        for seed in range(4)
    ]
    procs += [
        ctx.Process(
            target=race_workers.write_late,
            args=(PG_BASE, pg_schema, T0, list(ids), barrier, 100 + seed),
        )
        for seed in range(2)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=180)
        assert proc.exitcode == 0
    stop.set()
    for follower in followers:
        follower.join(timeout=60)
    # Every stored event after the start, once, in place order, each run's in its order.
    histories = {run_id: engine.history(run_id) for run_id in ids}
    stored = sorted(
        ((e.seq or 0, e.run_id, e.sequence_number) for h in histories.values() for e in h[2:]),
    )
    assert [(e.seq, e.run_id, e.sequence_number) for e in store_wide] == stored
    assert len(stored) > 3 * len(ids)  # the processes did write
    numbers: dict[str, list[int]] = defaultdict(list)
    for e in store_wide:
        numbers[e.run_id].append(e.sequence_number or 0)
    for run_id, history in histories.items():
        assert numbers[run_id] == list(range(2, len(history)))
    for run_id, seen in singles.items():
        assert seen == list(range(len(histories[run_id])))
    # The writers that held their transactions open did write (cancels are theirs alone).
    assert any(e.event == "thread.run.cancelling" for e in store_wide)


def test_a_follower_from_the_start_sees_a_shuffled_history_in_each_objects_order(
    engine: RunEngine,
) -> None:
    ids = [engine.create(thread_id=f"t{i}", assistant_id="x").id for i in range(10)]
    rng = random.Random(7)
    for _ in range(30):
        run_id = rng.choice(ids)
        status = engine.get(run_id).status
        if status is RunStatus.QUEUED:
            engine.start(run_id)
        elif status is RunStatus.IN_PROGRESS:
            engine.complete(run_id)
    feed = engine.feed(limit=1000)
    assert [e.seq for e in feed] == sorted(e.seq or 0 for e in feed)
    for run_id in ids:
        assert [e.sequence_number for e in feed if e.run_id == run_id] == [
            e.sequence_number for e in engine.history(run_id)
        ]
