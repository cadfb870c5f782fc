"""The schema-version-1 fixtures (tests/fixtures/, made by make_schema_v1.py with the
release that wrote schema 1) open and read back whole: every run, status and event."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

from conftest import PG_BASE

from runstate import ManualClock, PostgresStore, RunEngine, SQLiteStore, Store

FIXTURES = Path(__file__).parents[1] / "fixtures"
STATUSES = {
    "queued": 0,
    "in_progress": 1,
    "requires_action": 1,
    "cancelled": 1,
    "completed": 1,
    "failed": 1,
    "expired": 1,
}


def assert_fixture_reads_back(store: Store) -> None:
    # Read at a time when nothing in the fixture is due yet, or reading would expire it.
    engine = RunEngine(store, clock=ManualClock(1_700_000_010))
    runs = {run.thread_id: run for run in engine.list(None, limit=100).data}
    assert len(runs) == 7
    # The queued run was claimed: thread_queued's run is the leased one.
    statuses = Counter(run.status.value for run in runs.values())
    assert statuses == Counter({**STATUSES, "in_progress": 2})
    assert runs["thread_queued"].metadata == {"k": "v"}
    assert store.get(runs["thread_queued"].id).lease_owner == "w1"
    waiting = runs["thread_requires_action"]
    assert waiting.pending_tool_calls[0]["id"] == "call_1"
    assert runs["thread_failed"].last_error == {
        "code": "rate_limit_exceeded",
        "message": "slow down",
    }
    events = engine.events(after_seq=0, limit=1000)
    assert len(events) == 7 * 2 + 4 + 1 + 1 + 1 + 1 + 2 + 1  # creates, starts, claim, ..., expire
    assert [e.event for e in engine.history(runs["thread_cancelled"].id)][-2:] == [
        "thread.run.cancelling",
        "thread.run.cancelled",
    ]
    engine.close()


def test_the_sqlite_fixture_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    shutil.copy(FIXTURES / "schema_v1.db", path)
    assert_fixture_reads_back(SQLiteStore(path, create=False))


def test_the_postgres_fixture_reads_back(pg_schema: str) -> None:
    dump = (FIXTURES / "schema_v1_postgres.sql").read_text().replace("rs_fixture_v1", pg_schema)
    subprocess.run(
        ["psql", "--quiet", "--set", "ON_ERROR_STOP=1", PG_BASE],
        input=dump,
        text=True,
        check=True,
        capture_output=True,
    )
    assert_fixture_reads_back(PostgresStore(PG_BASE, schema=pg_schema))
