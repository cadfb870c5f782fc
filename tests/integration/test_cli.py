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

from runstate import ResponseEngine, RunEngine, RunStatus, SQLiteStore, mermaid


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
    assert cli("diagram", "run").stdout == mermaid()
    assert cli("diagram", "run-v2").stdout == mermaid("run-v2")
    assert cli("diagram", "response").stdout == mermaid("response")
    assert "    in_progress --> incomplete: incomplete" in cli("diagram", "run-v2").stdout
    assert cli("diagram", "nope", check=False).returncode == 2


def test_readme_python_examples_run(tmp_path: Path) -> None:
    """Each README snippet that uses runstate alone runs as written (in a fresh folder:
    they open sqlite:///runs.db)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    codes = [block.split("```")[0] for block in readme.split("```python\n")[1:]]
    blocks = [c for c in codes if "from runstate import" in c and "runstate.server" not in c]
    assert len(blocks) == 2
    for code in blocks:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr


def test_the_readme_service_serves_the_readme_client(tmp_path: Path) -> None:
    """The README's service, saved as service.py and run with uvicorn as it says, answers
    the README's client."""
    from servers import free_port

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    service, client = [b.split("```")[0] for b in readme.split("```python\n")[1:3]]
    assert "create_app(" in service and "import openai" in client
    (tmp_path / "service.py").write_text(service)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service:app", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = client.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        while True:  # until uvicorn answers (bounded by the test's timeout)
            done = subprocess.run(
                [sys.executable, "-c", client], capture_output=True, text=True, timeout=60
            )
            if "ConnectError" not in done.stderr and "Connection error" not in done.stderr:
                break
        assert done.returncode == 0, done.stderr
        events = done.stdout
        assert "'response.output_text.delta'" in events and "'response.completed'" in events
    finally:
        proc.terminate()
        proc.wait(timeout=15)


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
    responses = ResponseEngine(engine.store, lambda: 1_000, timeout=5)
    response = responses.create(model="m", input="hi")
    engine.close()
    out = cli("sweep", f"sqlite:///{path}").stdout  # the real clock is far past 1_005
    assert out == (
        "expired 1 runs, recovered 0 stalled runs; "
        "timed out 1 responses, recovered 0 stalled responses\n"
    )
    store = SQLiteStore(path)
    assert store.get(run.id).obj.status is RunStatus.EXPIRED
    assert store.get(response.id).obj.error["message"] == "The response timed out."


@pytest.fixture
def responses_db(tmp_path: Path) -> tuple[str, list[str]]:
    path = tmp_path / "runs.db"
    engine = ResponseEngine(SQLiteStore(path))
    ids = [engine.create(model="gpt-4o", input=f"q{i}").id for i in range(3)]
    RunEngine(engine.store).create(thread_id="t", assistant_id="a")  # not listed with them
    engine.claim("w")
    engine.fail(ids[0], code="rate_limit_exceeded", message="slow")
    engine.close()
    return f"sqlite:///{path}", ids


def test_responses_are_listed_and_shown(responses_db: tuple[str, list[str]]) -> None:
    url, ids = responses_db
    listed = rows(cli("responses", url).stdout)
    assert sorted(row[0] for row in listed) == sorted(ids)
    assert {(row[1], row[5]) for row in listed} == {
        ("failed", "rate_limit_exceeded"),
        ("queued", ""),
    }
    queued = rows(cli("responses", url, "--status", "queued").stdout)
    assert [row[0] for row in queued] == [ids[2], ids[1]]
    page = json.loads(cli("responses", url, "--json", "--limit", "1").stdout)
    assert page["object"] == "list" and page["has_more"] is True and len(page["data"]) == 1
    shown = json.loads(cli("show", url, ids[0], "--json").stdout)
    assert shown["response"]["error"]["code"] == "rate_limit_exceeded"
    assert [e["event"] for e in shown["history"]] == [
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.failed",
    ]
    assert "response.failed" in cli("show", url, ids[0]).stdout
    bad = cli("responses", url, "--status", "requires_action", check=False)
    assert bad.returncode == 2


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
    try:
        first = proc.stdout.readline()  # it has swept once: it is running
        assert first.startswith("expired 0 runs")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()  # a sweep that did not stop must not outlive the test
        proc.wait()
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


