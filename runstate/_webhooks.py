"""Webhooks, the part every store and engine shares: endpoints, the events a transition
writes for them (the outbox), and the schedule of retries.

A lifecycle's declaration names the statuses whose entry is told to endpoints
(``Definition.webhooks``: a response's ends; a run's ends and ``requires_action``). A
store that writes a transition into one of them writes, in the same transaction, one
delivery per endpoint subscribed to the event's type: so there is no ending without its
webhook, and no webhook without its ending. Each delivery carries the public API's
webhook event, ``{"id": "evt_...", "object": "event", "created_at": ..., "type":
"response.completed", "data": {"id": "resp_..."}}``, and is sent by a ``Dispatcher``
(``runstate.webhooks``, the ``webhooks`` extra) with the Standard Webhooks headers. The
event's id is the ``webhook-id`` of every attempt, so a receiver can drop a repeat.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import math
import random
import secrets
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._definitions import WEBHOOKS_OF
from ._errors import StoreError, ValidationError
from ._faces import Async, Plan, Sync, operation

__all__ = [
    "RETRY_WINDOW",
    "Delivery",
    "DeliveryStats",
    "Endpoint",
    "Hook",
    "Settle",
    "event_types",
    "hooks_of",
    "new_endpoint",
    "payload_of",
    "retry_at",
]

#: How long a delivery is retried, from its event's time, before it is marked failed.
RETRY_WINDOW = 3 * 86_400
#: The longest wait between two attempts (the exponential schedule stops growing there).
MAX_DELAY = 6 * 3600
#: The longest URL an endpoint may have.
MAX_URL = 2048
#: The longest name an endpoint may have.
MAX_NAME = 256
#: What a Standard Webhooks secret holds, decoded: 24 to 64 random bytes.
SECRET_BYTES = (24, 64)


def event_types() -> frozenset[str]:
    """Every webhook event type the declared lifecycles write."""
    return frozenset(t for types in WEBHOOKS_OF.values() for t in types.values())


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A webhook endpoint as shown: never its secret (the store keeps it, for signing)."""

    id: str
    url: str
    name: str
    events: tuple[str, ...]
    created_at: int

    def to_dict(self) -> dict[str, Any]:
        """The public API's ``webhook_endpoint`` (without a secret hint)."""
        return {
            "id": self.id,
            "object": "webhook_endpoint",
            "name": self.name,
            "url": self.url,
            "event_types": list(self.events),
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class Hook:
    """A webhook event that a transition writes: its id, type, time and object."""

    id: str
    type: str
    created_at: int
    object_id: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to one endpoint, as a dispatcher claimed it: ``attempts`` counts this
    one (a settle names it, so that a late settle of an older attempt changes nothing)."""

    event_id: str
    endpoint_id: str
    url: str
    secret: str
    type: str
    object_id: str
    created_at: int
    attempts: int

    def __repr__(self) -> str:  # never the secret
        return (
            f"Delivery({self.event_id!r} to {self.endpoint_id!r}, {self.type!r}, "
            f"attempt {self.attempts})"
        )


@dataclass(frozen=True, slots=True)
class Settle:
    """How one attempt of a delivery ended, at ``now``: ``delivered``, ``failed``, or
    ``pending`` again (due at ``next_at``), with the error if any."""

    delivery: Delivery
    status: str
    now: int
    next_at: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """As the SQL stores take it (``settle_deliveries``)."""
        return {
            "event_id": self.delivery.event_id,
            "endpoint_id": self.delivery.endpoint_id,
            "attempts": self.delivery.attempts,
            "status": self.status,
            "next_at": self.now if self.next_at is None else self.next_at,
            "error": self.error,
            "now": self.now,
        }


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """The deliveries a store holds, for operators."""

    pending: int = 0
    failed: int = 0
    oldest_pending: int | None = None  # the created_at of the oldest pending one


def new_endpoint(
    url: object, secret: object, events: object, name: object, now: int
) -> tuple[Endpoint, str]:
    """A new endpoint and its secret, checked: an http(s) URL, a ``whsec_`` secret of 24
    to 64 base64 bytes, known event types (None: every type) and a name (None: the
    URL)."""
    url = check_url(url)
    key, types, named = check_secret(secret), check_events(events), check_name(name, url)
    return Endpoint(f"we_{secrets.token_hex(12)}", url, named, types, now), key


def check_name(name: object, url: str) -> str:
    if name is None:
        return url
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME:
        raise ValidationError(
            f"Invalid 'name': expected a string of 1 to {MAX_NAME} characters, got {_shown(name)}.",
            param="name",
        )
    return name


def check_url(url: object) -> str:
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise ValidationError(
            f"Invalid 'url': expected an http(s) URL of at most {MAX_URL} characters, got "
            f"{_shown(url)}.",
            param="url",
        )
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() or ord(c) < 32 for c in url)
    ):
        raise ValidationError(
            f"Invalid 'url': expected an http(s) URL, got {_shown(url)}.", param="url"
        )
    return url


def check_secret(secret: object) -> str:
    """A Standard Webhooks secret: ``whsec_`` and 24 to 64 bytes in base64 (never shown
    in the error)."""
    low, high = SECRET_BYTES
    message = f"Invalid 'secret': expected 'whsec_' followed by {low} to {high} bytes in base64."
    if not isinstance(secret, str) or not secret.startswith("whsec_"):
        raise ValidationError(message, param="secret")
    try:
        key = base64.b64decode(secret[6:], validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(message, param="secret") from None
    if not low <= len(key) <= high:
        raise ValidationError(message, param="secret")
    return secret


def check_events(events: object) -> tuple[str, ...]:
    known = event_types()
    if events is None:
        return tuple(sorted(known))
    if isinstance(events, str) or not isinstance(events, Iterable):
        raise ValidationError(
            f"Invalid 'events': expected a list of event types, got {_shown(events)}.",
            param="events",
        )
    chosen = list(events)
    if not chosen:
        raise ValidationError(
            "Invalid 'events': expected at least one event type (or none given, for all).",
            param="events",
        )
    for event in chosen:
        if event not in known:
            raise ValidationError(
                f"Invalid 'events': unknown event type {_shown(event)}; expected one of "
                f"{', '.join(sorted(known))}.",
                param="events",
            )
    return tuple(sorted(set(chosen)))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def new_event_id() -> str:
    return f"evt_{secrets.token_hex(16)}"


def hooks_of(obj: Any, steps: Sequence[Any]) -> list[Hook]:
    """The webhook events a write of ``obj`` with ``steps`` makes: one per step that
    enters a status its kind tells endpoints of (a creation step enters none)."""
    types = WEBHOOKS_OF.get(obj.KIND)
    if not types:
        return []
    return [
        Hook(new_event_id(), types[step.to_status.value], step.at, obj.id)
        for step in steps
        if step.from_status is not None
        and step.from_status != step.to_status
        and step.to_status.value in types
    ]


def payload_of(delivery: Delivery) -> bytes:
    """The body a delivery sends: the public API's webhook event."""
    event = {
        "id": delivery.event_id,
        "object": "event",
        "created_at": delivery.created_at,
        "type": delivery.type,
        "data": {"id": delivery.object_id},
    }
    return json.dumps(event, separators=(",", ":")).encode()


def retry_at(
    delivery: Delivery,
    now: int,
    *,
    base: float,
    window: int = RETRY_WINDOW,
    rng: random.Random | None = None,
) -> int | None:
    """When a delivery that failed its ``attempts``-th attempt at ``now`` is tried again:
    after ``base * 2 ** (attempts - 1)`` seconds (at most ``MAX_DELAY``), times a jitter
    from 0.5 to 1.5; at the latest when its window ends (``window`` seconds after its
    event). None once the window has ended: the delivery has failed."""
    deadline = delivery.created_at + window
    if now >= deadline:
        return None
    exponent = min(delivery.attempts - 1, 64)
    delay = min(base * 2.0**exponent, MAX_DELAY) * (0.5 + (rng or random).random())
    return min(now + math.ceil(delay), deadline)


def dispatcher_of(store: Any, option: object) -> Any:
    """The ``runstate.webhooks.Dispatcher`` that a Worker's or a server's ``webhooks``
    option asks for on ``store``: None for False or None, one with the defaults for
    True, one with a mapping's options."""
    if option is None or option is False:
        return None
    if option is not True and not isinstance(option, Mapping):
        raise ValidationError(
            f"Invalid 'webhooks': expected True or a dict of Dispatcher options, got "
            f"{_shown(option)}.",
            param="webhooks",
        )
    try:
        from .webhooks import Dispatcher
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise ValidationError(
            f"Sending webhooks needs the webhooks extra (pip install 'runstate[webhooks]'): {exc}",
            param="webhooks",
        ) from None
    return Dispatcher(store, **({} if option is True else dict(option)))


# --- the engine's face --------------------------------------------------------------------


class _Endpoints:
    """``engine.webhooks``: the store's webhook endpoints, each operation a plan on the
    engine's store (so the sync and async engines share it)."""

    def __init__(self, engine: Any) -> None:
        if not callable(getattr(engine.store, "add_endpoint", None)):
            raise StoreError(
                f"{type(engine.store).__name__} keeps no webhook endpoints (it is not a "
                f"runstate.stores.WebhookStore)."
            )
        self._engine = engine

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._engine.store!r})"

    @operation
    def add(
        self,
        url: str,
        *,
        secret: str,
        events: Sequence[str] | None = None,
        name: str | None = None,
    ) -> Plan[Endpoint]:
        """Add an endpoint: every event of ``events`` (default: every type) that a
        transition writes from now on is POSTed to ``url``, signed with ``secret`` (a
        Standard Webhooks ``whsec_`` secret). Returns the endpoint (without its secret).
        Raises ``ValidationError``, storing nothing, on a URL that is not http(s), a
        secret not of the ``whsec_`` form, an unknown event type or a bad name."""
        now = self._engine.lifecycle.now()
        endpoint, key = new_endpoint(url, secret, events, name, now)
        yield ("add_endpoint", (endpoint, key), {})
        return endpoint

    @operation
    def list(self) -> Plan[builtins.list[Endpoint]]:
        """Every endpoint, in the order they were added (never their secrets)."""
        endpoints: builtins.list[Endpoint] = yield ("list_endpoints", (), {})
        return endpoints

    @operation
    def remove(self, endpoint_id: str) -> Plan[bool]:
        """Remove an endpoint and the deliveries it still had; False if there was none."""
        removed: bool = yield ("remove_endpoint", (endpoint_id,), {})
        return removed

    @operation
    def stats(self) -> Plan[DeliveryStats]:
        """How many deliveries are pending and failed, and the oldest pending one's time."""
        stats: DeliveryStats = yield ("delivery_stats", (), {})
        return stats


class Endpoints(Sync, _Endpoints):
    """``engine.webhooks`` on a sync engine."""

    def _run(self, plan: Plan[Any], name: str, object_id: str | None) -> Any:
        return self._engine._drive(plan)


class AsyncEndpoints(Async, _Endpoints):
    """``engine.webhooks`` on an async engine: each operation awaited."""

    async def _arun(self, plan: Plan[Any], name: str, object_id: str | None) -> Any:
        return await self._engine._adrive(plan)
