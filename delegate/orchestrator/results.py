"""What a run returns — `RunResult`, `TaskResult`, `RunUsage` — and how it is made from the
scheduler's nodes and the run's account; why a run failed or stopped, in one sentence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, cast

import anyio
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeVar

from delegate.agents.agent import VoteRecord
from delegate.agents.approval import PendingCall
from delegate.agents.models import Usage
from delegate.errors import TaskNotSucceeded
from delegate.orchestrator import _gc
from delegate.orchestrator.planned import PlanRevision
from delegate.orchestrator.scheduler import TaskStatus

if TYPE_CHECKING:
    from delegate.orchestrator.calls import RunAccount
    from delegate.orchestrator.graph import Task, TaskGraph
    from delegate.orchestrator.scheduler import Node

__all__ = [
    "RunResult",
    "RunStatus",
    "RunUsage",
    "TaskResult",
    "interrupted_reason",
    "result_of",
    "run_error",
    "usage_of",
]

RunStatus = Literal["succeeded", "partial", "failed", "waiting"]

OutputT = TypeVar("OutputT", default=object)
"""What a task or a run answers (`object` where nothing says more)."""
R = TypeVar("R")


class RunUsage(BaseModel):
    """Tokens, money and calls of a run, in total and broken down by model, agent and role.

    Attributes:
        cost_usd: what the run's calls cost, as the providers reported it, plus the estimate
            for calls that failed after their request may have reached the provider.
        unconfirmed_usd: the part of `cost_usd` that is such an estimate (a timed-out,
            cancelled or 5xx call charged at its reservation); the provider's bill may be lower.
        calls: requests sent, whatever came back (429s and timeouts included).
        refused: calls a budget refused (never sent).
        cache_hits: calls answered from the call cache (no cost).
        by_role: "planner" (the orchestrator's planner agent: plans, goal checks and, by default,
            the final answer), "synthesizer" (a named synthesizer) and "workers" (everyone else).
        planner_only_usd: what the same tokens would have cost on the planner's model — the
            saving to quote; None without a planner or when its price is unknown.
    """

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    unconfirmed_usd: float = 0.0
    calls: int = 0
    refused: int = 0
    cache_hits: int = 0
    by_model: dict[str, Usage] = Field(default_factory=dict)
    by_agent: dict[str, Usage] = Field(default_factory=dict)
    by_role: dict[str, Usage] = Field(default_factory=dict)
    planner_only_usd: float | None = None


class TaskResult(BaseModel, Generic[OutputT]):
    """What happened to one task of a run; `RunResult.task(handle)` types its `output`."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    id: str
    status: TaskStatus
    output: OutputT | None = None
    error: str | None = None
    attempts: int = 0
    usage: Usage = Field(default_factory=Usage)
    agent: str | None = None
    model: str | None = None
    deps: tuple[str, ...] = ()
    started_at: datetime | None = None
    finished_at: datetime | None = None
    vote: VoteRecord | None = None
    """How the answer was voted on (`votes=`): the samples asked, their agreement and why
    sampling stopped; None for a task without votes."""


