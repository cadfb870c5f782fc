"""ResponseEngine: the Responses API's background responses on the one engine.

The loop, the claims, the sweeps and the leases are ``Engine``'s (``_engine.py``); this
face adds what a response has of its own: its ``input``, kept beside it
for the worker; a worker's own stream events (``append``: text deltas and the like),
numbered in the response's sequence between its transitions; an immediate cancel that a
late ``complete`` cannot overwrite, idempotent on a terminal background response and
refused (400) for a foreground one; a time-out that fails an active response
``timeout`` seconds after its creation; and ``delete``.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from ._arguments import Completion, Failure, Incompletion
from ._clock import Clock
from ._engine import AsyncFace, Decision, Engine, Lease, ListPage, Plan, SyncFace, call, check_lease
from ._errors import (
    ConcurrentUpdateError,
    ObjectNotFoundError,
    ResponseNotFoundError,
    ValidationError,
)
from ._events import RunEvent
from ._faces import operation
from ._lifecycle import ResponseLifecycle
from ._response import Response, ResponseStatus
from ._validate import json_value, require_string
from .stores import Order, StoredObject

__all__ = ["AsyncResponseEngine", "ResponseEngine", "ResponseList"]

#: The keys a stream event's envelope uses: a worker's own event may not set them.
_RESERVED = frozenset({"type", "sequence_number"})


@dataclass(frozen=True, slots=True)
class ResponseList(ListPage[Response]):
    """A page of responses in the public list shape (``object: "list"``)."""


class ResponsePlans(Engine[Response]):
    """What both response engines do, as plans (see ``Engine``)."""

    not_found = ResponseNotFoundError

    def __init__(
        self,
        store: Any = None,
        clock: Clock | None = None,
        *,
        timeout: int = 3600,
        lease_seconds: int = 60,
        max_attempts: int = 3,
        id_factory: Callable[[str], str] | None = None,
        idempotency_window: int = 86_400,
    ) -> None:
        lifecycle = ResponseLifecycle(clock, timeout, id_factory=id_factory)
        super().__init__(
            store,
            lifecycle,
            {"response": lifecycle},
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            idempotency_window=idempotency_window,
        )
        self.lifecycle: ResponseLifecycle = lifecycle
        self.timeout = timeout
        #: The lifecycle's own event names, which a worker's own event may not take.
        self._transition_names = frozenset(self.definition.event_names.values()) | {
            "response.created"
        }

    def _p_create(self, fields: dict[str, Any], idempotency_key: str | None) -> Plan[Response]:
        response, given, steps = self.lifecycle.new_response(**fields)
        key = self._key(idempotency_key, response, given)
        previous = fields["previous_response_id"]
        if previous is not None:
            try:
                yield from self._p_stored(previous)
            except ObjectNotFoundError:
                raise ValidationError(
                    f"Previous response with id '{previous}' not found.",
                    param="previous_response_id",
                ) from None
        made: Response = yield from self._p_insert(response, steps, given, key)
        return made

    def _p_input_of(self, response_id: str) -> Plan[str | builtins.list[dict[str, Any]]]:
        yield from self._p_stored(require_string(response_id, "response_id"))
        try:
            given: str | builtins.list[dict[str, Any]] = yield call("input_of", response_id)
        except ObjectNotFoundError:  # deleted meanwhile
            raise ResponseNotFoundError(response_id) from None
        return given

    def _p_list_responses(
        self,
        status: ResponseStatus | str | None,
        limit: int,
        order: Order,
        after: str | None,
        before: str | None,
    ) -> Plan[ResponseList]:
        wanted = None if status is None else self.lifecycle.status_of(status)
        responses, has_more = yield from self._p_list(None, wanted, limit, order, after, before)
        return ResponseList(responses, has_more)

    def _p_delete(self, response_id: str) -> Plan[bool]:
        try:
            yield from self._p_stored(require_string(response_id, "response_id"))
        except ObjectNotFoundError:
            return False
        deleted: bool = yield call("delete", response_id)
        return deleted

    def _p_append(
        self, response_id: str, event_type: str, data: dict[str, Any], worker_id: str | None
    ) -> Plan[RunEvent]:
        event_type = require_string(event_type, "event_type", max_length=128)
        if not event_type.startswith("response.") or event_type in self._transition_names:
            raise ValidationError(
                f"Invalid 'event_type': a worker's own event is named 'response.<...>' and "
                f"is not one of the lifecycle's ({sorted(self._transition_names)}); got "
                f"{event_type!r}.",
                param="event_type",
            )
        if not isinstance(data, dict):
            raise ValidationError(
                f"Invalid 'data': expected an object, got {type(data).__name__}.", param="data"
            )
        checked: dict[str, Any] = json_value(data, "data")
        for key in _RESERVED & checked.keys():
            raise ValidationError(
                f"Invalid 'data.{key}': the stream sets it; leave it out.", param="data"
            )
        if worker_id is not None:
            require_string(worker_id, "worker_id")
        noted = partial(self._noted, event_type, checked, worker_id)
        response, write, seqs = yield from self._p_apply(response_id, noted)
        if write is None or seqs is None:  # pragma: no cover - a note is stored or refused
            raise ConcurrentUpdateError(f"The event for {response_id} was not stored.")
        # The note is the write's last step (a time-out applied first would come before).
        number = write.first_number + len(write.steps) - 1
        (event,) = self.lifecycle.events_for(response, write.steps[-1:], seqs[-1:], number)
        return event

    def _noted(
        self,
        event_type: str,
        data: dict[str, Any],
        worker_id: str | None,
        response: Response,
        stored: StoredObject,
        now: int,
        timed_out: bool,
    ) -> Decision:
        steps = self.lifecycle.note(response, event_type, data, now)
        if worker_id is not None:
            check_lease(stored, worker_id)
        return Decision(steps, Lease.after(stored, response, self._leased))

    # --- the operations: each face's methods are made from these (see ``_faces``) --------

    @operation
    def create(
        self,
        *,
        model: str,
        input: str | Sequence[dict[str, Any]],
        instructions: str | None = None,
        background: bool = True,
        metadata: dict[str, str] | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] = "auto",
        parallel_tool_calls: bool = True,
        temperature: float | None = None,
        top_p: float | None = None,
        max_output_tokens: int | None = None,
        previous_response_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Plan[Response]:
        """A new response: ``queued`` for a worker to claim (``background=True``), or
        ``in_progress`` for a caller that generates it itself and completes it (ours).
        ``previous_response_id`` must name a stored response. With ``idempotency_key``,
        a create repeated with the same key and parameters returns the response made
        first; with other parameters it is an ``IdempotencyError`` (409)."""
        fields = {k: v for k, v in locals().items() if k not in ("self", "idempotency_key")}
        return self._p_create(fields, idempotency_key)

    @operation
    def input_of(self, response_id: str) -> Plan[str | builtins.list[dict[str, Any]]]:
        """The ``input`` the response was created with: what its worker generates from."""
        return self._p_input_of(response_id)

    @operation
    def list(
        self,
        *,
        status: ResponseStatus | str | None = None,
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> Plan[ResponseList]:
        """Responses by ``created_at`` (newest first unless ``order="asc"``), in the
        public list shape, optionally only those with one status; ``after`` and
        ``before`` are response ids bounding the page."""
        return self._p_list_responses(status, limit, order, after, before)

    @operation
    def update_metadata(self, response_id: str, metadata: dict[str, str]) -> Plan[Response]:
        """Replace the response's metadata, in any status."""
        return self._p_update_metadata(response_id, metadata)

    @operation
    def delete(self, response_id: str) -> Plan[bool]:
        """Delete the response and its events, in any status (a worker still generating
        it finds it gone at its next step). False if there was no such response."""
        return self._p_delete(response_id)

    # The worker's side. With ``worker_id``, a step is refused (``LeaseError``) unless
    # that worker holds the lease.

    @operation
    def append(
        self,
        response_id: str,
        event_type: str,
        data: dict[str, Any],
        *,
        worker_id: str | None = None,
    ) -> Plan[RunEvent]:
        """Store a worker's own stream event, such as ``response.output_text.delta`` with
        ``{"item_id": ..., "output_index": 0, "content_index": 0, "delta": "Hel"}``,
        numbered in the response's sequence. Refused unless the response is
        ``in_progress`` (and, with ``worker_id``, leased to that worker): a cancelled
        response takes no more. Returns the stored event."""
        return self._p_append(response_id, event_type, data, worker_id)

    @operation
    def complete(
        self,
        response_id: str,
        *,
        output: Sequence[dict[str, Any]],
        usage: dict[str, Any] | None = None,
        worker_id: str | None = None,
    ) -> Plan[Response]:
        """``in_progress`` to ``completed``, with the ``output`` items (messages, function
        calls) and ``usage``; stamps ``completed_at``. Refused after a cancel."""
        return self._p_step(response_id, "complete", Completion(output, usage), worker_id)

    @operation
    def incomplete(
        self,
        response_id: str,
        *,
        reason: str,
        output: Sequence[dict[str, Any]] | None = None,
        usage: dict[str, Any] | None = None,
        worker_id: str | None = None,
    ) -> Plan[Response]:
        """``in_progress`` to ``incomplete``: generation stopped early (``reason``:
        ``max_output_tokens``, ``content_filter``, ...), with what was generated."""
        stop = Incompletion(reason, output, usage)
        return self._p_step(response_id, "incomplete", stop, worker_id)

    @operation
    def fail(
        self,
        response_id: str,
        *,
        code: str = "server_error",
        message: str,
        worker_id: str | None = None,
    ) -> Plan[Response]:
        """``queued`` or ``in_progress`` to ``failed``, with ``error = {code, message}``."""
        return self._p_step(response_id, "fail", Failure(code, message), worker_id)


class ResponseEngine(SyncFace[Response], ResponsePlans):
    """Background responses in ``store`` (default: a new ``MemoryStore``; any store a
    ``RunEngine`` uses can hold both), timed by ``clock``.

    ``timeout`` is the seconds after creation past which an active response fails with
    ``server_error`` (``expire_due`` applies it; reading a response does too).
    ``lease_seconds`` and ``max_attempts`` are as for runs: a response whose worker
    vanished goes back to the queue, and fails after ``max_attempts`` claims. A
    cancel is immediate: ``queued`` or ``in_progress`` to ``cancelled`` in one write (a
    worker's late ``complete`` is refused); an ended background response is returned
    unchanged, and a foreground one is refused (400).
    """


class AsyncResponseEngine(AsyncFace[Response], ResponsePlans):
    """``ResponseEngine`` for asyncio: the same methods, awaitable, on an async store
    (``runstate.connect_async(url)``)."""
