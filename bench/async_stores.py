"""How should the async engines reach SQLite: worker threads, or aiosqlite?

The async engine's SQLite store is ``AsyncStore(SQLiteStore(...))``: each store call runs
in a worker thread (``asyncio.to_thread``), on the store's own pooled connections and
SQL. The alternative is aiosqlite, which also runs sqlite3 in a thread (one per
connection) and hands each statement across. Measured in this one process, on one file
(WAL, synchronous=NORMAL), best of several interleaved rounds:

- the floor: the same read (one row by id) and the same write (one autocommit UPDATE of
  one row) made with sqlite3 directly in the event loop, which blocks it;
- aiosqlite: the same statements, awaited;
- ``AsyncStore``: ``store.get`` and a one-row ``store.write`` through a worker thread;
- what a transition costs each way: through ``AsyncStore``, a read and a write (two
  thread hops, every statement inside them run in the thread); through aiosqlite, its
  five statements (BEGIN IMMEDIATE, SELECT, UPDATE, INSERT of the event, COMMIT), each
  one awaited.

It also counts how long the event loop is stalled while 200 reads run, with a ticker
task beside them (the whole point of going off the loop). Run:
``.venv/bin/python bench/async_stores.py`` (aiosqlite comes with the ``bench`` extra,
which ``make`` installs).
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from runstate import AsyncStore, ManualClock, RunEngine, SQLiteStore
from runstate.stores import Write

N = 400


async def timed(fn: Callable[[], Awaitable[Any]], n: int = N) -> float:
    t = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - t) / n


async def stall(fn: Callable[[], Awaitable[Any]], n: int = 200) -> float:
    """The longest the loop went without running a ticker task while ``fn`` ran ``n``
    times: what a server's other requests would wait."""
    longest = 0.0
    done = False

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)  # the ticker is running
    for _ in range(n):
        await fn()
    done = True
    await task  # its last gap spans whatever blocked the loop at the end
    return longest


async def main() -> None:
    import aiosqlite

    folder = Path(tempfile.mkdtemp())
    path = folder / "async.db"
    sync_store = SQLiteStore(path)
    engine = RunEngine(sync_store, clock=ManualClock(1_700_000_000), ttl=10**9)
    run = engine.create(thread_id="t", assistant_id="a")
    store = AsyncStore(sync_store)

    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA synchronous = NORMAL")
    aio = await aiosqlite.connect(path, isolation_level=None)
    await aio.execute("PRAGMA synchronous = NORMAL")
    select = "SELECT body, version FROM runs WHERE id = ?"
    update = "UPDATE runs SET attempts = attempts + 0 WHERE id = ?"

    async def floor_read() -> Any:
        return raw.execute(select, (run.id,)).fetchone()

    async def floor_write() -> Any:
        return raw.execute(update, (run.id,))

    async def aio_read() -> Any:
        cursor = await aio.execute(select, (run.id,))
        return await cursor.fetchone()

    async def aio_write() -> Any:
        return await aio.execute(update, (run.id,))

    async def aio_transition() -> Any:
        # What one engine transition is on SQLite, statement by statement: each awaited.
        await aio.execute("BEGIN IMMEDIATE")
        cursor = await aio.execute(select, (run.id,))
        await cursor.fetchone()
        await aio.execute(update, (run.id,))
        await aio.execute(
            "INSERT INTO run_events (run_id, event, from_status, to_status, at, data, number) "
            "VALUES (?, 'bench', 'queued', 'queued', 0, '{}', NULL)",
            (run.id,),
        )
        await aio.execute("COMMIT")

    async def store_read() -> Any:
        return await store.get(run.id)

    async def store_write() -> Any:
        stored = await store.get(run.id)
        write = Write(stored.obj, stored.version, [], None, None, 0, stored.event_count)
        return await store.write([write])

    names = ["floor read", "aiosqlite read", "AsyncStore.get", "floor write", "aiosqlite write"]
    names += ["aiosqlite transition", "AsyncStore get+write"]
    fns = [floor_read, aio_read, store_read, floor_write, aio_write, aio_transition, store_write]
    best = [float("inf")] * len(fns)
    for _ in range(5):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], await timed(fn))
    print(f"SQLite from asyncio, best of 5 interleaved rounds of {N}")
    for name, value in zip(names, best, strict=True):
        print(f"   {name:<24}{value * 1e6:8.1f} us")
    print(f"   aiosqlite read / floor  {best[1] / best[0]:8.2f}x")
    print(f"   AsyncStore.get / floor  {best[2] / best[0]:8.2f}x")
    print(f"   AsyncStore.get / aiosqlite read  {best[2] / best[1]:5.2f}x")
    print(f"   AsyncStore get+write / aiosqlite transition  {best[6] / best[5]:5.2f}x")
    print("longest loop stall while 200 reads run")
    for name, fn in (("sqlite3 in the loop", floor_read), ("aiosqlite", aio_read)):
        print(f"   {name:<24}{await stall(fn) * 1e6:8.1f} us")
    print(f"   {'AsyncStore (threads)':<24}{await stall(store_read) * 1e6:8.1f} us")
    await aio.close()
    raw.close()
    engine.close()


if __name__ == "__main__":
    asyncio.run(main())
