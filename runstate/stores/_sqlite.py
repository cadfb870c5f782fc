"""SQLiteStore: runs in one SQLite file, shared safely by threads and processes.

The file runs in WAL mode with ``synchronous=NORMAL``; every write is a ``BEGIN
IMMEDIATE`` transaction, so it holds the write lock from its first statement and sees the
latest committed state. A transition is ``UPDATE ... WHERE id = ? AND version = ?``: the
version the change was decided from is part of the write's condition, and the history
row is inserted in the same transaction; the ``UPDATE`` sets only the columns the write
changes, so that an index is written only when what it reads moved (``_update_sql``).
One active run per thread is a partial unique index. The sweeps read partial indexes
over active runs and live leases, so their cost follows the number of runs they return,
not the number stored. The WAL is checkpointed past 1,000 pages and cut back to
``WAL_LIMIT`` after.

Connections come from a small pool (at most ``max_connections``, 16 unless told): an
operation borrows one and gives it back, so a process with many short-lived threads
holds a bounded number of file descriptors, and ``close()`` closes them all. Every
statement is a named block of ``sql/sqlite/queries.sql`` (``SQL``); each operation is a
plan of them (``SQLPlans``), and ``sqlite3`` errors become ``StoreError`` in
``_translate``.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .._errors import ActiveRunError, StoreError
from .._faces import Plan
from .._lifecycle import Transition
from .._validate import require_int, require_seconds, require_string
from .._webhooks import hooks_of
from ._base import IdempotencyKey, KeyTaken, Write, body_of, group_of, is_active
from ._bell import (
    WAITING,
    WEBHOOKS,
    Bell,
    Feed,
    changed_key,
    ring_for,
    ring_for_won,
    waiting_statuses,
    webhook_statuses,
)
from ._sql import (
    OnConnection,
    SQLPlans,
    SyncSQL,
    dumps,
    insert_params,
    key_params,
    load_migrations,
    load_queries,
    trims,
    write_params,
)

__all__ = ["SQLiteStore"]

APPLICATION_ID = 0x52554E53  # "RUNS": marks a file as runstate's
WAL_LIMIT = 4 * 1024 * 1024  # bytes the WAL file is cut back to after a checkpoint
SQL = load_queries("sqlite")
MIGRATIONS = load_migrations("sqlite")
#: The schema version this code writes: the number of its last migration.
SCHEMA_VERSION = MIGRATIONS[-1][0]


class SQLiteStore(SyncSQL, SQLPlans):
    """Runs in the SQLite file at ``path``; creates it (and the schema) unless
    ``create=False``, which refuses a file that is missing, empty or not runstate's.
    ``busy_timeout`` is how long a writer waits for the lock; ``max_connections`` bounds
    the connections this store holds open at once."""

    SQL = SQL
    schema_version = SCHEMA_VERSION  # what this code writes
    upgraded_from: int  # the version the file had when opened (0: new)

    @staticmethod
    def param(name: str) -> str:
        return f":{name}"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        busy_timeout: float = 30.0,
        max_connections: int = 16,
        max_events: int | None = None,
    ):
        if not isinstance(path, (str, os.PathLike)):
            path = require_string(path, "path")  # raises: not a path
        self.path = require_string(os.fspath(path), "path")
        if self.path == ":memory:" or self.path.startswith("file:"):
            raise StoreError(
                f"SQLiteStore needs a file path, got {self.path!r} (use MemoryStore for memory)."
            )
        if not create and not os.path.exists(self.path):
            raise StoreError(f"No SQLite database at {self.path}.")
        self._busy = require_seconds(busy_timeout, "busy_timeout")
        if max_events is not None:
            self.max_events = require_int(max_events, "max_events")
        self._guard = threading.Lock()
        self._slots = threading.BoundedSemaphore(
            require_int(max_connections, "max_connections", maximum=1024)
        )
        self._idle: list[sqlite3.Connection] = []
        self._held = threading.local()  # the connection this thread is using, if any
        self._closed = False
        self.bell = Bell()
        self.bell.on_first_wait = self._start_feed  # other processes' writes, polled
        self._feed: Feed | None = None
        try:
            self._open_schema(create)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # --- connections and transactions ----------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """Borrow a connection for one operation (the same one for nested calls)."""
        held: sqlite3.Connection | None = getattr(self._held, "conn", None)
        if held is not None:
            yield held
            return
        if self._closed:
            raise StoreError(f"SQLite store {self.path} is closed.")
        if not self._slots.acquire(timeout=self._busy):
            raise StoreError(f"SQLite store {self.path} had no free connection for {self._busy} s.")
        try:
            with self._guard:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
            self._held.conn = conn
            try:
                yield conn
            finally:
                self._held.conn = None
                with self._guard:
                    if self._closed:
                        conn.close()
                    else:
                        self._idle.append(conn)
        finally:
            self._slots.release()

    def _connect(self) -> sqlite3.Connection:
        with _translate(self.path):
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=self._busy
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy * 1000)}")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: index pages stay hot
                # The WAL stays bounded: the write that takes it past 1,000 pages
                # checkpoints it (SQLite's default, said here as policy), and a
                # checkpoint that empties it cuts the file back to 4 MiB.
                conn.execute("PRAGMA wal_autocheckpoint = 1000")
                conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
            except BaseException:
                conn.close()
                raise
        return conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection in a write transaction (see ``Immediate``)."""
        with self._connection() as conn, _translate(self.path), Immediate(conn):
            yield conn

    def _transaction_on(self, conn: sqlite3.Connection) -> Immediate:
        return Immediate(conn)

    def _translate(self) -> contextlib.AbstractContextManager[None]:
        return _translate(self.path)

    def _translated(self, exc: Exception) -> StoreError:
        return translated(self.path, exc)  # type: ignore[arg-type]

    _driver_error = sqlite3.Error

    def _read(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        with self._connection() as conn, _translate(self.path):
            return conn.execute(sql, params).fetchall()

    def _open_schema(self, create: bool) -> None:
        """Create the schema in a new file; refuse a file that is not ours or is newer.
        Many processes may open a new file at once: a step that finds the file locked
        (setting WAL needs it to itself, and does not wait) is tried again until the
        busy timeout runs out."""
        deadline = time.monotonic() + self._busy
        while True:
            try:
                self._open_schema_once(create)
                return
            except StoreError as exc:
                locked = isinstance(exc.__cause__, sqlite3.OperationalError) and (
                    "locked" in str(exc.__cause__) or "busy" in str(exc.__cause__)
                )
                if not locked or time.monotonic() >= deadline:
                    raise
            time.sleep(random.uniform(0.005, 0.05))

    def _open_schema_once(self, create: bool) -> None:
        with self._connection() as conn, _translate(self.path):
            found = self._check_schema(conn, create, settled=False)
            if found < SCHEMA_VERSION:
                with self._transaction() as conn:
                    # Under the write lock: another process may have just created or
                    # upgraded it, and no creator is half-way through.
                    found = self._check_schema(conn, create, settled=True)
                    self._upgrade(conn, found)
            self.upgraded_from = found
            # WAL is a property of the file: set only once the file is known to be ours.
            conn.execute("PRAGMA journal_mode = WAL")

    def _check_schema(self, conn: sqlite3.Connection, create: bool, *, settled: bool) -> int:
        """The file's schema version (0 for a new, empty file), or a StoreError for a
        file that is not runstate's, is newer than this code, or may not be created.
        Tables without runstate's mark may be another process's creation committing
        between the two reads: unless ``settled`` (read under the write lock), that is
        -1, "look again under the lock", not a refusal."""
        if self._pragma(conn, "application_id") == 0:
            if conn.execute(SQL["table_count"]).fetchone()[0]:
                if not settled:
                    return -1
                raise StoreError(f"{self.path} is a SQLite database, but not runstate's.")
            if not create:
                raise StoreError(f"{self.path} is not a runstate database (it is empty).")
            return 0
        if self._pragma(conn, "application_id") != APPLICATION_ID:
            raise StoreError(f"{self.path} is a SQLite database, but not runstate's.")
        version = self._pragma(conn, "user_version")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has runstate schema version {version}; this runstate reads "
                f"versions up to {SCHEMA_VERSION}."
            )
        return version

    def _upgrade(self, conn: sqlite3.Connection, version: int) -> None:
        """Apply the migrations after ``version``, in the caller's write transaction:
        all of them or, if one fails, none."""
        for number, script in MIGRATIONS[version:]:
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    @staticmethod
    def _pragma(conn: sqlite3.Connection, name: str) -> int:
        value: int = conn.execute(f"PRAGMA {name}").fetchone()[0]
        return value

    def _start_feed(self) -> None:
        """Poll for the events other processes commit (from the newest there is now),
        and ring for them: one indexed query, with a back-off while nothing happens."""
        (start,) = self._read(SQL["last_event"], {})[0]

        def poll(last: int) -> tuple[list[str], int]:
            rows = self._read(SQL["events_since"], {"after_seq": last})
            keys = [object_id for _, object_id, _, _ in rows]
            keys += [changed_key(i) for _, i, to, was in rows if to != was]
            waits = waiting_statuses()
            keys += [WAITING for _, _, status, _ in rows if status in waits]
            told = webhook_statuses()
            keys += [WEBHOOKS for _, _, to, was in rows if to != was and to in told]
            return keys, rows[-1][0] if rows else last

        self._feed = Feed(self.bell, poll, start or 0, name="runstate-sqlite-feed")

    def close(self) -> None:
        """Close every connection; ones in use are closed when they are given back."""
        if self._feed is not None:
            self._feed.close()
        with self._guard:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # --- writes: direct code on a connection (SQLite has one driver, a sync one) -------

    def insert(
        self,
        obj: Any,
        steps: Sequence[Transition],
        input: Any = None,
        key: IdempotencyKey | None = None,
    ) -> list[int]:
        body = dumps(obj.to_dict())
        with self._transaction() as conn:
            if key is not None:  # under the write lock: looked up and remembered at once
                known = conn.execute(SQL["key_of"], {"kind": obj.KIND, "key": key.key}).fetchone()
                if (
                    known is not None
                    and known[2] >= key.not_before
                    and conn.execute(SQL["run_exists"], {"id": known[1]}).fetchone()
                ):
                    raise KeyTaken(known[1], known[0])
                conn.execute(SQL["remember_key"], key_params(obj, key))
            # The write lock is held: this check and the insert are one atomic step (the
            # partial unique index is the backstop).
            group = group_of(obj)
            if group is not None:
                active = conn.execute(SQL["active_of_group"], {"group_id": group}).fetchone()
                if active is not None:
                    raise ActiveRunError(group, active[0])
            conn.execute(SQL["insert_run"], insert_params(obj, body, len(steps), input))
            seqs = _append(conn, obj.id, body, steps, 0)
            self._trim(conn, [Write(obj, 0, steps)], [seqs])
        ring_for(self.bell, [obj])  # committed
        return seqs

    def write(self, writes: Sequence[Write]) -> list[list[int] | None]:
        with self._transaction() as conn:
            done = self._write_batch(conn, writes)
        ring_for_won(self.bell, writes, done)
        return done

    def _p_write_batch(self, writes: Sequence[Write]) -> Plan[list[list[int] | None]]:
        """The shared plans' writes (a claim's, a sweep's): ``_write_batch`` on the
        operation's connection."""
        done: list[list[int] | None] = yield OnConnection(self._write_batch, writes)
        return done

    def _write_batch(
        self, conn: sqlite3.Connection, writes: Sequence[Write]
    ) -> list[list[int] | None]:
        done = [_write_one(conn, w) for w in writes]
        self._trim(conn, writes, done)
        return done

    def _trim(self, conn: sqlite3.Connection, writes: Sequence[Write], done: Sequence[Any]) -> None:
        for params in trims(self.max_events, writes, done):  # only with max_events set
            conn.execute(SQL["trim_events"], params)


