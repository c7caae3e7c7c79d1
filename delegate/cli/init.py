"""`delegate init [DIR]`: a starter project that validates, runs simulated and tests at once.

It writes four files into DIR (created when missing):

- `workflow.yaml`: a small, real workflow (inputs with defaults, cheap models, steps with
  `needs`, a budget); its first line points editors at the schema beside it;
- `workflow.schema.json`: what `delegate schema` prints, so editors complete and check the file
  offline;
- `test_workflow.py`: pytest tests that run the workflow on the fakes of `delegate.testing`
  (exact answers) and on simulated models (real prices), using public names only;
- `README.md`: what the files are and the commands to run.

`--planner` writes a planner-mode starter instead (a reasoning model plans, workers carry it
out). Existing files are never overwritten without `--force`.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

import click

__all__ = ["init_command"]

WORKFLOW_FILE = "workflow.yaml"
SCHEMA_FILE = "workflow.schema.json"
TEST_FILE = "test_workflow.py"
README_FILE = "README.md"
FILES = (WORKFLOW_FILE, SCHEMA_FILE, TEST_FILE, README_FILE)

_NAME = "__NAME__"  # replaced by the workflow's name in the templates below
_DEFAULT_NAME = "starter"

# --- the static starter ------------------------------------------------------------------------

_STEPS_WORKFLOW = """\
# yaml-language-server: $schema=./workflow.schema.json
# Written by `delegate init`. A scout asks the first questions about a topic, answers them in
# parallel (one task per question), a critic reviews the answers, and a writer turns both into
# a brief. Check it with `delegate validate workflow.yaml`; try it, with no API key, with
# `delegate run workflow.yaml --simulate`.
name: __NAME__
description: Research a topic from a few questions at once, then write a short brief.
inputs:
  topic: {type: string, default: home batteries, description: What to research}
  audience: {type: string, default: a busy reader, description: Who the brief is for}
agents:
  scout:
    model: openai/gpt-4o-mini
    description: Fast research on one narrow question.
    instructions: Answer in at most five bullet points. Say what you are unsure about.
    max_output_tokens: 600
  critic:
    model: openai/gpt-4o-mini
    instructions: Point out what is missing, doubtful or one-sided. Be brief.
    max_output_tokens: 400
  writer:
    model: openai/gpt-4.1-mini
    instructions: Write plainly, from the research you are given and nothing else.
    max_output_tokens: 1000
budget: {usd: 0.05, seconds: 300}   # the run stops before it would spend more
steps:
  - id: questions
    agent: scout
    prompt: "What three questions would {{ inputs.audience }} ask first about {{ inputs.topic }}?"
    output:                          # a JSON Schema: the answer is structured and validated
      type: object
      properties:
        questions: {type: array, items: {type: string}, minItems: 1, maxItems: 3}
      required: [questions]
  - id: answers
    agent: scout
    foreach: "{{ steps.questions.output.questions }}"   # one task per question, in parallel
    prompt: "Answer this question about {{ inputs.topic }}: {{ item }}"
  - id: critique
    agent: critic
    needs: [answers]                 # gets the answers as context, and waits for them
    prompt: "Review the answers about {{ inputs.topic }}: what is missing or doubtful?"
  - id: brief
    agent: writer
    needs: [answers, critique]
    prompt: "Write a short brief on {{ inputs.topic }} for {{ inputs.audience }}."
    output:
      type: object
      properties:
        title: {type: string}
        summary: {type: string, description: One paragraph}
        key_points: {type: array, items: {type: string}, minItems: 1, maxItems: 5}
      required: [title, summary, key_points]
output: brief
"""

_STEPS_TEST = '''\
"""Tests for workflow.yaml: it is valid, and it runs end to end without calling a model.

Fake models from `delegate.testing` stand in for the real ones, so these tests need no
API key and send nothing. Change the fakes' answers to see how the workflow handles
them, and add a test for each case that matters to you. Run them with `pytest`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from delegate import ModelRequest, RunResult
from delegate.testing import FunctionModel, block_model_requests
from delegate.workflows import (
    CompiledWorkflow,
    compile_workflow,
    load_workflow,
    run_workflow,
)

