"""Webhooks through every surface that runs or manages them: a Worker and the server
that send, the official client making the responses, the command line, telemetry, and
the bell that wakes an idle dispatcher in another process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from receiver import new_secret, receiving
from servers import RUNSTATE, in_thread, poll, server
from tables import OUTPUT

from runstate import (
    AsyncResponseEngine,
    Completed,
    Job,
    MemoryStore,
    ResponseEngine,
    ValidationError,
    Worker,
    open_store,
    open_store_async,
    webhooks,
)
from runstate.server import create_app
from runstate.stores._bell import WEBHOOKS, Bell
from runstate.stores._postgres import parse_notification
from runstate.telemetry import Telemetry
from runstate.webhooks import Dispatcher

SECRET = new_secret()


async def done(job: Job) -> Completed:
    return Completed(output=OUTPUT)


def test_a_worker_with_webhooks_sends_the_endings_of_its_jobs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with receiving() as receiver:

        async def scenario() -> str:
            store = await open_store_async(url)
            engine = AsyncResponseEngine(store)
            await engine.webhooks.add(receiver.url, secret=SECRET)
            async with Worker(engine, done, webhooks={"backoff_base": 0.5}) as worker:
                assert worker.dispatcher is not None
                response = await engine.create(model="m", input="hi")
                await asyncio.to_thread(receiver.wait_for, 1)
            await store.close()
            return response.id

        made = asyncio.run(scenario())
        (received,) = receiver.received
    event = received.unwrap(SECRET)
    assert (event.type, event.data.id) == ("response.completed", made)


def test_a_worker_refuses_a_bad_webhooks_option() -> None:
    engine = ResponseEngine()
    with pytest.raises(ValidationError, match="Invalid 'webhooks': expected True or a dict"):
        Worker(engine, done, webhooks="yes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="Unknown option for Dispatcher: 'lease'"):
        Worker(engine, done, webhooks={"lease": 5})
    assert Worker(engine, done).dispatcher is None


def test_the_server_sends_what_the_official_client_made(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with receiving() as receiver:
        endpoints = [{"url": receiver.url, "secret": SECRET, "events": ["response.completed"]}]
        app = create_app(url, done, webhooks=True, webhook_endpoints=endpoints)
        with in_thread(app) as base:
            client = openai.OpenAI(base_url=f"{base}/v1", api_key="k")
            made = client.responses.create(model="m", input="hi", background=True)
            assert poll(client, made.id).status == "completed"
            (received,) = receiver.wait_for(1)
    event = received.unwrap(SECRET)
    assert (event.type, event.data.id) == ("response.completed", made.id)
    # The endpoint was added once, when the app started.
    engine = ResponseEngine(open_store(url))
    assert [e.url for e in engine.webhooks.list()] == [receiver.url]
    engine.close()


def test_the_server_refuses_bad_webhook_options_at_once() -> None:
    with pytest.raises(ValidationError, match="Invalid 'webhooks'"):
        create_app("memory://", done, webhooks=3)
    with pytest.raises(ValidationError, match="Invalid 'secret'"):
        create_app("memory://", done, webhook_endpoints=[{"url": "http://x", "secret": "x"}])


def test_runstate_serve_gets_its_endpoint_and_sends(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    os.environ["RUNSTATE_WEBHOOK_SECRET"] = SECRET
    try:
        with receiving() as receiver, server(url, "--webhook", receiver.url) as running:
            client = openai.OpenAI(base_url=running.url, api_key="k")
            made = client.responses.create(model="m", input="hi", background=True)
            poll(client, made.id)
            (received,) = receiver.wait_for(1)
    finally:
        del os.environ["RUNSTATE_WEBHOOK_SECRET"]
    assert received.unwrap(SECRET).data.id == made.id


def test_runstate_serve_without_webhooks_runs_no_dispatcher() -> None:
    import argparse

    from runstate._serve import webhooks_of

    assert webhooks_of(argparse.Namespace(no_webhooks=True)) is False
    options = argparse.Namespace(no_webhooks=False, webhook_backoff_base=2.0, webhook_lease=30)
    assert webhooks_of(options) == {"backoff_base": 2.0, "lease_seconds": 30}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--webhook", "http://x"], "--webhook: $NOPE is not set"),
        (["--webhook-event", "response.completed"], "--webhook-event goes with --webhook"),
    ],
)
def test_runstate_serve_refuses_bad_webhook_options(args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOPE"}
    done_ = subprocess.run(
        [*RUNSTATE, "serve", "memory://", "--webhook-secret-env", "NOPE", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done_.returncode == 2
    assert message in done_.stderr.splitlines()[-1]


# --- the command line ------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNSTATE, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_the_command_line_adds_lists_and_removes_endpoints(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    open_store(url).close()
    added = cli(
        "webhooks",
        "add",
        url,
        "https://example.com/a",
        "--event",
        "response.failed",
        "--json",
        env={"RUNSTATE_WEBHOOK_SECRET": SECRET},
    )
    assert added.returncode == 0, added.stderr
    shown = json.loads(added.stdout)
    assert shown["event_types"] == ["response.failed"] and "secret" not in shown
    made = cli("webhooks", "add", url, "https://example.com/b", "--generate-secret")
    assert made.returncode == 0
    generated = made.stdout.splitlines()[1].removeprefix("secret: ")
    as_json = cli("webhooks", "add", url, "https://example.com/c", "--generate-secret", "--json")
    shown_once = json.loads(as_json.stdout)
    assert shown_once["secret"].startswith("whsec_") and shown_once["secret"] != generated
    assert cli("webhooks", "remove", url, shown_once["id"]).returncode == 0
    assert generated.startswith("whsec_") and len(generated) > 30
    listing = cli("webhooks", "list", url)
    assert listing.returncode == 0
    assert SECRET not in listing.stdout and generated not in listing.stdout
    assert [line.split()[1] for line in listing.stdout.splitlines()] == [
        "https://example.com/a",
        "https://example.com/b",
    ]
    gone = cli("webhooks", "remove", url, shown["id"])
    assert (gone.returncode, gone.stdout) == (0, f"removed {shown['id']}\n")
    again = cli("webhooks", "remove", url, shown["id"])
    assert again.returncode == 1 and "no webhook endpoint" in again.stderr
    assert len(json.loads(cli("webhooks", "list", url, "--json").stdout)) == 1


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["ftp://x"], {"RUNSTATE_WEBHOOK_SECRET": SECRET}, "Invalid 'url'"),
        (["http://x", "--event", "nope"], {"RUNSTATE_WEBHOOK_SECRET": SECRET}, "unknown event"),
        (["http://x"], {"RUNSTATE_WEBHOOK_SECRET": "s3cret"}, "Invalid 'secret'"),
        (["http://x"], {"RUNSTATE_WEBHOOK_SECRET": ""}, "$RUNSTATE_WEBHOOK_SECRET is not set"),
    ],
)
def test_a_refused_endpoint_is_one_line_exit_2_and_nothing_stored(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    open_store(url).close()
    refused = cli("webhooks", "add", url, *args, env=env)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and message in refused.stderr
    assert "s3cret" not in refused.stderr
    assert cli("webhooks", "list", url).stdout == ""


def test_runstate_stats_shows_the_deliveries(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    engine = ResponseEngine(open_store(url))
    engine.webhooks.add("http://127.0.0.1:1/x", secret=SECRET)
    response = engine.create(model="m", input="hi")
    engine.claim("w")
    engine.complete(response.id, output=OUTPUT)
    engine.close()
    figures = json.loads(cli("stats", url, "--json").stdout)["webhooks"]
    assert figures["pending"] == 1 and figures["failed"] == 0
    assert figures["oldest_pending_age"] >= 0
    table = cli("stats", url).stdout
    assert "deliveries pending\t1" in table and "deliveries failed\t0" in table


# --- telemetry and the bell --------------------------------------------------------------------


def test_telemetry_counts_the_attempts_by_outcome() -> None:
    reader = InMemoryMetricReader()
    telemetry = Telemetry(meter_provider=MeterProvider([reader]))
    store = MemoryStore()
    engine = ResponseEngine(store)
    with receiving(lambda n: 500 if n == 1 else (410 if n == 3 else 200)) as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET)
        for _ in range(2):
            response = engine.create(model="m", input="hi")
            engine.claim("w")
            engine.complete(response.id, output=OUTPUT)
        dispatcher = Dispatcher(store, telemetry=telemetry, backoff_base=0.01)

        async def until_settled() -> None:
            while dispatcher.delivered + dispatcher.failed < 2:
                if not await dispatcher.run_once():
                    await asyncio.sleep(0.05)
            await dispatcher.aclose()

        asyncio.run(until_settled())
    counted: dict[str, float] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "runstate.webhook.attempts":
                    for p in metric.data.data_points:
                        counted[str(p.attributes["runstate.outcome"])] = p.value
    assert counted == {"retry": 1, "delivered": 1, "failed": 1}


def test_a_write_that_made_deliveries_rings_the_webhooks_key() -> None:
    store = MemoryStore()
    bell: Bell = store.bell
    engine = ResponseEngine(store)
    response = engine.create(model="m", input="hi")
    engine.claim("w")
    mark = bell.mark(WEBHOOKS)
    assert not bell.wait(WEBHOOKS, mark, 0)
    engine.complete(response.id, output=OUTPUT)
    assert bell.wait(WEBHOOKS, mark, 0)


def test_a_notification_carries_the_webhooks_flag() -> None:
    assert parse_notification("resp_1^@") == ["resp_1", "resp_1^", WEBHOOKS]
    assert parse_notification("resp_1!,resp_2") == ["resp_1", "<waiting>", "resp_2"]


def test_an_idle_dispatcher_hears_an_ending_made_by_another_process(
    shared_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher waits on its store's bell, and would not look again by itself for
    an hour; the ending is made by a ``runstate`` command in another process, so only
    the store's feed can wake it."""
    monkeypatch.setattr(webhooks, "IDLE_CHECK", 3600.0)
    engine = ResponseEngine(open_store(shared_url))
    response = engine.create(model="m", input="hi")
    engine.claim("w")
    with receiving() as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET)

        async def scenario() -> Any:
            store = await open_store_async(shared_url)
            dispatcher = Dispatcher(store)
            stop = asyncio.Event()
            running = asyncio.create_task(dispatcher.run(stop))
            await asyncio.sleep(0.3)  # idle now
            ended = await asyncio.to_thread(cli, "cancel", shared_url, response.id)
            assert ended.returncode == 0, ended.stderr
            received = await asyncio.to_thread(receiver.wait_for, 1)
            stop.set()
            await running
            await store.close()
            return received

        (received,) = asyncio.run(scenario())
    engine.close()
    assert received.unwrap(SECRET).type == "response.cancelled"
