"""Background creates against ``runstate serve``: requests per second.

Starts ``runstate serve`` on a free loopback port with no Workers (so
each request is the create alone: parse, check, store, answer), on the in-memory store
and on a SQLite file, and sends 2,000 ``POST /v1/responses`` with ``background: true``
from 4 client threads on kept-alive connections, after a warm-up round. The figure is
compared with the same script run on the code before a change (see docs/benchmarks.md).
Run: ``.venv/bin/python bench/creates.py``.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples" / "openai_server")]

from servers import serve  # noqa: E402

REQUESTS = 2000
CLIENTS = 4
BODY = {
    "model": "gpt-4o",
    "input": [{"role": "user", "content": "hi"}],
    "background": True,
}
FALLBACK_BODY = {
    "model": "gpt-4o",
    "input": [{"type": "message", "role": "user", "content": "hi"}],
    "background": True,
}


def rate(base: str, send: Callable[[httpx.Client], httpx.Response]) -> float:
    """Requests per second from ``CLIENTS`` threads sending ``REQUESTS`` in all."""
    each = REQUESTS // CLIENTS
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            for _ in range(each):
                answer = send(http)
                if answer.status_code >= 300:
                    failures.append(answer.text)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, first: {failures[0]}")
    return each * CLIENTS / elapsed


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name, url in {"memory": "memory://", "sqlite": f"sqlite:///{folder}/r.db"}.items():
            with serve(url, "--workers", "0") as base:
                # The most common body a client sends; the code before issue 18 refused
                # it, so it is measured with the same message spelled with its 'type'.
                probe = httpx.post(f"{base}/responses", json=BODY, timeout=30)
                body = BODY if probe.status_code == 200 else FALLBACK_BODY
                rate(base, lambda h, b=body: h.post("/responses", json=b))  # warm up
                creates = rate(base, lambda h, b=body: h.post("/responses", json=b))
            print(f"{name} store: {creates:,.0f} background creates/s ({CLIENTS} clients)")


if __name__ == "__main__":
    main()
