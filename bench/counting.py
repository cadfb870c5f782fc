"""What an operation costs in trips to the database, counted rather than timed.

- PostgreSQL: round trips, read off libpq's trace of the wire protocol on the store's
  one pooled connection (make the store with ``max_size=1``): the server ends each
  round trip with one ``ReadyForQuery`` message.
- SQLite: statements, through ``sqlite3``'s trace callback on the store's connections.

Used by ``bench/store.py`` (each line says what its operation takes) and by
``tests/integration/test_round_trips.py`` (which pins the counts).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any


class RoundTrips:
    """Round trips made on a ``PostgresStore``'s one pooled connection."""

    def __init__(self, store: Any) -> None:
        self._pool = store._pool
        assert self._pool.max_size == 1, "count on a store made with max_size=1"

    def of(self, operation: Any) -> int:
        """The round trips ``operation()`` makes (libpq writes its trace through C's
        stdio, flushed when the trace ends: so each count traces afresh)."""
        from psycopg import pq

        with tempfile.TemporaryFile("w+") as trace:
            with self._pool.connection() as conn:
                conn.pgconn.trace(os.dup(trace.fileno()))  # libpq closes its copy
                conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
                traced = conn
            try:
                operation()
            finally:
                with self._pool.connection() as conn:
                    assert conn is traced, "the pool replaced its connection meanwhile"
                    conn.pgconn.untrace()
            trace.seek(0)
            return sum(1 for line in trace if line.startswith("B\t") and "ReadyForQuery" in line)


class Statements:
    """Statements run on a ``SQLiteStore``'s connections; ``of(operation)`` counts them
    and ``last`` holds the statements of the last operation counted."""

    def __init__(self, store: Any) -> None:
        self.last: list[str] = []
        self._seen: list[str] = []
        with store._connection():  # at least one connection exists
            pass
        for conn in store._idle:
            conn.set_trace_callback(self._seen.append)

    def of(self, operation: Any) -> int:
        self._seen.clear()
        operation()
        self.last = [" ".join(sql.split()[:3]) for sql in self._seen]
        return len(self._seen)
