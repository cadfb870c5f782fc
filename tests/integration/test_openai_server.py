"""The example server, live on 127.0.0.1, driven by the official openai client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AssistantEventHandler
from openai.types.beta.threads import Run as ClientRun
from servers import serve
from tables import SEED_KEYS, pg_url

WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}
SEED_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "object": (str,),
    "created_at": (int,),
    "thread_id": (str,),
    "assistant_id": (str,),
    "status": (str,),
    "expires_at": (int, type(None)),
    "started_at": (int, type(None)),
    "cancelled_at": (int, type(None)),
    "failed_at": (int, type(None)),
    "completed_at": (int, type(None)),
    "model": (str,),
    "instructions": (str,),
    "tools": (list,),
    "metadata": (dict,),
}
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=url, api_key="test-key", max_retries=0) as made:
        yield made


def assert_run_shape(run: ClientRun) -> None:
    """The official client sends ``OpenAI-Beta: assistants=v2``: every run it gets is the
    final shape, which the client's own model validates strictly, with the first version's fields
    and their types, and no ``file_ids``."""
    data = run.model_dump(mode="json")
    ClientRun.model_validate(data)
    for key, types in SEED_TYPES.items():
        assert isinstance(data[key], types), (key, data[key])
    assert data["object"] == "thread.run"
    assert not run.model_extra  # nothing the client does not know: file_ids is v1's
    assert (run.required_action is None) == (run.status != "requires_action")
    assert (run.last_error is None) == (run.status != "failed")


def test_create_and_poll_completes(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    assert thread.id.startswith("thread_") and thread.object == "thread"
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id="asst_1", instructions="say hi", metadata={"k": "v"}
    )
    assert run.status == "completed"
    assert run.started_at is not None and run.completed_at is not None and run.expires_at is None
    assert (run.instructions, run.model, run.metadata) == ("say hi", "gpt-4o", {"k": "v"})
    assert_run_shape(run)


def test_a_function_tool_round_trip(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id="asst_1",
        tools=[WEATHER],  # type: ignore[list-item]
        metadata={"arguments": '{"city": "Paris"}'},
    )
    assert run.status == "requires_action"
    assert_run_shape(run)
    assert run.required_action is not None
    (call,) = run.required_action.submit_tool_outputs.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Paris"},
    )
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "18C"}],
    )
    assert done.status == "completed" and done.required_action is None
    assert (
        done.started_at is not None
        and run.started_at is not None
        and done.started_at >= run.started_at
    )
    assert_run_shape(done)


def test_cancel_ends_cancelled(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id="asst_1", metadata={"delay": "30"}
    )
    cancelled = client.beta.threads.runs.cancel(thread_id=thread.id, run_id=run.id)
    assert cancelled.status in ("cancelling", "cancelled")
    final = client.beta.threads.runs.poll(thread_id=thread.id, run_id=run.id)
    assert final.status == "cancelled" and final.cancelled_at is not None
    assert_run_shape(final)


def test_a_cancel_reaches_a_running_executor(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id="asst_1", metadata={"delay": "30"}
    )
    while run.status == "queued":  # wait until the executor holds it
        run = client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id)
    assert run.status == "in_progress"
    assert (
        client.beta.threads.runs.cancel(thread_id=thread.id, run_id=run.id).status == "cancelling"
    )
    final = client.beta.threads.runs.poll(thread_id=thread.id, run_id=run.id)
    assert final.status == "cancelled"


def test_a_simulated_failure(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id="asst_1",
        metadata={"simulate": "fail", "error_code": "rate_limit_exceeded"},
    )
    assert run.status == "failed" and run.failed_at is not None
    assert run.last_error is not None
    assert (run.last_error.code, run.last_error.message) == (
        "rate_limit_exceeded",
        "Simulated failure.",
    )
    assert_run_shape(run)


def test_runs_list_pages(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    ids = [
        client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_1").id
        for _ in range(5)
    ]
    page = client.beta.threads.runs.list(thread_id=thread.id, limit=2)
    assert [r.id for r in page.data] == ids[::-1][:2] and page.has_more
    assert [r.id for r in client.beta.threads.runs.list(thread_id=thread.id, limit=2)] == ids[::-1]
    asc = client.beta.threads.runs.list(thread_id=thread.id, order="asc", limit=2)
    assert [r.id for r in asc] == ids
    after = client.beta.threads.runs.list(thread_id=thread.id, order="asc", after=ids[1])
    assert [r.id for r in after.data] == ids[2:] and not after.has_more
    before = client.beta.threads.runs.list(thread_id=thread.id, order="asc", before=ids[3], limit=2)
    assert [r.id for r in before.data] == ids[1:3]
    for run in page.data:
        assert_run_shape(run)


def test_runs_update_metadata(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id="asst_1", metadata={"a": "1"}
    )
    updated = client.beta.threads.runs.update(
        thread_id=thread.id, run_id=run.id, metadata={"b": "2"}
    )
    assert updated.metadata == {"b": "2"} and updated.status == "completed"
    assert client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id).metadata == {
        "b": "2"
    }
    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.threads.runs.update(
            thread_id=thread.id, run_id=run.id, metadata={"k" * 65: "v"}
        )
    assert caught.value.body["param"] == "metadata"  # type: ignore[index]
    assert "maximum length 64" in caught.value.message


def test_typed_errors_with_the_public_messages(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    done = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_1")
    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.threads.runs.cancel(thread_id=thread.id, run_id=done.id)
    assert caught.value.status_code == 400
    assert caught.value.body == {
        "message": "Cannot cancel run with status 'completed'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }

    waiting = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id="asst_1",
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert waiting.required_action is not None
    call_id = waiting.required_action.submit_tool_outputs.tool_calls[0].id
    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.threads.runs.submit_tool_outputs(
            thread_id=thread.id,
            run_id=waiting.id,
            tool_outputs=[{"tool_call_id": "call_wrong", "output": "x"}],
        )
    assert (
        caught.value.body["message"]
        == f"Expected tool outputs for call_ids ['{call_id}'], got ['call_wrong']"
    )  # type: ignore[index]

    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id="asst_1")
    assert (
        caught.value.body["message"]
        == f"Thread {thread.id} already has an active run {waiting.id}."
    )  # type: ignore[index]

    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.threads.runs.submit_tool_outputs(
            thread_id=thread.id,
            run_id=done.id,
            tool_outputs=[{"tool_call_id": call_id, "output": "x"}],
        )
    assert caught.value.body["message"] == 'Runs in status "completed" do not accept tool outputs.'  # type: ignore[index]

    with pytest.raises(openai.NotFoundError) as caught:
        client.beta.threads.runs.retrieve(thread_id=thread.id, run_id="run_nope")
    assert caught.value.body["message"] == "No run found with id 'run_nope'."  # type: ignore[index]
    other = client.beta.threads.create()
    with pytest.raises(openai.NotFoundError):  # a run is found only on its own thread
        client.beta.threads.runs.retrieve(thread_id=other.id, run_id=done.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.beta.threads.runs.create(thread_id="thread_nope", assistant_id="asst_1")
    assert caught.value.body["message"] == "No thread found with id 'thread_nope'."  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ({}, "Missing required parameter: 'assistant_id'.", "assistant_id"),
        (
            {"assistant_id": "a", "colour": "red"},
            "Unrecognized request argument supplied: colour",
            "colour",
        ),
        ({"assistant_id": 5}, "Invalid value for 'assistant_id'", "assistant_id"),
        (
            {"assistant_id": "a", "metadata": {"k": 1}},
            "Invalid 'metadata.k': expected a string",
            "metadata",
        ),
        ({"assistant_id": "a", "tools": [{"type": "browser"}]}, "Invalid 'tools[0]'", "tools"),
    ],
)
def test_bad_request_bodies_are_clear_400s(
    url: str, body: dict[str, Any], message: str, param: str
) -> None:
    with httpx.Client(base_url=url) as http:
        thread = http.post("/threads").json()["id"]
        response = http.post(f"/threads/{thread}/runs", json=body)
        assert response.status_code == 400
        error = response.json()["error"]
        assert message in error["message"] and error["param"] == param
        assert error["type"] == "invalid_request_error"
        assert http.get(f"/threads/{thread}/runs").json()["data"] == []  # nothing was created


def test_bad_json_and_bad_list_parameters(url: str) -> None:
    with httpx.Client(base_url=url) as http:
        thread = http.post("/threads").json()["id"]
        response = http.post(
            f"/threads/{thread}/runs",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400
        for query, param in (
            ({"limit": 0}, "limit"),
            ({"order": "up"}, "order"),
            ({"after": "run_x"}, "after"),
        ):
            response = http.get(f"/threads/{thread}/runs", params=query)
            assert response.status_code == 400, query
            assert response.json()["error"]["param"] == param


class Recorder(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def on_event(self, event: Any) -> None:
        self.names.append(event.event)


def test_streaming_with_an_event_handler(client: openai.OpenAI) -> None:
    thread = client.beta.threads.create()
    handler = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id,
        assistant_id="asst_1",
        tools=[WEATHER],
        event_handler=handler,  # type: ignore[list-item]
    ) as stream:
        stream.until_done()
        run = stream.current_run
    assert handler.names == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.requires_action",
    ]
    assert run is not None and run.status == "requires_action" and run.required_action is not None
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    resumed = Recorder()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "18C"}],
        event_handler=resumed,
    ) as stream:
        stream.until_done()
        final = stream.current_run
    assert resumed.names == ["thread.run.queued", "thread.run.in_progress", "thread.run.completed"]
    assert final is not None and final.status == "completed"
    assert_run_shape(final)


def test_raw_stream_frames(url: str) -> None:
    with httpx.Client(base_url=url) as http:
        thread = http.post("/threads").json()["id"]
        with http.stream(
            "POST", f"/threads/{thread}/runs", json={"assistant_id": "a", "stream": True}
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            text = "".join(response.iter_text())
    frames = [f for f in text.split("\n\n") if f]
    assert frames[-1] == "event: done\ndata: [DONE]"
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames[:-1]]
    assert names == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.completed",
    ]
    last = json.loads(frames[-2].split("\n")[1].removeprefix("data: "))
    assert last["status"] == "completed" and last["object"] == "thread.run"


def test_expiry_under_a_short_ttl() -> None:
    with (
        serve("memory://", "--ttl", "2") as base,
        openai.OpenAI(base_url=base, api_key="k", max_retries=0) as client,
    ):
        thread = client.beta.threads.create()
        run = client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id="asst_1", metadata={"simulate": "stall"}
        )
        assert run.status == "expired"
        assert run.expires_at == run.created_at + 2
        assert run.completed_at is None and run.failed_at is None and run.cancelled_at is None
        assert_run_shape(run)
        with pytest.raises(openai.BadRequestError) as caught:
            client.beta.threads.runs.cancel(thread_id=thread.id, run_id=run.id)
        assert caught.value.body["message"] == "Cannot cancel run with status 'expired'."  # type: ignore[index]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_an_executor_in_another_process(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        store = f"sqlite:///{tmp_path / 'runs.db'}"
    else:
        store = pg_url(request.getfixturevalue("pg_schema"))
    with (
        serve(store, executor=True) as base,
        openai.OpenAI(base_url=base, api_key="k", max_retries=0) as client,
    ):
        thread = client.beta.threads.create()
        handler = Recorder()
        with client.beta.threads.runs.stream(
            thread_id=thread.id, assistant_id="asst_1", event_handler=handler
        ) as stream:
            stream.until_done()
        assert handler.names[-1] == "thread.run.completed"
        run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_1")
        assert run.status == "completed"


# --- the two shapes of a run -------------------------------------------------------------------


def test_a_request_without_the_beta_header_gets_the_seeds_shape(url: str) -> None:
    with httpx.Client(base_url=url) as http:
        for headers in ({}, {"OpenAI-Beta": "assistants=v1"}):
            thread = http.post("/threads").json()["id"]
            run = http.post(
                f"/threads/{thread}/runs", json={"assistant_id": "a"}, headers=headers
            ).json()
            assert list(run) == SEED_KEYS
        thread = http.post("/threads").json()["id"]
        refused = http.post(f"/threads/{thread}/runs", json={"assistant_id": "a", "temperature": 1})
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "temperature"
        wrong = http.post(
            f"/threads/{thread}/runs",
            json={"assistant_id": "a"},
            headers={"OpenAI-Beta": "assistants=v3"},
        )
        assert wrong.status_code == 400
        assert "assistants=v3 is not supported" in wrong.json()["error"]["message"]


def test_the_official_client_gets_v2_runs_with_their_settings_and_usage(
    client: openai.OpenAI,
) -> None:
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id="asst_1",
        temperature=0.4,
        max_completion_tokens=300,
        truncation_strategy={"type": "last_messages", "last_messages": 3},
        tool_choice="auto",
        response_format={"type": "json_object"},
    )
    assert_run_shape(run)
    assert run.status == "completed" and run.temperature == 0.4
    assert run.usage is not None and run.usage.total_tokens == 20
    assert run.truncation_strategy is not None and run.truncation_strategy.last_messages == 3
    stopped = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id="asst_1", metadata={"simulate": "incomplete"}
    )
    assert_run_shape(stopped)
    assert stopped.status == "incomplete"
    assert stopped.incomplete_details is not None
    assert stopped.incomplete_details.reason == "max_completion_tokens"
    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id="a", temperature=7)
    assert caught.value.body["param"] == "temperature"  # type: ignore[index]


def test_a_v2_run_takes_additional_messages(client: openai.OpenAI, url: str) -> None:
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id="asst_1",
        additional_messages=[
            {"role": "user", "content": "First"},
            {"role": "assistant", "content": [{"type": "text", "text": "Noted."}]},
            {"role": "user", "content": "Second", "metadata": {"k": "v"}},
        ],
    )
    assert run.status == "completed"
    with httpx.Client(base_url=url, timeout=30) as http:
        bad = http.post(
            f"/threads/{thread.id}/runs",
            json={
                "assistant_id": "a",
                "additional_messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}],
            },
            headers={"OpenAI-Beta": "assistants=v2"},
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["param"] == "additional_messages[0].content[0].text"
        assert bad.json()["error"]["message"] == (
            "Invalid type for 'additional_messages[0].content[0].text': expected a string, but got a number instead."
        )
        assert len(http.get(f"/threads/{thread.id}/runs").json()["data"]) == 1  # nothing made


def test_create_thread_and_run_takes_tool_resources(client: openai.OpenAI, url: str) -> None:
    run = client.beta.threads.create_and_run_poll(
        assistant_id="asst_1",
        tool_resources={
            "code_interpreter": {"file_ids": ["file-1"]},
            "file_search": {"vector_store_ids": ["vs_1"]},
        },
    )
    assert run.status == "completed"
    with httpx.Client(base_url=url, timeout=30) as http:
        bad = http.post(
            "/threads/runs",
            json={
                "assistant_id": "a",
                "tool_resources": {"code_interpreter": {"file_ids": "file-1"}},
            },
        )
        assert (
            bad.status_code == 400
            and bad.json()["error"]["param"] == "tool_resources.code_interpreter.file_ids"
        )


def test_a_nul_in_a_path_id_is_the_404_of_any_unknown_id(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        thread = http.post("/threads").json()["id"]
        for unknown in ("unknown", "nul%00id", "%ED%A0%80"):
            for path in (
                f"/responses/resp_{unknown}",
                f"/responses/resp_{unknown}/input_items",
                f"/threads/{thread}/runs/run_{unknown}",
                f"/threads/thread_{unknown}/runs",
            ):
                answer = http.get(path)
                assert answer.status_code == 404, (path, answer.text)
                error = answer.json()["error"]
                assert error["type"] == "invalid_request_error"
                assert error["message"].startswith("No ") and " found with id '" in error["message"]
            assert http.post(f"/responses/resp_{unknown}/cancel").status_code == 404
