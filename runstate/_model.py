"""The run object of the Assistants API (``thread.run``), its statuses, and its validation.

``Run`` holds exactly the fields of the seed's RunObject. ``Run.to_dict()`` gives the
public JSON shape; ``Run.from_dict()`` reads it back and refuses anything malformed with
a ``ValidationError`` naming the field. The validators here are shared by the lifecycle
(create, require_action, fail, metadata updates) so that one rule has one home.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ._errors import ValidationError

__all__ = [
    "ACTIVE_STATUSES",
    "ERROR_CODES",
    "TERMINAL_STATUSES",
    "Run",
    "RunStatus",
    "new_id",
]


class RunStatus(str, Enum):
    """The eight statuses of a run; the value is the public API's spelling."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    REQUIRES_ACTION = "requires_action"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FAILED = "failed"
    COMPLETED = "completed"
    EXPIRED = "expired"

    def __str__(self) -> str:
        return self.value

    # Hash as the plain string does: Enum's own __hash__ is Python code, and statuses are
    # looked up in sets and dicts on every transition.
    __hash__ = str.__hash__

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES


ACTIVE_STATUSES: frozenset[RunStatus] = frozenset(
    {RunStatus.QUEUED, RunStatus.IN_PROGRESS, RunStatus.REQUIRES_ACTION, RunStatus.CANCELLING}
)
TERMINAL_STATUSES: frozenset[RunStatus] = frozenset(RunStatus) - ACTIVE_STATUSES

#: The ``last_error.code`` values of the seed's version of the object.
ERROR_CODES: frozenset[str] = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})

_TOOL_TYPES = frozenset({"code_interpreter", "retrieval", "file_search", "function"})
_ID_ALPHABET = string.ascii_letters + string.digits
_STATUS_BY_VALUE = {status.value: status for status in RunStatus}
_FSM_NAMES = {status: str.__str__(status) for status in RunStatus}

METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY = 64
METADATA_MAX_VALUE = 512


# Random bytes map onto the 62 alphanumerics through one translate table; bytes of 248
# and above are dropped, so every character is equally likely (248 = 4 * 62).
_ID_TABLE = bytes((_ID_ALPHABET * 5)[:256], "ascii")
_ID_DROP = bytes(range(248, 256))


def new_id(prefix: str) -> str:
    """``prefix`` + ``_`` + 24 random alphanumerics from ``secrets``, e.g. ``run_Xq3...``."""
    chars = b""
    while len(chars) < 24:
        chars += secrets.token_bytes(32).translate(_ID_TABLE, _ID_DROP)
    return prefix + "_" + chars[:24].decode("ascii")


