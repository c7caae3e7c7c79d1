"""Approve a plan and its price: `run(goal, plan=approved)`, `Orchestrator(approve_plan=...)`,
`delegate plan --out`, `delegate run --plan` and `delegate run --approve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from delegate import Agent, Budget, ConfigError, Orchestrator
from delegate.agents.models import ModelRequest
from delegate.errors import PermanentModelError, PlanInvalid
from delegate.orchestrator.approval import MAX_PLAN_FILE_CHARS, ApprovedPlan, PlanProposal
from delegate.orchestrator.events import Event, TaskStarted
from delegate.orchestrator.planner import Plan
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio

GOAL = "Write a short report on bees."


def _task(id: str, agent: str = "scout", deps: tuple[str, ...] = (), **more: Any) -> dict[str, Any]:
    return {"id": id, "agent": agent, "instructions": f"Do {id}.", "deps": list(deps), **more}


FAN_OUT = {
    "tasks": [_task("facts"), _task("history"), _task("report", "writer", ("facts", "history"))],
    "synthesis_note": "Lead with the report.",
}


class Planning:
    """A fake reasoning model: answers plan requests from a list, anything else with "FINAL"."""

    def __init__(self, plans: list[Any]) -> None:
        self.plans = list(plans)
        self.plan_requests: list[ModelRequest] = []
        self.other_requests: list[ModelRequest] = []
        self.model = FunctionModel(self._respond, name="reasoner", input_price=1, output_price=4)

    def _respond(self, request: ModelRequest) -> str:
        if request.output_name == "Plan":
            self.plan_requests.append(request)
            return json.dumps(self.plans.pop(0))
        self.other_requests.append(request)
        return "FINAL"


class Workers:
    """The workers' fake model: records the tasks it was asked to do; fails those in `fail`."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.fail = fail or set()
        self.done: list[str] = []
        self.model = FunctionModel(self._respond, name="mini", input_price=0.15, output_price=0.6)

    def _respond(self, request: ModelRequest) -> str:
        prompt = str(request.messages[-1]["content"])
        task = prompt.rsplit("Do ", 1)[-1].split(".", 1)[0]
        self.done.append(task)
        if task in self.fail:
            raise PermanentModelError(f"cannot do {task}")
        return f"result of {task}"


def _orchestrator(
    planning: Planning, workers: Workers | None = None, **options: Any
) -> Orchestrator:
    model = (workers or Workers()).model
    options.setdefault("memory", None)
    return Orchestrator(
        planner=Agent("planner", planning.model),
        workers=[Agent("scout", model, description="Finds facts."), Agent("writer", model)],
        **options,
    )


# --- run(goal, plan=approved) ------------------------------------------------------------------


async def test_an_approved_plan_runs_exactly_with_no_planning_call() -> None:
    drafting = Planning([FAN_OUT])
    approved = await _orchestrator(drafting).draft(GOAL, {"topic": "bees"})
    assert len(drafting.plan_requests) == 1
    assert approved.goal == GOAL
    assert approved.inputs == {"topic": "bees"}
    assert approved.estimate is not None
    assert list(approved.estimate.tasks) == ["facts", "history", "report"]
    assert approved.estimate.usd is not None
    assert approved.estimate.usd > 0
    # A human drops a task and changes a prompt.
    edited = approved.plan.model_copy(
        update={
            "tasks": [
                approved.plan.tasks[0],
                approved.plan.tasks[2].model_copy(
                    update={"deps": ["facts"], "instructions": "Do summary."}
                ),
            ]
        }
    )
    document = ApprovedPlan.from_json(approved.model_copy(update={"plan": edited}).to_json())

    planning, workers = Planning([]), Workers()
    result = await _orchestrator(planning, workers).run(GOAL, plan=document)

    assert planning.plan_requests == []  # zero planning calls
    assert result.status == "succeeded"
    assert list(result.tasks) == ["facts", "report"]
    assert sorted(workers.done) == ["facts", "summary"]
    [revision] = result.plans
    assert (revision.approval, revision.attempts, revision.complete) == ("given", 0, True)
    assert revision.usage.calls == 0
    assert result.usage.by_role["planner"].calls == 1  # the final answer only
    assert len(planning.other_requests) == 1


