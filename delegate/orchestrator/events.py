"""Typed events of a run, and the one interface they are published through.

The scheduler emits an event for every state change of a task; the store, the CLI's progress
display and tracing subscribe to the same `EventBus`. Events are small frozen dataclasses; when
nobody listens, the scheduler does not even build them. A handler that raises ends the run with
its exception (nothing a handler raises is swallowed; see `EventBus`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from delegate.agents.models import Usage

__all__ = [
    "Event",
    "EventBus",
    "EventHandler",
    "PlanFinished",
    "PlanStarted",
    "PlanTaskAdded",
    "RunFinished",
    "RunStarted",
    "SynthesisStarted",
    "TaskCancelled",
    "TaskChecked",
    "TaskFailed",
    "TaskQueued",
    "TaskRetried",
    "TaskRouted",
    "TaskSkipped",
    "TaskStarted",
    "TaskSucceeded",
    "TaskTextDelta",
    "TaskWaiting",
    "ToolCallDecided",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event: which run, and when (seconds since the epoch)."""

    kind: ClassVar[str] = "event"
    run_id: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    """A run began with `tasks` tasks; `trace` is the W3C traceparent of its span when the run
    is traced (a resumed run's span links to it)."""

    kind: ClassVar[str] = "run_started"
    tasks: int
    trace: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Event):
    """A run ended with `status` ("succeeded", "partial", "failed" or "waiting"), its `output`
    and its `error` (`RunResult.output` and `.error`). A run that stops before it concludes
    (cancelled, an exception) has no `RunFinished`."""

    kind: ClassVar[str] = "run_finished"
    status: str
    usage: Usage
    output: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskQueued(Event):
    """All of a task's dependencies finished: it waits for a free slot."""

    kind: ClassVar[str] = "task_queued"
    task_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStarted(Event):
    """A task's attempt (1-based) began on `agent` (None for a function task)."""

    kind: ClassVar[str] = "task_started"
    task_id: str
    attempt: int
    agent: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSucceeded(Event):
    """A task finished with `output`; `usage` covers all of its attempts."""

    kind: ClassVar[str] = "task_succeeded"
    task_id: str
    attempt: int
    output: Any
    usage: Usage
    model: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRetried(Event):
    """An attempt failed with a transient `error`; the next one starts after `delay` seconds."""

    kind: ClassVar[str] = "task_retried"
    task_id: str
    attempt: int
    error: str
    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskChecked(Event):
    """Attempt `attempt` of a task with votes, a judge or a strategy decided on an answer (see
    `delegate.orchestrator.checks`), in one of these ways (`check`):

    - "vote": `samples` answers were tallied; `unanimous` says whether they all agreed, `chosen`
      is the number (from 1) of the sample that won, `agreement` the share of samples that gave
      the leading answer, and `stopped` why sampling stopped ("unanimous", "confident",
      "max_samples" or "budget"; see `delegate.VoteRecord`).
    - "pick": the samples disagreed and the judge `judge` picked answer `chosen`; `feedback` is
      its reason.
    - "judge": the judge `judge` `passed` or rejected the answer of `agent`; `feedback` is what
      it said (`samples` is 1), `effort` the reasoning effort the answer was asked at (a
      rejection re-asks the worker one effort higher, up to "high", before its fallback).

    A task with a strategy (`BestOfN`, `MixtureOfAgents`, `SelfRefine`) also tells:

    - "score": best-of-n answer `chosen` (of `samples`), by `agent`, was scored by `judge` (a
      judge's name, or the scoring function's import path); `feedback` is "score 7: reason".
    - "best": best-of-n kept answer `chosen` of `samples`, the highest scored (ties go to the
      earliest); `feedback` lists the scores in answer order.
    - "propose": proposer `agent` gave proposal `chosen` of `samples`; `feedback` is its text.
    - "aggregate": aggregator `agent` wrote the answer from the `samples` proposals.
    - "critique": in self-refine round `chosen` of at most `samples`, the critic `judge`
      `passed` or rejected the answer of `agent`; `feedback` is its critique.

    `feedback` has every known credential masked and is cut to 1,000 characters. `cost_usd` is
    what the task's calls cost since its previous decision (for a vote, its samples; for a
    verdict, the answer judged and the verdict); None when not told.
    """

    kind: ClassVar[str] = "task_checked"
    task_id: str
    attempt: int
    check: Literal["vote", "pick", "judge", "score", "best", "propose", "aggregate", "critique"]
    samples: int
    agent: str | None = None
    unanimous: bool | None = None
    passed: bool | None = None
    feedback: str = ""
    chosen: int | None = None
    judge: str | None = None
    stopped: Literal["confident", "unanimous", "max_samples", "budget"] | None = None
    agreement: float | None = None
    effort: Literal["minimal", "low", "medium", "high"] | None = None
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRouted(Event):
    """Learned routing chose the tier and effort a task runs on (see
    `delegate.orchestrator.routing`): `arm` ("<model>" or "<model>/<effort>") of worker
    `agent`, for the task kind `kind`, with the arm's history (`passes` of `trials`) and expected
    `cost_usd`; `explored` when it was tried to learn about it rather than picked by the rule.
    `reason` says it in words, as the run report does."""

    kind: ClassVar[str] = "task_routed"
    task_id: str
    task_kind: str
    arm: str
    agent: str
    effort: str | None = None
    explored: bool = False
    passes: int = 0
    trials: int = 0
    cost_usd: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailed(Event):
    """A task failed for good after `attempt` attempts."""

    kind: ClassVar[str] = "task_failed"
    task_id: str
    attempt: int
    error: str
    usage: Usage


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSkipped(Event):
    """A task did not run because a task it depends on did not succeed."""

    kind: ClassVar[str] = "task_skipped"
    task_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCancelled(Event):
    """A running or waiting task was stopped (fail-fast, deadline, or the caller cancelled)."""

    kind: ClassVar[str] = "task_cancelled"
    task_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskWaiting(Event):
    """A task paused: its agent called `tools` that need a human's approval (the run ends
    "waiting"; `Orchestrator.resume(run_id, decisions=...)` continues it). `usage` covers what
    it spent so far."""

    kind: ClassVar[str] = "task_waiting"
    task_id: str
    tools: tuple[str, ...]
    usage: Usage


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallDecided(Event):
    """A tool call that requires approval was decided inline by `Orchestrator(approve_tool=...)`
    (`by` is "callback"): `approved`, or denied for `reason`. `arguments` are the model's, with
    every known credential masked. With a store, the decision is also in its approvals table."""

    kind: ClassVar[str] = "tool_call_decided"
    task_id: str
    call_id: str
    agent: str
    tool: str
    arguments: str
    why: str
    approved: bool
    reason: str | None = None
    by: str = "callback"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanStarted(Event):
    """The planner began plan revision `revision` (1 is the first plan) because of `reason`."""

    kind: ClassVar[str] = "plan_started"
    revision: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanFinished(Event):
    """Plan revision `revision` is complete with `tasks` tasks after `attempts` attempts.

    `error` is set when no valid plan came (the run goes on with the tasks it has).
    """

    kind: ClassVar[str] = "plan_finished"
    revision: int
    tasks: int
    attempts: int
    usage: Usage
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanTaskAdded(Event):
    """Task `task_id` of plan revision `revision` joined the running graph, for `agent`, after
    `deps`. A streamed plan adds each task as soon as the planner has written it, before the
    plan is complete (its `TaskQueued` may come before the revision's `PlanFinished`)."""

    kind: ClassVar[str] = "plan_task_added"
    revision: int
    task_id: str
    agent: str
    deps: tuple[str, ...]
    instructions: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskTextDelta(Event):
    """A piece of a model's answer as it arrives: only a run's streams get these
    (`Orchestrator.stream`); they are not published on the `EventBus`, nor stored.

    `task_id` is None for the run's own calls: a planned run's final answer and goal check, and
    its plans when they are not streamed into the run (`approve_plan`); `attempt` is the task's
    attempt (1-based), so a retried attempt's text is told apart. A structured answer streams
    its JSON; an answer with tool calls, or from the call cache, does not stream.
    """

    kind: ClassVar[str] = "task_text_delta"
    task_id: str | None
    agent: str
    attempt: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthesisStarted(Event):
    """`agent` began writing the final answer from `tasks` task outputs."""

    kind: ClassVar[str] = "synthesis_started"
    agent: str
    tasks: int


