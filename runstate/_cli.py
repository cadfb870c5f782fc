"""The ``runstate`` command: look at a store, and sweep it.

    runstate diagram [run|run-v2|response]    a lifecycle as a Mermaid state diagram
    runstate runs URL [--thread ID] [--status S] [--limit N] [--json]
    runstate responses URL [--status S] [--limit N] [--json]
    runstate show URL ID [--json]             a run or a response, and its history
    runstate sweep URL [--every SECONDS] [--retain 30d]
                                              time out due objects, recover stalled ones
    runstate prune URL --older-than 30d       delete what ended longer ago than that
    runstate stats URL [--json]               objects by lifecycle and status, the queue
    runstate cancel URL ID [--json]           cancel a run or a background response
    runstate migrate URL                      upgrade the store's schema in place
    runstate serve URL [--handler MODULE:FUNCTION | --upstream BASE_URL] [--host H]
                   [--port P] [--workers N] [--concurrency M] [--lease SECONDS]
                   [--api-key KEY] [--upstream-api auto|responses|chat]
                   [--upstream-key-env VAR]
                                              the Responses and runs APIs (runstate.server)
    runstate webhooks add URL ENDPOINT_URL [--event TYPE]... [--name N]
                   [--secret-env VAR | --generate-secret] [--json]
    runstate webhooks list URL [--json]       endpoints, never their secrets
    runstate webhooks remove URL ID
    runstate webhooks deliver URL [--backoff-base S] [--lease S] [--timeout S]
                                              send webhook deliveries until a signal

On a terminal, ``runs``, ``responses`` and ``show`` print tables (the ``cli`` extra:
rich) with times in ISO-8601 UTC; piped, they print the same rows as tab-separated lines
with a header and every value whole, for scripts; ``--json`` prints the public JSON
(times as integers). Errors are one line on stderr and a non-zero exit: 1 for a refusal
from runstate, 2 for a command line that does not parse (and a webhook endpoint that
``webhooks add`` refuses).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence, Sized
from datetime import UTC, datetime
from typing import Any

from ._connect import open_store
from ._definitions import DEFINITIONS
from ._diagram import mermaid
from ._engine import SyncFace
from ._errors import ObjectNotFoundError, RunStateError
from ._model import RunStatus
from ._response import ResponseStatus
from ._responses import ResponseEngine
from ._runs import RunEngine
from ._serve import add_serve_parser, serve
from ._validate import require_seconds
from ._webhooks_cli import add_webhooks_parser, webhooks
from .stores import Store

#: The engine of each kind of object a store holds, by the kind's name.
ENGINES: dict[str, Callable[[Store], RunEngine | ResponseEngine]] = {
    "run": RunEngine,
    "response": ResponseEngine,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runstate", description="Inspect, sweep and serve runstate stores."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    diagram = sub.add_parser("diagram", help="print a lifecycle as a Mermaid state diagram")
    diagram.add_argument(
        "lifecycle", nargs="?", default="run", choices=sorted(DEFINITIONS), help="default: run"
    )
    runs = sub.add_parser("runs", help="a table of runs")
    runs.add_argument("url", help="store URL, e.g. sqlite:///runs.db")
    runs.add_argument("--thread", help="only this thread's runs")
    runs.add_argument(
        "--status", choices=[s.value for s in RunStatus], help="only runs in this status"
    )
    runs.add_argument("--limit", type=int, default=50, help="at most this many (1-100, default 50)")
    runs.add_argument("--json", action="store_true", help="print the public list JSON")
    responses = sub.add_parser("responses", help="a table of background responses")
    responses.add_argument("url", help="store URL, e.g. sqlite:///runs.db")
    responses.add_argument(
        "--status", choices=[s.value for s in ResponseStatus], help="only those in this status"
    )
    responses.add_argument(
        "--limit", type=int, default=50, help="at most this many (1-100, default 50)"
    )
    responses.add_argument("--json", action="store_true", help="print the public list JSON")
    show = sub.add_parser("show", help="one run or response and its history")
    show.add_argument("url")
    show.add_argument("run_id", metavar="id")
    show.add_argument("--json", action="store_true", help="print the object and history as JSON")
    sweep = sub.add_parser("sweep", help="time out due objects and recover stalled ones")
    sweep.add_argument("url")
    sweep.add_argument("--every", type=float, help="repeat every SECONDS until SIGINT/SIGTERM")
    sweep.add_argument(
        "--retain", type=duration, help="also prune what ended longer ago than this (e.g. 30d)"
    )
    prune = sub.add_parser("prune", help="delete runs and responses that ended long ago")
    prune.add_argument("url")
    prune.add_argument(
        "--older-than", type=duration, required=True, help="e.g. 30d, 12h, 90m or seconds"
    )
    prune.add_argument("--limit", type=int, default=1_000_000, help="delete at most this many")
    prune.add_argument("--json", action="store_true", help="print the counts as JSON")
    stats = sub.add_parser("stats", help="what the store holds, by lifecycle and status")
    stats.add_argument("url")
    stats.add_argument("--json", action="store_true", help="print the figures as JSON")
    cancel = sub.add_parser("cancel", help="cancel a run or a background response")
    cancel.add_argument("url")
    cancel.add_argument("run_id", metavar="id")
    cancel.add_argument("--json", action="store_true", help="print the object as JSON")
    migrate = sub.add_parser("migrate", help="upgrade a store's schema in place")
    migrate.add_argument("url")
    add_serve_parser(sub)
    add_webhooks_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "webhooks":
        return webhooks(args)
    try:
        if args.command == "diagram":
            sys.stdout.write(mermaid(DEFINITIONS[args.lifecycle]))
            return 0
        if args.command == "migrate":
            return _migrate(args.url)
        store = open_store(args.url, create=False)
        try:
            if args.command == "runs":
                return _runs(RunEngine(store), args)
            if args.command == "responses":
                return _responses(ResponseEngine(store), args)
            if args.command == "show":
                return _show(store, args.run_id, args.json)
            if args.command == "stats":
                return _stats(store, args.json)
            if args.command == "cancel":
                return _cancel(store, args.run_id, args.json)
            engines = [make(store) for make in ENGINES.values()]
            if args.command == "prune":
                return _prune(engines, args.older_than, args.limit, args.json)
            return _sweep(engines, args.every, args.retain)
        finally:
            store.close()
    except RunStateError as exc:
        print(f"runstate: error: {exc.message}", file=sys.stderr)
        return 1


def _iso(t: int | None) -> str:
    """A stored time as ISO-8601 UTC (``2026-11-30T13:46:51Z``), or "" for none."""
    if t is None:
        return ""
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):  # pragma: no cover - beyond datetime's range
        return str(t)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A rich table on a terminal; tab-separated lines with a header when piped, so that
    a script gets every value whole."""
    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    if not sys.stdout.isatty():
        for line in [list(columns), *cells]:
            sys.stdout.write("\t".join(line) + "\n")
        return
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - the test extra installs rich
        raise RunStateError("Tables need rich: pip install 'runstate[cli]'.") from None
    table = Table(title=title)
    for i, column in enumerate(columns):
        if i == 0:  # the id: always whole, on one line, however narrow the terminal
            widest = max((len(row[0]) for row in cells), default=len(column))
            table.add_column(column, no_wrap=True, min_width=widest)
        else:
            table.add_column(column, overflow="fold")
    for row in cells:
        table.add_row(*row)
    Console().print(table)


