"""A response's output as its worker streams it: the items and the events around them.

A worker opens a message, adds text and closes it, or makes a function call; each step
here changes the response's ``output`` (an item ``in_progress`` until it is closed) and
returns the events the public stream has for it, in order, so that the SDK's stream
helpers can rebuild the response from them:

- ``open_message``: ``response.output_item.added``, ``response.content_part.added``
  (``open_message_with``: and the first text delta, in the same write);
- ``add_text``: ``response.output_text.delta``;
- ``close_message``: ``response.output_text.done``, ``response.content_part.done``,
  ``response.output_item.done``;
- ``function_call``: ``response.output_item.added``,
  ``response.function_call_arguments.delta`` and ``.done``, ``response.output_item.done``;
  or the same a piece at a time: ``open_function_call`` (added), ``add_arguments`` (a
  delta each), ``close_function_call`` (done, and the item done).

A message has one ``output_text`` part (``content_index`` 0); an item's
``output_index`` is its place in ``output``. Nothing here is stored: the engine writes
the events and the response in one step (``ResponsePlans._p_emit``).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from typing import Any

from ._errors import InvalidTransitionError, ValidationError
from ._validate import json_value, require_string

__all__ = [
    "SCAFFOLDING",
    "add_arguments",
    "add_text",
    "check_logprobs",
    "close_function_call",
    "close_message",
    "function_call",
    "new_function_call",
    "new_item_id",
    "open_function_call",
    "open_message",
    "open_message_with",
]

#: The events only the output methods write (a worker's ``append`` may not).
SCAFFOLDING: frozenset[str] = frozenset(
    {
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
    }
)

Events = list[tuple[str, dict[str, Any]]]


def new_item_id(prefix: str) -> str:
    """An output item's id as the API spells them: ``msg_``, ``fc_`` and 48 hex digits."""
    return f"{prefix}_{secrets.token_hex(24)}"


def _open_item(response: Any) -> tuple[int, dict[str, Any]] | None:
    """The output item still being streamed (the last, ``in_progress``), if any."""
    if response.output and response.output[-1].get("status") == "in_progress":
        return len(response.output) - 1, response.output[-1]
    return None


def _refuse(response: Any, message: str) -> InvalidTransitionError:
    return InvalidTransitionError(message, status=response.status.value, event="append")


def _no_open_item(response: Any, what: str) -> None:
    opened = _open_item(response)
    if opened is not None:
        raise _refuse(
            response,
            f"Cannot {what}: output item {opened[0]} ({opened[1]['type']}) is still open; "
            "close it first.",
        )


def _text_part(text: str, logprobs: list[Any]) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}


