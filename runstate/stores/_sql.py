"""What the SQL stores share: rows to runs and events, JSON, and the listing query.

Both SQL backends keep the same two tables (``runs``, ``run_events``) with the same
columns, so a row reads back the same way from either, and the listing query differs
only in its placeholder (``?`` for SQLite, ``%s`` for PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from .._errors import RunNotFoundError
from .._events import RunEvent
from .._model import ACTIVE_STATUSES, Run, RunStatus
from ._base import Order, Page, StoredRun, Write, check_page_args, cursor_error

ACTIVE_SQL = ", ".join(f"'{s.value}'" for s in sorted(ACTIVE_STATUSES))
STORED_COLUMNS = "body, version, lease_owner, lease_expires_at, attempts"
EVENT_COLUMNS = "seq, event, run_id, from_status, to_status, at, data"

# The indexes every SQL store keeps: one active run per thread, the listings, and the
# partial indexes the sweeps and claims read (they hold only the rows those look for).
INDEXES = f"""
CREATE UNIQUE INDEX runs_one_active_per_thread ON runs (thread_id)
    WHERE status IN ({ACTIVE_SQL});
CREATE INDEX runs_by_thread ON runs (thread_id, created_at, seq);
CREATE INDEX runs_by_created ON runs (created_at, seq);
CREATE INDEX runs_due ON runs (expires_at) WHERE status IN ({ACTIVE_SQL});
CREATE INDEX runs_queue ON runs (created_at, seq) WHERE status = 'queued';
CREATE INDEX runs_leases ON runs (lease_expires_at) WHERE lease_owner IS NOT NULL;
CREATE INDEX run_events_by_run ON run_events (run_id, seq);
"""


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def update_args(w: Write, body: str) -> tuple[Any, ...]:
    """The parameters of each store's ``update_run``: the new state, then the
    compare-and-set condition (id and expected version)."""
    run = w.run
    return (
        run.status.value,
        run.expires_at,
        w.lease_owner,
        w.lease_expires_at,
        w.attempts,
        body,
        run.id,
        w.expected_version,
    )


def stored_from_row(row: Sequence[Any]) -> StoredRun:
    body, version, lease_owner, lease_expires_at, attempts = row
    return StoredRun(
        Run._trusted(json.loads(body)), version, lease_owner, lease_expires_at, attempts
    )


def event_from_row(row: Sequence[Any]) -> RunEvent:
    seq, event, run_id, from_status, to_status, at, data = row
    return RunEvent(event, run_id, from_status, to_status, at, json.loads(data), seq)


def decided(
    rows: Sequence[Any], now: int, decide: Callable[[StoredRun, int], Write | None]
) -> list[Write]:
    """The writes ``decide`` gives for the rows a sweep picked (None leaves a row be)."""
    writes = []
    for row in rows:
        write = decide(stored_from_row(row), now)
        if write is not None:
            writes.append(write)
    return writes


class SQLReads:
    """The store protocol's reads, shared by the SQL backends. A backend sets ``SQL`` (its
    named statements: get_run, history, events, events_of_run, run_exists)
    and ``MARK`` (its placeholder), and implements ``_read``."""

    SQL: ClassVar[dict[str, str]]
    MARK: ClassVar[str]

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def get(self, run_id: str) -> StoredRun:
        rows = self._read(self.SQL["get_run"], (run_id,))
        if not rows:
            raise RunNotFoundError(run_id)
        return stored_from_row(rows[0])

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
        """Cursors are resolved to their (created_at, seq) first, then one query reads
        the page and one row more, to tell whether more lie beyond it."""
        check_page_args(limit, order)
        where: list[str] = []
        args: list[Any] = []
        if thread_id is not None:
            where.append(f"thread_id = {self.MARK}")
            args.append(thread_id)
        if status is not None:
            where.append(f"status = {self.MARK}")
            args.append(status.value)
        # In listing order, "after" the cursor is "<" in desc order and ">" in asc.
        forward, backward = ("<", ">") if order == "desc" else (">", "<")
        for param, cursor, op in (("after", after, forward), ("before", before, backward)):
            if cursor is None:
                continue
            key = self._read(
                f"SELECT created_at, seq, thread_id FROM runs WHERE id = {self.MARK}", (cursor,)
            )
            if not key or (thread_id is not None and key[0][2] != thread_id):
                raise cursor_error(param, cursor)
            where.append(f"(created_at, seq) {op} ({self.MARK}, {self.MARK})")
            args.extend(key[0][:2])
        # The page nearest a lone "before" is read in reverse and turned round.
        reverse = before is not None and after is None
        direction = "DESC" if (order == "desc") != reverse else "ASC"
        sql = (
            f"SELECT body FROM runs {'WHERE ' + ' AND '.join(where) if where else ''} "
            f"ORDER BY created_at {direction}, seq {direction} LIMIT {self.MARK}"
        )
        rows = self._read(sql, [*args, limit + 1])
        runs = [Run._trusted(json.loads(body)) for (body,) in rows[:limit]]
        if reverse:
            runs.reverse()
        return Page(runs, len(rows) > limit)

    def history(self, run_id: str) -> list[RunEvent]:
        rows = self._read(self.SQL["history"], (run_id,))
        if not rows and not self._read(self.SQL["run_exists"], (run_id,)):
            raise RunNotFoundError(run_id)
        return [event_from_row(row) for row in rows]

    def events(
        self, after_seq: int = 0, run_id: str | None = None, limit: int = 100
    ) -> list[RunEvent]:
        if run_id is None:
            rows = self._read(self.SQL["events"], (after_seq, limit))
        else:
            rows = self._read(self.SQL["events_of_run"], (run_id, after_seq, limit))
        return [event_from_row(row) for row in rows]
