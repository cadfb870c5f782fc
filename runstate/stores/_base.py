"""The store protocol: the few things the engine asks of a place that keeps objects.

A store never decides a transition; the lifecycle does. A store keeps objects of every
lifecycle (runs, responses: each row says its ``kind``) with a version, writes a new
state only if the version it was computed from is still the stored one
(compare-and-set), appends each step to the object's history in the same atomic write,
and answers the indexed questions the engine's sweeps ask of one kind (which objects are
due, whose lease ran out, which waiting one is oldest). What it knows of an object is
what every object model has: ``KIND``, ``id``, ``status``, ``created_at``, ``expires_at``,
``to_dict()`` and ``from_stored()``; and what its kind's declaration says: which statuses
are active (``ACTIVE_OF``) and which field names its group (``GROUP_BY``: at most one
active object per group, a run's thread; None for objects that are not grouped). Every
backend passes the same contract suites (``tests/integration/test_*_contract.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .._definitions import ACTIVE_OF, GROUP_BY, KINDS, WAITING_OF
from .._errors import StoreError, ValidationError
from .._events import RunEvent
from .._lifecycle import Transition
from .._model import Status
from .._webhooks import Delivery, DeliveryStats, Endpoint, Settle

__all__ = [
    "ClaimStep",
    "Claimed",
    "IdempotencyKey",
    "KeyTaken",
    "KindStats",
    "Now",
    "Order",
    "Page",
    "Stats",
    "Store",
    "StoredObject",
    "Sweep",
    "WebhookStore",
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
class StoredObject:
    """An object (a run, a response) as stored: its state, the version that state has,
    and the worker lease."""

    obj: Any
    version: int
    lease_owner: str | None = None
    lease_expires_at: int | None = None
    attempts: int = 0
    event_count: int = 0  # how many events the run has: the next is numbered so


@dataclass(frozen=True, slots=True)
class Write:
    """Replace a stored run, only if it is still at ``expected_version``; its new events
    (one per step) are numbered from ``first_number``, the count of its events so far.
    ``before`` is the stored state the write was decided from, if known: a store may
    write only what changed (the row is exactly that state if the write wins). ``body``
    is ``run.to_dict()``, made once for the store and the engine to share (read only)."""

    obj: Any
    expected_version: int
    steps: Sequence[Transition]
    lease_owner: str | None = None
    lease_expires_at: int | None = None
    attempts: int = 0
    first_number: int = 0
    before: StoredObject | None = None
    body: dict[str, Any] | None = None


def takes_keyword(function: Callable[..., Any], name: str) -> bool:
    """Whether ``function`` accepts the keyword argument ``name`` (how the engine serves
    a store written before a protocol method gained one)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


def body_of(w: Write) -> dict[str, Any]:
    """The public dict of the object ``w`` writes (made now if the write has none)."""
    return w.body if w.body is not None else w.obj.to_dict()


@dataclass(frozen=True, slots=True)
class ClaimStep:
    """A claim's step as data, for a store that takes it inside the database in the same
    statement that picks the object (PostgreSQL: one round trip). It is what the
    lifecycle's declaration makes of an event without an argument: the status moves from
    ``source`` to ``dest`` (``event`` names it); ``clear`` (if any) becomes null;
    ``stamp`` (if any) gets the time, never earlier than any of ``floors``; the object is
    leased to ``owner`` for ``lease_seconds``, and its claim count goes up. A store that
    takes it still calls ``decide`` on the row as it was, and refuses a result that
    differs from what the database wrote (it would be a bug in runstate)."""

    source: str
    dest: str
    event: str
    clear: str | None
    stamp: str | None
    floors: tuple[str, ...]
    owner: str
    lease_seconds: int


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A create's idempotency key: the key, a fingerprint of the create's parameters, the
    time of the create, and the oldest a stored key may be and still count."""

    key: str
    fingerprint: str
    now: int
    not_before: int


class KeyTaken(Exception):
    """``insert`` found the key remembered, for ``object_id`` made with parameters whose
    fingerprint is ``fingerprint``: the engine answers with that object, or a conflict."""

    def __init__(self, object_id: str, fingerprint: str) -> None:
        super().__init__(object_id)
        self.object_id = object_id
        self.fingerprint = fingerprint


@dataclass(frozen=True, slots=True)
class KindStats:
    """One kind's part of ``Stats``."""

    statuses: dict[str, int]
    waiting: int  # how many wait for a worker
    oldest_waiting: int | None  # the created_at of the oldest of them
    due: int
    leases: int
    leases_ended: int


