"""Project a graph's tokens, cost and latency before anything runs: `Orchestrator.estimate`.

Each answer of an agent task is projected as one call: its prompt is rendered with the run's inputs
and counted with the same tokenizer the budget uses, plus the agent's instructions and output
schema, plus the projected outputs of its dependencies (which reach it as context). Its output is
the call's allowance: `max_output_tokens`, or the default for its reasoning effort — the worst case
the budget reserves. Latency comes from the model's `expected_latency(request)` when it has one
(the fakes do), else from a rough throughput model; the projected run time is the critical path
through the graph with those latencies.

A task asks for as many answers as its settings allow at most (`max_calls()`, the worst case):
votes sample concurrently (an `AdaptiveVotes` asks `max_samples`, `batch` at a time); a
`BestOfN` samples `n` at once and has each scored; a `MixtureOfAgents` asks each proposer on its
own model, then the aggregator with every proposal as context; a `SelfRefine` answers, then
critiques and revises `rounds` times, one call after another. A judge (`verify`) then reads the
prompt and one answer — unless it was the strategy's scorer or critic already.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError as JinjaTemplateError
from pydantic import BaseModel, ConfigDict, Field

from delegate.agents.models import Message, Model, ModelRequest, Price, ReasoningEffort
from delegate.agents.tokens import count_messages
from delegate.orchestrator._specs import verified_after
from delegate.orchestrator.calls import DEFAULT_OUTPUT_TOKENS, EFFORT_OUTPUT_TOKENS
from delegate.orchestrator.strategies import BestOfN, MixtureOfAgents, SelfRefine

if TYPE_CHECKING:
    from delegate.agents.agent import Agent
    from delegate.orchestrator.graph import Task

__all__ = ["Estimate", "TaskEstimate", "estimate_tasks"]

# A rough model of a provider's speed, for models that cannot say: time to the first token,
# then output tokens per second (reasoning models think more slowly).
_FIRST_TOKEN_SECONDS = 0.5
_TOKENS_PER_SECOND = 80.0
_REASONING_TOKENS_PER_SECOND = 40.0
_CONTEXT_LABEL_TOKENS = 8  # "## Result of task 'x'" and the blank lines around it


class TaskEstimate(BaseModel):
    """The projection of one task."""

    model_config = ConfigDict(frozen=True)

    id: str
    agent: str | None
    model: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float | None = 0.0
    seconds: float = 0.0


class Estimate(BaseModel):
    """The projection of a whole run.

    Attributes:
        input_tokens, output_tokens: over all tasks (one call each; tool loops and retries add).
        usd: the projected cost, or None when some model's price is unknown (see `unpriced`).
        seconds: the critical path with each task's projected latency.
        critical_path: the task ids on it.
        tasks: each task's projection.
        by_model: projected USD by model (priced models only).
        unpriced: models whose price is unknown.
    """

    model_config = ConfigDict(frozen=True)

    input_tokens: int
    output_tokens: int
    usd: float | None
    seconds: float
    critical_path: list[str]
    tasks: dict[str, TaskEstimate]
    by_model: dict[str, float] = Field(default_factory=dict)
    unpriced: list[str] = Field(default_factory=list)


def _output_allowance(agent: Agent[Any], task: Task | None = None) -> int:
    cap = task.max_output_tokens if task is not None else None
    cap = cap if cap is not None else agent.max_output_tokens
    if cap is not None:
        return cap
    effort = _effort(agent, task)
    if effort is not None:
        return EFFORT_OUTPUT_TOKENS[effort]
    return DEFAULT_OUTPUT_TOKENS


def _effort(agent: Agent[Any], task: Task | None) -> ReasoningEffort | None:
    effort = task.reasoning_effort if task is not None else None
    return effort if effort is not None else agent.reasoning_effort


def _render(task: Task, inputs: Mapping[str, Any]) -> str:
    if task.template is None:
        return task.prompt
    # Dependencies are not known yet: they render empty here and are counted as context below.
    deps = dict.fromkeys(task.deps, "")
    try:
        return task.template.render({**inputs, **deps, "inputs": inputs, "deps": deps})
    except JinjaTemplateError:
        return task.prompt


def _latency(model: Model, request: ModelRequest, output_tokens: int, reasoning: bool) -> float:
    expected = getattr(model, "expected_latency", None)
    if callable(expected):
        return float(expected(request))
    speed = _REASONING_TOKENS_PER_SECOND if reasoning else _TOKENS_PER_SECOND
    return _FIRST_TOKEN_SECONDS + output_tokens / speed


def _project(
    task: Task, agent: Agent[Any], inputs: Mapping[str, Any], dep_outputs: int
) -> tuple[int, int, ModelRequest]:
    messages: list[Message] = []
    if agent.instructions:
        messages.append({"role": "system", "content": agent.instructions})
    messages.append({"role": "user", "content": _render(task, inputs)})
    schema = agent.output_type.model_json_schema() if agent.output_type is not None else None
    output_tokens = _output_allowance(agent, task)
    request = ModelRequest(
        messages=messages,
        output_schema=schema,
        tools=tuple(tool.definition for tool in agent.tools),
        max_output_tokens=output_tokens,
        reasoning_effort=_effort(agent, task),
    )
    input_tokens = count_messages(messages, agent.model.name, request.tools, schema) + dep_outputs
    return input_tokens, output_tokens, request


def _usd(
    model: Model,
    prices: Mapping[str, Price],
    input_tokens: int,
    output_tokens: int,
    unpriced: list[str],
) -> float | None:
    """One call's cost, or None (and the model noted in `unpriced`) when its price is unknown."""
    override = prices.get(model.name)
    price = override if override is not None else model.price
    if price is None:
        if model.name not in unpriced:
            unpriced.append(model.name)
        return None
    return price.cost(input_tokens, output_tokens)


