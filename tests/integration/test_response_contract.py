"""The background response's contract, run on every store: every object
the engine returns is checked by the official ``openai`` package's own model, and every
stream payload by its stream-event models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Every test here runs on the sync engines and on their async twins (``face``).
import pytest
from faces import Faces
from openai.types.responses import Response as OpenAIResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter
from tables import DELTA, OUTPUT, RESPONSE_ROWS, RESPONSE_USAGE, T0, response_in

from runstate import (
    IdempotencyError,
    InvalidTransitionError,
    LeaseError,
    ManualClock,
    ObjectNotFoundError,
    Response,
    ResponseEngine,
    ResponseNotFoundError,
    ResponseStatus,
    RunEvent,
    RunNotFoundError,
    RunStateError,
    Store,
    ValidationError,
)

#: Every test here runs on the sync engine and on its async twin.
pytestmark = pytest.mark.usefixtures("faces")

R = ResponseStatus
TIMEOUT = 3600
LEASE = 30
STREAM_EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


@pytest.fixture
def engine(faces: Faces, store: Store, clock: ManualClock) -> ResponseEngine:
    return faces.response(store, clock, timeout=TIMEOUT, lease_seconds=LEASE, max_attempts=2)


def checked(response: Response) -> Response:
    """``response``, once the openai package's model has accepted its JSON."""
    OpenAIResponse.model_validate(response.to_dict())
    return response


def assert_stream_is_whole(engine: ResponseEngine, response_id: str) -> list[RunEvent]:
    """The response's events are numbered 0, 1, 2... with no gaps; each payload is what
    the public stream sends, accepted by the openai package where it has a model (it has
    none for ``response.cancelled``, ours)."""
    events = engine.events(response_id)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    for event in events:
        payload = event.payload()
        assert payload["type"] == event.event
        assert payload["sequence_number"] == event.sequence_number
        if not event.appended:
            assert payload["response"]["status"] == event.to_status
            checked(Response.from_dict(payload["response"]))
        if event.event not in ("response.cancelled", "response.progress"):  # ours
            STREAM_EVENTS.validate_python(payload, strict=True)
    return events


def new(engine: ResponseEngine, **kwargs: Any) -> Response:
    return checked(engine.create(model="gpt-4o", input="Say hello", **kwargs))


def assert_refused(*steps: tuple[Callable[[], object], str]) -> None:
    """Each step is refused (``InvalidTransitionError``) with exactly its message."""
    for step, message in steps:
        with pytest.raises(InvalidTransitionError) as info:
            step()
        assert info.value.message == message


def claimed(engine: ResponseEngine, worker: str = "w1") -> Response:
    response = engine.claim(worker)
    assert response is not None
    return checked(response)


# --- create, read, list ------------------------------------------------------------------------


def test_create_queues_a_background_response(engine: ResponseEngine) -> None:
    response = new(engine, metadata={"k": "v"}, instructions="Be brief", temperature=0.5)
    assert response.id.startswith("resp_")
    assert (response.status, response.created_at, response.background) == (R.QUEUED, T0, True)
    assert response.output == [] and response.usage is None and response.completed_at is None
    assert checked(engine.get(response.id)) == response
    assert engine.input_of(response.id) == "Say hello"
    events = assert_stream_is_whole(engine, response.id)
    assert [e.event for e in events] == ["response.created", "response.queued"]


def test_a_foreground_response_starts_in_progress(engine: ResponseEngine) -> None:
    response = new(engine, background=False)
    assert response.status is R.IN_PROGRESS
    assert engine.claim("w1") is None  # nobody claims what its caller generates
    done = checked(engine.complete(response.id, output=OUTPUT, usage=RESPONSE_USAGE))
    assert (done.status, done.output_text) == (R.COMPLETED, "Hello")
    events = assert_stream_is_whole(engine, response.id)
    assert [e.event for e in events] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]


def test_input_items_are_kept_for_the_worker(engine: ResponseEngine) -> None:
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    response = checked(engine.create(model="m", input=items))
    assert engine.input_of(response.id) == items
    assert "input" not in response.to_dict()


