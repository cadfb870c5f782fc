"""The Responses API's ``response`` object (background mode) and its statuses.

``Response`` holds the fields of ``openai.types.responses.Response`` that a background
response's lifecycle reads or writes. ``to_dict()`` gives the public JSON shape;
``from_dict()`` reads it back and refuses anything malformed with a ``ValidationError``
naming the field, through the validators of ``_validate``. The request's ``input`` is
kept by the store beside the object, not in it, and so is the time-out deadline
(``expires_at`` here, never a public field).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._errors import ValidationError
from ._model import Fields, Status, _clone, _string
from ._requests import ECHO_DEFAULTS, Capabilities, check_create
from ._validate import (
    RESPONSE_ERROR_CODES,
    RESPONSE_INCOMPLETE_REASONS,
    require_fields,
    require_timestamp,
    validate_bool,
    validate_metadata,
    validate_one_of,
    validate_output,
    validate_response_id,
    validate_response_usage,
)

__all__ = ["Response", "ResponseStatus"]


class ResponseStatus(Status):
    """The statuses of a response, by their public spelling."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INCOMPLETE = "incomplete"


_STATUS_BY_VALUE = {status.value: status for status in ResponseStatus}


@dataclass(slots=True, eq=True)
class Response:
    """A ``response`` of the Responses API, as a background response's lifecycle keeps it."""

    KIND: ClassVar[str] = "response"

    id: str
    created_at: int
    status: ResponseStatus
    model: str
    background: bool = True
    instructions: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str | dict[str, Any] = "auto"
    parallel_tool_calls: bool = True
    temperature: float | None = 1.0
    top_p: float | None = 1.0
    max_output_tokens: int | None = None
    previous_response_id: str | None = None
    text: dict[str, Any] = field(default_factory=lambda: {"format": {"type": "text"}})
    reasoning: dict[str, Any] = field(default_factory=lambda: {"effort": None, "summary": None})
    truncation: str = "disabled"
    top_logprobs: int = 0
    max_tool_calls: int | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    service_tier: str = "auto"
    store: bool = True
    user: str | None = None
    output: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    incomplete_details: dict[str, str] | None = None
    completed_at: int | None = None
    # Not public: when an active response times out (None once it has ended).
    expires_at: int | None = field(default=None, compare=False)

    @property
    def object(self) -> str:
        return "response"

    @property
    def version(self) -> str:
        return "response"

    @property
    def output_text(self) -> str:
        """The text of every ``output_text`` part of the output's messages, joined (as the
        SDK's convenience property has it)."""
        return "".join(
            part.get("text", "")
            for item in self.output
            if item.get("type") == "message"
            for part in item.get("content") or []
            if isinstance(part, dict) and part.get("type") == "output_text"
        )

    def copy(self) -> Response:
        """A copy that can be changed without touching this one (nested values are shared
        but never changed in place by runstate)."""
        return _FIELDS.copy(self)  # type: ignore[no-any-return]

    def to_dict(self) -> dict[str, Any]:
        """The public JSON shape, keys in the API reference's order."""
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status.value,
            "background": self.background,
            "completed_at": self.completed_at,
            "error": _clone(self.error),
            "incomplete_details": _clone(self.incomplete_details),
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "max_tool_calls": self.max_tool_calls,
            "model": self.model,
            "output": _clone(self.output),
            "parallel_tool_calls": self.parallel_tool_calls,
            "previous_response_id": self.previous_response_id,
            "prompt_cache_key": self.prompt_cache_key,
            "reasoning": _clone(self.reasoning),
            "safety_identifier": self.safety_identifier,
            "service_tier": self.service_tier,
            "store": self.store,
            "temperature": self.temperature,
            "text": _clone(self.text),
            "tool_choice": _clone(self.tool_choice),
            "tools": _clone(self.tools),
            "top_logprobs": self.top_logprobs,
            "top_p": self.top_p,
            "truncation": self.truncation,
            "usage": _clone(self.usage),
            "user": self.user,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Response:
        """Read a response from its public JSON shape, refusing anything malformed."""
        data = require_fields(data, _KEYS, "response")
        if data["object"] != "response":
            raise ValidationError("Field 'object' must be 'response'.", param="object")
        status = data["status"]
        if not isinstance(status, str) or status not in _STATUS_BY_VALUE:
            raise ValidationError(
                f"Unknown status {status!r}; expected one of {sorted(_STATUS_BY_VALUE)}.",
                param="status",
            )
        instructions = data["instructions"]
        previous = data["previous_response_id"]
        response = cls(
            id=validate_response_id(data["id"], "id"),
            created_at=require_timestamp(data["created_at"], "created_at", nullable=False),  # type: ignore[arg-type]
            status=_STATUS_BY_VALUE[status],
            model=_string(data, "model"),
            background=validate_bool(data["background"], "background"),
            instructions=None
            if instructions is None
            else _string(data, "instructions", allow_empty=True),
            metadata=validate_metadata(data["metadata"]),
            previous_response_id=(
                None if previous is None else validate_response_id(previous, "previous_response_id")
            ),
            output=validate_output(data["output"]),
            usage=validate_response_usage(data["usage"]),
            error=_error(data["error"]),
            incomplete_details=_incomplete_details(data["incomplete_details"]),
            completed_at=require_timestamp(data["completed_at"], "completed_at"),
            **_settings(data),
        )
        ends = {
            "error": ResponseStatus.FAILED,
            "incomplete_details": ResponseStatus.INCOMPLETE,
            "completed_at": ResponseStatus.COMPLETED,
        }
        for name, status_of in ends.items():
            if (getattr(response, name) is None) == (response.status is status_of):
                raise ValidationError(
                    f"Field '{name}' must be set exactly when status is '{status_of.value}'.",
                    param=name,
                )
        return response

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> Response:
        """Rebuild a response that runstate itself wrote (a store row): no validation."""
        response: Response = _FIELDS.build(data)
        response.status = _STATUS_BY_VALUE[data["status"]]
        return response


#: A response stored before a setting was echoed reads back with the setting's default.
_FIELDS = Fields(Response, Response.__slots__, ECHO_DEFAULTS)
_KEYS: tuple[str, ...] = tuple(
    Response(id="resp_x", created_at=0, status=ResponseStatus.QUEUED, model="m").to_dict()
)


def _settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """The request settings a response echoes, checked as a create request checks them."""
    settings = {name: data[name] for name in ECHO_DEFAULTS if name not in _NOT_SETTINGS}
    given = {name: value for name, value in settings.items() if value is not None}
    check_create({"model": data["model"], "input": "-", **given}, Capabilities.everything())
    return settings


_NOT_SETTINGS = frozenset({"instructions", "previous_response_id"})


def _error(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"code", "message"}:
        raise ValidationError("Field 'error' must be {'code': ..., 'message': str}.", param="error")
    return {
        "code": validate_one_of(value["code"], RESPONSE_ERROR_CODES, "error"),
        "message": _string(value, "message", allow_empty=True),
    }


def _incomplete_details(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"reason"}:
        raise ValidationError(
            "Field 'incomplete_details' must be {'reason': ...} or null.",
            param="incomplete_details",
        )
    return {
        "reason": validate_one_of(
            value["reason"], RESPONSE_INCOMPLETE_REASONS, "incomplete_details"
        )
    }
