"""What only the SQLite store has: a file, its schema, its locks and its indexes."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from tables import CALLS, OUTPUTS

from runstate import ManualClock, RunEngine, RunStatus, SQLiteStore, StoreError, ValidationError
from runstate.stores._sqlite import SQL


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_runs_and_history_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    engine = RunEngine(SQLiteStore(path))
    run = engine.create(thread_id="t", assistant_id="a", metadata={"k": "v"})
    engine.claim("w")
    engine.close()
    again = RunEngine(SQLiteStore(path))
    assert again.get(run.id).status is RunStatus.IN_PROGRESS
    assert again.get(run.id).metadata == {"k": "v"}
    assert [e.event for e in again.history(run.id)][-1] == "thread.run.in_progress"
    assert again.store.get(run.id).lease_owner == "w"


def test_the_wal_stays_bounded_under_steady_writes(tmp_path: Path) -> None:
    from runstate.stores._sqlite import WAL_LIMIT

    path = tmp_path / "runs.db"
    engine = RunEngine(SQLiteStore(path))
    run = engine.create(thread_id="t", assistant_id="a")
    engine.start(run.id)
    largest = 0
    for _ in range(1500):  # about 7,500 WAL frames (30 MB) were it never checkpointed
        engine.require_action(run.id, CALLS)
        engine.submit_tool_outputs(run.id, OUTPUTS)
        engine.start(run.id)
        largest = max(largest, os.path.getsize(f"{path}-wal"))
    page = 4096
    assert largest <= WAL_LIMIT + 1100 * page, largest
    engine.close()


def test_the_file_is_in_wal_mode_with_our_marks(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA application_id").fetchone()[0] == 0x52554E53
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 9
    indexes = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    }
    assert {"runs_one_active_per_group", "runs_due", "runs_queue", "runs_leases"} <= indexes


def test_the_sweeps_and_claims_read_their_indexes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")

    def plan(sql: str, args: dict[str, object]) -> str:
        with store._connection() as conn:
            rows = conn.execute("EXPLAIN QUERY PLAN " + sql, args)
            return " ".join(str(row[-1]) for row in rows)

    for kind in ("run", "response"):
        args = {"kind": kind, "now": 0, "limit": 10}
        assert "USING INDEX runs_due" in plan(SQL["due"], args)
        assert "USING INDEX runs_queue" in plan(SQL["claimable"], args)
        assert "USING INDEX runs_leases" in plan(SQL["stalled"], args)
        assert "SCAN runs" not in plan(SQL["due"], args)


@pytest.mark.parametrize(
    "setup",
    [
        # Another application's tables, no application id.
        ["CREATE TABLE notes (body TEXT)", "INSERT INTO notes VALUES ('keep me')"],
        # Another application's id, even with a table named as ours.
        ["PRAGMA application_id = 1234", "CREATE TABLE runs (note TEXT)"],
    ],
)
def test_a_foreign_sqlite_database_is_refused_and_untouched(
    tmp_path: Path, setup: list[str]
) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    for statement in setup:
        conn.execute(statement)
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StoreError, match="is a SQLite database, but not runstate's"):
        SQLiteStore(path)
    assert digest(path) == before


def test_a_corrupt_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    before = digest(path)
    with pytest.raises(StoreError, match="cannot be used"):
        SQLiteStore(path)
    assert digest(path) == before


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 10")
    conn.close()
    with pytest.raises(StoreError, match="schema version 10; this runstate reads versions up to 9"):
        SQLiteStore(path)


@pytest.mark.parametrize("path", [":memory:", "file:x?mode=memory"])
def test_only_real_files(path: str) -> None:
    with pytest.raises(StoreError, match="needs a file path"):
        SQLiteStore(path)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "Invalid 'path': expected a non-empty string."),
        ("a\x00b", "Invalid 'path': the string holds a NUL character."),
        ("\ud800.db", "Invalid 'path': the string is not valid UTF-8 (it holds a lone surrogate)."),
        (5, "Invalid 'path': expected a string, got int."),
    ],
)
def test_bad_paths_are_validation_errors(tmp_path: Path, path: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SQLiteStore(path)  # type: ignore[arg-type]
    assert caught.value.message == message


def test_create_false_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="No SQLite database at"):
        SQLiteStore(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_a_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot be used"):
        SQLiteStore(tmp_path / "no" / "such" / "dir.db")


def test_a_lock_held_too_long_is_a_store_error_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    clock = ManualClock(1_000)
    engine = RunEngine(SQLiteStore(path, busy_timeout=0.2), clock=clock)
    run = engine.create(thread_id="t", assistant_id="a")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="stayed locked"):
            engine.start(run.id)
        with pytest.raises(StoreError, match="stayed locked"):
            engine.create(thread_id="t2", assistant_id="a")
        assert engine.get(run.id).status is RunStatus.QUEUED  # reads go on under WAL
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert engine.start(run.id).status is RunStatus.IN_PROGRESS
    assert [r.thread_id for r in engine.list(None).data] == ["t"]


def test_sqlite_errors_never_reach_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    engine = RunEngine(store)
    run = engine.create(thread_id="t", assistant_id="a")
    with store._connection() as conn:
        conn.execute("DROP TABLE run_events")
    with pytest.raises(StoreError) as caught:
        engine.start(run.id)
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    assert caught.value.http_status == 503
    assert caught.value.to_dict()["error"]["type"] == "server_error"
    assert store.get(run.id).obj.status is RunStatus.QUEUED  # the transaction rolled back


def test_create_false_refuses_an_empty_file_and_leaves_it_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(StoreError, match="is not a runstate database \\(it is empty\\)"):
        SQLiteStore(path, create=False)
    assert path.stat().st_size == 0


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_short_lived_threads_share_a_bounded_set_of_connections(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db", max_connections=4)
    engine = RunEngine(store)
    run = engine.create(thread_id="t", assistant_id="a")
    before = open_descriptors()
    barrier = threading.Barrier(20)

    def one_read() -> None:
        barrier.wait()  # twenty at a time, so that they overlap
        assert engine.get(run.id).id == run.id

    for _ in range(20):  # 400 threads in all, each gone after one read
        threads = [threading.Thread(target=one_read) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # Each connection holds the file and its WAL open: at most 4 connections' worth more.
    assert open_descriptors() - before <= 4 * 2
    assert len(store._idle) <= 4
    store.close()
    assert open_descriptors() < before  # the first connection's descriptors are gone too


def test_two_hundred_processes_open_a_new_file_at_once(tmp_path: Path) -> None:
    import multiprocessing

    import race_workers

    ctx = multiprocessing.get_context("fork")  # spawn would take minutes for 200
    path = str(tmp_path / "fresh.db")
    barrier = ctx.Barrier(200)
    procs = [
        ctx.Process(target=race_workers.open_fresh, args=(path, barrier, n)) for n in range(200)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 200
    engine = RunEngine(SQLiteStore(path, create=False))
    assert len(engine.list(None, limit=100).data) == 100
    assert engine.list(None, limit=100).has_more
    engine.close()


def test_closing_while_a_connection_is_in_use_closes_it_when_it_comes_back(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    with store._connection() as conn:
        store.close()
        conn.execute("SELECT 1")  # still usable until given back
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")  # closed on return
    with pytest.raises(StoreError, match="is closed"):
        store.get("run_x")


def test_a_pool_with_no_free_connection_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db", max_connections=1, busy_timeout=0.1)
    held = threading.Event()
    done = threading.Event()

    def hold() -> None:
        with store._connection():
            held.set()
            done.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(30)
    try:
        with pytest.raises(StoreError, match="had no free connection for 0.1 s"):
            store.get("run_x")
    finally:
        done.set()
        holder.join()
    store.close()


class LockedTwice(SQLiteStore):
    """A store whose first two schema checks find the file locked, as the losers of a
    race to open a new file do (SQLite answers some of those at once, without waiting)."""

    tries = 0

    def _open_schema_once(self, create: bool) -> None:
        LockedTwice.tries += 1
        if LockedTwice.tries <= 2:
            try:
                raise sqlite3.OperationalError("database is locked")
            except sqlite3.OperationalError as exc:
                raise StoreError("locked") from exc
        super()._open_schema_once(create)


def test_opening_retries_a_file_found_locked(tmp_path: Path) -> None:
    store = LockedTwice(tmp_path / "runs.db")
    assert LockedTwice.tries == 3
    RunEngine(store).create(thread_id="t", assistant_id="a")
    store.close()


def test_a_duplicate_insert_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    engine = RunEngine(store)
    run = engine.create(thread_id="t", assistant_id="a")
    engine.cancel(run.id)
    with pytest.raises(StoreError, match="SQLite refused a write"):
        store.insert(run, [])
    store.close()


def test_connect_closes_the_store_when_the_engine_options_are_refused(tmp_path: Path) -> None:
    from runstate import connect

    before = open_descriptors()
    with pytest.raises(ValidationError, match="lease_seconds"):
        connect(f"sqlite:///{tmp_path / 'runs.db'}", lease_seconds=0)
    assert open_descriptors() == before


def test_a_pruned_object_takes_its_idempotency_key_with_it(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    engine = RunEngine(SQLiteStore(path))
    kept = engine.create(thread_id="a", assistant_id="x", idempotency_key="kept")
    gone = engine.create(thread_id="b", assistant_id="x", idempotency_key="gone")
    engine.cancel(gone.id)
    assert engine.prune(older_than=0) == 1
    with sqlite3.connect(path) as conn:
        keys = conn.execute("SELECT key, object_id FROM idempotency_keys").fetchall()
    assert keys == [("kept", kept.id)]


def test_a_file_being_created_meanwhile_is_not_taken_for_a_foreign_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tables without runstate's mark are what a reader sees when another process's
    creation commits between its two reads: it looks again under the write lock."""
    from runstate.stores._sqlite import APPLICATION_ID

    path = tmp_path / "runs.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA application_id = 0")  # as it reads before the creator's commit
    original = SQLiteStore._check_schema

    def check(self: SQLiteStore, conn: sqlite3.Connection, create: bool, *, settled: bool) -> int:
        found = original(self, conn, create, settled=settled)
        if not settled:  # ... and the creator commits right after that read
            with sqlite3.connect(path) as other:
                other.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        return found

    monkeypatch.setattr(SQLiteStore, "_check_schema", check)
    store = SQLiteStore(path)
    assert store.upgraded_from == store.schema_version  # found complete, under the lock
    store.close()


def test_a_write_that_does_not_say_what_it_was_decided_from_sets_every_column(
    tmp_path: Path,
) -> None:
    from runstate.stores import Write

    store = SQLiteStore(tmp_path / "runs.db")
    engine = RunEngine(store)
    run = engine.create(thread_id="t", assistant_id="a")
    stored = store.get(run.id)
    changed = stored.obj.copy()
    changed.metadata = {"k": "v"}
    write = Write(changed, stored.version, [], "w", 123, 4, stored.event_count)  # no before
    assert store.write([write]) == [[]]
    again = store.get(run.id)
    assert (again.version, again.lease_owner, again.lease_expires_at, again.attempts) == (
        stored.version + 1,
        "w",
        123,
        4,
    )
    assert again.obj.metadata == {"k": "v"}
    store.close()