def test_previous_response_id_must_name_a_stored_response(engine: ResponseEngine) -> None:
    first = new(engine)
    with pytest.raises(ValidationError) as info:
        new(engine, previous_response_id=first.id)
    assert info.value.message == (
        f"Previous response with id '{first.id}' is still queued; continue from it once it "
        "has ended."
    )
    claimed(engine)
    engine.complete(first.id, output=OUTPUT)
    more = [{"role": "user", "content": "More"}]
    second = checked(engine.create(model="m", input=more, previous_response_id=first.id))
    assert second.previous_response_id == first.id
    context = engine.context_of(second.id)
    # What a worker reads to begin: both in one read of what the response keeps.
    assert engine.work_of(second.id) == {"request": engine.request_of(second.id), "input": context}
    assert [item["type"] for item in context] == ["message", "message", "message"]
    assert context[0]["content"] == [{"type": "input_text", "text": "Say hello"}]
    assert context[1] == {**OUTPUT[0], "content": [{**OUTPUT[0]["content"][0], "logprobs": []}]}
    assert context[2]["content"] == [{"type": "input_text", "text": "More"}]
    claimed(engine)
    engine.complete(second.id, output=[])
    reference = [{"type": "item_reference", "id": "msg_1"}]
    third = engine.create(model="m", input=reference, previous_response_id=second.id)
    assert engine.input_items(third.id).data == [context[1]]  # the reference, resolved
    assert len(engine.context_of(third.id)) == 4
    engine.delete(first.id)
    for gone in ("resp_nope", first.id):
        with pytest.raises(ValidationError) as info:
            new(engine, previous_response_id=gone)
        assert (info.value.param, info.value.message) == (
            "previous_response_id",
            f"Previous response with id '{gone}' not found.",
        )
    with pytest.raises(ValidationError) as info:
        engine.create(model="m", input=[{"type": "item_reference", "id": "msg_nope"}])
    assert (info.value.param, info.value.message) == (
        "input[0].id",
        "Item with id 'msg_nope' not found.",
    )
    assert len(engine.list().data) == 2


def test_list_is_newest_first_in_cursor_pages(engine: ResponseEngine, clock: ManualClock) -> None:
    ids = []
    for _ in range(5):
        ids.append(new(engine).id)
        clock.advance(1)
    page = engine.list(limit=2)
    assert [r.id for r in page.data] == ids[::-1][:2] and page.has_more
    rest = engine.list(limit=10, after=page.last_id)
    assert [r.id for r in rest.data] == ids[::-1][2:] and not rest.has_more
    assert [r.id for r in engine.list(order="asc", before=ids[3]).data] == ids[:3]
    engine.cancel(ids[0])
    assert [r.id for r in engine.list(status="cancelled").data] == [ids[0]]
    assert engine.list().to_dict()["object"] == "list"


def test_runs_and_responses_share_one_store_apart(
    faces: Faces, engine: ResponseEngine, store: Store
) -> None:
    runs = faces.run(store, engine.lifecycle._clock)
    run = runs.create(thread_id="t", assistant_id="a")
    response = new(engine)
    assert [r.id for r in engine.list().data] == [response.id]
    assert [r.id for r in runs.list(None).data] == [run.id]
    assert claimed(engine).id == response.id and engine.claim("w1") is None
    claimed_run = runs.claim("w2")
    assert claimed_run is not None and claimed_run.id == run.id
    with pytest.raises(RunNotFoundError, match=f"No run found with id '{response.id}'"):
        runs.get(response.id)
    with pytest.raises(ResponseNotFoundError, match=f"No response found with id '{run.id}'"):
        engine.get(run.id)
    with pytest.raises(ValidationError):  # a run's id is not a cursor among responses
        engine.list(after=run.id)


# --- the worker: claim, append, complete --------------------------------------------------------


def test_a_worker_streams_deltas_and_completes(engine: ResponseEngine, clock: ManualClock) -> None:
    response = new(engine)
    clock.advance(1)
    running = claimed(engine)
    assert running.status is R.IN_PROGRESS
    noted = [engine.append(response.id, "response.progress", {"step": 1}, worker_id="w1")]
    noted.append(engine.append(response.id, "response.progress", {"step": 2}))
    assert [e.sequence_number for e in noted] == [3, 4]
    assert noted[0].payload() == {"type": "response.progress", "sequence_number": 3, "step": 1}
    clock.advance(2)
    done = checked(
        engine.complete(response.id, output=OUTPUT, usage=RESPONSE_USAGE, worker_id="w1")
    )
    assert (done.status, done.completed_at, done.output_text) == (R.COMPLETED, T0 + 3, "Hello")
    assert done.output[0]["content"][0]["logprobs"] == []  # as the public object has it
    assert done.usage is not None and done.usage["total_tokens"] == 5
    events = assert_stream_is_whole(engine, response.id)
    assert [e.event for e in events] == [
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.progress",
        "response.progress",
        "response.completed",
    ]
    assert events[3] == noted[0] and events[4] == noted[1]
    resumed = engine.events(response.id, starting_after=3)
    assert [e.sequence_number for e in resumed] == [4, 5]
    assert engine.events(response.id, starting_after=5) == []


