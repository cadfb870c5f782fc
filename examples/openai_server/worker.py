"""Workers in a process of their own: the demo model, generating what any server on the
same store queues (``runstate serve URL --workers 0`` serves the API and leaves the work
to processes like this one).

    python examples/openai_server/worker.py sqlite:///runs.db

It stops on SIGTERM or SIGINT: it claims no more, gives its jobs time to finish, and
hands back the rest at once for another worker to pick up.
"""

from __future__ import annotations

import argparse
import asyncio

from runstate import AsyncResponseEngine, AsyncRunEngine, Worker, open_store_async
from runstate.server import demo


async def work(url: str, lease: int) -> None:
    store = await open_store_async(url)
    try:
        engines = [
            AsyncRunEngine(store, lease_seconds=lease),
            AsyncResponseEngine(store, lease_seconds=lease),
        ]
        workers = [Worker(engine, demo, handle_signals=True) for engine in engines]
        await asyncio.gather(*(worker.run() for worker in workers))
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="The demo model's Workers on a store.")
    parser.add_argument("url", help="store URL, e.g. sqlite:///runs.db")
    parser.add_argument("--lease", type=int, default=30, help="seconds a claim lasts unrenewed")
    args = parser.parse_args()
    asyncio.run(work(args.url, args.lease))


if __name__ == "__main__":
    main()
