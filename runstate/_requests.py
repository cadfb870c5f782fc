"""The Responses API's create request, checked against the official ``openai`` package.

The request's shape is not written here: it is the ``openai`` package's own
``ResponseCreateParamsBase`` (the TypedDict the SDK sends), compiled once into a
pydantic-core validator. Three changes make it a server's check rather than a client's
hint, each a rewrite of the compiled schema, not of the types:

- every object refuses keys it does not declare (a TypedDict ignores them);
- an ``Iterable`` is a list, checked at once (pydantic checks one lazily);
- a union of objects told apart by ``type`` is a tagged union, so an error names the one
  member the client meant (``input[2].content[0].text``), not every member it did not.

Validation is strict (``"yes"`` is not a boolean). What the types cannot say stays
hand-written, each for a reason: a string is valid UTF-8 without NUL and a value nests
at most ``MAX_DEPTH`` deep (what a store keeps must be served back as JSON:
``json_value``); the documented ranges (``temperature`` 0-2, ``top_p`` 0-1,
``top_logprobs`` 0-20, ``max_output_tokens`` at least 16) and metadata's limits, which
the types leave out; a function tool's name pattern.

``Capabilities`` is what a deployment can honour beyond the engine's own work: hosted
tool types, prompt templates, conversations, context management. The engine accepts
every documented shape; a server or handler declares what it does, and a request that
asks for more is a 400 naming the parameter.
"""

from __future__ import annotations

import copy
import importlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ._errors import ValidationError
from ._validate import (
    FUNCTION_NAME,
    MAX_TOOLS,
    json_parameters,
    require_array,
    require_int,
    validate_metadata,
    validate_number,
)

__all__ = [
    "ECHO_DEFAULTS",
    "GATED_PARAMETERS",
    "Capabilities",
    "check_create",
    "check_includes",
    "check_shape",
    "input_item_ids",
]

#: The create parameters that ask for what only the model side can do: accepted by the
#: engine, refused by a deployment whose ``Capabilities`` do not name them.
GATED_PARAMETERS: frozenset[str] = frozenset(
    {
        "access_programs",
        "background_options",
        "context_management",
        "conversation",
        "image",
        "moderation",
        "prompt",
        "prompt_cache_options",
    }
)

#: The tool types every deployment of runstate can pass to its model: a function tool is
#: a name, a description and a schema the worker hands on.
_PLAIN_TOOLS = frozenset({"function"})

#: The values each parameter the public API echoes takes when the request leaves it out.
ECHO_DEFAULTS: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "prompt_cache_key": None,
    "reasoning": {"effort": None, "summary": None},
    "safety_identifier": None,
    "service_tier": "auto",
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_logprobs": 0,
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
}


