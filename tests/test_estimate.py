"""`Orchestrator.estimate` projects tokens, cost and latency close to what a run with fakes does."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from delegate import Agent, GraphError, Orchestrator, TaskGraph
from delegate.agents.models import ModelRequest, Price
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio


class _Unpriced:
    """A model whose price is unknown."""

    name = "local/mystery"
    price: Price | None = None

    async def request(self, request: ModelRequest) -> object:  # never called by estimate
        raise AssertionError("estimate must not call a model")


def _full_answer(request: ModelRequest) -> str:
    # answers exactly as long as allowed, so the run uses the whole output allowance
    return "word " * 10_000


def _graph(researcher: Agent, writer: Agent) -> TaskGraph:
    graph = TaskGraph()
    notes = [
        graph.add(f"note{i}", agent=researcher, prompt=f"Notes on {{{{ topic }}}}, part {i}.")
        for i in range(4)
    ]
    graph.add("report", agent=writer, prompt="Write the report on {{ topic }}.", deps=notes)
    return graph


async def test_estimate_is_close_to_the_real_run() -> None:
    mini = FunctionModel(
        _full_answer, latency=0.02, input_price=0.15, output_price=0.60, name="openai/gpt-4o-mini"
    )
    big = FunctionModel(
        _full_answer, latency=0.05, input_price=2.0, output_price=8.0, name="openai/o3"
    )
    researcher = Agent("researcher", mini, instructions="Five bullets.", max_output_tokens=120)
    writer = Agent("writer", big, instructions="One page.", max_output_tokens=300)
    orchestrator = Orchestrator()
    graph = _graph(researcher, writer)

    estimate = orchestrator.estimate(graph, {"topic": "sodium batteries"})
    assert (mini.calls, big.calls) == (0, 0)  # nothing was called
    result = await orchestrator.execute(graph, {"topic": "sodium batteries"})

    assert result.status == "succeeded"
    assert estimate.output_tokens == result.usage.output_tokens == 4 * 120 + 300
    # input: the prompts are counted exactly; the context labels are an approximation
    assert (
        abs(estimate.input_tokens - result.usage.input_tokens) <= 0.05 * result.usage.input_tokens
    )
    assert estimate.usd is not None
    assert estimate.usd == pytest.approx(result.usage.cost_usd, rel=0.05)
    assert estimate.seconds == pytest.approx(0.02 + 0.05)
    assert estimate.critical_path[-1] == "report"
    assert estimate.by_model.keys() == {"openai/gpt-4o-mini", "openai/o3"}
    for task_id, task in result.tasks.items():
        assert estimate.tasks[task_id].output_tokens == task.usage.output_tokens
        assert estimate.tasks[task_id].model == task.model


async def test_structured_output_and_function_tasks() -> None:
    class Answer(BaseModel):
        value: int

    model = FunctionModel(lambda r: '{"value": 1}', name="openai/gpt-4o-mini")
    typed = Agent("typed", model, output_type=Answer, max_output_tokens=50)
    graph = TaskGraph()
    first = graph.add("first", agent=typed, prompt="Pick a number.")
    graph.add("double", fn=lambda ctx: ctx.deps["first"].value * 2, deps=[first])
    estimate = Orchestrator().estimate(graph)
    schema_tokens = estimate.tasks["first"].input_tokens
    plain = Orchestrator().estimate(_single(Agent("plain", model, max_output_tokens=50)))
    assert schema_tokens > plain.tasks["only"].input_tokens  # the output schema is counted
    assert estimate.tasks["double"].input_tokens == 0
    assert estimate.tasks["double"].model is None


def _single(agent: Agent) -> TaskGraph:
    graph = TaskGraph()
    graph.add("only", agent=agent, prompt="Pick a number.")
    return graph


def test_unknown_price_makes_the_cost_unknown() -> None:
    agent = Agent("local", _Unpriced(), max_output_tokens=100)  # type: ignore[arg-type]
    estimate = Orchestrator().estimate(_single(agent))
    assert estimate.usd is None
    assert estimate.unpriced == ["local/mystery"]
    assert estimate.tasks["only"].usd is None
    priced = Orchestrator(prices={"local/mystery": (1.0, 2.0)}).estimate(_single(agent))
    tokens = priced.tasks["only"]
    assert priced.usd == pytest.approx((tokens.input_tokens * 1.0 + 100 * 2.0) / 1e6)


def test_default_allowance_follows_the_reasoning_effort() -> None:
    model = FunctionModel(lambda r: "x", name="openai/o3")
    plain = Orchestrator().estimate(_single(Agent("a", model)))
    high = Orchestrator().estimate(_single(Agent("b", model, reasoning_effort="high")))
    assert plain.output_tokens == 4096
    assert high.output_tokens == 32768


def test_estimate_checks_the_graph_like_execute() -> None:
    graph = TaskGraph()
    graph.add("t", agent="nobody", prompt="{{ missing }}")
    with pytest.raises(GraphError, match="nobody"):
        Orchestrator().estimate(graph)


def test_votes_judges_and_per_task_caps_are_projected() -> None:
    mini = FunctionModel(lambda r: "x", input_price=1.0, output_price=1.0, name="mini")
    judge = Agent("judge", FunctionModel(lambda r: "ok", name="judge-model"), max_output_tokens=50)
    worker = Agent("worker", mini, max_output_tokens=1000)
    orchestrator = Orchestrator(workers=[worker, judge], memory=None)

    single = TaskGraph()
    single.add("a", agent="worker", prompt="Answer.")
    voted = TaskGraph()
    voted.add("a", agent="worker", prompt="Answer.", votes=3, max_output_tokens=100)
    judged = TaskGraph()
    judged.add("a", agent="worker", prompt="Answer.", max_output_tokens=100, verify="judge")

    one = orchestrator.estimate(single).tasks["a"]
    three = orchestrator.estimate(voted).tasks["a"]
    checked = orchestrator.estimate(judged).tasks["a"]
    assert one.output_tokens == 1000
    assert three.output_tokens == 300  # the task's cap, three samples
    assert three.input_tokens == 3 * one.input_tokens
    assert three.usd == pytest.approx(3 * (one.input_tokens + 100) / 1e6)
    # the judge reads the prompt and an answer, and answers within its own cap (priced at 0)
    assert checked.input_tokens == one.input_tokens + (one.input_tokens + 100)
    assert checked.output_tokens == 100 + 50
    assert checked.usd == pytest.approx((one.input_tokens + 100) / 1e6)
