"""The runstate command: diagram, runs, show, sweep, and its errors."""

from __future__ import annotations

import os
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


def test_readme_embeds_the_current_diagram() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
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


def test_runs_lists_a_table(db: tuple[str, list[str]]) -> None:
    url, ids = db
    out = cli("runs", url).stdout
    assert all(run_id in out for run_id in ids)
    assert "3 runs" in out and "completed" in out
    out = cli("runs", url, "--status", "queued").stdout
    assert "2 runs" in out and ids[0] not in out
    out = cli("runs", url, "--thread", "thread_1").stdout
    assert "1 runs" in out and ids[1] in out


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
        (["show", "memory://", "run_nope"], "No run found with id 'run_nope'."),
        (["sweep", "memory://", "--every", "0"], "--every must be a positive number"),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(args: list[str], message: str) -> None:
    done = cli(*args, check=False)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("runstate: error: ") and message in done.stderr


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database at all, just some notes\n" * 100)
    done = cli("runs", f"sqlite:///{path}", check=False)
    assert done.returncode == 1 and "cannot be used" in done.stderr
    assert path.read_text().startswith("not a database")


def test_bad_usage_exits_2() -> None:
    assert cli("frobnicate", check=False).returncode == 2
    assert cli("runs", check=False).returncode == 2