_ENDPOINTS = ("input_tokens", "compact")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a deployment can honour: the tool ``types`` its model runs (``function``
    always), and the gated create ``parameters`` (``GATED_PARAMETERS``) it implements.
    ``Capabilities.everything()`` accepts every documented request (the engine's
    default); a server gives the set its model has."""

    tools: frozenset[str] = _PLAIN_TOOLS
    parameters: frozenset[str] = frozenset()
    #: The endpoints beside create it serves: ``input_tokens`` and ``compact``.
    endpoints: frozenset[str] = frozenset()
    everything_: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        # Any collection of names is taken (a list reads naturally); each is checked.
        known = {"parameters": GATED_PARAMETERS, "endpoints": frozenset(_ENDPOINTS)}
        for name in ("tools", "parameters", "endpoints"):
            given = getattr(self, name)
            if isinstance(given, str) or not all(isinstance(v, str) for v in given):
                raise ValidationError(
                    f"Invalid 'Capabilities.{name}': expected a collection of names, got "
                    f"{given!r}.",
                    param=name,
                )
            unknown = set(given) - known.get(name, set(given))
            if unknown:
                raise ValidationError(
                    f"Invalid 'Capabilities.{name}': {sorted(unknown)} not among "
                    f"{sorted(known[name])}.",
                    param=name,
                )
            object.__setattr__(self, name, frozenset(given))

    @classmethod
    def everything(cls) -> Capabilities:
        return cls(everything_=True)

    def check(self, body: Mapping[str, Any]) -> None:
        """A 400 naming the first part of ``body`` this deployment cannot honour."""
        if self.everything_:
            return
        for name in sorted(GATED_PARAMETERS & body.keys()):
            if body[name] is not None and name not in self.parameters:
                raise ValidationError(
                    f"The parameter '{name}' is not supported by this deployment.", param=name
                )
        for i, tool in enumerate(body.get("tools") or ()):
            if tool["type"] not in self.tools | _PLAIN_TOOLS:
                raise ValidationError(
                    f"Tool type '{tool['type']}' is not supported by this deployment "
                    f"(tools[{i}]); it supports {sorted(self.tools | _PLAIN_TOOLS)}.",
                    param=f"tools[{i}].type",
                )

    def serves(self, endpoint: str) -> bool:
        return self.everything_ or endpoint in self.endpoints


def check_create(body: Any, capabilities: Capabilities) -> dict[str, Any]:
    """The create request ``body`` as a plain dict, checked: its shape against the
    ``openai`` package's types, its values against the documented ranges, and against
    ``capabilities``. A ``ValidationError`` naming the first bad part otherwise."""
    if not isinstance(body, Mapping):
        raise ValidationError(
            f"The request body must be a JSON object, got {type(body).__name__}.", param=None
        )
    request = json_parameters(dict(body))
    for name in ("model", "input"):
        if name not in request:
            raise ValidationError(f"Missing required parameter: '{name}'.", param=name)
    stream = request.pop("stream", None)
    _fill_function_tools(request)
    try:
        _validator().validate_python(request, strict=True)
    except Exception as error:  # pydantic_core.ValidationError: named by its first part
        raise _explain(error, request) from None
    if stream is not None:
        if not isinstance(stream, bool):
            raise ValidationError(
                f"Invalid type for 'stream': expected a boolean, but got {_json_type(stream)} "
                "instead.",
                param="stream",
            )
        request["stream"] = stream
    _check_ranges(request)
    capabilities.check(request)
    return request


def _fill_function_tools(request: dict[str, Any]) -> None:
    """A function tool's ``parameters`` (null) and ``strict`` (true) where the request
    leaves them out: the API defaults them, where the SDK's type requires them."""
    tools = request.get("tools")
    if isinstance(tools, list):
        request["tools"] = [
            {"parameters": None, "strict": True, **tool}
            if isinstance(tool, dict) and tool.get("type") == "function"
            else tool
            for tool in tools
        ]


def _check_ranges(request: dict[str, Any]) -> None:
    """The documented bounds the types leave out."""
    validate_number(request.get("temperature"), "temperature", 0, 2)
    validate_number(request.get("top_p"), "top_p", 0, 1)
    if request.get("top_logprobs") is not None:
        require_int(request["top_logprobs"], "top_logprobs", minimum=0, maximum=20)
    if request.get("max_output_tokens") is not None:
        require_int(request["max_output_tokens"], "max_output_tokens", minimum=16)
    if request.get("max_tool_calls") is not None:
        require_int(request["max_tool_calls"], "max_tool_calls", minimum=1)
    validate_metadata(request.get("metadata"))
    if request.get("tools") is not None:
        require_array(request["tools"], "tools", MAX_TOOLS)
        for i, tool in enumerate(request["tools"]):
            if tool["type"] == "function" and not FUNCTION_NAME.fullmatch(tool["name"]):
                raise ValidationError(
                    f"Invalid 'tools[{i}].name': expected a string of 1 to 64 letters, "
                    f"digits, underscores or dashes, got {_short(tool['name'])}.",
                    param=f"tools[{i}].name",
                )
    if request["model"] == "":
        raise ValidationError("Invalid 'model': expected a non-empty string.", param="model")
    if request["input"] == "" or request["input"] == []:
        raise ValidationError(
            "Invalid 'input': expected a non-empty string or array.", param="input"
        )


