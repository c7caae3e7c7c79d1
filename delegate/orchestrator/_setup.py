"""What a run is set up with, checked before anything runs: the orchestrator's arguments, the
agents a graph names, its placeholders, the prices and the budget account.

Everything here raises `ConfigError`, `GraphError` or `PriceUnknownError` naming the value and
the remedy; nothing calls a model or opens a store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from delegate.agents.limits import Budget
from delegate.agents.models import Price
from delegate.errors import ConfigError, GraphError, PriceUnknownError, did_you_mean
from delegate.orchestrator.budget import BudgetLedger
from delegate.orchestrator.calls import AUTO_CALLS, AUTO_CALLS_PER_ANSWER, RunAccount, answers_of
from delegate.orchestrator.graph import RESERVED_NAMES, Task, TaskGraph
from delegate.orchestrator.planner import Planner

if TYPE_CHECKING:
    from delegate.agents.agent import Agent
    from delegate.observe._spans import RunTracer
    from delegate.orchestrator.run import Orchestrator

__all__ = [
    "answers",
    "check_limits",
    "open_account",
    "planner_of",
    "prepare",
    "prices_of",
    "resolve_agents",
    "tracer_of",
    "workers_of",
]


def check_limits(max_concurrency: object, budget: object, max_calls: object) -> None:
    """Refuse a concurrency, default budget or call cap the orchestrator cannot work with."""
    if (
        not isinstance(max_concurrency, int)
        or isinstance(max_concurrency, bool)
        or max_concurrency < 1
    ):
        raise ConfigError(f"max_concurrency must be an integer ≥ 1, got {max_concurrency!r}")
    if budget is not None and not isinstance(budget, Budget):
        raise ConfigError(f"budget must be a delegate.Budget, got {type(budget).__name__}")
    if max_calls not in (None, "auto") and (
        not isinstance(max_calls, int) or isinstance(max_calls, bool) or max_calls < 1
    ):
        raise ConfigError(
            f'max_calls must be an integer ≥ 1, "auto", or None for no cap; got {max_calls!r}'
        )


def tracer_of(tracing: object) -> RunTracer | None:
    """The tracer `Orchestrator(tracing=...)` asks for; None (tracing off) loads nothing of
    OpenTelemetry. See `delegate.observe.otel.tracer_of`."""
    if tracing is None or tracing is False:
        return None
    from delegate.observe.otel import tracer_of as make

    return make(tracing)


def workers_of(workers: Iterable[object]) -> dict[str, Agent[Any]]:
    """The workers by name, each an `Agent` with a name of its own."""
    from delegate.agents.agent import Agent

    found: dict[str, Agent[Any]] = {}
    for worker in workers:
        if not isinstance(worker, Agent):
            raise ConfigError(
                f"workers must be Agent instances, got {type(worker).__name__}; "
                "wrap a model as Agent(name, model)"
            )
        if worker.name in found:
            raise ConfigError(
                f"two workers are named {worker.name!r}; give each agent its own name"
            )
        found[worker.name] = worker
    return found


def planner_of(
    planner: object, synthesizer: object, workers: Mapping[str, Agent[Any]], max_replans: object
) -> Planner | None:
    """The orchestrator's `Planner`, after checking the planning arguments."""
    from delegate.agents.agent import Agent

    if isinstance(planner, Planner):
        plans: Planner | None = planner
    elif planner is None or isinstance(planner, Agent):
        plans = None if planner is None else Planner(planner)
    else:
        raise ConfigError(f"planner must be an Agent or a Planner, got {type(planner).__name__}")
    if synthesizer is not None and not isinstance(synthesizer, Agent):
        raise ConfigError(f"synthesizer must be an Agent, got {type(synthesizer).__name__}")
    roles = (("planner", None if plans is None else plans.agent), ("synthesizer", synthesizer))
    for role, agent in roles:
        if agent is not None and workers.get(agent.name, agent) is not agent:
            raise ConfigError(
                f"the {role} and a worker are both named {agent.name!r}; give each its own name"
            )
    if not isinstance(max_replans, int) or isinstance(max_replans, bool) or max_replans < 0:
        raise ConfigError(f"max_replans must be an integer ≥ 0, got {max_replans!r}")
    return plans


