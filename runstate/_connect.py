"""``connect(url)``: an engine on the store a URL names.

memory://                      a new MemoryStore
sqlite:///relative/runs.db     a SQLiteStore (four slashes for an absolute path:
sqlite:////var/lib/runs.db      sqlite:////var/lib/runs.db)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._errors import ValidationError
from ._runs import RunEngine
from ._validate import require_string
from .stores import MemoryStore, PostgresStore, SQLiteStore, Store

__all__ = ["connect", "open_store"]


def open_store(url: str, *, create: bool = True) -> Store:
    """The store a URL names; ``create=False`` refuses a SQLite file that does not exist."""
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
        return MemoryStore()
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ValidationError(
                f"Not a SQLite URL: {url!r}. Use sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db.",
                param="url",
            )
        return SQLiteStore(rest[1:], create=create)
    if scheme in ("postgresql", "postgres"):
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - parsing the port is what finds a bad one
        except ValueError:
            # Never repeat the URL: it may hold a password.
            raise ValidationError(
                "Not a PostgreSQL URL: use postgresql://user@host:port/db?schema=name.",
                param="url",
            ) from None
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", "runstate")
        return PostgresStore(urlunsplit(parts._replace(query=urlencode(query))), schema=schema)
    raise ValidationError(
        f"Unknown store scheme {scheme!r} in {url!r}; runstate knows memory://, sqlite:/// "
        "and postgresql://.",
        param="url",
    )


def connect(url: str = "memory://", **engine_options: Any) -> RunEngine:
    """A ``RunEngine`` on the store ``url`` names; options go to ``RunEngine``."""
    store = open_store(url)
    try:
        return RunEngine(store, **engine_options)
    except BaseException:
        store.close()
        raise
