"""The cost table: tokens and USD by role, the total, what the planner's model alone would have
cost (`RunUsage.planner_only_usd`), the saving, and whether the budget held."""

from __future__ import annotations

from collections.abc import Mapping

from rich import box
from rich.table import Table

from delegate import Budget, RunResult

ROLES = ("planner", "workers", "synthesizer")


def cost_table(result: RunResult, models: Mapping[str, str]) -> Table:
    """Tokens, calls and USD for each role of the run, and their total.

    Args:
        result: the finished run.
        models: the model of each role, by role name, for the table's model column.
    """
    table = Table(title="cost by role", box=box.SIMPLE_HEAD, title_justify="left")
    for column, justify in (
        ("role", "left"),
        ("model", "left"),
        ("calls", "right"),
        ("input tokens", "right"),
        ("output tokens", "right"),
        ("USD", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    usage = result.usage
    for role in (*ROLES, *sorted(set(usage.by_role) - set(ROLES))):
        spent = usage.by_role.get(role)
        if spent is None:
            continue
        table.add_row(
            role,
            models.get(role, "?"),
            f"{spent.calls:,}",
            f"{spent.input_tokens:,}",
            f"{spent.output_tokens:,}",
            f"${spent.cost_usd:.4f}",
        )
    table.add_section()
    table.add_row(
        "total",
        "",
        f"{usage.calls:,}",
        f"{usage.input_tokens:,}",
        f"{usage.output_tokens:,}",
        f"${usage.cost_usd:.4f}",
    )
    return table


def saving_line(result: RunResult, planner_model: str) -> str:
    """What the same tokens would have cost on the planner's model, and the saving."""
    alone = result.usage.planner_only_usd
    if alone is None or alone <= 0:
        return f"planner_only_usd: unknown (no price for {planner_model})"
    saving = 1 - result.usage.cost_usd / alone
    return (
        f"planner_only_usd: ${alone:.4f} — the same tokens on {planner_model} alone; "
        f"planner + mini workers saved {saving:.0%}"
    )


def budget_line(result: RunResult, budget: Budget) -> str:
    """The spend against the budget: whether it held, and how many calls it refused."""
    usage = result.usage
    parts = []
    if budget.usd is not None:
        limit = f"${budget.usd:.2f}" if budget.usd >= 0.1 else f"${budget.usd:.4f}"
        parts.append(f"${usage.cost_usd:.4f} of {limit}")
    if budget.seconds is not None:
        parts.append(f"{result.duration:.1f} s of {budget.seconds:.0f} s")
    held = budget.usd is None or usage.cost_usd <= budget.usd
    refused = f"{usage.refused} calls refused"
    if usage.refused:
        refused += " because they did not fit: raise --budget-usd"
    return f"budget: {', '.join(parts)} — {'held' if held else 'OVERSPENT'} ({refused})"
