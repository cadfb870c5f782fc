"""A declaration's roles are checked when it is made, and declaring, undeclaring and the
faces refuse what they cannot serve, each with its message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

import runstate
from runstate import (
    Cancel,
    Definition,
    Failure,
    ManualClock,
    ObjectEngine,
    RunLifecycle,
    Status,
    TimeOut,
    ValidationError,
    Workers,
    declare,
    undeclare,
)
from runstate._definitions import KINDS
from runstate._faces import operation


class Step(Status):
    WAITING = "waiting"
    BUSY = "busy"
    OVER = "over"


@dataclass
class Thing:
    KIND: ClassVar[str] = "thing"
    id: str
    status: Step
    created_at: int
    expires_at: int | None = None
    object = "thing"
    version = "thing"


def definition(**changes: Any) -> Definition:
    fields: dict[str, Any] = dict(
        name="thing",
        object="thing",
        model=Thing,
        prefix="thing",
        statuses=tuple(Step),
        initial=Step.WAITING,
        active=frozenset({Step.WAITING, Step.BUSY}),
        leased=frozenset({Step.BUSY}),
        transitions=(
            ("take", (Step.WAITING,), Step.BUSY),
            ("end", (Step.WAITING, Step.BUSY), Step.OVER),
            ("back", (Step.BUSY,), Step.WAITING),
        ),
        workers=Workers(claim="take", requeue="back", lost="end", lost_argument=lambda m: None),
        cancel=Cancel("end"),
        on_due=TimeOut("end"),
    )
    return Definition(**(fields | changes))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"workers": Workers("nope", "back", "end", lambda m: None)},
            "Lifecycle 'thing': workers.claim names 'nope', which is not one of its events",
        ),
        ({"cancel": Cancel("end", confirm="gone")}, "cancel.confirm names 'gone'"),
        ({"on_due": TimeOut("lapse")}, "on_due.event names 'lapse'"),
        (
            {"workers": Workers("end", "back", "end", lambda m: None)},
            "the claim \\('end'\\) must go from one status to a leased one",
        ),
        (
            {"workers": Workers("take", "end", "end", lambda m: None)},
            "the requeue \\('end'\\) must go back to 'waiting', where workers claim from",
        ),
        (
            {
                "transitions": (
                    ("take", (Step.WAITING,), Step.BUSY),
                    ("end", (Step.WAITING, Step.BUSY), Step.OVER),
                    ("back", (Step.BUSY,), Step.WAITING),
                    ("back", (Step.OVER,), Step.BUSY),
                )
            },
            "'back' has 2 destinations",
        ),
    ],
)
def test_a_declaration_whose_roles_the_engine_cannot_drive_is_refused(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        definition(**changes)


def test_declare_and_undeclare_keep_the_kinds_straight() -> None:
    with pytest.raises(TypeError, match="declare\\(\\) takes a runstate.Definition, got dict"):
        declare({"name": "thing"})  # type: ignore[arg-type]
    first, second = definition(), definition(name="thing-2")
    declare(first)
    try:
        declare(second)  # a second lifecycle of the same kind, as both run versions are
        with pytest.raises(ValueError, match="kind 'thing' is declared already, with a model"):
            declare(definition(name="thing-3", group_by="owner"))
        undeclare("thing")
        assert "thing" in KINDS  # the kind stays
        assert runstate.mermaid("thing-2").startswith("stateDiagram-v2")
    finally:
        undeclare("thing-2")
    assert "thing" not in KINDS


def test_an_engine_serves_only_a_declared_lifecycle() -> None:
    with pytest.raises(ValidationError, match="made known with runstate.declare"):
        ObjectEngine(definition())
    with pytest.raises(ValidationError, match="made known with runstate.declare"):
        ObjectEngine("thing")  # type: ignore[arg-type]


def test_an_event_argument_of_the_wrong_kind_is_refused() -> None:
    lifecycle = RunLifecycle(ManualClock(1_700_000_000))
    run = lifecycle.create(thread_id="t", assistant_id="a")
    with pytest.raises(ValidationError, match="Invalid argument of 'fail': expected a runstate"):
        lifecycle.decide(run, "fail", 1_700_000_000, ("server_error", "x"))
    assert lifecycle.decide(run, "fail", 1_700_000_000, Failure("server_error", "x"))


def test_an_operation_on_a_class_that_is_neither_face_is_refused() -> None:
    class Plain:
        @operation
        def get(self, object_id: str) -> Any:
            yield from ()

    assert isinstance(Plain.get, operation)
    with pytest.raises(TypeError, match="Plain is neither face: derive it from Sync or Async"):
        Plain().get  # noqa: B018
