"""Lifecycles as declarations: each is one ``Definition``, the only copy of its table.

A definition names its object model and how a store files it (``kind``), its statuses
(which are active, which a worker holds under a lease), its transition table, and the
role each event plays for the engine: which one a worker's claim fires (its source is
the status workers claim from), which ones put a stalled object back or end it, how a
cancel works (``Cancel``: immediate, or two-phase with a confirming event), what happens
when an active object's time runs out (``TimeOut``). It also says what entering each
status stamps, which statuses end the expiry clock, whether one object per group may be
active, and how its events are named, framed and refused. From it come, once, the
shared ``transitions.Machine`` (``model=None``, ``auto_transitions=False``; objects are
never attached to it), the sources each event may leave, the refusals, the allowed
events and the Mermaid diagram (``_diagram.py``). The engine and the stores read
nothing else: a new lifecycle is a new declaration and its object model.

``RUN_V1`` is the Assistants API's ``thread.run`` as first published; ``RUN_V2`` the
same with the second version's ``incomplete`` status; ``RESPONSE`` the Responses API's
background response. ``docs/lifecycles.md`` draws each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from transitions import Machine

from ._arguments import Failure, server_error
from ._model import ACTIVE_STATUSES, Run, RunStatus, RunV2, Status
from ._response import Response, ResponseStatus

__all__ = [
    "ACTIVE_OF",
    "DEFINITIONS",
    "ENVELOPES",
    "GROUP_BY",
    "KINDS",
    "RESPONSE",
    "RUN_V1",
    "RUN_V2",
    "WAITING_OF",
    "WEBHOOKS_OF",
    "Cancel",
    "Definition",
    "Row",
    "TimeOut",
    "Workers",
    "declare",
    "undeclare",
]

S = RunStatus
R = ResponseStatus
#: One row of a table: an event, the statuses it may leave, and where it goes.
Row = tuple[str, tuple[Status, ...], Status]


@dataclass(frozen=True, slots=True)
class Cancel:
    """How a caller's cancel works: ``event`` takes the object out of the worker's hands;
    with ``confirm``, it is two-phase (the worker fires ``confirm`` to end it, or the
    engine does at once for an object no worker holds); without, immediate. An object
    that has ended is ``"refused"`` (an error) or returned ``"unchanged"``."""

    event: str
    confirm: str | None = None
    ended: Literal["refused", "unchanged"] = "refused"


@dataclass(frozen=True, slots=True)
class TimeOut:
    """What happens to an active object whose deadline (``expires_at``) has come: the
    engine fires ``event`` with ``argument``. An ``exclusive`` event is the time-out's
    own: fired by a caller before the deadline, it is refused."""

    event: str
    argument: Any = None
    exclusive: bool = False


@dataclass(frozen=True, slots=True)
class Workers:
    """The events the engine fires for its workers: ``claim`` starts an object a worker
    takes (its one source is the status workers claim from); a stalled object (its
    worker's lease ran out) is put back with ``requeue``, or, once it has been claimed
    ``max_attempts`` times, ended with ``lost``, whose argument ``lost_argument(message)``
    builds."""

    claim: str
    requeue: str
    lost: str
    lost_argument: Callable[[str], Any]


@dataclass(frozen=True)
class Definition:
    """One lifecycle: its table and rules, the roles its events play for the engine, and
    the machine built from them."""

    name: str  # how the command line names it: ``runstate diagram run``
    object: str  # the public object: "thread.run"
    model: type[Any]  # the object's class: to_dict, from_stored, copy, KIND (ObjectModel)
    prefix: str  # its ids: "run_...", "resp_..."
    statuses: tuple[Status, ...]  # every status, in the public API's order
    initial: Status  # where create puts a new object
    active: frozenset[Status]
    leased: frozenset[Status]  # active statuses in which a worker holds the object
    transitions: tuple[Row, ...]
    workers: Workers  # the claim, the requeue and the end of a lost object
    cancel: Cancel
    on_due: TimeOut
    stamps: Mapping[Status, str] = field(default_factory=dict)  # entering stamps the time
    clears: Mapping[Status, str] = field(default_factory=dict)  # leaving sets it to null
    ends_expiry: frozenset[Status] = frozenset()  # entering sets expires_at to null
    # The field naming an object's group, of which one may be active (None: no groups).
    group_by: str | None = None
    # A stream event's data: the object itself (None), or {type, ..., <envelope>: object}.
    envelope: str | None = None
    # Active statuses in which the object waits on its caller: a follower's stream ends.
    pauses: frozenset[Status] = frozenset()
    # How a refused event is worded, where the public API words it its own way: event to
    # (message, HTTP status); the message may name {noun} and {status}. Otherwise
    # "Cannot {event} {noun} with status '{status}'." (409).
    refusals: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    # How each event that takes an argument applies it: ``apply(obj, argument)``, called
    # before the event fires; it checks the argument (a ``ValidationError``) before it
    # changes anything. Used by ``Lifecycle``; the run and response lifecycles apply
    # their own.
    arguments: Mapping[str, Callable[[Any, Any], None]] = field(default_factory=dict)
    # The statuses whose entry is told to webhook endpoints, as the event named
    # "<object>.<status>" ("response.completed"): the store writes the event in the same
    # transaction as the transition (``runstate.webhooks``).
    webhooks: frozenset[Status] = frozenset()
    machine: Machine = field(init=False, repr=False, compare=False)
    sources: Mapping[str, frozenset[Status]] = field(init=False, repr=False, compare=False)
    event_names: Mapping[Status, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        states = [status.value for status in self.statuses]
        # States are the statuses' string values: transitions handles plain strings
        # faster than Enum members. An event fires on a carrier of the status
        # (``Lifecycle._fire``), never on the object.
        machine = Machine(
            model=None,
            states=states,
            transitions=[
                {"trigger": event, "source": [s.value for s in sources], "dest": dest.value}
                for event, sources, dest in self.transitions
            ],
            initial=None,
            auto_transitions=False,
            model_attribute="state",
        )
        object.__setattr__(self, "machine", machine)
        by_value = {status.value: status for status in self.statuses}
        object.__setattr__(
            self,
            "sources",
            {
                name: frozenset(by_value[state] for state in event.transitions)
                for name, event in machine.events.items()
            },
        )
        object.__setattr__(self, "event_names", {by_value[s]: f"{self.object}.{s}" for s in states})
        self._check_roles()

    def _check_roles(self) -> None:
        """Refuse a declaration whose roles name events it lacks, or that the engine could
        not drive: a claim from more than one status or into one no worker holds."""
        roles = {
            "workers.claim": self.workers.claim,
            "workers.requeue": self.workers.requeue,
            "workers.lost": self.workers.lost,
            "cancel.event": self.cancel.event,
            "on_due.event": self.on_due.event,
        }
        if self.cancel.confirm is not None:
            roles["cancel.confirm"] = self.cancel.confirm
        for role, event in roles.items():
            if event not in self.sources:
                raise ValueError(
                    f"Lifecycle {self.name!r}: {role} names {event!r}, which is not one of "
                    f"its events ({sorted(self.sources)})."
                )
        claimed_from = self.sources[self.workers.claim]
        if len(claimed_from) != 1 or self.dest_of(self.workers.claim) not in self.leased:
            raise ValueError(
                f"Lifecycle {self.name!r}: the claim ({self.workers.claim!r}) must go from "
                f"one status to a leased one."
            )
        if self.dest_of(self.workers.requeue) != self.waiting:
            raise ValueError(
                f"Lifecycle {self.name!r}: the requeue ({self.workers.requeue!r}) must go "
                f"back to {self.waiting.value!r}, where workers claim from."
            )

    def dest_of(self, event: str) -> Status:
        """Where ``event`` goes (every row of one event has one destination)."""
        dests = {dest for name, _, dest in self.transitions if name == event}
        if len(dests) != 1:
            raise ValueError(f"Lifecycle {self.name!r}: {event!r} has {len(dests)} destinations.")
        return dests.pop()

    @property
    def waiting(self) -> Status:
        """The status workers claim from: the claim's one source."""
        (status,) = self.sources[self.workers.claim]
        return status

    @property
    def terminal(self) -> frozenset[Status]:
        return frozenset(self.statuses) - self.active

    @property
    def kind(self) -> str:
        """How a store files this lifecycle's objects (both run versions are "run")."""
        kind: str = self.model.KIND
        return kind


_ACTIVE = tuple(s for s in RunStatus if s in ACTIVE_STATUSES)
#: The public API's own wording of two refusals (a 400, where others are a 409).
_RUN_REFUSALS = {
    "cancel": ("Cannot cancel {noun} with status '{status}'.", 400),
    "submit_tool_outputs": ('Runs in status "{status}" do not accept tool outputs.', 400),
}

RUN_V1 = Definition(
    name="run",
    object="thread.run",
    model=Run,
    prefix="run",
    statuses=tuple(s for s in RunStatus if s is not S.INCOMPLETE),
    initial=S.QUEUED,
    active=ACTIVE_STATUSES,
    leased=frozenset({S.IN_PROGRESS, S.CANCELLING}),
    transitions=(
        ("start", (S.QUEUED,), S.IN_PROGRESS),
        ("require_action", (S.IN_PROGRESS,), S.REQUIRES_ACTION),
        ("submit_tool_outputs", (S.REQUIRES_ACTION,), S.QUEUED),
        ("complete", (S.IN_PROGRESS, S.CANCELLING), S.COMPLETED),
        ("fail", (S.QUEUED, S.IN_PROGRESS, S.REQUIRES_ACTION, S.CANCELLING), S.FAILED),
        ("cancel", (S.QUEUED, S.IN_PROGRESS, S.REQUIRES_ACTION), S.CANCELLING),
        ("confirm_cancel", (S.CANCELLING,), S.CANCELLED),
        # Ours: a worker's lease ran out before it finished; the run goes back to the queue.
        ("requeue", (S.IN_PROGRESS,), S.QUEUED),
        ("expire", _ACTIVE, S.EXPIRED),
    ),
    workers=Workers(claim="start", requeue="requeue", lost="fail", lost_argument=server_error),
    cancel=Cancel("cancel", confirm="confirm_cancel", ended="refused"),
    on_due=TimeOut("expire", exclusive=True),
    stamps={
        S.IN_PROGRESS: "started_at",
        S.COMPLETED: "completed_at",
        S.FAILED: "failed_at",
        S.CANCELLED: "cancelled_at",
    },
    clears={S.REQUIRES_ACTION: "required_action"},  # the tool calls were answered
    ends_expiry=frozenset({S.COMPLETED, S.FAILED, S.CANCELLED}),
    group_by="thread_id",  # one active run per thread
    pauses=frozenset({S.REQUIRES_ACTION}),  # the caller submits tool outputs
    refusals=_RUN_REFUSALS,
    webhooks=frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.EXPIRED, S.REQUIRES_ACTION}),
)

