"""``/metrics``: the engines' metrics in the Prometheus text format, through the
OpenTelemetry Prometheus exporter.

The exporter registers with ``prometheus_client``'s registry, which is one per process:
so the reader and its ``Telemetry`` are made once per process, and each app that serves
metrics adds its engines to it when it starts (``Service.telemetry``).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from .._errors import RunStateError
from ..telemetry import Telemetry


@functools.cache
def process_telemetry() -> Telemetry:
    """The process's ``Telemetry``, on a meter provider read by the Prometheus exporter."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider

    return Telemetry(meter_provider=MeterProvider(metric_readers=[PrometheusMetricReader()]))


def add_metrics_route(routes: APIRouter, telemetry: Telemetry) -> None:
    """``/metrics`` among ``routes`` (so that their auth hook guards it too): what
    ``telemetry`` (the process's) has recorded."""

    @routes.get("/metrics")
    async def metrics() -> Response:
        """The queue figures are read from the store now, when they are asked for."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        with contextlib.suppress(RunStateError):
            await telemetry.refresh()
        body: Any = generate_latest()
        return Response(body, media_type=CONTENT_TYPE_LATEST)
