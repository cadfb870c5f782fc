"""What the SQL stores share: their SQL files, rows to objects and events, and every
operation but the writes, each a plan of statements that a driver runs.

Each backend keeps its SQL in ``sql/<backend>/``: ``queries.sql`` holds every statement
as a named block (``-- get_run --``, a line saying what it does, the statement, with
named parameters: ``:name`` for SQLite, ``%(name)s`` for PostgreSQL), and
``migrations/NNNN_*.sql`` the schema, one numbered step per version. A new database is
made by applying every step from 0001, an older one by applying the steps it lacks, so
there is one path to each version. Both backends keep the same two tables (``runs``,
``run_events``), so a row reads back the same way from either.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import AbstractContextManager
from importlib.resources import files
from typing import Any, ClassVar, TypeVar

from .._errors import ObjectNotFoundError, RunStateError, StoreError
from .._events import RunEvent
from .._faces import Plan, Sync, drive, operation
from .._model import Status
from .._webhooks import Delivery, DeliveryStats, Endpoint, Settle
from ._base import (
    Claimed,
    ClaimStep,
    IdempotencyKey,
    KindStats,
    Now,
    Order,
    Page,
    Stats,
    StoredObject,
    Sweep,
    Write,
    check_page_args,
    cursor_error,
    group_of,
    is_active,
    is_waiting,
    kind_figures,
    restore,
)
from ._bell import Bell, ring_for

R = TypeVar("R")
_BLOCK = re.compile(r"^-- (\w+) --\n(.*?)(?=^-- \w+ --\n|\Z)", re.MULTILINE | re.DOTALL)


def load_queries(backend: str) -> dict[str, str]:
    """The named statements of ``sql/<backend>/queries.sql``: name to statement."""
    text = (files(__package__) / "sql" / backend / "queries.sql").read_text()
    queries = {}
    for name, block in _BLOCK.findall(text):
        lines = [line for line in block.splitlines() if not line.startswith("--")]
        queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries


def load_migrations(backend: str) -> list[tuple[int, str]]:
    """The schema steps of ``sql/<backend>/migrations``, numbered 1, 2, ... in order."""
    folder = files(__package__) / "sql" / backend / "migrations"
    steps = sorted(
        (int(entry.name[:4]), entry.read_text())
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    if [n for n, _ in steps] != list(range(1, len(steps) + 1)):
        raise StoreError(f"runstate's {backend} migrations have gaps: {[n for n, _ in steps]}.")
    return steps


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def write_params(w: Write, body: str) -> dict[str, Any]:
    """The named parameters of a compare-and-set: the new state, then the condition
    (the run's id and the version the write was decided from)."""
    obj = w.obj
    return {
        "status": obj.status.value,
        "active": is_active(obj),
        "waiting": is_waiting(obj),
        "expires_at": obj.expires_at,
        "lease_owner": w.lease_owner,
        "lease_expires_at": w.lease_expires_at,
        "attempts": w.attempts,
        "body": body,
        "event_count": w.first_number + len(w.steps),
        # When it ended, if this write ends it (a write of an ended object keeps the
        # first; an active one has none): the time of its last step.
        "ended_at": w.steps[-1].at if w.steps else None,
        "id": obj.id,
        "expected": w.expected_version,
    }


def insert_params(obj: Any, body: str, event_count: int, input: Any) -> dict[str, Any]:
    """The named parameters of ``insert_run`` (``event_count``: the events inserted with
    it, numbered from 0; ``input``: kept for its worker, as JSON, or None)."""
    return {
        "event_count": event_count,
        "id": obj.id,
        "kind": obj.KIND,
        "group_id": group_of(obj),
        "input": None if input is None else dumps(input),
        "status": obj.status.value,
        "active": is_active(obj),
        "waiting": is_waiting(obj),
        "created_at": obj.created_at,
        "expires_at": obj.expires_at,
        "body": body,
    }


def trims(
    max_events: int | None, writes: Sequence[Write], done: Sequence[Any]
) -> list[dict[str, Any]]:
    """The ``trim_events`` parameters for the writes that won and now hold more than
    ``max_events`` events (none when every event is kept)."""
    if max_events is None:
        return []
    found = []
    for w, seqs in zip(writes, done, strict=True):
        count = w.first_number + len(w.steps)
        if seqs is not None and count > max_events:
            found.append({"id": w.obj.id, "below": count - max_events})
    return found


def key_params(obj: Any, key: IdempotencyKey) -> dict[str, Any]:
    """The named parameters of ``remember_key``."""
    return {
        "kind": obj.KIND,
        "key": key.key,
        "fingerprint": key.fingerprint,
        "object_id": obj.id,
        "created_at": key.now,
    }


def stored_from_row(row: Sequence[Any]) -> StoredObject:
    kind, body, expires_at, version, lease_owner, lease_expires_at, attempts, event_count = row
    return StoredObject(
        restore(kind, json.loads(body), expires_at),
        version,
        lease_owner,
        lease_expires_at,
        attempts,
        event_count,
    )


def event_from_row(row: Sequence[Any]) -> RunEvent:
    seq, event, object_id, from_status, to_status, at, data, number = row
    return RunEvent(event, object_id, from_status, to_status, at, json.loads(data), seq, number)


def decided(
    rows: Sequence[Any], now: int, decide: Callable[[StoredObject, int], Write | None]
) -> list[Write]:
    """The writes ``decide`` gives for the rows a sweep picked (None leaves a row be)."""
    writes = []
    for row in rows:
        write = decide(stored_from_row(row), now)
        if write is not None:
            writes.append(write)
    return writes


def list_plan(
    queries: Mapping[str, str],
    param: Callable[[str], str],
    group_id: str | None,
    kind: str,
    status: Status | None,
    limit: int,
    order: Order,
    after: str | None,
    before: str | None,
) -> Generator[tuple[str, dict[str, Any]], list[Any], Page]:
    """A listing as the reads it takes, for a sync or an async backend to make: yields
    each query and its parameters, is sent its rows, returns the page. Cursors are
    resolved to their (created_at, seq) first, then one query reads the page and one
    row more, to tell whether more lie beyond it."""
    check_page_args(limit, order)
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit + 1, "kind": kind}
    if group_id is not None:
        where.append(f"group_id = {param('group_id')}")
        params["group_id"] = group_id
    if status is not None:
        where.append(f"status = {param('status')}")
        params["status"] = status.value
    # In listing order, "after" the cursor is "<" in desc order and ">" in asc.
    forward, backward = ("<", ">") if order == "desc" else (">", "<")
    for name, cursor, op in (("after", after, forward), ("before", before, backward)):
        if cursor is None:
            continue
        key = yield queries["cursor"], {"id": cursor}
        if not key or key[0][3] != kind or (group_id is not None and key[0][2] != group_id):
            raise cursor_error(name, cursor)
        where.append(f"(created_at, seq) {op} ({param(name + '_at')}, {param(name + '_seq')})")
        params[name + "_at"], params[name + "_seq"] = key[0][:2]
    # The page nearest a lone "before" is read in reverse and turned round.
    reverse = before is not None and after is None
    direction = "DESC" if (order == "desc") != reverse else "ASC"
    sql = queries["list_objects"].format(
        where="".join(" AND " + condition for condition in where), direction=direction
    )
    rows = yield sql, params
    runs = [stored_from_row(row).obj for row in rows[:limit]]
    if reverse:
        runs.reverse()
    return Page(runs, len(rows) > limit)


