"""The ``runstate`` command: look at a store, and sweep it.

    runstate diagram                          the lifecycle as a Mermaid state diagram
    runstate runs URL [--thread ID] [--status S] [--limit N]
    runstate show URL RUN_ID                  the run and its history
    runstate sweep URL [--every SECONDS]      expire due runs, recover stalled ones

Errors are one line on stderr and a non-zero exit: 1 for a refusal from runstate, 2 for
a command line that does not parse. Tables need the ``cli`` extra (rich).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence, Sized
from types import FrameType
from typing import Any

from ._connect import open_store
from ._engine import RunEngine
from ._errors import RunStateError
from ._lifecycle import mermaid
from ._model import RunStatus


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runstate", description="Inspect and sweep runstate stores."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("diagram", help="print the lifecycle as a Mermaid state diagram")
    runs = sub.add_parser("runs", help="a table of runs")
    runs.add_argument("url", help="store URL, e.g. sqlite:///runs.db")
    runs.add_argument("--thread", help="only this thread's runs")
    runs.add_argument(
        "--status", choices=[s.value for s in RunStatus], help="only runs in this status"
    )
    runs.add_argument("--limit", type=int, default=50, help="at most this many (1-100, default 50)")
    show = sub.add_parser("show", help="one run and its history")
    show.add_argument("url")
    show.add_argument("run_id")
    sweep = sub.add_parser("sweep", help="expire due runs and recover stalled ones")
    sweep.add_argument("url")
    sweep.add_argument("--every", type=float, help="repeat every SECONDS until SIGINT/SIGTERM")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "diagram":
            sys.stdout.write(mermaid())
            return 0
        with RunEngine(open_store(args.url, create=False)) as engine:
            if args.command == "runs":
                return _runs(engine, args)
            if args.command == "show":
                return _show(engine, args.run_id)
            return _sweep(engine, args.every)
    except RunStateError as exc:
        print(f"runstate: error: {exc.message}", file=sys.stderr)
        return 1


def _console() -> Any:
    try:
        from rich.console import Console
    except ImportError:  # pragma: no cover - the test extra installs rich
        raise RunStateError("Tables need rich: pip install 'runstate[cli]'.") from None
    return Console()


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    return table


def _runs(engine: RunEngine, args: argparse.Namespace) -> int:
    console = _console()
    page = engine.list(args.thread, status=args.status, limit=args.limit)
    columns = ("id", "thread", "status", "created_at", "started_at", "expires_at", "ended_at")
    rows = [
        (
            run.id,
            run.thread_id,
            run.status.value,
            run.created_at,
            run.started_at,
            run.expires_at,
            run.completed_at or run.failed_at or run.cancelled_at,
        )
        for run in page.data
    ]
    more = " (more not shown)" if page.has_more else ""
    console.print(_table(f"{len(rows)} runs{more}", columns, rows))
    return 0


def _show(engine: RunEngine, run_id: str) -> int:
    console = _console()
    run = engine.get(run_id)
    console.print_json(json.dumps(run.to_dict()))
    rows = [(e.seq, e.event, e.from_status, e.to_status, e.at) for e in engine.history(run_id)]
    console.print(_table("history", ("seq", "event", "from", "to", "at"), rows))
    return 0


def _sweep(engine: RunEngine, every: float | None) -> int:
    if every is not None and every <= 0:
        raise RunStateError(f"--every must be a positive number of seconds, got {every}.")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            expired = _drain(engine.expire_due, 1000)
            recovered = _drain(engine.recover_stalled, 100)
            print(f"expired {expired} runs, recovered {recovered} stalled runs", flush=True)
            if every is None or stop.wait(every):
                return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _drain(sweep: Callable[[int], Sized], batch: int) -> int:
    """Call ``sweep(batch)`` until a batch comes back short; the total swept."""
    total = 0
    while True:
        done = len(sweep(batch))
        total += done
        if done < batch:
            return total