#: The columns ``update_run`` sets beside the body, by what the write changes: the status;
#: whether the object is active (and so when it ended); its deadline; its lease.
_SETS = (
    ", status = :status, waiting = :waiting",
    ", active = :active,"
    " ended_at = CASE WHEN :active THEN NULL ELSE COALESCE(ended_at, :ended_at) END",
    ", expires_at = :expires_at",
    ", lease_owner = :lease_owner, lease_expires_at = :lease_expires_at, attempts = :attempts",
)
_UPDATES: dict[tuple[bool, ...], str] = {}


def _update_sql(w: Write) -> str:
    """``update_run`` setting only the columns ``w`` changes (all when it does not say
    what it was decided from). SQLite writes every index that reads a column an UPDATE
    sets, even to the value it had: a step that moves neither the deadline nor the lease
    writes the row and no index page."""
    b, obj = w.before, w.obj
    if b is None:
        changed: tuple[bool, ...] = (True,) * len(_SETS)
    else:
        changed = (
            obj.status is not b.obj.status,
            is_active(obj) != is_active(b.obj),
            obj.expires_at != b.obj.expires_at,
            (w.lease_owner, w.lease_expires_at, w.attempts)
            != (b.lease_owner, b.lease_expires_at, b.attempts),
        )
    sql = _UPDATES.get(changed)
    if sql is None:
        sets = "".join(fragment for fragment, on in zip(_SETS, changed, strict=True) if on)
        sql = _UPDATES[changed] = SQL["update_run"].format(set=sets)
    return sql


