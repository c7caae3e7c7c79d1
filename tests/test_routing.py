"""Learned routing: the seeded posterior choice, the exploration cap, the store's history,
workflow YAML, the refusal without a verifier, and the run report's explanation."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from _backends import store_url  # noqa: F401

from delegate import Agent, Budget, LearnedRouting, Orchestrator, TaskGraph, TaskRouted
from delegate.agents.models import ModelRequest, ModelResponse, Price, Usage
from delegate.errors import ConfigError, WorkflowError
from delegate.memory._routing import RoutingOutcome
from delegate.memory.store import Store
from delegate.orchestrator.events import Event
from delegate.orchestrator.graph import Task, TaskContext
from delegate.orchestrator.routing import ArmStats, Router, routing_of, task_kind
from delegate.orchestrator.scheduler import Node
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio

# Every call reports 1,000 input and 100 output tokens, so what a call costs is known here,
# independently of delegate's accounting: tokens × the model's price.
IN, OUT = 1000, 100
PRICES = {"cheap-m": (0.1, 0.4), "strong-m": (5.0, 20.0), "judge-m": (0.1, 0.4)}


def call_cost(model: str) -> float:
    inp, out = PRICES[model]
    return (IN * inp + OUT * out) / 1_000_000


class Calls:
    """Every model call, by task prompt: the independent spend counter."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str]] = []  # (model, task marker)

    def spent(self, markers: Sequence[str]) -> float:
        return sum(call_cost(model) for model, marker in self.made if marker in markers)


def _marker(request: ModelRequest) -> str:
    text = str(request.messages[-1]["content"])
    return next(word for word in text.split() if word.startswith("task-"))


def _models(calls: Calls, cheap_passes: set[str]) -> tuple[Agent[str], Agent[str]]:
    """A cheap worker (falling back to a strong one) and their judge: the judge passes every
    strong answer, and a cheap answer only for the tasks named in `cheap_passes`."""

    def answer(name: str) -> Any:
        def fn(request: ModelRequest) -> ModelResponse:
            calls.made.append((name, _marker(request)))
            return ModelResponse(
                text=f"{name} says {_marker(request)}",
                usage=Usage(input_tokens=IN, output_tokens=OUT, calls=1),
            )

        inp, out = PRICES[name]
        return FunctionModel(fn, input_price=inp, output_price=out, name=name)

    def judge(request: ModelRequest) -> ModelResponse:
        marker = _marker(request)
        calls.made.append(("judge-m", marker))
        answer = str(request.messages[-1]["content"]).rsplit("## Answer", 1)[-1]
        passed = "strong-m says" in answer or any(m in marker for m in cheap_passes)
        return ModelResponse(
            text=f'{{"passed": {str(passed).lower()}, "feedback": "be stronger"}}',
            usage=Usage(input_tokens=IN, output_tokens=OUT, calls=1),
        )

    judge_agent = Agent(
        "judge", FunctionModel(judge, input_price=0.1, output_price=0.4, name="judge-m")
    )
    strong = Agent("strong", answer("strong-m"))
    worker = Agent("worker", answer("cheap-m"), fallback=strong, verify=judge_agent)
    return worker, judge_agent


def _routed(events: list[Event]) -> list[TaskRouted]:
    return [event for event in events if isinstance(event, TaskRouted)]


# --- the rule, with a seeded rng ------------------------------------------------------------------


def _router(history: dict[tuple[str, str], ArmStats], seed: int, budget: float | None) -> Router:
    return Router(
        setting=LearnedRouting(target=0.9, explore_share=0.5),
        namespace="test",
        run_id="r1",
        history=history,
        rng=random.Random(seed),
        price=lambda agent: Price(*PRICES[agent.model.name]),
        budget_usd=budget,
        spent=lambda: 0.0,
        fixed=frozenset({"step"}),
    )


def _node(task_id: str, worker: Agent[str]) -> Node:
    node = Node(Task(task_id, worker, f"do task-{task_id}", ()), worker, 0.0, 0)
    node.verify = worker.verify
    return node