@dataclass(slots=True)
class _Calls:
    """What one task's calls add up to; their USD is added to the run's by model as well."""

    prices: Mapping[str, Price]
    unpriced: list[str]
    by_model: dict[str, float]
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float | None = 0.0

    def add(self, model: Model, input_tokens: int, output_tokens: int, times: int = 1) -> None:
        """`times` calls of `model`, each reading `input_tokens` and writing `output_tokens`."""
        one = _usd(model, self.prices, input_tokens, output_tokens, self.unpriced)
        if one is not None:
            self.by_model[model.name] = self.by_model.get(model.name, 0.0) + one * times
        self.usd = None if self.usd is None or one is None else self.usd + one * times
        self.input_tokens += input_tokens * times
        self.output_tokens += output_tokens * times

    def answer(
        self, task: Task, agent: Agent[Any], inputs: Mapping[str, Any], context: int, times: int = 1
    ) -> tuple[int, int, ModelRequest, float]:
        """`times` concurrent answers of `agent` to `task` (`context`: tokens of the answers
        it reads besides its prompt); one answer's tokens and request, and its latency."""
        input_tokens, output_tokens, request = _project(task, agent, inputs, context)
        self.add(agent.model, input_tokens, output_tokens, times)
        reasoning = _effort(agent, task) is not None
        seconds = _latency(agent.model, request, output_tokens, reasoning)
        return input_tokens, output_tokens, request, seconds

    def review(
        self, reviewer: Agent[Any], request: ModelRequest, read: int, times: int = 1
    ) -> tuple[int, float]:
        """`times` concurrent reviews (a judge's, a critic's, a score) reading `read` tokens;
        one review's output tokens and latency."""
        output_tokens = _output_allowance(reviewer)
        self.add(reviewer.model, read, output_tokens, times)
        return output_tokens, _latency(reviewer.model, request, output_tokens, False)


def _worker(agents: Mapping[str, Agent[Any]], name: str | None, default: Agent[Any]) -> Agent[Any]:
    return default if name is None else agents.get(name, default)


def _judge(task: Task, agent: Agent[Any], agents: Mapping[str, Agent[Any]]) -> Agent[Any] | None:
    judge = task.verify if task.verify is not None else agent.verify
    return agents.get(judge) if isinstance(judge, str) else judge