class Immediate:
    """A ``BEGIN IMMEDIATE`` transaction on a connection: it holds the write lock from its
    first statement; committed on success, rolled back on error. (A class, not a
    generator: every write enters one.)"""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None:
            self.conn.execute("COMMIT")
            return
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("ROLLBACK")


def _write_one(conn: sqlite3.Connection, w: Write) -> list[int] | None:
    body = dumps(body_of(w))
    cursor = conn.execute(_update_sql(w), write_params(w, body))
    if cursor.rowcount != 1:
        return None
    for hook in hooks_of(w.obj, w.steps):  # the outbox: in the write's transaction
        conn.execute(
            SQL["hook"],
            {
                "event_id": hook.id,
                "object_id": hook.object_id,
                "type": hook.type,
                "created_at": hook.created_at,
            },
        )
    return _append(conn, w.obj.id, body, w.steps, w.first_number)


def _append(
    conn: sqlite3.Connection,
    object_id: str,
    body: str,
    steps: Sequence[Transition],
    first_number: int,
) -> list[int]:
    """Insert the events of a write, numbered on from ``first_number``; their places."""
    seqs = []
    for number, step in enumerate(steps, first_number):
        cursor = conn.execute(
            SQL["insert_event"],
            {
                "run_id": object_id,
                "event": step.event,
                "from_status": None if step.from_status is None else step.from_status.value,
                "to_status": step.to_status.value,
                "at": step.at,
                "data": body if step.data is None else dumps(step.data),
                "number": number,
            },
        )
        seqs.append(cursor.lastrowid or 0)
    return seqs


def _statements(script: str) -> Iterator[str]:
    """The statements of a SQL script, one by one (``executescript`` would commit the
    caller's transaction first)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            yield statement
            statement = ""


@contextlib.contextmanager
def _translate(path: str) -> Iterator[None]:
    """``sqlite3``'s errors as runstate's (see ``translated``)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise translated(path, exc) from exc


def translated(path: str, exc: sqlite3.Error) -> StoreError:
    """The one place where ``sqlite3`` errors become runstate's."""
    if isinstance(exc, sqlite3.IntegrityError):
        return StoreError(f"SQLite refused a write to {path}: {exc}")
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        return StoreError(f"SQLite database {path} stayed locked: {exc}")
    return StoreError(f"SQLite database {path} cannot be used: {exc}")
