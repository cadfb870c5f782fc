"""The bell that wakes followers and waiting workers: a ring after a mark is never
missed, by a thread or a coroutine, and a wait that nothing rings times out."""

from __future__ import annotations

import asyncio
import threading

from runstate import RunEngine
from runstate.stores._bell import ANY, WAITING, Bell, ring_for


def test_a_ring_after_the_mark_is_heard_and_one_before_is_not_waited_for() -> None:
    bell = Bell()
    mark = bell.mark("run_1")
    bell.ring(["run_2"])  # another key: nothing for run_1's waiters
    assert bell.wait("run_1", mark, 0.01) is False  # the wait times out
    bell.ring([ANY])  # "anything may have changed": every waiter hears it
    assert bell.wait("run_1", mark, 0) is True
    mark = bell.mark("run_1")
    threading.Timer(0.01, bell.ring, [["run_1"]]).start()
    assert bell.wait("run_1", mark, 60) is True


def test_a_coroutine_is_woken_from_another_thread() -> None:
    async def main() -> None:
        bell = Bell()
        mark = bell.mark(WAITING)
        assert await bell.wait_async(WAITING, mark, 0.01) is False
        threading.Timer(0.01, bell.ring, [[WAITING]]).start()
        assert await bell.wait_async(WAITING, mark, 60) is True
        assert not any(bell._waiters.values())  # every waiter took itself off
        mark = bell.mark("x")
        bell.ring([ANY])
        assert await bell.wait_async("x", mark, 60) is True  # rung before it waited

    asyncio.run(main())


def test_writes_ring_their_objects_and_queued_work() -> None:
    engine = RunEngine()
    bell = engine.store.bell  # type: ignore[attr-defined]
    queued = bell.mark(WAITING)
    run = engine.create(thread_id="t", assistant_id="a")
    assert bell.wait(WAITING, queued, 0)
    mark, queued = bell.mark(run.id), bell.mark(WAITING)
    engine.claim("w")
    assert bell.wait(run.id, mark, 0)
    assert not bell.wait(WAITING, queued, 0)  # nothing new is queued
    mark = bell.mark(run.id)
    ring_for(bell, [])  # nothing written: nothing rung
    assert not bell.wait(run.id, mark, 0)


def test_the_bell_forgets_keys_past_its_limit_and_wakes_older_marks() -> None:
    from runstate.stores import _bell

    bell = Bell()
    mark = bell.mark("watched")
    for i in range(_bell.REMEMBERED + 5):
        bell.ring([f"run_{i}"])  # never the watched key
    assert len(bell._rung) <= _bell.REMEMBERED  # bounded, whatever was written
    assert bell.wait("watched", mark, 0)  # forgotten: woken, to read again
    fresh = bell.mark("watched")
    bell.ring(["other"])
    assert not bell.wait("watched", fresh, 0)  # a mark after the forgetting waits
    bell.ring(["watched"])
    assert bell.wait("watched", fresh, 0)