def prices_of(prices: Mapping[str, tuple[float, float] | Price] | None) -> dict[str, Price]:
    """`Orchestrator(prices=)` as `Price`s, each pair checked."""
    checked: dict[str, Price] = {}
    for model, price in (prices or {}).items():
        if isinstance(price, Price):
            pair: tuple[Any, ...] = (price.input_per_mtok, price.output_per_mtok)
        elif isinstance(price, tuple | list) and len(price) == 2:
            pair = tuple(price)
        else:
            pair = ()
        if len(pair) != 2 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for v in pair
        ):
            raise ConfigError(
                f"prices[{model!r}] must be (input_usd_per_million, output_usd_per_million) with "
                f"two numbers ≥ 0, got {price!r}"
            )
        checked[model] = price if isinstance(price, Price) else Price(*pair)
    return checked


def prepare(
    method: str,
    graph: TaskGraph,
    inputs: Mapping[str, Any] | None,
    workers: Mapping[str, Agent[Any]],
    *,
    keeps_memory: bool,
) -> tuple[dict[str, Any], list[Task], dict[str, Agent[Any]]]:
    """Check `graph` against the workers and `inputs` before anything runs.

    Returns the inputs, the tasks and the agents they use by name.
    """
    if not isinstance(graph, TaskGraph):
        raise ConfigError(f"{method}() takes a TaskGraph, got {type(graph).__name__}")
    checked = dict(inputs or {})
    tasks = list(graph)
    agents = resolve_agents(workers, tasks)
    if not keeps_memory:
        for agent in with_fallbacks(agents.values()):
            if agent.memory:
                raise ConfigError(
                    f"agent {agent.name!r} has memory=True, but the orchestrator keeps no "
                    "memory; pass Orchestrator(memory=<database URL>, \"home\" or ':memory:')"
                )
    _check_placeholders(tasks, checked)
    return checked, tasks, agents


def resolve_agents(
    workers: Mapping[str, Agent[Any]], tasks: Iterable[Task]
) -> dict[str, Agent[Any]]:
    """The agents of `tasks` by name: workers, judges (`verify`) and the workers a strategy
    names, names resolved."""
    from delegate.agents.agent import judge_problem
    from delegate.orchestrator._specs import strategy_workers

    agents: dict[str, Agent[Any]] = {}

    def worker(task: Task, role: str, name: str) -> Agent[Any]:
        found = workers.get(name)
        if found is None:
            known = ", ".join(sorted(workers)) or "none"
            raise GraphError(
                f"task {task.id!r} uses {role} {name!r}, which is not among the "
                f"orchestrator's workers{did_you_mean(name, workers)} "
                f"(workers: {known}); add it to Orchestrator(workers=[...])"
            )
        return found

    def add(task: Task, agent: Agent[Any]) -> None:
        seen = agents.setdefault(agent.name, agent)
        if seen is not agent:
            raise GraphError(
                f"two different agents are named {agent.name!r} (task {task.id!r}); "
                "give each agent its own name"
            )

    for task in tasks:
        if task.agent is None:
            continue
        agent = task.agent
        if isinstance(agent, str):
            agent = worker(task, "agent", agent)
        add(task, agent)
        judge = agent.verify if task.verify is None else task.verify
        if isinstance(judge, str):
            judge = worker(task, "verify", judge)
        if judge is not None:
            problem = judge_problem(judge)
            if problem is not None:
                raise GraphError(f"task {task.id!r}: {problem}")
            add(task, judge)  # its budget and prices are checked like any worker's
        for name in strategy_workers(task.strategy):
            add(task, worker(task, "strategy worker", name))
    return agents


def open_account(
    orch: Orchestrator,
    tasks: Sequence[Task],
    agents: Mapping[str, Agent[Any]],
    budget: Budget | None,
    began: float | None = None,
) -> RunAccount:
    """The run's ledger and scopes: the run, each agent with a budget, each task with one.

    The deadline counts from `began` (anyio's clock when the caller called: opening the
    store is part of the run's time), or from now.
    """
    if budget is not None and not isinstance(budget, Budget):
        raise ConfigError(f"budget must be a delegate.Budget, got {type(budget).__name__}")
    run_budget = budget or orch.budget or Budget()
    ledger = BudgetLedger()
    guard = None
    cap = orch.max_calls
    asked = answers(tasks, agents)
    if cap == "auto":
        # Enough for every answer the tasks ask for, its retries and a short tool loop,
        # however large the graph (it grows as tasks are added), while a task that loops
        # without end is still stopped.
        cap = max(AUTO_CALLS, AUTO_CALLS_PER_ANSWER * asked)
    if cap is not None:
        # The runaway guard is a scope of its own, so its refusal names its own remedy.
        guard = ledger.open(
            f"run (Orchestrator(max_calls={cap}))",
            Budget(calls=cap),
            remedy="raise Orchestrator(max_calls=...), or pass max_calls=None to remove "
            "the guard against runaway loops",
        )
    limited = (run_budget.tokens, run_budget.usd, run_budget.calls) != (None, None, None)
    run_scope = ledger.open("run", run_budget, guard) if limited else guard
    account = RunAccount(ledger, run_scope, orch.prices, guard=guard)
    if orch.max_calls == "auto":
        account.auto_answers = asked
    _open_scopes(account, tasks, [*agents.values(), *([orch.planner] if orch.planner else [])])
    _check_prices(account, agents.values(), tasks)
    if run_budget.seconds is not None:
        start = anyio.current_time() if began is None else began
        account.deadline = start + run_budget.seconds - run_budget.reserve_seconds
    return account


