"""``runstate serve URL``: the server (``runstate.server``) on uvicorn, with the sweeps,
so one command is a complete service.

    runstate serve sqlite:///runs.db --handler myservice.model:generate --port 8000

Without ``--handler`` it serves ``runstate.server.demo``, the scripted demo model.
With ``--upstream BASE_URL`` it is a gateway: ``runstate.upstream.UpstreamHandler``
generates each response by calling the OpenAI-compatible server there.

    runstate serve sqlite:///runs.db --upstream http://127.0.0.1:11434/v1

It also sends the store's webhook deliveries (``runstate.webhooks``; ``--no-webhooks``
leaves them to ``runstate webhooks deliver``); ``--webhook URL`` gives the store an
endpoint at start, its secret read from ``$RUNSTATE_WEBHOOK_SECRET``.

Options that do not parse, a handler that does not import or is not callable, and
values the server refuses are one line on stderr and exit code 2; nothing starts.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from ._errors import ValidationError

DEMO = "runstate.server:demo"
#: Jobs at once per Worker: a handler's, and a gateway's (which mostly waits).
CONCURRENCY = 8
UPSTREAM_CONCURRENCY = 64


def add_serve_parser(sub: Any) -> None:
    serve = sub.add_parser(
        "serve", help="serve the Responses and runs APIs, with a handler's Workers"
    )
    serve.add_argument("url", help="store URL, e.g. sqlite:///runs.db")
    serve.add_argument(
        "--handler",
        metavar="MODULE:FUNCTION",
        help=f"the handler each job runs (default: {DEMO}, the scripted demo model)",
    )
    serve.add_argument(
        "--upstream",
        metavar="BASE_URL",
        help="be a gateway: generate each response by calling the OpenAI-compatible API "
        "at BASE_URL (e.g. http://127.0.0.1:8000/v1)",
    )
    serve.add_argument(
        "--upstream-api",
        choices=("auto", "responses", "chat"),
        default="auto",
        help="which API of the upstream to call (default: auto, found on the first call)",
    )
    serve.add_argument(
        "--upstream-key-env",
        metavar="VAR",
        help="the environment variable that holds the upstream's API key",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=int, default=1, help="Workers of each kind in this process (0: none)"
    )
    serve.add_argument(
        "--concurrency",
        type=int,
        help=f"jobs at once per Worker (default {CONCURRENCY}; with --upstream "
        f"{UPSTREAM_CONCURRENCY}: a gateway's jobs wait on the model server, which batches "
        "them)",
    )
    serve.add_argument("--lease", type=int, default=30, help="seconds a claim lasts unrenewed")
    serve.add_argument("--ttl", type=int, default=600, help="seconds before a queued run expires")
    serve.add_argument(
        "--sweep-every",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="time out due objects and recover lost workers' this often (default 1)",
    )
    serve.add_argument(
        "--shutdown-grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, how long jobs may finish before they are handed back (default 30)",
    )
    serve.add_argument(
        "--poll-after-ms", type=int, default=100, help="the poll interval run clients are told"
    )
    serve.add_argument(
        "--api-key",
        default=os.environ.get("RUNSTATE_API_KEY"),
        help="serve only requests with this bearer key (default: $RUNSTATE_API_KEY, or none)",
    )
    serve.add_argument("--metrics", action="store_true", help="serve /metrics (Prometheus)")
    serve.add_argument(
        "--no-webhooks",
        action="store_true",
        help="do not send webhook deliveries here (runstate webhooks deliver does)",
    )
    serve.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="URL",
        help="a webhook endpoint the store gets at start, unless it has one with this URL "
        "(repeat for more; its secret: --webhook-secret-env)",
    )
    serve.add_argument(
        "--webhook-event",
        action="append",
        metavar="TYPE",
        help="an event type --webhook's endpoints take (repeat; default: every type)",
    )
    serve.add_argument(
        "--webhook-secret-env",
        metavar="VAR",
        default="RUNSTATE_WEBHOOK_SECRET",
        help="the environment variable with --webhook's whsec_ secret "
        "(default RUNSTATE_WEBHOOK_SECRET)",
    )
    serve.add_argument(
        "--webhook-backoff-base",
        type=float,
        default=5.0,
        metavar="S",
        help="a failed delivery's first retry comes after about S seconds (default 5)",
    )
    serve.add_argument(
        "--webhook-lease",
        type=int,
        default=60,
        metavar="S",
        help="seconds a claimed delivery is this server's (default 60)",
    )
    serve.set_defaults(serve_parser=serve)  # its errors name it: "runstate serve: error:"


def serve(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.serve_parser
    try:
        import uvicorn

        from .server import bearer, create_app
    except ImportError as exc:  # pragma: no cover - the test extra installs the server
        parser.error(f"serve needs the server extra (pip install 'runstate[server]'): {exc}")
    try:
        handler = handler_of(args, parser)
        auth = bearer(args.api_key) if args.api_key is not None else None
        app = create_app(
            args.url,
            handler,
            workers=args.workers,
            concurrency=concurrency_of(args),
            auth=auth,
            metrics=args.metrics,
            lease=args.lease,
            ttl=args.ttl,
            sweep_every=args.sweep_every,
            poll_after_ms=args.poll_after_ms,
            shutdown_grace=args.shutdown_grace,
            webhooks=webhooks_of(args),
            webhook_endpoints=endpoints_of(args, parser),
        )
    except ValidationError as exc:
        parser.error(exc.message)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def webhooks_of(args: argparse.Namespace) -> Any:
    """The dispatcher the server runs: its options, or False with ``--no-webhooks``."""
    if args.no_webhooks:
        return False
    return {"backoff_base": args.webhook_backoff_base, "lease_seconds": args.webhook_lease}


def endpoints_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Any]:
    """The endpoints ``--webhook`` names, with the secret from the environment."""
    if not args.webhook:
        if args.webhook_event:
            parser.error("--webhook-event goes with --webhook")
        return []
    secret = os.environ.get(args.webhook_secret_env)
    if not secret:
        parser.error(f"--webhook: ${args.webhook_secret_env} is not set (the whsec_ secret)")
    return [{"url": url, "secret": secret, "events": args.webhook_event} for url in args.webhook]


def concurrency_of(args: argparse.Namespace) -> Any:
    """``--concurrency``, or the default for the handler: a gateway's is larger."""
    if args.concurrency is not None:
        return args.concurrency
    return UPSTREAM_CONCURRENCY if args.upstream is not None else CONCURRENCY