# --- the compiled schema ------------------------------------------------------------------


#: The request types the ``openai`` package ships that runstate checks, by name: where
#: each lives in the package.
_TYPES = {
    "response.create": "openai.types.responses.response_create_params:ResponseCreateParamsBase",
    "run.additional_message": "openai.types.beta.threads.run_create_params:AdditionalMessage",
    "thread_and_run.tool_resources": (
        "openai.types.beta.thread_create_and_run_params:ToolResources"
    ),
}


def _validator() -> Any:
    return _compiled("response.create")


@cache
def _compiled(name: str) -> Any:
    """The validator of the ``openai`` package's request type ``name``, compiled once
    (imported here, not with runstate: the Responses face needs the ``responses`` extra)."""
    try:
        from pydantic import TypeAdapter
        from pydantic_core import SchemaValidator
    except ImportError as missing:  # pragma: no cover - the test extra installs both
        raise ImportError(
            "Checking a request needs the 'openai' package: pip install 'runstate[responses]'."
        ) from missing
    module, _, attribute = _TYPES[name].partition(":")
    shape = getattr(importlib.import_module(module), attribute)
    from openai.types.responses.response_input_audio_param import ResponseInputAudioParam

    schema = copy.deepcopy(TypeAdapter(shape).core_schema)
    audio = copy.deepcopy(TypeAdapter(ResponseInputAudioParam).core_schema)
    refs: dict[str, Any] = {}
    _collect_refs(schema, refs)
    # The SDK ships the ``input_audio`` part but its message content union leaves it out:
    # grafted beside the other input parts, as the API takes it.
    return SchemaValidator(_strict(schema, refs, {"input_audio": _strict(audio, {})}))


def check_shape(value: Any, name: str, param: str) -> Any:
    """``value`` checked against the ``openai`` package's request type ``name`` (see
    ``_TYPES``) as a create request is checked: a ``ValidationError`` whose path starts
    at ``param`` otherwise. Returns a plain copy."""
    checked = json_parameters({param: value})[param]
    try:
        _compiled(name).validate_python(checked, strict=True)
    except Exception as error:  # pydantic_core.ValidationError
        raise _explain(error, checked, param) from None
    return checked


def _collect_refs(node: Any, refs: dict[str, Any]) -> None:
    if isinstance(node, dict):
        if "ref" in node:
            refs[node["ref"]] = node
        for value in node.values():
            _collect_refs(value, refs)
    elif isinstance(node, list):
        for value in node:
            _collect_refs(value, refs)


def _strict(node: Any, refs: dict[str, Any], grafts: dict[str, Any] | None = None) -> Any:
    """The schema rewritten in place: closed objects, lists for iterables, tagged unions
    (an input-content union also takes the ``grafts``, by tag)."""
    if isinstance(node, list):
        for value in node:
            _strict(value, refs, grafts)
        return node
    if not isinstance(node, dict):
        return node
    for value in node.values():
        _strict(value, refs, grafts)
    kind = node.get("type")
    if kind == "typed-dict":
        node["extra_behavior"] = "forbid"
    elif kind == "generator":
        node["type"] = "list"
    elif kind == "union":
        tagged = _tagged(node["choices"], refs)
        if tagged is not None:
            choices, untyped = tagged
            if grafts and {"input_text", "input_image", "input_file"} <= choices.keys():
                choices = {**grafts, **choices}
            node.clear()
            node.update(
                type="tagged-union",
                choices=choices,
                discriminator=_tag_of(untyped),
                custom_error_type="invalid_item_type",
                custom_error_message=_tag_error(choices),
            )
    return node


