"""The run lifecycle: one ``transitions.Machine`` declared once, fired on runs it never holds.

The table is LIFECYCLE.md's, declared once in ``_definitions.RUN_V1``: the machine, the
allowed-event lookups, the refusal messages and the Mermaid diagram are all derived from
it. The machine is built with ``model=None`` and events are fired with
``MACHINE.events[name].trigger(run)``, so a run is a plain object that is never attached
to the machine (no Machine per run, no ``add_model``).

``RunLifecycle`` is the in-memory API: each method applies due expiry first, then the
event, changes the run in place and returns it. ``decide`` is the pure step the durable
engine builds on: it changes a copy of a stored run and returns what happened, so the
engine can write the result with one compare-and-set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from transitions import MachineError

from ._clock import Clock, read_clock, system_clock
from ._definitions import RUN_V1
from ._errors import InvalidTransitionError, ValidationError
from ._events import Listener, Listeners, RunEvent
from ._model import ACTIVE_STATUSES, Run, RunStatus, new_id
from ._validate import (
    MAX_DURATION,
    require_int,
    require_string,
    required_action_for,
    validate_error_code,
    validate_file_ids,
    validate_metadata,
    validate_tool_calls,
    validate_tool_outputs,
    validate_tools,
)

__all__ = ["MACHINE", "SOURCES", "TRANSITIONS", "RunLifecycle", "Transition", "sealed"]

S = RunStatus

#: The seed run's table, declared once in ``_definitions.RUN_V1``; what follows is read
#: from it.
TRANSITIONS = RUN_V1.transitions
MACHINE = RUN_V1.machine
SOURCES = RUN_V1.sources
_EVENTS = MACHINE.events
_STAMPS = RUN_V1.stamps
_CLEARS_EXPIRY = RUN_V1.ends_expiry
_EVENT_NAMES = RUN_V1.event_names


class Transition(NamedTuple):
    """What one event did to one run: the stream name, the two statuses, the time.

    ``data`` is the run's public dict right after this step, kept only when a later step
    of the same write changes the run again (``sealed``); otherwise the run as written
    is the run after this step."""

    event: str
    from_status: RunStatus | None
    to_status: RunStatus
    at: int
    data: dict[str, Any] | None = None

    def to_event(self, run_id: str, data: dict[str, Any], seq: int | None = None) -> RunEvent:
        """The public event for this step, carrying ``data`` (the caller passes
        ``step.data`` where the step has its own snapshot)."""
        from_status = None if self.from_status is None else self.from_status.value
        return RunEvent(self.event, run_id, from_status, self.to_status.value, self.at, data, seq)


def sealed(steps: list[Transition], run: Run) -> list[Transition]:
    """``steps`` with the run as it is now kept in each that has no snapshot yet: call it
    before changing the run again in the same write, so that every event carries the run
    as it was right after its own step."""
    data = run.to_dict()
    return [step if step.data is not None else step._replace(data=data) for step in steps]


def refusal(run: Run, event: str) -> InvalidTransitionError:
    """The error for an event the run's status does not allow, worded as the API words it."""
    status = run.status.value
    if event == "cancel":
        message, http = f"Cannot cancel run with status '{status}'.", 400
    elif event == "submit_tool_outputs":
        message, http = f'Runs in status "{status}" do not accept tool outputs.', 400
    else:
        message, http = f"Cannot {event} run with status '{status}'.", 409
    return InvalidTransitionError(message, status=status, event=event, http_status=http)


def is_due(run: Run, now: int) -> bool:
    return run.status in ACTIVE_STATUSES and run.expires_at is not None and now >= run.expires_at


