"""Typed events of a run, and the one interface they are published through.

The scheduler emits an event for every state change of a task; the store, the CLI's progress
display and tracing subscribe to the same `EventBus`. Events are small frozen dataclasses; when
nobody listens, the scheduler does not even build them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from delegate._log import get_logger
from delegate.agents.models import Usage

__all__ = [
    "Event",
    "EventBus",
    "EventHandler",
    "PlanFinished",
    "PlanStarted",
    "RunFinished",
    "RunStarted",
    "SynthesisStarted",
    "TaskCancelled",
    "TaskFailed",
    "TaskQueued",
    "TaskRetried",
    "TaskSkipped",
    "TaskStarted",
    "TaskSucceeded",
]

log = get_logger("delegate.events")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event: which run, and when (seconds since the epoch)."""

    kind: ClassVar[str] = "event"
    run_id: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    """A run began with `tasks` tasks."""

    kind: ClassVar[str] = "run_started"
    tasks: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Event):
    """A run ended with `status` ("succeeded", "partial" or "failed")."""

    kind: ClassVar[str] = "run_finished"
    status: str
    usage: Usage


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
class SynthesisStarted(Event):
    """`agent` began writing the final answer from `tasks` task outputs."""

    kind: ClassVar[str] = "synthesis_started"
    agent: str
    tasks: int


EventHandler = Callable[[Event], None]


class EventBus:
    """Delivers each event to every subscriber, in subscription order.

    Handlers run synchronously on the event loop and must be quick; one that raises is logged
    and does not stop the run or the other handlers.
    """

    __slots__ = ("_handlers",)

    def __init__(self) -> None:
        self._handlers: list[EventHandler] = []

    @property
    def active(self) -> bool:
        """True when at least one handler listens."""
        return bool(self._handlers)

    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        """Add `handler`; returns a function that removes it again."""
        self._handlers.append(handler)

        def unsubscribe() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return unsubscribe

    def emit(self, event: Event) -> None:
        """Deliver `event` to every handler."""
        for handler in self._handlers:
            try:
                handler(event)
            except Exception as exc:
                log.warning("event_handler_failed", kind=event.kind, error=repr(exc))
