"""Load on the example OpenAI-compatible server: requests per second and latency.

Starts ``examples/openai_server/serve.py`` on a free loopback port, once on the in-memory
store and once on a SQLite file, and runs ``loadgen.run_load`` against each: creates,
polls and cancels from 8 client threads, 4,000 requests, every run then checked to end
in a terminal status. Run: ``.venv/bin/python bench/server.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples" / "openai_server")]

from loadgen import run_load  # noqa: E402
from test_openai_server import serve  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name, url in (("memory", "memory://"), ("sqlite", f"sqlite:///{folder}/runs.db")):
            with serve("--store", url, "--executors", "4") as base:
                report = run_load(base, requests=4000, clients=8)
            print(f"{name} store, 8 clients, 4 executor workers:")
            for line in report.lines():
                print("  " + line)
            assert report.server_errors == 0 and not report.unfinished


if __name__ == "__main__":
    main()
