"""``runstate webhooks``: a store's webhook endpoints, and a dispatcher that sends.

    runstate webhooks add STORE_URL https://example.com/hooks [--event response.completed]
    runstate webhooks list STORE_URL [--json]
    runstate webhooks remove STORE_URL we_...
    runstate webhooks deliver STORE_URL [--backoff-base S] [--lease S] [--concurrency N]

``add`` reads the endpoint's ``whsec_`` secret from an environment variable
(``--secret-env``, default ``RUNSTATE_WEBHOOK_SECRET``), never from the command line,
where other users of the machine could read it; ``--generate-secret`` makes a new one
and prints it, once. ``deliver`` sends until SIGINT or SIGTERM. Bad input is one line
on stderr and exit code 2, with nothing stored.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import signal
import sys
from typing import Any

from ._connect import open_store, open_store_async
from ._errors import RunStateError, ValidationError
from ._responses import ResponseEngine
from ._webhooks import RETRY_WINDOW, event_types

SECRET_ENV = "RUNSTATE_WEBHOOK_SECRET"


def add_webhooks_parser(sub: Any) -> None:
    hooks = sub.add_parser("webhooks", help="a store's webhook endpoints, and their dispatcher")
    commands = hooks.add_subparsers(dest="webhooks_command", required=True)
    add = commands.add_parser("add", help="add an endpoint")
    add.add_argument("url", help="store URL, e.g. sqlite:///runs.db")
    add.add_argument("endpoint", help="the http(s) URL deliveries are POSTed to")
    add.add_argument(
        "--event",
        action="append",
        dest="events",
        metavar="TYPE",
        help="an event type it takes (repeat for more; default: every one of "
        f"{', '.join(sorted(event_types()))})",
    )
    add.add_argument("--name", help="a name for it (default: its URL)")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument(
        "--secret-env",
        metavar="VAR",
        default=SECRET_ENV,
        help=f"the environment variable that holds its whsec_ secret (default {SECRET_ENV})",
    )
    secret.add_argument(
        "--generate-secret",
        action="store_true",
        help="make a new whsec_ secret and print it (once: it is never shown again)",
    )
    add.add_argument("--json", action="store_true", help="print the endpoint as JSON")
    listing = commands.add_parser("list", help="the endpoints (never their secrets)")
    listing.add_argument("url")
    listing.add_argument("--json", action="store_true", help="print the endpoints as JSON")
    remove = commands.add_parser("remove", help="remove an endpoint and its deliveries")
    remove.add_argument("url")
    remove.add_argument("endpoint_id", metavar="id")
    deliver = commands.add_parser("deliver", help="send due deliveries until SIGINT/SIGTERM")
    deliver.add_argument("url")
    deliver.add_argument(
        "--backoff-base", type=float, default=5.0, metavar="S", help="first retry's delay (5)"
    )
    deliver.add_argument(
        "--lease", type=int, default=60, metavar="S", help="seconds a claimed delivery is ours (60)"
    )
    deliver.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds an attempt waits (10)"
    )
    deliver.add_argument(
        "--concurrency", type=int, default=8, metavar="N", help="attempts in flight at once (8)"
    )
    deliver.add_argument(
        "--retry-window",
        type=int,
        default=RETRY_WINDOW,
        metavar="S",
        help=f"seconds after its event a delivery is tried ({RETRY_WINDOW}: 3 days)",
    )
    hooks.set_defaults(webhooks_parser=hooks)


def webhooks(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.webhooks_parser
    try:
        if args.webhooks_command == "deliver":
            return asyncio.run(_deliver(args))
        engine = ResponseEngine(open_store(args.url, create=False))
        try:
            if args.webhooks_command == "add":
                return _add(engine, args, parser)
            if args.webhooks_command == "list":
                return _list(engine, args.json)
            if not engine.webhooks.remove(args.endpoint_id):
                print(f"runstate: error: no webhook endpoint {args.endpoint_id!r}", file=sys.stderr)
                return 1
            print(f"removed {args.endpoint_id}")
            return 0
        finally:
            engine.close()
    except ValidationError as exc:
        parser.exit(2, f"runstate webhooks: error: {exc.message}\n")
    except RunStateError as exc:
        print(f"runstate: error: {exc.message}", file=sys.stderr)
        return 1


def _add(engine: ResponseEngine, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.generate_secret:
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    else:
        secret = os.environ.get(args.secret_env, "")
        if not secret:
            parser.exit(
                2,
                f"runstate webhooks: error: ${args.secret_env} is not set (it holds the "
                f"endpoint's whsec_ secret; or --generate-secret)\n",
            )
    endpoint = engine.webhooks.add(args.endpoint, secret=secret, events=args.events, name=args.name)
    if args.json:
        shown = endpoint.to_dict()
        if args.generate_secret:
            shown["secret"] = secret
        sys.stdout.write(json.dumps(shown, indent=2) + "\n")
        return 0
    print(f"{endpoint.id}  {endpoint.url}  {','.join(endpoint.events)}")
    if args.generate_secret:
        print(f"secret: {secret}")
    return 0


def _list(engine: ResponseEngine, as_json: bool) -> int:
    endpoints = engine.webhooks.list()
    if as_json:
        sys.stdout.write(json.dumps([e.to_dict() for e in endpoints], indent=2) + "\n")
        return 0
    for e in endpoints:
        print(f"{e.id}  {e.url}  {e.name}  {','.join(e.events)}")
    return 0


async def _deliver(args: argparse.Namespace) -> int:
    from .webhooks import Dispatcher

    store = await open_store_async(args.url, create=False)
    try:
        dispatcher = Dispatcher(
            store,
            backoff_base=args.backoff_base,
            lease_seconds=args.lease,
            timeout=args.timeout,
            concurrency=args.concurrency,
            retry_window=args.retry_window,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await dispatcher.run(stop)
        print(
            f"delivered {dispatcher.delivered}, retried {dispatcher.retried}, "
            f"failed {dispatcher.failed}",
            flush=True,
        )
        return 0
    finally:
        await store.close()
