"""The runstate command: diagram, runs, show, sweep, and its errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runstate import RunEngine, RunStatus, SQLiteStore, mermaid


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "runstate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_diagram_is_generated_from_the_machine() -> None:
    out = cli("diagram").stdout
    assert out == mermaid()
    lines = out.splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert "    [*] --> queued: create" in lines
    assert "    requires_action --> queued: submit_tool_outputs" in lines
    assert "    cancelling --> completed: complete" in lines
    for status in ("queued", "in_progress", "requires_action", "cancelling"):
        assert f"    {status} --> expired: expire" in lines
    for status in ("completed", "failed", "cancelled", "expired"):
        assert f"    {status} --> [*]" in lines
    assert len([line for line in lines if "-->" in line]) == 1 + 18 + 4


def test_diagram_of_each_lifecycle() -> None:
    from runstate._definitions import RUN_V2

    assert cli("diagram", "run").stdout == mermaid()
    assert cli("diagram", "run-v2").stdout == mermaid(RUN_V2)
    assert "    in_progress --> incomplete: incomplete" in cli("diagram", "run-v2").stdout
    assert cli("diagram", "nope", check=False).returncode == 2


def test_readme_embeds_the_current_diagram() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "```mermaid\n" + mermaid() + "```" in readme


@pytest.fixture
def db(tmp_path: Path) -> tuple[str, list[str]]:
    path = tmp_path / "runs.db"
    engine = RunEngine(SQLiteStore(path))
    ids = [engine.create(thread_id=f"thread_{i}", assistant_id="asst").id for i in range(3)]
    engine.claim("w")
    engine.complete(ids[0])
    engine.close()
    return f"sqlite:///{path}", ids


def rows(out: str) -> list[list[str]]:
    """Piped output: a header, then one tab-separated row per line."""
    header, *lines = out.splitlines()
    assert header.split("\t")[0] in ("id", "seq")
    return [line.split("\t") for line in lines]


def test_runs_piped_prints_whole_values_one_row_a_line(db: tuple[str, list[str]]) -> None:
    url, ids = db
    listed = rows(cli("runs", url).stdout)
    assert sorted(row[0] for row in listed) == sorted(ids)  # whole ids, not run_xuYP…
    assert {row[2] for row in listed} == {"completed", "queued"}
    created = listed[0][3]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created)  # ISO-8601 UTC
    assert [row[0] for row in rows(cli("runs", url, "--status", "queued").stdout)] == [
        ids[2],
        ids[1],
    ]
    assert [row[0] for row in rows(cli("runs", url, "--thread", "thread_1").stdout)] == [ids[1]]


def test_runs_json_is_the_public_list(db: tuple[str, list[str]]) -> None:
    url, ids = db
    listed = json.loads(cli("runs", url, "--json").stdout)
    assert listed["object"] == "list" and listed["has_more"] is False
    assert sorted(run["id"] for run in listed["data"]) == sorted(ids)
    assert all(isinstance(run["created_at"], int) for run in listed["data"])


def test_runs_on_a_terminal_is_a_table_that_never_cuts_an_id(
    db: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, ids = db
    script = tmp_path / "typescript"
    done = subprocess.run(  # a pseudo-terminal, 60 columns wide
        ["script", "-qec", f"{sys.executable} -m runstate runs {url}", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "60"},
    )
    assert done.returncode == 0, done.stderr
    assert "3 runs" in done.stdout
    assert all(run_id in done.stdout for run_id in ids)  # each whole, on one line


def test_show_json_is_the_public_run_and_its_history(db: tuple[str, list[str]]) -> None:
    url, ids = db
    shown = json.loads(cli("show", url, ids[0], "--json").stdout)
    assert shown["run"]["id"] == ids[0] and shown["run"]["object"] == "thread.run"
    assert [e["event"] for e in shown["history"]][-1] == "thread.run.completed"
    assert all(isinstance(e["at"], int) for e in shown["history"])
    assert [e["sequence_number"] for e in shown["history"]] == list(range(len(shown["history"])))


def test_show_prints_the_run_and_its_history(db: tuple[str, list[str]]) -> None:
    url, ids = db
    out = cli("show", url, ids[0]).stdout
    assert f'"id": "{ids[0]}"' in out
    for event in (
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.completed",
    ):
        assert event in out


def test_sweep_once(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    engine = RunEngine(SQLiteStore(path), clock=lambda: 1_000, ttl=5)
    run = engine.create(thread_id="t", assistant_id="a")
    engine.close()
    out = cli("sweep", f"sqlite:///{path}").stdout  # the real clock is far past 1_005
    assert "expired 1 runs, recovered 0 stalled runs" in out
    assert RunEngine(SQLiteStore(path)).store.get(run.id).run.status is RunStatus.EXPIRED


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sweep_every_stops_cleanly_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    path = tmp_path / "runs.db"
    RunEngine(SQLiteStore(path)).close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runstate", "sweep", f"sqlite:///{path}", "--every", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # it has swept once: it is running
    assert first.startswith("expired 0 runs")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "postgres//x"], "Not a store URL"),
        (["runs", "mysql://x"], "Unknown store scheme 'mysql'"),
        (["runs", "sqlite:///does/not/exist.db"], "No SQLite database at does/not/exist.db"),
        (["show", "memory://", "run_nope"], "No run or response found with id 'run_nope'."),
        (["sweep", "memory://", "--every", "0"], "Invalid '--every': expected a finite number"),
        (["sweep", "memory://", "--every", "inf"], "Invalid '--every': expected a finite number"),
        (["sweep", "memory://", "--every", "nan"], "Invalid '--every': expected a finite number"),
        (["runs", "postgresql://[::1/x"], "Not a PostgreSQL URL"),
        (["runs", "sqlite:///a\x01"], "No SQLite database at"),
        (["runs", "postgresql://someone:s3cret@127.0.0.1:1/db"], "cannot be used"),
        (["runs", "memory://", "--limit", "500"], "Invalid 'limit'"),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(args: list[str], message: str) -> None:
    done = cli(*args, check=False)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("runstate: error: ") and message in done.stderr
    assert "s3cret" not in done.stderr


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database at all, just some notes\n" * 100)
    done = cli("runs", f"sqlite:///{path}", check=False)
    assert done.returncode == 1 and "cannot be used" in done.stderr
    assert path.read_text().startswith("not a database")


def test_bad_usage_exits_2() -> None:
    assert cli("frobnicate", check=False).returncode == 2
    assert cli("runs", check=False).returncode == 2