def kind_figures() -> dict[str, Any]:
    """A kind's ``KindStats`` fields before anything is counted (the stores fill them)."""
    return {
        "statuses": {},
        "waiting": 0,
        "oldest_waiting": None,
        "due": 0,
        "leases": 0,
        "leases_ended": 0,
    }


@dataclass(frozen=True, slots=True)
class Stats:
    """What a store holds: per kind, and the events stored."""

    kinds: dict[str, KindStats]
    events: int
    deliveries: DeliveryStats = field(default_factory=DeliveryStats)  # webhook deliveries


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing, in the order asked for, and whether more lie beyond it."""

    items: list[Any]
    has_more: bool


class Store(Protocol):
    """What a backend implements. Methods raise ``RunStateError``s only."""

    def insert(
        self,
        obj: Any,
        steps: Sequence[Transition],
        input: Any = None,
        key: IdempotencyKey | None = None,
    ) -> list[int]:
        """Store a new object, its creation events, and ``input`` (JSON kept for its
        worker, not part of the object); the events' places in the log. With ``key``,
        first look the key up: remembered (since ``key.not_before``, for an object that
        still exists), raise ``KeyTaken``; else remember it with the object, atomically.
        Raises ``ActiveRunError`` if the object's group already has an active object."""

    def get(self, object_id: str) -> StoredObject:
        """The stored object, whatever its kind, or ``ObjectNotFoundError``."""

    def input_of(self, object_id: str) -> Any:
        """The ``input`` stored with the object (None if none), or ``ObjectNotFoundError``."""

    def delete(self, object_id: str) -> bool:
        """Delete the object and its events; False if there was no such object."""

    def prune(self, kind: str, *, before: int, statuses: Sequence[str], limit: int) -> list[str]:
        """Delete, with their events, up to ``limit`` of the objects of ``kind`` that
        ended (left their active statuses) at or before ``before`` and are in one of
        ``statuses``, oldest first, through an index of ended objects; their ids. Never
        an active object."""

    def write(self, writes: Sequence[Write]) -> list[list[int] | None]:
        """Apply each write whose version still matches, each with its events, in one
        atomic step. Per write: the new events' sequence numbers, or None if it lost."""

    def claim(
        self,
        now: Now,
        decide: Callable[[StoredObject, int], Write],
        *,
        kind: str,
        step: ClaimStep | None = None,
    ) -> Claimed | None:
        """Once the write can happen (the lock or connection held), read ``now()``, pick
        the oldest ``queued`` object of ``kind`` that is not due then, write ``decide(it,
        now)`` and return what was written; None when nothing is claimable. ``step``, when
        given, is the same decision as data (a store may write it in the database)."""

    def sweep(
        self,
        which: Sweep,
        now: Now,
        decide: Callable[[StoredObject, int], Write | None],
        limit: int,
        *,
        kind: str,
    ) -> list[Claimed]:
        """Once the write can happen, read ``now()``; then, atomically and with no other
        writer between the read and the writes, pick up to ``limit`` objects of ``kind``
        that ``which`` names at that time (``due``: active, ``expires_at <= now``,
        soonest first; ``stalled``: leased, lease ended at or before now, oldest lease
        first), write ``decide(it, now)`` for each where it gives a write, and return
        what was written."""

    def list_objects(
        self,
        group_id: str | None,
        *,
        kind: str,
        status: Status | None = None,
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> Page:
        """Objects of ``kind`` (of one group, unless None) by ``created_at``, ties in
        creation order; ``after``/``before`` are ids bounding the page (``before`` gives
        the page nearest to it)."""

    def stats(self, now: int) -> Stats:
        """What the store holds, for operators: by kind, objects per status, the oldest
        queued object's ``created_at``, how many active ones are due at ``now``, leases
        held and ended; and the events stored."""

    def history(self, object_id: str) -> list[RunEvent]:
        """Every event of one object, oldest first (``ObjectNotFoundError`` if none)."""

    def events(
        self, after_seq: int = 0, object_id: str | None = None, limit: int = 100
    ) -> list[RunEvent]:
        """Events with ``seq > after_seq`` in sequence order, optionally of one object."""

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""


class WebhookStore(Store, Protocol):
    """A store that keeps webhook endpoints and their deliveries (``runstate.webhooks``):
    every built-in store. With each write that wins it also writes one pending delivery
    per endpoint for each webhook event the write's steps make (``hooks_of``), in the
    same atomic step (the outbox). A store of one's own may leave this out: its engines
    work, without webhooks."""

    def add_endpoint(self, endpoint: Endpoint, secret: str) -> None:
        """Keep a webhook endpoint and its secret."""

    def list_endpoints(self) -> list[Endpoint]:
        """Every webhook endpoint, in the order they were added (never a secret)."""

    def remove_endpoint(self, endpoint_id: str) -> bool:
        """Delete an endpoint and its deliveries; False if there was none."""

    def claim_deliveries(self, now: int, lease_seconds: int, limit: int) -> list[Delivery]:
        """Atomically pick up to ``limit`` pending deliveries due at ``now`` (soonest
        first; none that another claim holds), count an attempt on each, and make each
        due again only at ``now + lease_seconds`` (a claimer that dies is replaced
        then); them, with their endpoints' URLs and secrets."""

    def settle_deliveries(self, settles: Sequence[Settle]) -> list[bool]:
        """Record how attempts ended (see ``Settle``), each only if its delivery is still
        pending at that attempt; per settle, whether it was (False: a later claim took
        the delivery, or it is gone)."""

    def next_delivery_at(self) -> int | None:
        """When the soonest pending delivery is due; None if none is pending."""

    def delivery_stats(self) -> DeliveryStats:
        """How many deliveries are pending and failed, and the oldest pending one's
        event time."""


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


def cursor_error(param: str, object_id: str) -> ValidationError:
    return ValidationError(
        f"Invalid '{param}': no object with id {object_id!r} in this list.", param=param
    )


def restore(kind: str, data: dict[str, Any], expires_at: int | None) -> Any:
    """The object a store wrote, rebuilt from its body by its kind's model (no checks:
    runstate wrote it); ``expires_at`` comes from the row, where an object that does not
    show it (a response's deadline) keeps it."""
    obj = KINDS[kind].from_stored(data)
    obj.expires_at = expires_at
    return obj


def kept_changing(obj: Any) -> StoreError:
    """The error for a create that kept finding the group's active object gone by the
    time it looked at it (after many tries)."""
    noun = obj.object.rsplit(".", 1)[-1]
    return StoreError(f"Group {group_of(obj)} kept changing; no {noun} was inserted.")


def group_of(obj: Any) -> str | None:
    """The object's group, by its kind's declared field; None if its kind has none."""
    field = GROUP_BY[obj.KIND]
    group: str | None = None if field is None else getattr(obj, field)
    return group


def is_active(obj: Any) -> bool:
    """What the stores keep in the ``active`` column (the partial indexes read it)."""
    return obj.status in ACTIVE_OF[obj.KIND]


def is_waiting(obj: Any) -> bool:
    """What the stores keep in the ``waiting`` column: whether the object is in the
    status its kind's workers claim from (the queue's partial index reads it)."""
    return obj.status in WAITING_OF[obj.KIND]