@dataclass(slots=True, eq=True)
class Run:
    """A ``thread.run``: one field per field of the public object (``object`` is constant)."""

    id: str
    created_at: int
    thread_id: str
    assistant_id: str
    status: RunStatus
    expires_at: int | None
    model: str
    instructions: str
    required_action: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None
    started_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    file_ids: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def object(self) -> str:
        return "thread.run"

    @property
    def _fsm_state(self) -> str:
        """The status as the lifecycle machine names it (its states are plain strings)."""
        return _FSM_NAMES[self.status]

    @_fsm_state.setter
    def _fsm_state(self, value: str) -> None:
        self.status = _STATUS_BY_VALUE[value]

    @property
    def pending_tool_calls(self) -> list[dict[str, Any]]:
        """The tool calls the run waits for, or ``[]`` when it waits for none."""
        if self.required_action is None:
            return []
        calls: list[dict[str, Any]] = self.required_action["submit_tool_outputs"]["tool_calls"]
        return calls

    def copy(self) -> Run:
        """A copy that can be changed without touching this run (nested values are shared
        but never changed in place by runstate)."""
        clone = object.__new__(Run)
        for name in _SLOTS:
            object.__setattr__(clone, name, getattr(self, name))
        return clone

    def to_dict(self) -> dict[str, Any]:
        """The public JSON shape: the seed's 18 keys, in the seed's order."""
        return {
            "id": self.id,
            "object": "thread.run",
            "created_at": self.created_at,
            "thread_id": self.thread_id,
            "assistant_id": self.assistant_id,
            "status": self.status.value,
            "required_action": _clone(self.required_action),
            "last_error": _clone(self.last_error),
            "expires_at": self.expires_at,
            "started_at": self.started_at,
            "cancelled_at": self.cancelled_at,
            "failed_at": self.failed_at,
            "completed_at": self.completed_at,
            "model": self.model,
            "instructions": self.instructions,
            "tools": _clone(self.tools),
            "file_ids": list(self.file_ids),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Run:
        """Read a run from its public JSON shape, refusing anything malformed."""
        if not isinstance(data, Mapping):
            raise ValidationError(
                f"A run must be a JSON object, got {type(data).__name__}.", param="run"
            )
        keys = set(data)
        for key in _KEYS:
            if key not in keys:
                raise ValidationError(f"Missing required field '{key}'.", param=key)
        for key in sorted(keys - _KEY_SET, key=str):
            raise ValidationError(f"Unknown field '{key}'.", param=str(key))
        if data["object"] != "thread.run":
            raise ValidationError("Field 'object' must be 'thread.run'.", param="object")
        run_id = _string(data, "id")
        if not run_id.startswith("run_") or len(run_id) == 4:
            raise ValidationError(f"Invalid run id {run_id!r}: must start with 'run_'.", param="id")
        status = require_status(data["status"])
        run = cls(
            id=run_id,
            created_at=_timestamp(data, "created_at", required=True),  # type: ignore[arg-type]
            thread_id=_string(data, "thread_id"),
            assistant_id=_string(data, "assistant_id"),
            status=status,
            expires_at=_timestamp(data, "expires_at"),
            model=_string(data, "model", allow_empty=True),
            instructions=_string(data, "instructions", allow_empty=True),
            required_action=(
                None
                if data["required_action"] is None
                else validate_required_action(data["required_action"])
            ),
            last_error=(
                None if data["last_error"] is None else validate_last_error(data["last_error"])
            ),
            started_at=_timestamp(data, "started_at"),
            cancelled_at=_timestamp(data, "cancelled_at"),
            failed_at=_timestamp(data, "failed_at"),
            completed_at=_timestamp(data, "completed_at"),
            tools=validate_tools(data["tools"]),
            file_ids=validate_file_ids(data["file_ids"]),
            metadata=validate_metadata(data["metadata"]),
        )
        if (run.required_action is None) == (run.status is RunStatus.REQUIRES_ACTION):
            raise ValidationError(
                "Field 'required_action' must be set exactly when status is 'requires_action'.",
                param="required_action",
            )
        if run.last_error is not None and run.status is not RunStatus.FAILED:
            raise ValidationError(
                "Field 'last_error' may only be set when status is 'failed'.", param="last_error"
            )
        return run

    @classmethod
    def _trusted(cls, data: Mapping[str, Any]) -> Run:
        """Rebuild a run that runstate itself wrote (a store row): no validation."""
        run = object.__new__(cls)
        for name in _SLOTS:
            object.__setattr__(run, name, data[name])
        run.status = _STATUS_BY_VALUE[data["status"]]
        return run


_SLOTS: tuple[str, ...] = Run.__slots__
_KEYS: tuple[str, ...] = (
    "id",
    "object",
    "created_at",
    "thread_id",
    "assistant_id",
    "status",
    "required_action",
    "last_error",
    "expires_at",
    "started_at",
    "cancelled_at",
    "failed_at",
    "completed_at",
    "model",
    "instructions",
    "tools",
    "file_ids",
    "metadata",
)
_KEY_SET = frozenset(_KEYS)


def _clone(value: Any) -> Any:
    """Copy JSON-shaped data so that the caller's copy and ours never alias."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


# --- validators -----------------------------------------------------------------------


def _string(data: Mapping[str, Any], key: str, *, allow_empty: bool = False) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise ValidationError(
            f"Field '{key}' must be a string, got {type(value).__name__}.", param=key
        )
    if not value and not allow_empty:
        raise ValidationError(f"Field '{key}' must not be empty.", param=key)
    return value


def _timestamp(data: Mapping[str, Any], key: str, *, required: bool = False) -> int | None:
    value = data[key]
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(
            f"Field '{key}' must be a Unix timestamp in whole seconds, got {value!r}.", param=key
        )
    return value


def require_string(value: Any, param: str, *, allow_empty: bool = False) -> str:
    """A string argument, or a ValidationError naming ``param``."""
    if type(value) is str and (value or allow_empty):
        return value
    return _string({param: value}, param, allow_empty=allow_empty)


def require_status(value: Any) -> RunStatus:
    """One of the eight statuses, by its public spelling, or a ValidationError."""
    if not isinstance(value, str) or value not in _STATUS_BY_VALUE:
        raise ValidationError(
            f"Unknown status {value!r}; expected one of {sorted(_STATUS_BY_VALUE)}.",
            param="status",
        )
    return _STATUS_BY_VALUE[value]


def require_int(value: Any, param: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """A whole-number argument within bounds, or a ValidationError naming ``param``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise ValidationError(f"{param} must be an integer {bounds}, got {value!r}.", param=param)
    return value


def validate_metadata(metadata: Any) -> dict[str, str]:
    """At most 16 pairs, string keys of at most 64 characters, string values of at most 512."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError(
            f"Invalid 'metadata': expected an object, got {type(metadata).__name__}.",
            param="metadata",
        )
    if len(metadata) > METADATA_MAX_PAIRS:
        raise ValidationError(
            f"Invalid 'metadata': too many properties. Expected an object with at most "
            f"{METADATA_MAX_PAIRS} properties, but got an object with {len(metadata)} "
            f"properties instead.",
            param="metadata",
        )
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise ValidationError(
                f"Invalid 'metadata': keys must be strings, got {key!r}.", param="metadata"
            )
        if len(key) > METADATA_MAX_KEY:
            raise ValidationError(
                f"Invalid 'metadata': key {key!r} is too long. Expected a key with maximum "
                f"length {METADATA_MAX_KEY}, but got a key with length {len(key)} instead.",
                param="metadata",
            )
        if not isinstance(value, str):
            raise ValidationError(
                f"Invalid 'metadata.{key}': expected a string, got {type(value).__name__}.",
                param="metadata",
            )
        if len(value) > METADATA_MAX_VALUE:
            raise ValidationError(
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum "
                f"length {METADATA_MAX_VALUE}, but got a string with length {len(value)} "
                f"instead.",
                param="metadata",
            )
    return dict(metadata)


def validate_tools(tools: Any) -> list[dict[str, Any]]:
    """A list of tool objects: ``{"type": "function", "function": {"name": ...}}`` and kin."""
    if tools is None:
        return []
    if not isinstance(tools, (list, tuple)):
        raise ValidationError(
            f"Invalid 'tools': expected an array, got {type(tools).__name__}.", param="tools"
        )
    checked = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, Mapping) or tool.get("type") not in _TOOL_TYPES:
            raise ValidationError(
                f"Invalid '{where}': expected an object whose 'type' is one of "
                f"{sorted(_TOOL_TYPES)}.",
                param="tools",
            )
        if tool["type"] == "function":
            function = tool.get("function")
            if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
                raise ValidationError(
                    f"Invalid '{where}.function': expected an object with a string 'name'.",
                    param="tools",
                )
        checked.append(_clone(dict(tool)))
    return checked


def validate_file_ids(file_ids: Any) -> list[str]:
    if file_ids is None:
        return []
    if not isinstance(file_ids, (list, tuple)) or not all(isinstance(f, str) for f in file_ids):
        raise ValidationError("Invalid 'file_ids': expected an array of strings.", param="file_ids")
    return list(file_ids)


def validate_tool_calls(tool_calls: Any) -> list[dict[str, Any]]:
    """At least one function call, each ``{"id", "type": "function", "function": {"name",
    "arguments"}}`` with a unique id. A call without an id gets a new ``call_`` id."""
    if not isinstance(tool_calls, (list, tuple)) or not tool_calls:
        raise ValidationError(
            "Invalid 'tool_calls': expected a non-empty array of tool calls.", param="tool_calls"
        )
    checked: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, call in enumerate(tool_calls):
        where = f"tool_calls[{i}]"
        if not isinstance(call, Mapping):
            raise ValidationError(f"Invalid '{where}': expected an object.", param="tool_calls")
        call_id = call.get("id") or new_id("call")
        function = call.get("function")
        if (
            not isinstance(call_id, str)
            or call.get("type", "function") != "function"
            or not isinstance(function, Mapping)
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("arguments", ""), str)
        ):
            raise ValidationError(
                f"Invalid '{where}': expected {{'id': str, 'type': 'function', "
                f"'function': {{'name': str, 'arguments': str}}}}.",
                param="tool_calls",
            )
        if call_id in seen:
            raise ValidationError(
                f"Invalid '{where}': duplicate tool call id {call_id!r}.", param="tool_calls"
            )
        seen.add(call_id)
        checked.append(
            {
                "id": call_id,
                "type": "function",
                "function": {"name": function["name"], "arguments": function.get("arguments", "")},
            }
        )
    return checked


def validate_required_action(value: Any) -> dict[str, Any]:
    if (
        not isinstance(value, Mapping)
        or value.get("type") != "submit_tool_outputs"
        or not isinstance(value.get("submit_tool_outputs"), Mapping)
        or set(value) != {"type", "submit_tool_outputs"}
    ):
        raise ValidationError(
            "Field 'required_action' must be {'type': 'submit_tool_outputs', "
            "'submit_tool_outputs': {'tool_calls': [...]}}.",
            param="required_action",
        )
    try:
        calls = validate_tool_calls(value["submit_tool_outputs"].get("tool_calls"))
    except ValidationError as exc:
        raise ValidationError(
            f"Field 'required_action' is malformed: {exc.message}", param="required_action"
        ) from exc
    if any(not isinstance(c.get("id"), str) for c in value["submit_tool_outputs"]["tool_calls"]):
        raise ValidationError("Every tool call needs a string 'id'.", param="required_action")
    return required_action_for(calls)


def required_action_for(tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": tool_calls}}


def validate_last_error(value: Any) -> dict[str, Any]:
    if (
        not isinstance(value, Mapping)
        or set(value) != {"code", "message"}
        or not isinstance(value["message"], str)
    ):
        raise ValidationError(
            "Field 'last_error' must be {'code': ..., 'message': str}.", param="last_error"
        )
    return {"code": validate_error_code(value["code"], "last_error"), "message": value["message"]}


def validate_error_code(code: Any, param: str = "code") -> str:
    if code not in ERROR_CODES:
        raise ValidationError(
            f"Invalid error code {code!r}; expected one of {sorted(ERROR_CODES)}.", param=param
        )
    return str(code)


def validate_tool_outputs(tool_outputs: Any) -> list[dict[str, str]]:
    """The shape of ``submit_tool_outputs``'s list; matching ids is the lifecycle's job."""
    if not isinstance(tool_outputs, (list, tuple)):
        raise ValidationError(
            "Invalid 'tool_outputs': expected an array of {'tool_call_id', 'output'} objects.",
            param="tool_outputs",
        )
    checked = []
    for i, item in enumerate(tool_outputs):
        if (
            not isinstance(item, Mapping)
            or not isinstance(item.get("tool_call_id"), str)
            or not isinstance(item.get("output", ""), str)
        ):
            raise ValidationError(
                f"Invalid 'tool_outputs[{i}]': expected {{'tool_call_id': str, 'output': str}}.",
                param="tool_outputs",
            )
        checked.append({"tool_call_id": item["tool_call_id"], "output": item.get("output", "")})
    return checked