def test_a_worker_streams_a_message_the_library_frames(
    engine: ResponseEngine, clock: ManualClock
) -> None:
    response = new(engine)
    claimed(engine)
    item_id = engine.open_message(response.id, worker_id="w1")
    assert item_id.startswith("msg_")
    assert engine.get(response.id).output == [
        {
            "id": item_id,
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "", "annotations": [], "logprobs": []}],
        }
    ]
    logprob = {"token": "Hel", "logprob": -0.5}
    first = engine.add_text(response.id, "Hel", logprobs=[logprob], worker_id="w1")
    assert first.payload() == {
        "type": "response.output_text.delta",
        "sequence_number": 5,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "delta": "Hel",
        "logprobs": [{"top_logprobs": [], "bytes": [72, 101, 108], **logprob}],
    }
    engine.add_text(response.id, "lo", worker_id="w1")
    assert engine.get(response.id).output_text == "Hello"  # a poll sees the text so far
    item = engine.close_message(response.id, worker_id="w1")
    assert item["status"] == "completed" and item["content"][0]["text"] == "Hello"
    call = engine.function_call(
        response.id, name="lookup", arguments='{"q": 1}', call_id="call_1", worker_id="w1"
    )
    assert (call["type"], call["call_id"], call["status"]) == (
        "function_call",
        "call_1",
        "completed",
    )
    done = checked(engine.complete(response.id, usage=RESPONSE_USAGE, worker_id="w1"))
    assert done.output == [item, call] and done.output_text == "Hello"
    events = assert_stream_is_whole(engine, response.id)
    assert [e.event for e in events][3:] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[7].payload()["text"] == "Hello"
    assert events[10].payload()["item"]["arguments"] == ""  # added before its arguments


def test_a_message_opened_with_its_first_text_is_one_write(
    engine: ResponseEngine, store: Store
) -> None:
    response = new(engine)
    claimed(engine)
    version = store.get(response.id).version
    logprob = {"token": "Hi", "logprob": -0.25}
    item_id = engine.open_message(response.id, text="Hi", logprobs=[logprob], worker_id="w1")
    assert store.get(response.id).version == version + 1  # one write
    part = engine.get(response.id).output[0]["content"][0]
    assert part["text"] == "Hi" and part["logprobs"][0]["logprob"] == -0.25
    events = assert_stream_is_whole(engine, response.id)
    assert [e.event for e in events][-3:] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert events[-1].payload()["item_id"] == item_id and events[-1].data["delta"] == "Hi"
    engine.close_message(response.id, worker_id="w1")
    with pytest.raises(ValidationError) as refused:
        engine.open_message(response.id, logprobs=[logprob], worker_id="w1")
    assert refused.value.message == "Invalid 'logprobs': they go with the message's first 'text'."
    with pytest.raises(ValidationError, match="Invalid 'text'"):
        engine.open_message(response.id, text=5, worker_id="w1")  # type: ignore[arg-type]
    assert len(engine.get(response.id).output) == 1  # nothing opened by either


def test_a_function_call_streamed_a_piece_at_a_time(engine: ResponseEngine) -> None:
    response = new(engine)
    claimed(engine)
    added = engine.open_function_call(response.id, name="lookup", call_id="call_9", worker_id="w1")
    assert (added["status"], added["arguments"], added["call_id"]) == ("in_progress", "", "call_9")
    for piece in ('{"q"', ": 1}"):
        engine.add_arguments(response.id, piece, worker_id="w1")
    assert engine.get(response.id).output[0]["arguments"] == '{"q": 1}'  # a poll sees them
    with pytest.raises(InvalidTransitionError) as info:
        engine.add_text(response.id, "x")
    assert info.value.message == "Cannot add text: no message is open; open one first."
    with pytest.raises(InvalidTransitionError) as info:
        engine.open_message(response.id)
    assert info.value.message == (
        "Cannot open a message: output item 0 (function_call) is still open; close it first."
    )
    item = engine.close_function_call(response.id, worker_id="w1")
    assert item == {**added, "arguments": '{"q": 1}', "status": "completed"}
    events = assert_stream_is_whole(engine, response.id)
    assert [(e.event, e.data.get("delta")) for e in events][-5:] == [
        ("response.output_item.added", None),
        ("response.function_call_arguments.delta", '{"q"'),
        ("response.function_call_arguments.delta", ": 1}"),
        ("response.function_call_arguments.done", None),
        ("response.output_item.done", None),
    ]
    assert events[-2].payload()["arguments"] == '{"q": 1}'
    assert_refused(
        (
            lambda: engine.add_arguments(response.id, "x"),
            "Cannot add arguments: no function call is open; open one first.",
        ),
        (
            lambda: engine.close_function_call(response.id),
            "Cannot close a function call: no function call is open; open one first.",
        ),
    )
    with pytest.raises(ValidationError) as bad:
        engine.open_function_call(response.id, name="")
    assert bad.value.param == "name"
    engine.open_function_call(response.id, name="f")
    with pytest.raises(ValidationError) as bad:
        engine.add_arguments(response.id, 5)  # type: ignore[arg-type]
    assert bad.value.param == "delta"
    assert len(engine.events(response.id)) == len(events) + 1  # only the second opening