def _runs(engine: RunEngine, args: argparse.Namespace) -> int:
    page = engine.list(args.thread, status=args.status, limit=args.limit)
    if args.json:
        _print_json(page.to_dict())
        return 0
    columns = ("id", "thread", "status", "created_at", "started_at", "expires_at", "ended_at")
    rows = [
        (
            run.id,
            run.thread_id,
            run.status.value,
            _iso(run.created_at),
            _iso(run.started_at),
            _iso(run.expires_at),
            _iso(run.completed_at or run.failed_at or run.cancelled_at),
        )
        for run in page.data
    ]
    more = " (more not shown)" if page.has_more else ""
    _print_table(f"{len(rows)} runs{more}", columns, rows)
    return 0


def _responses(engine: ResponseEngine, args: argparse.Namespace) -> int:
    page = engine.list(status=args.status, limit=args.limit)
    if args.json:
        _print_json(page.to_dict())
        return 0
    columns = ("id", "status", "model", "created_at", "completed_at", "error")
    rows = [
        (
            response.id,
            response.status.value,
            response.model,
            _iso(response.created_at),
            _iso(response.completed_at),
            "" if response.error is None else response.error["code"],
        )
        for response in page.data
    ]
    more = " (more not shown)" if page.has_more else ""
    _print_table(f"{len(rows)} responses{more}", columns, rows)
    return 0


def _engine_of(store: Store, object_id: str) -> RunEngine | ResponseEngine:
    """The engine of the object's own lifecycle, whichever kind the id names."""
    try:
        kind = store.get(object_id).obj.KIND
    except ObjectNotFoundError:
        raise ObjectNotFoundError(object_id, "run or response") from None
    return ENGINES[kind](store)


def _show(store: Store, object_id: str, as_json: bool) -> int:
    """The object, whatever its kind, through its own engine (which times it out first
    if it is due), and its history."""
    engine = _engine_of(store, object_id)
    run = engine.get(object_id)
    history = engine.history(object_id)
    if as_json:
        events = [
            {
                "seq": e.seq,
                "sequence_number": e.sequence_number,
                "event": e.event,
                "from": e.from_status,
                "to": e.to_status,
                "at": e.at,
            }
            for e in history
        ]
        _print_json({run.object.rsplit(".", 1)[-1]: run.to_dict(), "history": events})
        return 0
    _print_json(run.to_dict())
    rows = [(e.seq, e.event, e.from_status, e.to_status, _iso(e.at)) for e in history]
    _print_table("history", ("seq", "event", "from", "to", "at"), rows)
    return 0


