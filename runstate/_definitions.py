"""Lifecycles as declarations: each is one ``Definition``, the only copy of its table.

A definition names its statuses (which are active), its transition table, what entering
each status stamps, which statuses end the expiry clock, and the event each status is
announced with. From it come, once, the shared ``transitions.Machine`` (``model=None``,
``auto_transitions=False``; runs are never attached to it), the sources each event may
leave, the refusals, the allowed events and the Mermaid diagram (``_diagram.py``).

``RUN_V1`` is LIFECYCLE.md's table for the seed's ``thread.run``; ``RUN_V2`` is the same
with the second version's ``incomplete`` status (RESPONSES.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from transitions import Machine

from ._model import ACTIVE_STATUSES, RunStatus

__all__ = ["DEFINITIONS", "RUN_V1", "RUN_V2", "Definition", "Row"]

S = RunStatus
#: One row of a table: an event, the statuses it may leave, and where it goes.
Row = tuple[str, tuple[RunStatus, ...], RunStatus]


@dataclass(frozen=True)
class Definition:
    """One lifecycle: its table and rules, and the machine built from them."""

    name: str  # how the command line names it: ``runstate diagram run``
    object: str  # the public object: "thread.run"
    statuses: tuple[RunStatus, ...]  # every status, in the public API's order
    initial: RunStatus  # where create puts a new object
    active: frozenset[RunStatus]
    transitions: tuple[Row, ...]
    stamps: Mapping[RunStatus, str]  # entering a status stamps this field with the time
    ends_expiry: frozenset[RunStatus]  # entering one of these sets expires_at to null
    machine: Machine = field(init=False, repr=False, compare=False)
    sources: Mapping[str, frozenset[RunStatus]] = field(init=False, repr=False, compare=False)
    event_names: Mapping[RunStatus, str] = field(init=False, repr=False, compare=False)

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
        object.__setattr__(
            self,
            "sources",
            {
                name: frozenset(RunStatus(state) for state in event.transitions)
                for name, event in machine.events.items()
            },
        )
        object.__setattr__(
            self, "event_names", {RunStatus(s): f"{self.object}.{s}" for s in states}
        )

    @property
    def terminal(self) -> frozenset[RunStatus]:
        return frozenset(self.statuses) - self.active


_ACTIVE = tuple(s for s in RunStatus if s in ACTIVE_STATUSES)

RUN_V1 = Definition(
    name="run",
    object="thread.run",
    statuses=tuple(s for s in RunStatus if s is not S.INCOMPLETE),
    initial=S.QUEUED,
    active=ACTIVE_STATUSES,
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
    ends_expiry=frozenset({S.COMPLETED, S.FAILED, S.CANCELLED}),
)

RUN_V2 = Definition(
    name="run-v2",
    object="thread.run",
    statuses=tuple(RunStatus),
    initial=S.QUEUED,
    active=ACTIVE_STATUSES,
    transitions=(
        *RUN_V1.transitions[:-1],
        # The model stopped at a token limit: an end of its own, with no *_at stamp.
        ("incomplete", (S.IN_PROGRESS, S.CANCELLING), S.INCOMPLETE),
        RUN_V1.transitions[-1],
    ),
    stamps=RUN_V1.stamps,
    ends_expiry=RUN_V1.ends_expiry | {S.INCOMPLETE},
)

#: Every lifecycle runstate declares, by the name the command line uses.
DEFINITIONS: Mapping[str, Definition] = {d.name: d for d in (RUN_V1, RUN_V2)}
