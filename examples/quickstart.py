"""Quickstart: a small simulated assistants backend driving runs down every path.

A ``RunEngine`` on the in-memory store, a ``ManualClock`` so the story is repeatable,
and two "workers" that claim runs. Five runs on five threads:

- weather: the worker asks for a tool call, the caller submits the output, a second
  worker resumes the run and completes it;
- essay: the caller cancels while the worker is busy; the worker sees ``cancelling`` on
  its heartbeat and confirms the cancel;
- quota: the model provider refuses, the worker fails the run with
  ``rate_limit_exceeded``;
- forgotten: the worker asks for a tool call and nobody answers; the sweep expires it;
- stubborn: cancelled, but the worker finishes first: cancellation is a request.

It prints the runs with their timestamps and the stream of events, as the public
streaming API names them. Run it with ``make demo``.
"""

from __future__ import annotations

from _show import console, events_table, runs_table

from runstate import ManualClock, RunEngine, RunEvent, RunStateError

T0 = 1_700_000_000
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object"}},
}


def main() -> None:
    clock = ManualClock(T0)
    engine = RunEngine(clock=clock, ttl=600, lease_seconds=30)
    stream: list[RunEvent] = []
    engine.subscribe(stream.append)

    def create(thread: str, **kwargs: object) -> str:
        run = engine.create(thread_id=thread, assistant_id="asst_demo", model="gpt-4o", **kwargs)  # type: ignore[arg-type]
        clock.advance(1)
        return run.id

    weather = create("thread_weather", tools=[WEATHER_TOOL], metadata={"city": "Paris"})
    essay = create("thread_essay")
    quota = create("thread_quota")
    forgotten = create("thread_forgotten", tools=[WEATHER_TOOL])
    stubborn = create("thread_stubborn")

    # Workers claim in creation order: the oldest queued run first.
    run = engine.claim("worker-1")
    assert run is not None and run.id == weather
    clock.advance(2)
    engine.require_action(
        weather,
        [{"function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}],
        worker_id="worker-1",
    )
    for run_id in (essay, quota, forgotten, stubborn):
        assert (claimed := engine.claim("worker-2")) is not None and claimed.id == run_id

    clock.advance(3)
    engine.cancel(essay)  # the caller gives up on the essay
    engine.cancel(stubborn)
    engine.fail(quota, code="rate_limit_exceeded", message="Slow down.", worker_id="worker-2")
    engine.require_action(
        forgotten, [{"function": {"name": "get_weather", "arguments": "{}"}}], worker_id="worker-2"
    )
    engine.complete(stubborn, worker_id="worker-2")  # it had finished anyway

    clock.advance(4)
    seen = engine.heartbeat(essay, "worker-2")
    console.print(f"worker-2 heartbeats the essay and sees [bold]{seen.status.value}[/]: it stops.")
    engine.confirm_cancel(essay, worker_id="worker-2")

    call = engine.get(weather).pending_tool_calls[0]
    try:
        engine.submit_tool_outputs(weather, [{"tool_call_id": "call_wrong", "output": "?"}])
    except RunStateError as exc:
        console.print(f"A wrong tool output is refused ({exc.http_status}): {exc.message}")
    engine.submit_tool_outputs(weather, [{"tool_call_id": call["id"], "output": "18C, sunny"}])
    clock.advance(1)
    resumed = engine.claim("worker-1")
    assert resumed is not None and resumed.id == weather
    clock.advance(2)
    engine.complete(weather, worker_id="worker-1")

    clock.advance(600)  # nobody ever answers the forgotten tool call
    expired = engine.expire_due()
    console.print(f"The sweep expired {len(expired)} run(s).")

    try:
        engine.cancel(weather)
    except RunStateError as exc:
        console.print(f"Cancelling a finished run is refused ({exc.http_status}): {exc.message}")

    runs = [engine.get(i) for i in (weather, essay, quota, forgotten, stubborn)]
    runs_table("runs (times after T0)", runs, start=T0)
    events_table("the event stream", stream, start=T0)


if __name__ == "__main__":
    main()