class RunLifecycle:
    """Moves runs through the lifecycle, stamping times from ``clock``.

    ``clock`` is any zero-argument callable returning Unix seconds (default: the system
    time, read on every call); ``ttl`` is the seconds from creation to ``expires_at``.
    """

    machine = MACHINE

    def __init__(
        self,
        clock: Clock | None = None,
        ttl: int = 600,
        *,
        id_factory: Callable[[str], str] | None = None,
    ) -> None:
        require_int(ttl, "ttl", maximum=MAX_DURATION)
        if clock is not None and not callable(clock):
            raise ValidationError("clock must be a zero-argument callable.", param="clock")
        self._clock: Clock = clock if clock is not None else system_clock
        self.ttl = ttl
        if id_factory is not None and not callable(id_factory):
            raise ValidationError(
                "id_factory must be a callable taking a prefix.", param="id_factory"
            )
        self._new_id = id_factory if id_factory is not None else new_id
        self._listeners = Listeners()

    # --- time and listeners -------------------------------------------------------------

    def now(self) -> int:
        """The clock's time, floored to whole seconds."""
        return read_clock(self._clock)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(RunEvent)`` on every transition; returns the unsubscribe function."""
        return self._listeners.subscribe(listener)

    # --- the operations -------------------------------------------------------------------

    def create(
        self,
        *,
        thread_id: str,
        assistant_id: str,
        model: str = "",
        instructions: str = "",
        tools: Sequence[dict[str, Any]] | None = None,
        file_ids: Sequence[str] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Run:
        """A new ``queued`` run; emits ``thread.run.created`` then ``thread.run.queued``."""
        run, steps = self.new_run(
            thread_id=thread_id,
            assistant_id=assistant_id,
            model=model,
            instructions=instructions,
            tools=tools,
            file_ids=file_ids,
            metadata=metadata,
        )
        self._publish(run, steps)
        return run

    def start(self, run: Run) -> Run:
        """``queued`` to ``in_progress``; stamps ``started_at`` (again on every start)."""
        return self._do(run, "start")

    def require_action(self, run: Run, tool_calls: Sequence[dict[str, Any]]) -> Run:
        """``in_progress`` to ``requires_action``, waiting for these function calls."""
        return self._do(run, "require_action", tool_calls)

    def submit_tool_outputs(self, run: Run, tool_outputs: Sequence[dict[str, Any]]) -> Run:
        """``requires_action`` back to ``queued``, given one output per pending call."""
        return self._do(run, "submit_tool_outputs", tool_outputs)

    def complete(self, run: Run) -> Run:
        """``in_progress`` or ``cancelling`` to ``completed``."""
        return self._do(run, "complete")

    def fail(self, run: Run, *, code: str = "server_error", message: str) -> Run:
        """Any active status to ``failed``, recording ``last_error``."""
        return self._do(run, "fail", (code, message))

    def cancel(self, run: Run) -> Run:
        """Ask for cancellation: ``queued``, ``in_progress`` or ``requires_action`` to
        ``cancelling``."""
        return self._do(run, "cancel")

    def confirm_cancel(self, run: Run) -> Run:
        """The worker confirms the cancel: ``cancelling`` to ``cancelled``."""
        return self._do(run, "confirm_cancel")

    def requeue(self, run: Run) -> Run:
        """Put an ``in_progress`` run whose worker vanished back to ``queued`` (ours)."""
        return self._do(run, "requeue")

    def expire(self, run: Run) -> Run:
        """Expire a due active run; refused for a run that is not due."""
        now = self.now()
        _require_run(run)
        # decide() refuses "expire" for a run that is not due, so it raises here.
        steps = self.expire_if_due(run, now) or self.decide(run, "expire", now)
        self._publish(run, steps)
        return run

    def check_expiry(self, run: Run) -> bool:
        """Expire ``run`` if it is active and due; True if it did."""
        steps = self.expire_if_due(_require_run(run), self.now())
        self._publish(run, steps)
        return bool(steps)

    def update_metadata(self, run: Run, metadata: dict[str, str]) -> Run:
        """Replace the run's metadata (any status; the limits apply to the result)."""
        checked = validate_metadata(metadata)
        self.check_expiry(run)
        run.metadata = checked
        return run

    def allowed_events(self, run: Run) -> list[str]:
        """The events the run's status allows now, after applying due expiry."""
        self.check_expiry(run)
        return [
            name for name, sources in SOURCES.items() if run.status in sources and name != "expire"
        ]

    # --- the engine's building blocks ---------------------------------------------------------

    def new_run(
        self,
        *,
        thread_id: str,
        assistant_id: str,
        model: str = "",
        instructions: str = "",
        tools: Sequence[dict[str, Any]] | None = None,
        file_ids: Sequence[str] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> tuple[Run, list[Transition]]:
        """A validated new run and its two creation events, without publishing them."""
        run = Run(
            id=require_string(self._new_id("run"), "id_factory()"),
            created_at=0,
            thread_id=require_string(thread_id, "thread_id"),
            assistant_id=require_string(assistant_id, "assistant_id"),
            status=S.QUEUED,
            expires_at=None,
            model=require_string(model, "model", allow_empty=True),
            instructions=require_string(instructions, "instructions", allow_empty=True),
            tools=validate_tools(tools),
            file_ids=validate_file_ids(file_ids),
            metadata=validate_metadata(metadata),
        )
        now = self.now()
        run.created_at = now
        run.expires_at = now + self.ttl
        return run, [
            Transition("thread.run.created", None, S.QUEUED, now),
            Transition("thread.run.queued", None, S.QUEUED, now),
        ]

    def expire_if_due(self, run: Run, now: int) -> list[Transition]:
        """Expire ``run`` in place if it is active and due; the transition, or ``[]``."""
        if not is_due(run, now):
            return []
        return self._fire(run, "expire", now)

    def decide(self, run: Run, event: str, now: int, arg: Any = None) -> list[Transition]:
        """Apply ``event`` to ``run`` in place and return what happened.

        Refusals raise before anything is changed. Due expiry is the caller's to apply
        first (``expire_if_due``): ``decide`` looks only at the status it is given.
        """
        sources = SOURCES.get(event)
        if sources is None:
            raise ValidationError(f"Unknown event {event!r}.", param="event")
        if run.status not in sources:
            raise refusal(run, event)
        if event == "require_action":
            calls = validate_tool_calls(arg, self._new_call_id)
        elif event == "submit_tool_outputs":
            _check_outputs_match(run, validate_tool_outputs(arg))
        elif event == "fail":
            code, message = arg
            code = validate_error_code(code)
            message = require_string(message, "message", allow_empty=True)
        elif event == "expire" and not is_due(run, now):
            raise InvalidTransitionError(
                f"Cannot expire run with status '{run.status.value}': it is not due until "
                f"{run.expires_at}.",
                status=run.status.value,
                event=event,
            )
        steps = self._fire(run, event, now)
        if event == "require_action":
            run.required_action = required_action_for(calls)
        elif event == "fail":
            run.last_error = {"code": code, "message": message}
        return steps

    def events_for(
        self, run: Run, steps: Sequence[Transition], seqs: Sequence[int | None] = ()
    ) -> list[RunEvent]:
        """The public events for ``steps``, each carrying the run as it is now (and its
        store sequence number, where ``seqs`` gives them)."""
        numbers = seqs or [None] * len(steps)
        return [
            step.to_event(run.id, run.to_dict() if step.data is None else step.data, seq)
            for step, seq in zip(steps, numbers, strict=True)
        ]

    # --- internals ------------------------------------------------------------------------------

    def _new_call_id(self) -> str:
        return require_string(self._new_id("call"), "id_factory()")

    def _fire(self, run: Run, event: str, now: int) -> list[Transition]:
        source = run.status
        try:
            _EVENTS[event].trigger(run)
        except MachineError as exc:  # only reachable if SOURCES and the machine disagree
            raise refusal(run, event) from exc
        dest = run.status
        if source is S.REQUIRES_ACTION:
            run.required_action = None
        # Stamps never go back in time, even if the system clock does.
        at = max(now, run.started_at or run.created_at)
        stamp = _STAMPS.get(dest)
        if stamp is not None:
            setattr(run, stamp, at)
        if dest in _CLEARS_EXPIRY:
            run.expires_at = None
        return [Transition(_EVENT_NAMES[dest], source, dest, at)]

    def _do(self, run: Run, event: str, arg: Any = None) -> Run:
        # expire_if_due and _publish, inlined: this is every operation's hot path.
        if type(run) is not Run:
            _require_run(run)
        now = read_clock(self._clock)
        expires_at = run.expires_at
        if expires_at is not None and now >= expires_at and run.status in ACTIVE_STATUSES:
            steps = self._fire(run, "expire", now)
        else:
            steps = []
        try:
            steps += self.decide(run, event, now, arg)
        finally:
            if steps and len(self._listeners):
                self._listeners.publish(self.events_for(run, steps))
        return run

    def _publish(self, run: Run, steps: Sequence[Transition]) -> None:
        if steps and len(self._listeners):
            self._listeners.publish(self.events_for(run, steps))


def _require_run(run: Any) -> Run:
    if not isinstance(run, Run):
        raise ValidationError(
            f"Invalid 'run': expected a runstate.Run, got {type(run).__name__}.", param="run"
        )
    return run


def _check_outputs_match(run: Run, outputs: list[dict[str, str]]) -> None:
    expected = [call["id"] for call in run.pending_tool_calls]
    got = [output["tool_call_id"] for output in outputs]
    if sorted(got) != sorted(expected):
        raise ValidationError(
            f"Expected tool outputs for call_ids {expected}, got {got}", param="tool_outputs"
        )
