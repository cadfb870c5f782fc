"""PostgresStore: runs in PostgreSQL, for services whose workers span machines.

The tables and the rules are the SQLite store's: a transition is ``UPDATE ... WHERE id
= %s AND version = %s`` with its history rows in the same transaction, one active run
per thread is a partial unique index, and the sweeps read partial indexes. What differs:

- Many writers run at once (READ COMMITTED). A claim locks the oldest claimable row with
  ``FOR UPDATE SKIP LOCKED``, so concurrent workers take different runs instead of
  queueing on one.
- Event sequence numbers are handed out under a transaction-scoped advisory lock taken
  as the transaction's last step, so they follow commit order: a reader following
  ``events(after_seq=...)`` never misses an event that commits late with a low number.
  Every row lock a transaction needs is taken before that lock, so it cannot deadlock.
- The tables live in their own schema (``runstate`` unless told), created and versioned
  on first open under an advisory lock.

psycopg (3) and psycopg_pool are imported when a store is made, so ``import runstate``
does not need them. ``psycopg`` errors become ``StoreError`` in ``_translate``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import ActiveRunError, RunNotFoundError, StoreError, ValidationError
from .._events import RunEvent
from .._lifecycle import Transition
from .._model import Run, RunStatus
from ._base import Claimed, Order, Page, StoredRun, Write
from ._sql import (
    ACTIVE_SQL,
    EVENT_COLUMNS,
    STORED_COLUMNS,
    dumps,
    event_from_row,
    list_runs,
    stored_from_row,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["PostgresStore"]

SCHEMA_VERSION = 1
LOCK_SCHEMA = 0x52554E5301  # advisory lock keys: schema creation, event numbering
LOCK_EVENTS = 0x52554E5302
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")

SCHEMA = f"""
CREATE TABLE runstate_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE runs (
    seq bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    thread_id text NOT NULL,
    status text NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint,
    version bigint NOT NULL,
    lease_owner text,
    lease_expires_at bigint,
    attempts integer NOT NULL DEFAULT 0,
    body text NOT NULL
);
CREATE UNIQUE INDEX runs_one_active_per_thread ON runs (thread_id)
    WHERE status IN ({ACTIVE_SQL});
