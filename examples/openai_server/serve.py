"""An OpenAI-compatible runs server on runstate: FastAPI, uvicorn, a scripted executor.

    python examples/openai_server/serve.py --store sqlite:///runs.db --port 8000

serves ``/v1/threads`` and ``/v1/threads/{thread_id}/runs...`` as the public Assistants
API does, so the official ``openai`` client drives it unchanged::

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_1")

The process also runs a sweeper (expiry and stalled leases) and, unless
``--executors 0``, the scripted executor's workers. With ``--executors 0`` start the
executor elsewhere on the same SQLite file (``scripted_executor.py``).
"""

from __future__ import annotations

import argparse
import logging
import threading

import uvicorn
from runs_api import create_app
from scripted_executor import ScriptedExecutor

from runstate import RunEngine, RunStateError, connect

log = logging.getLogger("serve")


def sweep(engine: RunEngine, stop: threading.Event, every: float) -> None:
    """Expire due runs and recover stalled ones every ``every`` seconds. A sweep that
    fails (the store is away) is logged, and the next one tries again."""
    while not stop.wait(every):
        try:
            engine.expire_due()
            engine.recover_stalled()
        except RunStateError as exc:
            log.warning("sweep failed, will try again: %s", exc.message)


def main() -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible runs server on runstate.")
    parser.add_argument("--store", default="memory://", help="memory:// or sqlite:///path.db")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ttl", type=int, default=600, help="seconds before a run expires")
    parser.add_argument("--lease", type=int, default=30, help="seconds a claim lasts unrenewed")
    parser.add_argument("--executors", type=int, default=2, help="executor workers in-process")
    parser.add_argument(
        "--poll-after-ms", type=int, default=100, help="the poll interval clients are told"
    )
    args = parser.parse_args()

    engine = connect(args.store, ttl=args.ttl, lease_seconds=args.lease)
    stop = threading.Event()
    threading.Thread(target=sweep, args=(engine, stop, 0.25), daemon=True).start()
    executor = ScriptedExecutor(engine).start(args.executors) if args.executors else None
    app = create_app(engine, poll_after_ms=args.poll_after_ms)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        stop.set()
        if executor is not None:
            executor.stop()
        engine.close()


if __name__ == "__main__":
    main()