def test_the_output_methods_refuse_out_of_order_steps(engine: ResponseEngine) -> None:
    response = new(engine)
    claimed(engine)
    before = engine.events(response.id)
    assert_refused(
        (
            lambda: engine.add_text(response.id, "x"),
            "Cannot add text: no message is open; open one first.",
        ),
        (
            lambda: engine.close_message(response.id),
            "Cannot close a message: no message is open; open one first.",
        ),
    )
    engine.open_message(response.id)
    assert_refused(
        (
            lambda: engine.open_message(response.id),
            "Cannot open a message: output item 0 (message) is still open; close it first.",
        ),
        (
            lambda: engine.function_call(response.id, name="f", arguments="{}"),
            "Cannot make a function call: output item 0 (message) is still open; close it first.",
        ),
        (
            lambda: engine.complete(response.id),
            "Cannot complete a response whose output item 0 is still open; close it first.",
        ),
    )
    assert len(engine.events(response.id)) == len(before) + 2  # only the opening
    for bad, param in [
        (lambda: engine.add_text(response.id, 5), "delta"),
        (lambda: engine.add_text(response.id, "x", logprobs=[{"token": 1}]), "logprobs"),
        (lambda: engine.add_text(response.id, "x\x00"), "delta"),
        (lambda: engine.function_call(response.id, name="", arguments="{}"), "name"),
    ]:
        with pytest.raises(ValidationError) as info:
            bad()
        assert info.value.param == param
    stopped = engine.incomplete(response.id, reason="max_output_tokens")
    assert stopped.output[0]["status"] == "incomplete"  # what was open, closed as cut short


def test_incomplete_and_fail_record_their_details(engine: ResponseEngine) -> None:
    first, second = new(engine), new(engine)
    claimed(engine)
    ended = checked(engine.incomplete(first.id, reason="max_output_tokens", output=OUTPUT))
    assert (ended.status, ended.incomplete_details) == (
        R.INCOMPLETE,
        {"reason": "max_output_tokens"},
    )
    failed = checked(engine.fail(second.id, code="rate_limit_exceeded", message="slow down"))
    assert failed.error == {"code": "rate_limit_exceeded", "message": "slow down"}
    for response in (first, second):
        assert_stream_is_whole(engine, response.id)


def test_another_workers_steps_are_refused(engine: ResponseEngine) -> None:
    response = new(engine)
    claimed(engine, "w1")
    before = engine.events(response.id)
    with pytest.raises(LeaseError, match="Response .* is leased to worker 'w1', not to 'w2'"):
        engine.append(response.id, "response.progress", DELTA, worker_id="w2")
    with pytest.raises(LeaseError):
        engine.complete(response.id, output=OUTPUT, worker_id="w2")
    with pytest.raises(LeaseError):
        engine.heartbeat(response.id, "w2")
    assert engine.events(response.id) == before


# --- cancel -------------------------------------------------------------------------------------


def test_cancel_is_immediate_and_a_late_complete_is_refused(engine: ResponseEngine) -> None:
    response = new(engine)
    claimed(engine)
    cancelled = checked(engine.cancel(response.id))
    assert cancelled.status is R.CANCELLED
    with pytest.raises(
        InvalidTransitionError, match="Cannot complete response with status 'cancelled'"
    ):
        engine.complete(response.id, output=OUTPUT, worker_id="w1")
    with pytest.raises(
        InvalidTransitionError, match="Cannot append to response with status 'cancelled'"
    ):
        engine.append(response.id, "response.progress", DELTA, worker_id="w1")
    with pytest.raises(InvalidTransitionError, match="Cannot heartbeat response"):
        engine.heartbeat(response.id, "w1")  # the worker learns of the cancel here too
    assert engine.get(response.id) == cancelled
    events = assert_stream_is_whole(engine, response.id)
    assert events[-1].event == "response.cancelled"


