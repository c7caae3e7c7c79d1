"""What the `delegate plan` command shows: the tasks a workflow would run, with their projected
tokens, cost and time, the critical path and, in planner mode, the planner's plan.

Nothing runs beyond planning; the formatting is `delegate.cli._format`'s.
"""

from __future__ import annotations

from typing import Any, TextIO

from delegate.agents.models import Usage
from delegate.cli._format import (
    SIMULATED_NOTE,
    format_usd,
    one_line,
    plural,
    seconds_text,
    table,
    tokens_text,
)
from delegate.cli._stored import print_plans

__all__ = ["preview_json", "print_preview"]


def _preview_rows(preview: Any) -> list[dict[str, Any]]:
    estimates = preview.estimate.tasks
    rows = []
    for task_id, agent, model, deps in preview.tasks:
        estimate = estimates.get(task_id)
        rows.append(
            {
                "id": task_id,
                "agent": agent,
                "model": model,
                "deps": list(deps),
                "input_tokens": estimate.input_tokens if estimate else None,
                "output_tokens": estimate.output_tokens if estimate else None,
                "usd": estimate.usd if estimate else None,
                "seconds": estimate.seconds if estimate else None,
            }
        )
    return rows


def preview_json(preview: Any, *, workflow: str, simulated: bool) -> dict[str, Any]:
    """The `delegate plan --json` document.

    Keys: workflow, simulated, tasks (id, agent, model, deps and the projected input_tokens,
    output_tokens, usd, seconds), estimate (totals, critical_path, by_model, unpriced), plan
    (in planner mode the planner's plan: tasks, synthesis_note and the usage of planning; else
    None).
    """
    estimate = preview.estimate
    return {
        "workflow": workflow,
        "simulated": simulated,
        "tasks": _preview_rows(preview),
        "estimate": {
            "input_tokens": estimate.input_tokens,
            "output_tokens": estimate.output_tokens,
            "usd": estimate.usd,
            "seconds": estimate.seconds,
            "critical_path": list(estimate.critical_path),
            "by_model": dict(estimate.by_model),
            "unpriced": list(estimate.unpriced),
        },
        "plan": _preview_plan(preview),
    }


def _preview_plan(preview: Any) -> dict[str, Any] | None:
    """The planner's plan of a preview as JSON data, with what planning cost."""
    if preview.plan is None:
        return None
    plan: dict[str, Any] = preview.plan.model_dump(mode="json")
    usage = preview.planning_usage
    plan["usage"] = (usage if usage is not None else Usage()).to_dict()
    return plan


def print_preview(
    preview: Any,
    stream: TextIO,
    *,
    workflow: str,
    simulated: bool,
    fancy: bool | None = None,
    status: str = "nothing executed",
) -> None:
    """`delegate plan`: the planner's plan (planner mode), the tasks with their projections, the
    total estimate and the critical path.

    Args:
        preview: the runtime's `Preview` (.tasks, .estimate, .plan).
        stream: where to write.
        workflow: the workflow's name.
        simulated: the plan came from a simulated planner.
        fancy: rich tables (True) or plain (False); None: rich when `stream` is a terminal.
        status: what the header says after the task count.
    """
    out = stream.write
    if simulated:
        out(SIMULATED_NOTE + "\n")
    rows = _preview_rows(preview)
    out(f"{workflow}: {plural(len(rows), 'task')}, {status}\n")
    plan = _preview_plan(preview)
    if plan is not None:
        print_plans([{"revision": 1, "reason": "goal", **plan}], stream)
        if plan.get("synthesis_note"):
            out(f"    answer: {one_line(str(plan['synthesis_note']))}\n")
    out("\n")
    cells = [
        [
            row["id"],
            row["agent"] or "—",
            row["model"] or "—",
            ", ".join(row["deps"]) or "—",
            "—" if row["input_tokens"] is None else tokens_text(row["input_tokens"]),
            "—" if row["output_tokens"] is None else tokens_text(row["output_tokens"]),
            format_usd(row["usd"]),
            seconds_text(row["seconds"]),
        ]
        for row in rows
    ]
    headers = ("task", "agent", "model", "needs", "tokens in", "tokens out", "USD", "seconds")
    table(
        stream,
        headers,
        cells,
        right={4, 5, 6, 7},
        fold={1, 2, 3},
        title="estimate per task",
        fancy=fancy,
    )
    estimate = preview.estimate
    tokens = tokens_text(estimate.input_tokens + estimate.output_tokens)
    usd = format_usd(estimate.usd) if estimate.usd is not None else "unknown"
    out(
        f"\nestimate: {tokens} tokens, {usd} at most, {estimate.seconds:.1f} s on the critical "
        f"path: {' → '.join(estimate.critical_path) or '—'}\n"
    )
    if estimate.unpriced:
        out(f"no known price for: {', '.join(estimate.unpriced)} (give it under `prices:`)\n")
    stream.flush()
