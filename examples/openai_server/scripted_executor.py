"""A scripted executor standing in for the model: workers that drive runs by the script.

Each worker claims the oldest queued run through the engine's claim API and plays it:

- ``metadata.simulate == "stall"``: holds the run, heartbeating, until it expires;
- ``metadata.simulate == "fail"``: fails it (``server_error``, or ``metadata.error_code``);
- ``metadata.simulate == "incomplete"``: a v2 run ends ``incomplete`` at its completion
  token budget (a v1 run, which has no such end, fails);
- a run with a function tool that has not yet asked for it: asks, ``requires_action``
  with one ``call_`` tool call whose arguments are ``metadata.arguments`` or else
  ``{"instructions": <the run's instructions>}``; when the outputs come back the run is
  queued again and the next claim completes it;
- anything else: completes it.

Before acting the worker "thinks" for ``metadata.delay`` seconds (default 0.05, at most
60), heartbeating, and honours a cancel at that step. ``read_script`` checks the
metadata; the server refuses a run whose script is malformed, and a worker fails one
that was created elsewhere with a malformed script. Run it in the server's process (the
default) or on its own against the server's SQLite file::

    python examples/openai_server/scripted_executor.py --store sqlite:///runs.db
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from runstate import Run, RunEngine, RunStateError, RunStatus, StoreError, ValidationError, connect

log = logging.getLogger("scripted_executor")

MAX_DELAY = 60.0
USAGE = {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}
ERROR_CODES = ("server_error", "rate_limit_exceeded", "invalid_prompt")


@dataclass(frozen=True)
class Script:
    """What a run's metadata asks the executor to do."""

    simulate: str | None = None  # "fail", "stall", "incomplete" or nothing
    delay: float | None = None  # seconds to think; None for the executor's default
    error_code: str = "server_error"


def read_script(metadata: Mapping[str, str] | None) -> Script:
    """The script in a run's metadata, or a ValidationError naming what is wrong."""
    metadata = metadata or {}
    simulate = metadata.get("simulate")
    if simulate not in (None, "fail", "stall", "incomplete"):
        raise ValidationError(
            f"Invalid 'metadata.simulate': expected 'fail', 'stall' or 'incomplete', got "
            f"{simulate!r}.",
            param="metadata",
        )
    delay = None
    if "delay" in metadata:
        try:
            delay = float(metadata["delay"])
        except (TypeError, ValueError):
            delay = math.nan
        if not 0 <= delay <= MAX_DELAY:  # also refuses NaN and infinities
            raise ValidationError(
                f"Invalid 'metadata.delay': expected a number of seconds from 0 to "
                f"{MAX_DELAY:g}, got {metadata['delay']!r}.",
                param="metadata",
            )
    code = metadata.get("error_code", "server_error")
    if code not in ERROR_CODES:
        raise ValidationError(
            f"Invalid 'metadata.error_code': expected one of {list(ERROR_CODES)}, got {code!r}.",
            param="metadata",
        )
    return Script(simulate, delay, code)


class ScriptedExecutor:
    """``workers`` threads playing runs from ``engine``; ``stop()`` ends them."""

    def __init__(self, engine: RunEngine, *, name: str = "executor", think_seconds: float = 0.05):
        self.engine = engine
        self.name = name
        self.think_seconds = think_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, workers: int = 2) -> ScriptedExecutor:
        for i in range(workers):
            thread = threading.Thread(target=self._work, args=(f"{self.name}-{i}",), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _work(self, worker: str) -> None:
        while not self._stop.is_set():
            try:
                run = self.engine.claim(worker)
                if run is None:
                    self._stop.wait(0.01)
                    continue
                self.play(run, worker)
            except StoreError as exc:  # the store is away: wait a little, then go on
                log.warning("%s: %s", worker, exc.message)
                self._stop.wait(0.5)
            except RunStateError as exc:  # the run moved on without us: cancelled, expired
                log.info("%s: %s", worker, exc.message)
            except Exception:  # keep serving; a bug in one run must not stop the worker
                log.exception("%s failed", worker)

    def play(self, run: Run, worker: str) -> None:
        try:
            script = read_script(run.metadata)
        except ValidationError as exc:  # made elsewhere, past the server's check
            self.engine.fail(run.id, message=exc.message, worker_id=worker)
            return
        if script.simulate == "stall":
            self._hold_until_expired(run, worker)
            return
        delay = self.think_seconds if script.delay is None else script.delay
        if not self._think(run, worker, delay):
            return
        if script.simulate == "fail" or (script.simulate == "incomplete" and run.version == "v1"):
            self.engine.fail(
                run.id, code=script.error_code, message="Simulated failure.", worker_id=worker
            )
            return
        usage = USAGE if run.version == "v2" else None  # the counts a model would report
        if script.simulate == "incomplete":
            self.engine.incomplete(
                run.id, reason="max_completion_tokens", usage=usage, worker_id=worker
            )
            return
        functions = [t["function"]["name"] for t in run.tools if t.get("type") == "function"]
        asked = any(e.event == "thread.run.requires_action" for e in self.engine.history(run.id))
        if functions and not asked:
            arguments = run.metadata.get("arguments") or json.dumps(
                {"instructions": run.instructions}
            )
            call = {"type": "function", "function": {"name": functions[0], "arguments": arguments}}
            self.engine.require_action(run.id, [call], worker_id=worker)
            return
        self.engine.complete(run.id, usage=usage, worker_id=worker)

    def _think(self, run: Run, worker: str, seconds: float) -> bool:
        """Wait ``seconds``, heartbeating; False if a cancel came (it is then confirmed)."""
        deadline = time.monotonic() + seconds
        while True:
            current = self.engine.heartbeat(run.id, worker)
            if current.status is RunStatus.CANCELLING:
                self.engine.confirm_cancel(run.id, worker_id=worker)
                return False
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.wait(min(left, 0.05)):
                return not self._stop.is_set()

    def _hold_until_expired(self, run: Run, worker: str) -> None:
        while not self._stop.wait(0.05):
            current = self.engine.heartbeat(run.id, worker)  # raises once the run has expired
            if current.status is RunStatus.CANCELLING:
                self.engine.confirm_cancel(run.id, worker_id=worker)
                return


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the scripted executor against a store.")
    parser.add_argument("--store", default="sqlite:///runs.db", help="store URL")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lease", type=int, default=30, help="lease seconds")
    args = parser.parse_args()
    executor = ScriptedExecutor(connect(args.store, lease_seconds=args.lease)).start(args.workers)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        executor.stop()


if __name__ == "__main__":
    main()
