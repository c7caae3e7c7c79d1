"""`votes=` (a count or `AdaptiveVotes`) and `strategy=` as task options, wherever a task is
described: `TaskGraph.add`, `TaskSpec` and stored graphs, the run's checks of the workers a
strategy names, what `estimate` and `answers_of` count, and the scheduler handing them to
`run_checked` (planned runs included)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from delegate import Agent, Budget, GraphError, Orchestrator, TaskGraph
from delegate.agents.models import ModelRequest
from delegate.memory.store import Store
from delegate.orchestrator import scheduler
from delegate.orchestrator.calls import answers_of
from delegate.orchestrator.graph import GraphSpec, TaskContext, TaskSpec
from delegate.orchestrator.strategies import (
    AdaptiveVotes,
    BestOfN,
    MixtureOfAgents,
    SelfRefine,
)
from delegate.testing import FunctionModel, ScriptedModel

pytestmark = pytest.mark.anyio


def _fn(ctx: TaskContext) -> int:
    return 1


# --- TaskGraph.add, TaskSpec and the stored graph --------------------------------------------


def test_settings_round_trip_through_the_stored_graph() -> None:
    graph = TaskGraph()
    graph.add("best", agent="w", prompt="Best.", strategy=BestOfN(n=3, judge="critic"))
    graph.add("voted", agent="w", votes=AdaptiveVotes(max_samples=6, confidence=0.9))
    graph.add("fixed", agent="w", votes=3)
    graph.add(
        "mixed", agent="w", strategy=MixtureOfAgents(proposers=("w", "critic"), aggregator="w")
    )
    graph.add("refined", agent="w", strategy=SelfRefine(rounds=1), deps=["best"])

    stored = graph.spec().to_json()

    assert stored == {
        "version": 2,
        "tasks": [
            {
                "id": "best",
                "agent": "w",
                "prompt": "Best.",
                "strategy": {"kind": "best_of_n", "n": 3, "judge": "critic"},
            },
            {
                "id": "voted",
                "agent": "w",
                "votes": {"kind": "adaptive_votes", "max_samples": 6, "confidence": 0.9},
            },
            {"id": "fixed", "agent": "w", "votes": 3},
            {
                "id": "mixed",
                "agent": "w",
                "strategy": {
                    "kind": "mixture_of_agents",
                    "proposers": ["w", "critic"],
                    "aggregator": "w",
                },
            },
            {
                "id": "refined",
                "agent": "w",
                "deps": ["best"],
                "strategy": {"kind": "self_refine", "rounds": 1},
            },
        ],
    }
    # Through JSON text, as the store keeps it, and back into a graph.
    rebuilt = TaskGraph.from_spec(GraphSpec.from_json(json.loads(json.dumps(stored))))
    assert rebuilt.spec() == graph.spec()
    assert rebuilt["best"].strategy == BestOfN(n=3, judge="critic")
    assert rebuilt["voted"].votes == AdaptiveVotes(max_samples=6, confidence=0.9)
    assert rebuilt["fixed"].votes == 3
    assert rebuilt["mixed"].strategy == MixtureOfAgents(proposers=("w", "critic"), aggregator="w")
    assert rebuilt["refined"].strategy == SelfRefine(rounds=1)
    assert [task.strategy for task in rebuilt if task.id in ("voted", "fixed")] == [None, None]


_REFUSED: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    (
        {"fn": _fn, "strategy": SelfRefine()},
        {"fn": "tests.test_strategy_options:_fn", "strategy": {"kind": "self_refine"}},
        "task 't': strategy applies to model calls, but this is a function task (fn=); drop it "
        "or give the task an agent=",
    ),
    (
        {"agent": "w", "votes": 3, "strategy": BestOfN(judge="c")},
        {"agent": "w", "votes": 3, "strategy": {"kind": "best_of_n", "judge": "c"}},
        "task 't': give votes or a strategy, not both (votes=3 and strategy=BestOfN); drop one: "
        "a strategy picks its own answer",
    ),
    (
        {"agent": "w", "votes": AdaptiveVotes(max_samples=4), "strategy": SelfRefine()},
        {"agent": "w", "votes": {"max_samples": 4}, "strategy": {"kind": "self_refine"}},
        "task 't': give votes or a strategy, not both (votes=AdaptiveVotes(kind='adaptive_votes', "
        "max_samples=4, min_samples=2, batch=1, confidence=0.95, rule='cannot_lose') and "
        "strategy=SelfRefine); drop "
        "one: a strategy picks its own answer",
    ),
    (
        {"agent": "w", "strategy": "best_of_n"},
        {"agent": "w", "strategy": "best_of_n"},
        "task 't': strategy must be a BestOfN, MixtureOfAgents or SelfRefine, got str; e.g. "
        "strategy=BestOfN(n=4, judge='critic')",
    ),
    (
        {"agent": "w", "votes": 0},
        {"agent": "w", "votes": 0},
        "task 't': votes must be a positive int, an AdaptiveVotes or None, got 0; e.g. votes=5 "
        "or votes=AdaptiveVotes(max_samples=10)",
    ),
    (
        {"agent": "w", "votes": "3"},
        {"agent": "w", "votes": "3"},
        "task 't': votes must be a positive int, an AdaptiveVotes or None, got '3'; e.g. "
        "votes=5 or votes=AdaptiveVotes(max_samples=10)",
    ),
]


@pytest.mark.parametrize(("options", "data", "message"), _REFUSED)
def test_add_and_a_spec_refuse_the_same_settings_with_the_same_message(
    options: dict[str, Any], data: dict[str, Any], message: str
) -> None:
    with pytest.raises(GraphError) as added:
        TaskGraph().add("t", **options)
    with pytest.raises(GraphError) as described:
        TaskSpec.model_validate({"id": "t", **data})
    assert str(added.value) == str(described.value) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"strategy": {"kind": "best_of_n", "jugde": "c"}},
            "task 't': strategy: unknown field 'best_of_n.jugde' (did you mean 'judge'?)",
        ),
        (
            {"strategy": {"kind": "mixture_of_agents", "proposers": ["a"]}},
            "task 't': strategy: mixture_of_agents.proposers: Tuple should have at least 2 items "
            "after validation, not 1",
        ),
        (
            {"strategy": {"kind": "best_of_n", "judge": "a", "score": "m:f"}},
            "task 't': strategy: best_of_n: give judge (a worker's name) or score (a function), "
            "not both",
        ),
        (
            {"votes": {"max_samples": 2, "min_samples": 3}},
            "task 't': votes: min_samples (3) is more than max_samples (2); lower min_samples or "
            "raise max_samples",
        ),
    ],
)
def test_a_spec_reads_settings_from_json_and_names_what_is_wrong(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(GraphError) as info:
        TaskSpec.model_validate({"id": "t", "agent": "w", **data})
    assert str(info.value) == message


def test_a_task_of_one_vote_may_have_a_strategy() -> None:
    task = TaskGraph().add("t", agent="w", votes=1, strategy=SelfRefine(rounds=3))
    assert (task.votes, task.strategy) == (1, SelfRefine(rounds=3))
    assert task.spec().strategy == SelfRefine(rounds=3)


# --- the run's workers -----------------------------------------------------------------------


def _agent(name: str, answer: str = "x", **options: Any) -> Agent:
    return Agent(name, FunctionModel(lambda request: answer, name=f"{name}-model"), **options)


async def test_a_strategys_workers_are_checked_when_the_run_starts() -> None:
    worker, critic = _agent("w"), _agent("critic")
    graph = TaskGraph()
    graph.add("a", agent="w", strategy=MixtureOfAgents(proposers=("w", "critc")))
    orchestrator = Orchestrator(workers=[worker, critic], memory=None)
    message = (
        "task 'a' uses strategy worker 'critc', which is not among the orchestrator's workers "
        "(did you mean 'critic'?) (workers: critic, w); add it to Orchestrator(workers=[...])"
    )
    with pytest.raises(GraphError) as estimated:
        orchestrator.estimate(graph)
    with pytest.raises(GraphError) as executed:
        await orchestrator.execute(graph)
    assert str(estimated.value) == str(executed.value) == message


def _task(strategy: Any = None, *, votes: Any = None, verify: str | None = None) -> Any:
    return TaskGraph().add("t", agent="w", strategy=strategy, votes=votes, verify=verify)


@pytest.mark.parametrize(
    ("task", "worker", "answers"),
    [
        (_task(BestOfN(n=4, judge="c")), {}, 8),
        (_task(BestOfN(n=4, judge="c"), verify="j"), {}, 9),  # the winner is verified
        (_task(BestOfN(n=4), verify="j"), {}, 8),  # the judge scores: no verdict after
        (_task(BestOfN(n=3, score="m:f"), verify="j"), {}, 4),
        (_task(MixtureOfAgents(proposers=("a", "b", "c"))), {}, 4),
        (_task(MixtureOfAgents(proposers=("a", "b")), verify="j"), {}, 4),
        (_task(SelfRefine(rounds=2)), {}, 5),
        (_task(SelfRefine(rounds=2), verify="j"), {}, 5),  # the judge critiques
        (_task(SelfRefine(rounds=2, critic="c"), verify="j"), {}, 6),
        (_task(votes=AdaptiveVotes(max_samples=7)), {}, 7),
        (_task(votes=AdaptiveVotes(max_samples=7), verify="j"), {}, 8),
        (_task(SelfRefine(rounds=1)), {"votes": 5}, 3),  # the strategy replaces the votes
        (_task(), {"votes": AdaptiveVotes(max_samples=6)}, 6),
        (_task(), {"votes": 5, "verify": _agent("j")}, 6),
    ],
)
def test_answers_of_counts_the_most_calls_a_task_asks_for(
    task: Any, worker: dict[str, Any], answers: int
) -> None:
    assert answers_of(task, _agent("w", **worker)) == answers


# --- estimate --------------------------------------------------------------------------------


def _priced(name: str, price: float, cap: int) -> Agent:
    model = FunctionModel(
        lambda request: "x", input_price=price, output_price=price, latency=1.0, name=name
    )
    return Agent(name.split("-")[0], model, max_output_tokens=cap)


def _estimates(**options: Any) -> tuple[Any, Any, Any]:
    """The estimate of one task given `options`, and of the same task plain on the worker and
    on `other` (what each of their calls reads)."""
    worker = _priced("worker-mini", 1.0, 1000)
    other = _priced("other-big", 2.0, 200)
    judge = _priced("judge-free", 0.0, 50)
    orchestrator = Orchestrator(workers=[worker, other, judge], memory=None)

    def one(agent: str, **more: Any) -> Any:
        graph = TaskGraph()
        graph.add("a", agent=agent, prompt="Answer.", max_output_tokens=100, **more)
        return orchestrator.estimate(graph)

    return one("worker", **options), one("worker").tasks["a"], one("other").tasks["a"]


def test_best_of_n_is_priced_as_n_answers_and_n_scores() -> None:
    run, plain, _ = _estimates(strategy=BestOfN(n=3, judge="judge"))
    task, read = run.tasks["a"], plain.input_tokens
    # three answers, then three scores, each reading the prompt and one answer (judge at $0)
    assert task.input_tokens == 3 * read + 3 * (read + 100)
    assert task.output_tokens == 3 * 100 + 3 * 50
    assert task.usd == pytest.approx(3 * (read + 100) / 1e6)
    assert task.seconds == 2.0  # the answers at once, then the scores at once
    assert run.by_model == {"worker-mini": pytest.approx(3 * (read + 100) / 1e6), "judge-free": 0}


def test_a_mixture_is_priced_per_proposer_and_its_aggregator() -> None:
    strategy = MixtureOfAgents(proposers=("worker", "other"), aggregator="other")
    run, plain, on_other = _estimates(strategy=strategy)
    task, read, read_other = run.tasks["a"], plain.input_tokens, on_other.input_tokens
    # The aggregator reads the prompt and both proposals, each labelled (8 tokens).
    aggregate = read_other + 2 * (100 + 8)
    assert task.input_tokens == read + read_other + aggregate
    assert task.output_tokens == 3 * 100
    mini, big = (read + 100) / 1e6, 2 * (read_other + 100 + aggregate + 100) / 1e6
    assert run.by_model == {"worker-mini": pytest.approx(mini), "other-big": pytest.approx(big)}
    assert task.usd == pytest.approx(mini + big)
    assert task.seconds == 2.0  # the proposals at once, then the aggregation


def test_self_refine_is_priced_as_an_answer_and_its_rounds() -> None:
    run, plain, _ = _estimates(strategy=SelfRefine(rounds=2, critic="judge"))
    task, read = run.tasks["a"], plain.input_tokens
    # Each round: a critique of the prompt and the answer, then a revision that reads them both.
    assert task.input_tokens == read + 2 * (read + 100) + 2 * (read + 100 + 50)
    assert task.output_tokens == 100 + 2 * (50 + 100)
    assert task.usd == pytest.approx(((read + 100) + 2 * (read + 150 + 100)) / 1e6)
    assert task.seconds == 5.0  # five calls, one after another


def test_adaptive_votes_are_priced_at_their_most_samples_in_batches() -> None:
    run, plain, _ = _estimates(votes=AdaptiveVotes(max_samples=6, batch=2))
    task, read = run.tasks["a"], plain.input_tokens
    assert (task.input_tokens, task.output_tokens) == (6 * read, 6 * 100)
    assert task.usd == pytest.approx(6 * (read + 100) / 1e6)
    assert task.seconds == 3.0  # three batches of two, one after another
    assert run.usd == pytest.approx(task.usd)


def test_a_verify_judge_that_scores_is_not_priced_twice() -> None:
    scored, plain, _ = _estimates(strategy=BestOfN(n=2), verify="judge")
    verified, _, _ = _estimates(strategy=BestOfN(n=2, judge="judge"), verify="judge")
    read = plain.input_tokens
    assert scored.tasks["a"].output_tokens == 2 * 100 + 2 * 50
    assert verified.tasks["a"].output_tokens == 2 * 100 + 2 * 50 + 50
    assert verified.tasks["a"].input_tokens == scored.tasks["a"].input_tokens + read + 100


# --- the scheduler hands them to run_checked -------------------------------------------------


class _Spy:
    """Records what the scheduler passes to `run_checked`, then runs it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: dict[str, dict[str, Any]] = {}
        real = scheduler.run_checked

        def spy(agent: Agent, prompt: str, **options: Any) -> Any:
            self.calls[agent.name + ":" + prompt.rsplit("\n", 1)[-1]] = options
            return real(agent, prompt, **options)

        monkeypatch.setattr(scheduler, "run_checked", spy)


