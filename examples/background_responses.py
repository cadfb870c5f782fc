"""Background responses (the Responses API's background mode) on one SQLite file.

Several responses go through every path of the background response's lifecycle:

- a worker claims one, streams a message (``open_message``, ``add_text``,
  ``close_message``: the library writes the events the SDK's stream helpers read) and
  completes it with what it streamed;
- a cancel beats a worker: the response is ``cancelled`` at once, and the worker's late
  ``complete`` is refused;
- a repeated cancel of an ended background response returns it unchanged, no event;
- a cancel of a foreground response is refused (400);
- a worker fails one with an error code;
- one nobody works on times out (``expire_due``) and fails with ``server_error``;
- a stream is resumed with ``starting_after`` by a second engine on the same file, as
  another process or replica would, and gets every later event once, in order.

It prints a table of the responses and the resumed stream, frame by frame.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _show import console, short
from rich.table import Table

from runstate import (
    InvalidTransitionError,
    ManualClock,
    ResponseEngine,
    SQLiteStore,
)

T0 = 1_700_000_000
TIMEOUT = 600


def message(text: str) -> dict[str, object]:
    """An assistant message output item, as a worker hands it over."""
    return {
        "type": "message",
        "id": "msg_1",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def main() -> None:
    path = Path(tempfile.mkdtemp()) / "responses.db"
    clock = ManualClock(T0)
    engine = ResponseEngine(SQLiteStore(path), clock, timeout=TIMEOUT)

    # 1. A worker streams a response and completes it.
    streamed = engine.create(model="gpt-4o", input="Say hello", metadata={"path": "streamed"})
    assert engine.claim("worker-1") is not None
    engine.open_message(streamed.id, worker_id="worker-1")
    for word in ["Hel", "lo", "!"]:
        clock.advance(1)
        engine.add_text(streamed.id, word, worker_id="worker-1")
    engine.close_message(streamed.id, worker_id="worker-1")
    usage = {"input_tokens": 3, "output_tokens": 3}
    done = engine.complete(streamed.id, usage=usage, worker_id="worker-1")
    console.print(f"completed: {done.output_text!r}, usage total {done.usage['total_tokens']}")

    # 2. A cancel beats the worker, whose late complete is refused.
    raced = engine.create(model="gpt-4o", input="Write an essay", metadata={"path": "cancelled"})
    engine.claim("worker-2")
    engine.open_message(raced.id, worker_id="worker-2")
    engine.add_text(raced.id, "Once", worker_id="worker-2")
    engine.cancel(raced.id)
    try:
        engine.complete(raced.id, output=[message("Once upon a time")], worker_id="worker-2")
    except InvalidTransitionError as exc:
        console.print(f"the late complete was refused: {exc.message}")

    # 3. Cancelling again is idempotent: the same response, no new event.
    before = len(engine.events(raced.id))
    again = engine.cancel(raced.id)
    console.print(
        f"a repeated cancel returns it {again.status.value}, events {before} -> "
        f"{len(engine.events(raced.id))}"
    )
    foreground = engine.create(model="gpt-4o", input="inline", background=False)
    try:
        engine.cancel(foreground.id)
    except InvalidTransitionError as exc:
        console.print(f"foreground cancel: {exc.http_status} {exc.message}")
    engine.complete(foreground.id, output=[message("inline answer")])

    # 4. A worker fails one.
    failing = engine.create(model="gpt-4o", input="Too much", metadata={"path": "failed"})
    engine.claim("worker-3")
    engine.fail(failing.id, code="rate_limit_exceeded", message="Slow down.", worker_id="worker-3")

    # 5. One that no worker takes times out.
    engine.create(model="gpt-4o", input="Anyone?", metadata={"path": "timed out"})
    clock.advance(TIMEOUT)
    timed_out = engine.expire_due()
    console.print(f"the sweep timed out {len(timed_out)}: {timed_out[0].error}")

    table = Table(title="background responses")
    for column in ("response", "path", "status", "created", "completed", "error", "output"):
        table.add_column(column)
    for response in engine.list(order="asc").data:
        table.add_row(
            short(response.id),
            response.metadata.get("path", "foreground"),
            response.status.value,
            f"+{response.created_at - T0}s",
            "" if response.completed_at is None else f"+{response.completed_at - T0}s",
            "" if response.error is None else response.error["code"],
            response.output_text,
        )
    console.print(table)

    # 6. Another engine on the same file (another process or replica) resumes the
    # stream of the first response after the event it had seen last.
    other = ResponseEngine(SQLiteStore(path), clock, timeout=TIMEOUT)
    seen = 6
    console.print(f"resuming {short(streamed.id)} after event {seen}:")
    for event in other.events(streamed.id, starting_after=seen):
        for line in event.to_sse().splitlines():  # each frame: "event:", "data:", a blank
            console.print(line if len(line) <= 138 else line[:135] + "...", markup=False)
    console.print(f"input kept for the worker: {other.input_of(streamed.id)!r}")
    engine.close()
    other.close()


if __name__ == "__main__":
    main()
