"""Expiry under a ManualClock: reading a due run expires it, and so does a sweep.

A run is due when the clock reaches its ``expires_at`` (``created_at + ttl``). Nothing
has to poll: any operation on a due run expires it first and is then refused as for any
expired run. ``RunEngine.expire_due()`` expires every due run in one sweep; its cost
follows the number of due runs, not the number stored.
"""

from __future__ import annotations

from _show import console, runs_table

from runstate import InvalidTransitionError, ManualClock, RunEngine, RunLifecycle


def main() -> None:
    clock = ManualClock(1_700_000_000)
    lifecycle = RunLifecycle(clock=clock, ttl=60)

    run = lifecycle.create(thread_id="thread_slow", assistant_id="asst_1")
    lifecycle.start(run)
    clock.advance(59)
    console.print(f"at +59s the run is {run.status.value}: not due yet")
    clock.advance(1)
    try:
        lifecycle.complete(run)  # too late: at +60s the run is due
    except InvalidTransitionError as exc:
        console.print(f"at +60s complete() finds it due: {exc.message}")
    console.print(
        f"status {run.status.value}, expires_at kept at +{run.expires_at - run.created_at}s"
    )

    engine = RunEngine(clock=clock, ttl=60)
    ids = [engine.create(thread_id=f"thread_{i}", assistant_id="asst_1").id for i in range(5)]
    engine.claim("worker-1")
    engine.complete(ids[0])  # finished in time: never expires
    clock.advance(60)
    expired = engine.expire_due()
    console.print(f"one sweep at +120s expired {len(expired)} of {len(ids)} runs")
    runs_table("runs after the sweep", [engine.get(i) for i in ids], start=1_700_000_000)


if __name__ == "__main__":
    main()