#: The tag of a union's members that are no objects (a string choice such as ``"auto"``),
#: and the schema kinds such members have.
_PLAIN = "(not an object)"
_NOT_OBJECTS = frozenset({"literal", "str", "int", "float", "bool", "none", "list"})


def _tag_error(choices: dict[str, Any]) -> str:
    tags = sorted(choices.keys() - {_PLAIN})
    if _PLAIN in choices:
        return f"expected one of its documented values or an object whose 'type' is one of {tags}"
    return f"expected an object whose 'type' is one of {tags}"


def _tag_of(untyped: list[tuple[str, frozenset[str]]]) -> Any:
    """The tag of a value: its ``type``; without one, the first member that may leave
    ``type`` out whose required fields it has (a message has a role, an item reference
    an id), or the first such member."""

    def tag(value: Any) -> Any:
        if not isinstance(value, dict):
            return _PLAIN
        if value.get("type") is not None:
            return value["type"]
        for name, required in untyped:  # no type, or a null one, which the SDK allows
            if required <= value.keys():
                return name
        return untyped[0][0] if untyped else None

    return tag


def _tagged(
    choices: list[Any], refs: dict[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, frozenset[str]]]] | None:
    """The choices of a union of objects by their ``type`` (and, for the members that may
    leave it out, their required fields), or None if the union is not one."""
    by_tag: dict[str, list[Any]] = {}
    untyped: list[tuple[str, frozenset[str]]] = []
    for choice in choices:
        schema = choice[0] if isinstance(choice, tuple) else choice
        target: dict[str, Any] = refs.get(schema.get("schema_ref"), schema) or schema
        if target.get("type") in _NOT_OBJECTS:  # a value that is no object: apart
            by_tag.setdefault(_PLAIN, []).append(schema)
            continue
        if target.get("type") != "typed-dict" or "type" not in target["fields"]:
            return None
        tag_field = target["fields"]["type"]
        literal = tag_field["schema"]
        while literal.get("type") in ("nullable", "default"):
            literal = literal["schema"]
        if literal.get("type") != "literal":
            return None
        for tag in literal["expected"]:
            by_tag.setdefault(tag, []).append(schema)
            if not tag_field.get("required", True):
                required = frozenset(
                    name for name, spec in target["fields"].items() if spec.get("required", True)
                )
                untyped.append((tag, required))
    if len(by_tag.keys() - {_PLAIN}) < 2:
        return None
    merged = {
        tag: members[0] if len(members) == 1 else {"type": "union", "choices": members}
        for tag, members in by_tag.items()
    }
    return merged, untyped


# --- errors, named by the path the client sent -------------------------------------------

_EXPECTED = {
    "string_type": "a string",
    "bool_type": "a boolean",
    "int_type": "an integer",
    "float_type": "a number",
    "dict_type": "an object",
    "list_type": "an array",
    "typed_dict_type": "an object",
    "none_required": "null",
}


def _explain(error: Any, request: Any, prefix: str = "") -> ValidationError:
    """The one error of pydantic-core's ``error`` that reaches deepest into what the
    client sent, as the public API words it (its path after ``prefix``)."""
    best: tuple[int, str, dict[str, Any]] | None = None
    for details in error.errors(include_url=False):
        depth, path = _path(details["loc"], request, details["type"])
        if prefix:
            path = prefix + ("" if path.startswith("[") or not path else ".") + path
        if best is None or depth > best[0]:
            best = (depth, path, details)
    if best is None:  # pragma: no cover - a ValidationError has at least one error
        return ValidationError(str(error), param=None)
    _, path, details = best
    top = path.split(".")[0].split("[")[0]
    kind = details["type"]
    if kind == "extra_forbidden":
        if "." not in path and "[" not in path:
            return ValidationError(f"Unrecognized request argument supplied: {path}", param=path)
        return ValidationError(f"Unknown parameter: '{path}'.", param=path)
    if kind == "missing":
        return ValidationError(f"Missing required parameter: '{path}'.", param=path)
    if kind == "literal_error":
        return ValidationError(
            f"Invalid value for '{path}': {_short(details['input'])}. "
            f"{details['msg'].replace('Input should be', 'Supported values are')}.",
            param=path or top,
        )
    if kind in _EXPECTED:
        return ValidationError(
            f"Invalid type for '{path}': expected {_EXPECTED[kind]}, but got "
            f"{_json_type(details['input'])} instead.",
            param=path or top,
        )
    return ValidationError(f"Invalid value for '{path}': {details['msg']}.", param=path or top)


