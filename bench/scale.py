"""PostgreSQL writes as writers are added: the store's write statement under 1, 8 and 32
concurrent writers, with ``pgbench``; then worker processes on the engine.

Up to schema 8 every PostgreSQL write placed its event from a one-row counter (``UPDATE
run_event_counter SET last = last + 1``), locked until the write committed, and notified
the schema's listeners (``pg_notify``), whose commit takes a lock of the whole database:
every writer of every replica waited in one line, twice. Schema 9 places an event from
its transaction's id, and the store sends notifications from a thread of its own, in
batches. Four statements, each the compare-and-set of one of 1,000 objects with a
600-byte body and its event inserted, as a worker's step sends it (``write_one``):

- ``schema 8``: the statement as the store sent it up to schema 8 (kept here as text):
  the counter and the notification;
- ``8, no notify``: the same without the notification: what the counter alone costs;
- ``schema 9``: the store's ``write_one`` now (``sql/postgresql/queries.sql``);
- ``floor``: the compare-and-set and the insert with no store-wide order at all (the
  event numbered from a plain sequence, no writer recorded): the least the same write
  can cost.

pgbench runs each for ``--seconds`` at each number of clients (``-M prepared``, two
pgbench threads: this machine has two cores, which pgbench shares with the server), in
a scratch schema it drops afterwards. Lock waits: the share of ``pg_stat_activity``
samples, taken every 10 ms while the writers run, in which a backend of the benchmark
waits on a lock.

Then ``--processes`` (1, 2, 4) worker processes of 8 threads each append a worker's
delta events to foreground responses through ``ResponseEngine.append`` (one
``write_one`` each), for ``--seconds``; the baseline, run the same way in the same
processes, is the floor statement sent by the driver alone (psycopg, prepared): the
least the same writes cost from Python. The client's CPU (the processes' user and
system seconds per second) says when the clients, not the server, are the limit.
Run: ``.venv/bin/python bench/scale.py`` (needs ``pgbench`` on the PATH). Run it with
an older runstate first on ``PYTHONPATH`` to measure the engine before a change.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from runstate import PostgresStore, ResponseEngine, RunEngine
from runstate.stores._postgres import SQL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from tables import PG_BASE  # noqa: E402

OBJECTS = 1_000
BODY = '{"id": "run_x", "object": "thread.run", "padding": "' + "x" * 540 + '"}'
APP = "bench_scale"  # the application_name of every connection the benchmark makes
VARIANTS = ["schema 8", "8, no notify", "schema 9", "floor"]

#: The compare-and-set that both statements below begin with, as the store's has it.
CAS = """
WITH w AS (
    UPDATE runs SET status = %(status)s, active = %(active)s, waiting = %(waiting)s,
        expires_at = %(expires_at)s,
        version = version + 1, lease_owner = %(lease_owner)s,
        lease_expires_at = %(lease_expires_at)s, attempts = %(attempts)s, body = %(body)s,
        event_count = %(event_count)s,
        ended_at = CASE WHEN %(active)s THEN NULL ELSE COALESCE(ended_at, %(ended_at)s) END
    WHERE id = %(id)s AND version = %(expected)s
    RETURNING id
)"""

#: ``write_one`` as the store sent it up to schema 8.
SCHEMA_8 = (
    CAS
    + """, c AS (
    UPDATE run_event_counter SET last = last + 1 WHERE EXISTS (SELECT 1 FROM w)
    RETURNING last
), e AS (
    INSERT INTO run_events (seq, run_id, event, from_status, to_status, at, data, number)
    SELECT c.last, w.id, %(event)s, %(from_status)s, %(to_status)s, %(at)s,
        COALESCE(%(data)s, %(body)s), %(number)s
    FROM w, c
    RETURNING seq
)
SELECT (SELECT seq FROM e), pg_notify(%(channel)s, %(ids)s)
"""
)

#: Schema 9's ``write_one`` with no store-wide order: no writer recorded or checked, the
#: event numbered from a plain sequence. It runs on a schema 8 store too.
FLOOR = (
    CAS
    + """, e AS (
    INSERT INTO run_events (seq, run_id, event, from_status, to_status, at, data, number)
    SELECT nextval('bench_event_seq'), w.id, %(event)s, %(from_status)s, %(to_status)s, %(at)s,
        COALESCE(%(data)s, %(body)s), %(number)s
    FROM w
    RETURNING seq
)
SELECT (SELECT seq FROM e)
"""
)


def statement(variant: str) -> str:
    """``write_one`` of ``variant`` as a pgbench script line."""
    sql = SCHEMA_8 if variant.startswith(("schema 8", "8,")) else SQL["write_one"]
    if variant == "floor":
        sql = floor_of(sql)
    values = {
        "status": "'in_progress'",
        "active": "true",
        "waiting": "false",
        "expires_at": "4102444800",
        "lease_owner": "'worker'",
        "lease_expires_at": "4102444800",
        "attempts": "1",
        "body": "'" + BODY + "'",
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
    sql = sql.replace("RETURNING id\n", "RETURNING id, event_count\n", 1)
    if variant == "8, no notify":
        sql = sql.replace(", pg_notify('bench_scale', 'run_' || :n)", "")
    assert ("run_event_counter" in sql) == variant.startswith(("schema 8", "8,")), sql
    assert ("pg_notify" in sql) == (variant == "schema 8"), sql
    return f"\\set n random(1, {OBJECTS})\n{' '.join(sql.split())}\n"


def floor_of(sql: str) -> str:
    """Schema 9's ``write_one`` without its store-wide order: ``FLOOR`` (checked)."""
    sql = sql.replace(",\n        writer_xid = pg_current_xact_id()", "")
    sql = sql.replace(" AND writer_xid < pg_current_xact_id()", "")
    sql = sql.replace("runstate_place_v9()", "nextval('bench_event_seq')")
    assert " ".join(sql.split()) == " ".join(FLOOR.split()), sql
    return sql


