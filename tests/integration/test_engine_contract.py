"""The engine's contract, run on every store: a store passes all of it or it is not done."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from faces import Faces
from tables import CALLS, OUTPUTS, PG_BASE, T0, USAGE

from runstate import (
    ActiveRunError,
    ConcurrentUpdateError,
    IdempotencyError,
    InvalidTransitionError,
    LeaseError,
    ManualClock,
    MemoryStore,
    PostgresStore,
    Run,
    RunEngine,
    RunEvent,
    RunNotFoundError,
    RunStatus,
    RunV2,
    SQLiteStore,
    Store,
    ValidationError,
    connect,
)
from runstate.stores import Claimed, ClaimStep, Now, StoredObject, Sweep, Write

#: Every test here runs on the sync engine and on its async twin.
pytestmark = pytest.mark.usefixtures("faces")

S = RunStatus
TTL = 600
LEASE = 30


@pytest.fixture
def engine(faces: Faces, store: Store, clock: ManualClock) -> RunEngine:
    return faces.run(store, clock=clock, ttl=TTL, lease_seconds=LEASE, max_attempts=2)


def new(engine: RunEngine, thread: str = "thread_1", **kwargs: Any) -> Run:
    return engine.create(thread_id=thread, assistant_id="asst_1", model="gpt-4o", **kwargs)


def snapshot(engine: RunEngine, run_id: str) -> tuple[StoredObject, list[RunEvent]]:
    return engine.store.get(run_id), engine.history(run_id)


def assert_history_matches(engine: RunEngine, run: Run) -> None:
    """The history is a chain of legal steps that ends in the run's status."""
    events = engine.history(run.id)
    assert [e.event for e in events[:2]] == ["thread.run.created", "thread.run.queued"]
    status = "queued"
    for event in events[2:]:
        assert event.from_status == status
        assert event.event == f"thread.run.{event.to_status}"
        status = event.to_status
    assert status == run.status.value
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for event in events:  # each event carries the run as it was right after its step
        assert event.data["status"] == event.to_status
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].data == run.to_dict()


# --- the basic operations --------------------------------------------------------------------


def test_create_get_and_a_full_run(engine: RunEngine, clock: ManualClock) -> None:
    run = new(engine, metadata={"k": "v"})
    assert engine.get(run.id) == run
    assert engine.start(run.id).status is S.IN_PROGRESS
    clock.advance(3)
    engine.require_action(run.id, CALLS)
    engine.submit_tool_outputs(run.id, OUTPUTS)
    engine.start(run.id)
    done = engine.complete(run.id)
    assert done.status is S.COMPLETED and done.completed_at == T0 + 3
    assert engine.get(run.id) == done
    assert_history_matches(engine, done)
    assert [e.event for e in engine.history(run.id)] == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.requires_action",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.completed",
    ]


def test_returned_runs_are_copies(engine: RunEngine) -> None:
    run = new(engine, metadata={"k": "v"})
    run.metadata["k"] = "changed"
    got = engine.get(run.id)
    got.metadata["k"] = "changed too"
    assert engine.get(run.id).metadata == {"k": "v"}


@pytest.mark.parametrize(
    ("operation", "status", "message"),
    [
        ("cancel", S.COMPLETED, "Cannot cancel run with status 'completed'."),
        (
            "submit_tool_outputs",
            S.IN_PROGRESS,
            'Runs in status "in_progress" do not accept tool outputs.',
        ),
        ("start", S.COMPLETED, "Cannot start run with status 'completed'."),
        ("complete", S.QUEUED, "Cannot complete run with status 'queued'."),
        ("confirm_cancel", S.IN_PROGRESS, "Cannot confirm_cancel run with status 'in_progress'."),
        ("require_action", S.QUEUED, "Cannot require_action run with status 'queued'."),
        ("fail", S.CANCELLED, "Cannot fail run with status 'cancelled'."),
        ("expire", S.QUEUED, "Cannot expire run with status 'queued': it is not due until"),
    ],
)
def test_refusals_change_nothing_stored(
    engine: RunEngine, operation: str, status: RunStatus, message: str
) -> None:
    run = new(engine)
    path = {
        S.QUEUED: [],
        S.IN_PROGRESS: ["start"],
        S.COMPLETED: ["start", "complete"],
        S.CANCELLED: ["cancel"],  # nobody holds a queued run: cancelled at once
    }[status]
    for step in path:
        getattr(engine, step)(run.id)
    before = snapshot(engine, run.id)
    args: dict[str, Any] = {
        "submit_tool_outputs": {"tool_outputs": OUTPUTS},
        "require_action": {"tool_calls": CALLS},
        "fail": {"message": "m"},
    }.get(operation, {})
    with pytest.raises(InvalidTransitionError, match=message.replace("(", r"\(")) as caught:
        getattr(engine, operation)(run.id, **args)
    assert caught.value.http_status == (
        400 if operation in ("cancel", "submit_tool_outputs") else 409
    )
    assert snapshot(engine, run.id) == before


def test_bad_input_changes_nothing_stored(engine: RunEngine) -> None:
    run = new(engine)
    engine.start(run.id)
    engine.require_action(run.id, CALLS)
    before = snapshot(engine, run.id)
    attempts: list[Callable[[], object]] = [
        lambda: engine.submit_tool_outputs(run.id, OUTPUTS[:1]),
        lambda: engine.submit_tool_outputs(run.id, "nope"),  # type: ignore[arg-type]
        lambda: engine.update_metadata(run.id, {f"k{i}": "v" for i in range(17)}),
        lambda: engine.fail(run.id, code="nope", message="m"),
        lambda: engine.heartbeat(run.id, ""),
    ]
    for attempt in attempts:
        with pytest.raises(ValidationError):
            attempt()
    assert snapshot(engine, run.id) == before


