"""The gateway at model speed: ``UpstreamHandler`` in front of a stub model server.

The stub (``tests/upstream_stub.py``, in a process of its own, on uvicorn) streams chat
completion chunks at a fixed rate, each word the time it was due. This process runs the
gateway: ``Worker`` with an ``UpstreamHandler`` on an ``AsyncResponseEngine``.

1. Load: ``--streams`` background responses at once (200) x ``--rate`` deltas/s each
   (50) for ``--seconds`` (5), on PostgreSQL and on a SQLite file, with the writes
   batched (``GroupCommit``, as the server makes them) and with one write per delta,
   side by side. For each: the deltas stored per second, the delay each delta gains
   (from when the stub was due to send it to when it is stored, so a gateway that falls
   behind is charged for all of it), this process's CPU per 1,000 deltas, and the
   transactions written.
2. Time to first token: the official client streaming a one-word answer from the stub
   directly (``/chat/completions``), against the same through ``runstate serve
   --upstream`` (a foreground streamed response on a SQLite file), alternated, 100 each.
3. Cancel to disconnect: a background response whose upstream stalls is cancelled; the
   stub notes when its client went away (one machine, one monotonic clock), 50 times.

Run: ``.venv/bin/python bench/gateway.py`` (``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

import openai  # noqa: E402
import psycopg  # noqa: E402
from servers import free_port, serve  # noqa: E402
from tables import PG_BASE, pg_url  # noqa: E402

from runstate import AsyncResponseEngine, Worker, open_store_async  # noqa: E402
from runstate.stores import GroupCommit  # noqa: E402
from runstate.upstream import UpstreamHandler  # noqa: E402

STUB = (
    "import sys; sys.path.insert(0, {tests!r}); import uvicorn; "
    "from upstream_stub import Stub; "
    "uvicorn.run(Stub(apis=('chat',)), host='127.0.0.1', port={port}, log_level='error', "
    "backlog=4096)"
)


@contextlib.contextmanager
def stub_process() -> Iterator[str]:
    port = free_port()
    code = STUB.format(tests=str(ROOT / "tests"), port=port)
    proc = subprocess.Popen([sys.executable, "-c", code])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(500):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(base + "/stub/gone", timeout=1).read()
                break
            time.sleep(0.02)
        yield base + "/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(
    url: str, upstream: str, *, batched: bool, streams: int, rate: int, seconds: float
) -> dict[str, Any]:
    """``streams`` responses through the gateway at once; what storing their deltas cost."""
    store = await open_store_async(url)
    wrapped = GroupCommit(store) if batched else store
    engine = AsyncResponseEngine(wrapped, lease_seconds=60)
    delays: list[float] = []

    def heard(event: Any) -> None:
        if event.event == "response.output_text.delta":
            delays.append(time.monotonic() - int(event.data["delta"]) / 1e9)

    engine.subscribe(heard)
    handler = UpstreamHandler(upstream, api="chat", timeout=120, max_retries=0)
    model = f"clock:words={int(rate * seconds)},delay={1 / rate}"
    ids = [
        (await engine.create(model=model, input="Hi", background=True)).id for _ in range(streams)
    ]
    cpu, wall = time.process_time(), time.monotonic()
    async with Worker(engine, handler, concurrency=streams) as worker:
        while sum(worker.ended.values()) < streams:
            await asyncio.sleep(0.05)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    statuses = {(await engine.get(i)).status.value for i in ids}
    await handler.aclose()
    await engine.close()
    expected = streams * int(rate * seconds)
    return {
        "deltas": len(delays),
        "complete": len(delays) == expected and statuses == {"completed"},
        "per_s": len(delays) / wall,
        "p50_ms": 1000 * quantile(delays, 0.5),
        "p99_ms": 1000 * quantile(delays, 0.99),
        "cpu_ms_per_1000": 1000 * cpu / len(delays) * 1000,
        "transactions": wrapped.batches if batched else len(delays),
        "wall_s": wall,
    }


def ttft(upstream: str, gateway: str, rounds: int) -> tuple[list[float], list[float]]:
    direct = openai.OpenAI(base_url=upstream, api_key="unused", max_retries=0)
    through = openai.OpenAI(base_url=gateway, api_key="unused", max_retries=0)
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(rounds + 5):
        start = time.perf_counter()
        with direct.chat.completions.create(
            model="text:words=1", messages=[{"role": "user", "content": "Hi"}], stream=True
        ) as chunks:
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    if i >= 5:  # the first few warm up connections
                        times[0].append(time.perf_counter() - start)
                    break
        start = time.perf_counter()
        with through.responses.create(model="text:words=1", input="Hi", stream=True) as events:
            for event in events:
                if event.type == "response.output_text.delta":
                    if i >= 5:
                        times[1].append(time.perf_counter() - start)
                    break
    direct.close()
    through.close()
    return times


def cancels(upstream: str, gateway: str, rounds: int) -> list[float]:
    client = openai.OpenAI(base_url=gateway, api_key="unused", max_retries=0)
    stub_root = upstream.removesuffix("/v1")
    lags = []
    for _ in range(rounds):
        before = len(json.loads(urllib.request.urlopen(stub_root + "/stub/gone").read()))
        created = client.responses.create(model="stall", input="Hi", background=True)
        while client.responses.retrieve(created.id).status != "in_progress":
            time.sleep(0.005)
        time.sleep(0.05)  # the upstream request is open
        start = time.monotonic()
        client.responses.cancel(created.id)
        while True:
            gone = json.loads(urllib.request.urlopen(stub_root + "/stub/gone").read())
            if len(gone) > before:
                lags.append(gone[-1] - start)
                break
            time.sleep(0.002)
    client.close()
    return lags


def loads(args: argparse.Namespace, upstream: str, schema: str, tmp: str) -> None:
    print(
        f"1. {args.streams} streams x {args.rate} deltas/s for {args.seconds:g} s "
        f"(target: {args.streams * args.rate:,} deltas/s)"
    )
    print(
        f"   {'store':<11} {'writes':<15} {'deltas/s':>9} {'p50 ms':>7} {'p99 ms':>8} "
        f"{'CPU ms/1000':>12} {'transactions':>13}  all stored"
    )
    for name in ("postgresql", "sqlite"):
        for batched in (True, False):
            url = pg_url(schema) if name == "postgresql" else f"sqlite:///{tmp}/g{batched}.db"
            r = asyncio.run(
                load(
                    url,
                    upstream,
                    batched=batched,
                    streams=args.streams,
                    rate=args.rate,
                    seconds=args.seconds,
                )
            )
            how = "batched" if batched else "one per delta"
            print(
                f"   {name:<11} {how:<15} {r['per_s']:>9,.0f} {r['p50_ms']:>7.1f} "
                f"{r['p99_ms']:>8.1f} {r['cpu_ms_per_1000']:>12.0f} "
                f"{r['transactions']:>13,}  {r['complete']}"
            )


def through_serve(args: argparse.Namespace, upstream: str, tmp: str) -> None:
    with serve(
        f"sqlite:///{tmp}/serve.db", "--upstream", upstream, "--upstream-api", "chat"
    ) as gateway:
        if "2" in args.parts:
            rounds = 20 if args.quick else 100
            direct, through = ttft(upstream, gateway, rounds)
            p50d, p50g = statistics.median(direct), statistics.median(through)
            print(
                f"2. time to first token, {rounds} each: direct p50 {1000 * p50d:.1f} ms, "
                f"through the gateway p50 {1000 * p50g:.1f} ms: "
                f"{1000 * (p50g - p50d):.1f} ms added (target <= 10); p99 "
                f"{1000 * quantile(direct, 0.99):.1f} / {1000 * quantile(through, 0.99):.1f} ms"
            )
        if "3" in args.parts:
            lags = cancels(upstream, gateway, 10 if args.quick else 50)
            print(
                f"3. cancel to upstream disconnect, {len(lags)} times: p50 "
                f"{1000 * statistics.median(lags):.1f} ms, p99 "
                f"{1000 * quantile(lags, 0.99):.1f} ms (target <= 100)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="20 streams for 1 s, fewer rounds")
    parser.add_argument("--parts", default="1,2,3", help="which parts to run (default 1,2,3)")
    args = parser.parse_args()
    if args.quick:
        args.streams, args.seconds = 20, 1.0
    schema = "bench_gateway_" + secrets.token_hex(4)
    with tempfile.TemporaryDirectory() as tmp, stub_process() as upstream:
        try:
            if "1" in args.parts:
                loads(args, upstream, schema, tmp)
            if "2" in args.parts or "3" in args.parts:
                through_serve(args, upstream, tmp)
        finally:
            with psycopg.connect(PG_BASE, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    main()
