"""The README's Python snippets and the quickstart example run, offline, with the fakes."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)


def test_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index: int) -> None:
    exec(compile(SNIPPETS[index], f"README.md snippet {index}", "exec"), {"__name__": "readme"})


def test_quickstart_example(capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        module = runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="quickstart")
        result = module["main"]([])
    finally:
        sys.path.remove(str(ROOT / "examples"))
    assert result.status == "succeeded"
    assert result.output == "BRIEF: three angles, 3 research notes combined into one page."
    # one research task meets a 429 and succeeds on its second attempt; the others need one
    assert [t.attempts for t in result.tasks.values()] == [2, 1, 1, 1]
    assert result.usage.calls == 4
    assert result.usage.by_model.keys() == {"openai/gpt-4o-mini"}
    out = capsys.readouterr().out
    assert "succeeded" in out
    assert "BRIEF" in out
