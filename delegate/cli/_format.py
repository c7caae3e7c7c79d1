"""How the `delegate` command formats what it shows: dollars, token counts, times, tables.

Tables are rich tables on a terminal and aligned plain text elsewhere, so they can be read in
logs and grepped; rich is imported only where a rich table is drawn. A run's summary
(`delegate.cli._summary`), a stored run (`_stored`) and a plan (`_preview`) share all of it, so
they read alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TextIO

from delegate._log import redact_text
from delegate.agents.models import Usage
from delegate.orchestrator._persist import to_json

__all__ = [
    "PLAN_REASONS",
    "SIMULATED_NOTE",
    "TaskRow",
    "clock_text",
    "format_usd",
    "is_terminal",
    "iso_time",
    "one_line",
    "output_text",
    "parse_datetime",
    "plural",
    "seconds_text",
    "table",
    "task_table",
    "tokens_text",
    "took",
    "untasked_rows",
    "usage_of",
    "write_json",
]

SIMULATED_NOTE = "SIMULATED — no model was called; prices are real, outputs are not"
PLAN_REASONS = {
    "goal": "the goal",
    "failures": "tasks failed",
    "goal_unmet": "the goal check found gaps",
    "resumed": "the run was resumed",
}
"""Why a plan revision was made, as the command says it."""


# -- formatting -----------------------------------------------------------------------------


def format_usd(amount: float | None) -> str:
    """Dollars with the digits that matter, never an exponent: "$1.25", "$0.50", "$0.0123",
    "$0.0000018"; "—" for None."""
    if amount is None:
        return "—"
    if amount == 0:
        return "$0"
    if abs(amount) >= 1:
        return f"${amount:,.2f}"
    # At least 4 decimals, and at least 2 significant digits.
    decimals = max(4, 1 - math.floor(math.log10(abs(amount))) + 1)
    whole, _, fraction = f"{amount:.{decimals}f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def tokens_text(count: int) -> str:
    return f"{count:,}"


def seconds_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def clock_text(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(redact_text(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def usage_of(data: Mapping[str, Any] | None) -> Usage:
    if not data:
        return Usage()
    names = ("input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens", "calls")
    values: dict[str, Any] = {name: int(data.get(name) or 0) for name in names}
    return Usage(
        cost_usd=float(data.get("cost_usd") or 0.0),
        unconfirmed_usd=float(data.get("unconfirmed_usd") or 0.0),
        **values,
    )


def output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return json.dumps(to_json(output), ensure_ascii=False, indent=2)


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


# -- tables ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task's line in a summary table."""

    id: str
    agent: str | None
    model: str | None
    status: str
    attempts: int
    usage: Usage
    seconds: float | None

    def cells(self) -> list[str]:
        """The row's cells, formatted."""
        return [
            self.id,
            self.agent or "—",
            self.model or "—",
            self.status,
            str(self.attempts),
            tokens_text(self.usage.total_tokens),
            format_usd(self.usage.cost_usd),
            seconds_text(self.seconds),
        ]


_TASK_HEADERS = ("task", "agent", "model", "status", "attempts", "tokens", "USD", "seconds")
_TASK_RIGHT = frozenset({4, 5, 6, 7})


def took(started: datetime | None, finished: datetime | None) -> float | None:
    if started is None or finished is None:
        return None
    return max((finished - started).total_seconds(), 0.0)


def _minus(total: Usage, part: Usage) -> Usage:
    return Usage(
        input_tokens=total.input_tokens - part.input_tokens,
        output_tokens=total.output_tokens - part.output_tokens,
        reasoning_tokens=total.reasoning_tokens - part.reasoning_tokens,
        cached_tokens=total.cached_tokens - part.cached_tokens,
        cost_usd=total.cost_usd - part.cost_usd,
        calls=total.calls - part.calls,
        unconfirmed_usd=total.unconfirmed_usd - part.unconfirmed_usd,
    )