#: What deleting one object deletes, in this order: its events, its keys, its webhook
#: deliveries, itself.
DELETES = ("delete_events", "delete_keys", "delete_deliveries", "delete_run")
#: The queries ``stats_from_rows`` reads, by name.
STATS_QUERIES = (
    "stats_statuses",
    "stats_waiting",
    "stats_due",
    "stats_leases",
    "stats_events",
    "stats_deliveries",
)


def prune_statement(
    queries: Mapping[str, str],
    param: Callable[[str], str],
    kind: str,
    before: int,
    statuses: Sequence[str],
    limit: int,
) -> tuple[str, dict[str, Any]]:
    """The ``ended`` query for a prune, with one named parameter per status asked for."""
    params: dict[str, Any] = {"kind": kind, "before": before, "limit": limit}
    names = []
    for i, status in enumerate(statuses):
        params[f"s{i}"] = status
        names.append(param(f"s{i}"))
    return queries["ended"].format(statuses=f"AND status IN ({', '.join(names)})"), params


def stats_from_rows(rows: Mapping[str, list[Any]]) -> Stats:
    """``Stats`` from the rows of the stats queries, by name."""
    kinds: dict[str, dict[str, Any]] = {}

    def of(kind: str) -> dict[str, Any]:
        return kinds.setdefault(kind, kind_figures())

    for kind, status, n in rows["stats_statuses"]:
        of(kind)["statuses"][status] = int(n)
    for kind, n, oldest in rows["stats_waiting"]:
        of(kind)["waiting"], of(kind)["oldest_waiting"] = int(n), int(oldest)
    for kind, n in rows["stats_due"]:
        of(kind)["due"] = int(n)
    for kind, n, ended in rows["stats_leases"]:
        of(kind)["leases"], of(kind)["leases_ended"] = int(n), int(ended or 0)
    return Stats(
        {k: KindStats(**v) for k, v in sorted(kinds.items())},
        int(rows["stats_events"][0][0]),
        delivery_stats_of(rows["stats_deliveries"][0]),
    )


