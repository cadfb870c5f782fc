"""PostgresStore: runs in PostgreSQL, for services whose workers span machines.

The tables and the rules are the SQLite store's: a transition is a compare-and-set on
the run's version with its history rows in the same transaction, one active run per
thread is a partial unique index, and the sweeps read partial indexes. What differs:

- Every operation is one statement, one round trip, in autocommit: a worker's step is
  ``write_one`` (``sql/postgresql/queries.sql``: the compare-and-set, its event placed
  and inserted); a batch (a sweep, a write of several steps) is ``runstate_write_v10``
  (``migrations``); a create is ``insert_one``, or ``runstate_insert_v10`` with an
  idempotency key; a claim is ``claim``, which picks the
  oldest claimable row with ``FOR UPDATE SKIP LOCKED`` (concurrent workers take
  different runs instead of queueing on one) and takes the lifecycle's claim step on it
  in SQL, from the ``ClaimStep`` the engine hands over; the engine's own decision on
  the row as it was must agree (``claimed_from``).
- Many writers run at once (READ COMMITTED). The pool checks a connection before
  lending it with a ``select()`` on its socket, not a query, and takes the next at once
  when one is dead (``PostgresStore._connection``).
- No row is taken by every write. An event's place in the store-wide log is made from
  its transaction's id (``runstate_place_v9``); one object's writes are kept in commit
  order by the compare-and-set, which also requires the row's last writer to be an older
  transaction; and the store-wide ``events(after_seq=...)`` reads only below the oldest
  transaction still running, so an event that commits late is never passed over
  (migration 9 says why this holds).
- Other processes hear of a write through ``LISTEN/NOTIFY``, but the write does not
  notify: a notification's commit takes a lock of the whole database, which would line
  every write up again. The store queues the ids it wrote once they commit, and a thread
  of its own (``Notifier``) sends them in batches, at most one every two milliseconds.
- The tables live in their own schema (``runstate`` unless told), created or upgraded
  in place on open, in one transaction under an advisory lock.

psycopg (3) and psycopg_pool are imported when a store is made, so ``import runstate``
does not need them. ``psycopg`` errors become ``StoreError`` in ``_translate``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import json
import logging
import re
import select
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .._definitions import WEBHOOKS_OF
from .._errors import ActiveRunError, RunStateError, StoreError, ValidationError
from .._faces import Async, Plan, adrive, operation
from .._lifecycle import Transition
from .._validate import require_int, require_string
from .._webhooks import hooks_of
from ._base import (
    Claimed,
    ClaimStep,
    IdempotencyKey,
    KeyTaken,
    Now,
    StoredObject,
    Write,
    body_of,
    group_of,
    is_waiting,
    kept_changing,
    restore,
)
from ._bell import (
    ANY,
    CHANGED,
    WAITING,
    WEBHOOKS,
    Bell,
    object_of,
    ring_for,
    status_changed,
    told,
    won,
)
from ._sql import (
    Sql,
    SQLPlans,
    SyncSQL,
    Transaction,
    dumps,
    insert_params,
    key_params,
    load_migrations,
    load_queries,
    write_params,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

__all__ = ["AsyncPostgresStore", "PostgresStore"]
R = TypeVar("R")

log = logging.getLogger("runstate")
LOCK_SCHEMA = 0x52554E5301  # the advisory lock key that serialises schema changes
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SQL = load_queries("postgresql")
#: ``write_one`` for a step that makes a webhook event (``runstate._webhooks``): the
#: same statement with one more part, the outbox, which writes one pending delivery per
#: endpoint that takes the event's type, only if the write won; still one round trip.
WRITE_ONE_HOOKED = SQL["write_one"].replace(
    "\nSELECT (SELECT seq FROM e)",
    """, h AS (
    INSERT INTO webhook_deliveries (event_id, endpoint_id, object_id, type, created_at, next_at)
    SELECT %(hook_id)s, ep.id, w.id, %(hook_type)s, %(at)s, %(at)s
    FROM w JOIN webhook_endpoints ep ON ep.events ? %(hook_type)s
)
SELECT (SELECT seq FROM e)""",
)
MIGRATIONS = load_migrations("postgresql")
#: The schema version this code writes: the number of its last migration.
SCHEMA_VERSION = MIGRATIONS[-1][0]


class PostgresPlans(SQLPlans):
    """What both PostgreSQL stores do, each operation a plan (see ``SQLPlans``): the
    sync ``PostgresStore`` and the async ``AsyncPostgresStore`` differ only in their
    pools and drivers."""

    SQL = SQL
    picked_may_lose = True  # a write's check of the row's last writer (migration 9)
    schema_version = SCHEMA_VERSION  # what this code writes
    upgraded_from: int  # the version the schema had when opened (0: new)
    schema: str
    _psycopg: Any
    _channel: str
    _listener: Listener | None
    _notifier: Notifier

    @staticmethod
    def param(name: str) -> str:
        return f"%({name})s"

    def _setup(
        self, conninfo: str, options: dict[str, Any], schema: str, pg: Any, max_events: Any
    ) -> None:
        """What both stores keep: the schema, its channel and the bell, which starts a
        listener on the channel at its first wait (other processes' writes, pushed)."""
        if max_events is not None:
            self.max_events = require_int(max_events, "max_events")
        self.schema = schema
        self._conninfo = conninfo  # never shown: it may hold a password
        self._psycopg = pg
        self._driver_error = pg.Error  # what _perform translates, read on every statement
        self._channel = channel_of(schema)
        self.bell = Bell()
        self._listener = None
        self._notifier = Notifier(conninfo, options, self._channel)

        def listen() -> None:
            self._listener = Listener(conninfo, options, self._channel, self.bell)

        self.bell.on_first_wait = listen

    def __repr__(self) -> str:
        return f"{type(self).__name__}(schema={self.schema!r})"

    def _announce(self, written: Sequence[Any]) -> None:
        """Writes that committed: this process's waiters hear at once, other processes'
        through the notifier."""
        ring_for(self.bell, written)
        self._notifier.send(written)

    def _stop_feeds(self) -> None:
        """Stop listening, and send what the notifier still holds."""
        if self._listener is not None:
            self._listener.close()
        self._notifier.close()

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        """``psycopg``'s errors as runstate's (see ``_translated``)."""
        try:
            yield
        except self._psycopg.Error as exc:
            raise self._translated(exc) from exc

    def _translated(self, exc: Exception) -> StoreError:
        """The one place where ``psycopg`` errors become runstate's: on one line, and never
        with the connection string (psycopg's own message names the host and port at
        most)."""
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return StoreError(f"PostgreSQL (schema {self.schema}) cannot be used: {detail}")

    # --- writes (each a plan) ------------------------------------------------------------

    @operation
    def insert(
        self,
        obj: Any,
        steps: Sequence[Transition],
        input: Any = None,
        key: IdempotencyKey | None = None,
    ) -> Plan[list[int]]:
        """The object and its creation events (and its key remembered): one statement,
        one round trip (``insert_one``, or ``runstate_insert_v10`` with a key)."""
        sql, params = insert_statement(obj, steps, input, key)
        for _ in range(10):
            try:
                row = yield Sql(sql, params, "one")
            except StoreError as exc:
                # The group has an active object: the partial unique index refused ours.
                # Name the winner, or try again if it has finished meanwhile.
                if not isinstance(exc.__cause__, self._psycopg.errors.UniqueViolation):
                    raise
                group = group_of(obj)
                winner = yield Sql(SQL["active_of_group"], {"group_id": group}, "one")
                if winner:
                    raise ActiveRunError(str(group), winner[0]) from exc.__cause__
                continue
            seqs = inserted(row)
            if seqs is None:
                continue  # another create took the key meanwhile: look again
            yield from self._p_trim([Write(obj, 0, steps)], [seqs])
            self._announce([obj])
            return seqs
        raise kept_changing(obj)

    @operation
    def claim(
        self,
        now: Now,
        decide: Callable[[StoredObject, int], Write],
        *,
        kind: str,
        step: ClaimStep | None = None,
    ) -> Plan[Claimed | None]:
        """With ``step``: the ``claim`` statement, one round trip (the clock read just
        before it; ``FOR UPDATE SKIP LOCKED`` never waits). Without: the rows picked and
        written in a transaction, as every SQL store does (also for a lifecycle that tells
        webhook endpoints of its claim's status: that write carries the outbox)."""
        if step is None or step.dest in WEBHOOKS_OF.get(kind, ()):
            return (yield from self._p_claim_picked(now, decide, kind))
        t = now()
        row = yield Sql(SQL["claim"], claim_statement(step, kind, t), "one")
        claimed = claimed_from(row, kind, t, decide)
        if claimed is not None:
            yield from self._p_trim([claimed[0]], [claimed[1]])
            self._announce([claimed[0]])
        return claimed

    @operation
    def write(self, writes: Sequence[Write]) -> Plan[list[list[int] | None]]:
        """One statement, its own transaction (the connection is in autocommit)."""
        done = yield from self._p_write_batch(writes)
        self._announce(won(writes, done))  # committed
        return done

    def _p_write_batch(self, writes: Sequence[Write]) -> Plan[list[list[int] | None]]:
        """The one write path: every compare-and-set and its events in one statement,
        one round trip. Per write, its events' places in the log, or None if it lost."""
        if not writes:
            return []
        sql, params = write_statement_for(writes)
        row = yield Sql(sql, params, "one")
        done = written_from(writes, row)
        yield from self._p_trim(writes, done)  # only with max_events set
        return done


class PostgresStore(SyncSQL, PostgresPlans):
    """Objects in the PostgreSQL database ``conninfo`` names (a ``postgresql://`` URL or
    ``key=value`` pairs), in the schema ``schema``; a pool of up to ``max_size``
    connections serves the threads of this process."""

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "runstate",
        max_size: int = 8,
        connect_timeout: int = 10,
        max_events: int | None = None,
    ) -> None:
        pg, options = checked_options(conninfo, schema, max_size, connect_timeout)
        self._setup(conninfo, options, schema, pg, max_events)
        from psycopg_pool import ConnectionPool

        with self._translate():
            with pg.connect(conninfo, **options) as conn:
                self.upgraded_from = open_schema(conn, schema)
            self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                conninfo, **pool_options(options, max_size)
            )
            try:
                self._pool.open(wait=True, timeout=connect_timeout)
            except BaseException:
                self._pool.close()  # stop its workers from trying again in the background
                raise

    def close(self) -> None:
        self._stop_feeds()
        self._pool.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        """A live connection from the pool. One found dead (its backend killed, the
        server restarted: see ``_spoke_while_idle``) is closed, which makes the pool
        discard it, and the next is taken at once: psycopg_pool's own check would sleep
        0, 1, 2, 4... seconds between dead ones, and give up at its time-out when a
        restart left every pooled connection dead."""
        for _ in range(self._pool.max_size + 1):
            with self._pool.connection() as conn:
                if not _spoke_while_idle(conn):
                    yield conn
                    return
                conn.close()
        _raise_closed()  # pragma: no cover - the pool made a new one by then

    def _transaction_on(self, conn: Any) -> contextlib.AbstractContextManager[Any]:
        transaction: contextlib.AbstractContextManager[Any] = conn.transaction()
        return transaction


