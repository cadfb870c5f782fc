"""Hostile values into every public engine method, on every store.

Each call gets one argument replaced by a value a careless or malicious caller could
pass: unhashables, bytes, sets, lone surrogates, NUL, NaN, infinities, huge integers,
deep nesting, and the same tucked inside tools, metadata, tool calls and tool outputs.
Whatever happens, only a ``RunStateError`` comes out, and it is a client error (4xx),
never a store error. A refused call changes nothing stored; an accepted one stores only
what reads back and serves as strict JSON.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tables import CALLS, OUTPUTS, PG_BASE

from runstate import (
    ManualClock,
    MemoryStore,
    PostgresStore,
    RunEngine,
    RunStateError,
    SQLiteStore,
    StoreError,
    connect,
    open_store,
)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


SCALARS = st.one_of(
    st.sampled_from(
        [
            "\ud800",
            "ok\udfffok",
            "a\x00b",
            "\x00",
            float("nan"),
            float("inf"),
            float("-inf"),
            1e999,
            2**63,
            2**64,
            -(2**63) - 1,
            2**70,
            -1,
            0,
            True,
            None,
            "",
            b"bytes",
            bytearray(b"x"),
            object(),
            1.5,
            [],
            {},
            (1,),
            {1, 2},
            frozenset(),
        ]
    ),
    st.builds(_deep, st.sampled_from([33, 40, 500])),
    st.text(max_size=8),
    st.integers(),
    st.floats(),
    st.binary(max_size=4),
)
HOSTILE = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(
        st.one_of(st.text(max_size=4), st.sampled_from(["\ud800", "a\x00b", 1, None, b"k", (1,)])),
        SCALARS,
        max_size=3,
    ),
)
# Hostile values where the structure is right, one or more levels down, per parameter.
NESTED = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=4,
)
PARAMETERS = st.dictionaries(st.text(max_size=3), NESTED, min_size=1, max_size=3)


def _function(**fields: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f", **fields}}


# One tool, right but for one hostile spot (or right throughout, now and then).
TOOL = st.one_of(
    st.builds(lambda p: _function(parameters=p), PARAMETERS),
    st.builds(lambda v: _function(name=v), SCALARS),
    st.builds(lambda v: _function(description=v), SCALARS),
    st.builds(lambda v: _function(strict=v), SCALARS),
    st.builds(lambda v: _function(parameters=v), SCALARS),
    st.builds(lambda v: {"type": "function", "function": v}, SCALARS),
    st.builds(lambda v: {"type": "file_search", "file_search": v}, st.one_of(SCALARS, NESTED)),
    st.builds(lambda v: {"type": v}, SCALARS),
    st.builds(lambda v: {"type": "code_interpreter", "extra": v}, SCALARS),
    SCALARS,
)
GOOD_TOOL = st.sampled_from(
    [
        {"type": "code_interpreter"},
        {"type": "retrieval"},
        {"type": "file_search", "file_search": {"max_num_results": 5}},
        _function(description="d", parameters={"type": "object"}, strict=True),
    ]
)
PER_PARAM = {
    "tools": st.one_of(
        st.tuples(GOOD_TOOL, TOOL).map(list),
        st.tuples(TOOL, GOOD_TOOL).map(list),
        HOSTILE,
    ),
    "metadata": st.one_of(
        st.dictionaries(st.one_of(st.text(max_size=70), SCALARS.filter(_hashable)), SCALARS),
        st.builds(lambda v: {"k": v}, SCALARS),
        HOSTILE,
    ),
    "tool_outputs": st.one_of(
        st.builds(lambda v: [{"tool_call_id": "call_A", "output": v}, OUTPUTS[1]], SCALARS),
        st.builds(lambda v: [{"tool_call_id": v, "output": "x"}], SCALARS),
        st.lists(st.one_of(SCALARS, st.dictionaries(st.text(max_size=12), SCALARS)), max_size=2),
        HOSTILE,
    ),
    "tool_calls": st.one_of(
        st.builds(lambda v: [{"id": v, "type": "function", "function": {"name": "f"}}], SCALARS),
        st.builds(lambda v: [{"function": {"name": "f", "arguments": v}}], SCALARS),
        st.builds(lambda v: [{"function": {"name": v}}], SCALARS),
        st.builds(lambda v: [{"type": v, "function": {"name": "f"}}], SCALARS),
        HOSTILE,
    ),
}


# Every public engine method with good arguments; one of them is made hostile per call.
# "RUN" stands for a run waiting on tool outputs, "LEASED" for one a worker holds.
METHODS: dict[str, dict[str, Any]] = {
    "create": {
        "thread_id": "thread_new",
        "assistant_id": "asst_1",
        "model": "gpt-4o",
        "instructions": "be brief",
        "tools": None,
        "file_ids": None,
        "metadata": None,
    },
    "get": {"object_id": "RUN"},
    "list": {"thread_id": "thread_1", "status": None, "limit": 20, "order": "desc"},
    "update_metadata": {"run_id": "RUN", "metadata": {"k": "v"}},
    "submit_tool_outputs": {"run_id": "RUN", "tool_outputs": OUTPUTS},
    "cancel": {"object_id": "RUN"},
    "start": {"run_id": "LEASED", "worker_id": "w1"},
    "require_action": {"run_id": "LEASED", "tool_calls": CALLS, "worker_id": "w1"},
    "complete": {"run_id": "LEASED", "worker_id": "w1"},
    "fail": {"run_id": "LEASED", "code": "server_error", "message": "m", "worker_id": "w1"},
    "confirm_cancel": {"run_id": "LEASED", "worker_id": "w1"},
    "expire": {"run_id": "RUN"},
    "claim": {"worker_id": "w2", "lease_seconds": 30},
    "heartbeat": {"object_id": "LEASED", "worker_id": "w1", "lease_seconds": 30},
    "recover_stalled": {"limit": 10},
    "expire_due": {"limit": 10},
    "history": {"object_id": "RUN"},
    "events": {"object_id": "RUN", "starting_after": 0},
    "feed": {"after_seq": 0, "limit": 10},
}
CALLS_OF = st.sampled_from(
    [(method, param) for method, params in METHODS.items() for param in params]
)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunEngine]:
    if request.param == "memory":
        store: Any = MemoryStore()
    elif request.param == "sqlite":
        store = SQLiteStore(tmp_path / "runs.db")
    else:
        store = PostgresStore(PG_BASE, schema=request.getfixturevalue("pg_schema"))
    engine = RunEngine(store, clock=ManualClock(1_700_000_000), lease_seconds=60)
    waiting = engine.create(thread_id="thread_1", assistant_id="asst_1")
    engine.start(waiting.id)
    engine.require_action(waiting.id, CALLS)
    engine.create(thread_id="thread_2", assistant_id="asst_1")
    leased = engine.claim("w1")
    assert leased is not None
    engine.ids = {"RUN": waiting.id, "LEASED": leased.id}  # type: ignore[attr-defined]
    yield engine
    engine.close()


def state(engine: RunEngine) -> tuple[Any, ...]:
    """Everything stored: each run with its version and lease, and every event."""
    runs = engine.list(None, limit=100).data
    return (
        [engine.store.get(run.id) for run in runs],
        engine.feed(after_seq=0, limit=10_000),
    )


def assert_all_serves(engine: RunEngine) -> None:
    """What is stored reads back and encodes as strict JSON in UTF-8."""
    for run in engine.list(None, limit=100).data:
        json.dumps(run.to_dict(), allow_nan=False).encode("utf-8")
        for event in engine.history(run.id):
            event.to_sse().encode("utf-8")
            json.dumps(event.data, allow_nan=False)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(call=CALLS_OF, data=st.data())
def test_hostile_arguments_are_refused_cleanly(
    engine: RunEngine, call: tuple[str, str], data: st.DataObject
) -> None:
    method, param = call
    value = data.draw(PER_PARAM.get(param, HOSTILE), label=f"{method}({param}=...)")
    call_refused_cleanly(engine, method, param, value)


def call_refused_cleanly(engine: RunEngine, method: str, param: str, value: Any) -> None:
    """Call ``method`` with good arguments but ``param=value``: only a client-side
    RunStateError may come out, a refusal changes nothing, and what is stored serves."""
    ids: dict[str, str] = engine.ids  # type: ignore[attr-defined]
    kwargs = {k: ids.get(v, v) if isinstance(v, str) else v for k, v in METHODS[method].items()}
    kwargs[param] = value
    before = state(engine)
    function = getattr(engine, method)
    # The object an operation of every face is about is its first argument, positional.
    args = [
        kwargs.pop(name)
        for name, p in inspect.signature(function).parameters.items()
        if p.kind is p.POSITIONAL_ONLY and name in kwargs
    ]
    try:
        function(*args, **kwargs)
    except RunStateError as exc:
        assert not isinstance(exc, StoreError), exc
        assert 400 <= exc.http_status < 500
        json.dumps(exc.to_dict()).encode("utf-8")  # the error body itself serves
        assert state(engine) == before
    assert_all_serves(engine)


STRUCTURED = [
    ("create", "tools"),
    ("create", "metadata"),
    ("update_metadata", "metadata"),
    ("submit_tool_outputs", "tool_outputs"),
    ("require_action", "tool_calls"),
]


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
@pytest.mark.parametrize(("method", "param"), STRUCTURED)
def test_hostile_values_inside_structures_are_refused_cleanly(
    engine: RunEngine, method: str, param: str, data: st.DataObject
) -> None:
    value = data.draw(PER_PARAM[param], label=param)
    call_refused_cleanly(engine, method, param, value)


@settings(max_examples=200, deadline=None)
@given(value=HOSTILE)
@pytest.mark.parametrize(
    "option", ["ttl", "lease_seconds", "max_attempts", "clock", "store", "id_factory"]
)
def test_hostile_engine_options_are_refused(option: str, value: Any) -> None:
    try:
        options = {"store": MemoryStore(), option: value}
        engine = RunEngine(**options)
    except RunStateError as exc:
        assert 400 <= exc.http_status < 500
        return
    try:  # an accepted option works, or refuses cleanly when first used
        engine.create(thread_id="t", assistant_id="a")
    except RunStateError as exc:
        assert 400 <= exc.http_status < 500


@settings(max_examples=200, deadline=None)
@given(value=HOSTILE)
def test_hostile_urls_are_refused(value: Any) -> None:
    if isinstance(value, str) and value.startswith(("sqlite", "postgres")):
        return  # a real URL would open a real store
    with pytest.raises(RunStateError) as caught:
        open_store(value)
    assert caught.value.http_status == 400


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///a\x00b",
        "sqlite:///\ud800.db",
        "postgresql://[::1/x",
        "postgresql://user:pw@host:99999/db",
        "postgresql://u:s3cret@h/db\x00",
    ],
)
def test_bad_urls_are_validation_errors_that_never_show_the_url(url: str) -> None:
    with pytest.raises(RunStateError) as caught:
        connect(url)
    assert caught.value.http_status == 400
    assert "s3cret" not in caught.value.message and "pw@" not in caught.value.message


@settings(max_examples=100, deadline=None)
@given(value=HOSTILE)
@pytest.mark.parametrize(
    "method",
    [
        "start",
        "require_action",
        "submit_tool_outputs",
        "complete",
        "fail",
        "cancel",
        "confirm_cancel",
        "requeue",
        "expire",
        "check_expiry",
        "update_metadata",
        "allowed_events",
    ],
)
def test_the_lifecycle_refuses_what_is_not_a_run(method: str, value: Any) -> None:
    from runstate import RunLifecycle, ValidationError

    lifecycle = RunLifecycle()
    args: dict[str, Any] = {
        "require_action": {"tool_calls": CALLS},
        "submit_tool_outputs": {"tool_outputs": OUTPUTS},
        "fail": {"message": "m"},
        "update_metadata": {"metadata": {}},
    }.get(method, {})
    with pytest.raises(ValidationError, match="Invalid 'run': expected a runstate.Run"):
        getattr(lifecycle, method)(value, **args)