def delivery_stats_of(row: Sequence[Any]) -> DeliveryStats:
    """``DeliveryStats`` from the row of ``stats_deliveries``."""
    pending, failed, oldest = row
    return DeliveryStats(int(pending), int(failed), None if oldest is None else int(oldest))


def endpoint_params(endpoint: Endpoint, secret: str) -> dict[str, Any]:
    """The named parameters of ``add_endpoint``."""
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "name": endpoint.name,
        "secret": secret,
        "events": dumps(list(endpoint.events)),
        "created_at": endpoint.created_at,
    }


def endpoint_from_row(row: Sequence[Any]) -> Endpoint:
    endpoint_id, url, name, events, created_at = row
    if isinstance(events, str):  # SQLite keeps the JSON text; psycopg reads jsonb
        events = json.loads(events)
    return Endpoint(endpoint_id, url, name, tuple(events), int(created_at))


class Sql:
    """A plan's step: one statement and its parameters, answered with its rows
    (``fetch="all"``), its first row or None (``"one"``), how many rows it changed
    (``"count"``), or the row id it inserted (``"lastrowid"``, SQLite)."""

    __slots__ = ("fetch", "params", "sql")

    def __init__(self, sql: str, params: Mapping[str, Any], fetch: str = "all") -> None:
        self.sql, self.params, self.fetch = sql, params, fetch


class Transaction:
    """A plan's step: run ``plan`` in one write transaction, committed when it returns
    (its result is the answer), rolled back when it raises (the error is thrown in)."""

    __slots__ = ("plan",)

    def __init__(self, plan: Plan[Any]) -> None:
        self.plan = plan


