"""The `Orchestrator` and the lifecycle of one run: resolve, schedule, report.

    orch = Orchestrator(workers=[researcher, writer], max_concurrency=16)
    result = await orch.execute(graph, inputs={"topic": "solid-state batteries"})
    result.status, result.output, result.tasks["search"].attempts, result.usage.cost_usd

`RunResult.status` is "succeeded" when every task succeeded, "partial" when some did and others
failed, were skipped or were cancelled, and "failed" when none succeeded.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field

from delegate._sync import run_sync
from delegate.agents.limits import Budget
from delegate.agents.models import Price, Usage
from delegate.errors import (
    ConfigError,
    GraphError,
    PriceUnknownError,
    StoreError,
    did_you_mean,
)
from delegate.orchestrator.budget import BudgetLedger
from delegate.orchestrator.calls import RunAccount, planner_only_usd
from delegate.orchestrator.estimate import Estimate, estimate_tasks
from delegate.orchestrator.events import EventBus, EventHandler, RunFinished, RunStarted
from delegate.orchestrator.graph import Task, TaskGraph
from delegate.orchestrator.persist import (
    RunRecorder,
    graph_from_spec,
    graph_spec,
    restorable,
    restore_output,
    to_json,
    usage_from,
)
from delegate.orchestrator.scheduler import (
    Node,
    RetryPolicy,
    Scheduler,
    TaskStatus,
    build_nodes,
)

if TYPE_CHECKING:
    from delegate.agents.agent import Agent
    from delegate.memory.records import RunRecord, TaskRecord
    from delegate.memory.store import Store

__all__ = ["Orchestrator", "RunResult", "RunStatus", "RunUsage", "TaskResult"]

RunStatus = Literal["succeeded", "partial", "failed"]

# max_calls="auto": enough for every task's call, its retries and a short tool loop, however large
# the graph, while a task that loops without end is still stopped.
_AUTO_CALLS = 500
_AUTO_CALLS_PER_TASK = 4


class RunUsage(BaseModel):
    """Tokens, money and calls of a run, in total and broken down by model, agent and role.

    Attributes:
        refused: calls a budget refused (never sent).
        cache_hits: calls answered from the call cache (no cost).
        by_role: "planner" (the orchestrator's planner agent) and "workers" (everyone else).
        planner_only_usd: what the same tokens would have cost on the planner's model — the
            saving to quote; None without a planner or when its price is unknown.
    """

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0
    refused: int = 0
    cache_hits: int = 0
    by_model: dict[str, Usage] = Field(default_factory=dict)
    by_agent: dict[str, Usage] = Field(default_factory=dict)
    by_role: dict[str, Usage] = Field(default_factory=dict)
    planner_only_usd: float | None = None


class TaskResult(BaseModel):
    """What happened to one task of a run."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    id: str
    status: TaskStatus
    output: Any = None
    error: str | None = None
    attempts: int = 0
    usage: Usage = Field(default_factory=Usage)
    agent: str | None = None
    model: str | None = None
    deps: tuple[str, ...] = ()
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RunResult(BaseModel):
    """The outcome of a run.

    Attributes:
        run_id: the run's id.
        status: "succeeded", "partial" or "failed".
        output: the output of the graph's only sink task, or a dict of sink id → output for the
            sinks that succeeded when there are several (None when no sink succeeded).
        tasks: every task by id, in graph order.
        usage: tokens, cost and calls, total and by model and agent.
        started_at, finished_at: wall-clock times of the run.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    run_id: str
    status: RunStatus
    output: Any = None
    tasks: dict[str, TaskResult]
    usage: RunUsage
    started_at: datetime
    finished_at: datetime

    @property
    def duration(self) -> float:
        """Seconds from start to finish."""
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def failed(self) -> dict[str, TaskResult]:
        """The tasks that did not succeed (failed, skipped or cancelled)."""
        return {k: t for k, t in self.tasks.items() if t.status != "succeeded"}


def _timestamp(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class Orchestrator:
    """Runs task graphs on a pool of workers.

    Args:
        workers: the agents tasks may name by string (`g.add(..., agent="scout")`); names must be
            unique.
        planner: the reasoning model's agent. Its calls are reported as the planner's role, and
            `RunUsage.planner_only_usd` prices every token of a run at its model's price.
        memory: where runs and the agents' shared memory are kept, so they survive the process.
            "default": `$DELEGATE_DB_URL`, else the SQLite file `$DELEGATE_HOME/delegate.db`
            (`DELEGATE_HOME` defaults to `~/.delegate`; the `delegate` command uses the same).
            Or a database URL ("sqlite:///path/runs.db", "postgresql+psycopg://…"), a `Store`,
            or ":memory:" (a store inside this process). None keeps nothing: no resume.
        cache: answer a request that was answered before (same model, same messages and
            settings) from the store's call cache, at no cost. Needs `memory`.
        budget: the default budget of every run (`execute(..., budget=)` replaces it for one run).
        prices: USD per million input/output tokens by model name, `{"my/model": (0.2, 0.8)}`;
            they override the models' own prices (litellm's cost map for real models).
        max_calls: a guard against runaway loops: at most this many model calls per run.
            "auto" (the default) allows 500, or 4 per model task for graphs of more than 125
            of them; an int is an exact cap; None removes the guard. A budget's `calls`
            applies as well, and the tighter wins.
        max_concurrency: how many tasks run at once, across the whole run.
        retry: how transient failures are retried (default: 2 retries, 0.5 s base backoff).
        fail_fast: cancel the whole run at the first task that fails for good, instead of
            skipping only its dependents.
        on_event: a handler called with every `Event` of every run (see `subscribe`).
        seed: seeds the retry jitter, for reproducible runs.
    """

    def __init__(
        self,
        *,
        workers: Sequence[Agent] = (),
        planner: Agent | None = None,
        memory: str | Store | None = "default",
        cache: bool = False,
        budget: Budget | None = None,
        prices: Mapping[str, tuple[float, float] | Price] | None = None,
        max_calls: int | Literal["auto"] | None = "auto",
        max_concurrency: int = 16,
        retry: RetryPolicy | None = None,
        fail_fast: bool = False,
        on_event: EventHandler | None = None,
        seed: int | None = None,
    ) -> None:
        from delegate.agents.agent import Agent

        if (
            not isinstance(max_concurrency, int)
            or isinstance(max_concurrency, bool)
            or max_concurrency < 1
        ):
            raise ConfigError(f"max_concurrency must be an integer ≥ 1, got {max_concurrency!r}")
        if (memory is not None and not isinstance(memory, str) and not _is_store(memory)) or (
            isinstance(memory, str) and not memory.strip()
        ):
            raise ConfigError(
                f"memory must be a database URL, ':memory:', a Store or None; got "
                f"{type(memory).__name__}"
            )
        self.workers: dict[str, Agent] = {}
        for worker in workers:
            if not isinstance(worker, Agent):
                raise ConfigError(
                    f"workers must be Agent instances, got {type(worker).__name__}; "
                    "wrap a model as Agent(name, model)"
                )
            if worker.name in self.workers:
                raise ConfigError(
                    f"two workers are named {worker.name!r}; give each agent its own name"
                )
            self.workers[worker.name] = worker
        if planner is not None and not isinstance(planner, Agent):
            raise ConfigError(f"planner must be an Agent, got {type(planner).__name__}")
        if budget is not None and not isinstance(budget, Budget):
            raise ConfigError(f"budget must be a delegate.Budget, got {type(budget).__name__}")
        if max_calls not in (None, "auto") and (
            not isinstance(max_calls, int) or isinstance(max_calls, bool) or max_calls < 1
        ):
            raise ConfigError(
                f'max_calls must be an integer ≥ 1, "auto", or None for no cap; got {max_calls!r}'
            )
        self.planner = planner
        if cache and memory is None:
            raise ConfigError("cache=True needs a store to keep answers in: pass memory=<URL>")
        self.memory = memory
        self.cache = bool(cache)
        self._store: Store | None = None
        self.budget = budget
        self.prices = _prices(prices)
        self.max_calls = max_calls
        self.max_concurrency = max_concurrency
        self.retry = retry if retry is not None else RetryPolicy()
        self.fail_fast = fail_fast
        self.events = EventBus()
        self._rng = random.Random(seed)
        if on_event is not None:
            self.events.subscribe(on_event)

    def subscribe(self, handler: EventHandler) -> Any:
        """Call `handler` with every event of every run; returns a function that unsubscribes."""
        return self.events.subscribe(handler)

    async def execute(
        self,
        graph: TaskGraph,
        inputs: Mapping[str, Any] | None = None,
        *,
        budget: Budget | None = None,
        run_id: str | None = None,
        workflow: str | None = None,
    ) -> RunResult:
        """Run every task of `graph` and return the result.

        Budgets never raise: a call that does not fit is refused (its task fails with
        `BudgetExceeded`), and when the time budget runs out the running tasks are cancelled
        and the result, status "partial", holds everything that finished.

        Args:
            graph: the tasks to run.
            inputs: values for the prompts' `{{ name }}` placeholders.
            budget: this run's budget, instead of the orchestrator's default.
            run_id: the run's id (default: a new random one).
            workflow: the name of the workflow this run belongs to: its runs share the
                "workflow" memory namespace, and the store records it.

        Raises:
            GraphError: an unknown agent name, or a placeholder that is neither an input nor a
                dependency.
            PriceUnknownError: a usd budget applies and a worker's model has no known price.
        """
        inputs, tasks, agents = self._prepare("execute", graph, inputs)
        run_id = run_id or uuid.uuid4().hex
        store = await anyio.to_thread.run_sync(self._open_store)
        if store is not None:
            record = _run_record(run_id, graph_spec(tasks), inputs, budget, workflow)
            await anyio.to_thread.run_sync(store.create_run, record)
        return await self._run(
            run_id, tasks, agents, inputs, budget, store, restored={}, workflow=workflow
        )

    async def resume(self, run_id: str) -> RunResult:
        """Finish a run that stopped (a crash, a kill, a deadline), from the store.

        The graph, inputs and budget are read back; tasks that succeeded keep their outputs and
        are not run again; the rest run now. Agents are found by name among this orchestrator's
        `workers` (and its planner), so resume with an orchestrator that has the same workers.

        Raises:
            ConfigError: the orchestrator has no store (`memory=None`), or the run is unknown.
            GraphError: the stored graph names an agent this orchestrator does not have.
        """
        store = await anyio.to_thread.run_sync(self._open_store)
        if store is None:
            raise ConfigError(
                "resume() needs a store: create the Orchestrator with memory=<database URL> "
                "(the same database the run was written to)"
            )
        record = await anyio.to_thread.run_sync(store.get_run, run_id)
        if record is None:
            raise ConfigError(f"no run {run_id!r} in the store {store.url}; check the run id")
        graph = graph_from_spec(record.graph)
        inputs, tasks, agents = self._prepare("resume", graph, record.inputs)
        rows = await anyio.to_thread.run_sync(store.get_tasks, run_id)
        restored = {row.task_id: row for row in rows if row.status == "succeeded"}
        budget = Budget(**record.budget) if record.budget else None
        return await self._run(
            run_id,
            tasks,
            agents,
            inputs,
            budget,
            store,
            restored=restored,
            workflow=record.workflow,
        )

    def _open_store(self) -> Store | None:
        if self.memory is None:
            return None
        if self._store is None:
            from delegate.memory.store import Store, default_url

            if isinstance(self.memory, Store):
                self._store = self.memory
            elif self.memory == "default":
                try:
                    url = default_url()
                except OSError as exc:
                    raise StoreError(
                        f"cannot create the default store's folder ({exc}); set DELEGATE_HOME to "
                        "a writable folder or DELEGATE_DB_URL to a database, or pass "
                        "Orchestrator(memory=None) to keep runs in memory only"
                    ) from None
                self._store = _shared_store(url)
            else:
                self._store = _shared_store(self.memory)
        return self._store

    def resume_sync(self, run_id: str) -> RunResult:
        """Blocking twin of `resume`."""
        return run_sync(self.resume, run_id)

    async def _run(
        self,
        run_id: str,
        tasks: list[Task],
        agents: dict[str, Agent],
        inputs: dict[str, Any],
        budget: Budget | None,
        store: Store | None,
        *,
        restored: Mapping[str, TaskRecord],
        workflow: str | None,
    ) -> RunResult:
        nodes = build_nodes(tasks, agents)
        account = self._account(tasks, agents, budget)
        if store is not None:
            from delegate.memory.blackboard import Memory

            account.memory = Memory(store, run_id=run_id, workflow=workflow)
            account.cache = store if self.cache else None
        _restore(nodes, restored, account)
        scheduler = Scheduler(
            nodes,
            run_id=run_id,
            inputs=inputs,
            max_concurrency=self.max_concurrency,
            retry=self.retry,
            fail_fast=self.fail_fast,
            bus=self.events,
            account=account,
            rng=self._rng,
        )
        started = time.time()
        recorder = None if store is None else RunRecorder(store, run_id, nodes)
        unsubscribe = None if recorder is None else self.events.subscribe(recorder)
        try:
            async with anyio.create_task_group() as group:
                if recorder is not None:
                    group.start_soon(recorder.run)
                if self.events.active:
                    self.events.emit(RunStarted(run_id=run_id, tasks=len(nodes)))
                try:
                    await scheduler.run()
                finally:
                    if recorder is not None:
                        recorder.close()
        finally:
            if unsubscribe is not None:
                unsubscribe()
        planner_price = None if self.planner is None else account.price(self.planner.model)
        usage = _usage(
            account,
            None if self.planner is None else self.planner.name,
            planner_only_usd(account.book, planner_price),
        )
        result = _result(run_id, nodes, usage, scheduler.deadline_passed, started, time.time())
        if store is not None:
            await anyio.to_thread.run_sync(_finish_run, store, result)
        if self.events.active:
            self.events.emit(
                RunFinished(run_id=run_id, status=result.status, usage=account.book.total)
            )
        return result

    def execute_sync(
        self,
        graph: TaskGraph,
        inputs: Mapping[str, Any] | None = None,
        *,
        budget: Budget | None = None,
        run_id: str | None = None,
        workflow: str | None = None,
    ) -> RunResult:
        """Blocking twin of `execute`, for scripts and notebooks without an event loop."""
        return run_sync(
            self.execute, graph, inputs, budget=budget, run_id=run_id, workflow=workflow
        )

    def estimate(self, graph: TaskGraph, inputs: Mapping[str, Any] | None = None) -> Estimate:
        """Project the tokens, cost and latency of executing `graph`, without calling a model.

        Each agent task counts as one call with its full output allowance (the worst case a
        budget reserves); the projected time is the critical path with each model's expected
        latency. See `delegate.orchestrator.estimate`.

        Raises:
            GraphError: as `execute` would, for an unknown agent or placeholder.
        """
        inputs, tasks, agents = self._prepare("estimate", graph, inputs)
        return estimate_tasks(tasks, agents, inputs, self.prices)

    def _prepare(
        self, method: str, graph: TaskGraph, inputs: Mapping[str, Any] | None
    ) -> tuple[dict[str, Any], list[Task], dict[str, Agent]]:
        """Check `graph` against the workers and `inputs` before anything runs."""
        if not isinstance(graph, TaskGraph):
            raise ConfigError(f"{method}() takes a TaskGraph, got {type(graph).__name__}")
        checked = dict(inputs or {})
        tasks = list(graph)
        agents = self._resolve_agents(tasks)
        if self.memory is None:
            for agent in _with_fallbacks(agents.values()):
                if agent.memory:
                    raise ConfigError(
                        f"agent {agent.name!r} has memory=True, but the orchestrator keeps no "
                        "memory; pass Orchestrator(memory=<database URL or ':memory:'>)"
                    )
        _check_placeholders(tasks, checked)
        return checked, tasks, agents

    def _account(
        self, tasks: Sequence[Task], agents: Mapping[str, Agent], budget: Budget | None
    ) -> RunAccount:
        """The run's ledger and scopes: the run, each agent with a budget, each task with one."""
        if budget is not None and not isinstance(budget, Budget):
            raise ConfigError(f"budget must be a delegate.Budget, got {type(budget).__name__}")
        run_budget = budget or self.budget or Budget()
        ledger = BudgetLedger()
        guard = None
        cap = self.max_calls
        if cap == "auto":
            cap = max(_AUTO_CALLS, _AUTO_CALLS_PER_TASK * sum(t.agent is not None for t in tasks))
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
        account = RunAccount(ledger, run_scope, self.prices)
        members = _with_fallbacks([*agents.values(), *([self.planner] if self.planner else [])])
        for agent in members:
            if agent.budget is not None:
                account.agents[agent.name] = ledger.open(
                    f"agent {agent.name!r}", agent.budget, account.run
                )
        for task in tasks:
            if task.budget is not None:
                account.tasks[task.id] = ledger.open(f"task {task.id!r}", task.budget, account.run)
        _check_prices(account, agents.values(), tasks)
        if run_budget.seconds is not None:
            account.deadline = (
                anyio.current_time() + run_budget.seconds - run_budget.reserve_seconds
            )
        return account

    def _resolve_agents(self, tasks: Iterable[Task]) -> dict[str, Agent]:
        agents: dict[str, Agent] = {}
        for task in tasks:
            if task.agent is None:
                continue
            if isinstance(task.agent, str):
                worker = self.workers.get(task.agent)
                if worker is None:
                    known = ", ".join(sorted(self.workers)) or "none"
                    raise GraphError(
                        f"task {task.id!r} uses agent {task.agent!r}, which is not among the "
                        f"orchestrator's workers{did_you_mean(task.agent, self.workers)} "
                        f"(workers: {known}); add it to Orchestrator(workers=[...])"
                    )
                agent = worker
            else:
                agent = task.agent
            seen = agents.setdefault(agent.name, agent)
            if seen is not agent:
                raise GraphError(
                    f"two different agents are named {agent.name!r} (task {task.id!r}); "
                    "give each agent its own name"
                )
        return agents


