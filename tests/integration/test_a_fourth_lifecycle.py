"""A fourth lifecycle is one declaration, its object model and a thin engine face: the
engine and every store serve it unchanged. Declared here, for the test only: a ``job``
that a worker claims, runs and finishes, with an immediate cancel and a time-out."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from runstate import InvalidTransitionError, ManualClock, RunEngine, Store
from runstate._definitions import (
    ACTIVE_OF,
    DEFINITIONS,
    ENVELOPES,
    GROUP_BY,
    KINDS,
    Definition,
    declare,
)
from runstate._engine import SyncFace
from runstate._lifecycle import Lifecycle, Transition
from runstate._model import Status

LEASE = 10
TIMEOUT = 100


class JobStatus(Status):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


J = JobStatus


@dataclass(slots=True)
class Job:
    """The object model: its fields, its public dict, and how a store rebuilds it."""

    KIND: ClassVar[str] = "job"
    id: str
    created_at: int
    status: JobStatus
    expires_at: int | None = None
    done_at: int | None = None

    object = "job"
    version = "job"

    @property
    def _fsm_state(self) -> str:
        return self.status.value

    @_fsm_state.setter
    def _fsm_state(self, value: str) -> None:
        self.status = JobStatus(value)

    def copy(self) -> Job:
        return Job(self.id, self.created_at, self.status, self.expires_at, self.done_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "job",
            "status": self.status.value,
            "created_at": self.created_at,
            "done_at": self.done_at,
        }

    @classmethod
    def _trusted(cls, data: dict[str, Any]) -> Job:
        return cls(data["id"], data["created_at"], JobStatus(data["status"]), None, data["done_at"])


#: The declaration: the whole of the lifecycle's rules.
JOB = Definition(
    name="job",
    object="job",
    model=Job,
    prefix="job",
    statuses=tuple(JobStatus),
    initial=J.QUEUED,
    active=frozenset({J.QUEUED, J.RUNNING}),
    leased=frozenset({J.RUNNING}),
    transitions=(
        ("start", (J.QUEUED,), J.RUNNING),
        ("finish", (J.RUNNING,), J.DONE),
        ("fail", (J.QUEUED, J.RUNNING), J.FAILED),
        ("cancel", (J.QUEUED, J.RUNNING), J.CANCELLED),
        ("requeue", (J.RUNNING,), J.QUEUED),
    ),
    stamps={J.DONE: "done_at"},
    clears={},
    ends_expiry=frozenset({J.DONE, J.FAILED, J.CANCELLED}),
    on_due=("fail", None),
    cancel="immediate",
    cancel_ended="refused",
    group_by=None,
)


class JobEngine(SyncFace[Job]):
    """The thin face: create and the named steps; the rest is the engine's."""

    def __init__(self, store: Store, clock: ManualClock) -> None:
        lifecycle = Lifecycle(JOB, clock, TIMEOUT, None)
        super().__init__(store, lifecycle, {"job": lifecycle}, lease_seconds=LEASE, max_attempts=2)
        self._ids = itertools.count()

    def create(self) -> Job:
        now = self.lifecycle.now()
        job = Job(f"job_{next(self._ids)}", now, J.QUEUED, now + TIMEOUT)
        steps = [Transition("job.created", None, J.QUEUED, now)]
        self._publish(job, steps, self.store.insert(job, steps), 0)
        return job

    def get(self, job_id: str) -> Job:
        return self._run(self._p_get(job_id))

    def finish(self, job_id: str, worker_id: str) -> Job:
        return self._run(self._p_apply(job_id, self._event("finish", worker_id=worker_id)))[0]

    def cancel(self, job_id: str) -> Job:
        return self._run(self._p_apply(job_id, self._cancelled))[0]

    def _fail_argument(self, code: str, message: str) -> Any:
        return None  # a job's fail takes no argument


@pytest.fixture
def jobs(store: Store, clock: ManualClock) -> Iterator[JobEngine]:
    declare(JOB)
    try:
        yield JobEngine(store, clock)
    finally:
        del DEFINITIONS["job"], KINDS["job"], ACTIVE_OF["job"], ENVELOPES["job"], GROUP_BY["job"]


def test_the_engine_and_every_store_serve_a_new_lifecycle(
    jobs: JobEngine, store: Store, clock: ManualClock
) -> None:
    runs = RunEngine(store, clock)  # the same store keeps runs beside the jobs
    run = runs.create(thread_id="t", assistant_id="a")
    first, second, third = jobs.create(), jobs.create(), jobs.create()
    claimed = jobs.claim("w1")
    assert claimed is not None and (claimed.id, claimed.status) == (first.id, J.RUNNING)
    clock.advance(1)
    done = jobs.finish(first.id, "w1")
    assert (done.status, done.done_at) == (J.DONE, clock())
    assert jobs.cancel(second.id).status is J.CANCELLED
    with pytest.raises(InvalidTransitionError, match="Cannot finish job with status 'cancelled'"):
        jobs.finish(second.id, "w1")
    with pytest.raises(InvalidTransitionError, match="Cannot cancel job with status 'done'"):
        jobs.cancel(first.id)  # declared: a cancel of an ended job is refused
    assert jobs.claim("w2") is not None  # the third
    clock.advance(LEASE)
    (requeued,) = jobs.recover_stalled()
    assert (requeued.id, requeued.status) == (third.id, J.QUEUED)
    clock.advance(TIMEOUT)
    (timed_out,) = jobs.expire_due()
    assert (timed_out.id, timed_out.status) == (third.id, J.FAILED)
    history = [(e.event, e.sequence_number) for e in jobs._run(jobs._p_history(third.id))]
    assert history == [
        ("job.created", 0),
        ("job.running", 1),
        ("job.queued", 2),
        ("job.failed", 3),
    ]
    assert [j.id for j in jobs._run(jobs._p_list(None, None, 10, "asc", None, None))[0]] == [
        first.id,
        second.id,
        third.id,
    ]
    assert runs.claim("w3") is not None and runs.get(run.id).status.value == "in_progress"
