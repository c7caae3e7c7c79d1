"""Running workflow files: static steps, fan-out, conditions, plan steps, planner mode, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from delegate import Agent
from delegate.errors import ConfigError
from delegate.testing import FunctionModel
from delegate.workflows.loader import load_workflow, load_workflow_text
from delegate.workflows.runtime import (
    compile_workflow,
    parse_inputs,
    preview_workflow,
    resume_workflow,
    run_workflow,
)

pytestmark = pytest.mark.anyio

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
SAMPLE_INPUTS = {
    "market-brief": ["market=home batteries"],
    "research-planner": ["question=Is fusion power close?"],
    "due-diligence": ["company=Acme", "depth=deep"],
}

FANOUT = """
name: fanout
inputs:
  topic: {type: string}
  deep: {type: boolean, default: false}
agents:
  scout: {model: openai/gpt-4o-mini}
  editor: {model: openai/gpt-4o-mini}
steps:
  - id: angles
    agent: scout
    prompt: "Name angles of {{ inputs.topic }}."
    output:
      type: object
      properties: {angles: {type: array, items: {type: string}, minItems: 2, maxItems: 2}}
      required: [angles]
  - id: dig
    agent: scout
    foreach: "{{ steps.angles.output.angles }}"
    prompt: "Research {{ item }} ({{ loop.index }} of {{ loop.length }})."
  - id: extra
    agent: scout
    when: "{{ inputs.deep }}"
    prompt: "Go deeper on {{ inputs.topic }}."
  - id: brief
    agent: editor
    needs: [dig, extra]
    prompt: "Write the brief. Extra: {{ steps.extra.output }}"
output: brief
"""


def _compile(text: str, tmp_path: Path, **options: Any) -> Any:
    loaded = load_workflow_text(text, str(tmp_path / "wf.yaml"))
    options.setdefault("db", f"sqlite:///{tmp_path / 'runs.db'}")
    options.setdefault("time_scale", 0.0)
    return compile_workflow(loaded, simulate=True, text=text, **options)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
async def test_every_shipped_config_runs_simulated(path: Path, tmp_path: Path) -> None:
    loaded = load_workflow(path)
    compiled = compile_workflow(
        loaded, simulate=True, time_scale=0.0, db=f"sqlite:///{tmp_path / 'r.db'}"
    )
    inputs = parse_inputs(loaded.spec, SAMPLE_INPUTS[path.stem])
    result = await run_workflow(compiled, inputs)

    assert result.status == "succeeded", result.error
    assert result.output
    assert result.usage.calls >= 2
    assert result.usage.cost_usd > 0  # real prices, simulated tokens
    budget = loaded.spec.budget
    if budget is not None and budget.usd is not None:
        assert result.usage.cost_usd <= budget.usd


async def test_fan_out_makes_one_task_per_item_and_gathers_them(tmp_path: Path) -> None:
    compiled = _compile(FANOUT, tmp_path)
    result = await run_workflow(compiled, {"topic": "tides", "deep": False})

    assert result.status == "succeeded"
    assert list(result.tasks) == ["angles", "extra", "dig[0]", "dig[1]", "dig", "brief"]
    assert result.tasks["dig"].output == [
        result.tasks["dig[0]"].output,
        result.tasks["dig[1]"].output,
    ]
    assert result.tasks["dig[0]"].deps == ()  # the item carries what it needs
    # `when` false: skipped, and the step that needs it still ran, seeing null.
    assert result.tasks["extra"].status == "skipped"
    assert result.tasks["extra"].error == "when: {{ inputs.deep }} is false"
    assert result.output == result.tasks["brief"].output
    brief = compiled.agents["editor"].model.requests[-1].messages[-1]["content"]
    assert "Write the brief. Extra: None" in brief
    assert "## Result of step 'dig'" in brief  # needed, not named: given as labelled context
    angles = result.tasks["angles"].output.angles
    item_prompt = compiled.agents["scout"].model.requests[1].messages[-1]["content"]
    assert item_prompt == f"Research {angles[0]} (1 of 2)."


async def test_a_true_condition_runs_the_step(tmp_path: Path) -> None:
    compiled = _compile(FANOUT, tmp_path)
    result = await run_workflow(compiled, {"topic": "tides", "deep": True})
    assert result.tasks["extra"].status == "succeeded"


async def test_a_foreach_that_is_not_a_list_fails_the_step_and_skips_its_dependents(
    tmp_path: Path,
) -> None:
    text = FANOUT.replace(
        'foreach: "{{ steps.angles.output.angles }}"',
        'foreach: "{{ steps.angles.output.angles[0] }}"',
    )
    compiled = _compile(text, tmp_path)
    result = await run_workflow(compiled, {"topic": "tides", "deep": False})

    assert result.status == "partial"
    assert result.tasks["dig"].status == "failed"
    assert result.tasks["dig"].error == (
        "step 'dig': foreach: '{{ steps.angles.output.angles[0] }}' gave a str, not a list"
    )
    assert result.tasks["brief"].status == "skipped"
    assert result.output is None


PLAN_STEP = """
name: planned-step
inputs:
  company: {type: string}
