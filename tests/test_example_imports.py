"""The examples use delegate the way its users can: through `delegate` and its public
subpackages, and only the names their `__all__` exports (read from the source, not run)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.py"))
PUBLIC = (
    "delegate",
    "delegate.agents",
    "delegate.memory",
    "delegate.orchestrator",
    "delegate.testing",
    "delegate.workflows",
)


def private_imports(source: str) -> list[str]:
    """The imports in `source` of delegate that are not public: a module path other than
    `delegate` or a public subpackage, or a name its `__all__` does not export."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
            found += [m for m in modules if m.split(".")[0] == "delegate" and m not in PUBLIC]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "delegate":
                continue
            if node.module not in PUBLIC:
                found.append(node.module)
                continue
            exported = importlib.import_module(node.module).__all__
            found += [
                f"{node.module}.{alias.name}" for alias in node.names if alias.name not in exported
            ]
    return found


def test_the_examples_are_found() -> None:
    # Guards the test below: an empty list would make it pass vacuously.
    names = {path.relative_to(ROOT / "examples").parts[0] for path in EXAMPLES}
    assert names >= {"quickstart.py", "code_review", "extract", "research_report"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: str(path.relative_to(ROOT)))
def test_an_example_imports_only_public_names(path: Path) -> None:
    assert private_imports(path.read_text(encoding="utf-8")) == []


def test_private_imports_are_told_apart() -> None:
    # Guards the check itself, on each kind of import it must catch and each it must allow.
    source = """
import delegate
import delegate.testing
import delegate.agents.tokens
from delegate import Agent, TaskGraph
from delegate.testing import FunctionModel, simulate
from delegate.orchestrator import default_prompt
from delegate.orchestrator.planner import default_prompt as prompt
from delegate.testing import _fakes
from delegate import Scheduler
from . import local
from pydantic import BaseModel

def later():
    from delegate.workflows.runtime import missing_credentials
"""
    assert private_imports(source) == [
        "delegate.agents.tokens",
        "delegate.orchestrator.planner",
        "delegate.testing._fakes",
        "delegate.Scheduler",
        "delegate.workflows.runtime",
    ]
