"""A client that hangs up ends its stream's follower at once: nothing waits or polls for
it afterwards. The server runs in this process (uvicorn in a thread), so that the test
can count the followers waiting on the store's bell."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from servers import in_thread

from runstate.server import create_app

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def live() -> Iterator[tuple[str, object]]:
    app = create_app("memory://")  # no handler: nothing generates
    with in_thread(app) as base:
        yield base.removeprefix("http://"), app.state.service


def waiting(engines: object, key: str) -> int:
    bell = engines.responses.bell  # type: ignore[attr-defined]
    with bell._cond:
        return len(bell._waiters.get(key, ()))


def test_hanging_up_ends_the_follower(live: tuple[str, object]) -> None:
    address, engines = live
    with httpx.Client(base_url=f"http://{address}/v1") as http:
        response_id = http.post(
            "/responses", json={"model": "m", "input": "hi", "background": True}
        ).json()["id"]
    host, port = address.split(":")
    client = socket.create_connection((host, int(port)))
    client.sendall(
        f"GET /v1/responses/{response_id}?stream=true HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    )
    received = b""
    while b"event: response.queued" not in received:  # the stream is open, and idle now
        received += client.recv(65536)
    while waiting(engines, response_id) == 0:
        time.sleep(0.01)  # the follower now waits for a change (bounded by the timeout)
    client.close()  # the client hangs up
    while waiting(engines, response_id) != 0:
        time.sleep(0.01)  # ... and its follower is gone: this loop ends, or the test times out