def _path(loc: tuple[Any, ...], value: Any, kind: str) -> tuple[int, str]:
    """How many steps of ``loc`` index into ``value`` (the rest name union members), and
    those steps written as the client's path (``input[2].content[0].text``)."""
    path = ""
    depth = 0
    for i, part in enumerate(loc):
        if isinstance(part, int) and isinstance(value, list) and 0 <= part < len(value):
            path += f"[{part}]"
            value = value[part]
        elif isinstance(part, str) and isinstance(value, dict) and part in value:
            path += f".{part}" if path else part
            value = value[part]
        elif kind == "missing" and i == len(loc) - 1 and isinstance(value, dict):
            path += f".{part}" if path else str(part)
        else:
            continue
        depth += 1
    return depth, path


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_includes(include: Any) -> list[str]:
    """``include`` values of a read, each one the ``openai`` package lists, or a 400."""
    if include is None:
        return []
    from typing import get_args

    from openai.types.responses.response_includable import ResponseIncludable

    allowed = get_args(ResponseIncludable)
    if not isinstance(include, (list, tuple)):
        raise ValidationError("Invalid type for 'include': expected an array.", param="include")
    for i, value in enumerate(include):
        if value not in allowed:
            raise ValidationError(
                f"Invalid value for 'include[{i}]': {_short(value)}. Supported values are "
                f"{list(allowed)}.",
                param="include",
            )
    return list(include)


# --- input items ----------------------------------------------------------------------------

_ID_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
}


def input_item_ids(
    given: str | list[dict[str, Any]],
    context: Sequence[dict[str, Any]] = (),
    new_id: Callable[[str, int], str] | None = None,
) -> list[dict[str, Any]]:
    """The request's ``input`` as the items the API lists, each with an ``id`` (kept if
    given, else assigned as the API spells them): a string is one user message, a
    message's string content is one ``input_text`` part (``output_text`` for the
    assistant's), and an ``item_reference`` is the item of the ``context`` it names (a
    400 if there is none). ``new_id(prefix, index)`` makes the ids (random ones by
    default)."""
    items = [{"role": "user", "content": given}] if isinstance(given, str) else given
    earlier = {item.get("id"): item for item in context}
    out = []
    for i, item in enumerate(items):
        kind = item.get("type") or ("item_reference" if set(item) <= {"id", "type"} else "message")
        if kind == "item_reference":
            if item["id"] not in earlier:
                raise ValidationError(
                    f"Item with id '{item['id']}' not found.", param=f"input[{i}].id"
                )
            out.append(earlier[item["id"]])
            continue
        prefix = _ID_PREFIX.get(kind, "item")
        listed = {"id": item.get("id") or (new_id or _new_id)(prefix, i), **item}
        listed["type"] = kind
        if kind in _LISTED_WITH_STATUS:
            listed.setdefault("status", "completed")
        if kind == "message" and isinstance(listed["content"], str):
            listed["content"] = [_part(listed["role"], listed["content"])]
        out.append(listed)
    return out


#: The items the API lists with a ``status`` (``completed`` where the client gave none).
_LISTED_WITH_STATUS = frozenset({"message", "function_call", "function_call_output"})


def _part(role: str, text: str) -> dict[str, Any]:
    if role == "assistant":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "input_text", "text": text}


def _new_id(prefix: str, index: int) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"
