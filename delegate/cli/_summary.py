"""The end of a run as the `delegate` command shows it: the summary, the output, the JSON.

    print_summary(result, sys.stderr, budget_usd=0.25)
    print_output(result.output, sys.stdout)

The summary goes to stderr, so stdout carries only the run's output (or one JSON document with
`--json`). `delegate.cli._live` shows the progress before it; `delegate.cli._stored` shows a
stored run the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from delegate.agents.models import Usage
from delegate.cli._format import (
    SIMULATED_NOTE,
    TaskRow,
    format_usd,
    iso_time,
    one_line,
    output_text,
    plural,
    table,
    task_table,
    tokens_text,
    took,
    untasked_rows,
)
from delegate.orchestrator._persist import to_json

if TYPE_CHECKING:
    from delegate.orchestrator.run import RunResult

__all__ = [
    "credentials_message",
    "pace_line",
    "print_output",
    "print_summary",
    "result_json",
    "rows_from_result",
]


def rows_from_result(result: RunResult) -> list[TaskRow]:
    """A run's tasks as table rows, in graph order (`untasked_rows` adds the other calls)."""
    return [
        TaskRow(
            id=task.id,
            agent=task.agent,
            model=task.model,
            status=task.status,
            attempts=task.attempts,
            usage=task.usage,
            seconds=took(task.started_at, task.finished_at),
        )
        for task in result.tasks.values()
    ]


def _role_table(stream: TextIO, by_role: Mapping[str, Usage], fancy: bool | None) -> None:
    rows = [
        [role, str(usage.calls), tokens_text(usage.total_tokens), format_usd(usage.cost_usd)]
        for role, usage in sorted(by_role.items())
    ]
    table(
        stream,
        ("role", "calls", "tokens", "USD"),
        rows,
        right={1, 2, 3},
        title="usage by role",
        fancy=fancy,
    )


def print_summary(
    result: RunResult,
    stream: TextIO,
    *,
    budget_usd: float | None = None,
    simulated: bool = False,
    time_scale: float | None = None,
    model_seconds: float | None = None,
    resumed: bool = False,
    fancy: bool | None = None,
) -> None:
    """The end of a run: the tasks table (with a planned run's plans and answer, so it adds up
    to the run), usage by role (with `planner_only_usd`), the totals.

    Args:
        result: the finished run.
        stream: where to write (the command writes to stderr).
        budget_usd: the run's usd budget, to show the spend against.
        simulated: mark the summary as simulated.
        time_scale: a simulation's time scale (its waits were this share of the simulated
            latencies).
        model_seconds: a simulation's critical path in simulated seconds
            (`SimulatedPace.run_seconds`): the summary says the run would take that long at
            the models' pace.
        resumed: the run was resumed: `model_seconds` covers what ran now.
        fancy: rich tables (True) or plain (False); None: rich when `stream` is a terminal.
    """
    out = stream.write
    out("\n")
    if simulated:
        out(SIMULATED_NOTE + "\n")
    rows = rows_from_result(result)
    total = Usage(
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
        reasoning_tokens=result.usage.reasoning_tokens,
        cached_tokens=result.usage.cached_tokens,
        cost_usd=result.usage.cost_usd,
        calls=result.usage.calls,
        unconfirmed_usd=result.usage.unconfirmed_usd,
    )
    plans = [plan.to_json() for plan in result.plans]
    extra = untasked_rows(rows, total, plans, answered=result.output is not None)
    task_table(stream, [*rows, *extra], fancy, "total" if extra else "all tasks")
    usage = result.usage
    if usage.by_role:
        out("\n")
        _role_table(stream, usage.by_role, fancy)
    if usage.planner_only_usd is not None:
        saved = usage.planner_only_usd - usage.cost_usd
        share = f" ({saved / usage.planner_only_usd:.0%})" if usage.planner_only_usd > 0 else ""
        out(
            f"\nplanner_only_usd: {format_usd(usage.planner_only_usd)} — the same tokens at the "
            f"planner's price; saved {format_usd(saved)}{share}\n"
        )
    _totals(result, stream, budget_usd)
    if simulated and model_seconds is not None:
        out(pace_line(model_seconds, time_scale, resumed=resumed) + "\n")
    if simulated:
        out(SIMULATED_NOTE + "\n")
    stream.flush()