def parse_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def untasked_rows(
    rows: Sequence[TaskRow],
    total: Usage,
    plans: Sequence[Mapping[str, Any]] = (),
    *,
    answered: bool = True,
) -> list[TaskRow]:
    """The calls of a run that are no task's, as rows, so a task table adds up to the run.

    A planned run's plan revisions (`plans`, as JSON data) each get a row ("plan 1", ...);
    what is left of `total` after the tasks and the plans — the final answer and any goal
    checks — is the row "answer" ("goal checks, answer" for more than one call; "other calls"
    for a run without plans, such as calls in flight when a resumed run stopped, charged at
    what they reserved). No row when nothing is left.

    Args:
        rows: the task rows.
        total: the run's usage.
        plans: a planned run's plan revisions (`PlanRevision.to_json()`).
        answered: the run has its answer (the "answer" row's status).
    """
    extra: list[TaskRow] = []
    for plan in plans:
        started = parse_datetime(plan.get("started_at"))
        finished = parse_datetime(plan.get("finished_at"))
        extra.append(
            TaskRow(
                id=f"plan {plan.get('revision', len(extra) + 1)}",
                agent=None,
                model=None,
                status="succeeded" if plan.get("complete") else "failed",
                attempts=int(plan.get("attempts") or 0),
                usage=usage_of(plan.get("usage")),
                seconds=took(started, finished),
            )
        )
    counted = Usage()
    for row in (*rows, *extra):
        counted += row.usage
    rest = _minus(total, counted)
    if rest.calls > 0 or rest.total_tokens > 0 or rest.cost_usd > 1e-12:
        label = "other calls"
        if plans:  # the final answer, after the goal checks of `judge_goal` when there were any
            label = "answer" if rest.calls <= 1 else "goal checks, answer"
        status = "—" if not plans else "succeeded" if answered else "failed"
        extra.append(TaskRow(label, None, None, status, rest.calls, rest, None))
    return extra


def table(
    stream: TextIO,
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    right: Iterable[int] = (),
    fold: Iterable[int] = (),
    title: str = "",
    fancy: bool | None = None,
) -> None:
    """A table on `stream`: rich on a terminal (or `fancy=True`), aligned plain text otherwise.

    Columns in `right` are right-aligned; on a terminal too narrow for the table, the text of
    the `fold` columns wraps and the others are never cut.
    """
    rows = [list(row) for row in rows]
    right, fold = set(right), set(fold)
    if fancy if fancy is not None else is_terminal(stream):
        from rich import box
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=title or None,
            box=box.SIMPLE_HEAD,
            title_justify="left",
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
        )
        for i, header in enumerate(headers):
            justify: Literal["left", "right"] = "right" if i in right else "left"
            if i in fold:
                table.add_column(header, justify=justify, overflow="fold")
            else:
                widest = max([len(header)] + [len(row[i]) for row in rows])
                table.add_column(header, justify=justify, no_wrap=True, min_width=widest)
        for row in rows:
            table.add_row(*row)
        Console(file=stream, highlight=False).print(table)
        return
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    if title:
        stream.write(title + "\n")
    stream.write(line(headers) + "\n")
    stream.write("  ".join("-" * w for w in widths) + "\n")
    for row in rows:
        stream.write(line(row) + "\n")


def task_table(
    stream: TextIO, rows: Sequence[TaskRow], fancy: bool | None, label: str = "all tasks"
) -> None:
    total = Usage()
    for row in rows:
        total += row.usage
    cells = [row.cells() for row in rows]
    attempts = sum(row.attempts for row in rows)
    total_row = [label, "", "", "", str(attempts), tokens_text(total.total_tokens)]
    cells.append([*total_row, format_usd(total.cost_usd), ""])
    table(stream, _TASK_HEADERS, cells, right=_TASK_RIGHT, fold={1, 2}, title="tasks", fancy=fancy)


# -- JSON -----------------------------------------------------------------------------------


def write_json(document: Any, stream: TextIO) -> None:
    """Write one JSON document (and a newline) on `stream`."""
    stream.write(json.dumps(document, ensure_ascii=False, indent=2, default=str) + "\n")
    stream.flush()


def iso_time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
