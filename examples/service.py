"""A service on runstate.server: a handler that generates a response's text, the app that
serves it, and the official openai client calling it in every mode.

The handler is what a service writes: it streams deltas into the response and returns
``Completed``. ``create_app`` does the rest: it stores each response in a SQLite file,
runs the handler as durable jobs (background responses) or inline (foreground ones),
streams the events to the client, and cancels. Run here on uvicorn in a thread, on a
free port; in production it is ``uvicorn service:app`` or
``runstate serve sqlite:///runs.db --handler service:generate``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import openai
from _serving import serving

from runstate import Completed, Job
from runstate.server import create_app


async def generate(job: Job) -> Completed:
    """Write the model's reply into the response, a delta at a time."""
    prompt = job.request["input"]  # the whole create request: input, instructions, tools...
    for word in ["You", " said:", f" {prompt!s}"]:
        await asyncio.sleep(0.01)  # the model thinking; a cancel lands here
        await job.emit("response.output_text.delta", {"delta": word})
    return Completed(usage={"input_tokens": 1, "output_tokens": 3})


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    app = create_app(f"sqlite:///{folder / 'runs.db'}", handler=generate)
    with serving(app) as base, openai.OpenAI(base_url=base, api_key="unused") as client:
        response = client.responses.create(model="m", input="Hi", background=True)
        print("background:", response.status)
        while response.status in ("queued", "in_progress"):
            time.sleep(0.02)
            response = client.responses.retrieve(response.id)
        print("then:", response.status, repr(response.output_text))

        response = client.responses.create(model="m", input="Hello")
        print("foreground:", response.status, repr(response.output_text))

        with client.responses.stream(model="m", input="Streamed") as stream:
            deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        print("streamed deltas:", deltas)


if __name__ == "__main__":
    main()