async def test_the_scheduler_passes_votes_strategy_and_its_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = _Spy(monkeypatch)
    worker = _agent("w", "13", votes=3)
    critic = Agent("critic", ScriptedModel(['{"passed": true, "feedback": ""}']))
    graph = TaskGraph()
    graph.add("refined", agent="w", prompt="refine", strategy=SelfRefine(rounds=1, critic="critic"))
    graph.add("adaptive", agent="w", prompt="adapt", votes=AdaptiveVotes(max_samples=4))
    graph.add("plain", agent="w", prompt="plain")

    result = await Orchestrator(workers=[worker, critic], memory=None).execute(graph)

    assert [task.status for task in result.tasks.values()] == ["succeeded"] * 3
    refined = spy.calls["w:refine"]
    assert refined["strategy"] == SelfRefine(rounds=1, critic="critic")
    assert refined["agents"] == {"critic": critic}
    assert refined["votes"] == 1  # the task's strategy replaces the worker's votes
    assert (spy.calls["w:adapt"]["votes"], spy.calls["w:adapt"]["strategy"]) == (
        AdaptiveVotes(max_samples=4),
        None,
    )
    assert (spy.calls["w:plain"]["votes"], spy.calls["w:plain"]["agents"]) == (3, None)


async def test_a_planned_task_with_a_strategy_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy(monkeypatch)
    plan = {
        "tasks": [
            {
                "id": "hard",
                "agent": "w",
                "instructions": "Solve it.",
                "strategy": {"kind": "best_of_n", "n": 2, "judge": "critic"},
            },
            {
                "id": "count",
                "agent": "w",
                "instructions": "Count it.",
                "votes": 3,
            },
        ]
    }

    def planner_answer(request: ModelRequest) -> str:
        if request.output_name == "Plan":
            return json.dumps(plan)
        return "FINAL"

    scores = ScriptedModel(['{"score": 3, "reason": "ok"}', '{"score": 8, "reason": "better"}'])
    critic = Agent("critic", scores)
    worker = _agent("w", "42")
    orchestrator = Orchestrator(
        planner=Agent("planner", FunctionModel(planner_answer, name="reasoner")),
        workers=[worker, critic],
        memory=None,
    )

    result = await orchestrator.run("Solve and count.")

    assert result.tasks["hard"].status == "succeeded"
    assert result.tasks["hard"].usage.calls == 4  # two answers, two scores
    assert scores.calls == 2
    hard = spy.calls["w:Solve it."]
    assert (hard["strategy"], hard["agents"]) == (BestOfN(n=2, judge="critic"), {"critic": critic})
    assert spy.calls["w:Count it."]["votes"] == AdaptiveVotes(max_samples=3)
    assert result.tasks["count"].output == "42"


