"""GroupCommit: the writes of many objects' operations, stored together.

A gateway stores every delta before any client sees it, for hundreds of responses at
once: one transaction per delta would spend the database on commits. ``GroupCommit``
wraps an async store so that the writes made while one is in flight wait for it and
then go as one ``write`` (one statement, one transaction, one commit): each write is
still its own compare-and-set (one that lost is retried by its engine as before) and
each caller still learns of its own result only once it is stored. When nothing is in
flight a write goes at once, so it costs an idle engine one turn of the event loop and
a busy one a wait of at most one write. Every other call is the wrapped store's.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .._errors import StoreError
from ._base import Write

__all__ = ["Gather", "GroupCommit"]

#: What the callers of a write hear when the task writing it was cancelled.
ABANDONED = "The write was abandoned: the task writing it for the group was cancelled."
#: The most writes one transaction carries (what waits beyond goes in the next).
MAX_BATCH = 512


class Gather:
    """``send(items) -> results`` (one result per item), its calls gathered: those made
    while one is in flight wait for it, then go together as one call (at most
    ``max_batch`` items; ``key`` orders them, if given). Each caller gets its own
    items' results, or the error of the call that carried them (a copy of its own)."""

    def __init__(
        self,
        send: Callable[[list[Any]], Awaitable[Sequence[Any]]],
        *,
        max_batch: int = MAX_BATCH,
        key: Callable[[Any], Any] | None = None,
    ) -> None:
        self.send = send
        self.max_batch = max_batch
        self.key = key
        self._waiting: list[tuple[Sequence[Any], asyncio.Future[Any]]] = []
        self._flushing = False
        self._flusher: asyncio.Future[None] | None = None
        #: Calls of ``send`` made (for benchmarks and tests).
        self.batches = 0

    async def __call__(self, items: Sequence[Any]) -> list[Any]:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((items, done))
        if not self._flushing:
            self._flushing = True
            # After this turn: what else comes meanwhile joins. Kept, so it is not collected.
            self._flusher = asyncio.ensure_future(self._flush())
        result: list[Any] = await done
        return result

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                await self._send(batch)
        finally:
            self._flushing = False

    async def _send(self, batch: list[tuple[Sequence[Any], asyncio.Future[Any]]]) -> None:
        order = [(i, j) for i, (items, _) in enumerate(batch) for j in range(len(items))]
        if self.key is not None:
            key = self.key
            order.sort(key=lambda ij: (key(batch[ij[0]][0][ij[1]]), ij))
        try:
            results = await self.send([batch[i][0][j] for i, j in order])
        except Exception as exc:  # each caller gets the error, a copy of its own
            for _, done in batch:
                if not done.done():
                    done.set_exception(_own(exc))
            return
        except BaseException:  # the flush itself was cancelled (its loop is stopping)
            for _, done in batch:
                if not done.done():
                    done.set_exception(StoreError(ABANDONED))
            raise
        self.batches += 1
        answers: list[list[Any]] = [[None] * len(items) for items, _ in batch]
        for (i, j), result in zip(order, results, strict=True):
            answers[i][j] = result
        for (_, done), answer in zip(batch, answers, strict=True):
            if not done.done():
                done.set_result(answer)


class GroupCommit:
    """``store`` (an async store), its ``write`` calls gathered (see the module)."""

    def __init__(self, store: Any, *, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        # In object order, so that two processes' transactions lock rows in one order.
        self._writes = Gather(store.write, max_batch=max_batch, key=lambda w: w.obj.id)

    def __repr__(self) -> str:
        return f"GroupCommit({self.store!r})"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)  # the rest of the protocol, as it is

    @property
    def batches(self) -> int:
        """Transactions written (for benchmarks and tests)."""
        return self._writes.batches

    async def write(self, writes: Sequence[Write]) -> list[list[int] | None]:
        written: list[list[int] | None] = await self._writes(writes)
        return written


def _own(exc: Exception) -> Exception:
    """A copy of ``exc`` for one caller: one exception raised in many tasks would gather
    every task's traceback."""
    mine = copy.copy(exc)
    mine.__cause__, mine.__traceback__ = exc.__cause__, None
    return mine
