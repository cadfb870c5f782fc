"""A scripted executor standing in for the model: workers that drive runs and background
responses by the script in their metadata, as asyncio tasks on the async engines.

A background response is generated as a stream: a message opened, the reply's words
added over ``metadata.delay`` seconds, the message closed, then the response completed
with its usage (``simulate``: ``fail``, ``stall`` until it times out, ``incomplete`` at
``max_output_tokens``). The reply to a ``json_schema`` text format is a JSON instance of
the schema (so ``responses.parse()`` parses it); a ``tool_choice`` of ``required`` or a
named function gets one function call instead. A cancel stops it at the next word.

Each run worker claims the oldest queued run through the engine's claim API and plays it:

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
import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runstate import (
    AsyncResponseEngine,
    AsyncRunEngine,
    Response,
    ResponseStatus,
    Run,
    RunStateError,
    RunStatus,
    StoreError,
    ValidationError,
    open_store_async,
)

log = logging.getLogger("scripted_executor")

MAX_DELAY = 60.0
#: What a background response "generates", streamed a word at a time.
REPLY = "Hello from runstate: this response was generated in the background."
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
    """Workers playing runs from ``runs`` and background responses from ``responses``
    (either may be None), as asyncio tasks on the running loop: ``start(n)`` starts n of
    each, ``await stop()`` ends them. An idle worker waits in ``claim(wait=...)``, woken
    when work is queued in any process, instead of polling."""

    def __init__(
        self,
        runs: AsyncRunEngine | None,
        responses: AsyncResponseEngine | None = None,
        *,
        name: str = "executor",
        think_seconds: float = 0.05,
    ):
        self.runs = runs
        self.responses = responses
        self.name = name
        self.think_seconds = think_seconds
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, workers: int = 2) -> ScriptedExecutor:
        for i in range(workers):
            if self.runs is not None:
                self._tasks.append(asyncio.ensure_future(self._work(f"{self.name}-{i}", self.runs)))
            if self.responses is not None:
                worker = f"{self.name}-r{i}"
                self._tasks.append(asyncio.ensure_future(self._work(worker, self.responses)))
        return self

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _work(self, worker: str, engine: AsyncRunEngine | AsyncResponseEngine) -> None:
        while not self._stop.is_set():
            try:
                claimed = await engine.claim(worker, wait=1.0)
                if claimed is None:
                    continue
                if isinstance(claimed, Response):
                    await self.play_response(claimed, worker)
                else:
                    await self.play(claimed, worker)
            except StoreError as exc:  # the store is away: wait a little, then go on
                log.warning("%s: %s", worker, exc.message)
                await self._sleep(0.5)
            except RunStateError as exc:  # it moved on without us: cancelled, expired, gone
                log.info("%s: %s", worker, exc.message)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep serving; a bug in one run must not stop the worker
                log.exception("%s failed", worker)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep ``seconds``; True if the executor was stopped meanwhile."""
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    # --- runs --------------------------------------------------------------------------------

    async def play(self, run: Run, worker: str) -> None:
        assert self.runs is not None
        runs = self.runs
        try:
            script = read_script(run.metadata)
        except ValidationError as exc:  # made elsewhere, past the server's check
            await runs.fail(run.id, message=exc.message, worker_id=worker)
            return
        if script.simulate == "stall":
            await self._hold_until_expired(run, worker)
            return
        delay = self.think_seconds if script.delay is None else script.delay
        if not await self._think(run, worker, delay):
            return
        if script.simulate == "fail" or (script.simulate == "incomplete" and run.version == "v1"):
            await runs.fail(
                run.id, code=script.error_code, message="Simulated failure.", worker_id=worker
            )
            return
        usage = USAGE if run.version == "v2" else None  # the counts a model would report
        if script.simulate == "incomplete":
            await runs.incomplete(
                run.id, reason="max_completion_tokens", usage=usage, worker_id=worker
            )
            return
        functions = [t["function"]["name"] for t in run.tools if t.get("type") == "function"]
        history = await runs.history(run.id)
        asked = any(e.event == "thread.run.requires_action" for e in history)
        if functions and not asked:
            arguments = run.metadata.get("arguments") or json.dumps(
                {"instructions": run.instructions}
            )
            call = {"type": "function", "function": {"name": functions[0], "arguments": arguments}}
            await runs.require_action(run.id, [call], worker_id=worker)
            return
        await runs.complete(run.id, usage=usage, worker_id=worker)

    async def _think(self, run: Run, worker: str, seconds: float) -> bool:
        """Think ``seconds``, heartbeating now and then; False if a cancel came (it is
        then confirmed). The cancel is heard as it is made, in whichever process: the
        worker waits for the run's status to change, not for its next heartbeat."""
        assert self.runs is not None
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            current = await self.runs.heartbeat(run.id, worker)
            left = deadline - time.monotonic()
            if current.status is RunStatus.IN_PROGRESS and left > 0:
                wait = min(left, self.runs.lease_seconds / 3)
                current = await self.runs.wait_for_change(
                    run.id, status=RunStatus.IN_PROGRESS, timeout=wait
                )
            if current.status is RunStatus.CANCELLING:
                await self.runs.confirm_cancel(run.id, worker_id=worker)
                return False
            if time.monotonic() >= deadline:
                return True
        return False

    async def _hold_until_expired(self, run: Run, worker: str) -> None:
        assert self.runs is not None
        while not await self._sleep(0.05):
            current = await self.runs.heartbeat(run.id, worker)  # raises once it has expired
            if current.status is RunStatus.CANCELLING:
                await self.runs.confirm_cancel(run.id, worker_id=worker)
                return

    # --- background responses ----------------------------------------------------------------

    async def play_response(self, response: Response, worker: str | None) -> None:
        """Generate a response by its script: text deltas appended one by one over the
        script's ``delay`` (a cancel stops it at the next one), then completed with the
        message; or failed, held until it times out, or ended incomplete. ``worker`` is
        None for a foreground response the server generates inline."""
        assert self.responses is not None
        engine = self.responses
        try:
            script = read_script(response.metadata)
        except ValidationError as exc:
            await engine.fail(response.id, message=exc.message, worker_id=worker)
            return
        if script.simulate == "stall":
            while not await self._sleep(0.05):  # refused once it has timed out
                if worker is not None:
                    await engine.heartbeat(response.id, worker)
                elif (await engine.get(response.id)).status.value != "in_progress":
                    return
            return
        if script.simulate == "fail":
            await engine.fail(
                response.id, code=script.error_code, message="Simulated failure.", worker_id=worker
            )
            return
        request = await engine.request_of(response.id)
        delay = self.think_seconds if script.delay is None else script.delay
        calling = _function_to_call(request)
        if calling is not None:  # the tool choice asks for a call: the model makes one
            if not await self._generate_for(response, worker, delay):
                return
            await engine.function_call(
                response.id,
                name=calling,
                arguments=json.dumps({"input": _last_text(request)}),
                worker_id=worker,
            )
            await engine.complete(
                response.id, usage={"input_tokens": 5, "output_tokens": 5}, worker_id=worker
            )
            return
        reply = _reply_for(request)
        words = reply.split(" ")
        await engine.open_message(response.id, worker_id=worker)
        for i, word in enumerate(words):
            if self._stop.is_set() or not await self._generate_for(
                response, worker, delay / len(words)
            ):
                return
            # Refused once the response is cancelled: the worker learns it here.
            await engine.add_text(response.id, word if i == 0 else " " + word, worker_id=worker)
        await engine.close_message(response.id, worker_id=worker)
        usage = {"input_tokens": 5, "output_tokens": len(words)}
        if script.simulate == "incomplete":
            await engine.incomplete(
                response.id, reason="max_output_tokens", usage=usage, worker_id=worker
            )
            return
        await engine.complete(response.id, usage=usage, worker_id=worker)

    async def _generate_for(self, response: Response, worker: str | None, seconds: float) -> bool:
        """Keep the lease and pause ``seconds``, cut short by a cancel from anywhere;
        False if the response is no longer in progress."""
        assert self.responses is not None
        if worker is not None:
            await self.responses.heartbeat(response.id, worker)
        if seconds > 0:
            current = await self.responses.wait_for_change(
                response.id, status=ResponseStatus.IN_PROGRESS, timeout=seconds
            )
            return current.status is ResponseStatus.IN_PROGRESS
        return True


