"""RunEngine and AsyncRunEngine: the Assistants runs (``thread.run``, v1 or v2).

The loop, the claims, the sweeps and the leases are ``Engine``'s (``_engine.py``);
``RunPlans`` adds what a run has of its own, each operation written once as a plan: a
thread that holds at most one active run, tool calls and their outputs, and a two-phase
cancel. ``RunEngine`` runs the plans on a store, ``AsyncRunEngine`` awaits them on an
async store: the same decisions, the same loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._arguments import Completion, Failure, Incompletion
from ._clock import Clock
from ._engine import AsyncFace, Engine, ListPage, Plan, SyncFace
from ._errors import ActiveRunError, ConcurrentUpdateError, RunNotFoundError
from ._faces import operation
from ._lifecycle import RunLifecycle, require_version, run_fields
from ._model import Run, RunStatus, require_status
from ._validate import require_string
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
        run, steps = lifecycle.new_run(fields)
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

    # --- the operations: each face's methods are made from these (see ``_faces``) --------

    @operation
    def create(
        self,
        /,  # ``**settings`` may not take the name
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
    ) -> Plan[Run]:
        """A new queued run of the engine's version (or of ``version``, "v1" or "v2");
        refused with ``ActiveRunError`` if the thread has an active one. With
        ``idempotency_key``, a create repeated with the same key and parameters (within
        the engine's ``idempotency_window``) returns the run made first, and makes
        nothing; with other parameters it is an ``IdempotencyError`` (409). A v2 run also
        takes the v2 settings (``temperature``, ``top_p``, ``max_prompt_tokens``,
        ``max_completion_tokens``, ``truncation_strategy``, ``tool_choice``,
        ``parallel_tool_calls``, ``response_format``), and no ``file_ids``."""
        return self._p_create(version, run_fields(locals(), settings), idempotency_key)

    @operation
    def list(
        self,
        thread_id: str | None,
        *,
        status: RunStatus | str | None = None,
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> Plan[RunList]:
        """A thread's runs (every thread's for ``None``) by ``created_at``, in the public
        list shape, optionally only those with one status."""
        return self._p_list_runs(thread_id, status, limit, order, after, before)

    @operation
    def update_metadata(self, run_id: str, metadata: dict[str, str]) -> Plan[Run]:
        """Replace the run's metadata, in any status."""
        return self._p_update_metadata(run_id, metadata)

    @operation
    def submit_tool_outputs(self, run_id: str, tool_outputs: Sequence[dict[str, Any]]) -> Plan[Run]:
        """The caller's answer to ``requires_action``: one output per pending call; the
        run goes back to ``queued`` for a worker to go on with it."""
        return self._p_step(run_id, "submit_tool_outputs", tool_outputs)

    # The worker's side. With ``worker_id``, a step is refused (``LeaseError``) unless
    # that worker holds the lease.

    @operation
    def start(self, run_id: str, *, worker_id: str | None = None) -> Plan[Run]:
        """``queued`` to ``in_progress`` (a claim does this and leases the run)."""
        return self._p_step(run_id, "start", None, worker_id)

    @operation
    def require_action(
        self, run_id: str, tool_calls: Sequence[dict[str, Any]], *, worker_id: str | None = None
    ) -> Plan[Run]:
        """``in_progress`` to ``requires_action``, waiting for these function calls."""
        return self._p_step(run_id, "require_action", tool_calls, worker_id)

    @operation
    def complete(
        self, run_id: str, *, usage: dict[str, int] | None = None, worker_id: str | None = None
    ) -> Plan[Run]:
        """The run is done (a v2 run with its ``usage``, if given)."""
        return self._p_step(run_id, "complete", _done(usage), worker_id)

    @operation
    def fail(
        self,
        run_id: str,
        *,
        code: str = "server_error",
        message: str,
        usage: dict[str, int] | None = None,
        worker_id: str | None = None,
    ) -> Plan[Run]:
        """The run failed, with ``last_error`` of this ``code`` and ``message``."""
        return self._p_step(run_id, "fail", Failure(code, message, usage), worker_id)

    @operation
    def incomplete(
        self,
        run_id: str,
        *,
        reason: str,
        usage: dict[str, int] | None = None,
        worker_id: str | None = None,
    ) -> Plan[Run]:
        """A v2 run stopped at a token limit (``max_completion_tokens`` or
        ``max_prompt_tokens``): ``in_progress`` or ``cancelling`` to ``incomplete``."""
        return self._p_step(run_id, "incomplete", Incompletion(reason, usage=usage), worker_id)

    @operation
    def confirm_cancel(self, run_id: str, *, worker_id: str | None = None) -> Plan[Run]:
        """The worker confirms a cancel: ``cancelling`` to ``cancelled``."""
        return self._p_step(run_id, "confirm_cancel", None, worker_id)

    @operation
    def expire(self, run_id: str) -> Plan[Run]:
        """Expire a due run now; refused if it is not due."""
        return self._p_step(run_id, "expire")


def _done(usage: dict[str, int] | None) -> Completion | None:
    """A run's ``complete`` argument: its usage, if given."""
    return None if usage is None else Completion(usage=usage)


class RunEngine(SyncFace[Run], RunPlans):
    """Runs in ``store`` (default: a new ``MemoryStore``), timed by ``clock``.

    ``ttl`` is the seconds from creation to ``expires_at``; ``version`` the run object's
    (``"v1"``, the default, or ``"v2"``). ``lease_seconds`` is how long a claim lasts
    without a heartbeat; a run whose worker vanished is put back in the queue by
    ``recover_stalled`` and failed with ``server_error`` once it has been claimed
    ``max_attempts`` times. Times are whole seconds, so a lease of n seconds lasts between
    n-1 and n: heartbeat well within it.
    """


class AsyncRunEngine(AsyncFace[Run], RunPlans):
    """``RunEngine`` for asyncio: the same methods, awaitable, on an async store
    (``runstate.connect_async(url)``; default: a ``MemoryStore`` behind ``AsyncStore``)."""
