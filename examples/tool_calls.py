"""Tool calls with the bare lifecycle: a run asks for two functions and resumes.

``RunLifecycle`` is the machine alone: the caller holds the ``Run`` and every method
changes it in place. The run asks for two function calls at once (parallel tool calls);
outputs are accepted only all together and only for exactly those call ids, so a
partial submission is refused with the public API's message and leaves the run as it was.
"""

from __future__ import annotations

import json

from _show import console, events_table

from runstate import ManualClock, RunEvent, RunLifecycle, ValidationError

FUNCTIONS = {"add": lambda a, b: a + b, "mul": lambda a, b: a * b}


def main() -> None:
    clock = ManualClock(1_700_000_000)
    lifecycle = RunLifecycle(clock=clock)
    events: list[RunEvent] = []
    lifecycle.subscribe(events.append)

    run = lifecycle.create(
        thread_id="thread_math",
        assistant_id="asst_calc",
        model="gpt-4o",
        tools=[{"type": "function", "function": {"name": name}} for name in FUNCTIONS],
    )
    lifecycle.start(run)
    lifecycle.require_action(
        run,
        [
            {"function": {"name": "add", "arguments": json.dumps({"a": 2, "b": 3})}},
            {"function": {"name": "mul", "arguments": json.dumps({"a": 4, "b": 5})}},
        ],
    )
    calls = run.pending_tool_calls
    console.print(f"{run.id} requires action: {[c['function']['name'] for c in calls]}")

    outputs = []
    for call in calls:
        function = FUNCTIONS[call["function"]["name"]]
        result = function(**json.loads(call["function"]["arguments"]))
        outputs.append({"tool_call_id": call["id"], "output": str(result)})

    try:
        lifecycle.submit_tool_outputs(run, outputs[:1])
    except ValidationError as exc:
        console.print(f"partial outputs refused: {exc.message}")
        console.print(
            f"the run is still {run.status.value}, waiting for {len(run.pending_tool_calls)} calls"
        )

    clock.advance(2)
    lifecycle.submit_tool_outputs(run, outputs)
    lifecycle.start(run)  # a worker resumes it: started_at is stamped again
    lifecycle.complete(run)
    console.print(
        f"outputs {[o['output'] for o in outputs]} accepted; the run is {run.status.value}"
    )
    events_table("events", events, start=run.created_at)


if __name__ == "__main__":
    main()
