"""The worker runtime across processes, on a real SQLite file and a real PostgreSQL
schema: a cancel made in another process reaches the handler; SIGTERM drains a worker
and a second worker process takes what it handed back; SIGKILL leaves jobs that a sweep
recovers by the rules (a run and a silent response requeued, a response that had
streamed failed, or requeued with its events for ``resume``); and PostgreSQL restarted
for five seconds in the middle of a job."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from servers import worker_process as worker
from tables import pg_url

from runstate import (
    AsyncResponseEngine,
    Completed,
    Job,
    ResponseEngine,
    ResponseStatus,
    RunEngine,
    RunStatus,
    StoreError,
    Worker,
    open_store,
    open_store_async,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    return pg_url(request.getfixturevalue("pg_schema"))


def test_a_cancel_from_another_process_reaches_the_handler(url: str) -> None:
    responses, runs = ResponseEngine(open_store(url)), RunEngine(open_store(url))
    with worker(url, "responses", "slow") as process:
        made = responses.create(model="m", input="hi")
        process.wait_for(f"streamed {made.id}")
        responses.cancel(made.id)  # this test's process, not the worker's
        assert process.wait_for("cancelled") == f"cancelled {made.id}"
    assert responses.get(made.id).status is ResponseStatus.CANCELLED
    with worker(url, "runs", "slow") as process:
        run = runs.create(thread_id="t", assistant_id="a")
        process.wait_for(f"claimed {run.id}")
        assert runs.cancel(run.id).status is RunStatus.CANCELLING
        process.wait_for(f"cancelled {run.id}")
        while runs.get(run.id).status is RunStatus.CANCELLING:  # the worker confirms it
            runs.wait_for_change(run.id, status=RunStatus.CANCELLING, timeout=1)
    assert runs.get(run.id).status is RunStatus.CANCELLED
    responses.close(), runs.close()


def test_sigterm_drains_and_another_worker_takes_what_was_handed_back(url: str) -> None:
    engine = RunEngine(open_store(url))
    made = [engine.create(thread_id=f"t{i}", assistant_id="a") for i in range(2)]
    with worker(url, "runs", "silent", "--grace", "0.2") as first:
        for _ in made:
            first.wait_for("claimed")
        with worker(url, "runs", "quick") as second:
            first.proc.send_signal(signal.SIGTERM)
            assert first.proc.wait(timeout=30) == 0
            stopped = first.wait_for("stopped")
            assert stopped == "stopped [('handed back', 2)]"
            done = {second.wait_for("done").split()[1] for _ in made}
            for run in made:  # its handler is done; the runtime completes it next
                while (now := engine.get(run.id)).status is RunStatus.IN_PROGRESS:
                    engine.wait_for_change(run.id, status=now.status, timeout=1)
    assert done == {run.id for run in made}
    assert {engine.get(run.id).status for run in made} == {RunStatus.COMPLETED}
    engine.close()


def test_sigkill_leaves_jobs_a_sweep_recovers_by_the_rules(url: str) -> None:
    runs, responses = RunEngine(open_store(url)), ResponseEngine(open_store(url))
    run = runs.create(thread_id="t", assistant_id="a")
    with worker(url, "runs", "silent", "--lease", "1") as process:
        process.wait_for(f"claimed {run.id}")
        process.proc.kill()
    silent = responses.create(model="m", input="hi")
    with worker(url, "responses", "silent", "--lease", "1") as process:
        process.wait_for(f"claimed {silent.id}")
        process.proc.kill()
    streamed, resumable = (responses.create(model="m", input="hi") for _ in range(2))
    with worker(url, "responses", "slow", "--lease", "1", "--concurrency", "2") as process:
        process.wait_for("streamed")
        process.wait_for("streamed")
        process.proc.kill()
    time.sleep(1.1)  # the leases run out (a recovery before that would touch nothing)
    while {r.id for r in runs.recover_stalled()} != {run.id}:
        time.sleep(0.1)
    assert runs.get(run.id).status is RunStatus.QUEUED
    recovered = responses.recover_stalled(limit=2)  # silent, then streamed: oldest first
    assert {r.id for r in recovered} == {silent.id, streamed.id}
    assert responses.get(silent.id).status is ResponseStatus.QUEUED  # nothing was sent
    lost = responses.get(streamed.id)
    assert lost.status is ResponseStatus.FAILED
    assert lost.error == {
        "code": "server_error",
        "message": "The worker generating this response was lost.",
    }
    assert [r.id for r in responses.recover_stalled(resume=True)] == [resumable.id]
    assert responses.get(resumable.id).status is ResponseStatus.QUEUED
    runs.close(), responses.close()
    _resume(url, resumable.id)


def _resume(url: str, response_id: str) -> None:
    """A worker with ``resume`` gets the events so far, and continues the response."""
    seen: list[int] = []

    async def handler(job: Job) -> Completed | None:
        if job.id != response_id:
            return None
        seen.append(len([e for e in job.events if e.event == "response.output_text.delta"]))
        await job.text("upon a time")
        return Completed()

    async def main() -> None:
        engine = AsyncResponseEngine(await open_store_async(url))
        async with Worker(engine, handler, resume=True):
            while (await engine.get(response_id)).status is not ResponseStatus.COMPLETED:
                await asyncio.sleep(0.02)
        done = await engine.get(response_id)
        assert [item["status"] for item in done.output] == ["incomplete", "completed"]
        assert done.output_text == "Onceupon a time"
        await engine.close()

    asyncio.run(main())
    assert seen == [1]


def _postgres(action: str) -> None:
    cluster = os.listdir("/etc/postgresql")[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", action],
        check=True,
        capture_output=True,
    )


@pytest.mark.timeout(180)
def test_postgres_restarted_for_five_seconds_in_the_middle_of_a_job(
    pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = pg_url(pg_schema)
    restarted = threading.Event()

    async def handler(job: Job) -> Completed:
        await job.text("Before")
        await asyncio.to_thread(restarted.wait)  # the job goes on while the server is down
        await job.text(" and after")
        return Completed()

    async def main() -> Any:
        engine = AsyncResponseEngine(await open_store_async(url), lease_seconds=12)
        made = await engine.create(model="m", input="hi")
        async with Worker(engine, handler) as running:
            while not (await engine.get(made.id)).output:
                await asyncio.sleep(0.02)
            await asyncio.to_thread(_restart_for, 5.0)
            restarted.set()
            while (await _read(engine, made.id)).status is not ResponseStatus.COMPLETED:
                await asyncio.sleep(0.1)
        done = await engine.get(made.id)
        await engine.close()
        return done, running.ended

    with caplog.at_level(logging.WARNING):
        done, ended = asyncio.run(main())
    assert done.output_text == "Before and after" and ended == {"completed": 1}
    assert "LISTEN connection" in caplog.text and "was lost" in caplog.text  # it was felt


@pytest.mark.timeout(180)
def test_a_job_whose_lease_cannot_be_renewed_is_stopped_and_never_ended_here(
    pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL away for longer than the lease: another worker may hold the job by
    now, so this one stops its handler and ends nothing; a sweep puts it back."""
    url = pg_url(pg_schema)
    stopped = threading.Event()

    async def handler(job: Job) -> Completed:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return Completed()

    async def main() -> Any:
        engine = AsyncResponseEngine(await open_store_async(url), lease_seconds=2)
        made = await engine.create(model="m", input="hi")
        async with Worker(engine, handler) as running:
            while (await engine.get(made.id)).status is not ResponseStatus.IN_PROGRESS:
                await asyncio.sleep(0.02)
            await asyncio.to_thread(_restart_for, 4.0)
            await asyncio.to_thread(stopped.wait)
            while running.ended == {}:  # the handler stopped; the job is being let go
                await asyncio.sleep(0.02)
            ended = dict(running.ended)
            await _read(engine, made.id)
            running.stop()
        recovered = await engine.recover_stalled()
        await engine.close()
        return made.id, ended, [r.id for r in recovered]

    with caplog.at_level(logging.WARNING, logger="runstate.worker"):
        made_id, ended, recovered = asyncio.run(main())
    assert ended == {"lease lost": 1}
    assert "lease could not be renewed for 2s; stopping it" in caplog.text
    assert recovered == [made_id]  # nothing was streamed: back in the queue