def prepare(schema: str) -> None:
    """The store's schema with 1,000 objects, renamed run_1 ... run_1000, and what the
    older statement needs (its counter) and the floor (a sequence)."""
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
        conn.execute("CREATE TABLE run_event_counter (one boolean PRIMARY KEY, last bigint)")
        conn.execute("INSERT INTO run_event_counter VALUES (true, 0)")
        conn.execute("VACUUM ANALYZE runs")


def set_variant(schema: str) -> None:
    """Each variant's events go after the last one's, whichever numbered them (the
    counter variants run first: schema 9's places, made from transaction ids, are far
    above what they number)."""
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"SET search_path = {schema}")
        conn.execute("SELECT setval('bench_event_seq', (SELECT max(seq) FROM run_events))")
        conn.execute("UPDATE run_event_counter SET last = (SELECT max(seq) FROM run_events)")
        conn.execute("CHECKPOINT")


def sample_lock_waits(schema: str, stop: threading.Event, seen: list[tuple[int, int]]) -> None:
    """Count, every 10 ms, the benchmark's backends and those waiting on a lock."""
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        while not stop.wait(0.01):
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock') "
                "FROM pg_stat_activity WHERE application_name IN ('pgbench', %s) "
                "AND state = 'active'",
                (APP,),
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
        raise SystemExit(f"pgbench failed: {done.stderr.strip()} {done.stdout}")
    tps = float(re.search(r"tps = ([\d.]+) \(without initial", done.stdout).group(1))  # type: ignore[union-attr]
    active = sum(a for a, _ in seen)
    waiting = sum(w for _, w in seen)
    return tps, (waiting / active if active else 0.0)


def conninfo() -> str:
    return f"{PG_BASE}{'&' if '?' in PG_BASE else '?'}application_name={APP}"


