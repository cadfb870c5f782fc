"""A pool of worker processes sharing one SQLite file.

Three worker processes claim runs from ``runs.db`` (in a temporary folder), call a fake
tool, record the result in the run's metadata and complete it. One of them crashes
on its first run while holding the lease; the run it held is recovered by the sweep
and finished by another worker. Meanwhile the main process cancels every fifth run and
sweeps (``expire_due`` and ``recover_stalled``) until every run has ended, then prints
what happened to every run. Pass ``--runs N`` for more or fewer runs.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path

from _show import console
from rich.table import Table

from runstate import RunEngine, RunStateError, RunStatus, connect

LEASE_SECONDS = 2  # whole seconds: a lease of n lasts between n-1 and n seconds
DEADLINE_SECONDS = 60


def fake_tool(text: str) -> str:
    """Stands in for the model calling a tool: a little real work."""
    digest = text.encode()
    for _ in range(2_000):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:8]


def worker(url: str, name: str, stop: Event, crash_after: int | None) -> None:
    engine = connect(url, lease_seconds=LEASE_SECONDS)
    done = 0
    while not stop.is_set():
        run = engine.claim(name)
        if run is None:
            stop.wait(0.02)  # an idle worker polls
            continue
        if crash_after is not None and done == crash_after:
            os._exit(1)  # vanish while holding the lease
        result = fake_tool(run.metadata.get("question", ""))
        try:
            run = engine.heartbeat(run.id, name)  # also tells us of a cancel
            if run.status is RunStatus.CANCELLING:
                engine.confirm_cancel(run.id, worker_id=name)
                continue
            engine.update_metadata(run.id, {**run.metadata, "worker": name, "answer": result})
            engine.complete(run.id, worker_id=name)
            done += 1
        except RunStateError as exc:  # the run moved on without us (expired, recovered)
            print(f"{name}: {exc.message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'runs.db'}"
        engine: RunEngine = connect(url, lease_seconds=LEASE_SECONDS)
        ids = [
            engine.create(
                thread_id=f"thread_{i}", assistant_id="asst_pool", metadata={"question": f"q{i}"}
            ).id
            for i in range(args.runs)
        ]
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        workers = [
            ctx.Process(target=worker, args=(url, f"worker-{i}", stop, 0 if i == 0 else None))
            for i in range(3)
        ]
        # worker-0 goes first and crashes on its first run, holding the lease.
        workers[0].start()
        workers[0].join(timeout=30)
        for process in workers[1:]:
            process.start()

        for run_id in ids[::5]:
            engine.cancel(run_id)  # cancelled at once if still queued, else the worker confirms

        deadline = time.monotonic() + DEADLINE_SECONDS
        swept = recovered = 0
        while time.monotonic() < deadline:
            swept += len(engine.expire_due())
            recovered += len(engine.recover_stalled())
            if all(engine.get(run_id).status.is_terminal for run_id in ids):
                break
            time.sleep(0.1)
        stop.set()
        for process in workers:
            process.join(timeout=30)

        table = Table(title=f"{len(ids)} runs, 3 workers, one of which crashed")
        for column in ("run", "status", "claims", "finished by", "answer"):
            table.add_column(column)
        outcome: dict[str, int] = {}
        for run_id in ids:
            run = engine.get(run_id)
            claims = sum(e.event == "thread.run.in_progress" for e in engine.history(run_id))
            outcome[run.status.value] = outcome.get(run.status.value, 0) + 1
            table.add_row(
                run_id[:14] + "…",
                run.status.value,
                str(claims),
                run.metadata.get("worker", ""),
                run.metadata.get("answer", ""),
            )
        console.print(table)
        crashed = workers[0].exitcode
        console.print(f"worker-0 exit code {crashed}; runs recovered from it: {recovered}")
        console.print(
            "outcome: " + ", ".join(f"{n} {status}" for status, n in sorted(outcome.items()))
        )
        engine.close()


if __name__ == "__main__":
    main()
