"""Code that runs in the child processes of test_races.py (importable under spawn).
Each function opens its own engine on the store URL it is given."""

from __future__ import annotations

import contextlib
import random
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from typing import Any

from runstate import (
    ActiveRunError,
    InvalidTransitionError,
    ManualClock,
    ResponseEngine,
    RunEngine,
    open_store,
)

CALLS = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
OUTPUTS = [{"tool_call_id": "call_1", "output": "x"}]


def engine_at(url: str, now: float, **kwargs: Any) -> RunEngine:
    return RunEngine(open_store(url), clock=ManualClock(now), **kwargs)


def complete_all(url: str, now: float, ids: list[str], barrier: Barrier, seed: int) -> None:
    engine = engine_at(url, now)
    random.Random(seed).shuffle(ids)
    barrier.wait()
    for run_id in ids:
        with contextlib.suppress(InvalidTransitionError):
            engine.complete(run_id)


def cancel_all(url: str, now: float, ids: list[str], barrier: Barrier, seed: int) -> None:
    engine = engine_at(url, now)
    random.Random(seed).shuffle(ids)
    barrier.wait()
    for run_id in ids:
        for step in (engine.cancel, engine.confirm_cancel):
            with contextlib.suppress(InvalidTransitionError):
                step(run_id)


def submit_and_finish(
    url: str,
    now: float,
    ids: list[str],
    outputs: list[dict[str, str]],
    barrier: Barrier,
    seed: int,
) -> None:
    engine = engine_at(url, now)
    random.Random(seed).shuffle(ids)
    barrier.wait()
    for run_id in ids:
        try:
            engine.submit_tool_outputs(run_id, outputs)
            engine.start(run_id)
            engine.complete(run_id)
        except InvalidTransitionError:
            pass


def sweep_until_quiet(url: str, now: float, barrier: Barrier) -> None:
    engine = engine_at(url, now)
    barrier.wait()
    quiet = 0
    while quiet < 3:
        quiet = 0 if engine.expire_due(limit=50) else quiet + 1


def claim_until_empty(url: str, now: float, worker: str, barrier: Barrier, results: Any) -> None:
    engine = engine_at(url, now)
    claimed = []
    barrier.wait()
    while (run := engine.claim(worker)) is not None:
        claimed.append(run.id)
        engine.complete(run.id, worker_id=worker)
    results.put((worker, claimed))


def create_on_threads(
    url: str, now: float, threads: list[str], barrier: Barrier, results: Any
) -> None:
    engine = engine_at(url, now)
    won, lost = [], []
    barrier.wait()
    for thread in threads:
        try:
            won.append(engine.create(thread_id=thread, assistant_id="a").id)
        except ActiveRunError:
            lost.append(thread)
    results.put((won, lost))


def claim_and_hang(url: str, now: float, conn: Connection) -> None:
    engine = engine_at(url, now, lease_seconds=30)
    run = engine.claim("doomed-worker")
    conn.send(None if run is None else run.id)
    conn.recv()  # blocks until the parent kills this process


def churn(url: str, now: float, conn: Connection) -> None:
    """Create, claim, require action, submit, resume, complete, forever, reporting progress."""
    engine = engine_at(url, now)
    n = 0
    while True:
        run = engine.create(thread_id=f"churn_{n}", assistant_id="a")
        engine.claim("churner")
        engine.require_action(run.id, CALLS)
        engine.submit_tool_outputs(run.id, OUTPUTS)
        engine.claim("churner")
        engine.complete(run.id)
        n += 1
        conn.send(n)


def claim_and_finish(url: str, now: float, worker: str, barrier: Barrier, results: Any) -> None:
    """Claim with a clock just before expiry and complete what was claimed."""
    engine = engine_at(url, now)
    claimed = []
    barrier.wait()
    while (run := engine.claim(worker)) is not None:
        claimed.append(run.id)
        with contextlib.suppress(InvalidTransitionError):
            engine.complete(run.id, worker_id=worker)
    results.put(claimed)


def open_fresh(path: str, barrier: Barrier, n: int) -> None:
    """Open a store on a file that may not exist yet, at the same moment as many others,
    and write to it; exit 1 with the error if either fails."""
    import sys

    from runstate import RunStateError, SQLiteStore

    barrier.wait()
    try:
        engine = RunEngine(SQLiteStore(path))
        engine.create(thread_id=f"thread_{n}", assistant_id="a")
        engine.close()
    except RunStateError as exc:
        print(f"process {n}: {exc.message}", file=sys.stderr)
        sys.exit(1)


def open_store_at_once(url: str, barrier: Barrier) -> None:
    """Open (and so upgrade) the store at ``url`` together with the others, then read
    it; exit 1 with the error if either fails."""
    import sys

    from runstate import RunStateError

    barrier.wait()
    try:
        store = open_store(url, create=False)
        store.list_objects(None, kind="run", limit=100)
        store.close()
    except RunStateError as exc:
        print(f"{exc.message}", file=sys.stderr)
        sys.exit(1)


# --- background responses ------------------------------------------------------------------


def responses_at(url: str, now: float) -> ResponseEngine:
    return ResponseEngine(open_store(url), ManualClock(now))


