"""Pushed events: ``follow`` and ``claim(wait=)`` wake on a change instead of polling.

Every wait here is given a fallback of an hour (``poll=3600``, ``wait=3600``), so a test
can only finish if the store's bell woke it: in this process (every store), or from
another process through SQLite's feed or PostgreSQL's LISTEN/NOTIFY. Nothing is timed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
import race_workers as workers
from tables import CALLS, OUTPUTS, PG_BASE, pg_url

from runstate import (
    AsyncResponseEngine,
    AsyncRunEngine,
    ObjectNotFoundError,
    ResponseEngine,
    RunEngine,
    RunNotFoundError,
    ValidationError,
    connect_async,
    open_store,
    open_store_async,
)

HOUR = 3600
ctx = multiprocessing.get_context("spawn")
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def url(store_url: str) -> str:
    """Each backend's store URL (``store_url``, in ``conftest.py``)."""
    return store_url


def tell_when_waiting(engine: Any, ready: Any) -> None:
    """Set ``ready`` as the engine starts to wait on its bell: what happens after that
    can only reach the waiter through the bell."""
    wait = engine._bell.wait

    def waiting(*args: Any) -> bool:
        ready.set()
        return bool(wait(*args))

    engine._bell.wait = waiting


def names(events: Any) -> list[str]:
    return [e.event for e in events]


def test_a_follower_wakes_for_each_step_and_ends_at_requires_action(url: str) -> None:
    engine = RunEngine(open_store(url))
    run = engine.create(thread_id="t", assistant_id="a")
    steps = threading.Semaphore(0)

    def worker() -> None:
        steps.acquire()
        engine.claim("w")
        steps.acquire()
        engine.require_action(run.id, CALLS, worker_id="w")

    thread = threading.Thread(target=worker)
    thread.start()
    seen = []
    for event in engine.follow(run.id, poll=HOUR):
        seen.append(event)
        steps.release()  # the worker takes its next step only once this one was heard
    thread.join()
    assert names(seen) == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.requires_action",
    ]
    assert [e.sequence_number for e in seen] == [0, 1, 2, 3]
    engine.submit_tool_outputs(run.id, OUTPUTS)
    engine.claim("w")
    engine.complete(run.id)
    rest = list(engine.follow(run.id, after=3, poll=HOUR))  # the stream resumed
    assert [(e.sequence_number, e.event) for e in rest] == [
        (4, "thread.run.queued"),
        (5, "thread.run.in_progress"),
        (6, "thread.run.completed"),
    ]
    engine.close()


def test_a_follower_hears_another_process_stream_a_response(shared_url: str) -> None:
    engine = ResponseEngine(open_store(shared_url))
    response = engine.create(model="m", input="hi")
    ready = ctx.Event()
    far = ctx.Process(
        target=workers.stream_response_later, args=(shared_url, response.id, ready, 25)
    )
    far.start()
    seen = []
    for event in engine.follow(response.id, poll=HOUR):
        seen.append(event)
        ready.set()  # the first events are read: now the other process starts
    far.join(timeout=60)
    assert far.exitcode == 0
    assert [e.sequence_number for e in seen] == list(range(3 + 25 + 1))
    assert names(seen)[-1] == "response.completed"
    assert names(seen).count("response.progress") == 25
    engine.close()


def test_a_waiting_claim_is_woken_by_a_run_queued_elsewhere(shared_url: str) -> None:
    engine = RunEngine(open_store(shared_url))
    assert engine.claim("w") is None  # nothing yet: returns at once without wait=
    ready = ctx.Event()
    far = ctx.Process(target=workers.create_run_later, args=(shared_url, ready))
    far.start()
    tell_when_waiting(engine, ready)  # the other process writes only once this one waits
    claimed = engine.claim("w", wait=HOUR)
    far.join(timeout=60)
    assert claimed is not None and claimed.thread_id == "far-thread"
    engine.close()


def test_a_cancel_elsewhere_ends_the_stream(shared_url: str) -> None:
    engine = ResponseEngine(open_store(shared_url))
    response = engine.create(model="m", input="hi")
    engine.claim("w")
    ready = ctx.Event()
    far = ctx.Process(target=workers.cancel_later, args=(shared_url, response.id, ready))
    far.start()
    seen = []
    for event in engine.follow(response.id, poll=HOUR):
        seen.append(event)
        ready.set()
    far.join(timeout=60)
    assert names(seen)[-1] == "response.cancelled"
    engine.close()


async def follow_all(engine: Any, object_id: str, **kwargs: Any) -> list[Any]:
    return [event async for event in engine.follow(object_id, **kwargs)]


def test_the_async_follower_waits_without_blocking_the_loop(url: str) -> None:
    async def main() -> list[Any]:
        engine = AsyncResponseEngine(await open_store_async(url))
        response = await engine.create(model="m", input="hi")

        async def worker() -> None:
            await engine.claim("w")
            for _ in range(5):
                await asyncio.sleep(0)  # the follower runs between the steps
                await engine.append(response.id, "response.progress", {"delta": "x"})
            await engine.complete(response.id, output=[])

        seen, _ = await asyncio.gather(follow_all(engine, response.id, poll=HOUR), worker())
        resumed = await follow_all(engine, response.id, after=5, poll=HOUR)
        assert [e.sequence_number for e in resumed] == [6, 7, 8]
        await engine.close()
        return seen

    seen = asyncio.run(main())
    assert [e.sequence_number for e in seen] == list(range(9))
    assert names(seen)[-1] == "response.completed"


