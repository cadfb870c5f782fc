"""RunEngine: the Assistants runs (``thread.run``, v1 or v2) on the one engine.

The loop, the claims, the sweeps and the leases are ``Engine``'s (``_engine.py``); this
face adds what a run has of its own: a thread that holds at most one active run, tool
calls and their outputs, and a two-phase cancel that the engine confirms at once for a
run that no worker is executing.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from ._clock import Clock
from ._engine import Engine, ListPage
from ._errors import ActiveRunError, ConcurrentUpdateError
from ._events import RunEvent
from ._lifecycle import RunLifecycle, require_version
from ._model import Run, RunStatus, require_status
from ._validate import require_int, require_string, validate_metadata
from .stores import Order, Store

__all__ = ["RunEngine", "RunList"]


@dataclass(frozen=True, slots=True)
class RunList(ListPage[Run]):
    """A page of runs in the public list shape (``object: "list"``)."""


class RunEngine(Engine[Run]):
    """Runs in ``store`` (default: a new ``MemoryStore``), timed by ``clock``.

    ``lease_seconds`` is how long a claim lasts without a heartbeat; a run whose worker
    vanished is put back in the queue by ``recover_stalled`` and failed with
    ``server_error`` once it has been claimed ``max_attempts`` times. Times are whole
    seconds, so a lease of n seconds lasts between n-1 and n: heartbeat well within it.
    """

    def __init__(
        self,
        store: Store | None = None,
        clock: Clock | None = None,
        ttl: int = 600,
        *,
        lease_seconds: int = 60,
        max_attempts: int = 3,
        id_factory: Callable[[str], str] | None = None,
        version: str = "v1",
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
            store, lifecycle, lifecycles, lease_seconds=lease_seconds, max_attempts=max_attempts
        )
        self.lifecycle: RunLifecycle = lifecycle
        self._run_lifecycles = lifecycles

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
        **settings: Any,
    ) -> Run:
        """A new queued run of the engine's version (or of ``version``, "v1" or "v2");
        refused with ``ActiveRunError`` if the thread has an active one. A v2 run also
        takes the v2 settings (``temperature``, ``top_p``, ``max_prompt_tokens``,
        ``max_completion_tokens``, ``truncation_strategy``, ``tool_choice``,
        ``parallel_tool_calls``, ``response_format``), and no ``file_ids``."""
        lifecycle = (
            self.lifecycle if version is None else self._run_lifecycles[require_version(version)]
        )
        run, steps = lifecycle.new_run(
            thread_id=thread_id,
            assistant_id=assistant_id,
            model=model,
            instructions=instructions,
            tools=tools,
            file_ids=file_ids,
            metadata=metadata,
            **settings,
        )
        for _ in range(self._retries):
            try:
                seqs = self.store.insert(run, steps)
            except ActiveRunError as exc:
                # A due run is active until something expires it; reading it does.
                if self.get(exc.run_id).status.is_active:
                    raise
                continue
            self._publish(run, steps, seqs, 0)
            return run
        raise ConcurrentUpdateError(f"Thread {thread_id} kept changing; no run was created.")

    def get(self, run_id: str) -> Run:
        """The run (expired first, and stored so, if it is due)."""
        return self._get(run_id)

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
        if thread_id is not None:
            require_string(thread_id, "thread_id")
        wanted = None if status is None else require_status(status)
        runs, has_more = self._list(thread_id, wanted, limit, order, after, before)
        return RunList(runs, has_more)

    def update_metadata(self, run_id: str, metadata: dict[str, str]) -> Run:
        """Replace the run's metadata, in any status."""
        return self._apply(run_id, partial(self._new_metadata, validate_metadata(metadata)))[0]

    def submit_tool_outputs(self, run_id: str, tool_outputs: Sequence[dict[str, Any]]) -> Run:
        return self._apply(run_id, self._event("submit_tool_outputs", tool_outputs))[0]

    def cancel(self, run_id: str) -> Run:
        """Ask for cancellation. A run that no worker is executing (``queued`` or
        ``requires_action``) has nobody to confirm it, so the engine confirms it in the
        same write: ``cancelling`` then ``cancelled``, both events stored (ours). An
        ``in_progress`` run stays ``cancelling`` until its worker confirms or finishes."""
        return self._apply(run_id, self._cancelled)[0]

    # --- worker-side operations ----------------------------------------------------------
    # With ``worker_id``, the step is refused (LeaseError) unless that worker holds the lease.

    def start(self, run_id: str, *, worker_id: str | None = None) -> Run:
        return self._apply(run_id, self._event("start", worker_id=worker_id))[0]

    def require_action(
        self, run_id: str, tool_calls: Sequence[dict[str, Any]], *, worker_id: str | None = None
    ) -> Run:
        return self._apply(run_id, self._event("require_action", tool_calls, worker_id))[0]

    def complete(
        self, run_id: str, *, usage: dict[str, int] | None = None, worker_id: str | None = None
    ) -> Run:
        """The run is done (a v2 run with its ``usage``, if given)."""
        return self._apply(run_id, self._event("complete", usage, worker_id))[0]

    def fail(
        self,
        run_id: str,
        *,
        code: str = "server_error",
        message: str,
        usage: dict[str, int] | None = None,
        worker_id: str | None = None,
    ) -> Run:
        return self._apply(run_id, self._event("fail", (code, message, usage), worker_id))[0]

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
        return self._apply(run_id, self._event("incomplete", (reason, usage), worker_id))[0]

    def confirm_cancel(self, run_id: str, *, worker_id: str | None = None) -> Run:
        return self._apply(run_id, self._event("confirm_cancel", worker_id=worker_id))[0]

    def expire(self, run_id: str) -> Run:
        """Expire a due run now; refused if it is not due."""
        return self._apply(run_id, self._event("expire"))[0]

    def heartbeat(self, run_id: str, worker_id: str, *, lease_seconds: int | None = None) -> Run:
        """Extend ``worker_id``'s lease on the run (never its ``expires_at``). The run is
        returned so the worker sees a ``cancelling`` status and can stop."""
        return self._heartbeat_of(run_id, worker_id, lease_seconds)

    def history(self, run_id: str) -> builtins.list[RunEvent]:
        """Every transition of the run, oldest first."""
        return self._history(run_id)

    # --- history ------------------------------------------------------------------------------

    def events(
        self, *, after_seq: int = 0, run_id: str | None = None, limit: int = 100
    ) -> builtins.list[RunEvent]:
        """Stored events with ``seq > after_seq``, oldest first: how another process
        follows transitions made elsewhere."""
        require_int(after_seq, "after_seq", minimum=0)
        if run_id is not None:
            require_string(run_id, "run_id")
        return self.store.events(after_seq, run_id, require_int(limit, "limit", maximum=10_000))

    # --- the changes: each decides on a copy of the stored run ----------------------------------

    def _fail_argument(self, code: str, message: str) -> Any:
        return (code, message, None)
