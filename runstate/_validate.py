"""Validation: every value that enters runstate is checked here, once, against one rule.

The rule: every string is valid UTF-8 (no lone surrogates) without NUL characters, every
number is finite and within 64 bits (times and durations within the bounds below), every
JSON value is made of dicts with string keys, lists, strings, finite numbers, booleans
and null, no deeper than ``MAX_DEPTH``. Anything else is a ``ValidationError`` naming
the parameter, raised before anything is stored: what runstate stores can always be
read back and served as JSON.

The object-level validators (metadata, tools, tool calls, tool outputs, errors) follow
the public API's schema and wording.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from ._errors import ValidationError

__all__ = [
    "ERROR_CODES",
    "INT64_MAX",
    "MAX_DEPTH",
    "MAX_DURATION",
    "MAX_TIME",
    "MAX_TOOLS",
    "V2_SETTINGS",
    "check_clean",
    "json_value",
    "require_int",
    "require_seconds",
    "require_string",
    "require_timestamp",
    "validate_error_code",
    "validate_file_ids",
    "validate_last_error",
    "validate_metadata",
    "validate_required_action",
    "validate_tool_calls",
    "validate_tool_outputs",
    "validate_tools",
]

INT64_MAX = 2**63 - 1
#: The latest time runstate accepts: 9999-12-31T23:59:59Z, the last second ISO-8601 shows.
MAX_TIME = 253_402_300_799
#: The longest ttl, lease or time-out: 100 years.
MAX_DURATION = 100 * 366 * 86_400
#: How deeply JSON values (tool parameters) may nest.
MAX_DEPTH = 32
#: The public API's limit on a run's tools (an assistant's maximum).
MAX_TOOLS = 128

METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY = 64
METADATA_MAX_VALUE = 512

#: The ``last_error.code`` values of the first version of the object.
ERROR_CODES: frozenset[str] = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})

_TOOL_TYPES = ("code_interpreter", "retrieval", "file_search", "function")
FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})


# --- scalars ----------------------------------------------------------------------------


def check_clean(value: str, param: str, where: str | None = None) -> str:
    """``value`` if it is valid UTF-8 without NUL, else a ValidationError naming ``param``."""
    if value.isascii():
        if "\x00" not in value:
            return value
    elif "\x00" not in value:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(
                f"Invalid '{where or param}': the string is not valid UTF-8 (it holds a lone "
                "surrogate).",
                param=param,
            ) from None
        return value
    raise ValidationError(
        f"Invalid '{where or param}': the string holds a NUL character.", param=param
    )


def require_string(
    value: Any, param: str, *, allow_empty: bool = False, max_length: int | None = None
) -> str:
    """A clean string argument (see the module's rule), or a ValidationError naming ``param``."""
    if type(value) is not str:
        if not isinstance(value, str):
            raise ValidationError(
                f"Invalid '{param}': expected a string, got {type(value).__name__}.", param=param
            )
        value = str.__str__(value)
    if not value and not allow_empty:
        raise ValidationError(f"Invalid '{param}': expected a non-empty string.", param=param)
    if max_length is not None and len(value) > max_length:
        raise ValidationError(
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{max_length}, but got a string with length {len(value)} instead.",
            param=param,
        )
    return check_clean(value, param)


def require_int(
    value: Any,
    param: str,
    *,
    minimum: int = 1,
    maximum: int = INT64_MAX,
    where: str | None = None,
) -> int:
    """A whole-number argument within bounds, or a ValidationError naming ``param`` (and
    ``where`` in it, for a value inside a parameter)."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValidationError(
            f"Invalid '{where or param}': expected an integer from {minimum} to {maximum}, got "
            f"{_short(value)}.",
            param=param,
        )
    return int(value)


def require_seconds(
    value: Any, param: str, *, maximum: float = 86_400, zero: bool = False
) -> float:
    """A finite, positive number of seconds up to ``maximum`` (a wait or an interval);
    with ``zero``, 0 too (a grace period)."""
    most = int(maximum) if float(maximum).is_integer() else maximum
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value <= maximum  # also refuses NaN
        or not (value >= 0 if zero else value > 0)
    ):
        wanted = f"from 0 to {most}" if zero else f"above 0 and at most {most}"
        raise ValidationError(
            f"Invalid '{param}': expected a finite number of seconds {wanted}, got "
            f"{_short(value)}.",
            param=param,
        )
    return float(value)


def require_timestamp(value: Any, param: str, *, nullable: bool = True) -> int | None:
    """A Unix time in whole seconds (0 to ``MAX_TIME``), or None where allowed."""
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIME:
        raise ValidationError(
            f"Field '{param}' must be a Unix timestamp in whole seconds, got {_short(value)}.",
            param=param,
        )
    return int(value)


def _short(value: Any) -> str:
    """A value for a message: its repr, cut short, never raising."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def require_array(value: Any, param: str, maximum: int) -> None:
    """A list or tuple of at most ``maximum`` elements, or a ValidationError worded as the
    public API words it."""
    if not isinstance(value, (list, tuple)):
        raise ValidationError(
            f"Invalid '{param}': expected an array, got {type(value).__name__}.", param=param
        )
    if len(value) > maximum:
        raise ValidationError(
            f"Invalid '{param}': array too long. Expected an array with maximum length "
            f"{maximum}, but got an array with length {len(value)} instead.",
            param=param,
        )


def require_fields(data: Any, keys: tuple[str, ...], noun: str) -> Mapping[str, Any]:
    """``data`` if it is a JSON object with exactly the fields ``keys`` (an object read
    back with ``from_dict``), or a ValidationError naming the first missing or unknown."""
    if not isinstance(data, Mapping):
        raise ValidationError(
            f"A {noun} must be a JSON object, got {type(data).__name__}.", param=noun
        )
    for key in keys:
        if key not in data:
            raise ValidationError(f"Missing required field '{key}'.", param=key)
    for key in sorted(set(data) - set(keys), key=str):
        raise ValidationError(f"Unknown field '{key}'.", param=str(key))
    return data


# --- JSON values ----------------------------------------------------------------------------


def json_parameters(value: dict[str, Any]) -> dict[str, Any]:
    """A request's parameters, each checked as ``json_value`` checks it (and named by
    its key), at C speed: a copy made by the ``json`` module (which refuses NaN,
    infinities and what is not JSON), checked for NUL characters, lone surrogates and
    depth. What it refuses goes through ``json_value``, which names the part at fault."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        if "\\u0000" not in text:
            text.encode("utf-8")  # a lone surrogate cannot be encoded
            copy: dict[str, Any] = json.loads(text)
            if not _too_deep(copy, MAX_DEPTH + 1):
                return copy
    except (ValueError, TypeError, RecursionError):
        pass
    return {
        check_clean(str.__str__(key), key): json_value(item, key) for key, item in value.items()
    }


def _too_deep(value: Any, left: int) -> bool:
    """Whether ``value`` (from ``json.loads``) nests deeper than ``left`` levels."""
    items = value.values() if type(value) is dict else value if type(value) is list else ()
    for item in items:
        kind = type(item)
        if (kind is dict or kind is list) and (left <= 1 or _too_deep(item, left - 1)):
            return True
    return False


def json_value(value: Any, param: str, where: str | None = None, depth: int = 0) -> Any:
    """A plain copy of a JSON value (tuples become lists), or a ValidationError."""
    where = where or param
    kind = type(value)
    if kind is str:
        return check_clean(value, param, where)
    if value is None or kind is bool:
        return value
    if kind is int or (isinstance(value, int) and not isinstance(value, bool)):
        if not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise ValidationError(
                f"Invalid '{where}': the integer is outside 64 bits.", param=param
            )
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(
                f"Invalid '{where}': {value!r} is not a JSON number.", param=param
            )
        return float(value)
    if isinstance(value, str):
        return check_clean(str.__str__(value), param, where)
    if depth >= MAX_DEPTH:
        raise ValidationError(
            f"Invalid '{where}': nested deeper than {MAX_DEPTH} levels.", param=param
        )
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(
                    f"Invalid '{where}': object keys must be strings, got {_short(key)}.",
                    param=param,
                )
            key = check_clean(str.__str__(key), param, where)
            out[key] = json_value(item, param, f"{where}.{key}", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [json_value(item, param, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise ValidationError(
        f"Invalid '{where}': a {type(value).__name__} is not a JSON value.", param=param
    )


# --- the object's parts -----------------------------------------------------------------------


def validate_metadata(metadata: Any, param: str = "metadata") -> dict[str, str]:
    """At most 16 pairs, string keys of at most 64 characters, string values of at most 512."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError(
            f"Invalid '{param}': expected an object, got {type(metadata).__name__}.",
            param=param,
        )
    if len(metadata) > METADATA_MAX_PAIRS:
        raise ValidationError(
            f"Invalid '{param}': too many properties. Expected an object with at most "
            f"{METADATA_MAX_PAIRS} properties, but got an object with {len(metadata)} "
            f"properties instead.",
            param=param,
        )
    checked = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise ValidationError(
                f"Invalid '{param}': keys must be strings, got {_short(key)}.", param=param
            )
        key = check_clean(str.__str__(key), param)
        if len(key) > METADATA_MAX_KEY:
            raise ValidationError(
                f"Invalid '{param}': key {key!r} is too long. Expected a key with maximum "
                f"length {METADATA_MAX_KEY}, but got a key with length {len(key)} instead.",
                param=param,
            )
        if not isinstance(value, str):
            raise ValidationError(
                f"Invalid '{param}.{key}': expected a string, got {type(value).__name__}.",
                param=param,
            )
        value = check_clean(str.__str__(value), param, f"{param}.{key}")
        if len(value) > METADATA_MAX_VALUE:
            raise ValidationError(
                f"Invalid '{param}.{key}': string too long. Expected a string with maximum "
                f"length {METADATA_MAX_VALUE}, but got a string with length {len(value)} "
                f"instead.",
                param=param,
            )
        checked[key] = value
    return checked