WORKFLOW = Path(__file__).with_name("workflow.yaml")
QUESTIONS = ["What does it cost?", "How long does it last?"]
BRIEF = {
    "title": "Home batteries in brief",
    "summary": "They cost less each year and last about ten years.",
    "key_points": ["cost", "lifetime"],
}


@pytest.fixture(autouse=True)
def _no_real_model_requests() -> Iterator[None]:
    # A test that would reach a real provider fails instead.
    with block_model_requests():
        yield


def _compile(tmp_path: Path, *, simulate: bool = False) -> CompiledWorkflow:
    # The test's runs go to a database of its own, not to your home store.
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    loaded = load_workflow(WORKFLOW)
    return compile_workflow(loaded, db=db, simulate=simulate, time_scale=0)


def _run(compiled: CompiledWorkflow, **inputs: Any) -> RunResult:
    return anyio.run(run_workflow, compiled, inputs)


def scout(request: ModelRequest) -> str | dict[str, Any]:
    # The `questions` step asks for structured output, named after the step.
    if request.output_name == "Questions":
        return {"questions": QUESTIONS}
    prompt = request.messages[-1]["content"]
    return next(f"- notes on: {q}" for q in QUESTIONS if q in prompt)


def critic(request: ModelRequest) -> str:
    return "- nothing on safety yet"


def writer(request: ModelRequest) -> dict[str, Any]:
    return BRIEF


def test_the_workflow_is_valid() -> None:
    spec = load_workflow(WORKFLOW).spec  # a WorkflowError lists every problem
    steps = [step.id for step in spec.steps or ()]
    assert steps == ["questions", "answers", "critique", "brief"]


def test_it_runs_on_fake_models(tmp_path: Path) -> None:
    compiled = _compile(tmp_path)
    for name, answer in (("scout", scout), ("critic", critic), ("writer", writer)):
        agent = compiled.agents[name]
        agent.model = FunctionModel(answer, name=agent.model.name)

    result = _run(compiled, topic="home batteries")

    assert result.status == "succeeded", result.error
    # A task per question and `answers`, which gathers them; the critique; the brief.
    assert sorted(result.tasks) == [
        "answers",
        "answers[0]",
        "answers[1]",
        "brief",
        "critique",
        "questions",
    ]
    assert result.tasks["answers"].output == [f"- notes on: {q}" for q in QUESTIONS]
    assert result.output == compiled.output_types["brief"](**BRIEF)
    assert result.usage.calls == 5


def test_it_fits_its_budget_at_real_prices(tmp_path: Path) -> None:
    # Simulated models: real prices, made-up answers that fit each step's schema.
    compiled = _compile(tmp_path, simulate=True)
    result = _run(compiled)

    assert result.status == "succeeded", result.error
    assert isinstance(result.output, compiled.output_types["brief"])
    assert set(result.output.model_dump()) == {"title", "summary", "key_points"}
    budget = compiled.spec.budget
    assert budget is not None
    assert budget.usd is not None
    assert 0 < result.usage.cost_usd <= budget.usd