EventHandler = Callable[[Event], None]

_NOTE = "raised by the event handler "


class EventBus:
    """Delivers each event to every subscriber, in subscription order.

    Handlers run synchronously on the event loop, where the event happened, and must be quick. A
    handler that raises stops the run, as an exception raised in an anyio task stops its task
    group: the event still reaches the handlers after it (the store's recorder, subscribed last,
    keeps the run's record whole), then `emit` raises the exception itself, with a note naming
    the handler and the event, and the run that emitted it ends with it (stored as "interrupted",
    with the reason, and raised to the caller of `execute`/`run`).
    """

    __slots__ = ("_handlers",)

    def __init__(self) -> None:
        self._handlers: list[EventHandler] = []

    @property
    def active(self) -> bool:
        """True when at least one handler listens."""
        return bool(self._handlers)

    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        """Add `handler`; returns a function that removes it again.

        `handler` is called with every event, on the event loop; it must not block. An exception
        it raises is not swallowed: it ends the run that emitted the event, and reaches the caller
        of `execute`/`run` as itself (see `emit`).
        """
        self._handlers.append(handler)

        def unsubscribe() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return unsubscribe

    def emit(self, event: Event) -> None:
        """Deliver `event` to every handler.

        Raises:
            Exception: what a handler raised, as itself, once every other handler has the event;
                a note on it names the handler and the event. When several handlers raise, an
                `ExceptionGroup` of their exceptions.
        """
        failures: list[Exception] | None = None
        for handler in self._handlers:
            try:
                handler(event)
            except Exception as exc:
                _name_handler(exc, handler, event)
                failures = [exc] if failures is None else [*failures, exc]
        if failures is not None:
            if len(failures) == 1:
                raise failures[0]
            raise ExceptionGroup(
                f"{len(failures)} event handlers raised on a {event.kind!r} event", failures
            )


def _name_handler(exc: Exception, handler: EventHandler, event: Event) -> None:
    """Note on `exc` which handler raised it, on which event (once: a recorder whose store failed
    raises its one saved error again)."""
    if any(note.startswith(_NOTE) for note in getattr(exc, "__notes__", ())):
        return
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    module = getattr(handler, "__module__", None) or type(handler).__module__
    exc.add_note(
        f"{_NOTE}{module}.{name} on a {event.kind!r} event of run {event.run_id!r}; a handler "
        "that raises ends the run (fix the handler, or catch what it may raise inside it)"
    )