class AsyncPostgresStore(Async, PostgresPlans):
    """The same store on psycopg's async pool, for the async engines: the same schema,
    statements and plans, awaited, so a waiting call never blocks the event loop. Made by
    ``await AsyncPostgresStore.open(conninfo, schema=...)`` (which creates or upgrades
    the schema once, in a worker thread, as ``PostgresStore`` does)."""

    def __init__(self, pool: AsyncConnectionPool[Any], upgraded_from: int) -> None:
        self._pool = pool
        self.upgraded_from = upgraded_from

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

        store = cls.__new__(cls)
        store._setup(conninfo, options, schema, pg, max_events)
        with store._translate():
            upgraded_from = await asyncio.to_thread(upgrade)
            pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
                conninfo, **pool_options(options, max_size)
            )
            try:
                await pool.open(wait=True, timeout=connect_timeout)
            except BaseException:
                await pool.close()
                raise
        store.__init__(pool, upgraded_from)  # type: ignore[misc]
        return store

    async def close(self) -> None:
        await asyncio.to_thread(self._stop_feeds)
        await self._pool.close()

    async def _arun(self, plan: Plan[R], name: str, object_id: str | None) -> R:
        with self._translate():
            async with self._connection() as conn:
                return await adrive(plan, functools.partial(self._perform, conn), RunStateError)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """As ``PostgresStore._connection``, on the async pool."""
        for _ in range(self._pool.max_size + 1):
            async with self._pool.connection() as conn:
                if not _spoke_while_idle(conn):
                    yield conn
                    return
                await conn.close()
        _raise_closed()  # pragma: no cover - the pool made a new one by then

    async def _perform(self, conn: Any, step: Sql | Transaction) -> Any:
        """As ``SyncSQL._perform``, awaited."""
        try:
            if isinstance(step, Transaction):
                async with conn.transaction():
                    perform = functools.partial(self._perform, conn)
                    return await adrive(step.plan, perform, RunStateError)
            cursor = await conn.execute(step.sql, step.params)
            return await _answer(cursor, step.fetch)
        except self._psycopg.Error as exc:
            raise self._translated(exc) from exc


