"""A lifecycle whose statuses and events all have names of their own, declared with
public names only, runs the whole engine contract on every store and both faces: the
engine and the stores know its roles from its declaration, never its words.

``task``: ``pending -> running -> done | errored``, claimed by ``begin``; a two-phase
``abort`` through ``stopping`` that ``halt`` ends in ``aborted``; ``retry`` puts a
stalled task back, ``error`` (with a ``Failure``) ends a lost one, and ``lapse`` is its
time-out; one active task per ``owner``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from faces import Faces, block

import runstate
from runstate import (
    ActiveRunError,
    Cancel,
    Definition,
    Failure,
    IdempotencyError,
    InvalidTransitionError,
    LeaseError,
    ManualClock,
    ObjectNotFoundError,
    RunEngine,
    Status,
    Store,
    TimeOut,
    ValidationError,
    Workers,
    declare,
    undeclare,
)

LEASE = 10
TTL = 1000


class TaskStatus(Status):
    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    DONE = "done"
    ERRORED = "errored"
    ABORTED = "aborted"


T = TaskStatus


@dataclass(slots=True)
class Task:
    """The object model (``runstate.ObjectModel``)."""

    KIND: ClassVar[str] = "task"
    id: str
    created_at: int
    status: TaskStatus
    owner: str
    expires_at: int | None = None
    done_at: int | None = None
    error: dict[str, str] | None = None

    @property
    def object(self) -> str:
        return "task"

    @property
    def version(self) -> str:
        return "task"

    @classmethod
    def new(
        cls, *, id: str, status: Any, created_at: int, expires_at: int | None, owner: str
    ) -> Task:
        if not isinstance(owner, str) or not owner:
            raise ValidationError("Invalid 'owner': expected a non-empty string.", param="owner")
        return cls(id, created_at, status, owner, expires_at)

    def copy(self) -> Task:
        error = None if self.error is None else dict(self.error)
        return Task(
            self.id, self.created_at, self.status, self.owner, self.expires_at, self.done_at, error
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "task",
            "created_at": self.created_at,
            "status": self.status.value,
            "owner": self.owner,
            "done_at": self.done_at,
            "error": self.error,
        }

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> Task:
        return cls(
            data["id"],
            data["created_at"],
            TaskStatus(data["status"]),
            data["owner"],
            None,
            data["done_at"],
            data["error"],
        )


def record_error(task: Task, failure: Any) -> None:
    """``error``'s argument: checked, then kept on the task."""
    if not isinstance(failure, Failure) or not failure.code:
        raise ValidationError(
            "Invalid argument of 'error': a Failure with a code.", param="argument"
        )
    task.error = {"code": failure.code, "message": failure.message}


def lost(message: str) -> Failure:
    return Failure("lost", message)


TASK = Definition(
    name="task",
    object="task",
    model=Task,
    prefix="task",
    statuses=tuple(TaskStatus),
    initial=T.PENDING,
    active=frozenset({T.PENDING, T.RUNNING, T.STOPPING}),
    leased=frozenset({T.RUNNING, T.STOPPING}),
    transitions=(
        ("begin", (T.PENDING,), T.RUNNING),
        ("finish", (T.RUNNING, T.STOPPING), T.DONE),
        ("error", (T.PENDING, T.RUNNING, T.STOPPING), T.ERRORED),
        ("abort", (T.PENDING, T.RUNNING), T.STOPPING),
        ("halt", (T.STOPPING,), T.ABORTED),
        ("retry", (T.RUNNING,), T.PENDING),
        ("lapse", (T.PENDING, T.RUNNING, T.STOPPING), T.ERRORED),
    ),
    workers=Workers(claim="begin", requeue="retry", lost="error", lost_argument=lost),
    cancel=Cancel("abort", confirm="halt", ended="refused"),
    on_due=TimeOut("lapse", exclusive=True),
    stamps={T.DONE: "done_at"},
    ends_expiry=frozenset({T.DONE, T.ERRORED, T.ABORTED}),
    group_by="owner",
    arguments={"error": record_error},
)


@pytest.fixture
def tasks(faces: Faces, store: Store, clock: ManualClock) -> Iterator[Any]:
    """The task engine of each face on the test's store (the async face on the async
    form of the same store)."""
    declare(TASK)
    try:
        yield faces.objects(TASK, store, clock, ttl=TTL, lease_seconds=LEASE, max_attempts=2)
    finally:
        undeclare("task")


def followed(tasks: Any, task_id: str) -> list[Any]:
    """The task's events as ``follow`` gives them, on either face."""
    stream = tasks.follow(task_id)
    if hasattr(stream, "__aiter__"):

        async def collect() -> list[Any]:
            return [event async for event in stream]

        return block(collect())
    return list(stream)


def history(tasks: Any, task_id: str) -> list[tuple[str, int | None]]:
    return [(e.event, e.sequence_number) for e in tasks.history(task_id)]


