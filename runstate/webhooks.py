"""Webhook delivery: the ``Dispatcher`` that sends what the stores' outbox holds
(``runstate[webhooks]``).

    from runstate.webhooks import Dispatcher
    engine.webhooks.add("https://example.com/hooks", secret="whsec_...")
    await Dispatcher(store).run()      # or: runstate webhooks deliver STORE_URL

Every transition into a status that a lifecycle tells endpoints of (a response's ends;
a run's ends and ``requires_action``) writes, in its own transaction, one pending
delivery per endpoint that takes the event's type (``runstate._webhooks``). A
dispatcher claims due deliveries as it has room for them (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL; SQLite's one writer on SQLite), so many dispatchers on one database never send one
delivery twice at once. Each claim is a lease: a delivery whose dispatcher died is due
again when its lease ends.

Each attempt POSTs the public API's webhook event with the Standard Webhooks headers
(``webhook-id``: the event's id, the same on every attempt; ``webhook-timestamp``;
``webhook-signature``: ``v1,`` and the HMAC-SHA256 of ``id.timestamp.body`` under the
endpoint's secret, made by the ``standardwebhooks`` package), with a time-out. A 2xx
answer delivers it. Anything else, a time-out or a connection error is tried again
after ``backoff_base * 2 ** (attempts - 1)`` seconds (at most 6 hours) times a jitter
from 0.5 to 1.5, until ``retry_window`` (3 days) after the event; the attempt due then
is the last, and the delivery is marked failed. A 410 (Gone) fails it at once: the
receiver asked not to be sent it again. An idle dispatcher waits on the store's bell,
rung by writes that made deliveries (in this process, or through the store's feed), or
until the next retry is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from typing import Any, Never

import httpx
from standardwebhooks import Webhook

from ._errors import RunStateError, ValidationError
from ._validate import require_int, require_seconds
from ._webhooks import (
    RETRY_WINDOW,
    Delivery,
    DeliveryStats,
    Endpoint,
    Settle,
    payload_of,
    retry_at,
)
from .stores import AsyncStore, Bell
from .stores._bell import WEBHOOKS
from .stores._group import Gather

__all__ = ["Delivery", "DeliveryStats", "Dispatcher", "Endpoint", "sign"]

log = logging.getLogger("runstate.webhooks")

#: The longest an idle dispatcher waits before it looks again, whatever the bell says
#: (a notification can be missed).
IDLE_CHECK = 5.0


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header of one attempt (Standard Webhooks, ``v1``)."""
    return Webhook(secret).sign(event_id, datetime.fromtimestamp(timestamp, UTC), body)


