"""A run's progress as the `delegate` command shows it: `RunDisplay`, an event handler.

    display = RunDisplay(title="market-brief", budget_usd=0.25)
    orch = Orchestrator(..., on_event=display)
    with display:
        result = orch.execute_sync(graph)

Progress goes to stderr, so stdout carries only the run's output (or one JSON document with
`--json`). On a terminal the progress is a rich live view redrawn from its own thread; elsewhere
(CI logs, pipes) it is one plain line per event. rich is imported only where a live view is
drawn.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from delegate.agents.models import Usage
from delegate.cli._format import (
    PLAN_REASONS,
    SIMULATED_NOTE,
    clock_text,
    format_usd,
    is_terminal,
    one_line,
    plural,
    tokens_text,
)
from delegate.orchestrator.events import (
    Event,
    PlanFinished,
    PlanStarted,
    RunFinished,
    RunStarted,
    SynthesisStarted,
    TaskCancelled,
    TaskChecked,
    TaskFailed,
    TaskQueued,
    TaskRetried,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskWaiting,
)

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["STATUSES", "RunDisplay"]

STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "skipped", "cancelled")
"""A task's statuses in the live view, in the order it counts them."""
_RUNNING_SHOWN = 8  # running task ids listed in the live view


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
        self.live = is_terminal(self.stream) if live is None else live
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
            self._write(f"{clock_text(event.at)} {line}")
        elif self._live is not None and isinstance(event, _NOTABLE):
            self._live.console.print(
                f"{clock_text(event.at)} {line}", markup=False, highlight=False
            )

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
        elif isinstance(event, TaskWaiting):
            self.status[event.task_id] = "waiting"
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
        # "waiting" (for a human's approval) only shows when a task waits.
        listed = [s for s in STATUSES if s != "waiting" or counts[s]]
        lines = ["tasks: " + " · ".join(f"{counts[s]} {s}" for s in listed)]
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
            f"tokens: {tokens_text(spent.total_tokens)} · spend: {spend} · elapsed: {elapsed:.1f} s"
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


def _plan_line(event: PlanFinished) -> str:
    if event.error is not None:
        return f"plan {event.revision} failed: {one_line(event.error)}"
    attempts = "" if event.attempts <= 1 else f", {event.attempts} attempts"
    return (
        f"plan {event.revision} ready: {plural(event.tasks, 'task')}{attempts} "
        f"({format_usd(event.usage.cost_usd)})"
    )


def _run_started(display: RunDisplay, event: RunStarted) -> str:
    # A planned or workflow run starts with no tasks: they are added as it goes.
    tasks = f": {plural(event.tasks, 'task')}" if event.tasks else ""
    return f"run {event.run_id} started{tasks}"


def _task_started(display: RunDisplay, event: TaskStarted) -> str:
    agent = f", {event.agent}" if event.agent else ""
    return f"task {event.task_id} started (attempt {event.attempt}{agent})"


def _task_succeeded(display: RunDisplay, event: TaskSucceeded) -> str:
    return f"task {event.task_id} succeeded ({display._task_took(event)})"


def _task_retried(display: RunDisplay, event: TaskRetried) -> str:
    return (
        f"task {event.task_id} attempt {event.attempt} failed, retrying in {event.delay:.1f} s: "
        f"{one_line(event.error)}"
    )


def _task_checked(display: RunDisplay, event: TaskChecked) -> str | None:
    # Only a rejection is news: votes, picks and passes show in the run's report.
    if event.check != "judge" or event.passed is not False:
        return None
    feedback = one_line(event.feedback) or "(no feedback)"
    return f"task {event.task_id}: judge {event.judge} rejected {event.agent}'s answer: {feedback}"


def _task_failed(display: RunDisplay, event: TaskFailed) -> str:
    return (
        f"task {event.task_id} failed after {plural(event.attempt, 'attempt')} "
        f"({display._task_took(event)}): {one_line(event.error)}"
    )


def _task_waiting(display: RunDisplay, event: TaskWaiting) -> str:
    return (
        f"task {event.task_id} waits for a human to approve {', '.join(event.tools)} "
        "(`delegate pending`)"
    )


def _task_skipped(display: RunDisplay, event: TaskSkipped) -> str:
    return f"task {event.task_id} skipped: {one_line(event.reason)}"


def _task_cancelled(display: RunDisplay, event: TaskCancelled) -> str:
    return f"task {event.task_id} cancelled: {one_line(event.reason)}"


def _plan_started(display: RunDisplay, event: PlanStarted) -> str:
    return f"plan {event.revision} started ({PLAN_REASONS.get(event.reason, event.reason)})"


def _plan_finished(display: RunDisplay, event: PlanFinished) -> str:
    return _plan_line(event)


def _synthesis_started(display: RunDisplay, event: SynthesisStarted) -> str:
    return f"writing the answer ({event.agent}, from {plural(event.tasks, 'task result')})"


def _run_finished(display: RunDisplay, event: RunFinished) -> str:
    usage = event.usage
    return (
        f"run {event.status}: {tokens_text(usage.total_tokens)} tokens in "
        f"{plural(usage.calls, 'call')}, {format_usd(usage.cost_usd)}"
    )


# Queued events are left out of the plain lines: a task's "started" line follows at once.
_LINES: dict[type[Event], Callable[[RunDisplay, Any], str | None]] = {
    RunStarted: _run_started,
    TaskStarted: _task_started,
    TaskSucceeded: _task_succeeded,
    TaskRetried: _task_retried,
    TaskChecked: _task_checked,
    TaskFailed: _task_failed,
    TaskSkipped: _task_skipped,
    TaskWaiting: _task_waiting,
    TaskCancelled: _task_cancelled,
    PlanStarted: _plan_started,
    PlanFinished: _plan_finished,
    SynthesisStarted: _synthesis_started,
    RunFinished: _run_finished,
}
# Printed above the live view, which shows the rest as counts.
_NOTABLE = (TaskRetried, TaskChecked, TaskFailed, TaskWaiting, TaskCancelled, PlanFinished)
