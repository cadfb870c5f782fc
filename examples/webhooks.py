"""Webhooks: a service told when its background responses end, instead of polling.

Two apps run here, each on uvicorn in a thread: the runstate server, which keeps the
responses in a SQLite file and sends a webhook event for each ending, and the service's
receiver, which checks each delivery with the official client's ``webhooks.unwrap()``
(the signature, and the event's shape) exactly as it would check OpenAI's. The
official client makes one response that completes and one that it cancels.

In production the receiver is the service's own endpoint, and the server is
``runstate serve sqlite:///runs.db --webhook https://service.example/hooks`` with the
secret in ``$RUNSTATE_WEBHOOK_SECRET``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import queue
import tempfile
from pathlib import Path

import openai
from _serving import serving
from fastapi import FastAPI, Request, Response

from runstate import Completed, Job
from runstate.server import create_app

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


async def generate(job: Job) -> Completed:
    """A model that takes its time: long enough to be cancelled."""
    for word in ["Webhooks", " are", " here"]:
        await asyncio.sleep(0.05 if "slow" not in str(job.request["input"]) else 5)
        await job.text(word)
    return Completed(usage={"input_tokens": 1, "output_tokens": 3})


def receiver(events: queue.Queue[tuple[str, str]]) -> FastAPI:
    """The service's endpoint: every delivery verified, or refused with a 400."""
    app = FastAPI()
    checker = openai.OpenAI(api_key="unused", webhook_secret=SECRET)

    @app.post("/hooks")
    async def hooks(request: Request) -> Response:
        body = await request.body()
        try:
            event = checker.webhooks.unwrap(body, request.headers)
        except openai.InvalidWebhookSignatureError:
            return Response(status_code=400)
        events.put((event.type, event.data.id))
        return Response(status_code=204)

    return app


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    events: queue.Queue[tuple[str, str]] = queue.Queue()
    with serving(receiver(events)) as hooks_base:
        endpoint = {"url": hooks_base.removesuffix("/v1") + "/hooks", "secret": SECRET}
        app = create_app(
            f"sqlite:///{folder / 'runs.db'}",
            generate,
            webhooks=True,  # send them from this app (or: runstate webhooks deliver)
            webhook_endpoints=[endpoint],
        )
        with serving(app) as base, openai.OpenAI(base_url=base, api_key="unused") as client:
            done = client.responses.create(model="m", input="hi", background=True)
            slow = client.responses.create(model="m", input="slow", background=True)
            print("created:", done.status, slow.status)
            client.responses.cancel(slow.id)
            told = dict(events.get(timeout=30)[::-1] for _ in range(2))
    print("the receiver checked each signature with the official client")
    print(f"received {told[done.id]} for the first")
    print(f"received {told[slow.id]} for the cancelled one")


if __name__ == "__main__":
    main()
