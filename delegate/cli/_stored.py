"""What the `delegate` command shows of stored runs: `runs`, `show`, and a run's state.

    with Store.open(url) as store:
        run, tasks = store.get_run(run_id), store.get_tasks(run_id)
    print_stored_run(run, tasks, sys.stdout)

The formatting (dollars, tables, simulation notices) is `delegate.cli._format`'s, so a stored
run reads like the summary of a live one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from delegate.agents.models import Usage
from delegate.cli._format import (
    PLAN_REASONS,
    SIMULATED_NOTE,
    TaskRow,
    format_usd,
    iso_time,
    one_line,
    output_text,
    plural,
    seconds_text,
    table,
    task_table,
    tokens_text,
    took,
    untasked_rows,
    usage_of,
)

if TYPE_CHECKING:
    from delegate.memory.records import ApprovalRecord, LeaseRecord, RunRecord, TaskRecord

__all__ = [
    "TRUNCATE_CHARS",
    "owned",
    "print_plans",
    "print_runs",
    "print_stored_run",
    "resume_hint",
    "rows_from_records",
    "run_state",
    "runs_json",
    "stored_run_json",
    "stored_simulated",
]

TRUNCATE_CHARS = 500
"""Characters of an output `delegate show` prints without --full."""


# -- a run's state: who owns it, how to go on -------------------------------------------------

_RESUMABLE = frozenset({"interrupted", "stale", "partial", "failed", "waiting"})


def owned(lease: LeaseRecord | None) -> bool:
    """Whether a live process owns the run: its lease is live, and not one of a process of this
    machine that is gone (`lease_is_dead`, the store's own rule)."""
    from delegate.memory.store import lease_is_dead

    return lease is not None and lease.live() and not lease_is_dead(lease)


def run_state(run: RunRecord, lease: LeaseRecord | None) -> str:
    """The status `runs` and `show` give a run: the stored one, but "running" for a run a live
    process owns (one being resumed keeps its stored status until it ends), and "stale" for a
    run stored as running that no live process owns — its lease is missing or expired, or its
    process (on this machine) is gone: it was killed, and `delegate resume` finishes it."""
    if run.status != "succeeded" and owned(lease):
        return "running"
    return "stale" if run.status == "running" else run.status


def _stale_reason(lease: LeaseRecord | None) -> str:
    from delegate.memory.store import lease_is_dead

    if lease is None:
        return "no process owns it"
    if lease.live() and lease_is_dead(lease):
        return f"its process (pid {lease.pid} on host {lease.host}) is gone"
    return f"its owner stopped renewing it ({lease.describe()})"


def resume_hint(run: RunRecord, lease: LeaseRecord | None, command: str) -> str | None:
    """What `delegate show` says of a run that did not finish: how to resume it (`command`), or
    for a running run, who owns it; None for a run that succeeded."""
    state = run_state(run, lease)
    if state == "running" and lease is not None:
        return f"running: owned by {lease.describe()}"
    if state not in _RESUMABLE:
        return None
    why = f"stale: stored as running, but {_stale_reason(lease)}; " if state == "stale" else ""
    if state == "waiting":  # tool calls wait for a human
        why = f"waiting: decide its tool calls (delegate pending {run.id}, delegate approve); "
    source = run.graph.get("workflow")
    if not (isinstance(source, dict) and isinstance(source.get("text"), str)):
        return f"{why}resume it from Python: Orchestrator(...).resume({run.id!r})"
    return f"{why}resume it: {command}"


# -- one stored run ------------------------------------------------------------------------


def rows_from_records(run: RunRecord, tasks: Sequence[TaskRecord]) -> list[TaskRow]:
    """A stored run's tasks as table rows: the graph's order, "not run" for tasks never ended."""
    stored = {task.task_id: task for task in tasks}
    order = [item["id"] for item in run.graph.get("tasks", ()) if isinstance(item, dict)]
    order += [task_id for task_id in stored if task_id not in order]
    rows = []
    for task_id in order:
        record = stored.get(task_id)
        if record is None:
            spec = next(t for t in run.graph["tasks"] if t.get("id") == task_id)
            rows.append(TaskRow(task_id, spec.get("agent"), None, "not run", 0, Usage(), None))
            continue
        rows.append(
            TaskRow(
                id=task_id,
                agent=record.agent,
                model=record.model,
                status=record.status,
                attempts=record.attempts,
                usage=usage_of(record.usage),
                seconds=took(record.started_at, record.finished_at),
            )
        )
    return rows


def _stored_plans(run: RunRecord) -> list[dict[str, Any]]:
    """A planned run's plan revisions, then the plans of a workflow's plan steps ("step")."""
    planned = run.graph.get("planned")
    plans = planned.get("plans") if isinstance(planned, dict) else None
    found = [plan for plan in plans or () if isinstance(plan, dict)]
    steps = run.graph.get("plans")
    for step, plan in steps.items() if isinstance(steps, dict) else ():
        if isinstance(plan, dict):
            found.append({"step": step, **plan})
    return found


def stored_simulated(run: RunRecord) -> bool:
    """True when the stored run came from a workflow run with `--simulate`."""
    source = run.graph.get("workflow")
    return isinstance(source, dict) and bool(source.get("simulate"))


def stored_run_json(
    run: RunRecord,
    tasks: Sequence[TaskRecord],
    lease: LeaseRecord | None = None,
    approvals: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The `delegate show --json` document of a stored run (outputs never truncated).

    Keys: run_id, workflow, status (`run_state`: "stale" for a killed run), simulated, goal,
    inputs, output, error, budget, usage, plans (a planned run's revisions, then the plans of
    plan steps, with "step"; each with its "approval": "given", "approved", "edited",
    "rejected" or None), created_at, finished_at, duration, tasks (id → status, agent, model,
    attempts, deps, usage, seconds, output, error; "not run" for tasks of the graph that never
    ended), and approvals (the tool calls that needed a decision, pending or decided:
    `delegate.cli.approvals.call_documents`).
    """
    stored = {task.task_id: task for task in tasks}
    specs = {item["id"]: item for item in run.graph.get("tasks", ()) if isinstance(item, dict)}
    documents: dict[str, Any] = {}
    for row in rows_from_records(run, tasks):
        record = stored.get(row.id)
        deps = (record.spec.get("deps") if record else None) or specs.get(row.id, {}).get("deps")
        documents[row.id] = {
            "status": row.status,
            "agent": row.agent,
            "model": row.model,
            "attempts": row.attempts,
            "deps": list(deps or ()),
            "usage": row.usage.to_dict(),
            "seconds": row.seconds,
            "output": record.output if record else None,
            "error": record.error if record else None,
        }
    return {
        "run_id": run.id,
        "workflow": run.workflow,
        "status": run_state(run, lease),
        "simulated": stored_simulated(run),
        "goal": run.goal,
        "inputs": run.inputs,
        "output": run.output,
        "error": run.error,
        "budget": run.budget,
        "usage": run.usage,
        "plans": _stored_plans(run),
        "tasks": documents,
        "approvals": list(approvals),
        "created_at": iso_time(run.created_at),
        "finished_at": iso_time(run.finished_at),
        "duration": took(run.created_at, run.finished_at),
    }


# -- the list of runs, and the text of one ---------------------------------------------------


def _cost(run: RunRecord) -> float | None:
    value = (run.usage or {}).get("cost_usd")
    return float(value) if isinstance(value, int | float) else None


def _local(value: datetime) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def runs_json(
    runs: Sequence[RunRecord], leases: Mapping[str, LeaseRecord | None] | None = None
) -> dict[str, Any]:
    """The `delegate runs --json` document: {"runs": [{run_id, workflow, goal, status,
    simulated, created_at, finished_at, duration, cost_usd}, ...]}, newest first.

    `leases` are the runs' leases (by run id): a running run without a live one is "stale",
    one with a live one "running" (`run_state`).
    """
    leases = leases or {}
    return {
        "runs": [
            {
                "run_id": run.id,
                "workflow": run.workflow,
                "goal": run.goal,
                "status": run_state(run, leases.get(run.id)),
                "simulated": stored_simulated(run),
                "created_at": iso_time(run.created_at),
                "finished_at": iso_time(run.finished_at),
                "duration": took(run.created_at, run.finished_at),
                "cost_usd": _cost(run),
            }
            for run in runs
        ]
    }


def print_runs(
    runs: Sequence[RunRecord],
    stream: TextIO,
    *,
    leases: Mapping[str, LeaseRecord | None] | None = None,
    fancy: bool | None = None,
) -> None:
    """The recent runs as a table: id, workflow, status, created, duration, cost.

    `leases` are the runs' leases (by run id): a running run without a live one shows as
    "stale", one with a live one as "running" (`run_state`).
    """
    if not runs:
        stream.write("no runs in the store yet; start one with `delegate run FILE`\n")
        return
    leases = leases or {}
    rows = [
        [
            run.id,
            (run.workflow or "—") + (" (simulated)" if stored_simulated(run) else ""),
            run_state(run, leases.get(run.id)),
            _local(run.created_at),
            seconds_text(took(run.created_at, run.finished_at)),
            format_usd(_cost(run)),
        ]
        for run in runs
    ]
    headers = ("run", "workflow", "status", "created", "duration", "cost")
    table(stream, headers, rows, right={4, 5}, fold={1}, fancy=fancy)


def _indented(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def _truncated(text: str, full: bool) -> str:
    if full or len(text) <= TRUNCATE_CHARS:
        return text
    more = len(text) - TRUNCATE_CHARS
    return f"{text[:TRUNCATE_CHARS]}… ({more:,} more characters; --full shows all)"


def _plan_title(plan: Mapping[str, Any]) -> str:
    if "step" in plan:
        return f"plan step {plan['step']}"
    reason = PLAN_REASONS.get(str(plan.get("reason")), str(plan.get("reason")))
    return f"plan {plan.get('revision')} ({reason})"


_PLAN_APPROVALS = {
    "given": "approved beforehand",
    "approved": "approved by a human",
    "edited": "edited by a human",
    "rejected": "rejected by a human",
}
"""How `show` says what a human decided on a plan (`PlanRevision.approval`)."""


def print_plans(plans: Sequence[Mapping[str, Any]], stream: TextIO) -> None:
    """Plans as `show` and `plan` list them: each with its tasks (agent, dependencies,
    instructions), the failures it answered, what a human decided on it, and its error."""
    stream.write("\nplans:\n")
    for plan in plans:
        tasks = [t for t in plan.get("tasks") or () if isinstance(t, dict)]
        facts = [plural(len(tasks), "task")]
        if "attempts" in plan:
            facts.append(plural(int(plan.get("attempts") or 0), "attempt"))
        if "usage" in plan:
            facts.append(format_usd(usage_of(plan.get("usage")).cost_usd))
        if "complete" in plan:
            facts.append("complete" if plan.get("complete") else "incomplete")
        approval = plan.get("approval")
        if approval:
            facts.append(_PLAN_APPROVALS.get(str(approval), str(approval)))
        stream.write(f"  {_plan_title(plan)}: {', '.join(facts)}\n")
        for failed, error in (plan.get("failures") or {}).items():
            stream.write(f"    after {failed}: {one_line(str(error))}\n")
        for task in tasks:
            deps = ", ".join(task.get("deps") or ()) or "nothing"
            stream.write(f"    - {task.get('id')} ({task.get('agent')}, after {deps}): ")
            stream.write(one_line(str(task.get("instructions", "")), 160) + "\n")
        if plan.get("error"):
            stream.write(f"    error: {one_line(str(plan['error']))}\n")


def _run_header(run: RunRecord, stream: TextIO, lease: LeaseRecord | None, resume: str) -> None:
    out = stream.write
    if stored_simulated(run):
        out(SIMULATED_NOTE + "\n")
    out(f"run {run.id}: {run_state(run, lease)}\n")
    hint = resume_hint(run, lease, resume)
    if hint:
        out(hint + "\n")
    if run.workflow:
        out(f"workflow: {run.workflow}\n")
    finished = f", finished {_local(run.finished_at)}" if run.finished_at else ""
    out(f"created: {_local(run.created_at)}{finished}\n")
    if run.goal:
        out(f"goal: {one_line(run.goal, 1000)}\n")
    for name, value in run.inputs.items():
        out(f"input {name}: {one_line(output_text(value), 1000)}\n")
    usage = usage_of(run.usage)
    if run.usage is not None:
        calls, cost = plural(usage.calls, "call"), format_usd(usage.cost_usd)
        out(f"usage: {tokens_text(usage.total_tokens)} tokens in {calls}, {cost}\n")
    out("\n")


def print_stored_run(
    run: RunRecord,
    tasks: Sequence[TaskRecord],
    stream: TextIO,
    *,
    full: bool = False,
    fancy: bool | None = None,
    lease: LeaseRecord | None = None,
    resume: str | None = None,
    calls: Sequence[ApprovalRecord] = (),
    decided_by: Mapping[str, str] | None = None,
    db: str | None = None,
) -> None:
    """`delegate show`: the run, its tasks with usage and outputs, its plans, its tool calls
    that needed a decision, and its errors.

    A run that did not finish says how to go on: its owner while it runs; the command that
    resumes it when it is interrupted, stale (killed), partial or failed.

    Args:
        run: the stored run.
        tasks: its stored tasks.
        stream: where to write.
        full: show whole outputs (else each is cut at `TRUNCATE_CHARS`).
        fancy: rich tables (True) or plain (False); None: rich when `stream` is a terminal.
        lease: the run's lease (who owns it), if any.
        resume: the command that resumes it (default: `delegate resume RUN_ID`).
        calls: its tool calls that needed a decision (`Store.list_approvals`).
        decided_by: who decided calls a human did not (`delegate.cli.approvals.decided_by`).
        db: the store's URL as given (`--db`), for the commands shown.
    """
    out = stream.write
    _run_header(run, stream, lease, resume or f"delegate resume {run.id}")
    rows = rows_from_records(run, tasks)
    extra: list[TaskRow] = []
    if run.usage is not None:  # a finished run: its plans and answer are rows too
        plans = [plan for plan in _stored_plans(run) if "step" not in plan]
        extra = untasked_rows(rows, usage_of(run.usage), plans, answered=run.output is not None)
    task_table(stream, [*rows, *extra], fancy, "total" if extra else "all tasks")
    plans = _stored_plans(run)
    if plans:
        print_plans(plans, stream)
    if calls:
        from delegate.cli.approvals import print_calls

        print_calls(calls, decided_by or {}, stream, db)
    outputs = [task for task in tasks if task.status == "succeeded"]
    if outputs:
        out("\noutputs:\n")
        for task in outputs:
            out(f"  {task.task_id}:\n{_indented(_truncated(output_text(task.output), full))}\n")
    errors = [task for task in tasks if task.error]
    if errors or run.error:
        out("\nerrors:\n")
        for task in errors:
            out(f"  {task.task_id} ({task.status}): {one_line(task.error or '', 1000)}\n")
        if run.error and not errors:
            out(f"  {one_line(run.error, 2000)}\n")
    if run.output is not None:
        out(f"\noutput:\n{_indented(_truncated(output_text(run.output), full))}\n")
    stream.flush()
