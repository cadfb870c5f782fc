"""``connect(url)``: an engine on the store a URL names (``connect_async``: the async twin).

memory://                      a new MemoryStore
sqlite:///relative/runs.db     a SQLiteStore (four slashes for an absolute path:
sqlite:////var/lib/runs.db      sqlite:////var/lib/runs.db)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._errors import ValidationError
from ._runs import AsyncRunEngine, RunEngine
from ._validate import require_string
from .stores import AsyncPostgresStore, AsyncStore, MemoryStore, PostgresStore, SQLiteStore

__all__ = ["connect", "connect_async", "open_store", "open_store_async"]


_POSTGRES = ("postgresql", "postgres")


def _postgres_url(url: str) -> tuple[str, str]:
    """A PostgreSQL URL's connection string and its ``schema`` parameter (default
    ``runstate``), or a ValidationError that never repeats the URL (it may hold a
    password)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is what finds a bad one
    except ValueError:
        raise ValidationError(
            "Not a PostgreSQL URL: use postgresql://user@host:port/db?schema=name.",
            param="url",
        ) from None
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", "runstate")
    return urlunsplit(parts._replace(query=urlencode(query))), schema


def check_url(url: Any) -> tuple[str, str]:
    """What a store URL names, without opening anything: ``("memory", "")``,
    ``("sqlite", path)`` or ``("postgresql", url)``; a ValidationError otherwise."""
    if not isinstance(url, str):
        raise ValidationError(
            f"A store URL must be a string, got {type(url).__name__}.", param="url"
        )
    require_string(url, "url")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValidationError(
            f"Not a store URL: {url!r}. Use memory://, sqlite:///path/to/runs.db or "
            "postgresql://host/db.",
            param="url",
        )
    if scheme == "memory":
        if rest:
            raise ValidationError(f"memory:// takes no path, got {url!r}.", param="url")
        return "memory", ""
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ValidationError(
                f"Not a SQLite URL: {url!r}. Use sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db.",
                param="url",
            )
        return "sqlite", rest[1:]
    if scheme in _POSTGRES:
        _postgres_url(url)
        return "postgresql", url
    raise ValidationError(
        f"Unknown store scheme {scheme!r} in {url!r}; runstate knows memory://, sqlite:/// "
        "and postgresql://.",
        param="url",
    )


def open_store(url: str, *, create: bool = True) -> Any:
    """The store a URL names; ``create=False`` refuses a SQLite file that does not exist."""
    kind, target = check_url(url)
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(target, create=create)
    conninfo, schema = _postgres_url(url)
    return PostgresStore(conninfo, schema=schema)


async def open_store_async(url: str, *, create: bool = True) -> Any:
    """The async store a URL names: PostgreSQL on psycopg's async pool; SQLite through
    worker threads; memory called in the event loop (see ``AsyncStore``)."""
    if check_url(url)[0] == "postgresql":
        conninfo, schema = _postgres_url(url)
        return await AsyncPostgresStore.open(conninfo, schema=schema)
    sync = open_store(url, create=create)
    return AsyncStore(sync, offload=not isinstance(sync, MemoryStore))


async def connect_async(url: str = "memory://", **engine_options: Any) -> AsyncRunEngine:
    """An ``AsyncRunEngine`` on the async store ``url`` names; options go to the engine."""
    store = await open_store_async(url)
    try:
        return AsyncRunEngine(store, **engine_options)
    except BaseException:
        await store.close()
        raise


def connect(url: str = "memory://", **engine_options: Any) -> RunEngine:
    """A ``RunEngine`` on the store ``url`` names; options go to ``RunEngine``."""
    store = open_store(url)
    try:
        return RunEngine(store, **engine_options)
    except BaseException:
        store.close()
        raise
