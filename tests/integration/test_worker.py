"""The worker runtime: a handler's outcomes on every store, tool round trips, deltas,
cancels, sync handlers and sync engines, the sweeps, a handed-back job, and the
refusals of its construction. The cross-process faults (a cancel from another process,
SIGTERM drain, SIGKILL recovery, PostgreSQL restarted mid-job) are in
``test_worker_faults.py``."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runstate import (
    AsyncResponseEngine,
    AsyncRunEngine,
    Completed,
    Failed,
    Incomplete,
    Job,
    ResponseEngine,
    ResponseStatus,
    RunStatus,
    SQLiteStore,
    ValidationError,
    Worker,
    open_store_async,
)
from runstate._worker import HANDLER_ERROR

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def url(store_url: str) -> str:
    """Each backend's store URL (``store_url``, in ``conftest.py``)."""
    return store_url


async def until(check: Callable[[], Any], what: str) -> None:
    """Wait, a loop turn at a time, until ``check()`` is true (the test's timeout bounds it)."""
    while not await check():
        await asyncio.sleep(0.01)
    del what


async def ended(engine: Any, object_id: str) -> Any:
    """The object once no worker has it to do: ended, or waiting on its caller."""
    while True:
        obj = await engine.get(object_id)
        if obj.status.value not in ("queued", "in_progress", "cancelling"):
            return obj
        await engine.wait_for_change(object_id, status=obj.status, timeout=1)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- responses: every way a job ends --------------------------------------------------------


async def streams_hello(job: Job) -> Completed:
    assert job.request["model"] == "gpt-4o" and job.request["input"] == "Say hello"
    assert [item["type"] for item in job.input] == ["message"]
    for word in ("Hel", "lo"):
        await job.emit("response.output_text.delta", {"delta": word})
    return Completed(usage={"input_tokens": 2, "output_tokens": 2})