def test_closing_an_async_follower_stops_it(url: str) -> None:
    async def main() -> None:
        engine = AsyncRunEngine(await open_store_async(url))
        run = await engine.create(thread_id="t", assistant_id="a")
        stream = engine.follow(run.id, poll=HOUR)
        first = await anext(stream)
        assert first.event == "thread.run.created"
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        second = await waiting  # "queued" is stored already
        assert second.event == "thread.run.queued"
        blocked = asyncio.ensure_future(anext(stream))  # now it waits for a change
        bell = engine._bell
        while not bell._waiters.get(run.id):  # until it is waiting on the bell
            await asyncio.sleep(0)
        blocked.cancel()  # a client that hung up
        with pytest.raises(asyncio.CancelledError):
            await blocked
        await stream.aclose()
        assert not any(bell._waiters.values())  # nothing left waiting for it
        claimed = await engine.claim("w", wait=HOUR)  # a run is queued: no wait at all
        assert claimed is not None
        await engine.close()

    asyncio.run(main())


def test_follow_refuses_bad_arguments_and_missing_objects() -> None:
    engine = RunEngine()
    run = engine.create(thread_id="t", assistant_id="a")
    for kwargs, param in (
        ({"after": -1}, "after"),
        ({"poll": 0}, "poll"),
        ({"poll": float("nan")}, "poll"),
    ):
        with pytest.raises(ValidationError) as info:
            next(engine.follow(run.id, **kwargs))
        assert info.value.param == param
    with pytest.raises(RunNotFoundError):
        next(engine.follow("run_missing"))
    with pytest.raises(ValidationError):
        engine.claim("w", wait=-1)


def test_a_follower_of_a_due_run_sees_it_expire(tmp_path: Path) -> None:
    now = [1_000]
    engine = RunEngine(clock=lambda: now[0], ttl=5)
    run = engine.create(thread_id="t", assistant_id="a")
    now[0] += 5
    seen = list(engine.follow(run.id, poll=0.01))  # the fallback read applies the expiry
    assert names(seen)[-1] == "thread.run.expired"


def test_connect_async_closes_the_store_it_opened_when_the_engine_is_refused(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        with pytest.raises(ValidationError):
            await connect_async(f"sqlite:///{tmp_path / 'r.db'}", ttl=-1)
        async with AsyncRunEngine() as engine:  # a memory store of its own
            run = await engine.create(thread_id="t", assistant_id="a")
            assert (await engine.get(run.id)).id == run.id
        async with AsyncResponseEngine() as responses:
            assert (await responses.list()).data == []

    asyncio.run(main())


def test_the_async_stores_answer_as_the_sync_ones_for_missing_objects(url: str) -> None:
    async def main() -> None:
        store = await open_store_async(url)
        for method in ("get", "history", "input_of"):
            with pytest.raises(ObjectNotFoundError):
                await getattr(store, method)("run_missing")
        assert await store.delete("run_missing") is False
        await store.close()

    asyncio.run(main())


def test_a_follower_hears_changes_after_its_listener_lost_its_connection(pg_schema: str) -> None:
    url = pg_url(pg_schema)
    engine = ResponseEngine(open_store(url))
    response = engine.create(model="m", input="hi")
    ready = ctx.Event()
    far = ctx.Process(target=workers.stream_response_later, args=(url, response.id, ready, 3))
    far.start()
    seen = []
    for event in engine.follow(response.id, poll=HOUR):
        seen.append(event)
        if len(seen) == 2:  # cut the listener's connection, then let the other write
            with psycopg.connect(PG_BASE, autocommit=True) as conn:
                killed: list[Any] = []
                while not killed:  # the listener may still be connecting: until it listens
                    killed = conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s",
                        (f"LISTEN runstate_{pg_schema}",),
                    ).fetchall()
            assert killed == [(True,)]
            ready.set()
    far.join(timeout=60)
    assert [e.sequence_number for e in seen] == list(range(3 + 3 + 1))
    engine.close()


def test_a_worker_waiting_on_its_object_hears_a_cancel_made_elsewhere(shared_url: str) -> None:
    engine = ResponseEngine(open_store(shared_url))
    response = engine.create(model="m", input="hi")
    engine.claim("w")
    ready = ctx.Event()
    far = ctx.Process(target=workers.cancel_later, args=(shared_url, response.id, ready))
    far.start()
    tell_when_waiting(engine, ready)
    current = engine.wait_for_change(response.id, status="in_progress", timeout=HOUR)
    far.join(timeout=60)
    assert current.status.value == "cancelled"
    unchanged = engine.wait_for_change(response.id, status="in_progress", timeout=0.01)
    assert unchanged.status.value == "cancelled"  # already other: at once
    with pytest.raises(ValidationError):
        engine.wait_for_change(response.id, status="in_progress", timeout=0)
    engine.close()


def test_the_async_wait_for_change_lets_the_loop_run(url: str) -> None:
    async def main() -> None:
        engine = AsyncRunEngine(await open_store_async(url))
        run = await engine.create(thread_id="t", assistant_id="a")
        await engine.claim("w")

        async def cancel_soon() -> None:
            await asyncio.sleep(0)
            await engine.cancel(run.id)

        current, _ = await asyncio.gather(
            engine.wait_for_change(run.id, status="in_progress", timeout=HOUR), cancel_soon()
        )
        assert current.status.value == "cancelling"
        same = await engine.wait_for_change(run.id, status="cancelling", timeout=0.01)
        assert same.status.value == "cancelling"  # nothing changed: as it is, after the wait
        await engine.close()

    asyncio.run(main())
