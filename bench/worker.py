"""The worker runtime's cost and its reflexes.

1. Jobs per second through ``Worker`` with a no-op handler, against the same loop written
   by hand on the engine (a claim that may wait, as an idle worker's must, then
   complete: the least the same work can cost), on a
   SQLite file and on PostgreSQL, one job at a time, each measured in this process,
   alternated, best of three rounds of 1,000 runs.
2. Cancel to handler, across processes, on PostgreSQL: a worker process streams a
   response and waits; this process cancels it and the worker prints when the
   ``CancelledError`` reached its handler (both clocks are this machine's), 100 times.
3. SIGTERM to a handed-back job started elsewhere: a worker process holds a job with no
   grace; a second worker process idles, waiting on the bell; this process sends SIGTERM
   to the first and the second prints when its handler starts the job, 20 times.

Run: ``.venv/bin/python bench/worker.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from servers import worker_process  # noqa: E402
from tables import PG_BASE, pg_url  # noqa: E402

from runstate import (  # noqa: E402
    AsyncRunEngine,
    Completed,
    Job,
    ResponseEngine,
    RunEngine,
    Worker,
    open_store,
    open_store_async,
)

RUNS = 1000


async def noop(job: Job) -> Completed:
    return Completed()


async def by_hand(engine: AsyncRunEngine) -> float:
    """Runs per second: the hand-written loop, claim then complete. Its claim waits on
    the bell as an idle worker must (a claim that may wait has every write ring it)."""
    for i in range(RUNS):
        await engine.create(thread_id=f"h{i}", assistant_id="a")
    started = time.perf_counter()
    for _ in range(RUNS):
        run = await engine.claim("hand", wait=1.0)
        assert run is not None
        await engine.complete(run.id, worker_id="hand")
    return RUNS / (time.perf_counter() - started)


async def through_worker(engine: AsyncRunEngine) -> float:
    """Runs per second through ``Worker`` (one job at a time, as the loop above)."""
    for i in range(RUNS):
        await engine.create(thread_id=f"w{i}", assistant_id="a")
    worker = Worker(engine, noop, concurrency=1)
    started = time.perf_counter()
    async with worker:  # timed to the last job's end, not to the worker's stop
        while worker.ended.get("completed", 0) < RUNS:
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - started
    return RUNS / elapsed


async def throughput(url: str) -> tuple[float, float]:
    best_hand = best_worker = 0.0
    for _ in range(3):
        engine = AsyncRunEngine(await open_store_async(url))
        best_hand = max(best_hand, await by_hand(engine))
        best_worker = max(best_worker, await through_worker(engine))
        await engine.close()
    return best_hand, best_worker


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    top = ordered[-1] * 1000
    return f"p50 {at(0.5):.1f} ms, p90 {at(0.9):.1f} ms, p99 {at(0.99):.1f} ms, max {top:.1f} ms"


def cancel_latency(url: str, n: int = 100) -> list[float]:
    engine = ResponseEngine(open_store(url))
    took = []
    with worker_process(url, "responses", "slow", "--times") as process:
        for _ in range(n):
            made = engine.create(model="m", input="hi")
            process.wait_for(f"streamed {made.id}")
            cancelled_at = time.time()
            engine.cancel(made.id)
            line = process.wait_for(f"cancelled {made.id}")
            took.append(float(line.split()[-1]) - cancelled_at)
    engine.close()
    return took


def handover(url: str, n: int = 20) -> list[float]:
    engine = RunEngine(open_store(url))
    took = []
    for _ in range(n):
        with (
            contextlib.ExitStack() as stack,
            worker_process(url, "runs", "silent", "--grace", "0", "--times") as first,
        ):
            run = engine.create(thread_id=secrets.token_hex(4), assistant_id="a")
            first.wait_for(f"claimed {run.id}")
            second = stack.enter_context(worker_process(url, "runs", "quick", "--times"))
            time.sleep(1.5)  # the second worker idles on the bell, as a deployed one does
            signalled = time.time()
            first.proc.send_signal(signal.SIGTERM)
            line = second.wait_for(f"claimed {run.id}")
            took.append(float(line.split()[-1]) - signalled)
            first.proc.wait(timeout=30)
    engine.close()
    return took


def main() -> None:
    schema = "bench_worker_" + secrets.token_hex(4)
    pg = pg_url(schema)
    try:
        with tempfile.TemporaryDirectory() as folder:
            for name, url in (("SQLite file", f"sqlite:///{folder}/runs.db"), ("PostgreSQL", pg)):
                hand, worker = asyncio.run(throughput(url))
                print(
                    f"{name}: by hand {hand:,.0f} runs/s, through Worker {worker:,.0f} runs/s: "
                    f"Worker / by hand = {worker / hand:.2f}"
                )
        print(f"cancel to handler, across processes, PostgreSQL: {percentiles(cancel_latency(pg))}")
        print(f"SIGTERM to the job started by another worker process: {percentiles(handover(pg))}")
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    main()