async def test_a_planned_strategy_over_the_budget_is_sent_back_before_it_runs() -> None:
    plans = [
        {
            "tasks": [
                {
                    "id": "hard",
                    "agent": "w",
                    "instructions": "Solve.",
                    "strategy": {"kind": "best_of_n", "n": 10, "judge": "w"},
                }
            ]
        },
        {"tasks": [{"id": "hard", "agent": "w", "instructions": "Solve."}]},
    ]
    asked: list[ModelRequest] = []

    def planner_answer(request: ModelRequest) -> str:
        if request.output_name == "Plan":
            asked.append(request)
            return json.dumps(plans.pop(0))
        return "FINAL"

    pricey = FunctionModel(lambda request: "42", input_price=10, output_price=10, name="pricey")
    worker = Agent("w", pricey, max_output_tokens=1000)
    orchestrator = Orchestrator(
        planner=Agent("planner", FunctionModel(planner_answer, name="reasoner")),
        workers=[worker],
        memory=None,
    )

    result = await orchestrator.run("Solve it.", budget=Budget(usd=0.1))

    assert result.status == "succeeded"
    assert pricey.calls == 1  # the repaired plan's one answer; best-of-10 never started
    repair = str(asked[1].messages[-1]["content"])
    # ten answers and ten scores of up to 1,000 tokens at $10 per million each
    assert "- the plan's projected cost of $0.30 is over the $0.10 left in the budget" in repair


