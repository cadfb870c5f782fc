"""The example server in processes of its own, for the tests that drive it live."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SERVER = Path(__file__).parent.parent / "examples" / "openai_server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve(*args: str, executor_store: str | None = None) -> Iterator[str]:
    """The server in its own process; with ``executor_store``, the scripted executor in
    another process on that store and none in the server."""
    port = free_port()
    commands = [[sys.executable, "serve.py", "--port", str(port), "--poll-after-ms", "20", *args]]
    if executor_store is not None:
        commands.append([sys.executable, "scripted_executor.py", "--store", executor_store])
    with tempfile.TemporaryFile() as log:
        procs = [subprocess.Popen(c, cwd=SERVER, stdout=log, stderr=log) for c in commands]
        try:
            deadline = time.monotonic() + 30
            while True:  # a readiness probe: the port accepts once uvicorn is up
                if procs[0].poll() is not None:
                    log.seek(0)
                    pytest.fail(f"the server exited: {log.read().decode()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=15)
        log.seek(0)
        assert b"Traceback" not in log.read()
