"""Every example is a program: each one runs to the end and says what it should."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
EXPECTED = {
    "quickstart.py": [
        "The sweep expired 1 run(s).",
        "Cannot cancel run with status 'completed'.",
        "rate_limit_exceeded: Slow down.",
        "thread.run.cancelled",
        "thread.run.expired",
    ],
    "tool_calls.py": [
        "partial outputs refused: Expected tool outputs for call_ids",
        "the run is completed",
    ],
    "expiry.py": ["Cannot complete run with status 'expired'.", "expired 4 of 5 runs"],
    "worker_pool.py": ["worker-0 exit code 1; runs recovered from it: 1"],
    "background_responses.py": [
        "completed: 'Hello!', usage total 6",
        "the late complete was refused: Cannot complete response with status 'cancelled'.",
        "a repeated cancel returns it cancelled, events 7 -> 7",
        "foreground cancel: 400 Only responses created with background=true can be cancelled.",
        "the sweep timed out 1: {'code': 'server_error', 'message': 'The response timed out.'}",
        "resuming resp_",
        'data: {"type":"response.output_text.delta","sequence_number":7,',
        'data: {"type":"response.output_text.done","sequence_number":8,',
        'data: {"type":"response.completed","sequence_number":11,"response":{',
        "input kept for the worker: 'Say hello'",
    ],
    "service.py": [
        "background: queued",
        "then: completed 'You said: Hi'",
        "foreground: completed 'You said: Hello'",
        "streamed deltas: ['You', ' said:', ' Streamed']",
    ],
    "gateway.py": [
        "background: queued",
        "then: completed 'You said: Hi'",
        "usage: 3 in, 3 out",
        "streamed deltas: ['You', ' said:', ' streamed']",
        "cancelled: cancelled",
        "the model server saw the gateway hang up: True",
    ],
    "webhooks.py": [
        "created: queued queued",
        "the receiver checked each signature with the official client",
        "received response.completed for the first",
        "received response.cancelled for the cancelled one",
    ],
    "runs_v2.py": [
        "the run is incomplete: {'reason': 'max_completion_tokens'}",
        '"total_tokens": 1068',
        "the second run is completed",
        "refused: Invalid 'temperature': expected a number from 0 to 2, got 3.",
        "the same file holds a v1 run with file_ids=[] beside v2 runs read back as v2",
        "thread.run.incomplete",
    ],
}


def run_example(path: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=path.parent,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "160", "PYTHONWARNINGS": "error"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_example_has_a_docstring_and_main(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), f"{path.name} needs a docstring saying what it shows"
    assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str) -> None:
    out = " ".join(run_example(EXAMPLES / name).split())
    for text in EXPECTED[name]:
        assert " ".join(text.split()) in out


def test_every_example_is_covered() -> None:
    assert {p.name for p in SCRIPTS} == set(EXPECTED)


def test_worker_pool_ends_every_run() -> None:
    out = run_example(EXAMPLES / "worker_pool.py", "--runs", "30")
    match = re.search(r"outcome: (\d+) cancelled, (\d+) completed\n", out)
    assert match, out
    cancelled, completed = int(match[1]), int(match[2])
    assert cancelled + completed == 30  # nothing failed, expired or was left active
    assert cancelled >= 1


@pytest.mark.parametrize("path", sorted((EXAMPLES.parent / "bench").glob("*.py")), ids=str)
def test_bench_scripts_import(path: Path) -> None:
    """The bench scripts are not run here (they time things), but they must load: a
    module they import that moved would otherwise go unnoticed until someone measures."""
    done = subprocess.run(
        [sys.executable, "-c", f"import runpy; runpy.run_path({str(path)!r}, run_name='bench')"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=path.parent,
    )
    assert done.returncode == 0, done.stderr
