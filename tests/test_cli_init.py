"""`delegate init`: the starter's files, overwrite protection, names, and a starter that
validates, runs simulated and passes its own tests at once (in subprocesses, as a user runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from delegate.cli import main
from delegate.workflows import load_workflow, workflow_json_schema

FILES = ["README.md", "test_workflow.py", "workflow.schema.json", "workflow.yaml"]
SCHEMA_LINE = "# yaml-language-server: $schema=./workflow.schema.json"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), prog_name="delegate")


def _python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    }
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=cwd,
        check=False,
    )


def _pytest(project: Path) -> subprocess.CompletedProcess[str]:
    """The project's tests, run as a user runs them. Their temporary folders go in a folder of
    their own: the child's pytest would otherwise clean up old ones beside this run's."""
    basetemp = project.parent / f"{project.name}-pytest"
    return _python(
        "-m",
        "pytest",
        "test_workflow.py",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--basetemp={basetemp}",
        cwd=project,
    )


def _contents(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in directory.iterdir()}


# --- the files --------------------------------------------------------------------------------


def test_init_writes_the_four_files_and_says_what_to_run_next(tmp_path: Path) -> None:
    project = tmp_path / "new" / "my-project"  # missing folders are created

    result = invoke("init", str(project))

    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(project)) == FILES
    workflow = (project / "workflow.yaml").read_text(encoding="utf-8")
    assert workflow.splitlines()[0] == SCHEMA_LINE
    schema = json.loads((project / "workflow.schema.json").read_text(encoding="utf-8"))
    assert schema == workflow_json_schema()  # what `delegate schema` prints
    spec = load_workflow(project / "workflow.yaml").spec
    assert spec.name == "my-project"  # the folder's name
    assert [step.id for step in spec.steps or ()] == ["questions", "answers", "critique", "brief"]
    assert spec.needs_of("brief") == ("answers", "critique")
    assert all(spec.inputs[name].default is not None for name in spec.inputs)  # runs at once
    assert spec.budget is not None
    assert spec.budget.usd == 0.05
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# my-project\n")
    assert "delegate run workflow.yaml --simulate" in readme
    assert result.stdout == (
        f"wrote 4 files in {project}:\n"
        "  workflow.yaml         the workflow (4 steps, a budget)\n"
        "  workflow.schema.json  its JSON Schema, for editors\n"
        "  test_workflow.py      pytest tests that run it on fake models\n"
        "  README.md             what these files are and how to run them\n"
        "next:\n"
        f"  cd {project}\n"
        "  delegate validate workflow.yaml\n"
        "  delegate run workflow.yaml --simulate    # simulated models: no API key, nothing sent\n"
        "  pytest test_workflow.py\n"
        '  delegate run workflow.yaml -i topic="solar roofs"'
        "    # real models: needs OPENAI_API_KEY\n"
    )
    assert result.stderr == ""


def test_init_without_dir_writes_here_and_names_the_workflow_after_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "Market Study (2026)"
    here.mkdir()
    monkeypatch.chdir(here)

    result = invoke("init")

    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(here)) == FILES
    assert load_workflow(here / "workflow.yaml").spec.name == "market-study-2026"
    assert result.stdout.startswith("wrote 4 files in this folder:\n")
    assert "  cd " not in result.stdout


def test_a_folder_name_with_nothing_usable_gives_the_default_name(tmp_path: Path) -> None:
    result = invoke("init", str(tmp_path / "___"))
    assert result.exit_code == 0, result.output
    assert load_workflow(tmp_path / "___" / "workflow.yaml").spec.name == "starter"


def test_name_sets_the_workflow_name(tmp_path: Path) -> None:
    result = invoke("init", str(tmp_path), "--name", "due_diligence-2")
    assert result.exit_code == 0, result.output
    assert load_workflow(tmp_path / "workflow.yaml").spec.name == "due_diligence-2"
    assert (tmp_path / "README.md").read_text(encoding="utf-8").startswith("# due_diligence-2\n")


@pytest.mark.parametrize("name", ["2026", "true", "null", "no", "0x1f", "1_000", "1e3"])
def test_a_name_yaml_would_read_as_another_type_is_quoted(tmp_path: Path, name: str) -> None:
    result = invoke("init", str(tmp_path / name))
    assert result.exit_code == 0, result.output
    assert load_workflow(tmp_path / name / "workflow.yaml").spec.name == name


def test_planner_writes_a_planner_mode_starter(tmp_path: Path) -> None:
    result = invoke("init", str(tmp_path), "--planner")

    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == FILES
    assert (tmp_path / "workflow.yaml").read_text(encoding="utf-8").startswith(SCHEMA_LINE + "\n")
    spec = load_workflow(tmp_path / "workflow.yaml").spec
    assert (spec.mode, spec.planner, spec.workers) == (
        "planner",
        "planner",
        ["researcher", "analyst"],
    )
    assert "  workflow.yaml         the workflow (planner mode, a budget)\n" in result.stdout


def test_files_are_written_with_the_umask_s_mode(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        assert invoke("init", str(tmp_path)).exit_code == 0
    finally:
        os.umask(previous)
    assert {(tmp_path / file).stat().st_mode & 0o777 for file in FILES} == {0o644}


# --- refusals ---------------------------------------------------------------------------------


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "workflow.yaml").write_text("mine\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("# my notes\n", encoding="utf-8")

    result = invoke("init", str(tmp_path))

    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {tmp_path} already has workflow.yaml, README.md; nothing was written. "
        "Pass --force to overwrite them, or give another DIR\n"
    )
    assert "Traceback" not in result.output
    assert _contents(tmp_path) == {"workflow.yaml": "mine\n", "README.md": "# my notes\n"}


def test_force_overwrites_and_says_which_files_it_replaced(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# my notes\n", encoding="utf-8")

    result = invoke("init", str(tmp_path), "--force")

    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == FILES  # and no temporary file left behind
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert readme.startswith(f"# {tmp_path.name.lower()}")
    overwritten = [line for line in result.stdout.splitlines() if "(overwritten)" in line]
    assert overwritten == [
        "  README.md             what these files are and how to run them (overwritten)"
    ]


def test_force_replaces_a_symlink_and_leaves_its_target_alone(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    outside = tmp_path / "elsewhere.md"
    outside.write_text("not yours\n", encoding="utf-8")
    (project / "README.md").symlink_to(outside)
    (project / "test_workflow.py").symlink_to(tmp_path / "dangling.py")  # exists as a link

    refused = invoke("init", str(project))
    assert refused.exit_code == 2
    assert "already has test_workflow.py, README.md;" in refused.stderr

    result = invoke("init", str(project), "--force")
    assert result.exit_code == 0, result.output
    assert outside.read_text(encoding="utf-8") == "not yours\n"
    assert not (project / "README.md").is_symlink()
    assert not (tmp_path / "dangling.py").exists()
    assert sorted(os.listdir(project)) == FILES


def test_force_stops_before_writing_anything_when_a_folder_is_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "README.md").mkdir()

    result = invoke("init", str(tmp_path), "--force")

    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {tmp_path / 'README.md'}: a folder where the starter writes a file; nothing "
        "was written. Move it away, or give another DIR\n"
    )
    assert os.listdir(tmp_path) == ["README.md"]


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("Market Brief", "market-brief"),
        ("-leading-dash", "leading-dash"),
        ("UPPER", "upper"),
        ("x" * 101, "x" * 100),
        ("", "starter"),
    ],
)
def test_a_bad_name_exits_2_with_a_suggestion_and_writes_nothing(
    tmp_path: Path, name: str, suggestion: str
) -> None:
    project = tmp_path / "project"

    result = invoke("init", str(project), "--name", name)

    assert result.exit_code == 2
    assert f"Invalid value for '--name': {name!r} is not a workflow name" in result.stderr
    assert result.stderr.rstrip().endswith(f"try --name {suggestion}")
    assert "Traceback" not in result.output
    assert not project.exists()


def test_a_dir_that_is_a_file_exits_2(tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("x", encoding="utf-8")

    result = invoke("init", str(file))

    assert result.exit_code == 2
    assert "is a file" in result.stderr
    assert file.read_text(encoding="utf-8") == "x"


def test_a_dir_that_cannot_be_created_exits_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    project = tmp_path / "notes.txt" / "project"  # under a file: cannot be made

    result = invoke("init", str(project))

    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: cannot write the starter into {project}: ")
    assert "Traceback" not in result.output


def test_init_is_listed_in_the_help() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "  init " in result.stdout


# --- the starter works, as a user runs it -----------------------------------------------------


@pytest.mark.timeout(180)  # three interpreters start, each importing delegate, on a busy box
@pytest.mark.parametrize(
    ("options", "shape", "budget_usd"),
    [((), "4 steps, 3 agents", 0.05), (("--planner",), "planner mode, 3 agents", 0.10)],
    ids=["steps", "planner"],
)
def test_the_starter_validates_runs_simulated_and_passes_its_own_tests(
    tmp_path: Path, options: tuple[str, ...], shape: str, budget_usd: float
) -> None:
    project = tmp_path / "project"
    made = invoke("init", str(project), *options)
    assert made.exit_code == 0, made.output

    validated = _python("-m", "delegate", "validate", "workflow.yaml", cwd=project)
    assert (validated.returncode, validated.stdout) == (0, f"workflow.yaml: ok ({shape})\n")

    db = f"sqlite:///{tmp_path / 'runs.db'}"
    run = _python(
        "-m", "delegate", "run", "workflow.yaml", "--simulate", "--db", db, "--json", cwd=project
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert (report["status"], report["simulated"], report["workflow"]) == (
        "succeeded",
        True,
        "project",
    )
    assert 0 < report["usage"]["cost_usd"] <= budget_usd
    assert load_workflow(project / "workflow.yaml").spec.budget.usd == budget_usd
    if not options:
        assert set(report["output"]) == {"title", "summary", "key_points"}

    tested = _pytest(project)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 passed" in tested.stdout

    # The test file is code the user keeps: it reads as ruff formats and lints it, at the
    # default line length and isolated from this repository's settings.
    for command in (("format", "--check"), ("check",)):
        linted = _python("-m", "ruff", *command, "--isolated", "test_workflow.py", cwd=project)
        assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.timeout(120)
def test_the_starter_s_tests_fail_when_the_workflow_changes_under_them(tmp_path: Path) -> None:
    project = tmp_path / "project"
    assert invoke("init", str(project)).exit_code == 0
    workflow = project / "workflow.yaml"
    text = workflow.read_text(encoding="utf-8")
    renamed = text.replace("- id: critique", "- id: review").replace(
        "needs: [answers, critique]", "needs: [answers, review]"
    )
    assert renamed != text
    workflow.write_text(renamed, encoding="utf-8")

    tested = _pytest(project)

    # The step list and the tasks it ran changed; the budget check still holds.
    assert tested.returncode == 1
    assert "2 failed, 1 passed" in tested.stdout
    assert "FAILED test_workflow.py::test_the_workflow_is_valid" in tested.stdout
    assert "FAILED test_workflow.py::test_it_runs_on_fake_models" in tested.stdout
