"""The example server in processes of its own, for the tests that drive it live."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

SERVER = Path(__file__).parent.parent / "examples" / "openai_server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Running:
    """A server process, its base URL, and the log it writes."""

    proc: subprocess.Popen[bytes]
    url: str
    log: IO[bytes]


@contextmanager
def server(*args: str, killed_ok: bool = False) -> Iterator[Running]:
    """One server process on a free port, ready when this yields; stopped (or found
    killed, with ``killed_ok``) afterwards, and its log free of tracebacks."""
    port = free_port()
    command = [sys.executable, "serve.py", "--port", str(port), "--poll-after-ms", "20", *args]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, cwd=SERVER, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 30
            while True:  # a readiness probe: the port accepts once uvicorn is up
                if proc.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"the server exited: {log.read().decode()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.05)
            yield Running(proc, f"http://127.0.0.1:{port}/v1", log)
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=15)
        log.seek(0)
        text = log.read()
        assert killed_ok or b"Traceback" not in text, text.decode()


@contextmanager
def executor(store: str) -> Iterator[subprocess.Popen[bytes]]:
    """The scripted executor in a process of its own, on ``store``."""
    proc = subprocess.Popen(
        [sys.executable, "scripted_executor.py", "--store", store],
        cwd=SERVER,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@contextmanager
def serve(*args: str, executor_store: str | None = None) -> Iterator[str]:
    """The server in its own process; with ``executor_store``, the scripted executor in
    another process on that store and none in the server."""
    with server(*args) as running:
        if executor_store is None:
            yield running.url
        else:
            with executor(executor_store):
                yield running.url
