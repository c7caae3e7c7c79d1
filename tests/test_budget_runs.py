"""Budgets end to end, through `Orchestrator.execute`: no overshoot, shrinking, refusals, cheaper
models, effort lowering, prices, overshoots, deadlines, the calls cap, nesting, reports, waiting.

The ledger's own bookkeeping is tested in tests/test_budget.py; here every call goes through the
run's `CallGate`, and the fakes (which honour `max_output_tokens` and price their usage) stand in
for providers.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _ledgers import capture_ledgers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from structlog.testing import capture_logs

from delegate.agents.agent import Agent
from delegate.agents.limits import Budget
from delegate.agents.models import ModelRequest, ModelResponse, Price, Usage
from delegate.agents.tokens import count_pieces, count_pieces_messages
from delegate.errors import PriceUnknownError
from delegate.orchestrator import run as run_module
from delegate.orchestrator.budget import NANOS_PER_USD, BudgetLedger, format_usd
from delegate.orchestrator.calls import DEFAULT_OUTPUT_TOKENS, EFFORT_OUTPUT_TOKENS
from delegate.orchestrator.graph import TaskContext, TaskGraph
from delegate.orchestrator.run import Orchestrator, RunResult
from delegate.testing import FunctionModel, ScriptedModel, tool_call

pytestmark = pytest.mark.anyio

LONG = " ".join(["word"] * 3000)  # 3,000 tokens: longer than any allowance below, so it is cut
TIME_OUT = "the run's time budget ran out"


def _input(request: ModelRequest, model: str = "function") -> int:
    """The input tokens of a request as the fakes count them, and so the gate (`count_tokens`)."""
    return count_pieces_messages(request.messages, model, request.tools, request.output_schema)


def _prompt_tokens(prompt: str, model: str = "function") -> int:
    """The input tokens of a one-message request (an agent without instructions)."""
    return count_pieces_messages([{"role": "user", "content": prompt}], model)


def _held_within_limits(ledger: BudgetLedger) -> list[str]:
    """The scopes where spent + reserved passes a limit (should be none, at every instant)."""
    broken: list[str] = []
    for scope in ledger.scopes:
        budget = scope.budget
        if budget.tokens is not None and scope.spent_tokens + scope.reserved_tokens > budget.tokens:
            broken.append(f"{scope.label}: tokens")
        if budget.calls is not None and scope.spent_calls + scope.reserved_calls > budget.calls:
            broken.append(f"{scope.label}: calls")
        if scope.usd_limit_nanos is not None and (
            scope.spent_usd_nanos + scope.reserved_usd_nanos > scope.usd_limit_nanos
        ):
            broken.append(f"{scope.label}: usd")
    return broken


def _without_logger_name(entry: Mapping[str, Any]) -> dict[str, Any]:
    # structlog adds the logger's name once delegate's logging is configured (by an earlier test).
    return {key: value for key, value in entry.items() if key != "logger_name"}


def _statuses(result: RunResult) -> dict[str, str]:
    return {task_id: task.status for task_id, task in result.tasks.items()}


def _budget_refusal(error: str | None) -> bool:
    return error is not None and bool(re.fullmatch(r"budget of .+ would be exceeded: .+", error))


# --- 1. no overshoot, whatever the sizes and the concurrency ----------------------------------


@dataclass
class _World:
    """One generated run: its agents, their models, and what each task answers."""

    agents: list[Agent]
    models: list[FunctionModel]
    answers: dict[int, tuple[str, int]] = field(default_factory=dict)  # text, checkpoints
    violations: list[str] = field(default_factory=list)
    ledgers: list[BudgetLedger] = field(default_factory=list)


def _world(rng: random.Random, n_agents: int, n_tasks: int) -> _World:
    world = _World([], [])

    async def answer(request: ModelRequest) -> str:
        # Runs while this call's reservation is held: spent + reserved must be within every
        # limit right now, with the other calls in flight holding theirs.
        world.violations.extend(_held_within_limits(world.ledgers[-1]))
        task = int(re.findall(r"\[t(\d+)\]", request.messages[-1]["content"])[-1])
        text, checkpoints = world.answers[task]
        for _ in range(checkpoints):
            await anyio.lowlevel.checkpoint()
        world.violations.extend(_held_within_limits(world.ledgers[-1]))
        return text

    for j in range(n_agents):
        model = FunctionModel(
            answer,
            name=f"m{j}",
            input_price=rng.choice([0.0, rng.uniform(0.01, 20.0)]),
            output_price=rng.uniform(0.01, 80.0),
        )
        agent = Agent(
            f"a{j}",
            model,
            max_output_tokens=rng.choice([None, rng.randint(1, 2_500)]),
            min_output_tokens=rng.choice([256, rng.randint(1, 600)]),
            budget=None
            if rng.random() < 0.6
            else Budget(
                tokens=rng.choice([None, rng.randint(0, n_tasks * 400)]),
                usd=rng.choice([None, rng.uniform(0.0, n_tasks * 0.01)]),
            ),
            call_budget=None if rng.random() < 0.7 else Budget(tokens=rng.randint(300, 3_000)),
        )
        world.models.append(model)
        world.agents.append(agent)
    for i in range(n_tasks):
        world.answers[i] = (" ".join(["word"] * rng.randint(0, 3_000)), rng.randint(0, 3))
    return world


def _graph(rng: random.Random, world: _World, n_tasks: int) -> TaskGraph:
    graph = TaskGraph()
    for i in range(n_tasks):
        deps = [f"t{rng.randrange(i)}"] if i and rng.random() < 0.1 else []
        task_budget = None
        if rng.random() < 0.2:
            task_budget = Budget(
                tokens=rng.choice([None, rng.randint(0, 4_000)]),
                usd=rng.choice([None, rng.uniform(0.0, 0.05)]),
            )
        graph.add(
            f"t{i}",
            agent=rng.choice(world.agents),
            prompt=f"Answer question [t{i}].",
            deps=deps,
            budget=task_budget,
        )
    return graph


def _rounding_slack(calls: int) -> float:
    """How far a float sum of per-call costs may sit above the ledger's exact nano-dollars.

    The ledger settles each call at its cost rounded to the *nearest* nano-dollar and keeps
    spent ≤ limit exactly in integers; each float cost can be up to half a nano-dollar above its
    rounded value, and summing floats adds a few ulps. So the reported float total may exceed the
    limit by at most calls × 0.5e-9 plus that (tiny) summation error.
    """
    return calls * 0.5e-9 + 1e-12


def _check_run_spend(result: RunResult, ledger: BudgetLedger, budget: Budget) -> None:
    """The run's totals are within its limits: exactly in the ledger, within rounding as floats."""
    usage = result.usage
    assert budget.tokens is not None
    assert budget.usd is not None
    assert usage.input_tokens + usage.output_tokens <= budget.tokens
    assert usage.cost_usd <= budget.usd + _rounding_slack(usage.calls)
    run_scope = next(scope for scope in ledger.scopes if scope.label == "run")
    assert run_scope.label == "run"
    assert run_scope.spent_tokens == usage.input_tokens + usage.output_tokens
    assert run_scope.spent_calls == usage.calls
    assert run_scope.usd_limit_nanos is not None
    assert run_scope.spent_usd_nanos <= run_scope.usd_limit_nanos  # exact, in integers


