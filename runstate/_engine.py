"""The engine: objects of one lifecycle kept in a store and driven by many workers.

``Engine`` serves any ``Definition``, reading only the roles it gives its events;
``RunEngine`` (``_runs.py``), ``ResponseEngine`` (``_responses.py``) and ``ObjectEngine``
(``_objects.py``) add their objects' operations by name. Each operation is declared
once, with ``@operation`` (``_faces.py``), and is a method of both faces: ``SyncFace``
runs its plan on a store, ``AsyncFace`` awaits it on an async store. Every change
follows one loop, ``_p_apply``: read the stored object and its version, let the
lifecycle decide on a copy (due expiry or time-out first, then the change), and write
the result with one compare-and-set on that version. If another writer got there first,
the write changes nothing and the loop re-reads and decides again, so a late
``complete`` after a ``cancel`` gets the answer the lifecycle gives for the status the
cancel left, never a blind overwrite. A change starts from what the engine last stored
of the object, if it holds it (``Known``), rather than from a read: a worker's step is
one compare-and-set, and a stale entry costs the read it would have made anyway.
Listeners hear of a step only after it is stored.

Workers ``claim`` the oldest waiting object with a lease, keep it alive with
``heartbeat``, and ``recover_stalled`` puts objects of vanished workers back in the
queue. ``expire_due`` applies the lifecycle's time-out to every due object in batches
whose cost follows the number due. These three pick their objects and write them in one
atomic step of the store, with the clock read once the store can write (after any wait
for a lock or a connection): a claim that waited never starts an object that is due by
then, and no heartbeat can slip between a recovery's look at a lease and its write.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from ._errors import (
    ConcurrentUpdateError,
    IdempotencyError,
    LeaseError,
    ObjectNotFoundError,
    RunStateError,
    ValidationError,
)
from ._events import Listener, Listeners, RunEvent
from ._faces import Async, Emit, Sync, adrive, aitems, items, operation, streaming
from ._lifecycle import Lifecycle, Transition, noun_of, sealed
from ._model import Status
from ._validate import (
    MAX_DURATION,
    require_int,
    require_seconds,
    require_string,
    validate_bool,
    validate_metadata,
)
from ._webhooks import AsyncEndpoints, Endpoints
from .stores import AsyncStore, Claimed, MemoryStore, Order, StoredObject, Write
from .stores._base import ClaimStep, IdempotencyKey, KeyTaken, body_of, restore, takes_keyword
from .stores._bell import WAITING, Bell, changed_key

__all__ = [
    "AsyncFace",
    "Call",
    "Change",
    "Decision",
    "Engine",
    "Hook",
    "Lease",
    "ListPage",
    "Plan",
    "SyncFace",
    "Wait",
    "call",
]

_STORE_METHODS = (
    "insert",
    "get",
    "write",
    "claim",
    "sweep",
    "list_objects",
    "history",
    "events",
    "input_of",
    "delete",
    "prune",
)
T = TypeVar("T")
_PAGE = 1000  # events read at a time by a follower
log = logging.getLogger("runstate")
_PRUNE_BATCH = 500  # objects deleted in one transaction by prune
_UNIQUE_FIELDS = frozenset({"id", "created_at", "expires_at"})  # not in a key's fingerprint
_FALLBACK = 2.0  # a waiting claim looks again at least this often, in case a ring was missed


@dataclass(frozen=True, slots=True)
class Lease:
    """Which worker holds an object, until when, and how many claims it has had."""

    owner: str | None
    expires_at: int | None
    attempts: int

    @classmethod
    def after(cls, stored: StoredObject, obj: Any, leased: frozenset[Status]) -> Lease:
        """The stored lease, kept while the object is in a ``leased`` status (a worker
        holds it); any other status ends it (the claim count stays)."""
        if obj.status in leased:
            return cls(stored.lease_owner, stored.lease_expires_at, stored.attempts)
        return cls(None, None, stored.attempts)

    def write(self, obj: Any, stored: StoredObject, steps: Sequence[Transition]) -> Write:
        """The store's write of ``obj``, decided from ``stored``, with this lease."""
        return Write(
            obj,
            stored.version,
            steps,
            self.owner,
            self.expires_at,
            self.attempts,
            stored.event_count,
            stored,
            obj.to_dict(),
        )


