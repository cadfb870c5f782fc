"""AsyncStore: any store, awaitable, for the async engines.

Each call of the store protocol is awaited. ``offload=True`` (the default) runs it in a
worker thread (``asyncio.to_thread``), so a store that waits (SQLite's write lock, a
disk) never blocks the event loop; ``offload=False`` calls it in the loop, for the
memory store, whose calls only take its lock for microseconds. PostgreSQL has a native
async store, ``AsyncPostgresStore``. ``bench/async_stores.py`` measured the choice for
SQLite against aiosqlite (README: "The async engines").
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import Any

from .._events import RunEvent
from .._lifecycle import Transition
from .._model import Status
from ._base import (
    Claimed,
    ClaimStep,
    IdempotencyKey,
    Now,
    Order,
    Page,
    Stats,
    Store,
    StoredObject,
    Sweep,
    Write,
    takes_keyword,
)

__all__ = ["AsyncStore"]


class AsyncStore:
    """``store``'s protocol as coroutines (see the module)."""

    def __init__(self, store: Store, *, offload: bool = True) -> None:
        self.sync = store
        self._offload = offload
        self.bell = getattr(store, "bell", None)  # the same changes, heard the same way
        self._claim_takes_step = takes_keyword(store.claim, "step")

    def __repr__(self) -> str:
        return f"AsyncStore({self.sync!r})"

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._offload:
            return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))
        return fn(*args, **kwargs)

    async def insert(
        self,
        obj: Any,
        steps: Sequence[Transition],
        input: Any = None,
        key: IdempotencyKey | None = None,
    ) -> list[int]:
        result: list[int] = await self._call(self.sync.insert, obj, steps, input, key)
        return result

    async def get(self, object_id: str) -> StoredObject:
        result: StoredObject = await self._call(self.sync.get, object_id)
        return result

    async def input_of(self, object_id: str) -> Any:
        return await self._call(self.sync.input_of, object_id)

    async def prune(
        self, kind: str, *, before: int, statuses: Sequence[str], limit: int
    ) -> list[str]:
        result: list[str] = await self._call(
            self.sync.prune, kind, before=before, statuses=statuses, limit=limit
        )
        return result

    async def delete(self, object_id: str) -> bool:
        result: bool = await self._call(self.sync.delete, object_id)
        return result

    async def write(self, writes: Sequence[Write]) -> list[list[int] | None]:
        result: list[list[int] | None] = await self._call(self.sync.write, writes)
        return result

    async def claim(
        self,
        now: Now,
        decide: Callable[[StoredObject, int], Write],
        *,
        kind: str,
        step: ClaimStep | None = None,
    ) -> Claimed | None:
        extra = {"step": step} if self._claim_takes_step else {}
        result: Claimed | None = await self._call(self.sync.claim, now, decide, kind=kind, **extra)
        return result

    async def sweep(
        self,
        which: Sweep,
        now: Now,
        decide: Callable[[StoredObject, int], Write | None],
        limit: int,
        *,
        kind: str,
    ) -> list[Claimed]:
        result: list[Claimed] = await self._call(
            self.sync.sweep, which, now, decide, limit, kind=kind
        )
        return result

    async def list_objects(
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
        result: Page = await self._call(
            self.sync.list_objects,
            group_id,
            kind=kind,
            status=status,
            limit=limit,
            order=order,
            after=after,
            before=before,
        )
        return result

    async def stats(self, now: int) -> Stats:
        result: Stats = await self._call(self.sync.stats, now)
        return result

    async def history(self, object_id: str) -> list[RunEvent]:
        result: list[RunEvent] = await self._call(self.sync.history, object_id)
        return result

    async def events(
        self, after_seq: int = 0, object_id: str | None = None, limit: int = 100
    ) -> list[RunEvent]:
        result: list[RunEvent] = await self._call(self.sync.events, after_seq, object_id, limit)
        return result

    async def close(self) -> None:
        await self._call(self.sync.close)