def test_only_a_change_of_status_rings_the_objects_status_key(engine: ResponseEngine) -> None:
    """A worker's watch waits on ``changed_key``: the stream's writes ring the object's
    id, and only a write that moves its status (claim, cancel) rings the status key."""
    from runstate.stores._bell import changed_key

    response = new(engine)
    bell, key = engine.bell, changed_key(response.id)
    mark = bell.mark(key)
    claimed(engine)
    assert bell._moved(key, mark)  # queued to in_progress
    while bell.wait(key, bell.mark(key), 0.3):
        pass  # until another process's echo of the claim (PostgreSQL's, SQLite's) is heard
    mark = bell.mark(key)
    engine.open_message(response.id, worker_id="w1")
    engine.add_text(response.id, "Hi", worker_id="w1")
    engine.heartbeat(response.id, "w1")
    assert not bell._moved(key, mark) and bell._moved(response.id, mark)
    changed = engine.wait_for_change(response.id, status=R.IN_PROGRESS, timeout=0.05)
    assert changed.status is R.IN_PROGRESS  # nothing changed it: the wait timed out
    engine.cancel(response.id)
    assert bell._moved(key, mark)


@pytest.mark.parametrize("ending", [R.COMPLETED, R.FAILED, R.CANCELLED, R.INCOMPLETE])
def test_cancelling_an_ended_background_response_is_idempotent(
    engine: ResponseEngine, ending: ResponseStatus
) -> None:
    response = checked(response_in(engine, ending))
    before = (engine.get(response.id), engine.events(response.id), engine.store.get(response.id))
    for _ in range(2):
        assert checked(engine.cancel(response.id)) == before[0]
    assert (engine.get(response.id), engine.events(response.id)) == before[:2]
    assert engine.store.get(response.id).version == before[2].version  # nothing written


def test_a_foreground_response_cannot_be_cancelled(engine: ResponseEngine) -> None:
    response = new(engine, background=False)
    with pytest.raises(InvalidTransitionError) as info:
        engine.cancel(response.id)
    assert info.value.http_status == 400
    assert info.value.message == "Only responses created with background=true can be cancelled."
    engine.complete(response.id, output=[])
    with pytest.raises(InvalidTransitionError):  # nor once it has ended
        engine.cancel(response.id)


# --- time-outs, stalled workers, delete ---------------------------------------------------------


def test_an_active_response_past_its_deadline_fails(
    engine: ResponseEngine, clock: ManualClock
) -> None:
    waiting, running = new(engine), new(engine)
    claimed(engine)  # the older one: waiting
    clock.advance(TIMEOUT - 1)
    assert engine.expire_due() == []
    clock.advance(1)
    timed_out = engine.expire_due()
    assert {r.id for r in timed_out} == {waiting.id, running.id}
    for response in timed_out:
        assert checked(response).status is R.FAILED
        assert response.error == {"code": "server_error", "message": "The response timed out."}
        assert engine.events(response.id)[-1].event == "response.failed"
    assert engine.expire_due() == []


def test_reading_a_due_response_times_it_out(engine: ResponseEngine, clock: ManualClock) -> None:
    response = new(engine)
    clock.advance(TIMEOUT)
    assert checked(engine.get(response.id)).status is R.FAILED
    assert engine.claim("w1") is None


def test_a_stalled_response_is_requeued_then_failed(
    engine: ResponseEngine, clock: ManualClock
) -> None:
    response = new(engine)
    claimed(engine, "w1")
    clock.advance(LEASE)
    recovered = engine.recover_stalled()
    assert [(r.id, r.status) for r in recovered] == [(response.id, R.QUEUED)]
    claimed(engine, "w2")
    engine.heartbeat(response.id, "w2")
    clock.advance(LEASE - 1)
    assert engine.recover_stalled() == []  # the heartbeat kept it
    clock.advance(1)
    (failed,) = engine.recover_stalled()
    assert checked(failed).status is R.FAILED
    assert failed.error == {
        "code": "server_error",
        "message": "The response's worker stopped responding 2 times.",
    }
    assert_stream_is_whole(engine, response.id)


def test_delete_removes_the_response_and_its_events(engine: ResponseEngine, store: Store) -> None:
    kept, gone = new(engine), new(engine)
    assert engine.delete(gone.id) is True
    assert engine.delete(gone.id) is False
    with pytest.raises(ResponseNotFoundError, match=f"No response found with id '{gone.id}'"):
        engine.get(gone.id)
    with pytest.raises(ResponseNotFoundError):
        engine.events(gone.id)
    with pytest.raises(ResponseNotFoundError):
        engine.input_of(gone.id)
    assert [r.id for r in engine.list().data] == [kept.id]
    assert all(e.run_id != gone.id for e in store.events(0, limit=1000))
    assert engine.delete("resp_never") is False