CREATE INDEX runs_by_thread ON runs (thread_id, created_at, seq);
CREATE INDEX runs_by_created ON runs (created_at, seq);
CREATE INDEX runs_due ON runs (expires_at) WHERE status IN ({ACTIVE_SQL});
CREATE INDEX runs_queue ON runs (created_at, seq) WHERE status = 'queued';
CREATE INDEX runs_leases ON runs (lease_expires_at) WHERE lease_owner IS NOT NULL;
CREATE TABLE run_events (
    seq bigint PRIMARY KEY,
    run_id text NOT NULL,
    event text NOT NULL,
    from_status text,
    to_status text NOT NULL,
    at bigint NOT NULL,
    data text NOT NULL
);
CREATE INDEX run_events_by_run ON run_events (run_id, seq);
INSERT INTO runstate_meta VALUES ('schema_version', '{SCHEMA_VERSION}');
"""

SQL = {
    "insert_run": (
        "INSERT INTO runs (id, thread_id, status, created_at, expires_at, version, body) "
        "VALUES (%s, %s, %s, %s, %s, 1, %s)"
    ),
    "active_run_of_thread": (
        f"SELECT id FROM runs WHERE thread_id = %s AND status IN ({ACTIVE_SQL})"
    ),
    "get_run": f"SELECT {STORED_COLUMNS} FROM runs WHERE id = %s",
    "update_run": (
        "UPDATE runs SET status = %s, expires_at = %s, version = version + 1, lease_owner = %s, "
        "lease_expires_at = %s, attempts = %s, body = %s WHERE id = %s AND version = %s"
    ),
    "lock_events": "SELECT pg_advisory_xact_lock(%s)",
    "last_event": "SELECT coalesce(max(seq), 0) FROM run_events",
    "insert_event": (
        "INSERT INTO run_events (seq, run_id, event, from_status, to_status, at, data) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)"
    ),
    "claim_oldest": (
        f"SELECT {STORED_COLUMNS} FROM runs WHERE status = 'queued' AND expires_at > %s "
        "ORDER BY created_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED"
    ),
    "due": (
        f"SELECT {STORED_COLUMNS} FROM runs WHERE status IN ({ACTIVE_SQL}) AND expires_at <= %s "
        "ORDER BY expires_at LIMIT %s"
    ),
    "stalled": (
        f"SELECT {STORED_COLUMNS} FROM runs WHERE lease_owner IS NOT NULL "
        "AND lease_expires_at <= %s ORDER BY lease_expires_at LIMIT %s"
    ),
    "run_exists": "SELECT 1 FROM runs WHERE id = %s",
    "history": f"SELECT {EVENT_COLUMNS} FROM run_events WHERE run_id = %s ORDER BY seq",
    "events": f"SELECT {EVENT_COLUMNS} FROM run_events WHERE seq > %s ORDER BY seq LIMIT %s",
    "events_of_run": (
        f"SELECT {EVENT_COLUMNS} FROM run_events WHERE run_id = %s AND seq > %s "
        "ORDER BY seq LIMIT %s"
    ),
    "table_exists": "SELECT to_regclass(%s) IS NOT NULL",
    "schema_version": "SELECT value FROM runstate_meta WHERE key = 'schema_version'",
}


class PostgresStore:
    """Runs in the PostgreSQL database ``conninfo`` names (a ``postgresql://`` URL or
    ``key=value`` pairs), in the schema ``schema``; a pool of up to ``max_size``
    connections serves the threads of this process."""

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "runstate",
        max_size: int = 8,
        connect_timeout: int = 10,
    ) -> None:
        if not isinstance(schema, str) or not _IDENTIFIER.fullmatch(schema):
            raise ValidationError(
                f"Invalid schema name {schema!r}: lower-case letters, digits and _ only.",
                param="schema",
            )
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:  # pragma: no cover - the test extra installs them
            raise StoreError(
                "PostgresStore needs psycopg: pip install 'runstate[postgres]'."
            ) from exc
        self.schema = schema
        self._psycopg = psycopg
        self._where = _describe(conninfo)
        options = {"options": f"-c search_path={schema}", "connect_timeout": connect_timeout}
        with self._translate():
            with psycopg.connect(conninfo, **options) as conn:  # type: ignore[arg-type]
                self._open_schema(conn)
            self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                conninfo,
                kwargs=options,
                min_size=1,
                max_size=max_size,
                open=False,
                name="runstate",
            )
            self._pool.open(wait=True, timeout=connect_timeout)

    def __repr__(self) -> str:
        return f"PostgresStore({self._where!r}, schema={self.schema!r})"

    def _open_schema(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(SQL["lock_events"], (LOCK_SCHEMA,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
        ours = conn.execute(SQL["table_exists"], (f"{self.schema}.runstate_meta",)).fetchone()
        runs = conn.execute(SQL["table_exists"], (f"{self.schema}.runs",)).fetchone()
        if ours is not None and not ours[0]:
            if runs is not None and runs[0]:
                raise StoreError(f"Schema {self.schema} holds a runs table that is not runstate's.")
            conn.execute(SCHEMA)
            return
        row = conn.execute(SQL["schema_version"]).fetchone()
        version = None if row is None else row[0]
        if version != str(SCHEMA_VERSION):
            raise StoreError(
                f"Schema {self.schema} has runstate schema version {version}; this runstate "
                f"reads version {SCHEMA_VERSION}."
            )

    def close(self) -> None:
        self._pool.close()

    # --- connections and errors ----------------------------------------------------------

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        """The one place where ``psycopg`` errors become runstate's."""
        try:
            yield
        except self._psycopg.Error as exc:
            raise StoreError(f"PostgreSQL at {self._where} cannot be used: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection from the pool in a transaction: committed on success."""
        with self._translate(), self._pool.connection() as conn:
            yield conn

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._transaction() as conn:
            return conn.execute(sql, args).fetchall()

    # --- writes -------------------------------------------------------------------------

    def insert(self, run: Run, steps: Sequence[Transition]) -> list[int]:
        body = dumps(run.to_dict())
        for _ in range(10):
            try:
                with self._transaction() as conn:
                    active = conn.execute(SQL["active_run_of_thread"], (run.thread_id,)).fetchone()
                    if active is not None:
                        raise ActiveRunError(run.thread_id, active[0])
                    conn.execute(
                        SQL["insert_run"],
                        (
                            run.id,
                            run.thread_id,
                            run.status.value,
                            run.created_at,
                            run.expires_at,
                            body,
                        ),
                    )
                    return self._append(conn, [(run.id, body, steps)])[0]
            except StoreError as exc:
                # Another transaction inserted an active run on this thread at the same
                # moment; the index refused ours. Name the winner, or try again if it
                # has already finished.
                if not isinstance(exc.__cause__, self._psycopg.errors.UniqueViolation):
                    raise
                winner = self._read(SQL["active_run_of_thread"], (run.thread_id,))
                if winner:
                    raise ActiveRunError(run.thread_id, winner[0][0]) from exc.__cause__
        raise StoreError(f"Thread {run.thread_id} kept changing; no run was inserted.")

    def write(self, writes: Sequence[Write]) -> list[list[int] | None]:
        with self._transaction() as conn:
            results: list[list[int] | None] = []
            won = []
            for w in writes:
                body = dumps(w.run.to_dict())
                if _update(conn, w, body):
                    won.append((w.run.id, body, w.steps))
                    results.append([])
                else:
                    results.append(None)
            seqs = iter(self._append(conn, won))
            return [None if result is None else next(seqs) for result in results]

    def claim(self, now: int, decide: Callable[[StoredRun], Write]) -> Claimed | None:
        with self._transaction() as conn:
            row = conn.execute(SQL["claim_oldest"], (now,)).fetchone()
            if row is None:
                return None
            write = decide(stored_from_row(row))
            body = dumps(write.run.to_dict())
            if not _update(conn, write, body):  # the row is locked: this cannot lose
                return None
            return (
                write.run,
                write.steps,
                self._append(conn, [(write.run.id, body, write.steps)])[0],
            )

    def _append(
        self, conn: psycopg.Connection[Any], items: Sequence[tuple[str, str, Sequence[Transition]]]
    ) -> list[list[int]]:
        """History rows for each (run id, body, steps), numbered in commit order."""
        if not any(steps for _, _, steps in items):
            return [[] for _ in items]
        conn.execute(SQL["lock_events"], (LOCK_EVENTS,))  # held until commit
        row = conn.execute(SQL["last_event"]).fetchone()
        last = 0 if row is None else int(row[0])
        rows, out = [], []
        for run_id, body, steps in items:
            seqs = []
            for step in steps:
                last += 1
                seqs.append(last)
                from_status = None if step.from_status is None else step.from_status.value
                rows.append(
                    (last, run_id, step.event, from_status, step.to_status.value, step.at, body)
                )
            out.append(seqs)
        with conn.cursor() as cursor:
            cursor.executemany(SQL["insert_event"], rows)
        return out

    # --- reads --------------------------------------------------------------------------

    def get(self, run_id: str) -> StoredRun:
        rows = self._read(SQL["get_run"], (run_id,))
        if not rows:
            raise RunNotFoundError(run_id)
        return stored_from_row(rows[0])

    def due(self, now: int, limit: int) -> list[StoredRun]:
        return [stored_from_row(row) for row in self._read(SQL["due"], (now, limit))]

    def stalled(self, now: int, limit: int) -> list[StoredRun]:
        return [stored_from_row(row) for row in self._read(SQL["stalled"], (now, limit))]

    def list_runs(
        self,
        thread_id: str | None,
        *,
        status: RunStatus | None = None,
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> Page:
        return list_runs(
            self._read,
            "%s",
            thread_id,
            status=status,
            limit=limit,
            order=order,
            after=after,
            before=before,
        )

    def history(self, run_id: str) -> list[RunEvent]:
        rows = self._read(SQL["history"], (run_id,))
        if not rows and not self._read(SQL["run_exists"], (run_id,)):
            raise RunNotFoundError(run_id)
        return [event_from_row(row) for row in rows]

    def events(
        self, after_seq: int = 0, run_id: str | None = None, limit: int = 100
    ) -> list[RunEvent]:
        if run_id is None:
            rows = self._read(SQL["events"], (after_seq, limit))
        else:
            rows = self._read(SQL["events_of_run"], (run_id, after_seq, limit))
        return [event_from_row(row) for row in rows]


def _update(conn: psycopg.Connection[Any], w: Write, body: str) -> bool:
    run = w.run
    cursor = conn.execute(
        SQL["update_run"],
        (
            run.status.value,
            run.expires_at,
            w.lease_owner,
            w.lease_expires_at,
            w.attempts,
            body,
            run.id,
            w.expected_version,
        ),
    )
    return cursor.rowcount == 1


def _describe(conninfo: str) -> str:
    """The conninfo without its password, for messages."""
    return re.sub(
        r"(://[^:/@]*:)[^@]*@", r"\1***@", re.sub(r"password=\S+", "password=***", conninfo)
    )