def _function_to_call(request: Mapping[str, Any]) -> str | None:
    """The function tool the request's ``tool_choice`` makes the model call (``required``
    or a named function), unless the input already holds a call's output."""
    functions = [t["name"] for t in request.get("tools") or () if t["type"] == "function"]
    choice = request.get("tool_choice")
    given = request["input"]
    answered = isinstance(given, list) and any(
        item.get("type") == "function_call_output" for item in given
    )
    if not functions or answered:
        return None
    if choice == "required":
        return functions[0]
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        return str(choice["name"])
    return None


def _last_text(request: Mapping[str, Any]) -> str:
    given = request["input"]
    if isinstance(given, str):
        return given
    for item in reversed(given):
        content = item.get("content")
        if isinstance(content, str):
            return content
        for part in content or ():
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                return str(part["text"])
    return ""


def _reply_for(request: Mapping[str, Any]) -> str:
    """The text the demo model answers: a JSON instance of a ``json_schema`` text format,
    ``{}`` for ``json_object``, or ``REPLY``."""
    text_format = (request.get("text") or {}).get("format") or {}
    if text_format.get("type") == "json_schema":
        schema = text_format.get("schema") or {}
        return json.dumps(instance_of(schema, schema.get("$defs", {})))
    if text_format.get("type") == "json_object":
        return "{}"
    return REPLY


def instance_of(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Any:
    """A value valid against the JSON Schema ``schema`` (the subset structured outputs
    use: objects, arrays, scalars, enums, ``anyOf`` and ``$ref`` into ``$defs``)."""
    if "$ref" in schema:
        return instance_of(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return instance_of(schema["anyOf"][0], defs)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: instance_of(properties[name], defs) for name in schema.get("required", [])}
    if kind == "array":
        return [instance_of(schema["items"], defs)] * schema.get("minItems", 0)
    return {"string": "text", "integer": 1, "number": 1.5, "boolean": True, "null": None}[kind]


async def run_executor(store_url: str, workers: int, lease: int) -> None:
    """The executor on its own, against the store at ``store_url``, until interrupted."""
    store = await open_store_async(store_url)
    runs = AsyncRunEngine(store, lease_seconds=lease)
    responses = AsyncResponseEngine(store, lease_seconds=lease)
    executor = ScriptedExecutor(runs, responses).start(workers)
    try:
        await asyncio.Event().wait()
    finally:
        await executor.stop()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the scripted executor against a store.")
    parser.add_argument("--store", default="sqlite:///runs.db", help="store URL")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lease", type=int, default=30, help="lease seconds")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_executor(args.store, args.workers, args.lease))


if __name__ == "__main__":
    main()