def test_a_handler_streams_deltas_and_completes(url: str) -> None:
    async def main() -> None:
        engine = AsyncResponseEngine(await open_store_async(url), lease_seconds=5)
        made = await engine.create(model="gpt-4o", input="Say hello")
        async with Worker(engine, streams_hello, concurrency=2) as worker:
            done = await ended(engine, made.id)
        assert done.status is ResponseStatus.COMPLETED and done.output_text == "Hello"
        assert done.usage["total_tokens"] == 4
        types = [e.event for e in await engine.events(made.id)]
        assert types[3:] == [
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        assert worker.ended == {"completed": 1}
        await engine.close()

    run(main())


@pytest.mark.parametrize(
    ("raised", "status", "check"),
    [
        (
            Incomplete("max_output_tokens"),
            ResponseStatus.INCOMPLETE,
            lambda r: (
                r.incomplete_details == {"reason": "max_output_tokens"} and r.output_text == "Hel"
            ),
        ),
        (
            Failed("rate_limit_exceeded", "Slow down."),
            ResponseStatus.FAILED,
            lambda r: r.error == {"code": "rate_limit_exceeded", "message": "Slow down."},
        ),
        (
            KeyError("a secret the client must not see"),
            ResponseStatus.FAILED,
            lambda r: r.error == {"code": "server_error", "message": HANDLER_ERROR},
        ),
    ],
    ids=["incomplete", "failed", "an exception"],
)
def test_how_a_response_job_ends_when_its_handler_raises(
    url: str,
    raised: BaseException,
    status: ResponseStatus,
    check: Callable[[Any], bool],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(job: Job) -> None:
        await job.emit("response.output_text.delta", {"delta": "Hel"})
        raise raised

    async def main() -> None:
        engine = AsyncResponseEngine(await open_store_async(url))
        made = await engine.create(model="gpt-4o", input="hi")
        async with Worker(engine, handler):
            done = await ended(engine, made.id)
        assert done.status is status and check(done)
        assert "a secret the client must not see" not in str(done.to_dict())
        await engine.close()

    with caplog.at_level(logging.ERROR, logger="runstate.worker"):
        run(main())
    if isinstance(raised, KeyError):  # logged, with its text, for the operator
        assert "a secret the client must not see" in caplog.text


def test_a_bad_result_fails_the_job(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(job: Job) -> str:
        return "not a Completed"

    async def main() -> None:
        engine = AsyncResponseEngine()
        made = await engine.create(model="m", input="hi")
        async with Worker(engine, handler) as worker:
            done = await ended(engine, made.id)
        assert done.error == {"code": "server_error", "message": HANDLER_ERROR}
        assert worker.ended == {"errored": 1}

    run(main())
    assert "returns a runstate.Completed or None, got str" in caplog.text


# --- runs: the tool round trip ----------------------------------------------------------------


def test_a_run_asks_for_a_tool_and_comes_back_as_a_new_job(url: str) -> None:
    seen: list[tuple[int, str]] = []

    async def handler(job: Job) -> Completed | None:
        seen.append((job.attempt, job.object.status.value))
        assert job.request["assistant_id"] == "asst_1" and job.request["model"] == "gpt-4o"
        asked = any(e.event == "thread.run.requires_action" for e in await job.history())
        if not asked:
            await job.require_action([{"function": {"name": "lookup", "arguments": "{}"}}])
            raise AssertionError("require_action ends the job")
        return Completed(usage={"prompt_tokens": 1, "completion_tokens": 1})

    async def main() -> None:
        engine = AsyncRunEngine(await open_store_async(url))
        made = await engine.create(
            thread_id="t", assistant_id="asst_1", model="gpt-4o", version="v2"
        )
        async with Worker(engine, handler) as worker:
            waiting = await ended(engine, made.id)
            assert waiting.status is RunStatus.REQUIRES_ACTION
            call = waiting.pending_tool_calls[0]
            await engine.submit_tool_outputs(
                made.id, [{"tool_call_id": call["id"], "output": "42"}]
            )
            done = await ended(engine, made.id)
        assert done.status is RunStatus.COMPLETED and done.usage["total_tokens"] == 2
        assert worker.ended == {"requires_action": 1, "completed": 1}
        assert [attempt for attempt, _ in seen] == [1, 2]
        await engine.close()

    run(main())


# --- cancels --------------------------------------------------------------------------------


def test_a_cancel_reaches_the_handler_as_cancelled_error(url: str) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def handler(job: Job) -> Completed:
        await job.emit("response.output_text.delta", {"delta": "Once"})
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return Completed()

    async def run_handler(job: Job) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise

    async def main() -> None:
        store = await open_store_async(url)
        responses, runs = AsyncResponseEngine(store), AsyncRunEngine(store)
        made = await responses.create(model="m", input="hi")
        async with Worker(responses, handler) as worker:
            await started.wait()
            await responses.cancel(made.id)
            await stopped.wait()
        assert (await responses.get(made.id)).status is ResponseStatus.CANCELLED
        assert worker.ended == {"cancelled": 1}
        started.clear(), stopped.clear()
        two_phase = await runs.create(thread_id="t", assistant_id="a")
        async with Worker(runs, run_handler) as worker:
            await started.wait()
            assert (await runs.cancel(two_phase.id)).status is RunStatus.CANCELLING
            await stopped.wait()
            done = await ended(runs, two_phase.id)
        assert done.status is RunStatus.CANCELLED  # the runtime confirmed it
        assert worker.ended == {"cancelled": 1}
        await store.close()

    run(main())


# --- sync handlers and sync engines -----------------------------------------------------------


def test_a_sync_handler_on_a_sync_engine_runs_in_threads(tmp_path: Path) -> None:
    threads: set[int] = set()

    def handler(job: Job) -> Completed:
        threads.add(threading.get_ident())
        job.emit("response.output_text.delta", {"delta": "Hi"})
        job.text(" there")
        return Completed()

    engine = ResponseEngine(SQLiteStore(tmp_path / "r.db"))
    made = [engine.create(model="m", input="hi") for _ in range(3)]

    async def main() -> None:
        async with Worker(engine, handler, concurrency=3) as worker:
            while worker.ended.get("completed", 0) < 3:
                await asyncio.sleep(0.01)

    run(main())
    assert {engine.get(r.id).output_text for r in made} == {"Hi there"}
    assert threading.get_ident() not in threads
    engine.close()


def test_a_thread_handler_sees_the_cancel_and_check_raises(tmp_path: Path) -> None:
    seen: list[str] = []
    began = threading.Event()

    def handler(job: Job) -> Completed:
        job.text("Once")
        began.set()
        while not job.cancelled:
            threading.Event().wait(0.01)
        seen.append("saw it")
        with pytest.raises(asyncio.CancelledError):
            job.check()
        seen.append("check raised")
        return Completed()

    async def main() -> None:
        engine = AsyncResponseEngine(await open_store_async(f"sqlite:///{tmp_path / 'r.db'}"))
        made = await engine.create(model="m", input="hi")
        async with Worker(engine, handler) as worker:
            await asyncio.to_thread(began.wait)
            await engine.cancel(made.id)
            while not worker.ended:
                await asyncio.sleep(0.01)
        assert worker.ended == {"cancelled": 1}
        assert (await engine.get(made.id)).status is ResponseStatus.CANCELLED
        await engine.close()

    run(main())
    assert seen == ["saw it", "check raised"]


# --- stopping: a job handed back, the sweeps -------------------------------------------------


def test_a_stopping_worker_hands_back_what_outlives_its_grace(url: str) -> None:
    async def slow(job: Job) -> None:
        await asyncio.sleep(60)

    async def streams_then_waits(job: Job) -> None:
        await job.text("Half")
        await asyncio.sleep(60)

    async def main() -> None:
        store = await open_store_async(url)
        runs, responses = AsyncRunEngine(store), AsyncResponseEngine(store)
        queued_run = await runs.create(thread_id="t", assistant_id="a")
        waiting = await runs.create(thread_id="t2", assistant_id="a")
        # Every slot busy: the stop still ends the wait for a slot, and drains.
        async with Worker(runs, slow, shutdown_grace=0.05, concurrency=1) as worker:
            await until(lambda: _status(runs, queued_run.id, "in_progress"), "claimed")
        assert worker.ended == {"handed back": 1}
        assert (await runs.get(queued_run.id)).status is RunStatus.QUEUED  # at once
        assert (await runs.get(waiting.id)).status is RunStatus.QUEUED  # never claimed
        streamed = await responses.create(model="m", input="hi")
        async with Worker(responses, streams_then_waits, shutdown_grace=0) as worker:
            await until(lambda: _has_output(responses, streamed.id), "streamed")
        lost = await responses.get(streamed.id)
        assert lost.status is ResponseStatus.FAILED
        assert lost.error == {
            "code": "server_error",
            "message": "The worker generating this response was lost.",
        }
        assert lost.output[0]["status"] == "incomplete"
        resumed = await responses.create(model="m", input="hi")
        async with Worker(responses, streams_then_waits, shutdown_grace=0, resume=True):
            await until(lambda: _has_output(responses, resumed.id), "streamed")
        assert (await responses.get(resumed.id)).status is ResponseStatus.QUEUED
        await store.close()

    run(main())


async def _status(engine: Any, object_id: str, status: str) -> bool:
    return bool((await engine.get(object_id)).status.value == status)


async def _has_output(engine: Any, object_id: str) -> bool:
    return bool((await engine.get(object_id)).output)


def test_a_worker_that_sweeps_recovers_a_lost_workers_job(tmp_path: Path) -> None:
    async def handler(job: Job) -> Completed:
        return Completed()

    async def main() -> None:
        engine = AsyncRunEngine(
            await open_store_async(f"sqlite:///{tmp_path / 'r.db'}"), lease_seconds=1
        )
        made = await engine.create(thread_id="t", assistant_id="a")
        assert await engine.claim("vanished") is not None  # a worker that then died
        async with Worker(engine, handler, sweep_every=0.2) as worker:
            done = await ended(engine, made.id)  # recovered once its lease ran out
        assert done.status is RunStatus.COMPLETED and worker.ended == {"completed": 1}
        await engine.close()

    run(main())


# --- what the runtime refuses -----------------------------------------------------------------


async def _noop(job: Job) -> None:
    return None


@pytest.mark.parametrize(
    ("make", "param", "message"),
    [
        (
            lambda e: Worker(e, "not callable"),
            "handler",
            "Invalid 'handler': expected a function taking a job, got str.",
        ),
        (
            lambda e: Worker(object(), _noop),
            "engine",
            "Invalid 'engine': expected a RunEngine or a ResponseEngine (sync or async), got object.",
        ),
        (
            lambda e: Worker(e, _noop, concurrency=0),
            "concurrency",
            "Invalid 'concurrency': expected an integer from 1 to 10000, got 0.",
        ),
        (
            lambda e: Worker(e, _noop, concurrency=True),
            "concurrency",
            "Invalid 'concurrency': expected an integer from 1 to 10000, got True.",
        ),
        (
            lambda e: Worker(e, _noop, shutdown_grace=-1),
            "shutdown_grace",
            "Invalid 'shutdown_grace': expected a finite number of seconds from 0 to 86400, got -1.",
        ),
        (
            lambda e: Worker(e, _noop, sweep_every=0),
            "sweep_every",
            "Invalid 'sweep_every': expected a finite number of seconds above 0 and at most 86400, got 0.",
        ),
        (
            lambda e: Worker(e, _noop, sweep_every="often"),
            "sweep_every",
            "Invalid 'sweep_every': expected a finite number of seconds above 0 and at most 86400, got 'often'.",
        ),
        (
            lambda e: Worker(e, _noop, worker_id=""),
            "worker_id",
            "Invalid 'worker_id': expected a non-empty string.",
        ),
        (
            lambda e: Worker(e, _noop, concurency=2),  # type: ignore[call-arg]
            "concurency",
            "Unknown option for Worker: 'concurency'.",
        ),
    ],
)
def test_bad_construction_is_refused_and_nothing_starts(
    make: Callable[[Any], Worker], param: str, message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        make(AsyncRunEngine())
    assert (info.value.param, info.value.message) == (param, message)


def test_a_run_job_has_no_stream_to_emit_to() -> None:
    async def handler(job: Job) -> None:
        with pytest.raises(ValidationError, match="A run's job has no stream"):
            await job.emit("response.output_text.delta", {"delta": "x"})

    async def main() -> None:
        engine = AsyncRunEngine()
        made = await engine.create(thread_id="t", assistant_id="a")
        async with Worker(engine, handler):
            assert (await ended(engine, made.id)).status is RunStatus.COMPLETED

    run(main())


# --- the runtime's own paths: faults at the engine's edge, odd handlers ---------------------


class Flaky(AsyncRunEngine):
    """A run engine whose store is away for its first ``claims`` claims and sweeps (the
    runtime's backoff is what is tested; the store's own faults are in
    ``test_worker_faults.py``)."""

    def __init__(self, claims: int) -> None:
        super().__init__()
        self.left = claims

    def _away(self) -> None:
        from runstate import StoreError

        if self.left > 0:
            self.left -= 1
            raise StoreError("the store is away")

    async def claim(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self._away()
        return await super().claim(*args, **kwargs)

    async def expire_due(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self._away()
        return await super().expire_due(*args, **kwargs)

    def claims_of(self, object_id: str) -> int | None:
        return None  # as if the engine held no entry: the job reads its claim count


def test_a_store_away_is_backed_off_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        engine = Flaky(claims=3)
        made = await engine.create(thread_id="t", assistant_id="a")
        attempts: list[int] = []

        async def handler(job: Job) -> None:
            attempts.append(job.attempt)

        async with Worker(engine, handler, sweep_every=0.05):
            assert (await ended(engine, made.id)).status is RunStatus.COMPLETED
        assert attempts == [1]

    with caplog.at_level(logging.WARNING, logger="runstate.worker"):
        run(main())
    assert "claim failed (the store is away); retrying in" in caplog.text


def test_the_rest_of_a_jobs_tools(url: str) -> None:
    async def handler(job: Job) -> Completed:
        await job.emit("response.progress", {"step": 1})  # a worker's own event
        await job.text("Looking")
        item = await job.function_call("lookup", '{"q": 1}', call_id="call_1")
        assert item["call_id"] == "call_1"
        return Completed()

    async def main() -> None:
        engine = AsyncResponseEngine(await open_store_async(url))
        made = await engine.create(model="m", input="hi")
        async with Worker(engine, handler):
            done = await ended(engine, made.id)
        assert [item["type"] for item in done.output] == ["message", "function_call"]
        assert "response.progress" in [e.event for e in await engine.events(made.id)]
        await engine.close()

    run(main())


def test_a_plain_function_returning_a_coroutine_is_awaited() -> None:
    async def later(job: Job) -> Completed:
        return Completed(usage={"prompt_tokens": 1, "completion_tokens": 1})

    async def main() -> None:
        engine = AsyncRunEngine()
        made = await engine.create(thread_id="t", assistant_id="a", version="v2")
        async with Worker(engine, lambda job: later(job)):
            done = await ended(engine, made.id)
        assert done.usage["total_tokens"] == 2

    run(main())


def test_a_response_deleted_mid_job_stops_it_and_ends_nothing() -> None:
    began = asyncio.Event()

    async def handler(job: Job) -> None:
        began.set()
        await asyncio.sleep(60)

    async def main() -> None:
        engine = AsyncResponseEngine()
        made = await engine.create(model="m", input="hi")
        async with Worker(engine, handler) as worker:
            await began.wait()
            await engine.delete(made.id)
            while not worker.ended:
                await asyncio.sleep(0.01)
        assert worker.ended == {"gone": 1}

    run(main())


def test_stop_from_another_thread_and_before_running() -> None:
    async def handler(job: Job) -> None:
        return None

    worker = Worker(AsyncRunEngine(), handler)
    worker.stop()  # not running: nothing to stop

    async def main() -> None:
        runner = asyncio.ensure_future(worker.run())
        while worker._stopping is None:
            await asyncio.sleep(0)
        await asyncio.to_thread(worker.stop)
        await runner

    run(main())


class Refusing(AsyncResponseEngine):
    """A response engine that refuses every complete, as a store does when the object
    moved on meanwhile (without the status change a job's watch would see first)."""

    async def complete(self, response_id: str, /, **kwargs: Any) -> Any:  # type: ignore[override]
        from runstate import InvalidTransitionError

        raise InvalidTransitionError(
            f"Cannot complete {response_id}: it moved on.", status="in_progress", event="complete"
        )


def test_a_job_the_store_refuses_to_end_is_counted_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        engine = Refusing()
        made = await engine.create(model="m", input="hi", background=True)

        async def handler(job: Job) -> Completed:
            return Completed()

        with caplog.at_level(logging.INFO, logger="runstate"):
            async with Worker(engine, handler) as worker:
                while not worker.ended:
                    await asyncio.sleep(0.01)
        assert worker.ended == {"refused": 1}
        assert f"{made.id} could not be ended" in caplog.text
        assert (await engine.get(made.id)).status is not ResponseStatus.COMPLETED

    run(main())


class Vanishing(AsyncResponseEngine):
    """A response engine whose objects are gone by the time a job reads their request."""

    async def work_of(self, response_id: str) -> Any:  # type: ignore[override]
        from runstate import ResponseNotFoundError

        raise ResponseNotFoundError(response_id)


def test_an_object_gone_before_its_job_began_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        engine = Vanishing()
        made = await engine.create(model="m", input="hi")
        calls: list[str] = []

        async def handler(job: Job) -> None:
            calls.append(job.id)

        async with Worker(engine, handler):
            while (await engine.get(made.id)).status is ResponseStatus.QUEUED:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
        assert calls == []

    with caplog.at_level(logging.INFO, logger="runstate.worker"):
        run(main())
    assert "before its job began: No response found with id" in caplog.text
