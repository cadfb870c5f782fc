"""The engines' two faces for the contract suites: each contract test runs once on the
sync engine and once on its async twin, on the same store.

conftest's ``faces`` fixture runs a test once per face (a contract module runs all its
tests so: ``pytestmark = pytest.mark.usefixtures("faces")``); it is a ``Faces``: ``faces.run(...)``, ``faces.response(...)`` and
``faces.objects(definition, ...)`` make the engine of the face under test. On the async
face they make the async engine, on the async form of the test's store
(``AsyncPostgresStore`` on the same schema for a ``PostgresStore``, ``AsyncStore`` for
the others and for a test's proxies), and wrap it in ``Blocking``, which runs each
awaited call on one event loop in a thread of its own, so that a test reads the same
either way. ``engine.store`` stays the test's own sync store, for its checks of what is
stored.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import runstate
from runstate import MemoryStore, PostgresStore

T = TypeVar("T")
_loop: asyncio.AbstractEventLoop | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The event loop the async face runs on, in a daemon thread, made once."""
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
        threading.Thread(target=_loop.run_forever, name="async-face", daemon=True).start()
    return _loop


def block(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(coroutine, loop()).result(timeout=120)


class Faces:
    """The face a test runs on (``mode``: "sync" or "async"), and its engines."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._opened: list[Any] = []  # the async PostgreSQL stores opened, closed after

    def run(self, store: Any = None, *args: Any, **kwargs: Any) -> Any:
        return self._engine(runstate.RunEngine, runstate.AsyncRunEngine, store, *args, **kwargs)

    def response(self, store: Any = None, *args: Any, **kwargs: Any) -> Any:
        return self._engine(
            runstate.ResponseEngine, runstate.AsyncResponseEngine, store, *args, **kwargs
        )

    def objects(self, definition: Any, store: Any, *args: Any, **kwargs: Any) -> Any:
        if self.mode == "sync":
            return runstate.ObjectEngine(definition, store, *args, **kwargs)
        engine = runstate.AsyncObjectEngine(definition, self.async_store(store), *args, **kwargs)
        return Blocking(engine, store)

    def _engine(self, sync_class: type, async_class: type, store: Any, *a: Any, **k: Any) -> Any:
        if self.mode == "sync":
            return sync_class(store, *a, **k)
        return Blocking(async_class(self.async_store(store), *a, **k), store)

    def async_store(self, store: Any) -> Any:
        """The async form of ``store`` (see the module)."""
        if store is None or not callable(getattr(store, "get", None)):
            return store  # the default, or not a store at all: the engine says so
        if type(store) is PostgresStore:
            opened = block(
                runstate.AsyncPostgresStore.open(
                    store._conninfo, schema=store.schema, max_events=store.max_events
                )
            )
            self._opened.append(opened)
            return opened
        return runstate.AsyncStore(store, offload=type(store) is not MemoryStore)

    def close(self) -> None:
        while self._opened:
            block(self._opened.pop().close())


class Blocking:
    """An async engine whose coroutine methods are called to completion."""

    def __init__(self, engine: Any, store: Any) -> None:
        self._engine = engine
        self.store = store if store is not None else engine.store.sync

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._engine, name)
        if inspect.iscoroutinefunction(attr):
            return lambda *args, **kwargs: block(attr(*args, **kwargs))
        return attr

    def __repr__(self) -> str:
        return repr(self._engine)

    def __enter__(self) -> Blocking:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