async def test_a_failure_in_an_approved_plan_is_still_replanned() -> None:
    plan = Plan.model_validate({"tasks": [_task("facts"), _task("broken")]})
    replan = {"tasks": [_task("fixed", deps=("facts",))]}
    planning, workers = Planning([replan]), Workers(fail={"broken"})
    result = await _orchestrator(planning, workers).run(GOAL, plan=plan)

    assert len(planning.plan_requests) == 1  # the replan, not the first plan
    assert result.status == "succeeded"
    assert [(r.revision, r.reason, r.approval) for r in result.plans] == [
        (1, "goal", "given"),
        (2, "failures", None),
    ]
    assert result.tasks["fixed"].status == "succeeded"
    assert workers.done.count("facts") == 1


async def test_an_approved_plan_over_the_budget_does_not_run() -> None:
    planning, workers = Planning([]), Workers()
    plan = Plan.model_validate(FAN_OUT)
    orch = _orchestrator(planning, workers, budget=Budget(usd=0.0001))
    result = await orch.run(GOAL, plan=plan)

    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith("planning failed: the approved plan cannot run: the plan's ")
    assert "projected cost of $" in result.error
    assert planning.plan_requests == []
    assert workers.done == []
    assert result.usage.calls == 0


async def test_a_plan_for_another_goal_or_inputs_is_refused() -> None:
    approved = ApprovedPlan(goal=GOAL, inputs={"topic": "bees"}, plan=Plan.model_validate(FAN_OUT))
    orch = _orchestrator(Planning([]))
    with pytest.raises(ConfigError, match="the plan was made for the goal"):
        await orch.run("Another goal.", plan=approved)
    with pytest.raises(ConfigError, match=r"made with other inputs: 'topic' differ"):
        await orch.run(GOAL, {"topic": "wasps"}, plan=approved)
    with pytest.raises(ConfigError, match="made for the workflow 'a'"):
        await orch.run(GOAL, plan=approved.model_copy(update={"workflow": "a"}), workflow="b")
    with pytest.raises(ConfigError, match="plan must be an ApprovedPlan or a Plan, got dict"):
        await orch.run(GOAL, plan=FAN_OUT)  # type: ignore[arg-type]
    # The same inputs, however they are written, match: as JSON, (1, 2) is [1.0, 2].
    numbers = approved.model_copy(update={"inputs": {"topic": "bees", "sizes": [1.0, 2]}})
    result = await orch.run(GOAL, {"topic": "bees", "sizes": (1, 2)}, plan=numbers)
    assert result.status == "succeeded"


# --- Orchestrator(approve_plan=...) -----------------------------------------------------------


async def test_an_approved_proposal_runs_only_after_the_decision() -> None:
    seen: list[PlanProposal] = []
    events: list[Event] = []

    async def approve(proposal: PlanProposal) -> bool:
        seen.append(proposal)
        # Nothing has started while the human decides: the plan was not streamed.
        await anyio.wait_all_tasks_blocked()
        assert not any(isinstance(event, TaskStarted) for event in events)
        return True

    planning, workers = Planning([FAN_OUT]), Workers()
    orch = _orchestrator(planning, workers, approve_plan=approve, on_event=events.append)
    result = await orch.run(GOAL, {"topic": "bees"})

    assert result.status == "succeeded"
    [proposal] = seen
    assert (proposal.revision, proposal.reason, proposal.goal) == (1, "goal", GOAL)
    assert proposal.inputs == {"topic": "bees"}
    assert [t.id for t in proposal.plan.tasks] == ["facts", "history", "report"]
    assert proposal.usage.calls == 1
    assert list(proposal.estimate.tasks) == ["facts", "history", "report"]
    assert proposal.document().plan == proposal.plan
    assert len(planning.plan_requests) == 1
    assert sorted(workers.done) == ["facts", "history", "report"]
    assert result.plans[0].approval == "approved"