RUN_V2 = Definition(
    name="run-v2",
    object="thread.run",
    model=RunV2,
    prefix="run",
    statuses=tuple(RunStatus),
    initial=S.QUEUED,
    active=RUN_V1.active,
    leased=RUN_V1.leased,
    transitions=(
        *RUN_V1.transitions[:-1],
        # The model stopped at a token limit: an end of its own, with no *_at stamp.
        ("incomplete", (S.IN_PROGRESS, S.CANCELLING), S.INCOMPLETE),
        RUN_V1.transitions[-1],
    ),
    workers=RUN_V1.workers,
    cancel=RUN_V1.cancel,
    on_due=RUN_V1.on_due,
    stamps=RUN_V1.stamps,
    clears=RUN_V1.clears,
    ends_expiry=RUN_V1.ends_expiry | {S.INCOMPLETE},
    group_by=RUN_V1.group_by,
    pauses=RUN_V1.pauses,
    refusals=RUN_V1.refusals,
    webhooks=RUN_V1.webhooks | {S.INCOMPLETE},
)

RESPONSE = Definition(
    name="response",
    object="response",
    model=Response,
    prefix="resp",
    statuses=tuple(ResponseStatus),
    initial=R.QUEUED,
    active=frozenset({R.QUEUED, R.IN_PROGRESS}),
    leased=frozenset({R.IN_PROGRESS}),
    transitions=(
        ("start", (R.QUEUED,), R.IN_PROGRESS),
        ("complete", (R.IN_PROGRESS,), R.COMPLETED),
        ("incomplete", (R.IN_PROGRESS,), R.INCOMPLETE),
        ("fail", (R.QUEUED, R.IN_PROGRESS), R.FAILED),
        # Immediate: no "cancelling"; a worker's late complete finds it cancelled.
        ("cancel", (R.QUEUED, R.IN_PROGRESS), R.CANCELLED),
        # Ours, as for runs: a worker's lease ran out; the response goes back to the queue.
        ("requeue", (R.IN_PROGRESS,), R.QUEUED),
    ),
    workers=Workers(claim="start", requeue="requeue", lost="fail", lost_argument=server_error),
    # Immediate; the public API's documented answer for an ended background response is
    # the response, unchanged.
    cancel=Cancel("cancel", ended="unchanged"),
    # Ours: an active response past its deadline fails.
    on_due=TimeOut("fail", Failure("server_error", "The response timed out.")),
    stamps={R.COMPLETED: "completed_at"},
    ends_expiry=frozenset({R.COMPLETED, R.FAILED, R.CANCELLED, R.INCOMPLETE}),
    envelope="response",
    refusals={"cancel": _RUN_REFUSALS["cancel"]},
    webhooks=frozenset({R.COMPLETED, R.FAILED, R.CANCELLED, R.INCOMPLETE}),
)

