"""A bounded load on the live server: no 5xx, and every run ends in one terminal status."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from servers import SERVER, serve
from tables import pg_url

sys.path.insert(0, str(SERVER))
from loadgen import run_load

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("store", ["memory", "sqlite", "postgres"])
def test_load_ends_every_run_without_server_errors(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = {
        "memory": lambda: "memory://",
        "sqlite": lambda: f"sqlite:///{tmp_path / 'runs.db'}",
        "postgres": lambda: pg_url(request.getfixturevalue("pg_schema")),
    }[store]()
    with serve(url, "--workers", "4") as base:
        report = run_load(base, requests=1500, clients=6)
    assert report.requests >= 1500 - 6  # each client stops when the shared budget runs out
    assert report.server_errors == 0, report.statuses
    assert set(report.statuses) <= {200, 400}, report.statuses
    for message in report.refusals:  # a cancel sent as the run ended: the public API's 400
        assert re.fullmatch(r"Cannot cancel run with status '(completed|cancelled)'\.", message)
    assert report.unfinished == []
    assert sum(report.final.values()) > 100
    assert set(report.final) <= {"completed", "cancelled"}
    assert report.final.get("cancelled", 0) > 0
