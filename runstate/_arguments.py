"""The arguments of the events that carry one, as named values rather than tuples.

A lifecycle's ``decide`` takes them (``Lifecycle.decide(obj, "fail", now, Failure(...))``);
a declaration names them too, for the events the engine fires itself (a time-out that
fails a response, the end of an object whose worker was lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Completion", "Failure", "Incompletion", "server_error"]


@dataclass(frozen=True, slots=True)
class Failure:
    """An object failed: its error's ``code`` and ``message`` (and the usage so far, for
    an object that has one)."""

    code: str
    message: str
    usage: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """An object finished: what it made (a response's ``output``) and its ``usage``."""

    output: Any = None
    usage: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Incompletion:
    """An object stopped short, for ``reason`` (a token limit, a content filter), with
    what it had made and used by then."""

    reason: str
    output: Any = None
    usage: dict[str, int] | None = None


def server_error(message: str) -> Failure:
    """The failure of an object whose worker was lost (``Workers.lost_argument``)."""
    return Failure("server_error", message)
