"""What only the PostgreSQL store has: a schema of its own, SKIP LOCKED claims, the
notifications other processes hear, and a pool that survives killed backends and a
restarted server (the order of events without a counter row: test_feed_order.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from tables import PG_BASE, pg_url

from runstate import (
    AsyncPostgresStore,
    AsyncRunEngine,
    ManualClock,
    PostgresStore,
    RunEngine,
    RunStatus,
    StoreError,
    ValidationError,
    connect,
)
from runstate.stores._bell import ANY, WAITING
from runstate.stores._postgres import Notifier, parse_notification

T0 = 1_700_000_000


@pytest.fixture
def engine(pg_schema: str) -> Iterator[RunEngine]:
    engine = RunEngine(PostgresStore(PG_BASE, schema=pg_schema), clock=ManualClock(T0))
    yield engine
    engine.close()


def test_connect_url_picks_the_schema(pg_schema: str) -> None:
    engine = connect(pg_url(pg_schema))
    run = engine.create(thread_id="t", assistant_id="a")
    engine.close()
    with psycopg.connect(PG_BASE) as conn:
        row = conn.execute(
            f"SELECT status FROM {pg_schema}.runs WHERE id = %s", (run.id,)
        ).fetchone()
    assert row == ("queued",)


def test_a_foreign_runs_table_is_refused_and_untouched(pg_schema: str) -> None:
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {pg_schema}")
        conn.execute(f"CREATE TABLE {pg_schema}.runs (note text)")
        conn.execute(f"INSERT INTO {pg_schema}.runs VALUES ('keep me')")
    with pytest.raises(StoreError, match="holds a runs table that is not runstate's"):
        PostgresStore(PG_BASE, schema=pg_schema)
    with psycopg.connect(PG_BASE) as conn:
        assert conn.execute(f"SELECT note FROM {pg_schema}.runs").fetchall() == [("keep me",)]


def test_a_newer_schema_is_refused(pg_schema: str) -> None:
    PostgresStore(PG_BASE, schema=pg_schema).close()
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"UPDATE {pg_schema}.runstate_meta SET value = '11'")
    with pytest.raises(
        StoreError, match="schema version 11; this runstate reads versions up to 10"
    ):
        PostgresStore(PG_BASE, schema=pg_schema)


@pytest.mark.parametrize("schema", ["Runs", "drop table x", "", "1abc", None])
def test_schema_names_are_checked(schema: object) -> None:
    with pytest.raises(ValidationError, match="Invalid schema name"):
        PostgresStore(PG_BASE, schema=schema)  # type: ignore[arg-type]


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        PostgresStore("postgresql://someone:s3cret@127.0.0.1:1/nowhere", connect_timeout=2)
    assert "cannot be used" in caught.value.message
    for secret in ("s3cret", "someone", "nowhere", "postgresql://"):
        assert secret not in caught.value.message
    assert "\n" not in caught.value.message
    assert isinstance(caught.value.__cause__, psycopg.Error)


def test_claim_skips_a_row_another_transaction_holds(engine: RunEngine, pg_schema: str) -> None:
    clock = engine.lifecycle._clock
    assert isinstance(clock, ManualClock)
    first = engine.create(thread_id="a", assistant_id="x")
    clock.advance(1)
    second = engine.create(thread_id="b", assistant_id="x")
    with psycopg.connect(PG_BASE) as holder:  # another worker mid-claim on the oldest run
        holder.execute(f"SELECT 1 FROM {pg_schema}.runs WHERE id = %s FOR UPDATE", (first.id,))
        claimed = engine.claim("w")  # does not wait for the lock: takes the next run
        assert claimed is not None and claimed.id == second.id
        holder.rollback()
    claimed = engine.claim("w")
    assert claimed is not None and claimed.id == first.id


def test_the_cli_reads_postgres(pg_schema: str) -> None:
    import sys

    engine = connect(pg_url(pg_schema))
    run = engine.create(thread_id="t", assistant_id="a")
    engine.close()
    done = subprocess.run(
        [sys.executable, "-m", "runstate", "show", pg_url(pg_schema), run.id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert run.id in done.stdout and "thread.run.queued" in done.stdout


def test_a_killed_backend_costs_a_retry_not_a_failed_call(pg_schema: str) -> None:
    engine = RunEngine(PostgresStore(PG_BASE, schema=pg_schema, max_size=1))
    run = engine.create(thread_id="t", assistant_id="a")
    store = engine.store
    assert isinstance(store, PostgresStore)
    with store._pool.connection() as conn:  # the pool's only connection
        pid = conn.info.backend_pid
    with psycopg.connect(PG_BASE, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))  # returns once it is gone
    assert engine.get(run.id).id == run.id  # the dead connection is found and replaced
    assert engine.start(run.id).status is RunStatus.IN_PROGRESS
    with store._pool.connection() as conn:
        assert conn.info.backend_pid != pid
    engine.close()


def test_a_killed_backend_costs_a_reconnect_on_the_async_pool_too(pg_schema: str) -> None:
    async def scenario() -> None:
        store = await AsyncPostgresStore.open(PG_BASE, schema=pg_schema, max_size=1)
        engine = AsyncRunEngine(store)
        run = await engine.create(thread_id="t", assistant_id="a")
        async with store._pool.connection() as conn:  # the pool's only connection
            pid = conn.info.backend_pid
        with psycopg.connect(PG_BASE, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(%s, 10000)", (pid,)
            )  # returns once it is gone
        assert (await engine.start(run.id)).status is RunStatus.IN_PROGRESS
        async with store._pool.connection() as conn:
            assert conn.info.backend_pid != pid
        await store.close()

    asyncio.run(scenario())


def hold_every_connection(pool: Any, size: int) -> list[int]:
    """Fill ``pool`` to ``size`` open connections at once (threads holding one each) and
    give them back idle; their backends' pids."""
    barrier = threading.Barrier(size + 1)
    pids: list[int] = []

    def hold() -> None:
        with pool.connection() as conn:
            pids.append(conn.info.backend_pid)
            barrier.wait()
            barrier.wait()

    threads = [threading.Thread(target=hold) for _ in range(size)]
    for thread in threads:
        thread.start()
    barrier.wait()  # all held at once
    barrier.wait()
    for thread in threads:
        thread.join()
    return pids