class OnConnection:
    """A plan's step: ``fn(conn, *args)`` on the operation's connection: a backend's own
    code that needs no plan (SQLite's writes: it has one driver, a sync one)."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn, self.args = fn, args


def answer(cursor: Any, fetch: str) -> Any:
    """What a ``Sql`` step asked of its cursor."""
    if fetch == "all":
        return cursor.fetchall()
    if fetch == "one":
        return cursor.fetchone()
    if fetch == "lastrowid":
        return cursor.lastrowid
    return cursor.rowcount


class SQLPlans:
    """What the SQL backends share, each operation written once as a plan of ``Sql`` and
    ``Transaction`` steps that a driver runs on one connection (``SyncSQL`` here for
    SQLite and PostgreSQL; PostgreSQL's async store has an async one): the reads, and
    the claims and sweeps (pick rows under the write lock, decide, write them). A
    backend sets ``SQL`` (its named statements) and ``param`` (how its statements spell a
    named parameter), and writes ``_p_write_batch`` (its writes inside a transaction)."""

    SQL: ClassVar[Mapping[str, str]]
    bell: Bell
    max_events: int | None = None  # the most events kept per object (None: all)
    # Whether the write of a row picked under its lock may still lose: on PostgreSQL, when
    # a younger transaction wrote the row before the pick's transaction locked it.
    picked_may_lose = False

    @staticmethod
    def param(name: str) -> str:
        raise NotImplementedError

    def _p_write_batch(self, writes: Sequence[Write]) -> Plan[list[list[int] | None]]:
        raise NotImplementedError

    def _announce(self, written: Sequence[Any]) -> None:
        """Writes (or objects) that committed: ring for them (a backend may also tell
        other processes)."""
        ring_for(self.bell, written)

    def _p_trim(self, writes: Sequence[Write], done: Sequence[Any]) -> Plan[None]:
        """Drop the oldest events of the objects written that now hold more than
        ``max_events`` (nothing, unless it is set)."""
        for params in trims(self.max_events, writes, done):
            yield Sql(self.SQL["trim_events"], params, "count")

    # --- the protocol's operations -------------------------------------------------------

    @operation
    def claim(
        self,
        now: Now,
        decide: Callable[[StoredObject, int], Write],
        *,
        kind: str,
        step: ClaimStep | None = None,
    ) -> Plan[Claimed | None]:
        return self._p_claim_picked(now, decide, kind)

    @operation
    def sweep(
        self,
        which: Sweep,
        now: Now,
        decide: Callable[[StoredObject, int], Write | None],
        limit: int,
        *,
        kind: str,
    ) -> Plan[list[Claimed]]:
        return self._p_pick_and_write(which, now, decide, limit, kind)

    @operation
    def get(self, object_id: str) -> Plan[StoredObject]:
        rows = yield Sql(self.SQL["get_run"], {"id": object_id})
        if not rows:
            raise ObjectNotFoundError(object_id)
        return stored_from_row(rows[0])

    @operation
    def prune(
        self, kind: str, *, before: int, statuses: Sequence[str], limit: int
    ) -> Plan[list[str]]:
        """Delete up to ``limit`` of the oldest objects of ``kind`` that ended at or
        before ``before`` in one of ``statuses``, with their events, in one transaction;
        their ids."""
        sql, params = prune_statement(self.SQL, self.param, kind, before, statuses, limit)
        ids: list[str] = yield Transaction(self._p_pruned(sql, params))
        return ids

    @operation
    def delete(self, object_id: str) -> Plan[bool]:
        deleted: bool = yield Transaction(self._p_deleted(object_id))
        return deleted

    @operation
    def stats(self, now: int) -> Plan[Stats]:
        rows = {}
        for name in STATS_QUERIES:
            rows[name] = yield Sql(self.SQL[name], {"now": now})
        return stats_from_rows(rows)

    @operation
    def input_of(self, object_id: str) -> Plan[Any]:
        rows = yield Sql(self.SQL["input_of"], {"id": object_id})
        if not rows:
            raise ObjectNotFoundError(object_id)
        return None if rows[0][0] is None else json.loads(rows[0][0])

    @operation
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
    ) -> Plan[Page]:
        reads = list_plan(self.SQL, self.param, group_id, kind, status, limit, order, after, before)
        try:
            sql, params = next(reads)
            while True:
                sql, params = reads.send((yield Sql(sql, params)))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    @operation
    def history(self, object_id: str) -> Plan[list[RunEvent]]:
        rows = yield Sql(self.SQL["history"], {"run_id": object_id})
        if not rows and not (yield Sql(self.SQL["run_exists"], {"id": object_id})):
            raise ObjectNotFoundError(object_id)
        return [event_from_row(row) for row in rows]

    @operation
    def events(
        self, after_seq: int = 0, object_id: str | None = None, limit: int = 100
    ) -> Plan[list[RunEvent]]:
        params = {"after_seq": after_seq, "run_id": object_id, "limit": limit}
        name = "events" if object_id is None else "events_of_run"
        return [event_from_row(row) for row in (yield Sql(self.SQL[name], params))]

    # --- webhooks ---------------------------------------------------------------------------

    @operation
    def add_endpoint(self, endpoint: Endpoint, secret: str) -> Plan[None]:
        yield Sql(self.SQL["add_endpoint"], endpoint_params(endpoint, secret), "count")

    @operation
    def list_endpoints(self) -> Plan[list[Endpoint]]:
        return [endpoint_from_row(row) for row in (yield Sql(self.SQL["list_endpoints"], {}))]

    @operation
    def remove_endpoint(self, endpoint_id: str) -> Plan[bool]:
        removed: bool = yield Transaction(self._p_removed_endpoint(endpoint_id))
        return removed

    @operation
    def claim_deliveries(self, now: int, lease_seconds: int, limit: int) -> Plan[list[Delivery]]:
        params = {"now": now, "lease": lease_seconds, "limit": limit}
        rows = yield Sql(self.SQL["claim_deliveries"], params)
        # A delivery whose endpoint went meanwhile has no URL: it is gone with it.
        return [Delivery(*row) for row in rows if row[2] is not None]

    @operation
    def settle_deliveries(self, settles: Sequence[Settle]) -> Plan[list[bool]]:
        if not settles:
            return []
        params = {"settles": dumps([settle.to_dict() for settle in settles])}
        rows = yield Sql(self.SQL["settle_deliveries"], params)
        done = {(event_id, endpoint_id) for event_id, endpoint_id in rows}
        return [(s.delivery.event_id, s.delivery.endpoint_id) in done for s in settles]

    @operation
    def next_delivery_at(self) -> Plan[int | None]:
        rows = yield Sql(self.SQL["next_delivery"], {})
        return None if rows[0][0] is None else int(rows[0][0])

    @operation
    def delivery_stats(self) -> Plan[DeliveryStats]:
        return delivery_stats_of((yield Sql(self.SQL["stats_deliveries"], {}))[0])

    def _p_removed_endpoint(self, endpoint_id: str) -> Plan[bool]:
        yield Sql(self.SQL["delete_endpoint_deliveries"], {"id": endpoint_id}, "count")
        count = yield Sql(self.SQL["delete_endpoint"], {"id": endpoint_id}, "count")
        return bool(count == 1)

    # --- the plans the operations share ----------------------------------------------------

    def _p_claim_picked(
        self, now: Now, decide: Callable[[StoredObject, int], Write], kind: str
    ) -> Plan[Claimed | None]:
        picked = yield from self._p_pick_and_write("claimable", now, decide, 1, kind)
        return picked[0] if picked else None

    def _p_pick_and_write(
        self,
        query: str,
        now: Now,
        decide: Callable[[StoredObject, int], Write | None],
        limit: int,
        kind: str,
    ) -> Plan[list[Claimed]]:
        """In one write transaction: read the clock (the lock or connection is ours, so
        this is the time the writes happen), pick the rows ``query`` names, decide each,
        and write them. The picked rows are locked by us: no write can lose, unless the
        backend's order of writes refuses it (``picked_may_lose``); such a row is left
        as it is, for the next pick."""

        def picked() -> Plan[list[Claimed]]:
            t = now()
            rows = yield Sql(self.SQL[query], {"now": t, "limit": limit, "kind": kind})
            writes = decided(rows, t, decide)
            if not writes:
                return []
            done = yield from self._p_write_batch(writes)
            if None in done and not self.picked_may_lose:  # locked by us: a bug
                raise StoreError(f"A picked row changed under its lock: {writes}.")
            return [(w, d) for w, d in zip(writes, done, strict=True) if d is not None]

        written: list[Claimed] = yield Transaction(picked())
        self._announce([write for write, _ in written])  # committed
        return written

    def _p_pruned(self, sql: str, params: Mapping[str, Any]) -> Plan[list[str]]:
        ids = [row[0] for row in (yield Sql(sql, params))]
        for object_id in ids:
            for name in DELETES:
                yield Sql(self.SQL[name], {"id": object_id}, "count")
        return ids

    def _p_deleted(self, object_id: str) -> Plan[bool]:
        count = 0
        for name in DELETES:  # the last deletes the object itself
            count = yield Sql(self.SQL[name], {"id": object_id}, "count")
        return bool(count == 1)


class SyncSQL(Sync):
    """The sync driver of the SQL stores: each operation's plan on one connection. A
    backend gives ``_connection()`` (one for the operation), ``_transaction_on(conn)``
    (a write transaction on it), ``_translate()`` and ``_translated(exc)`` (its driver's
    errors, ``_driver_error``, as ``StoreError``)."""

    _connection: Callable[[], AbstractContextManager[Any]]
    _transaction_on: Callable[[Any], AbstractContextManager[Any]]
    _translate: Callable[[], Any]  # a context manager
    _translated: Callable[[Exception], StoreError]  # the driver's error as runstate's
    _driver_error: Any  # the driver's error class

    def _run(self, plan: Plan[R], name: str, object_id: str | None) -> R:
        with self._translate(), self._connection() as conn:
            return drive(plan, functools.partial(self._perform, conn), RunStateError)

    def _perform(self, conn: Any, step: Any) -> Any:
        """One step on ``conn`` (``Sql``, ``OnConnection`` or ``Transaction``), its error
        as runstate's (thrown into the plan, which may catch what it expects)."""
        try:
            if type(step) is Sql:
                return answer(conn.execute(step.sql, step.params), step.fetch)
            if type(step) is OnConnection:
                return step.fn(conn, *step.args)
            with self._transaction_on(conn):
                return drive(step.plan, functools.partial(self._perform, conn), RunStateError)
        except self._driver_error as exc:
            raise self._translated(exc) from exc