def _check_placeholders(tasks: Iterable[Task], inputs: Mapping[str, Any]) -> None:
    problems: list[str] = []
    for task in tasks:
        unknown = task.placeholders - {"inputs", "deps"} - set(task.deps) - set(inputs)
        problems.extend(
            f"task {task.id!r}: placeholder {{{{ {name} }}}} is neither a run input nor a "
            f"dependency{did_you_mean(name, [*inputs, *task.deps])} "
            f"(inputs: {', '.join(sorted(inputs)) or 'none'}; "
            f"deps: {', '.join(task.deps) or 'none'})"
            for name in sorted(unknown)
        )
    if problems:
        raise GraphError("; ".join(problems))


_STORES: dict[str, Store] = {}
_STORES_LOCK = threading.Lock()


def _shared_store(url: str) -> Store:
    """One open `Store` per URL in this process: orchestrators on one database share it."""
    from delegate.memory.store import Store

    with _STORES_LOCK:
        store = _STORES.get(url)
        if store is None:
            store = _STORES[url] = Store.open(url)
        return store


def _is_store(value: object) -> bool:
    from delegate.memory.store import Store

    return isinstance(value, Store)


def _run_record(
    run_id: str,
    spec: dict[str, Any],
    inputs: Mapping[str, Any],
    budget: Budget | None,
    workflow: str | None,
) -> RunRecord:
    from delegate.memory.records import RunRecord

    return RunRecord(
        id=run_id,
        workflow=workflow,
        goal=None,
        inputs={key: to_json(value) for key, value in inputs.items()},
        graph=spec,
        status="running",
        budget=None if budget is None else dataclasses.asdict(budget),
        usage=None,
        output=None,
        error=None,
        created_at=datetime.now(UTC),
        finished_at=None,
    )