def _check_nested_spend(result: RunResult, world: _World, graph: TaskGraph) -> None:
    """Each agent's and each task's spend is within its own budget."""
    for agent in world.agents:
        spent = result.usage.by_agent.get(agent.name, Usage())
        limits = agent.budget or Budget()
        if limits.tokens is not None:
            assert spent.total_tokens <= limits.tokens
        if limits.usd is not None:
            assert spent.cost_usd <= limits.usd + _rounding_slack(spent.calls)
    for task in graph:
        spent = result.tasks[task.id].usage
        limits = task.budget or Budget()
        if limits.tokens is not None:
            assert spent.total_tokens <= limits.tokens
        if limits.usd is not None:
            assert spent.cost_usd <= limits.usd + _rounding_slack(spent.calls)


def _check_requests(world: _World) -> None:
    """Under a sized budget every request carries its allowance, within each call's caps."""
    for agent, model in zip(world.agents, world.models, strict=True):
        cap = agent.max_output_tokens or DEFAULT_OUTPUT_TOKENS
        per_call = (agent.call_budget or Budget()).tokens
        for request in model.requests:
            assert request.max_output_tokens is not None
            assert request.max_output_tokens <= cap
            if per_call is not None:
                assert _input(request, model.name) + request.max_output_tokens <= per_call


def _check_outcomes(result: RunResult) -> int:
    """Each task succeeded, was refused by a budget, or was skipped after a refused dependency.

    Returns:
        how many tasks a budget refused.
    """
    refused = 0
    for task in result.tasks.values():
        if task.status == "failed":
            assert _budget_refusal(task.error), task.error
            refused += 1
        elif task.status == "skipped":
            match = re.fullmatch(r"dependency '(t\d+)' failed", task.error or "")
            assert match is not None, task.error
            assert result.tasks[match.group(1)].status == "failed"
        else:
            assert task.status == "succeeded", (task.id, task.status, task.error)
            assert task.usage.calls == 1
    return refused


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_tasks=st.integers(100, 200),
    concurrency=st.integers(32, 200),
    n_agents=st.integers(1, 4),
    tokens_per_task=st.integers(200, 4_000),
    usd_per_task=st.floats(0.001, 0.1, allow_nan=False),
)
async def test_no_budget_is_ever_overshot_under_concurrency(
    seed: int,
    n_tasks: int,
    concurrency: int,
    n_agents: int,
    tokens_per_task: int,
    usd_per_task: float,
) -> None:
    rng = random.Random(seed)
    world = _world(rng, n_agents, n_tasks)
    graph = _graph(rng, world, n_tasks)
    budget = Budget(tokens=tokens_per_task * n_tasks, usd=usd_per_task * n_tasks)
    with capture_ledgers() as ledgers:
        world.ledgers = ledgers
        result = await Orchestrator(max_concurrency=concurrency).execute(graph, budget=budget)
    assert len(ledgers) == 1
    ledger = ledgers[0]

    # At every instant, in every scope: checked inside each call, and once more at the end.
    assert world.violations == []
    assert _held_within_limits(ledger) == []
    assert ledger.overshoots == []
    for scope in ledger.scopes:
        assert (scope.reserved_tokens, scope.reserved_usd_nanos, scope.reserved_calls) == (0, 0, 0)
    _check_run_spend(result, ledger, budget)
    _check_nested_spend(result, world, graph)
    _check_requests(world)
    assert result.usage.calls == sum(model.calls for model in world.models)
    assert result.usage.refused == _check_outcomes(result) == ledger.refused


# --- 2. shrinking and refusing ----------------------------------------------------------------


async def test_output_is_shrunk_to_exactly_the_tokens_left() -> None:
    model = FunctionModel(lambda request: LONG)
    agent = Agent("w", model, max_output_tokens=1_000)
    graph = TaskGraph()
    graph.add("t", agent=agent, prompt="Summarise the report.")
    budget = Budget(tokens=_prompt_tokens("Summarise the report.") + 400)

    result = await Orchestrator().execute(graph, budget=budget)

    assert model.calls == 1
    request = model.requests[0]
    assert budget.tokens is not None
    assert request.max_output_tokens == budget.tokens - _input(request) == 400
    task = result.tasks["t"]
    assert (task.status, task.usage.output_tokens) == ("succeeded", 400)  # cut at the allowance
    assert task.usage.total_tokens == budget.tokens  # the whole budget, and not a token more
    assert result.usage.refused == 0