def _answers(
    task: Task,
    agent: Agent[Any],
    agents: Mapping[str, Agent[Any]],
    inputs: Mapping[str, Any],
    context: int,
    calls: _Calls,
) -> tuple[int, int, ModelRequest, float]:
    """Project the answers a task asks for at most (its strategy, else its votes); the final
    answer's input and output tokens and request, and the seconds until it is known."""
    strategy = task.strategy
    if isinstance(strategy, MixtureOfAgents):
        proposals = [
            calls.answer(task, _worker(agents, name, agent), inputs, context)
            for name in strategy.proposers
        ]
        read = sum(out + _CONTEXT_LABEL_TOKENS for _, out, _, _ in proposals)
        aggregator = _worker(agents, strategy.aggregator, agent)
        final = calls.answer(task, aggregator, inputs, context + read)
        return (*final[:3], max(seconds for *_, seconds in proposals) + final[3])
    if isinstance(strategy, SelfRefine):
        input_tokens, output_tokens, request, seconds = calls.answer(task, agent, inputs, context)
        critic = _worker(agents, strategy.critic, _judge(task, agent, agents) or agent)
        for _ in range(strategy.rounds):
            critique, critic_seconds = calls.review(critic, request, input_tokens + output_tokens)
            revised = calls.answer(task, agent, inputs, context + output_tokens + critique)
            seconds += critic_seconds + revised[3]
        return input_tokens, output_tokens, request, seconds
    if isinstance(strategy, BestOfN):
        input_tokens, output_tokens, request, seconds = calls.answer(
            task, agent, inputs, context, strategy.n
        )
        if strategy.score is None:  # a scoring function costs no call
            scorer = _worker(agents, strategy.judge, _judge(task, agent, agents) or agent)
            read = input_tokens + output_tokens
            seconds += calls.review(scorer, request, read, strategy.n)[1]
        return input_tokens, output_tokens, request, seconds
    votes = task.votes if task.votes is not None else agent.votes
    if isinstance(votes, int):
        return calls.answer(task, agent, inputs, context, votes)
    input_tokens, output_tokens, request, seconds = calls.answer(
        task, agent, inputs, context, votes.max_samples
    )
    # (each batch waits for the one before it: the stopping rule reads its votes)
    rounds = math.ceil(votes.max_samples / votes.batch)
    return input_tokens, output_tokens, request, seconds * rounds


def estimate_tasks(
    tasks: Sequence[Task],
    agents: Mapping[str, Agent[Any]],
    inputs: Mapping[str, Any],
    prices: Mapping[str, Price],
    done: Mapping[str, int] | None = None,
) -> Estimate:
    """Project `tasks` (in topological order, agents resolved) — see the module docstring.

    `done` gives the output tokens of finished tasks that `tasks` may depend on without
    containing them (a replan's tasks depend on finished work): they cost nothing more and
    take no time, but their outputs count as context.
    """
    done = done or {}
    projected: dict[str, TaskEstimate] = {}
    finish: dict[str, tuple[float, str | None]] = {}
    by_model: dict[str, float] = {}
    unpriced: list[str] = []
    for task in tasks:
        start, before = max(
            ((finish[dep][0], dep) for dep in task.deps if dep in finish), default=(0.0, None)
        )
        name = task.agent_name
        if name is None:
            projected[task.id] = TaskEstimate(id=task.id, agent=None, model=None)
            finish[task.id] = (start, before)
            continue
        agent = agents[name]
        outputs = {
            dep: projected[dep].output_tokens if dep in projected else done.get(dep, 0)
            for dep in task.deps
        }
        context = sum(
            tokens + (0 if dep in task.placeholders else _CONTEXT_LABEL_TOKENS)
            for dep, tokens in outputs.items()
        )
        calls = _Calls(prices, unpriced, by_model)
        one_in, one_out, request, seconds = _answers(task, agent, agents, inputs, context, calls)
        judge = _judge(task, agent, agents)
        if judge is not None and verified_after(task.strategy):
            # one more call after the answers (counted as if it were always asked)
            seconds += calls.review(judge, request, one_in + one_out)[1]
        input_tokens, output_tokens, usd = calls.input_tokens, calls.output_tokens, calls.usd
        projected[task.id] = TaskEstimate(
            id=task.id,
            agent=agent.name,
            model=agent.model.name,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            usd=usd,
            seconds=seconds,
        )
        finish[task.id] = (start + seconds, before)
    end = max(finish, key=lambda t: finish[t][0], default=None)
    path: list[str] = []
    node = end
    while node is not None:
        path.append(node)
        node = finish[node][1]
    return Estimate(
        input_tokens=sum(t.input_tokens for t in projected.values()),
        output_tokens=sum(t.output_tokens for t in projected.values()),
        usd=None if unpriced else sum(by_model.values()),
        seconds=finish[end][0] if end is not None else 0.0,
        critical_path=path[::-1],
        tasks=projected,
        by_model=by_model,
        unpriced=unpriced,
    )