agents:
  boss: {model: openai/o4-mini, reasoning_effort: low}
  scout: {model: openai/gpt-4o-mini, description: Quick research.}
steps:
  - id: profile
    agent: scout
    prompt: "Profile {{ inputs.company }}."
  - id: study
    kind: plan
    planner: boss
    workers: [scout]
    goal: "Study the risks of {{ inputs.company }} given {{ steps.profile.output }}"
  - id: memo
    agent: scout
    prompt: "Write the memo from {{ steps.study.output }}."
"""


async def test_a_plan_step_is_planned_run_and_answered_inside_the_workflow(
    tmp_path: Path,
) -> None:
    compiled = _compile(PLAN_STEP, tmp_path)
    result = await run_workflow(compiled, {"company": "Acme"}, run_id="p1")

    assert result.status == "succeeded"
    planned = [t for t in result.tasks if t not in ("profile", "study.plan", "study", "memo")]
    assert planned  # the planner's tasks ran as tasks of the workflow
    assert result.tasks["study"].agent == "boss"  # the planner's model wrote the step's output
    assert set(result.tasks["study"].deps) == {"profile", *planned}
    assert result.tasks["memo"].status == "succeeded"
    boss = compiled.agents["boss"].model
    plan_requests = [r for r in boss.requests if r.output_name == "Plan"]
    assert len(plan_requests) == 1
    assert "- profile: " in plan_requests[0].messages[0]["content"]  # the finished step

    # The planning is a task of its own: the boss's one planning call, its tokens and cost.
    planning = result.tasks["study.plan"]
    assert (planning.status, planning.agent, planning.model) == (
        "succeeded",
        "boss",
        "openai/o4-mini",
    )
    assert planning.usage.calls == 1
    assert planning.output == {
        "tasks": planned,
        "synthesis_note": planning.output["synthesis_note"],
    }
    # Every call is in a task: the tasks add up to the run, and the boss's two calls (the
    # plan and the step's answer) are the planner's role.
    assert sum(t.usage.calls for t in result.tasks.values()) == result.usage.calls
    assert sum(t.usage.total_tokens for t in result.tasks.values()) == (
        result.usage.input_tokens + result.usage.output_tokens
    )
    assert result.usage.by_role["planner"] == result.usage.by_agent["boss"]
    assert result.usage.by_role["planner"].calls == 2

    # Resuming the finished run plans nothing again and calls no model; what the run spent,
    # the planning included, is restored.
    again = await resume_workflow("p1", db=f"sqlite:///{tmp_path / 'runs.db'}")
    assert again.status == "succeeded"
    assert boss.calls == 2
    assert again.usage.calls == result.usage.calls
    assert again.usage.cost_usd == pytest.approx(result.usage.cost_usd)
    assert again.usage.by_role["planner"].calls == 2
    assert list(again.tasks) == list(result.tasks)


async def test_a_plan_step_without_a_valid_plan_fails_its_planning_and_skips_the_step(
    tmp_path: Path,
) -> None:
    compiled = _compile(PLAN_STEP, tmp_path)
    confused = FunctionModel(lambda request: "no plan here", name="openai/o4-mini")
    compiled.agents["boss"] = Agent("boss", confused)

    result = await run_workflow(compiled, {"company": "Acme"}, run_id="bad-plan")

    planning = result.tasks["study.plan"]
    assert (planning.status, planning.agent, planning.usage.calls) == ("failed", "boss", 2)
    assert planning.error is not None
    assert planning.error.startswith("step 'study': plan: ")
    assert (result.tasks["study"].status, result.tasks["study"].error) == (
        "skipped",
        "dependency 'study.plan' failed",
    )
    assert result.tasks["memo"].status == "skipped"
    assert result.status == "partial"
    assert result.error == f"1 of 4 tasks failed: task 'study.plan' failed: {planning.error}"
    assert result.usage.by_role["planner"].calls == 2  # the failed attempts are paid for


async def test_resume_finishes_an_interrupted_run_without_redoing_finished_steps(
    tmp_path: Path,
) -> None:
    scope = anyio.CancelScope()

    def interrupt(event: Any) -> None:  # once the fan-out's first item has started
        if event.kind == "task_started" and event.task_id == "dig[0]":
            scope.cancel()

    text = FANOUT.replace("name: fanout", "name: fanout\nmax_concurrency: 1")
    compiled = _compile(text, tmp_path, time_scale=0.01, on_event=interrupt)
    with scope:
        await run_workflow(compiled, {"topic": "tides"}, run_id="r1")
    assert scope.cancelled_caught

    db = f"sqlite:///{tmp_path / 'runs.db'}"
    result = await resume_workflow("r1", db=db)
    assert result.status == "succeeded"
    assert result.tasks["angles"].attempts == 1
    from delegate.memory.store import Store

    with Store.open(db) as store:
        started = [e.data["task_id"] for e in store.get_events("r1") if e.kind == "task_started"]
    assert started.count("angles") == 1  # not run again on resume
    assert started.count("dig[0]") == 2  # interrupted, then run on resume
    assert started.count("brief") == 1


async def test_planner_mode_runs_as_a_planned_run_and_resumes(tmp_path: Path) -> None:
    path = next(p for p in CONFIGS if p.stem == "research-planner")
    text = path.read_text()
    compiled = _compile(text, tmp_path)
    inputs = parse_inputs(compiled.spec, ["question=Why is the sky blue?"])
    result = await run_workflow(compiled, inputs, run_id="pm")

    assert result.status == "succeeded"
    assert result.goal is not None
    assert "Why is the sky blue?" in result.goal
    assert len(result.plans) == 1
    again = await resume_workflow("pm", db=f"sqlite:///{tmp_path / 'runs.db'}")
    assert again.status == "succeeded"
    assert len(again.plans) == 1


async def test_preview_lists_tasks_with_an_estimate_and_runs_nothing(tmp_path: Path) -> None:
    compiled = _compile(FANOUT, tmp_path)
    preview = await preview_workflow(compiled, {"topic": "tides", "deep": True})

    ids = [task[0] for task in preview.tasks]
    assert ids == ["angles", "dig[0]", "dig[1]", "dig[2]", "dig", "extra", "brief"]
    assert preview.estimate.usd is not None
    assert preview.estimate.usd > 0
    assert preview.plan is None
    assert compiled.agents["scout"].model.calls == 0


def test_inputs_are_typed_checked_and_defaulted() -> None:
    spec = load_workflow_text(FANOUT, "wf.yaml").spec
    assert parse_inputs(spec, ["topic=tides"]) == {"topic": "tides", "deep": False}
    assert parse_inputs(spec, ["topic=a=b", "deep=yes"]) == {"topic": "a=b", "deep": True}
    with pytest.raises(ConfigError) as caught:
        parse_inputs(spec, ["topik=tides", "deep=maybe"])
    message = str(caught.value)
    assert "workflow 'fanout' has no input 'topik' (did you mean 'topic'?)" in message
    assert "input 'deep': 'maybe' is not a valid boolean" in message
    assert "input 'topic' is required: pass -i topic=..." in message


def test_inputs_from_a_file(tmp_path: Path) -> None:
    spec = load_workflow_text(FANOUT, "wf.yaml").spec
    file = tmp_path / "in.json"
    file.write_text(json.dumps({"topic": "tides", "deep": True}))
    assert parse_inputs(spec, ["deep=false"], file) == {"topic": "tides", "deep": False}
    file.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold a mapping of input names"):
        parse_inputs(spec, [], file)


async def test_a_step_budget_holds_for_steps_added_while_the_run_goes(tmp_path: Path) -> None:
    text = """
