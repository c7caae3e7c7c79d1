"""Planned runs: `Orchestrator.run(goal)` plans, streams tasks to workers, replans, answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from delegate import Agent, Budget, ConfigError, Orchestrator
from delegate.agents.models import ModelRequest
from delegate.errors import PermanentModelError
from delegate.orchestrator.events import Event
from delegate.orchestrator.planner import Planner
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio

GOAL = "Write a short report on bees."


def _task(id: str, agent: str = "scout", deps: tuple[str, ...] = (), **more: Any) -> dict[str, Any]:
    return {"id": id, "agent": agent, "instructions": f"Do {id}.", "deps": list(deps), **more}


FAN_OUT = {
    "tasks": [
        _task("facts"),
        _task("history"),
        _task("report", "writer", ("facts", "history")),
    ],
    "synthesis_note": "Lead with the report.",
}


class Planning:
    """A fake reasoning model: answers plan requests from a list, anything else by `answer`."""

    def __init__(
        self,
        plans: list[Any],
        *,
        answer: Callable[[ModelRequest], Any] | None = None,
        **options: Any,
    ) -> None:
        self.plans = list(plans)
        self.plan_requests: list[ModelRequest] = []
        self.other_requests: list[ModelRequest] = []
        self.answer = answer or (lambda request: "FINAL")
        self.model = FunctionModel(self._respond, name="reasoner", **options)

    def _respond(self, request: ModelRequest) -> Any:
        if request.output_name == "Plan":
            self.plan_requests.append(request)
            plan = self.plans.pop(0)
            return plan if isinstance(plan, str) else json.dumps(plan)
        self.other_requests.append(request)
        return self.answer(request)


def _worker_model(fail: set[str] | None = None, latency: float = 0.0) -> FunctionModel:
    def respond(request: ModelRequest) -> str:
        prompt = str(request.messages[-1]["content"])
        task = prompt.rsplit("Do ", 1)[-1].rstrip(".")
        if fail and task in fail:
            raise PermanentModelError(f"cannot do {task}")
        return f"result of {task}"

    return FunctionModel(respond, latency=latency, name="mini")


def _orchestrator(
    planning: Planning, worker: FunctionModel | None = None, **options: Any
) -> Orchestrator:
    worker = worker or _worker_model()
    options.setdefault("memory", None)
    return Orchestrator(
        planner=Agent("planner", planning.model),
        workers=[
            Agent("scout", worker, description="Finds facts."),
            Agent("writer", worker, description="Writes prose."),
        ],
        **options,
    )


async def test_a_goal_is_planned_run_and_answered_from_the_task_outputs() -> None:
    planning = Planning([FAN_OUT])
    result = await _orchestrator(planning).run(GOAL)

    assert result.status == "succeeded"
    assert result.output == "FINAL"
    assert result.goal == GOAL
    assert list(result.tasks) == ["facts", "history", "report"]
    assert result.tasks["report"].output == "result of report"
    # The synthesis (one call, the planner's model) saw the goal, the note and every output.
    [synthesis] = planning.other_requests
    prompt = synthesis.messages[-1]["content"]
    assert prompt.startswith(f"## Goal\n{GOAL}\n\n## What the answer must contain\n")
    for task in ("facts", "history", "report"):
        assert f"### {task}\nresult of {task}" in prompt
    assert synthesis.output_schema is None
    [plan] = result.plans
    assert (plan.revision, plan.reason, plan.attempts, plan.complete) == (1, "goal", 1, True)
    assert [t.id for t in plan.tasks] == ["facts", "history", "report"]
    assert result.usage.by_role["planner"].calls == 2
    assert result.usage.by_role["workers"].calls == 3


async def test_independent_planned_tasks_run_in_parallel() -> None:
    planning = Planning([FAN_OUT])
    worker = _worker_model(latency=0.2)
    started = anyio.current_time()
    result = await _orchestrator(planning, worker).run(GOAL)
    elapsed = anyio.current_time() - started

    assert result.status == "succeeded"
    # facts and history together (0.2 s), then report (0.2 s): not three in a row (0.6 s).
    assert elapsed < 0.55
    facts, history = result.tasks["facts"], result.tasks["history"]
    assert facts.started_at is not None
    assert history.started_at is not None
    assert facts.finished_at is not None
    assert history.started_at < facts.finished_at


async def test_a_cyclic_plan_is_repaired_and_the_repair_quotes_the_error() -> None:
    cyclic = {"tasks": [_task("a", deps=("b",)), _task("b", deps=("a",))]}
    planning = Planning([cyclic, FAN_OUT])
    result = await _orchestrator(planning).run(GOAL)

    assert result.status == "succeeded"
    assert len(planning.plan_requests) == 2
    repair = planning.plan_requests[1].messages[-1]["content"]
    assert (
        "- tasks 'a' → 'b' → 'a' form a cycle (each depends on the next); "
        "remove one of these dependencies"
    ) in repair
    [plan] = result.plans
    assert plan.attempts == 2
    assert plan.errors == [
        [
            "tasks 'a' → 'b' → 'a' form a cycle (each depends on the next); "
            "remove one of these dependencies"
        ]
    ]


async def test_the_planner_prompt_carries_the_budget_and_the_worker_catalogue() -> None:
    planning = Planning([FAN_OUT])
    orchestrator = _orchestrator(planning, prices={"reasoner": (10.0, 40.0), "mini": (0.15, 0.6)})
    await orchestrator.run(GOAL, budget=Budget(usd=1.0, tokens=500_000, seconds=600))

    system = planning.plan_requests[0].messages[0]["content"]
    assert "### scout\nFinds facts.\n- model: mini\n" in system
    assert "### writer\nWrites prose.\n" in system
    assert "- price per million tokens: $0.15 input / $0.6 output" in system
    assert "- tokens: 500,000\n" in system
    assert "- USD: $1.00 (of which $0.20 is kept for planning and the final answer)" in system
    assert "- time: " in system
    assert planning.plan_requests[0].messages[1]["content"] == GOAL
    assert planning.plan_requests[0].output_name == "Plan"


async def test_a_permanent_failure_is_replanned_and_finished_work_is_kept() -> None:
    revised = {"tasks": [_task("report_again", "writer", ("facts", "history"))]}
    planning = Planning([FAN_OUT, revised])
    worker = _worker_model(fail={"report"})
    result = await _orchestrator(planning, worker).run(GOAL)

    assert result.status == "succeeded"
    assert result.output == "FINAL"
    assert result.tasks["report"].status == "failed"
    assert result.tasks["report_again"].status == "succeeded"
    # Exactly once: facts and history ran once each, in all.
    prompts = [str(r.messages[-1]["content"]) for r in worker.requests]
    assert sum(p.endswith("Do facts.") for p in prompts) == 1
    assert sum(p.endswith("Do history.") for p in prompts) == 1
    assert worker.calls == 4
    # The replan was told why, and what is done.
    system = planning.plan_requests[1].messages[0]["content"]
    assert "## Failed tasks and why\n\n- report: cannot do report\n" in system
    assert "- facts: result of facts\n" in system
    assert [(p.revision, p.reason) for p in result.plans] == [(1, "goal"), (2, "failures")]
    assert result.plans[1].failures == {"report": "cannot do report"}


async def test_max_replans_bounds_replanning() -> None:
    again = [{"tasks": [_task(f"report_{n}", "writer", ("facts",))]} for n in range(3)]
    planning = Planning([FAN_OUT, *again])
    worker = _worker_model(fail={"report", "report_0", "report_1", "report_2"})
    result = await _orchestrator(planning, worker, max_replans=1).run(GOAL)

    assert len(planning.plan_requests) == 2
    assert result.status == "partial"
    assert result.output == "FINAL"  # answered from what succeeded
    assert [p.reason for p in result.plans] == ["goal", "failures"]
    assert result.tasks["report_0"].status == "failed"


async def test_streaming_dispatch_starts_a_task_before_the_plan_ends() -> None:
    events: list[tuple[float, Event]] = []
    planning = Planning([FAN_OUT], chunk_size=20, chunk_delay=0.02)
    orchestrator = _orchestrator(planning, on_event=lambda e: events.append((e.at, e)))
    result = await orchestrator.run(GOAL)

    assert result.status == "succeeded"
    kinds = [event.kind for _, event in events]
    first_start = kinds.index("task_started")
    plan_end = kinds.index("plan_finished")
    assert first_start < plan_end
    assert getattr(events[first_start][1], "task_id", None) == "facts"


class _Unstreamed:
    """A model that cannot stream: it ignores `on_text` and answers whole."""

    def __init__(self, inner: FunctionModel) -> None:
        self.inner = inner
        self.name = inner.name
        self.price = inner.price

    async def request(self, request: ModelRequest) -> Any:
        import dataclasses

        return await self.inner.request(dataclasses.replace(request, on_text=None))


async def test_a_planner_that_cannot_stream_has_its_tasks_started_after_the_plan() -> None:
    events: list[Event] = []
    planning = Planning([FAN_OUT])
    orchestrator = Orchestrator(
        planner=Agent("planner", _Unstreamed(planning.model)),
        workers=[Agent("scout", _worker_model()), Agent("writer", _worker_model())],
        memory=None,
        on_event=events.append,
    )
    result = await orchestrator.run(GOAL)

    assert result.status == "succeeded"
    assert [t.id for t in result.plans[0].tasks] == ["facts", "history", "report"]
    kinds = [event.kind for event in events]
    assert kinds.index("plan_finished") < kinds.index("task_started")


class Brief(BaseModel):
    title: str
    points: list[str]


async def test_a_typed_final_answer_and_a_named_synthesizer() -> None:
    planning = Planning([FAN_OUT])
    writer_model = FunctionModel(lambda r: {"title": "Bees", "points": ["they fly"]}, name="synth")
    synthesizer = Agent("editor", writer_model, instructions="You edit.")
    orchestrator = _orchestrator(planning, synthesizer=synthesizer)
    result = await orchestrator.run(GOAL, output_type=Brief)

    assert result.output == Brief(title="Bees", points=["they fly"])
    [request] = writer_model.requests
    assert request.messages[0] == {"role": "system", "content": "You edit."}
    assert request.output_name == "Brief"
    assert result.usage.by_role["synthesizer"].calls == 1
    assert result.usage.by_role["planner"].calls == 1  # the plan only


async def test_an_unmet_goal_is_replanned_when_judge_goal_is_on() -> None:
    verdicts = iter([{"met": False, "missing": "no numbers"}, {"met": True, "missing": ""}])

    def answer(request: ModelRequest) -> Any:
        return next(verdicts) if request.output_name == "GoalCheck" else "FINAL"

    more = {"tasks": [_task("numbers", "scout", ("facts",))]}
    planning = Planning([FAN_OUT, more], answer=answer)
    result = await _orchestrator(planning, judge_goal=True).run(GOAL)

    assert result.status == "succeeded"
    assert [p.reason for p in result.plans] == ["goal", "goal_unmet"]
    assert result.plans[1].failures == {"goal": "no numbers"}
    assert "- goal: no numbers" in planning.plan_requests[1].messages[0]["content"]
    assert result.tasks["numbers"].status == "succeeded"


async def test_a_goal_check_that_fails_is_not_taken_for_goal_met() -> None:
    def answer(request: ModelRequest) -> Any:
        if request.output_name == "GoalCheck":
            raise PermanentModelError("the judge refused")
        return "FINAL"

    planning = Planning([FAN_OUT], answer=answer)
    result = await _orchestrator(planning, judge_goal=True).run(GOAL)

    # The answer is still written, from what the tasks did; the run says it is unconfirmed.
    assert result.output == "FINAL"
    assert result.status == "partial"
    assert result.error == "the goal check could not run: the judge refused"
    assert [p.reason for p in result.plans] == ["goal"]  # no replan on a check that did not run
    assert [r.output_name for r in planning.other_requests] == ["GoalCheck", "output"]
    assert all(task.status == "succeeded" for task in result.tasks.values())


async def test_an_error_of_ours_while_planning_ends_the_run_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refused(self: Planner, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError("the catalogue cannot be shown")

    monkeypatch.setattr(Planner, "plan", refused)
    result = await _orchestrator(Planning([])).run(GOAL)

    assert result.status == "failed"
    assert result.error == "planning stopped: the catalogue cannot be shown"
    assert result.tasks == {}


async def test_no_valid_plan_is_a_failed_run_with_the_reason() -> None:
    planning = Planning(["not json", "not json either"])
    result = await _orchestrator(planning).run(GOAL)

    assert result.status == "failed"
    assert result.output is None
    assert result.tasks == {}
    assert result.error is not None
    assert result.error.startswith("planning failed: the planner 'planner' gave no valid plan")
    assert result.plans[0].complete is False


async def test_a_plan_over_the_budget_is_sent_back_with_its_cost() -> None:
    big = {"tasks": [_task(f"t{n}") for n in range(8)]}
    small = {"tasks": [_task("t0")]}
    planning = Planning([big, small])
    orchestrator = _orchestrator(planning, prices={"reasoner": (0.0, 0.0), "mini": (1.0, 10.0)})
    result = await orchestrator.run(GOAL, budget=Budget(usd=0.1))

    assert result.status == "succeeded"
    [error] = result.plans[0].errors[0]
    assert error.startswith("the plan's projected cost of $0.3")
    assert "left in the budget; use cheaper workers, fewer tasks" in error
    # Streamed tasks start only while the tasks started so far fit: two of the eight did,
    # and are kept (a started task is never taken back); the repaired plan adds nothing.
    assert list(result.tasks) == ["t0", "t1"]
    assert result.usage.cost_usd <= 0.1


async def test_run_needs_a_planner_and_workers() -> None:
    with pytest.raises(ConfigError, match=r"run\(goal\) needs a planner"):
        await Orchestrator(workers=[Agent("w", _worker_model())], memory=None).run(GOAL)
    planning = Planning([])
    with pytest.raises(ConfigError, match="needs workers"):
        await Orchestrator(planner=Agent("p", planning.model), memory=None).run(GOAL)
    with pytest.raises(ConfigError, match="the planner and a worker are both named 'scout'"):
        Orchestrator(planner=Agent("scout", planning.model), workers=[Agent("scout", "x/y")])


async def test_a_planner_object_sets_max_tasks() -> None:
    planning = Planning([FAN_OUT, {"tasks": [_task("facts")]}])
    orchestrator = Orchestrator(
        planner=Planner(Agent("planner", planning.model), max_tasks=2),
        workers=[Agent("scout", _worker_model()), Agent("writer", _worker_model())],
        memory=None,
    )
    result = await orchestrator.run(GOAL)
    assert result.plans[0].errors[0][0].startswith("the plan has 3 tasks, more than max_tasks=2")
    # facts and history had started while the plan streamed: they are kept.
    assert list(result.tasks) == ["facts", "history"]
    assert (
        "already started and are kept: facts, history"
        in (planning.plan_requests[1].messages[-1]["content"])
    )


async def test_a_planned_run_is_stored_and_resumes_without_planning_again(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    planning = Planning([FAN_OUT])
    gate = anyio.Event()

    async def slow_report(request: ModelRequest) -> str:
        if str(request.messages[-1]["content"]).endswith("Do report."):
            await gate.wait()  # never set: the run is interrupted here
        return "done " + str(request.messages[-1]["content"])[-8:]

    worker = FunctionModel(slow_report, name="mini")
    with anyio.move_on_after(1.0):
        await _orchestrator(planning, worker, memory=url).run(GOAL, run_id="planned-1")
    assert len(planning.plan_requests) == 1
    assert worker.calls == 3  # facts, history, and report (interrupted)

    # Another orchestrator, same workers and planner: the plan is read back, not asked for.
    again = Planning([])
    fresh = _worker_model()
    result = await _orchestrator(again, fresh, memory=url).resume("planned-1")

    assert result.status == "succeeded"
    assert again.plan_requests == []
    assert [str(r.messages[-1]["content"]) for r in fresh.requests] == [
        str(worker.requests[2].messages[-1]["content"])
    ]
    assert result.output == "FINAL"
    assert [p.revision for p in result.plans] == [1]
    assert result.tasks["facts"].output == "done o facts."


async def test_a_replan_that_gives_no_valid_plan_leaves_the_run_partial() -> None:
    planning = Planning([FAN_OUT, "not json", "still not json"])
    worker = _worker_model(fail={"report"})
    result = await _orchestrator(planning, worker).run(GOAL)

    assert result.status == "partial"
    assert result.output == "FINAL"  # answered from facts and history
    assert [(p.reason, p.complete) for p in result.plans] == [("goal", True), ("failures", False)]
    assert result.plans[1].error is not None
    assert result.plans[1].error.startswith("the planner 'planner' gave no valid plan")
    assert result.error == f"replanning (revision 2) failed: {result.plans[1].error}"


async def test_time_for_the_answer_is_kept_back_from_the_workers_deadline() -> None:
    planning = Planning([FAN_OUT], latency=lambda r: 0.0 if r.output_name == "Plan" else 0.2)
    slow_report = FunctionModel(
        lambda r: "ok",
        latency=lambda r: 5.0 if str(r.messages[-1]["content"]).endswith("report.") else 0.05,
        name="mini",
    )
    started = anyio.current_time()
    result = await _orchestrator(planning, slow_report).run(GOAL, budget=Budget(seconds=1.0))
    elapsed = anyio.current_time() - started

    # The report was cut off early enough for the 0.2 s answer to fit in the 1 s budget.
    assert result.tasks["report"].status == "cancelled"
    assert result.output == "FINAL"
    assert result.status == "partial"
    assert len(planning.other_requests) == 1
    assert elapsed < 1.0


class _FlakyStreamingPlanner:
    """Streams the first task of a plan, then fails with a rate limit; answers in full after."""

    name = "flaky-reasoner"
    price = None

    def __init__(self) -> None:
        self.plan_calls = 0

    async def request(self, request: ModelRequest) -> Any:
        from delegate.agents.models import ModelResponse
        from delegate.errors import RateLimitError

        if request.output_name != "Plan":
            return ModelResponse(text="FINAL", model=self.name)
        self.plan_calls += 1
        text = json.dumps(FAN_OUT)
        if self.plan_calls == 1:
            first = json.dumps(FAN_OUT["tasks"][0])
            assert request.on_text is not None
            request.on_text('{"tasks": [' + first + ", ")
            raise RateLimitError("slow down", retry_after=0.0)
        if request.on_text is not None:
            request.on_text(text)
        return ModelResponse(text=text, model=self.name)


async def test_a_transient_planner_failure_mid_stream_keeps_the_started_task() -> None:
    from delegate.orchestrator.scheduler import RetryPolicy

    model = _FlakyStreamingPlanner()
    worker = _worker_model()
    orchestrator = Orchestrator(
        planner=Agent("planner", model),
        workers=[Agent("scout", worker), Agent("writer", worker)],
        memory=None,
        retry=RetryPolicy(base_delay=0.0),
    )
    result = await orchestrator.run(GOAL)

    assert model.plan_calls == 2
    assert result.status == "succeeded"
    assert list(result.tasks) == ["facts", "history", "report"]
    prompts = [str(r.messages[-1]["content"]) for r in worker.requests]
    assert sum(p.endswith("Do facts.") for p in prompts) == 1
    assert result.plans[0].attempts == 1


def _priced_team(planner_answers: list[Any], **models: float) -> tuple[Orchestrator, Planning]:
    planning = Planning(planner_answers)
    workers = [
        Agent(name, FunctionModel(lambda r: "ok", output_price=price, name=name))
        for name, price in models.items()
    ]
    return Orchestrator(planner=Agent("planner", planning.model), workers=workers, memory=None), (
        planning
    )


async def test_a_plan_task_refused_by_the_budget_goes_back_to_the_planner() -> None:
    # Attempt 1 starts `a` (pricey) while it streams, then fails validation; attempt 2 is valid
    # as a whole, but with `a` already started its `c` no longer fits: that is a plan problem,
    # sent back, never a task dropped behind the plan's back.
    first = {"tasks": [_task("a", "pricey"), _task("z", "nobody")]}
    second = {"tasks": [_task("b", "cheap"), _task("c", "pricey", ("b",)), _task("d", "cheap")]}
    orchestrator, planning = _priced_team([first, second], cheap=0.1, pricey=1.0)
    result = await orchestrator.run(GOAL, budget=Budget(usd=0.005))

    assert len(planning.plan_requests) == 2
    assert result.error is not None
    assert "task 'c' could not start: with the tasks already started it does not fit" in (
        result.error
    )
    assert "c" not in result.tasks
    assert result.usage.cost_usd <= 0.005


async def test_the_plan_cost_check_counts_each_task_at_its_own_output_cap() -> None:
    capped = {"tasks": [_task(f"t{n}", "w", max_output_tokens=100) for n in range(3)]}
    orchestrator, _ = _priced_team([capped], w=1.0)
    result = await orchestrator.run(GOAL, budget=Budget(usd=0.005))
    assert result.status == "succeeded"
    assert list(result.tasks) == ["t0", "t1", "t2"]
    assert result.plans[0].attempts == 1


async def test_a_replan_may_not_reuse_the_id_of_a_failed_task() -> None:
    reused = {"tasks": [_task("report", "writer", ("facts", "history"))]}
    renamed = {"tasks": [_task("report_2", "writer", ("facts", "history"))]}
    planning = Planning([FAN_OUT, reused, renamed])
    result = await _orchestrator(planning, _worker_model(fail={"report"})).run(GOAL)

    assert result.status == "succeeded"
    assert result.plans[1].errors == [
        [
            "task id 'report' is taken by a task that failed in an earlier plan; give the new "
            "task another id, e.g. 'report_2'"
        ]
    ]
    assert result.tasks["report_2"].status == "succeeded"


async def test_fail_fast_ends_a_planned_run_without_replanning() -> None:
    planning = Planning([FAN_OUT, {"tasks": [_task("again")]}])
    worker = _worker_model(fail={"facts"}, latency=0.05)
    result = await _orchestrator(planning, worker, fail_fast=True).run(GOAL)

    assert len(planning.plan_requests) == 1
    assert result.status == ("partial" if result.output is not None else "failed")
    assert result.tasks["facts"].status == "failed"


async def test_resume_completes_an_interrupted_replan_with_its_failures(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    first = {"tasks": [_task("facts"), _task("report", "writer", ("facts",))]}
    # The replan's long note keeps it streaming after its task has started.
    again = {"tasks": [_task("report_2", "writer", ("facts",))], "synthesis_note": "x" * 4000}
    scope = anyio.CancelScope()

    def interrupt(event: Event) -> None:
        if event.kind == "task_started" and getattr(event, "task_id", "") == "report_2":
            scope.cancel()

    planning = Planning([first, again], chunk_size=20, chunk_delay=0.005)
    worker = _worker_model(fail={"report"})
    with scope:
        await _orchestrator(planning, worker, memory=url, on_event=interrupt).run(
            GOAL, run_id="interrupted"
        )
    assert scope.cancelled_caught

    resumed = Planning([again])
    result = await _orchestrator(resumed, _worker_model(), memory=url).resume("interrupted")

    assert result.status == "succeeded"
    [request] = resumed.plan_requests
    system = request.messages[0]["content"]
    assert "## Failed tasks and why\n\n- report: cannot do report\n" in system
    assert [(p.reason, p.complete) for p in result.plans] == [
        ("goal", True),
        ("failures", False),
        ("resumed", True),
    ]
    assert result.tasks["report_2"].status == "succeeded"
    # The first run's spend is restored from the store: the first plan's call and the replan
    # cut off mid-stream (sent, so paid for at its reservation); then the resumed plan and the
    # answer.
    assert result.usage.by_role["planner"].calls == 4
    assert result.usage.by_role["planner"].output_tokens > 4096 * 1  # the cut-off allowance


async def test_plan_only_plans_within_the_budget_and_runs_nothing() -> None:
    from delegate.errors import BudgetExceeded

    planning = Planning([FAN_OUT])
    worker = _worker_model()
    orchestrator = _orchestrator(planning, worker, prices={"reasoner": (1.0, 1.0)})
    result = await orchestrator.plan(GOAL, budget=Budget(usd=1.0))

    assert [task.id for task in result.plan.tasks] == ["facts", "history", "report"]
    assert result.usage.calls == 1
    assert worker.calls == 0
    with pytest.raises(BudgetExceeded, match=r"budget of \$0.000001 for run would be exceeded"):
        await orchestrator.plan(GOAL, budget=Budget(usd=0.000001))
    assert len(planning.plan_requests) == 1  # the refused call was never sent


async def test_a_planned_run_interrupted_twice_mid_plan_resumes_to_success(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    note = "x" * 4000  # a long note keeps each plan streaming after its tasks have started
    first = {
        "tasks": [_task("facts"), _task("report", "writer", ("facts",))],
        "synthesis_note": note,
    }
    # The completed plan lists the started tasks again, unchanged, and adds one.
    more = {
        "tasks": [*first["tasks"], _task("extra", "writer", ("report",))],
        "synthesis_note": note,
    }

    async def interrupted(planning: Planning, stop_at: str, *, resume: bool) -> None:
        scope = anyio.CancelScope()

        def interrupt(event: Event) -> None:
            if event.kind == "task_started" and getattr(event, "task_id", "") == stop_at:
                scope.cancel()

        worker = _worker_model(latency=0.05)
        orchestrator = _orchestrator(planning, worker, memory=url, on_event=interrupt)
        with scope:
            if resume:
                await orchestrator.resume("twice")
            else:
                await orchestrator.run(GOAL, run_id="twice")
        assert scope.cancelled_caught

    await interrupted(Planning([first], chunk_size=20, chunk_delay=0.005), "report", resume=False)
    await interrupted(Planning([more], chunk_size=20, chunk_delay=0.005), "extra", resume=True)
    last = Planning([more])  # one plan: it must be accepted as it is
    result = await _orchestrator(last, _worker_model(), memory=url).resume("twice")

    assert result.status == "succeeded", result.error
    assert result.error is None
    assert {task_id: task.status for task_id, task in result.tasks.items()} == {
        "facts": "succeeded",
        "report": "succeeded",
        "extra": "succeeded",
    }
    assert [(p.reason, p.complete) for p in result.plans] == [
        ("goal", False),
        ("resumed", False),
        ("resumed", True),
    ]