def stream_and_complete(url: str, now: float, ids: list[str], barrier: Barrier, seed: int) -> None:
    """As the worker "w" that holds every response: two deltas, then complete; a response
    that was cancelled (or completed by the other) refuses the rest."""
    engine = responses_at(url, now)
    random.Random(seed).shuffle(ids)
    barrier.wait()
    delta = {"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "x"}
    for response_id in ids:
        with contextlib.suppress(InvalidTransitionError):
            for _ in range(2):
                engine.append(response_id, "response.progress", delta, worker_id="w")
            engine.complete(response_id, output=[], worker_id="w")


def cancel_responses(url: str, now: float, ids: list[str], barrier: Barrier, seed: int) -> None:
    engine = responses_at(url, now)
    random.Random(seed).shuffle(ids)
    barrier.wait()
    for response_id in ids:
        engine.cancel(response_id)  # never refused: idempotent once ended


def claim_responses(url: str, now: float, worker: str, barrier: Barrier, results: Any) -> None:
    engine = responses_at(url, now)
    claimed = []
    barrier.wait()
    while (response := engine.claim(worker)) is not None:
        claimed.append(response.id)
        engine.complete(response.id, output=[], worker_id=worker)
    results.put((worker, claimed))


def stream_response_later(url: str, response_id: str, ready: Any, deltas: int) -> None:
    """Another process: once told, claim the response, append ``deltas`` deltas and
    complete it (a worker on another replica)."""
    engine = ResponseEngine(open_store(url))
    ready.wait()
    claimed = engine.claim("far-worker")
    assert claimed is not None and claimed.id == response_id
    delta = {"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "x"}
    for _ in range(deltas):
        engine.append(response_id, "response.progress", delta, worker_id="far-worker")
    engine.complete(response_id, output=[], worker_id="far-worker")


def create_run_later(url: str, ready: Any) -> None:
    """Another process: once told, queue a run."""
    engine = RunEngine(open_store(url))
    ready.wait()
    engine.create(thread_id="far-thread", assistant_id="a")


def cancel_later(url: str, response_id: str, ready: Any) -> None:
    """Another process: once told, cancel the response."""
    engine = ResponseEngine(open_store(url))
    ready.wait()
    engine.cancel(response_id)


def create_with_key(url: str, now: float, kind: str, barrier: Barrier, results: Any) -> None:
    """Create with one idempotency key, at the same moment as the others."""
    if kind == "run":
        runs = engine_at(url, now)
        barrier.wait()
        results.put(runs.create(thread_id="keyed", assistant_id="a", idempotency_key="k").id)
    else:
        responses = ResponseEngine(open_store(url), ManualClock(now))
        barrier.wait()
        results.put(responses.create(model="m", input="hi", idempotency_key="k").id)


def held_store(conninfo: str, schema: str) -> tuple[Any, Any]:
    """A PostgresStore whose every operation runs in one transaction left open (a psycopg
    connection out of autocommit), and that connection: the caller commits or rolls it
    back. How a test makes a writer whose transaction started first commit last."""
    import psycopg

    from runstate import PostgresStore

    store = PostgresStore(conninfo, schema=schema, max_size=1)
    conn = psycopg.connect(conninfo, options=f"-c search_path={schema}")

    @contextlib.contextmanager
    def connection() -> Any:
        yield conn

    def close() -> None:
        conn.close()
        PostgresStore.close(store)

    store._connection = connection  # type: ignore[method-assign]
    store.close = close  # type: ignore[method-assign]
    return store, conn


def step_many(url: str, now: float, ids: list[str], barrier: Barrier, seed: int) -> None:
    """Take each run, in a shuffled order, through start, a tool call, its output and
    completion, until every run has ended; a step another process took first is passed
    over (so several processes write each run)."""
    from runstate import ConcurrentUpdateError

    engine = engine_at(url, now)
    rng = random.Random(seed)
    called: set[str] = set()
    barrier.wait()
    left = list(ids)
    while left:
        rng.shuffle(left)
        for run_id in list(left):
            run = engine.get(run_id)
            status = run.status.value
            with contextlib.suppress(InvalidTransitionError, ConcurrentUpdateError):
                if status == "queued":
                    engine.start(run_id)
                elif status == "in_progress" and run_id not in called:
                    called.add(run_id)
                    engine.require_action(run_id, CALLS)
                elif status == "in_progress":
                    engine.complete(run_id)
                elif status == "requires_action":
                    engine.submit_tool_outputs(run_id, OUTPUTS)
                elif status == "cancelling":
                    engine.confirm_cancel(run_id)
                else:
                    left.remove(run_id)


def write_late(
    conninfo: str, schema: str, now: float, ids: list[str], barrier: Barrier, seed: int
) -> None:
    """Again and again: write one run in a transaction, and hold it open while other
    processes commit, then commit it: a writer that started first and commits last (its
    event's place lies below theirs)."""
    import time

    from runstate import ConcurrentUpdateError

    rng = random.Random(seed)
    store, conn = held_store(conninfo, schema)
    engine = RunEngine(store, clock=ManualClock(now))
    barrier.wait()
    for _ in range(15):
        # A run that has ended is refused; so is one that a younger transaction wrote
        # after this one took its id (a wait on its row lock takes the id): one object's
        # places follow its commits.
        with contextlib.suppress(InvalidTransitionError, ConcurrentUpdateError):
            engine.cancel(rng.choice(ids))
        time.sleep(rng.uniform(0.005, 0.03))  # others commit meanwhile
        conn.commit()
    store.close()