class RunResult(BaseModel, Generic[OutputT]):
    """The outcome of a run.

    Attributes:
        run_id: the run's id.
        status: "succeeded", "partial" or "failed"; "waiting" when a task waits for a human to
            approve a tool call (see `pending`) — resume the run once it is decided.
        output: the output of the graph's only sink task, or a dict of sink id → output for the
            sinks that succeeded when there are several (None when no sink succeeded).
        tasks: every task by id, in graph order.
        usage: tokens, cost and calls, total and by model and agent.
        started_at, finished_at: wall-clock times of the run.
        goal: the goal of a planned run (`Orchestrator.run`).
        plans: a planned run's plan revisions, in order (the first plan, then each replan).
        error: why the run did not succeed (None when it did): a planned run's own reason
            when it has one (no valid plan, the final answer failed), else how many tasks
            failed and the first failures' errors (`run_error`). The store's run row keeps it.
        pending: the tool calls that wait for a human's decision (status "waiting"): decide
            them with `Orchestrator.resume(run_id, decisions={call.call_id: Approve()})`, or
            `delegate approve RUN_ID CALL_ID` and `delegate resume RUN_ID`.

    For a planned run, `output` is the final answer (text, or the `output_type` instance), and
    `tasks` holds every planned task, failed ones included.

    Read a task's output through its handle, typed as the task answers: `result[task]` (raises
    `TaskNotSucceeded` when it did not succeed) or `result.task(task)` (its whole `TaskResult`).
    `RunResult` is generic in the run's output: `Orchestrator.run(goal, output_type=Answer)`
    returns a `RunResult[Answer]`, `run(goal)` a `RunResult[str]`, `execute` a
    `RunResult[object]`.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    run_id: str
    status: RunStatus
    output: OutputT | None = None
    tasks: dict[str, TaskResult]
    usage: RunUsage
    started_at: datetime
    finished_at: datetime
    goal: str | None = None
    plans: list[PlanRevision] = Field(default_factory=list)
    error: str | None = None
    pending: list[PendingCall] = Field(default_factory=list)

    def __getitem__(self, task: Task[R]) -> R:
        """The output of `task` (a handle of this run's graph), typed as the task answers.

        Raises:
            KeyError: the run has no task with the handle's id.
            TaskNotSucceeded: the task failed, was skipped or was cancelled (`.status`, `.error`).
        """
        found = self.task(task)
        if found.status != "succeeded":
            raise TaskNotSucceeded(found.id, found.status, found.error)
        return cast("R", found.output)

    def task(self, task: Task[R] | str) -> TaskResult[R]:
        """The `TaskResult` of `task` (a handle, or a task id), its `output` typed as it answers.

        Raises:
            KeyError: the run has no such task.
        """
        task_id = task if isinstance(task, str) else task.id
        found = self.tasks.get(task_id)
        if found is None:
            raise KeyError(f"run {self.run_id!r} has no task {task_id!r}")
        return cast("TaskResult[R]", found)

    @property
    def duration(self) -> float:
        """Seconds from start to finish."""
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def failed(self) -> dict[str, TaskResult]:
        """The tasks that did not succeed (failed, skipped, cancelled, waiting or held back)."""
        return {k: t for k, t in self.tasks.items() if t.status != "succeeded"}

    def report_html(self, graph: TaskGraph | None = None) -> str:
        """The run's report: one self-contained HTML page (no network needed) with the task
        graph, a timeline with the critical path, cost by role, model and task, the plans,
        each task's output and the errors (`delegate.observe.report`).

        Args:
            graph: the graph the run executed, to show each task's prompt, votes and judge.
        """
        from delegate.observe.report import report_html

        return report_html(self, graph=graph)


def _timestamp(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def interrupted_reason(exc: BaseException) -> str:
    """Why a run stopped before it concluded, as its stored error says."""
    if isinstance(exc, anyio.get_cancelled_exc_class() | KeyboardInterrupt):
        return (
            "the run was stopped before it finished (Ctrl-C, SIGTERM, or its caller cancelled "
            "it); resume it to finish"
        )
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return interrupted_reason(exc.exceptions[0])
    return f"the run stopped on an error: {type(exc).__name__}: {exc}"[:2000]


def usage_of(account: RunAccount, named: Mapping[str, str], planner_only: float | None) -> RunUsage:
    """The run's usage from its account: totals, by model, agent and role (`named`: agent
    name → role), and what it would have cost on the planner alone."""
    book = account.book
    total = book.total
    roles: dict[str, Usage] = {}
    for (_, agent), usage in book.pairs.items():
        role = named.get(agent, "workers")
        roles[role] = roles[role] + usage if role in roles else usage
    return RunUsage(
        input_tokens=total.input_tokens,
        output_tokens=total.output_tokens,
        reasoning_tokens=total.reasoning_tokens,
        cached_tokens=total.cached_tokens,
        cost_usd=total.cost_usd,
        unconfirmed_usd=total.unconfirmed_usd,
        calls=total.calls,
        refused=account.ledger.refused,
        cache_hits=account.cache_hits,
        by_model=book.by(0),
        by_agent=book.by(1),
        by_role=roles,
        planner_only_usd=planner_only,
    )


_TASK_FIELDS = frozenset(TaskResult.model_fields)
_set = object.__setattr__


def _task_result(values: dict[str, Any]) -> TaskResult:
    """`TaskResult.model_construct(**values)` with every field given, five times faster.

    The values come from the scheduler, already typed: validating them again would cost ~10 µs
    a task, and even `model_construct` walks every field's default (~5 µs). This sets what it
    would set (tests/test_results.py checks the two agree).
    """
    result = TaskResult.__new__(TaskResult)
    _set(result, "__dict__", values)
    _set(result, "__pydantic_fields_set__", set(_TASK_FIELDS))
    _set(result, "__pydantic_extra__", None)
    _set(result, "__pydantic_private__", None)
    return result


def _status(nodes: Sequence[Node], deadline_passed: bool) -> RunStatus:
    succeeded = sum(node.status == "succeeded" for node in nodes)
    if succeeded == len(nodes):
        return "succeeded"
    if any(node.status == "waiting" for node in nodes):
        return "waiting"
    return "partial" if succeeded or deadline_passed else "failed"


def result_of(
    run_id: str,
    nodes: Sequence[Node],
    usage: RunUsage,
    deadline_passed: bool,
    started: float,
    finished: float,
) -> RunResult:
    """The result of a run from its scheduler's nodes."""
    with _gc.during_run():  # a result per task, all kept: nothing for the collector to find
        tasks = {
            node.task.id: _task_result(
                {
                    "id": node.task.id,
                    "status": node.status,
                    "output": node.output,
                    "error": node.error,
                    "attempts": node.attempts,
                    "usage": node.usage,
                    "agent": node.answered_by or node.task.agent_name,
                    "model": node.model,
                    "deps": node.task.deps,
                    "started_at": _timestamp(node.started_at),
                    "finished_at": _timestamp(node.finished_at),
                    "vote": node.vote,
                }
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


_SHOWN_FAILURES = 3  # failures a run's error names; the others are counted


def run_error(tasks: Iterable[TaskResult], deadline_passed: bool = False) -> str | None:
    """Why a run did not succeed, from its tasks: how many failed, and the first failures'
    reasons (in the order they ended), e.g. "2 of 5 tasks failed: task 'a' failed: …".

    Cancelled tasks are counted the same way when none failed; a deadline that ended the run
    says so. None when nothing failed, was cancelled or ran out of time.
    """
    ordered = list(tasks)
    for status, verb in (("failed", "failed"), ("cancelled", "were cancelled")):
        ended = sorted(
            (task for task in ordered if task.status == status),
            key=lambda task: task.finished_at or datetime.max.replace(tzinfo=UTC),
        )
        if not ended:
            continue
        reasons = [
            f"task {task.id!r} {status}: {task.error or 'no reason given'}"
            for task in ended[:_SHOWN_FAILURES]
        ]
        more = len(ended) - _SHOWN_FAILURES
        if more > 0:
            reasons.append(f"and {more} more")
        return f"{len(ended)} of {len(ordered)} tasks {verb}: " + "; ".join(reasons)
    if deadline_passed:
        return "the run's time budget ran out before every task finished"
    return None
