"""Schema upgrades: what an earlier release wrote opens and is upgraded in place, by one
process or many at once, keeping every run and event; a failed upgrade changes nothing.

The fixtures (tests/fixtures/) were made by make_schema_v1.py with the release that
wrote schema 1: a SQLite file and a PostgreSQL dump.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
import race_workers
from tables import PG_BASE, pg_url

from runstate import (
    ActiveRunError,
    ManualClock,
    PostgresStore,
    RunEngine,
    SQLiteStore,
    Store,
    StoreError,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
ACTIVE = {"queued", "in_progress", "requires_action", "cancelling"}
# A run's thread is its group since schema 4: the same value, read from either column.
RUN_COLUMNS = "id, {group}, status, created_at, expires_at, version, lease_owner, "
RUN_COLUMNS += "lease_expires_at, attempts, body"


def run_columns(columns: set[str]) -> str:
    return RUN_COLUMNS.format(group="group_id" if "group_id" in columns else "thread_id")


EVENT_COLUMNS = "seq, run_id, event, from_status, to_status, at, data"


def assert_fixture_reads_back(store: Store) -> None:
    # Read at a time when nothing in the fixture is due yet, or reading would expire it.
    engine = RunEngine(store, clock=ManualClock(1_700_000_010))
    runs = {run.thread_id: run for run in engine.list(None, limit=100).data}
    assert len(runs) == 7
    statuses = Counter(run.status.value for run in runs.values())
    assert statuses == Counter(
        {"in_progress": 2, "requires_action": 1, "cancelled": 1, "completed": 1, "failed": 1}
        | {"expired": 1}
    )
    assert runs["thread_queued"].metadata == {"k": "v"}  # claimed by w1 when it was made
    assert store.get(runs["thread_queued"].id).lease_owner == "w1"
    assert runs["thread_requires_action"].pending_tool_calls[0]["id"] == "call_1"
    assert runs["thread_failed"].last_error == {
        "code": "rate_limit_exceeded",
        "message": "slow down",
    }
    events = engine.feed(after_seq=0, limit=1000)
    assert len(events) == 7 * 2 + 4 + 1 + 1 + 1 + 1 + 2 + 1  # creates, starts, ..., expire
    assert [e.event for e in engine.history(runs["thread_cancelled"].id)][-2:] == [
        "thread.run.cancelling",
        "thread.run.cancelled",
    ]
    # The upgraded schema still enforces one active run per thread, and writes.
    with pytest.raises(ActiveRunError, match="already has an active run"):
        engine.create(thread_id="thread_in_progress", assistant_id="a")
    engine.complete(runs["thread_in_progress"].id)
    engine.create(thread_id="thread_in_progress", assistant_id="a")
    engine.close()


def open_at_once(url: str, processes: int, start: str) -> list[int | None]:
    """Open the store at ``url`` from ``processes`` processes started together (a
    barrier); their exit codes."""
    ctx = multiprocessing.get_context(start)
    barrier = ctx.Barrier(processes)
    procs = [
        ctx.Process(target=race_workers.open_store_at_once, args=(url, barrier))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    return [proc.exitcode for proc in procs]


def assert_numbered(rows: Any) -> None:
    """Each run's events, in log order, are numbered 0, 1, 2, ... with no gaps."""
    seen: dict[str, int] = {}
    for run_id, number in rows:
        assert number == seen.get(run_id, 0), (run_id, number)
        seen[run_id] = number + 1
    assert seen


# --- SQLite ------------------------------------------------------------------------------------


def sqlite_rows(path: Path) -> tuple[list[Any], list[Any]]:
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        runs = conn.execute(f"SELECT {run_columns(columns)} FROM runs ORDER BY seq").fetchall()
        events = conn.execute(f"SELECT {EVENT_COLUMNS} FROM run_events ORDER BY seq").fetchall()
    return runs, events


@pytest.fixture
def v1_file(tmp_path: Path) -> Path:
    path = tmp_path / "runs.db"
    shutil.copy(FIXTURES / "schema_v1.db", path)
    return path


def test_a_schema_1_file_is_upgraded_in_place_keeping_everything(v1_file: Path) -> None:
    before = sqlite_rows(v1_file)
    store = SQLiteStore(v1_file, create=False)
    assert (store.upgraded_from, store.schema_version) == (1, 9)
    store.close()
    assert sqlite_rows(v1_file) == before  # every run and event, byte for byte
    with sqlite3.connect(v1_file) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 9
        assert_numbered(conn.execute("SELECT run_id, number FROM run_events ORDER BY seq"))
        counts = conn.execute(
            "SELECT count(*) FROM runs WHERE event_count != "
            "(SELECT count(*) FROM run_events WHERE run_id = runs.id)"
        ).fetchone()
        assert counts == (0,)
        # Schema 8's flag: what the claim took up to 7 (a queued object) waits for a worker.
        for status, waiting in conn.execute("SELECT status, waiting FROM runs"):
            assert waiting == (status == "queued")
        for status, active in conn.execute("SELECT status, active FROM runs"):
            assert active == (status in ACTIVE)
        assert conn.execute("SELECT DISTINCT kind, input FROM runs").fetchall() == [("run", None)]
        dated = conn.execute(
            "SELECT count(*) FROM runs WHERE (ended_at IS NULL) != (active = 1) OR ended_at != "
            "(SELECT max(at) FROM run_events WHERE run_id = runs.id)"
        ).fetchone()
        assert dated == (0,)  # every ended run dated by its last event, no active one
        indexes = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
    assert "WHERE active = 1" in indexes["runs_one_active_per_group"]
    assert "WHERE active = 1" in indexes["runs_due"]
    assert_fixture_reads_back(SQLiteStore(v1_file, create=False))


