"""The run object of the Assistants API (``thread.run``) and its statuses.

``Run`` holds exactly the fields of the public ``thread.run`` object as first published.
``Run.to_dict()`` gives the public JSON shape; ``Run.from_dict()`` reads it back and
refuses anything malformed with a ``ValidationError`` naming the field, through the
validators of ``_validate``.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from ._errors import ValidationError
from ._validate import (
    ERROR_CODES,
    INCOMPLETE_REASONS,
    V2_SETTINGS,
    check_clean,
    require_fields,
    require_timestamp,
    validate_file_ids,
    validate_last_error,
    validate_metadata,
    validate_required_action,
    validate_tools,
    validate_tools_v2,
    validate_usage,
)

__all__ = [
    "ACTIVE_STATUSES",
    "ERROR_CODES",
    "TERMINAL_STATUSES",
    "Run",
    "RunStatus",
    "RunV2",
    "Status",
    "new_id",
]


class Status(StrEnum):
    """What every lifecycle's statuses share: each is its public spelling, prints as it,
    and hashes as that string (Enum's own ``__hash__`` is Python code, and statuses are
    looked up in sets and dicts on every transition)."""

    __hash__ = str.__hash__


class RunStatus(Status):
    """The statuses of a run, the value the public API's spelling: the first version's eight, and
    ``incomplete``, which only the second version of the object has."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    REQUIRES_ACTION = "requires_action"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FAILED = "failed"
    COMPLETED = "completed"
    EXPIRED = "expired"
    INCOMPLETE = "incomplete"  # v2 only

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


# Random bytes map onto the 62 alphanumerics through one translate table; bytes of 248
# and above are dropped, so every character is equally likely (248 = 4 * 62).
_ID_TABLE = bytes((_ID_ALPHABET * 5)[:256], "ascii")
_ID_DROP = bytes(range(248, 256))


#: The time prefix's digits, in ASCII order, so that ids sort by when they were made.
_SORTED_DIGITS = string.digits + string.ascii_uppercase + string.ascii_lowercase
_last_head: tuple[int, str] = (-1, "")  # the last millisecond's prefix (one tuple: atomic)


def new_id(prefix: str) -> str:
    """``prefix`` + ``_`` + 24 alphanumerics, e.g. ``run_0iRZ2bXq3...``: the first 8 the
    time in milliseconds (base 62, in ASCII order), the other 16 random from ``secrets``
    (95 bits). Ids made later sort later, so the stores' id indexes grow, and are pruned,
    at one end rather than on a random page each."""
    global _last_head
    millis = time.time_ns() // 1_000_000
    cached = _last_head  # read once: another thread may replace it meanwhile
    if cached[0] != millis:  # the prefix changes once a millisecond: made once
        head, rest = "", millis
        for _ in range(8):
            rest, digit = divmod(rest, 62)
            head = _SORTED_DIGITS[digit] + head
        cached = _last_head = (millis, head)
    head = cached[1]
    chars = b""
    while len(chars) < 16:
        chars += secrets.token_bytes(24).translate(_ID_TABLE, _ID_DROP)
    return prefix + "_" + head + chars[:16].decode("ascii")


