"""The server (``runstate serve``) under bad input: every bad request is a 4xx with the public error
body, nothing bad is stored, and the server's background parts keep going."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstate import (
    AsyncResponseEngine,
    AsyncRunEngine,
    AsyncStore,
    ManualClock,
    MemoryStore,
    RunStatus,
    StoreError,
    Worker,
)
from runstate.server import demo, router

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


def post_raw(http: httpx.Client, path: str, text: str) -> httpx.Response:
    """POST a JSON text as it is: json.dumps escapes lone surrogates as \\udxxx."""
    return http.post(path, content=text.encode(), headers={"content-type": "application/json"})


def assert_error_body(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("assistant_id", "asst_\ud800"),
        ("model", "gpt\x00"),
        ("instructions", "hello \udfff"),
        ("additional_instructions", "\ud800"),
        ("metadata", {"k": "\ud800"}),
        ("metadata", {"\ud800": "v"}),
        ("tools", [{"type": "function", "function": {"name": "f", "description": "\ud800"}}]),
        ("tools", [{"type": "function", "function": {"name": "f", "parameters": {"x": 1e999}}}]),
        ("tools", [{"type": "function", "function": {"name": "bad name"}}]),
    ],
)
def test_unservable_strings_and_numbers_are_400s_and_leave_the_thread_listable(
    http: httpx.Client, field: str, value: Any
) -> None:
    thread = http.post("/threads").json()["id"]
    text = json.dumps({"assistant_id": "asst_1", field: value})  # 1e999 is sent as Infinity
    error = assert_error_body(post_raw(http, f"/threads/{thread}/runs", text), 400)
    assert error["type"] == "invalid_request_error"
    listing = http.get(f"/threads/{thread}/runs")
    assert listing.status_code == 200 and listing.json()["data"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"metadata": ["a", "list"]}, "Invalid 'metadata': expected an object, got list."),
        ({"metadata": {"k": "\ud800"}}, "Invalid 'metadata.k': the string is not valid UTF-8"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "too many properties"),
    ],
)
def test_thread_metadata_is_checked(http: httpx.Client, body: Any, message: str) -> None:
    error = assert_error_body(post_raw(http, "/threads", json.dumps(body)), 400)
    assert message in error["message"] and error["param"] == "metadata"


def test_stream_null_is_allowed(http: httpx.Client) -> None:
    thread = http.post("/threads").json()["id"]
    response = http.post(f"/threads/{thread}/runs", json={"assistant_id": "a", "stream": None})
    assert response.status_code == 200 and response.json()["object"] == "thread.run"


def test_a_wrong_method_is_a_405_with_allow_and_the_error_body(http: httpx.Client) -> None:
    response = http.get("/threads")
    error = assert_error_body(response, 405)
    assert error["message"] == "Method Not Allowed"
    assert response.headers["allow"] == "POST"


def test_an_oversize_body_is_a_413(http: httpx.Client) -> None:
    thread = http.post("/threads").json()["id"]
    big = json.dumps({"assistant_id": "a", "instructions": "x" * 12_000_000})
    error = assert_error_body(post_raw(http, f"/threads/{thread}/runs", big), 413)
    assert error["message"] == "Request body too large: the limit is 1048576 bytes."

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"assistant_id": "a", "instructions": "'
        for _ in range(200):
            yield b"x" * 10_000
        yield b'"}'

    response = http.post(
        f"/threads/{thread}/runs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error_body(response, 413)
    assert http.get(f"/threads/{thread}/runs").json()["data"] == []


@pytest.mark.parametrize("delay", ["nan", "1e9", "inf", "-1", "soon"])
def test_a_bad_script_delay_is_refused(http: httpx.Client, delay: str) -> None:
    thread = http.post("/threads").json()["id"]
    response = http.post(
        f"/threads/{thread}/runs", json={"assistant_id": "a", "metadata": {"delay": delay}}
    )
    error = assert_error_body(response, 400)
    assert error["message"].startswith("Invalid 'metadata.delay': expected a number of seconds")


def test_create_thread_and_run(url: str, http: httpx.Client) -> None:
    with openai.OpenAI(base_url=url, api_key="k", max_retries=0) as client:
        create_thread_and_run(client)


def create_thread_and_run(client: openai.OpenAI) -> None:
    run = client.beta.threads.create_and_run_poll(
        assistant_id="asst_1", thread={"metadata": {"topic": "weather"}}, instructions="hi"
    )
    assert run.status == "completed" and run.thread_id.startswith("thread_")
    assert run.instructions == "hi"
    listed = client.beta.threads.runs.list(thread_id=run.thread_id)
    assert [r.id for r in listed.data] == [run.id]
    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.threads.create_and_run(
            assistant_id="asst_1",
            thread={"metadata": {"k": 1}},  # type: ignore[dict-item]
        )
    assert caught.value.body["param"] == "thread.metadata"  # type: ignore[index]


# --- fuzz ------------------------------------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.sampled_from(["\ud800", "a\x00b", "", float("nan"), float("inf"), 2**64, -(2**70)]),
    st.text(max_size=6),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = [
    "assistant_id",
    "model",
    "instructions",
    "additional_instructions",
    "tools",
    "metadata",
    "stream",
    "extra",
]
RUN_BODIES = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=4).map(
    lambda body: {"assistant_id": "asst_1", **body}
)
ENDPOINTS = st.sampled_from(["create_run", "create_thread", "update", "submit", "thread_and_run"])


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(endpoint=ENDPOINTS, body=RUN_BODIES, other=JSON)
def test_fuzzed_request_bodies_get_2xx_or_4xx_with_the_error_body(
    http: httpx.Client, endpoint: str, body: dict[str, Any], other: Any
) -> None:
    thread = http.post("/threads").json()["id"]
    if body.get("stream") is True:
        del body["stream"]  # streams are tested apart
    if endpoint in ("update", "submit"):
        run = http.post(f"/threads/{thread}/runs", json={"assistant_id": "a"}).json()
        path = f"/threads/{thread}/runs/{run['id']}"
        payload: Any = {"metadata": other} if endpoint == "update" else {"tool_outputs": other}
        path += "/submit_tool_outputs" if endpoint == "submit" else ""
    elif endpoint == "create_thread":
        path, payload = "/threads", {"metadata": other, "messages": []}
    elif endpoint == "thread_and_run":
        body.pop("additional_instructions", None)
        path, payload = "/threads/runs", {**body, "thread": {"metadata": other}}
    else:
        path, payload = f"/threads/{thread}/runs", body
    response = post_raw(http, path, json.dumps(payload))
    if response.status_code >= 400:
        assert_error_body(response, response.status_code)
        assert response.status_code < 500
    else:
        json.loads(response.text)  # strict JSON came back
    listing = http.get(f"/threads/{thread}/runs")
    assert listing.status_code == 200
    for run in listing.json()["data"]:
        assert http.get(f"/threads/{thread}/runs/{run['id']}").status_code == 200


# --- the background parts ------------------------------------------------------------------


class FailsOnce:
    """A store proxy whose first sweep finds the store away."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def sweep(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed = True
            raise StoreError("the store is away")
        return self._store.sweep(*args, **kwargs)


