"""The public surface is what runstate/__init__.py exports; this pins it."""

from __future__ import annotations

import inspect
import subprocess
import sys

import runstate

PUBLIC = [
    "ACTIVE_STATUSES",
    "DONE_SSE",
    "GATED_PARAMETERS",
    "TERMINAL_STATUSES",
    "ActiveRunError",
    "AsyncObjectEngine",
    "AsyncPostgresStore",
    "AsyncResponseEngine",
    "AsyncRunEngine",
    "AsyncStore",
    "Cancel",
    "Capabilities",
    "Completed",
    "Completion",
    "ConcurrentUpdateError",
    "Definition",
    "Failed",
    "Failure",
    "Hook",
    "IdempotencyError",
    "IdempotencyKey",
    "Incomplete",
    "Incompletion",
    "InputItemList",
    "InvalidTransitionError",
    "Job",
    "KeyTaken",
    "LeaseError",
    "Lifecycle",
    "ListPage",
    "ManualClock",
    "MemoryStore",
    "ObjectEngine",
    "ObjectModel",
    "ObjectNotFoundError",
    "Page",
    "PostgresStore",
    "Response",
    "ResponseEngine",
    "ResponseList",
    "ResponseNotFoundError",
    "ResponseStatus",
    "Run",
    "RunEngine",
    "RunEvent",
    "RunLifecycle",
    "RunList",
    "RunNotFoundError",
    "RunStateError",
    "RunStatus",
    "RunV2",
    "SQLiteStore",
    "Status",
    "Store",
    "StoreError",
    "StoredObject",
    "TimeOut",
    "Transition",
    "ValidationError",
    "Worker",
    "Workers",
    "Write",
    "check_shape",
    "connect",
    "connect_async",
    "declare",
    "mermaid",
    "open_store",
    "open_store_async",
    "system_clock",
    "undeclare",
    "validate_metadata",
]


def test_public_names_are_pinned_and_sorted() -> None:
    assert runstate.__all__ == PUBLIC
    assert sorted(runstate.__all__, key=lambda n: (not n.isupper(), n)) == PUBLIC
    for name in PUBLIC:
        assert getattr(runstate, name) is not None


def test_every_error_has_one_root() -> None:
    errors = [
        runstate.ValidationError,
        runstate.InvalidTransitionError,
        runstate.ActiveRunError,
        runstate.LeaseError,
        runstate.ObjectNotFoundError,
        runstate.RunNotFoundError,
        runstate.ResponseNotFoundError,
        runstate.ConcurrentUpdateError,
        runstate.IdempotencyError,
        runstate.StoreError,
    ]
    assert all(issubclass(e, runstate.RunStateError) for e in errors)
    assert {e.http_status for e in errors} == {400, 404, 409, 503}


def test_import_needs_only_transitions() -> None:
    code = (
        "import sys, runstate; "
        "bad = sorted(m for m in ('rich', 'fastapi', 'uvicorn', 'psycopg', 'hypothesis', 'openai', 'pydantic') if m in sys.modules); "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_py_typed_ships() -> None:
    from importlib.resources import files

    assert files("runstate").joinpath("py.typed").is_file()


def test_the_version_has_one_source() -> None:
    from importlib.metadata import version

    assert version("runstate") == runstate.__version__


STORES_PUBLIC = [
    "AsyncPostgresStore",
    "AsyncStore",
    "Bell",
    "ClaimStep",
    "Claimed",
    "Delivery",
    "DeliveryStats",
    "Endpoint",
    "GroupCommit",
    "IdempotencyKey",
    "KeyTaken",
    "KindStats",
    "MemoryStore",
    "Now",
    "Order",
    "Page",
    "PostgresStore",
    "SQLiteStore",
    "Stats",
    "Store",
    "StoredObject",
    "Sweep",
    "WebhookStore",
    "Write",
    "group_of",
    "is_active",
    "is_waiting",
    "restore",
]
#: The store protocol: what a backend implements, and nothing more.
STORE_METHODS = [
    "claim",
    "close",
    "delete",
    "events",
    "get",
    "history",
    "input_of",
    "insert",
    "list_objects",
    "prune",
    "stats",
    "sweep",
    "write",
]
#: What a store adds for webhooks (every built-in store has it).
WEBHOOK_STORE_METHODS = [
    "add_endpoint",
    "claim_deliveries",
    "delivery_stats",
    "list_endpoints",
    "next_delivery_at",
    "remove_endpoint",
    "settle_deliveries",
]


def test_the_store_surface_and_protocol_are_pinned() -> None:
    import runstate.stores

    assert runstate.stores.__all__ == STORES_PUBLIC
    protocol = sorted(name for name in vars(runstate.Store) if not name.startswith("_"))
    assert protocol == STORE_METHODS
    hooks = runstate.stores.WebhookStore
    assert sorted(n for n in vars(hooks) if not n.startswith("_")) == WEBHOOK_STORE_METHODS
    every = STORE_METHODS + WEBHOOK_STORE_METHODS
    for backend in (runstate.MemoryStore, runstate.SQLiteStore, runstate.PostgresStore):
        assert all(callable(getattr(backend, name)) for name in every), backend
    for backend in (runstate.AsyncStore, runstate.AsyncPostgresStore):  # the same, awaitable
        for name in every:
            assert inspect.iscoroutinefunction(getattr(backend, name)), (backend, name)


def test_the_extension_api_is_public() -> None:
    """What a lifecycle or a store of one's own needs is importable from runstate."""
    assert issubclass(runstate.RunNotFoundError, runstate.ObjectNotFoundError)
    assert issubclass(runstate.ResponseNotFoundError, runstate.ObjectNotFoundError)
    for name in ("Definition", "Workers", "Cancel", "TimeOut", "declare", "undeclare"):
        assert getattr(runstate, name).__module__ == "runstate._definitions"
    for name in ("StoredObject", "Write", "Page", "IdempotencyKey", "KeyTaken"):
        assert getattr(runstate, name) is getattr(runstate.stores, name)


def test_the_gateway_surface_is_pinned_and_imports_without_openai() -> None:
    """``runstate.upstream``: its names; importing it loads no HTTP client (the openai
    package is loaded by the first call, from the ``upstream`` extra)."""
    code = (
        "import sys, runstate.upstream as u; "
        "assert 'openai' not in sys.modules and 'httpx' not in sys.modules; "
        "print(','.join(u.__all__))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "APIS,UpstreamHandler,translate_request"


def test_the_webhooks_surface_is_pinned_and_the_core_needs_no_http_client() -> None:
    """``runstate.webhooks``: its names (the ``webhooks`` extra); ``engine.webhooks`` and
    the stores' outbox work without httpx or standardwebhooks."""
    import runstate.webhooks

    assert runstate.webhooks.__all__ == [
        "Delivery",
        "DeliveryStats",
        "Dispatcher",
        "Endpoint",
        "sign",
    ]
    code = (
        "import sys, runstate; "
        "e = runstate.ResponseEngine(); "
        "e.webhooks.add('http://x/', secret='whsec_' + 'QUFB' * 8); "
        "assert 'httpx' not in sys.modules and 'standardwebhooks' not in sys.modules; "
        "print(len(e.webhooks.list()))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1"
