"""What the `delegate` command shows of a run: live progress, the summary, the JSON document.

    display = RunDisplay(title="market-brief", budget_usd=0.25)
    orch = Orchestrator(..., on_event=display)
    with display:
        result = orch.execute_sync(graph)
    print_summary(result, sys.stderr, budget_usd=0.25)
    print_output(result.output, sys.stdout)

Progress and summaries go to stderr, so stdout carries only the run's output (or one JSON
document with `--json`). On a terminal the progress is a rich live view redrawn from its own
thread; elsewhere (CI logs, pipes) it is one plain line per event. Tables are rich tables on a
terminal and aligned plain text elsewhere, so they can be read in logs and grepped.
`delegate.cli_show` reports stored runs and plans with the same formatting.

rich is imported only where a live view or a rich table is drawn.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TextIO

from delegate._log import redact_text
from delegate.agents.models import Usage
from delegate.orchestrator.events import (
    Event,
    PlanFinished,
    PlanStarted,
    RunFinished,
    RunStarted,
    SynthesisStarted,
    TaskCancelled,
    TaskFailed,
    TaskQueued,
    TaskRetried,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
)
from delegate.orchestrator.persist import to_json

if TYPE_CHECKING:
    from types import TracebackType

    from delegate.orchestrator.run import RunResult

__all__ = [
    "SIMULATED_NOTE",
    "STATUSES",
    "RunDisplay",
    "TaskRow",
    "credentials_message",
    "format_usd",
    "pace_line",
    "print_output",
    "print_summary",
    "result_json",
    "rows_from_result",
    "untasked_rows",
    "write_json",
]

SIMULATED_NOTE = "SIMULATED — no model was called; prices are real, outputs are not"
STATUSES = ("queued", "running", "succeeded", "failed", "skipped", "cancelled")
_RUNNING_SHOWN = 8  # running task ids listed in the live view
_REASONS = {
    "goal": "the goal",
    "failures": "tasks failed",
    "goal_unmet": "the goal check found gaps",
    "resumed": "the run was resumed",
}


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


def _tokens(count: int) -> str:
    return f"{count:,}"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(redact_text(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _usage(data: Mapping[str, Any] | None) -> Usage:
    if not data:
        return Usage()
    names = ("input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens", "calls")
    values: dict[str, Any] = {name: int(data.get(name) or 0) for name in names}
    return Usage(
        cost_usd=float(data.get("cost_usd") or 0.0),
        unconfirmed_usd=float(data.get("unconfirmed_usd") or 0.0),
        **values,
    )


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return json.dumps(to_json(output), ensure_ascii=False, indent=2)


# -- progress -------------------------------------------------------------------------------


class RunDisplay:
    """Shows a run's progress as its events arrive: an `EventHandler` (`on_event=display`).

    Handlers run on the event loop, so each event only updates counters (and, without a
    terminal, writes one line); the live view is redrawn from rich's own refresh thread.
    `start()`/`stop()` (or `with display:`) open and close the live view; in plain mode
    `start()` writes the header.

    Args:
        stream: where to draw (default: stderr).
        live: True for a rich live view, False for plain lines; None: live when `stream` is a
            terminal.
        title: what runs (the workflow's name), for the header.
        run_id: the run's id, for the header.
        budget_usd: the run's usd budget, shown against the spend.
        simulated: the run uses simulated models: the header says so.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        live: bool | None = None,
        title: str = "",
        run_id: str | None = None,
        budget_usd: float | None = None,
        simulated: bool = False,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = _is_terminal(self.stream) if live is None else live
        self.title = title
        self.run_id = run_id
        self.budget_usd = budget_usd
        self.simulated = simulated
        self.status: dict[str, str] = {}
        """Each task's latest status: one of `STATUSES`."""
        self.spent = Usage()
        """What the finished tasks, plans and (at the end) the whole run have spent."""
        self.plans: list[str] = []
        """One line per plan revision, as the live view shows it."""
        self.phase = ""
        self.finished: str | None = None
        self._first_start: dict[str, float] = {}
        self._began = time.time()
        self._lock = threading.Lock()
        self._live: Any = None

    # -- the handler ----------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        """Take one event: update the counts, and write its line (plain mode)."""
        with self._lock:
            self._apply(event)
        line = _LINES[type(event)](self, event) if type(event) in _LINES else None
        if line is None:
            return
        if not self.live:
            self._write(f"{_clock(event.at)} {line}")
        elif self._live is not None and isinstance(event, _NOTABLE):
            self._live.console.print(f"{_clock(event.at)} {line}", markup=False, highlight=False)

    def _apply(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.run_id = event.run_id
            self._began = event.at
        elif isinstance(event, TaskQueued | TaskRetried):
            self.status[event.task_id] = "queued"
        elif isinstance(event, TaskStarted):
            self.status[event.task_id] = "running"
            self._first_start.setdefault(event.task_id, event.at)
        elif isinstance(event, TaskSucceeded | TaskFailed):
            self.status[event.task_id] = (
                "succeeded" if isinstance(event, TaskSucceeded) else "failed"
            )
            self.spent += event.usage
        elif isinstance(event, TaskSkipped | TaskCancelled):
            self.status[event.task_id] = (
                "skipped" if isinstance(event, TaskSkipped) else "cancelled"
            )
        elif isinstance(event, PlanStarted):
            self.phase = f"planning (revision {event.revision})"
        elif isinstance(event, PlanFinished):
            self.spent += event.usage
            self.phase = ""
            self.plans.append(_plan_line(event))
        elif isinstance(event, SynthesisStarted):
            self.phase = "writing the answer"
        elif isinstance(event, RunFinished):
            self.spent = event.usage
            self.phase = ""
            self.finished = event.status

    def _task_took(self, event: TaskSucceeded | TaskFailed) -> str:
        started = self._first_start.get(event.task_id)
        took = "" if started is None else f"{max(event.at - started, 0.0):.1f} s, "
        return f"{took}{format_usd(event.usage.cost_usd)}"

    # -- the view -------------------------------------------------------------------------

    def header(self) -> list[str]:
        """The lines above the progress: what runs, and the simulation notice."""
        what = " ".join(
            part for part in (self.title, f"run {self.run_id}" if self.run_id else "") if part
        )
        lines = [f"delegate · {what}" if what else "delegate"]
        if self.simulated:
            lines.append(SIMULATED_NOTE)
        return lines

    def status_lines(self) -> list[str]:
        """The live view's text: tasks by status, running tasks, tokens, spend, elapsed."""
        with self._lock:
            counts = dict.fromkeys(STATUSES, 0)
            for status in self.status.values():
                counts[status] += 1
            running = [task for task, status in self.status.items() if status == "running"]
            spent, plans, phase, finished = self.spent, list(self.plans), self.phase, self.finished
        lines = ["tasks: " + " · ".join(f"{counts[s]} {s}" for s in STATUSES)]
        if running:
            shown = ", ".join(running[:_RUNNING_SHOWN])
            more = len(running) - _RUNNING_SHOWN
            lines.append(f"running: {shown}" + (f" (+{more} more)" if more > 0 else ""))
        spend = format_usd(spent.cost_usd)
        if self.budget_usd:
            share = spent.cost_usd / self.budget_usd
            spend += f" of {format_usd(self.budget_usd)} ({share:.0%})"
        elapsed = max(time.time() - self._began, 0.0)
        lines.append(
            f"tokens: {_tokens(spent.total_tokens)} · spend: {spend} · elapsed: {elapsed:.1f} s"
        )
        lines.extend(plans)
        if phase:
            lines.append(f"{phase}…")
        if finished:
            lines.append(f"run {finished}")
        return lines

    def _renderable(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        head = [Text(self.header()[0], style="bold")]
        if self.simulated:
            head.append(Text(SIMULATED_NOTE, style="bold yellow"))
        return Group(*head, *(Text(line) for line in self.status_lines()))

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Open the live view, or write the header (plain mode)."""
        self._began = time.time()
        if not self.live:
            for line in self.header():
                self._write(line)
            return
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.stream)
        self._live = Live(
            get_renderable=self._renderable,
            console=console,
            refresh_per_second=4,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    def stop(self) -> None:
        """Close the live view (drawing its last state)."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __enter__(self) -> RunDisplay:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def _plan_line(event: PlanFinished) -> str:
    if event.error is not None:
        return f"plan {event.revision} failed: {_one_line(event.error)}"
    attempts = "" if event.attempts <= 1 else f", {event.attempts} attempts"
    return (
        f"plan {event.revision} ready: {_plural(event.tasks, 'task')}{attempts} "
        f"({format_usd(event.usage.cost_usd)})"
    )


def _run_started(display: RunDisplay, event: RunStarted) -> str:
    # A planned or workflow run starts with no tasks: they are added as it goes.
    tasks = f": {_plural(event.tasks, 'task')}" if event.tasks else ""
    return f"run {event.run_id} started{tasks}"


def _task_started(display: RunDisplay, event: TaskStarted) -> str:
    agent = f", {event.agent}" if event.agent else ""
    return f"task {event.task_id} started (attempt {event.attempt}{agent})"


def _task_succeeded(display: RunDisplay, event: TaskSucceeded) -> str:
    return f"task {event.task_id} succeeded ({display._task_took(event)})"


def _task_retried(display: RunDisplay, event: TaskRetried) -> str:
    return (
        f"task {event.task_id} attempt {event.attempt} failed, retrying in {event.delay:.1f} s: "
        f"{_one_line(event.error)}"
    )


def _task_failed(display: RunDisplay, event: TaskFailed) -> str:
    return (
        f"task {event.task_id} failed after {_plural(event.attempt, 'attempt')} "
        f"({display._task_took(event)}): {_one_line(event.error)}"
    )


def _task_skipped(display: RunDisplay, event: TaskSkipped) -> str:
    return f"task {event.task_id} skipped: {_one_line(event.reason)}"


def _task_cancelled(display: RunDisplay, event: TaskCancelled) -> str:
    return f"task {event.task_id} cancelled: {_one_line(event.reason)}"


def _plan_started(display: RunDisplay, event: PlanStarted) -> str:
    return f"plan {event.revision} started ({_REASONS.get(event.reason, event.reason)})"


def _plan_finished(display: RunDisplay, event: PlanFinished) -> str:
    return _plan_line(event)


def _synthesis_started(display: RunDisplay, event: SynthesisStarted) -> str:
    return f"writing the answer ({event.agent}, from {_plural(event.tasks, 'task result')})"


def _run_finished(display: RunDisplay, event: RunFinished) -> str:
    usage = event.usage
    return (
        f"run {event.status}: {_tokens(usage.total_tokens)} tokens in "
        f"{_plural(usage.calls, 'call')}, {format_usd(usage.cost_usd)}"
    )


# Queued events are left out of the plain lines: a task's "started" line follows at once.
_LINES: dict[type[Event], Callable[[RunDisplay, Any], str]] = {
    RunStarted: _run_started,
    TaskStarted: _task_started,
    TaskSucceeded: _task_succeeded,
    TaskRetried: _task_retried,
    TaskFailed: _task_failed,
    TaskSkipped: _task_skipped,
    TaskCancelled: _task_cancelled,
    PlanStarted: _plan_started,
    PlanFinished: _plan_finished,
    SynthesisStarted: _synthesis_started,
    RunFinished: _run_finished,
}
# Printed above the live view, which shows the rest as counts.
_NOTABLE = (TaskRetried, TaskFailed, TaskCancelled, PlanFinished)


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
            _tokens(self.usage.total_tokens),
            format_usd(self.usage.cost_usd),
            _seconds(self.seconds),
        ]


_TASK_HEADERS = ("task", "agent", "model", "status", "attempts", "tokens", "USD", "seconds")
_TASK_RIGHT = frozenset({4, 5, 6, 7})


def _took(started: datetime | None, finished: datetime | None) -> float | None:
    if started is None or finished is None:
        return None
    return max((finished - started).total_seconds(), 0.0)


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
            seconds=_took(task.started_at, task.finished_at),
        )
        for task in result.tasks.values()
    ]


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


