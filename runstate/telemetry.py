"""Metrics and traces for runstate's engines, on the OpenTelemetry API (``runstate[otel]``).

    from runstate.telemetry import instrument
    telemetry = instrument(engine)  # the global providers, or tracer_provider=/meter_provider=

Only this module imports OpenTelemetry, and only an instrumented engine calls it: an
engine that is not instrumented checks one attribute per operation and nothing more.
Which SDK, exporters and sampling to use is the application's choice (the providers it
passes, or the global ones it has set).

What is recorded, each with the ``runstate.lifecycle`` attribute:

- a span per engine operation, ``runstate.<operation>`` (``runstate.complete``,
  ``runstate.claim``, ...), with ``runstate.object_id`` and, when it made steps,
  ``runstate.from_status`` and ``runstate.to_status``;
- ``runstate.transitions`` (counter, by ``runstate.event`` and ``runstate.to_status``),
  ``runstate.claims`` (counter), ``runstate.claim.wait`` (histogram: seconds a claimed
  object waited since it was created), ``runstate.lease_expiries`` (counter: stalled
  objects found by ``recover_stalled``), ``runstate.recoveries`` (counter: those put back
  or failed), ``runstate.timeouts`` (counter: objects a sweep timed out);
- ``runstate.webhook.attempts`` (counter, by ``runstate.outcome``: ``delivered``,
  ``retry``, ``failed``, and ``runstate.webhook.type``), when a webhook ``Dispatcher`` is
  given this ``Telemetry``;
- ``runstate.queue.depth`` and ``runstate.queue.oldest_age`` (gauges, from the store's
  ``stats``: read at each collection for a sync engine; an async engine's are whatever
  ``await telemetry.refresh()`` last read, as a server's sweeper does).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import Any

from opentelemetry import metrics, trace

from . import __version__

__all__ = ["Telemetry", "instrument"]


class Telemetry:
    """The instruments of one or more engines (see the module)."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._tracer = trace.get_tracer("runstate", __version__, tracer_provider)
        meter = metrics.get_meter("runstate", __version__, meter_provider)
        self.transitions = meter.create_counter(
            "runstate.transitions", unit="{transition}", description="Steps stored"
        )
        self.claims = meter.create_counter(
            "runstate.claims", unit="{claim}", description="Objects claimed by workers"
        )
        self.claim_wait = meter.create_histogram(
            "runstate.claim.wait", unit="s", description="How long a claimed object had waited"
        )
        self.lease_expiries = meter.create_counter(
            "runstate.lease_expiries", unit="{lease}", description="Leases found ended"
        )
        self.recoveries = meter.create_counter(
            "runstate.recoveries", unit="{object}", description="Stalled objects recovered"
        )
        self.timeouts = meter.create_counter(
            "runstate.timeouts", unit="{object}", description="Objects timed out"
        )
        self.webhook_attempts = meter.create_counter(
            "runstate.webhook.attempts",
            unit="{attempt}",
            description="Webhook delivery attempts, by outcome: delivered, retry, failed",
        )
        self._engines: list[Any] = []
        self._figures: dict[str, tuple[int, float | None]] = {}  # lifecycle -> depth, age
        meter.create_observable_gauge(
            "runstate.queue.depth", [self._depth], unit="{object}", description="Queued objects"
        )
        meter.create_observable_gauge(
            "runstate.queue.oldest_age",
            [self._age],
            unit="s",
            description="How long the oldest queued object has waited",
        )

    def add(self, engine: Any) -> Any:
        """Instrument ``engine`` (a sync or an async one); returns it."""
        engine.observe(self)
        self._engines.append(engine)
        return engine

    # --- what the engines call ----------------------------------------------------------------

    @contextlib.contextmanager
    def operation(self, engine: Any, name: str, object_id: str | None) -> Iterator[None]:
        """A span around one engine operation, named for it, on the object it is about."""
        attributes = {"runstate.lifecycle": engine.definition.name}
        if object_id is not None:
            attributes["runstate.object_id"] = object_id
        with self._tracer.start_as_current_span(f"runstate.{name}", attributes=attributes):
            yield

    def stepped(self, engine: Any, obj: Any, steps: Any) -> None:
        span = trace.get_current_span()
        span.set_attribute("runstate.object_id", obj.id)
        if steps[0].from_status is not None:
            span.set_attribute("runstate.from_status", str(steps[0].from_status))
        span.set_attribute("runstate.to_status", str(steps[-1].to_status))
        lifecycle = engine.definition.name
        for step in steps:
            self.transitions.add(
                1,
                {
                    "runstate.lifecycle": lifecycle,
                    "runstate.event": step.event,
                    "runstate.to_status": str(step.to_status),
                },
            )

    def claimed(self, engine: Any, obj: Any, now: int) -> None:
        attributes = {"runstate.lifecycle": engine.definition.name}
        self.claims.add(1, attributes)
        self.claim_wait.record(max(0, now - obj.created_at), attributes)

    def swept(self, engine: Any, stalled: Iterable[Any], recovered: int, timed_out: int) -> None:
        attributes = {"runstate.lifecycle": engine.definition.name}
        found = sum(1 for _ in stalled)
        if found:
            self.lease_expiries.add(found, attributes)
        if recovered:
            self.recoveries.add(recovered, attributes)
        if timed_out:
            self.timeouts.add(timed_out, attributes)

    def webhook_attempt(self, outcome: str, event_type: str) -> None:
        """One attempt of a webhook delivery (``runstate.webhooks.Dispatcher``) and how it
        ended: ``delivered``, ``retry`` (it will be tried again) or ``failed``."""
        self.webhook_attempts.add(
            1, {"runstate.outcome": outcome, "runstate.webhook.type": event_type}
        )

    # --- the gauges ----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the queue figures of every async engine instrumented here (a sync
        engine's are read at each collection)."""
        for engine in self._engines:
            if _is_async(engine):
                self._record(engine, await engine.store.stats(int(time.time())))

    def _record(self, engine: Any, stats: Any) -> None:
        part = stats.kinds.get(engine.kind)
        now = int(time.time())
        if part is None:
            self._figures[engine.definition.name] = (0, None)
        else:
            age = None if part.oldest_waiting is None else max(0, now - part.oldest_waiting)
            self._figures[engine.definition.name] = (part.waiting, age)

    def _read(self) -> dict[str, tuple[int, float | None]]:
        for engine in self._engines:
            if not _is_async(engine):
                self._record(engine, engine.store.stats(int(time.time())))
        return self._figures

    def _depth(self, options: Any) -> Iterator[metrics.Observation]:
        for lifecycle, (depth, _) in self._read().items():
            yield metrics.Observation(depth, {"runstate.lifecycle": lifecycle})

    def _age(self, options: Any) -> Iterator[metrics.Observation]:
        for lifecycle, (_, age) in self._figures.items():
            if age is not None:
                yield metrics.Observation(age, {"runstate.lifecycle": lifecycle})


def _is_async(engine: Any) -> bool:
    return hasattr(engine, "__aenter__")


def instrument(*engines: Any, tracer_provider: Any = None, meter_provider: Any = None) -> Telemetry:
    """Record spans and metrics for ``engines`` (see the module) with the given
    providers, or the global ones; returns the ``Telemetry``."""
    telemetry = Telemetry(tracer_provider, meter_provider)
    for engine in engines:
        telemetry.add(engine)
    return telemetry
