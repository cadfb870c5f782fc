"""Lifecycles: a declaration's shared ``transitions.Machine``, fired on objects it never holds.

``Lifecycle`` drives any ``Definition`` (``_definitions``): the clock, firing an event
(stamps, the end of the expiry clock), the time-out, refusals and events. The machine is
built once per declaration with ``model=None``, and an event fires on a carrier of the
object's status, so an object is never attached to it (no Machine per object, no
``add_model``). ``decide`` is the pure step the durable engine builds on: it changes a
copy of a stored object and returns what happened, so that the engine can write the
result with one compare-and-set.

``RunLifecycle`` is the run's in-memory API (``RUN_V1``, or ``RUN_V2`` with
``incomplete``, chosen by ``version``): each method applies due expiry first, then the
event, changes the caller's run in place and returns it. ``ResponseLifecycle`` checks a
background response's arguments for the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from transitions import MachineError

from ._arguments import Completion, Failure, Incompletion
from ._clock import Clock, read_clock, system_clock
from ._definitions import RESPONSE, RUN_V1, RUN_V2, Definition
from ._errors import InvalidTransitionError, ValidationError
from ._events import Listener, Listeners, RunEvent
from ._model import ACTIVE_STATUSES, Run, RunStatus, RunV2, Status, new_id
from ._output import with_logprobs
from ._requests import ECHO_DEFAULTS
from ._response import Response, ResponseStatus
from ._validate import (
    MAX_DURATION,
    RESPONSE_ERROR_CODES,
    RESPONSE_INCOMPLETE_REASONS,
    V2_SETTINGS,
    require_int,
    require_string,
    required_action_for,
    validate_error_code,
    validate_file_ids,
    validate_incomplete_reason,
    validate_metadata,
    validate_one_of,
    validate_output,
    validate_response_usage,
    validate_tool_calls,
    validate_tool_outputs,
    validate_tools,
    validate_tools_v2,
    validate_usage,
)

__all__ = [
    "Lifecycle",
    "ResponseLifecycle",
    "RunLifecycle",
    "Transition",
    "sealed",
]

S = RunStatus
T = TypeVar("T")

#: The run's events whose argument must be checked even when it is None (it is required).
_TAKES_ARGUMENT = frozenset({"require_action", "submit_tool_outputs", "fail", "incomplete"})
#: The versions of the run object, each with its lifecycle and its class.
VERSIONS: dict[str, tuple[Definition, type[Run]]] = {"v1": (RUN_V1, Run), "v2": (RUN_V2, RunV2)}


class Transition(NamedTuple):
    """What one event did to one run: the stream name, the two statuses, the time.

    ``data`` is the run's public dict right after this step, kept only when a later step
    of the same write changes the run again (``sealed``); otherwise the run as written
    is the run after this step."""

    event: str
    from_status: Status | None
    to_status: Status
    at: int
    data: dict[str, Any] | None = None

    def to_event(
        self,
        run_id: str,
        data: dict[str, Any],
        seq: int | None = None,
        number: int | None = None,
    ) -> RunEvent:
        """The public event for this step, carrying ``data`` (the caller passes
        ``step.data`` where the step has its own snapshot), its store position ``seq``
        and its number among the run's events."""
        from_status = None if self.from_status is None else self.from_status.value
        to_status = self.to_status.value
        return RunEvent(self.event, run_id, from_status, to_status, self.at, data, seq, number)


def sealed(steps: list[Transition], run: Run) -> list[Transition]:
    """``steps`` with the run as it is now kept in each that has no snapshot yet: call it
    before changing the run again in the same write, so that every event carries the run
    as it was right after its own step."""
    data = run.to_dict()
    return [step if step.data is not None else step._replace(data=data) for step in steps]


#: How a refusal is worded where the declaration does not word it its own way.
_REFUSED = ("Cannot {event} {noun} with status '{status}'.", 409)