def test_posterior_choice_is_exact_for_a_known_history() -> None:
    worker, _ = _models(Calls(), set())
    # The strong tier passed 20 of 20; the cheap one was never tried. The rule picks strong
    # (mean 21/22 ≥ 0.9, cheap's is 1/2); the cheap arm is explored exactly when its draw from
    # Beta(1, 1) reaches the target (the draws come in arm order: cheap, then strong).
    history = {("step", "strong-m"): ArmStats(20, 20, 20 * 0.0076)}
    router = _router(dict(history), seed=7, budget=100.0)
    twin = random.Random(7)
    expected = []
    for _ in range(30):
        cheap_draw = twin.betavariate(1, 1)
        twin.betavariate(21, 1)
        expected.append("cheap-m" if cheap_draw >= 0.9 else "strong-m")
    chosen = []
    for index in range(30):
        route = router.route(_node(f"step[{index}]", worker), worker, "do it")
        assert route is not None
        assert route.decision.kind == "step"  # a fan-out's items pool with their step
        assert route.decision.explored == (route.decision.arm == "cheap-m")
        chosen.append(route.decision.arm)
    assert chosen == expected
    assert 0 < chosen.count("cheap-m") < 30  # the seed explores a few times, not always


def test_a_proven_cheap_arm_is_chosen_without_exploring() -> None:
    worker, _ = _models(Calls(), set())
    history = {
        ("step", "cheap-m"): ArmStats(50, 47, 50 * 0.0003),
        ("step", "strong-m"): ArmStats(10, 10, 10 * 0.0076),
    }
    router = _router(history, seed=3, budget=None)  # no budget, nothing spent: no exploring
    route = router.route(_node("step", worker), worker, "do it")
    assert route is not None
    assert route.agent is worker
    decision = route.decision
    assert (decision.arm, decision.explored, decision.passes, decision.trials) == (
        "cheap-m",
        False,
        47,
        50,
    )
    assert decision.reason == "chose cheap-m: 47/50 passes at $0.0003"


def test_a_failing_cheap_arm_is_not_chosen() -> None:
    worker, _ = _models(Calls(), set())
    history = {
        ("step", "cheap-m"): ArmStats(30, 3, 30 * 0.0003),
        ("step", "strong-m"): ArmStats(30, 30, 30 * 0.0076),
    }
    router = _router(history, seed=11, budget=100.0)
    arms = [router.route(_node(f"step[{i}]", worker), worker, "x") for i in range(50)]
    assert {route.decision.arm for route in arms if route is not None} == {"strong-m"}
    assert all(route is not None and route.agent.name == "strong" for route in arms)


def test_reasoning_workers_route_over_efforts() -> None:
    model = FunctionModel(lambda r: "x", input_price=1, output_price=4, name="cheap-m")
    judge = Agent("j", FunctionModel(lambda r: "x", name="judge-m"))
    worker = Agent("w", model, reasoning_effort="medium", verify=judge)
    router = _router({("step", "cheap-m/low"): ArmStats(40, 40, 0.001)}, seed=1, budget=None)
    route = router.route(_node("step", worker), worker, "x")
    assert route is not None
    assert (route.decision.arm, route.effort, route.decision.explored) == (
        "cheap-m/low",
        "low",
        False,
    )


def test_task_kind_of_planned_tasks_is_agent_and_signature() -> None:
    # The first 8 words, case-folded, whitespace collapsed: the rest of the text, and the id a
    # planner gave the task, do not change its kind.
    one = task_kind(
        "t1", "writer", "Summarize   the findings of the survey, in five bullets", fixed=False
    )
    same = task_kind(
        "t9", "writer", "summarize the FINDINGS of the survey,\nin five items", fixed=False
    )
    other = task_kind(
        "t1", "writer", "Translate the findings of the survey, in five bullets", fixed=False
    )
    assert (
        one
        == "writer#"
        + hashlib.sha256(b"summarize the findings of the survey, in five").hexdigest()[:8]
    )
    assert same == one
    assert other != one
    assert (
        task_kind("t1", "editor", "Summarize the findings of the survey, in five", fixed=False)
        != one
    )
    assert task_kind("extract[3]", "w", "anything", fixed=True) == "extract"


