"""Webhooks: how fast one dispatcher sends, and what the outbox adds to an ending.

1. Deliveries per second from one dispatcher process (``runstate webhooks deliver``) on
   PostgreSQL to a local receiver (a minimal HTTP/1.1 server in a process of its own,
   which answers 204 and notes the time of each request). The floor is the same
   receiver sent the same number of signed POSTs, 8 at a time (the dispatcher's
   ``concurrency``), each on a kept-alive connection of its own, by httpx in this
   process with no store: the least that sending them can cost here. Rates are taken
   at the receiver, first request to last.
2. The cost an ending transition gains from the outbox: ``complete`` of a claimed
   response on PostgreSQL with 3 endpoints subscribed to ``response.completed``,
   against the same ``complete`` with no webhooks at all (the response lifecycle's told
   statuses emptied for the baseline: the write is then the plain one-statement step),
   back to back in each of 9 rounds of 300; the medians, and the median round's ratio.

Run: ``.venv/bin/python bench/webhooks.py``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from servers import RUNSTATE  # noqa: E402
from tables import OUTPUT, PG_BASE, pg_url  # noqa: E402

from runstate import ResponseEngine, ResponseStatus, Transition, Write, open_store  # noqa: E402
from runstate._definitions import WEBHOOKS_OF  # noqa: E402
from runstate._webhooks import Delivery, payload_of  # noqa: E402
from runstate.stores._postgres import SQL, WRITE_ONE_HOOKED, write_statement_for  # noqa: E402
from runstate.webhooks import sign  # noqa: E402

DELIVERIES = 5000
CONCURRENCY = 8  # the dispatcher's default: attempts in flight at once
ROUNDS = 9
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


# --- the receiver, in a process of its own ------------------------------------------------


async def receive(expected: int) -> None:
    """Answer 204 to every POST on a free port (printed first); print the first and the
    last request's times once ``expected`` have come."""
    times: list[float] = []
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                times.append(time.time())
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                if len(times) == expected:
                    done.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await done.wait()
    print(f"{times[0]} {times[-1]}", flush=True)
    os._exit(0)  # done: no teardown of the connections still open


class Receiver:
    def __init__(self, expected: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--receive", str(expected)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{self.proc.stdout.readline().strip()}/hooks"

    def rate(self, expected: int) -> float:
        """Requests per second, first to last, once all have come."""
        assert self.proc.stdout is not None
        first, last = map(float, self.proc.stdout.readline().split())
        self.proc.wait(timeout=60)
        return (expected - 1) / (last - first)


# --- 1. deliveries per second -------------------------------------------------------------


async def floor(url: str, count: int) -> None:
    """The same signed POSTs, ``CONCURRENCY`` at a time, each on a kept-alive connection
    of its own (a client of one connection each: the fastest way httpx sends them here),
    with no store."""
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    idle: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
    clients = [httpx.AsyncClient(limits=one) for _ in range(CONCURRENCY)]
    for client in clients:
        idle.put_nowait(client)

    async def post(i: int) -> None:
        d = Delivery(f"evt_{i:032x}", "we_1", url, SECRET, "response.completed", "r", 0, 1)
        body = payload_of(d)
        stamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": d.event_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(SECRET, d.event_id, stamp, body),
        }
        client = await idle.get()
        try:
            answer = await client.post(url, content=body, headers=headers)
        finally:
            idle.put_nowait(client)
        assert answer.status_code == 204

    await asyncio.gather(*(post(i) for i in range(count)))
    for client in clients:
        await client.aclose()


