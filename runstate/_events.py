"""Events: one per transition, named as the public streaming API names them.

``RunEvent`` is what listeners receive and what the engine's history holds. Its
``to_sse()`` is the Server-Sent-Events frame a server writes; ``DONE_SSE`` closes a stream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ._errors import ValidationError

__all__ = ["DONE_SSE", "Listener", "Listeners", "RunEvent"]

log = logging.getLogger("runstate")

#: The frame that ends a stream, as the public API sends it.
DONE_SSE = "event: done\ndata: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One event of one object (a run, a response): a transition, or a worker's own event.

    ``event`` is the stream name (``thread.run.completed``), ``data`` the object's public
    dict as it was right after the transition (for a worker's own event, its data).
    ``seq`` is the store's position of the event in its log, ``sequence_number`` its
    position among the object's own events, counted from 0 with no gaps (both ``None``
    for events of a bare ``RunLifecycle``).
    """

    event: str
    run_id: str
    from_status: str | None
    to_status: str
    at: int
    data: dict[str, Any]
    seq: int | None = None
    sequence_number: int | None = None

    @property
    def appended(self) -> bool:
        """Whether this is a worker's own event (a delta), not a transition: a step that
        left the status as it was."""
        return self.from_status is not None and self.from_status == self.to_status

    def payload(self) -> dict[str, Any]:
        """What a stream sends as this event's data. A run's stream sends the run itself
        (the Assistants API); a response's sends ``{"type", "sequence_number",
        "response"}`` for a transition and ``{"type", "sequence_number", **data}`` for a
        worker's own event (the Responses API): the definition's ``envelope`` says which."""
        from ._definitions import ENVELOPES

        if self.appended:
            return {"type": self.event, "sequence_number": self.sequence_number, **self.data}
        envelope = ENVELOPES.get(self.data.get("object", ""))
        if envelope is None:
            return self.data
        return {"type": self.event, "sequence_number": self.sequence_number, envelope: self.data}

    def to_sse(self) -> str:
        """The Server-Sent-Events frame: ``event: <name>`` and ``data: <payload JSON>``."""
        data = json.dumps(self.payload(), separators=(",", ":"))
        return f"event: {self.event}\ndata: {data}\n\n"


Listener = Callable[[RunEvent], object]


class Listeners:
    """Subscribers to events. A listener that raises is logged and skipped: it cannot
    undo a transition that has happened, nor keep the others from hearing of it."""

    __slots__ = ("listening",)

    def __init__(self) -> None:
        # The subscribers, a tuple replaced (never changed) on each (un)subscribe: read
        # it as "is anyone listening?" on the hot path without a call.
        self.listening: tuple[Listener, ...] = ()

    def __len__(self) -> int:
        return len(self.listening)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` on every event; returns a function that unsubscribes."""
        if not callable(listener):
            raise ValidationError("A listener must be callable.", param="listener")
        self.listening = (*self.listening, listener)

        def unsubscribe() -> None:
            self.listening = tuple(x for x in self.listening if x is not listener)

        return unsubscribe

    def publish(self, events: Iterable[RunEvent]) -> None:
        for event in events:
            for listener in self.listening:
                try:
                    listener(event)
                except Exception:
                    log.exception("runstate listener %r failed on %s", listener, event.event)