async def test_output_is_shrunk_to_exactly_the_dollars_left() -> None:
    price = Price(1.0, 4.0)
    model = FunctionModel(lambda request: LONG, input_price=1.0, output_price=4.0)
    agent = Agent("w", model, max_output_tokens=1_000)
    graph = TaskGraph()
    graph.add("t", agent=agent, prompt="Summarise the report.")
    input_tokens = _prompt_tokens("Summarise the report.")
    # A quarter of an output token's price on top of 400 output tokens: 400 fit, 401 do not.
    usd = price.cost(input_tokens, 400) + 1e-6

    result = await Orchestrator().execute(graph, budget=Budget(usd=usd))

    request = model.requests[0]
    assert _input(request) == input_tokens
    assert request.max_output_tokens == 400
    assert result.tasks["t"].usage == Usage(
        input_tokens=input_tokens,
        output_tokens=400,
        cost_usd=price.cost(input_tokens, 400),
        calls=1,
    )
    assert result.usage.cost_usd <= usd


async def test_below_min_output_tokens_the_call_is_refused_and_never_sent() -> None:
    model = FunctionModel(lambda request: LONG)
    agent = Agent("w", model, max_output_tokens=1_000)
    graph = TaskGraph()
    graph.add("t", agent=agent, prompt="Summarise the report.")
    input_tokens = _prompt_tokens("Summarise the report.")
    limit = input_tokens + 100  # 100 output tokens left, under the default floor of 256

    result = await Orchestrator().execute(graph, budget=Budget(tokens=limit))

    assert model.calls == 0
    task = result.tasks["t"]
    assert task.status == "failed"
    assert task.error == (
        f"budget of {limit:,} tokens for run would be exceeded: spent 0, reserved 0, this call "
        f"to function needs at least {input_tokens + 256:,} ({input_tokens:,} input + 256 output "
        "tokens); raise budget.tokens or lower max_output_tokens"
    )
    for part in ("budget of", "for run", "spent 0", "needs at least", "raise budget"):
        assert part in task.error
    assert (result.status, result.usage.refused, result.usage.calls) == ("failed", 1, 0)


async def test_the_agents_own_minimum_lets_a_smaller_call_through() -> None:
    model = FunctionModel(lambda request: LONG)
    agent = Agent("w", model, max_output_tokens=1_000, min_output_tokens=100)
    graph = TaskGraph()
    graph.add("t", agent=agent, prompt="Summarise the report.")
    limit = _prompt_tokens("Summarise the report.") + 150

    result = await Orchestrator().execute(graph, budget=Budget(tokens=limit))

    assert [request.max_output_tokens for request in model.requests] == [150]
    assert result.tasks["t"].status == "succeeded"


async def test_a_usd_refusal_names_the_money() -> None:
    price = Price(1.0, 4.0)
    model = FunctionModel(lambda request: LONG, input_price=1.0, output_price=4.0)
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model, max_output_tokens=1_000), prompt="Summarise it.")
    input_tokens = _prompt_tokens("Summarise it.")
    usd = price.cost(input_tokens, 100)

    result = await Orchestrator().execute(graph, budget=Budget(usd=usd))

    assert model.calls == 0
    assert result.tasks["t"].error == (
        f"budget of {format_usd(usd)} for run would be exceeded: spent $0.00, reserved $0.00, "
        f"this call to function needs at least {format_usd(price.cost(input_tokens, 256))} "
        f"({input_tokens:,} input + 256 output tokens); raise budget.usd or lower "
        "max_output_tokens"
    )


async def test_a_task_that_calls_no_model_never_touches_the_ledger() -> None:
    model = FunctionModel(lambda request: "never")
    graph = TaskGraph()
    graph.add("compute", fn=lambda context: 6 * 7)
    graph.add("ask", agent=Agent("w", model), prompt="Say something.")

    result = await Orchestrator().execute(graph, budget=Budget(tokens=0, usd=0.0, calls=0))

    assert _statuses(result) == {"compute": "succeeded", "ask": "failed"}
    assert result.tasks["compute"].output == 42
    assert (model.calls, result.usage.refused, result.status) == (0, 1, "partial")


async def test_the_run_budget_replaces_the_orchestrators_default() -> None:
    model = FunctionModel(lambda request: "ok")
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model), prompt="Say ok.")
    orchestrator = Orchestrator(budget=Budget(tokens=10))

    refused = await orchestrator.execute(graph)
    allowed = await orchestrator.execute(graph, budget=Budget(tokens=10_000))

    assert (refused.tasks["t"].status, allowed.tasks["t"].status) == ("failed", "succeeded")
    assert refused.tasks["t"].error is not None
    assert refused.tasks["t"].error.startswith("budget of 10 tokens for run would be exceeded")
    assert model.calls == 1


# --- 3. a cheaper model -----------------------------------------------------------------------


def _cheaper_setup() -> tuple[FunctionModel, FunctionModel, TaskGraph, Budget]:
    primary = FunctionModel(
        lambda request: "primary", name="big", input_price=1_000.0, output_price=1_000.0
    )
    cheap = FunctionModel(lambda request: "cheap", name="small", input_price=0.1, output_price=0.1)
    graph = TaskGraph()
    agent = Agent("w", primary, cheaper=cheap, max_output_tokens=500)
    graph.add("t", agent=agent, prompt="hello")
    # The primary needs ≥ $0.256 even shrunk to the floor; the cheap one $0.00005 for all 500.
    return primary, cheap, graph, Budget(usd=0.01)