def refusal(definition: Definition, obj: Any, event: str) -> InvalidTransitionError:
    """The error for an event the object's status does not allow, worded as the
    declaration says (``Definition.refusals``), or as every other refusal is."""
    status = obj.status.value
    template, http = definition.refusals.get(event, _REFUSED)
    message = template.format(event=event, noun=noun_of(obj), status=status)
    return InvalidTransitionError(message, status=status, event=event, http_status=http)


def noun_of(obj: Any) -> str:
    """What messages call the object: the last word of its public name ("run" for a
    ``thread.run``)."""
    noun: str = obj.object.rsplit(".", 1)[-1]
    return noun


def argument(arg: Any, expected: type[T], event: str) -> T:
    """``arg`` if it is the ``expected`` named argument of ``event``, else a
    ``ValidationError`` (an engine always passes the right one; a caller of ``decide``
    may not)."""
    if not isinstance(arg, expected):
        raise ValidationError(
            f"Invalid argument of {event!r}: expected a runstate.{expected.__name__}, got "
            f"{type(arg).__name__}.",
            param="argument",
        )
    return arg


def is_due(run: Any, now: int, active: frozenset[Any] = ACTIVE_STATUSES) -> bool:
    """Whether an object with these ``active`` statuses has run out of time at ``now``."""
    return run.status in active and run.expires_at is not None and now >= run.expires_at


class _State:
    """What the shared machine fires an event on: the object's status as its plain
    string (the machine never sees the object, and an object model needs no slot of
    the machine's)."""

    __slots__ = ("state",)
    state: str


