"""Webhook dispatchers as processes (``runstate webhooks deliver``) on real stores: one
SIGKILLed mid-batch, four on one PostgreSQL, the endings of 1,000 responses made by
worker processes. Every delivery is checked with the official client's ``unwrap``."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from receiver import HANG, new_secret, receiving
from servers import RUNSTATE, worker_process
from tables import OUTPUT, pg_url

from runstate import ResponseEngine, open_store

SECRET = new_secret()


@contextmanager
def dispatcher(url: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``runstate webhooks deliver url`` in a process of its own, with a short lease (a
    killed dispatcher's deliveries are due again 3 s later)."""
    proc = subprocess.Popen(
        [*RUNSTATE, "webhooks", "deliver", url, "--lease", "3", "--timeout", "2.5", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert "Traceback" not in err, err


def ended(engine: ResponseEngine, count: int) -> list[str]:
    """``count`` responses completed here (their endings write the webhooks)."""
    ids = []
    for _ in range(count):
        response = engine.create(model="m", input="hi")
        claimed = engine.claim("w")
        assert claimed is not None
        engine.complete(claimed.id, output=OUTPUT)
        ids.append(response.id)
    return ids


def checked(received: list[Any]) -> Counter[str]:
    """How many times each event id arrived (answered 2xx), each one verified."""
    delivered: Counter[str] = Counter()
    for r in received:
        event = r.unwrap(SECRET)
        assert event.type == "response.completed"
        if 200 <= r.answered < 300:
            delivered[event.id] += 1
    return delivered


def test_a_dispatcher_killed_mid_batch_leaves_its_deliveries_to_the_next(shared_url: str) -> None:
    store_url = shared_url
    engine = ResponseEngine(open_store(store_url))
    # The first five requests hang: the dispatcher is killed while it waits on them.
    with receiving(lambda n: HANG if n <= 5 else 200) as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET)
        made = ended(engine, 5)
        first = subprocess.Popen(
            [*RUNSTATE, "webhooks", "deliver", store_url, "--lease", "3", "--timeout", "2.5"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            receiver.wait_for(5)  # the whole batch is in flight
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        with dispatcher(store_url):
            got = receiver.wait_for(10)
            deadline = time.monotonic() + 30
            while engine.webhooks.stats().pending and time.monotonic() < deadline:
                time.sleep(0.05)
    delivered = checked(got)
    assert set(delivered) == {r.headers["webhook-id"] for r in got[:5]}
    assert all(n == 1 for n in delivered.values())  # each delivered once, after the kill
    assert {json.loads(r.body)["data"]["id"] for r in got[5:]} == set(made)
    assert engine.webhooks.stats().pending == 0
    engine.close()


@pytest.fixture
def pg_store_url(pg_schema: str) -> str:
    return pg_url(pg_schema)


def test_four_dispatchers_on_one_postgresql_send_each_delivery_once(pg_store_url: str) -> None:
    engine = ResponseEngine(open_store(pg_store_url))
    with receiving() as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET)
        with ExitStack() as stack:
            for _ in range(4):
                stack.enter_context(dispatcher(pg_store_url, "--concurrency", "4"))
            made = ended(engine, 300)  # while the four compete for them
            got = receiver.wait_for(300)
            deadline = time.monotonic() + 30
            while engine.webhooks.stats().pending and time.monotonic() < deadline:
                time.sleep(0.05)
        got = list(receiver.received)  # the dispatchers have exited: nothing more can come
    delivered = checked(got)
    assert len(got) == 300  # no dispatcher died: not one duplicate
    assert all(n == 1 for n in delivered.values())
    assert {json.loads(r.body)["data"]["id"] for r in got} == set(made)
    engine.close()


def test_the_endings_of_1000_responses_made_by_many_workers_are_each_delivered(
    pg_store_url: str,
) -> None:
    engine = ResponseEngine(open_store(pg_store_url))
    with receiving() as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET, events=["response.completed"])
        with ExitStack() as stack:
            for _ in range(3):
                stack.enter_context(
                    worker_process(pg_store_url, "responses", "quick", "--concurrency", "16")
                )
            stack.enter_context(dispatcher(pg_store_url))
            stack.enter_context(dispatcher(pg_store_url))
            made = {engine.create(model="m", input=f"n{i}").id for i in range(1000)}
            got = receiver.wait_for(1000, timeout=120)
    delivered = checked(got)
    assert {json.loads(r.body)["data"]["id"] for r in got} == made
    assert len(delivered) == 1000 and all(n == 1 for n in delivered.values())
    engine.close()


def test_runstate_webhooks_deliver_stops_cleanly_and_says_what_it_did(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    engine = ResponseEngine(open_store(url))
    with receiving() as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET)
        ended(engine, 3)
        proc = subprocess.Popen(
            [*RUNSTATE, "webhooks", "deliver", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            receiver.wait_for(3)
            while engine.webhooks.stats().pending:
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == "delivered 3, retried 0, failed 0"
    assert "Traceback" not in err
    engine.close()