@pytest.mark.parametrize("bad_id", ["run_nope", "", None, 5])
def test_unknown_and_malformed_ids(engine: RunEngine, bad_id: Any) -> None:
    expected = RunNotFoundError if bad_id == "run_nope" else ValidationError
    for call in (
        lambda: engine.get(bad_id),
        lambda: engine.cancel(bad_id),
        lambda: engine.complete(bad_id),
        lambda: engine.history(bad_id),
        lambda: engine.update_metadata(bad_id, {}),
    ):
        with pytest.raises(expected) as caught:
            call()
        if bad_id == "run_nope":
            assert caught.value.message == "No run found with id 'run_nope'."
            assert caught.value.http_status == 404


# --- expiry ------------------------------------------------------------------------------------


def due_and_waiting(engine: RunEngine, clock: ManualClock) -> Run:
    """A run in requires_action whose expires_at has just come."""
    run = new(engine)
    engine.start(run.id)
    engine.require_action(run.id, CALLS)
    clock.advance(TTL)
    return run


def test_reading_a_due_run_expires_it_and_stores_that(
    engine: RunEngine, clock: ManualClock
) -> None:
    run = due_and_waiting(engine, clock)
    # The store itself does not decide: until the engine reads it, it is as it was.
    assert engine.store.get(run.id).obj.status is S.REQUIRES_ACTION
    got = engine.get(run.id)
    assert got.status is S.EXPIRED and got.required_action is None and got.expires_at == T0 + TTL
    assert engine.store.get(run.id).obj == got
    assert engine.history(run.id)[-1].event == "thread.run.expired"
    assert engine.get(run.id) == got  # expired once
    assert len(engine.history(run.id)) == 5


def test_an_operation_on_a_due_run_expires_it_then_refuses(
    engine: RunEngine, clock: ManualClock
) -> None:
    run = due_and_waiting(engine, clock)
    with pytest.raises(
        InvalidTransitionError, match='Runs in status "expired" do not accept tool outputs.'
    ):
        engine.submit_tool_outputs(run.id, OUTPUTS)
    assert engine.store.get(run.id).obj.status is S.EXPIRED
    with pytest.raises(InvalidTransitionError, match="Cannot expire run with status 'expired'."):
        engine.expire(run.id)


def test_expire_a_due_run_by_id(engine: RunEngine, clock: ManualClock) -> None:
    run = new(engine)
    clock.advance(TTL)
    assert engine.expire(run.id).status is S.EXPIRED
    assert [e.event for e in engine.history(run.id)][-1] == "thread.run.expired"


def test_expire_due_expires_only_due_active_runs(engine: RunEngine, clock: ManualClock) -> None:
    early = [new(engine, f"early_{i}") for i in range(5)]
    done = new(engine, "done")
    engine.start(done.id)
    engine.complete(done.id)
    clock.advance(10)
    late = [new(engine, f"late_{i}") for i in range(3)]
    clock.advance(TTL - 10)
    heard: list[str] = []
    engine.subscribe(lambda e: heard.append(e.run_id))
    expired = engine.expire_due()
    assert sorted(r.id for r in expired) == sorted(r.id for r in early)
    assert all(r.status is S.EXPIRED for r in expired)
    assert sorted(heard) == sorted(r.id for r in early)
    assert all(engine.store.get(r.id).obj.status is S.QUEUED for r in late)
    assert engine.store.get(done.id).obj.status is S.COMPLETED
    assert engine.expire_due() == []
    clock.advance(10)
    assert len(engine.expire_due(limit=2)) == 2
    assert len(engine.expire_due(limit=2)) == 1


def test_expire_due_refuses_a_bad_limit(engine: RunEngine) -> None:
    for bad in (0, -1, "5", None):
        with pytest.raises(ValidationError, match="limit"):
            engine.expire_due(limit=bad)  # type: ignore[arg-type]


# --- one active run per thread ----------------------------------------------------------------------


def test_one_active_run_per_thread(engine: RunEngine, clock: ManualClock) -> None:
    first = new(engine, "thread_abc")
    with pytest.raises(ActiveRunError) as caught:
        new(engine, "thread_abc")
    assert caught.value.message == f"Thread thread_abc already has an active run {first.id}."
    assert caught.value.http_status == 400
    other = new(engine, "thread_other")  # other threads are free
    engine.claim("w")
    engine.cancel(first.id)
    with pytest.raises(ActiveRunError):
        new(engine, "thread_abc")  # cancelling is still active
    engine.confirm_cancel(first.id)
    second = new(engine, "thread_abc")
    assert engine.list("thread_abc").first_id == second.id
    assert other.status is S.QUEUED


def test_a_due_active_run_does_not_block_its_thread(engine: RunEngine, clock: ManualClock) -> None:
    stale = new(engine, "thread_abc")
    clock.advance(TTL)
    fresh = new(engine, "thread_abc")
    assert engine.get(stale.id).status is S.EXPIRED
    assert engine.get(fresh.id).status is S.QUEUED


def test_each_event_of_an_unattended_cancel_carries_the_run_as_it_was(engine: RunEngine) -> None:
    heard: list[RunEvent] = []
    engine.subscribe(heard.append)
    run = new(engine)
    engine.cancel(run.id)
    cancelling, cancelled = engine.history(run.id)[-2:]
    assert cancelling.event == "thread.run.cancelling"
    assert cancelling.data["status"] == "cancelling" and cancelling.data["cancelled_at"] is None
    assert cancelled.data["status"] == "cancelled" and cancelled.data["cancelled_at"] == T0
    assert [e.data for e in heard[-2:]] == [cancelling.data, cancelled.data]


