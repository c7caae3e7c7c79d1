"""What a run report shows, gathered from a `RunResult` or from a stored run.

Both sources become one `RunView`; the renderers (`delegate.observe.report`) read only it. A
`RunResult` holds the tasks (statuses, times, usage, outputs), the plans and the usage by model
and role; a stored run adds the event log (each retry with its error and delay, each vote
tally, judge's pick and verdict), the budget and the task prompts of its graph. What a source
does not have is left out, never invented.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from delegate._secrets import redact
from delegate.agents.models import Usage

if TYPE_CHECKING:
    from delegate.memory.records import EventRecord, RunRecord, TaskRecord
    from delegate.orchestrator.graph import TaskGraph
    from delegate.orchestrator.results import RunResult, RunUsage

__all__ = [
    "Check",
    "PlanChange",
    "Retry",
    "RunView",
    "SpendPoint",
    "TaskView",
    "clip",
    "critical_path",
    "plan_changes",
    "spend_series",
    "usage_from_json",
    "view_of_result",
    "view_of_stored",
]

TEXT_BUDGET = 2_000_000
"""Characters of prompts and outputs a report holds in all, shared out among its tasks."""

MIN_TEXT = 1_000
"""Characters of a task's prompt and of its output a report always holds (when it has them)."""


@dataclass(frozen=True, slots=True)
class Retry:
    """An attempt that failed with a transient error and was tried again."""

    task_id: str
    attempt: int
    error: str
    delay: float
    at: float


@dataclass(frozen=True, slots=True)
class Routed:
    """Learned routing's decision for one task (a `TaskRouted` event), in words."""

    task_id: str
    kind: str
    arm: str
    explored: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Check:
    """A decision on one of a task's answers (a `TaskChecked` event): a tally of `samples`
    votes (`check` "vote"), the judge's pick among them ("pick"), its verdict ("judge"), or a
    strategy's decision ("score", "best", "propose", "aggregate", "critique")."""

    task_id: str
    attempt: int
    check: str
    samples: int
    agent: str | None
    unanimous: bool | None
    passed: bool | None
    feedback: str
    chosen: int | None
    judge: str | None
    at: float
    stopped: str | None = None  # a vote: why sampling stopped
    agreement: float | None = None  # a vote: the leading answer's share of the samples
    effort: str | None = None  # a verdict: the reasoning effort the answer was asked at
    cost_usd: float | None = None  # what the calls since the previous decision cost


@dataclass(frozen=True, slots=True)
class SpendPoint:
    """The run's spend so far, in USD, at `at` (seconds since the epoch), after `label`."""

    at: float
    usd: float
    label: str


@dataclass(slots=True)
class TaskView:
    """One task as the report shows it; times are seconds since the epoch."""

    id: str
    status: str
    agent: str | None = None
    model: str | None = None
    deps: tuple[str, ...] = ()
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    started: float | None = None
    finished: float | None = None
    output: str | None = None
    error: str | None = None
    prompt: str | None = None
    votes: int | None = None
    verify: str | None = None
    revision: int | None = None

    @property
    def seconds(self) -> float:
        """How long the task ran (0 when it never started or never finished)."""
        if self.started is None or self.finished is None:
            return 0.0
        return max(self.finished - self.started, 0.0)


@dataclass(slots=True)
class RunView:
    """A run as the report shows it: `source` is "result" or "store"."""

    run_id: str
    status: str
    source: str
    started: float
    finished: float | None
    tasks: dict[str, TaskView]
    usage: RunUsage | None = None
    goal: str | None = None
    workflow: str | None = None
    output: str | None = None
    error: str | None = None
    budget_usd: float | None = None
    simulated: bool = False
    plans: list[dict[str, Any]] = field(default_factory=list)
    retries: list[Retry] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    routes: list[Routed] = field(default_factory=list)
    has_events: bool = False


@dataclass(frozen=True, slots=True)
class PlanChange:
    """What a plan revision changed: tasks added, tasks it replaced or dropped (with their
    status), tasks listed again with other values (with the fields that differ), and how many
    finished tasks it kept."""

    added: list[str]
    dropped: list[tuple[str, str]]
    changed: list[tuple[str, list[str]]]
    kept: int


def clip(text: str | None, limit: int) -> str | None:
    """`text` without credentials, cut to `limit` characters with a note of what was cut."""
    if text is None:
        return None
    text = redact(text, lookalikes=True)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… ({len(text) - limit:,} more characters not shown)"


