"""The tests' fixtures: a manual clock, a lifecycle on it, runs put in any status, each
store in turn, each engine face in turn, a PostgreSQL schema per test, and the example
server. What the tests share besides fixtures is in ``tables.py``.

``tests/unit`` needs no files, processes or servers; ``tests/integration`` runs the same
behaviour on real SQLite files, a real PostgreSQL server (those tests are marked
``postgres``), real processes and the example server.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from faces import Faces
from tables import PG_BASE, T0, TTL, make_store, pg_url, runs_along_paths

from runstate import ManualClock, Run, RunLifecycle, RunStatus, Store


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the PostgreSQL server ``postgres`` (``-m postgres`` runs
    them alone; CI runs every test)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "pg_schema" in getattr(item, "fixturenames", ()) or "postgres" in params.values():
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL of each backend: memory, a SQLite file, a PostgreSQL schema of the
    test's own."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    return pg_url(request.getfixturevalue("pg_schema"))


@pytest.fixture(params=["sqlite", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL that other processes can share: a SQLite file, a PostgreSQL schema of
    the test's own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return pg_url(request.getfixturevalue("pg_schema"))


@pytest.fixture
def pg_schema() -> Iterator[str]:
    name = "rs_test_" + secrets.token_hex(6)
    yield name
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each store in turn: a test that takes it is part of the contract every store passes."""
    store = make_store(request.param, request, tmp_path / "runs.db")
    yield store
    store.close()


@pytest.fixture(params=["sync", "async"])
def faces(request: pytest.FixtureRequest) -> Iterator[Faces]:
    """Each face in turn (``tests/faces.py``): the test's engines are that face's."""
    made = Faces(request.param)
    yield made
    made.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def lifecycle(clock: ManualClock) -> RunLifecycle:
    return RunLifecycle(clock=clock, ttl=TTL)


@pytest.fixture
def lifecycle_v2(clock: ManualClock) -> RunLifecycle:
    return RunLifecycle(clock=clock, ttl=TTL, version="v2")


@pytest.fixture
def run_in(lifecycle: RunLifecycle, clock: ManualClock) -> Callable[[RunStatus], Run]:
    """A new run driven to ``status`` along its path, each step one second apart."""
    return runs_along_paths(lifecycle, clock)


@pytest.fixture
def run_v2_in(lifecycle_v2: RunLifecycle, clock: ManualClock) -> Callable[[RunStatus], Run]:
    """The same for a v2 run."""
    return runs_along_paths(lifecycle_v2, clock)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """``runstate serve``, live on 127.0.0.1 with metrics, one per test module that asks."""
    from servers import serve

    with serve("memory://", "--metrics") as base:
        yield base