'''

# --- the planner-mode starter ------------------------------------------------------------------

_PLANNER_WORKFLOW = """\
# yaml-language-server: $schema=./workflow.schema.json
# Written by `delegate init --planner`. Planner mode: a reasoning model turns the question into
# a plan of tasks for two cheap workers (tasks run as soon as what they depend on is done),
# replans after failures, and writes the answer. Check it with `delegate validate workflow.yaml`;
# try it, with no API key, with `delegate run workflow.yaml --simulate`.
name: __NAME__
description: A reasoning model plans the research of a question; cheap workers carry it out.
inputs:
  question:
    type: string
    default: Should a small office switch to heat pumps?
    description: The question to research
  audience: {type: string, default: a busy reader, description: Who the answer is for}
agents:
  planner:
    model: openai/o4-mini
    reasoning_effort: low
    description: Plans the work and writes the final answer.
  researcher:
    model: openai/gpt-4o-mini
    description: Finds and summarises the facts on one narrow question.
    instructions: Answer in at most five bullet points. Say what you are unsure about.
    max_output_tokens: 600
  analyst:
    model: openai/gpt-4.1-mini
    description: Compares findings and draws conclusions from them.
    max_output_tokens: 800
budget: {usd: 0.10, seconds: 300}   # the run stops before it would spend more
planner: planner
workers: [researcher, analyst]
goal: "Answer this question for {{ inputs.audience }}: {{ inputs.question }}"
max_tasks: 6
max_replans: 1
"""

_PLANNER_TEST = '''\
"""Tests for workflow.yaml: it is valid, and it runs end to end without calling a model.

Fake models from `delegate.testing` stand in for the real ones, so these tests need no
API key and send nothing. The fake planner answers with a fixed plan; change it, or the
workers' answers, to see how the workflow handles them. Run them with `pytest`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from delegate import ModelRequest, RunResult
from delegate.testing import FunctionModel, block_model_requests
from delegate.workflows import (
    CompiledWorkflow,
    compile_workflow,
    load_workflow,
    run_workflow,
)

WORKFLOW = Path(__file__).with_name("workflow.yaml")
PLAN = {
    "tasks": [
        {"id": "costs", "agent": "researcher", "instructions": "Find the costs."},
        {"id": "risks", "agent": "researcher", "instructions": "Find the risks."},
        {
            "id": "weigh",
            "agent": "analyst",
            "instructions": "Weigh the costs against the risks.",
            "deps": ["costs", "risks"],
        },
    ],
    "synthesis_note": "A short answer, then a one-line verdict.",
}
ANSWER = "Yes, if the building is well insulated. Verdict: switch."


@pytest.fixture(autouse=True)
def _no_real_model_requests() -> Iterator[None]:
    # A test that would reach a real provider fails instead.
    with block_model_requests():
        yield


def _compile(tmp_path: Path, *, simulate: bool = False) -> CompiledWorkflow:
    # The test's runs go to a database of its own, not to your home store.
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    loaded = load_workflow(WORKFLOW)
    return compile_workflow(loaded, db=db, simulate=simulate, time_scale=0)


def _run(compiled: CompiledWorkflow, **inputs: Any) -> RunResult:
    return anyio.run(run_workflow, compiled, inputs)


def planner(request: ModelRequest) -> str | dict[str, Any]:
    # Asked for a plan (structured output named "Plan"), then for the answer.
    return PLAN if request.output_name == "Plan" else ANSWER


def researcher(request: ModelRequest) -> str:
    return "- about $3,000 a year saved; noisy outdoor units"


def analyst(request: ModelRequest) -> str:
    return "The savings outweigh the risks."


def test_the_workflow_is_valid() -> None:
    spec = load_workflow(WORKFLOW).spec  # a WorkflowError lists every problem
    assert spec.mode == "planner"
    assert spec.workers == ["researcher", "analyst"]


def test_it_runs_on_fake_models(tmp_path: Path) -> None:
    compiled = _compile(tmp_path)
    fakes = {"planner": planner, "researcher": researcher, "analyst": analyst}
    for name, answer in fakes.items():
        agent = compiled.agents[name]
        agent.model = FunctionModel(answer, name=agent.model.name)

    result = _run(compiled, question="Should a small office switch to heat pumps?")

    assert result.status == "succeeded", result.error
    planned = [task.id for task in result.plans[0].tasks]
    assert planned == ["costs", "risks", "weigh"]
    assert [result.tasks[task].status for task in planned] == ["succeeded"] * 3
    assert result.tasks["weigh"].output == "The savings outweigh the risks."
    assert result.output == ANSWER
    assert result.usage.calls == 5  # the plan, three tasks, the answer


def test_it_fits_its_budget_at_real_prices(tmp_path: Path) -> None:
    # Simulated models: real prices, a planner that plans over the workers.
    compiled = _compile(tmp_path, simulate=True)
    result = _run(compiled)

    assert result.status == "succeeded", result.error
    assert isinstance(result.output, str)
    assert result.output
    budget = compiled.spec.budget
    assert budget is not None
    assert budget.usd is not None
    assert 0 < result.usage.cost_usd <= budget.usd
'''

# --- the README stub ---------------------------------------------------------------------------

_README = """\
# __NAME__