def pace_line(model_seconds: float, time_scale: float | None, *, resumed: bool = False) -> str:
    """What a simulated run says of its pace: how long it would take at the models' pace (the
    critical path of its simulated calls), and what share of that the simulation waited."""
    what = "what this resume ran" if resumed else "the run"
    if model_seconds <= 0:
        return f"no model call was made: at the models' pace {what} takes 0 s"
    if time_scale:
        waited = f"the simulation waited {time_scale:g}× the models' latency"
    else:
        waited = "the simulation did not wait for the models' latency"
    return (
        f"{waited}: at their pace {what} would take about {model_seconds:.1f} s "
        "(the critical path of its simulated calls)"
    )


def _totals(result: RunResult, stream: TextIO, budget_usd: float | None) -> None:
    usage = result.usage
    spend = format_usd(usage.cost_usd)
    if budget_usd:
        spend += f" of {format_usd(budget_usd)}"
    refused = f", {usage.refused} refused by the budget" if usage.refused else ""
    stream.write(
        f"\nrun {result.run_id} {result.status} in {result.duration:.1f} s: "
        f"{tokens_text(usage.input_tokens + usage.output_tokens)} tokens in "
        f"{plural(usage.calls, 'call')}, {spend}{refused}\n"
    )
    if result.error:
        stream.write(f"error: {one_line(result.error, 1000)}\n")
    for task in result.tasks.values():
        if task.status != "succeeded" and task.error:
            stream.write(f"  {task.id} {task.status}: {one_line(task.error)}\n")


def print_output(output: Any, stream: TextIO) -> None:
    """A run's output: text as it is, anything else as indented JSON; nothing for None."""
    if output is None:
        return
    text = output_text(output)
    stream.write(text if text.endswith("\n") else text + "\n")
    stream.flush()


def print_pending(result: RunResult, stream: TextIO) -> None:
    """A waiting run's pending tool calls, and the commands that decide them and go on."""
    if not result.pending:
        return
    stream.write(f"\n{plural(len(result.pending), 'tool call')} waiting for approval:\n")
    for call in result.pending:
        stream.write(
            f"  {call.call_id}  task {call.task_id}: {call.tool}({one_line(call.arguments, 200)})"
            + (f" — {one_line(call.why, 200)}" if call.why else "")
            + "\n"
        )
    first = result.pending[0].call_id
    stream.write(
        f"approve with `delegate approve {result.run_id} {first}` (or `--deny --reason TEXT`), "
        f"then continue with `delegate resume {result.run_id}`\n"
    )
    stream.flush()


# -- JSON -----------------------------------------------------------------------------------


def result_json(
    result: RunResult, *, simulated: bool, workflow: str | None = None
) -> dict[str, Any]:
    """The `--json` document of a finished run.

    Keys: run_id, workflow, status, simulated, output, error, goal, tasks (id → status, agent,
    model, attempts, deps, usage, seconds, output, error), usage (`RunUsage`: totals, by model,
    agent and role, planner_only_usd), plans (a planned run's revisions), pending (the tool
    calls a waiting run waits on: `PendingCall`), started_at, finished_at, duration.
    """
    tasks = {
        task.id: {
            "status": task.status,
            "agent": task.agent,
            "model": task.model,
            "attempts": task.attempts,
            "deps": list(task.deps),
            "usage": task.usage.to_dict(),
            "seconds": took(task.started_at, task.finished_at),
            "output": to_json(task.output),
            "error": task.error,
        }
        for task in result.tasks.values()
    }
    return {
        "run_id": result.run_id,
        "workflow": workflow,
        "status": result.status,
        "simulated": simulated,
        "output": to_json(result.output),
        "error": result.error,
        "goal": result.goal,
        "tasks": tasks,
        "usage": result.usage.model_dump(mode="json"),
        "plans": [plan.to_json() for plan in result.plans],
        "pending": [call.model_dump(mode="json") for call in result.pending],
        "started_at": iso_time(result.started_at),
        "finished_at": iso_time(result.finished_at),
        "duration": result.duration,
    }


# -- credentials ----------------------------------------------------------------------------


def credentials_message(missing: Mapping[str, Sequence[str]]) -> str | None:
    """What to tell a user whose models lack credentials (None when nothing is missing).

    Args:
        missing: model → the environment variables it needs that are not set.
    """
    parts = []
    count = 0
    for model, names in missing.items():
        if not names:
            continue
        count += len(names)
        verb = "is" if len(names) == 1 else "are"
        parts.append(f"model {model} needs {' and '.join(names)}, which {verb} not set")
    if not parts:
        return None
    pronoun = "it" if count == 1 else "them"
    return (
        "; ".join(parts) + f"; export {pronoun}, or try --simulate to see the run's graph, spend "
        "and critical path without calling a model"
    )
