"""MemoryStore: the embedded default, a real thread-safe backend kept in one process.

One lock guards everything, so each method is atomic. Heaps per kind, keyed by expiry,
lease end and queue position, answer the sweeps in time proportional to what they
return; their entries carry the version they were pushed for, and an entry whose object
has moved on since (or is gone) is dropped when it surfaces.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._definitions import ACTIVE_OF, WAITING_OF
from .._errors import ActiveRunError, ObjectNotFoundError, StoreError
from .._events import RunEvent
from .._lifecycle import Transition
from .._model import Status, _clone
from .._validate import require_int
from .._webhooks import Delivery, DeliveryStats, Endpoint, Settle, hooks_of
from ._base import (
    Claimed,
    ClaimStep,
    IdempotencyKey,
    KeyTaken,
    KindStats,
    Now,
    Order,
    Page,
    Stats,
    StoredObject,
    Sweep,
    Write,
    body_of,
    check_page_args,
    cursor_error,
    group_of,
    is_active,
    is_waiting,
    kind_figures,
    restore,
)
from ._bell import Bell, ring_for, ring_for_won

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Delivery:
    """One webhook event to one endpoint, as kept (the SQL stores' row)."""

    event_id: str
    endpoint_id: str
    object_id: str
    type: str
    created_at: int
    next_at: int
    status: str = "pending"
    attempts: int = 0
    last_error: str | None = None
    ended_at: int | None = None


@dataclass(slots=True)
class _Row:
    kind: str
    group_id: str | None
    # The object's public dict, written once per version and never changed in place:
    # the objects and events read from it share its nested values (copy-on-write).
    data: dict[str, Any]
    expires_at: int | None
    version: int
    order: int  # creation order, the tie-break among objects created in the same second
    input: Any = None
    lease_owner: str | None = None
    lease_expires_at: int | None = None
    attempts: int = 0
    ended_at: int | None = None  # when it left its active statuses
    history: list[RunEvent] = field(default_factory=list)  # its events, oldest first

    def stored(self) -> StoredObject:
        return StoredObject(
            restore(self.kind, _clone(self.data), self.expires_at),  # the reader's own
            self.version,
            self.lease_owner,
            self.lease_expires_at,
            self.attempts,
            # How many events it has had (the next is numbered so), kept or trimmed.
            self.history[-1].sequence_number + 1 if self.history else 0,  # type: ignore[operator]
        )


class MemoryStore:
    """Objects in a dict, guarded by one lock. Nothing survives the process."""

    def __init__(self, *, max_events: int | None = None) -> None:
        #: The most events kept per object (None: all); older ones are dropped.
        self.max_events = None if max_events is None else require_int(max_events, "max_events")
        self._lock = threading.RLock()
        self._rows: dict[str, _Row] = {}
        self._active: dict[str, str] = {}  # group id -> its active object's id
        self._groups: defaultdict[str, list[str]] = defaultdict(list)
        self._events: list[RunEvent | None] = []  # None: the event of a deleted object
        self._orders = itertools.count()
        # Heaps per kind of (key..., version, id); see _valid().
        self._due: defaultdict[str, list[tuple[int, int, str]]] = defaultdict(list)
        self._leases: defaultdict[str, list[tuple[int, int, str]]] = defaultdict(list)
        self._queue: defaultdict[str, list[tuple[int, int, int, str]]] = defaultdict(list)
        self._ended: defaultdict[str, list[tuple[int, int, str]]] = defaultdict(list)
        # (kind, key) -> (fingerprint, object id, when it was remembered)
        self._keys: dict[tuple[str, str], tuple[str, str, int]] = {}
        self._key_of: dict[str, tuple[str, str]] = {}  # object id -> its key, if it has one
        self._endpoints: dict[str, tuple[Endpoint, str]] = {}  # id -> (endpoint, secret)
        self._deliveries: dict[tuple[str, str], _Delivery] = {}  # (event, endpoint) ->
        self._pending: dict[tuple[str, str], _Delivery] = {}  # those still pending
        self.bell = Bell()  # rung on every write: there is no other process to hear of

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._rows)} runs)"

    # --- writes -------------------------------------------------------------------------

    def insert(
        self,
        obj: Any,
        steps: Sequence[Transition],
        input: Any = None,
        key: IdempotencyKey | None = None,
    ) -> list[int]:
        with self._lock:
            if key is not None:
                known = self._keys.get((obj.KIND, key.key))
                if known is not None and known[2] >= key.not_before and known[1] in self._rows:
                    raise KeyTaken(known[1], known[0])
            group = group_of(obj)
            if group is not None and group in self._active:
                raise ActiveRunError(group, self._active[group])
            row = _Row(
                obj.KIND, group, obj.to_dict(), obj.expires_at, 1, next(self._orders), _clone(input)
            )
            if key is not None:
                self._keys[(obj.KIND, key.key)] = (key.fingerprint, obj.id, key.now)
                self._key_of[obj.id] = (obj.KIND, key.key)
            self._rows[obj.id] = row
            if group is not None:
                self._groups[group].append(obj.id)
            self._index(obj.id, row, obj)
            seqs = self._append(obj.id, row.data, steps)
            ring_for(self.bell, [obj])
            return seqs

    def prune(self, kind: str, *, before: int, statuses: Sequence[str], limit: int) -> list[str]:
        with self._lock:
            heap = self._ended[kind]
            kept: list[tuple[int, int, str]] = []
            pruned: list[str] = []
            while heap and heap[0][0] <= before and len(pruned) < limit:
                entry = heapq.heappop(heap)
                row = self._valid(entry)
                if row is None:
                    continue  # moved on, or gone
                if row.data["status"] in statuses:
                    pruned.append(entry[-1])
                else:
                    kept.append(entry)
            for entry in kept:
                heapq.heappush(heap, entry)
            for object_id in pruned:
                self.delete(object_id)
            return pruned

    def delete(self, object_id: str) -> bool:
        with self._lock:
            row = self._rows.pop(object_id, None)
            if row is None:
                return False
            key = self._key_of.pop(object_id, None)
            if key is not None and self._keys.get(key, ("", ""))[1] == object_id:
                del self._keys[key]
            if row.group_id is not None:
                self._groups[row.group_id].remove(object_id)
                if self._active.get(row.group_id) == object_id:
                    del self._active[row.group_id]
            for event in row.history:
                self._events[event.seq - 1] = None  # type: ignore[operator]  # a stored event has its place
            self._drop_deliveries(lambda d: d.object_id == object_id)
            return True

    def write(self, writes: Sequence[Write]) -> list[list[int] | None]:
        with self._lock:
            done = [self._write_one(w) for w in writes]
            ring_for_won(self.bell, writes, done)
            return done

    def _write_held(self, w: Write) -> list[int]:
        """``w`` on an object picked under the lock: it cannot lose."""
        seqs = self._write_one(w)
        if seqs is None:  # pragma: no cover - the lock is held: nothing moved
            raise StoreError(f"A picked object ({w.obj.id}) changed under the lock.")
        return seqs

    def _write_one(self, w: Write) -> list[int] | None:
        row = self._rows.get(w.obj.id)
        if row is None or row.version != w.expected_version:
            return None
        row.data = _clone(body_of(w))  # ours: the engine keeps the body it made
        row.expires_at = w.obj.expires_at
        if is_active(w.obj):
            row.ended_at = None
        elif row.ended_at is None and w.steps:
            row.ended_at = w.steps[-1].at
        row.version += 1
        row.lease_owner, row.lease_expires_at, row.attempts = (
            w.lease_owner,
            w.lease_expires_at,
            w.attempts,
        )
        self._index(w.obj.id, row, w.obj)
        for hook in hooks_of(w.obj, w.steps):  # the outbox: under the write's lock
            for endpoint, _ in self._endpoints.values():
                if hook.type in endpoint.events:
                    d = _Delivery(
                        hook.id,
                        endpoint.id,
                        hook.object_id,
                        hook.type,
                        hook.created_at,
                        hook.created_at,
                    )
                    self._deliveries[hook.id, endpoint.id] = self._pending[hook.id, endpoint.id] = d
        return self._append(w.obj.id, row.data, w.steps)

    def claim(
        self,
        now: Now,
        decide: Callable[[StoredObject, int], Write],
        *,
        kind: str,
        step: ClaimStep | None = None,
    ) -> Claimed | None:
        with self._lock:
            t = now()  # read under the lock: the write happens at this time
            skipped = []  # due objects stay queued until a sweep expires them
            queue = self._queue[kind]
            try:
                while queue:
                    entry = heapq.heappop(queue)
                    row = self._valid(entry)
                    if row is None:
                        continue
                    if row.expires_at is not None and row.expires_at <= t:
                        skipped.append(entry)
                        continue
                    write = decide(row.stored(), t)
                    seqs = self._write_held(write)
                    ring_for(self.bell, [write])
                    return write, seqs
                return None
            finally:
                for entry in skipped:
                    heapq.heappush(queue, entry)

    def sweep(
        self,
        which: Sweep,
        now: Now,
        decide: Callable[[StoredObject, int], Write | None],
        limit: int,
        *,
        kind: str,
    ) -> list[Claimed]:
        with self._lock:
            t = now()
            heap = (self._due if which == "due" else self._leases)[kind]
            done: list[Claimed] = []
            for row in list(self._peek(heap, t, limit)):
                write = decide(row.stored(), t)
                if write is None:
                    continue
                done.append((write, self._write_held(write)))
            ring_for(self.bell, [write for write, _ in done])
            return done

    # --- reads --------------------------------------------------------------------------

    def get(self, object_id: str) -> StoredObject:
        with self._lock:
            row = self._rows.get(object_id)
            if row is None:
                raise ObjectNotFoundError(object_id)
            return row.stored()

    def stats(self, now: int) -> Stats:
        with self._lock:
            kinds: dict[str, dict[str, Any]] = {}
            for row in self._rows.values():
                part = kinds.setdefault(row.kind, kind_figures())
                status = row.data["status"]
                part["statuses"][status] = part["statuses"].get(status, 0) + 1
                if status in WAITING_OF[row.kind]:
                    created = row.data["created_at"]
                    oldest = part["oldest_waiting"]
                    part["waiting"] += 1
                    part["oldest_waiting"] = created if oldest is None else min(oldest, created)
                active = status in ACTIVE_OF[row.kind]
                if active and row.expires_at is not None and row.expires_at <= now:
                    part["due"] += 1
                if row.lease_owner is not None:
                    part["leases"] += 1
                    part["leases_ended"] += (row.lease_expires_at or 0) <= now
            events = sum(len(row.history) for row in self._rows.values())
            return Stats(
                {k: KindStats(**v) for k, v in sorted(kinds.items())},
                events,
                self.delivery_stats(),
            )

    # --- webhooks -----------------------------------------------------------------------

    def add_endpoint(self, endpoint: Endpoint, secret: str) -> None:
        with self._lock:
            self._endpoints[endpoint.id] = (endpoint, secret)

    def list_endpoints(self) -> list[Endpoint]:
        with self._lock:
            return [e for e, _ in self._endpoints.values()]  # in the order they were added

    def remove_endpoint(self, endpoint_id: str) -> bool:
        with self._lock:
            if self._endpoints.pop(endpoint_id, None) is None:
                return False
            self._drop_deliveries(lambda d: d.endpoint_id == endpoint_id)
            return True

    def claim_deliveries(self, now: int, lease_seconds: int, limit: int) -> list[Delivery]:
        with self._lock:
            due = heapq.nsmallest(
                limit,
                (d for d in self._pending.values() if d.next_at <= now),
                key=lambda d: d.next_at,
            )
            claimed = []
            for d in due:
                d.attempts += 1
                d.next_at = now + lease_seconds
                endpoint, secret = self._endpoints[d.endpoint_id]
                claimed.append(
                    Delivery(
                        d.event_id,
                        d.endpoint_id,
                        endpoint.url,
                        secret,
                        d.type,
                        d.object_id,
                        d.created_at,
                        d.attempts,
                    )
                )
            return claimed

    def settle_deliveries(self, settles: Sequence[Settle]) -> list[bool]:
        with self._lock:
            return [self._settle(settle) for settle in settles]

    def _settle(self, settle: Settle) -> bool:
        key = (settle.delivery.event_id, settle.delivery.endpoint_id)
        d = self._pending.get(key)
        if d is None or d.attempts != settle.delivery.attempts:
            return False
        d.status, d.last_error = settle.status, settle.error
        d.next_at = settle.now if settle.next_at is None else settle.next_at
        if settle.status != "pending":
            d.ended_at = settle.now
            del self._pending[key]
        return True

    def next_delivery_at(self) -> int | None:
        with self._lock:
            return min((d.next_at for d in self._pending.values()), default=None)

    def delivery_stats(self) -> DeliveryStats:
        with self._lock:
            failed = sum(d.status == "failed" for d in self._deliveries.values())
            oldest = min((d.created_at for d in self._pending.values()), default=None)
            return DeliveryStats(len(self._pending), failed, oldest)

    def _drop_deliveries(self, which: Callable[[_Delivery], bool]) -> None:
        for key in [k for k, d in self._deliveries.items() if which(d)]:
            del self._deliveries[key]
            self._pending.pop(key, None)

    def input_of(self, object_id: str) -> Any:
        with self._lock:
            row = self._rows.get(object_id)
            if row is None:
                raise ObjectNotFoundError(object_id)
            return _clone(row.input)

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
        check_page_args(limit, order)
        with self._lock:
            ids = self._groups.get(group_id, []) if group_id is not None else list(self._rows)
            rows = [(self._rows[i], i) for i in ids if self._rows[i].kind == kind]
            if status is not None:
                rows = [(r, i) for r, i in rows if r.data["status"] == status.value]
            rows.sort(
                key=lambda ri: (ri[0].data["created_at"], ri[0].order), reverse=order == "desc"
            )
            listed = [i for _, i in rows]
            lo, hi = 0, len(listed)
            for param, cursor in (("after", after), ("before", before)):
                if cursor is not None and cursor not in listed:
                    raise cursor_error(param, cursor)
            if after is not None:
                lo = listed.index(after) + 1
            if before is not None:
                hi = listed.index(before)
            if before is not None and after is None:
                page = listed[max(lo, hi - limit) : hi]
                has_more = hi - limit > lo
            else:
                page = listed[lo : min(hi, lo + limit)]
                has_more = lo + limit < hi
            return Page([self._rows[i].stored().obj for i in page], has_more)

    def history(self, object_id: str) -> list[RunEvent]:
        with self._lock:
            row = self._rows.get(object_id)
            if row is None:
                raise ObjectNotFoundError(object_id)
            return [_own(event) for event in row.history]

    def events(
        self, after_seq: int = 0, object_id: str | None = None, limit: int = 100
    ) -> list[RunEvent]:
        with self._lock:
            if object_id is None:  # seq n is self._events[n - 1]: read on from there
                found: list[RunEvent] = []
                for event in itertools.islice(self._events, max(after_seq, 0), None):
                    if event is not None:
                        found.append(_own(event))
                        if len(found) == limit:
                            break
                return found
            row = self._rows.get(object_id)
            history = [] if row is None else row.history
            return [_own(e) for e in [e for e in history if (e.seq or 0) > after_seq][:limit]]

    def close(self) -> None:
        pass

    # --- internals ------------------------------------------------------------------------

    def _append(
        self, object_id: str, data: dict[str, Any], steps: Sequence[Transition]
    ) -> list[int]:
        seqs = []
        history = self._rows[object_id].history
        for step in steps:
            own = data if step.data is None else step.data
            number = history[-1].sequence_number + 1 if history else 0  # type: ignore[operator]
            event = step.to_event(object_id, own, len(self._events) + 1, number)
            self._events.append(event)
            history.append(event)
            seqs.append(len(self._events))
        if self.max_events is not None and len(history) > self.max_events:
            for dropped in history[: len(history) - self.max_events]:
                self._events[dropped.seq - 1] = None  # type: ignore[operator]
            del history[: len(history) - self.max_events]
        return seqs

    def _index(self, object_id: str, row: _Row, obj: Any) -> None:
        group = row.group_id
        if is_active(obj):
            if group is not None:
                self._active[group] = object_id
            if row.expires_at is not None:
                heapq.heappush(self._due[row.kind], (row.expires_at, row.version, object_id))
        else:
            if group is not None and self._active.get(group) == object_id:
                del self._active[group]
            if row.ended_at is not None:
                heapq.heappush(self._ended[row.kind], (row.ended_at, row.version, object_id))
        if is_waiting(obj):
            entry = (obj.created_at, row.order, row.version, object_id)
            heapq.heappush(self._queue[row.kind], entry)
        if row.lease_owner is not None and row.lease_expires_at is not None:
            heapq.heappush(self._leases[row.kind], (row.lease_expires_at, row.version, object_id))

    def _valid(self, entry: tuple[Any, ...]) -> _Row | None:
        row = self._rows.get(entry[-1])
        return row if row is not None and row.version == entry[-2] else None

    def _peek(self, heap: list[tuple[int, int, str]], now: int, limit: int) -> Iterator[_Row]:
        """The valid entries at the top of ``heap`` with a key <= now, left in place."""
        popped: list[tuple[int, int, str]] = []
        found: list[_Row] = []
        while heap and heap[0][0] <= now and len(found) < limit:
            entry = heapq.heappop(heap)
            row = self._valid(entry)
            if row is not None:
                popped.append(entry)
                found.append(row)
        for entry in popped:
            heapq.heappush(heap, entry)
        return iter(found)


def _own(event: RunEvent) -> RunEvent:
    """An event to hand out: its data copied (the stored event shares the object's
    stored dict, which nothing may change in place)."""
    return dataclasses.replace(event, data=_clone(event.data))