async def _answer(cursor: Any, fetch: str) -> Any:
    """``answer`` on an async cursor."""
    if fetch == "all":
        return await cursor.fetchall()
    if fetch == "one":
        return await cursor.fetchone()
    return cursor.rowcount


def write_statement_for(writes: Sequence[Write]) -> tuple[str, dict[str, Any]]:
    """The statement that makes ``writes``: ``write_one`` for one write of one step (a
    worker's step), the write function for anything else."""
    if len(writes) != 1 or len(writes[0].steps) != 1:
        return SQL["write"], {"writes": write_batch(writes)}
    (w,) = writes
    (step,) = w.steps
    params = {
        **write_params(w, dumps(body_of(w))),
        "event": step.event,
        "from_status": None if step.from_status is None else step.from_status.value,
        "to_status": step.to_status.value,
        "at": step.at,
        "data": None if step.data is None else dumps(step.data),
        "number": w.first_number,
    }
    hooks = hooks_of(w.obj, w.steps)
    if not hooks:
        return SQL["write_one"], params
    (hook,) = hooks  # one step makes at most one
    return WRITE_ONE_HOOKED, {**params, "hook_id": hook.id, "hook_type": hook.type}


def written_from(writes: Sequence[Write], row: Sequence[Any]) -> list[list[int] | None]:
    """Per write, its events' places (None if it lost), from the statement's row."""
    if len(writes) != 1 or len(writes[0].steps) != 1:
        result: list[list[int] | None] = row[0]
        return result
    return [None if row[0] is None else [row[0]]]