def _restart_for(seconds: float) -> None:
    _postgres("stop")
    try:
        time.sleep(seconds)
    finally:
        _postgres("start")


async def _read(engine: Any, object_id: str) -> Any:
    """The object, read again until the store answers (it was just restarted)."""
    from runstate import StoreError

    while True:
        try:
            return await engine.get(object_id)
        except StoreError:
            await asyncio.sleep(0.2)


@pytest.mark.timeout(180)
def test_a_webhook_dispatcher_goes_on_after_postgres_restarted(
    pg_schema: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher looks at the store while it is down (every 0.2 s here): its call
    waits for the pool's new connection and, once the server is back, it sends the
    ending made then."""
    from receiver import new_secret, receiving

    from runstate import webhooks

    monkeypatch.setattr(webhooks, "IDLE_CHECK", 0.2)
    url = pg_url(pg_schema)
    secret = new_secret()

    async def main(receiver: Any) -> str:
        engine = AsyncResponseEngine(await open_store_async(url))
        await engine.webhooks.add(receiver.url, secret=secret)
        dispatcher = webhooks.Dispatcher(await open_store_async(url))
        stop = asyncio.Event()
        sending = asyncio.create_task(dispatcher.run(stop))
        await asyncio.to_thread(_restart_for, 3.0)
        while True:  # the store answers again
            try:
                made = await engine.create(model="m", input="hi")
                break
            except StoreError:
                await asyncio.sleep(0.2)
        await engine.claim("w")
        await engine.complete(made.id, output=[])
        await asyncio.to_thread(receiver.wait_for, 1, 60)
        stop.set()
        await sending
        await dispatcher.store.close()
        await engine.close()
        return made.id

    with caplog.at_level(logging.WARNING), receiving() as receiver:
        made_id = asyncio.run(main(receiver))
        (received,) = receiver.received
    assert received.unwrap(secret).data.id == made_id
    assert "was lost" in caplog.text  # the restart was felt