def _text_limit(tasks: int) -> int:
    return max(MIN_TEXT, TEXT_BUDGET // max(tasks, 1) // 2)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _shown(value: Any, limit: int) -> str | None:
    from delegate.orchestrator.graph import format_output

    return None if value is None else clip(format_output(value), limit)


def _plan_prompts(plans: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, int | None]]:
    """The prompt each plan task was given, and the revision that planned it."""
    from delegate.orchestrator._plan_checks import plan_prompt
    from delegate.orchestrator.planner import PlanTask

    prompts: dict[str, tuple[str, int | None]] = {}
    for plan in plans:
        revision = plan.get("revision")
        for item in plan.get("tasks") or ():
            try:
                task = PlanTask.model_validate(item)
            except ValidationError:
                continue
            prompts[task.id] = (plan_prompt(task), revision if isinstance(revision, int) else None)
    return prompts


def _apply_specs(
    tasks: Mapping[str, TaskView], specs: Iterable[Mapping[str, Any]], limit: int
) -> None:
    for spec in specs:
        view = tasks.get(str(spec.get("id")))
        if view is None:
            continue
        prompt = spec.get("prompt")
        if isinstance(prompt, str) and prompt and view.prompt is None:
            view.prompt = clip(prompt, limit)
        if spec.get("fn") and view.prompt is None:
            view.prompt = clip(f"function {spec['fn']}", limit)
        votes, verify = spec.get("votes"), spec.get("verify")
        view.votes = votes if isinstance(votes, int) else view.votes
        view.verify = verify if isinstance(verify, str) else view.verify


def _apply_plans(
    tasks: Mapping[str, TaskView], plans: Sequence[Mapping[str, Any]], limit: int
) -> None:
    for task_id, (prompt, revision) in _plan_prompts(plans).items():
        view = tasks.get(task_id)
        if view is not None:
            view.revision = revision
            if view.prompt is None:
                view.prompt = clip(prompt, limit)


def view_of_result(result: RunResult[Any], graph: TaskGraph | None = None) -> RunView:
    """The report's view of `result`; `graph` (the graph it ran) adds the tasks' prompts."""
    limit = _text_limit(len(result.tasks))
    tasks = {
        task.id: TaskView(
            id=task.id,
            status=task.status,
            agent=task.agent,
            model=task.model,
            deps=tuple(task.deps),
            attempts=task.attempts,
            usage=task.usage,
            started=_epoch(task.started_at),
            finished=_epoch(task.finished_at),
            output=_shown(task.output, limit) if task.status == "succeeded" else None,
            error=clip(task.error, limit),
        )
        for task in result.tasks.values()
    }
    plans = [plan.to_json() for plan in result.plans]
    if graph is not None:
        specs = [spec.model_dump(exclude_defaults=True) for spec in graph.spec().tasks]
        _apply_specs(tasks, specs, limit)
    _apply_plans(tasks, plans, limit)
    return RunView(
        run_id=result.run_id,
        status=result.status,
        source="result",
        started=result.started_at.timestamp(),
        finished=result.finished_at.timestamp(),
        tasks=tasks,
        usage=result.usage,
        goal=clip(result.goal, 20_000),
        output=_shown(result.output, 200_000),
        error=clip(result.error, 20_000),
        plans=plans,
    )


def usage_from_json(data: Mapping[str, Any] | None) -> Usage:
    """A `Usage` from its JSON data (zeros for what is missing)."""
    if not data:
        return Usage()
    names = ("input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens", "calls")
    values: dict[str, Any] = {name: int(data.get(name) or 0) for name in names}
    values["cost_usd"] = float(data.get("cost_usd") or 0.0)
    values["unconfirmed_usd"] = float(data.get("unconfirmed_usd") or 0.0)
    return Usage(**values)


def _stored_run_usage(data: Mapping[str, Any] | None) -> RunUsage | None:
    from delegate.orchestrator.results import RunUsage

    if not data:
        return None
    try:
        return RunUsage.model_validate(data)
    except ValidationError:
        return None


def _stored_plans(run: RunRecord) -> list[dict[str, Any]]:
    planned = run.graph.get("planned")
    plans = planned.get("plans") if isinstance(planned, dict) else None
    return [plan for plan in plans or () if isinstance(plan, dict)]


def _stored_task(record: TaskRecord, limit: int) -> TaskView:
    deps = record.spec.get("deps")
    return TaskView(
        id=record.task_id,
        status=record.status,
        agent=record.agent,
        model=record.model,
        deps=tuple(str(dep) for dep in deps or ()),
        attempts=record.attempts,
        usage=usage_from_json(record.usage),
        started=_epoch(record.started_at),
        finished=_epoch(record.finished_at),
        output=_shown(record.output, limit) if record.status == "succeeded" else None,
        error=clip(record.error, limit),
    )


