"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1, in a thread, that
records every request and answers as the test says (``answer(n)``: the status of the
n-th request, 1-based, or ``HANG`` to hold it until the test ends). What it received
is checked with the official client's ``webhooks.unwrap``."""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai

#: ``answer`` says: hold the request (the sender's time-out ends it).
HANG = -1


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int

    def unwrap(self, secret: str) -> Any:
        """The event, as the official client verifies and parses it (raises on a bad
        signature)."""
        client = openai.OpenAI(api_key="unused", webhook_secret=secret)
        return client.webhooks.unwrap(self.body, self.headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a dispatcher opens a connection per delivery of a batch


class Receiver:
    def __init__(self, answer: Callable[[int], int] = lambda n: 200) -> None:
        self.answer = answer
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # kept-alive connections, as a real receiver's

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    n = len(receiver.received) + 1
                    status = receiver.answer(n)
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.received.append(Received(headers, body, status))
                    receiver._arrived.notify_all()
                if status == HANG:
                    receiver._release.wait(30)
                    return
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """The requests once ``count`` have arrived (fails after ``timeout`` seconds)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"{len(self.received)} requests arrived, not {count}")
            return list(self.received)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def receiving(answer: Callable[[int], int] = lambda n: 200) -> Iterator[Receiver]:
    receiver = Receiver(answer).start()
    try:
        yield receiver
    finally:
        receiver.close()