def validate_tools(tools: Any) -> list[dict[str, Any]]:
    """Tool definitions per the public schema: at most 128; ``code_interpreter``,
    ``retrieval`` and ``file_search`` (with its optional options object), and
    ``function`` with a name of 1-64 letters, digits, ``_`` or ``-``, an optional string
    ``description``, an optional object ``parameters`` and an optional boolean ``strict``."""
    if tools is None:
        return []
    require_array(tools, "tools", MAX_TOOLS)
    return [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]


def _tool(tool: Any, where: str) -> dict[str, Any]:
    kind = tool.get("type") if isinstance(tool, Mapping) else None
    if not isinstance(kind, str) or kind not in _TOOL_TYPES:
        raise ValidationError(
            f"Invalid '{where}': expected an object whose 'type' is one of {sorted(_TOOL_TYPES)}.",
            param="tools",
        )
    allowed = {"type", kind} if kind in ("function", "file_search") else {"type"}
    _no_unknown_keys(tool, allowed, where, "tools")
    if kind == "file_search":
        options = tool.get("file_search")
        if options is not None and not isinstance(options, Mapping):
            raise ValidationError(
                f"Invalid '{where}.file_search': expected an object.", param="tools"
            )
        checked = json_value(tool, "tools", where)
        return checked  # type: ignore[no-any-return]
    if kind != "function":
        return {"type": kind}
    function = tool.get("function")
    if not isinstance(function, Mapping):
        raise ValidationError(
            f"Invalid '{where}.function': expected an object with a 'name'.", param="tools"
        )
    _no_unknown_keys(function, _FUNCTION_KEYS, f"{where}.function", "tools")
    return {"type": "function", "function": _function(function, f"{where}.function")}


