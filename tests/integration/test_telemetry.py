"""Metrics and traces, read back with the OpenTelemetry SDK's in-memory exporters, on
every store; and nothing of OpenTelemetry imported unless asked for."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runstate import AsyncResponseEngine, ManualClock, ResponseEngine, RunEngine, Store
from runstate.telemetry import instrument


@pytest.fixture
def otel() -> tuple[Any, InMemorySpanExporter, InMemoryMetricReader]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    providers = {"tracer_provider": tracer_provider, "meter_provider": MeterProvider([reader])}
    return providers, spans, reader


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Every data point of every runstate metric, by the metric's name."""
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def total(found: dict[str, list[Any]], name: str, **attributes: str) -> float:
    wanted = {f"runstate.{k}": v for k, v in attributes.items()}
    return sum(
        p.value
        for p in found.get(name, [])
        if all(p.attributes.get(k) == v for k, v in wanted.items())
    )


def test_spans_and_metrics_of_a_run_and_its_sweeps(store: Store, otel: Any) -> None:
    providers, spans, reader = otel
    clock = ManualClock(1_000)
    engine = RunEngine(store, clock=clock, ttl=30, lease_seconds=5, max_attempts=1)
    instrument(engine, **providers)
    run = engine.create(thread_id="t", assistant_id="a")
    clock.advance(3)
    engine.claim("w")
    engine.complete(run.id, worker_id="w")
    stalled = engine.create(thread_id="s", assistant_id="a")
    engine.claim("w")
    due = engine.create(thread_id="d", assistant_id="a")
    clock.advance(5)
    engine.recover_stalled()  # one attempt allowed: it fails
    clock.advance(30)
    engine.expire_due()
    names = [span.name for span in spans.get_finished_spans()]
    assert names[:3] == ["runstate.create", "runstate.claim", "runstate.complete"]
    complete = spans.get_finished_spans()[2]
    assert complete.attributes == {
        "runstate.lifecycle": "run",
        "runstate.object_id": run.id,
        "runstate.from_status": "in_progress",
        "runstate.to_status": "completed",
    }
    found = points(reader)
    assert total(found, "runstate.transitions", to_status="completed") == 1
    assert total(found, "runstate.transitions", event="thread.run.created") == 3
    assert total(found, "runstate.claims", lifecycle="run") == 2
    waited = found["runstate.claim.wait"]
    assert sum(p.count for p in waited) == 2 and sum(p.sum for p in waited) == 3  # 3 s, 0 s
    assert total(found, "runstate.lease_expiries") == 1
    assert total(found, "runstate.recoveries") == 1
    assert total(found, "runstate.timeouts") == 1
    assert total(found, "runstate.queue.depth", lifecycle="run") == 0
    assert engine.get(stalled.id).status.value == "failed"
    assert engine.get(due.id).status.value == "expired"


def test_an_async_engine_is_traced_and_refreshes_its_gauges(otel: Any) -> None:
    providers, spans, reader = otel

    async def main() -> None:
        engine = AsyncResponseEngine()
        telemetry = instrument(engine, **providers)
        await engine.create(model="m", input="hi")
        await engine.create(model="m", input="hi")
        await telemetry.refresh()

    asyncio.run(main())
    assert [s.name for s in spans.get_finished_spans()] == ["runstate.create"] * 2
    found = points(reader)
    assert total(found, "runstate.queue.depth", lifecycle="response") == 2
    assert [p.value >= 0 for p in found["runstate.queue.oldest_age"]] == [True]


def test_an_engine_that_is_not_instrumented_records_nothing(otel: Any) -> None:
    providers, spans, reader = otel
    instrument(ResponseEngine(), **providers)
    engine = ResponseEngine()  # another engine: not instrumented
    engine.create(model="m", input="hi")
    assert spans.get_finished_spans() == ()
    assert total(points(reader), "runstate.transitions") == 0


def test_without_instrumenting_nothing_of_opentelemetry_is_imported() -> None:
    code = (
        "import sys, runstate\n"
        "e = runstate.RunEngine(); r = e.create(thread_id='t', assistant_id='a')\n"
        "e.claim('w'); e.complete(r.id)\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