@dataclass(slots=True, eq=True)
class Run:
    """A ``thread.run`` as first published (v1): one field per field of the public object
    (``object`` is constant). ``RunV2`` is the second version."""

    _VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "run"  # how a store files it (both versions alike)

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
    def pending_tool_calls(self) -> list[dict[str, Any]]:
        """The tool calls the run waits for, or ``[]`` when it waits for none."""
        if self.required_action is None:
            return []
        calls: list[dict[str, Any]] = self.required_action["submit_tool_outputs"]["tool_calls"]
        return calls

    @property
    def version(self) -> str:
        """Which version of the object this is: ``"v1"`` or ``"v2"``."""
        return self._VERSION

    def copy(self) -> Run:
        """A copy that can be changed without touching this run (nested values are shared
        but never changed in place by runstate)."""
        return _FIELDS_OF[type(self)].copy(self)  # type: ignore[no-any-return]

    def _head(self) -> dict[str, Any]:
        """The keys both versions open with, in the public order: id to completed_at."""
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
        }

    def to_dict(self) -> dict[str, Any]:
        """The public JSON shape: the first version's 18 keys, in the public API's order."""
        return {
            **self._head(),
            "model": self.model,
            "instructions": self.instructions,
            "tools": _clone(self.tools),
            "file_ids": list(self.file_ids),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Run:
        """Read a run from its public JSON shape, refusing anything malformed."""
        data = require_fields(data, _KEYS_OF[cls], "run")
        if data["object"] != "thread.run":
            raise ValidationError("Field 'object' must be 'thread.run'.", param="object")
        run_id = _string(data, "id")
        if not run_id.startswith("run_") or len(run_id) == 4:
            raise ValidationError(f"Invalid run id {run_id!r}: must start with 'run_'.", param="id")
        status = require_status(data["status"])
        if status is RunStatus.INCOMPLETE and cls is Run:
            raise ValidationError(
                "Status 'incomplete' exists only in the second version of the run.",
                param="status",
            )
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
            metadata=validate_metadata(data["metadata"]),
            **cls._fields_from_dict(data),
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
    def _fields_from_dict(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The fields this version has beyond the common ones, read and checked."""
        return {
            "tools": validate_tools(data["tools"]),
            "file_ids": validate_file_ids(data["file_ids"]),
        }

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> Run:
        """Rebuild a run that runstate itself wrote (a store row): no validation. The
        body tells the version: only a v2 run has ``usage``."""
        kind = RunV2 if "usage" in data else Run
        run: Run = _FIELDS_OF[kind].build(data)
        run.status = _STATUS_BY_VALUE[data["status"]]
        if kind is RunV2:
            run.file_ids = []  # v2 has none
        return run


@dataclass(slots=True, eq=True)
class RunV2(Run):
    """The second version of ``thread.run``: the ``incomplete`` status with
    ``incomplete_details``, ``usage``, and the sampling and truncation settings it was
    created with; no ``file_ids`` (the field stays empty), and tool type ``file_search``
    instead of ``retrieval``."""

    _VERSION: ClassVar[str] = "v2"

    incomplete_details: dict[str, Any] | None = None
    usage: dict[str, int] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    truncation_strategy: dict[str, Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    response_format: str | dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The public JSON shape of the second version."""
        return {
            **self._head(),
            "incomplete_details": _clone(self.incomplete_details),
            "model": self.model,
            "instructions": self.instructions,
            "tools": _clone(self.tools),
            "metadata": dict(self.metadata),
            "usage": _clone(self.usage),
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_prompt_tokens": self.max_prompt_tokens,
            "max_completion_tokens": self.max_completion_tokens,
            "truncation_strategy": _clone(self.truncation_strategy),
            "response_format": _clone(self.response_format),
            "tool_choice": _clone(self.tool_choice),
            "parallel_tool_calls": self.parallel_tool_calls,
        }

    @classmethod
    def _fields_from_dict(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        details = data["incomplete_details"]
        if details is not None and (
            not isinstance(details, Mapping)
            or set(details) != {"reason"}
            or details["reason"] not in INCOMPLETE_REASONS
        ):
            raise ValidationError(
                "Field 'incomplete_details' must be {'reason': 'max_completion_tokens' | "
                "'max_prompt_tokens'} or null.",
                param="incomplete_details",
            )
        if (details is None) == (data["status"] == "incomplete"):
            raise ValidationError(
                "Field 'incomplete_details' must be set exactly when status is 'incomplete'.",
                param="incomplete_details",
            )
        return {
            "tools": validate_tools_v2(data["tools"]),
            "incomplete_details": None if details is None else dict(details),
            "usage": validate_usage(data["usage"]),
            **{name: check(data[name]) for name, check in V2_SETTINGS.items()},
        }


_SLOTS_OF: dict[type[Run], tuple[str, ...]] = {
    Run: Run.__slots__,
    RunV2: Run.__slots__ + RunV2.__slots__,
}
_FIELDS_OF: dict[type[Run], Fields] = {}  # filled below, once both classes exist
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
_KEYS_OF: dict[type[Run], tuple[str, ...]] = {
    Run: _KEYS,
    RunV2: (
        *(key for key in _KEYS if key != "file_ids"),
        "incomplete_details",
        "usage",
        "temperature",
        "top_p",
        "max_prompt_tokens",
        "max_completion_tokens",
        "truncation_strategy",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
    ),
}


class Fields:
    """The two things the engine does to an object's fields on every step, written out
    for one class: a shallow ``copy`` and ``build`` from a stored body (``data.get`` of
    each field). Generated once per class, as ``dataclasses`` generates ``__init__``: a
    loop of ``getattr``/``setattr`` costs ten times as much."""

    __slots__ = ("build", "copy")

    def __init__(
        self, cls: type, names: Sequence[str], defaults: Mapping[str, Any] | None = None
    ) -> None:
        """``defaults``: what ``build`` gives a field a stored body lacks (None otherwise)."""
        scope: dict[str, Any] = {"new": object.__new__, "cls": cls, "defaults": defaults or {}}
        exec(  # the source is built from the class's own field names
            "def copy(self):\n    c = new(cls)\n"
            + "".join(f"    c.{n} = self.{n}\n" for n in names)
            + "    return c\n"
            + "def build(data):\n    c = new(cls)\n    get = data.get\n"
            + "".join(
                f"    c.{n} = get({n!r}, defaults[{n!r}])\n"
                if n in (defaults or {})
                else f"    c.{n} = get({n!r})\n"
                for n in names
            )
            + "    return c\n",
            scope,
        )
        self.copy: Callable[[Any], Any] = scope["copy"]
        self.build: Callable[[Mapping[str, Any]], Any] = scope["build"]


_FIELDS_OF.update({cls: Fields(cls, names) for cls, names in _SLOTS_OF.items()})


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _clone(value: Any) -> Any:
    """Copy JSON-shaped data so that the caller's copy and ours never alias (scalars are
    shared, never recursed into: they cannot change)."""
    if isinstance(value, dict):
        return {k: v if type(v) in _SCALARS else _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [v if type(v) in _SCALARS else _clone(v) for v in value]
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
