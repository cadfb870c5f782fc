"""Random engine operations on a store, with the invariants checked after every step:

- a thread never has two active runs;
- a refused operation leaves the stored run, its version and its history as they were;
- every run's history is a chain of legal transitions that ends in its stored status;
- a lease is held exactly while the run is in_progress or cancelling after a claim;
- a due active run is never returned as active.
"""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from tables import LEGAL_STEPS

from runstate import (
    ManualClock,
    MemoryStore,
    Run,
    RunEngine,
    RunStateError,
    RunStatus,
    SQLiteStore,
)

TTL = 200
LEASE = 30
THREADS = ["thread_a", "thread_b", "thread_c"]
CALL = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]


class EngineMachine(RuleBasedStateMachine):
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
        self.engine = RunEngine(
            store, clock=self.clock, ttl=TTL, lease_seconds=LEASE, max_attempts=2
        )
        self.ids: list[str] = []
        self.claimed: set[str] = set()  # runs a claim leased, while still in_progress/cancelling

    def teardown(self) -> None:
        self.engine.close()
        self.folder.cleanup()

    def snapshot(self, run_id: str) -> tuple[Any, ...]:
        stored = self.engine.store.get(run_id)
        return stored, [e.seq for e in self.engine.history(run_id)]

    def attempt(self, run_id: str, operation: str) -> Run | None:
        """Run one engine operation; on refusal, nothing stored may have changed (except
        an expiry, which every operation applies first)."""
        before = self.snapshot(run_id)
        was_due = self.due(before[0].obj)
        calls = {
            "start": lambda: self.engine.start(run_id),
            "require_action": lambda: self.engine.require_action(run_id, CALL),
            "submit": lambda: self.engine.submit_tool_outputs(
                run_id, [{"tool_call_id": "call_1", "output": "x"}]
            ),
            "complete": lambda: self.engine.complete(run_id),
            "fail": lambda: self.engine.fail(run_id, message="m"),
            "cancel": lambda: self.engine.cancel(run_id),
            "confirm_cancel": lambda: self.engine.confirm_cancel(run_id),
            "heartbeat": lambda: self.engine.heartbeat(run_id, "w"),
            "get": lambda: self.engine.get(run_id),
        }
        try:
            run = calls[operation]()
        except RunStateError:
            after = self.snapshot(run_id)
            if was_due:
                assert after[0].obj.status is RunStatus.EXPIRED
            else:
                assert after == before
            return None
        assert not self.due(run)
        return run

    def due(self, run: Run) -> bool:
        return (
            run.status.is_active and run.expires_at is not None and self.clock() >= run.expires_at
        )

    @rule(thread=st.sampled_from(THREADS))
    def create(self, thread: str) -> None:
        try:
            run = self.engine.create(thread_id=thread, assistant_id="a")
        except RunStateError:
            active = [r for r in self.engine.list(thread).data if r.status.is_active]
            assert len(active) == 1
            return
        self.ids.append(run.id)

    @precondition(lambda self: self.ids)
    @rule(
        data=st.data(),
        # Weighted towards the steps that move a run forward, so that deep paths are common.
        operation=st.sampled_from(
            ["start"] * 3
            + ["require_action", "submit"] * 3
            + ["complete", "heartbeat"] * 2
            + ["fail", "cancel", "confirm_cancel", "get"]
        ),
    )
    def operate(self, data: st.DataObject, operation: str) -> None:
        run_id = data.draw(st.sampled_from(self.ids[-3:]))  # mostly the live runs
        self.attempt(run_id, operation)

    @rule(status=st.sampled_from([RunStatus.REQUIRES_ACTION, RunStatus.CANCELLING]))
    def answer(self, status: RunStatus) -> None:
        """What a caller or a worker does next for a run that waits on it."""
        waiting = [i for i in self.ids if self.engine.store.get(i).obj.status is status]
        if waiting:
            operation = "submit" if status is RunStatus.REQUIRES_ACTION else "confirm_cancel"
            self.attempt(waiting[-1], operation)

    @rule()
    def claim(self) -> None:
        run = self.engine.claim("w")
        if run is not None:
            assert run.status is RunStatus.IN_PROGRESS
            assert self.engine.store.get(run.id).lease_owner == "w"
            self.claimed.add(run.id)

    @rule(seconds=st.integers(min_value=0, max_value=60))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def sweep(self) -> None:
        for run in self.engine.expire_due():
            assert run.status is RunStatus.EXPIRED
        for run in self.engine.recover_stalled():
            assert run.status in (RunStatus.QUEUED, RunStatus.FAILED, RunStatus.CANCELLED)

    @invariant()
    def one_active_run_per_thread(self) -> None:
        for thread in THREADS:
            stored = [
                self.engine.store.get(r.id).obj for r in self.engine.list(thread, limit=100).data
            ]
            assert sum(r.status.is_active for r in stored) <= 1

    @invariant()
    def histories_are_legal_chains(self) -> None:
        for run_id in self.ids:
            stored = self.engine.store.get(run_id)
            events = self.engine.history(run_id)
            status = "queued"
            for event in events[2:]:
                assert (event.from_status, event.to_status) in LEGAL_STEPS, event
                assert event.from_status == status
                status = event.to_status
            assert status == stored.obj.status.value
            leased = stored.lease_owner is not None
            assert not leased or stored.obj.status in (RunStatus.IN_PROGRESS, RunStatus.CANCELLING)

    @invariant()
    def a_lease_is_held_exactly_while_a_claimed_run_runs(self) -> None:
        for run_id in self.ids:
            stored = self.engine.store.get(run_id)
            if stored.obj.status not in (RunStatus.IN_PROGRESS, RunStatus.CANCELLING):
                self.claimed.discard(run_id)  # leaving those statuses ends the claim
            expected = "w" if run_id in self.claimed else None
            assert stored.lease_owner == expected, (run_id, stored)


class SQLiteEngineMachine(EngineMachine):
    store_kind = "sqlite"


EngineMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
SQLiteEngineMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None
)
TestEngineOnMemory = EngineMachine.TestCase
TestEngineOnSQLite = SQLiteEngineMachine.TestCase