def test_the_expired_event_carries_the_run_as_expiry_left_it(
    engine: RunEngine, clock: ManualClock
) -> None:
    run = new(engine, metadata={"k": "old"})
    clock.advance(TTL)
    updated = engine.update_metadata(run.id, {"k": "new"})
    assert updated.status is S.EXPIRED and updated.metadata == {"k": "new"}
    expired = engine.history(run.id)[-1]
    assert expired.event == "thread.run.expired" and expired.data["metadata"] == {"k": "old"}


def test_cancel_confirms_at_once_when_no_worker_holds_the_run(engine: RunEngine) -> None:
    queued = new(engine, "a")
    waiting = new(engine, "b")
    working = new(engine, "c")
    for run in (waiting, working):
        engine.start(run.id)
    engine.require_action(waiting.id, CALLS)
    for run in (queued, waiting):
        cancelled = engine.cancel(run.id)
        assert cancelled.status is S.CANCELLED and cancelled.required_action is None
        assert cancelled.cancelled_at is not None and cancelled.expires_at is None
        assert [e.event for e in engine.history(run.id)][-2:] == [
            "thread.run.cancelling",
            "thread.run.cancelled",
        ]
    assert engine.cancel(working.id).status is S.CANCELLING  # its worker decides


# --- listing ---------------------------------------------------------------------------------------


def test_list_orders_by_created_at_with_creation_order_for_ties(
    engine: RunEngine, clock: ManualClock
) -> None:
    ids = []
    for i in range(7):
        run = new(engine)
        engine.start(run.id)
        engine.complete(run.id)
        ids.append(run.id)
        if i % 3 == 2:
            clock.advance(1)  # several runs share each second
    new(engine, "thread_2")
    page = engine.list("thread_1")
    assert [r.id for r in page.data] == ids[::-1]
    assert page.to_dict()["object"] == "list"
    assert (page.first_id, page.last_id, page.has_more) == (ids[-1], ids[0], False)
    assert [r.id for r in engine.list("thread_1", order="asc").data] == ids


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_list_pages_with_after_and_before(engine: RunEngine, order: str) -> None:
    ids = []
    for _ in range(5):
        run = new(engine)
        engine.cancel(run.id)
        ids.append(run.id)
    listing = ids if order == "asc" else ids[::-1]
    page = engine.list("thread_1", limit=2, order=order)  # type: ignore[arg-type]
    assert [r.id for r in page.data] == listing[:2] and page.has_more
    page = engine.list("thread_1", limit=2, order=order, after=page.last_id)  # type: ignore[arg-type]
    assert [r.id for r in page.data] == listing[2:4] and page.has_more
    page = engine.list("thread_1", limit=2, order=order, after=page.last_id)  # type: ignore[arg-type]
    assert [r.id for r in page.data] == listing[4:] and not page.has_more
    page = engine.list("thread_1", limit=2, order=order, before=listing[4])  # type: ignore[arg-type]
    assert [r.id for r in page.data] == listing[2:4] and page.has_more
    page = engine.list("thread_1", limit=2, order=order, before=listing[1])  # type: ignore[arg-type]
    assert [r.id for r in page.data] == listing[:1] and not page.has_more
    page = engine.list("thread_1", order=order, after=listing[0], before=listing[3])  # type: ignore[arg-type]
    assert [r.id for r in page.data] == listing[1:3]
    assert engine.list("nobody").to_dict() == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


def test_list_refuses_bad_arguments(engine: RunEngine) -> None:
    mine = new(engine, "thread_1")
    theirs = new(engine, "thread_2")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"order": "up"}, "order"),
        ({"after": "run_nope"}, "after"),
        ({"before": theirs.id}, "before"),
        ({"after": 3}, "after"),
    ]
    for kwargs, param in cases:
        with pytest.raises(ValidationError) as caught:
            engine.list("thread_1", **kwargs)
        assert caught.value.param == param
    assert engine.list("thread_1").data == [mine]


def test_list_applies_expiry(engine: RunEngine, clock: ManualClock) -> None:
    run = new(engine)
    clock.advance(TTL)
    (listed,) = engine.list("thread_1").data
    assert listed.status is S.EXPIRED
    assert engine.store.get(run.id).obj.status is S.EXPIRED


def test_a_status_filter_never_returns_runs_that_expiry_moved_out_of_it(
    engine: RunEngine, clock: ManualClock
) -> None:
    old = new(engine, "a")
    clock.advance(TTL - 1)
    young = new(engine, "b")
    clock.advance(1)  # the first run is due now, the second is not
    page = engine.list(None, status="queued")
    assert [r.id for r in page.data] == [young.id]
    assert [r.id for r in engine.list(None, status="expired").data] == [old.id]


def test_list_every_thread_by_status(engine: RunEngine) -> None:
    a = new(engine, "a")
    b = new(engine, "b")
    engine.cancel(b.id)
    assert [r.id for r in engine.list(None).data] == [b.id, a.id]
    assert [r.id for r in engine.list(None, status="cancelled").data] == [b.id]
    with pytest.raises(ValidationError, match="Unknown status"):
        engine.list(None, status="paused")


# --- metadata ---------------------------------------------------------------------------------


def test_update_metadata_replaces_it_in_any_status(engine: RunEngine) -> None:
    run = new(engine, metadata={"a": "1"})
    engine.cancel(run.id)
    updated = engine.update_metadata(run.id, {"b": "2"})
    assert updated.metadata == {"b": "2"} and updated.status is S.CANCELLED
    assert engine.get(run.id).metadata == {"b": "2"}
    assert len(engine.history(run.id)) == 4  # metadata is not a transition


# --- races decided by compare-and-set ----------------------------------------------------------------