def test_many_processes_upgrade_one_file_at_once(v1_file: Path) -> None:
    before = sqlite_rows(v1_file)
    assert open_at_once(f"sqlite:///{v1_file}", 8, "fork") == [0] * 8
    assert sqlite_rows(v1_file) == before
    assert_fixture_reads_back(SQLiteStore(v1_file, create=False))


def test_a_failed_upgrade_changes_nothing(v1_file: Path) -> None:
    with sqlite3.connect(v1_file) as conn:  # a file the upgrade's step 2 cannot apply to
        conn.execute("DROP INDEX runs_due")
    digest = hashlib.sha256(v1_file.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match="no such index: runs_due"):
        SQLiteStore(v1_file, create=False)
    assert hashlib.sha256(v1_file.read_bytes()).hexdigest() == digest
    with sqlite3.connect(v1_file) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1


def test_runstate_migrate_upgrades_and_then_says_it_is_up_to_date(v1_file: Path) -> None:
    def migrate() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "runstate", "migrate", f"sqlite:///{v1_file}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    assert migrate() == f"SQLiteStore({str(v1_file)!r}): schema version 1 -> 9\n"
    assert migrate() == f"SQLiteStore({str(v1_file)!r}): schema version 9, up to date\n"


# --- PostgreSQL ----------------------------------------------------------------------------------


def load_v1_dump(schema: str) -> None:
    dump = (FIXTURES / "schema_v1_postgres.sql").read_text().replace("rs_fixture_v1", schema)
    subprocess.run(
        ["psql", "--quiet", "--set", "ON_ERROR_STOP=1", PG_BASE],
        input=dump,
        text=True,
        check=True,
        capture_output=True,
    )


def pg_rows(schema: str) -> tuple[list[Any], list[Any]]:
    with psycopg.connect(PG_BASE) as conn:
        columns = {
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = 'runs'",
                (schema,),
            )
        }
        runs = conn.execute(
            f"SELECT {run_columns(columns)} FROM {schema}.runs ORDER BY seq"
        ).fetchall()
        events = conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM {schema}.run_events ORDER BY seq"
        ).fetchall()
    return runs, events


def test_a_schema_1_postgres_schema_is_upgraded_in_place(pg_schema: str) -> None:
    load_v1_dump(pg_schema)
    before = pg_rows(pg_schema)
    store = PostgresStore(PG_BASE, schema=pg_schema)
    assert (store.upgraded_from, store.schema_version) == (1, 10)
    store.close()
    assert pg_rows(pg_schema) == before
    with psycopg.connect(PG_BASE) as conn:
        version = conn.execute(f"SELECT value FROM {pg_schema}.runstate_meta").fetchone()
        assert version == ("10",)
        # No row that every write takes: the counter is gone.
        counter = conn.execute("SELECT to_regclass(%s)", (f"{pg_schema}.run_event_counter",))
        assert counter.fetchone() == (None,)
        assert_numbered(
            conn.execute(f"SELECT run_id, number FROM {pg_schema}.run_events ORDER BY seq")
        )
        for status, waiting in conn.execute(f"SELECT status, waiting FROM {pg_schema}.runs"):
            assert waiting == (status == "queued")
        for status, active in conn.execute(f"SELECT status, active FROM {pg_schema}.runs"):
            assert active == (status in ACTIVE)
        functions = {
            row[0]
            for row in conn.execute(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = %s",
                (pg_schema,),
            )
        }
    # One write path (the old write functions are gone), the one-round-trip create,
    # which ends on it, and the two that place events and bound the feed.
    assert functions == {
        "runstate_write_v10",
        "runstate_insert_v10",
        "runstate_place_v9",
        "runstate_feed_below_v9",
    }
    assert_fixture_reads_back(PostgresStore(PG_BASE, schema=pg_schema))
    # A follower of the store-wide feed that had read the old events goes on past them:
    # every new place is above the old ones.
    last = max(seq for seq, *_ in before[1])
    engine = RunEngine(PostgresStore(PG_BASE, schema=pg_schema))
    fresh = engine.feed(after_seq=last, limit=1000)
    assert [e.event for e in fresh][-3:] == [
        "thread.run.completed",
        "thread.run.created",
        "thread.run.queued",
    ]
    assert all(e.seq is not None and e.seq > last for e in fresh)
    engine.close()


def test_many_processes_upgrade_one_postgres_schema_at_once(pg_schema: str) -> None:
    load_v1_dump(pg_schema)
    before = pg_rows(pg_schema)
    assert open_at_once(pg_url(pg_schema), 6, "spawn") == [0] * 6
    assert pg_rows(pg_schema) == before
    assert_fixture_reads_back(PostgresStore(PG_BASE, schema=pg_schema))