# --- YAML workflows --------------------------------------------------------------------------

WORKFLOW = """\
name: strategies
agents:
  writer: {model: openai/gpt-4o-mini}
  critic: {model: openai/gpt-4o-mini}
  other: {model: anthropic/claude-haiku-4-5}
  counter: {model: openai/gpt-4o-mini, votes: {max_samples: 6}}
steps:
  - id: best
    agent: writer
    prompt: Write a haiku.
    strategy: {best_of_n: {n: 3, judge: critic}}
  - id: mixed
    agent: writer
    prompt: Name a color.
    strategy: {mixture_of_agents: {proposers: [writer, other], aggregator: critic}}
  - id: refined
    agent: writer
    prompt: Fix the text.
    strategy: {self_refine: {rounds: 2, critic: critic}}
  - id: counted
    agent: counter
    prompt: Count the words.
"""


@pytest.mark.parametrize(
    ("step", "calls", "strategy"),
    [
        # three answers, three scores
        ("best", {"writer": 3, "critic": 3}, BestOfN(n=3, judge="critic")),
        # one proposal each, then the aggregation
        (
            "mixed",
            {"writer": 1, "other": 1, "critic": 1},
            MixtureOfAgents(proposers=("writer", "other"), aggregator="critic"),
        ),
        # an answer, then a critique that passes it (the seeded simulation's verdict)
        ("refined", {"writer": 1, "critic": 1}, SelfRefine(rounds=2, critic="critic")),
    ],
)
async def test_a_workflow_step_runs_its_strategy_simulated(
    step: str, calls: dict[str, int], strategy: Any, tmp_path: Path
) -> None:
    from delegate.workflows.loader import load_workflow_text
    from delegate.workflows.runtime import compile_workflow, run_workflow

    kept = WORKFLOW.split("  - id: ")
    text = kept[0] + "  - id: " + next(part for part in kept[1:] if part.startswith(step + "\n"))
    loaded = load_workflow_text(text, str(tmp_path / "wf.yaml"))
    url = f"sqlite:///{tmp_path / 'r.db'}"
    compiled = compile_workflow(loaded, simulate=True, time_scale=0.0, db=url, text=text)

    result = await run_workflow(compiled, {})

    assert result.status == "succeeded", result.error
    assert result.tasks[step].usage.calls == sum(calls.values())
    made = {name: len(agent.model.requests) for name, agent in compiled.agents.items()}
    assert {name: count for name, count in made.items() if count} == calls
    with Store.open(url) as store:  # the stored graph keeps the step's strategy
        stored = store.get_run(result.run_id)
    assert stored is not None
    (task,) = GraphSpec.from_json(stored.graph).tasks
    assert task.strategy == strategy