def test_a_task_is_made_claimed_and_finished(tasks: Any, store: Store, clock: ManualClock) -> None:
    task = tasks.create(owner="ann")
    assert (task.status, task.expires_at, task.id[:5]) == (T.PENDING, clock() + TTL, "task_")
    assert store.stats(int(clock())).kinds["task"].waiting == 1
    assert tasks.claim("w0", lease_seconds=1) is not None  # the one pending task
    assert tasks.claim("w1") is None  # nothing else waits
    with pytest.raises(LeaseError, match=f"Task {task.id} is leased to worker 'w0', not to 'w1'"):
        tasks.fire(task.id, "finish", worker_id="w1")
    clock.advance(3)
    done = tasks.fire(task.id, "finish", worker_id="w0")
    assert (done.status, done.done_at, done.expires_at) == (T.DONE, clock(), None)
    assert tasks.get(task.id) == done
    assert history(tasks, task.id) == [
        ("task.created", 0),
        ("task.pending", 1),
        ("task.running", 2),
        ("task.done", 3),
    ]
    assert store.stats(int(clock())).kinds["task"].waiting == 0


def test_every_refusal_is_worded_with_the_tasks_own_names(tasks: Any, clock: ManualClock) -> None:
    task = tasks.create(owner="ann")
    with pytest.raises(InvalidTransitionError, match="Cannot finish task with status 'pending'"):
        tasks.fire(task.id, "finish")
    with pytest.raises(InvalidTransitionError, match="Cannot lapse task with status 'pending': it"):
        tasks.fire(task.id, "lapse")  # the time-out's own event, before the deadline
    with pytest.raises(ValidationError, match=r"Unknown event 'start'; 'task' has \['abort'"):
        tasks.fire(task.id, "start")
    with pytest.raises(ValidationError, match="Invalid argument of 'error': a Failure"):
        tasks.fire(task.id, "error", "boom")
    with pytest.raises(ValidationError, match="Invalid argument: 'abort' takes none"):
        tasks.fire(task.id, "abort", Failure("x", "y"))
    with pytest.raises(ValidationError, match="Invalid 'owner'"):
        tasks.create(owner="")
    with pytest.raises(ValidationError, match="Invalid fields for a new task"):
        tasks.create(owner="bo", colour="red")
    with pytest.raises(ObjectNotFoundError, match="No task found with id 'task_nope'"):
        tasks.get("task_nope")
    assert history(tasks, task.id) == [("task.created", 0), ("task.pending", 1)]  # unchanged


def test_an_error_keeps_its_argument(tasks: Any) -> None:
    task = tasks.create(owner="ann")
    errored = tasks.fire(task.id, "error", Failure("bad_input", "no"))
    assert (errored.status, errored.error) == (T.ERRORED, {"code": "bad_input", "message": "no"})
    assert tasks.get(task.id).error == {"code": "bad_input", "message": "no"}


def test_one_active_task_per_owner(tasks: Any) -> None:
    first = tasks.create(owner="ann")
    with pytest.raises(ActiveRunError) as refused:
        tasks.create(owner="ann")
    assert refused.value.run_id == first.id
    tasks.fire(first.id, "error", Failure("gone", "x"))
    assert tasks.create(owner="ann").status is T.PENDING  # the group is free again


def test_abort_is_two_phase_as_declared(tasks: Any) -> None:
    waiting, held = tasks.create(owner="ann"), tasks.create(owner="bo")
    tasks.claim("w0")  # the oldest: ann's
    assert tasks.cancel(waiting.id).status is T.STOPPING  # a worker holds it: it confirms
    assert tasks.cancel(held.id).status is T.ABORTED  # nobody holds it: both steps at once
    assert [e for e, _ in history(tasks, held.id)][-2:] == ["task.stopping", "task.aborted"]
    assert tasks.fire(waiting.id, "halt", worker_id="w0").status is T.ABORTED
    with pytest.raises(InvalidTransitionError, match="Cannot abort task with status 'aborted'"):
        tasks.cancel(held.id)


def test_stalled_tasks_are_retried_then_lost_and_stopping_ones_halted(
    tasks: Any, clock: ManualClock
) -> None:
    flaky, stopping = tasks.create(owner="ann"), tasks.create(owner="bo")
    tasks.claim("w0")
    tasks.claim("w1")
    tasks.cancel(stopping.id)
    clock.advance(LEASE)
    recovered = {t.id: t.status for t in tasks.recover_stalled()}
    assert recovered == {flaky.id: T.PENDING, stopping.id: T.ABORTED}
    tasks.claim("w2")  # the second claim: max_attempts is 2
    clock.advance(LEASE)
    (lost_task,) = tasks.recover_stalled()
    assert (lost_task.status, lost_task.error) == (
        T.ERRORED,
        {"code": "lost", "message": "The task's worker stopped responding 2 times."},
    )


