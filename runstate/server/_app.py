"""``create_app`` and ``router``: the Responses API and the Assistants runs API over a
store, with the service's handler run by Workers in the app's lifespan.

The app is made at once and opens its store when it starts (on the server's event
loop); refusing bad arguments happens here, before anything starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Never

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .._connect import check_url, open_store_async
from .._errors import RunStateError, StoreError, ValidationError
from .._requests import Capabilities
from .._responses import AsyncResponseEngine
from .._runs import AsyncRunEngine
from .._validate import MAX_DURATION, require_int, require_seconds
from .._webhooks import dispatcher_of, new_endpoint
from .._worker import MAX_CONCURRENCY, Handler, Worker, require_handler
from ..stores import AsyncStore, GroupCommit, MemoryStore
from ._http import KEEPALIVE, Auth, refusal, route_class
from ._responses import add_responses_routes
from ._runs import add_runs_routes

__all__ = ["Service", "create_app", "router"]

log = logging.getLogger("runstate.server")

#: The most Workers of each kind one app runs.
MAX_WORKERS = 1_000


class Service:
    """What the routes serve from: the engines (made when the app starts, if it opens
    the store), the handler and its Workers, and the foreground jobs in flight."""

    def __init__(
        self,
        store_or_engines: Any,
        handler: Handler | None,
        *,
        workers: int,
        concurrency: int,
        lease: int,
        ttl: int,
        capabilities: Capabilities | None,
        sweep_every: float | None,
        keepalive: float,
        poll_after_ms: int,
        shutdown_grace: float,
        webhooks: bool | Mapping[str, Any] = False,
        webhook_endpoints: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        if handler is not None:
            require_handler(handler)
        require_int(workers, "workers", minimum=0, maximum=MAX_WORKERS)
        require_int(concurrency, "concurrency", maximum=MAX_CONCURRENCY)
        require_int(lease, "lease", maximum=MAX_DURATION)
        require_int(ttl, "ttl", maximum=MAX_DURATION)
        require_int(poll_after_ms, "poll_after_ms", minimum=0, maximum=3_600_000)
        require_seconds(keepalive, "keepalive")
        if sweep_every is not None:
            require_seconds(sweep_every, "sweep_every")
        require_seconds(shutdown_grace, "shutdown_grace", zero=True)
        if capabilities is not None and not isinstance(capabilities, Capabilities):
            raise ValidationError(
                f"Invalid 'capabilities': expected a runstate.Capabilities, got "
                f"{type(capabilities).__name__}.",
                param="capabilities",
            )
        self.handler = handler
        self.workers = workers
        self.concurrency = concurrency
        self.lease = lease
        self.ttl = ttl
        self.capabilities = capabilities or getattr(handler, "capabilities", None)
        self.sweep_every = sweep_every
        self.keepalive = float(keepalive)
        self.poll_after_ms = poll_after_ms
        self.shutdown_grace = shutdown_grace
        dispatcher_of(MemoryStore(), webhooks)  # its options are checked now
        self.webhooks = webhooks
        for given in webhook_endpoints:  # checked now, as add() checks them
            new_endpoint(given.get("url"), given.get("secret"), given.get("events"), None, 0)
        self.webhook_endpoints = list(webhook_endpoints)
        #: The webhook dispatcher running in the app (``webhooks``), once it has started.
        self.dispatcher: Any = None
        self._source = _source(store_or_engines)
        self.runs: AsyncRunEngine | None = None
        self.responses: AsyncResponseEngine | None = None
        self.serves = self._kinds()
        #: Workers running in this app (for operators and tests), and the foreground
        #: jobs' own, which never claims.
        self.running: list[Worker] = []
        self._performers: dict[str, Worker] = {}
        self._inline: set[asyncio.Future[Any]] = set()
        #: A ``runstate.telemetry.Telemetry`` told of the engines when they are made.
        self.telemetry: Any = None

    def _kinds(self) -> set[str]:
        if isinstance(self._source, tuple):
            return {engine.kind for engine in self._source}
        return {"run", "response"}

    # --- what the routes use --------------------------------------------------------------

    def runs_engine(self) -> AsyncRunEngine:
        if self.runs is None:
            raise _not_started()
        return self.runs

    def responses_engine(self) -> AsyncResponseEngine:
        if self.responses is None:
            raise _not_started()
        return self.responses

    def check(self, request: Mapping[str, Any]) -> None:
        """The handler's own check of a create request (a ``check`` method), if any."""
        check = getattr(self.handler, "check", None)
        if callable(check):
            check(request)

    def require_handler(self) -> None:
        if self.handler is None:
            raise ValidationError(
                "This deployment generates responses in the background only: set "
                "'background' to true.",
                param="background",
            )

    async def perform(self, engine: Any, obj: Any) -> None:
        """Run the handler on a foreground object now (see ``Worker.perform``)."""
        assert self.handler is not None
        performer = self._performers.get(engine.kind)
        if performer is None:
            performer = Worker(engine, self.handler, concurrency=self.concurrency)
            self._performers[engine.kind] = performer
        await performer.perform(obj)

    def keep(self, task: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """A task the app awaits when it stops."""
        self._inline.add(task)
        task.add_done_callback(self._inline.discard)
        return task

    # --- the lifespan ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """Open the store (when given a URL), start the Workers and the sweeps; on the
        way out, stop them (in-flight jobs get ``shutdown_grace``, then are handed back)
        and close what was opened here."""
        async with contextlib.AsyncExitStack() as stack:
            self._open(await self._store(stack))
            if self.telemetry is not None:
                for engine in (self.runs, self.responses):
                    if engine is not None:
                        self.telemetry.add(engine)
            stack.callback(self._forget_engines)
            engines = [e for e in (self.runs, self.responses) if e is not None]
            await self._add_endpoints(engines[0])
            if self.handler is not None:
                for engine in engines:
                    for _ in range(self.workers):
                        worker = Worker(
                            engine,
                            self.handler,
                            concurrency=self.concurrency,
                            shutdown_grace=self.shutdown_grace,
                        )
                        await stack.enter_async_context(worker)
                        self.running.append(worker)
            if self.sweep_every is not None:
                sweeper = asyncio.ensure_future(_sweep(engines, self.sweep_every))
                stack.push_async_callback(_cancelled, sweeper)
            self.dispatcher = dispatcher_of(
                engines[0].store, _with_telemetry(self.webhooks, self.telemetry)
            )
            if self.dispatcher is not None:
                sending = asyncio.ensure_future(self.dispatcher.run())
                stack.push_async_callback(_cancelled, sending)
            stack.push_async_callback(self._stop_inline)
            yield

    async def _add_endpoints(self, engine: Any) -> None:
        """Add each of ``webhook_endpoints`` whose URL the store has no endpoint for."""
        if not self.webhook_endpoints:
            return
        known = {e.url for e in await engine.webhooks.list()}
        for given in self.webhook_endpoints:
            if given["url"] not in known:
                await engine.webhooks.add(
                    given["url"], secret=given["secret"], events=given.get("events")
                )
                known.add(given["url"])

    async def _store(self, stack: contextlib.AsyncExitStack) -> Any:
        source = self._source
        if isinstance(source, str):
            store = await open_store_async(source)
            stack.push_async_callback(store.close)
            return GroupCommit(store)
        return source

    def _open(self, source: Any) -> None:
        if isinstance(source, tuple):
            for engine in source:
                if engine.kind == "run":
                    self.runs = engine
                else:
                    self.responses = engine
            return
        self.runs = AsyncRunEngine(source, ttl=self.ttl, lease_seconds=self.lease)
        self.responses = AsyncResponseEngine(
            source, lease_seconds=self.lease, capabilities=self.capabilities
        )

    def _forget_engines(self) -> None:
        self.running.clear()
        self._performers.clear()
        if not isinstance(self._source, tuple):
            self.runs = self.responses = None

    async def _stop_inline(self) -> None:
        for task in list(self._inline):
            task.cancel()
        await asyncio.gather(*self._inline, return_exceptions=True)


def _not_started() -> StoreError:
    return StoreError(
        "The runstate app has not started: its lifespan opens the store and starts the "
        "Workers (a mounted app's lifespan is not run: include runstate.server.router in "
        "the parent app instead)."
    )


def _source(given: Any) -> Any:
    """What ``store_or_engines`` names: a store URL, an async store (a sync store is
    made async), or a tuple of async engines (at most one of each kind)."""
    if isinstance(given, str):
        check_url(given)  # a malformed URL is refused now, not when the app starts
        return given
    if isinstance(given, (AsyncRunEngine, AsyncResponseEngine)):
        given = (given,)
    if isinstance(given, Sequence) and given:
        kinds = [getattr(engine, "kind", None) for engine in given]
        if not all(isinstance(e, (AsyncRunEngine, AsyncResponseEngine)) for e in given) or len(
            set(kinds)
        ) != len(kinds):
            raise ValidationError(
                "Invalid 'store_or_engines': expected at most one AsyncRunEngine and one "
                "AsyncResponseEngine.",
                param="store_or_engines",
            )
        return tuple(given)
    get = getattr(given, "get", None)
    if callable(get) and hasattr(given, "claim"):
        if inspect.iscoroutinefunction(get):
            return GroupCommit(given)  # an async store, its writes gathered
        return GroupCommit(AsyncStore(given, offload=not isinstance(given, MemoryStore)))
    raise ValidationError(
        f"Invalid 'store_or_engines': expected a store URL, a store, or async engines, got "
        f"{type(given).__name__}.",
        param="store_or_engines",
    )


async def _sweep(engines: Sequence[Any], every: float) -> None:
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


def _with_telemetry(webhooks: Any, telemetry: Any) -> Any:
    """The dispatcher's options with ``telemetry`` (unless they name their own)."""
    if not webhooks or telemetry is None:
        return webhooks
    options = {} if webhooks is True else dict(webhooks)
    return {"telemetry": telemetry, **options}


async def _cancelled(task: asyncio.Future[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def router(
    store_or_engines: Any,
    handler: Handler | None = None,
    *,
    workers: int = 1,
    concurrency: int = 8,
    auth: Auth | None = None,
    lease: int = 30,
    ttl: int = 600,
    capabilities: Capabilities | None = None,
    sweep_every: float | None = None,
    keepalive: float = KEEPALIVE,
    poll_after_ms: int = 100,
    shutdown_grace: float = 30.0,
    max_body_bytes: int = 1 << 20,
    telemetry: Any = None,
    webhooks: bool | Mapping[str, Any] = False,
    webhook_endpoints: Sequence[Mapping[str, Any]] = (),
    **unknown: Never,
) -> APIRouter:
    """The Responses API and the runs API (``/v1/...``) as a FastAPI router, for an
    app of the service's own: ``app.include_router(router(...), prefix="/llm")``. Its
    lifespan (the store, the Workers, the sweeps) becomes part of the app's.

    ``store_or_engines``: a store URL (``sqlite:///runs.db``), a store, or async engines
    (``AsyncResponseEngine``, ``AsyncRunEngine``: only their APIs are served).
    ``handler``: ``async def handler(job)`` (see ``runstate.Worker``), run by
    ``workers`` Workers of ``concurrency`` jobs for each kind of object, and inline for
    foreground responses; None serves the APIs with the work done elsewhere. ``auth``:
    given each request, True to serve it (``runstate.server.bearer(key)``). ``lease``,
    ``ttl`` and ``capabilities`` (default: the handler's ``capabilities``) configure the
    engines the app makes. ``sweep_every``: run the time-outs and the recovery of lost
    workers that often (None: ``runstate sweep`` does). ``keepalive``: the seconds an
    idle stream waits before a keep-alive comment. ``telemetry``: a
    ``runstate.telemetry.Telemetry`` to record the engines' metrics and traces.
    ``webhooks``: also send the store's webhook deliveries (``runstate.webhooks.
    Dispatcher``, with ``telemetry``'s counters): True, or a dict of its options.
    ``webhook_endpoints``: endpoints (``{"url", "secret", "events"}``) the store gets
    when the app starts, unless it has one with that URL already.
    """
    for name in unknown:
        raise ValidationError(f"Unknown option for runstate.server: '{name}'.", param=name)
    require_int(max_body_bytes, "max_body_bytes", maximum=1 << 34)
    if auth is not None and not callable(auth):
        raise ValidationError(
            f"Invalid 'auth': expected a function given the request, got {type(auth).__name__}.",
            param="auth",
        )
    service = Service(
        store_or_engines,
        handler,
        workers=workers,
        concurrency=concurrency,
        lease=lease,
        ttl=ttl,
        capabilities=capabilities,
        sweep_every=sweep_every,
        keepalive=keepalive,
        poll_after_ms=poll_after_ms,
        shutdown_grace=shutdown_grace,
        webhooks=webhooks,
        webhook_endpoints=webhook_endpoints,
    )
    service.telemetry = telemetry
    routes = APIRouter(route_class=route_class(max_body_bytes, auth), lifespan=service.lifespan)
    if "run" in service.serves:
        add_runs_routes(routes, service)
    if "response" in service.serves:
        add_responses_routes(routes, service)
    routes.service = service  # type: ignore[attr-defined]  # for a look inside
    return routes


def create_app(
    store_or_engines: Any,
    handler: Handler | None = None,
    *,
    workers: int = 1,
    concurrency: int = 8,
    auth: Auth | None = None,
    metrics: bool = False,
    **options: Any,
) -> FastAPI:
    """An ASGI app (FastAPI) serving the Responses API and the runs API under ``/v1``
    from ``store_or_engines``, with ``handler`` run by Workers that start and stop in
    the app's lifespan. Takes ``router``'s options; ``metrics``: serve the engines'
    metrics at ``/metrics`` in the Prometheus format (the ``server`` extra)."""
    routes = router(
        store_or_engines, handler, workers=workers, concurrency=concurrency, auth=auth, **options
    )
    service: Service = routes.service  # type: ignore[attr-defined]
    if metrics:
        from ._metrics import add_metrics_route, process_telemetry

        if service.telemetry is None:
            service.telemetry = process_telemetry()
        add_metrics_route(routes, service.telemetry)
    app = FastAPI(title="runstate: OpenAI-compatible responses and runs")
    app.include_router(routes)
    app.state.service = service

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        """An unknown path or method, answered with the public body too."""
        return refusal(request, exc)

    return app
