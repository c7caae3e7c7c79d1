"""Project a graph's tokens, cost and latency before anything runs: `Orchestrator.estimate`.

Each agent task is projected as one call: its prompt is rendered with the run's inputs and counted
with the same tokenizer the budget uses, plus the agent's instructions and output schema, plus the
projected outputs of its dependencies (which reach it as context). Its output is the call's
allowance: `max_output_tokens`, or the default for its reasoning effort — the worst case the budget
reserves. Latency comes from the model's `expected_latency(request)` when it has one (the fakes
do), else from a rough throughput model; the projected run time is the critical path through the
graph with those latencies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError as JinjaTemplateError
from pydantic import BaseModel, ConfigDict, Field

from delegate.agents.models import Message, Model, ModelRequest, Price, ReasoningEffort
from delegate.agents.tokens import count_messages
from delegate.orchestrator.calls import DEFAULT_OUTPUT_TOKENS, EFFORT_OUTPUT_TOKENS

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
        input_tokens, output_tokens, request = _project(task, agent, inputs, context)
        model = agent.model
        # votes: that many samples, at once; a judge: one more call after them, reading the
        # prompt and an answer (counted as if it were always asked).
        votes = task.votes if task.votes is not None else agent.votes
        one_usd = _usd(model, prices, input_tokens, output_tokens, unpriced)
        usd = None if one_usd is None else one_usd * votes
        if usd is not None:
            by_model[model.name] = by_model.get(model.name, 0.0) + usd
        seconds = _latency(model, request, output_tokens, _effort(agent, task) is not None)
        output_tokens *= votes
        input_tokens *= votes
        judge = task.verify if task.verify is not None else agent.verify
        if isinstance(judge, str):
            judge = agents.get(judge)
        if judge is not None:
            judge_in = input_tokens // votes + output_tokens // votes
            judge_out = _output_allowance(judge)
            judge_usd = _usd(judge.model, prices, judge_in, judge_out, unpriced)
            if judge_usd is not None:
                by_model[judge.model.name] = by_model.get(judge.model.name, 0.0) + judge_usd
            usd = None if usd is None or judge_usd is None else usd + judge_usd
            input_tokens += judge_in
            output_tokens += judge_out
            seconds += _latency(judge.model, request, judge_out, False)
        projected[task.id] = TaskEstimate(
            id=task.id,
            agent=agent.name,
            model=model.name,
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