def terminate(pids: list[int]) -> None:
    with psycopg.connect(PG_BASE, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))


def test_a_pool_whose_every_connection_was_killed_still_serves_the_next_call(
    pg_schema: str,
) -> None:
    """Every idle connection dead (a mass kill, a restart): the next call takes a live one
    at once. psycopg_pool's own check slept 0, 1, 2, 4... seconds between dead ones and
    gave up after 30 s: the StoreError every worker got after a kill storm."""
    engine = RunEngine(PostgresStore(PG_BASE, schema=pg_schema, max_size=8))
    run = engine.create(thread_id="t", assistant_id="a")
    store = engine.store
    assert isinstance(store, PostgresStore)
    pids = hold_every_connection(store._pool, 8)
    terminate(pids)
    assert engine.start(run.id).status is RunStatus.IN_PROGRESS
    assert store._pool.get_stats().get("returns_bad", 0) >= 1  # the dead were discarded
    with store._pool.connection() as conn:
        assert conn.info.backend_pid not in pids
    engine.close()


def test_the_async_pool_too_serves_the_next_call_after_every_connection_was_killed(
    pg_schema: str,
) -> None:
    async def scenario() -> None:
        store = await AsyncPostgresStore.open(PG_BASE, schema=pg_schema, max_size=8)
        engine = AsyncRunEngine(store)
        run = await engine.create(thread_id="t", assistant_id="a")
        held = [await store._pool.getconn() for _ in range(8)]
        pids = [conn.info.backend_pid for conn in held]
        for conn in held:
            await store._pool.putconn(conn)
        await asyncio.to_thread(terminate, pids)
        assert (await engine.start(run.id)).status is RunStatus.IN_PROGRESS
        async with store._pool.connection() as conn:
            assert conn.info.backend_pid not in pids
        await store.close()

    asyncio.run(scenario())


def restart_postgres() -> None:
    """Restart the machine's PostgreSQL cluster (every connection to it dies), and wait
    until it accepts connections again."""
    (version,) = os.listdir("/etc/postgresql")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
        timeout=120,
    )


def test_a_database_restarted_mid_job_loses_nothing(pg_schema: str) -> None:
    """A worker holds a claimed run, the database restarts under it (its pool full of
    connections that are now dead), and the worker's next step and the next claim go
    through, with every event kept."""
    engine = RunEngine(PostgresStore(PG_BASE, schema=pg_schema, max_size=4))
    store = engine.store
    assert isinstance(store, PostgresStore)
    first = engine.create(thread_id="t1", assistant_id="a")
    second = engine.create(thread_id="t2", assistant_id="a")
    assert engine.claim("w1").id == first.id
    hold_every_connection(store._pool, 4)
    restart_postgres()
    assert engine.complete(first.id, worker_id="w1").status is RunStatus.COMPLETED
    assert engine.claim("w2").id == second.id
    assert [e.event for e in engine.history(first.id)] == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.completed",
    ]
    engine.close()