def test_routing_setting_is_checked() -> None:
    assert routing_of("learned") == LearnedRouting()
    assert routing_of(None) is None
    with pytest.raises(ConfigError, match='routing must be "learned"'):
        routing_of("smart")
    with pytest.raises(ConfigError, match="store"):
        Orchestrator(memory=None, routing="learned")


# --- end to end ----------------------------------------------------------------------------------


def _graph(run: int, items: int = 1) -> TaskGraph:
    graph = TaskGraph()
    for item in range(items):
        graph.add(f"easy[{item}]", agent="worker", prompt=f"easy task-easy{run}.{item}")
        graph.add(f"hard[{item}]", agent="worker", prompt=f"hard task-hard{run}.{item}")
    return graph


async def test_routing_learns_the_cheap_tier_across_runs(tmp_path: Path) -> None:
    calls = Calls()
    worker, _ = _models(calls, cheap_passes={"task-easy"})
    events: list[Event] = []
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    async with Orchestrator(
        workers=[worker],
        memory=url,
        routing=LearnedRouting(seed=5),
        budget=Budget(usd=0.5),
        on_event=events.append,
    ) as orch:
        for run in range(20):
            result = await orch.execute(_graph(run, items=4), workflow="demo")
            assert result.status == "succeeded"
    routed = _routed(events)
    assert len(routed) == 160  # every verified task, once each
    last = [event for event in routed[-8:] if event.task_kind == "easy"]
    assert [(event.arm, event.explored) for event in last] == [("cheap-m", False)] * 4
    assert all(event.reason.startswith("chose cheap-m: ") for event in last)
    assert {event.arm for event in routed[-8:] if event.task_kind == "hard"} == {"strong-m"}
    with Store.open(url) as store:
        history = {(row.kind, row.arm): row for row in store.routing_history("demo")}
    assert sum(row.trials for row in history.values()) == 160  # one outcome per routed task
    assert history[("easy", "cheap-m")].passes == history[("easy", "cheap-m")].trials
    assert history[("hard", "strong-m")].passes == history[("hard", "strong-m")].trials
    assert history[("hard", "cheap-m")].passes == 0


async def test_an_outcome_is_stored_while_the_run_still_runs(tmp_path: Path) -> None:
    # Written with the group commit after its task ends, not at the run's end: a run killed
    # later has still taught what it learned. The second task waits for the first one's
    # outcome to be readable from another connection, while the run is still going.
    calls = Calls()
    worker, _ = _models(calls, cheap_passes={"task-easy"})
    url = f"sqlite:///{tmp_path / 'runs.db'}"

    async def wait_for_outcome(ctx: TaskContext) -> int:
        with Store.open(url) as store:
            for _ in range(2000):  # another connection's view: polled, at most ~20 s
                if rows := store.routing_history("demo"):
                    return sum(row.trials for row in rows)
                await anyio.sleep(0.01)
        return 0

    graph = TaskGraph()
    graph.add("easy", agent="worker", prompt="easy task-easy0")
    graph.add("seen", fn=wait_for_outcome, deps=["easy"])
    async with Orchestrator(
        workers=[worker], memory=url, routing=LearnedRouting(seed=5), budget=Budget(usd=0.5)
    ) as orch:
        result = await orch.execute(graph, workflow="demo")
    assert result.status == "succeeded"
    assert result.tasks["seen"].output == 1  # the first task's outcome, before the run ended
    with Store.open(url) as store:  # and written once, not again at the end
        assert [row.trials for row in store.routing_history("demo")] == [1]