A delegate workflow, started with `delegate init`.

- `workflow.yaml`: the workflow: its inputs, agents (each a model with instructions),
  __SHAPE__ and budget.
- `workflow.schema.json`: the JSON Schema of workflow files. Editors with the YAML language
  server complete and check `workflow.yaml` as you type (its first line points here);
  `delegate schema > workflow.schema.json` refreshes it after an upgrade.
- `test_workflow.py`: pytest tests that run the workflow on fake models: no API key, nothing
  sent.

## Run it

```bash
delegate validate workflow.yaml          # "ok", or every problem as file:line:col
delegate plan workflow.yaml --simulate   # what would run, and its estimated cost
delegate run workflow.yaml --simulate    # simulated models: real prices, made-up answers, no key
delegate run workflow.yaml -i __INPUT__ --simulate
pytest                                   # the tests (pip install pytest)
export OPENAI_API_KEY=...                # then, with real models:
delegate run workflow.yaml -i __INPUT__
delegate runs                            # the runs so far; `delegate show RUN_ID` shows one
```

`delegate run` prints the run's output on stdout and, on stderr, its progress and a table of
every task's tokens, cost and time. A run that stops (Ctrl-C, a crash) finishes with
`delegate resume RUN_ID`; what was done is not done again.

## Change it

- **Models**: any model litellm knows, such as `anthropic/claude-haiku-4-5` (its key:
  `ANTHROPIC_API_KEY`), or a local one such as `ollama/llama3.2` (give it a price, even a
  zero one: `prices: {ollama/llama3.2: [0, 0]}`). `delegate validate` names an unknown model
  and the closest one it knows.
- **Budget**: `budget: {usd: ..., seconds: ...}` bounds the whole run; a call that would go over
  is refused before it is sent.
- **Tests**: when you change the workflow, change the fakes' answers and the expected output in
  `test_workflow.py`, and add a test for each case that matters to you.
"""


@dataclass(frozen=True, slots=True)
class _Starter:
    """One kind of starter: its workflow and tests, and how the README and `init` describe it."""

    workflow: str
    test: str
    parts: str  # what the README says the workflow is made of
    example_input: str  # an `-i` for the README and the next commands
    summary: str  # what `init` says the workflow is


_STARTERS = {
    False: _Starter(
        _STEPS_WORKFLOW,
        _STEPS_TEST,
        parts="steps (each after the steps it `needs`)",
        example_input='topic="solar roofs"',
        summary="4 steps",
    ),
    True: _Starter(
        _PLANNER_WORKFLOW,
        _PLANNER_TEST,
        parts="planner, workers, goal",
        example_input='question="Is a four-day week worth it?"',
        summary="planner mode",
    ),
}


def _files(name: str, starter: _Starter) -> dict[str, str]:
    """The starter's files by name, in the order they are written, with `name` (a valid
    workflow name) as the workflow's name."""
    import json

    from delegate.workflows import workflow_json_schema

    readme = _README.replace("__SHAPE__", starter.parts).replace("__INPUT__", starter.example_input)
    return {
        WORKFLOW_FILE: starter.workflow.replace(_NAME, _yaml_string(name)),
        SCHEMA_FILE: json.dumps(workflow_json_schema(), indent=2, ensure_ascii=False) + "\n",
        TEST_FILE: starter.test,
        README_FILE: readme.replace(_NAME, name),
    }


def _yaml_string(text: str) -> str:
    """`text` as a YAML scalar that reads back as this string: quoted when YAML would read it
    plainly as something else (`2026`, `true`, `null`, `0x1f`, `no`)."""
    import json

    import yaml

    return text if yaml.safe_load(text) == text else json.dumps(text)