def deliveries_per_second(schema: str) -> tuple[float, float]:
    url = pg_url(schema)
    engine = ResponseEngine(open_store(url))
    receiver = Receiver(DELIVERIES)
    engine.webhooks.add(receiver.url, secret=SECRET, events=["response.completed"])
    for _ in range(DELIVERIES):  # the endings, before the dispatcher starts
        response = engine.create(model="m", input="hi")
        engine.claim("w")
        engine.complete(response.id, output=OUTPUT)
    assert engine.webhooks.stats().pending == DELIVERIES
    dispatcher = subprocess.Popen(
        [*RUNSTATE, "webhooks", "deliver", url, "--concurrency", str(CONCURRENCY)],
        stdout=subprocess.DEVNULL,
    )
    sent = receiver.rate(DELIVERIES)
    dispatcher.send_signal(signal.SIGTERM)
    dispatcher.wait(timeout=30)
    assert engine.webhooks.stats().pending == 0
    engine.close()
    receiver = Receiver(DELIVERIES)
    asyncio.run(floor(receiver.url, DELIVERIES))
    return sent, receiver.rate(DELIVERIES)


# --- 2. the cost added to an ending ---------------------------------------------------------


def per_ending(engine: ResponseEngine, count: int) -> float:
    ids = []
    for _ in range(count):
        response = engine.create(model="m", input="hi")
        engine.claim("w")
        ids.append(response.id)
    started = time.perf_counter()
    for response_id in ids:
        engine.complete(response_id, output=OUTPUT)
    return (time.perf_counter() - started) / count


def check_statements(engine: ResponseEngine, told: dict[str, str]) -> None:
    """That the two sides measure what they say: the baseline's ending is the plain
    one-statement step (``write_one``), the other the same statement with the outbox."""
    response = engine.create(model="m", input="hi")
    engine.claim("w")
    stored = engine.store.get(response.id)
    ended = stored.obj
    ended.status = ResponseStatus.COMPLETED
    step = Transition("complete", ResponseStatus.IN_PROGRESS, ResponseStatus.COMPLETED, 0)
    write = Write(ended, stored.version, [step])
    WEBHOOKS_OF["response"] = {}
    assert write_statement_for([write])[0] == SQL["write_one"]
    WEBHOOKS_OF["response"] = told
    assert write_statement_for([write])[0] == WRITE_ONE_HOOKED != SQL["write_one"]
    engine.complete(response.id, output=OUTPUT)


def ending_cost(schema: str) -> tuple[float, float, float]:
    """Median time per ending without and with webhooks, and the median of the rounds'
    ratios (each round measures both, back to back)."""
    engine = ResponseEngine(open_store(pg_url(schema)))
    for i in range(3):
        engine.webhooks.add(f"http://127.0.0.1:9/{i}", secret=SECRET, events=["response.completed"])
    told = dict(WEBHOOKS_OF["response"])
    check_statements(engine, told)
    plain: list[float] = []
    hooked: list[float] = []
    per_ending(engine, 200)  # warm the pool and the caches
    for _ in range(ROUNDS):
        WEBHOOKS_OF["response"] = {}  # no webhooks at all: the plain write
        plain.append(per_ending(engine, 300))
        WEBHOOKS_OF["response"] = told
        hooked.append(per_ending(engine, 300))
    assert engine.webhooks.stats().pending == (ROUNDS * 300 + 201) * 3
    engine.close()
    ratios = [h / p for p, h in zip(plain, hooked, strict=True)]
    return statistics.median(plain), statistics.median(hooked), statistics.median(ratios)


def main() -> None:
    with_schema = []
    for _ in range(2):
        name = "rs_bench_" + secrets.token_hex(6)
        with_schema.append(name)
    try:
        sent, most = deliveries_per_second(with_schema[0])
        print(
            f"1. one dispatcher process, PostgreSQL -> local receiver: {sent:,.0f} deliveries/s; "
            f"the floor (signed POSTs from httpx, no store): {most:,.0f}/s; "
            f"ratio {sent / most:.2f}"
        )
        plain, hooked, ratio = ending_cost(with_schema[1])
        print(
            f"2. complete() on PostgreSQL: {plain * 1e6:,.0f} µs without webhooks, "
            f"{hooked * 1e6:,.0f} µs with 3 endpoints subscribed (medians of {ROUNDS} "
            f"rounds); the median round's ratio: {ratio:.2f}x"
        )
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            for name in with_schema:
                conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--receive"]:
        asyncio.run(receive(int(sys.argv[2])))
    else:
        main()
