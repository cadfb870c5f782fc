"""Clocks: where the engine's ``now`` comes from.

A clock is any zero-argument callable returning Unix seconds (int or float). The default,
``system_clock``, looks the time up through ``time.time`` on every call, so
``freezegun.freeze_time`` moves it; a default bound at import (``clock=time.time``) would
not see freezegun. ``ManualClock`` is the clock for tests and simulations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ._errors import ValidationError
from ._validate import MAX_TIME

Clock = Callable[[], float]


def system_clock() -> float:
    """The system's time, read at call time (so freezegun can move it)."""
    return time.time()


class ManualClock:
    """A clock that moves only when told: ``advance(seconds)`` or ``set(t)``."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 1_700_000_000) -> None:
        self._now = _finite(start, "start")

    def __call__(self) -> float:
        return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (never backward) and return the new time."""
        seconds = _finite(seconds, "seconds", low=-MAX_TIME)
        if seconds < 0:
            raise ValidationError(
                f"A clock only moves forward; cannot advance by {seconds}.", param="seconds"
            )
        self._now += seconds
        return self._now

    def set(self, t: float) -> float:
        """Jump to ``t``, which must not be earlier than the current time."""
        t = _finite(t, "t")
        if t < self._now:
            raise ValidationError(
                f"A clock only moves forward; cannot set {t} before {self._now}.", param="t"
            )
        self._now = t
        return t


def read_clock(clock: Clock) -> int:
    """Read ``clock`` once, floored to whole seconds."""
    t = clock()
    if type(t) is float and 0.0 <= t <= MAX_TIME:  # the common case, checked cheaply
        return math.floor(t)
    return math.floor(_finite(t, "clock()"))


def _finite(value: object, name: str, *, low: float = 0) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not low <= value <= MAX_TIME  # also refuses NaN
    ):
        raise ValidationError(
            f"{name} must be a finite number of Unix seconds from 0 to {MAX_TIME}, got {value!r}.",
            param=name,
        )
    return value