def _datetime(value: Any) -> datetime | None:
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
        started = _datetime(plan.get("started_at"))
        finished = _datetime(plan.get("finished_at"))
        extra.append(
            TaskRow(
                id=f"plan {plan.get('revision', len(extra) + 1)}",
                agent=None,
                model=None,
                status="succeeded" if plan.get("complete") else "failed",
                attempts=int(plan.get("attempts") or 0),
                usage=_usage(plan.get("usage")),
                seconds=_took(started, finished),
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


def _table(
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
    if fancy if fancy is not None else _is_terminal(stream):
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


def _task_table(
    stream: TextIO, rows: Sequence[TaskRow], fancy: bool | None, label: str = "all tasks"
) -> None:
    total = Usage()
    for row in rows:
        total += row.usage
    cells = [row.cells() for row in rows]
    attempts = sum(row.attempts for row in rows)
    total_row = [label, "", "", "", str(attempts), _tokens(total.total_tokens)]
    cells.append([*total_row, format_usd(total.cost_usd), ""])
    _table(stream, _TASK_HEADERS, cells, right=_TASK_RIGHT, fold={1, 2}, title="tasks", fancy=fancy)


def _role_table(stream: TextIO, by_role: Mapping[str, Usage], fancy: bool | None) -> None:
    rows = [
        [role, str(usage.calls), _tokens(usage.total_tokens), format_usd(usage.cost_usd)]
        for role, usage in sorted(by_role.items())
    ]
    _table(
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
    _task_table(stream, [*rows, *extra], fancy, "total" if extra else "all tasks")
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
        f"{_tokens(usage.input_tokens + usage.output_tokens)} tokens in "
        f"{_plural(usage.calls, 'call')}, {spend}{refused}\n"
    )
    if result.error:
        stream.write(f"error: {_one_line(result.error, 1000)}\n")
    for task in result.tasks.values():
        if task.status != "succeeded" and task.error:
            stream.write(f"  {task.id} {task.status}: {_one_line(task.error)}\n")


def print_output(output: Any, stream: TextIO) -> None:
    """A run's output: text as it is, anything else as indented JSON; nothing for None."""
    if output is None:
        return
    text = _output_text(output)
    stream.write(text if text.endswith("\n") else text + "\n")
    stream.flush()


# -- JSON -----------------------------------------------------------------------------------


def write_json(document: Any, stream: TextIO) -> None:
    """Write one JSON document (and a newline) on `stream`."""
    stream.write(json.dumps(document, ensure_ascii=False, indent=2, default=str) + "\n")
    stream.flush()


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def result_json(
    result: RunResult, *, simulated: bool, workflow: str | None = None
) -> dict[str, Any]:
    """The `--json` document of a finished run.

    Keys: run_id, workflow, status, simulated, output, error, goal, tasks (id → status, agent,
    model, attempts, deps, usage, seconds, output, error), usage (`RunUsage`: totals, by model,
    agent and role, planner_only_usd), plans (a planned run's revisions), started_at,
    finished_at, duration.
    """
    tasks = {
        task.id: {
            "status": task.status,
            "agent": task.agent,
            "model": task.model,
            "attempts": task.attempts,
            "deps": list(task.deps),
            "usage": task.usage.to_dict(),
            "seconds": _took(task.started_at, task.finished_at),
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
        "started_at": _time(result.started_at),
        "finished_at": _time(result.finished_at),
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