def test_a_heartbeat_keeps_the_lease(tasks: Any, clock: ManualClock) -> None:
    task = tasks.create(owner="ann")
    tasks.claim("w0")
    clock.advance(LEASE - 1)
    tasks.heartbeat(task.id, "w0")
    clock.advance(LEASE - 1)
    assert tasks.recover_stalled() == []
    tasks.fire(task.id, "finish", worker_id="w0")
    with pytest.raises(InvalidTransitionError, match="Cannot heartbeat task with status 'done'"):
        tasks.heartbeat(task.id, "w0")


def test_the_time_out_lapses_due_tasks(tasks: Any, clock: ManualClock) -> None:
    task = tasks.create(owner="ann")
    clock.advance(TTL)
    assert tasks.claim("w0") is None  # a due task is never started
    (lapsed,) = tasks.expire_due()
    assert (lapsed.id, lapsed.status, lapsed.expires_at) == (task.id, T.ERRORED, None)
    other, read = tasks.create(owner="bo"), tasks.create(owner="cy")
    clock.advance(TTL)
    assert tasks.fire(other.id, "lapse").status is T.ERRORED  # due: fired once, not twice
    assert [e for e, _ in history(tasks, other.id)] == [
        "task.created",
        "task.pending",
        "task.errored",
    ]
    assert tasks.get(read.id).status is T.ERRORED  # reading applies it too
    with pytest.raises(InvalidTransitionError, match="Cannot lapse task with status 'errored'"):
        tasks.fire(read.id, "lapse")


def test_listing_following_idempotency_and_pruning(
    tasks: Any, store: Store, clock: ManualClock
) -> None:
    made = [tasks.create(owner=f"o{i}") for i in range(3)]
    clock.advance(1)
    tasks.fire(made[0].id, "error", Failure("x", "y"))
    page = tasks.list(order="asc", limit=2)
    assert ([t.id for t in page.data], page.has_more) == ([m.id for m in made[:2]], True)
    assert [t.id for t in tasks.list(status="pending").data] == [made[2].id, made[1].id]
    assert [t.id for t in tasks.list(group="o1").data] == [made[1].id]
    with pytest.raises(ValidationError, match="Unknown status 'queued'"):
        tasks.list(status="queued")
    assert [e.event for e in followed(tasks, made[0].id)][-1] == "task.errored"
    again = tasks.create(owner="o9", idempotency_key="k1")
    assert tasks.create(owner="o9", idempotency_key="k1") == again
    with pytest.raises(IdempotencyError):
        tasks.create(owner="o8", idempotency_key="k1")
    clock.advance(100)
    assert tasks.prune(older_than=50) == 1
    with pytest.raises(ObjectNotFoundError):
        tasks.get(made[0].id)


def test_a_waiting_claim_wakes_for_a_new_task(tasks: Any) -> None:
    made: list[Any] = []
    timer = threading.Timer(0.05, lambda: made.append(tasks.create(owner="ann")))
    timer.start()
    claimed = tasks.claim("w0", wait=30)
    timer.join()
    assert claimed is not None and claimed.id == made[0].id and claimed.status is T.RUNNING


def test_runs_share_the_store_with_tasks(tasks: Any, store: Store, clock: ManualClock) -> None:
    runs = RunEngine(store, clock)
    run = runs.create(thread_id="t", assistant_id="a")
    task = tasks.create(owner="ann")
    assert tasks.claim("w0").id == task.id  # each kind claims its own
    assert runs.claim("w1").id == run.id
    assert set(store.stats(int(clock())).kinds) == {"run", "task"}
    assert runstate.mermaid("task").splitlines()[1] == "    [*] --> pending: create"


def test_a_lifecycle_tells_endpoints_of_the_statuses_it_names(store: Store) -> None:
    """``Definition.webhooks``: its events are "<object>.<status>", written by whatever
    write enters the status: here the claim's (on PostgreSQL, not the one-statement
    claim, which carries no outbox) and a finish."""
    import dataclasses
    import time

    told = dataclasses.replace(TASK, name="task-told", webhooks=frozenset({T.RUNNING, T.DONE}))
    declare(told)
    try:
        tasks = runstate.ObjectEngine(told, store)
        tasks.webhooks.add("http://127.0.0.1:1/x", secret="whsec_" + "QUFB" * 8)
        task = tasks.create(owner="ann")
        assert tasks.claim("w") is not None
        tasks.fire(task.id, "finish", worker_id="w")
        claimed = store.claim_deliveries(int(time.time()) + 10_000, 60, 10)  # type: ignore[attr-defined]
        assert sorted((d.type, d.object_id) for d in claimed) == [
            ("task.done", task.id),
            ("task.running", task.id),
        ]
    finally:
        undeclare("task-told")