class Lifecycle:
    """What every lifecycle's API shares, driven by its ``Definition``: the clock, the
    listeners, firing an event on the shared machine (stamps, the end of the expiry
    clock), expiry or time-out, the refusals and the events. A subclass adds the object's
    own operations and checks the events' arguments (``_with_argument``)."""

    definition: Definition

    def __init__(
        self,
        definition: Definition,
        clock: Clock | None,
        ttl: int,
        id_factory: Callable[[str], str] | None,
    ) -> None:
        self.definition = definition
        self._model = definition.model
        self.machine = definition.machine
        # The definition's tables, bound once: every operation reads them.
        self.sources = definition.sources
        self._events = self.machine.events
        self._stamps = definition.stamps
        self._ends_expiry = definition.ends_expiry
        self._event_names = definition.event_names
        self._active = definition.active
        self._clears = definition.clears
        # The time-out's event, where it is the time-out's alone (refused before it is due).
        self._exclusive_time_out = definition.on_due.event if definition.on_due.exclusive else None
        self._by_value = {status.value: status for status in definition.statuses}
        # What entering each status does: its event's name, the field it stamps, and
        # whether it ends the expiry clock (one lookup per step).
        self._entering = {
            status: (
                definition.event_names[status],
                definition.stamps.get(status),
                status in definition.ends_expiry,
            )
            for status in definition.statuses
        }
        # The times a stamp may not precede: creation, and what entering an active
        # status stamps (a run's started_at).
        self._floors = (
            "created_at",
            *(field for status, field in definition.stamps.items() if status in definition.active),
        )
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
        if type(self)._with_argument is Lifecycle._with_argument:
            self._takes_argument = frozenset(definition.arguments)

    def now(self) -> int:
        """The clock's time, floored to whole seconds."""
        return read_clock(self._clock)

    def new_object(self, **fields: Any) -> tuple[Any, list[Transition]]:
        """A new object in the initial status, made by the model's ``new`` from
        ``fields``, and its creation events: ``<object>.created``, then the initial
        status's own event."""
        definition = self.definition
        now = self.now()
        initial = definition.initial
        try:
            obj = self._model.new(
                id=require_string(self._new_id(definition.prefix), "id_factory()"),
                status=initial,
                created_at=now,
                expires_at=now + self.ttl,
                **fields,
            )
        except TypeError as exc:  # a field the model does not have, or one missing
            raise ValidationError(
                f"Invalid fields for a new {definition.object}: {exc}.", param="fields"
            ) from None
        return obj, [
            Transition(f"{definition.object}.created", None, initial, now),
            Transition(self._event_names[initial], None, initial, now),
        ]

    def status_of(self, status: Any) -> Status:
        """``status`` as one of the lifecycle's statuses, or a ``ValidationError``."""
        found = self._by_value.get(status) if isinstance(status, str) else None
        if found is None:
            raise ValidationError(
                f"Unknown status {status!r}; expected one of {sorted(self._by_value)}.",
                param="status",
            )
        return found

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(RunEvent)`` on every transition; returns the unsubscribe function."""
        return self._listeners.subscribe(listener)

    def is_due(self, obj: Any, now: int) -> bool:
        return is_due(obj, now, self._active)

    def expire_if_due(self, obj: Any, now: int) -> list[Transition]:
        """Apply the definition's time-out to ``obj`` in place if it is active and due (a
        run expires; a response fails); the transition, or ``[]``."""
        if not is_due(obj, now, self._active):
            return []
        due = self.definition.on_due
        return self.decide(obj, due.event, now, due.argument)

    def decide(self, obj: Any, event: str, now: int, arg: Any = None) -> list[Transition]:
        """Apply ``event`` to ``obj`` in place and return what happened.

        Refusals raise before anything is changed. Due expiry is the caller's to apply
        first (``expire_if_due``): ``decide`` looks only at the status it is given.
        """
        sources = self.sources.get(event)
        if sources is None:
            raise ValidationError(f"Unknown event {event!r}.", param="event")
        if obj.status not in sources:
            raise self.refusal(obj, event)
        # Events without an argument (the common case) skip the argument checks.
        if arg is not None or event in self._takes_argument:
            return self._with_argument(obj, event, now, arg)
        if event == self._exclusive_time_out and not is_due(obj, now, self._active):
            raise InvalidTransitionError(
                f"Cannot {event} {noun_of(obj)} with status '{obj.status.value}': it is not "
                f"due until {obj.expires_at}.",
                status=obj.status.value,
                event=event,
            )
        return self._fire(obj, event, now)

    def refusal(self, obj: Any, event: str) -> InvalidTransitionError:
        """The error for ``event``, refused in ``obj``'s status."""
        return refusal(self.definition, obj, event)

    def fired_as_data(
        self, event: str
    ) -> tuple[Status, Status, str, str | None, str | None, tuple[str, ...]] | None:
        """What ``_fire`` does for ``event`` as data, for a store to do it in the database:
        (source, dest, event name, the field cleared, the field stamped, the floors of the
        stamp), when the declaration alone says it: an event without an argument, from
        one status, into an active status that keeps the expiry. None otherwise."""
        sources = self.sources.get(event)
        if event in self._takes_argument or sources is None or len(sources) != 1:
            return None
        (source,) = sources
        dest = self.definition.dest_of(event)
        if dest not in self._active or dest in self._ends_expiry:
            return None
        name = self._event_names[dest]
        return source, dest, name, self._clears.get(source), self._stamps.get(dest), self._floors

    def check_cancellable(self, obj: Any) -> None:
        """Refuse an object that no cancel may ever touch, whatever its status (none,
        unless the lifecycle says so: a foreground response)."""

    def note(self, obj: Any, event_type: str, data: dict[str, Any], now: int) -> list[Transition]:
        """A worker's own event (a text delta, say) for ``obj``, which it holds: a step that
        leaves the status as it is and carries ``data``. Refused unless the status is one a
        worker holds (``in_progress``): a cancelled response takes no more deltas."""
        self.check_held(obj, "append")
        return [Transition(event_type, obj.status, obj.status, now, data)]

    def streamed(self, obj: Any) -> bool:
        """Whether a worker already streamed part of ``obj`` to its readers (so that
        generating it again from the start would repeat what they have seen). Nothing
        in general; a response with output."""
        return False

    def check_held(self, obj: Any, event: str) -> None:
        """Refused (``InvalidTransitionError``) unless ``obj`` is in a status a worker holds."""
        if obj.status not in self.definition.leased:
            raise InvalidTransitionError(
                f"Cannot append to {obj.object} with status '{obj.status.value}'.",
                status=obj.status.value,
                event=event,
            )

    def events_for(
        self,
        run: Any,
        steps: Sequence[Transition],
        seqs: Sequence[int | None] = (),
        first_number: int | None = None,
    ) -> list[RunEvent]:
        """The public events for ``steps``, each carrying the object as it is now (and, as
        stored, its place in the store's log, ``seqs``, and among the object's events,
        counted on from ``first_number``)."""
        places = seqs or [None] * len(steps)
        return [
            step.to_event(
                run.id,
                run.to_dict() if step.data is None else step.data,
                seq,
                None if first_number is None else first_number + i,
            )
            for i, (step, seq) in enumerate(zip(steps, places, strict=True))
        ]

    # --- internals ------------------------------------------------------------------------------

    #: The events whose argument is checked even when it is None (it is required). The
    #: base class: those the declaration gives an argument.
    _takes_argument: frozenset[str] = frozenset()

    def _with_argument(self, obj: Any, event: str, now: int, arg: Any) -> list[Transition]:
        """An event with an argument: the declaration's ``arguments[event]`` applies it to
        the object (checking it first), then the event fires. An event the declaration
        gives no argument takes none."""
        apply = self.definition.arguments.get(event)
        if apply is None:
            raise ValidationError(f"Invalid argument: {event!r} takes none.", param="argument")
        apply(obj, arg)
        return self._fire(obj, event, now)

    def _fire(self, run: Any, event: str, now: int) -> list[Transition]:
        source = run.status
        state = _State()  # what the machine reads and moves (no __init__: a hot path)
        state.state = source._value_
        try:
            self._events[event].trigger(state)
        except MachineError as exc:  # only reachable if the sources and the machine disagree
            raise self.refusal(run, event) from exc
        dest = run.status = self._by_value[state.state]
        cleared = self._clears.get(source)
        if cleared is not None:
            setattr(run, cleared, None)
        # Stamps never go back in time, even if the system clock does.
        at = now
        for floor in map(run.__getattribute__, self._floors):
            if floor is not None and floor > at:
                at = floor
        name, stamp, ends_expiry = self._entering[dest]
        if stamp is not None:
            setattr(run, stamp, at)
        if ends_expiry:
            run.expires_at = None
        return [Transition(name, source, dest, at)]

    def _publish(self, run: Any, steps: Sequence[Transition]) -> None:
        if steps and self._listeners.listening:
            self._listeners.publish(self.events_for(run, steps))