def _finish_run(store: Store, result: RunResult) -> None:
    failed = [f"{t.id}: {t.error}" for t in result.tasks.values() if t.error]
    store.finish_run(
        result.run_id,
        status=result.status,
        output=to_json(result.output),
        usage=result.usage.model_dump(mode="json"),
        error="; ".join(failed)[:2000] or None,
    )


def _restore(
    nodes: Sequence[Node], restored: Mapping[str, TaskRecord], account: RunAccount
) -> None:
    """Mark the tasks a store says succeeded as done, with their outputs and usage."""
    for node in nodes:
        row = restored.get(node.task.id)
        if row is None or not restorable(row.output):
            continue
        output_type = node.agent.output_type if node.agent is not None else None
        node.status = "succeeded"
        node.output = restore_output(row.output, output_type)
        node.attempts = row.attempts
        node.usage = usage_from(row.usage)
        node.model = row.model
        node.answered_by = row.agent
        node.started_at = row.started_at.timestamp() if row.started_at else None
        node.finished_at = row.finished_at.timestamp() if row.finished_at else None
        if node.usage.calls:
            account.book.add(row.model or "unknown", row.agent or "unknown", node.usage)
        for child in node.children:
            child.pending -= 1


def _prices(prices: Mapping[str, tuple[float, float] | Price] | None) -> dict[str, Price]:
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


