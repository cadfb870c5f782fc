"""runstate: the lifecycle engine for OpenAI-style runs (``thread.run``) and background
responses (``response``).

    from runstate import RunEngine
    engine = RunEngine()                      # or runstate.connect("sqlite:///runs.db")
    run = engine.create(thread_id="thread_1", assistant_id="asst_1", model="gpt-4o")
    run = engine.claim("worker-1")            # queued -> in_progress, leased
    engine.complete(run.id)

``RunLifecycle`` is the machine alone, on runs held in memory by the caller;
``RunEngine`` keeps runs in a store and is safe for many workers; ``ResponseEngine``
does the same for the Responses API's background responses, in the same store. A
lifecycle of a service's own is a ``Definition`` made known with ``declare`` and driven
by an ``ObjectEngine``; a store of its own implements ``Store``.
"""

from ._arguments import Completion, Failure, Incompletion
from ._clock import ManualClock, system_clock
from ._connect import connect, connect_async, open_store, open_store_async
from ._definitions import Cancel, Definition, TimeOut, Workers, declare, undeclare
from ._diagram import mermaid
from ._engine import Hook, ListPage
from ._errors import (
    ActiveRunError,
    ConcurrentUpdateError,
    IdempotencyError,
    InvalidTransitionError,
    LeaseError,
    ObjectNotFoundError,
    ResponseNotFoundError,
    RunNotFoundError,
    RunStateError,
    StoreError,
    ValidationError,
)
from ._events import DONE_SSE, RunEvent
from ._lifecycle import Lifecycle, RunLifecycle, Transition
from ._model import ACTIVE_STATUSES, TERMINAL_STATUSES, Run, RunStatus, RunV2, Status
from ._objects import AsyncObjectEngine, ObjectEngine, ObjectModel
from ._requests import GATED_PARAMETERS, Capabilities, check_shape
from ._response import Response, ResponseStatus
from ._responses import AsyncResponseEngine, InputItemList, ResponseEngine, ResponseList
from ._runs import AsyncRunEngine, RunEngine, RunList
from ._validate import validate_metadata
from ._worker import Completed, Failed, Incomplete, Job, Worker
from .stores import (
    AsyncPostgresStore,
    AsyncStore,
    IdempotencyKey,
    KeyTaken,
    MemoryStore,
    Page,
    PostgresStore,
    SQLiteStore,
    Store,
    StoredObject,
    Write,
)

__version__ = "0.1.0"

__all__ = [
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
