"""PostgreSQL writes as writers are added: the store's write statement under 1, 8 and 32
concurrent writers, with ``pgbench``.

Every PostgreSQL write places its events from a one-row counter (``UPDATE
run_event_counter SET last = last + n``), which stays locked until the write commits: it
keeps the store-wide event numbers in commit order, and it makes every writer of every
replica wait in one line. This measures what that costs, on the store's own tables and
statement (``write_one`` from ``sql/postgresql/queries.sql``, as a worker's step sends
it: the compare-and-set of one of 1,000 objects with a 600-byte body, its event placed
and inserted, the notification), in three variants:

- ``counter``: the statement as the store has it;
- ``sequence + xid``: the counter's part removed, the event numbered from a sequence
  and stamped with its transaction's id (``pg_current_xact_id()``): what a store-wide
  feed ordered by commit needs from each write (the transactional-outbox technique:
  readers read only below the oldest transaction still running);
- ``xid, no notify``: the same without the notification (``pg_notify``), whose commit
  takes one lock for the whole database: every notifying transaction commits in line;
- ``floor``: the counter's part and the notification removed, the event numbered from
  a sequence, nothing stamped: no store-wide order at all, the least the same write
  can cost.

pgbench runs each for ``--seconds`` at each number of clients (``-M prepared``, two
pgbench threads: this machine has two cores, which pgbench shares with the server), in
a scratch schema it drops afterwards. Lock waits: the share of ``pg_stat_activity``
samples, taken while the writers run, in which a backend of the benchmark waits on a
lock. Run: ``.venv/bin/python bench/scale.py`` (needs ``pgbench`` on the PATH).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psycopg

from runstate import PostgresStore, RunEngine
from runstate.stores._postgres import SQL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from tables import PG_BASE  # noqa: E402

OBJECTS = 1_000
BODY = '{"id": "run_x", "object": "thread.run", "padding": "' + "x" * 540 + '"}'


def statement(variant: str) -> str:
    """The store's ``write_one`` as a pgbench script line, for ``variant``."""
    sql = SQL["write_one"]
    literal = "'" + BODY + "'"
    values = {
        "status": "'in_progress'",
        "active": "true",
        "waiting": "false",
        "expires_at": "4102444800",
        "lease_owner": "'worker'",
        "lease_expires_at": "4102444800",
        "attempts": "1",
        "body": literal,
        "event_count": "event_count + 1",  # the SET clause: one more event
        "ended_at": "NULL",
        "id": "'run_' || :n",
        "expected": "version",  # the compare-and-set, always won here
        "event": "'thread.run.in_progress'",
        "from_status": "'queued'",
        "to_status": "'in_progress'",
        "at": "1700000000",
        "data": "NULL",
        "number": "w.event_count - 1",  # the engine passes it; here the row says it
        "channel": "'bench_scale'",
        "ids": "'run_' || :n",
    }
    sql = re.sub(r"%\((\w+)\)s", lambda m: values[m.group(1)], sql)
    sql = sql.replace("RETURNING id\n), c AS", "RETURNING id, event_count\n), c AS", 1)
    if "no notify" in variant or variant == "floor":
        sql = sql.replace("pg_notify('bench_scale', 'run_' || :n)", "NULL")
    if variant != "counter":
        sql = re.sub(r"\), c AS \(.*?RETURNING last\n", "", sql, flags=re.DOTALL)
        sql = sql.replace("SELECT c.last, w.id", "SELECT nextval('bench_event_seq'), w.id")
        sql = sql.replace("FROM w, c", "FROM w")
    assert "counter" not in sql or variant == "counter", sql
    return f"\\set n random(1, {OBJECTS})\n{' '.join(sql.split())}\n"


