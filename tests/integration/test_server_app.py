"""``runstate.server`` as a service embeds it: ``create_app`` with a handler of its own
on every store, the router included under a prefix in another app, a mounted app, the
auth hook, keep-alives, a sync handler, and the refusals of bad arguments. Driven by
the official ``openai`` client over real HTTP (uvicorn in a thread of the test)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI
from servers import in_thread, poll, strict

from runstate import (
    AsyncResponseEngine,
    AsyncRunEngine,
    Completed,
    Job,
    ResponseEngine,
    ValidationError,
    open_store,
)
from runstate._worker import HANDLER_ERROR
from runstate.server import bearer, create_app, router

pytestmark = pytest.mark.timeout(90)


def said(request: dict[str, Any]) -> str:
    given = request["input"]
    return given if isinstance(given, str) else str(given[-1]["content"])


async def echo(job: Job) -> Completed:
    """A handler as a service writes one: a response echoes its input a word at a time;
    a run with a function tool asks for it once, then completes."""
    if job.kind == "run":
        asked = any(e.event == "thread.run.requires_action" for e in await job.history())
        if job.object.tools and not asked:
            call = {"type": "function", "function": {"name": "lookup", "arguments": "{}"}}
            await job.require_action([call])
        return Completed()
    words = f"You said: {said(job.request)}".split(" ")
    for i, word in enumerate(words):
        await job.emit("response.output_text.delta", {"delta": word if i == 0 else " " + word})
    return Completed(usage={"input_tokens": 2, "output_tokens": len(words)})


_clients: list[openai.OpenAI] = []


def client_of(base: str, **options: Any) -> openai.OpenAI:
    """The official client on ``base`` (closed after the test)."""
    client = openai.OpenAI(base_url=base, api_key=options.pop("api_key", "unused"), **options)
    _clients.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def use_every_api(client: openai.OpenAI) -> None:
    """Background, foreground, streamed and unstored responses; a run's tool round trip."""
    queued = strict(client.responses.create(model="m", input="hi there", background=True))
    assert queued.status == "queued"
    done = poll(client, queued.id)
    assert done.status == "completed" and done.output_text == "You said: hi there"
    assert done.usage is not None and done.usage.output_tokens == 4

    foreground = strict(client.responses.create(model="m", input="now"))
    assert foreground.status == "completed" and foreground.output_text == "You said: now"
    assert client.responses.retrieve(foreground.id).output_text == "You said: now"  # stored

    with client.responses.stream(model="m", input="streamed") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "You said: streamed"

    unstored = client.responses.create(model="m", input="gone", store=False)
    assert unstored.output_text == "You said: gone"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)

    tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    run = client.beta.threads.create_and_run_poll(
        assistant_id="asst_1", tools=[tool], poll_interval_ms=20
    )
    assert run.status == "requires_action" and run.required_action is not None
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=run.thread_id,
        tool_outputs=[{"tool_call_id": call.id, "output": "42"}],
        poll_interval_ms=20,
    )
    assert run.status == "completed"


def test_a_service_with_its_handler_on_every_store(store_url: str) -> None:
    with in_thread(create_app(store_url, handler=echo)) as base:
        use_every_api(client_of(base + "/v1"))


def test_the_router_under_a_prefix_in_another_app(tmp_path: Path) -> None:
    parent = FastAPI()

    @parent.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    parent.include_router(router(f"sqlite:///{tmp_path / 'runs.db'}", echo), prefix="/llm")
    with in_thread(parent) as base:  # the router's lifespan ran as part of the parent's
        use_every_api(client_of(base + "/llm/v1"))
        assert httpx.get(base + "/health").json() == {"status": "ok"}
        assert httpx.post(base + "/v1/responses", json={}).status_code == 404  # only at /llm


def test_a_mounted_app_runs_when_the_parent_enters_its_lifespan() -> None:
    inner = create_app("memory://", handler=echo)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inner.router.lifespan_context(inner):
            yield

    parent = FastAPI(lifespan=lifespan)
    parent.mount("/llm", inner)
    with in_thread(parent) as base:
        client = client_of(base + "/llm/v1")
        response = poll(client, client.responses.create(model="m", input="x", background=True).id)
        assert response.output_text == "You said: x"


def test_a_mounted_app_whose_lifespan_never_ran_says_so() -> None:
    parent = FastAPI()
    parent.mount("/llm", create_app("memory://", handler=echo))  # Starlette skips its lifespan
    with in_thread(parent) as base:
        answer = httpx.post(base + "/llm/v1/responses", json={"model": "m", "input": "x"})
    assert answer.status_code == 503
    assert answer.json()["error"]["message"] == (
        "The runstate app has not started: its lifespan opens the store and starts the "
        "Workers (a mounted app's lifespan is not run: include runstate.server.router in the "
        "parent app instead)."
    )


