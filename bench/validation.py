"""What checking a create request costs, against what storing the response costs.

For two bodies (the most common one a client sends, and a rich one: tools, a
multi-turn input with parts, a JSON-schema text format, reasoning, metadata), in one
process: the check alone (``check_create``: the compiled ``openai`` types, the ranges,
the NUL/depth rule), and a whole ``ResponseEngine.create`` on a SQLite file (the check,
the response, one transaction) and on the in-memory store. Each figure is the best of
five rounds of 2,000 calls.
Run: ``.venv/bin/python bench/validation.py``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runstate import Capabilities, ResponseEngine, SQLiteStore
from runstate._requests import check_create

COMMON = {"model": "gpt-4o", "input": [{"role": "user", "content": "hi"}], "background": True}
RICH = {
    "model": "gpt-4o",
    "background": True,
    "instructions": "Answer briefly.",
    "input": [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in this image?"},
                {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"},
            ],
        },
        {"role": "assistant", "content": "A cat."},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "lookup",
            "arguments": '{"q": "cat"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "a small cat"},
        {"role": "user", "content": "And its colour?"},
    ],
    "tools": [
        {
            "type": "function",
            "name": f"tool_{i}",
            "description": "A tool.",
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string"}},
                "required": ["q"],
                "additionalProperties": False,
            },
        }
        for i in range(8)
    ],
    "tool_choice": "auto",
    "text": {
        "format": {
            "type": "json_schema",
            "name": "answer",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"colour": {"type": "string"}},
                "required": ["colour"],
                "additionalProperties": False,
            },
        }
    },
    "reasoning": {"effort": "low"},
    "metadata": {"user": "u1", "session": "s1"},
    "temperature": 0.2,
    "max_output_tokens": 500,
    "store": True,
}
ROUNDS, CALLS = 5, 2000


def per_call(work: Callable[[], Any]) -> float:
    """Microseconds per call: the best of ``ROUNDS`` rounds of ``CALLS`` calls."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            work()
        best = min(best, time.perf_counter() - started)
    return best / CALLS * 1e6


def main() -> None:
    everything = Capabilities.everything()
    with tempfile.TemporaryDirectory() as folder:
        sqlite = ResponseEngine(SQLiteStore(Path(folder) / "r.db"))
        memory = ResponseEngine()
        for name, body in (("common", COMMON), ("rich", RICH)):
            check = per_call(lambda b=body: check_create(b, everything))
            on_sqlite = per_call(lambda b=body: sqlite.create(**b))
            in_memory = per_call(lambda b=body: memory.create(**b))
            print(
                f"{name} body: check {check:.1f} µs; create on SQLite {on_sqlite:.0f} µs "
                f"(the check is {check / on_sqlite:.1%} of it); in memory {in_memory:.0f} µs "
                f"({check / in_memory:.0%})"
            )
        sqlite.close()


if __name__ == "__main__":
    main()