class RunLifecycle(Lifecycle):
    """Moves runs through the lifecycle, stamping times from ``clock``.

    ``clock`` is any zero-argument callable returning Unix seconds (default: the system
    time, read on every call); ``ttl`` is the seconds from creation to ``expires_at``;
    ``version`` is the run object's: ``"v1"`` (the first version, the default) or ``"v2"`` (with
    ``incomplete``, ``usage`` and the sampling settings).
    """

    def __init__(
        self,
        clock: Clock | None = None,
        ttl: int = 600,
        *,
        id_factory: Callable[[str], str] | None = None,
        version: str = "v1",
    ) -> None:
        self.version = require_version(version)
        super().__init__(VERSIONS[version][0], clock, ttl, id_factory)

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
        **settings: Any,
    ) -> Run:
        """A new ``queued`` run; emits ``thread.run.created`` then ``thread.run.queued``.
        A v2 run also takes ``temperature``, ``top_p``, ``max_prompt_tokens``,
        ``max_completion_tokens``, ``truncation_strategy``, ``tool_choice``,
        ``parallel_tool_calls`` and ``response_format`` (and no ``file_ids``)."""
        run, steps = self.new_run(run_fields(locals(), settings))
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

    def complete(self, run: Run, *, usage: dict[str, int] | None = None) -> Run:
        """``in_progress`` or ``cancelling`` to ``completed`` (v2: with its ``usage``)."""
        return self._do(run, "complete", None if usage is None else Completion(usage=usage))

    def fail(
        self,
        run: Run,
        *,
        code: str = "server_error",
        message: str,
        usage: dict[str, int] | None = None,
    ) -> Run:
        """Any active status to ``failed``, recording ``last_error`` (v2: and ``usage``)."""
        return self._do(run, "fail", Failure(code, message, usage))

    def incomplete(self, run: Run, *, reason: str, usage: dict[str, int] | None = None) -> Run:
        """v2: ``in_progress`` or ``cancelling`` to ``incomplete``: the model stopped at a
        token limit (``reason``: ``max_completion_tokens`` or ``max_prompt_tokens``)."""
        return self._do(run, "incomplete", Incompletion(reason, usage=usage))

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
        self._require_run(run)
        # decide() refuses "expire" for a run that is not due, so it raises here.
        steps = self.expire_if_due(run, now) or self.decide(run, "expire", now)
        self._publish(run, steps)
        return run

    def check_expiry(self, run: Run) -> bool:
        """Expire ``run`` if it is active and due; True if it did."""
        steps = self.expire_if_due(self._require_run(run), self.now())
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
            name
            for name, sources in self.sources.items()
            if run.status in sources and name != self._exclusive_time_out
        ]

    # --- the engine's building blocks ---------------------------------------------------------

    def new_run(self, fields: Mapping[str, Any]) -> tuple[Run, list[Transition]]:
        """A validated new run and its two creation events, without publishing them:
        ``fields`` are a create's (``run_fields``)."""
        thread_id, assistant_id, model, instructions, tools, file_ids, metadata = (
            fields[name] for name in RUN_FIELDS
        )
        settings = {k: v for k, v in fields.items() if k not in RUN_FIELDS}
        # id, created_at, thread_id, assistant_id, status, expires_at, model, instructions
        common = (
            require_string(self._new_id("run"), "id_factory()"),
            0,
            require_string(thread_id, "thread_id"),
            require_string(assistant_id, "assistant_id"),
            S.QUEUED,
            None,
            require_string(model, "model", allow_empty=True),
            require_string(instructions, "instructions", allow_empty=True),
        )
        if self._model is RunV2:
            if file_ids is not None:
                raise ValidationError(
                    "Invalid 'file_ids': the second version of the run has none.",
                    param="file_ids",
                )
            run: Run = RunV2(
                *common,
                metadata=validate_metadata(metadata),
                tools=validate_tools_v2(tools),
                **_settings(settings),
            )
        else:
            if settings:
                name = next(iter(settings))
                raise ValidationError(
                    f"Invalid '{name}': a parameter of the second version of the run "
                    "(version='v2'), or unknown.",
                    param=name,
                )
            run = Run(
                *common,
                metadata=validate_metadata(metadata),
                tools=validate_tools(tools),
                file_ids=validate_file_ids(file_ids),
            )
        now = self.now()
        run.created_at = now
        run.expires_at = now + self.ttl
        return run, [
            Transition("thread.run.created", None, S.QUEUED, now),
            Transition("thread.run.queued", None, S.QUEUED, now),
        ]

    # --- internals ------------------------------------------------------------------------------

    _takes_argument = _TAKES_ARGUMENT

    def _with_argument(self, run: Run, event: str, now: int, arg: Any) -> list[Transition]:
        usage = None
        if event == "require_action":
            calls = validate_tool_calls(arg, self._new_call_id)
        elif event == "submit_tool_outputs":
            _check_outputs_match(run, validate_tool_outputs(arg))
        elif event == "fail":
            failure = argument(arg, Failure, event)
            code = validate_error_code(failure.code)
            message = require_string(failure.message, "message", allow_empty=True)
            usage = _usage(run, failure.usage)
        elif event == "complete":
            usage = _usage(run, argument(arg, Completion, event).usage)
        elif event == "incomplete":
            stop = argument(arg, Incompletion, event)
            reason = validate_incomplete_reason(stop.reason)
            usage = _usage(run, stop.usage)
        steps = self._fire(run, event, now)
        if event == "require_action":
            run.required_action = required_action_for(calls)
        elif event == "fail":
            run.last_error = {"code": code, "message": message}
        elif event == "incomplete":
            run.incomplete_details = {"reason": reason}  # type: ignore[attr-defined]
        if usage is not None:
            run.usage = usage  # type: ignore[attr-defined]
        return steps

    def _new_call_id(self) -> str:
        return require_string(self._new_id("call"), "id_factory()")

    def _do(self, run: Run, event: str, arg: Any = None) -> Run:
        # expire_if_due and _publish, inlined: this is every operation's hot path.
        if type(run) is not self._model:
            self._require_run(run)
        now = read_clock(self._clock)
        expires_at = run.expires_at
        if expires_at is not None and now >= expires_at and run.status in ACTIVE_STATUSES:
            steps = self._fire(run, self.definition.on_due.event, now)
        else:
            steps = []
        try:
            steps += self.decide(run, event, now, arg)
        finally:
            if steps and self._listeners.listening:
                self._listeners.publish(self.events_for(run, steps))
        return run

    def _require_run(self, run: Any) -> Run:
        """``run`` if it is a run of this lifecycle's version, else a ValidationError."""
        if type(run) is not self._model or not isinstance(run, Run):
            if not isinstance(run, Run):
                raise ValidationError(
                    f"Invalid 'run': expected a runstate.Run, got {type(run).__name__}.",
                    param="run",
                )
            raise ValidationError(
                f"Invalid 'run': a {run.version} run, and this lifecycle is {self.version}'s.",
                param="run",
            )
        return run