def test_the_sweeper_logs_a_store_error_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(1_000)
    store = FailsOnce(MemoryStore())
    engine = AsyncRunEngine(AsyncStore(store, offload=False), clock=clock, ttl=5)  # type: ignore[arg-type]

    async def main() -> None:
        run = await engine.create(thread_id="t", assistant_id="a")
        clock.advance(5)
        service = router(engine, sweep_every=0.01).service  # type: ignore[attr-defined]
        async with service.lifespan():
            while store._store.get(run.id).obj.status is not RunStatus.EXPIRED:
                await asyncio.sleep(0.01)  # bounded by the test's timeout, not timed

    asyncio.run(main())
    assert store.failed
    assert "sweep failed, will try again: the store is away" in caplog.text


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"delay": "nan"}, "Invalid 'metadata.delay'"),
        ({"delay": "1e9"}, "Invalid 'metadata.delay'"),
        ({"simulate": "explode"}, "Invalid 'metadata.simulate'"),
        ({"simulate": "fail", "error_code": "oops"}, "Invalid 'metadata.error_code'"),
    ],
)
def test_the_demo_model_fails_a_run_or_response_whose_script_is_malformed(
    metadata: dict[str, str], message: str
) -> None:
    async def main() -> tuple[Any, Any]:
        runs, responses = AsyncRunEngine(), AsyncResponseEngine()
        run = await runs.create(thread_id="t", assistant_id="a", metadata=metadata)
        response = await responses.create(model="m", input="hi", metadata=metadata)
        # Made past any server's check: the demo's job fails them.
        async with Worker(runs, demo), Worker(responses, demo):
            for engine, made in ((runs, run), (responses, response)):
                while (await engine.get(made.id)).status.value != "failed":
                    await asyncio.sleep(0.01)  # bounded by the test's timeout
        return await runs.get(run.id), await responses.get(response.id)

    run, response = asyncio.run(main())
    assert run.status is RunStatus.FAILED
    assert run.last_error is not None and run.last_error["message"].startswith(message)
    assert response.status.value == "failed" and response.error["message"].startswith(message)