def channel_of(schema: str) -> str:
    """The notification channel of a schema's writes (the schema name is checked)."""
    return f"runstate_{schema}"


def parse_notification(payload: str) -> list[str]:
    """The bell's keys for one notification (see ``Notifier``)."""
    if payload == "*":
        return [ANY]
    keys = []
    for item in payload.split(","):
        object_id = item.rstrip("!@" + CHANGED)
        if object_id:
            keys.append(object_id)
        if CHANGED in item[len(object_id) :]:
            keys.append(object_id + CHANGED)
        if "!" in item[len(object_id) :]:
            keys.append(WAITING)
        if "@" in item[len(object_id) :]:
            keys.append(WEBHOOKS)
    return keys


def _flags(written: Any) -> str:
    """A notification's flags for one write: ``!`` waiting, ``^`` status changed, ``@``
    webhook deliveries made."""
    obj, changed = object_of(written), status_changed(written)
    return (
        ("!" if is_waiting(obj) else "")
        + (CHANGED if changed else "")
        + ("@" if changed and told(obj) else "")
    )


class Listener:
    """A daemon thread that ``LISTEN``s on a schema's channel and rings the bell for each
    notification; after a lost connection it reconnects (a second later) and rings
    ``ANY``, since notifications may have been missed meanwhile."""

    def __init__(self, conninfo: str, options: dict[str, Any], channel: str, bell: Bell) -> None:
        self._conninfo, self._options, self._channel, self._bell = conninfo, options, channel, bell
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="runstate-listen", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._conninfo,
                    autocommit=True,
                    application_name="runstate-listen",
                    **self._options,
                ) as conn:
                    conn.execute(f"LISTEN {self._channel}")
                    self._bell.ring([ANY])  # anything before the LISTEN was not heard
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._bell.ring(parse_notification(note.payload))
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    log.warning(
                        "runstate: the LISTEN connection of %s was lost (%s); reconnecting",
                        self._channel,
                        " ".join(str(exc).split()) or type(exc).__name__,
                        extra={"channel": self._channel},
                    )
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()


