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
import inspect
from collections.abc import Callable
from typing import Any

from ._base import Store, WebhookStore, takes_keyword

__all__ = ["AsyncStore"]


class AsyncStore:
    """``store``'s protocol as coroutines (see the module): each method of the protocol
    is the sync store's, awaited (made below from the protocol's declaration)."""

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


def _awaitable(name: str) -> Callable[..., Any]:
    """``AsyncStore``'s method ``name``: the sync store's, awaited (see ``_call``), with
    the protocol's signature and docstring."""
    declared = getattr(WebhookStore, name)

    async def method(self: AsyncStore, *args: Any, **kwargs: Any) -> Any:
        if name == "claim" and not self._claim_takes_step:
            kwargs.pop("step", None)  # a store written before claims took it
        return await self._call(getattr(self.sync, name), *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = declared.__doc__
    method.__signature__ = inspect.signature(declared)  # type: ignore[attr-defined]
    return method


#: The store protocol's methods (and the webhook store's), each the sync store's awaited.
for _name in (n for p in (Store, WebhookStore) for n in vars(p) if not n.startswith("_")):
    setattr(AsyncStore, _name, _awaitable(_name))
