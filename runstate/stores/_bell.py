"""Bell: how a store tells waiting followers and workers that something changed.

A bell numbers its rings, and remembers the number of each key's last ring (a key: an
object's id; ``WAITING`` for "work may be claimable"). A waiter takes the number first
(``mark``), reads the store, and then waits until its key (or ``ANY``) is rung after its
mark, or its timeout passes: so a ring between its read and its wait is never missed.
It remembers at most ``REMEMBERED`` keys: past that it forgets them all at once and
counts every older mark as rung (a waiter wakes for nothing and reads again, the price
of a bell whose memory does not grow with every object a process ever wrote). Threads
wait on a condition; coroutines on an ``asyncio.Event`` set from whichever thread rings.

Who rings: every store rings for its own writes, in this process, as they commit. What
other processes write reaches the bell by the store's own means: PostgreSQL's
``LISTEN/NOTIFY`` (``_postgres.py``), or for SQLite a poller thread that reads the
events committed since it last looked, with a back-off that stays short while things
change and grows to ``max_interval`` while nothing does (``Feed``). A follower
also re-reads after a slow fallback timeout of its own, because a notification can be
missed (a dropped connection, a waiter that came late).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._definitions import WAITING_OF, WEBHOOKS_OF

__all__ = ["ANY", "WAITING", "WEBHOOKS", "Bell", "changed_key", "waiting_statuses"]

#: The most keys a bell remembers (see the module's docstring).
REMEMBERED = 10_000

#: The key rung when an object may have become claimable (created, requeued, resumed).
WAITING = "<waiting>"
#: The key rung when a write may have made webhook deliveries (``runstate.webhooks``).
WEBHOOKS = "<webhooks>"
#: The key rung for "anything may have changed" (a notification too big to list ids).
ANY = "<any>"


class Bell:
    """Numbered rings and each key's last one, rung by writers, waited on by threads and
    coroutines (see the module)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._serial = 0  # how many rings there have been
        self._rung: dict[str, int] = {}  # a key's last ring
        self._forgot = 0  # the rings up to here are forgotten: an older mark has moved
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = (
            defaultdict(set)
        )
        self.on_first_wait: Callable[[], None] | None = None  # starts a cross-process feed
        # Rings count only once somebody has marked a key: until then nobody can be
        # waiting, and a writer's ring is one attribute read. A mark made before a
        # write's commit is seen by the ring after it; a mark made after the commit is
        # followed by a read of the store that sees the write. Either way nothing is
        # missed.
        self._marked = False

    def ring(self, keys: Iterable[str]) -> None:
        """Number this ring, record it as each key's last, and wake whoever waits on them
        (``ANY`` wakes every waiter: rung only when it is not known what changed)."""
        if not self._marked:
            return
        wake: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        with self._cond:
            self._serial += 1
            serial = self._serial
            rung = self._rung
            if len(rung) >= REMEMBERED:
                rung.clear()
                self._forgot = serial - 1
            for key in keys:
                rung[key] = serial
                wake.extend(self._waiters.pop(key, ()))
            self._cond.notify_all()
        for loop, event in wake:
            with contextlib.suppress(RuntimeError):  # the waiter's loop has closed
                loop.call_soon_threadsafe(event.set)

    def mark(self, key: str) -> int:
        """Where the rings stand now: wait for ``key`` to be rung after here."""
        self._marked = True
        self._feed()
        with self._cond:
            return self._serial

    def _moved(self, key: str, mark: int) -> bool:
        rung = self._rung
        return mark < self._forgot or rung.get(key, 0) > mark or rung.get(ANY, 0) > mark

    def wait(self, key: str, mark: int, timeout: float) -> bool:
        """Block until ``key`` (or ``ANY``) is rung after ``mark``, or ``timeout`` seconds;
        whether it was rung."""
        with self._cond:
            return self._cond.wait_for(lambda: self._moved(key, mark), timeout)

    async def wait_async(self, key: str, mark: int, timeout: float) -> bool:
        """The same for a coroutine: the event loop goes on meanwhile."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._cond:
            if self._moved(key, mark):
                return True
            self._waiters[key].add(entry)
            self._waiters[ANY].add(entry)
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancel that comes
            # as the bell rings, and the waiter would wait on for its whole timeout.
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            with self._cond:
                for k in (key, ANY):
                    waiting = self._waiters.get(k)
                    if waiting is not None:
                        waiting.discard(entry)
                        if not waiting:
                            del self._waiters[k]
        with self._cond:
            return self._moved(key, mark)

    def _feed(self) -> None:
        start, self.on_first_wait = self.on_first_wait, None
        if start is not None:
            start()


def waiting_statuses() -> frozenset[str]:
    """Every status that workers of some kind claim from (a feed that reads only an
    event's status rings ``WAITING`` for any of them: at worst a claim looks for
    nothing)."""
    return frozenset().union(*WAITING_OF.values())


def object_of(written: Any) -> Any:
    """The object of a ``Write``, or the object itself."""
    return getattr(written, "obj", written)


def won(writes: Sequence[Any], done: Sequence[Any]) -> list[Any]:
    """The writes of a batch that won (``done``: per write, None if it lost)."""
    return [w for w, seqs in zip(writes, done, strict=True) if seqs is not None]


def ring_for_won(bell: Bell, writes: Sequence[Any], done: Sequence[Any]) -> None:
    """Ring for the writes of a batch that won."""
    ring_for(bell, won(writes, done))


def changed_key(object_id: str) -> str:
    """The key rung when the object's status changes (its id is rung for every write):
    what a wait for a status, such as a worker's watch for a cancel, waits on, so that
    the writes of its own stream do not wake it."""
    return object_id + CHANGED


#: What ``changed_key`` adds to an id (never part of one).
CHANGED = "^"


def status_changed(written: Any) -> bool:
    """Whether a ``Write`` moves its object to another status (a new object does)."""
    steps = getattr(written, "steps", None)
    return steps is None or any(step.from_status != step.to_status for step in steps)


def ring_for(bell: Bell, writes: Iterable[Any]) -> None:
    """Ring for objects just written (``Write``s or objects): each id, its
    ``changed_key`` where its status changed, and ``WAITING`` where one waits for a
    worker now."""
    keys: list[str] = []
    for written in writes:
        obj = object_of(written)
        keys.append(obj.id)
        changed = status_changed(written)
        if changed:
            keys.append(obj.id + CHANGED)
        if obj.status in WAITING_OF[obj.KIND]:
            keys.append(WAITING)
        if changed and told(obj):
            keys.append(WEBHOOKS)
    if keys:
        bell.ring(keys)


def told(obj: Any) -> bool:
    """Whether ``obj`` is in a status told to webhook endpoints (a write that moved it
    there made webhook deliveries)."""
    return obj.status.value in WEBHOOKS_OF.get(obj.KIND, ())


def webhook_statuses() -> frozenset[str]:
    """Every status told to webhook endpoints, of any kind (a feed that reads only an
    event's status rings ``WEBHOOKS`` for any of them)."""
    return frozenset(s for statuses in WEBHOOKS_OF.values() for s in statuses)


class Feed:
    """A daemon thread that brings other processes' changes to a bell: ``poll(last)``
    returns the keys changed since ``last`` and the new ``last`` (or raises: the feed
    rings ``ANY`` and tries again). It waits ``min_interval`` after a change and backs
    off, doubling, to ``max_interval`` while nothing changes. ``close()`` stops it."""

    def __init__(
        self,
        bell: Bell,
        poll: Callable[[Any], tuple[list[str], Any]],
        start: Any,
        *,
        min_interval: float = 0.01,
        max_interval: float = 0.25,
        name: str = "runstate-feed",
    ) -> None:
        self._bell = bell
        self._poll = poll
        self._last = start
        self._min, self._max = min_interval, max_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        interval = self._min
        while not self._stop.wait(interval):
            try:
                keys, self._last = self._poll(self._last)
            except Exception:
                keys, interval = [ANY], self._max
            if keys:
                self._bell.ring(keys)
                interval = self._min
            else:
                interval = min(interval * 2, self._max)

    def close(self) -> None:
        self._stop.set()
