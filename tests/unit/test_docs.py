"""The docs are checked like code: their worked examples run, their diagrams are the
declarations', their links lead somewhere, and nothing points outside the repository."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import runstate
from runstate._definitions import DEFINITIONS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
DIAGRAM = re.compile(r"<!-- diagram: ([\w-]+) -->\n```mermaid\n(.*?)```", re.DOTALL)
LINK = re.compile(r"\]\(([^)#:]+)(?:#[^)]*)?\)")


def run_page(name: str) -> dict[str, object]:
    """Every Python block of a page, in order, as one program; its namespace."""
    module = types.ModuleType(f"docs_{name.replace('-', '_')}")
    sys.modules[module.__name__] = module
    try:
        code = "\n".join(BLOCK.findall((DOCS / f"{name}.md").read_text()))
        exec(compile(code, f"docs/{name}.md", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module.__dict__


def test_adding_a_lifecycle_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        page = run_page("adding-a-lifecycle")
    finally:
        if "export" in DEFINITIONS:
            runstate.undeclare("export")
    assert "export" not in DEFINITIONS  # the page ends by tidying up
    assert capsys.readouterr().out.startswith("stateDiagram-v2\n    [*] --> waiting: create")
    assert page["EXPORT"].waiting.value == "waiting"  # type: ignore[attr-defined]


def test_writing_a_store_runs_as_written() -> None:
    page = run_page("writing-a-store")
    store = page["store"]
    assert type(store).__name__ == "DictStore"
    protocol = {name for name in vars(runstate.Store) if not name.startswith("_")}
    assert all(callable(getattr(store, name)) for name in protocol)


def test_every_diagram_in_the_docs_is_its_declarations() -> None:
    found = {}
    for page in PAGES:
        for name, drawn in DIAGRAM.findall(page.read_text()):
            assert drawn == runstate.mermaid(name), f"{page.name}: the {name} diagram is stale"
            found[name] = page.name
    assert sorted(found) == ["response", "run", "run-v2"]


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_every_link_leads_to_a_file(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to {target}"


def test_nothing_refers_to_a_file_outside_the_repository() -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    outside = re.compile(
        "|".join(
            [
                "LIFECYCLE" + r"\.md",
                "RESPONSES" + r"\.md",
                "RunObject" + r"\.md",
                r"\.\./" + "shared",
            ]
        )
    )
    citing = [
        name
        for name in files
        if (ROOT / name).is_file()
        and not name.startswith(".ci/")
        and outside.search((ROOT / name).read_text(errors="replace"))
    ]
    assert citing == []


def test_the_responses_page_runs_as_written() -> None:
    page = run_page("responses")
    assert page["done"].output_text == '{"name": "a cat"}'  # type: ignore[attr-defined]


def test_the_worker_page_runs_as_written() -> None:
    page = run_page("worker")
    assert page["Worker"] is runstate.Worker