async def test_a_rejected_plan_ends_the_run_with_nothing_spent_beyond_planning() -> None:
    planning, workers = Planning([FAN_OUT]), Workers()
    orch = _orchestrator(planning, workers, approve_plan=lambda proposal: False)
    result = await orch.run(GOAL)

    assert result.status == "failed"
    assert result.error == "planning failed: the plan was rejected (approve_plan)"
    assert result.tasks == {}
    assert workers.done == []
    assert planning.other_requests == []  # no final answer either
    assert result.usage.calls == 1  # the one planning call
    assert result.usage.by_role["planner"].calls == 1
    [revision] = result.plans
    assert (revision.approval, revision.complete) == ("rejected", False)


async def test_an_edited_plan_is_checked_again_and_runs_as_edited() -> None:
    def edit(proposal: PlanProposal) -> Plan:
        first, _, last = proposal.plan.tasks
        assert proposal.problems(Plan(tasks=[first, last])) == [
            "task 'report' depends on 'history', which is not in the plan; depend only on "
            "tasks of this plan or finished tasks"
        ]
        return Plan(tasks=[first, last.model_copy(update={"deps": ["facts"]})])

    planning, workers = Planning([FAN_OUT]), Workers()
    result = await _orchestrator(planning, workers, approve_plan=edit).run(GOAL)

    assert result.status == "succeeded"
    assert list(result.tasks) == ["facts", "report"]
    assert sorted(workers.done) == ["facts", "report"]
    assert result.plans[0].approval == "edited"
    assert [t.id for t in result.plans[0].tasks] == ["facts", "report"]


async def test_an_edited_plan_with_a_cycle_does_not_run() -> None:
    def edit(proposal: PlanProposal) -> Plan:
        return Plan.model_validate({"tasks": [_task("a", deps=("b",)), _task("b", deps=("a",))]})

    planning, workers = Planning([FAN_OUT]), Workers()
    result = await _orchestrator(planning, workers, approve_plan=edit).run(GOAL)

    assert result.status == "failed"
    assert result.error == (
        "planning failed: the edited plan cannot run: tasks 'a' → 'b' → 'a' form a cycle "
        "(each depends on the next); remove one of these dependencies"
    )
    assert workers.done == []


async def test_every_replan_is_approved_too() -> None:
    plan = {"tasks": [_task("facts"), _task("broken")]}
    replan = {"tasks": [_task("fixed", deps=("facts",))]}
    seen: list[tuple[int, str, dict[str, str]]] = []

    def approve(proposal: PlanProposal) -> bool:
        seen.append((proposal.revision, proposal.reason, dict(proposal.failures)))
        return proposal.revision == 1  # the replan is rejected

    planning, workers = Planning([plan, replan]), Workers(fail={"broken"})
    result = await _orchestrator(planning, workers, approve_plan=approve).run(GOAL)

    assert seen == [(1, "goal", {}), (2, "failures", {"broken": "cannot do broken"})]
    assert len(planning.plan_requests) == 2
    assert "fixed" not in result.tasks
    assert result.status == "partial"  # facts succeeded; the answer is written from it
    assert result.error == ("replanning (revision 2) failed: the plan was rejected (approve_plan)")
    assert [r.approval for r in result.plans] == ["approved", "rejected"]


async def test_an_approver_that_returns_something_else_stops_planning() -> None:
    planning, workers = Planning([FAN_OUT]), Workers()
    orch = _orchestrator(planning, workers, approve_plan=lambda proposal: "yes")
    result = await orch.run(GOAL)

    assert result.status == "failed"
    assert result.error == (
        "planning stopped: approve_plan returned str; return True to run the plan, False to "
        "reject it, or an edited Plan"
    )
    assert workers.done == []


def test_approve_plan_must_be_callable() -> None:
    with pytest.raises(ConfigError, match="approve_plan must be a callable taking a PlanProposal"):
        Orchestrator(approve_plan="yes", memory=None)  # type: ignore[arg-type]


