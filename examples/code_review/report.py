"""What the example prints: the review, what the verifiers dropped, and the run's cost."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

from code_review.findings import Review, VerifiedFindings
from code_review.pipeline import Crew, TaskIds
from delegate import Budget, RunResult, Usage

__all__ = ["print_costs", "print_dropped", "render_review"]


def render_review(review: Review) -> str:
    """The review as Markdown: verdict, summary, then one section per severity."""
    out = [f"# Review: {review.verdict}", "", review.summary]
    for section in review.sections:
        out += ["", f"## {section.severity.capitalize()} ({len(section.findings)})"]
        for finding in section.findings:
            out.append(f"- {finding.where} — {finding.message}")
            out.append(f"  suggestion: {finding.suggestion}")
    if not review.sections:
        out += ["", "No findings."]
    return "\n".join(out)


def print_dropped(
    result: RunResult, ids: Mapping[str, TaskIds], console: Console, *, limit: int = 10
) -> None:
    """List the findings the verifiers dropped, at most `limit` of them."""
    lines: list[str] = []
    for path, task in ids.items():
        verified = result.tasks[task.verify].output
        if not isinstance(verified, VerifiedFindings):
            lines.append(f"{path}: not verified ({result.tasks[task.verify].status})")
            continue
        lines.extend(
            f"- {d.finding.where} [{d.finding.severity}] {d.finding.message}\n  dropped: {d.reason}"
            for d in verified.dropped
        )
    shown = lines[:limit] + ([f"… and {len(lines) - limit} more"] if len(lines) > limit else [])
    for line in shown or ["none"]:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def print_costs(result: RunResult, crew: Crew, budget: Budget, console: Console) -> None:
    """Tokens and USD by role, the total, the same work on the planner's model, the budget."""
    usage = result.usage
    table = Table(title="cost by role", title_justify="left")
    for column in ("role", "agents", "model"):
        table.add_column(column)
    for column in ("calls", "tokens in", "tokens out", "USD"):
        table.add_column(column, justify="right")
    members = {"planner": [crew.lead], "workers": [crew.reviewer, crew.verifier]}
    order = [*members, *(role for role in usage.by_role if role not in members)]
    for role in order:
        spent = usage.by_role.get(role, Usage())
        agents = members.get(role, [])
        names = ", ".join(agent.name for agent in agents)
        models = ", ".join(sorted({agent.model.name for agent in agents}))
        table.add_row(role, names, models, *_cells(spent))
    total = Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
        calls=usage.calls,
    )
    table.add_row("total", "", "", *_cells(total), end_section=True)
    console.print(table)
    alone = usage.planner_only_usd
    if alone is not None:
        saving = 1 - usage.cost_usd / alone if alone > 0 else 0.0
        console.print(
            f"planner_only_usd: {_usd(alone)} — the same tokens on {crew.lead.model.name} alone\n"
            f"saving: {saving:.0%} ({_usd(alone - usage.cost_usd)}) with mini workers",
            highlight=False,
        )
    limit = "no usd limit" if budget.usd is None else _usd(budget.usd)
    held = budget.usd is None or usage.cost_usd <= budget.usd
    refused = f"; {usage.refused} calls refused" if usage.refused else ", no call refused"
    console.print(
        f"budget: {_usd(usage.cost_usd)} spent of {limit} — "
        f"{'held' if held else 'EXCEEDED'}{refused}",
        highlight=False,
    )


def _cells(usage: Usage) -> tuple[str, str, str, str]:
    return (
        f"{usage.calls:,}",
        f"{usage.input_tokens:,}",
        f"{usage.output_tokens:,}",
        _usd(usage.cost_usd),
    )


def _usd(value: float) -> str:
    return f"${value:.5f}" if value < 0.1 else f"${value:.2f}"
