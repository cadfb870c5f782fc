"""How fast is the engine on its SQL stores, against the databases themselves and a peer?

Every figure is a ratio against a baseline run in this same process, and every line says
what its operation costs in trips to the database, counted (``bench/counting.py``):
statements on SQLite, round trips on PostgreSQL.

1. and 2. One operation against the floor, best of 5 interleaved rounds, on SQLite and on
   PostgreSQL. The floor is the least that changing one object can cost: one autocommit
   ``UPDATE runs SET status = ?, version = version + 1 WHERE id = ? AND version = ?`` of
   one row, on the engine's own connection (SQLite: its file, pragmas and connection;
   PostgreSQL: a connection from the store's pool), one statement, one round trip. The
   operations: a worker's step (it holds the version it claimed or last wrote), a claim,
   a create, and a background response's claim, appended delta and complete. Targets: a
   SQLite step within 3x of its floor; a PostgreSQL step within 1.3x.
3. Claim + complete throughput with 1, 2 and 4 worker processes on one SQLite file; with
   1, 2, 4 and 8 on one PostgreSQL schema, side by side with procrastinate's worker
   running no-op jobs on the same server (1 and 2 workers), and a create against
   procrastinate's ``defer``. Targets: claim + complete at least 3x procrastinate's,
   create at least 1.5x its defer. This machine has 2 cores: 4 and 8 processes share
   them with the server.
4. ``expire_due`` and ``recover_stalled`` of 1,000 due objects among 10,000 stored and
   among 1,000,000 (``--big``), on SQLite and on PostgreSQL. Target: within 2x.
5. ``prune`` of 1,000 long-ended runs among 10,000 and among 1,000,000, on SQLite.
   Target: within 2x.

Run: ``.venv/bin/python bench/store.py`` (``--big 200000`` for a quicker run,
``--postgres ''`` to leave PostgreSQL out).
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
from collections.abc import Callable, Iterator
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from counting import RoundTrips, Statements

from runstate import (
    ManualClock,
    PostgresStore,
    ResponseEngine,
    RunEngine,
    SQLiteStore,
    open_store,
)
from runstate._model import new_id

T0 = 1_700_000_000
CALLS = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
OUTPUTS = [{"tool_call_id": "call_1", "output": "x"}]
DELTA = {"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "tok"}
OUTPUT = [
    {
        "type": "message",
        "id": "msg_1",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "tok", "annotations": []}],
    }
]


# --- 1. and 2. one operation against the floor ---------------------------------------------------


class Operations:
    """The operations timed against the floor, on one store, each run ``n`` times per
    round: ``name -> (prepare, operation)``, where ``prepare(n)`` makes what ``n`` runs of
    ``operation(i)`` need (outside the timing)."""

    def __init__(self, store: Any) -> None:
        self.runs = RunEngine(store, clock=ManualClock(T0), ttl=10**9)
        self.responses = ResponseEngine(store, clock=ManualClock(T0), timeout=10**8)
        self._stepped = self.runs.create(thread_id="stepped", assistant_id="a", model="gpt-4o")
        self.runs.start(self._stepped.id)
        self._steps = self._step_cycle()
        self._made: list[Any] = []

    def ended(self, thread: str) -> Any:
        run = self.runs.create(thread_id=thread, assistant_id="a", model="gpt-4o")
        self.runs.start(run.id)
        return self.runs.complete(run.id)

    def _step_cycle(self) -> Iterator[Any]:
        run_id = self._stepped.id
        while True:
            yield lambda: self.runs.require_action(run_id, CALLS)
            yield lambda: self.runs.submit_tool_outputs(run_id, OUTPUTS)
            yield lambda: self.runs.start(run_id)

    def table(self) -> dict[str, tuple[Callable[[int], None], Callable[[int], None]]]:
        none: Callable[[int], None] = lambda n: None  # noqa: E731
        return {
            "a worker's step": (none, lambda i: next(self._steps)()),
            "create": (none, self._create),
            "claim": (self._queue_runs, lambda i: self.runs.claim("w")),
            "response claim": (self._queue_responses, lambda i: self.responses.claim("w")),
            "response delta": (self._claim_one_response, self._append),
            "response complete": (self._claim_responses, self._complete),
        }

    def _create(self, i: int) -> None:
        self.runs.create(thread_id=new_id("thread"), assistant_id="a", model="gpt-4o")

    def _queue_runs(self, n: int) -> None:
        for _ in range(n):
            self._create(0)

    def _queue_responses(self, n: int) -> None:
        for _ in range(n):
            self.responses.create(model="gpt-4o", input="hi", background=True)

    def _claim_one_response(self, n: int) -> None:
        self._queue_responses(1)
        self._made = [self.responses.claim("w")]

    def _append(self, i: int) -> None:
        self.responses.append(self._made[0].id, "response.progress", DELTA)

    def _claim_responses(self, n: int) -> None:
        self._queue_responses(n)
        self._made = [self.responses.claim("w") for _ in range(n)]

    def _complete(self, i: int) -> None:
        self.responses.complete(self._made[i].id, output=OUTPUT)


def timed(prepare: Callable[[int], None], operation: Callable[[int], None], n: int) -> float:
    prepare(n)
    t = time.perf_counter()
    for i in range(n):
        operation(i)
    return (time.perf_counter() - t) / n


def against_floor(
    ops: Operations,
    floor: Callable[[int], float],
    counter: Callable[[], Callable[[Callable[[], Any]], int]],
    unit: str,
    target: float,
    n: int = 600,
    rounds: int = 5,
) -> None:
    """Best of ``rounds`` interleaved rounds of each operation and of the floor."""
    table = ops.table()
    best = dict.fromkeys(table, float("inf"))
    floor_s = float("inf")
    for _ in range(rounds):
        floor_s = min(floor_s, floor(n))
        for name, (prepare, operation) in table.items():
            best[name] = min(best[name], timed(prepare, operation, n))
    trips = {}
    count = counter()  # made after the timing: counting slows what it counts
    for name, (prepare, operation) in table.items():
        prepare(1)
        trips[name] = count(lambda op=operation: op(0))  # type: ignore[misc]
    print(f"   {'one autocommit UPDATE (floor)':<31}{floor_s * 1e6:8.1f} us   1.00x   1 {unit}")
    for name, seconds in best.items():
        ratio = seconds / floor_s
        print(f"   {name:<31}{seconds * 1e6:8.1f} us {ratio:6.2f}x {trips[name]:3d} {unit}s")
    step = best["a worker's step"] / floor_s
    print(f"   a worker's step / floor {step:.2f}x (target <= {target}x)")


def update_floor(conn: Any, mark: str, run_id: str) -> Callable[[int], float]:
    """``n`` autocommit UPDATEs of one row (one round trip each on PostgreSQL), a run that
    has ended (its status stays what it is: no claim picks it, no index moves)."""
    update = (
        f"UPDATE runs SET status = {mark}, version = version + 1 "
        f"WHERE id = {mark} AND version = {mark}"
    )

    def floor(n: int) -> float:
        cursor = conn.cursor()
        cursor.execute(f"SELECT version FROM runs WHERE id = {mark}", (run_id,))
        (version,) = cursor.fetchone()
        t = time.perf_counter()
        for _ in range(n):
            cursor.execute(update, ("completed", run_id, version))
            version += 1
        return (time.perf_counter() - t) / n

    return floor


def engine_floor(store: Any, run_id: str) -> Callable[[int], float]:
    """The floor on the store's own connection: SQLite's one idle connection (its file,
    pragmas and cache), or a connection from PostgreSQL's pool (one round trip), taken
    for each round. ``run_id`` names an ended object."""
    if isinstance(store, SQLiteStore):
        (conn,) = store._idle  # the engine's own (and only) connection, idle between calls
        return update_floor(conn, "?", run_id)

    def floor_round(n: int) -> float:
        with store._pool.connection() as conn:
            return update_floor(conn, "%s", run_id)(n)

    return floor_round


def full_runs(engine: RunEngine, n: int) -> float:
    """Seconds per full run as a worker makes it: create, claim, require_action,
    submit_tool_outputs, claim, complete (6 writes)."""
    t = time.perf_counter()
    for _ in range(n):
        run = engine.create(thread_id=new_id("thread"), assistant_id="a")
        engine.claim("w")
        engine.require_action(run.id, CALLS, worker_id="w")
        engine.submit_tool_outputs(run.id, OUTPUTS)
        engine.claim("w")
        engine.complete(run.id, worker_id="w")
    return (time.perf_counter() - t) / n


def sqlite_against_floor(folder: Path) -> None:
    store = SQLiteStore(folder / "operations.db")
    ops = Operations(store)
    floor = engine_floor(store, ops.ended("floor").id)
    against_floor(ops, floor, lambda: Statements(store).of, "statement", 3.0)
    store.close()


def postgres_against_floor(url: str, schema: str) -> None:
    store = PostgresStore(url, schema=schema, max_size=1)
    ops = Operations(store)
    floor = engine_floor(store, ops.ended("floor").id)
    against_floor(ops, floor, lambda: RoundTrips(store).of, "round trip", 1.3)
    store.close()


# --- 3. claim + complete throughput, and the peer ------------------------------------------------


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


def in_processes(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``target(*a, barrier, out)`` for each ``a`` in its own process, started
    together; what each put on ``out``."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(args))
    out: multiprocessing.Queue[Any] = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, out)) for a in args]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return results


def claim_throughput(url: str, processes: int, runs: int = 2000) -> float:
    engine = RunEngine(open_store(url), clock=ManualClock(T0))
    for i in range(runs):
        engine.create(thread_id=f"claims{processes}_{i}", assistant_id="a")
    engine.close()
    results = in_processes(claimer, [(url, f"w{i}") for i in range(processes)])
    assert sum(c for _, c in results) == runs
    return runs / max(s for s, _ in results)


def cycle_trips(store: Any, count: Callable[[Callable[[], Any]], int]) -> int:
    """What one claim and its complete take, as the workers above make them."""
    engine = RunEngine(store, clock=ManualClock(T0))
    engine.create(thread_id="counted", assistant_id="a")

    def cycle() -> None:
        run = engine.claim("w")
        assert run is not None
        engine.complete(run.id, worker_id="w")

    return count(cycle)


def create_throughput(url: str, n: int = 1000) -> float:
    engine = RunEngine(open_store(url), clock=ManualClock(T0))
    t = time.perf_counter()
    for i in range(n):
        engine.create(thread_id=f"made_{i}", assistant_id="a")
    seconds = time.perf_counter() - t
    engine.close()
    return n / seconds


def _noop() -> None:
    """procrastinate's job: nothing, as runstate's worker does nothing between its claim
    and its complete."""


def procrastinate_app(conninfo: str, schema: str) -> Any:
    import logging

    import procrastinate

    # It warns that an app made in a script's main module cannot be imported by name;
    # this one is made the same way in each worker process, which needs no import.
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    connector = procrastinate.PsycopgConnector(
        conninfo=conninfo, kwargs={"options": f"-c search_path={schema}"}
    )
    app = procrastinate.App(connector=connector)
    app.task(name="noop")(_noop)
    return app


def procrastinate_worker(
    conninfo: str,
    schema: str,
    barrier: Barrier,
    out: multiprocessing.Queue[float],
) -> None:
    app = procrastinate_app(conninfo, schema)
    with app.open():
        barrier.wait()
        t = time.perf_counter()
        # Its own worker, as its users run it: fetch, run, finish, until the queue is empty.
        app.run_worker(wait=False, concurrency=1, listen_notify=False, delete_jobs="never")
        out.put(time.perf_counter() - t)


def procrastinate_figures(conninfo: str, schema: str, workers: int, jobs: int = 2000) -> float:
    """Jobs a second through ``workers`` procrastinate worker processes."""
    app = procrastinate_app(conninfo, schema)
    with app.open():
        task = app.tasks["noop"]
        for _ in range(jobs):
            task.defer()
    seconds = in_processes(procrastinate_worker, [(conninfo, schema)] * workers)
    return jobs / max(seconds)


def procrastinate_defers(conninfo: str, schema: str, n: int = 1000) -> float:
    app = procrastinate_app(conninfo, schema)
    with app.open():
        task = app.tasks["noop"]
        t = time.perf_counter()
        for _ in range(n):
            task.defer()
        return n / (time.perf_counter() - t)


# --- 4. sweeps -----------------------------------------------------------------------------------


def population(stored: int, batches: int, per_batch: int = 1000) -> Iterator[tuple[Any, ...]]:
    """The rows of ``stored`` runs: ``batches * per_batch`` queued and due at T0+1, T0+2,
    ...; as many in progress whose lease ends at T0+1, T0+2, ... (and not due); the rest
    a mix of finished runs and active ones that expire much later. A row: id, group,
    status, active, expires_at, lease owner, lease end, attempts, body."""
    template = RunEngine(clock=ManualClock(T0), ttl=600).create(
        thread_id="template", assistant_id="a", model="gpt-4o"
    )
    base = template.to_dict()
    due = batches * per_batch
    for i in range(stored):
        run_id = new_id("run")
        owner = lease = None
        attempts = 0
        if i < due:
            status, expires = "queued", T0 + 1 + i // per_batch
        elif i < 2 * due:
            status, expires = "in_progress", T0 + 10**6
            owner, lease, attempts = "w", T0 + 1 + (i - due) // per_batch, 1
        elif i % 10:
            status, expires = "completed", None
        else:
            status, expires = "queued", T0 + 10**6
        body = base | {"id": run_id, "thread_id": f"t{i}", "status": status, "expires_at": expires}
        active = status != "completed"
        yield (run_id, f"t{i}", status, active, expires, owner, lease, attempts, json.dumps(body))


_COLUMNS = (
    "id, kind, group_id, status, active, created_at, expires_at, lease_owner, "
    "lease_expires_at, attempts, version, body"
)


def sqlite_populated(folder: Path, stored: int, batches: int) -> RunEngine:
    path = folder / f"sweep_{stored}.db"
    SQLiteStore(path).close()  # the schema
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # loading only; the sweeps run as configured
    conn.execute("BEGIN")
    conn.executemany(
        f"INSERT INTO runs ({_COLUMNS}) VALUES (?, 'run', ?, ?, ?, {T0}, ?, ?, ?, ?, 1, ?)",
        population(stored, batches),
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the load must not be paid by a sweep
    conn.close()
    return RunEngine(SQLiteStore(path), clock=ManualClock(T0), ttl=600, max_attempts=100)


def postgres_populated(url: str, schema: str, stored: int, batches: int) -> RunEngine:
    import psycopg

    PostgresStore(url, schema=schema).close()  # the schema
    with psycopg.connect(url, options=f"-c search_path={schema}") as conn:
        with conn.cursor().copy(f"COPY runs ({_COLUMNS}) FROM STDIN") as copy:
            for row in population(stored, batches):
                run_id, group, status, active, expires, owner, lease, attempts, body = row
                fields = (run_id, "run", group, status, active, T0, expires, owner, lease)
                copy.write_row((*fields, attempts, 1, body))
        conn.commit()
        conn.execute("ANALYZE runs")
    store = PostgresStore(url, schema=schema)
    return RunEngine(store, clock=ManualClock(T0), ttl=600, max_attempts=100)


def sweeps(engines: list[RunEngine], rounds: int) -> tuple[list[float], list[float]]:
    """The best of ``rounds`` rounds of ``expire_due`` and of ``recover_stalled`` of
    1,000 objects each, for each engine, interleaved so that a checkpoint or a slow disk
    moment hits them alike."""
    expired = [float("inf")] * len(engines)
    recovered = [float("inf")] * len(engines)
    for _ in range(rounds):
        for i, engine in enumerate(engines):
            clock = engine.lifecycle._clock
            assert isinstance(clock, ManualClock)
            clock.advance(1)
            t = time.perf_counter()
            done = engine.expire_due(limit=1000)
            expired[i] = min(expired[i], time.perf_counter() - t)
            assert len(done) == 1000, len(done)
            t = time.perf_counter()
            done = engine.recover_stalled(limit=1000)
            recovered[i] = min(recovered[i], time.perf_counter() - t)
            assert len(done) == 1000, len(done)
    return expired, recovered


def sweep_trips(engine: RunEngine, count: Callable[[Callable[[], Any]], int]) -> list[int]:
    """What one more sweep of each kind takes (the population holds a batch more than
    the timed rounds use)."""
    clock = engine.lifecycle._clock
    assert isinstance(clock, ManualClock)
    clock.advance(1)
    return [
        count(lambda: engine.expire_due(limit=1000)),
        count(lambda: engine.recover_stalled(limit=1000)),
    ]


def report_sweeps(
    big: int, expired: list[float], recovered: list[float], trips: list[int], unit: str
) -> None:
    for name, (small_s, big_s), n in zip(
        ("expire_due", "recover_stalled"), (expired, recovered), trips, strict=True
    ):
        print(
            f"   {name:<16} among 10,000 {small_s * 1e3:7.1f} ms   among {big:,} "
            f"{big_s * 1e3:7.1f} ms   {big_s / small_s:5.2f}x (target <= 2x)   {n} {unit}"
        )


# --- 5. retention --------------------------------------------------------------------------------


def with_ended(folder: Path, stored: int, old: int) -> RunEngine:
    """``stored`` runs: ``old`` of them ended long ago (at T0 - 10**6 + i), the rest ended
    just now or still active."""
    path = folder / f"prune_{stored}.db"
    SQLiteStore(path).close()
    template = RunEngine(clock=ManualClock(T0)).create(thread_id="x", assistant_id="a").to_dict()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # loading only; prune runs as configured

    def rows() -> Iterator[tuple[Any, ...]]:
        for i in range(stored):
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
        rows(),
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return RunEngine(SQLiteStore(path), clock=ManualClock(T0), ttl=600)


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


ROUNDS = 3
Schema = Callable[[str], tuple[str, str]]  # a suffix -> (store URL, schema name)


def claims(folder: Path, postgres: str, pg_schema: Schema) -> None:
    print("3. claim + complete throughput (no-op work between them)")
    for n in (1, 2, 4):
        rate = claim_throughput(f"sqlite:///{folder / f'claims_{n}.db'}", n)
        print(f"   SQLite, {n} process(es)          {rate:7.0f} claims/s")
    sqlite = SQLiteStore(folder / "claim_count.db")
    print(f"   (a claim + complete: {cycle_trips(sqlite, Statements(sqlite).of)} statements)")
    sqlite.close()
    if not postgres:
        return
    import psycopg

    # Side by side: each round runs runstate's workers and then procrastinate's, on the
    # same server, and each keeps its best round (a slow moment hits both alike).
    peer: dict[int, float] = {}
    ours: dict[int, float] = {}
    for n in (1, 2):
        schema = pg_schema(f"p{n}")[1]
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        app = procrastinate_app(postgres, schema)
        with app.open():
            app.schema_manager.apply_schema()
        for i in range(ROUNDS):
            ours[n] = max(ours.get(n, 0.0), claim_throughput(pg_schema(f"c{n}_{i}")[0], n))
            peer[n] = max(peer.get(n, 0.0), procrastinate_figures(postgres, schema, n))
    for n in (4, 8):
        ours[n] = claim_throughput(pg_schema(f"c{n}")[0], n)
    for n, rate in ours.items():
        versus = ""
        if n in peer:
            versus = f"   {rate / peer[n]:5.2f}x procrastinate's {peer[n]:5.0f} jobs/s"
        print(f"   PostgreSQL, {n} process(es)      {rate:7.0f} claims/s{versus}")
    made = defers = 0.0
    for i in range(ROUNDS):  # interleaved likewise
        made = max(made, create_throughput(pg_schema(f"made{i}")[0]))
        defers = max(defers, procrastinate_defers(postgres, pg_schema("p1")[1]))
    print(
        f"   PostgreSQL create {made:7.0f}/s, procrastinate defer {defers:7.0f}/s: "
        f"{made / defers:.2f}x (target >= 1.5x)"
    )
    store = PostgresStore(postgres, schema=pg_schema("count")[1], max_size=1)
    print(f"   (a claim + complete: {cycle_trips(store, RoundTrips(store).of)} round trips)")
    store.close()
    print("   (targets: claim + complete >= 3x procrastinate's; this machine has 2 cores)")


def sweep_figures(folder: Path, big: int, postgres: str, pg_schema: Schema) -> None:
    print(f"4. sweeps of 1,000 due among 10,000 and {big:,} (best of {ROUNDS})")
    print("   SQLite")
    engines = [sqlite_populated(folder, n, ROUNDS + 1) for n in (10_000, big)]
    timed = sweeps(engines, ROUNDS)
    trips = sweep_trips(engines[0], Statements(engines[0].store).of)
    report_sweeps(big, *timed, trips, "statements")
    if postgres:
        print("   PostgreSQL")
        schemas = [pg_schema(f"s{n}")[1] for n in (10_000, big)]
        engines = [
            postgres_populated(postgres, schema, n, ROUNDS + 1)
            for schema, n in zip(schemas, (10_000, big), strict=True)
        ]
        timed = sweeps(engines, ROUNDS)
        counted = RunEngine(
            PostgresStore(postgres, schema=schemas[0], max_size=1),
            clock=ManualClock(T0 + ROUNDS),
            ttl=600,
            max_attempts=100,
        )
        trips = sweep_trips(counted, RoundTrips(counted.store).of)
        report_sweeps(big, *timed, trips, "round trips")
        for engine in [*engines, counted]:
            engine.close()


def prune_figures(folder: Path, big: int) -> None:
    print(f"5. prune of 1,000 ended runs on SQLite (best of {ROUNDS})")
    engines = [with_ended(folder, n, 1000 * ROUNDS) for n in (10_000, big)]
    small_s, big_s = prunes(engines, ROUNDS)
    print(
        f"   among 10,000 {small_s * 1e3:7.1f} ms   among {big:,} {big_s * 1e3:7.1f} ms"
        f"   {big_s / small_s:5.2f}x (target <= 2x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="SQL store benchmarks")
    parser.add_argument(
        "--big", type=int, default=1_000_000, help="objects stored for the big sweeps"
    )
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL database (a schema of its own is made and dropped; '' to skip)",
    )
    parser.add_argument("--sections", default="12345", help="which sections to run: 12345")
    args = parser.parse_args()
    run = args.sections.__contains__
    prefix = "bench_" + secrets.token_hex(4)
    sep = "&" if "?" in args.postgres else "?"
    schemas: list[str] = []

    def pg_schema(suffix: str) -> tuple[str, str]:
        name = f"{prefix}_{suffix}"
        if name not in schemas:
            schemas.append(name)
        return f"{args.postgres}{sep}schema={name}", name

    try:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as name:
            folder = Path(name)
            if run("1"):
                print("1. one operation on SQLite (WAL, synchronous=NORMAL), best of 5 rounds")
                sqlite_against_floor(folder)
            if args.postgres and run("2"):
                print("2. one operation on PostgreSQL, best of 5 rounds")
                postgres_against_floor(args.postgres, pg_schema("ops")[1])
            if run("3"):
                claims(folder, args.postgres, pg_schema)
            if run("4"):
                sweep_figures(folder, args.big, args.postgres, pg_schema)
            if run("5"):
                prune_figures(folder, args.big)
    finally:
        if schemas:
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as conn:
                for schema in schemas:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    main()