async def test_exploration_stays_within_its_share_of_the_budget(tmp_path: Path) -> None:
    calls = Calls()
    worker, _ = _models(calls, cheap_passes=set())  # exploring cheap always escalates
    events: list[Event] = []
    graph = TaskGraph()
    for index in range(40):
        graph.add(f"step[{index}]", agent="worker", prompt=f"do task-{index}")
    budget = 0.4
    share = 0.05
    async with Orchestrator(
        workers=[worker],
        memory=f"sqlite:///{tmp_path / 'runs.db'}",
        routing=LearnedRouting(seed=2, explore_share=share),
        budget=Budget(usd=budget),
        max_concurrency=8,
        on_event=events.append,
    ) as orch:
        result = await orch.execute(graph)
    assert result.status == "succeeded"
    routed = _routed(events)
    explored = [f"task-{event.task_id[5:-1]}" for event in routed if event.explored]
    assert explored  # it did explore…
    # …until the allowance ran out: later draws for the cheap tier were refused, and said so.
    capped = [event for event in routed if "would exceed the exploration allowance" in event.reason]
    assert capped
    assert all(event.arm == "strong-m" for event in capped)
    assert "($0.02, 5% of the budget)" in capped[-1].reason
    # …and what explorations added over the strong tier they stood in for (a judged strong
    # answer, which each explored task still paid for when cheap was rejected) stays within
    # the share, by the independent count.
    strong_task = call_cost("strong-m") + call_cost("judge-m")
    added = calls.spent(explored) - len(explored) * strong_task
    assert 0 < added <= share * budget
    # Each exploration of the cheap tier failed and escalated: cheap twice, then strong, each
    # judged.
    worst = 2 * call_cost("cheap-m") + call_cost("strong-m") + 3 * call_cost("judge-m")
    assert calls.spent(explored) == pytest.approx(len(explored) * worst)


async def test_routing_is_refused_without_a_verifier() -> None:
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", FunctionModel(lambda r: "x")), prompt="hi")
    async with Orchestrator(memory=":memory:", routing="learned") as orch:
        with pytest.raises(ConfigError, match="nothing in this run has a judge"):
            await orch.execute(graph)


async def test_store_round_trip(store_url: str) -> None:  # noqa: F811
    at = datetime(2026, 12, 7, tzinfo=UTC)

    def outcome(kind: str, arm: str, passed: bool, cost: float, ns: str = "wf") -> RoutingOutcome:
        return RoutingOutcome(ns, kind, arm, passed, cost, 0.5, "r", "t", False, at)

    with Store.open(store_url) as store:
        assert store.routing_history("wf") == []
        store.add_routing_outcomes(
            [
                outcome("a", "m1", True, 0.25),
                outcome("a", "m1", False, 0.5),
                outcome("a", "m2/low", True, 1.0),
                outcome("a", "m1", True, 0.25, ns="other"),
            ]
        )
        rows = store.routing_history("wf")
    assert [(r.kind, r.arm, r.trials, r.passes, r.cost_usd) for r in rows] == [
        ("a", "m1", 2, 1, 0.75),
        ("a", "m2/low", 1, 1, 1.0),
    ]


# --- workflows and the report ---------------------------------------------------------------------

WORKFLOW = """\
name: routed
routing: {routing}
agents:
  judge:
    model: openai/gpt-4o-mini
  worker:
    model: openai/gpt-4o-mini
    {verify}
steps:
  - id: one
    agent: worker
    prompt: "Say hi"
"""


def _workflow(tmp_path: Path, routing: str, verify: str = "verify: judge") -> Path:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW.format(routing=routing, verify=verify), encoding="utf-8")
    return path


def test_workflow_routing_key(tmp_path: Path) -> None:
    from delegate.workflows import load_workflow

    spec = load_workflow(_workflow(tmp_path, "learned")).spec
    assert spec.routing == LearnedRouting()
    spec = load_workflow(_workflow(tmp_path, "{target: 0.8, explore_share: 0.1}")).spec
    assert spec.routing == LearnedRouting(target=0.8, explore_share=0.1)


def test_workflow_routing_errors_name_line_and_column(tmp_path: Path) -> None:
    from delegate.workflows import load_workflow

    with pytest.raises(WorkflowError) as bad:
        load_workflow(_workflow(tmp_path, "{target: 2}"))
    assert "routing" in str(bad.value)
    assert ":2:" in str(bad.value)
    with pytest.raises(WorkflowError) as unverified:
        load_workflow(_workflow(tmp_path, "learned", verify=""))
    text = str(unverified.value)
    assert ":2:" in text
    assert "verify" in text