#: A run create's named parameters (the rest are a v2 run's settings).
RUN_FIELDS = ("thread_id", "assistant_id", "model", "instructions", "tools", "file_ids", "metadata")


def run_fields(given: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """A run create's fields: its named parameters, from the caller's ``locals()``, and
    its ``settings``."""
    return {name: given[name] for name in RUN_FIELDS} | dict(settings)


def _usage(run: Run, usage: Any) -> dict[str, int] | None:
    """``usage``, checked; only a run of the second version has it."""
    if usage is not None and type(run) is not RunV2:
        raise ValidationError(
            "Invalid 'usage': a field of the second version of the run (version='v2').",
            param="usage",
        )
    return validate_usage(usage)


def _settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A v2 run's settings, checked as the public API checks them (``parallel_tool_calls``
    is true unless given)."""
    for name in settings:
        if name not in V2_SETTINGS:
            raise ValidationError(f"Unknown parameter: '{name}'.", param=name)
    given = {"parallel_tool_calls": True, **{k: v for k, v in settings.items() if v is not None}}
    return {name: check(given.get(name)) for name, check in V2_SETTINGS.items()}


def require_version(version: Any) -> str:
    """``"v1"`` or ``"v2"``, or a ValidationError."""
    if not isinstance(version, str) or version not in VERSIONS:
        raise ValidationError(
            f"Invalid 'version': expected 'v1' or 'v2', got {version!r}.", param="version"
        )
    return version


def _check_outputs_match(run: Run, outputs: list[dict[str, str]]) -> None:
    expected = [call["id"] for call in run.pending_tool_calls]
    got = [output["tool_call_id"] for output in outputs]
    if sorted(got) != sorted(expected):
        raise ValidationError(
            f"Expected tool outputs for call_ids {expected}, got {got}", param="tool_outputs"
        )


class ResponseLifecycle(Lifecycle):
    """The background response's lifecycle (``RESPONSE``): the steps the engine builds
    on. ``timeout`` is the seconds from creation to the deadline past which an active
    response fails."""

    def __init__(
        self,
        clock: Clock | None = None,
        timeout: int = 3600,
        *,
        id_factory: Callable[[str], str] | None = None,
    ) -> None:
        super().__init__(RESPONSE, clock, timeout, id_factory)

    def new_response(
        self, request: dict[str, Any], *, background: bool
    ) -> tuple[Response, list[Transition]]:
        """A new response for a checked create ``request`` (``check_create``), echoing its
        settings (their documented defaults where it leaves them out or null), and its
        creation events: ``response.created`` then ``response.queued`` (background) or
        ``response.in_progress`` (foreground: the caller generates it itself)."""
        status = ResponseStatus.QUEUED if background else ResponseStatus.IN_PROGRESS
        echoed = {
            name: default if request.get(name) is None else request[name]
            for name, default in ECHO_DEFAULTS.items()
        }
        response = Response(
            id=require_string(self._new_id("resp"), "id_factory()"),
            created_at=0,
            status=status,
            model=request["model"],
            background=background,
            metadata=validate_metadata(request.get("metadata")),
            **echoed,
        )
        now = self.now()
        response.created_at = now
        response.expires_at = now + self.ttl
        return (
            response,
            [
                Transition("response.created", None, status, now),
                Transition(self._event_names[status], None, status, now),
            ],
        )

    _takes_argument = frozenset({"complete", "incomplete", "fail"})

    def _with_argument(self, response: Any, event: str, now: int, arg: Any) -> list[Transition]:
        """``complete``: a ``Completion``; ``incomplete``: an ``Incompletion``; ``fail``:
        a ``Failure``. Checked before anything changes."""
        output = usage = error = details = None
        if event == "complete":
            done = argument(arg, Completion, event)
            output, usage = done.output, done.usage
        elif event == "incomplete":
            stop = argument(arg, Incompletion, event)
            output, usage = stop.output, stop.usage
            details = {
                "reason": validate_one_of(stop.reason, RESPONSE_INCOMPLETE_REASONS, "reason")
            }
        elif event == "fail":
            failure = argument(arg, Failure, event)
            error = {
                "code": validate_one_of(failure.code, RESPONSE_ERROR_CODES, "code"),
                "message": require_string(failure.message, "message", allow_empty=True),
            }
        if output is not None:
            output = with_logprobs(validate_output(output))
        elif event == "complete":  # what was streamed, every item closed
            opened = [i for i, item in enumerate(response.output) if _is_open(item)]
            if opened:
                raise InvalidTransitionError(
                    f"Cannot complete a response whose output item {opened[0]} is still "
                    "open; close it first.",
                    status=response.status.value,
                    event=event,
                )
        usage = validate_response_usage(usage)
        steps = self._fire(response, event, now)
        if output is not None:
            response.output = output
        if usage is not None:
            response.usage = usage
        if error is not None:
            response.error = error
        if details is not None:
            response.incomplete_details = details
        return steps

    def streamed(self, obj: Any) -> bool:
        return bool(obj.output)

    def check_cancellable(self, obj: Any) -> None:
        """Only a background response can be cancelled (the public API's rule): a 400 otherwise."""
        if not obj.background:
            raise InvalidTransitionError(
                "Only responses created with background=true can be cancelled.",
                status=obj.status.value,
                event="cancel",
                http_status=400,
            )

    def decide(self, obj: Any, event: str, now: int, arg: Any = None) -> list[Transition]:
        """As any lifecycle decides; and an output item still open when the response
        leaves ``in_progress`` (requeued after its worker vanished, cut short, cancelled,
        failed, timed out) is closed as ``incomplete``: what was streamed of it stays,
        and a worker that resumes the response opens the next item."""
        if event == self.definition.cancel.event:
            self.check_cancellable(obj)
        steps = super().decide(obj, event, now, arg)
        if obj.status is not ResponseStatus.IN_PROGRESS and any(map(_is_open, obj.output)):
            obj.output = [
                {**item, "status": "incomplete"} if _is_open(item) else item for item in obj.output
            ]
        return steps


def _is_open(item: dict[str, Any]) -> bool:
    """An output item a worker is still streaming."""
    return item.get("status") == "in_progress"
