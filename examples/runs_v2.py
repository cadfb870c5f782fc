"""The second version of thread.run on SQLite: a run that stops at its token budget.

``RunEngine(..., version="v2")`` (or ``connect(url, version="v2")``) makes runs of the
final shape of the object: ``incomplete`` with ``incomplete_details``, ``usage``, and the
settings a run is created with (temperature, token budgets, truncation, tool choice,
response format), each checked as the public API checks it. A worker claims the run,
asks for a tool, gets its output back, and then runs out of completion tokens: the run
ends ``incomplete``, with the usage it reports. A second run completes with its usage.
The first version's runs live in the same file, unchanged.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from _show import console, events_table

from runstate import ManualClock, ValidationError, connect

T0 = 1_700_000_000


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    clock = ManualClock(T0)
    engine = connect(f"sqlite:///{folder / 'runs.db'}", clock=clock, version="v2")

    run = engine.create(
        thread_id="thread_budget",
        assistant_id="asst_1",
        model="gpt-4o",
        tools=[{"type": "function", "function": {"name": "lookup"}}],
        max_completion_tokens=256,
        truncation_strategy={"type": "last_messages", "last_messages": 10},
        tool_choice="auto",
        response_format={"type": "json_object"},
    )
    engine.claim("worker-1")
    clock.advance(2)
    asked = engine.require_action(
        run.id, [{"function": {"name": "lookup", "arguments": "{}"}}], worker_id="worker-1"
    )
    call = asked.pending_tool_calls[0]["id"]
    engine.submit_tool_outputs(run.id, [{"tool_call_id": call, "output": "42"}])
    engine.claim("worker-1")
    clock.advance(3)
    usage = {"prompt_tokens": 812, "completion_tokens": 256}
    stopped = engine.incomplete(
        run.id, reason="max_completion_tokens", usage=usage, worker_id="worker-1"
    )
    console.print(
        f"the run is {stopped.status.value}: {stopped.to_dict()['incomplete_details']}, "
        f"usage {json.dumps(stopped.to_dict()['usage'])}"
    )

    done = engine.create(thread_id="thread_ok", assistant_id="asst_1", temperature=0.2)
    engine.claim("worker-2")
    done = engine.complete(done.id, usage={"prompt_tokens": 20, "completion_tokens": 7})
    console.print(f"the second run is {done.status.value} with usage {done.to_dict()['usage']}")

    try:
        engine.create(thread_id="thread_bad", assistant_id="asst_1", temperature=3)
    except ValidationError as exc:
        console.print(f"refused: {exc.message}")

    v1 = connect(f"sqlite:///{folder / 'runs.db'}", clock=clock)
    seed = v1.create(thread_id="thread_seed", assistant_id="asst_1")
    console.print(
        f"the same file holds a {seed.version} run with file_ids={seed.to_dict()['file_ids']}"
        f" beside v2 runs read back as {v1.get(run.id).version}"
    )
    events_table("the budget run's events", engine.history(run.id), start=T0)
    engine.close()
    v1.close()


if __name__ == "__main__":
    main()
