"""A worker's step starts from what its engine last stored (``Known``): no read first,
one compare-and-set. Run on every store and both faces: the step makes no read; a
stale entry (another engine moved the object on) costs one read and never a wrong
write; a refusal or a "nothing to do" decided on a stale entry is never answered."""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

import pytest
from faces import Faces
from tables import CALLS, OUTPUT, OUTPUTS

from runstate import InvalidTransitionError, LeaseError, ManualClock, RunStatus, Store

#: Every test here runs on the sync engine and on its async twin.
pytestmark = pytest.mark.usefixtures("faces")

S = RunStatus


class Counting:
    """The store, counting the calls made of it by name."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr
        calls = self.calls
        if inspect.iscoroutinefunction(attr):

            async def acounted(*args: Any, **kwargs: Any) -> Any:
                calls[name] += 1
                return await attr(*args, **kwargs)

            return acounted

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return attr(*args, **kwargs)

        return counted


def engines(
    faces: Faces, store: Store, clock: ManualClock, kind: str = "run"
) -> tuple[Any, Counting, Any]:
    """A counted engine ("mine") and another on the same store ("other"), of the face
    under test."""
    make = faces.run if kind == "run" else faces.response
    mine = make(store, clock=clock)
    inner = getattr(mine, "_engine", mine)  # the async engine behind the blocking face
    inner.store = counted = Counting(inner.store)
    return mine, counted, make(store, clock=clock)


def test_a_claimed_run_is_stepped_with_no_read(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    mine, counted, _ = engines(faces, store, clock)
    run = mine.create(thread_id="t", assistant_id="a")
    assert mine.claim("w").id == run.id
    counted.calls.clear()
    mine.require_action(run.id, CALLS, worker_id="w")
    mine.submit_tool_outputs(run.id, OUTPUTS)
    mine.start(run.id)
    done = mine.complete(run.id)
    assert done.status is S.COMPLETED
    assert counted.calls == {"write": 4}  # one write per step, no read
    assert [e.to_status for e in mine.history(run.id)][-4:] == [
        "requires_action",
        "queued",
        "in_progress",
        "completed",
    ]


def test_a_created_run_is_started_with_no_read(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    mine, counted, _ = engines(faces, store, clock)
    run = mine.create(thread_id="t", assistant_id="a")
    counted.calls.clear()
    assert mine.start(run.id).status is S.IN_PROGRESS
    assert counted.calls == {"write": 1}


def test_a_stale_entry_costs_one_read_and_never_a_wrong_write(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    mine, counted, other = engines(faces, store, clock)
    run = mine.create(thread_id="t", assistant_id="a")
    mine.start(run.id)
    other.cancel(run.id)  # mine still holds it in_progress
    counted.calls.clear()
    # "complete" from cancelling is allowed: decided again on the fresh read.
    assert mine.complete(run.id).status is S.COMPLETED
    assert counted.calls == {"write": 2, "get": 1}  # the stale write lost, one read
    steps = [(e.from_status, e.to_status) for e in mine.history(run.id)][2:]
    assert steps == [
        ("queued", "in_progress"),
        ("in_progress", "cancelling"),
        ("cancelling", "completed"),
    ]


def test_a_refusal_on_a_stale_entry_is_checked_on_a_fresh_read(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    mine, counted, other = engines(faces, store, clock)
    run = mine.create(thread_id="t", assistant_id="a")
    other.start(run.id)  # mine holds it queued, where "complete" is refused
    counted.calls.clear()
    assert mine.complete(run.id).status is S.COMPLETED
    assert counted.calls == {"get": 1, "write": 1}


def test_a_true_refusal_is_still_refused_and_changes_nothing(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    mine, _, other = engines(faces, store, clock)
    run = mine.create(thread_id="t", assistant_id="a")
    assert mine.claim("w") is not None
    with pytest.raises(InvalidTransitionError):
        mine.submit_tool_outputs(run.id, OUTPUTS)  # in_progress: no pending calls
    with pytest.raises(LeaseError):
        mine.complete(run.id, worker_id="someone else")
    assert other.get(run.id).status is S.IN_PROGRESS
    assert len(other.history(run.id)) == 3


def test_a_lease_taken_over_elsewhere_is_seen(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    mine, _, other = engines(faces, store, clock)
    run = mine.create(thread_id="t", assistant_id="a")
    assert mine.claim("w1") is not None
    clock.advance(mine.lease_seconds + 1)
    assert other.recover_stalled() == [other.get(run.id)]
    assert other.claim("w2").id == run.id
    with pytest.raises(LeaseError, match="leased to worker 'w2', not to 'w1'"):
        mine.complete(run.id, worker_id="w1")  # mine held it leased to w1
    assert mine.complete(run.id, worker_id="w2").status is S.COMPLETED


def test_nothing_to_do_is_answered_from_a_fresh_read(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    mine, counted, other = engines(faces, store, clock, "response")
    response = mine.create(model="gpt-4o", input="hi", background=True)
    assert mine.claim("w") is not None
    other.complete(response.id, output=OUTPUT)
    counted.calls.clear()
    # Cancelling an ended response returns it unchanged: the ended one, not what mine held.
    assert mine.cancel(response.id).status.value == "completed"
    assert counted.calls["get"] == 1


def test_appended_deltas_are_written_with_no_read(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    mine, counted, _ = engines(faces, store, clock, "response")
    response = mine.create(model="gpt-4o", input="hi", background=True)
    assert mine.claim("w") is not None
    counted.calls.clear()
    for _ in range(3):
        mine.append(response.id, "response.progress", {"delta": "x"}, worker_id="w")
    mine.complete(response.id, output=OUTPUT, worker_id="w")
    assert counted.calls == {"write": 4}


def test_a_change_that_decides_nothing_on_a_held_entry_reads_first(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    mine, counted, _ = engines(faces, store, clock)
    run = mine.create(thread_id="t", assistant_id="a")
    inner = getattr(mine, "_engine", mine)
    nothing = lambda obj, stored, now, expired: None  # noqa: E731
    counted.calls.clear()
    if inner is mine:
        obj, _, seqs = mine._drive(mine._p_apply(run.id, nothing))
    else:
        from faces import block

        obj, _, seqs = block(inner._adrive(inner._p_apply(run.id, nothing)))
    assert (obj.id, seqs) == (run.id, None)
    assert counted.calls == {"get": 1}  # the held entry was not trusted for "nothing"


def test_the_engine_holds_a_bounded_number_of_objects(faces: Faces) -> None:
    from runstate._engine import Known
    from runstate.stores import StoredObject

    engine = faces.run()
    known = Known(frozenset({S.COMPLETED}), size=2)
    runs = [engine.create(thread_id=f"t{i}", assistant_id="a") for i in range(3)]
    for run in runs:
        known.keep(StoredObject(run, 1))
    assert known.take(runs[0].id) is None  # the oldest was dropped
    assert known.take(runs[2].id) is not None
    done = engine.complete(engine.start(runs[1].id).id)
    known.keep(StoredObject(done, 3))  # an ended object is forgotten
    assert known.take(runs[1].id) is None