def _open_scopes(account: RunAccount, tasks: Sequence[Task], agents: Iterable[Agent[Any]]) -> None:
    """A budget scope under the run's for each agent (and fallback) and task that has a budget."""
    for agent in with_fallbacks(agents):
        if agent.budget is not None:
            account.agents[agent.name] = account.ledger.open(
                f"agent {agent.name!r}", agent.budget, account.run
            )
    for task in tasks:
        if task.budget is not None:
            account.tasks[task.id] = account.ledger.open(
                f"task {task.id!r}", task.budget, account.run
            )


def answers(tasks: Sequence[Task], agents: Mapping[str, Agent[Any]]) -> int:
    """How many answers the model tasks ask for: one each, or their `votes`, plus a judge's."""
    return sum(answers_of(task, agents.get(task.agent_name or "")) for task in tasks if task.agent)


def with_fallbacks(agents: Iterable[Agent[Any]]) -> list[Agent[Any]]:
    """`agents` and, after each, the fallbacks it may hand a call to; each agent once."""
    found: dict[str, Agent[Any]] = {}
    for agent in agents:
        current: Agent[Any] | None = agent
        while current is not None and current.name not in found:
            found[current.name] = current
            current = current.fallback
    return list(found.values())


def _check_placeholders(tasks: Iterable[Task], inputs: Mapping[str, Any]) -> None:
    problems: list[str] = []
    for task in tasks:
        if not task.placeholders:
            continue  # most tasks: a plain prompt, nothing to check (or to build sets for)
        unknown = task.placeholders - RESERVED_NAMES - set(task.deps) - set(inputs)
        unknown -= set(task.variables)
        problems.extend(
            f"task {task.id!r}: placeholder {{{{ {name} }}}} is neither a run input nor a "
            f"dependency{did_you_mean(name, [*inputs, *task.deps])} "
            f"(inputs: {', '.join(sorted(inputs)) or 'none'}; "
            f"deps: {', '.join(task.deps) or 'none'})"
            for name in sorted(unknown)
        )
    if problems:
        raise GraphError("; ".join(problems))


def _usd_label(account: RunAccount, agent: Agent[Any], tasks: Sequence[Task]) -> str | None:
    """The label of a usd budget `agent`'s calls fall under (the run, its own, a task's)."""
    for scope in (account.agents.get(agent.name), account.run):
        for member in scope.chain if scope is not None else ():
            if member.budget.usd is not None:
                return member.label
    for task in tasks:
        if (
            task.agent_name == agent.name
            and task.budget is not None
            and task.budget.usd is not None
        ):
            return f"task {task.id!r}"
    return None


def _check_prices(account: RunAccount, agents: Iterable[Agent[Any]], tasks: Sequence[Task]) -> None:
    """Refuse to start a run whose usd budget covers a model with no known price.

    Every model a task's calls may reach is checked: its agent's, the agent's `cheaper` one, and
    those of its fallbacks (which inherit the usd budgets of the agent they stand in for).
    """
    for agent in agents:
        label = _usd_label(account, agent, tasks)
        current: Agent[Any] | None = agent
        while current is not None:
            label = label or _usd_label(account, current, ())
            for model in (current.model, current.cheaper):
                if label is not None and model is not None and account.price(model) is None:
                    raise PriceUnknownError(
                        f"model {model.name!r} of agent {current.name!r} has no known price, so "
                        f"its calls cannot be checked against the usd budget of {label} (an "
                        "unknown price is never taken as free); give its price: "
                        f'Orchestrator(prices={{"{model.name}": (input_usd_per_million, '
                        "output_usd_per_million)})",
                        model=model.name,
                        scope=label,
                    )
            current = current.fallback