def test_delegate_run_simulates_a_workflow_of_strategies_and_adaptive_votes(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from delegate.cli import main

    path = tmp_path / "strategies.yaml"
    path.write_text(WORKFLOW)
    args = ["run", str(path), "--simulate", "--time-scale", "0", "--json"]
    done = CliRunner().invoke(main, [*args, "--db", f"sqlite:///{tmp_path / 'r.db'}"])

    assert done.exit_code == 0, done.output
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded"
    calls = {task_id: task["usage"]["calls"] for task_id, task in run["tasks"].items()}
    assert calls["best"] == 6
    assert calls["mixed"] == 3
    assert calls["refined"] == 2  # the seeded simulation's critic passes the first answer
    # The agent's adaptive votes: at least `min_samples`, at most `max_samples` (where the
    # stopping rule stops is `delegate.orchestrator.checks`' business).
    assert 2 <= calls["counted"] <= 6


def test_the_readmes_workflow_with_strategies_is_valid() -> None:
    from delegate.workflows.loader import load_workflow_text

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("In a workflow file, a step (or an agent")
    block = readme[readme.index("```yaml\n", start) + 8 :]
    spec = load_workflow_text("name: bakery\n" + block[: block.index("```")], "bakery.yaml").spec
    strategies = {
        step.id: step.strategy.to_strategy()
        for step in spec.steps or []
        if getattr(step, "strategy", None) is not None
    }
    assert strategies == {
        "slogan": BestOfN(n=3, judge="critic"),
        "next": MixtureOfAgents(proposers=("writer", "analyst"), aggregator="critic"),
        "ad": SelfRefine(rounds=2, critic="critic"),
    }
    counter = spec.agents["counter"].votes
    assert not isinstance(counter, int)
    assert counter.to_votes() == AdaptiveVotes(max_samples=10, confidence=0.95)