class StoreProxy:
    """A store that passes every call to ``store``; subclasses step in where they say."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class Meddler(StoreProxy):
    """A store proxy that lets another writer in between the engine's decision and the
    store's write: before a ``write``, a ``claim`` or a ``sweep`` reaches the store."""

    def __init__(self, store: Store, meddle: Callable[[], object], times: int = 1) -> None:
        super().__init__(store)
        self._meddle = meddle
        self._times = times

    def _maybe_meddle(self) -> None:
        if self._times:
            self._times -= 1
            self._meddle()

    def write(self, writes: Sequence[Write]) -> list[list[int] | None]:
        self._maybe_meddle()
        return self._store.write(writes)

    def claim(
        self,
        now: Now,
        decide: Callable[[StoredObject, int], Write],
        *,
        kind: str,
        step: ClaimStep | None = None,
    ) -> Claimed | None:
        self._maybe_meddle()
        return self._store.claim(now, decide, kind=kind, step=step)

    def sweep(
        self,
        which: Sweep,
        now: Now,
        decide: Callable[[StoredObject, int], Write | None],
        limit: int,
        *,
        kind: str,
    ) -> list[Claimed]:
        self._maybe_meddle()
        return self._store.sweep(which, now, decide, limit, kind=kind)


class StaleView(StoreProxy):
    """A store proxy whose sweeps pick runs as if it were ``ahead`` seconds later, while
    the engine decides at the real time: what a lagging index or a skewed clock would
    hand the engine. The engine must re-check every pick."""

    def __init__(self, store: Store, ahead: int = 10_000) -> None:
        super().__init__(store)
        self._ahead = ahead

    def sweep(
        self,
        which: Sweep,
        now: Now,
        decide: Callable[[StoredObject, int], Write | None],
        limit: int,
        *,
        kind: str,
    ) -> list[Claimed]:
        return self._store.sweep(
            which,
            lambda: now() + self._ahead,
            lambda stored, _: decide(stored, now()),
            limit,
            kind=kind,
        )