async def test_run_report_explains_routing(tmp_path: Path) -> None:
    from delegate.observe.report import stored_report_html

    calls = Calls()
    worker, _ = _models(calls, cheap_passes=set())
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    async with Orchestrator(workers=[worker], memory=url, routing=LearnedRouting(seed=1)) as orch:
        result = await orch.execute(_graph(0), workflow="demo")
    with Store.open(url) as store:
        html = stored_report_html(store, result.run_id)
    assert '<section id="routing"><h2>Routing</h2>' in html
    assert '<a href="#routing">Routing</a>' in html
    # No history: the arms are priced, none reaches the target, the strong tier is the rule's.
    assert (
        "<td>strong-m</td><td>rule</td><td>chose strong-m: no history yet, $0.08358 a task by "
        "its price (no arm reaches the 90% target yet: the most likely to pass)"
    ) in html


ROUTED_WORKFLOW = """\
name: routed
routing: {target: 0.8, seed: 3}
agents:
  judge: {model: openai/gpt-4o-mini}
  strong: {model: openai/gpt-4o}
  worker: {model: openai/gpt-4o-mini, fallback: strong, verify: judge}
steps:
  - id: draft
    agent: worker
    prompt: "Draft a note."
  - id: plain
    agent: strong
    prompt: "No judge here."
"""


async def test_a_workflow_routes_its_steps_and_keeps_the_history_under_its_name(
    tmp_path: Path,
) -> None:
    from delegate.workflows.loader import load_workflow_text
    from delegate.workflows.runtime import compile_workflow, run_workflow

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    events: list[Event] = []
    loaded = load_workflow_text(ROUTED_WORKFLOW, str(tmp_path / "wf.yaml"))
    for _ in range(2):
        compiled = compile_workflow(
            loaded,
            simulate=True,
            time_scale=0.0,
            db=url,
            text=ROUTED_WORKFLOW,
            on_event=events.append,
        )
        result = await run_workflow(compiled, {})
        assert result.tasks["draft"].status in ("succeeded", "failed")
    routed = _routed(events)
    assert [event.task_id for event in routed] == ["draft", "draft"]  # "plain" has no judge
    assert {event.task_kind for event in routed} == {"draft"}
    with Store.open(url) as store:
        history = store.routing_history("routed")
    assert [row.kind for row in history] == ["draft"] * len(history)
    assert sum(row.trials for row in history) == 2


async def test_planned_tasks_pool_by_agent_and_instruction_signature() -> None:
    import json

    def plan_or_answer(request: ModelRequest) -> str:
        if request.output_name == "Plan":
            tasks = [
                {"id": f"p{n}", "agent": "worker", "instructions": text, "deps": []}
                for n, text in enumerate(
                    [
                        "List the facts of the report about part one.",
                        "List  the FACTS of the report about part two, briefly.",
                        "Write the summary of the report about part one.",
                    ]
                )
            ]
            return json.dumps({"tasks": tasks, "synthesis_note": ""})
        return "FINAL"

    judge = Agent("judge", FunctionModel(lambda r: {"passed": True, "feedback": ""}, name="j"))
    worker = Agent("worker", FunctionModel(lambda r: "done", name="cheap-m"), verify=judge)
    events: list[Event] = []
    async with Orchestrator(
        planner=Agent("planner", FunctionModel(plan_or_answer, name="reasoner")),
        workers=[worker],
        memory=":memory:",
        routing=LearnedRouting(seed=1),
        on_event=events.append,
    ) as orch:
        result = await orch.run("Collect facts.")
    assert result.status == "succeeded"
    facts = hashlib.sha256(b"list the facts of the report about part").hexdigest()[:8]
    summary = hashlib.sha256(b"write the summary of the report about part").hexdigest()[:8]
    assert {event.task_id: event.task_kind for event in _routed(events)} == {
        "p0": f"worker#{facts}",
        "p1": f"worker#{facts}",  # the planner's ids and wording past 8 words do not matter
        "p2": f"worker#{summary}",
    }