def prepare(schema: str) -> None:
    """The store's schema with 1,000 objects, renamed run_1 ... run_1000."""
    store = PostgresStore(PG_BASE, schema=schema)
    engine = RunEngine(store)
    for i in range(OBJECTS):
        engine.create(thread_id=f"thread_{i}", assistant_id="asst")
    store.close()
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"SET search_path = {schema}")
        conn.execute(
            "UPDATE runs SET id = 'run_' || n FROM (SELECT id AS old, row_number() OVER "
            "(ORDER BY seq) AS n FROM runs) AS numbered WHERE runs.id = numbered.old"
        )
        conn.execute("CREATE SEQUENCE bench_event_seq")
        conn.execute("VACUUM ANALYZE runs")


def set_variant(schema: str, variant: str) -> None:
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"SET search_path = {schema}")
        conn.execute("ALTER TABLE run_events DROP COLUMN IF EXISTS xid")
        # Each variant's events go after the last one's, whichever numbered them.
        conn.execute("SELECT setval('bench_event_seq', (SELECT max(seq) FROM run_events))")
        conn.execute("UPDATE run_event_counter SET last = (SELECT max(seq) FROM run_events)")
        if "xid" in variant:
            conn.execute(
                "ALTER TABLE run_events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id()"
            )
            conn.execute("CREATE INDEX run_events_by_xid ON run_events (xid, seq)")
        conn.execute("CHECKPOINT")


def sample_lock_waits(schema: str, stop: threading.Event, seen: list[tuple[int, int]]) -> None:
    """Count, every 10 ms, the benchmark's backends and those waiting on a lock."""
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        while not stop.wait(0.01):
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock') "
                "FROM pg_stat_activity WHERE application_name = 'pgbench' AND state = 'active'"
            ).fetchone()
            assert row is not None
            seen.append((row[0], row[1]))


def pgbench(schema: str, script: str, clients: int, seconds: int) -> tuple[float, float]:
    """Transactions per second, and the share of active backends waiting on a lock."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    env = {**os.environ, "PGOPTIONS": f"-c search_path={schema}"}
    seen: list[tuple[int, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_lock_waits, args=(schema, stop, seen))
    sampler.start()
    try:
        done = subprocess.run(
            [
                "pgbench",
                "-n",
                "-M",
                "prepared",
                "-f",
                f.name,
                "-c",
                str(clients),
                "-j",
                str(min(clients, 2)),
                "-T",
                str(seconds),
                PG_BASE,
            ],
            capture_output=True,
            text=True,
            env=env,
        )
    finally:
        stop.set()
        sampler.join()
        os.unlink(f.name)
    if done.returncode != 0:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"SET search_path = {schema}")
            state = conn.execute(
                "SELECT (SELECT last FROM run_event_counter), max(seq), count(*) FROM run_events"
            ).fetchone()
        raise SystemExit(f"pgbench failed: {done.stderr.strip()} {state} {done.stdout}")
    tps = float(re.search(r"tps = ([\d.]+) \(without initial", done.stdout).group(1))  # type: ignore[union-attr]
    active = sum(a for a, _ in seen)
    waiting = sum(w for _, w in seen)
    return tps, (waiting / active if active else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", default="1,8,32")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    schema = "bench_scale_" + secrets.token_hex(4)
    variants = ["counter", "sequence + xid", "xid, no notify", "floor"]
    try:
        prepare(schema)
        results: dict[str, dict[int, tuple[float, float]]] = {v: {} for v in variants}
        for variant in variants:
            set_variant(schema, variant)
            for n in clients:
                results[variant][n] = pgbench(schema, statement(variant), n, args.seconds)
        print(f"write_one, {OBJECTS} objects, {args.seconds} s per cell (pgbench -M prepared):")
        print(f"{'writers':>8} " + " ".join(f"{v:>24}" for v in variants))
        for n in clients:
            cells = []
            for v in variants:
                tps, waits = results[v][n]
                cells.append(f"{tps:>7,.0f} tps, {waits:>4.0%} lock")
            print(f"{n:>8} " + " ".join(f"{c:>24}" for c in cells))
        for n in clients:
            floor = results["floor"][n][0]
            ratios = ", ".join(f"{v} {results[v][n][0] / floor:.2f}x" for v in variants[:-1])
            print(f"{n:>3} writers, of the floor: {ratios}")
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    main()