name: capped
agents:
  scout: {model: openai/gpt-4o-mini}
steps:
  - id: only
    agent: scout
    prompt: "Write a long essay."
    budget: {calls: 0}
"""
    result = await run_workflow(_compile(text, tmp_path), {})
    task = result.tasks["only"]
    assert task.status == "failed"
    assert task.usage.calls == 0
    assert task.error is not None
    assert task.error.startswith("budget of 0 calls for task 'only' would be exceeded")


async def test_an_error_in_a_condition_fails_its_step_and_the_run_is_stored_ended(
    tmp_path: Path,
) -> None:
    text = """
name: divide
inputs:
  n: {type: integer}
agents:
  scout: {model: openai/gpt-4o-mini}
steps:
  - id: first
    agent: scout
    prompt: "Go."
  - id: maybe
    agent: scout
    needs: [first]
    when: "{{ 10 / inputs.n > 1 }}"
    prompt: "Maybe."
"""
    result = await run_workflow(_compile(text, tmp_path), {"n": 0}, run_id="z")
    assert result.status == "partial"
    assert result.tasks["maybe"].error == (
        "step 'maybe': when: ZeroDivisionError: division by zero"
    )
    from delegate.memory.store import Store

    with Store.open(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        record = store.get_run("z")
    assert record is not None
    assert record.status == "partial"


async def test_a_condition_that_reads_a_missing_field_fails_its_step(tmp_path: Path) -> None:
    text = """