class Notifier:
    """Tells the schema's listeners in other processes which objects this process wrote,
    without making any write wait: ``send`` queues the ids of writes that committed, and
    a daemon thread, started at the first, sends what has queued on a connection of its
    own, as one ``NOTIFY`` statement (several payloads if the list is long), then lets
    ``interval`` seconds pass before the next, so that a busy process sends a few hundred
    notifications a second, however many writes it makes. A payload lists ids, ``id!``
    for one waiting for a worker now, ``id^`` for one whose status changed, ``id@`` for
    one whose write made webhook deliveries (see
    ``parse_notification``). After a lost
    connection it tries again a second later, keeping what it holds. ``close`` sends what
    is left (waiting at most ``grace`` seconds), as does the interpreter's exit."""

    PAYLOAD = 7000  # characters per NOTIFY payload (PostgreSQL's limit is 8000 bytes)
    MOST = 64  # payloads per statement; beyond, one "*" wakes every waiter

    def __init__(
        self, conninfo: str, options: dict[str, Any], channel: str, interval: float = 0.002
    ) -> None:
        self._conninfo, self._options, self._channel = conninfo, options, channel
        self._interval = interval
        self._cond = threading.Condition()
        self._pending: dict[str, str] = {}  # id: its flags ("!" waiting, "^" changed)
        self._closed = False
        self._thread: threading.Thread | None = None

    def send(self, written: Sequence[Any]) -> None:
        """Queue the ids of committed writes (``Write``s or objects)."""
        with self._cond:
            if self._closed:
                return
            self._queue((object_of(w).id, _flags(w)) for w in written)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="runstate-notify", daemon=True
                )
                self._thread.start()
                atexit.register(self.close)
            self._cond.notify()

    def _queue(self, items: Iterable[tuple[str, str]]) -> None:
        """Add ids to what is pending (under the lock), each with the flags any of its
        writes had."""
        pending = self._pending
        for object_id, flags in items:
            had = pending.get(object_id, "")
            pending[object_id] = had if flags in had else "".join(sorted(set(had + flags)))

    def payloads(self, batch: dict[str, str]) -> list[str]:
        """``batch`` as NOTIFY payloads of at most ``PAYLOAD`` characters each."""
        payloads: list[str] = []
        current = ""
        for object_id, flags in batch.items():
            item = object_id + flags
            if current and len(current) + 1 + len(item) > self.PAYLOAD:
                payloads.append(current)
                current = ""
            current = f"{current},{item}" if current else item
        payloads.append(current)
        return payloads if len(payloads) <= self.MOST else ["*"]

    def _loop(self) -> None:
        import psycopg

        conn: Any = None
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if not self._pending:  # closed, and everything sent
                    break
                batch, self._pending = self._pending, {}
            payloads = self.payloads(batch)
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(
                        self._conninfo,
                        autocommit=True,
                        application_name="runstate-notify",
                        **self._options,
                    )
                calls = ", ".join("pg_notify(%s, %s)" for _ in payloads)
                conn.execute(f"SELECT {calls}", [x for p in payloads for x in (self._channel, p)])
            except psycopg.Error as exc:
                with self._cond:
                    if self._closed:
                        break
                    self._queue(batch.items())  # kept for the next try
                log.warning(
                    "runstate: notifying %s failed (%s); trying again",
                    self._channel,
                    " ".join(str(exc).split()) or type(exc).__name__,
                    extra={"channel": self._channel},
                )
                time.sleep(1.0)
                continue
            time.sleep(self._interval)  # what queues meanwhile goes in the next batch
        if conn is not None:
            conn.close()

    def close(self, grace: float = 2.0) -> None:
        """Send what is queued (waiting at most ``grace`` seconds), then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(grace)
        atexit.unregister(self.close)


def write_batch(writes: Sequence[Write]) -> Any:
    """The one write path's argument: the writes and their numbered events, as jsonb."""
    from psycopg.types.json import Jsonb  # imported with the store; a lookup here

    return Jsonb([write_element(w) for w in writes])