def _function(fields: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A run's function tool's ``name``, ``description``, ``parameters`` and ``strict``
    (what is given is kept; a response's tools are checked by ``_requests``)."""
    name = fields.get("name")
    if not isinstance(name, str) or not FUNCTION_NAME.fullmatch(name):
        raise ValidationError(
            f"Invalid '{where}.name': expected a string of 1 to 64 letters, digits, "
            f"underscores or dashes, got {_short(name)}.",
            param="tools",
        )
    out: dict[str, Any] = {"name": str.__str__(name)}
    if "description" in fields:
        description = fields["description"]
        if not isinstance(description, str):
            raise ValidationError(
                f"Invalid '{where}.description': expected a string, got "
                f"{type(description).__name__}.",
                param="tools",
            )
        out["description"] = check_clean(str.__str__(description), "tools", f"{where}.description")
    if "parameters" in fields:
        parameters = fields["parameters"]
        if not isinstance(parameters, Mapping):
            raise ValidationError(
                f"Invalid '{where}.parameters': expected an object, got "
                f"{type(parameters).__name__}.",
                param="tools",
            )
        out["parameters"] = json_value(parameters, "tools", f"{where}.parameters", 2)
    if "strict" in fields:
        strict = fields["strict"]
        if strict is not None and not isinstance(strict, bool):
            raise ValidationError(
                f"Invalid '{where}.strict': expected a boolean or null.", param="tools"
            )
        out["strict"] = strict
    return out


def _no_unknown_keys(obj: Mapping[Any, Any], allowed: Any, where: str, param: str) -> None:
    for key in obj:
        if key not in allowed:
            raise ValidationError(
                f"Unknown parameter: '{where}.{_short(key) if not isinstance(key, str) else key}'.",
                param=param,
            )


def validate_file_ids(file_ids: Any) -> list[str]:
    if file_ids is None:
        return []
    if not isinstance(file_ids, (list, tuple)) or not all(isinstance(f, str) for f in file_ids):
        raise ValidationError("Invalid 'file_ids': expected an array of strings.", param="file_ids")
    return [require_string(f, "file_ids") for f in file_ids]


def validate_tool_calls(tool_calls: Any, new_call_id: Callable[[], str]) -> list[dict[str, Any]]:
    """At least one function call, each ``{"id", "type": "function", "function": {"name",
    "arguments"}}`` with a unique id. A call without an id gets ``new_call_id()``."""
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
        call_id = call.get("id") or new_call_id()
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
        call_id = check_clean(call_id, "tool_calls", f"{where}.id")
        if call_id in seen:
            raise ValidationError(
                f"Invalid '{where}': duplicate tool call id {call_id!r}.", param="tool_calls"
            )
        seen.add(call_id)
        name = check_clean(function["name"], "tool_calls", f"{where}.function.name")
        arguments = check_clean(
            function.get("arguments", ""), "tool_calls", f"{where}.function.arguments"
        )
        checked.append(
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        )
    return checked


def required_action_for(tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": tool_calls}}


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
    calls = value["submit_tool_outputs"].get("tool_calls")
    if isinstance(calls, (list, tuple)) and any(
        not isinstance(c, Mapping) or not isinstance(c.get("id"), str) or not c.get("id")
        for c in calls
    ):
        raise ValidationError("Every tool call needs a string 'id'.", param="required_action")
    try:
        checked = validate_tool_calls(calls, _no_new_ids)
    except ValidationError as exc:
        raise ValidationError(
            f"Field 'required_action' is malformed: {exc.message}", param="required_action"
        ) from exc
    return required_action_for(checked)


def _no_new_ids() -> str:  # pragma: no cover - validate_required_action checks ids first
    raise ValidationError("Every tool call needs a string 'id'.", param="required_action")


def validate_last_error(value: Any) -> dict[str, Any]:
    if (
        not isinstance(value, Mapping)
        or set(value) != {"code", "message"}
        or not isinstance(value["message"], str)
    ):
        raise ValidationError(
            "Field 'last_error' must be {'code': ..., 'message': str}.", param="last_error"
        )
    return {
        "code": validate_error_code(value["code"], "last_error"),
        "message": require_string(value["message"], "last_error", allow_empty=True),
    }


def validate_error_code(code: Any, param: str = "code") -> str:
    if not isinstance(code, str) or code not in ERROR_CODES:
        raise ValidationError(
            f"Invalid error code {_short(code)}; expected one of {sorted(ERROR_CODES)}.",
            param=param,
        )
    return str.__str__(code)


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
        where = f"tool_outputs[{i}]"
        checked.append(
            {
                "tool_call_id": check_clean(item["tool_call_id"], "tool_outputs", where),
                "output": check_clean(item.get("output", ""), "tool_outputs", where),
            }
        )
    return checked


# --- the second version of thread.run ------------------------------------------------------

#: ``incomplete_details.reason`` of a v2 run.
INCOMPLETE_REASONS: frozenset[str] = frozenset({"max_completion_tokens", "max_prompt_tokens"})
_V2_TOOL_TYPES = ("code_interpreter", "file_search", "function")
_TRUNCATION_TYPES = ("auto", "last_messages")
_RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema")


def validate_tools_v2(tools: Any) -> list[dict[str, Any]]:
    """A v2 run's tools: as v1's, but ``retrieval`` is gone (it became ``file_search``)."""
    checked = validate_tools(tools)
    for i, tool in enumerate(checked):
        if tool["type"] not in _V2_TOOL_TYPES:
            raise ValidationError(
                f"Invalid 'tools[{i}]': expected an object whose 'type' is one of "
                f"{sorted(_V2_TOOL_TYPES)} ('retrieval' is 'file_search' in v2).",
                param="tools",
            )
    return checked


def validate_usage(value: Any, param: str = "usage") -> dict[str, int] | None:
    """``{"prompt_tokens", "completion_tokens", "total_tokens"}``, whole and not negative,
    the total their sum (``total_tokens`` may be left out); or None."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not {"prompt_tokens", "completion_tokens"} <= set(
        value
    ) <= {"prompt_tokens", "completion_tokens", "total_tokens"}:
        raise ValidationError(
            f"Invalid '{param}': expected {{'prompt_tokens': int, 'completion_tokens': int, "
            "'total_tokens': int}.",
            param=param,
        )
    prompt, completion = (
        require_int(value[key], param, minimum=0, where=f"{param}.{key}")
        for key in ("prompt_tokens", "completion_tokens")
    )
    total = _total(value, param, ("prompt_tokens", prompt), ("completion_tokens", completion))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _total(value: Mapping[str, Any], param: str, *parts: tuple[str, int]) -> int:
    """A usage's ``total_tokens``: the sum of its ``parts`` (named counts), which it may
    leave out, or a ValidationError if it says otherwise."""
    expected = sum(count for _, count in parts)
    total = require_int(
        value.get("total_tokens", expected), param, minimum=0, where=f"{param}.total_tokens"
    )
    if total != expected:
        raise ValidationError(
            f"Invalid '{param}.total_tokens': expected {' + '.join(n for n, _ in parts)} "
            f"({expected}), got {total}.",
            param=param,
        )
    return total


def validate_incomplete_reason(reason: Any) -> str:
    if not isinstance(reason, str) or reason not in INCOMPLETE_REASONS:
        raise ValidationError(
            f"Invalid 'reason': expected one of {sorted(INCOMPLETE_REASONS)}, got "
            f"{_short(reason)}.",
            param="reason",
        )
    return str.__str__(reason)


def validate_number(value: Any, param: str, low: float, high: float) -> float | None:
    """A finite number from ``low`` to ``high``, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValidationError(
            f"Invalid '{param}': expected a number from {low:g} to {high:g}, got {_short(value)}.",
            param=param,
        )
    return float(value)


def validate_token_limit(value: Any, param: str) -> int | None:
    """A token budget of at least 256 (the public API's floor), or None."""
    if value is None:
        return None
    return require_int(value, param, minimum=256)


def validate_truncation_strategy(value: Any) -> dict[str, Any] | None:
    """``{"type": "auto"}`` or ``{"type": "last_messages", "last_messages": n}``, or None."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, Mapping) else None
    if not isinstance(kind, str) or kind not in _TRUNCATION_TYPES:
        raise ValidationError(
            "Invalid 'truncation_strategy': expected an object whose 'type' is 'auto' or "
            "'last_messages'.",
            param="truncation_strategy",
        )
    _no_unknown_keys(value, {"type", "last_messages"}, "truncation_strategy", "truncation_strategy")
    last = value.get("last_messages")
    if last is not None:
        last = require_int(last, "truncation_strategy", where="truncation_strategy.last_messages")
    return {"type": str.__str__(kind), "last_messages": last}


def validate_tool_choice(value: Any) -> str | dict[str, Any] | None:
    """``"none"``, ``"auto"``, ``"required"``, or a named tool: ``{"type": "function",
    "function": {"name": ...}}`` or ``{"type": "file_search"}`` / ``code_interpreter``."""
    if value is None:
        return None
    if isinstance(value, str) and value in ("none", "auto", "required"):
        return str.__str__(value)
    kind = value.get("type") if isinstance(value, Mapping) else None
    if isinstance(kind, str) and kind in ("file_search", "code_interpreter") and len(value) == 1:
        return {"type": str.__str__(kind)}
    function = value.get("function") if isinstance(value, Mapping) else None
    if (
        kind == "function"
        and set(value) == {"type", "function"}
        and isinstance(function, Mapping)
        and set(function) == {"name"}
        and isinstance(function["name"], str)
        and FUNCTION_NAME.fullmatch(function["name"])
    ):
        return {"type": "function", "function": {"name": str.__str__(function["name"])}}
    raise ValidationError(
        "Invalid 'tool_choice': expected 'none', 'auto', 'required' or a named tool such as "
        "{'type': 'function', 'function': {'name': ...}}.",
        param="tool_choice",
    )


def validate_response_format(value: Any) -> str | dict[str, Any] | None:
    """``"auto"``, ``{"type": "text"}``, ``{"type": "json_object"}``, or ``{"type":
    "json_schema", "json_schema": {"name": ..., ...}}``; or None."""
    if value is None:
        return None
    if value == "auto" and isinstance(value, str):
        return "auto"
    kind = value.get("type") if isinstance(value, Mapping) else None
    if not isinstance(kind, str) or kind not in _RESPONSE_FORMAT_TYPES:
        raise ValidationError(
            "Invalid 'response_format': expected 'auto' or an object whose 'type' is one of "
            f"{list(_RESPONSE_FORMAT_TYPES)}.",
            param="response_format",
        )
    if kind != "json_schema":
        _no_unknown_keys(value, {"type"}, "response_format", "response_format")
        return {"type": str.__str__(kind)}
    _no_unknown_keys(value, {"type", "json_schema"}, "response_format", "response_format")
    schema = value.get("json_schema")
    if not isinstance(schema, Mapping) or not isinstance(schema.get("name"), str):
        raise ValidationError(
            "Invalid 'response_format.json_schema': expected an object with a string 'name'.",
            param="response_format",
        )
    checked: dict[str, Any] = json_value(schema, "response_format", "response_format.json_schema")
    return {"type": "json_schema", "json_schema": checked}


def validate_bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(
            f"Invalid '{param}': expected a boolean, got {type(value).__name__}.", param=param
        )
    return value


#: The create parameters of a v2 run, each with its check, in the public API's order.
V2_SETTINGS: dict[str, Callable[[Any], Any]] = {
    "temperature": lambda v: validate_number(v, "temperature", 0, 2),
    "top_p": lambda v: validate_number(v, "top_p", 0, 1),
    "max_prompt_tokens": lambda v: validate_token_limit(v, "max_prompt_tokens"),
    "max_completion_tokens": lambda v: validate_token_limit(v, "max_completion_tokens"),
    "truncation_strategy": validate_truncation_strategy,
    "tool_choice": validate_tool_choice,
    "parallel_tool_calls": lambda v: validate_bool(v, "parallel_tool_calls"),
    "response_format": validate_response_format,
}


# --- the background response's parts ---------------------------------------------------------

#: ``error.code`` values of a response, as the SDK's ``ResponseError`` lists the ones a
#: worker can meet (the image codes are the hosted service's own).
RESPONSE_ERROR_CODES: frozenset[str] = frozenset(
    {"server_error", "rate_limit_exceeded", "invalid_prompt", "vector_store_timeout"}
)
#: ``incomplete_details.reason`` values of a response, as the SDK lists them.
RESPONSE_INCOMPLETE_REASONS: frozenset[str] = frozenset(
    {"max_output_tokens", "max_messages", "content_filter", "steered"}
)
#: The most items a response's ``input`` or ``output`` may hold.
MAX_ITEMS = 10_000


def _items(value: Any, param: str) -> list[dict[str, Any]]:
    """An array of at most ``MAX_ITEMS`` JSON objects, each with a string ``type``."""
    require_array(value, param, MAX_ITEMS)
    items: list[dict[str, Any]] = json_value(value, param)
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise ValidationError(
                f"Invalid '{param}[{i}]': expected an object with a string 'type'.", param=param
            )
    return items


def validate_output(value: Any) -> list[dict[str, Any]]:
    """A response's ``output``: an array of output items (messages, function calls...)."""
    return _items(value, "output")


def validate_response_usage(value: Any, param: str = "usage") -> dict[str, Any] | None:
    """``{"input_tokens", "output_tokens", "total_tokens"}`` (the total may be left out and
    must be their sum), with the optional ``input_tokens_details`` (``cached_tokens``,
    ``cache_write_tokens``) and ``output_tokens_details`` (``reasoning_tokens``); the
    details are filled with zeros where not given. Or None."""
    if value is None:
        return None
    allowed = {
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "input_tokens_details",
        "output_tokens_details",
    }
    if not isinstance(value, Mapping) or not (
        {"input_tokens", "output_tokens"} <= set(value) <= allowed
    ):
        raise ValidationError(
            f"Invalid '{param}': expected {{'input_tokens': int, 'output_tokens': int, "
            "'total_tokens': int}, optionally with 'input_tokens_details' and "
            "'output_tokens_details'.",
            param=param,
        )

    def count(mapping: Mapping[str, Any], key: str, where: str) -> int:
        return require_int(mapping.get(key, 0), param, minimum=0, where=f"{where}.{key}")

    def details(key: str, fields: tuple[str, ...]) -> dict[str, int]:
        given = value.get(key)
        if given is None:
            given = {}
        if not isinstance(given, Mapping) or not set(given) <= set(fields):
            raise ValidationError(
                f"Invalid '{param}.{key}': expected an object with {list(fields)}.", param=param
            )
        return {name: count(given, name, f"{param}.{key}") for name in fields}

    tokens_in = count(value, "input_tokens", param)
    tokens_out = count(value, "output_tokens", param)
    total = _total(value, param, ("input_tokens", tokens_in), ("output_tokens", tokens_out))
    return {
        "input_tokens": tokens_in,
        "input_tokens_details": details(
            "input_tokens_details", ("cached_tokens", "cache_write_tokens")
        ),
        "output_tokens": tokens_out,
        "output_tokens_details": details("output_tokens_details", ("reasoning_tokens",)),
        "total_tokens": total,
    }


def validate_one_of(value: Any, allowed: frozenset[str], param: str) -> str:
    """One of ``allowed`` (a code or a reason), or a ValidationError listing them."""
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(
            f"Invalid '{param}': expected one of {sorted(allowed)}, got {_short(value)}.",
            param=param,
        )
    return str.__str__(value)


def validate_response_id(value: Any, param: str) -> str:
    """A response id: ``resp_`` and more."""
    checked = require_string(value, param)
    if not checked.startswith("resp_") or len(checked) == 5:
        raise ValidationError(
            f"Invalid '{param}': expected a response id starting with 'resp_', got "
            f"{_short(checked)}.",
            param=param,
        )
    return checked
