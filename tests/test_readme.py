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
    assert result.usage.calls == 5  # requests sent: the 429 is one of them
    assert result.usage.by_model.keys() == {"openai/gpt-4o-mini"}
    out = capsys.readouterr().out
    assert "succeeded" in out
    assert "BRIEF" in out


READMES = [ROOT / "README.md", *sorted((ROOT / "examples").glob("*/README.md"))]


@pytest.mark.parametrize("readme", READMES, ids=lambda path: str(path.relative_to(ROOT)))
def test_a_readme_stands_alone(readme: Path) -> None:
    text = readme.read_text()
    # No address outside the repository: everything it points at ships with it.
    assert re.findall(r"https?://\S+", text) == []
    assert re.findall(r"(?<![\w.])\.\./\S*", text) == []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        assert (readme.parent / target.split("#")[0]).exists(), target


@pytest.mark.parametrize("readme", READMES[1:], ids=lambda path: path.parent.name)
def test_an_example_readme_runs_its_commands_with_the_repositorys_venv(readme: Path) -> None:
    blocks = re.findall(r"```bash\n(.*?)```", readme.read_text(), re.DOTALL)
    commands = [line for block in blocks for line in block.splitlines() if line[:1] not in " #"]
    assert commands
    for command in commands:  # as written, from the repository's root, after `make demo`
        assert command.startswith(".venv/bin/python examples/"), command
        assert (ROOT / command.split()[1]).is_file(), command
    assert "after `make demo`" in readme.read_text()
