"""Load on ``runstate serve`` (the demo model): requests per second and latency.

Starts ``runstate serve`` on a free loopback port, once on the
in-memory store, once on a SQLite file and once on PostgreSQL, and runs
``loadgen.run_load`` against each: creates, polls and cancels from 8 client threads,
4,000 requests, every run then checked to end in a terminal status.
Run: ``.venv/bin/python bench/server.py``.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples" / "openai_server")]

import psycopg  # noqa: E402
from conftest import PG_BASE  # noqa: E402
from loadgen import run_load  # noqa: E402
from servers import serve  # noqa: E402


def main() -> None:
    schema = "bench_server_" + secrets.token_hex(4)
    stores = {
        "memory": "memory://",
        "sqlite": "sqlite:///{folder}/runs.db",
        "postgres": f"{PG_BASE}?schema={schema}",
    }
    try:
        with tempfile.TemporaryDirectory() as folder:
            for name, url in stores.items():
                # Four jobs of each kind at once, as the executor it replaced ran.
                options = ("--workers", "1", "--concurrency", "4")
                with serve(url.format(folder=folder), *options) as base:
                    report = run_load(base, requests=4000, clients=8)
                print(f"{name} store, 8 clients, a Worker of 4 jobs for each kind:")
                for line in report.lines():
                    print("  " + line)
                assert report.server_errors == 0 and not report.unfinished
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    main()
