"""One writer's PostgreSQL operations without the commit's flush: what a change to the
statements costs a single writer, which ``bench/store.py``'s section 2 cannot show on a
machine whose WAL flush moves from run to run (its floor, one autocommit UPDATE, has
measured anything from 67 to 300 us here).

The store's connections run with ``synchronous_commit = off`` (for this benchmark only:
each commit still writes its WAL, but does not wait for the flush), so what is timed is
the statement and the client. The operations are ``bench/store.py``'s (a worker's step,
a create, a claim, a response's claim, delta and complete), each the best of three
rounds of 600, on a schema of its own. The baseline, in the same process, is the same
floor as ``bench/store.py``'s: one autocommit compare-and-set ``UPDATE`` of one row on a
connection of the store's pool.

To compare two versions, run it with each on ``PYTHONPATH`` (``git worktree add
/tmp/before REV``, then ``PYTHONPATH=/tmp/before .venv/bin/python
bench/single_writer.py``): it prints the schema version it ran on.
Run: ``.venv/bin/python bench/single_writer.py``.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT.parent / "tests")]

import store as bench_store  # noqa: E402
from tables import PG_BASE  # noqa: E402

import runstate.stores._postgres as postgres  # noqa: E402
from runstate import PostgresStore  # noqa: E402

OPERATIONS = [
    "a worker's step",
    "create",
    "claim",
    "response claim",
    "response delta",
    "response complete",
]


def without_flush() -> None:
    """Every connection the store makes from now on commits without waiting for the
    flush."""
    made = postgres.checked_options

    def checked_options(*args: Any) -> Any:
        pg, options = made(*args)
        return pg, {**options, "options": options["options"] + " -c synchronous_commit=off"}

    postgres.checked_options = checked_options  # type: ignore[assignment]


def main() -> None:
    without_flush()
    schema = "bench_single_" + secrets.token_hex(4)
    store = PostgresStore(PG_BASE, schema=schema)
    try:
        with store._pool.connection() as conn:
            flush = conn.execute("SHOW synchronous_commit").fetchone()
            assert flush == ("off",), flush
        ops = bench_store.Operations(store)
        table = ops.table()
        floor = bench_store.engine_floor(store, ops.ended("floor").id)
        print(f"schema {postgres.SCHEMA_VERSION}, synchronous_commit=off, best of 3 rounds of 600")
        floor_s = min(floor(600) for _ in range(3))
        print(f"   {'floor (one UPDATE)':<20}{floor_s * 1e6:8.1f} us   1.00x")
        for name in OPERATIONS:
            prepare, operation = table[name]
            best = min(bench_store.timed(prepare, operation, 600) for _ in range(3))
            print(f"   {name:<20}{best * 1e6:8.1f} us {best / floor_s:6.2f}x")
    finally:
        store.close()
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    main()
