"""Lifecycles as declarations: each is one ``Definition``, the only copy of its table.

A definition names its object model and how a store files it (``kind``), its statuses
(which are active, which a worker holds under a lease), its transition table, what
entering each status stamps, which statuses end the expiry clock, what happens when an
active object's time runs out, how a cancel works (two-phase through ``cancelling``, or
immediate), whether one object per group may be active, and how its events are named
and framed. From it come, once, the shared ``transitions.Machine`` (``model=None``,
``auto_transitions=False``; objects are never attached to it), the sources each event
may leave, the refusals, the allowed events and the Mermaid diagram (``_diagram.py``).
The engine and the stores read nothing else: a new lifecycle is a new declaration here
and its object model.

``RUN_V1`` is LIFECYCLE.md's table for the seed's ``thread.run``; ``RUN_V2`` is the same
with the second version's ``incomplete`` status; ``RESPONSE`` is the Responses API's
background response (both in RESPONSES.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from transitions import Machine

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
    "Definition",
    "Row",
    "declare",
]

S = RunStatus
R = ResponseStatus
#: One row of a table: an event, the statuses it may leave, and where it goes.
Row = tuple[str, tuple[Status, ...], Status]


@dataclass(frozen=True)
class Definition:
    """One lifecycle: its table and rules, and the machine built from them."""

    name: str  # how the command line names it: ``runstate diagram run``
    object: str  # the public object: "thread.run"
    model: type[Any]  # the object's class: to_dict, from_dict, copy, _trusted, KIND
    prefix: str  # its ids: "run_...", "resp_..."
    statuses: tuple[Status, ...]  # every status, in the public API's order
    initial: Status  # where create puts a new object
    active: frozenset[Status]
    leased: frozenset[Status]  # active statuses in which a worker holds the object
    transitions: tuple[Row, ...]
    stamps: Mapping[Status, str]  # entering a status stamps this field with the time
    clears: Mapping[Status, str]  # leaving a status sets this field to null
    ends_expiry: frozenset[Status]  # entering one of these sets expires_at to null
    on_due: tuple[str, Any]  # the event (and its argument) fired when time runs out
    cancel: Literal["two_phase", "immediate"]  # through "cancelling", or at once
    cancel_ended: Literal["refused", "unchanged"]  # a cancel of an ended object: 400, or as is
    # The field naming an object's group, of which one may be active (None: no groups).
    group_by: str | None
    # A stream event's data: the object itself (None), or {type, ..., <envelope>: object}.
    envelope: str | None = None
    # Active statuses in which the object waits on its caller: a follower's stream ends.
    pauses: frozenset[Status] = frozenset()
    machine: Machine = field(init=False, repr=False, compare=False)
    sources: Mapping[str, frozenset[Status]] = field(init=False, repr=False, compare=False)
    event_names: Mapping[Status, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        states = [status.value for status in self.statuses]
        # States are the statuses' string values: transitions handles plain strings
        # faster than Enum members, and an object exposes its status as ``_fsm_state``.
        machine = Machine(
            model=None,
            states=states,
            transitions=[
                {"trigger": event, "source": [s.value for s in sources], "dest": dest.value}
                for event, sources, dest in self.transitions
            ],
            initial=None,
            auto_transitions=False,
            model_attribute="_fsm_state",
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

    def dest_of(self, event: str) -> Status:
        """Where ``event`` goes (every row of one event has one destination)."""
        (dest,) = {dest for name, _, dest in self.transitions if name == event}
        return dest

    @property
    def terminal(self) -> frozenset[Status]:
        return frozenset(self.statuses) - self.active

    @property
    def kind(self) -> str:
        """How a store files this lifecycle's objects (both run versions are "run")."""
        kind: str = self.model.KIND
        return kind


_ACTIVE = tuple(s for s in RunStatus if s in ACTIVE_STATUSES)

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
    stamps={
        S.IN_PROGRESS: "started_at",
        S.COMPLETED: "completed_at",
        S.FAILED: "failed_at",
        S.CANCELLED: "cancelled_at",
    },
    clears={S.REQUIRES_ACTION: "required_action"},  # the tool calls were answered
    ends_expiry=frozenset({S.COMPLETED, S.FAILED, S.CANCELLED}),
    on_due=("expire", None),
    cancel="two_phase",
    cancel_ended="refused",
    group_by="thread_id",  # one active run per thread
    pauses=frozenset({S.REQUIRES_ACTION}),  # the caller submits tool outputs
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
    stamps=RUN_V1.stamps,
    clears=RUN_V1.clears,
    ends_expiry=RUN_V1.ends_expiry | {S.INCOMPLETE},
    on_due=RUN_V1.on_due,
    cancel=RUN_V1.cancel,
    cancel_ended=RUN_V1.cancel_ended,
    group_by=RUN_V1.group_by,
    pauses=RUN_V1.pauses,
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
    stamps={R.COMPLETED: "completed_at"},
    clears={},
    ends_expiry=frozenset({R.COMPLETED, R.FAILED, R.CANCELLED, R.INCOMPLETE}),
    # Ours: an active response past its deadline fails (RESPONSES.md).
    on_due=("fail", ("server_error", "The response timed out.")),
    cancel="immediate",
    # The public API's documented answer: an ended background response, unchanged.
    cancel_ended="unchanged",
    group_by=None,  # any number may be active at once
    envelope="response",
)

#: Every lifecycle declared, by the name the command line uses.
DEFINITIONS: dict[str, Definition] = {}
#: How a store rebuilds an object of each kind from the body it wrote.
KINDS: dict[str, type[Any]] = {}
#: Each kind's active statuses (a store keeps the ``active`` flag from them).
ACTIVE_OF: dict[str, frozenset[Status]] = {}
#: How a stream frames each object's events (None: the event's data is the object).
ENVELOPES: dict[str, str | None] = {}
#: The field that names each kind's group (None: its objects are not grouped).
GROUP_BY: dict[str, str | None] = {}


def declare(definition: Definition) -> Definition:
    """Make a lifecycle known to the stores, the events and the command line: the one
    step a new lifecycle takes besides its declaration and its object model."""
    if definition.name in DEFINITIONS:
        raise ValueError(f"A lifecycle named {definition.name!r} is already declared.")
    DEFINITIONS[definition.name] = definition
    KINDS[definition.kind] = definition.model
    ACTIVE_OF[definition.kind] = ACTIVE_OF.get(definition.kind, frozenset()) | definition.active
    ENVELOPES[definition.object] = definition.envelope
    GROUP_BY[definition.kind] = definition.group_by
    return definition


for _definition in (RUN_V1, RUN_V2, RESPONSE):
    declare(_definition)