def view_of_stored(
    run: RunRecord, records: Sequence[TaskRecord], events: Sequence[EventRecord]
) -> RunView:
    """The report's view of a stored run: its record, its tasks and its event log."""
    specs = [item for item in run.graph.get("tasks", ()) if isinstance(item, dict)]
    limit = _text_limit(max(len(specs), len(records)))
    stored = {record.task_id: _stored_task(record, limit) for record in records}
    tasks: dict[str, TaskView] = {}
    for spec in specs:  # the graph's order; tasks that never ended are "not run"
        task_id = str(spec.get("id"))
        tasks[task_id] = (
            stored.pop(task_id)
            if task_id in stored
            else TaskView(
                id=task_id,
                status="not run",
                agent=spec.get("agent"),
                deps=tuple(str(dep) for dep in spec.get("deps") or ()),
            )
        )
    tasks.update(stored)
    plans = _stored_plans(run)
    _apply_specs(tasks, specs, limit)
    _apply_plans(tasks, plans, limit)
    budget = (run.budget or {}).get("usd")
    source = run.graph.get("workflow")
    return RunView(
        run_id=run.id,
        status=run.status,
        source="store",
        started=run.created_at.timestamp(),
        finished=_epoch(run.finished_at),
        tasks=tasks,
        usage=_stored_run_usage(run.usage),
        goal=clip(run.goal, 20_000),
        workflow=run.workflow,
        output=_shown(run.output, 200_000),
        error=clip(run.error, 20_000),
        budget_usd=float(budget) if isinstance(budget, int | float) else None,
        simulated=isinstance(source, dict) and bool(source.get("simulate")),
        plans=plans,
        retries=[
            Retry(
                task_id=str(event.data.get("task_id")),
                attempt=int(event.data.get("attempt") or 0),
                error=clip(str(event.data.get("error") or ""), 2_000) or "",
                delay=float(event.data.get("delay") or 0.0),
                at=event.at,
            )
            for event in events
            if event.kind == "task_retried"
        ],
        checks=[_stored_check(event) for event in events if event.kind == "task_checked"],
        routes=[_stored_route(event) for event in events if event.kind == "task_routed"],
        has_events=bool(events),
    )


def _optional(value: Any, kind: type[Any]) -> Any:
    """`value` when it is a `kind` (a bool is no int here), else None: stored data is untrusted."""
    if isinstance(value, bool) and kind is not bool:
        return None
    return value if isinstance(value, kind) else None


def _stored_route(event: EventRecord) -> Routed:
    data = event.data
    return Routed(
        task_id=str(data.get("task_id")),
        kind=clip(str(data.get("task_kind") or ""), 200) or "",
        arm=clip(str(data.get("arm") or ""), 200) or "",
        explored=_optional(data.get("explored"), bool) or False,
        reason=clip(str(data.get("reason") or ""), 1_000) or "",
    )


def _stored_check(event: EventRecord) -> Check:
    data = event.data
    agent, judge = _optional(data.get("agent"), str), _optional(data.get("judge"), str)
    return Check(
        task_id=str(data.get("task_id")),
        attempt=_optional(data.get("attempt"), int) or 0,
        check=str(data.get("check") or ""),
        samples=_optional(data.get("samples"), int) or 0,
        agent=clip(agent, 200),
        unanimous=_optional(data.get("unanimous"), bool),
        passed=_optional(data.get("passed"), bool),
        feedback=clip(str(data.get("feedback") or ""), 2_000) or "",
        chosen=_optional(data.get("chosen"), int),
        judge=clip(judge, 200),
        at=event.at,
        stopped=_one_of(data.get("stopped"), _VOTE_STOPS),
        agreement=_fraction(data.get("agreement")),
        effort=_one_of(data.get("effort"), _EFFORTS),
        cost_usd=_fraction(data.get("cost_usd"), most=None),
    )


_VOTE_STOPS = frozenset({"confident", "unanimous", "max_samples", "budget"})
_EFFORTS = frozenset({"minimal", "low", "medium", "high"})


def _one_of(value: Any, known: frozenset[str]) -> str | None:
    return value if isinstance(value, str) and value in known else None