@pytest.mark.parametrize("conninfo", ["host=x port", "postgresql://u:s3cret@[::1/x", "a=b=c"])
def test_a_malformed_conninfo_is_a_validation_error_without_it(conninfo: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PostgresStore(conninfo)
    assert caught.value.message.startswith("Invalid PostgreSQL connection string")
    assert conninfo not in caught.value.message and "s3cret" not in caught.value.message


# --- notifications ---------------------------------------------------------------------


def heard(conn: psycopg.Connection[Any], wanted: set[str]) -> list[str]:
    """The payloads ``conn`` (listening) receives until every id in ``wanted`` has been
    named; a generous limit, never reached when things work."""
    payloads: list[str] = []
    named: set[str] = set()
    for note in conn.notifies(timeout=60):
        payloads.append(note.payload)
        named |= {item.rstrip("!^") for item in note.payload.split(",")}
        if wanted <= named:
            break
    return payloads


def listening(schema: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(PG_BASE, autocommit=True)
    conn.execute(f"LISTEN runstate_{schema}")
    return conn


def test_writes_queued_together_go_out_as_one_notification(pg_schema: str) -> None:
    """The notifier sends what has queued as one statement: a batch of 300 objects is
    one notification per 7,000 characters of ids, each flagged ``!`` when the object
    waits for a worker and ``^`` when its status changed (a new object's has)."""
    engine = RunEngine(PostgresStore(PG_BASE, schema=pg_schema), clock=ManualClock(T0))
    runs = [engine.create(thread_id=f"t{i}", assistant_id="a") for i in range(300)]
    engine.close()  # its own notifications sent
    listener = listening(pg_schema)
    notifier = Notifier(PG_BASE, {}, f"runstate_{pg_schema}")  # a store's, alone
    notifier.send(runs)  # as a batch write of them, committed, would
    payloads = heard(listener, {r.id for r in runs})
    assert len(payloads) == len(notifier.payloads({r.id: "!^" for r in runs})) == 2
    assert all(item.endswith("!^") for p in payloads for item in p.split(","))
    assert all(len(p) <= 7000 for p in payloads)
    notifier.close()
    notifier.send(runs)  # a closed notifier queues nothing more, and its thread has ended
    assert notifier._pending == {}
    assert notifier._thread is not None and not notifier._thread.is_alive()
    listener.close()


def test_a_batch_too_long_to_list_wakes_every_waiter() -> None:
    notifier = Notifier(PG_BASE, {}, "runstate_unused")  # never started: nothing sent
    many = {f"resp_{i:040d}": "" for i in range(20_000)}  # about 900,000 characters
    assert notifier.payloads(many) == ["*"]
    batch = {"run_1": "", "run_2": "!", "run_3": "^", "run_4": "!^"}
    assert notifier.payloads(batch) == ["run_1,run_2!,run_3^,run_4!^"]
    assert parse_notification("*") == [ANY]
    assert parse_notification("run_1,run_2!,run_3^,run_4!^") == [
        "run_1",
        "run_2",
        WAITING,
        "run_3",
        "run_3^",
        "run_4",
        "run_4^",
        WAITING,
    ]


def test_closing_a_store_sends_what_its_notifier_holds(pg_schema: str) -> None:
    """A process that writes and exits (a cancel from the command line) is heard: the
    store's close sends the notifications still queued."""
    listener = listening(pg_schema)
    engine = RunEngine(PostgresStore(PG_BASE, schema=pg_schema), clock=ManualClock(T0))
    run = engine.create(thread_id="t", assistant_id="a")
    engine.cancel(run.id)
    engine.close()
    assert heard(listener, {run.id})
    listener.close()


def test_a_killed_notifier_connection_is_reopened_and_nothing_is_lost(
    pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = RunEngine(PostgresStore(PG_BASE, schema=pg_schema), clock=ManualClock(T0))
    listener = listening(pg_schema)
    first = engine.create(thread_id="t0", assistant_id="a")
    assert heard(listener, {first.id})  # the notifier's connection is open
    with psycopg.connect(PG_BASE, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'runstate-notify'"
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    with caplog.at_level(logging.WARNING, logger="runstate"):
        second = engine.create(thread_id="t1", assistant_id="a")
        assert heard(listener, {second.id})  # sent again on a new connection
    assert f"notifying runstate_{pg_schema} failed" in caplog.text
    listener.close()
    engine.close()