async def test_a_call_that_does_not_fit_goes_to_the_cheaper_model() -> None:
    primary, cheap, graph, budget = _cheaper_setup()

    result = await Orchestrator().execute(graph, budget=budget)

    assert (primary.calls, cheap.calls) == (0, 1)
    assert cheap.requests[0].max_output_tokens == 500  # it fits whole: no shrinking
    task = result.tasks["t"]
    assert (task.status, task.output) == ("succeeded", "cheap")
    assert list(result.usage.by_model) == ["small"]
    input_tokens = _input(cheap.requests[0], "small")
    assert task.usage == Usage(
        input_tokens=input_tokens,
        output_tokens=1,
        cost_usd=Price(0.1, 0.1).cost(input_tokens, 1),
        calls=1,
    )


async def test_the_task_reports_the_cheaper_model_that_answered() -> None:
    _, _, graph, budget = _cheaper_setup()

    result = await Orchestrator().execute(graph, budget=budget)

    assert result.tasks["t"].model == "small"


async def test_calls_routed_to_the_cheaper_model_are_not_counted_as_refused() -> None:
    primary = FunctionModel(
        lambda request: "primary", name="big", input_price=1_000.0, output_price=1_000.0
    )
    cheap = FunctionModel(lambda request: "cheap", name="small", latency=0.01)
    agent = Agent("w", primary, cheaper=cheap, max_output_tokens=1_000)
    graph = TaskGraph()
    for i in range(3):
        graph.add(f"t{i}", agent=agent, prompt=f"p{i}")
    # The primary never fits the dollars; the cheaper model's 1,000-token reservations fit the
    # tokens one at a time, so the second and third calls wait for the one in flight.
    budget = Budget(tokens=1_500, usd=0.05)

    result = await Orchestrator().execute(graph, budget=budget)

    assert set(_statuses(result).values()) == {"succeeded"}
    assert (primary.calls, cheap.calls) == (0, 3)
    assert result.usage.refused == 0


# --- 4. reasoning effort ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("room", "effort", "max_output_tokens"),
    [
        (40_000, "high", EFFORT_OUTPUT_TOKENS["high"]),  # fits: nothing changes
        (20_000, "medium", EFFORT_OUTPUT_TOKENS["medium"]),
        (10_000, "low", EFFORT_OUTPUT_TOKENS["low"]),
        (5_000, "minimal", EFFORT_OUTPUT_TOKENS["minimal"]),
        (1_000, "minimal", 1_000),  # even minimal does not fit: lowered, then shrunk
    ],
)
async def test_effort_is_lowered_before_the_output_is_shrunk(
    room: int, effort: str, max_output_tokens: int
) -> None:
    model = FunctionModel(lambda request: "ok")
    graph = TaskGraph()
    graph.add("t", agent=Agent("thinker", model, reasoning_effort="high"), prompt="Think hard.")
    limit = _prompt_tokens("Think hard.") + room

    result = await Orchestrator().execute(graph, budget=Budget(tokens=limit))

    assert result.tasks["t"].status == "succeeded"
    request = model.requests[0]
    assert (request.reasoning_effort, request.max_output_tokens) == (effort, max_output_tokens)
    assert _input(request) + max_output_tokens <= limit


async def test_with_an_explicit_cap_effort_drops_to_minimal_then_output_shrinks() -> None:
    model = FunctionModel(lambda request: "ok")
    agent = Agent("thinker", model, reasoning_effort="high", max_output_tokens=4_000)
    graph = TaskGraph()
    graph.add("tight", agent=agent, prompt="Think hard.")
    limit = _prompt_tokens("Think hard.") + 1_000

    await Orchestrator().execute(graph, budget=Budget(tokens=limit))
    await Orchestrator().execute(graph, budget=Budget(tokens=limit + 3_000))

    assert [(r.reasoning_effort, r.max_output_tokens) for r in model.requests] == [
        ("minimal", 1_000),
        ("high", 4_000),  # fits as configured: sent unchanged
    ]


# --- 5. prices --------------------------------------------------------------------------------


class UnpricedModel:
    """A model with no known price (as litellm reports for some models): never taken as free."""

    def __init__(self, name: str = "acme/unpriced") -> None:
        self._name = name
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def price(self) -> Price | None:
        return None

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        return ModelResponse(
            text="ok",
            usage=Usage(input_tokens=_input(request, self._name), output_tokens=1, calls=1),
            model=self._name,
        )


def _unpriced_message(agent: str, scope: str) -> str:
    return (
        f"model 'acme/unpriced' of agent {agent!r} has no known price, so its calls cannot be "
        f"checked against the usd budget of {scope} (an unknown price is never taken as free); "
        'give its price: Orchestrator(prices={"acme/unpriced": (input_usd_per_million, '
        "output_usd_per_million)})"
    )


async def test_an_unknown_price_under_a_usd_budget_is_refused_before_any_call() -> None:
    model = UnpricedModel()
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model), prompt="Say ok.")

    with pytest.raises(PriceUnknownError) as caught:
        await Orchestrator().execute(graph, budget=Budget(usd=1.0))

    assert str(caught.value) == _unpriced_message("w", "run")
    assert "Orchestrator(prices=" in str(caught.value)
    assert (caught.value.model, caught.value.scope) == ("acme/unpriced", "run")
    assert model.requests == []


async def test_an_agents_usd_budget_also_needs_the_price() -> None:
    model = UnpricedModel()
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model, budget=Budget(usd=0.5)), prompt="Say ok.")

    with pytest.raises(PriceUnknownError) as caught:
        await Orchestrator().execute(graph)

    assert str(caught.value) == _unpriced_message("w", "agent 'w'")
    assert model.requests == []


