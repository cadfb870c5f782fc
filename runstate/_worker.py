"""Worker: a service's handler, run as durable, cancellable, recoverable jobs.

``Worker(engine, handler)`` claims the objects an engine queues (runs or background
responses) and runs ``handler(job)`` for each, up to ``concurrency`` at once. The
runtime does the hard part of driving the engine, once: it waits on the store's bell
when there is no work, renews the lease (every third of it), hears a cancel made in any
process at once and turns it into ``asyncio.CancelledError`` in the handler's task (and
confirms it where the lifecycle needs that), ends the job from what the handler returns
or raises, backs off when the store is away, hands its jobs back when it stops, and can
run the sweeps. The handler sees none of it.

How a job ends:

- the handler returns ``Completed(output=, usage=)`` or None: completed (a response
  with the output it streamed, or the ``output`` given);
- it raises ``Incomplete(reason, ...)``: incomplete; ``Failed(code, message)``: failed
  with that error; any other exception: failed with ``server_error`` and a message that
  does not show the exception's text (which is logged);
- ``await job.require_action(tool_calls)`` (a run): the job ends there; the run comes
  back as a new job once its outputs are submitted.

A worker that vanishes (killed) is recovered by a sweep once its lease has run out: a
run, and a response that had streamed nothing, go back to the queue (up to
``max_attempts`` claims); a response that had streamed output is failed
(``server_error``), never generated again on top of a half-sent stream, unless
``resume=True``: then the next job gets the events so far (``job.events``) to continue.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Never

from ._engine import Engine
from ._errors import (
    InvalidTransitionError,
    LeaseError,
    ObjectNotFoundError,
    RunStateError,
    StoreError,
    ValidationError,
)
from ._events import RunEvent
from ._faces import Async
from ._validate import V2_SETTINGS, require_int, require_seconds
from ._webhooks import dispatcher_of
from .stores._bell import WAITING

__all__ = ["Completed", "Failed", "Incomplete", "Job", "Worker"]

log = logging.getLogger("runstate.worker")

#: The longest an idle worker waits on the bell before it claims again (a ring missed
#: while a store's listener reconnects is made up for this way).
CLAIM_WAIT = 1.0
#: How long the runtime backs off after a store error, doubled up to the last.
BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
#: How long a job runs before the runtime first looks for a cancel (a cancel made in its
#: first moments is heard after this; later ones at once). A job shorter than this costs
#: no read of its object.
WATCH_AFTER = 0.02
#: What a job failed by an unexpected exception says (the exception itself is logged).
HANDLER_ERROR = "The worker's handler failed; the error is in the worker's log."


@dataclass(frozen=True, slots=True)
class Completed:
    """What a handler returns when it is done: a response's ``output`` (None: what it
    streamed) and ``usage``; a run's ``usage``."""

    output: Sequence[dict[str, Any]] | None = None
    usage: dict[str, Any] | None = None


