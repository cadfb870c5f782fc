"""Replicas, proven: two server processes on one PostgreSQL schema, driven by the
official openai client. A stream broken by a SIGKILL of the server that was generating
resumes on the other with ``starting_after`` and gets every event once; a cancel on one
replica stops the work an executor of the other is doing. The same for runs."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from servers import server, worker_elsewhere
from tables import pg_url

pytestmark = pytest.mark.timeout(180)
LEASE = "2"  # seconds: a killed replica's work is recovered soon


@pytest.fixture
def client_of() -> Iterator[Callable[[str], openai.OpenAI]]:
    """Clients of the test's replicas, each closed after the test (with any stream a kill
    left open: a socket the GC would otherwise close, warning, in a later test)."""
    made: list[openai.OpenAI] = []

    def make(url: str) -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=url, api_key="test-key", max_retries=0))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.mark.parametrize("first_stream_on", ["A", "B"])
def test_a_stream_broken_by_a_killed_replica_resumes_on_another(
    client_of: Callable[[str], openai.OpenAI], pg_schema: str, first_stream_on: str
) -> None:
    """Created on A, whose executor generates it; streamed from A (which the kill breaks)
    or from B; then A is killed mid-stream, and the client resumes on B, which ends the
    stream once the lost worker's response is recovered."""
    store = pg_url(pg_schema)
    # A generates (one executor, in its process); B serves, with no executor of its own.
    with (
        server(store, "--workers", "1", "--lease", LEASE, killed_ok=True) as a,
        server(store, "--workers", "0", "--lease", LEASE) as b,
    ):
        on_a, on_b = client_of(a.url), client_of(b.url)
        created = on_a.responses.create(
            model="gpt-4o", input="Hi", background=True, metadata={"delay": "6"}
        )
        seen: list[Any] = []
        first = on_a if first_stream_on == "A" else on_b
        with first.responses.retrieve(created.id, stream=True) as stream:
            for event in stream:
                seen.append(event)
                if event.type == "response.output_text.delta" and len(seen) >= 5:
                    break  # mid-stream, on A, while A's executor generates it
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=15)
        # B's sweeper finds A's lease ended; the client resumes on B after the last
        # event it saw, and gets the rest once, to the end.
        resumed = list(
            on_b.responses.retrieve(
                created.id, stream=True, starting_after=seen[-1].sequence_number
            )
        )
        numbers = [e.sequence_number for e in seen + resumed]
        assert numbers == list(range(len(numbers)))  # every event once, in order
        # A's worker had streamed part of it: the recovery fails it rather than make
        # another executor generate it again on top of the half-sent stream.
        assert [e.type for e in resumed][-1] == "response.failed"
        final = on_b.responses.retrieve(created.id)
        assert final.status == "failed" and final.error is not None
        assert final.error.message == "The worker generating this response was lost."
        assert final.output_text and final.output[0].status == "incomplete"


def test_a_cancel_on_one_replica_stops_the_work_of_another(
    client_of: Callable[[str], openai.OpenAI], pg_schema: str
) -> None:
    store = pg_url(pg_schema)
    with (
        server(store, "--workers", "1") as a,
        server(store, "--workers", "0") as b,
    ):
        on_a, on_b = client_of(a.url), client_of(b.url)
        created = on_a.responses.create(
            model="gpt-4o", input="Hi", background=True, metadata={"delay": "30"}
        )
        stream = on_b.responses.retrieve(created.id, stream=True)
        for event in stream:  # A's executor is generating it
            if event.type == "response.output_text.delta":
                break
        assert on_b.responses.cancel(created.id).status == "cancelled"
        rest = [event.type for event in stream]
        assert rest[-1] == "response.cancelled" and "response.completed" not in rest
        history = list(on_a.responses.retrieve(created.id, stream=True))
        assert history[-1].type == "response.cancelled"  # nothing after it, from anyone
        assert on_a.responses.retrieve(created.id).status == "cancelled"


def test_a_run_cancelled_on_one_replica_while_another_executes_it(
    client_of: Callable[[str], openai.OpenAI], pg_schema: str
) -> None:
    store = pg_url(pg_schema)
    with (
        server(store, "--workers", "1") as a,
        server(store, "--workers", "0") as b,
    ):
        on_a, on_b = client_of(a.url), client_of(b.url)
        thread = on_a.beta.threads.create()
        run = on_a.beta.threads.runs.create(
            thread_id=thread.id, assistant_id="asst_1", metadata={"delay": "30"}
        )
        while on_b.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status == "queued":
            pass  # until A's executor holds it (bounded by the test's timeout)
        cancelling = on_b.beta.threads.runs.cancel(run.id, thread_id=thread.id)
        assert cancelling.status == "cancelling"
        while (done := on_a.beta.threads.runs.retrieve(run.id, thread_id=thread.id)).status == (
            "cancelling"
        ):
            pass  # A's executor sees the cancel at its next heartbeat and confirms it
        assert done.status == "cancelled"


def test_a_run_stream_follows_a_run_executed_by_another_replica(
    client_of: Callable[[str], openai.OpenAI], pg_schema: str
) -> None:
    store = pg_url(pg_schema)
    with (
        server(store, "--workers", "1") as a,
        server(store, "--workers", "0") as b,
    ):
        on_b = client_of(b.url)
        thread = on_b.beta.threads.create()
        with on_b.beta.threads.runs.stream(thread_id=thread.id, assistant_id="asst_1") as stream:
            events = [event.event for event in stream]
        assert events[0] == "thread.run.created" and events[-1] == "thread.run.completed"
        assert "thread.run.in_progress" in events  # A's executor ran it; B streamed it
        del a


def test_a_run_stream_on_one_replica_outlives_the_replica_executing_it(
    client_of: Callable[[str], openai.OpenAI], pg_schema: str
) -> None:
    store = pg_url(pg_schema)
    with (
        server(store, "--workers", "1", "--lease", LEASE, killed_ok=True) as a,
        server(store, "--workers", "0", "--lease", LEASE) as b,
    ):
        on_b = client_of(b.url)
        thread = on_b.beta.threads.create()
        events = []
        with on_b.beta.threads.runs.stream(
            thread_id=thread.id, assistant_id="asst_1", metadata={"delay": "4"}
        ) as stream:
            for event in stream:
                events.append(event.event)
                if event.event == "thread.run.in_progress" and a.proc.poll() is None:
                    a.proc.send_signal(signal.SIGKILL)  # A was executing it: gone
                    a.proc.wait(timeout=15)
                    context = worker_elsewhere(store)  # another worker, once B recovers the run
                    context.__enter__()
        context.__exit__(None, None, None)
        assert events == [  # every event once, the recovery included
            "thread.run.created",
            "thread.run.queued",
            "thread.run.in_progress",
            "thread.run.queued",
            "thread.run.in_progress",
            "thread.run.completed",
        ]
