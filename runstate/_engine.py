"""RunEngine: the service-facing API, runs kept in a store and driven by many workers.

Every operation follows one loop, ``_apply``: read the stored run and its version, let
the lifecycle decide on a copy (due expiry first, then the event), and write the result
with one compare-and-set on that version. If another writer got there first, the write
changes nothing and the loop re-reads and decides again, so a late ``complete`` after a
``cancel`` gets the answer LIFECYCLE.md gives for a ``cancelling`` run, never a blind
overwrite. Listeners hear of a transition only after it is stored.

Workers ``claim`` the oldest queued run with a lease, keep it alive with ``heartbeat``,
and ``recover_stalled`` puts runs of vanished workers back in the queue. ``expire_due``
expires every due run in batches whose cost follows the number due. These three pick
their runs and write them in one atomic step of the store, with the clock read once the
store can write (after any wait for a lock or a connection): a claim that waited never
starts a run that is due by then, and no heartbeat can slip between a recovery's look
at a lease and its write.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from ._clock import Clock
from ._errors import (
    ActiveRunError,
    ConcurrentUpdateError,
    LeaseError,
    RunStateError,
    ValidationError,
)
from ._events import Listener, Listeners, RunEvent
from ._lifecycle import RunLifecycle, Transition, is_due, refusal, require_version, sealed
from ._model import Run, RunStatus, require_status
from ._validate import MAX_DURATION, require_int, require_string, validate_metadata
from .stores import Claimed, MemoryStore, Order, Store, StoredRun, Write

__all__ = ["RunEngine", "RunList"]

_STORE_METHODS = ("insert", "get", "write", "claim", "sweep", "list_runs", "history", "events")
_LEASED = frozenset({RunStatus.IN_PROGRESS, RunStatus.CANCELLING})
_UNATTENDED = frozenset({RunStatus.QUEUED, RunStatus.REQUIRES_ACTION})


@dataclass(frozen=True, slots=True)
class Lease:
    """Which worker holds a run, until when, and how many claims the run has had."""

    owner: str | None
    expires_at: int | None
    attempts: int

    @classmethod
    def after(cls, stored: StoredRun, run: Run) -> Lease:
        """The stored lease, kept while the run is in_progress or cancelling; any other
        status ends it (the claim count stays)."""
        if run.status in _LEASED:
            return cls(stored.lease_owner, stored.lease_expires_at, stored.attempts)
        return cls(None, None, stored.attempts)

    def write(self, run: Run, stored: StoredRun, steps: Sequence[Transition]) -> Write:
        """The store's write of ``run``, decided from ``stored``, with this lease."""
        return Write(
            run,
            stored.version,
            steps,
            self.owner,
            self.expires_at,
            self.attempts,
            stored.event_count,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What a change decided for one run: the steps it made (none for a change that is
    not a transition, such as new metadata) and the lease to store with it."""

    steps: list[Transition]
    lease: Lease


class Change(Protocol):
    """A change decides on a copy of a stored run (``expired``: due expiry was just
    applied to it): a ``Decision``, None for "nothing to write", or a ``RunStateError``
    raised to refuse."""

    def __call__(self, run: Run, stored: StoredRun, now: int, expired: bool) -> Decision | None: ...


@dataclass(frozen=True, slots=True)
class RunList:
    """A page of runs in the public list shape (``object: "list"``)."""

    data: list[Run]
    has_more: bool
    object: str = field(default="list", init=False)

    @property
    def first_id(self) -> str | None:
        return self.data[0].id if self.data else None

    @property
    def last_id(self) -> str | None:
        return self.data[-1].id if self.data else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [run.to_dict() for run in self.data],
            "first_id": self.first_id,
            "last_id": self.last_id,
            "has_more": self.has_more,
        }


class RunEngine:
    """Runs in ``store`` (default: a new ``MemoryStore``), timed by ``clock``.

    ``lease_seconds`` is how long a claim lasts without a heartbeat; a run whose worker
    vanished is put back in the queue by ``recover_stalled`` and failed with
    ``server_error`` once it has been claimed ``max_attempts`` times. Times are whole
    seconds, so a lease of n seconds lasts between n-1 and n: heartbeat well within it.
    """

    def __init__(
        self,
        store: Store | None = None,
        clock: Clock | None = None,
        ttl: int = 600,
        *,
        lease_seconds: int = 60,
        max_attempts: int = 3,
        id_factory: Callable[[str], str] | None = None,
        version: str = "v1",
    ) -> None:
        require_int(lease_seconds, "lease_seconds", maximum=MAX_DURATION)
        require_int(max_attempts, "max_attempts", maximum=1_000_000)
        if store is not None and not all(
            callable(getattr(store, method, None)) for method in _STORE_METHODS
        ):
            raise ValidationError(
                f"store must be a runstate.Store (with {', '.join(_STORE_METHODS)}), got "
                f"{type(store).__name__}.",
                param="store",
            )
        self.store: Store = store if store is not None else MemoryStore()
        self.lifecycle = RunLifecycle(clock, ttl, id_factory=id_factory, version=version)
        # A store may hold runs of both versions: each is decided by its own lifecycle.
        self._lifecycles = {
            v: self.lifecycle
            if v == version
            else RunLifecycle(clock, ttl, id_factory=id_factory, version=v)
            for v in ("v1", "v2")
        }
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self._listeners = Listeners()
        self._retries = 100

    def __repr__(self) -> str:
        return f"RunEngine({self.store!r})"

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> RunEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear every transition this engine stores; returns the unsubscribe function."""
        return self._listeners.subscribe(listener)

    # --- caller-side operations -------------------------------------------------------------

    def create(
        self,
        *,
        thread_id: str,
        assistant_id: str,
        model: str = "",
        instructions: str = "",
        tools: Sequence[dict[str, Any]] | None = None,
        file_ids: Sequence[str] | None = None,
        metadata: dict[str, str] | None = None,
        version: str | None = None,
        **settings: Any,
    ) -> Run:
        """A new queued run of the engine's version (or of ``version``, "v1" or "v2");
        refused with ``ActiveRunError`` if the thread has an active one. A v2 run also
        takes the v2 settings (``temperature``, ``top_p``, ``max_prompt_tokens``,
        ``max_completion_tokens``, ``truncation_strategy``, ``tool_choice``,
        ``parallel_tool_calls``, ``response_format``), and no ``file_ids``."""
        lifecycle = (
            self.lifecycle if version is None else self._lifecycles[require_version(version)]
        )
        run, steps = lifecycle.new_run(
            thread_id=thread_id,
            assistant_id=assistant_id,
            model=model,
            instructions=instructions,
            tools=tools,
            file_ids=file_ids,
            metadata=metadata,
            **settings,
        )
        for _ in range(self._retries):
            try:
                seqs = self.store.insert(run, steps)
            except ActiveRunError as exc:
                # A due run is active until something expires it; reading it does.
                if self.get(exc.run_id).status.is_active:
                    raise
                continue
            self._publish(run, steps, seqs, 0)
            return run
        raise ConcurrentUpdateError(f"Thread {thread_id} kept changing; no run was created.")

    def get(self, run_id: str) -> Run:
        """The run (expired first, and stored so, if it is due)."""
        return self._apply(run_id)[0]

    def list(
        self,
        thread_id: str | None,
        *,
        status: RunStatus | str | None = None,
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> RunList:
        """A thread's runs (every thread's for ``None``) by ``created_at``, in the public
        list shape, optionally only those with one status."""
        if thread_id is not None:
            require_string(thread_id, "thread_id")
        wanted = None if status is None else require_status(status)
        for param, cursor in (("after", after), ("before", before)):
            if cursor is not None:
                require_string(cursor, param)
        for _ in range(self._retries):
            page = self.store.list_runs(
                thread_id, status=wanted, limit=limit, order=order, after=after, before=before
            )
            now = self.lifecycle.now()
            if not any(is_due(run, now) for run in page.runs):
                return RunList(page.runs, page.has_more)
            runs = [self.get(run.id) if is_due(run, now) else run for run in page.runs]
            if wanted is None or all(run.status is wanted for run in runs):
                return RunList(runs, page.has_more)
            # Expiry moved runs out of the status asked for: the page is read again.
        raise ConcurrentUpdateError("The listing kept changing; gave up.")

    def update_metadata(self, run_id: str, metadata: dict[str, str]) -> Run:
        """Replace the run's metadata, in any status."""
        return self._apply(run_id, partial(self._new_metadata, validate_metadata(metadata)))[0]

    def submit_tool_outputs(self, run_id: str, tool_outputs: Sequence[dict[str, Any]]) -> Run:
        return self._apply(run_id, self._event("submit_tool_outputs", tool_outputs))[0]

    def cancel(self, run_id: str) -> Run:
        """Ask for cancellation. A run that no worker is executing (``queued`` or
        ``requires_action``) has nobody to confirm it, so the engine confirms it in the
        same write: ``cancelling`` then ``cancelled``, both events stored (ours). An
        ``in_progress`` run stays ``cancelling`` until its worker confirms or finishes."""
        return self._apply(run_id, self._cancelled)[0]

    # --- worker-side operations ----------------------------------------------------------
    # With ``worker_id``, the step is refused (LeaseError) unless that worker holds the lease.

    def start(self, run_id: str, *, worker_id: str | None = None) -> Run:
        return self._apply(run_id, self._event("start", worker_id=worker_id))[0]

    def require_action(
        self, run_id: str, tool_calls: Sequence[dict[str, Any]], *, worker_id: str | None = None
    ) -> Run:
        return self._apply(run_id, self._event("require_action", tool_calls, worker_id))[0]

    def complete(
        self, run_id: str, *, usage: dict[str, int] | None = None, worker_id: str | None = None
    ) -> Run:
        """The run is done (a v2 run with its ``usage``, if given)."""
        return self._apply(run_id, self._event("complete", usage, worker_id))[0]

    def fail(
        self,
        run_id: str,
        *,
        code: str = "server_error",
        message: str,
        usage: dict[str, int] | None = None,
        worker_id: str | None = None,
    ) -> Run:
        return self._apply(run_id, self._event("fail", (code, message, usage), worker_id))[0]

    def incomplete(
        self,
        run_id: str,
        *,
        reason: str,
        usage: dict[str, int] | None = None,
        worker_id: str | None = None,
    ) -> Run:
        """A v2 run stopped at a token limit (``max_completion_tokens`` or
        ``max_prompt_tokens``): ``in_progress`` or ``cancelling`` to ``incomplete``."""
        return self._apply(run_id, self._event("incomplete", (reason, usage), worker_id))[0]

    def confirm_cancel(self, run_id: str, *, worker_id: str | None = None) -> Run:
        return self._apply(run_id, self._event("confirm_cancel", worker_id=worker_id))[0]

    def expire(self, run_id: str) -> Run:
        """Expire a due run now; refused if it is not due."""
        return self._apply(run_id, self._event("expire"))[0]

    def claim(self, worker_id: str, *, lease_seconds: int | None = None) -> Run | None:
        """Take the oldest queued run that is not due, start it and lease it to
        ``worker_id``; None when there is none."""
        worker_id = require_string(worker_id, "worker_id")
        lease = self._lease_seconds(lease_seconds)
        claimed = self.store.claim(self.lifecycle.now, partial(self._claimed, worker_id, lease))
        if claimed is None:
            return None
        write, seqs = claimed
        self._publish(write.run, write.steps, seqs, write.first_number)
        return write.run

    def heartbeat(self, run_id: str, worker_id: str, *, lease_seconds: int | None = None) -> Run:
        """Extend ``worker_id``'s lease on the run (never its ``expires_at``). The run is
        returned so the worker sees a ``cancelling`` status and can stop."""
        worker_id = require_string(worker_id, "worker_id")
        lease = self._lease_seconds(lease_seconds)
        return self._apply(run_id, partial(self._heartbeat, worker_id, lease))[0]

    def recover_stalled(self, limit: int = 100) -> builtins.list[Run]:
        """Runs whose lease ran out: back to ``queued``, or ``failed`` after
        ``max_attempts`` claims; a ``cancelling`` one is ``cancelled``. A run whose lease
        is alive is never touched. A stalled run that is also due is expired instead, and
        is not among the runs returned (it was not recovered)."""
        limit = require_int(limit, "limit", maximum=1000)
        written = self.store.sweep("stalled", self.lifecycle.now, self._recover, limit)
        return [run for run in self._published(written) if run.status is not RunStatus.EXPIRED]

    def _recover(self, stored: StoredRun, now: int) -> Write | None:
        """The decision for one stalled run, on the row the store holds for the write."""
        run = stored.run.copy()
        lifecycle = self._lifecycle_of(run)
        steps = lifecycle.expire_if_due(run, now)
        if not steps:
            if stored.lease_owner is None or (stored.lease_expires_at or 0) > now:
                return None  # the lease is alive (a heartbeat came in): never touch it
            if run.status is RunStatus.CANCELLING:
                steps = lifecycle.decide(run, "confirm_cancel", now)
            elif stored.attempts >= self.max_attempts:
                message = f"The run's worker stopped responding {stored.attempts} times."
                steps = lifecycle.decide(run, "fail", now, ("server_error", message, None))
            else:
                steps = lifecycle.decide(run, "requeue", now)
        return Lease(None, None, stored.attempts).write(run, stored, steps)

    def expire_due(self, limit: int = 1000) -> builtins.list[Run]:
        """Expire up to ``limit`` due active runs in one batch; the runs it expired."""
        limit = require_int(limit, "limit", maximum=100_000)
        return self._published(self.store.sweep("due", self.lifecycle.now, self._expire, limit))

    def _expire(self, stored: StoredRun, now: int) -> Write | None:
        """The decision for one due run, on the row the store holds for the write."""
        run = stored.run.copy()
        steps = self._lifecycle_of(run).expire_if_due(run, now)
        if not steps:
            return None  # not due at the time of the write after all
        return Lease(None, None, stored.attempts).write(run, stored, steps)

    def _published(self, written: builtins.list[Claimed]) -> builtins.list[Run]:
        for write, seqs in written:
            self._publish(write.run, write.steps, seqs, write.first_number)
        return [write.run for write, _ in written]

    # --- history ------------------------------------------------------------------------------

    def history(self, run_id: str) -> builtins.list[RunEvent]:
        """Every transition of the run, oldest first."""
        return self.store.history(require_string(run_id, "run_id"))

    def events(
        self, *, after_seq: int = 0, run_id: str | None = None, limit: int = 100
    ) -> builtins.list[RunEvent]:
        """Stored events with ``seq > after_seq``, oldest first: how another process
        follows transitions made elsewhere."""
        require_int(after_seq, "after_seq", minimum=0)
        if run_id is not None:
            require_string(run_id, "run_id")
        return self.store.events(after_seq, run_id, require_int(limit, "limit", maximum=10_000))

    # --- the changes: each decides on a copy of the stored run ----------------------------------

    def _event(self, event: str, arg: Any = None, worker_id: str | None = None) -> Change:
        """The change that fires ``event`` (with its argument), by ``worker_id`` if given."""
        if worker_id is not None:
            require_string(worker_id, "worker_id")
        return partial(self._fired, event, arg, worker_id)

    def _fired(
        self,
        event: str,
        arg: Any,
        worker_id: str | None,
        run: Run,
        stored: StoredRun,
        now: int,
        expired: bool,
    ) -> Decision | None:
        if expired and event == "expire":
            return None
        lifecycle = self._lifecycle_of(run)
        if worker_id is not None and run.status in lifecycle.sources.get(event, ()):
            _check_lease(stored, worker_id)
        steps = lifecycle.decide(run, event, now, arg)
        return Decision(steps, Lease.after(stored, run))

    def _cancelled(self, run: Run, stored: StoredRun, now: int, expired: bool) -> Decision:
        unattended = run.status in _UNATTENDED
        lifecycle = self._lifecycle_of(run)
        steps = lifecycle.decide(run, "cancel", now)
        if unattended:  # the cancelling event carries the run as it was then
            steps = sealed(steps, run) + lifecycle.decide(run, "confirm_cancel", now)
        return Decision(steps, Lease.after(stored, run))

    def _new_metadata(
        self, metadata: dict[str, str], run: Run, stored: StoredRun, now: int, expired: bool
    ) -> Decision:
        run.metadata = metadata
        return Decision([], Lease.after(stored, run))

    def _heartbeat(
        self, worker_id: str, lease: int, run: Run, stored: StoredRun, now: int, expired: bool
    ) -> Decision:
        if run.status not in _LEASED:
            raise refusal(run, "heartbeat")
        _check_lease(stored, worker_id)
        return Decision([], Lease(worker_id, now + lease, stored.attempts))

    def _claimed(self, worker_id: str, lease: int, stored: StoredRun, now: int) -> Write:
        """The write that starts a claimed run and leases it to ``worker_id``."""
        run = stored.run.copy()
        steps = self._lifecycle_of(run).decide(run, "start", now)
        return Lease(worker_id, now + lease, stored.attempts + 1).write(run, stored, steps)

    # --- the one loop ----------------------------------------------------------------------

    def _apply(self, run_id: str, change: Change | None = None) -> tuple[Run, bool]:
        """Read, decide on a copy, compare-and-set; again if another writer won.
        Returns the run and whether this call stored a change."""
        require_string(run_id, "run_id")
        for _ in range(self._retries):
            stored = self.store.get(run_id)
            run = stored.run.copy()
            now = self.lifecycle.now()
            steps = self._lifecycle_of(run).expire_if_due(run, now)
            lease = Lease.after(stored, run)
            error: RunStateError | None = None
            decided = None
            if change is not None:
                if steps:  # the expired event carries the run as expiry left it
                    steps = sealed(steps, run)
                try:
                    decided = change(run, stored, now, bool(steps))
                except RunStateError as exc:
                    if not steps:
                        raise
                    error = exc  # the expiry still has to be stored
            if decided is not None:
                steps += decided.steps
                lease = decided.lease
            elif not steps:
                return run, False
            seqs = self.store.write([lease.write(run, stored, steps)])[0]
            if seqs is None:
                continue
            self._publish(run, steps, seqs, stored.event_count)
            if error is not None:
                raise error
            return run, True
        raise ConcurrentUpdateError(
            f"Run {run_id} kept changing; gave up after {self._retries} tries."
        )

    def _lifecycle_of(self, run: Run) -> RunLifecycle:
        return self._lifecycles[run.version]

    def _publish(
        self, run: Run, steps: Sequence[Transition], seqs: Sequence[int], first_number: int
    ) -> None:
        if steps and self._listeners.listening:
            self._listeners.publish(self.lifecycle.events_for(run, steps, seqs, first_number))

    def _lease_seconds(self, lease_seconds: int | None) -> int:
        if lease_seconds is None:
            return self.lease_seconds
        return require_int(lease_seconds, "lease_seconds", maximum=MAX_DURATION)


def _check_lease(stored: StoredRun, worker_id: str) -> None:
    if stored.lease_owner != worker_id:
        holder = "no worker" if stored.lease_owner is None else f"worker {stored.lease_owner!r}"
        raise LeaseError(f"Run {stored.run.id} is leased to {holder}, not to {worker_id!r}.")
