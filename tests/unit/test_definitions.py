"""Every declared lifecycle against its spec's table (written in conftest, independently
of the declarations): the rows, the refusals, the statuses, the event names and the
diagram all come from the one declaration."""

from __future__ import annotations

from typing import Any

import pytest
from tables import RESPONSE_ROWS, ROWS, ROWS_V2, V1_STATUSES, refused_pairs

from runstate import ResponseStatus, RunStatus, ValidationError, mermaid
from runstate._arguments import Failure
from runstate._definitions import (
    ACTIVE_OF,
    DEFINITIONS,
    ENVELOPES,
    KINDS,
    RESPONSE,
    RUN_V1,
    RUN_V2,
    Cancel,
    TimeOut,
    declare,
)

R = ResponseStatus
S = RunStatus
#: name -> (spec rows, statuses, active statuses, the object's name)
SPECS: dict[str, tuple[list[Any], list[Any], set[Any], str]] = {
    "run": (
        ROWS,
        V1_STATUSES,
        {S.QUEUED, S.IN_PROGRESS, S.REQUIRES_ACTION, S.CANCELLING},
        "thread.run",
    ),
    "run-v2": (
        ROWS_V2,
        list(RunStatus),
        {S.QUEUED, S.IN_PROGRESS, S.REQUIRES_ACTION, S.CANCELLING},
        "thread.run",
    ),
    "response": (RESPONSE_ROWS, list(ResponseStatus), {R.QUEUED, R.IN_PROGRESS}, "response"),
}


def test_the_three_lifecycles_are_declared() -> None:
    assert sorted(DEFINITIONS) == sorted(SPECS)
    assert set(KINDS) == {"run", "response"}
    assert ACTIVE_OF["response"] == {"queued", "in_progress"}
    assert ENVELOPES == {"thread.run": None, "response": "response"}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_table_is_the_specs(name: str) -> None:
    rows, statuses, active, obj = SPECS[name]
    definition = DEFINITIONS[name]
    declared = {
        (event, source.value, dest.value)
        for event, sources, dest in definition.transitions
        for source in sources
    }
    assert declared == {(event, source.value, dest.value) for event, source, dest in rows}
    assert list(definition.statuses) == statuses
    assert definition.active == active
    assert definition.terminal == set(statuses) - active
    assert definition.object == obj
    for status in statuses:
        assert definition.event_names[status] == f"{obj}.{status.value}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_machine_refuses_exactly_the_pairs_the_table_lacks(name: str) -> None:
    rows, statuses, _, _ = SPECS[name]
    definition = DEFINITIONS[name]
    for event, status in refused_pairs(rows, statuses):
        assert status not in definition.sources[event]
    for event, source, _ in rows:
        assert source in definition.sources[event]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_diagram_draws_every_row(name: str) -> None:
    rows, statuses, active, _ = SPECS[name]
    lines = mermaid(name).splitlines()
    assert lines[0] == "stateDiagram-v2"
    for event, source, dest in rows:
        assert f"    {source.value} --> {dest.value}: {event}" in lines
    for status in statuses:
        assert (f"    {status.value} --> [*]" in lines) == (status not in active)
    assert mermaid(DEFINITIONS[name]) == mermaid(name)


def test_the_response_lifecycle_is_declared_as_the_spec_says() -> None:
    assert RESPONSE.cancel == Cancel("cancel", confirm=None, ended="unchanged")
    assert RUN_V1.cancel == Cancel("cancel", confirm="confirm_cancel", ended="refused")
    assert RESPONSE.workers == RUN_V1.workers == RUN_V2.workers
    assert (RUN_V1.workers.claim, RUN_V1.workers.requeue, RUN_V1.workers.lost) == (
        "start",
        "requeue",
        "fail",
    )
    assert RUN_V1.workers.lost_argument("gone") == Failure("server_error", "gone")
    assert RUN_V1.waiting is S.QUEUED and RESPONSE.waiting is R.QUEUED
    assert RUN_V1.on_due == TimeOut("expire", None, exclusive=True)
    assert RESPONSE.group_by is None and RUN_V1.group_by == "thread_id"
    assert RESPONSE.leased == {R.IN_PROGRESS}
    assert RESPONSE.on_due == TimeOut("fail", Failure("server_error", "The response timed out."))
    assert RESPONSE.stamps == {R.COMPLETED: "completed_at"}
    assert RESPONSE.ends_expiry == RESPONSE.terminal
    assert RESPONSE.clears == {} and RUN_V1.clears == {S.REQUIRES_ACTION: "required_action"}


def test_an_unknown_lifecycle_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="Unknown lifecycle 'job'"):
        mermaid("job")


def test_a_name_is_declared_once() -> None:
    with pytest.raises(ValueError, match="already declared"):
        declare(RESPONSE)