class Incomplete(Exception):
    """Raised by a handler that stopped early (``reason``: ``max_output_tokens``,
    ``content_filter``... for a response, ``max_completion_tokens`` for a run)."""

    def __init__(
        self,
        reason: str,
        *,
        output: Sequence[dict[str, Any]] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason, self.output, self.usage = reason, output, usage


class Failed(Exception):
    """Raised by a handler to fail its job with this error ``code`` and ``message``."""

    def __init__(self, code: str = "server_error", message: str = "") -> None:
        super().__init__(message)
        self.code, self.message = code, message


class _Ended(BaseException):
    """The job ended from inside the handler (``require_action``): unwinds it."""


class Job:
    """One claimed object, as its handler sees it.

    - ``object``: the run or response as claimed; ``attempt``: its claim count;
    - ``request``: what it was created from (a response's whole create request; a
      run's model, instructions, tools, metadata and settings), ``input``: a
      response's input items, with the context it continues (``previous_response_id``);
    - ``events``: the events so far, for a response resumed after a lost worker
      (``resume=True``); empty otherwise;
    - ``kind``: ``"response"`` or ``"run"``;
    - ``cancelled``: True once a cancel came (a thread handler looks, or calls
      ``check()``, which raises ``asyncio.CancelledError``).

    Its methods are awaitable from an async handler and block from a thread handler.
    """

    def __init__(
        self,
        worker: Worker,
        obj: Any,
        attempt: int,
        request: dict[str, Any],
        input: list[dict[str, Any]],
        events: list[RunEvent],
        worker_id: str | None,
    ) -> None:
        self.object = obj
        self.attempt = attempt
        self.request = request
        self.input = input
        self.events = events
        self.cancelled = False
        #: The lease's holder; None for a foreground object, which no worker claimed.
        self.worker_id = worker_id
        self._worker = worker
        #: The output item it has open: "message", "function_call", or None.
        self._open: str | None = None
        self._ending = False

    @property
    def id(self) -> str:
        return str(self.object.id)

    @property
    def kind(self) -> str:
        """What the job is about: ``"response"`` or ``"run"`` (a lifecycle's kind)."""
        return str(self._worker.engine.kind)

    def check(self) -> None:
        """Raise ``asyncio.CancelledError`` if the job was cancelled (for a thread
        handler, which a task cancel cannot reach)."""
        if self.cancelled:
            raise asyncio.CancelledError(f"{self.id} was cancelled")

    def emit(self, type: str, data: dict[str, Any]) -> Any:
        """Stream an event: ``response.output_text.delta`` with ``{"delta": text}``
        adds text to the response's message (opened first if none is), and any other
        ``response.<...>`` type is a worker's own event (``append``)."""
        return self._worker._bridge(self._emit(type, data))

    def text(self, delta: str, *, logprobs: Sequence[dict[str, Any]] | None = None) -> Any:
        """Add ``delta`` to the response's message (opened first if none is)."""
        return self._worker._bridge(self._text(delta, logprobs))

    def function_call(self, name: str, arguments: str, *, call_id: str | None = None) -> Any:
        """Stream a function call output item (a response); returns the item."""
        return self._worker._bridge(self._function_call(name, arguments, call_id))

    def close_message(self) -> Any:
        """Close the response's open message, if one is open (the next text opens a new
        one); a job's last message is closed when it ends."""
        return self._worker._bridge(self._close("message"))

    def open_function_call(self, name: str, *, call_id: str | None = None) -> Any:
        """Open a function call item whose arguments come a piece at a time
        (``add_arguments``); an open message is closed first. Returns the item."""
        return self._worker._bridge(self._open_function_call(name, call_id))

    def add_arguments(self, delta: str) -> Any:
        """Add ``delta`` to the open function call's arguments."""
        return self._worker._bridge(
            self._worker._call("add_arguments", self.id, delta, worker_id=self.worker_id)
        )

    def close_function_call(self) -> Any:
        """Close the open function call, if one is open (a job's last item is closed
        when it ends)."""
        return self._worker._bridge(self._close("function_call"))

    def history(self) -> Any:
        """Every event of the object so far (a run's earlier rounds of tool calls)."""
        return self._worker._bridge(self._worker._call("history", self.id))

    def require_action(self, tool_calls: Sequence[dict[str, Any]]) -> Any:
        """Ask for these function calls (a run): the job ends here, and the run comes
        back as a new job once its tool outputs are submitted."""
        return self._worker._bridge(self._require_action(tool_calls))

    async def _emit(self, type: str, data: dict[str, Any]) -> None:
        if not self._worker._responses:
            raise ValidationError(
                "A run's job has no stream of its own to emit to: a run's events are its "
                "transitions.",
                param="type",
            )
        if type == "response.output_text.delta":
            await self._text(data.get("delta", ""), data.get("logprobs"))
            return
        await self._worker._call("append", self.id, type, data, worker_id=self.worker_id)

    async def _text(self, delta: str, logprobs: Sequence[dict[str, Any]] | None) -> None:
        worker = self._worker
        if self._open != "message":  # opened with its first delta: one write
            await self._close()
            await worker._call(
                "open_message", self.id, text=delta, logprobs=logprobs, worker_id=self.worker_id
            )
            self._open = "message"
            return
        await worker._call("add_text", self.id, delta, logprobs=logprobs, worker_id=self.worker_id)

    async def _function_call(self, name: str, arguments: str, call_id: str | None) -> Any:
        await self._close()
        return await self._worker._call(
            "function_call",
            self.id,
            name=name,
            arguments=arguments,
            call_id=call_id,
            worker_id=self.worker_id,
        )

    async def _open_function_call(self, name: str, call_id: str | None) -> Any:
        await self._close()
        item = await self._worker._call(
            "open_function_call", self.id, name=name, call_id=call_id, worker_id=self.worker_id
        )
        self._open = "function_call"
        return item

    async def _close(self, kind: str | None = None) -> None:
        """Close the open item (if ``kind`` is given, only an item of that kind)."""
        if self._open is not None and kind in (None, self._open):
            closing = "close_message" if self._open == "message" else "close_function_call"
            await self._worker._call(closing, self.id, worker_id=self.worker_id)
            self._open = None

    async def _require_action(self, tool_calls: Sequence[dict[str, Any]]) -> None:
        self._ending = True  # the status it moves to is this job's own doing, not a cancel
        await self._worker._call("require_action", self.id, tool_calls, worker_id=self.worker_id)
        raise _Ended


Handler = Callable[[Job], Any]

#: The most jobs one Worker runs at once.
MAX_CONCURRENCY = 10_000


def require_handler(handler: Any) -> Handler:
    """``handler`` if it can be called with a job, or a ValidationError."""
    if not callable(handler):
        raise ValidationError(
            f"Invalid 'handler': expected a function taking a job, got {type(handler).__name__}.",
            param="handler",
        )
    return handler  # type: ignore[no-any-return]


class Worker:
    """Runs ``handler(job)`` for each object ``engine`` queues, up to ``concurrency``
    at once (see the module's documentation).

    ``engine`` is an async or a sync ``RunEngine``/``ResponseEngine`` (a sync engine's
    calls run on threads); ``handler`` an async function, or a plain one that runs in
    a thread. ``worker_id`` names its leases (host and process by default).
    ``shutdown_grace``: the seconds in-flight jobs get to finish when it stops; those
    still running then are handed back at once. ``handle_signals``: stop on SIGTERM or
    SIGINT. ``sweep_every``: run ``expire_due`` and ``recover_stalled`` that often
    (None leaves them to ``runstate sweep``). ``resume``: a response whose worker was
    lost after it had streamed is requeued, and its next job gets the events so far.
    ``webhooks``: also send the store's webhook deliveries (``runstate.webhooks.
    Dispatcher``): True, or a dict of the dispatcher's options.
    """

    def __init__(
        self,
        engine: Any,
        handler: Handler,
        *,
        concurrency: int = 8,
        worker_id: str | None = None,
        shutdown_grace: float = 30.0,
        handle_signals: bool = False,
        sweep_every: float | None = None,
        resume: bool = False,
        webhooks: bool | Mapping[str, Any] = False,
        **unknown: Never,
    ) -> None:
        for name in unknown:  # a type checker flags these; at run time, a clear refusal
            raise ValidationError(f"Unknown option for Worker: '{name}'.", param=name)

        if not isinstance(engine, Engine):
            raise ValidationError(
                f"Invalid 'engine': expected a RunEngine or a ResponseEngine (sync or "
                f"async), got {type(engine).__name__}.",
                param="engine",
            )
        require_handler(handler)
        require_int(concurrency, "concurrency", maximum=MAX_CONCURRENCY)
        require_seconds(shutdown_grace, "shutdown_grace", zero=True)
        if sweep_every is not None:
            require_seconds(sweep_every, "sweep_every")
        if worker_id is not None and (
            not isinstance(worker_id, str) or not worker_id or "\x00" in worker_id
        ):
            raise ValidationError(
                "Invalid 'worker_id': expected a non-empty string.", param="worker_id"
            )
        self.engine = engine
        self.handler = handler
        self.concurrency = concurrency
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.shutdown_grace = float(shutdown_grace)
        self.handle_signals = bool(handle_signals)
        self.sweep_every = None if sweep_every is None else float(sweep_every)
        self.resume = bool(resume)
        #: The webhook dispatcher it runs beside its jobs (``webhooks``), if any.
        self.dispatcher = dispatcher_of(engine.store, webhooks)
        self._async_engine = isinstance(engine, Async)
        self._async_handler = inspect.iscoroutinefunction(handler) or (
            inspect.iscoroutinefunction(type(handler).__call__)  # an object with async __call__
        )
        self._responses = hasattr(engine, "open_message")
        self._lease = int(engine.lease_seconds)
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._handing_back: set[str] = set()
        self._background: asyncio.Task[None] | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        #: Jobs this worker has finished, by how they ended (for operators and tests).
        self.ended: dict[str, int] = {}

    # --- running --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; in-flight jobs get ``shutdown_grace`` seconds to finish, and
        are handed back after that. Safe from a signal handler or another thread."""
        if self._loop is None or self._stopping is None:
            return
        if threading.get_ident() == self._thread:
            self._stop_now()
        else:
            self._loop.call_soon_threadsafe(self._stop_now)

    def _stop_now(self) -> None:
        assert self._stopping is not None
        if not self._stopping.is_set():
            self._stopping.set()
            if self._slots is not None:
                self._slots.release()  # wakes the claim loop if it waits for a slot

    async def run(self) -> None:
        """Claim and run jobs until ``stop()`` (or, with ``handle_signals``, SIGTERM or
        SIGINT); then drain, hand back what is left, and return."""
        self._loop = None
        self._attach()
        assert self._loop is not None
        self._stopping = asyncio.Event()
        # A thread per job's handler and per job's watch, the claim and the sweep.
        self._threads = ThreadPoolExecutor(2 * self.concurrency + 2, "runstate-worker")
        if self.handle_signals:  # one handler stops every such Worker of the process
            _SIGNALLED.add(self)
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, _stop_signalled)
        sweeper = asyncio.ensure_future(self._sweep()) if self.sweep_every else None
        dispatcher = self.dispatcher
        sending = None if dispatcher is None else asyncio.ensure_future(dispatcher.run())
        try:
            await self._claim_loop()
        finally:
            for task in (sweeper, sending):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            await self._drain()
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
            if self.handle_signals:
                _SIGNALLED.discard(self)
                if not _SIGNALLED:
                    for sig in (signal.SIGTERM, signal.SIGINT):
                        self._loop.remove_signal_handler(sig)

    async def __aenter__(self) -> Worker:
        self._background = asyncio.ensure_future(self.run())
        while self._stopping is None and not self._background.done():
            await asyncio.sleep(0)  # until run() has set itself up
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
        if self._background is not None:
            await self._background

    async def _claim_loop(self) -> None:
        assert self._stopping is not None
        slots = self._slots = asyncio.Semaphore(self.concurrency)
        bell = self.engine.bell  # the engine's: rung by every write this process hears
        failures = 0
        while not self._stopping.is_set():
            await slots.acquire()  # a slot, at once or when a job ends; a stop frees one
            if self._stopping.is_set():  # the stop wins
                slots.release()
                break
            mark = bell.mark(WAITING)  # before the claim: a create after it rings
            try:
                claimed = await self._call("claim", self.worker_id)
            except StoreError as exc:
                slots.release()
                delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
                failures += 1
                log.warning(
                    "%s: claim failed (%s); retrying in %.1fs", self.worker_id, exc.message, delay
                )
                await self._pause(delay)
                continue
            failures = 0
            if claimed is None:
                slots.release()
                # Idle: wait on the bell (a create or a hand-back in any process rings it;
                # at worst the claim looks again after CLAIM_WAIT), or for the stop.
                await self._unless_stopped(bell.wait_async(WAITING, mark, CLAIM_WAIT))
                continue
            task = asyncio.ensure_future(self._run_job(claimed, self.worker_id))
            self._jobs[claimed.id] = task
            task.add_done_callback(partial(self._job_done, claimed.id, slots))

    async def _unless_stopped(self, waiting: Awaitable[Any]) -> bool:
        """Await ``waiting`` unless the worker is stopped first (then it is cancelled);
        whether it finished."""
        assert self._stopping is not None
        work = asyncio.ensure_future(waiting)
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if work.done():
            return not work.cancelled()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        return False

    def _job_done(self, object_id: str, slots: asyncio.Semaphore, _: object) -> None:
        self._jobs.pop(object_id, None)
        slots.release()

    async def _drain(self) -> None:
        """Give in-flight jobs ``shutdown_grace``, then hand back those still running."""
        running = list(self._jobs.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=self.shutdown_grace)
            for object_id, task in list(self._jobs.items()):
                if task in pending:
                    self._handing_back.add(object_id)
                    task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _pause(self, seconds: float) -> None:
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _sweep(self) -> None:
        assert self.sweep_every is not None
        while True:
            try:
                await self._call("expire_due")
                await self._call("recover_stalled", resume=self.resume)
            except StoreError as exc:
                log.warning("%s: sweep failed (%s)", self.worker_id, exc.message)
            await asyncio.sleep(self.sweep_every)

    # --- one job ------------------------------------------------------------------------------

    async def perform(self, obj: Any) -> None:
        """Run the handler on ``obj`` now, in this task: an object no worker claimed (a
        foreground response, which its server generates while the client waits). The
        job is the same and ends the same way; there is no lease to keep, but a change
        from elsewhere (a time-out) still stops the handler."""
        self._attach()
        await self._run_job(obj, None)

    def _attach(self) -> None:
        """Bind the worker to the running loop (and its thread) once."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.get_ident()

    async def _run_job(self, claimed: Any, worker_id: str | None) -> None:
        object_id = claimed.id
        try:
            job = await self._job_for(claimed, worker_id)
        except RunStateError as exc:  # it moved on (cancelled, deleted) before it began
            log.info("%s: %s before its job began: %s", self.worker_id, object_id, exc.message)
            return
        # The handler runs in this task (no task of its own: a job costs as few turns of
        # the event loop as it can); the watch cancels this task to stop it.
        task = asyncio.current_task()
        assert task is not None
        state = _Watch()
        # A job that ends at once costs no watching: the watch starts a moment later.
        watching: list[asyncio.Task[None]] = []
        timer = asyncio.get_running_loop().call_later(
            WATCH_AFTER,
            lambda: watching.append(asyncio.ensure_future(self._watch(job, task, state))),
        )
        outcome: Any = None
        error: BaseException | None = None
        try:
            outcome = await self._invoke(job)
        except BaseException as exc:  # the handler's own outcome, decided on below
            error = exc
        finally:
            state.done = True  # from here on, nothing cancels this task on the job's behalf
            await _stop_watching(timer, watching)
        if object_id in self._handing_back:  # the worker is stopping: hand it back
            _uncancel(task)
            job.cancelled = True
            await self._hand_back(job)
            return
        if state.reason is not None:  # the watch stopped it (its cancel is consumed)
            _uncancel(task)
        elif isinstance(error, asyncio.CancelledError) and task.cancelling():
            raise error  # pragma: no cover - the job's own task was cancelled from outside
        await self._finish(job, state, outcome, error)

    async def _job_for(self, claimed: Any, worker_id: str | None) -> Job:
        if self._responses:
            work = await self._call("work_of", claimed.id)  # one read of what it keeps
            request, items = work["request"], work["input"]
            events: list[RunEvent] = []
            if self.resume and claimed.output:
                events = await self._call("events", claimed.id)
        else:
            request = _run_request(claimed)
            items, events = [], []
        attempt = await self._attempt(claimed.id) if worker_id is not None else 1
        return Job(self, claimed, attempt, request, items, events, worker_id)

    async def _attempt(self, object_id: str) -> int:
        known = self.engine.claims_of(object_id)  # what the claim stored, if still held
        if known is not None:
            return int(known)
        stored = await self._call_store("get", object_id)
        return int(stored.attempts) if stored is not None else 1

    async def _invoke(self, job: Job) -> Any:
        if self._async_handler:
            return await self.handler(job)
        result = await self._in_thread(partial(self.handler, job))
        if inspect.isawaitable(result):
            return await result
        return result

    async def _watch(self, job: Job, task: asyncio.Task[Any], state: _Watch) -> None:
        """Keep the lease and listen for a cancel, until the handler is done. A store
        that does not answer within what is left of the lease counts as a failure: a
        job whose lease could not be renewed for longer than the lease is stopped."""
        interval = max(self._lease / 3, 0.05)
        renewed = time.monotonic()
        status = job.object.status
        failures = 0
        while not state.done:
            left = self._lease - (time.monotonic() - renewed)
            try:
                async with asyncio.timeout(max(left, 0.05)):
                    current = await self._call(
                        "wait_for_change",
                        job.id,
                        status=status,
                        timeout=min(interval, max(left, 0.05)),
                    )
                    if current.status == status and time.monotonic() - renewed >= interval * 0.9:
                        if job.worker_id is not None:  # a foreground job has no lease
                            current = await self._call("heartbeat", job.id, job.worker_id)
                        renewed = time.monotonic()
                failures = 0
            except (StoreError, TimeoutError) as exc:
                failures += 1
                if time.monotonic() - renewed >= self._lease:
                    log.warning(
                        "%s: %s's lease could not be renewed for %ds; stopping it",
                        self.worker_id,
                        job.id,
                        self._lease,
                    )
                    state.reason = "lease lost"
                    self._stop_handler(job, task, state)
                    return
                why = exc.message if isinstance(exc, StoreError) else "the store did not answer"
                log.warning("%s: heartbeat of %s failed (%s)", self.worker_id, job.id, why)
                await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
                continue
            except (LeaseError, InvalidTransitionError, ObjectNotFoundError) as exc:
                state.reason = "lease lost" if isinstance(exc, LeaseError) else "gone"
                self._stop_handler(job, task, state)
                return
            if current.status != status:
                if job._ending:  # the handler's own step (require_action): it ends now
                    return
                state.reason = "cancelled"  # a cancel, or a time-out
                self._stop_handler(job, task, state)
                return

    def _stop_handler(self, job: Job, task: asyncio.Task[Any], state: _Watch) -> None:
        job.cancelled = True
        if self._async_handler and not state.done:
            task.cancel()

    async def _finish(
        self, job: Job, state: _Watch, outcome: Any, error: BaseException | None
    ) -> None:
        """End the job from what its handler returned or raised."""
        engine_id, worker = job.id, job.worker_id
        try:
            if isinstance(error, _Ended):
                self._count("requires_action")
                return
            if state.reason == "cancelled":
                if hasattr(self.engine, "confirm_cancel"):
                    current = await self._call("get", engine_id)
                    if current.status.value == "cancelling":
                        await self._call("confirm_cancel", engine_id, worker_id=worker)
                self._count("cancelled")
                return
            if state.reason is not None:  # the lease is gone: another worker may hold it
                self._count(state.reason)
                return
            if isinstance(error, Incomplete):
                await job._close()
                await self._call(
                    "incomplete",
                    engine_id,
                    reason=error.reason,
                    usage=error.usage,
                    worker_id=worker,
                    **({"output": error.output} if self._responses else {}),
                )
                self._count("incomplete")
                return
            if isinstance(error, Failed):
                await self._call(
                    "fail", engine_id, code=error.code, message=error.message, worker_id=worker
                )
                self._count("failed")
                return
            if error is not None:  # an exception, or a CancelledError no cancel caused
                log.error("%s: the handler of %s raised", worker, engine_id, exc_info=error)
                await self._call(
                    "fail", engine_id, code="server_error", message=HANDLER_ERROR, worker_id=worker
                )
                self._count("errored")
                return
            done = outcome if isinstance(outcome, Completed) else Completed()
            if outcome is not None and not isinstance(outcome, Completed):
                raise ValidationError(
                    f"A handler returns a runstate.Completed or None, got "
                    f"{type(outcome).__name__}.",
                    param="handler",
                )
            await job._close()
            if self._responses:
                await self._call(
                    "complete", engine_id, output=done.output, usage=done.usage, worker_id=worker
                )
            else:
                await self._call("complete", engine_id, usage=done.usage, worker_id=worker)
            self._count("completed")
        except ValidationError as exc:  # the handler's result was malformed: fail it
            log.error(
                "%s: the handler of %s returned a bad result: %s", worker, engine_id, exc.message
            )
            with contextlib.suppress(RunStateError):
                await self._call(
                    "fail", engine_id, code="server_error", message=HANDLER_ERROR, worker_id=worker
                )
            self._count("errored")
        except RunStateError as exc:  # it moved on meanwhile: cancelled, timed out, deleted
            log.info("%s: %s could not be ended: %s", worker, engine_id, exc.message)
            self._count("refused")

    async def _hand_back(self, job: Job) -> None:
        try:
            await self._call("release", job.id, self.worker_id, resume=self.resume)
            self._count("handed back")
        except RunStateError as exc:
            log.info("%s: %s could not be handed back: %s", self.worker_id, job.id, exc.message)

    def _count(self, how: str) -> None:
        self.ended[how] = self.ended.get(how, 0) + 1

    # --- calling the engine, from either face, from either side --------------------------------

    async def _call(self, operation: str, /, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.engine, operation)
        if self._async_engine:
            return await method(*args, **kwargs)
        return await self._in_thread(partial(method, *args, **kwargs))

    async def _call_store(self, name: str, *args: Any) -> Any:
        method = getattr(self.engine.store, name)
        if self._async_engine:
            return await method(*args)
        return await self._in_thread(partial(method, *args))

    async def _in_thread(self, work: Callable[[], Any]) -> Any:
        """``work`` on the worker's own threads: a sync engine's waits (a claim, a
        watch) block a thread each, and the loop's default pool is too small for them."""
        assert self._loop is not None
        if self._threads is None:  # a job performed by a worker that is not running
            return await asyncio.to_thread(work)
        return await self._loop.run_in_executor(self._threads, work)

    def _bridge(self, coroutine: Awaitable[Any]) -> Any:
        """A job method's coroutine: returned to an async handler to await, or run on
        the worker's loop for a thread handler, which waits for it."""
        if threading.get_ident() == self._thread:
            return coroutine
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()  # type: ignore[arg-type]


#: The running Workers that stop on SIGTERM or SIGINT.
_SIGNALLED: set[Worker] = set()


def _stop_signalled() -> None:
    for worker in list(_SIGNALLED):
        worker.stop()


@dataclass
class _Watch:
    """Why the runtime stopped a handler, if it did."""

    reason: str | None = None
    done: bool = False  # the handler has returned or raised


async def _stop_watching(timer: asyncio.TimerHandle, watching: list[asyncio.Task[None]]) -> None:
    timer.cancel()
    if watching:  # most short jobs end before their watch starts
        for watcher in watching:
            watcher.cancel()
        await asyncio.gather(*watching, return_exceptions=True)


def _uncancel(task: asyncio.Task[Any]) -> None:
    """Forget the cancels this task was sent on the job's behalf (they are answered), so
    that what it awaits next (a store call with a time-out) is not taken for cancelled."""
    while task.cancelling():
        task.uncancel()


def _run_request(run: Any) -> dict[str, Any]:
    """What a run was created from, as its handler reads it."""
    data = run.to_dict()
    keep = ("assistant_id", "thread_id", "model", "instructions", "tools", "metadata", *V2_SETTINGS)
    return {key: data[key] for key in keep if key in data}