class Known:
    """What this engine last stored of each object it is driving, at the version it
    stored: a worker's next step is decided on what it holds and written with one
    compare-and-set, with no read first. A stale entry (another writer moved the object
    on) costs one read: its write changes nothing and the loop reads and decides again.
    An entry is only ever used for a write that wins, so a refusal or a "nothing to do"
    decided on it is checked on a fresh read before it is answered. Ended objects are
    forgotten; at most ``size`` are held, the oldest dropped first."""

    __slots__ = ("_ended", "_entries", "_size")

    def __init__(self, ended: frozenset[Status], size: int = 4096) -> None:
        self._entries: dict[str, StoredObject] = {}
        self._ended = ended
        self._size = size

    def take(self, object_id: str) -> StoredObject | None:
        """The entry for ``object_id``, removed (a write puts it back)."""
        return self._entries.pop(object_id, None)

    def keep(self, stored: StoredObject) -> None:
        entries = self._entries
        if stored.obj.status in self._ended:
            entries.pop(stored.obj.id, None)
            return
        entries[stored.obj.id] = stored
        if len(entries) > self._size:
            del entries[next(iter(entries))]

    def written(self, write: Write) -> None:
        """Keep what ``write`` stored, rebuilt from its body: the caller gets the written
        object itself, and nothing it may change in place is shared with what is kept."""
        self.keep(
            StoredObject(
                restore(write.obj.KIND, body_of(write), write.obj.expires_at),
                write.expected_version + 1,
                write.lease_owner,
                write.lease_expires_at,
                write.attempts,
                write.first_number + len(write.steps),
            )
        )

    def forget(self, object_id: str) -> None:
        self._entries.pop(object_id, None)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a change decided for one object: the steps it made (none for a change that
    is not a step, such as new metadata) and the lease to store with it."""

    steps: list[Transition]
    lease: Lease


class Change(Protocol):
    """A change decides on a copy of a stored object (``timed_out``: its time-out was just
    applied to it): a ``Decision``, None for "nothing to write", or a ``RunStateError``
    raised to refuse."""

    def __call__(
        self, obj: Any, stored: StoredObject, now: int, timed_out: bool, /
    ) -> Decision | None: ...


class Hook(Protocol):
    """What an engine tells an observer (``Engine.observe``): each operation, as a
    context around it (its name, and the id of the object it is about, if any); each
    step it stores (with its statuses); each claim; each sweep."""

    def operation(
        self, engine: Any, name: str, object_id: str | None
    ) -> AbstractContextManager[Any]: ...

    def stepped(self, engine: Any, obj: Any, steps: Sequence[Transition]) -> None: ...

    def claimed(self, engine: Any, obj: Any, now: int) -> None: ...

    def swept(
        self, engine: Any, stalled: Iterable[Any], recovered: int, timed_out: int
    ) -> None: ...


class Listed(Protocol):
    """What a listed object has: an id, and its public dict."""

    @property
    def id(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


L = TypeVar("L", bound=Listed)


@dataclass(frozen=True, slots=True)
class ListPage(Generic[L]):
    """A page of objects in the public list shape (``object: "list"``)."""

    data: builtins.list[L]
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
            "data": [obj.to_dict() for obj in self.data],
            "first_id": self.first_id,
            "last_id": self.last_id,
            "has_more": self.has_more,
        }


#: One call the engine needs of its store: the method's name and its arguments. A plan
#: (below) yields these; a driver makes each call, on a store or an async store, and
#: sends the result back.
Call = tuple[str, tuple[Any, ...], dict[str, Any]]
R = TypeVar("R")
E = TypeVar("E")
#: An operation written once: a generator of steps (store calls, waits on the bell, and
#: for a stream the items it hands out) that returns the result.
Plan = Generator["Call | Wait | Emit", Any, R]


def call(method: str, *args: Any, **kwargs: Any) -> Call:
    return (method, args, kwargs)


class Wait(tuple[str, int, float]):
    """A plan's step that waits on the bell: until ``key`` is rung after ``mark``, or
    ``timeout`` seconds pass (the driver answers whether it was rung)."""

    __slots__ = ()

    def __new__(cls, key: str, mark: int, timeout: float) -> Wait:
        return tuple.__new__(cls, (key, mark, timeout))


class Engine(Generic[T]):
    """Objects of ``lifecycle``'s kind in ``store`` (default: a new ``MemoryStore``).

    Every operation is written once, as a plan: a generator that yields the store calls
    it needs (``call("get", id)``) and decides between them. ``_run`` drives a plan on a
    store; ``_arun`` drives the same plan on an async store, awaiting each call. So the
    lifecycle's decisions and the compare-and-set loop exist once, for ``RunEngine`` and
    ``AsyncRunEngine`` alike.

    ``lifecycles`` decides each stored object by its ``version`` (a store may hold runs
    of both versions). ``lease_seconds`` is how long a claim lasts without a heartbeat;
    an object whose worker vanished is put back in the queue by ``recover_stalled`` and
    failed with ``server_error`` once it has been claimed ``max_attempts`` times. Times
    are whole seconds, so a lease of n seconds lasts between n-1 and n: heartbeat well
    within it.
    """

    store: Any  # a Store, or an AsyncStore for the async engines
    #: What a face raises for an id it does not hold (a subclass of ObjectNotFoundError).
    not_found: type[ObjectNotFoundError] = ObjectNotFoundError

    def __init__(
        self,
        store: Any,
        lifecycle: Lifecycle,
        lifecycles: Mapping[str, Lifecycle],
        *,
        lease_seconds: int,
        max_attempts: int,
        idempotency_window: int = 86_400,
    ) -> None:
        require_int(lease_seconds, "lease_seconds", maximum=MAX_DURATION)
        #: How long an idempotency key is remembered, in seconds.
        self.idempotency_window = require_int(
            idempotency_window, "idempotency_window", maximum=MAX_DURATION
        )
        require_int(max_attempts, "max_attempts", maximum=1_000_000)
        if store is not None and not all(
            callable(getattr(store, method, None)) for method in _STORE_METHODS
        ):
            raise ValidationError(
                f"store must be a runstate.Store (with {', '.join(_STORE_METHODS)}), got "
                f"{type(store).__name__}.",
                param="store",
            )
        self.store = store if store is not None else self._default_store()
        self.lifecycle = lifecycle
        self.definition = lifecycle.definition
        self.kind = self.definition.kind
        self._noun = self.definition.object.rsplit(".", 1)[-1]  # "run", "response"
        self._lifecycles = lifecycles
        self._leased = self.definition.leased
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self._listeners = Listeners()
        self._retries = 100
        self._known = Known(self.definition.terminal)
        self._claim_counts: dict[str, int] = {}
        # Where waits hear of changes; a store without a bell is polled (nobody rings it).
        self._bell: Bell = getattr(self.store, "bell", None) or Bell()
        # A store written before claims took ``step`` is still served (without it).
        self._claim_takes_step = takes_keyword(self.store.claim, "step")
        self._roles = self.definition.workers
        self._claim_fired = lifecycle.fired_as_data(self._roles.claim)  # the claim's step, as data
        self._stream_ends = self.definition.terminal | self.definition.pauses
        self._hook: Hook | None = None  # told of what the engine does (``observe``)

    def _default_store(self) -> Any:
        return MemoryStore()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r})"

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear every step this engine stores; returns the unsubscribe function."""
        return self._listeners.subscribe(listener)

    # --- the drivers -----------------------------------------------------------------------------

    def _drive(self, plan: Plan[R]) -> R:
        """Carry out ``plan`` on the (sync) store: each call made, its result sent back,
        its error thrown in; a ``Wait`` waits on the bell. (``drive`` with ``_perform``,
        written out: this is every sync operation's hot path.)"""
        store = self.store
        try:
            step: Any = next(plan)
            while True:
                try:
                    if type(step) is Wait:
                        result = self._bell.wait(*step)
                    else:
                        result = getattr(store, step[0])(*step[1], **step[2])
                except Exception as exc:
                    step = plan.throw(exc)
                else:
                    step = plan.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _adrive(self, plan: Plan[R]) -> R:
        """The same on an async store: each call awaited, the event loop free to go on
        while it waits."""
        return await adrive(plan, self._aperform, Exception)

    def _perform(self, step: Any) -> Any:
        """One step of a plan on the (sync) store (``_drive`` does the same, inline)."""
        if type(step) is Wait:
            return self._bell.wait(*step)
        method, args, kwargs = step
        return getattr(self.store, method)(*args, **kwargs)

    async def _aperform(self, step: Any) -> Any:
        if type(step) is Wait:
            return await self._bell.wait_async(*step)
        method, args, kwargs = step
        return await getattr(self.store, method)(*args, **kwargs)

    @property
    def bell(self) -> Bell:
        """Where this engine hears of changes, in this process or (through the store's
        feed) another: a runtime built on the engine marks it before a claim and waits on
        it when the claim found nothing (``runstate.Worker`` does)."""
        return self._bell

    def claims_of(self, object_id: str) -> int | None:
        """How many times the object had been claimed when this engine last claimed it
        (None if it has not, or was asked already): a worker's job reads it without a
        round trip. Kept apart from what the engine holds of each object, which a
        concurrent read may replace with an older row."""
        return self._claim_counts.pop(object_id, None)

    def observe(self, hook: Hook | None) -> None:
        """Tell ``hook`` of every operation, step, claim and sweep of this engine (None:
        stop). ``runstate.telemetry.instrument`` does this with OpenTelemetry."""
        self._hook = hook

    # --- the operations of every face (each face's methods are made from these) ----------------
    # The object an operation is about is its first argument, positional only: a run's
    # id on a RunEngine, a response's on a ResponseEngine.

    @operation
    def get(self, object_id: str, /) -> Plan[T]:
        """The object (timed out first, and stored so, if it is due)."""
        return self._p_get(object_id)

    @operation
    def history(self, object_id: str, /) -> Plan[builtins.list[RunEvent]]:
        """Every event of the object, oldest first."""
        return self._p_history(object_id)

    @operation
    def events(
        self, object_id: str, /, *, starting_after: int | None = None
    ) -> Plan[builtins.list[RunEvent]]:
        """The object's events, oldest first, after event number ``starting_after`` (all
        of them without): how a stream is replayed from where a client left it."""
        if starting_after is not None:
            require_int(starting_after, "starting_after", minimum=0)
        return self._p_events(object_id, starting_after)

    @operation
    def feed(self, *, after_seq: int = 0, limit: int = 100) -> Plan[builtins.list[RunEvent]]:
        """The store's events of every object and lifecycle with ``seq > after_seq``,
        oldest first: how another process follows what is stored anywhere."""
        require_int(after_seq, "after_seq", minimum=0)
        limit = require_int(limit, "limit", maximum=10_000)
        return self._p_call("events", after_seq, None, limit)

    @operation
    def cancel(self, object_id: str, /) -> Plan[T]:
        """Cancel the object as its lifecycle declares: at once, or two-phase (to the
        cancelling status, which its worker confirms; an object no worker holds is
        confirmed in the same write, both events stored). An object that has ended is
        refused, or returned unchanged, as declared."""
        return self._p_cancel(object_id)

    @operation
    def heartbeat(
        self, object_id: str, /, worker_id: str, *, lease_seconds: int | None = None
    ) -> Plan[T]:
        """Extend ``worker_id``'s lease on the object (never its deadline). The object is
        returned, so that the worker sees a cancel and can stop."""
        return self._p_heartbeat(object_id, worker_id, lease_seconds)

    @operation
    def claim(
        self, worker_id: str, *, lease_seconds: int | None = None, wait: float | None = None
    ) -> Plan[T | None]:
        """Take the oldest object waiting for a worker that is not due, start it and lease
        it to ``worker_id``; None when there is none. With ``wait``, wait up to that many
        seconds for one, woken when one is made or put back (in any process) rather than
        polling."""
        deadline = None if wait is None else time.monotonic() + require_seconds(wait, "wait")
        return self._p_claim_waiting(worker_id, lease_seconds, deadline)

    @operation
    def wait_for_change(self, object_id: str, /, *, status: Any, timeout: float) -> Plan[T]:
        """The object as soon as its status is other than ``status``, whichever process
        changed it, or as it is after ``timeout`` seconds: how a worker that holds it
        learns of a cancel at once rather than at its next step."""
        deadline = time.monotonic() + require_seconds(timeout, "timeout", maximum=3600)
        return self._p_wait_for_change(object_id, status, deadline)

    @streaming(RunEvent)
    def follow(
        self, object_id: str, /, *, after: int | None = None, poll: float = 2.0
    ) -> Plan[None]:
        """The object's events as they are stored, from the first (or after event number
        ``after``, to resume a stream), each once and in order, until it ends: a terminal
        status, or one in which it waits on its caller (a run's ``requires_action``). It
        waits without polling where the store can tell it of a change (the memory store
        at once; SQLite and PostgreSQL also of other processes' changes), and re-reads
        at least every ``poll`` seconds, applying a due time-out, in case a notification
        was missed. The async face's iterator stops at once when closed."""
        after, poll = self._follow_args(object_id, after, poll)  # refused here, at the call
        return self._p_following(object_id, after, poll)

    @operation
    def recover_stalled(self, limit: int = 100, *, resume: bool = False) -> Plan[builtins.list[T]]:
        """Objects whose lease ran out: back to the waiting status, or ended as lost after
        ``max_attempts`` claims (one being cancelled two-phase: its cancel confirmed). A
        live lease is never touched; a stalled object that is due is timed out instead,
        and not returned. An object whose worker had already streamed part of it (a
        response with output) is ended as lost, never generated again on top of a
        half-sent stream, unless ``resume`` lets the next worker continue it."""
        return self._p_recover_stalled(limit, resume)

    @operation
    def release(self, object_id: str, /, worker_id: str, *, resume: bool = False) -> Plan[T]:
        """``worker_id`` hands back an object it holds, at once, as a lost worker's would
        be recovered (no wait for its lease to run out): back to the waiting status, or
        ended as lost (after ``max_attempts`` claims, or having streamed, unless
        ``resume``); one being cancelled has its cancel confirmed. Refused
        (``LeaseError``) unless ``worker_id`` holds it."""
        return self._p_release(object_id, worker_id, resume)

    @operation
    def expire_due(self, limit: int = 1000) -> Plan[builtins.list[T]]:
        """Apply the time-out to up to ``limit`` due active objects in one batch (a run
        expires, a response fails); the objects it changed."""
        return self._p_expire_due(limit)

    @operation
    def prune(
        self, *, older_than: int, statuses: Iterable[Any] | None = None, limit: int = 1_000_000
    ) -> Plan[int]:
        """Delete the objects that ended more than ``older_than`` seconds ago (in one of
        ``statuses``: default, every terminal one), with their events, oldest first, up to
        ``limit``, in batches through an index of ended objects: the cost follows what is
        deleted, not what is stored. Never an active object. How many were deleted."""
        return self._p_prune(older_than, statuses, limit)

    def _p_call(self, method: str, *args: Any) -> Plan[Any]:
        """One store call, as a plan."""
        return (yield call(method, *args))

    def _p_events(
        self, object_id: str, starting_after: int | None
    ) -> Plan[builtins.list[RunEvent]]:
        events = yield from self._p_history(object_id)
        if starting_after is None:
            return events
        return [e for e in events if (e.sequence_number or 0) > starting_after]

    def _p_claim_waiting(
        self, worker_id: str, lease_seconds: int | None, deadline: float | None
    ) -> Plan[T | None]:
        while True:
            # Only a claim that may wait marks the bell (marking starts the feed of other
            # processes' writes, and makes every write ring).
            mark = self._bell.mark(WAITING) if deadline is not None else 0
            claimed = yield from self._p_claim(worker_id, lease_seconds)
            left = 0.0 if deadline is None else deadline - time.monotonic()
            if claimed is not None or left <= 0:
                return claimed
            yield Wait(WAITING, mark, min(left, _FALLBACK))

    def _p_wait_for_change(self, object_id: str, status: Any, deadline: float) -> Plan[T]:
        # Woken only by a change of status (``changed_key``): a worker's own stream of
        # writes to the object, which every watch of it would otherwise re-read, does not.
        key = changed_key(object_id)
        while True:
            mark = self._bell.mark(key)
            obj: Any = yield from self._p_get(object_id)
            left = deadline - time.monotonic()
            if obj.status != status or left <= 0:
                return obj  # type: ignore[no-any-return]
            yield Wait(key, mark, left)

    def _p_following(self, object_id: str, after: int | None, poll: float) -> Plan[None]:
        seen, check = 0, True
        while True:
            events, seen, status, more, mark = yield from self._p_follow(
                object_id, seen, after, check
            )
            if events:
                yield Emit(events)
            if status in self._stream_ends:
                return
            # Woken by a change: read it. Not woken within ``poll``: read the object too.
            check = not more and not (yield Wait(object_id, mark, poll))

    # --- reads ---------------------------------------------------------------------------------

    def _p_get(self, object_id: str) -> Plan[T]:
        """The object (timed out first, and stored so, if it is due)."""
        return (yield from self._p_apply(object_id))[0]

    def _p_history(self, object_id: str) -> Plan[builtins.list[RunEvent]]:
        """Every event of the object, oldest first."""
        yield from self._p_stored(require_string(object_id, f"{self._noun}_id"))
        events: builtins.list[RunEvent] = yield call("history", object_id)
        return events

    def _p_stored(self, object_id: str) -> Plan[StoredObject]:
        """The stored object of this engine's kind, or the face's ``not_found`` error."""
        try:
            stored: StoredObject = yield call("get", object_id)
        except ObjectNotFoundError:
            raise self.not_found(object_id, self._noun) from None
        if self.kind != stored.obj.KIND:
            raise self.not_found(object_id, self._noun)
        return stored

    def _p_list(
        self,
        group_id: str | None,
        status: Status | None,
        limit: int,
        order: Order,
        after: str | None,
        before: str | None,
    ) -> Plan[tuple[builtins.list[Any], bool]]:
        """A page of this kind's objects (of one group, unless None), due ones timed out
        first; a page is read again when that moved objects out of the status asked for."""
        for param, cursor in (("after", after), ("before", before)):
            if cursor is not None:
                require_string(cursor, param)
        for _ in range(self._retries):
            page = yield call(
                "list_objects",
                group_id,
                kind=self.kind,
                status=status,
                limit=limit,
                order=order,
                after=after,
                before=before,
            )
            now = self.lifecycle.now()
            due = [self.lifecycle.is_due(obj, now) for obj in page.items]
            if not any(due):
                return page.items, page.has_more
            objs: builtins.list[Any] = []
            for obj, is_due_now in zip(page.items, due, strict=True):
                objs.append((yield from self._p_get(obj.id)) if is_due_now else obj)
            if status is None or all(obj.status is status for obj in objs):
                return objs, page.has_more
        raise ConcurrentUpdateError("The listing kept changing; gave up.")

    def _p_follow(
        self, object_id: str, seen: int, after: int | None, check: bool
    ) -> Plan[tuple[builtins.list[RunEvent], int, str | None, bool, int]]:
        """One read of a follower: the bell's mark (taken first, so that a change after
        the read is not missed); the object's events stored after ``seen`` (the log's
        place of the last one read) that come after event number ``after``; the new
        ``seen``; the object's status, if this read tells it; and whether more events
        wait to be read. With ``check`` the object is read too (so that a due one is
        timed out, and a deleted one raises)."""
        mark = self._bell.mark(object_id)
        status = None
        if check:
            obj: Any = yield from self._p_get(object_id)
            status = obj.status.value
        events: builtins.list[RunEvent] = yield call("events", seen, object_id, _PAGE)
        if events:
            seen = events[-1].seq or seen
            status = events[-1].to_status
        fresh = [e for e in events if after is None or (e.sequence_number or 0) > after]
        return fresh, seen, status, len(events) == _PAGE, mark

    def _follow_args(
        self, object_id: str, after: int | None, poll: float
    ) -> tuple[int | None, float]:
        require_string(object_id, f"{self._noun}_id")
        if after is not None:
            require_int(after, "after", minimum=0)
        return after, require_seconds(poll, "poll", maximum=3600)

    # --- creating ----------------------------------------------------------------------------

    def _key(self, idempotency_key: str | None, obj: Any, input: Any = None) -> Any:
        """The create's ``IdempotencyKey``: the key, and a fingerprint of the object as
        its parameters made it (everything but its id and times) and of its input."""
        if idempotency_key is None:
            return None
        key = require_string(idempotency_key, "idempotency_key", max_length=255)
        made = {k: v for k, v in obj.to_dict().items() if k not in _UNIQUE_FIELDS}
        text = json.dumps([obj.KIND, obj.version, made, input], sort_keys=True)
        fingerprint = hashlib.sha256(text.encode()).hexdigest()
        now = obj.created_at
        return IdempotencyKey(key, fingerprint, now, now - self.idempotency_window)

    def _p_insert(self, obj: Any, steps: Sequence[Transition], input: Any, key: Any) -> Plan[Any]:
        """Store a new object; with a key that is remembered, the object it made first
        (no second object, no event), or ``IdempotencyError`` if its parameters differ."""
        try:
            seqs = yield call("insert", obj, steps, input, key)
        except KeyTaken as taken:
            if taken.fingerprint != key.fingerprint:
                raise IdempotencyError(key.key) from None
            return (yield from self._p_get(taken.object_id))
        self._known.written(Write(obj, 0, steps))
        self._publish(obj, steps, seqs, 0)
        return obj

    # --- retention --------------------------------------------------------------------------

    def _p_prune(self, older_than: int, statuses: Iterable[Any] | None, limit: int) -> Plan[int]:
        """Delete ended objects that ended more than ``older_than`` seconds ago, in
        ``statuses`` (default: every terminal one), up to ``limit``, in batches of at most
        ``_PRUNE_BATCH``, each one transaction; how many were deleted."""
        older_than = require_int(older_than, "older_than", minimum=0, maximum=MAX_DURATION)
        limit = require_int(limit, "limit", maximum=10_000_000)
        terminal = {status.value for status in self.definition.terminal}
        if statuses is None:
            wanted = sorted(terminal)
        else:
            if isinstance(statuses, str) or not isinstance(statuses, Iterable):
                raise ValidationError(
                    "Invalid 'statuses': expected a list of statuses.", param="statuses"
                )
            wanted = sorted({str(s) if isinstance(s, str) else repr(s) for s in statuses})
            for status in wanted:
                if status not in terminal:
                    raise ValidationError(
                        f"Invalid 'statuses': {status!r} is not a terminal status of a "
                        f"{self._noun} (only ended objects are pruned: {sorted(terminal)}).",
                        param="statuses",
                    )
        before = self.lifecycle.now() - older_than
        deleted = 0
        while deleted < limit:
            batch = min(_PRUNE_BATCH, limit - deleted)
            ids = yield call("prune", self.kind, before=before, statuses=wanted, limit=batch)
            deleted += len(ids)
            if len(ids) < batch:
                break
        return deleted

    # --- the changes every lifecycle has ---------------------------------------------------------

    def _p_step(
        self, object_id: str, event: str, arg: Any = None, worker_id: str | None = None
    ) -> Plan[T]:
        """Fire ``event`` on the object (with its argument), by ``worker_id`` if given."""
        return (yield from self._p_apply(object_id, self._event(event, arg, worker_id)))[0]

    def _p_update_metadata(self, object_id: str, metadata: dict[str, str]) -> Plan[T]:
        change = partial(self._new_metadata, validate_metadata(metadata))
        return (yield from self._p_apply(object_id, change))[0]

    def _p_cancel(self, object_id: str) -> Plan[T]:
        return (yield from self._p_apply(object_id, self._cancelled))[0]

    # --- the worker's side ---------------------------------------------------------------------

    def _p_claim(self, worker_id: str, lease_seconds: int | None) -> Plan[T | None]:
        """Take the oldest waiting object that is not due, start it and lease it to
        ``worker_id``; None when there is none."""
        worker_id = require_string(worker_id, "worker_id")
        lease = self._lease_seconds(lease_seconds)
        decide = partial(self._claimed, worker_id, lease)
        extra = {"step": self._claim_step(worker_id, lease)} if self._claim_takes_step else {}
        claimed = yield call("claim", self.lifecycle.now, decide, kind=self.kind, **extra)
        if claimed is None:
            return None
        write, seqs = claimed
        self._known.written(write)
        counts = self._claim_counts
        counts[write.obj.id] = write.attempts
        if len(counts) > 4096:  # claims nobody asked about: the oldest go
            del counts[next(iter(counts))]
        self._publish(write.obj, write.steps, seqs, write.first_number, worker_id)
        if self._hook is not None:
            self._hook.claimed(self, write.obj, write.steps[-1].at)
        obj: T = write.obj
        return obj

    def _claim_step(self, worker_id: str, lease: int) -> ClaimStep | None:
        """The claim's step as data (see ``ClaimStep``), if the declaration says it all."""
        if self._claim_fired is None:
            return None
        source, dest, event, clear, stamp, floors = self._claim_fired
        return ClaimStep(source.value, dest.value, event, clear, stamp, floors, worker_id, lease)

    def _p_heartbeat(self, object_id: str, worker_id: str, lease_seconds: int | None) -> Plan[T]:
        """Extend ``worker_id``'s lease on the object (never its deadline). The object is
        returned so the worker sees a cancel and can stop."""
        worker_id = require_string(worker_id, "worker_id")
        lease = self._lease_seconds(lease_seconds)
        return (yield from self._p_apply(object_id, partial(self._heartbeat, worker_id, lease)))[0]

    def _p_release(self, object_id: str, worker_id: str, resume: bool) -> Plan[T]:
        worker_id = require_string(worker_id, "worker_id")
        resume = validate_bool(resume, "resume")
        return (yield from self._p_apply(object_id, partial(self._released, worker_id, resume)))[0]

    def _released(
        self,
        worker_id: str,
        resume: bool,
        obj: Any,
        stored: StoredObject,
        now: int,
        timed_out: bool,
    ) -> Decision:
        if obj.status not in self._leased and not timed_out:
            raise self.lifecycle.refusal(obj, "release")
        if timed_out:  # the time-out applied first ended it: nothing to hand back
            return Decision([], Lease.after(stored, obj, self._leased))
        check_lease(stored, worker_id)
        steps = self._recovery(obj, stored, now, resume)
        return Decision(steps, Lease(None, None, stored.attempts))

    def _recovery(
        self, obj: Any, stored: StoredObject, now: int, resume: bool
    ) -> builtins.list[Transition]:
        """The steps that recover an object its worker no longer drives: a two-phase
        cancel confirmed; ended as lost after ``max_attempts`` claims, or when its worker
        had streamed part of it (unless ``resume``); else back to the waiting status."""
        lifecycle = self._lifecycle_of(obj)
        roles = self._roles
        confirm = self.definition.cancel.confirm
        if confirm is not None and obj.status in lifecycle.sources[confirm]:
            return lifecycle.decide(obj, confirm, now)
        if stored.attempts >= self.max_attempts:
            message = f"The {self._noun}'s worker stopped responding {stored.attempts} times."
            return lifecycle.decide(obj, roles.lost, now, roles.lost_argument(message))
        if not resume and lifecycle.streamed(obj):
            message = f"The worker generating this {self._noun} was lost."
            return lifecycle.decide(obj, roles.lost, now, roles.lost_argument(message))
        return lifecycle.decide(obj, roles.requeue, now)

    def _p_recover_stalled(self, limit: int, resume: bool = False) -> Plan[builtins.list[T]]:
        """Objects whose lease ran out: back to the waiting status, or ended as lost
        after ``max_attempts`` claims; one being cancelled two-phase has its cancel
        confirmed. An object
        whose lease is alive is never touched. A stalled object that is also due is timed
        out instead, and is not among those returned (it was not recovered)."""
        limit = require_int(limit, "limit", maximum=1000)
        resume = validate_bool(resume, "resume")
        timed_out: set[str] = set()
        recover = partial(self._recover, timed_out, resume)
        written = yield call("sweep", "stalled", self.lifecycle.now, recover, limit, kind=self.kind)
        recovered = [w.obj for w in self._published(written) if w.obj.id not in timed_out]
        self._swept("recovered stalled", recovered)
        self._swept("timed out", [w.obj for w, _ in written if w.obj.id in timed_out])
        if self._hook is not None:
            self._hook.swept(self, written, len(recovered), len(timed_out))
        return recovered

    def _p_expire_due(self, limit: int) -> Plan[builtins.list[T]]:
        """Apply the time-out to up to ``limit`` due active objects in one batch (a run
        expires, a response fails); the objects it changed."""
        limit = require_int(limit, "limit", maximum=100_000)
        written = yield call(
            "sweep", "due", self.lifecycle.now, self._expire, limit, kind=self.kind
        )
        done = [write.obj for write in self._published(written)]
        self._swept("timed out", done)
        if self._hook is not None:
            self._hook.swept(self, (), 0, len(done))
        return done

    def _recover(
        self, timed_out: set[str], resume: bool, stored: StoredObject, now: int
    ) -> Write | None:
        """The decision for one stalled object, on the row the store holds for the write
        (one that is due is timed out instead, and its id put in ``timed_out``)."""
        obj = stored.obj.copy()
        steps = self._lifecycle_of(obj).expire_if_due(obj, now)
        if steps:
            timed_out.add(obj.id)
        else:
            if stored.lease_owner is None or (stored.lease_expires_at or 0) > now:
                return None  # the lease is alive (a heartbeat came in): never touch it
            steps = self._recovery(obj, stored, now, resume)
        return Lease(None, None, stored.attempts).write(obj, stored, steps)

    def _expire(self, stored: StoredObject, now: int) -> Write | None:
        """The decision for one due object, on the row the store holds for the write."""
        obj = stored.obj.copy()
        steps = self._lifecycle_of(obj).expire_if_due(obj, now)
        if not steps:
            return None  # not due at the time of the write after all
        return Lease(None, None, stored.attempts).write(obj, stored, steps)

    def _published(self, written: builtins.list[Claimed]) -> builtins.list[Write]:
        for write, seqs in written:
            self._known.forget(write.obj.id)
            self._publish(write.obj, write.steps, seqs, write.first_number)
        return [write for write, _ in written]

    # --- the changes: each decides on a copy of the stored object --------------------------------

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
        obj: Any,
        stored: StoredObject,
        now: int,
        timed_out: bool,
    ) -> Decision | None:
        if timed_out and event == self.lifecycle._exclusive_time_out:
            return None  # the time-out was this call's whole work, and is done
        lifecycle = self._lifecycle_of(obj)
        if worker_id is not None and obj.status in lifecycle.sources.get(event, ()):
            check_lease(stored, worker_id)
        steps = lifecycle.decide(obj, event, now, arg)
        return Decision(steps, Lease.after(stored, obj, self._leased))

    def _cancelled(
        self, obj: Any, stored: StoredObject, now: int, timed_out: bool
    ) -> Decision | None:
        """A cancel as the definition declares it. Immediate: one step. Two-phase: to
        the cancelling status, and, for an object no worker holds (nobody to confirm it),
        on to the end of the cancel in the same write, both events stored (ours). An object that has
        ended is refused, or returned unchanged with no event, as the definition says."""
        cancel = self.definition.cancel
        lifecycle = self._lifecycle_of(obj)
        if obj.status in self.definition.terminal and cancel.ended == "unchanged":
            lifecycle.check_cancellable(obj)
            return None
        held = obj.status in self._leased
        steps = lifecycle.decide(obj, cancel.event, now)
        if cancel.confirm is not None and not held:
            # The cancelling event carries the object as it was then.
            steps = sealed(steps, obj) + lifecycle.decide(obj, cancel.confirm, now)
        return Decision(steps, Lease.after(stored, obj, self._leased))

    def _new_metadata(
        self, metadata: dict[str, str], obj: Any, stored: StoredObject, now: int, timed_out: bool
    ) -> Decision:
        obj.metadata = metadata
        return Decision([], Lease.after(stored, obj, self._leased))

    def _heartbeat(
        self, worker_id: str, lease: int, obj: Any, stored: StoredObject, now: int, timed_out: bool
    ) -> Decision:
        if obj.status not in self._leased:
            raise self.lifecycle.refusal(obj, "heartbeat")
        check_lease(stored, worker_id)
        return Decision([], Lease(worker_id, now + lease, stored.attempts))

    def _claimed(self, worker_id: str, lease: int, stored: StoredObject, now: int) -> Write:
        """The write that starts a claimed object and leases it to ``worker_id``."""
        obj = stored.obj.copy()
        steps = self._lifecycle_of(obj).decide(obj, self._roles.claim, now)
        return Lease(worker_id, now + lease, stored.attempts + 1).write(obj, stored, steps)

    # --- the one loop ----------------------------------------------------------------------

    def _p_apply(
        self, object_id: str, change: Change | None = None
    ) -> Plan[tuple[T, Write | None, builtins.list[int] | None]]:
        """Read, decide on a copy, compare-and-set; again if another writer won.
        Returns the object and, if this call stored a change, the write and its events'
        places in the store's log (None and None if it stored nothing)."""
        require_string(object_id, f"{self._noun}_id")
        known = self._known
        for _ in range(self._retries):
            # A change starts from what this engine last stored, if it holds it.
            stored = known.take(object_id) if change is not None else None
            held = stored is not None
            if stored is None:
                stored = yield from self._p_stored(object_id)
            obj = stored.obj.copy()
            now = self.lifecycle.now()
            lifecycle = self._lifecycle_of(obj)
            steps = lifecycle.expire_if_due(obj, now)
            lease = Lease.after(stored, obj, self._leased)
            error: RunStateError | None = None
            decided = None
            if change is not None:
                if steps:  # the time-out's event carries the object as it left it
                    steps = sealed(steps, obj)
                try:
                    decided = change(obj, stored, now, bool(steps))
                except RunStateError as exc:
                    if held:
                        continue  # maybe stale: refuse only what a fresh read refuses
                    if not steps:
                        raise
                    error = exc  # the time-out still has to be stored
            if decided is not None:
                steps += decided.steps
                lease = decided.lease
            elif not steps:
                if held:
                    continue  # likewise: "nothing to do" is answered from a fresh read
                known.keep(stored)
                return obj, None, None
            write = lease.write(obj, stored, steps)
            seqs = (yield call("write", [write]))[0]
            if seqs is None:
                continue
            known.written(write)
            self._publish(obj, steps, seqs, stored.event_count)
            if error is not None:
                raise error
            return obj, write, seqs
        raise ConcurrentUpdateError(
            f"{self._noun.capitalize()} {object_id} kept changing; gave up after "
            f"{self._retries} tries."
        )

    def _lifecycle_of(self, obj: Any) -> Lifecycle:
        return self._lifecycles[obj.version]

    def _publish(
        self,
        obj: Any,
        steps: Sequence[Transition],
        seqs: Sequence[int],
        first_number: int,
        worker: str | None = None,
    ) -> None:
        """Tell listeners of stored steps, and log each at DEBUG (never at INFO: a busy
        service makes thousands a second), with its object, lifecycle, event and worker
        as the record's fields."""
        if steps and self._listeners.listening:
            self._listeners.publish(self.lifecycle.events_for(obj, steps, seqs, first_number))
        if steps and self._hook is not None:
            self._hook.stepped(self, obj, steps)
        if steps and log.isEnabledFor(logging.DEBUG):
            for step in steps:
                log.debug(
                    "%s %s: %s",
                    self.definition.name,
                    obj.id,
                    step.event,
                    extra={
                        "object_id": obj.id,
                        "lifecycle": self.definition.name,
                        "event": step.event,
                        "from_status": None if step.from_status is None else str(step.from_status),
                        "to_status": str(step.to_status),
                        "worker": worker,
                    },
                )

    def _swept(self, what: str, objs: builtins.list[Any]) -> None:
        """A sweep that changed something says so once, at INFO, with the ids."""
        if objs:
            log.info(
                "%s %d %s(s)",
                what,
                len(objs),
                self._noun,
                extra={"lifecycle": self.definition.name, "object_ids": [o.id for o in objs]},
            )

    def _lease_seconds(self, lease_seconds: int | None) -> int:
        if lease_seconds is None:
            return self.lease_seconds
        return require_int(lease_seconds, "lease_seconds", maximum=MAX_DURATION)