def _with_fallbacks(agents: Iterable[Agent]) -> list[Agent]:
    found: dict[str, Agent] = {}
    for agent in agents:
        current: Agent | None = agent
        while current is not None and current.name not in found:
            found[current.name] = current
            current = current.fallback
    return list(found.values())


def _usd_label(account: RunAccount, agent: Agent, tasks: Sequence[Task]) -> str | None:
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


def _check_prices(account: RunAccount, agents: Iterable[Agent], tasks: Sequence[Task]) -> None:
    """Refuse to start a run whose usd budget covers a model with no known price.

    Every model a task's calls may reach is checked: its agent's, the agent's `cheaper` one, and
    those of its fallbacks (which inherit the usd budgets of the agent they stand in for).
    """
    for agent in agents:
        label = _usd_label(account, agent, tasks)
        current: Agent | None = agent
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


def _usage(account: RunAccount, planner: str | None, planner_only: float | None) -> RunUsage:
    book = account.book
    total = book.total
    roles: dict[str, Usage] = {}
    for (_, agent), usage in book.pairs.items():
        role = "planner" if agent == planner else "workers"
        roles[role] = roles[role] + usage if role in roles else usage
    return RunUsage(
        input_tokens=total.input_tokens,
        output_tokens=total.output_tokens,
        reasoning_tokens=total.reasoning_tokens,
        cached_tokens=total.cached_tokens,
        cost_usd=total.cost_usd,
        calls=total.calls,
        refused=account.ledger.refused,
        cache_hits=account.cache_hits,
        by_model=book.by(0),
        by_agent=book.by(1),
        by_role=roles,
        planner_only_usd=planner_only,
    )


