"""``runstate serve`` and workers in processes of their own, for the tests that drive
them live."""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

#: The example scripts that go with the server: a worker process and a load generator.
SERVER = Path(__file__).parent.parent / "examples" / "openai_server"
WORKER_SCRIPT = Path(__file__).parent / "worker_process.py"


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
def server(store: str = "memory://", *args: str, killed_ok: bool = False) -> Iterator[Running]:
    """``runstate serve store`` on a free port, ready when this yields (the demo model's
    Workers in it unless ``--workers 0``; sweeps every 0.25 s); stopped (or found killed,
    with ``killed_ok``) afterwards, and its log free of tracebacks."""
    port = free_port()
    command = [
        *RUNSTATE,
        "serve",
        store,
        "--port",
        str(port),
        "--poll-after-ms",
        "20",
        "--sweep-every",
        "0.25",
        "--shutdown-grace",
        "5",
        *args,
    ]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, stdout=log, stderr=log)
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


#: The ``runstate`` command, run by this Python.
RUNSTATE = [sys.executable, "-m", "runstate"]


@contextmanager
def worker_elsewhere(store: str) -> Iterator[subprocess.Popen[bytes]]:
    """The demo model's Workers in a process of their own, on ``store``
    (``examples/openai_server/worker.py``)."""
    proc = subprocess.Popen(
        [sys.executable, "worker.py", store],
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
def serve(store: str = "memory://", *args: str, executor: bool = False) -> Iterator[str]:
    """The server in its own process; with ``executor``, the demo model's Workers in
    another process on the same store and none in the server."""
    if executor:
        args = (*args, "--workers", "0")
    with server(store, *args) as running:
        if not executor:
            yield running.url
        else:
            with worker_elsewhere(store):
                yield running.url


class Process:
    """A worker process and the lines it prints."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def wait_for(self, prefix: str) -> str:
        """The next line starting with ``prefix`` (the test's timeout bounds the wait)."""
        while True:
            line = self.lines.get()
            self.seen.append(line)
            if line.startswith(prefix):
                return line


@contextmanager
def worker_process(url: str, kind: str, handler: str, *args: str) -> Iterator[Process]:
    """``tests/worker_process.py`` running a ``Worker`` on ``url``, ready when this yields."""
    proc = subprocess.Popen(
        [
            sys.executable,
            str(WORKER_SCRIPT),
            "--store",
            url,
            "--kind",
            kind,
            "--handler",
            handler,
            *args,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    running = Process(proc)
    try:
        running.wait_for("ready")
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()


def strict(response: Any) -> Any:
    """The response read with the SDK's model, strictly, with nothing it does not know
    but ``store``, which the public API echoes and this SDK's model leaves out."""
    from openai.types.responses import Response as ClientResponse

    ClientResponse.model_validate(
        response.model_dump(mode="json", exclude_unset=True, by_alias=True)
    )
    assert set(response.model_extra or {}) <= {"store"}
    return response


def poll(client: Any, response_id: str) -> Any:
    """Retrieve until the response has ended (bounded by the test's timeout), strictly."""
    while True:
        response = client.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress"):
            return strict(response)


@contextmanager
def in_thread(app: Any) -> Iterator[str]:
    """``app`` on uvicorn in a thread of this process, on a free port (its lifespan
    run), until the block ends; yields the base address ``http://127.0.0.1:port``."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    try:
        while not running.started:
            assert thread.is_alive(), "the server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        running.should_exit = True
        thread.join(timeout=30)