name: missing
agents:
  scout: {model: openai/gpt-4o-mini}
steps:
  - id: first
    agent: scout
    prompt: "Go."
    output:
      type: object
      properties: {notes: {type: object}}
      required: [notes]
  - id: maybe
    agent: scout
    needs: [first]
    when: "{{ steps.first.output.notes.verdict }}"
    prompt: "Maybe."
  - id: after
    agent: scout
    needs: [maybe]
    prompt: "Then."
"""
    result = await run_workflow(_compile(text, tmp_path), {})

    # The model's notes have no `verdict`: the expression fails, its step with it, not the run.
    assert result.status == "partial"
    maybe = result.tasks["maybe"]
    assert maybe.status == "failed"
    assert maybe.error is not None
    assert maybe.error.startswith("step 'maybe': when: ")
    assert "verdict" in maybe.error
    assert result.tasks["after"].status == "skipped"


async def test_a_bug_while_adding_steps_ends_the_run_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from delegate.memory.store import Store
    from delegate.workflows._driver import WorkflowRun

    def broken(self: WorkflowRun, scheduler: object) -> dict[str, Any]:
        raise KeyError("a bug in the driver")

    monkeypatch.setattr(WorkflowRun, "_names", broken)
    with pytest.raises(KeyError, match="a bug in the driver"):
        await run_workflow(_compile(FANOUT, tmp_path), {"topic": "tides"}, run_id="bug")

    with Store.open(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        record = store.get_run("bug")
    assert record is not None
    assert record.status == "interrupted"
    assert record.error == "the run stopped on an error: KeyError: 'a bug in the driver'"


async def test_a_preview_guesses_the_size_of_a_fan_out_over_no_list(tmp_path: Path) -> None:
    text = FANOUT.replace(
        'foreach: "{{ steps.angles.output.angles }}"', 'foreach: "{{ inputs.topic | trim }}"'
    )
    preview = await preview_workflow(_compile(text, tmp_path), {"topic": "tides"})

    # A str is no list (the run fails the step): not one task per character.
    ids = [task[0] for task in preview.tasks]
    assert [i for i in ids if i.startswith("dig[")] == ["dig[0]", "dig[1]", "dig[2]"]


async def test_the_auto_call_guard_grows_with_the_tasks_a_run_adds(tmp_path: Path) -> None:
    text = """
name: many
inputs:
  things: {type: array}
agents:
  scout: {model: openai/gpt-4o-mini, votes: 3}
steps:
  - id: each
    agent: scout
    foreach: "{{ inputs.things }}"
    prompt: "Say something about {{ item }}."
"""
    result = await run_workflow(_compile(text, tmp_path), {"things": list(range(200))})
    assert result.status == "succeeded"
    assert result.usage.calls == 600  # more than the 500 a run starts with
    assert result.usage.refused == 0


@pytest.mark.parametrize(
    ("graph", "says"),
    [
        ({"version": 2, "tasks": []}, "did not come from a workflow file"),
        ({"version": 2, "workflow": {"text": "x", "seed": "many"}}, "seed"),
        ({"version": 2, "workflow": {"text": "x", "time_scale": -1}}, "time_scale"),
        ({"version": 2, "workflow": "not an object"}, "workflow"),
        ({"version": 9}, "version"),
    ],
)
async def test_a_stored_workflow_that_cannot_be_read_back_is_refused_with_the_reason(
    tmp_path: Path, graph: dict[str, Any], says: str
) -> None:
    from delegate.memory import Store
    from delegate.memory.records import RunRecord

    db = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store.open(db)
    try:
        store.create_run(RunRecord(id="odd", graph=graph))
    finally:
        store.close()
    with pytest.raises(ConfigError, match=says):
        await resume_workflow("odd", db=db)