class Dispatcher:
    """Sends the webhook deliveries of ``store`` (an async store, or a sync one, whose
    calls then run in threads), at least once each (see the module).

    ``backoff_base``: the first retry's delay, in seconds; ``lease_seconds``: how long a
    claimed delivery is this dispatcher's before another may send it (longer than
    ``timeout``); ``timeout``: the most an attempt waits for its answer; ``concurrency``:
    the most attempts in flight at once; ``retry_window``: how long after its
    event a delivery is tried. ``client``: an ``httpx.AsyncClient`` of the caller's
    (otherwise one of its own). ``telemetry``: a ``runstate.telemetry.Telemetry`` that
    counts the attempts."""

    def __init__(
        self,
        store: Any,
        *,
        backoff_base: float = 5.0,
        lease_seconds: int = 60,
        timeout: float = 10.0,
        concurrency: int = 8,
        retry_window: int = RETRY_WINDOW,
        client: httpx.AsyncClient | None = None,
        telemetry: Any = None,
        **unknown: Never,
    ) -> None:
        for name in unknown:  # a type checker flags these; at run time, a clear refusal
            raise ValidationError(f"Unknown option for Dispatcher: '{name}'.", param=name)
        self.backoff_base = require_seconds(backoff_base, "backoff_base", maximum=86_400)
        self.lease_seconds = require_int(lease_seconds, "lease_seconds", maximum=86_400)
        self.timeout = require_seconds(timeout, "timeout", maximum=3600)
        self.concurrency = require_int(concurrency, "concurrency", maximum=1000)
        self.retry_window = require_int(
            retry_window, "retry_window", minimum=0, maximum=365 * 86_400
        )
        if self.lease_seconds <= self.timeout:
            raise ValidationError(
                f"Invalid 'lease_seconds': expected more than the time-out "
                f"({self.timeout:g} s), got {lease_seconds}.",
                param="lease_seconds",
            )
        # A sync store's calls run in a thread, as the async engines run them.
        self.store: Any = store if _is_async(store) else AsyncStore(store)
        self.bell: Bell = getattr(self.store, "bell", None) or Bell()
        self._client = client  # the caller's, shared by every attempt
        # Else a client of one connection per attempt in flight: httpx's pool costs more
        # per request the more connections it holds (8 clients of one connection send
        # 2,655 POSTs/s here, one client of 8 connections 1,434).
        self._idle: asyncio.Queue[httpx.AsyncClient] | None = None
        self._made: list[httpx.AsyncClient] = []
        self._telemetry = telemetry
        self._settle = Gather(lambda settles: self.store.settle_deliveries(settles))
        self._rng = random.Random()
        #: What this dispatcher has done: attempts delivered, retried and failed.
        self.delivered = self.retried = self.failed = 0

    def __repr__(self) -> str:
        return f"Dispatcher({self.store!r})"

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Send deliveries as they come due, until ``stop`` is set (or the task is
        cancelled), ``concurrency`` at a time: each is claimed when a slot is free for
        it (so its lease starts as it is sent), in claims of at least half the slots; a
        slot is free again once its answer is in, while the outcome is recorded (the
        outcomes that end meanwhile go to the store together). Idle, wait on the bell. A
        store that fails (a database restarting) is logged and tried again after 1, 2,
        4... up to 30 s; a delivery whose outcome could not be recorded is sent again
        when its lease ends. On ``stop`` the attempts in flight finish (each within
        ``timeout``) and are recorded; on a cancel they are dropped, for their leases to
        end. The client it made is closed at the end."""
        stop = stop or asyncio.Event()
        sending: set[asyncio.Task[Settle]] = set()
        recording: set[asyncio.Task[str]] = set()
        failures = 0
        try:
            while not stop.is_set():
                mark = self.bell.mark(WEBHOOKS)
                free = self.concurrency - len(sending)
                wait = IDLE_CHECK
                if 2 * free >= self.concurrency:
                    try:
                        claimed = await self._claim(free)
                        due = None if claimed or sending else await self.store.next_delivery_at()
                    except RunStateError as exc:  # the store is away: try again, later
                        wait = min(2.0**failures, 30.0)
                        failures += 1
                        log.warning(
                            "webhook dispatch failed (%s); again in %.0f s", exc.message, wait
                        )
                    else:
                        failures = 0
                        sending.update(asyncio.ensure_future(self.attempt(d)) for d in claimed)
                        if len(claimed) == free:
                            continue  # more may be due: claim again once slots are free
                        if due is not None:
                            wait = min(wait, max(due - time.time(), 0.05))
                await self._wait(sending, stop, mark, wait)
                self._record_ended(sending, recording)
            if sending:
                await asyncio.wait(sending)
                self._record_ended(sending, recording)
            if recording:
                await asyncio.wait(recording)
        finally:
            for task in (*sending, *recording):
                task.cancel()
            await asyncio.gather(*sending, *recording, return_exceptions=True)
            await self.aclose()

    def _record_ended(
        self, sending: set[asyncio.Task[Settle]], recording: set[asyncio.Task[str]]
    ) -> None:
        """Record the outcome of each attempt that ended, in the background."""
        for task in [t for t in sending if t.done()]:
            sending.discard(task)
            if task.cancelled() or task.exception() is not None:  # sent again after its lease
                log.warning(
                    "a webhook attempt broke off: %r",
                    None if task.cancelled() else task.exception(),
                )
                continue
            recorded = asyncio.ensure_future(self.record(task.result()))
            recording.add(recorded)
            recorded.add_done_callback(partial(_recorded, recording))

    async def _claim(self, limit: int) -> list[Delivery]:
        now = int(time.time())
        claimed: list[Delivery] = await self.store.claim_deliveries(now, self.lease_seconds, limit)
        return claimed

    async def _wait(
        self, sending: set[asyncio.Task[Settle]], stop: asyncio.Event, mark: int, wait: float
    ) -> None:
        """Until an attempt ends (a slot is free), the bell rings, ``stop`` is set, or
        ``wait`` seconds have passed."""
        ringing = asyncio.ensure_future(self.bell.wait_async(WEBHOOKS, mark, wait))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({ringing, stopping, *sending}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ringing.cancel()
            stopping.cancel()

    async def run_once(self) -> int:
        """Claim up to ``concurrency`` due deliveries and send them, together, each
        recorded; how many."""
        claimed = await self._claim(self.concurrency)
        if claimed:
            await asyncio.gather(*(self.deliver(d) for d in claimed))
        return len(claimed)

    async def deliver(self, delivery: Delivery) -> str:
        """One attempt of ``delivery``, and its outcome recorded: "delivered", "retry"
        or "failed"."""
        return await self.record(await self.attempt(delivery))

    async def attempt(self, delivery: Delivery) -> Settle:
        """One attempt of ``delivery``: POSTed, signed; how it ended (not yet recorded)."""
        body = payload_of(delivery)
        stamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "runstate-webhooks",
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(delivery.secret, delivery.event_id, stamp, body),
        }
        error: str | None = None
        gone = False
        try:
            async with self._http() as client:
                answer = await client.post(
                    delivery.url, content=body, headers=headers, timeout=self.timeout
                )
        except httpx.TimeoutException:
            error = f"no answer in {self.timeout:g} s"
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        else:
            if not answer.is_success:
                error = f"HTTP {answer.status_code}"
                gone = answer.status_code == 410
        now = int(time.time())
        if error is None:
            return Settle(delivery, "delivered", now)
        if gone:
            return Settle(delivery, "failed", now, None, error)
        next_at = retry_at(
            delivery, now, base=self.backoff_base, window=self.retry_window, rng=self._rng
        )
        return Settle(delivery, "failed" if next_at is None else "pending", now, next_at, error)

    async def record(self, settle: Settle) -> str:
        """Record how an attempt ended (with the settles that come meanwhile, in one
        call), count it and log a failure; the outcome: "delivered", "retry" or
        "failed"."""
        delivery = settle.delivery
        outcome = "retry" if settle.status == "pending" else settle.status
        (settled,) = await self._settle([settle])
        if not settled:  # its lease ended and another dispatcher has it now
            log.warning("%r: settled late (its lease had ended); left to its new holder", delivery)
        elif settle.error is not None:
            log.info("%r to %s: %s; %s", delivery, _host(delivery.url), settle.error, outcome)
        self._count(outcome, delivery)
        return outcome

    def _count(self, outcome: str, delivery: Delivery) -> None:
        if outcome == "delivered":
            self.delivered += 1
        elif outcome == "retry":
            self.retried += 1
        else:
            self.failed += 1
        if self._telemetry is not None:
            self._telemetry.webhook_attempt(outcome, delivery.type)

    @contextlib.asynccontextmanager
    async def _http(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client for one attempt: the caller's, or one of ours that no other attempt
        uses meanwhile."""
        if self._client is not None:
            yield self._client
            return
        if self._idle is None:
            self._idle = asyncio.Queue()
        if self._idle.empty() and len(self._made) < self.concurrency:
            one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            self._made.append(httpx.AsyncClient(limits=one, follow_redirects=False))
            self._idle.put_nowait(self._made[-1])
        client = await self._idle.get()
        try:
            yield client
        finally:
            self._idle.put_nowait(client)

    async def aclose(self) -> None:
        """Close the HTTP clients it made (not one the caller gave)."""
        made, self._made, self._idle = self._made, [], None
        for client in made:
            with contextlib.suppress(Exception):
                await client.aclose()


def _recorded(recording: set[asyncio.Task[str]], task: asyncio.Task[str]) -> None:
    """A recording that ended: forgotten; one that failed (the store away) is logged, and
    its delivery is sent again when its lease ends."""
    recording.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("a webhook delivery's outcome could not be recorded: %s", task.exception())


def _host(url: str) -> str:
    """What a log line shows of an endpoint: its host, never a query string."""
    return httpx.URL(url).host


def _is_async(store: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(store, "claim_deliveries", None))