def _migrate(url: str) -> int:
    """Open the store (which upgrades its schema in place) and say what was done; the
    store is named as its repr names it, never by a URL that may hold a password."""
    store = open_store(url, create=False)
    try:
        found = getattr(store, "upgraded_from", None)
        latest = getattr(store, "schema_version", None)
        if found is None or latest is None:
            print(f"{store!r} keeps no schema: nothing to migrate")
        elif found < latest:
            print(f"{store!r}: schema version {found} -> {latest}")
        else:
            print(f"{store!r}: schema version {latest}, up to date")
    finally:
        store.close()
    return 0


def _sweep(engines: Sequence[SyncFace[Any]], every: float | None, retain: int | None) -> int:
    if every is not None:  # finite and positive: inf would not wait, nan would spin
        require_seconds(every, "--every", maximum=365 * 86_400)
    # The signals wait, blocked, until the sweep in hand is done; then sigtimedwait takes
    # them. A handler that set a threading.Event could deadlock: it runs on the thread
    # that may hold the Event's own lock inside wait().
    stops = {signal.SIGINT, signal.SIGTERM}
    if every is not None:
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        while True:
            done = []
            for engine in engines:
                noun = engine.definition.object.rsplit(".", 1)[-1]
                due = _drain(engine.expire_due, 1000)
                recovered = _drain(engine.recover_stalled, 100)
                what = "expired" if engine.definition.on_due.exclusive else "timed out"
                line = f"{what} {due} {noun}s, recovered {recovered} stalled {noun}s"
                if retain is not None:
                    line += f", pruned {engine.prune(older_than=retain)}"
                done.append(line)
            print("; ".join(done), flush=True)
            if every is None or signal.sigtimedwait(stops, every) is not None:
                return 0
    finally:
        if every is not None:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)


def _noun(engine: SyncFace[Any]) -> str:
    return engine.definition.object.rsplit(".", 1)[-1]


def _prune(engines: Sequence[SyncFace[Any]], older_than: int, limit: int, as_json: bool) -> int:
    """Delete what ended more than ``older_than`` seconds ago, each lifecycle in turn."""
    counts = {}
    for engine in engines:
        counts[_noun(engine) + "s"] = engine.prune(older_than=older_than, limit=limit)
    if as_json:
        _print_json({"pruned": counts, "older_than": older_than})
    else:
        print(", ".join(f"pruned {n} {what}" for what, n in counts.items()))
    return 0


def _stats(store: Store, as_json: bool) -> int:
    """The store's figures, by lifecycle: objects per status, the queue, due objects,
    leases; the webhook deliveries pending and failed; and the events stored."""
    now = int(time.time())
    stats = store.stats(now)
    rows: list[tuple[str, str, object]] = []
    figures: dict[str, Any] = {"events": stats.events, "lifecycles": {}}
    for kind, part in stats.kinds.items():
        age = None if part.oldest_waiting is None else max(0, now - part.oldest_waiting)
        figures["lifecycles"][kind] = {
            "statuses": part.statuses,
            "waiting": part.waiting,
            "oldest_waiting_age": age,
            "due": part.due,
            "leases": part.leases,
            "leases_ended": part.leases_ended,
        }
        for status, n in sorted(part.statuses.items()):
            rows.append((kind, status, n))
        rows += [
            (kind, "waiting for a worker", part.waiting),
            (kind, "waiting: oldest age (s)", "" if age is None else age),
            (kind, "due now", part.due),
            (kind, "leases held", part.leases),
            (kind, "leases ended", part.leases_ended),
        ]
    hooks = stats.deliveries
    oldest = None if hooks.oldest_pending is None else max(0, now - hooks.oldest_pending)
    figures["webhooks"] = {
        "pending": hooks.pending,
        "failed": hooks.failed,
        "oldest_pending_age": oldest,
    }
    if as_json:
        _print_json(figures)
        return 0
    rows += [
        ("webhooks", "deliveries pending", hooks.pending),
        ("webhooks", "pending: oldest age (s)", "" if oldest is None else oldest),
        ("webhooks", "deliveries failed", hooks.failed),
    ]
    rows.append(("all", "events stored", stats.events))
    _print_table("store", ("lifecycle", "figure", "value"), rows)
    return 0


def _cancel(store: Store, object_id: str, as_json: bool) -> int:
    """Cancel a run or a background response, whichever the id names."""
    done = _engine_of(store, object_id).cancel(object_id)
    if as_json:
        _print_json(done.to_dict())
    else:
        print(f"{object_id}: {done.status.value}")
    return 0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def duration(text: str) -> int:
    """Whole seconds from ``30d``, ``12h``, ``90m``, ``45s`` or ``3600``."""
    unit = _UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit is not None else text
    if not number.isdigit() or len(number) > 12:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (use e.g. 30d, 12h, 90m, 45s or a number of seconds)"
        )
    return int(number) * (unit or 1)


def _drain(sweep: Callable[[int], Sized], batch: int) -> int:
    """Call ``sweep(batch)`` until a batch comes back short; the total swept."""
    total = 0
    while True:
        done = len(sweep(batch))
        total += done
        if done < batch:
            return total
