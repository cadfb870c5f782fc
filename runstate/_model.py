"""The run object of the Assistants API (``thread.run``) and its statuses.

``Run`` holds exactly the fields of the seed's RunObject. ``Run.to_dict()`` gives the
public JSON shape; ``Run.from_dict()`` reads it back and refuses anything malformed with
a ``ValidationError`` naming the field, through the validators of ``_validate``.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ._errors import ValidationError
from ._validate import (
    ERROR_CODES,
    check_clean,
    require_timestamp,
    validate_file_ids,
    validate_last_error,
    validate_metadata,
    validate_required_action,
    validate_tools,
)

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

_ID_ALPHABET = string.ascii_letters + string.digits
_STATUS_BY_VALUE = {status.value: status for status in RunStatus}
_FSM_NAMES = {status: str.__str__(status) for status in RunStatus}


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
            created_at=require_timestamp(data["created_at"], "created_at", nullable=False),  # type: ignore[arg-type]
            thread_id=_string(data, "thread_id"),
            assistant_id=_string(data, "assistant_id"),
            status=status,
            expires_at=require_timestamp(data["expires_at"], "expires_at"),
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
            started_at=require_timestamp(data["started_at"], "started_at"),
            cancelled_at=require_timestamp(data["cancelled_at"], "cancelled_at"),
            failed_at=require_timestamp(data["failed_at"], "failed_at"),
            completed_at=require_timestamp(data["completed_at"], "completed_at"),
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


# --- reading fields back (from_dict) ---------------------------------------------------


def _string(data: Mapping[str, Any], key: str, *, allow_empty: bool = False) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise ValidationError(
            f"Field '{key}' must be a string, got {type(value).__name__}.", param=key
        )
    if not value and not allow_empty:
        raise ValidationError(f"Field '{key}' must not be empty.", param=key)
    return check_clean(str.__str__(value), key)


def require_status(value: Any) -> RunStatus:
    """One of the eight statuses, by its public spelling, or a ValidationError."""
    if not isinstance(value, str) or value not in _STATUS_BY_VALUE:
        raise ValidationError(
            f"Unknown status {value!r}; expected one of {sorted(_STATUS_BY_VALUE)}.",
            param="status",
        )
    return _STATUS_BY_VALUE[value]