def _status(nodes: Sequence[Node], deadline_passed: bool) -> RunStatus:
    succeeded = sum(node.status == "succeeded" for node in nodes)
    if succeeded == len(nodes):
        return "succeeded"
    return "partial" if succeeded or deadline_passed else "failed"


def _result(
    run_id: str,
    nodes: Sequence[Node],
    usage: RunUsage,
    deadline_passed: bool,
    started: float,
    finished: float,
) -> RunResult:
    # model_construct: these values come from the scheduler, already typed; validating 10,000
    # of them again would cost ~10 µs a task.
    tasks = {
        node.task.id: TaskResult.model_construct(
            id=node.task.id,
            status=node.status,
            output=node.output,
            error=node.error,
            attempts=node.attempts,
            usage=node.usage,
            agent=node.answered_by or node.task.agent_name,
            model=node.model,
            deps=node.task.deps,
            started_at=_timestamp(node.started_at),
            finished_at=_timestamp(node.finished_at),
        )
        for node in nodes
    }
    sinks = [node for node in nodes if not node.children]
    if len(sinks) == 1:
        output = sinks[0].output if sinks[0].status == "succeeded" else None
    else:
        done = {n.task.id: n.output for n in sinks if n.status == "succeeded"}
        output = done or None
    return RunResult(
        run_id=run_id,
        status=_status(nodes, deadline_passed),
        output=output,
        tasks=tasks,
        usage=usage,
        started_at=datetime.fromtimestamp(started, UTC),
        finished_at=datetime.fromtimestamp(finished, UTC),
    )
