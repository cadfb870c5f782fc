"""What each operation costs in trips to the database, pinned: on PostgreSQL a create,
a claim and a worker's step are one round trip each (a stale step costs one read more);
on SQLite a step is one transaction of four statements. Counted, never timed."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tables import CALLS, OUTPUT, OUTPUTS, PG_BASE

from runstate import (
    ManualClock,
    PostgresStore,
    ResponseEngine,
    RunEngine,
    RunStatus,
    SQLiteStore,
    StoreError,
)
from runstate.stores import ClaimStep

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
from counting import RoundTrips, Statements

T0 = 1_700_000_000


@pytest.fixture
def pg(pg_schema: str) -> Iterator[PostgresStore]:
    store = PostgresStore(PG_BASE, schema=pg_schema, max_size=1)
    yield store
    store.close()


def test_postgres_create_claim_and_steps_are_one_round_trip_each(pg: PostgresStore) -> None:
    engine = RunEngine(pg, clock=ManualClock(T0))
    trips = RoundTrips(pg)
    made: list = []
    assert trips.of(lambda: made.append(engine.create(thread_id="t", assistant_id="a"))) == 1
    key = {"thread_id": "t2", "assistant_id": "a", "idempotency_key": "k"}
    assert trips.of(lambda: engine.create(**key)) == 1
    assert trips.of(lambda: engine.create(**key)) == 2  # the key's object, read back
    assert trips.of(lambda: engine.claim("w")) == 1
    run = made[0]
    assert trips.of(lambda: engine.require_action(run.id, CALLS, worker_id="w")) == 1
    assert trips.of(lambda: engine.submit_tool_outputs(run.id, OUTPUTS)) == 1
    assert trips.of(lambda: engine.claim("w")) == 1
    assert trips.of(lambda: engine.complete(run.id, worker_id="w")) == 1
    assert trips.of(lambda: engine.get(run.id)) == 1
    assert engine.get(run.id).status is RunStatus.COMPLETED


def test_postgres_a_stale_step_costs_one_read_more(pg: PostgresStore) -> None:
    mine, other = RunEngine(pg, clock=ManualClock(T0)), RunEngine(pg, clock=ManualClock(T0))
    run = mine.create(thread_id="t", assistant_id="a")
    other.start(run.id)
    trips = RoundTrips(pg)
    assert trips.of(lambda: mine.complete(run.id)) == 2  # the refusal checked on a read
    assert other.get(run.id).status is RunStatus.COMPLETED


def test_postgres_a_lost_compare_and_set_costs_a_read_and_a_write(pg: PostgresStore) -> None:
    mine, other = RunEngine(pg, clock=ManualClock(T0)), RunEngine(pg, clock=ManualClock(T0))
    run = mine.create(thread_id="t", assistant_id="a")
    mine.start(run.id)
    other.cancel(run.id)
    trips = RoundTrips(pg)
    assert trips.of(lambda: mine.complete(run.id)) == 3  # lost write, read, write


def test_postgres_a_response_claim_its_deltas_and_complete(pg: PostgresStore) -> None:
    engine = ResponseEngine(pg, clock=ManualClock(T0))
    response = engine.create(model="gpt-4o", input="hi", background=True)
    trips = RoundTrips(pg)
    assert trips.of(lambda: engine.claim("w")) == 1
    delta = "response.progress"
    for _ in range(3):
        assert trips.of(lambda: engine.append(response.id, delta, {"delta": "x"})) == 1
    assert trips.of(lambda: engine.complete(response.id, output=OUTPUT, worker_id="w")) == 1


def test_sqlite_a_step_is_one_transaction_of_four_statements(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    engine = RunEngine(store, clock=ManualClock(T0))
    run = engine.create(thread_id="t", assistant_id="a")
    statements = Statements(store)
    assert statements.of(lambda: engine.claim("w")) == 5, statements.last
    assert statements.last[0] == "BEGIN IMMEDIATE" and statements.last[-1] == "COMMIT"
    # A step that webhook endpoints are told of also writes its deliveries (the outbox),
    # in the same transaction.
    assert statements.of(lambda: engine.require_action(run.id, CALLS, worker_id="w")) == 5
    assert statements.last == [
        "BEGIN IMMEDIATE",
        "UPDATE runs SET",
        "INSERT INTO webhook_deliveries",
        "INSERT INTO run_events",
        "COMMIT",
    ]
    outputs = [{"tool_call_id": c["id"], "output": "ok"} for c in CALLS]
    assert statements.of(lambda: engine.submit_tool_outputs(run.id, outputs)) == 4
    assert statements.last == [
        "BEGIN IMMEDIATE",
        "UPDATE runs SET",
        "INSERT INTO run_events",
        "COMMIT",
    ]
    store.close()


def test_a_claim_step_the_lifecycle_disagrees_with_is_refused(pg: PostgresStore) -> None:
    engine = RunEngine(pg, clock=ManualClock(T0))
    run = engine.create(thread_id="t", assistant_id="a")
    wrong = ClaimStep("queued", "in_progress", "thread.run.in_progress", None, None, (), "w", 60)
    decide = lambda stored, now: engine._claimed("w", 60, stored, now)  # noqa: E731
    with pytest.raises(StoreError, match=f"claim of {run.id} wrote .* where the lifecycle"):
        pg.claim(engine.lifecycle.now, decide, kind="run", step=wrong)  # no started_at
