"""Hostile workflow files: each refused with exit status 2, a `file:line`, no traceback, quickly.

The corpus is `tests/workflows/hostile/`; the file over the size limit is made here. Every corpus
file has an expectation below (the first problem's line and a piece of its message), and every
expectation has its file. The messages are delegate's own: whichever parser PyYAML was built with
(libyaml or its own), and whatever either says, the file gets the same error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from delegate.cli import main
from delegate.errors import WorkflowError
from delegate.orchestrator.graph import PROMPT_ENV
from delegate.workflows import MAX_BYTES, MAX_DEPTH, load_workflow, load_workflow_text
from delegate.workflows._yaml import Mark, YamlError, parse

CORPUS = Path(__file__).parent / "workflows" / "hostile"

# file -> (line of the first problem, a piece of its message)
EXPECTED = {
    "bad-indentation.yaml": (7, "check the indentation"),
    "billion-laughs.yaml": (8, "aliases expand to more than 10,000 values"),
    "binary.yaml": (4, "binary data (a NUL byte)"),
    "cycle.yaml": (7, "steps 'plan' → 'review' → 'draft' → 'plan' form a cycle"),
    "deep-nesting.yaml": (7, f"the data nests more than {MAX_DEPTH} levels deep; flatten it"),
    "duplicate-keys.yaml": (8, "duplicate key 'prompt': it is also on line 7"),
    "empty.yaml": (1, "the file is empty"),
    "not-utf8.yaml": (2, "not UTF-8 text: byte 0xe9"),
    "python-tag-mkdir.yaml": (3, "the tag !!python/object/apply:os.mkdir is not allowed"),
    "python-tag.yaml": (4, "the tag !!python/object/apply:os.system is not allowed"),
    "recursive-alias.yaml": (2, "a recursive alias"),
    "sandbox-escape.yaml": (7, "prompt reaches for '__class__'"),
    "tab-indented.yaml": (3, "YAML indents with spaces, not tabs"),
    "three-problems.yaml": (9, "unknown key 'promt' in step 'angles'; did you mean 'prompt'?"),
    "top-level-list.yaml": (1, "a workflow is a mapping (name:, agents:, steps: ...), not a list"),
    "unknown-agent.yaml": (10, "agent 'editr' is not an agent of this workflow (did you mean"),
    "unknown-key.yaml": (7, "unknown key 'promt' in step 'dig'; did you mean 'prompt'?"),
    "unknown-placeholder.yaml": (12, "prompt uses steps.nope, which is not a step"),
}


def validate(*files: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["validate", *map(str, files)], prog_name="delegate")
    return result.exit_code, result.stdout, result.stderr


def test_every_corpus_file_has_an_expectation() -> None:
    assert sorted(path.name for path in CORPUS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("parser", ["libyaml", "pyyaml"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_workflow_refuses_it_quickly_at_its_line(
    name: str, parser: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # libyaml's parser is used when PyYAML was built with it; PyYAML's own otherwise.
    if parser == "pyyaml":
        monkeypatch.setattr("delegate.workflows._yaml._Parser", yaml.SafeLoader)
    elif not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    line, message = EXPECTED[name]
    # This thread's CPU time, not the wall clock: other processes on a busy machine do not
    # count, a parser that blows up (billion laughs, deep nesting) still does.
    started = time.thread_time()
    with pytest.raises(WorkflowError) as caught:
        load_workflow(CORPUS / name)
    elapsed = time.thread_time() - started
    first = caught.value.problems[0]
    assert (first.file, first.line) == (str(CORPUS / name), line)
    assert message in first.message
    assert elapsed < 1.0


def use_parser(parser: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if parser == "pyyaml":
        monkeypatch.setattr("delegate.workflows._yaml._Parser", yaml.SafeLoader)
    elif not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    else:
        monkeypatch.setattr("delegate.workflows._yaml._Parser", yaml.CSafeLoader)


def problems(text: str | Path) -> list[tuple[int, int, str]]:
    def load() -> object:
        return load_workflow(text) if isinstance(text, Path) else load_workflow_text(text, "x.yaml")

    with pytest.raises(WorkflowError) as caught:
        load()
    return [(p.line, p.col, p.message) for p in caught.value.problems]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_libyaml_and_pyyaml_report_the_same_problems(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported = []
    for parser in ("libyaml", "pyyaml"):
        use_parser(parser, monkeypatch)
        reported.append(problems(CORPUS / name))
    assert reported[0] == reported[1]


DEEP_HEAD = (
    "name: deep\n"
    "agents: {scout: {model: openai/gpt-4o-mini}}\n"
    "steps:\n"
    "  - id: a\n"
    "    agent: scout\n"
    "    prompt: hi\n"
    "    output: "
)


@pytest.mark.parametrize("parser", ["libyaml", "pyyaml"])
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1_001, 5_000])
@pytest.mark.parametrize(
    ("style", "nested", "where"),
    [
        # where: (line, col) of the first node past the limit; in nested mappings that is the key
        # `a` of the deepest mapping within it
        ("flow-list", lambda n: "[" * n + "]" * n, (7, 13 + MAX_DEPTH - 3)),
        ("flow-mapping", lambda n: "{a: " * n + "1" + "}" * n, (7, 13 + 4 * (MAX_DEPTH - 4) + 1)),
        ("block-list", lambda n: "\n      " + "- " * n + "x", (8, 7 + 2 * (MAX_DEPTH - 3))),
    ],
)
def test_nesting_past_the_limit_is_refused_at_the_level_past_it(
    parser: str,
    levels: int,
    style: str,
    nested: Callable[[int], str],
    where: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1,001 and more levels meet libyaml's own limit (0.2.6 and later) before delegate's: the
    # error is still delegate's, at the first value nested too deep (the document, `steps`, the
    # step and `output` are the first 3 levels).
    use_parser(parser, monkeypatch)
    assert problems(DEEP_HEAD + nested(levels)) == [
        (*where, f"the data nests more than {MAX_DEPTH} levels deep; flatten it")
    ]


@pytest.mark.parametrize("parser", ["libyaml", "pyyaml"])
def test_nesting_up_to_the_limit_is_accepted(parser: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_parser(parser, monkeypatch)
    levels = MAX_DEPTH - 1  # mappings; the innermost value is the last level
    data = parse("{a: " * levels + "1" + "}" * levels).data
    for _ in range(levels - 1):
        data = data["a"]
    assert data == {"a": 1}
    with pytest.raises(YamlError) as caught:
        parse("{a: " * (levels + 1) + "1" + "}" * (levels + 1))
    assert caught.value.mark == Mark(1, 4 * levels + 2)  # the key of the innermost mapping


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_delegate_validate_exits_2_with_file_and_line(name: str) -> None:
    line, message = EXPECTED[name]
    code, stdout, stderr = validate(CORPUS / name)
    assert code == 2
    assert stdout == ""
    assert stderr.startswith(f"{CORPUS / name}:{line}:")
    assert message in stderr
    assert "Traceback" not in stderr


def test_python_tags_are_never_executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = (CORPUS / "python-tag-mkdir.yaml").read_text()
    # The payload is live: PyYAML's unsafe loader creates the folder ...
    yaml.unsafe_load(text)
    assert (tmp_path / "delegate-pwned").is_dir()
    (tmp_path / "delegate-pwned").rmdir()
    # ... and delegate's loader only reports the tag.
    for name in ("python-tag-mkdir.yaml", "python-tag.yaml"):
        with pytest.raises(WorkflowError):
            load_workflow_text((CORPUS / name).read_text(), name)
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_three_problems_are_reported_together_with_exact_lines() -> None:
    with pytest.raises(WorkflowError) as caught:
        load_workflow(CORPUS / "three-problems.yaml")
    file = str(CORPUS / "three-problems.yaml")
    assert [(p.line, p.col) for p in caught.value.problems] == [(9, 5), (11, 12), (15, 13)]
    assert str(caught.value).splitlines() == [
        f"{file}:9:5: unknown key 'promt' in step 'angles'; did you mean 'prompt'?",
        f"{file}:11:12: step 'dig': agent 'scuot' is not an agent of this workflow (did you mean "
        "'scout'?); define it under agents:",
        f"{file}:15:13: step 'brief': prompt uses steps.nope, which is not a step of this workflow",
    ]
    assert (caught.value.path, caught.value.line, caught.value.col) == (file, 9, 5)


def test_a_file_over_the_limit_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = tmp_path / "huge.yaml"
    line = "# " + "x" * 97 + "\n"
    huge.write_text("name: huge\n" + line * (MAX_BYTES // len(line) + 1))
    assert huge.stat().st_size > MAX_BYTES

    def no_parsing(text: str) -> None:
        raise AssertionError("a file over the limit must not be parsed")

    monkeypatch.setattr("delegate.workflows.loader.parse", no_parsing)
    code, stdout, stderr = validate(huge)  # not parsed (`no_parsing`): bounded work
    assert code == 2
    assert stdout == ""
    assert stderr == (
        f"{huge}:1:1: the file has {huge.stat().st_size:,} bytes; workflow files are limited to "
        "1,048,576 bytes (1 MiB)\n"
    )
    with pytest.raises(WorkflowError, match="limited to 1,048,576 bytes"):
        load_workflow_text(huge.read_text(), "huge.yaml")


def test_valid_and_hostile_files_together(tmp_path: Path) -> None:
    good = Path(__file__).parent.parent / "configs" / "market-brief.yaml"
    code, stdout, stderr = validate(good, CORPUS / "cycle.yaml", CORPUS / "empty.yaml")
    assert code == 2
    assert stdout == f"{good}: ok (3 steps, 2 agents)\n"
    assert [line.split(":")[:2] for line in stderr.splitlines()] == [
        [str(CORPUS / "cycle.yaml"), "7"],
        [str(CORPUS / "empty.yaml"), "1"],
    ]


def test_templates_the_checks_cannot_see_still_fail_in_the_sandbox() -> None:
    # An attribute name computed from an input passes validation ...
    loaded = load_workflow_text(
        "name: dynamic\n"
        "inputs: {x: {type: string}, y: {type: string}}\n"
        "agents: {a: {model: openai/gpt-4o-mini}}\n"
        "steps:\n"
        "  - id: s\n"
        "    agent: a\n"
        '    prompt: "{{ inputs.x | attr(inputs.y) }} {{ inputs.x[inputs.y] }}"\n'
    )
    prompt = loaded.spec.steps[0].prompt  # type: ignore[index]
    # ... and the sandbox refuses it when the prompt renders.
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError, match="__class__"):
        PROMPT_ENV.from_string(prompt).render(inputs={"x": "", "y": "__class__"})


def test_the_command_itself_exits_2_without_a_traceback() -> None:
    files = [str(CORPUS / name) for name in sorted(EXPECTED)]
    result = subprocess.run(
        [sys.executable, "-m", "delegate", "validate", *files],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    first_lines = {line.split(":")[0]: line for line in reversed(result.stderr.splitlines())}
    assert sorted(first_lines) == sorted(files)


def test_debug_shows_the_traceback_of_an_invalid_file() -> None:
    result = CliRunner().invoke(
        main, ["--debug", "validate", str(CORPUS / "cycle.yaml")], prog_name="delegate"
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert "delegate.errors.WorkflowError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"{CORPUS / 'cycle.yaml'}:7:13: steps ")