def test_a_late_complete_after_a_cancel_is_decided_again(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    plain = faces.run(store, clock=clock)
    run = plain.create(thread_id="t", assistant_id="a")
    plain.start(run.id)
    meddled = faces.run(Meddler(store, lambda: plain.cancel(run.id)), clock=clock)  # type: ignore[arg-type]
    done = meddled.complete(run.id)  # decided on in_progress, lost, decided again on cancelling
    assert done.status is S.COMPLETED
    assert [e.event for e in plain.history(run.id)][-2:] == [
        "thread.run.cancelling",
        "thread.run.completed",
    ]
    assert_history_matches(plain, done)


def test_a_late_cancel_after_a_complete_is_refused(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    plain = faces.run(store, clock=clock)
    run = plain.create(thread_id="t", assistant_id="a")
    plain.start(run.id)
    meddled = faces.run(Meddler(store, lambda: plain.complete(run.id)), clock=clock)  # type: ignore[arg-type]
    with pytest.raises(InvalidTransitionError, match="Cannot cancel run with status 'completed'."):
        meddled.cancel(run.id)
    assert plain.get(run.id).status is S.COMPLETED
    assert [e.event for e in plain.history(run.id)][-1] == "thread.run.completed"


def test_an_engine_that_always_loses_gives_up_cleanly(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    plain = faces.run(store, clock=clock)
    run = plain.create(thread_id="t", assistant_id="a")
    meddled = faces.run(
        Meddler(store, lambda: plain.update_metadata(run.id, {}), times=1000),  # type: ignore[arg-type]
        clock=clock,
    )
    with pytest.raises(ConcurrentUpdateError):
        meddled.start(run.id)
    assert plain.get(run.id).status is S.QUEUED


def test_an_unattended_cancel_that_loses_to_a_claim_is_decided_again(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    plain = faces.run(store, clock=clock)
    run = plain.create(thread_id="t", assistant_id="a")
    meddled = faces.run(Meddler(store, lambda: plain.claim("w1")), clock=clock)  # type: ignore[arg-type]
    cancelled = meddled.cancel(run.id)  # decided on queued (two steps), lost, decided again
    assert cancelled.status is S.CANCELLING  # the claimed run waits for its worker
    assert [e.event for e in plain.history(run.id)][2:] == [
        "thread.run.in_progress",
        "thread.run.cancelling",
    ]


class AlwaysBlocked(StoreProxy):
    """A store proxy whose thread always holds an active run that is gone when looked at:
    a create that can never win."""

    def __init__(self, store: Store, blocker: str) -> None:
        super().__init__(store)
        self._blocker = blocker

    def insert(self, run: Run, steps: Any, input: Any = None, key: Any = None) -> list[int]:
        raise ActiveRunError(run.thread_id, self._blocker)


def test_a_create_that_never_wins_gives_up_cleanly(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    plain = faces.run(store, clock=clock)
    done = plain.create(thread_id="t", assistant_id="a")
    plain.cancel(done.id)
    blocked = faces.run(AlwaysBlocked(store, done.id), clock=clock)  # type: ignore[arg-type]
    with pytest.raises(ConcurrentUpdateError, match="Thread t kept changing; no run was created."):
        blocked.create(thread_id="t", assistant_id="a")
    assert [r.id for r in plain.list("t").data] == [done.id]


class StalePages(StoreProxy):
    """A store proxy whose listings always show the runs as first read: a listing whose
    status filter expiry keeps invalidating."""

    def __init__(self, store: Store, page: Any) -> None:
        super().__init__(store)
        self._page = page

    def list_objects(self, *args: Any, **kwargs: Any) -> Any:
        return self._page


def test_a_listing_that_keeps_changing_gives_up_cleanly(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    plain = faces.run(store, clock=clock, ttl=TTL)
    new(plain)
    page = store.list_objects(None, kind="run", status=S.QUEUED)
    clock.advance(TTL)
    stale = faces.run(StalePages(store, page), clock=clock)  # type: ignore[arg-type]
    with pytest.raises(ConcurrentUpdateError, match="The listing kept changing; gave up."):
        stale.list(None, status="queued")


def test_reprs_name_the_store_and_never_a_password(faces: Faces, store: Store) -> None:
    text = repr(faces.run(store))
    assert text.startswith("RunEngine(" if faces.mode == "sync" else "AsyncRunEngine(")
    assert type(store).__name__ in text
    assert "postgresql://" not in text and "@" not in text


# --- workers -------------------------------------------------------------------------------------


def test_claim_takes_the_oldest_queued_run_and_leases_it(
    engine: RunEngine, clock: ManualClock
) -> None:
    first = new(engine, "a")
    clock.advance(1)
    second = new(engine, "b")
    claimed = engine.claim("w1")
    assert claimed is not None and claimed.id == first.id and claimed.status is S.IN_PROGRESS
    stored = engine.store.get(first.id)
    assert (stored.lease_owner, stored.lease_expires_at, stored.attempts) == (
        "w1",
        T0 + 1 + LEASE,
        1,
    )
    claimed = engine.claim("w2")
    assert claimed is not None and claimed.id == second.id
    assert engine.claim("w3") is None


def test_claim_skips_due_runs_and_takes_resumed_runs_by_age(
    engine: RunEngine, clock: ManualClock
) -> None:
    old = new(engine, "old")
    clock.advance(TTL - 5)
    waiting = new(engine, "waiting")
    clock.advance(5)  # old is due now: it must not be claimed
    claimed = engine.claim("w")
    assert claimed is not None and claimed.id == waiting.id
    assert engine.claim("w") is None
    assert engine.get(old.id).status is S.EXPIRED


def test_claim_refuses_bad_arguments(engine: RunEngine) -> None:
    for kwargs in ({"worker_id": ""}, {"worker_id": None}, {"worker_id": "w", "lease_seconds": 0}):
        with pytest.raises(ValidationError):
            engine.claim(**kwargs)  # type: ignore[arg-type]


def test_heartbeat_extends_the_lease_never_the_expiry(
    engine: RunEngine, clock: ManualClock
) -> None:
    run = new(engine)
    engine.claim("w1")
    clock.advance(20)
    beat = engine.heartbeat(run.id, "w1")
    stored = engine.store.get(run.id)
    assert stored.lease_expires_at == T0 + 20 + LEASE
    assert beat.expires_at == run.expires_at == T0 + TTL
    with pytest.raises(LeaseError, match="leased to worker 'w1', not to 'w2'"):
        engine.heartbeat(run.id, "w2")
    assert engine.store.get(run.id) == stored
    clock.set(T0 + TTL)
    with pytest.raises(InvalidTransitionError, match="Cannot heartbeat run with status 'expired'."):
        engine.heartbeat(run.id, "w1")  # a lease never outlives expires_at
    assert engine.store.get(run.id).lease_owner is None


def test_heartbeat_shows_a_cancel_to_the_worker(engine: RunEngine) -> None:
    run = new(engine)
    engine.claim("w1")
    engine.cancel(run.id)
    assert engine.heartbeat(run.id, "w1").status is S.CANCELLING
    assert engine.confirm_cancel(run.id, worker_id="w1").status is S.CANCELLED
    assert engine.store.get(run.id).lease_owner is None


def test_worker_steps_check_the_lease(engine: RunEngine) -> None:
    run = new(engine)
    engine.claim("w1")
    before = snapshot(engine, run.id)
    for step in (
        lambda: engine.complete(run.id, worker_id="w2"),
        lambda: engine.fail(run.id, message="m", worker_id="w2"),
        lambda: engine.require_action(run.id, CALLS, worker_id="w2"),
    ):
        with pytest.raises(LeaseError):
            step()
    assert snapshot(engine, run.id) == before
    engine.require_action(run.id, CALLS, worker_id="w1")
    assert engine.store.get(run.id).lease_owner is None  # waiting for the caller: nobody's


def test_recover_stalled_requeues_then_fails(engine: RunEngine, clock: ManualClock) -> None:
    run = new(engine)
    engine.claim("w1")
    alive = new(engine, "alive")
    engine.claim("w2")
    clock.advance(LEASE - 1)
    engine.heartbeat(alive.id, "w2")
    assert engine.recover_stalled() == []
    clock.advance(1)  # w1's lease has ended; w2's has not
    (recovered,) = engine.recover_stalled()
    assert recovered.id == run.id and recovered.status is S.QUEUED
    assert engine.store.get(alive.id).lease_owner == "w2"
    with pytest.raises(InvalidTransitionError, match="Cannot complete run with status 'queued'."):
        engine.complete(run.id, worker_id="w1")  # the vanished worker is too late
    again = engine.claim("w3")
    assert again is not None and again.id == run.id
    assert engine.store.get(run.id).attempts == 2
    clock.advance(LEASE)
    failed = [r for r in engine.recover_stalled() if r.id == run.id]
    assert failed[0].status is S.FAILED
    assert failed[0].last_error == {
        "code": "server_error",
        "message": "The run's worker stopped responding 2 times.",
    }
    assert [e.event for e in engine.history(run.id)][2:] == [
        "thread.run.in_progress",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.failed",
    ]


def test_recover_stalled_finishes_an_orphaned_cancel(engine: RunEngine, clock: ManualClock) -> None:
    run = new(engine)
    engine.claim("w1")
    engine.cancel(run.id)
    clock.advance(LEASE)
    (recovered,) = engine.recover_stalled()
    assert recovered.status is S.CANCELLED


def test_a_heartbeat_just_before_the_recovery_writes_keeps_the_run(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    plain = faces.run(store, clock=clock, lease_seconds=LEASE)
    run = new(plain)
    plain.claim("w1")
    clock.advance(LEASE)  # the lease has just ended: the sweep is about to requeue it
    sweeper = faces.run(
        Meddler(store, lambda: plain.heartbeat(run.id, "w1")),  # type: ignore[arg-type]
        clock=clock,
        lease_seconds=LEASE,
    )
    assert sweeper.recover_stalled() == []
    stored = store.get(run.id)
    assert stored.obj.status is S.IN_PROGRESS and stored.lease_owner == "w1"
    assert stored.lease_expires_at == T0 + 2 * LEASE
    assert [e.event for e in plain.history(run.id)][-1] == "thread.run.in_progress"


def test_recovery_re_checks_every_lease_it_is_handed(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    plain = faces.run(store, clock=clock, lease_seconds=LEASE)
    run = new(plain)
    plain.claim("w1")
    before = snapshot(plain, run.id)
    stale = faces.run(StaleView(store), clock=clock, lease_seconds=LEASE)  # type: ignore[arg-type]
    assert stale.recover_stalled() == []  # handed a live lease: refuses to touch it
    assert snapshot(plain, run.id) == before


def test_expiry_re_checks_every_run_it_is_handed(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    plain = faces.run(store, clock=clock, ttl=TTL)
    run = new(plain)
    before = snapshot(plain, run.id)
    stale = faces.run(StaleView(store), clock=clock, ttl=TTL)  # type: ignore[arg-type]
    assert stale.expire_due() == []  # handed a run that is not due: leaves it
    assert snapshot(plain, run.id) == before


def test_recover_stalled_does_not_call_an_expired_run_recovered(
    engine: RunEngine, clock: ManualClock
) -> None:
    run = new(engine)
    engine.claim("w1")
    clock.advance(TTL)  # both the lease and the run's time have run out
    assert engine.recover_stalled() == []
    stored = engine.store.get(run.id)
    assert stored.obj.status is S.EXPIRED and stored.lease_owner is None


class WaitsForTheLock(StoreProxy):
    """A store proxy whose claims and sweeps wait ``seconds`` (on the manual clock) for
    the write lock before they reach the store, as a writer behind another does."""

    def __init__(self, store: Store, clock: ManualClock, seconds: int) -> None:
        super().__init__(store)
        self._clock = clock
        self._seconds = seconds

    def claim(
        self,
        now: Now,
        decide: Callable[[StoredObject, int], Write],
        *,
        kind: str,
        step: ClaimStep | None = None,
    ) -> Claimed | None:
        self._clock.advance(self._seconds)
        return self._store.claim(now, decide, kind=kind, step=step)

    def sweep(
        self,
        which: Sweep,
        now: Now,
        decide: Callable[[StoredObject, int], Write | None],
        limit: int,
        *,
        kind: str,
    ) -> list[Claimed]:
        self._clock.advance(self._seconds)
        return self._store.sweep(which, now, decide, limit, kind=kind)


def test_a_claim_that_waited_for_the_lock_never_starts_a_due_run(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    waiting = faces.run(WaitsForTheLock(store, clock, 3), clock=clock, ttl=2)  # type: ignore[arg-type]
    run = waiting.create(thread_id="t", assistant_id="a")
    assert waiting.claim("w1") is None  # due by the time the claim could write
    (expired,) = waiting.expire_due()  # expiry wins cleanly
    assert expired.id == run.id and expired.started_at is None
    assert [e.at for e in waiting.history(run.id)] == [T0, T0, T0 + 6]


def test_a_claim_stamps_the_time_it_wrote(faces: Faces, store: Store, clock: ManualClock) -> None:
    waiting = faces.run(WaitsForTheLock(store, clock, 3), clock=clock, ttl=TTL)  # type: ignore[arg-type]
    run = waiting.create(thread_id="t", assistant_id="a")
    claimed = waiting.claim("w1", lease_seconds=LEASE)
    assert claimed is not None and claimed.id == run.id
    assert claimed.started_at == T0 + 3
    assert store.get(run.id).lease_expires_at == T0 + 3 + LEASE


# --- history and events ---------------------------------------------------------------------------------


def test_events_let_another_reader_follow(engine: RunEngine) -> None:
    a = new(engine, "a")
    b = new(engine, "b")
    engine.start(a.id)
    everything = engine.feed()
    assert [(e.run_id, e.event) for e in everything] == [
        (a.id, "thread.run.created"),
        (a.id, "thread.run.queued"),
        (b.id, "thread.run.created"),
        (b.id, "thread.run.queued"),
        (a.id, "thread.run.in_progress"),
    ]
    seqs = [e.seq for e in everything]
    assert all(isinstance(s, int) for s in seqs) and seqs == sorted(seqs)
    last = seqs[-1]
    assert last is not None
    assert engine.feed(after_seq=last) == []
    engine.complete(a.id)
    (latest,) = engine.feed(after_seq=last)
    assert latest.event == "thread.run.completed" and latest.data["status"] == "completed"
    assert [e.event for e in engine.events(b.id)] == [
        "thread.run.created",
        "thread.run.queued",
    ]
    assert len(engine.feed(limit=2)) == 2
    assert engine.feed(after_seq=seqs[1], limit=1)[0].seq == seqs[2]
    with pytest.raises(ValidationError):
        engine.feed(after_seq=-1)


def test_listeners_hear_stored_transitions_with_their_seq(engine: RunEngine) -> None:
    heard: list[RunEvent] = []
    engine.subscribe(heard.append)
    run = new(engine)
    engine.claim("w")
    assert [e.event for e in heard] == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
    ]
    assert [e.seq for e in heard] == [e.seq for e in engine.history(run.id)]
    assert heard[-1].data["status"] == "in_progress"


def test_each_runs_events_are_numbered_from_zero_with_no_gaps(
    engine: RunEngine, clock: ManualClock
) -> None:
    heard: list[RunEvent] = []
    engine.subscribe(heard.append)
    a = new(engine, "a")
    b = new(engine, "b")
    engine.claim("w")  # a
    engine.cancel(b.id)  # two events in one write
    engine.require_action(a.id, CALLS)
    engine.submit_tool_outputs(a.id, OUTPUTS)
    c = new(engine, "c")
    clock.advance(TTL)
    engine.expire_due()  # a sweep's writes
    for run in (a, b, c):
        numbers = [e.sequence_number for e in engine.history(run.id)]
        assert numbers == list(range(len(numbers)))
        assert [e.sequence_number for e in heard if e.run_id == run.id] == numbers
        after = engine.events(run.id)
        assert [e.sequence_number for e in after] == numbers


def test_connect_urls(tmp_path: Path) -> None:
    assert isinstance(connect("memory://").store, MemoryStore)
    engine = connect(f"sqlite:///{tmp_path}/x.db", ttl=5)
    assert isinstance(engine.store, SQLiteStore) and engine.lifecycle.ttl == 5
    for bad in ("", "memory", "memory://x", "sqlite://", "sqlite:///", "redis://x", 5):
        with pytest.raises(ValidationError):
            connect(bad)  # type: ignore[arg-type]


def test_engine_options_are_checked(faces: Faces) -> None:
    for kwargs in ({"lease_seconds": 0}, {"max_attempts": 0}, {"ttl": -5}, {"lease_seconds": True}):
        with pytest.raises(ValidationError):
            faces.run(**kwargs)  # type: ignore[arg-type]


# --- the second version of the run -------------------------------------------------------------


def test_v2_runs_on_every_store_as_the_official_client_reads_them(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    from openai.types.beta.threads import Run as ClientRun

    engine = faces.run(store, clock=clock, ttl=TTL, lease_seconds=LEASE, version="v2")
    returned: list[Run] = []

    def keep(run: Run | None) -> Run:
        assert run is not None
        returned.append(run)
        return run

    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    run = keep(
        engine.create(
            thread_id="t1",
            assistant_id="a",
            tools=[tool, {"type": "file_search"}],
            temperature=0.3,
            max_completion_tokens=512,
            truncation_strategy={"type": "auto"},
            tool_choice="required",
            response_format={"type": "json_object"},
        )
    )
    keep(engine.claim("w1"))
    keep(engine.require_action(run.id, CALLS, worker_id="w1"))
    keep(engine.submit_tool_outputs(run.id, OUTPUTS))
    keep(engine.claim("w1"))
    done = keep(engine.complete(run.id, usage=USAGE, worker_id="w1"))
    assert done.status is S.COMPLETED and done.usage == USAGE  # type: ignore[attr-defined]
    assert engine.get(run.id) == done

    stopped = keep(engine.create(thread_id="t2", assistant_id="a"))
    keep(engine.claim("w2"))
    keep(engine.incomplete(stopped.id, reason="max_completion_tokens", worker_id="w2"))
    failed = keep(engine.create(thread_id="t3", assistant_id="a"))
    keep(engine.fail(failed.id, code="server_error", message="down", usage=USAGE))
    keep(engine.cancel(keep(engine.create(thread_id="t4", assistant_id="a")).id))
    assert [e.event for e in engine.history(stopped.id)][-1] == "thread.run.incomplete"
    assert engine.get(stopped.id).to_dict()["incomplete_details"] == {
        "reason": "max_completion_tokens"
    }
    for run in returned + [engine.get(r.id) for r in returned]:
        assert isinstance(run, RunV2)
        ClientRun.model_validate(run.to_dict())
    for event in engine.feed(after_seq=0, limit=1000):
        ClientRun.model_validate(event.data)

    # One store, both versions: a v1 engine reads a v2 run as v2, and its own as v1.
    plain = faces.run(store, clock=clock, ttl=TTL)
    assert plain.get(stopped.id).version == "v2"
    assert plain.create(thread_id="t5", assistant_id="a").version == "v1"
    with pytest.raises(ValidationError, match="Invalid 'usage': a field of the second"):
        plain.complete(
            plain.start(plain.create(thread_id="t6", assistant_id="a").id).id, usage=USAGE
        )


def test_connect_takes_the_version(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'runs.db'}", version="v2")
    assert engine.create(thread_id="t", assistant_id="a").version == "v2"
    engine.close()
    with pytest.raises(ValidationError, match="Invalid 'version'"):
        connect("memory://", version="v9")


# --- retention ------------------------------------------------------------------------------


def test_prune_deletes_only_what_ended_long_enough_ago(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    engine = faces.run(store, clock=clock, ttl=10_000)
    old, recent, cancelled, active = (new(engine, f"t{i}") for i in range(4))
    engine.claim("w"), engine.claim("w")  # the two oldest: old and recent
    engine.complete(old.id)
    clock.advance(50)
    engine.complete(recent.id)
    engine.cancel(cancelled.id)
    clock.advance(60)  # old ended 110 s ago, recent and cancelled 60 s ago
    assert engine.prune(older_than=100) == 1
    with pytest.raises(RunNotFoundError):
        engine.get(old.id)
    assert all(e.run_id != old.id for e in store.events(0, limit=1000))
    assert engine.prune(older_than=100) == 0  # nothing else is that old
    assert engine.prune(older_than=0, statuses=["cancelled"]) == 1
    assert engine.get(recent.id).status is S.COMPLETED
    assert engine.prune(older_than=0, limit=1) == 1
    assert [r.id for r in engine.list(None).data] == [active.id]  # never an active one
    assert engine.prune(older_than=0) == 0
    for thread in ("t0", "t1", "t2"):  # their threads are free
        new(engine, thread)


def test_prune_refuses_bad_arguments_and_deletes_nothing(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    engine = faces.run(store, clock=clock)
    run = new(engine)
    engine.cancel(run.id)
    for kwargs, param in (
        ({"older_than": -1}, "older_than"),
        ({"older_than": 1.5}, "older_than"),
        ({"older_than": 0, "statuses": ["queued"]}, "statuses"),
        ({"older_than": 0, "statuses": "cancelled"}, "statuses"),
        ({"older_than": 0, "statuses": [5]}, "statuses"),
        ({"older_than": 0, "limit": 0}, "limit"),
    ):
        with pytest.raises(ValidationError) as info:
            engine.prune(**kwargs)
        assert info.value.param == param
    assert engine.get(run.id).status is S.CANCELLED


def test_prune_of_many_goes_in_batches(faces: Faces, store: Store, clock: ManualClock) -> None:
    engine = faces.run(store, clock=clock)
    for i in range(1203):
        engine.cancel(new(engine, f"t{i}").id)
    kept = new(engine, "kept")
    assert engine.prune(older_than=0, limit=1202) == 1202  # three batches, the last short
    assert engine.prune(older_than=0) == 1
    assert [r.id for r in engine.list(None).data] == [kept.id]


# --- idempotent creates -------------------------------------------------------------------


def test_a_repeated_create_with_its_key_returns_the_first_run(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    engine = faces.run(store, clock=clock, idempotency_window=60)
    first = new(engine, idempotency_key="key-1", metadata={"k": "v"})
    clock.advance(30)
    again = new(engine, idempotency_key="key-1", metadata={"k": "v"})
    assert again.id == first.id and again.created_at == first.created_at
    assert len(engine.history(first.id)) == 2  # no second event
    assert [r.id for r in engine.list(None).data] == [first.id]
    with pytest.raises(IdempotencyError) as info:
        new(engine, idempotency_key="key-1", metadata={"k": "other"})
    assert info.value.http_status == 409 and info.value.param == "idempotency_key"
    other = new(engine, "thread_2", idempotency_key="key-2")  # another key: another run
    assert other.id != first.id
    engine.cancel(first.id)
    clock.advance(31)  # the key is forgotten after the window: the same key makes anew
    later = new(engine, idempotency_key="key-1", metadata={"k": "v"})
    assert later.id != first.id


def test_a_key_whose_run_was_pruned_makes_a_new_one(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    engine = faces.run(store, clock=clock)
    first = new(engine, idempotency_key="key")
    engine.cancel(first.id)
    assert engine.prune(older_than=0) == 1
    assert new(engine, idempotency_key="key").id != first.id


@pytest.mark.parametrize("key", ["", "k\x00", "k\ud800", "x" * 256, 5])
def test_a_bad_idempotency_key_is_refused_and_makes_nothing(
    faces: Faces, store: Store, clock: ManualClock, key: Any
) -> None:
    engine = faces.run(store, clock=clock)
    with pytest.raises(ValidationError) as info:
        new(engine, idempotency_key=key)
    assert info.value.param == "idempotency_key"
    assert engine.list(None).data == []


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_a_store_that_keeps_one_event_trims_at_create_and_at_claim(
    faces: Faces, kind: str, request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> None:
    if kind == "postgres":
        schema = request.getfixturevalue("pg_schema")
        store: Any = PostgresStore(PG_BASE, schema=schema, max_events=1)
    elif kind == "sqlite":
        store = SQLiteStore(tmp_path / "trim.db", max_events=1)
    else:
        store = MemoryStore(max_events=1)
    engine = faces.run(store, clock=clock)
    run = new(engine)
    assert [(e.sequence_number, e.event) for e in engine.history(run.id)] == [
        (1, "thread.run.queued")
    ]
    assert engine.claim("w").id == run.id
    assert [(e.sequence_number, e.event) for e in engine.history(run.id)] == [
        (2, "thread.run.in_progress")
    ]
    store.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_a_store_keeps_at_most_max_events_per_object(
    faces: Faces, kind: str, request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> None:
    from tables import make_store

    if kind == "postgres":
        store: Any = PostgresStore(
            PG_BASE, schema=request.getfixturevalue("pg_schema"), max_events=3
        )
    elif kind == "sqlite":
        store = SQLiteStore(tmp_path / "trim.db", max_events=3)
    else:
        store = MemoryStore(max_events=3)
    del make_store
    engine = faces.run(store, clock=clock)
    run = new(engine)
    engine.claim("w")
    engine.require_action(run.id, CALLS)
    engine.submit_tool_outputs(run.id, OUTPUTS)
    engine.claim("w")
    engine.complete(run.id)
    history = engine.history(run.id)
    assert [(e.sequence_number, e.event) for e in history] == [  # the newest three
        (4, "thread.run.queued"),
        (5, "thread.run.in_progress"),
        (6, "thread.run.completed"),
    ]
    other = new(engine, "t2")  # numbering goes on from the count, not from what is kept
    engine.cancel(other.id)
    assert [e.sequence_number for e in engine.history(other.id)] == [1, 2, 3]
    store.close()
    with pytest.raises(ValidationError):
        MemoryStore(max_events=0)


class StoreOfBefore:
    """A store written before claims took ``step``: its claim has no such parameter."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.claims = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def claim(
        self, now: Now, decide: Callable[[StoredObject, int], Write], *, kind: str
    ) -> Claimed | None:
        self.claims += 1
        return self._store.claim(now, decide, kind=kind)


def test_a_store_whose_claim_takes_no_step_is_still_served(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    old = StoreOfBefore(store)
    engine = faces.run(old, clock=clock)
    run = new(engine)
    claimed = engine.claim("w")
    assert claimed is not None and claimed.id == run.id and old.claims == 1
    assert claimed.status is S.IN_PROGRESS and claimed.started_at == T0