def write_element(w: Write) -> dict[str, Any]:
    """One write of a batch, with its numbered events and its webhook events, if any."""
    hooks = hooks_of(w.obj, w.steps)
    if hooks:
        return write_element_of(w) | {"hooks": [[h.id, h.type, h.created_at] for h in hooks]}
    return write_element_of(w)


def write_element_of(w: Write) -> dict[str, Any]:
    return {
        **write_params(w, dumps(body_of(w))),
        "events": [
            [
                step.event,
                None if step.from_status is None else step.from_status.value,
                step.to_status.value,
                step.at,
                None if step.data is None else dumps(step.data),
                number,
            ]
            for number, step in enumerate(w.steps, w.first_number)
        ],
    }


def insert_statement(
    obj: Any, steps: Sequence[Transition], input: Any, key: IdempotencyKey | None
) -> tuple[str, dict[str, Any]]:
    """The create's one statement and its parameters: ``insert_one`` without a key;
    with one, ``runstate_insert_v10``'s argument (the key, the row and its first write)."""
    from psycopg.types.json import Jsonb

    first = Write(obj, 0, steps)
    body = dumps(obj.to_dict())
    if key is None:
        events = [
            {
                "event": step.event,
                "from_status": None if step.from_status is None else step.from_status.value,
                "to_status": step.to_status.value,
                "at": step.at,
                "data": None if step.data is None else dumps(step.data),
            }
            for step in steps
        ]
        return SQL["insert_one"], {
            **insert_params(obj, body, len(steps), input),
            "events": Jsonb(events),
        }
    return SQL["insert"], {
        "p": Jsonb(
            {
                "key": key_params(obj, key) | {"not_before": key.not_before},
                "row": insert_params(obj, body, 0, input),
                "write": write_element(first),
            }
        )
    }


def inserted(row: Any) -> list[int] | None:
    """The events' places from the create's answer; None for "look again" (another
    create took the key meanwhile); ``KeyTaken`` when the key names an object that
    exists."""
    result = row[0]
    if isinstance(result, list):  # insert_one
        return result
    if "taken" in result:
        raise KeyTaken(*result["taken"])
    if result.get("retry"):
        return None
    seqs: list[int] = result["seqs"]
    return seqs


def claim_statement(step: ClaimStep, kind: str, now: int) -> dict[str, Any]:
    """The ``claim`` statement's parameters."""
    return {
        "kind": kind,
        "now": now,
        "from": step.source,
        "to": step.dest,
        "event": step.event,
        "clear": step.clear,
        "stamp": step.stamp,
        "floors": ",".join(step.floors),
        "owner": step.owner,
        "lease_expires_at": now + step.lease_seconds,
    }


def claimed_from(
    row: Any, kind: str, now: int, decide: Callable[[StoredObject, int], Write]
) -> Claimed | None:
    """What the ``claim`` statement claimed, as the engine's write: the engine's decision
    on the row as it was, which must be what the database wrote."""
    if row is None:
        return None
    old, new, version, owner, lease_ends, attempts, event_count, expires_at, seq = row
    was = StoredObject(
        restore(kind, json.loads(old), expires_at),
        version,
        owner,
        lease_ends,
        attempts,
        event_count,
    )
    write = decide(was, now)
    made = json.loads(new)
    if body_of(write) != made or len(write.steps) != 1:
        raise StoreError(
            f"PostgreSQL's claim of {was.obj.id} wrote {made}, where the lifecycle decides "
            f"{body_of(write)}: the claim step and the declaration disagree (a bug in "
            f"runstate)."
        )
    return write, [seq]