#: Every lifecycle declared, by the name the command line uses.
DEFINITIONS: dict[str, Definition] = {}
#: How a store rebuilds an object of each kind from the body it wrote.
KINDS: dict[str, type[Any]] = {}
#: Each kind's active statuses (a store keeps the ``active`` flag from them).
ACTIVE_OF: dict[str, frozenset[Status]] = {}
#: Each kind's statuses that workers claim from (a store keeps the ``waiting`` flag).
WAITING_OF: dict[str, frozenset[Status]] = {}
#: How a stream frames each object's events (None: the event's data is the object).
ENVELOPES: dict[str, str | None] = {}
#: The field that names each kind's group (None: its objects are not grouped).
GROUP_BY: dict[str, str | None] = {}
#: Each kind's statuses told to webhook endpoints: status value to the event's type.
WEBHOOKS_OF: dict[str, dict[str, str]] = {}


def declare(definition: Definition) -> Definition:
    """Make a lifecycle known to the stores, the events and the command line: the one
    step a new lifecycle takes besides its declaration and its object model. Lifecycles
    of one kind (both run versions) share the kind's model and group."""
    if not isinstance(definition, Definition):
        raise TypeError(f"declare() takes a runstate.Definition, got {type(definition).__name__}.")
    if definition.name in DEFINITIONS:
        raise ValueError(f"A lifecycle named {definition.name!r} is already declared.")
    kind = definition.kind
    if kind in KINDS and (
        not issubclass(definition.model, KINDS[kind]) or GROUP_BY[kind] != definition.group_by
    ):
        raise ValueError(
            f"Lifecycle {definition.name!r}: kind {kind!r} is declared already, with a model "
            f"that is not its model's base or with another group."
        )
    DEFINITIONS[definition.name] = definition
    KINDS.setdefault(kind, definition.model)  # the first model rebuilds every version
    ACTIVE_OF[kind] = ACTIVE_OF.get(kind, frozenset()) | definition.active
    WAITING_OF[kind] = WAITING_OF.get(kind, frozenset()) | {definition.waiting}
    ENVELOPES[definition.object] = definition.envelope
    GROUP_BY[kind] = definition.group_by
    WEBHOOKS_OF.setdefault(kind, {}).update(
        {status.value: definition.event_names[status] for status in definition.webhooks}
    )
    return definition


def undeclare(name: str) -> Definition:
    """Forget the lifecycle ``name`` (and its kind, if no other lifecycle has it): for a
    test that declares one of its own, or a plug-in unloaded."""
    definition = DEFINITIONS.pop(name)
    kind = definition.kind
    others = [d for d in DEFINITIONS.values() if d.kind == kind]
    if others:
        ACTIVE_OF[kind] = frozenset().union(*(d.active for d in others))
        WAITING_OF[kind] = frozenset(d.waiting for d in others)
        WEBHOOKS_OF[kind] = {s.value: d.event_names[s] for d in others for s in d.webhooks}
    else:
        del KINDS[kind], ACTIVE_OF[kind], WAITING_OF[kind], GROUP_BY[kind], WEBHOOKS_OF[kind]
    if not any(d.object == definition.object for d in DEFINITIONS.values()):
        del ENVELOPES[definition.object]
    return definition


for _definition in (RUN_V1, RUN_V2, RESPONSE):
    declare(_definition)