async def test_a_price_override_makes_the_run_possible_and_sets_its_cost() -> None:
    model = UnpricedModel()
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model), prompt="Say ok.")
    orchestrator = Orchestrator(prices={"acme/unpriced": (1.0, 2.0)})

    result = await orchestrator.execute(graph, budget=Budget(usd=1.0))

    assert result.status == "succeeded"
    input_tokens = _input(model.requests[0], "acme/unpriced")
    assert result.usage.cost_usd == Price(1.0, 2.0).cost(input_tokens, 1)
    assert result.usage.cost_usd == (input_tokens * 1.0 + 1 * 2.0) / 1_000_000
    assert result.usage.by_model["acme/unpriced"].cost_usd == result.usage.cost_usd


@pytest.mark.parametrize("budget", [None, Budget(tokens=10_000), Budget(calls=5)])
async def test_an_unknown_price_is_fine_without_a_usd_budget(budget: Budget | None) -> None:
    model = UnpricedModel()
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model), prompt="Say ok.")

    result = await Orchestrator().execute(graph, budget=budget)

    assert (result.status, len(model.requests), result.usage.cost_usd) == ("succeeded", 1, 0.0)


class Verdict(BaseModel):
    label: str


async def test_an_unpriced_fallback_is_refused_before_any_call() -> None:
    primary = FunctionModel(lambda request: "not json")
    fallback = Agent("strong", UnpricedModel(), output_type=Verdict)
    graph = TaskGraph()
    agent = Agent("w", primary, output_type=Verdict, fallback=fallback)
    graph.add("t", agent=agent, prompt="Judge it.")

    with pytest.raises(PriceUnknownError):
        await Orchestrator().execute(graph, budget=Budget(usd=1.0))
    assert primary.calls == 0


async def test_an_unpriced_cheaper_model_is_refused_before_any_call() -> None:
    primary = FunctionModel(lambda request: "x", input_price=1_000.0, output_price=1_000.0)
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", primary, cheaper=UnpricedModel()), prompt="Say ok.")

    with pytest.raises(PriceUnknownError):
        await Orchestrator().execute(graph, budget=Budget(usd=0.01))


async def test_a_task_usd_budget_needs_only_its_own_agents_price() -> None:
    unpriced = UnpricedModel()
    priced = FunctionModel(lambda request: "ok", input_price=1.0, output_price=1.0)
    graph = TaskGraph()
    graph.add("free", agent=Agent("local", unpriced), prompt="Say ok.")
    graph.add("capped", agent=Agent("paid", priced), prompt="Say ok.", budget=Budget(usd=0.5))

    result = await Orchestrator().execute(graph)

    assert _statuses(result) == {"free": "succeeded", "capped": "succeeded"}


# --- 6. a provider that reports more than it was allowed ---------------------------------------


async def test_usage_beyond_the_reservation_is_recorded_and_logged() -> None:
    price = Price(1.0, 2.0)

    def overshoot(request: ModelRequest) -> ModelResponse:
        usage = Usage(input_tokens=_input(request), output_tokens=500, calls=1)
        return ModelResponse(text="a long answer", usage=usage)

    model = FunctionModel(overshoot, input_price=1.0, output_price=2.0)
    agent = Agent("w", model, max_output_tokens=100)
    graph = TaskGraph()
    graph.add("first", agent=agent, prompt="Answer briefly.")
    graph.add("second", agent=agent, prompt="Answer briefly.")
    input_tokens = _prompt_tokens("Answer briefly.")
    limit = input_tokens + 100  # the first call's reservation takes the whole budget

    with capture_logs() as logs, capture_ledgers() as ledgers:
        result = await Orchestrator(max_concurrency=1).execute(graph, budget=Budget(tokens=limit))

    assert _statuses(result) == {"first": "succeeded", "second": "failed"}
    assert model.requests[0].max_output_tokens == 100
    assert result.tasks["first"].usage == Usage(
        input_tokens=input_tokens,
        output_tokens=500,  # the real number, not the 100 reserved
        cost_usd=price.cost(input_tokens, 500),
        calls=1,
    )
    assert (result.usage.output_tokens, result.usage.cost_usd) == (
        500,
        price.cost(input_tokens, 500),
    )
    warnings = [_without_logger_name(e) for e in logs if e["event"] == "budget_overshoot"]
    assert warnings == [
        {
            "event": "budget_overshoot",
            "log_level": "warning",
            "run_id": result.run_id,  # the run's and the task's context, bound where they start
            "task_id": "first",
            "agent": "w",
            "model": "function",
            "scopes": ("run", "run (Orchestrator(max_calls=500))"),
            "reserved_tokens": input_tokens + 100,
            "actual_tokens": input_tokens + 500,
            "reserved_usd": math.ceil(price.cost(input_tokens, 100) * NANOS_PER_USD)
            / NANOS_PER_USD,
            "actual_usd": price.cost(input_tokens, 500),
        }
    ]
    assert len(ledgers[0].overshoots) == 1
    # Spent passed the limit only through the overshoot; nothing more was let through after it.
    run_scope = next(scope for scope in ledgers[0].scopes if scope.label == "run")
    assert run_scope.spent_tokens == input_tokens + 500
    assert model.calls == 1
    error = result.tasks["second"].error
    assert error is not None
    assert error.startswith(f"budget of {limit:,} tokens for run would be exceeded: spent ")


# --- 7. deadlines -----------------------------------------------------------------------------


# The target is a grace under 100 ms (measured in benchmarks/); tests allow 0.5 s so that
# a loaded CI machine cannot make them flaky. The point here: execute() does not wait 5 s.
GRACE = 0.5


