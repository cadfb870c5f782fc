"""PostgresStore: runs in PostgreSQL, for services whose workers span machines.

The tables and the rules are the SQLite store's: a transition is ``UPDATE ... WHERE id
= %s AND version = %s`` with its history rows in the same transaction, one active run
per thread is a partial unique index, and the sweeps read partial indexes. What differs:

- Many writers run at once (READ COMMITTED). A claim locks the oldest claimable row with
  ``FOR UPDATE SKIP LOCKED``, so concurrent workers take different runs instead of
  queueing on one.
- Event sequence numbers come from a one-row counter, updated as the transaction's last
  step and so locked until it commits: numbers follow commit order, and a reader
  following ``events(after_seq=...)`` never misses an event that commits late with a low
  number. Every other row lock a transaction needs is taken before that one, so
  transactions cannot deadlock on it.
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

from .._errors import ActiveRunError, StoreError, ValidationError
from .._lifecycle import Transition
from .._model import Run
from .._validate import require_int, require_string
from ._base import Claimed, Now, StoredRun, Sweep, Write
from ._sql import (
    ACTIVE_SQL,
    EVENT_COLUMNS,
    INDEXES,
    STORED_COLUMNS,
    SQLReads,
    decided,
    dumps,
    stored_from_row,
    update_args,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["PostgresStore"]

SCHEMA_VERSION = 1
LOCK_SCHEMA = 0x52554E5301  # the advisory lock key that serialises schema creation
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
CREATE TABLE run_events (
    seq bigint PRIMARY KEY,
    run_id text NOT NULL,
    event text NOT NULL,
    from_status text,
    to_status text NOT NULL,
    at bigint NOT NULL,
    data text NOT NULL
);
{INDEXES}
CREATE TABLE run_event_counter (one boolean PRIMARY KEY CHECK (one), last bigint NOT NULL);
INSERT INTO run_event_counter VALUES (true, 0);
-- One transition in one round trip: the compare-and-set, then (only if it won) the
-- history rows, numbered from the counter as the transaction's last lock. NULL if lost.
CREATE FUNCTION runstate_write(
    p_id text, p_expected bigint, p_status text, p_expires_at bigint, p_lease_owner text,
    p_lease_expires_at bigint, p_attempts integer, p_body text, p_events jsonb
) RETURNS bigint[] LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
DECLARE
    n integer := jsonb_array_length(p_events);
    last_seq bigint;
BEGIN
    UPDATE runs SET status = p_status, expires_at = p_expires_at, version = version + 1,
        lease_owner = p_lease_owner, lease_expires_at = p_lease_expires_at,
        attempts = p_attempts, body = p_body
    WHERE id = p_id AND version = p_expected;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF n = 0 THEN
        RETURN ARRAY[]::bigint[];
    END IF;
    UPDATE run_event_counter SET last = last + n RETURNING last INTO last_seq;
    INSERT INTO run_events (seq, run_id, event, from_status, to_status, at, data)
    SELECT last_seq - n + e.i, p_id, e.v->>0, e.v->>1, e.v->>2, (e.v->>3)::bigint, p_body
    FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(v, i);
    RETURN ARRAY(SELECT generate_series(last_seq - n + 1, last_seq));
END
$fn$;
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
    "write_one": "SELECT runstate_write(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
    "lock_schema": "SELECT pg_advisory_xact_lock(%s)",
    "number_events": "UPDATE run_event_counter SET last = last + %s RETURNING last",
    "insert_event": (
        "INSERT INTO run_events (seq, run_id, event, from_status, to_status, at, data) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)"
    ),
    "claimable": (
        f"SELECT {STORED_COLUMNS} FROM runs WHERE status = 'queued' AND expires_at > %s "
        "ORDER BY created_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED"
    ),
    # The sweeps lock what they pick (a row a writer holds is left for the next sweep):
    # nothing can change a picked run between the pick and the write.
    "due": (
        f"SELECT {STORED_COLUMNS} FROM runs WHERE status IN ({ACTIVE_SQL}) AND expires_at <= %s "
        "ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED"
    ),
    "stalled": (
        f"SELECT {STORED_COLUMNS} FROM runs WHERE lease_owner IS NOT NULL "
        "AND lease_expires_at <= %s ORDER BY lease_expires_at LIMIT %s FOR UPDATE SKIP LOCKED"
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


class PostgresStore(SQLReads):
    """Runs in the PostgreSQL database ``conninfo`` names (a ``postgresql://`` URL or
    ``key=value`` pairs), in the schema ``schema``; a pool of up to ``max_size``
    connections serves the threads of this process."""

    SQL = SQL
    MARK = "%s"

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
        require_string(conninfo, "conninfo")
        require_int(max_size, "max_size", maximum=1000)
        require_int(connect_timeout, "connect_timeout", maximum=3600)
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
            from psycopg_pool import ConnectionPool
        except ImportError as exc:  # pragma: no cover - the test extra installs them
            raise StoreError(
                "PostgresStore needs psycopg: pip install 'runstate[postgres]'."
            ) from exc
        try:
            conninfo_to_dict(conninfo)
        except psycopg.Error:
            # psycopg's message quotes the string, password and all: never repeat it.
            raise ValidationError(
                "Invalid PostgreSQL connection string: use postgresql://user@host:port/db or "
                "key=value pairs.",
                param="conninfo",
            ) from None
        self.schema = schema
        self._psycopg = psycopg
        options = {"options": f"-c search_path={schema}", "connect_timeout": connect_timeout}
        with self._translate():
            with psycopg.connect(conninfo, **options) as conn:  # type: ignore[arg-type]
                self._open_schema(conn)
            # Autocommit: a read is one round trip; writes open a transaction explicitly.
            # check: a connection whose backend was killed is found out (and replaced)
            # before it is handed out, so it costs a retry, not a failed call.
            self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                conninfo,
                kwargs={**options, "autocommit": True},
                min_size=1,
                max_size=max_size,
                open=False,
                name="runstate",
                check=ConnectionPool.check_connection,
            )
            try:
                self._pool.open(wait=True, timeout=connect_timeout)
            except BaseException:
                self._pool.close()  # stop its workers from trying again in the background
                raise

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self.schema!r})"

    def _open_schema(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(SQL["lock_schema"], (LOCK_SCHEMA,))
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
            # One line, and never the connection string: psycopg's own message names the
            # host and port at most.
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise StoreError(f"PostgreSQL (schema {self.schema}) cannot be used: {detail}") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection from the pool in a transaction: committed on success."""
        with self._translate(), self._pool.connection() as conn, conn.transaction():
            yield conn

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._translate(), self._pool.connection() as conn:
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
        if len(writes) == 1 and _single(writes[0]):
            # The common case: one statement, its own transaction.
            with self._translate(), self._pool.connection() as conn:
                return [_write_one(conn, writes[0])]
        with self._transaction() as conn:
            return self._write_batch(conn, writes)

    def _write_batch(
        self, conn: psycopg.Connection[Any], writes: Sequence[Write]
    ) -> list[list[int] | None]:
        """A batch takes every run's row lock first and numbers its events last."""
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

    def claim(self, now: Now, decide: Callable[[StoredRun, int], Write]) -> Claimed | None:
        with self._transaction() as conn:
            t = now()  # the connection is ours: this is the time the write happens
            row = conn.execute(SQL["claimable"], (t,)).fetchone()
            if row is None:
                return None
            write = decide(stored_from_row(row), t)
            seqs = (
                _write_one(conn, write) if _single(write) else self._write_batch(conn, [write])[0]
            )
            assert seqs is not None  # the row is locked by us: this cannot lose
            return write.run, write.steps, seqs

    def sweep(
        self,
        kind: Sweep,
        now: Now,
        decide: Callable[[StoredRun, int], Write | None],
        limit: int,
    ) -> list[Claimed]:
        with self._transaction() as conn:
            t = now()
            writes = decided(conn.execute(SQL[kind], (t, limit)).fetchall(), t, decide)
            done: list[Claimed] = []
            for w, seqs in zip(writes, self._write_batch(conn, writes), strict=True):
                assert seqs is not None  # the rows are locked by us: these cannot lose
                done.append((w.run, w.steps, seqs))
            return done

    def _append(
        self, conn: psycopg.Connection[Any], items: Sequence[tuple[str, str, Sequence[Transition]]]
    ) -> list[list[int]]:
        """History rows for each (run id, body, steps), numbered in commit order."""
        count = sum(len(steps) for _, _, steps in items)
        if not count:
            return [[] for _ in items]
        row = conn.execute(SQL["number_events"], (count,)).fetchone()  # locked until commit
        assert row is not None
        last = int(row[0]) - count
        rows, out = [], []
        for run_id, body, steps in items:
            seqs = []
            for step in steps:
                last += 1
                seqs.append(last)
                from_status = None if step.from_status is None else step.from_status.value
                data = body if step.data is None else dumps(step.data)
                rows.append(
                    (last, run_id, step.event, from_status, step.to_status.value, step.at, data)
                )
            out.append(seqs)
        with conn.cursor() as cursor:
            cursor.executemany(SQL["insert_event"], rows)
        return out


def _update(conn: psycopg.Connection[Any], w: Write, body: str) -> bool:
    cursor = conn.execute(SQL["update_run"], update_args(w, body))
    return cursor.rowcount == 1


def _write_one(conn: psycopg.Connection[Any], w: Write) -> list[int] | None:
    run = w.run
    events = [
        [s.event, None if s.from_status is None else s.from_status.value, s.to_status.value, s.at]
        for s in w.steps
    ]
    row = conn.execute(
        SQL["write_one"],
        (
            run.id,
            w.expected_version,
            run.status.value,
            run.expires_at,
            w.lease_owner,
            w.lease_expires_at,
            w.attempts,
            dumps(run.to_dict()),
            dumps(events),
        ),
    ).fetchone()
    return None if row is None or row[0] is None else list(row[0])


def _single(w: Write) -> bool:
    """Whether the write function can take ``w``: it stores the run's body as every
    event's data, so a write whose earlier steps carry their own snapshot goes the
    batch way."""
    return all(step.data is None for step in w.steps)
