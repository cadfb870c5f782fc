"""A worker in a process of its own, for the tests that cancel, drain and kill it.

    python worker_process.py --store URL --kind runs|responses --handler NAME
        [--lease N] [--grace S] [--concurrency N] [--resume]

It runs ``runstate.Worker`` with SIGTERM and SIGINT handled, and prints a line as each
job goes: ``claimed <id>``, ``cancelled <id>``, ``done <id>``; ``ready`` once it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from runstate import (
    AsyncResponseEngine,
    AsyncRunEngine,
    Completed,
    Job,
    Worker,
    open_store_async,
)

TIMES = "--times" in sys.argv  # each line also says when (bench/worker.py reads it)


def say(line: str) -> None:
    print(f"{line} {time.time():.6f}" if TIMES else line, flush=True)


async def slow(job: Job) -> Completed:
    """Streams a word (a response), then works for a minute unless cancelled."""
    say(f"claimed {job.id}")
    try:
        if hasattr(job.object, "output"):
            await job.text("Once")
            say(f"streamed {job.id}")
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        say(f"cancelled {job.id}")
        raise
    return Completed()


async def silent(job: Job) -> Completed:
    """Works for a minute without streaming anything."""
    say(f"claimed {job.id}")
    await asyncio.sleep(60)
    return Completed()


async def quick(job: Job) -> Completed:
    say(f"claimed {job.id}")
    say(f"done {job.id}")
    return Completed()


HANDLERS = {"slow": slow, "silent": silent, "quick": quick}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--kind", choices=["runs", "responses"], required=True)
    parser.add_argument("--handler", choices=sorted(HANDLERS), required=True)
    parser.add_argument("--lease", type=int, default=60)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--times", action="store_true")
    args = parser.parse_args()
    store = await open_store_async(args.store)
    make = AsyncRunEngine if args.kind == "runs" else AsyncResponseEngine
    engine = make(store, lease_seconds=args.lease)
    worker = Worker(
        engine,
        HANDLERS[args.handler],
        concurrency=args.concurrency,
        shutdown_grace=args.grace,
        handle_signals=True,
        resume=args.resume,
        worker_id=f"{args.handler}-worker",
    )
    say("ready")
    await worker.run()
    say(f"stopped {sorted(worker.ended.items())}")
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
