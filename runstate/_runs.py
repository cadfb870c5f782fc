"""RunEngine and AsyncRunEngine: the Assistants runs (``thread.run``, v1 or v2).

The loop, the claims, the sweeps and the leases are ``Engine``'s (``_engine.py``);
``RunPlans`` adds what a run has of its own, each operation written once as a plan: a
thread that holds at most one active run, tool calls and their outputs, and a two-phase
cancel. ``RunEngine`` runs the plans on a store, ``AsyncRunEngine`` awaits them on an
async store: the same decisions, the same loop.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._arguments import Completion, Failure, Incompletion
from ._clock import Clock
from ._engine import AsyncFace, Engine, ListPage, Plan, SyncFace, call
from ._errors import ActiveRunError, ConcurrentUpdateError, RunNotFoundError
from ._events import RunEvent
from ._lifecycle import RunLifecycle, require_version
from ._model import Run, RunStatus, require_status
from ._validate import require_int, require_string
from .stores import Order

__all__ = ["AsyncRunEngine", "RunEngine", "RunList"]


@dataclass(frozen=True, slots=True)
class RunList(ListPage[Run]):
    """A page of runs in the public list shape (``object: "list"``)."""


class RunPlans(Engine[Run]):
    """What both run engines do, as plans (see ``Engine``)."""

    not_found = RunNotFoundError

    def __init__(
        self,
        store: Any = None,
        clock: Clock | None = None,
        ttl: int = 600,
        *,
        lease_seconds: int = 60,
        max_attempts: int = 3,
        id_factory: Callable[[str], str] | None = None,
        version: str = "v1",
        idempotency_window: int = 86_400,
    ) -> None:
        lifecycle = RunLifecycle(clock, ttl, id_factory=id_factory, version=version)
        # A store may hold runs of both versions: each is decided by its own lifecycle.
        lifecycles = {
            v: lifecycle
            if v == version
            else RunLifecycle(clock, ttl, id_factory=id_factory, version=v)
            for v in ("v1", "v2")
        }
        super().__init__(
            store,
            lifecycle,
            lifecycles,
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            idempotency_window=idempotency_window,
        )
        self.lifecycle: RunLifecycle = lifecycle
        self._run_lifecycles = lifecycles

    def _p_create(
        self, version: str | None, fields: dict[str, Any], idempotency_key: str | None
    ) -> Plan[Run]:
        lifecycle = (
            self.lifecycle if version is None else self._run_lifecycles[require_version(version)]
        )
        run, steps = lifecycle.new_run(**fields)
        key = self._key(idempotency_key, run)
        for _ in range(self._retries):
            try:
                made: Run = yield from self._p_insert(run, steps, None, key)
            except ActiveRunError as exc:
                # A due run is active until something expires it; reading it does.
                if (yield from self._p_get(exc.run_id)).status.is_active:
                    raise
                continue
            return made
        raise ConcurrentUpdateError(f"Thread {run.thread_id} kept changing; no run was created.")

    def _p_list_runs(
        self,
        thread_id: str | None,
        status: RunStatus | str | None,
        limit: int,
        order: Order,
        after: str | None,
        before: str | None,
    ) -> Plan[RunList]:
        if thread_id is not None:
            require_string(thread_id, "thread_id")
        wanted = None if status is None else require_status(status)
        runs, has_more = yield from self._p_list(thread_id, wanted, limit, order, after, before)
        return RunList(runs, has_more)

    def _p_events(
        self, after_seq: int, run_id: str | None, limit: int
    ) -> Plan[builtins.list[RunEvent]]:
        require_int(after_seq, "after_seq", minimum=0)
        if run_id is not None:
            require_string(run_id, "run_id")
        limit = require_int(limit, "limit", maximum=10_000)
        events: builtins.list[RunEvent] = yield call("events", after_seq, run_id, limit)
        return events


def _done(usage: dict[str, int] | None) -> Completion | None:
    """A run's ``complete`` argument: its usage, if given."""
    return None if usage is None else Completion(usage=usage)


