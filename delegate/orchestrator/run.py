"""The `Orchestrator` and the lifecycle of one run: resolve, schedule, report.

    orch = Orchestrator(workers=[researcher, writer], max_concurrency=16)
    result = await orch.execute(graph, inputs={"topic": "solid-state batteries"})
    result.status, result.output, result.tasks["search"].attempts, result.usage.cost_usd

`RunResult.status` is "succeeded" when every task succeeded, "partial" when some did and others
failed, were skipped or were cancelled, and "failed" when none succeeded.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from delegate._sync import run_sync
from delegate.agents.models import Usage
from delegate.errors import ConfigError, GraphError, did_you_mean
from delegate.orchestrator.events import EventBus, EventHandler, RunFinished, RunStarted
from delegate.orchestrator.graph import TaskGraph
from delegate.orchestrator.scheduler import (
    Node,
    RetryPolicy,
    Scheduler,
    TaskStatus,
    UsageBook,
    build_nodes,
)

if TYPE_CHECKING:
    from delegate.agents.agent import Agent

__all__ = ["Orchestrator", "RunResult", "RunStatus", "RunUsage", "TaskResult"]

RunStatus = Literal["succeeded", "partial", "failed"]


class RunUsage(BaseModel):
    """Tokens, money and calls of a run, in total and broken down by model and by agent."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0
    by_model: dict[str, Usage] = Field(default_factory=dict)
    by_agent: dict[str, Usage] = Field(default_factory=dict)


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
        memory: None or ":memory:" — run state stays in this process.
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
        memory: str | None = None,
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
        if memory not in (None, ":memory:"):
            raise ConfigError(
                f"memory={memory!r} is not supported: use None or ':memory:' to keep run state "
                "in this process"
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
        run_id: str | None = None,
    ) -> RunResult:
        """Run every task of `graph` and return the result.

        Args:
            graph: the tasks to run.
            inputs: values for the prompts' `{{ name }}` placeholders.
            run_id: the run's id (default: a new random one).

        Raises:
            GraphError: an unknown agent name, or a placeholder that is neither an input nor a
                dependency. Task failures do not raise: they are in the result.
        """
        if not isinstance(graph, TaskGraph):
            raise ConfigError(f"execute() takes a TaskGraph, got {type(graph).__name__}")
        inputs = dict(inputs or {})
        run_id = run_id or uuid.uuid4().hex
        tasks = list(graph)
        agents = self._resolve_agents(tasks)
        _check_placeholders(tasks, inputs)
        nodes = build_nodes(tasks, agents)
        book = UsageBook()
        scheduler = Scheduler(
            nodes,
            run_id=run_id,
            inputs=inputs,
            max_concurrency=self.max_concurrency,
            retry=self.retry,
            fail_fast=self.fail_fast,
            bus=self.events,
            book=book,
            rng=self._rng,
        )
        started = time.time()
        if self.events.active:
            self.events.emit(RunStarted(run_id=run_id, tasks=len(nodes)))
        await scheduler.run()
        result = _result(run_id, nodes, book, started, time.time())
        if self.events.active:
            self.events.emit(RunFinished(run_id=run_id, status=result.status, usage=book.total))
        return result

    def execute_sync(
        self,
        graph: TaskGraph,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
    ) -> RunResult:
        """Blocking twin of `execute`, for scripts and notebooks without an event loop."""
        return run_sync(self.execute, graph, inputs, run_id=run_id)

    def _resolve_agents(self, tasks: Iterable[Any]) -> dict[str, Agent]:
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


def _check_placeholders(tasks: Iterable[Any], inputs: Mapping[str, Any]) -> None:
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


def _status(nodes: Sequence[Node]) -> RunStatus:
    succeeded = sum(node.status == "succeeded" for node in nodes)
    if succeeded == len(nodes):
        return "succeeded"
    return "partial" if succeeded else "failed"


def _result(
    run_id: str, nodes: Sequence[Node], book: UsageBook, started: float, finished: float
) -> RunResult:
    tasks = {
        node.task.id: TaskResult(
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
    total = book.total
    usage = RunUsage(
        input_tokens=total.input_tokens,
        output_tokens=total.output_tokens,
        reasoning_tokens=total.reasoning_tokens,
        cached_tokens=total.cached_tokens,
        cost_usd=total.cost_usd,
        calls=total.calls,
        by_model=book.by(0),
        by_agent=book.by(1),
    )
    return RunResult(
        run_id=run_id,
        status=_status(nodes),
        output=output,
        tasks=tasks,
        usage=usage,
        started_at=datetime.fromtimestamp(started, UTC),
        finished_at=datetime.fromtimestamp(finished, UTC),
    )