def open_message(item_id: str, response: Any) -> Events:
    """Open an assistant message with one empty ``output_text`` part."""
    _no_open_item(response, "open a message")
    index = len(response.output)
    item = {
        "id": item_id,
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    part = _text_part("", [])
    response.output = [*response.output, {**item, "content": [part]}]
    return [
        ("response.output_item.added", {"output_index": index, "item": item}),
        (
            "response.content_part.added",
            {"item_id": item_id, "output_index": index, "content_index": 0, "part": part},
        ),
    ]


def open_message_with(item_id: str, delta: str, logprobs: list[Any], response: Any) -> Events:
    """Open a message and add its first ``delta``: a stream's first token in one write."""
    return open_message(item_id, response) + add_text(delta, logprobs, response)


def _open_message(response: Any, what: str) -> tuple[int, dict[str, Any]]:
    opened = _open_item(response)
    if opened is None or opened[1]["type"] != "message":
        raise _refuse(response, f"Cannot {what}: no message is open; open one first.")
    return opened


def add_text(delta: str, logprobs: list[Any], response: Any) -> Events:
    """Add ``delta`` to the open message's text."""
    index, item = _open_message(response, "add text")
    (part,) = item["content"]
    grown = _text_part(part["text"] + delta, [*part["logprobs"], *logprobs])
    response.output = [*response.output[:index], {**item, "content": [grown]}]
    return [
        (
            "response.output_text.delta",
            {
                "item_id": item["id"],
                "output_index": index,
                "content_index": 0,
                "delta": delta,
                "logprobs": logprobs,
            },
        )
    ]


def close_message(response: Any) -> Events:
    """Close the open message: its text is done, and so are its part and the item."""
    index, item = _open_message(response, "close a message")
    (part,) = item["content"]
    done = {**item, "status": "completed"}
    response.output = [*response.output[:index], done]
    where = {"item_id": item["id"], "output_index": index, "content_index": 0}
    return [
        (
            "response.output_text.done",
            {**where, "text": part["text"], "logprobs": part["logprobs"]},
        ),
        ("response.content_part.done", {**where, "part": part}),
        ("response.output_item.done", {"output_index": index, "item": done}),
    ]


def new_function_call(name: Any, arguments: Any, call_id: Any) -> dict[str, Any]:
    """A completed ``function_call`` item, its fields checked."""
    return {
        "id": new_item_id("fc"),
        "type": "function_call",
        "status": "completed",
        "call_id": new_item_id("call") if call_id is None else require_string(call_id, "call_id"),
        "name": require_string(name, "name", max_length=64),
        "arguments": require_string(arguments, "arguments", allow_empty=True),
    }


def open_function_call(item: dict[str, Any], response: Any) -> Events:
    """Open the function call ``item``, its arguments to come (``add_arguments``)."""
    _no_open_item(response, "make a function call")
    index = len(response.output)
    opened = {**item, "status": "in_progress", "arguments": ""}
    response.output = [*response.output, opened]
    return [("response.output_item.added", {"output_index": index, "item": opened})]


def _open_call(response: Any, what: str) -> tuple[int, dict[str, Any]]:
    opened = _open_item(response)
    if opened is None or opened[1]["type"] != "function_call":
        raise _refuse(response, f"Cannot {what}: no function call is open; open one first.")
    return opened


def add_arguments(delta: str, response: Any) -> Events:
    """Add ``delta`` to the open function call's arguments."""
    index, item = _open_call(response, "add arguments")
    response.output = [
        *response.output[:index],
        {**item, "arguments": item["arguments"] + delta},
    ]
    where = {"item_id": item["id"], "output_index": index}
    return [("response.function_call_arguments.delta", {**where, "delta": delta})]


def close_function_call(response: Any) -> Events:
    """Close the open function call: its arguments are done, and so is the item."""
    index, item = _open_call(response, "close a function call")
    done = {**item, "status": "completed"}
    response.output = [*response.output[:index], done]
    where = {"item_id": item["id"], "output_index": index}
    return [
        (
            "response.function_call_arguments.done",
            {**where, "arguments": item["arguments"], "name": item["name"]},
        ),
        ("response.output_item.done", {"output_index": index, "item": done}),
    ]


def function_call(item: dict[str, Any], response: Any) -> Events:
    """Stream the function call ``item`` whole: added, its arguments, done."""
    return (
        open_function_call(item, response)
        + add_arguments(item["arguments"], response)
        + close_function_call(response)
    )


def check_logprobs(logprobs: Any) -> list[dict[str, Any]]:
    """A delta's ``logprobs``: a list of ``{"token", "logprob"}`` (``bytes``, the token's
    UTF-8, and ``top_logprobs``, [], where left out, as an ``output_text`` part has them)."""
    if logprobs is None:
        return []
    checked = json_value(logprobs, "logprobs")
    if not isinstance(checked, list) or not all(
        isinstance(entry, Mapping)
        and isinstance(entry.get("token"), str)
        and isinstance(entry.get("logprob"), (int, float))
        and not isinstance(entry.get("logprob"), bool)
        and math.isfinite(entry["logprob"])
        for entry in checked
    ):
        raise ValidationError(
            "Invalid 'logprobs': expected an array of {'token': str, 'logprob': number, "
            "'top_logprobs': [...]}.",
            param="logprobs",
        )
    return [
        {"top_logprobs": [], "bytes": list(entry["token"].encode()), **entry} for entry in checked
    ]


def with_logprobs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Output items whose ``output_text`` parts all carry ``logprobs`` and
    ``annotations`` (``[]`` where a worker left them out), as the public object has them."""
    out = []
    for item in items:
        content = item.get("content")
        if item.get("type") == "message" and isinstance(content, list):
            item = {
                **item,
                "content": [
                    {"annotations": [], "logprobs": [], **part}
                    if isinstance(part, dict) and part.get("type") == "output_text"
                    else part
                    for part in content
                ],
            }
        out.append(item)
    return out