def handler_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Any:
    """The handler the options name: ``--handler``'s, the upstream's, or the demo."""
    if args.upstream is None:
        if args.upstream_key_env is not None or args.upstream_api != "auto":
            parser.error("--upstream-api and --upstream-key-env go with --upstream")
        return load_handler(args.handler or DEMO, parser)
    if args.handler is not None:
        parser.error("--handler and --upstream are two handlers: give one")
    from .upstream import UpstreamHandler

    key = None
    if args.upstream_key_env is not None:
        key = os.environ.get(args.upstream_key_env)
        if not key:
            parser.error(f"--upstream-key-env: ${args.upstream_key_env} is not set")
    return UpstreamHandler(args.upstream, api=args.upstream_api, api_key=key)


def load_handler(spec: str, parser: argparse.ArgumentParser) -> Any:
    """The callable ``module:attribute`` names, or one line and exit code 2."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        parser.error(f"--handler: expected MODULE:FUNCTION, got {spec!r}")
    sys.path.insert(0, os.getcwd())  # a handler beside the service, as uvicorn finds apps
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # its import failed: say how, in one line
        parser.error(f"--handler: cannot import {module_name!r}: {type(exc).__name__}: {exc}")
    handler = module
    for name in attribute.split("."):
        try:
            handler = getattr(handler, name)
        except AttributeError:
            parser.error(f"--handler: {module_name!r} has no {attribute!r}")
    if not callable(handler):
        parser.error(f"--handler: {spec} is not callable (a {type(handler).__name__})")
    return handler