async def test_at_the_deadline_running_tasks_are_cancelled_and_finished_ones_kept() -> None:
    fast = FunctionModel(lambda request: "fast answer", latency=0.1, name="fast")
    quicker = FunctionModel(lambda request: "quicker answer", latency=0.05, name="quicker")
    slow = FunctionModel(lambda request: "too late", latency=5.0, name="slow")

    async def sleepy(context: TaskContext) -> str:
        await anyio.sleep(5.0)
        return "too late"

    graph = TaskGraph()
    graph.add("quick", agent=Agent("fast", fast), prompt="Quick.")
    graph.add("after_quick", agent=Agent("quicker", quicker), prompt="Then.", deps=["quick"])
    graph.add("slow", agent=Agent("slow", slow), prompt="Slow.")
    graph.add("after_slow", agent=Agent("fast2", FunctionModel(str)), prompt="x", deps=["slow"])
    graph.add("slow_timeout", agent=Agent("slow2", slow), prompt="Slow.", timeout=10.0)
    graph.add("sleepy", fn=sleepy)
    # Warm up first (imports, the token counter's tables): the deadline is about the run's own
    # tasks, and a cold first call can take longer than the whole 0.3 s on a loaded machine.
    warm = TaskGraph()
    warm.add("w", agent=Agent("warm", FunctionModel(lambda request: "ok", name="warm")), prompt="x")
    await Orchestrator().execute(warm)

    started = time.perf_counter()
    result = await Orchestrator().execute(graph, budget=Budget(seconds=0.3))
    elapsed = time.perf_counter() - started

    assert elapsed < 0.3 + GRACE
    assert result.status == "partial"
    assert _statuses(result) == {
        "quick": "succeeded",
        "after_quick": "succeeded",
        "slow": "cancelled",
        "after_slow": "cancelled",  # never started: cancelled with the run, not skipped
        "slow_timeout": "cancelled",  # its 10 s timeout did not hold the run back
        "sleepy": "cancelled",
    }
    assert result.tasks["quick"].output == "fast answer"
    assert result.tasks["after_quick"].output == "quicker answer"
    for task_id in ("slow", "after_slow", "slow_timeout", "sleepy"):
        assert result.tasks[task_id].error == TIME_OUT
    assert (result.tasks["slow"].attempts, result.tasks["after_slow"].attempts) == (1, 0)
    assert result.tasks["slow_timeout"].attempts == 1  # cancelled, not timed out and retried
    assert (fast.calls, quicker.calls, slow.calls) == (1, 1, 2)
    assert result.output == {"after_quick": "quicker answer"}  # the sinks that finished
    # The two slow calls were sent and cancelled in flight: they count, at their allowance.
    assert result.usage.calls == 4
    assert (result.tasks["slow"].usage.calls, result.tasks["slow_timeout"].usage.calls) == (1, 1)
    assert result.tasks["slow"].usage.output_tokens == 4096  # DEFAULT_OUTPUT_TOKENS


async def test_a_run_where_nothing_finishes_in_time_is_partial_not_an_error() -> None:
    slow = FunctionModel(lambda request: "too late", latency=5.0)
    graph = TaskGraph()
    graph.add("a", agent=Agent("w", slow), prompt="Slow.")

    started = time.perf_counter()
    result = await Orchestrator().execute(graph, budget=Budget(seconds=0.2))

    assert time.perf_counter() - started < 0.2 + GRACE
    assert (result.status, result.tasks["a"].status, result.tasks["a"].error) == (
        "partial",
        "cancelled",
        TIME_OUT,
    )


async def test_reserve_seconds_brings_the_deadline_forward() -> None:
    fast = FunctionModel(lambda request: "fast", latency=0.1, name="fast")
    middling = FunctionModel(lambda request: "middling", latency=0.45, name="middling")
    graph = TaskGraph()
    graph.add("fast", agent=Agent("fast", fast), prompt="Quick.")
    # Would finish before `seconds` (0.6) but after `seconds - reserve_seconds` (0.3).
    graph.add("middling", agent=Agent("middling", middling), prompt="Less quick.")

    started = time.perf_counter()
    result = await Orchestrator().execute(graph, budget=Budget(seconds=0.6, reserve_seconds=0.3))

    assert time.perf_counter() - started < 0.3 + GRACE
    assert _statuses(result) == {"fast": "succeeded", "middling": "cancelled"}
    assert result.tasks["middling"].error == TIME_OUT
    assert result.status == "partial"


async def test_calls_get_the_time_left_as_their_timeout() -> None:
    model = FunctionModel(lambda request: "ok")
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model), prompt="Say ok.")

    await Orchestrator().execute(graph, budget=Budget(seconds=30.0))
    await Orchestrator().execute(graph)

    clipped, unclipped = (request.timeout for request in model.requests)
    assert clipped is not None
    assert 0 < clipped <= 30.0
    assert unclipped is None


# --- 8. the calls cap -------------------------------------------------------------------------


def noop() -> str:
    """Do nothing."""
    return "nothing happened"


async def test_a_runaway_tool_loop_stops_at_the_default_500_calls() -> None:
    model = FunctionModel(lambda request: tool_call("noop"))
    agent = Agent("looper", model, tools=[noop], max_tool_rounds=10_000)
    graph = TaskGraph()
    graph.add("loop", agent=agent, prompt="Go.")

    result = await Orchestrator().execute(graph)

    assert model.calls == 500
    task = result.tasks["loop"]
    assert task.status == "failed"
    assert task.error == (
        "budget of 500 calls for run (Orchestrator(max_calls=500)) would be exceeded: spent "
        "500, reserved 0, this call to function needs 1; raise Orchestrator(max_calls=...), or "
        "pass max_calls=None to remove the guard against runaway loops"
    )
    assert "calls" in task.error
    assert (result.usage.calls, result.usage.refused) == (500, 1)


