"""The store protocol: the few things the engine asks of a place that keeps runs.

A store never decides a transition; the lifecycle does. A store keeps runs with a
version, writes a new state only if the version it was computed from is still the
stored one (compare-and-set), appends each transition to the run's history in the same
atomic write, and answers the indexed questions the engine's sweeps ask (which runs
are due, whose lease ran out, which queued run is oldest). Every backend passes the
same contract suite, ``tests/test_engine_contract.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from .._errors import ValidationError
from .._events import RunEvent
from .._lifecycle import Transition
from .._model import Run, RunStatus

__all__ = [
    "Claimed",
    "Now",
    "Order",
    "Page",
    "Store",
    "StoredRun",
    "Sweep",
    "Write",
    "check_page_args",
]

Order = Literal["asc", "desc"]
#: What a claim or a sweep wrote: the write, and its events' places in the store's log.
Claimed = tuple["Write", list[int]]
#: The sweeps a store answers: active runs whose ``expires_at`` has come ("due"), and
#: leased runs whose lease has ended ("stalled").
Sweep = Literal["due", "stalled"]
#: A clock as the stores read it: whole Unix seconds, read once the write can happen.
Now = Callable[[], int]


@dataclass(frozen=True, slots=True)
class StoredRun:
    """A run as stored: its state, the version that state has, and the worker lease."""

    run: Run
    version: int
    lease_owner: str | None = None
    lease_expires_at: int | None = None
    attempts: int = 0
    event_count: int = 0  # how many events the run has: the next is numbered so


@dataclass(frozen=True, slots=True)
class Write:
    """Replace a stored run, only if it is still at ``expected_version``; its new events
    (one per step) are numbered from ``first_number``, the count of its events so far."""

    run: Run
    expected_version: int
    steps: Sequence[Transition]
    lease_owner: str | None = None
    lease_expires_at: int | None = None
    attempts: int = 0
    first_number: int = 0


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing, in the order asked for, and whether more lie beyond it."""

    runs: list[Run]
    has_more: bool


class Store(Protocol):
    """What a backend implements. Methods raise ``RunStateError``s only."""

    def insert(self, run: Run, steps: Sequence[Transition]) -> list[int]:
        """Store a new run and its creation events; the events' sequence numbers.
        Raises ``ActiveRunError`` if the run's thread already has an active run."""

    def get(self, run_id: str) -> StoredRun:
        """The stored run, or ``RunNotFoundError``."""

    def write(self, writes: Sequence[Write]) -> list[list[int] | None]:
        """Apply each write whose version still matches, each with its events, in one
        atomic step. Per write: the new events' sequence numbers, or None if it lost."""

    def claim(self, now: Now, decide: Callable[[StoredRun, int], Write]) -> Claimed | None:
        """Once the write can happen (the lock or connection held), read ``now()``, pick
        the oldest queued run that is not due then, write ``decide(it, now)`` and return
        what was written; None when nothing is claimable."""

    def sweep(
        self,
        kind: Sweep,
        now: Now,
        decide: Callable[[StoredRun, int], Write | None],
        limit: int,
    ) -> list[Claimed]:
        """Once the write can happen, read ``now()``; then, atomically and with no other
        writer between the read and the writes, pick up to ``limit`` runs of ``kind`` at
        that time (``due``: active, ``expires_at <= now``, soonest first; ``stalled``:
        leased, lease ended at or before now, oldest lease first), write ``decide(run,
        now)`` for each where it gives a write, and return what was written."""

    def list_runs(
        self,
        thread_id: str | None,
        *,
        status: RunStatus | None = None,
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> Page:
        """Runs by ``created_at``, ties in creation order; ``after``/``before`` are run
        ids bounding the page (``before`` gives the page nearest to it)."""

    def history(self, run_id: str) -> list[RunEvent]:
        """Every event of one run, oldest first (``RunNotFoundError`` if no such run)."""

    def events(
        self, after_seq: int = 0, run_id: str | None = None, limit: int = 100
    ) -> list[RunEvent]:
        """Events with ``seq > after_seq`` in sequence order, optionally of one run."""

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""


def check_page_args(limit: object, order: object) -> None:
    """The list parameters' limits, shared by every store."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise ValidationError(
            f"Invalid 'limit': expected an integer from 1 to 100, got {limit!r}.", param="limit"
        )
    if order not in ("asc", "desc"):
        raise ValidationError(
            f"Invalid 'order': expected 'asc' or 'desc', got {order!r}.", param="order"
        )


def cursor_error(param: str, run_id: str) -> ValidationError:
    return ValidationError(
        f"Invalid '{param}': no run with id {run_id!r} in this list.", param=param
    )