def check_lease(stored: StoredObject, worker_id: str) -> None:
    if stored.lease_owner != worker_id:
        holder = "no worker" if stored.lease_owner is None else f"worker {stored.lease_owner!r}"
        noun = noun_of(stored.obj).capitalize()
        raise LeaseError(f"{noun} {stored.obj.id} is leased to {holder}, not to {worker_id!r}.")


class SyncFace(Sync, Engine[T]):
    """The face whose operations run to the end: each plan driven on a store."""

    store: Any

    def _run(self, plan: Plan[R], name: str, object_id: str | None) -> R:
        hook = self._hook
        if hook is None:
            return self._drive(plan)
        with hook.operation(self, name, object_id):
            return self._drive(plan)

    def _stream(self, plan: Plan[None], name: str, object_id: str | None) -> Iterator[Any]:
        return items(plan, self._perform)

    def close(self) -> None:
        self.store.close()

    @property
    def webhooks(self) -> Endpoints:
        """The store's webhook endpoints: ``add(url, secret=..., events=...)``,
        ``list()``, ``remove(id)``, ``stats()`` (``runstate.webhooks`` sends to them)."""
        return Endpoints(self)

    def __enter__(self: E) -> E:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncFace(Async, Engine[T]):
    """The face whose operations are awaited, on an async store."""

    store: Any

    def _default_store(self) -> Any:
        return AsyncStore(MemoryStore(), offload=False)

    async def _arun(self, plan: Plan[R], name: str, object_id: str | None) -> R:
        hook = self._hook
        if hook is None:
            return await self._adrive(plan)
        with hook.operation(self, name, object_id):
            return await self._adrive(plan)

    def _astream(self, plan: Plan[None], name: str, object_id: str | None) -> AsyncIterator[Any]:
        return aitems(plan, self._aperform)

    async def close(self) -> None:
        await self.store.close()

    @property
    def webhooks(self) -> AsyncEndpoints:
        """The store's webhook endpoints, each operation awaited (see the sync face's)."""
        return AsyncEndpoints(self)

    async def __aenter__(self: E) -> E:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
