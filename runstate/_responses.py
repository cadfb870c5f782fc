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
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from . import _output as output
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
from ._model import _clone
from ._output import SCAFFOLDING, new_item_id
from ._requests import Capabilities, check_create, check_includes, input_item_ids
from ._response import Response, ResponseStatus
from ._validate import json_value, require_int, require_string
from .stores import Order, StoredObject

__all__ = ["AsyncResponseEngine", "ResponseEngine", "ResponseList"]

#: The keys a stream event's envelope uses: a worker's own event may not set them.
_RESERVED = frozenset({"type", "sequence_number"})


@dataclass(frozen=True, slots=True)
class ResponseList(ListPage[Response]):
    """A page of responses in the public list shape (``object: "list"``)."""


@dataclass(frozen=True, slots=True)
class InputItemList:
    """A page of a response's input items in the public list shape."""

    data: builtins.list[dict[str, Any]]
    has_more: bool
    object: str = field(default="list", init=False)

    @property
    def first_id(self) -> str | None:
        return self.data[0]["id"] if self.data else None

    @property
    def last_id(self) -> str | None:
        return self.data[-1]["id"] if self.data else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": _clone(self.data),
            "first_id": self.first_id,
            "last_id": self.last_id,
            "has_more": self.has_more,
        }


def _kept(kept: Any, response: Response) -> dict[str, Any]:
    """What a response keeps beside it, as this version keeps it: a response stored
    before the whole request was kept has its ``input`` alone."""
    if isinstance(kept, dict) and "request" in kept:
        return kept

    def same_ids(prefix: str, index: int) -> str:  # the same on every read
        digest = hashlib.sha256(f"{response.id}:{index}".encode()).hexdigest()
        return f"{prefix}_{digest[:32]}"

    return {
        "request": {"model": response.model, "input": kept},
        "items": input_item_ids(kept, (), same_ids),
        "context": [],
    }


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
        capabilities: Capabilities | None = None,
    ) -> None:
        lifecycle = ResponseLifecycle(clock, timeout, id_factory=id_factory)
        #: What the deployment can honour; every documented request by default.
        self.capabilities = capabilities or Capabilities.everything()
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

    def _p_create(self, given: dict[str, Any], idempotency_key: str | None) -> Plan[Response]:
        request = check_create(given, self.capabilities)
        background = request.get("background") is True
        if background and request.get("store") is False:
            raise ValidationError(
                "Background mode requires 'store' to be true: a background response is "
                "kept to be polled.",
                param="store",
            )
        response, steps = self.lifecycle.new_response(request, background=background)
        key = self._key(idempotency_key, response, request)
        context: builtins.list[dict[str, Any]] = []
        previous = request.get("previous_response_id")
        if previous is not None:
            context = yield from self._p_context_after(previous)
        items = input_item_ids(request["input"], context)
        kept = {"request": request, "items": items, "context": context}
        made: Response = yield from self._p_insert(response, steps, kept, key)
        return made

    def _p_context_after(self, previous: str) -> Plan[builtins.list[dict[str, Any]]]:
        """What a response that names ``previous`` continues from: its context, its input
        items and its output, read now and kept with the new response."""
        try:
            stored = yield from self._p_stored(previous)
            kept = yield call("input_of", previous)
        except ObjectNotFoundError:
            raise ValidationError(
                f"Previous response with id '{previous}' not found.",
                param="previous_response_id",
            ) from None
        before: Response = stored.obj
        if before.status in self.definition.active:
            raise ValidationError(
                f"Previous response with id '{previous}' is still {before.status.value}; "
                "continue from it once it has ended.",
                param="previous_response_id",
            )
        kept = _kept(kept, before)
        return [*kept["context"], *kept["items"], *before.output]

    def _p_kept(self, response_id: str) -> Plan[dict[str, Any]]:
        """What the response keeps for its worker: its request, its input items, its context."""
        stored = yield from self._p_stored(require_string(response_id, "response_id"))
        try:
            kept = yield call("input_of", response_id)
        except ObjectNotFoundError:  # deleted meanwhile
            raise ResponseNotFoundError(response_id) from None
        return _kept(kept, stored.obj)

    def _p_input_of(self, response_id: str) -> Plan[str | builtins.list[dict[str, Any]]]:
        kept = yield from self._p_kept(response_id)
        given: str | builtins.list[dict[str, Any]] = kept["request"]["input"]
        return given

    def _p_request_of(self, response_id: str) -> Plan[dict[str, Any]]:
        kept = yield from self._p_kept(response_id)
        request: dict[str, Any] = kept["request"]
        return request

    def _p_context_of(self, response_id: str) -> Plan[builtins.list[dict[str, Any]]]:
        kept = yield from self._p_kept(response_id)
        return [*kept["context"], *kept["items"]]

    def _p_work_of(self, response_id: str) -> Plan[dict[str, Any]]:
        kept = yield from self._p_kept(response_id)
        return {"request": kept["request"], "input": [*kept["context"], *kept["items"]]}

    def _p_input_items(
        self,
        response_id: str,
        limit: int,
        order: Order,
        after: str | None,
        include: Sequence[str] | None,
    ) -> Plan[InputItemList]:
        limit = require_int(limit, "limit", maximum=100)
        if order not in ("asc", "desc"):
            raise ValidationError(
                f"Invalid value for 'order': {order!r}. Supported values are 'asc' or 'desc'.",
                param="order",
            )
        check_includes(include)
        kept = yield from self._p_kept(response_id)
        items = kept["items"] if order == "asc" else kept["items"][::-1]
        if after is not None:
            after = require_string(after, "after")
            ids = [item["id"] for item in items]
            if after not in ids:
                raise ValidationError(
                    f"Invalid 'after': no input item with id '{after}' in response "
                    f"'{response_id}'.",
                    param="after",
                )
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        return InputItemList(page, len(items) > limit)

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
        if (
            not event_type.startswith("response.")
            or event_type in self._transition_names
            or event_type in SCAFFOLDING
        ):
            raise ValidationError(
                f"Invalid 'event_type': a worker's own event is named 'response.<...>' and "
                f"is neither one of the lifecycle's ({sorted(self._transition_names)}) nor "
                f"one the output methods stream ({sorted(SCAFFOLDING)}); got {event_type!r}.",
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
        (event,) = yield from self._p_emit(
            response_id, lambda _: [(event_type, checked)], worker_id
        )
        return event

    def _p_emit(
        self,
        response_id: str,
        build: Callable[[Response], builtins.list[tuple[str, dict[str, Any]]]],
        worker_id: str | None,
    ) -> Plan[builtins.list[RunEvent]]:
        """Store the events ``build`` makes of the response (which it may change: an
        output item opened, text added), in one write, numbered in its sequence."""
        if worker_id is not None:
            require_string(worker_id, "worker_id")
        counts: builtins.list[int] = []  # how many events each try of the decision made
        noted = partial(self._noted, build, worker_id, counts)
        response, write, seqs = yield from self._p_apply(response_id, noted)
        if write is None or seqs is None:  # pragma: no cover - a note is stored or refused
            raise ConcurrentUpdateError(f"The event for {response_id} was not stored.")
        # The notes are the write's last steps (a time-out applied first would come before).
        count = counts[-1]
        number = write.first_number + len(write.steps) - count
        return self.lifecycle.events_for(response, write.steps[-count:], seqs[-count:], number)

    def _noted(
        self,
        build: Callable[[Response], builtins.list[tuple[str, dict[str, Any]]]],
        worker_id: str | None,
        counts: builtins.list[int],
        response: Response,
        stored: StoredObject,
        now: int,
        timed_out: bool,
    ) -> Decision:
        self.lifecycle.check_held(response, "append")
        if worker_id is not None:
            check_lease(stored, worker_id)
        notes = build(response)
        counts.append(len(notes))
        steps = [
            step for kind, data in notes for step in self.lifecycle.note(response, kind, data, now)
        ]
        return Decision(steps, Lease.after(stored, response, self._leased))

    # The output a worker streams: the library writes the events the SDK's helpers read.

    def _p_open_message(
        self, response_id: str, text: str | None, logprobs: Any, worker_id: str | None
    ) -> Plan[str]:
        item_id = new_item_id("msg")
        if text is None:
            if logprobs is not None:
                raise ValidationError(
                    "Invalid 'logprobs': they go with the message's first 'text'.",
                    param="logprobs",
                )
            build = partial(output.open_message, item_id)
        else:
            delta = require_string(text, "text", allow_empty=True)
            build = partial(
                output.open_message_with, item_id, delta, output.check_logprobs(logprobs)
            )
        yield from self._p_emit(response_id, build, worker_id)
        return item_id

    def _p_add_text(
        self, response_id: str, delta: str, logprobs: Any, worker_id: str | None
    ) -> Plan[RunEvent]:
        delta = require_string(delta, "delta", allow_empty=True)
        checked = output.check_logprobs(logprobs)
        events = yield from self._p_emit(
            response_id, partial(output.add_text, delta, checked), worker_id
        )
        return events[0]

    def _p_close_message(self, response_id: str, worker_id: str | None) -> Plan[dict[str, Any]]:
        events = yield from self._p_emit(response_id, output.close_message, worker_id)
        item: dict[str, Any] = events[-1].data["item"]
        return item

    def _p_function_call(
        self,
        response_id: str,
        name: str,
        arguments: str,
        call_id: str | None,
        worker_id: str | None,
    ) -> Plan[dict[str, Any]]:
        call_item = output.new_function_call(name, arguments, call_id)
        events = yield from self._p_emit(
            response_id, partial(output.function_call, call_item), worker_id
        )
        item: dict[str, Any] = events[-1].data["item"]
        return item

    def _p_open_function_call(
        self, response_id: str, name: str, call_id: str | None, worker_id: str | None
    ) -> Plan[dict[str, Any]]:
        call_item = output.new_function_call(name, "", call_id)
        events = yield from self._p_emit(
            response_id, partial(output.open_function_call, call_item), worker_id
        )
        item: dict[str, Any] = events[0].data["item"]
        return item

    def _p_add_arguments(
        self, response_id: str, delta: str, worker_id: str | None
    ) -> Plan[RunEvent]:
        delta = require_string(delta, "delta", allow_empty=True)
        events = yield from self._p_emit(
            response_id, partial(output.add_arguments, delta), worker_id
        )
        return events[0]

    def _p_close_function_call(
        self, response_id: str, worker_id: str | None
    ) -> Plan[dict[str, Any]]:
        events = yield from self._p_emit(response_id, output.close_function_call, worker_id)
        item: dict[str, Any] = events[-1].data["item"]
        return item

    # --- the operations: each face's methods are made from these (see ``_faces``) --------

    @operation
    def create(
        self,
        /,
        *,
        model: str,
        input: str | Sequence[dict[str, Any]],
        background: bool = True,
        idempotency_key: str | None = None,
        **params: Any,
    ) -> Plan[Response]:
        """A new response from the Responses API's create parameters (``model``,
        ``input``, and any of the rest: ``instructions``, ``tools``, ``text``,
        ``reasoning``, ``previous_response_id``, ``store``...), checked as the HTTP API
        checks them: against the ``openai`` package's types, the documented ranges and
        the engine's ``capabilities``. ``queued`` for a worker to claim
        (``background=True``, the engine's default), or ``in_progress`` for a caller
        that generates it itself. The whole request is kept (``request_of``); with
        ``previous_response_id``, the context it continues from too (``context_of``).
        With ``idempotency_key``, a create repeated with the same key and parameters
        returns the response made first; with other parameters it is an
        ``IdempotencyError`` (409)."""
        given = {"model": model, "input": input, "background": background, **params}
        return self._p_create(given, idempotency_key)

    @operation
    def input_of(self, response_id: str) -> Plan[str | builtins.list[dict[str, Any]]]:
        """The ``input`` the response was created with, as it was given."""
        return self._p_input_of(response_id)

    @operation
    def request_of(self, response_id: str) -> Plan[dict[str, Any]]:
        """The whole create request the response was made from, as checked."""
        return self._p_request_of(response_id)

    @operation
    def context_of(self, response_id: str) -> Plan[builtins.list[dict[str, Any]]]:
        """The items its worker generates from: those of the responses it continues
        (``previous_response_id``: their input and output, resolved when it was
        created), then its own input items."""
        return self._p_context_of(response_id)

    @operation
    def work_of(self, response_id: str) -> Plan[dict[str, Any]]:
        """What its worker needs, in one read: ``{"request": request_of(id), "input":
        context_of(id)}``."""
        return self._p_work_of(response_id)

    @operation
    def input_items(
        self,
        response_id: str,
        *,
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        include: Sequence[str] | None = None,
    ) -> Plan[InputItemList]:
        """The response's input items as ``GET /v1/responses/{id}/input_items`` lists
        them: each with its id, newest first unless ``order="asc"``, ``limit`` (1-100)
        per page after the item ``after``."""
        return self._p_input_items(response_id, limit, order, after, include)

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
    def open_message(
        self,
        response_id: str,
        *,
        text: str | None = None,
        logprobs: Sequence[dict[str, Any]] | None = None,
        worker_id: str | None = None,
    ) -> Plan[str]:
        """Open an assistant message in the output (its events: the item and its text
        part added); returns its item id. Refused while another item is open. With
        ``text`` (and its ``logprobs``), its first delta is added in the same write: a
        stream's first token costs one write, not two."""
        return self._p_open_message(response_id, text, logprobs, worker_id)

    @operation
    def add_text(
        self,
        response_id: str,
        delta: str,
        *,
        logprobs: Sequence[dict[str, Any]] | None = None,
        worker_id: str | None = None,
    ) -> Plan[RunEvent]:
        """Add ``delta`` to the open message's text (``response.output_text.delta``,
        with its ``logprobs``: ``[]`` if none). Returns the stored event."""
        return self._p_add_text(response_id, delta, logprobs, worker_id)

    @operation
    def close_message(
        self, response_id: str, *, worker_id: str | None = None
    ) -> Plan[dict[str, Any]]:
        """Close the open message (its text, part and item done); returns the item."""
        return self._p_close_message(response_id, worker_id)

    @operation
    def function_call(
        self,
        response_id: str,
        *,
        name: str,
        arguments: str,
        call_id: str | None = None,
        worker_id: str | None = None,
    ) -> Plan[dict[str, Any]]:
        """Stream a ``function_call`` output item (added, its arguments, done) in one
        write; returns the item. ``call_id`` is made if not given."""
        return self._p_function_call(response_id, name, arguments, call_id, worker_id)

    @operation
    def open_function_call(
        self,
        response_id: str,
        *,
        name: str,
        call_id: str | None = None,
        worker_id: str | None = None,
    ) -> Plan[dict[str, Any]]:
        """Open a ``function_call`` output item whose arguments come a piece at a time
        (``add_arguments``, then ``close_function_call``); returns the item as added.
        Refused while another item is open."""
        return self._p_open_function_call(response_id, name, call_id, worker_id)

    @operation
    def add_arguments(
        self, response_id: str, delta: str, *, worker_id: str | None = None
    ) -> Plan[RunEvent]:
        """Add ``delta`` to the open function call's arguments
        (``response.function_call_arguments.delta``). Returns the stored event."""
        return self._p_add_arguments(response_id, delta, worker_id)

    @operation
    def close_function_call(
        self, response_id: str, *, worker_id: str | None = None
    ) -> Plan[dict[str, Any]]:
        """Close the open function call (its arguments and item done); returns the item."""
        return self._p_close_function_call(response_id, worker_id)

    @operation
    def complete(
        self,
        response_id: str,
        *,
        output: Sequence[dict[str, Any]] | None = None,
        usage: dict[str, Any] | None = None,
        worker_id: str | None = None,
    ) -> Plan[Response]:
        """``in_progress`` to ``completed``, with ``usage`` and the ``output`` items
        streamed (``open_message``...), or those given here instead; stamps
        ``completed_at``. Refused after a cancel, and while a streamed item is open."""
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
