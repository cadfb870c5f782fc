"""How fast is a background response, against a run and the store's floor?

One full response is create, claim, 20 appended text deltas, complete: 23 writes. It is
timed on each store in this one process, interleaved with two baselines on the same
store:

- the run's figure: a full run through ``RunEngine`` on the same store (create, claim,
  require_action, submit_tool_outputs, claim, complete: 6 writes), per write, since a
  run has no deltas to make it as long;
- the floor: one autocommit ``UPDATE`` of one ended row on the store's own connection
  (on PostgreSQL: one round trip), the least one write can cost (``engine_floor`` of
  bench/store.py, whose floors these are).

It prints, per store, the time of a full response, its cost per write, and that cost
against the run's per write and against the floor. Run: ``.venv/bin/python
bench/responses.py`` (``--postgres ''`` to skip PostgreSQL).
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from pathlib import Path

from store import DELTA, OUTPUT, T0, engine_floor, full_runs

from runstate import ManualClock, ResponseEngine, RunEngine, open_store

DELTAS = 20
RESPONSE_WRITES = 3 + DELTAS  # create, claim, the deltas, complete
RUN_WRITES = 6  # create, claim, require_action, submit_tool_outputs, claim, complete


def full_responses(engine: ResponseEngine, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        response = engine.create(model="gpt-4o", input="Say something")
        assert engine.claim("w") is not None
        for _ in range(DELTAS):
            engine.append(response.id, "response.progress", DELTA, worker_id="w")
        engine.complete(response.id, output=OUTPUT, worker_id="w")
    return (time.perf_counter() - t) / n


def measure(name: str, url: str, rounds: int, n: int) -> None:
    store = open_store(url)
    clock = ManualClock(T0)
    responses = ResponseEngine(store, clock, timeout=10**9)
    runs = RunEngine(store, clock, ttl=10**9)
    floor = None
    if url != "memory://":
        row = responses.create(model="m", input="floor row", background=False)
        floor = engine_floor(store, responses.complete(row.id, output=OUTPUT).id)  # ended
    best = {"response": float("inf"), "run": float("inf"), "floor": float("inf")}
    for _ in range(rounds):  # interleaved, so a slow moment hits every measure alike
        best["response"] = min(best["response"], full_responses(responses, n))
        best["run"] = min(best["run"], full_runs(runs, n))
        if floor is not None:
            best["floor"] = min(best["floor"], floor(n * RESPONSE_WRITES))
    per_write = best["response"] / RESPONSE_WRITES
    run_per_write = best["run"] / RUN_WRITES
    lines = [
        (f"full response ({RESPONSE_WRITES} writes)", f"{best['response'] * 1e3:8.2f} ms"),
        ("per write", f"{per_write * 1e6:8.1f} us"),
        (f"full run ({RUN_WRITES} writes), per write", f"{run_per_write * 1e6:8.1f} us"),
        ("response / run, per write", f"{per_write / run_per_write:8.2f}x"),
    ]
    if floor is not None:
        lines.append(("floor (one autocommit UPDATE)", f"{best['floor'] * 1e6:8.1f} us"))
        lines.append(("response write / floor", f"{per_write / best['floor']:8.2f}x"))
    print(f"{name}: best of {rounds} rounds of {n}")
    for label, value in lines:
        print(f"   {label:<34}{value}")
    responses.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="a full background response on each store")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL database ('' to skip it)",
    )
    args = parser.parse_args()
    measure("memory", "memory://", args.rounds, 200)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "responses.db"
        measure("SQLite (WAL, synchronous=NORMAL)", f"sqlite:///{path}", args.rounds, 40)
    if args.postgres:
        import psycopg

        schema = "bench_" + secrets.token_hex(4)
        sep = "&" if "?" in args.postgres else "?"
        try:
            measure("PostgreSQL", f"{args.postgres}{sep}schema={schema}", args.rounds, 20)
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    main()
