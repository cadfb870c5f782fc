"""Webhooks on every store: endpoints, the outbox written with each ending, and the
dispatcher sending to a real local receiver, every delivery verified by the official
client's ``webhooks.unwrap``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.webhooks import (
    ResponseCancelledWebhookEvent,
    ResponseCompletedWebhookEvent,
    ResponseFailedWebhookEvent,
    ResponseIncompleteWebhookEvent,
    WebhookEndpoint,
)
from receiver import HANG, Received, new_secret, receiving
from tables import CALLS, OUTPUT, response_in

from runstate import (
    ManualClock,
    ResponseEngine,
    ResponseStatus,
    RunEngine,
    RunStatus,
    ValidationError,
    open_store,
)
from runstate._webhooks import Delivery, Settle, retry_at
from runstate.webhooks import Dispatcher, sign

R = ResponseStatus
S = RunStatus
SECRET = new_secret()
SDK_MODELS = {
    "response.completed": ResponseCompletedWebhookEvent,
    "response.failed": ResponseFailedWebhookEvent,
    "response.cancelled": ResponseCancelledWebhookEvent,
    "response.incomplete": ResponseIncompleteWebhookEvent,
}


@pytest.fixture
def store(store_url: str) -> Iterator[Any]:
    store = open_store(store_url)
    yield store
    store.close()


def responses(store: Any) -> ResponseEngine:
    return ResponseEngine(store)


def pending(store: Any) -> list[Delivery]:
    """Every delivery due now, claimed (and so leased) for the test to look at."""
    return list(store.claim_deliveries(int(time.time()) + 10_000, 60, 1000))


def settle(store: Any, delivery: Delivery, status: str, now: int, **more: Any) -> bool:
    (settled,) = store.settle_deliveries([Settle(delivery, status, now, **more)])
    return bool(settled)


def send(store: Any, **options: Any) -> Dispatcher:
    """A dispatcher that sends what is due once; it is returned to look at its counts."""
    dispatcher = Dispatcher(store, **options)

    async def once() -> None:
        try:
            await dispatcher.run_once()
        finally:
            await dispatcher.aclose()

    asyncio.run(once())
    return dispatcher


def verified(received: Received) -> Any:
    event = received.unwrap(SECRET)
    body = json.loads(received.body)
    assert received.headers["webhook-id"] == body["id"]
    return event


# --- endpoints --------------------------------------------------------------------------


def test_an_endpoint_is_kept_and_listed_without_its_secret(store: Any) -> None:
    engine = responses(store)
    added = engine.webhooks.add(
        "https://example.com/hooks", secret=SECRET, events=["response.completed"]
    )
    assert added.id.startswith("we_") and added.events == ("response.completed",)
    (listed,) = engine.webhooks.list()
    assert listed == added
    assert SECRET not in repr(listed) and SECRET not in json.dumps(listed.to_dict())
    shown = WebhookEndpoint.model_validate(listed.to_dict())  # the public API's shape
    assert shown.url == "https://example.com/hooks" and shown.name == shown.url
    assert shown.event_types == ["response.completed"]
    assert engine.webhooks.remove(added.id) is True
    assert engine.webhooks.remove(added.id) is False
    assert engine.webhooks.list() == []


def test_an_endpoint_takes_every_type_by_default_and_a_name(store: Any) -> None:
    added = responses(store).webhooks.add("http://127.0.0.1:1/x", secret=SECRET, name="mine")
    assert added.name == "mine"
    assert set(added.events) == {
        "response.completed",
        "response.failed",
        "response.cancelled",
        "response.incomplete",
        "thread.run.completed",
        "thread.run.failed",
        "thread.run.cancelled",
        "thread.run.expired",
        "thread.run.requires_action",
        "thread.run.incomplete",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"url": "ftp://example.com/x"}, "Invalid 'url': expected an http(s) URL"),
        ({"url": "example.com/x"}, "Invalid 'url': expected an http(s) URL"),
        ({"url": "http:///x"}, "Invalid 'url': expected an http(s) URL"),
        ({"url": "http://exa mple.com/"}, "Invalid 'url': expected an http(s) URL"),
        ({"url": "http://example.com:port/"}, "Invalid 'url': expected an http(s) URL"),
        ({"url": "https://x/" + "a" * 2048}, "of at most 2048 characters"),
        ({"url": 7}, "Invalid 'url'"),
        ({"secret": "s3cret"}, "Invalid 'secret': expected 'whsec_'"),
        ({"secret": "whsec_%%%"}, "Invalid 'secret'"),
        ({"secret": "whsec_" + "QUFB" * 2}, "Invalid 'secret'"),  # 6 bytes: too short
        ({"secret": None}, "Invalid 'secret'"),
        ({"events": ["response.created"]}, "unknown event type 'response.created'"),
        ({"events": []}, "at least one event type"),
        ({"events": "response.completed"}, "expected a list of event types"),
        ({"name": ""}, "Invalid 'name'"),
    ],
)
def test_a_bad_endpoint_is_refused_and_nothing_is_stored(
    store: Any, args: dict[str, Any], message: str
) -> None:
    engine = responses(store)
    given = {"url": "https://example.com/hooks", "secret": SECRET} | args
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        engine.webhooks.add(given.pop("url"), **given)
    assert "s3cret" not in str(e.value)
    assert engine.webhooks.list() == []


# --- the outbox ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [R.COMPLETED, R.FAILED, R.CANCELLED, R.INCOMPLETE])
def test_each_ending_of_a_response_writes_its_event_for_each_endpoint(
    store: Any, status: ResponseStatus
) -> None:
    engine = responses(store)
    every = engine.webhooks.add("http://127.0.0.1:1/a", secret=SECRET)
    engine.webhooks.add("http://127.0.0.1:1/b", secret=SECRET, events=["thread.run.failed"])
    response = response_in(engine, status)
    (delivery,) = pending(store)  # the second endpoint does not take it
    assert delivery.endpoint_id == every.id and delivery.url == "http://127.0.0.1:1/a"
    assert delivery.type == f"response.{status.value}" and delivery.object_id == response.id
    assert delivery.event_id.startswith("evt_") and delivery.attempts == 1
    assert delivery.secret == SECRET
    assert SECRET not in repr(delivery)


def test_no_webhook_without_an_endpoint_and_none_for_active_steps(store: Any) -> None:
    engine = responses(store)
    response_in(engine, R.COMPLETED)  # before any endpoint: nothing for it
    engine.webhooks.add("http://127.0.0.1:1/a", secret=SECRET)
    response_in(engine, R.IN_PROGRESS)  # active: nothing either
    assert pending(store) == []
    assert store.delivery_stats().pending == 0


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (["start", "complete"], "thread.run.completed"),
        (["start", "fail"], "thread.run.failed"),
        (["start", "cancel", "confirm_cancel"], "thread.run.cancelled"),
        (["expire"], "thread.run.expired"),
        (["start", "require_action"], "thread.run.requires_action"),
    ],
)
def test_each_told_step_of_a_run_writes_its_event(
    store: Any, path: list[str], expected: str
) -> None:
    clock = ManualClock(int(time.time()))
    engine = RunEngine(store, clock=clock)
    engine.webhooks.add("http://127.0.0.1:1/a", secret=SECRET)
    run = engine.create(thread_id="thread_1", assistant_id="asst_1", model="m")
    for step in path:
        if step == "start":
            assert engine.claim("w") is not None
        elif step == "complete":
            engine.complete(run.id)
        elif step == "fail":
            engine.fail(run.id, code="server_error", message="boom")
        elif step == "cancel":
            engine.cancel(run.id)
        elif step == "confirm_cancel":
            engine.confirm_cancel(run.id)
        elif step == "require_action":
            engine.require_action(run.id, CALLS)
        elif step == "expire":
            clock.advance(601)
            assert len(engine.expire_due()) == 1
    (delivery,) = pending(store)
    assert (delivery.type, delivery.object_id) == (expected, run.id)


def test_a_write_that_loses_writes_no_webhook(store: Any) -> None:
    engine = responses(store)
    engine.webhooks.add("http://127.0.0.1:1/a", secret=SECRET)
    response = response_in(engine, R.IN_PROGRESS)
    stored = store.get(response.id)
    engine.complete(response.id, output=OUTPUT)  # the version moves on
    ended = engine.get(response.id)
    from runstate import Write
    from runstate._lifecycle import Transition

    late = Transition("fail", R.IN_PROGRESS, R.FAILED, ended.created_at)
    assert store.write([Write(ended, stored.version, [late])]) == [None]
    (delivery,) = pending(store)  # the completion's only
    assert delivery.type == "response.completed"


def test_removing_an_endpoint_removes_its_deliveries(store: Any) -> None:
    engine = responses(store)
    endpoint = engine.webhooks.add("http://127.0.0.1:1/a", secret=SECRET)
    response_in(engine, R.COMPLETED)
    assert store.delivery_stats().pending == 1
    engine.webhooks.remove(endpoint.id)
    assert store.delivery_stats().pending == 0 and pending(store) == []


def test_deliveries_go_with_their_object(store: Any) -> None:
    engine = responses(store)
    engine.webhooks.add("http://127.0.0.1:1/a", secret=SECRET)
    kept = response_in(engine, R.COMPLETED)
    gone = response_in(engine, R.FAILED)
    engine.delete(gone.id)
    (delivery,) = pending(store)
    assert delivery.object_id == kept.id


def test_stats_count_pending_and_failed_deliveries(store: Any) -> None:
    engine = responses(store)
    engine.webhooks.add("http://127.0.0.1:1/a", secret=SECRET)
    first = response_in(engine, R.COMPLETED)
    response_in(engine, R.FAILED)
    stats = store.stats(int(time.time()))
    assert (stats.deliveries.pending, stats.deliveries.failed) == (2, 0)
    assert stats.deliveries.oldest_pending == first.created_at
    (one, _) = pending(store)
    assert settle(store, one, "failed", int(time.time()), error="HTTP 410")
    assert engine.webhooks.stats().failed == 1 and engine.webhooks.stats().pending == 1


# --- claims and leases ---------------------------------------------------------------------


def test_a_claimed_delivery_is_nobody_else_s_until_its_lease_ends(store: Any) -> None:
    engine = responses(store)
    engine.webhooks.add("http://127.0.0.1:1/a", secret=SECRET)
    response_in(engine, R.COMPLETED)
    now = int(time.time()) + 1
    (first,) = store.claim_deliveries(now, 30, 10)
    assert store.claim_deliveries(now + 29, 30, 10) == []  # leased
    assert store.next_delivery_at() == now + 30
    (again,) = store.claim_deliveries(now + 30, 30, 10)  # its claimer died: due again
    assert again.event_id == first.event_id and again.attempts == 2
    # The first claimer's late settle changes nothing: the delivery is the second's now.
    assert settle(store, first, "delivered", now + 31) is False
    assert settle(store, again, "delivered", now + 31) is True
    assert settle(store, again, "delivered", now + 32) is False  # once
    assert store.next_delivery_at() is None and store.delivery_stats().pending == 0


def test_a_retry_is_due_at_its_time(store: Any) -> None:
    engine = responses(store)
    engine.webhooks.add("http://127.0.0.1:1/a", secret=SECRET)
    response_in(engine, R.COMPLETED)
    now = int(time.time()) + 1
    (first,) = store.claim_deliveries(now, 30, 10)
    assert settle(store, first, "pending", now, next_at=now + 5, error="HTTP 500")
    assert store.claim_deliveries(now + 4, 30, 10) == []
    (again,) = store.claim_deliveries(now + 5, 30, 10)
    assert again.event_id == first.event_id


def test_claims_take_the_soonest_first_and_at_most_the_limit(store: Any) -> None:
    engine = responses(store)
    engine.webhooks.add("http://127.0.0.1:1/a", secret=SECRET)
    made = [response_in(engine, R.COMPLETED).id for _ in range(5)]
    now = int(time.time()) + 1
    claimed = store.claim_deliveries(now, 30, 3)
    assert len(claimed) == 3
    rest = store.claim_deliveries(now, 30, 10)
    assert {d.object_id for d in claimed + rest} == set(made)


def test_settles_go_together_each_on_its_own_terms(store: Any) -> None:
    engine = responses(store)
    engine.webhooks.add("http://127.0.0.1:1/a", secret=SECRET)
    for _ in range(3):
        response_in(engine, R.COMPLETED)
    now = int(time.time()) + 1
    one, two, three = store.claim_deliveries(now, 30, 10)
    stale = dataclasses.replace(three, attempts=0)
    settled = store.settle_deliveries(
        [
            Settle(one, "delivered", now),
            Settle(two, "pending", now, next_at=now + 9, error="HTTP 503"),
            Settle(stale, "delivered", now),  # an older attempt's: changes nothing
        ]
    )
    assert settled == [True, True, False]
    assert store.settle_deliveries([]) == []
    stats = store.delivery_stats()
    assert (stats.pending, stats.failed) == (2, 0)
    assert store.next_delivery_at() == now + 9  # the retry; the third is leased till +30
    (again,) = store.claim_deliveries(now + 9, 30, 10)
    assert again.event_id == two.event_id and again.attempts == 2


# --- the schedule -------------------------------------------------------------------------


def test_the_schedule_doubles_with_jitter_and_ends_after_its_window() -> None:
    import random

    rng = random.Random(7)
    made = 1_000_000
    for attempts in range(1, 12):
        d = Delivery("evt_1", "we_1", "http://x", SECRET, "response.completed", "r", made, attempts)
        delay = retry_at(d, made, base=5, rng=rng)
        assert delay is not None
        nominal = min(5 * 2 ** (attempts - 1), 6 * 3600)
        assert nominal * 0.5 <= delay - made <= nominal * 1.5 + 1
    late = Delivery("evt_1", "we_1", "http://x", SECRET, "response.completed", "r", made, 30)
    deadline = made + 3 * 86_400
    assert retry_at(late, deadline - 10, base=5, rng=rng) == deadline  # the last is at its end
    assert retry_at(late, deadline, base=5, rng=rng) is None  # then it has failed


# --- the dispatcher and the official client ------------------------------------------------


def test_each_delivery_is_signed_and_verified_by_the_official_client(store: Any) -> None:
    engine = responses(store)
    with receiving() as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET)
        ended = {s: response_in(engine, s).id for s in (R.COMPLETED, R.FAILED, R.CANCELLED)}
        ended[R.INCOMPLETE] = response_in(engine, R.INCOMPLETE).id
        dispatcher = send(store)
        got = receiver.wait_for(4)
    assert dispatcher.delivered == 4
    seen = {}
    for received in got:
        event = verified(received)
        assert isinstance(event, SDK_MODELS[event.type])
        SDK_MODELS[event.type].model_validate(json.loads(received.body))  # strictly
        assert event.object == "event" and event.id.startswith("evt_")
        seen[event.type] = event.data.id
        assert received.headers["content-type"] == "application/json"
    assert seen == {f"response.{s.value}": i for s, i in ended.items()}
    assert store.delivery_stats().pending == 0


def test_a_wrong_secret_does_not_verify(store: Any) -> None:
    engine = responses(store)
    with receiving() as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET)
        response_in(engine, R.COMPLETED)
        send(store)
        (received,) = receiver.wait_for(1)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        received.unwrap(new_secret())
    tampered = Received(received.headers, received.body.replace(b"resp_", b"resp_x"), 200)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        tampered.unwrap(SECRET)


def test_a_receiver_that_fails_first_gets_the_same_event_until_it_takes_it(store: Any) -> None:
    engine = responses(store)
    with receiving(lambda n: 500 if n <= 3 else 204) as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET)
        response = response_in(engine, R.COMPLETED)
        dispatcher = Dispatcher(store, backoff_base=0.01, lease_seconds=30, timeout=5)
        asyncio.run(_until(dispatcher, lambda: dispatcher.delivered == 1))
        got = receiver.wait_for(4)
    assert [r.answered for r in got] == [500, 500, 500, 204]
    assert len({r.headers["webhook-id"] for r in got}) == 1  # one id for every attempt
    assert all(verified(r).data.id == response.id for r in got)
    assert (dispatcher.retried, dispatcher.delivered, dispatcher.failed) == (3, 1, 0)
    assert store.delivery_stats().pending == 0


def test_a_receiver_that_hangs_is_timed_out_and_tried_again(store: Any) -> None:
    engine = responses(store)
    with receiving(lambda n: HANG if n == 1 else 200) as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET)
        response_in(engine, R.COMPLETED)
        dispatcher = Dispatcher(store, backoff_base=0.01, lease_seconds=30, timeout=0.5)
        asyncio.run(_until(dispatcher, lambda: dispatcher.delivered == 1))
        got = receiver.wait_for(2)
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]
    assert dispatcher.retried == 1


def test_a_receiver_that_answers_410_fails_the_delivery_at_once(store: Any) -> None:
    engine = responses(store)
    with receiving(lambda n: 410) as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET)
        response_in(engine, R.COMPLETED)
        dispatcher = send(store, backoff_base=0.01)
        assert len(receiver.wait_for(1)) == 1
    assert (dispatcher.failed, dispatcher.retried) == (1, 0)
    assert store.delivery_stats().failed == 1 and store.delivery_stats().pending == 0
    assert pending(store) == []


def test_a_delivery_fails_once_its_window_has_ended(store: Any) -> None:
    engine = responses(store)
    with receiving(lambda n: 503) as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET)
        response_in(engine, R.COMPLETED)
        dispatcher = send(store, retry_window=0)  # the window ended at the event
        receiver.wait_for(1)
    assert dispatcher.failed == 1 and store.delivery_stats().failed == 1


def test_an_unreachable_endpoint_is_retried(store: Any) -> None:
    engine = responses(store)
    engine.webhooks.add("http://127.0.0.1:1/nobody", secret=SECRET)
    response_in(engine, R.COMPLETED)
    dispatcher = send(store, backoff_base=60)
    assert dispatcher.retried == 1
    assert store.delivery_stats().pending == 1
    assert (store.next_delivery_at() or 0) > int(time.time()) + 20


def test_an_idle_dispatcher_wakes_for_a_new_ending(store: Any) -> None:
    engine = responses(store)
    with receiving() as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET)
        response = engine.create(model="m", input="hi")
        engine.claim("w")

        async def scenario() -> None:
            stop = asyncio.Event()
            dispatcher = Dispatcher(store)
            running = asyncio.create_task(dispatcher.run(stop))
            await asyncio.sleep(0.2)  # idle, waiting on the bell
            await asyncio.to_thread(engine.complete, response.id, output=OUTPUT)
            await asyncio.to_thread(receiver.wait_for, 1)
            stop.set()
            await running

        asyncio.run(scenario())
        (received,) = receiver.received
    assert verified(received).data.id == response.id


def test_the_signature_is_the_standard_one() -> None:
    import base64
    import hashlib
    import hmac

    key = base64.b64decode(SECRET[6:])
    body = b'{"id":"evt_1"}'
    expected = base64.b64encode(hmac.new(key, b"evt_1.1700000000." + body, hashlib.sha256).digest())
    assert sign(SECRET, "evt_1", 1_700_000_000, body) == "v1," + expected.decode()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lease_seconds": 5, "timeout": 10}, "Invalid 'lease_seconds': expected more than"),
        ({"backoff_base": 0}, "Invalid 'backoff_base'"),
        ({"backoff_base": float("nan")}, "Invalid 'backoff_base'"),
        ({"concurrency": 0}, "Invalid 'concurrency'"),
        ({"timeout": -1}, "Invalid 'timeout'"),
    ],
)
def test_a_dispatcher_refuses_bad_options(options: dict[str, Any], message: str) -> None:
    from runstate import MemoryStore

    with pytest.raises(ValidationError, match=message):
        Dispatcher(MemoryStore(), **options)


async def _until(dispatcher: Dispatcher, done: Any, rounds: int = 200) -> None:
    """Run the dispatcher's batches until ``done()`` (at most ``rounds`` of them, each
    waiting for what is due next)."""
    try:
        for _ in range(rounds):
            if done():
                return
            if not await dispatcher.run_once():
                await asyncio.sleep(0.05)
        raise AssertionError("the dispatcher did not get there")
    finally:
        await dispatcher.aclose()


def test_no_secret_is_ever_logged(store: Any, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    engine = responses(store)
    with caplog.at_level(logging.DEBUG), receiving(lambda n: 500) as receiver:
        engine.webhooks.add(receiver.url + "?token=abc", secret=SECRET)
        response_in(engine, R.COMPLETED)
        dispatcher = send(store, backoff_base=60)
        receiver.wait_for(1)
    assert dispatcher.retried == 1
    assert "HTTP 500; retry" in caplog.text  # the failed attempt is logged...
    assert SECRET not in caplog.text and SECRET[6:] not in caplog.text  # ...not its secret
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("runstate")]
    assert ours and not any("token=abc" in line for line in ours)  # only the host


class Failing:
    """A real memory store whose first ``failures`` claims of deliveries fail, as a
    database that went away would make them (the fault the dispatcher must outlive)."""

    def __init__(self, failures: int) -> None:
        from runstate import MemoryStore

        self.store = MemoryStore()
        self.bell = self.store.bell
        self.failures = failures

    def claim_deliveries(self, *args: Any) -> list[Delivery]:
        if self.failures:
            self.failures -= 1
            from runstate import StoreError

            raise StoreError("PostgreSQL (schema x) cannot be used: connection refused")
        return self.store.claim_deliveries(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_dispatcher_outlives_a_store_that_fails(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    failing = Failing(2)
    engine = responses(failing.store)
    with caplog.at_level(logging.WARNING, logger="runstate.webhooks"), receiving() as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET)
        response_in(engine, R.COMPLETED)

        async def scenario() -> None:
            stop = asyncio.Event()
            running = asyncio.create_task(Dispatcher(failing).run(stop))
            await asyncio.to_thread(receiver.wait_for, 1)
            stop.set()
            await running

        asyncio.run(scenario())
    assert failing.failures == 0
    assert caplog.text.count("webhook dispatch failed (PostgreSQL (schema x) cannot") == 2
    assert "again in 1 s" in caplog.text and "again in 2 s" in caplog.text


def test_a_late_settle_is_left_to_the_delivery_s_new_holder(
    store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    engine = responses(store)
    engine.webhooks.add("http://127.0.0.1:1/a", secret=SECRET)
    response_in(engine, R.COMPLETED)
    now = int(time.time()) + 1
    (first,) = store.claim_deliveries(now, 30, 10)
    store.claim_deliveries(now + 30, 30, 10)  # its lease ended: another dispatcher has it
    dispatcher = Dispatcher(store)
    with caplog.at_level(logging.WARNING, logger="runstate.webhooks"):
        outcome = asyncio.run(dispatcher.record(Settle(first, "delivered", now + 31)))
    assert outcome == "delivered" and "settled late" in caplog.text
    assert store.delivery_stats().pending == 1  # still the new holder's
    assert repr(dispatcher) == f"Dispatcher({dispatcher.store!r})"


def test_a_stopped_dispatcher_finishes_and_records_what_is_in_flight(store: Any) -> None:
    engine = responses(store)
    with receiving(lambda n: HANG) as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET)
        response_in(engine, R.COMPLETED)
        dispatcher = Dispatcher(store, timeout=0.5, backoff_base=60)

        async def scenario() -> None:
            stop = asyncio.Event()
            running = asyncio.create_task(dispatcher.run(stop))
            await asyncio.to_thread(receiver.wait_for, 1)  # in flight, unanswered
            stop.set()
            await running

        asyncio.run(scenario())
    assert dispatcher.retried == 1  # timed out, recorded before run() returned
    assert store.delivery_stats().pending == 1 and (store.next_delivery_at() or 0) > time.time()


def test_a_dispatcher_sends_with_the_caller_s_client(store: Any) -> None:
    import httpx

    engine = responses(store)
    with receiving() as receiver:
        engine.webhooks.add(receiver.url, secret=SECRET)
        response_in(engine, R.COMPLETED)

        async def scenario() -> int:
            async with httpx.AsyncClient() as client:
                dispatcher = Dispatcher(store, client=client)
                sent = await dispatcher.run_once()
                await dispatcher.aclose()
                assert not client.is_closed  # the caller's: left open
                return sent

        assert asyncio.run(scenario()) == 1
        (received,) = receiver.wait_for(1)
    assert verified(received).type == "response.completed"


def test_a_store_of_one_s_own_without_webhooks_says_so() -> None:
    from runstate import StoreError

    class Plain:  # the store protocol, and nothing for webhooks
        def __init__(self) -> None:
            from runstate import MemoryStore

            self.inner = MemoryStore()

        def __getattr__(self, name: str) -> Any:
            if name in ("add_endpoint", "list_endpoints", "remove_endpoint"):
                raise AttributeError(name)
            return getattr(self.inner, name)

    engine = ResponseEngine(Plain())
    with pytest.raises(StoreError, match="Plain keeps no webhook endpoints"):
        engine.webhooks.list()
    assert repr(responses(open_store("memory://")).webhooks).startswith("Endpoints(MemoryStore(")