def _first(cursor: psycopg.Cursor[Any]) -> Any:
    row = cursor.fetchone()
    return None if row is None else row[0]


def pool_options(options: dict[str, Any], max_size: int) -> dict[str, Any]:
    """How both stores' pools are made. Autocommit: a read is one round trip; writes open
    a transaction explicitly. No ``check``: the stores check a connection themselves as
    they take it (``_connection``), with no round trip and no sleep."""
    return {
        "kwargs": {**options, "autocommit": True},
        "min_size": 1,
        "max_size": max_size,
        "open": False,
        "name": "runstate",
    }


def _spoke_while_idle(conn: Any) -> bool:
    """Whether ``conn`` cannot be used: closed, or with something arrived on it while it
    sat idle in the pool. A healthy idle connection has nothing to say; a backend that
    was terminated (or a server that shut down) has sent its last message and closed the
    socket, which is then readable. One ``select`` with no wait: no round trip."""
    if conn.closed:
        return True
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    return bool(readable)


def _raise_closed() -> None:
    import psycopg

    raise psycopg.OperationalError("the server closed the connection while it was idle")


def checked_options(
    conninfo: str, schema: str, max_size: int, connect_timeout: int
) -> tuple[Any, dict[str, Any]]:
    """psycopg, and the options a connection to ``schema`` takes, once the arguments are
    checked (a bad connection string is refused without being quoted)."""
    if not isinstance(schema, str) or not _IDENTIFIER.fullmatch(schema):
        raise ValidationError(
            f"Invalid schema name {schema!r}: lower-case letters, digits and _ only.",
            param="schema",
        )
    require_string(conninfo, "conninfo")
    require_int(max_size, "max_size", maximum=1000)
    require_int(connect_timeout, "connect_timeout", maximum=3600)
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ImportError as exc:  # pragma: no cover - the test extra installs them
        raise StoreError("PostgresStore needs psycopg: pip install 'runstate[postgres]'.") from exc
    try:
        conninfo_to_dict(conninfo)
    except psycopg.Error:
        # psycopg's message quotes the string, password and all: never repeat it.
        raise ValidationError(
            "Invalid PostgreSQL connection string: use postgresql://user@host:port/db or "
            "key=value pairs.",
            param="conninfo",
        ) from None
    # Generic plans: psycopg prepares a statement run five times, and PostgreSQL would go
    # on planning each execution of the write statement afresh (its generic plan's
    # estimate looks dear), which costs more than executing it. Every statement here
    # reads by key or through a partial index, where a generic plan is the plan.
    options = f"-c search_path={schema} -c plan_cache_mode=force_generic_plan"
    return psycopg, {"options": options, "connect_timeout": connect_timeout}


def open_schema(conn: psycopg.Connection[Any], schema: str) -> int:
    """Create the schema, or upgrade it in place, in one transaction under an advisory
    lock (processes opening it at once take turns; the first upgrades, the others find it
    done); refuse a schema that is not ours or is newer. The version it had (0: new)."""
    conn.execute(SQL["lock_schema"], {"key": LOCK_SCHEMA})
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    ours = conn.execute(SQL["table_exists"], {"name": f"{schema}.runstate_meta"})
    runs = conn.execute(SQL["table_exists"], {"name": f"{schema}.runs"})
    if not _first(ours):
        if _first(runs):
            raise StoreError(f"Schema {schema} holds a runs table that is not runstate's.")
        version = 0
    else:
        found = _first(conn.execute(SQL["schema_version"]))
        version = int(found) if isinstance(found, str) and found.isdigit() else -1
        if not 0 < version <= SCHEMA_VERSION:
            raise StoreError(
                f"Schema {schema} has runstate schema version {found}; this runstate "
                f"reads versions up to {SCHEMA_VERSION}."
            )
    for _, script in MIGRATIONS[version:]:
        conn.execute(script)  # each step sets the version it brings
    return version