async def test_the_default_cap_message_says_how_to_lift_it() -> None:
    model = FunctionModel(lambda request: tool_call("noop"))
    graph = TaskGraph()
    graph.add("loop", agent=Agent("looper", model, tools=[noop], max_tool_rounds=10_000))

    result = await Orchestrator().execute(graph)

    assert "max_calls" in (result.tasks["loop"].error or "")


async def test_max_calls_none_lifts_the_cap() -> None:
    model = ScriptedModel([*([tool_call("noop")] * 599), "done at last"])
    agent = Agent("looper", model, tools=[noop], max_tool_rounds=10_000)
    graph = TaskGraph()
    graph.add("loop", agent=agent, prompt="Go.")

    result = await Orchestrator(max_calls=None).execute(graph)

    assert (result.tasks["loop"].status, result.tasks["loop"].output) == (
        "succeeded",
        "done at last",
    )
    assert (model.calls, result.usage.calls, result.usage.refused) == (600, 600, 0)


async def test_max_calls_is_configurable() -> None:
    model = FunctionModel(lambda request: tool_call("noop"))
    graph = TaskGraph()
    graph.add("loop", agent=Agent("looper", model, tools=[noop], max_tool_rounds=10_000))

    result = await Orchestrator(max_calls=7).execute(graph)

    assert model.calls == 7
    assert (result.tasks["loop"].error or "").startswith("budget of 7 calls for run")


async def test_a_calls_budget_admits_exactly_that_many_calls() -> None:
    model = FunctionModel(lambda request: "ok", latency=0.01)
    agent = Agent("w", model)
    graph = TaskGraph()
    for i in range(5):
        graph.add(f"t{i}", agent=agent, prompt=f"Say ok {i}.")

    result = await Orchestrator(max_concurrency=16).execute(graph, budget=Budget(calls=3))

    statuses = list(_statuses(result).values())
    assert (statuses.count("succeeded"), statuses.count("failed")) == (3, 2)
    assert (model.calls, result.usage.calls, result.usage.refused) == (3, 3, 2)
    for task in result.tasks.values():
        if task.status == "failed":
            assert task.error is not None
            match = re.fullmatch(
                r"budget of 3 calls for run would be exceeded: spent (\d), reserved (\d), this "
                r"call to function needs 1; raise budget.calls or set it to None to remove the cap",
                task.error,
            )
            assert match is not None, task.error
            assert int(match.group(1)) + int(match.group(2)) == 3
    assert result.status == "partial"


# --- 9. nested budgets ------------------------------------------------------------------------


async def test_a_task_budget_larger_than_what_the_run_has_left_is_limited_by_the_run() -> None:
    model = FunctionModel(lambda request: LONG)
    agent = Agent("w", model, max_output_tokens=1_000)
    graph = TaskGraph()
    graph.add("first", agent=agent, prompt="Write a lot.", budget=Budget(tokens=5_000))
    graph.add("second", agent=agent, prompt="Write more.", budget=Budget(tokens=5_000))
    limit = 2_000

    result = await Orchestrator(max_concurrency=1).execute(graph, budget=Budget(tokens=limit))

    first, second = model.requests
    spent_first = result.tasks["first"].usage.total_tokens
    assert first.max_output_tokens == 1_000
    assert spent_first == _input(first) + 1_000  # the first task's spend counts against the run
    assert second.max_output_tokens == limit - spent_first - _input(second)
    assert 256 <= second.max_output_tokens < 1_000  # shrunk by the run, not by its own 5,000
    assert result.usage.input_tokens + result.usage.output_tokens == limit


async def test_the_tightest_of_task_agent_and_run_applies() -> None:
    model = FunctionModel(lambda request: LONG)
    agent = Agent("w", model, max_output_tokens=2_000, budget=Budget(tokens=1_500))
    graph = TaskGraph()
    graph.add("by_task", agent=agent, prompt="Write.", budget=Budget(tokens=300))
    graph.add("by_agent", agent=agent, prompt="Write.", budget=Budget(tokens=5_000))
    graph.add("refused", agent=agent, prompt="Write.", budget=Budget(tokens=5_000))
    input_tokens = _prompt_tokens("Write.")

    result = await Orchestrator(max_concurrency=1).execute(graph, budget=Budget(tokens=100_000))

    by_task, by_agent = model.requests
    assert by_task.max_output_tokens == 300 - input_tokens  # the task's 300 binds
    # The agent's 1,500 binds, less what its first task spent (300: cut at its allowance).
    assert by_agent.max_output_tokens == 1_500 - 300 - input_tokens
    assert _statuses(result) == {
        "by_task": "succeeded",
        "by_agent": "succeeded",
        "refused": "failed",
    }
    assert result.tasks["by_task"].usage.total_tokens == 300
    assert result.tasks["by_agent"].usage.total_tokens == 1_200
    assert result.usage.by_agent["w"].total_tokens == 1_500
    assert result.tasks["refused"].error == (
        "budget of 1,500 tokens for agent 'w' would be exceeded: spent 1,500, reserved 0, this "
        f"call to function needs at least {input_tokens + 256:,} ({input_tokens:,} input + 256 "
        "output tokens); the budget is used up: raise budget.tokens"
    )


async def test_a_per_call_budget_caps_each_call_of_the_agent() -> None:
    model = FunctionModel(lambda request: LONG)
    input_tokens = _prompt_tokens("Write.")
    agent = Agent(
        "w", model, max_output_tokens=2_000, call_budget=Budget(tokens=input_tokens + 300)
    )
    graph = TaskGraph()
    for i in range(3):
        graph.add(f"t{i}", agent=agent, prompt="Write.")

    result = await Orchestrator().execute(graph, budget=Budget(tokens=100_000))

    assert [request.max_output_tokens for request in model.requests] == [300, 300, 300]
    assert result.status == "succeeded"
    assert result.usage.output_tokens == 900


