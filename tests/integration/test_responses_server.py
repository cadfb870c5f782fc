"""The server's Responses API, live on 127.0.0.1, driven by the official openai
client: background responses created, polled, streamed, resumed, cancelled, deleted,
every object read strictly with the client's own model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from servers import poll, strict

from runstate.server._demo import REPLY

pytestmark = pytest.mark.timeout(120)
WORDS = len(REPLY.split(" "))


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=url, api_key="test-key", max_retries=0) as made:
        yield made


def types_of(events: list[Any]) -> list[str]:
    return [event.type for event in events]


def test_a_background_response_is_generated_and_polled(client: openai.OpenAI) -> None:
    created = strict(client.responses.create(model="gpt-4o", input="Hi", background=True))
    assert created.status in ("queued", "in_progress") and created.background is True
    done = poll(client, created.id)
    assert done.status == "completed" and done.output_text == REPLY
    assert done.usage is not None and done.usage.output_tokens == WORDS
    assert done.completed_at is not None and done.completed_at >= done.created_at


def test_a_streamed_background_response_has_every_event_in_order(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="gpt-4o", input="Hi", background=True, stream=True))
    assert types_of(events)[:3] == ["response.created", "response.queued", "response.in_progress"]
    assert types_of(events)[3:5] == ["response.output_item.added", "response.content_part.added"]
    assert types_of(events)[5:-4] == ["response.output_text.delta"] * WORDS
    assert types_of(events)[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert "".join(event.delta for event in events[5:-4]) == REPLY
    assert events[-1].response.output_text == REPLY


def test_a_stream_resumes_after_any_event(client: openai.OpenAI) -> None:
    created = client.responses.create(model="gpt-4o", input="Hi", background=True)
    poll(client, created.id)
    every = list(client.responses.retrieve(created.id, stream=True))
    resumed = list(client.responses.retrieve(created.id, stream=True, starting_after=5))
    assert [e.sequence_number for e in resumed] == list(range(6, len(every)))
    assert [e.model_dump() for e in resumed] == [e.model_dump() for e in every[6:]]


def test_a_foreground_response_is_answered_when_done(client: openai.OpenAI) -> None:
    done = strict(client.responses.create(model="gpt-4o", input="Hi"))
    assert (done.status, done.background, done.output_text) == ("completed", False, REPLY)
    with pytest.raises(openai.BadRequestError, match="Only responses created with background"):
        client.responses.cancel(done.id)
    streamed = list(client.responses.create(model="gpt-4o", input="Hi", stream=True))
    assert types_of(streamed)[:2] == ["response.created", "response.in_progress"]
    assert types_of(streamed)[-1] == "response.completed"


def test_cancel_is_immediate_and_idempotent(client: openai.OpenAI) -> None:
    slow = client.responses.create(
        model="gpt-4o", input="Hi", background=True, metadata={"delay": "30"}
    )
    stream = client.responses.retrieve(slow.id, stream=True)
    for event in stream:  # wait until a worker is generating it
        if event.type == "response.output_text.delta":
            break
    cancelled = strict(client.responses.cancel(slow.id))
    assert cancelled.status == "cancelled"
    rest = list(stream)  # the stream ends with the cancel, and nothing after it
    assert types_of(rest)[-1] == "response.cancelled"
    assert "response.completed" not in types_of(rest)
    again = strict(client.responses.cancel(slow.id))  # 200, the same response
    assert again.model_dump() == cancelled.model_dump()
    assert client.responses.retrieve(slow.id).status == "cancelled"


def test_failed_incomplete_and_deleted_responses(client: openai.OpenAI) -> None:
    failed = client.responses.create(
        model="gpt-4o", input="Hi", background=True, metadata={"simulate": "fail"}
    )
    ended = poll(client, failed.id)
    assert ended.status == "failed" and ended.error is not None
    assert ended.error.code == "server_error"
    short = client.responses.create(
        model="gpt-4o", input="Hi", background=True, metadata={"simulate": "incomplete"}
    )
    stopped = poll(client, short.id)
    assert stopped.status == "incomplete" and stopped.incomplete_details is not None
    assert stopped.incomplete_details.reason == "max_output_tokens"
    client.responses.delete(failed.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(failed.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(failed.id)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"max_output_tokens": 1}, "max_output_tokens"),
        ({"metadata": {"simulate": "explode"}}, "metadata"),
        ({"previous_response_id": "resp_missing"}, "previous_response_id"),
        ({"extra_body": {"teleport": True}}, "teleport"),
    ],
)
def test_bad_requests_are_400s_and_store_nothing(
    client: openai.OpenAI, kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-4o", input="Hi", background=True, **kwargs)
    body = info.value.body
    assert isinstance(body, dict) and body["param"] == param


def test_a_bad_resume_point_is_a_400(client: openai.OpenAI) -> None:
    created = client.responses.create(model="gpt-4o", input="Hi", background=True)
    with pytest.raises(openai.BadRequestError):
        list(client.responses.retrieve(created.id, stream=True, starting_after=-1))
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_missing")


def test_the_idempotency_key_header_makes_one_object(url: str) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as http:
        body = {"model": "gpt-4o", "input": "Hi", "background": True}
        first = http.post("/responses", json=body, headers={"Idempotency-Key": "k-resp"})
        again = http.post("/responses", json=body, headers={"Idempotency-Key": "k-resp"})
        assert first.status_code == again.status_code == 200
        assert first.json()["id"] == again.json()["id"]
        other = http.post(
            "/responses", json={**body, "input": "Other"}, headers={"Idempotency-Key": "k-resp"}
        )
        assert other.status_code == 409 and other.json()["error"]["param"] == "idempotency_key"
        run_body = {"assistant_id": "asst_1"}
        made = http.post("/threads/runs", json=run_body, headers={"Idempotency-Key": "k-run"})
        retried = http.post("/threads/runs", json=run_body, headers={"Idempotency-Key": "k-run"})
        assert made.json()["id"] == retried.json()["id"]
        assert made.json()["thread_id"] == retried.json()["thread_id"]


def test_metrics_are_served_in_the_prometheus_format(client: openai.OpenAI, url: str) -> None:
    import httpx

    poll(client, client.responses.create(model="gpt-4o", input="Hi", background=True).id)
    text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=30).text
    assert "runstate_transitions" in text and 'runstate_lifecycle="response"' in text
    assert "runstate_claims" in text and "runstate_queue_depth" in text