def test_the_api_key_is_checked_on_every_route() -> None:
    app = create_app("memory://", handler=echo, auth=bearer("sk-right-key-1234"), metrics=True)
    with in_thread(app) as base:
        assert client_of(base + "/v1", api_key="sk-right-key-1234").responses.create(
            model="m", input="ok"
        ).output_text == ("You said: ok")
        with pytest.raises(openai.AuthenticationError) as refused:
            client_of(base + "/v1", api_key="sk-wrong-key-5678").responses.retrieve("resp_1")
        assert refused.value.status_code == 401
        assert refused.value.body == {
            "message": "Incorrect API key provided: sk-**********5678.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
        for method, path in [
            ("POST", "/v1/responses"),
            ("GET", "/v1/responses/resp_1"),
            ("POST", "/v1/responses/resp_1/cancel"),
            ("DELETE", "/v1/responses/resp_1"),
            ("GET", "/v1/responses/resp_1/input_items"),
            ("POST", "/v1/threads"),
            ("POST", "/v1/threads/runs"),
            ("GET", "/v1/threads/thread_1/runs/run_1"),
            ("GET", "/metrics"),
        ]:
            answer = httpx.request(method, base + path, json={})
            assert answer.status_code == 401, path
            assert answer.json()["error"] == {
                "message": "You didn't provide an API key. You need to provide your API key "
                "in an Authorization header using Bearer auth (i.e. Authorization: Bearer "
                "YOUR_KEY).",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        short = httpx.get(base + "/v1/responses/x", headers={"Authorization": "Bearer abc"})
        assert short.json()["error"]["message"] == "Incorrect API key provided: ***."


def test_an_auth_hook_of_the_service_s_own_may_be_async() -> None:
    seen: list[str] = []

    async def only_tenants(request: Any) -> bool:
        seen.append(request.url.path)
        return request.headers.get("x-tenant") == "acme"

    with in_thread(create_app("memory://", handler=echo, auth=only_tenants)) as base:
        client = client_of(base + "/v1", default_headers={"x-tenant": "acme"})
        assert client.responses.create(model="m", input="a").output_text == "You said: a"
        with pytest.raises(openai.AuthenticationError):
            client_of(base + "/v1").responses.create(model="m", input="a")
    assert seen == ["/v1/responses", "/v1/responses"]


def test_an_idle_stream_gets_keep_alive_comments() -> None:
    # No handler: the response stays queued, and its stream has nothing to say.
    with in_thread(create_app("memory://", keepalive=0.05)) as base:
        client = client_of(base + "/v1")
        response = client.responses.create(model="m", input="x", background=True)
        lines: list[str] = []
        with httpx.stream("GET", f"{base}/v1/responses/{response.id}?stream=true") as stream:
            for line in stream.iter_lines():
                lines.append(line)
                if lines.count(": keep-alive") == 2:
                    client.responses.cancel(response.id)  # the stream ends with it
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events == ["response.created", "response.queued", "response.cancelled"]
    assert lines.count(": keep-alive") >= 2
    # The SDK skips the comments: a stream it reads is the same as without them.


def test_without_a_handler_the_api_takes_background_work_only() -> None:
    with in_thread(create_app("memory://")) as base:
        client = client_of(base + "/v1")
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model="m", input="x")
        assert refused.value.body["message"] == (  # type: ignore[index]
            "This deployment generates responses in the background only: set 'background' to true."
        )
        assert client.responses.create(model="m", input="x", background=True).status == "queued"


def test_a_plain_function_handler_serves_the_app() -> None:
    def plain(job: Job) -> Completed | None:
        if job.kind == "response":
            job.emit("response.output_text.delta", {"delta": "from a thread"})  # blocks here
        return Completed()

    with in_thread(create_app("memory://", handler=plain)) as base:
        client = client_of(base + "/v1")
        assert client.responses.create(model="m", input="x").output_text == "from a thread"
        queued = client.responses.create(model="m", input="x", background=True)
        assert poll(client, queued.id).output_text == "from a thread"
        run = client.beta.threads.create_and_run_poll(assistant_id="a", poll_interval_ms=20)
        assert run.status == "completed"


def test_a_handler_that_raises_fails_the_response_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(job: Job) -> None:
        raise RuntimeError("secret connection string")

    with in_thread(create_app("memory://", handler=broken)) as base:
        response = client_of(base + "/v1").responses.create(model="m", input="x")
    assert response.status == "failed" and response.error is not None
    assert response.error.code == "server_error" and response.error.message == HANDLER_ERROR
    assert "secret connection string" in caplog.text  # in the log, not the answer


def test_the_handler_s_capabilities_are_the_deployment_s() -> None:
    class FunctionsOnly:
        from runstate import Capabilities

        capabilities = Capabilities(tools=["function"])

        async def __call__(self, job: Job) -> Completed:
            return Completed()

    app = create_app("memory://", handler=FunctionsOnly())
    with in_thread(app) as base, pytest.raises(openai.BadRequestError) as refused:
        client_of(base + "/v1").responses.create(
            model="m", input="x", tools=[{"type": "web_search"}]
        )
    assert "Tool type 'web_search' is not supported by this deployment" in str(refused.value)


def test_engines_of_the_service_s_own_serve_only_their_api() -> None:
    engine = AsyncResponseEngine()
    with in_thread(create_app(engine, handler=echo)) as base:
        client = client_of(base + "/v1")
        assert client.responses.create(model="m", input="x").output_text == "You said: x"
        assert httpx.post(base + "/v1/threads", json={}).status_code == 404


def test_a_sync_store_is_served_through_threads(tmp_path: Path) -> None:
    from runstate import SQLiteStore

    store = SQLiteStore(str(tmp_path / "runs.db"))
    with in_thread(create_app(store, handler=echo)) as base:
        client = client_of(base + "/v1")
        made = client.responses.create(model="m", input="kept", background=True)
        assert poll(client, made.id).output_text == "You said: kept"
    assert ResponseEngine(store).get(made.id).status.value == "completed"
    store.close()


@pytest.mark.parametrize(
    ("arguments", "options", "message"),
    [
        (
            ("memory://", "not a function"),
            {},
            "Invalid 'handler': expected a function taking a job, got str.",
        ),
        (
            ("memory://", echo),
            {"concurrency": 0},
            "Invalid 'concurrency': expected an integer from 1 to 10000, got 0.",
        ),
        (
            ("memory://", echo),
            {"workers": -1},
            "Invalid 'workers': expected an integer from 0 to 1000, got -1.",
        ),
        (
            ("memory://", echo),
            {"workers": True},
            "Invalid 'workers': expected an integer from 0 to 1000, got True.",
        ),
        (
            ("memory://", echo),
            {"lease": 0},
            "Invalid 'lease': expected an integer from 1 to 3162240000, got 0.",
        ),
        (
            ("memory://", echo),
            {"keepalive": 0},
            "Invalid 'keepalive': expected a finite number of seconds above 0 and at most 86400, got 0.",
        ),
        (
            ("memory://", echo),
            {"sweep_every": -1},
            "Invalid 'sweep_every': expected a finite number of seconds above 0 and at most 86400, got -1.",
        ),
        (
            ("memory://", echo),
            {"max_body_bytes": 0},
            "Invalid 'max_body_bytes': expected an integer from 1 to 17179869184, got 0.",
        ),
        (
            ("memory://", echo),
            {"auth": "key"},
            "Invalid 'auth': expected a function given the request, got str.",
        ),
        (
            ("memory://", echo),
            {"capabilities": ["function"]},
            "Invalid 'capabilities': expected a runstate.Capabilities, got list.",
        ),
        (("memory://", echo), {"threads": 4}, "Unknown option for runstate.server: 'threads'."),
        (
            ("nope://x", echo),
            {},
            "Unknown store scheme 'nope' in 'nope://x'; runstate knows memory://, sqlite:/// and postgresql://.",
        ),
        (
            (42, echo),
            {},
            "Invalid 'store_or_engines': expected a store URL, a store, or async engines, got int.",
        ),
        (
            ((AsyncRunEngine(), AsyncRunEngine()), echo),
            {},
            "Invalid 'store_or_engines': expected at most one AsyncRunEngine and one AsyncResponseEngine.",
        ),
        (
            ((ResponseEngine(),), echo),
            {},
            "Invalid 'store_or_engines': expected at most one AsyncRunEngine and one AsyncResponseEngine.",
        ),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(
    arguments: tuple[Any, ...], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        create_app(*arguments, **options)
    assert refused.value.message == message
    with pytest.raises(ValidationError):
        router(*arguments, **options)


def test_bearer_needs_a_key() -> None:
    with pytest.raises(ValidationError, match="Invalid 'api_key': expected a non-empty string."):
        bearer("")


def test_the_app_stops_its_workers_and_hands_back_what_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    started: list[str] = []

    async def slow(job: Job) -> None:
        started.append(job.id)
        await asyncio.sleep(60)

    with in_thread(create_app(url, handler=slow, shutdown_grace=0)) as base:
        made = client_of(base + "/v1").responses.create(model="m", input="x", background=True)
        while not started:
            time.sleep(0.01)  # bounded by the test's timeout
    store = open_store(url)
    assert ResponseEngine(store).get(made.id).status.value == "queued"  # handed back at once
    store.close()
