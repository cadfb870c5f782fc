"""A lifecycle as a Mermaid state diagram, read from its machine (never a second table).

``runstate diagram`` prints it; docs/lifecycles.md embeds each lifecycle's, and a test keeps those
copy current.
"""

from __future__ import annotations

from ._definitions import DEFINITIONS, RUN_V1, Definition
from ._errors import ValidationError

__all__ = ["mermaid"]


def mermaid(definition: Definition | str = RUN_V1) -> str:
    """The lifecycle's states and transitions, as ``stateDiagram-v2``; ``definition`` is
    a declared lifecycle or its name (``"run"``, ``"run-v2"``, ``"response"``)."""
    if isinstance(definition, str):
        if definition not in DEFINITIONS:
            raise ValidationError(
                f"Unknown lifecycle {definition!r}; expected one of {sorted(DEFINITIONS)}.",
                param="definition",
            )
        definition = DEFINITIONS[definition]
    lines = ["stateDiagram-v2", f"    [*] --> {definition.initial.value}: create"]
    for name, event in definition.machine.events.items():
        for source, transitions in event.transitions.items():
            for transition in transitions:
                lines.append(f"    {source} --> {transition.dest}: {name}")
    lines += [
        f"    {status.value} --> [*]"
        for status in definition.statuses
        if status in definition.terminal
    ]
    return "\n".join(lines) + "\n"
