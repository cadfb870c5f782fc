"""The scripted demo model: a handler that stands in for a model, for trying the server
and testing clients against it. It is not a model: what it does is read from each
object's metadata.

- ``simulate``: ``fail`` fails it (``server_error``, or ``error_code``: also
  ``rate_limit_exceeded`` or ``invalid_prompt``); ``stall`` holds it until it times out
  or is cancelled; ``incomplete`` ends a response at ``max_output_tokens`` and a v2 run
  at ``max_completion_tokens`` (a v1 run, which has no such end, fails);
- ``delay``: the seconds it takes (0 to 60; 0.05 by default).

A response streams a fixed reply (``REPLY``) a word at a time over its delay; the reply
to a ``json_schema`` text format is a JSON instance of the schema (so
``responses.parse()`` parses it), ``{}`` for ``json_object``; a ``tool_choice`` of
``required`` or a named function gets one call of that function instead. A run with a
function tool asks for it once (``requires_action``, with ``metadata.arguments`` or the
run's instructions as the arguments), and completes when the outputs come back.

The server calls ``demo.check(request)`` on each create, so a malformed script is a
400 and nothing is stored; an object made elsewhere with one is failed by the job.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import ValidationError
from .._requests import Capabilities
from .._worker import Completed, Failed, Incomplete, Job

__all__ = ["REPLY", "DemoModel", "Script", "demo"]

MAX_DELAY = 60.0
DEFAULT_DELAY = 0.05
#: What a response "generates", streamed a word at a time.
REPLY = "Hello from runstate: this response was generated in the background."
RUN_USAGE = {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}
ERROR_CODES = ("server_error", "rate_limit_exceeded", "invalid_prompt")


@dataclass(frozen=True)
class Script:
    """What an object's metadata asks the demo model to do."""

    simulate: str | None = None  # "fail", "stall", "incomplete" or nothing
    delay: float = DEFAULT_DELAY
    error_code: str = "server_error"

    @classmethod
    def read(cls, metadata: Mapping[str, Any] | None) -> Script:
        """The script in ``metadata``, or a ValidationError naming what is wrong."""
        metadata = metadata if isinstance(metadata, Mapping) else {}
        simulate = metadata.get("simulate")
        if simulate not in (None, "fail", "stall", "incomplete"):
            raise ValidationError(
                f"Invalid 'metadata.simulate': expected 'fail', 'stall' or 'incomplete', got "
                f"{simulate!r}.",
                param="metadata",
            )
        delay = DEFAULT_DELAY
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
                f"Invalid 'metadata.error_code': expected one of {list(ERROR_CODES)}, got "
                f"{code!r}.",
                param="metadata",
            )
        return cls(simulate, delay, code)


class DemoModel:
    """The demo model as a handler: ``await demo(job)`` plays the job's script."""

    #: What it honours: function tools (it calls one when the tool choice asks), none of
    #: the gated parameters or extra endpoints.
    capabilities = Capabilities()

    def __repr__(self) -> str:
        return "runstate.server.demo"

    def check(self, request: Mapping[str, Any]) -> None:
        """Refuse a create request whose metadata holds a malformed script (a 400)."""
        metadata = request.get("metadata")
        if isinstance(metadata, Mapping) and all(isinstance(v, str) for v in metadata.values()):
            Script.read(metadata)

    async def __call__(self, job: Job) -> Completed | None:
        try:
            script = Script.read(job.object.metadata)
        except ValidationError as exc:  # made elsewhere, past the server's check
            raise Failed("server_error", exc.message) from None
        if script.simulate == "stall":
            await asyncio.Event().wait()  # until a time-out or a cancel stops it
        if job.kind == "run":
            return await self._run(job, script)
        return await self._response(job, script)

    async def _run(self, job: Job, script: Script) -> Completed:
        run = job.object
        await asyncio.sleep(script.delay)  # thinking
        if script.simulate == "fail" or (script.simulate == "incomplete" and run.version == "v1"):
            raise Failed(script.error_code, "Simulated failure.")
        usage = RUN_USAGE if run.version == "v2" else None  # what a model would report
        if script.simulate == "incomplete":
            raise Incomplete("max_completion_tokens", usage=usage)
        functions = [t["function"]["name"] for t in run.tools if t.get("type") == "function"]
        asked = any(e.event == "thread.run.requires_action" for e in await job.history())
        if functions and not asked:
            arguments = run.metadata.get("arguments") or json.dumps(
                {"instructions": run.instructions}
            )
            call = {"type": "function", "function": {"name": functions[0], "arguments": arguments}}
            await job.require_action([call])
        return Completed(usage=usage)

    async def _response(self, job: Job, script: Script) -> Completed:
        if script.simulate == "fail":
            raise Failed(script.error_code, "Simulated failure.")
        request = job.request
        calling = _function_to_call(request)
        if calling is not None:  # the tool choice asks for a call: the model makes one
            await asyncio.sleep(script.delay)
            await job.function_call(calling, json.dumps({"input": _last_text(request)}))
            return Completed(usage={"input_tokens": 5, "output_tokens": 5})
        words = _reply_for(request).split(" ")
        for i, word in enumerate(words):
            await asyncio.sleep(script.delay / len(words))
            await job.emit("response.output_text.delta", {"delta": word if i == 0 else " " + word})
        usage = {"input_tokens": 5, "output_tokens": len(words)}
        if script.simulate == "incomplete":
            raise Incomplete("max_output_tokens", usage=usage)
        return Completed(usage=usage)


#: The scripted demo model, what ``runstate serve`` serves without ``--handler``.
demo = DemoModel()


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
        return str(functions[0])
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
