"""Random operation sequences and clock moves against a small reference model."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule
from tables import ROWS, ROWS_V2, USAGE

from runstate import InvalidTransitionError, ManualClock, Run, RunLifecycle, RunStateError

TTL = 300
ACTIVE = {"queued", "in_progress", "requires_action", "cancelling"}
TERMINAL_STAMP = {"completed": "completed_at", "failed": "failed_at", "cancelled": "cancelled_at"}
# The reference model's table, (event, from) -> to, read from the spec's rows (expiry
# is the model's own rule, below).
TABLES = {
    version: {
        (event, source.value): dest.value for event, source, dest in rows if event != "expire"
    }
    for version, rows in (("v1", ROWS), ("v2", ROWS_V2))
}
CALL = [{"id": "call_X", "type": "function", "function": {"name": "f", "arguments": "{}"}}]


class LifecycleMachine(RuleBasedStateMachine):
    """The first version's run (v1); ``LifecycleV2Machine`` below runs the same rules on v2."""

    version = "v1"
    runs = Bundle("runs")

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(1_000)
        self.lifecycle = RunLifecycle(clock=self.clock, ttl=TTL, version=self.version)
        self.table = TABLES[self.version]
        self.model: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, Run] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}

    def now(self) -> int:
        return int(self.clock())

    def expected_status(self, run_id: str) -> str:
        """The model's status after applying due expiry."""
        entry = self.model[run_id]
        if entry["status"] in ACTIVE and self.now() >= entry["expires_at"]:
            entry["status"] = "expired"
        return str(entry["status"])

    def record(self, run: Run) -> None:
        self.history[run.id].append(run.to_dict())
        assert not (
            run.status.is_active and run.expires_at is not None and self.now() >= run.expires_at
        )

    @rule(target=runs)
    def create(self) -> Run:
        run = self.lifecycle.create(thread_id="t", assistant_id="a")
        self.model[run.id] = {"status": "queued", "expires_at": self.now() + TTL}
        self.objects[run.id] = run
        self.history[run.id] = [run.to_dict()]
        return run

    @rule(seconds=st.integers(min_value=0, max_value=40))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(
        run=runs,
        event=st.sampled_from(
            [
                "start",
                "require_action",
                "submit_tool_outputs",
                "complete",
                "fail",
                "cancel",
                "confirm_cancel",
                "incomplete",  # v2's: v1 does not know it
            ]
        ),
        good_outputs=st.booleans(),
    )
    def operate(self, run: Run, event: str, good_outputs: bool) -> None:
        status = self.expected_status(run.id)
        target = self.table.get((event, status))
        outputs = [{"tool_call_id": "call_X" if good_outputs else "call_Y", "output": "o"}]
        before = run.to_dict()
        try:
            if event == "require_action":
                self.lifecycle.require_action(run, CALL)
            elif event == "submit_tool_outputs":
                self.lifecycle.submit_tool_outputs(run, outputs)
            elif event == "fail":
                self.lifecycle.fail(run, message="m")
            elif event == "incomplete":
                self.lifecycle.incomplete(run, reason="max_prompt_tokens", usage=USAGE)
            else:
                getattr(self.lifecycle, event)(run)
        except InvalidTransitionError:
            assert target is None
        except RunStateError as exc:
            unknown = event == "incomplete" and self.version == "v1"
            assert unknown or (event == "submit_tool_outputs" and not good_outputs)
            assert target is None if unknown else target is not None, exc
            if status != "expired":  # a due run is expired first, whatever comes next
                assert run.to_dict() == before
        else:
            assert target is not None
            self.model[run.id]["status"] = target
        assert run.status.value == self.model[run.id]["status"]
        self.record(run)

    @rule(run=runs)
    def check_expiry(self, run: Run) -> None:
        status = self.expected_status(run.id)
        self.lifecycle.check_expiry(run)
        assert run.status.value == status
        self.record(run)

    @rule(run=runs)
    def expire(self, run: Run) -> None:
        was_active = self.model[run.id]["status"] in ACTIVE
        status = self.expected_status(run.id)
        try:
            self.lifecycle.expire(run)
        except InvalidTransitionError:
            assert not (was_active and status == "expired")
        else:
            assert was_active and status == "expired"
        assert run.status.value == status
        self.record(run)

    @invariant()
    def fields_agree_with_status(self) -> None:
        for run in self.objects.values():
            status = run.status.value
            assert (run.required_action is not None) == (status == "requires_action")
            assert (run.last_error is not None) == (status == "failed")
            for terminal, stamp in TERMINAL_STAMP.items():
                assert (getattr(run, stamp) is not None) == (status == terminal)
            assert (run.expires_at is None) == (status in TERMINAL_STAMP or status == "incomplete")
            if self.version == "v2":
                details = run.to_dict()["incomplete_details"]
                assert (details is not None) == (status == "incomplete")

    @invariant()
    def terminal_is_absorbing_and_time_never_goes_back(self) -> None:
        for snapshots in self.history.values():
            for earlier, later in itertools.pairwise(snapshots):
                if earlier["status"] not in ACTIVE:
                    assert later["status"] == earlier["status"]
                    assert {k: v for k, v in later.items() if k != "metadata"} == {
                        k: v for k, v in earlier.items() if k != "metadata"
                    }
                for stamp in ("started_at", *TERMINAL_STAMP.values()):
                    if earlier[stamp] is not None and later[stamp] is not None:
                        assert later[stamp] >= earlier[stamp]
                    if stamp != "started_at" and earlier[stamp] is not None:
                        assert later[stamp] == earlier[stamp]  # set once
            for snapshot in snapshots:
                stamps = [snapshot[k] for k in ("started_at", *TERMINAL_STAMP.values())]
                assert all(s is None or s >= snapshot["created_at"] for s in stamps)


class LifecycleV2Machine(LifecycleMachine):
    version = "v2"


LifecycleMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None
)
LifecycleV2Machine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None
)
TestLifecycle = LifecycleMachine.TestCase
TestLifecycleV2 = LifecycleV2Machine.TestCase