# --- 10. reports ------------------------------------------------------------------------------


async def test_usage_by_role_planner_only_usd_and_refusals() -> None:
    planner_price, worker_price = Price(2.0, 8.0), Price(0.1, 0.4)
    planner_model = FunctionModel(
        lambda request: "a plan in five words", name="big", input_price=2.0, output_price=8.0
    )
    worker_model = FunctionModel(
        lambda request: "the work, done properly and well",
        name="small",
        input_price=0.1,
        output_price=0.4,
    )
    planner = Agent("planner", planner_model)
    worker = Agent("worker", worker_model)
    graph = TaskGraph()
    graph.add("plan", agent=planner, prompt="Plan the work.")
    graph.add("work", agent="worker", prompt="Do the work.", deps=["plan"])
    graph.add("too_big", agent="worker", prompt="Do the work.", budget=Budget(tokens=5))
    orchestrator = Orchestrator(workers=[worker], planner=planner)

    result = await orchestrator.execute(graph, budget=Budget(usd=1.0))

    plan, work = result.tasks["plan"].usage, result.tasks["work"].usage
    assert plan == Usage(
        input_tokens=_input(planner_model.requests[0], "big"),
        output_tokens=count_pieces("a plan in five words", "big"),
        cost_usd=planner_price.cost(plan.input_tokens, plan.output_tokens),
        calls=1,
    )
    assert work == Usage(
        input_tokens=_input(worker_model.requests[0], "small"),
        output_tokens=count_pieces("the work, done properly and well", "small"),
        cost_usd=worker_price.cost(work.input_tokens, work.output_tokens),
        calls=1,
    )
    usage = result.usage
    assert usage.by_role == {"planner": plan, "workers": work}
    assert usage.by_agent == {"planner": plan, "worker": work}
    assert usage.by_model == {"big": plan, "small": work}
    # Every token of the run at the planner's price, summed in the order the calls finished.
    expected = 0.0
    expected += planner_price.cost(plan.input_tokens, plan.output_tokens)
    expected += planner_price.cost(work.input_tokens, work.output_tokens)
    assert usage.planner_only_usd == expected
    assert usage.planner_only_usd > usage.cost_usd  # the saving is real
    assert usage.cost_usd == plan.cost_usd + work.cost_usd
    assert usage.refused == 1
    assert result.tasks["too_big"].error is not None
    assert result.tasks["too_big"].error.startswith("budget of 5 tokens for task 'too_big'")
    assert (usage.calls, result.status) == (2, "partial")


async def test_without_a_planner_there_is_no_planner_only_figure() -> None:
    model = FunctionModel(lambda request: "ok", input_price=1.0, output_price=1.0)
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model), prompt="Say ok.")

    result = await Orchestrator().execute(graph)

    assert result.usage.planner_only_usd is None
    assert list(result.usage.by_role) == ["workers"]
    assert result.usage.refused == 0


# --- 11. waiting for calls in flight instead of failing ---------------------------------------


async def test_calls_wait_for_reservations_in_flight_instead_of_failing() -> None:
    in_flight = peak = 0

    async def answer(request: ModelRequest) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        in_flight -= 1
        return "ok"

    model = FunctionModel(answer)
    agent = Agent("w", model, max_output_tokens=1_000)
    graph = TaskGraph()
    for i in range(10):
        graph.add(f"t{i}", agent=agent, prompt=f"p{i}")
    reservation = _prompt_tokens("p0") + 1_000  # every prompt is the same size
    limit = 2_500
    # Each reservation fits the budget, two fit together, three never do, and ten calls' real
    # usage (a few tokens each) fits many times over.
    assert 2 * reservation <= limit < 3 * reservation

    result = await Orchestrator(max_concurrency=10).execute(graph, budget=Budget(tokens=limit))

    assert set(_statuses(result).values()) == {"succeeded"}
    assert result.usage.refused == 0
    assert [request.max_output_tokens for request in model.requests] == [1_000] * 10
    assert peak == 2  # the others waited for calls in flight to settle
    assert result.usage.input_tokens + result.usage.output_tokens == 10 * (_prompt_tokens("p0") + 1)


async def test_the_deadline_counts_from_the_call_with_opening_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from delegate.memory.store import Store

    opened: list[float] = []
    real_open = Store.open.__func__  # type: ignore[attr-defined]

    def slow_open(cls: type[Store], url: str | None = None) -> Store:
        opened.append(time.monotonic())  # anyio's clock under asyncio
        time.sleep(0.3)  # a new file's schema work, made slow
        return real_open(cls, url)  # type: ignore[no-any-return]

    monkeypatch.setattr(Store, "open", classmethod(slow_open))
    accounts: list[Any] = []
    real_account = run_module.Orchestrator._account

    def capture(self: Orchestrator, *args: Any, **kwargs: Any) -> Any:
        account = real_account(self, *args, **kwargs)
        accounts.append(account)
        return account

    monkeypatch.setattr(run_module.Orchestrator, "_account", capture)
    graph = TaskGraph()
    graph.add("slow", agent=Agent("w", FunctionModel(lambda r: "late", latency=30)), prompt="x")
    called = anyio.current_time()

    result = await Orchestrator(memory=f"sqlite:///{tmp_path / 'new.db'}").execute(
        graph, budget=Budget(seconds=1)
    )

    [account] = accounts
    assert called + 1.0 <= account.deadline <= opened[0] + 1.0  # counted before the store opened
    assert result.status == "partial"