def write_for(
    schema: str, mode: str, ids: list[str], seconds: float, barrier: Any, done: Any
) -> None:
    """One writer thread of a worker process: for ``seconds``, a delta event on each of
    ``ids`` in turn, through the engine (``mode`` "engine") or as the floor statement
    through the driver alone ("driver"); puts how many writes it made."""
    delta = {"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "x" * 20}
    count = 0
    if mode == "engine":
        engine = ResponseEngine(PostgresStore(conninfo(), schema=schema, max_size=1))
        for response_id in ids:
            engine.get(response_id)  # as a worker holds what it generates
        barrier.wait()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for response_id in ids:
                engine.append(response_id, "response.bench_delta", delta)
            count += len(ids)
        engine.close()
    else:
        conn = psycopg.connect(
            conninfo(), autocommit=True, prepare_threshold=0, options=f"-c search_path={schema}"
        )
        rows = conn.execute(
            "SELECT id, version, event_count, body FROM runs WHERE id = ANY(%s)", (ids,)
        ).fetchall()
        barrier.wait()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for i, (object_id, version, events, body) in enumerate(rows):
                params = {
                    "status": "in_progress", "active": True, "waiting": False,
                    "expires_at": 4102444800, "lease_owner": None, "lease_expires_at": None,
                    "attempts": 0, "body": body, "event_count": events + 1, "ended_at": None,
                    "id": object_id, "expected": version, "event": "response.bench_delta",
                    "from_status": "in_progress", "to_status": "in_progress", "at": 1700000000,
                    "data": json.dumps(delta), "number": events,
                }  # fmt: skip
                won = conn.execute(FLOOR, params).fetchone()
                assert won is not None and won[0] is not None, "the floor's write lost"
                rows[i] = (object_id, version + 1, events + 1, body)
            count += len(rows)
        conn.close()
    done.put(count)


def worker_process(
    schema: str, mode: str, shares: list[list[str]], seconds: float, barrier: Any, results: Any
) -> None:
    """A worker process: one writer thread per share of objects; puts its writes and
    the CPU seconds it used from the start (the barrier) to the end."""
    import queue

    done: queue.Queue[int] = queue.Queue()
    threads = [
        threading.Thread(target=write_for, args=(schema, mode, ids, seconds, barrier, done))
        for ids in shares
    ]
    for t in threads:
        t.start()
    barrier.wait()  # the writers are ready: their setup is not counted
    before = os.times()
    for t in threads:
        t.join()
    after = os.times()
    cpu = after.user + after.system - before.user - before.system
    results.put((sum(done.get() for _ in threads), cpu))


def engine_level(schema: str, processes: int, threads: int, seconds: float, mode: str) -> Any:
    """Writes per second of ``processes`` worker processes of ``threads`` writers, the
    client CPU they used (cores), and the share of lock waits."""
    ctx = multiprocessing.get_context("spawn")
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        ids = [
            row[0]
            for row in conn.execute(
                f"SELECT id FROM {schema}.runs WHERE kind = 'response' ORDER BY seq"
            )
        ]
    writers = processes * threads
    shares = [ids[i::writers] for i in range(writers)]
    barrier = ctx.Barrier(writers + processes + 1)  # the writers, their processes, this one
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=worker_process,
            args=(schema, mode, shares[i * threads : (i + 1) * threads], seconds, barrier, results),
        )
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    seen: list[tuple[int, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_lock_waits, args=(schema, stop, seen))
    barrier.wait()
    sampler.start()
    got = [results.get(timeout=seconds + 120) for _ in procs]
    stop.set()
    sampler.join()
    for proc in procs:
        proc.join()
    writes = sum(w for w, _ in got)
    cpu = sum(c for _, c in got)
    active = sum(a for a, _ in seen)
    waiting = sum(w for _, w in seen)
    return writes / seconds, cpu / seconds, (waiting / active if active else 0.0)


def prepare_responses(schema: str) -> None:
    """A schema of the store's own with 1,000 foreground responses in progress."""
    engine = ResponseEngine(PostgresStore(PG_BASE, schema=schema))
    for _ in range(OBJECTS):
        engine.create(model="m", input="a prompt", background=False)
    engine.close()
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SEQUENCE {schema}.bench_event_seq START 1000000000000000")
        conn.execute(f"VACUUM ANALYZE {schema}.runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--engine-only", action="store_true", help="skip the pgbench part")
    parser.add_argument("--statements-only", action="store_true", help="skip the engine part")
    args = parser.parse_args()
    if not args.engine_only:
        statements(args.seconds, [int(c) for c in args.clients.split(",")])
    if not args.statements_only:
        engines(args.seconds, [int(p) for p in args.processes.split(",")], args.threads)


def statements(seconds: int, clients: list[int]) -> None:
    """The pgbench part."""
    schema = "bench_scale_" + secrets.token_hex(4)
    try:
        prepare(schema)
        results: dict[str, dict[int, tuple[float, float]]] = {v: {} for v in VARIANTS}
        for variant in VARIANTS:
            set_variant(schema)
            for n in clients:
                results[variant][n] = pgbench(schema, statement(variant), n, seconds)
        print(f"write_one, {OBJECTS} objects, {seconds} s per cell (pgbench -M prepared):")
        print(f"{'writers':>8} " + " ".join(f"{v:>24}" for v in VARIANTS))
        for n in clients:
            cells = []
            for v in VARIANTS:
                tps, waits = results[v][n]
                cells.append(f"{tps:>7,.0f} tps, {waits:>4.0%} lock")
            print(f"{n:>8} " + " ".join(f"{c:>24}" for c in cells))
        for n in clients:
            floor = results["floor"][n][0]
            ratios = ", ".join(f"{v} {results[v][n][0] / floor:.2f}x" for v in VARIANTS[:-1])
            before = results["schema 8"][n][0]
            print(
                f"{n:>3} writers, of the floor: {ratios}; "
                f"schema 9 / schema 8 {results['schema 9'][n][0] / before:.2f}x"
            )
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def engines(seconds: int, processes: list[int], threads: int) -> None:
    """The engine part."""
    import runstate.stores._postgres as store_module

    version = store_module.SCHEMA_VERSION
    print(
        f"\nworker processes of {threads} writer threads, ResponseEngine.append on "
        f"{OBJECTS} responses, schema {version}, {seconds} s per cell:"
    )
    print(
        f"{'processes':>9} {'writers':>7} {'engine':>12} {'driver floor':>13} {'ratio':>6} "
        f"{'client CPU':>11} {'lock waits':>10}"
    )
    for n in processes:
        schema = "bench_scale_" + secrets.token_hex(4)
        try:
            prepare_responses(schema)
            floor, _, _ = engine_level(schema, n, threads, seconds, "driver")
            rate, cpu, waits = engine_level(schema, n, threads, seconds, "engine")
        finally:
            with psycopg.connect(PG_BASE, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        print(
            f"{n:>9} {n * threads:>7} {rate:>8,.0f} w/s {floor:>9,.0f} w/s {rate / floor:>5.2f}x "
            f"{cpu:>5.2f} cores {waits:>10.0%}"
        )


if __name__ == "__main__":
    main()