def test_the_sync_twin_runs_an_approved_plan() -> None:
    planning, workers = Planning([]), Workers()
    plan = Plan.model_validate(FAN_OUT)
    result = _orchestrator(planning, workers).run_sync(GOAL, plan=plan)
    assert result.status == "succeeded"
    assert planning.plan_requests == []
    assert sorted(workers.done) == ["facts", "history", "report"]


async def test_a_resumed_approved_plan_is_not_planned_again(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    plan = Plan.model_validate({"tasks": [_task("facts"), _task("broken")]})
    first = Workers(fail={"broken"})
    orch = _orchestrator(Planning([]), first, memory=db, max_replans=0)
    async with orch:
        stored = await orch.run(GOAL, plan=plan, run_id="r1")
    assert stored.status == "partial"

    planning, workers = Planning([]), Workers()
    async with _orchestrator(planning, workers, memory=db, max_replans=0) as again:
        result = await again.resume("r1")
    assert planning.plan_requests == []
    assert workers.done == ["broken"]  # facts finished before; the plan's other task runs
    assert result.status == "succeeded"
    assert result.plans[0].approval == "given"


# --- hostile plan documents -------------------------------------------------------------------


def _document(**plan: Any) -> str:
    return json.dumps({"version": 1, "goal": GOAL, "inputs": {}, "plan": plan})


async def test_hostile_plans_are_refused_with_the_task_and_the_remedy() -> None:
    orch = _orchestrator(Planning([]))
    unknown = ApprovedPlan.from_json(_document(tasks=[_task("a", agent="scot")]))
    with pytest.raises(PlanInvalid) as caught:
        await orch.run(GOAL, plan=unknown)
    assert caught.value.errors == [
        "task 'a' uses agent 'scot', which is not a worker (did you mean 'scout'?); use one "
        "of: scout, writer"
    ]
    assert str(caught.value).startswith("the approved plan cannot run: task 'a' uses agent")

    cyclic = ApprovedPlan.from_json(
        _document(tasks=[_task("a", deps=("b",)), _task("b", deps=("a",))])
    )
    with pytest.raises(PlanInvalid, match="'a' → 'b' → 'a' form a cycle"):
        await orch.run(GOAL, plan=cyclic)

    many = ApprovedPlan.from_json(_document(tasks=[_task(f"t{n}") for n in range(500)]))
    with pytest.raises(PlanInvalid) as caught:
        await orch.run(GOAL, plan=many)
    assert caught.value.errors == [
        "the plan has 500 tasks, more than max_tasks=20; merge related tasks so there are at "
        "most 20"
    ]


def test_a_huge_or_malformed_document_is_refused() -> None:
    huge = _document(tasks=[_task("a", instructions="x" * MAX_PLAN_FILE_CHARS)])
    with pytest.raises(
        ConfigError,
        match=r"plan.json is 1,000,153 characters long, more than the limit of 1,000,000; write it",
    ):
        ApprovedPlan.from_json(huge, source="plan.json")
    with pytest.raises(ConfigError, match="nested more than"):
        ApprovedPlan.from_json("[" * 10_000, source="plan.json")
    with pytest.raises(
        ConfigError, match=r"plan\.json has version 2; this delegate reads version 1"
    ):
        ApprovedPlan.from_json(json.dumps({"version": 2}), source="plan.json")
    with pytest.raises(ConfigError) as caught:
        ApprovedPlan.from_json(
            _document(tasks=[{"id": "a", "agnet": "scout", "instructions": "x"}]),
            source="plan.json",
        )
    assert str(caught.value) == (
        "plan.json is not a valid plan document: task 1 ('a'): agent: Field required; "
        "task 1 ('a'): unknown key 'agnet'; remove it"
    )


# --- the command: plan --out, run --plan, run --approve ---------------------------------------

ROOT = Path(__file__).resolve().parent.parent
PLANNER_FILE = ROOT / "configs" / "research-planner.yaml"
STATIC_FILE = ROOT / "configs" / "market-brief.yaml"


def _delegate(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DELEGATE_HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("DELEGATE_DB_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "delegate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_a_plan_written_edited_and_run_runs_exactly_as_edited(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    planned = _delegate(
        tmp_path, "plan", str(PLANNER_FILE), "--simulate", "-i", "question=bees", "--out", str(out)
    )
    assert planned.returncode == 0, planned.stderr
    assert f"plan written to {out}: run it with `delegate run FILE --plan {out}`" in planned.stderr
    document = json.loads(out.read_text())
    assert document["version"] == 1
    assert document["workflow"] == "research-planner"
    assert document["inputs"] == {"question": "bees", "audience": "a technical reader"}
    assert document["goal"] == "Answer this question for a technical reader: bees"
    first, *middle, last = document["plan"]["tasks"]
    assert middle  # the simulated planner plans at least three tasks
    assert set(document["estimate"]) >= {"input_tokens", "output_tokens", "usd", "seconds"}
    assert set(document["estimate"]["tasks"]) == {first["id"], last["id"]} | {
        task["id"] for task in middle
    }
    # The human drops the tasks in the middle and rewrites the last.
    last |= {"deps": [first["id"]], "instructions": "Write the answer from the first only."}
    document["plan"]["tasks"] = [first, last]
    out.write_text(json.dumps(document))

    ran = _delegate(tmp_path, "run", str(PLANNER_FILE), "--simulate", "--plan", str(out), "--json")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["status"] == "succeeded"
    assert list(result["tasks"]) == [first["id"], last["id"]]
    assert result["tasks"][last["id"]]["deps"] == [first["id"]]
    [revision] = result["plans"]
    assert revision["approval"] == "given"
    assert revision["usage"]["calls"] == 0  # no planning call
    assert revision["tasks"][1]["instructions"] == "Write the answer from the first only."
    # The planner's model answered only the goal check and the final answer.
    assert result["usage"]["by_role"]["planner"]["calls"] == 2

    shown = _delegate(tmp_path, "show", result["run_id"], "--json")
    assert shown.returncode == 0, shown.stderr
    stored = json.loads(shown.stdout)
    assert list(stored["tasks"]) == [first["id"], last["id"]]


def test_a_plan_for_other_inputs_or_another_workflow_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    planned = _delegate(
        tmp_path, "plan", str(PLANNER_FILE), "--simulate", "-i", "question=bees", "--out", str(out)
    )
    assert planned.returncode == 0, planned.stderr

    other = _delegate(
        tmp_path, "run", str(PLANNER_FILE), "--simulate", "--plan", str(out), "-i", "question=wasps"
    )
    assert other.returncode == 2
    assert other.stderr == (
        "Error: the plan was made with other inputs: 'question' differ; give the inputs it was "
        "made with (or none, to use them), or plan again with these\n"
    )
    same = _delegate(
        tmp_path, "run", str(PLANNER_FILE), "--simulate", "--plan", str(out), "-i", "question=bees"
    )
    assert same.returncode == 0, same.stderr

    static = _delegate(tmp_path, "run", str(STATIC_FILE), "--simulate", "--plan", str(out))
    assert static.returncode == 2
    assert static.stderr == (
        "Error: the plan file was made for the workflow 'research-planner', not 'market-brief'; "
        "make one for this workflow with `delegate plan FILE --out PLAN`\n"
    )


def invoke(*args: str, input: str | None = None) -> Any:
    from click.testing import CliRunner

    from delegate.cli import main

    return CliRunner().invoke(main, list(args), prog_name="delegate", input=input)


def test_plan_out_needs_a_planner(tmp_path: Path) -> None:
    result = invoke(
        "plan", str(STATIC_FILE), "--simulate", "-i", "market=tea", "--out", str(tmp_path / "p")
    )
    assert result.exit_code == 2
    assert "workflow 'market-brief' has no planner: its steps are the plan" in result.stderr
    assert not (tmp_path / "p").exists()


def test_a_hostile_plan_file_is_refused_before_the_run(tmp_path: Path) -> None:
    goal = "Answer this question for a technical reader: bees"
    inputs = {"question": "bees", "audience": "a technical reader"}
    cyclic = tmp_path / "cyclic.json"
    tasks = [
        {"id": "a", "agent": "researcher", "instructions": "x", "deps": ["b"]},
        {"id": "b", "agent": "writer", "instructions": "y", "deps": ["a"]},
    ]
    cyclic.write_text(
        json.dumps({"version": 1, "goal": goal, "inputs": inputs, "plan": {"tasks": tasks}})
    )
    result = invoke("run", str(PLANNER_FILE), "--simulate", "--plan", str(cyclic))
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: the approved plan cannot run: task 'b' uses agent 'writer', which is not a "
        "worker; use one of: researcher, analyst; tasks 'a' → 'b' → 'a' form a cycle (each "
        "depends on the next); remove one of these dependencies. Fix the plan (or plan again)\n"
    )
    huge = tmp_path / "huge.json"
    huge.write_text(" " * (4 * MAX_PLAN_FILE_CHARS + 1))
    result = invoke("run", str(PLANNER_FILE), "--simulate", "--plan", str(huge))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: cannot read the plan file {str(huge)!r}: ")


def test_approve_without_a_terminal_is_a_usage_error() -> None:
    result = invoke("run", str(PLANNER_FILE), "--simulate", "--approve", "-i", "question=x")
    assert result.exit_code == 2
    assert result.stderr.endswith(
        "Error: --approve asks on a terminal, and stdin is not one; approve the plan ahead "
        "instead: `delegate plan FILE --out plan.json`, read or edit plan.json, then "
        "`delegate run FILE --plan plan.json`\n"
    )


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("delegate.cli._approve.stdin_is_terminal", lambda: True)


@pytest.mark.usefixtures("terminal")
def test_approve_yes_runs_the_plan_shown() -> None:
    result = invoke(
        "run",
        str(PLANNER_FILE),
        "--simulate",
        "--approve",
        "-i",
        "question=x",
        "--json",
        input="y\n",
    )
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    tasks = document["plans"][0]["tasks"]
    assert list(document["tasks"]) == [task["id"] for task in tasks]
    assert f"research-planner: {len(tasks)} tasks, waiting for your approval" in result.stderr
    assert "estimate per task" in result.stderr
    assert result.stderr.count("Run this plan? [y]es / [n]o / [e]dit: ") == 1
    assert document["plans"][0]["approval"] == "approved"


@pytest.mark.usefixtures("terminal")
def test_approve_no_rejects_the_plan_and_nothing_runs() -> None:
    result = invoke(
        "run",
        str(PLANNER_FILE),
        "--simulate",
        "--approve",
        "-i",
        "question=x",
        "--json",
        input="n\n",
    )
    assert result.exit_code == 1
    assert result.stderr.endswith("plan rejected: none of its tasks ran\n")
    document = json.loads(result.stdout)
    assert document["status"] == "failed"
    assert document["tasks"] == {}
    assert document["usage"]["by_role"]["planner"]["calls"] == 1  # the plan, nothing more
    assert document["plans"][0]["approval"] == "rejected"


@pytest.mark.usefixtures("terminal")
def test_approve_edit_checks_the_edit_and_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    edits: list[str] = []

    def edit(text: str, **options: Any) -> str:
        plan = json.loads(text)
        if not edits:  # first a mistake, then a good edit
            plan["tasks"][0]["agent"] = "resercher"
        else:
            plan["tasks"] = [plan["tasks"][0] | {"agent": "researcher"}]
        edits.append(text)
        return json.dumps(plan)

    monkeypatch.setattr("click.edit", edit)
    result = invoke(
        "run",
        str(PLANNER_FILE),
        "--simulate",
        "--approve",
        "-i",
        "question=x",
        "--json",
        input="e\ny\ny\n",  # edit; edit again after the mistake; run the edited plan
    )
    assert result.exit_code == 0, result.stderr
    assert (
        "the edited plan cannot run:\n  - task 'part_1' uses agent 'resercher', which is not a "
        "worker (did you mean 'researcher'?); use one of: researcher, analyst\n"
    ) in result.stderr
    assert "research-planner: 1 task, waiting for your approval" in result.stderr
    assert len(edits) == 2
    document = json.loads(result.stdout)
    assert list(document["tasks"]) == ["part_1"]
    assert document["plans"][0]["approval"] == "edited"
