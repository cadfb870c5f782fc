"""Printing for the examples: runs and events as rich tables."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

from runstate import Run, RunEvent

console = Console(width=140)


def short(object_id: str) -> str:
    """An id cut short for a table: its prefix and its random tail (its middle is the
    time it was made, alike for objects made together)."""
    prefix, _, rest = object_id.partition("_")
    return f"{prefix}_…{rest[-8:]}"


def runs_table(title: str, runs: Iterable[Run], start: int = 0) -> None:
    """One row per run: status and every timestamp, as seconds after ``start``."""
    table = Table(title=title)
    for column in (
        "run",
        "thread",
        "status",
        "created",
        "started",
        "expires",
        "ended",
        "last_error",
    ):
        table.add_column(column)

    def t(value: int | None) -> str:
        return "" if value is None else f"+{value - start}s"

    for run in runs:
        ended = run.completed_at or run.failed_at or run.cancelled_at
        error = (
            ""
            if run.last_error is None
            else f"{run.last_error['code']}: {run.last_error['message']}"
        )
        table.add_row(
            short(run.id),
            run.thread_id,
            run.status.value,
            t(run.created_at),
            t(run.started_at),
            t(run.expires_at),
            t(ended),
            error,
        )
    console.print(table)


def events_table(title: str, events: Iterable[RunEvent], start: int = 0) -> None:
    table = Table(title=title)
    for column in ("seq", "at", "run", "event", "from", "to"):
        table.add_column(column)
    for e in events:
        table.add_row(
            "" if e.seq is None else str(e.seq),
            f"+{e.at - start}s",
            short(e.run_id),
            e.event,
            e.from_status or "",
            e.to_status,
        )
    console.print(table)
