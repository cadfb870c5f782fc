"""What the tests share besides fixtures: the public API's tables and values, written
here once and apart from runstate's own declarations (the run's transition table, its
statuses, its keys; the background response's), sample tool calls, outputs and usage,
objects put in any status, and where the PostgreSQL server is. Tests import them from
here; ``conftest.py`` keeps the fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from runstate import (
    ManualClock,
    MemoryStore,
    PostgresStore,
    Response,
    ResponseEngine,
    ResponseStatus,
    Run,
    RunLifecycle,
    RunStatus,
    SQLiteStore,
    Store,
)

T0 = 1_700_000_000


TTL = 600


CALLS = [
    {"id": "call_A", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}},
    {"id": "call_B", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 2}'}},
]


OUTPUTS = [{"tool_call_id": "call_A", "output": "1"}, {"tool_call_id": "call_B", "output": "2"}]


#: The run object as first published, its 18 keys in the public API's order.
SEED_KEYS = [
    "id",
    "object",
    "created_at",
    "thread_id",
    "assistant_id",
    "status",
    "required_action",
    "last_error",
    "expires_at",
    "started_at",
    "cancelled_at",
    "failed_at",
    "completed_at",
    "model",
    "instructions",
    "tools",
    "file_ids",
    "metadata",
]


S = RunStatus


ACTIVE = [S.QUEUED, S.IN_PROGRESS, S.REQUIRES_ACTION, S.CANCELLING]


#: The first version's eight statuses (``incomplete`` is the second version's).
V1_STATUSES = [s for s in RunStatus if s is not S.INCOMPLETE]


#: The run's transition table as the public API behaves, written out here apart from
#: the declaration, (event, from, to) row by row.
ROWS: list[tuple[str, RunStatus, RunStatus]] = [
    ("start", S.QUEUED, S.IN_PROGRESS),
    ("require_action", S.IN_PROGRESS, S.REQUIRES_ACTION),
    ("submit_tool_outputs", S.REQUIRES_ACTION, S.QUEUED),
    ("complete", S.IN_PROGRESS, S.COMPLETED),
    ("complete", S.CANCELLING, S.COMPLETED),
    *[("fail", s, S.FAILED) for s in ACTIVE],
    ("cancel", S.QUEUED, S.CANCELLING),
    ("cancel", S.IN_PROGRESS, S.CANCELLING),
    ("cancel", S.REQUIRES_ACTION, S.CANCELLING),
    ("confirm_cancel", S.CANCELLING, S.CANCELLED),
    ("requeue", S.IN_PROGRESS, S.QUEUED),  # ours: a stalled run back in the queue
    *[("expire", s, S.EXPIRED) for s in ACTIVE],
]


#: The run's second version: the same table and the incomplete rows.
ROWS_V2 = [
    *ROWS,
    ("incomplete", S.IN_PROGRESS, S.INCOMPLETE),
    ("incomplete", S.CANCELLING, S.INCOMPLETE),
]


def refused_pairs(
    rows: list[tuple[str, RunStatus, RunStatus]], statuses: list[RunStatus]
) -> list[tuple[str, RunStatus]]:
    """Every (event, status) pair the table ``rows`` has no row for."""
    allowed = {(event, source) for event, source, _ in rows}
    events = sorted({event for event, _, _ in rows})
    return [(e, s) for e in events for s in statuses if (e, s) not in allowed]


#: The (from, to) pairs a history may hold, as the stores spell statuses.
LEGAL_STEPS = {(source.value, dest.value) for _, source, dest in ROWS_V2}


USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


# The shortest legal path from creation to each status, as lifecycle method names.
PATHS: dict[RunStatus, list[str]] = {
    RunStatus.QUEUED: [],
    RunStatus.IN_PROGRESS: ["start"],
    RunStatus.REQUIRES_ACTION: ["start", "require_action"],
    RunStatus.CANCELLING: ["cancel"],
    RunStatus.CANCELLED: ["cancel", "confirm_cancel"],
    RunStatus.FAILED: ["fail"],
    RunStatus.COMPLETED: ["start", "complete"],
    RunStatus.EXPIRED: ["expire"],
    RunStatus.INCOMPLETE: ["start", "incomplete"],  # v2 only
}


R = ResponseStatus


#: The background response's table, (event, from, to) row by row.
RESPONSE_ROWS: list[tuple[str, ResponseStatus, ResponseStatus]] = [
    ("start", R.QUEUED, R.IN_PROGRESS),
    ("complete", R.IN_PROGRESS, R.COMPLETED),
    ("incomplete", R.IN_PROGRESS, R.INCOMPLETE),
    ("fail", R.QUEUED, R.FAILED),
    ("fail", R.IN_PROGRESS, R.FAILED),
    ("cancel", R.QUEUED, R.CANCELLED),
    ("cancel", R.IN_PROGRESS, R.CANCELLED),
    ("requeue", R.IN_PROGRESS, R.QUEUED),  # ours: a stalled response back in the queue
]


#: A message output item and a usage, as a worker hands them over.
OUTPUT = [
    {
        "type": "message",
        "id": "msg_1",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
    }
]


RESPONSE_USAGE = {"input_tokens": 3, "output_tokens": 2}


#: The text delta a worker appends, as the public stream shapes it.
DELTA = {"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hel", "logprobs": []}


def response_in(engine: ResponseEngine, status: ResponseStatus) -> Response:
    """A new background response driven to ``status`` along the shortest legal path (a
    worker "w" claims it first unless it is to stay queued)."""
    response = engine.create(model="gpt-4o", input="Say hello")
    if status is R.QUEUED:
        return response
    claimed = engine.claim("w")
    assert claimed is not None and claimed.id == response.id
    if status is R.COMPLETED:
        engine.complete(response.id, output=OUTPUT)
    elif status is R.INCOMPLETE:
        engine.incomplete(response.id, reason="max_output_tokens")
    elif status is R.FAILED:
        engine.fail(response.id, message="boom")
    elif status is R.CANCELLED:
        engine.cancel(response.id)
    return engine.get(response.id)


# The machine's PostgreSQL server (make test starts it if it is down). Each test that
# needs it gets a schema of its own, dropped afterwards.
PG_BASE = os.environ.get("RUNSTATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pg_url(schema: str) -> str:
    return f"{PG_BASE}{'&' if '?' in PG_BASE else '?'}schema={schema}"


def make_store(kind: str, request: pytest.FixtureRequest, path: Path) -> Store:
    """A new store of ``kind``: memory, a SQLite file at ``path``, or a PostgreSQL schema
    of the test's own."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(path)
    return PostgresStore(PG_BASE, schema=request.getfixturevalue("pg_schema"))


def step(lifecycle: RunLifecycle, clock: ManualClock, run: Run, name: str) -> None:
    """One step of a path; "expire" moves the clock to the run's expiry first."""
    if name == "expire":
        assert run.expires_at is not None
        clock.set(run.expires_at)
        lifecycle.expire(run)
    elif name == "require_action":
        lifecycle.require_action(run, CALLS)
    elif name == "fail":
        lifecycle.fail(run, code="server_error", message="boom")
    elif name == "incomplete":
        lifecycle.incomplete(run, reason="max_completion_tokens", usage=USAGE)
    elif name == "submit_tool_outputs":
        lifecycle.submit_tool_outputs(run, OUTPUTS)
    else:
        getattr(lifecycle, name)(run)


def runs_along_paths(lifecycle: RunLifecycle, clock: ManualClock) -> Callable[[RunStatus], Run]:
    def make(status: RunStatus) -> Run:
        run = lifecycle.create(thread_id="thread_1", assistant_id="asst_1", model="gpt-4o")
        for name in PATHS[status]:
            clock.advance(1)
            step(lifecycle, clock, run, name)
        assert run.status is status
        return run

    return make
