"""What metrics and traces cost: a full run on the memory store, with and without
``runstate.telemetry.instrument``, in this one process, interleaved, best of several
rounds.

- not instrumented: what every engine pays (one attribute check per operation, and
  nothing of OpenTelemetry imported); measured against the same engine before any
  telemetry existed is not possible in one process, so this is the baseline;
- instrumented with the OpenTelemetry API and no SDK (the API's no-op providers);
- instrumented with the SDK: a ``TracerProvider`` whose spans go nowhere (no processor)
  and a ``MeterProvider`` with an in-memory reader: the recording itself.

A full run is create, claim, require_action, submit_tool_outputs, claim, complete.
Run: ``.venv/bin/python bench/telemetry.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from store import full_runs

from runstate import ManualClock, RunEngine

N = 400


def main() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    from runstate.telemetry import instrument

    def plain() -> RunEngine:
        return RunEngine(clock=ManualClock(1_700_000_000), ttl=10**9)

    def api_only() -> RunEngine:
        engine = plain()
        instrument(engine)  # no SDK configured: the API's no-op providers
        return engine

    def sdk() -> RunEngine:
        engine = plain()
        meter = MeterProvider([InMemoryMetricReader()])
        instrument(engine, tracer_provider=TracerProvider(), meter_provider=meter)
        return engine

    variants: dict[str, Callable[[], RunEngine]] = {
        "not instrumented": plain,
        "instrumented, API only": api_only,
        "instrumented, SDK": sdk,
    }
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(7):
        for name, make in variants.items():
            best[name] = min(best[name], full_runs(make(), N))
    base = best["not instrumented"]
    print(f"one full run on RunEngine() (6 operations), best of 7 interleaved rounds of {N}")
    for name, value in best.items():
        print(f"   {name:<24}{value * 1e6:8.1f} us/run  {value / base:5.2f}x")


if __name__ == "__main__":
    main()
