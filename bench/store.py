"""How fast is the engine on its SQL stores, against the databases themselves?

Three measurements, each against a baseline run in this same process on the same kind
of file (WAL, synchronous=NORMAL):

1. One transition through ``RunEngine`` (read, decide, compare-and-set with its history
   row) against the floor: one autocommit ``UPDATE runs ... WHERE id = ? AND version = ?``
   of one row on the same file, with the same pragmas (on PostgreSQL: one round trip).
   The least that changing one run can cost. Target: within 2.5x.
2. Claim throughput (claim, then complete) with 1, 2 and 4 worker processes on one file.
3. ``expire_due`` of 1,000 due runs among 10,000 stored and among 1,000,000 stored
   (and 6., ``prune`` of 1,000 runs that ended long ago, likewise; target: within 2x).
   Target: the two sweeps within 2x of each other (the sweep reads an index of active
   runs by ``expires_at``, so it does not grow with what is stored).

4. and 5. The same transition-against-floor and claim measurements on PostgreSQL (the
   machine's server, in a schema of its own that is dropped afterwards).

Run: ``.venv/bin/python bench/store.py`` (``--big 200000`` for a quicker run).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from runstate import ManualClock, RunEngine, SQLiteStore, open_store
from runstate._model import new_id

T0 = 1_700_000_000
CALLS = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
OUTPUTS = [{"tool_call_id": "call_1", "output": "x"}]


def best(fn: Callable[[], float], rounds: int = 5) -> float:
    return min(fn() for _ in range(rounds))


# --- 1. one transition ---------------------------------------------------------------------------


def transition_vs_floor(url: str, raw: Callable[[], Any], n: int = 1500) -> tuple[float, float]:
    """Engine transitions on ``url`` against raw UPDATE + COMMIT on ``raw()``, a DB-API
    connection to the same database."""
    engine = RunEngine(open_store(url), clock=ManualClock(T0), ttl=10**9)
    run = engine.create(thread_id="t", assistant_id="a", model="gpt-4o")
    engine.start(run.id)

    def through_engine() -> float:
        t = time.perf_counter()
        for _ in range(n // 3):
            engine.require_action(run.id, CALLS)
            engine.submit_tool_outputs(run.id, OUTPUTS)
            engine.start(run.id)
        return (time.perf_counter() - t) / (n // 3 * 3)

    conn = raw()
    mark = "?" if isinstance(conn, sqlite3.Connection) else "%s"
    other = engine.create(thread_id="t2", assistant_id="a", model="gpt-4o")
    update = (
        f"UPDATE runs SET status = {mark}, version = version + 1 "
        f"WHERE id = {mark} AND version = {mark}"
    )

    def raw_floor() -> float:
        # Autocommit: each UPDATE is its own transaction (one round trip on PostgreSQL).
        cursor = conn.cursor()
        cursor.execute(f"SELECT version FROM runs WHERE id = {mark}", (other.id,))
        (version,) = cursor.fetchone()
        t = time.perf_counter()
        for _ in range(n):
            cursor.execute(update, ("queued", other.id, version))
            version += 1
        return (time.perf_counter() - t) / n

    engine_s, floor_s = float("inf"), float("inf")
    for _ in range(5):  # interleaved, so a slow moment of the disk hits both
        engine_s = min(engine_s, through_engine())
        floor_s = min(floor_s, raw_floor())
    conn.close()
    engine.close()
    return engine_s, floor_s


# --- 2. claim throughput ------------------------------------------------------------------------


def claimer(
    url: str, name: str, barrier: Barrier, out: multiprocessing.Queue[tuple[float, int]]
) -> None:
    engine = RunEngine(open_store(url), clock=ManualClock(T0))
    claimed = 0
    barrier.wait()
    t = time.perf_counter()
    while (run := engine.claim(name)) is not None:
        engine.complete(run.id, worker_id=name)
        claimed += 1
    out.put((time.perf_counter() - t, claimed))


def claim_throughput(url: str, processes: int, runs: int = 2000) -> float:
    engine = RunEngine(open_store(url), clock=ManualClock(T0))
    for i in range(runs):
        engine.create(thread_id=f"claims{processes}_{i}", assistant_id="a")
    engine.close()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    out: multiprocessing.Queue[tuple[float, int]] = ctx.Queue()
    procs = [
        ctx.Process(target=claimer, args=(url, f"w{i}", barrier, out)) for i in range(processes)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    assert sum(c for _, c in results) == runs
    return runs / max(s for s, _ in results)


# --- 3. sweeps ----------------------------------------------------------------------------------


def populated(
    folder: Path, stored: int, due_batches: int = 3, due_per_batch: int = 1000
) -> RunEngine:
    """``stored`` runs: ``due_batches * due_per_batch`` queued and due at T0+1, T0+2, ...;
    the rest a mix of finished runs and active runs that expire much later."""
    path = folder / f"sweep_{stored}.db"
    engine = RunEngine(SQLiteStore(path), clock=ManualClock(T0), ttl=600)
    template = engine.create(thread_id="template", assistant_id="a", model="gpt-4o").to_dict()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # loading only; the sweeps run as configured
    due = due_batches * due_per_batch

    def rows() -> object:
        for i in range(stored - 1):
            run_id = new_id("run")
            if i < due:
                status, expires = "queued", T0 + 1 + i // due_per_batch
            elif i % 10:
                status, expires = "completed", None
            else:
                status, expires = "queued", T0 + 10**6
            body = json.dumps(
                template
                | {"id": run_id, "thread_id": f"t{i}", "status": status, "expires_at": expires}
            )
            yield (run_id, f"t{i}", status, status == "queued", T0, expires, body)

    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO runs (id, kind, group_id, status, active, created_at, expires_at, "
        "version, body) VALUES (?, 'run', ?, ?, ?, ?, ?, 1, ?)",
        rows(),  # type: ignore[arg-type]
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the load must not be paid by a sweep
    conn.close()
    return engine


def sweeps(engines: list[RunEngine], rounds: int) -> list[float]:
    """The best of ``rounds`` sweeps of 1,000 due runs for each engine, the engines'
    sweeps interleaved so that a checkpoint or a slow disk moment hits them alike."""
    best = [float("inf")] * len(engines)
    for _ in range(rounds):
        for i, engine in enumerate(engines):
            clock = engine.lifecycle._clock
            assert isinstance(clock, ManualClock)
            clock.advance(1)
            t = time.perf_counter()
            expired = engine.expire_due(limit=1000)
            best[i] = min(best[i], time.perf_counter() - t)
            assert len(expired) == 1000, len(expired)
    return best


# --- 6. retention ------------------------------------------------------------------------------


def with_ended(folder: Path, stored: int, old: int) -> RunEngine:
    """``stored`` runs: ``old`` of them ended long ago (at T0 - 10**6 + i), the rest ended
    just now or still active."""
    path = folder / f"prune_{stored}.db"
    engine = RunEngine(SQLiteStore(path), clock=ManualClock(T0), ttl=600)
    template = engine.create(thread_id="template", assistant_id="a", model="gpt-4o").to_dict()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # loading only; prune runs as configured

    def rows() -> object:
        for i in range(stored - 1):
            run_id = new_id("run")
            if i < old:
                status, ended = "completed", T0 - 10**6 + i
            elif i % 10:
                status, ended = "completed", T0
            else:
                status, ended = "queued", None
            body = json.dumps(template | {"id": run_id, "thread_id": f"t{i}", "status": status})
            yield (run_id, f"t{i}", status, ended is None, T0 - 10**6, ended, body)

    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO runs (id, kind, group_id, status, active, created_at, ended_at, "
        "version, body) VALUES (?, 'run', ?, ?, ?, ?, ?, 1, ?)",
        rows(),  # type: ignore[arg-type]
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return engine


def prunes(engines: list[RunEngine], rounds: int) -> list[float]:
    """The best of ``rounds`` prunes of 1,000 old runs for each engine, interleaved."""
    best = [float("inf")] * len(engines)
    for _ in range(rounds):
        for i, engine in enumerate(engines):
            t = time.perf_counter()
            pruned = engine.prune(older_than=1000, limit=1000)
            best[i] = min(best[i], time.perf_counter() - t)
            assert pruned == 1000, pruned
    return best


def sqlite_raw(path: Path) -> Callable[[], sqlite3.Connection]:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None)  # autocommit
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    return connect


def report_transition(engine_s: float, floor_s: float) -> None:
    print(f"   one autocommit UPDATE floor   {floor_s * 1e6:8.1f} us")
    print(f"   RunEngine transition          {engine_s * 1e6:8.1f} us")
    print(f"   engine / floor                {engine_s / floor_s:8.2f}x (target <= 2.5x)")


def report_claims(url_for: Callable[[int], str]) -> None:
    base = None
    for processes in (1, 2, 4):
        rate = claim_throughput(url_for(processes), processes)
        base = base or rate
        ratio = rate / base
        print(f"   {processes} process(es)  {rate:8.0f} claims/s  {ratio:5.2f}x of 1 process")


def main() -> None:
    parser = argparse.ArgumentParser(description="SQL store benchmarks")
    parser.add_argument("--big", type=int, default=1_000_000, help="runs stored for the big sweep")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL database for sections 4 and 5 ('' to skip them)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as name:
        folder = Path(name)
        print("1. one transition on SQLite (WAL, synchronous=NORMAL), best of 5")
        path = folder / "transition.db"
        report_transition(*transition_vs_floor(f"sqlite:///{path}", sqlite_raw(path)))

        print("2. claim + complete throughput, one SQLite file")
        report_claims(lambda n: f"sqlite:///{folder / f'claims_{n}.db'}")

        rounds = 6
        print(f"3. expire_due of 1,000 due runs on SQLite (best of {rounds} interleaved sweeps)")
        small, big = sweeps(
            [populated(folder, 10_000, rounds), populated(folder, args.big, rounds)], rounds
        )
        print(f"   among 10,000 stored       {small * 1e3:8.1f} ms")
        print(f"   among {args.big:,} stored  {big * 1e3:8.1f} ms")
        print(f"   big / small               {big / small:8.2f}x (target <= 2x)")

        print(f"6. prune of 1,000 ended runs on SQLite (best of {rounds} interleaved rounds)")
        small, big = prunes(
            [
                with_ended(folder, 10_000, 1000 * rounds),
                with_ended(folder, args.big, 1000 * rounds),
            ],
            rounds,
        )
        print(f"   among 10,000 stored       {small * 1e3:8.1f} ms")
        print(f"   among {args.big:,} stored  {big * 1e3:8.1f} ms")
        print(f"   big / small               {big / small:8.2f}x (target <= 2x)")

    if args.postgres:
        import psycopg

        prefix = "bench_" + secrets.token_hex(4)
        sep = "&" if "?" in args.postgres else "?"
        try:
            print("4. one transition on PostgreSQL, best of 5")
            raw = lambda: psycopg.connect(  # noqa: E731
                args.postgres, options=f"-c search_path={prefix}_t", autocommit=True
            )
            report_transition(*transition_vs_floor(f"{args.postgres}{sep}schema={prefix}_t", raw))
            print("5. claim + complete throughput, one PostgreSQL schema")
            report_claims(lambda n: f"{args.postgres}{sep}schema={prefix}_c{n}")
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                for suffix in ("t", "c1", "c2", "c4"):
                    conn.execute(f"DROP SCHEMA IF EXISTS {prefix}_{suffix} CASCADE")


if __name__ == "__main__":
    main()
