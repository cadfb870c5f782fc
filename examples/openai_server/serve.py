"""An OpenAI-compatible server on runstate: FastAPI and uvicorn, async end to end.

    python examples/openai_server/serve.py --store sqlite:///runs.db --port 8000

serves the Assistants runs API (``/v1/threads``, ``/v1/threads/{thread_id}/runs...``)
and the Responses API (``/v1/responses...``) from one process and one store, as the
public APIs do, so the official ``openai`` client drives it unchanged::

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    run = client.beta.threads.create_and_run_poll(assistant_id="asst_1")
    response = client.responses.create(model="gpt-4o", input="Hi", background=True)

The process also runs a sweeper (time-outs and stalled leases, for both) and, unless
``--executors 0``, the scripted executor's workers, as tasks on the server's event
loop. With ``--executors 0`` start the executor elsewhere on the same store
(``scripted_executor.py``); several servers on one PostgreSQL store are replicas: any
of them streams, resumes or cancels what another started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from http_common import BodyLimit, install_error_handlers
from responses_api import DEMO_CAPABILITIES, add_responses_routes
from runs_api import add_runs_routes
from scripted_executor import ScriptedExecutor

from runstate import AsyncResponseEngine, AsyncRunEngine, RunStateError, open_store_async
from runstate.telemetry import Telemetry

log = logging.getLogger("serve")


@dataclass
class Engines:
    """What the routes serve from, made when the server starts (on its event loop)."""

    runs: AsyncRunEngine = field(init=False)
    responses: AsyncResponseEngine = field(init=False)
    executor: ScriptedExecutor = field(init=False)  # also generates foreground responses
    inline: set[asyncio.Future[Any]] = field(default_factory=set)


async def sweep(engines: list[Any], every: float) -> None:
    """Time out due objects and recover stalled ones every ``every`` seconds. A sweep
    that fails (the store is away) is logged, and the next one tries again."""
    while True:
        await asyncio.sleep(every)
        for engine in engines:
            try:
                await engine.expire_due()
                await engine.recover_stalled()
            except RunStateError as exc:
                log.warning("sweep failed, will try again: %s", exc.message)


_metrics: tuple[Telemetry, Any] | None = None


def metrics_for(engines: list[Any]) -> Telemetry:
    """The process's metrics, through the OpenTelemetry Prometheus exporter (made once:
    it registers with prometheus_client's registry), now counting ``engines`` too."""
    global _metrics
    if _metrics is None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider

        provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
        _metrics = (Telemetry(meter_provider=provider), provider)
    telemetry = _metrics[0]
    for engine in engines:
        telemetry.add(engine)
    return telemetry


def create_app(
    store_url: str,
    *,
    ttl: int = 600,
    lease: int = 30,
    executors: int = 2,
    poll_after_ms: int = 100,
    max_body_bytes: int = 1 << 20,
) -> FastAPI:
    """The app on the store at ``store_url``: opened when the server starts, with the
    sweeper and ``executors`` workers of each kind (0: none here)."""
    engines = Engines()
    telemetry: list[Telemetry] = []  # the process's, once the server has started

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await open_store_async(store_url)
        engines.runs = AsyncRunEngine(store, ttl=ttl, lease_seconds=lease)
        engines.responses = AsyncResponseEngine(
            store, lease_seconds=lease, capabilities=DEMO_CAPABILITIES
        )
        engines.executor = ScriptedExecutor(engines.runs, engines.responses)
        telemetry.append(metrics_for([engines.runs, engines.responses]))
        if executors:
            engines.executor.start(executors)
        sweeper = asyncio.ensure_future(sweep([engines.runs, engines.responses], 0.25))
        try:
            yield
        finally:
            sweeper.cancel()
            for task in (sweeper, *engines.inline):
                task.cancel()
            await asyncio.gather(sweeper, *engines.inline, return_exceptions=True)
            await engines.executor.stop()
            await store.close()

    app = FastAPI(title="runstate: OpenAI-compatible runs and responses", lifespan=lifespan)
    app.state.engines = engines  # for a look inside (the tests count waiting followers)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    install_error_handlers(app)

    @app.get("/metrics")
    async def metrics() -> Response:
        """The engines' metrics in the Prometheus text format; the queue figures are
        read from the store now, when they are asked for."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        for each in telemetry:
            with contextlib.suppress(RunStateError):
                await each.refresh()

        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    add_runs_routes(app, engines, poll_after_ms=poll_after_ms)
    add_responses_routes(app, engines)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible server on runstate.")
    parser.add_argument(
        "--store", default="memory://", help="memory://, sqlite:///path.db or postgresql://..."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ttl", type=int, default=600, help="seconds before a run expires")
    parser.add_argument("--lease", type=int, default=30, help="seconds a claim lasts unrenewed")
    parser.add_argument("--executors", type=int, default=2, help="executor workers in-process")
    parser.add_argument(
        "--poll-after-ms", type=int, default=100, help="the poll interval clients are told"
    )
    args = parser.parse_args()
    app = create_app(
        args.store,
        ttl=args.ttl,
        lease=args.lease,
        executors=args.executors,
        poll_after_ms=args.poll_after_ms,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