def test_a_deleted_response_ends_its_workers_steps(engine: ResponseEngine) -> None:
    response = new(engine)
    claimed(engine)
    engine.delete(response.id)
    with pytest.raises(ResponseNotFoundError):
        engine.append(response.id, "response.progress", DELTA)
    with pytest.raises(ResponseNotFoundError):
        engine.complete(response.id, output=OUTPUT)


# --- every row of the table, and every refused pair ---------------------------------------------


def fire(engine: ResponseEngine, response_id: str, event: str) -> Response:
    """One event of the table, through the engine (``requeue`` as a stalled lease)."""
    if event == "start":
        return claimed(engine)
    if event == "complete":
        return engine.complete(response_id, output=OUTPUT, usage=RESPONSE_USAGE)
    if event == "incomplete":
        return engine.incomplete(response_id, reason="max_output_tokens")
    if event == "fail":
        return engine.fail(response_id, message="boom")
    if event == "cancel":
        return engine.cancel(response_id)
    assert event == "requeue"
    store = engine.store
    clock: ManualClock = engine.lifecycle._clock  # type: ignore[assignment]
    clock.advance(LEASE)
    (recovered,) = engine.recover_stalled()
    assert store.get(response_id).lease_owner is None
    return recovered


@pytest.mark.parametrize(("event", "source", "dest"), RESPONSE_ROWS)
def test_every_row_of_the_table(
    engine: ResponseEngine, event: str, source: ResponseStatus, dest: ResponseStatus
) -> None:
    response = response_in(engine, source)
    after = checked(fire(engine, response.id, event))
    assert after.status is dest
    events = assert_stream_is_whole(engine, response.id)
    assert (events[-1].from_status, events[-1].to_status) == (source.value, dest.value)
    assert events[-1].event == f"response.{dest.value}"


REFUSED = [
    (event, status)
    for event in sorted({e for e, _, _ in RESPONSE_ROWS} - {"requeue", "start"})
    for status in R
    if (event, status) not in {(e, s) for e, s, _ in RESPONSE_ROWS}
    and not (event == "cancel" and status not in (R.QUEUED, R.IN_PROGRESS))  # idempotent
]


@pytest.mark.parametrize(("event", "status"), REFUSED)
def test_every_refused_pair_changes_nothing(
    engine: ResponseEngine, event: str, status: ResponseStatus
) -> None:
    response = response_in(engine, status)
    before = (engine.store.get(response.id), engine.events(response.id))
    with pytest.raises(InvalidTransitionError) as info:
        fire(engine, response.id, event)
    assert info.value.message == f"Cannot {event} response with status '{status.value}'."
    assert info.value.http_status == 409
    assert (engine.store.get(response.id), engine.events(response.id)) == before


# --- bad input ----------------------------------------------------------------------------------

BAD_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"model": ""}, "model"),
    ({"model": 5}, "model"),
    ({"input": ""}, "input"),
    ({"input": 3}, "input"),
    ({"input": [{"role": "user"}]}, "input[0].content"),
    ({"input": ["text"]}, "input[0]"),
    ({"input": "a\x00b"}, "input"),
    ({"instructions": 1}, "instructions"),
    ({"background": "yes"}, "background"),
    ({"metadata": {"k": 1}}, "metadata.k"),
    ({"metadata": {str(i): "v" for i in range(17)}}, "metadata"),
    ({"tools": [{"type": "function"}]}, "tools[0].name"),
    ({"tools": [{"type": "function", "name": "bad name"}]}, "tools[0].name"),
    ({"tools": [{"type": "function", "name": "f", "extra": 1}]}, "tools[0].extra"),
    ({"tools": [{"type": "function", "name": "f", "parameters": []}]}, "tools[0].parameters"),
    ({"tools": [{"type": "teleport"}]}, "tools[0]"),
    ({"tools": [{"type": "function", "name": "f"}] * 129}, "tools"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": {"type": "function"}}, "tool_choice.name"),
    ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_p": -0.1}, "top_p"),
    ({"max_output_tokens": 15}, "max_output_tokens"),
    ({"max_output_tokens": 2**63}, "max_output_tokens"),
    ({"previous_response_id": "run_1"}, "previous_response_id"),
    ({"previous_response_id": 5}, "previous_response_id"),
    ({"store": False}, "store"),
    ({"text": {"format": {"type": "yaml"}}}, "text.format"),
    ({"reasoning": {"effort": "enormous"}}, "reasoning.effort"),
]