def test_migrate_on_memory_says_there_is_no_schema() -> None:
    assert (
        cli("migrate", "memory://").stdout
        == "MemoryStore(0 runs) keeps no schema: nothing to migrate\n"
    )


# --- a fleet's operations: stats, prune, cancel ---------------------------------------------


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A store with an ended run (long ago), a queued run, a leased run, a queued
    response and a cancelled response."""
    path = tmp_path / "fleet.db"
    store = SQLiteStore(path)
    runs = RunEngine(store, clock=lambda: 1_000, ttl=2 * 10**9)  # due in 2033
    done = runs.create(thread_id="t1", assistant_id="a")
    runs.claim("w")
    runs.complete(done.id)
    leased = runs.create(thread_id="t2", assistant_id="a")
    runs.claim("w")
    queued = runs.create(thread_id="t3", assistant_id="a")
    responses = ResponseEngine(store, lambda: 1_000, timeout=2 * 10**9)
    waiting = responses.create(model="m", input="hi")
    ended = responses.create(model="m", input="hi")
    responses.cancel(ended.id)
    store.close()
    ids = {"done": done.id, "leased": leased.id, "queued": queued.id}
    ids |= {"waiting": waiting.id, "ended": ended.id}
    return f"sqlite:///{path}", ids


def test_stats_counts_by_lifecycle_and_status(fleet: tuple[str, dict[str, str]]) -> None:
    url, _ = fleet
    figures = json.loads(cli("stats", url, "--json").stdout)
    assert figures["events"] == 4 + 3 + 2 + 2 + 3
    run = figures["lifecycles"]["run"]
    assert run["statuses"] == {"completed": 1, "in_progress": 1, "queued": 1}
    assert run["waiting"] == 1 and run["oldest_waiting_age"] > 0
    assert (run["leases"], run["leases_ended"], run["due"]) == (1, 1, 0)  # its lease ran out
    response = figures["lifecycles"]["response"]
    assert response["statuses"] == {"cancelled": 1, "queued": 1}
    table = rows(cli("stats", url).stdout.replace("lifecycle", "id", 1))
    assert ["run", "completed", "1"] in table and ["all", "events stored", "14"] in table


def test_prune_and_sweep_retain_delete_only_what_ended_long_ago(
    fleet: tuple[str, dict[str, str]],
) -> None:
    url, ids = fleet
    # They ended at 1970-01-01T00:16:40Z: more than 20,000 days ago, not 30,000.
    empty = cli("prune", url, "--older-than", "30000d").stdout
    assert empty == "pruned 0 runs, pruned 0 responses\n"
    pruned = json.loads(cli("prune", url, "--older-than", "1d", "--json").stdout)
    assert pruned == {"pruned": {"runs": 1, "responses": 1}, "older_than": 86_400}
    assert cli("show", url, ids["done"], check=False).returncode == 1
    out = cli("sweep", url, "--retain", "1h").stdout
    assert "recovered 1 stalled runs, pruned 0" in out  # the lease had run out
    figures = json.loads(cli("stats", url, "--json").stdout)
    assert figures["lifecycles"]["run"]["statuses"] == {"queued": 2}  # none deleted


def test_cancel_a_run_or_a_response_by_its_id(fleet: tuple[str, dict[str, str]]) -> None:
    url, ids = fleet
    assert cli("cancel", url, ids["queued"]).stdout == f"{ids['queued']}: cancelled\n"
    shown = json.loads(cli("cancel", url, ids["waiting"], "--json").stdout)
    assert shown["status"] == "cancelled" and shown["object"] == "response"
    leased = json.loads(cli("cancel", url, ids["leased"], "--json").stdout)
    assert leased["status"] == "cancelling"  # its worker confirms
    again = cli("cancel", url, ids["done"], check=False)
    assert again.returncode == 1 and "Cannot cancel run with status 'completed'" in again.stderr
    missing = cli("cancel", url, "run_missing", check=False)
    assert missing.returncode == 1 and "No run or response found" in missing.stderr


@pytest.mark.parametrize("bad", ["30x", "-5", "", "1.5h", "d", "9" * 20])
def test_a_bad_duration_is_a_usage_error(fleet: tuple[str, dict[str, str]], bad: str) -> None:
    url, _ = fleet
    done = cli("prune", url, "--older-than", bad, check=False)
    assert done.returncode == 2 and "not a duration" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--handler", "no_such_module_here:generate"],
            "--handler: cannot import 'no_such_module_here': ModuleNotFoundError: No module named 'no_such_module_here'",
        ),
        (["--handler", "json:no_such_function"], "--handler: 'json' has no 'no_such_function'"),
        (["--handler", "json"], "--handler: expected MODULE:FUNCTION, got 'json'"),
        (["--handler", "json:__name__"], "--handler: json:__name__ is not callable (a str)"),
        (
            ["--concurrency", "0"],
            "Invalid 'concurrency': expected an integer from 1 to 10000, got 0.",
        ),
        (["--workers", "-1"], "Invalid 'workers': expected an integer from 0 to 1000, got -1."),
        (["--lease", "0"], "Invalid 'lease': expected an integer from 1 to 3162240000, got 0."),
        (
            ["--sweep-every", "0"],
            "Invalid 'sweep_every': expected a finite number of seconds above 0 and at most 86400, got 0.0.",
        ),
        (["--api-key", ""], "Invalid 'api_key': expected a non-empty string."),
        (
            ["--shutdown-grace", "-1"],
            "Invalid 'shutdown_grace': expected a finite number of seconds from 0 to 86400, got -1.0.",
        ),
        (["--teleport"], "unrecognized arguments: --teleport"),
        (["--port", "many"], "argument --port: invalid int value: 'many'"),
    ],
)
def test_serve_refuses_bad_input_in_one_line_and_starts_nothing(
    args: list[str], message: str, tmp_path: Path
) -> None:
    database = tmp_path / "runs.db"
    done = cli("serve", f"sqlite:///{database}", *args, check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].endswith(f" error: {message}")
    assert done.stderr.startswith("usage: runstate")
    assert done.stdout == "" and not database.exists()  # nothing opened, nothing served


def test_serve_refuses_a_bad_store_url_before_it_starts() -> None:
    done = cli("serve", "sqlite://relative.db", check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "runstate serve: error: Not a SQLite URL: 'sqlite://relative.db'. Use "
        "sqlite:///relative/path.db or sqlite:////absolute/path.db."
    )


def test_serve_with_a_handler_of_the_service_s_own_and_an_api_key(tmp_path: Path) -> None:
    import openai
    from servers import server

    (tmp_path / "my_model.py").write_text(
        "from runstate import Completed\n\n"
        "async def generate(job):\n"
        "    await job.emit('response.output_text.delta', {'delta': 'mine'})\n"
        "    return Completed()\n"
    )
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    os.environ["PYTHONPATH"] = str(tmp_path)  # where the handler's module is found
    try:
        with server(url, "--handler", "my_model:generate", "--api-key", "sk-test-key") as running:
            with openai.OpenAI(base_url=running.url, api_key="sk-test-key") as client:
                made = client.responses.create(model="m", input="x", background=True)
                from servers import poll

                assert poll(client, made.id).output_text == "mine"
            with (
                openai.OpenAI(base_url=running.url, api_key="sk-other") as wrong,
                pytest.raises(openai.AuthenticationError),
            ):
                wrong.responses.retrieve(made.id)
    finally:
        del os.environ["PYTHONPATH"]