def _fraction(value: Any, most: float | None = 1.0) -> float | None:
    """A stored number ≥ 0 (and ≤ `most`), else None: stored data is untrusted."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    if not math.isfinite(number) or number < 0 or (most is not None and number > most):
        return None
    return number


# -- what the report derives ------------------------------------------------------------------


def _topological(tasks: Mapping[str, TaskView]) -> list[str]:
    """Task ids, dependencies first (Kahn's algorithm, stable in the given order); unknown
    dependencies are ignored, and tasks on a cycle (none should be) come last."""
    children: dict[str, list[str]] = {task_id: [] for task_id in tasks}
    waiting: dict[str, int] = {}
    for task in tasks.values():
        known = {dep for dep in task.deps if dep in tasks}
        waiting[task.id] = len(known)
        for dep in known:
            children[dep].append(task.id)
    ready = deque(task_id for task_id, count in waiting.items() if count == 0)
    order: list[str] = []
    while ready:
        current = ready.popleft()
        order.append(current)
        for child in children[current]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    placed = set(order)
    return order + [task_id for task_id in tasks if task_id not in placed]


def critical_path(tasks: Mapping[str, TaskView]) -> list[str]:
    """The chain of dependent tasks with the longest total running time — the one that set
    the run's length — first task first; empty when no task has a running time."""
    best: dict[str, tuple[float, str | None]] = {}
    for task_id in _topological(tasks):
        task = tasks[task_id]
        before: tuple[float, str | None] = (0.0, None)
        for dep in task.deps:
            if dep in best and best[dep][0] > before[0]:
                before = (best[dep][0], dep)
        best[task_id] = (before[0] + task.seconds, before[1])
    if not best:
        return []
    end = max(best, key=lambda task_id: best[task_id][0])
    if best[end][0] <= 0:
        return []
    path: list[str] = []
    current: str | None = end
    while current is not None and current not in path:
        path.append(current)
        current = best[current][1]
    return path[::-1]


def spend_series(view: RunView) -> list[SpendPoint]:
    """The run's cumulative spend at each task's and each plan's end, then the run's total at
    its end (what the final answer and calls outside tasks added)."""
    ends: list[tuple[float, float, str]] = [
        (task.finished, task.usage.cost_usd, f"task {task.id}")
        for task in view.tasks.values()
        if task.finished is not None and task.usage.cost_usd
    ]
    for plan in view.plans:
        finished = plan.get("finished_at")
        usage = usage_from_json(plan.get("usage"))
        if isinstance(finished, str) and usage.cost_usd:
            ends.append(
                (datetime.fromisoformat(finished).timestamp(), usage.cost_usd, _plan_label(plan))
            )
    ends.sort(key=lambda end: end[0])
    points = [SpendPoint(view.started, 0.0, "start")]
    spent = 0.0
    for at, usd, label in ends:
        spent += usd
        points.append(SpendPoint(at, spent, label))
    total = view.usage.cost_usd if view.usage is not None else None
    if total is not None and not math.isclose(total, spent, rel_tol=1e-9, abs_tol=1e-12):
        at = view.finished if view.finished is not None else points[-1].at
        points.append(SpendPoint(max(at, points[-1].at), total, "the answer and other calls"))
    return points


def _plan_label(plan: Mapping[str, Any]) -> str:
    return f"plan {plan.get('revision')}"


_COMPARED = ("agent", "instructions", "deps", "expected_output", "effort", "max_output_tokens")


def plan_changes(
    plans: Sequence[Mapping[str, Any]], tasks: Mapping[str, TaskView]
) -> list[PlanChange]:
    """For each plan revision, what it changed against the plans before it (the first adds
    every task it has)."""
    seen: dict[str, Mapping[str, Any]] = {}
    gone: set[str] = set()  # dropped by an earlier revision: not dropped again
    changes: list[PlanChange] = []
    for plan in plans:
        listed = [item for item in plan.get("tasks") or () if isinstance(item, dict)]
        ids = [str(item.get("id")) for item in listed]
        added = [task_id for task_id in ids if task_id not in seen]
        changed = [
            (str(item.get("id")), fields)
            for item in listed
            if str(item.get("id")) in seen
            and (
                fields := [f for f in _COMPARED if item.get(f) != seen[str(item.get("id"))].get(f)]
            )
        ]
        failures = [name for name in plan.get("failures") or {} if name in seen]
        dropped = [
            (task_id, tasks[task_id].status if task_id in tasks else "not run")
            for task_id in dict.fromkeys(
                [*failures, *(t for t in seen if t not in ids and _unfinished(tasks.get(t)))]
            )
            if task_id not in ids and task_id not in gone
        ]
        gone.update(task_id for task_id, _ in dropped)
        kept = sum(
            1 for task_id in seen if task_id not in ids and not _unfinished(tasks.get(task_id))
        )
        changes.append(PlanChange(added, dropped, changed, kept if seen else 0))
        seen.update({str(item.get("id")): item for item in listed})
    return changes


def _unfinished(task: TaskView | None) -> bool:
    return task is None or task.status != "succeeded"
