"""How fast is a run's lifecycle through RunLifecycle, against what it is built from?

One full run is create, start, require_action, submit_tool_outputs, start, complete.
It is timed four ways in this one process, best of several rounds each:

- floor: a plain dict transition table on a dict run (no library at all);
- bare transitions: the same events fired on one shared model-less ``transitions.Machine``;
- RunLifecycle: runstate, with validation, stamps, expiry checks and events;
- Machine per run: the naive ``transitions`` use, a new Machine for every run;
- python-statemachine: the same table declared on ``statemachine.StateMachine``, one
  machine per run as that library binds a machine to its object (its idiomatic use), and,
  to be fair to it, the same five events on machines made before the clock starts.

Then memory per run (tracemalloc) for runs held by the caller. Run: ``make bench`` or
``.venv/bin/python bench/lifecycle.py``. Targets: RunLifecycle within 1.3x of bare
transitions, at least 2x faster than Machine per run, at least 10x faster than
python-statemachine, at most 2 KB per run.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from transitions import Machine

from runstate import RunEngine, RunLifecycle, RunStatus
from runstate._definitions import RUN_V1
from runstate._model import new_id

CALLS = [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]
OUTPUTS = [{"tool_call_id": "call_1", "output": "42"}]
EVENTS = ("start", "require_action", "submit_tool_outputs", "start", "complete")
TERMINAL = {s.value for s in RUN_V1.terminal}
STATES = [s.value for s in RunStatus]
TABLE = [
    {"trigger": e, "source": [s.value for s in sources], "dest": d.value}
    for e, sources, d in RUN_V1.transitions
]


def floor(n: int) -> None:
    table = {(s.value, e): d.value for e, sources, d in RUN_V1.transitions for s in sources}
    for i in range(n):
        run = {"id": i, "status": "queued", "created_at": 0}
        for event in EVENTS:
            run["status"] = table[(run["status"], event)]


class Model:
    __slots__ = ("state",)


def bare_transitions(n: int) -> None:
    machine = Machine(
        model=None, states=STATES, transitions=TABLE, initial=None, auto_transitions=False
    )
    events = [machine.events[e] for e in EVENTS]
    for _ in range(n):
        run = Model()
        run.state = "queued"
        for event in events:
            event.trigger(run)


class AttachedModel:
    """The naive model: transitions adds a trigger method per event to it."""


def machine_per_run(n: int) -> None:
    for _ in range(n):
        run = AttachedModel()
        Machine(
            model=run, states=STATES, transitions=TABLE, initial="queued", auto_transitions=False
        )
        for event in EVENTS:
            getattr(run, event)()


def statemachine_class() -> type[Any]:
    """RUN_V1's table declared on python-statemachine."""
    from statemachine import State, StateMachine

    states = {
        s.value: State(initial=s.value == "queued", final=s.value in TERMINAL)
        for s in RUN_V1.statuses
    }
    events: dict[str, Any] = {}
    for event, sources, dest in RUN_V1.transitions:
        for source in sources:
            step = states[source.value].to(states[dest.value])
            events[event] = step if event not in events else events[event] | step
    return type("RunMachine", (StateMachine,), {**states, **events})


def statemachine_per_run(n: int) -> None:
    machine = STATEMACHINE
    for _ in range(n):
        run = machine()
        for event in EVENTS:
            run.send(event)


def statemachine_events_only(n: int) -> float:
    """The five events alone (the machines are made before the clock starts): seconds."""
    machine = STATEMACHINE
    runs = [machine() for _ in range(n)]
    t = time.perf_counter()
    for run in runs:
        for event in EVENTS:
            run.send(event)
    return time.perf_counter() - t


def runstate_engine(n: int) -> None:
    """The same run through ``RunEngine()``: the engine on its embedded memory store."""
    engine = RunEngine()
    for _ in range(n):
        run = engine.create(thread_id=new_id("thread"), assistant_id="asst_1", model="gpt-4o")
        engine.start(run.id)
        engine.require_action(run.id, CALLS)
        engine.submit_tool_outputs(run.id, OUTPUTS)
        engine.start(run.id)
        engine.complete(run.id)


def runstate_lifecycle(n: int) -> None:
    lifecycle = RunLifecycle()
    for _ in range(n):
        run = lifecycle.create(thread_id="thread_1", assistant_id="asst_1", model="gpt-4o")
        lifecycle.start(run)
        lifecycle.require_action(run, CALLS)
        lifecycle.submit_tool_outputs(run, OUTPUTS)
        lifecycle.start(run)
        lifecycle.complete(run)


def best_of(fns: dict[str, tuple[Callable[[int], Any], int]], rounds: int = 7) -> dict[str, float]:
    """Seconds per run for each function, the best of ``rounds``; the rounds interleave
    the functions so that a slow moment of the machine hits them all alike. A function
    that returns a number has timed itself (the part that counts), in seconds."""
    for fn, n in fns.values():
        fn(n // 10)  # warm up
    results = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, (fn, n) in fns.items():
            t = time.perf_counter()
            timed = fn(n)
            elapsed = timed if timed is not None else time.perf_counter() - t
            results[name] = min(results[name], elapsed / n)
    return results


def bytes_per_run(n: int = 10_000) -> float:
    lifecycle = RunLifecycle()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    runs = [
        lifecycle.create(thread_id=f"thread_{i}", assistant_id="asst_1", model="gpt-4o")
        for i in range(n)
    ]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    del runs
    return size / n


STATEMACHINE = statemachine_class()


def main() -> None:
    n = 5_000
    results = best_of(
        {
            "floor (dict table)": (floor, n),
            "bare transitions": (bare_transitions, n),
            "RunLifecycle": (runstate_lifecycle, n),
            "RunEngine() (memory)": (runstate_engine, n // 5),
            "Machine per run": (machine_per_run, n // 5),
            "python-statemachine": (statemachine_per_run, n // 10),
            "  its events alone": (statemachine_events_only, n // 10),
        }
    )
    ours = results["RunLifecycle"]
    print(f"one full run (create + 5 events), best of 7 interleaved rounds, n={n}")
    for name, seconds in results.items():
        print(
            f"  {name:<20} {seconds * 1e6:8.1f} us/run  RunLifecycle / this = {ours / seconds:6.2f}"
        )
    vs_bare = ours / results["bare transitions"]
    speedup = results["Machine per run"] / ours
    size = bytes_per_run()
    engine = results["RunEngine() (memory)"] / ours
    peer = results["python-statemachine"] / ours
    events_only = results["  its events alone"] / ours
    print(f"RunLifecycle vs bare transitions: {vs_bare:.2f}x (target <= 1.3x)")
    print(f"RunLifecycle vs Machine per run:  {speedup:.2f}x faster (target >= 2x)")
    print(f"RunEngine() vs RunLifecycle:      {engine:.2f}x (target <= 2x)")
    print(
        f"RunLifecycle vs python-statemachine: {peer:.1f}x faster (target >= 10x); "
        f"{events_only:.1f}x against its events alone"
    )
    print(f"memory per run: {size:.0f} bytes (target <= 2048)")


if __name__ == "__main__":
    main()
