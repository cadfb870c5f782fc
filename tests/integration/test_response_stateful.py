"""Random operations on background responses, against a reference model of the background response's rules
written here, independently of runstate's declaration: after every step, each stored
response has the status, the lease and the number of events the model says, and a
refused operation has changed nothing (but the time-out every operation applies first).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from tables import DELTA, OUTPUT

from runstate import (
    InvalidTransitionError,
    LeaseError,
    ManualClock,
    MemoryStore,
    ResponseEngine,
    ResponseNotFoundError,
    RunStateError,
    SQLiteStore,
)

TIMEOUT = 300
LEASE = 30
MAX_ATTEMPTS = 2
ACTIVE = {"queued", "in_progress"}
WORKERS = st.sampled_from([None, "w1", "w2"])


@dataclass
class Model:
    """What the rules say one response is now."""

    order: int
    background: bool
    deadline: int
    status: str
    events: int = 2
    owner: str | None = None
    lease_until: int = 0
    attempts: int = 0

    def end(self, status: str) -> None:
        self.status, self.owner, self.events = status, None, self.events + 1


class ResponseMachine(RuleBasedStateMachine):
    store_kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.folder = TemporaryDirectory()
        store = (
            MemoryStore()
            if self.store_kind == "memory"
            else SQLiteStore(Path(self.folder.name) / "runs.db")
        )
        self.clock = ManualClock(1_000)
        numbers = itertools.count()
        self.engine = ResponseEngine(
            store,
            self.clock,
            timeout=TIMEOUT,
            lease_seconds=LEASE,
            max_attempts=MAX_ATTEMPTS,
            id_factory=lambda prefix: f"{prefix}_{next(numbers):04d}",  # the same every run
        )
        self.models: dict[str, Model] = {}
        self.orders = itertools.count()  # creation order, the queue's

    def teardown(self) -> None:
        self.engine.close()
        self.folder.cleanup()

    # --- the model's rules -----------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock())

    def due(self, model: Model) -> bool:
        return model.status in ACTIVE and self.now() >= model.deadline

    def time_out(self, model: Model) -> None:
        """What every operation on one response does first."""
        if self.due(model):
            model.end("failed")

    def expect(self, response_id: str, operation: str, worker: str | None) -> type | None:
        """Apply ``operation`` to the model; the error the engine must raise, or None."""
        model = self.models[response_id]
        self.time_out(model)
        allowed = {
            "complete": {"in_progress"},
            "incomplete": {"in_progress"},
            "fail": ACTIVE,
            "append": {"in_progress"},
            "heartbeat": {"in_progress"},
        }
        if operation == "cancel":
            if not model.background:
                return InvalidTransitionError
            if model.status in ACTIVE:
                model.end("cancelled")
            return None
        if model.status not in allowed[operation]:
            return InvalidTransitionError
        if (worker is not None or operation == "heartbeat") and model.owner != worker:
            return LeaseError
        if operation == "append":
            model.events += 1
        elif operation == "heartbeat":
            model.lease_until = self.now() + LEASE
        else:
            model.end(
                {"complete": "completed", "incomplete": "incomplete", "fail": "failed"}[operation]
            )
        return None

    # --- the rules -------------------------------------------------------------------------------

    @rule(background=st.booleans())
    def create(self, background: bool) -> None:
        response = self.engine.create(model="m", input="hi", background=background)
        self.models[response.id] = Model(
            order=next(self.orders),
            background=background,
            deadline=self.now() + TIMEOUT,
            status="queued" if background else "in_progress",
        )

    @rule(worker=st.sampled_from(["w1", "w2"]))
    def claim(self, worker: str) -> None:
        waiting = [
            (m.order, i)
            for i, m in self.models.items()
            if m.status == "queued" and self.now() < m.deadline
        ]
        response = self.engine.claim(worker)
        if not waiting:
            assert response is None
            return
        expected = min(waiting)[1]
        assert response is not None and response.id == expected
        model = self.models[expected]
        model.status, model.owner, model.events = "in_progress", worker, model.events + 1
        model.lease_until, model.attempts = self.now() + LEASE, model.attempts + 1

    @precondition(lambda self: self.models)
    @rule(
        data=st.data(),
        operation=st.sampled_from(
            ["append"] * 3 + ["complete", "incomplete", "fail", "cancel", "heartbeat"]
        ),
        worker=WORKERS,
    )
    def operate(self, data: st.DataObject, operation: str, worker: str | None) -> None:
        response_id = data.draw(st.sampled_from(list(self.models)))
        if operation == "heartbeat":
            worker = worker or "w0"  # a heartbeat always names its worker
        error = self.expect(response_id, operation, worker)
        try:
            if operation == "append":
                self.engine.append(response_id, "response.progress", DELTA, worker_id=worker)
            elif operation == "complete":
                self.engine.complete(response_id, output=OUTPUT, worker_id=worker)
            elif operation == "incomplete":
                self.engine.incomplete(response_id, reason="max_output_tokens", worker_id=worker)
            elif operation == "fail":
                self.engine.fail(response_id, message="m", worker_id=worker)
            elif operation == "cancel":
                self.engine.cancel(response_id)
            else:
                self.engine.heartbeat(response_id, str(worker))
        except RunStateError as exc:
            assert error is not None and isinstance(exc, error), (operation, exc)
        else:
            assert error is None, (operation, error)

    @rule(seconds=st.integers(min_value=0, max_value=90))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def expire_due(self) -> None:
        expected = {i for i, m in self.models.items() if self.due(m)}
        assert {r.id for r in self.engine.expire_due()} == expected
        for response_id in expected:
            self.models[response_id].end("failed")

    @rule()
    def recover_stalled(self) -> None:
        recovered = {}
        for response_id, model in self.models.items():
            if model.owner is None or model.lease_until > self.now():
                continue
            if self.due(model):
                model.end("failed")  # timed out, and not among those recovered
            elif model.attempts >= MAX_ATTEMPTS:
                model.end("failed")
                recovered[response_id] = "failed"
            else:
                model.status, model.owner, model.events = "queued", None, model.events + 1
                recovered[response_id] = "queued"
        got = {r.id: r.status.value for r in self.engine.recover_stalled()}
        assert got == recovered

    @precondition(lambda self: self.models)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        response_id = data.draw(st.sampled_from(list(self.models)))
        assert self.engine.delete(response_id) is True
        del self.models[response_id]
        try:
            self.engine.get(response_id)
        except ResponseNotFoundError:
            return
        raise AssertionError("a deleted response was found")

    # --- the invariant ---------------------------------------------------------------------------

    @invariant()
    def the_store_agrees_with_the_model(self) -> None:
        for response_id, model in self.models.items():
            stored = self.engine.store.get(response_id)
            assert stored.obj.status.value == model.status, (response_id, model)
            assert stored.lease_owner == model.owner
            events = self.engine.events(response_id)
            assert [e.sequence_number for e in events] == list(range(model.events))
        # Read as stored (a listing through the engine would apply the time-outs).
        listed = self.engine.store.list_objects(None, kind="response", limit=100).items
        assert len(listed) == min(len(self.models), 100)


class SQLiteResponseMachine(ResponseMachine):
    store_kind = "sqlite"


ResponseMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None
)
SQLiteResponseMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None
)
TestResponsesOnMemory = ResponseMachine.TestCase
TestResponsesOnSQLite = SQLiteResponseMachine.TestCase