# --- the command -------------------------------------------------------------------------------


def _slug(text: str) -> str:
    """`text` made a workflow name: lowercase, runs of other characters as one `-`."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).lstrip("-_")[:100].rstrip("-")
    return slug or _DEFAULT_NAME


def _check_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from delegate.workflows.spec import WORKFLOW_NAME

    if value is None or re.fullmatch(WORKFLOW_NAME, value):
        return value
    raise click.BadParameter(
        f"{value!r} is not a workflow name: 1 to 100 lowercase letters, digits, '-' and '_', "
        f"starting with a letter or digit; try --name {_slug(value)}"
    )


def _place(directory: Path) -> str:
    return "this folder" if directory == Path() else shlex.quote(str(directory))


def _write(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file beside it: a symlink at `path` is
    replaced, never followed, and a half-written file is never left under the name."""
    # Opened with "x" (not mkstemp, which makes it private): the file gets the umask's mode.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with temporary.open("x", encoding="utf-8", newline="\n") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _report(directory: Path, starter: _Starter, overwritten: list[str]) -> None:
    click.echo(f"wrote {len(FILES)} files in {_place(directory)}:")
    described = {
        WORKFLOW_FILE: f"the workflow ({starter.summary}, a budget)",
        SCHEMA_FILE: "its JSON Schema, for editors",
        TEST_FILE: "pytest tests that run it on fake models",
        README_FILE: "what these files are and how to run them",
    }
    for file in FILES:
        note = " (overwritten)" if file in overwritten else ""
        click.echo(f"  {file:<22}{described[file]}{note}")
    click.echo("next:")
    lines = [] if directory == Path() else [f"cd {shlex.quote(str(directory))}"]
    lines += [
        f"delegate validate {WORKFLOW_FILE}",
        f"delegate run {WORKFLOW_FILE} --simulate    # simulated models: no API key, nothing sent",
        f"pytest {TEST_FILE}",
        f"delegate run {WORKFLOW_FILE} -i {starter.example_input}"
        "    # real models: needs OPENAI_API_KEY",
    ]
    for line in lines:
        click.echo(f"  {line}")


@click.command("init")
@click.argument(
    "directory",
    default=".",
    metavar="[DIR]",
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option(
    "--name",
    callback=_check_name,
    help="The workflow's name (lowercase letters, digits, '-', '_'). Default: DIR's name.",
)
@click.option(
    "--planner",
    is_flag=True,
    help="A planner-mode starter: a reasoning model plans, workers carry out the tasks.",
)
@click.option("--force", is_flag=True, help="Overwrite the starter's files where they exist.")
def init_command(directory: Path, name: str | None, planner: bool, force: bool) -> None:
    """Start a project in DIR (default: here, created when missing): a workflow, its JSON
    Schema for editors, a README and pytest tests that run the workflow on fake models.

    The workflow validates and runs at once, with no API key: `delegate run workflow.yaml
    --simulate`. Existing files are left alone (exit status 2) unless --force.
    """
    from delegate.errors import ConfigError

    starter = _STARTERS[planner]
    files = _files(name or _slug(directory.resolve().name), starter)
    existing = [file for file in files if os.path.lexists(directory / file)]
    if existing and not force:
        raise ConfigError(
            f"{_place(directory)} already has {', '.join(existing)}; nothing was written. "
            "Pass --force to overwrite them, or give another DIR"
        )
    folders = [f for f in existing if (directory / f).is_dir() and not (directory / f).is_symlink()]
    if folders:  # checked first: --force never stops half-way for one of them
        paths = ", ".join(shlex.quote(str(directory / folder)) for folder in folders)
        raise ConfigError(
            f"{paths}: a folder where the starter writes a file; nothing was written. "
            "Move it away, or give another DIR"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for file, text in files.items():
            _write(directory / file, text)
    except OSError as exc:
        problem = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"cannot write the starter into {_place(directory)}: {exc.filename or directory}: "
            f"{problem}"
        ) from exc
    _report(directory, starter, existing)
