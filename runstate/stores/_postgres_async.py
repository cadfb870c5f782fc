"""AsyncPostgresStore: the PostgreSQL store on psycopg's async pool, for the async engines.

The same schema, the same named statements and the same one write path as
``PostgresStore`` (``_postgres.py``), awaited: a waiting call never blocks the event
loop. Open one with ``await AsyncPostgresStore.open(conninfo, schema=...)`` (creating or
upgrading the schema in place is done once, in a worker thread, as ``PostgresStore``
does it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import ActiveRunError, ObjectNotFoundError, StoreError
from .._events import RunEvent
from .._lifecycle import Transition
from .._model import Status
from .._validate import require_int
from ._base import (
    Claimed,
    ClaimStep,
    IdempotencyKey,
    Now,
    Order,
    Page,
    Stats,
    StoredObject,
    Sweep,
    Write,
    group_of,
    kept_changing,
)
from ._bell import Bell, ring_for, ring_for_won
from ._postgres import (
    SQL,
    Listener,
    channel_of,
    checked_options,
    claim_statement,
    claimed_from,
    insert_statement,
    inserted,
    open_schema,
    pool_options,
    write_statement_for,
    written_from,
)
from ._sql import (
    DELETES,
    STATS_QUERIES,
    decided,
    event_from_row,
    list_plan,
    prune_statement,
    stats_from_rows,
    stored_from_row,
    trims,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import AsyncConnectionPool

__all__ = ["AsyncPostgresStore"]


class AsyncPostgresStore:
    """Objects in a PostgreSQL schema, through an async pool of up to ``max_size``
    connections. Made by ``await AsyncPostgresStore.open(...)``."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        schema: str,
        pg: Any,
        upgraded_from: int,
        listen: tuple[str, dict[str, Any]],
    ):
        self._pool = pool
        self.max_events: int | None = None  # the most events kept per object (None: all)
        self.schema = schema
        self._psycopg = pg
        self.upgraded_from = upgraded_from
        self._channel = channel_of(schema)
        self.bell = Bell()
        self._listener: Listener | None = None

        def start() -> None:  # on the first wait: other processes' writes, pushed
            self._listener = Listener(*listen, self._channel, self.bell)

        self.bell.on_first_wait = start

    @classmethod
    async def open(
        cls,
        conninfo: str,
        *,
        schema: str = "runstate",
        max_size: int = 8,
        connect_timeout: int = 10,
        max_events: int | None = None,
    ) -> AsyncPostgresStore:
        pg, options = checked_options(conninfo, schema, max_size, connect_timeout)
        if max_events is not None:
            require_int(max_events, "max_events")
        from psycopg_pool import AsyncConnectionPool

        def upgrade() -> int:
            with pg.connect(conninfo, **options) as conn:
                return open_schema(conn, schema)

        with _translate(pg, schema):
            upgraded_from = await asyncio.to_thread(upgrade)
            pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
                conninfo, **pool_options(AsyncConnectionPool, options, max_size)
            )
            try:
                await pool.open(wait=True, timeout=connect_timeout)
            except BaseException:
                await pool.close()
                raise
        store = cls(pool, schema, pg, upgraded_from, (conninfo, options))
        store.max_events = max_events
        return store

    def __repr__(self) -> str:
        return f"AsyncPostgresStore(schema={self.schema!r})"

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        await self._pool.close()

    # --- connections -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        with _translate(self._psycopg, self.schema):
            async with self._pool.connection() as conn, conn.transaction():
                yield conn

    async def _read(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        with _translate(self._psycopg, self.schema):
            async with self._pool.connection() as conn:
                cursor = await conn.execute(sql, params)
                rows: list[Any] = await cursor.fetchall()
                return rows

    async def _write(
        self, conn: psycopg.AsyncConnection[Any], writes: Sequence[Write]
    ) -> list[list[int] | None]:
        sql, params = write_statement_for(writes, self._channel)
        cursor = await conn.execute(sql, params)
        row = await cursor.fetchone()
        assert row is not None
        result = written_from(writes, row)
        for params in trims(self.max_events, writes, result):  # only with max_events set
            await conn.execute(SQL["trim_events"], params)
        return result

    # --- writes ------------------------------------------------------------------------------

    async def insert(
        self,
        obj: Any,
        steps: Sequence[Transition],
        input: Any = None,
        key: IdempotencyKey | None = None,
    ) -> list[int]:
        """As ``PostgresStore.insert``: one statement, ``runstate_insert_v7``."""
        sql, params = insert_statement(obj, steps, input, key, self._channel)
        for _ in range(10):
            try:
                with _translate(self._psycopg, self.schema):
                    async with self._pool.connection() as conn:
                        cursor = await conn.execute(sql, params)
                        seqs = inserted(await cursor.fetchone())
                        if seqs is None:
                            continue  # another create took the key meanwhile: look again
                        for trim in trims(self.max_events, [Write(obj, 0, steps)], [seqs]):
                            await conn.execute(SQL["trim_events"], trim)
                ring_for(self.bell, [obj])
                return seqs
            except StoreError as exc:
                if not isinstance(exc.__cause__, self._psycopg.errors.UniqueViolation):
                    raise
                group = group_of(obj)
                winner = await self._read(SQL["active_of_group"], {"group_id": group})
                if winner:
                    raise ActiveRunError(str(group), winner[0][0]) from exc.__cause__
        raise kept_changing(obj)

    async def write(self, writes: Sequence[Write]) -> list[list[int] | None]:
        with _translate(self._psycopg, self.schema):
            async with self._pool.connection() as conn:
                done = await self._write(conn, writes)
        ring_for_won(self.bell, writes, done)
        return done

    async def claim(
        self,
        now: Now,
        decide: Callable[[StoredObject, int], Write],
        *,
        kind: str,
        step: ClaimStep | None = None,
    ) -> Claimed | None:
        if step is not None:  # as PostgresStore.claim: one statement
            with _translate(self._psycopg, self.schema):
                async with self._pool.connection() as conn:
                    t = now()
                    params = claim_statement(step, kind, t, self._channel)
                    cursor = await conn.execute(SQL["claim"], params)
                    claimed = claimed_from(await cursor.fetchone(), kind, t, decide)
                    if claimed is not None:
                        for trim in trims(self.max_events, [claimed[0]], [claimed[1]]):
                            await conn.execute(SQL["trim_events"], trim)
            if claimed is not None:
                ring_for(self.bell, [claimed[0]])
            return claimed
        picked = await self._pick_and_write("claimable", now, decide, 1, kind)
        return picked[0] if picked else None

    async def sweep(
        self,
        which: Sweep,
        now: Now,
        decide: Callable[[StoredObject, int], Write | None],
        limit: int,
        *,
        kind: str,
    ) -> list[Claimed]:
        return await self._pick_and_write(which, now, decide, limit, kind)

    async def _pick_and_write(
        self,
        query: str,
        now: Now,
        decide: Callable[[StoredObject, int], Write | None],
        limit: int,
        kind: str,
    ) -> list[Claimed]:
        """As ``SQLStore._pick_and_write``: rows locked, the clock read, decided, written."""
        async with self._transaction() as conn:
            t = now()
            cursor = await conn.execute(SQL[query], {"now": t, "limit": limit, "kind": kind})
            writes = decided(await cursor.fetchall(), t, decide)
            if not writes:
                return []
            done: list[Claimed] = []
            for write, seqs in zip(writes, await self._write(conn, writes), strict=True):
                assert seqs is not None  # locked by us: nothing moved
                done.append((write, seqs))
        ring_for(self.bell, writes)  # committed
        return done

    async def prune(
        self, kind: str, *, before: int, statuses: Sequence[str], limit: int
    ) -> list[str]:
        sql, params = prune_statement(SQL, _param, kind, before, statuses, limit)
        async with self._transaction() as conn:
            cursor = await conn.execute(sql, params)
            ids = [row[0] for row in await cursor.fetchall()]
            for object_id in ids:
                for name in DELETES:
                    await conn.execute(SQL[name], {"id": object_id})
        return ids

    async def delete(self, object_id: str) -> bool:
        async with self._transaction() as conn:
            for name in DELETES:  # the last deletes the object itself
                cursor = await conn.execute(SQL[name], {"id": object_id})
            deleted: bool = cursor.rowcount == 1
            return deleted

    # --- reads ------------------------------------------------------------------------------

    async def get(self, object_id: str) -> StoredObject:
        rows = await self._read(SQL["get_run"], {"id": object_id})
        if not rows:
            raise ObjectNotFoundError(object_id)
        return stored_from_row(rows[0])

    async def input_of(self, object_id: str) -> Any:
        rows = await self._read(SQL["input_of"], {"id": object_id})
        if not rows:
            raise ObjectNotFoundError(object_id)
        return None if rows[0][0] is None else json.loads(rows[0][0])

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
        plan = list_plan(SQL, _param, group_id, kind, status, limit, order, after, before)
        try:
            sql, params = next(plan)
            while True:
                sql, params = plan.send(await self._read(sql, params))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def stats(self, now: int) -> Stats:
        queries = {name: await self._read(SQL[name], {"now": now}) for name in STATS_QUERIES}
        return stats_from_rows(queries)

    async def history(self, object_id: str) -> list[RunEvent]:
        rows = await self._read(SQL["history"], {"run_id": object_id})
        if not rows and not await self._read(SQL["run_exists"], {"id": object_id}):
            raise ObjectNotFoundError(object_id)
        return [event_from_row(row) for row in rows]

    async def events(
        self, after_seq: int = 0, object_id: str | None = None, limit: int = 100
    ) -> list[RunEvent]:
        params = {"after_seq": after_seq, "run_id": object_id, "limit": limit}
        name = "events" if object_id is None else "events_of_run"
        return [event_from_row(row) for row in await self._read(SQL[name], params)]


def _param(name: str) -> str:
    return f"%({name})s"


@contextlib.contextmanager
def _translate(pg: Any, schema: str) -> Any:
    """psycopg's errors as runstate's, on one line and never with the connection string."""
    try:
        yield
    except pg.Error as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise StoreError(f"PostgreSQL (schema {schema}) cannot be used: {detail}") from exc