class RunEngine(SyncFace[Run], RunPlans):
    """Runs in ``store`` (default: a new ``MemoryStore``), timed by ``clock``.

    ``lease_seconds`` is how long a claim lasts without a heartbeat; a run whose worker
    vanished is put back in the queue by ``recover_stalled`` and failed with
    ``server_error`` once it has been claimed ``max_attempts`` times. Times are whole
    seconds, so a lease of n seconds lasts between n-1 and n: heartbeat well within it.
    """

    # --- caller-side operations -------------------------------------------------------------

    def create(
        self,
        *,
        thread_id: str,
        assistant_id: str,
        model: str = "",
        instructions: str = "",
        tools: Sequence[dict[str, Any]] | None = None,
        file_ids: Sequence[str] | None = None,
        metadata: dict[str, str] | None = None,
        version: str | None = None,
        idempotency_key: str | None = None,
        **settings: Any,
    ) -> Run:
        """A new queued run of the engine's version (or of ``version``, "v1" or "v2");
        refused with ``ActiveRunError`` if the thread has an active one. With
        ``idempotency_key``, a create repeated with the same key and parameters (within
        the engine's ``idempotency_window``) returns the run made first, and makes
        nothing; with other parameters it is an ``IdempotencyError`` (409). A v2 run also
        takes the v2 settings (``temperature``, ``top_p``, ``max_prompt_tokens``,
        ``max_completion_tokens``, ``truncation_strategy``, ``tool_choice``,
        ``parallel_tool_calls``, ``response_format``), and no ``file_ids``."""
        fields = dict(
            thread_id=thread_id,
            assistant_id=assistant_id,
            model=model,
            instructions=instructions,
            tools=tools,
            file_ids=file_ids,
            metadata=metadata,
            **settings,
        )
        return self._run(self._p_create(version, fields, idempotency_key))

    def get(self, run_id: str) -> Run:
        """The run (expired first, and stored so, if it is due)."""
        return self._run(self._p_get(run_id))

    def list(
        self,
        thread_id: str | None,
        *,
        status: RunStatus | str | None = None,
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> RunList:
        """A thread's runs (every thread's for ``None``) by ``created_at``, in the public
        list shape, optionally only those with one status."""
        return self._run(self._p_list_runs(thread_id, status, limit, order, after, before))

    def update_metadata(self, run_id: str, metadata: dict[str, str]) -> Run:
        """Replace the run's metadata, in any status."""
        return self._run(self._p_update_metadata(run_id, metadata))

    def submit_tool_outputs(self, run_id: str, tool_outputs: Sequence[dict[str, Any]]) -> Run:
        return self._run(self._p_step(run_id, "submit_tool_outputs", tool_outputs))

    def cancel(self, run_id: str) -> Run:
        """Ask for cancellation. A run that no worker is executing (``queued`` or
        ``requires_action``) has nobody to confirm it, so the engine confirms it in the
        same write: ``cancelling`` then ``cancelled``, both events stored (ours). An
        ``in_progress`` run stays ``cancelling`` until its worker confirms or finishes."""
        return self._run(self._p_cancel(run_id))

    # --- worker-side operations ----------------------------------------------------------
    # With ``worker_id``, the step is refused (LeaseError) unless that worker holds the lease.

    def start(self, run_id: str, *, worker_id: str | None = None) -> Run:
        return self._run(self._p_step(run_id, "start", None, worker_id))

    def require_action(
        self, run_id: str, tool_calls: Sequence[dict[str, Any]], *, worker_id: str | None = None
    ) -> Run:
        return self._run(self._p_step(run_id, "require_action", tool_calls, worker_id))

    def complete(
        self, run_id: str, *, usage: dict[str, int] | None = None, worker_id: str | None = None
    ) -> Run:
        """The run is done (a v2 run with its ``usage``, if given)."""
        return self._run(self._p_step(run_id, "complete", _done(usage), worker_id))

    def fail(
        self,
        run_id: str,
        *,
        code: str = "server_error",
        message: str,
        usage: dict[str, int] | None = None,
        worker_id: str | None = None,
    ) -> Run:
        return self._run(self._p_step(run_id, "fail", Failure(code, message, usage), worker_id))

    def incomplete(
        self,
        run_id: str,
        *,
        reason: str,
        usage: dict[str, int] | None = None,
        worker_id: str | None = None,
    ) -> Run:
        """A v2 run stopped at a token limit (``max_completion_tokens`` or
        ``max_prompt_tokens``): ``in_progress`` or ``cancelling`` to ``incomplete``."""
        return self._run(
            self._p_step(run_id, "incomplete", Incompletion(reason, usage=usage), worker_id)
        )

    def confirm_cancel(self, run_id: str, *, worker_id: str | None = None) -> Run:
        return self._run(self._p_step(run_id, "confirm_cancel", None, worker_id))

    def expire(self, run_id: str) -> Run:
        """Expire a due run now; refused if it is not due."""
        return self._run(self._p_step(run_id, "expire"))

    def heartbeat(self, run_id: str, worker_id: str, *, lease_seconds: int | None = None) -> Run:
        """Extend ``worker_id``'s lease on the run (never its ``expires_at``). The run is
        returned so the worker sees a ``cancelling`` status and can stop."""
        return self._run(self._p_heartbeat(run_id, worker_id, lease_seconds))

    # --- history ------------------------------------------------------------------------------

    def history(self, run_id: str) -> builtins.list[RunEvent]:
        """Every transition of the run, oldest first."""
        return self._run(self._p_history(run_id))

    def events(
        self, *, after_seq: int = 0, run_id: str | None = None, limit: int = 100
    ) -> builtins.list[RunEvent]:
        """Stored events with ``seq > after_seq``, oldest first (the store's whole log,
        every lifecycle's, unless ``run_id`` is given): how another process follows
        transitions made elsewhere."""
        return self._run(self._p_events(after_seq, run_id, limit))


class AsyncRunEngine(AsyncFace[Run], RunPlans):
    """``RunEngine``'s twin for asyncio: the same methods, awaitable, on an async store
    (``runstate.connect_async(url)``; default: a ``MemoryStore`` behind
    ``AsyncStore``). Each method is the same plan as its sync twin's."""

    async def create(
        self,
        *,
        thread_id: str,
        assistant_id: str,
        model: str = "",
        instructions: str = "",
        tools: Sequence[dict[str, Any]] | None = None,
        file_ids: Sequence[str] | None = None,
        metadata: dict[str, str] | None = None,
        version: str | None = None,
        idempotency_key: str | None = None,
        **settings: Any,
    ) -> Run:
        """As ``RunEngine.create``."""
        fields = dict(
            thread_id=thread_id,
            assistant_id=assistant_id,
            model=model,
            instructions=instructions,
            tools=tools,
            file_ids=file_ids,
            metadata=metadata,
            **settings,
        )
        return await self._arun(self._p_create(version, fields, idempotency_key))

    async def get(self, run_id: str) -> Run:
        return await self._arun(self._p_get(run_id))

    async def list(
        self,
        thread_id: str | None,
        *,
        status: RunStatus | str | None = None,
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> RunList:
        return await self._arun(self._p_list_runs(thread_id, status, limit, order, after, before))

    async def update_metadata(self, run_id: str, metadata: dict[str, str]) -> Run:
        return await self._arun(self._p_update_metadata(run_id, metadata))

    async def submit_tool_outputs(self, run_id: str, tool_outputs: Sequence[dict[str, Any]]) -> Run:
        return await self._arun(self._p_step(run_id, "submit_tool_outputs", tool_outputs))

    async def cancel(self, run_id: str) -> Run:
        return await self._arun(self._p_cancel(run_id))

    async def start(self, run_id: str, *, worker_id: str | None = None) -> Run:
        return await self._arun(self._p_step(run_id, "start", None, worker_id))

    async def require_action(
        self, run_id: str, tool_calls: Sequence[dict[str, Any]], *, worker_id: str | None = None
    ) -> Run:
        return await self._arun(self._p_step(run_id, "require_action", tool_calls, worker_id))

    async def complete(
        self, run_id: str, *, usage: dict[str, int] | None = None, worker_id: str | None = None
    ) -> Run:
        return await self._arun(self._p_step(run_id, "complete", _done(usage), worker_id))

    async def fail(
        self,
        run_id: str,
        *,
        code: str = "server_error",
        message: str,
        usage: dict[str, int] | None = None,
        worker_id: str | None = None,
    ) -> Run:
        return await self._arun(
            self._p_step(run_id, "fail", Failure(code, message, usage), worker_id)
        )

    async def incomplete(
        self,
        run_id: str,
        *,
        reason: str,
        usage: dict[str, int] | None = None,
        worker_id: str | None = None,
    ) -> Run:
        return await self._arun(
            self._p_step(run_id, "incomplete", Incompletion(reason, usage=usage), worker_id)
        )

    async def confirm_cancel(self, run_id: str, *, worker_id: str | None = None) -> Run:
        return await self._arun(self._p_step(run_id, "confirm_cancel", None, worker_id))

    async def expire(self, run_id: str) -> Run:
        return await self._arun(self._p_step(run_id, "expire"))

    async def heartbeat(
        self, run_id: str, worker_id: str, *, lease_seconds: int | None = None
    ) -> Run:
        return await self._arun(self._p_heartbeat(run_id, worker_id, lease_seconds))

    async def history(self, run_id: str) -> builtins.list[RunEvent]:
        return await self._arun(self._p_history(run_id))

    async def events(
        self, *, after_seq: int = 0, run_id: str | None = None, limit: int = 100
    ) -> builtins.list[RunEvent]:
        return await self._arun(self._p_events(after_seq, run_id, limit))