@pytest.mark.parametrize(("change", "param"), BAD_CREATES)
def test_bad_create_parameters_are_refused_and_store_nothing(
    engine: ResponseEngine, change: dict[str, Any], param: str
) -> None:
    kwargs = {"model": "gpt-4o", "input": "hi", **change}
    with pytest.raises(ValidationError) as info:
        engine.create(**kwargs)
    assert info.value.param == param
    assert engine.list().data == []


BAD_STEPS: list[tuple[str, dict[str, Any], str]] = [
    ("complete", {"output": "text"}, "output"),
    ("complete", {"output": [{"text": "no type"}]}, "output"),
    ("complete", {"output": [], "usage": {"input_tokens": 1}}, "usage"),
    ("complete", {"output": [], "usage": {"input_tokens": -1, "output_tokens": 0}}, "usage"),
    (
        "complete",
        {"output": [], "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 3}},
        "usage",
    ),
    (
        "complete",
        {
            "output": [],
            "usage": {"input_tokens": 1, "output_tokens": 1, "input_tokens_details": {"x": 1}},
        },
        "usage",
    ),
    ("incomplete", {"reason": "max_completion_tokens"}, "reason"),
    ("incomplete", {"reason": None}, "reason"),
    ("fail", {"code": "oops", "message": "m"}, "code"),
    ("fail", {"message": 5}, "message"),
    ("append", {"event_type": "response.completed", "data": {}}, "event_type"),
    ("append", {"event_type": "thread.run.step.delta", "data": {}}, "event_type"),
    ("append", {"event_type": "response.output_text.delta", "data": {}}, "event_type"),
    ("append", {"event_type": "response.output_item.added", "data": {}}, "event_type"),
    ("append", {"event_type": "response.progress", "data": []}, "data"),
    ("append", {"event_type": "response.progress", "data": {"type": "x"}}, "data"),
    (
        "append",
        {"event_type": "response.progress", "data": {"sequence_number": 1}},
        "data",
    ),
    ("append", {"event_type": "response.progress", "data": {"d": float("inf")}}, "data"),
    ("append", {"event_type": "response.progress", "data": {"d": {1, 2}}}, "data"),
    ("events", {"starting_after": -1}, "starting_after"),
    ("events", {"starting_after": "3"}, "starting_after"),
    ("heartbeat", {"worker_id": ""}, "worker_id"),
    ("heartbeat", {"worker_id": "w1", "lease_seconds": 0}, "lease_seconds"),
    ("update_metadata", {"metadata": {"k": "v" * 513}}, "metadata"),
]


@pytest.mark.parametrize(("method", "kwargs", "param"), BAD_STEPS)
def test_bad_step_arguments_are_refused_and_change_nothing(
    engine: ResponseEngine, method: str, kwargs: dict[str, Any], param: str
) -> None:
    response = new(engine)
    claimed(engine)
    before = (engine.store.get(response.id), engine.events(response.id))
    with pytest.raises(ValidationError) as info:
        getattr(engine, method)(response.id, **kwargs)
    assert info.value.param == param
    assert (engine.store.get(response.id), engine.events(response.id)) == before


@pytest.mark.parametrize(
    ("bad_id", "error"),
    [
        ("", ValidationError),
        ("resp_\ud800", ValidationError),
        (5, ValidationError),
        (None, ValidationError),
        ("resp_" + "x" * 10_000, ResponseNotFoundError),
    ],
)
def test_bad_ids_are_refused_cleanly(
    engine: ResponseEngine, bad_id: Any, error: type[RunStateError]
) -> None:
    kept = new(engine)
    calls = [
        lambda: engine.get(bad_id),
        lambda: engine.cancel(bad_id),
        lambda: engine.events(bad_id),
        lambda: engine.input_of(bad_id),
        lambda: engine.complete(bad_id, output=[]),
        lambda: engine.append(bad_id, "response.progress", DELTA),
    ]
    for call in calls:
        with pytest.raises(error):
            call()
    if error is ResponseNotFoundError:
        assert engine.delete(bad_id) is False
    else:
        with pytest.raises(error):
            engine.delete(bad_id)
    assert [r.id for r in engine.list().data] == [kept.id]


def test_the_response_reads_back_from_its_public_json(engine: ResponseEngine) -> None:
    response = response_in(engine, R.COMPLETED)
    assert Response.from_dict(response.to_dict()) == response
    data = response.to_dict()
    for key, value in [("status", "done"), ("object", "thread.run"), ("id", "run_1")]:
        with pytest.raises(ValidationError):
            Response.from_dict({**data, key: value})
    with pytest.raises(ValidationError, match="Field 'completed_at' must be set exactly"):
        Response.from_dict({**data, "completed_at": None})
    with pytest.raises(ValidationError, match="Unknown field 'input'"):
        Response.from_dict({**data, "input": "hi"})
    with pytest.raises(ValidationError, match="Missing required field 'usage'"):
        Response.from_dict({k: v for k, v in data.items() if k != "usage"})


# --- the store's own answers, for any kind ------------------------------------------------------


def test_a_store_answers_for_missing_objects_and_deletes_a_run(faces: Faces, store: Store) -> None:
    for call in (store.get, store.history, store.input_of):
        with pytest.raises(ObjectNotFoundError):
            call("run_missing")
    assert store.delete("run_missing") is False
    runs = faces.run(store)
    run = runs.create(thread_id="t", assistant_id="a")
    assert store.input_of(run.id) is None  # a run keeps nothing beside itself
    assert store.delete(run.id) is True
    assert runs.list("t").data == []
    again = runs.create(thread_id="t", assistant_id="a")  # the thread is free again
    assert [r.id for r in runs.list("t").data] == [again.id]
    assert all(e.run_id != run.id for e in store.events(0, limit=100))


def test_an_engine_is_a_context_manager_and_names_its_store(faces: Faces, store: Store) -> None:
    with faces.response(store) as engine:
        if faces.mode == "sync":
            assert repr(engine) == f"ResponseEngine({store!r})"
        else:
            assert repr(engine).startswith("AsyncResponseEngine(Async")
            assert repr(store).split("(")[1] in repr(engine)
        with pytest.raises(ValidationError, match="Unknown status 'requires_action'"):
            engine.list(status="requires_action")
        with pytest.raises(ValidationError, match="Unknown status 5"):
            engine.list(status=5)  # type: ignore[arg-type]


class ForgetsInputs:
    """A store proxy on which a response is deleted between the engine's look at it and
    its read of the input (another process deleted it)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def input_of(self, response_id: str) -> Any:
        self._store.delete(response_id)
        return self._store.input_of(response_id)


def test_an_input_deleted_meanwhile_is_not_found(
    faces: Faces, store: Store, clock: ManualClock
) -> None:
    engine = faces.response(ForgetsInputs(store), clock)  # type: ignore[arg-type]
    response = new(engine)
    with pytest.raises(ResponseNotFoundError, match=f"No response found with id '{response.id}'"):
        engine.input_of(response.id)


def test_metadata_is_replaced_in_any_status_without_an_event(engine: ResponseEngine) -> None:
    response = response_in(engine, R.COMPLETED)
    events = engine.events(response.id)
    updated = checked(engine.update_metadata(response.id, {"topic": "greeting"}))
    assert updated.metadata == {"topic": "greeting"} and updated.status is R.COMPLETED
    assert engine.get(response.id) == updated and engine.events(response.id) == events


def test_responses_are_pruned_apart_from_runs(
    faces: Faces, engine: ResponseEngine, clock: ManualClock
) -> None:
    runs = faces.run(engine.store, clock)
    run = runs.create(thread_id="t", assistant_id="a")
    runs.cancel(run.id)
    done, failed, active = (
        response_in(engine, R.COMPLETED),
        response_in(engine, R.FAILED),
        new(engine),
    )
    clock.advance(10)
    assert engine.prune(older_than=5, statuses=["failed"]) == 1
    with pytest.raises(ResponseNotFoundError):
        engine.get(failed.id)
    assert engine.prune(older_than=5) == 1  # the completed one; the run is not its kind
    assert [r.id for r in engine.list().data] == [active.id]
    assert runs.get(run.id).status.value == "cancelled"
    del done


def test_a_repeated_response_create_with_its_key_returns_the_first(
    engine: ResponseEngine,
) -> None:
    first = new(engine, idempotency_key="key")
    again = new(engine, idempotency_key="key")
    assert again.id == first.id and len(engine.events(first.id)) == 2
    with pytest.raises(IdempotencyError):  # the input is one of its parameters
        engine.create(model="gpt-4o", input="Something else", idempotency_key="key")
    assert [r.id for r in engine.list().data] == [first.id]


def test_history_is_every_event_as_with_a_run(engine: ResponseEngine) -> None:
    response = engine.create(model="gpt-4o", input="hi", background=True)
    assert engine.claim("w") is not None
    engine.append(response.id, "response.progress", {"delta": "x"}, worker_id="w")
    engine.complete(response.id, output=OUTPUT, worker_id="w")
    history = engine.history(response.id)
    assert history == engine.events(response.id)
    assert [e.event for e in history] == [
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.progress",
        "response.completed",
    ]
    with pytest.raises(ResponseNotFoundError):
        engine.history("resp_missing")
