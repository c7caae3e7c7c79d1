"""Stream a run: its events, as they happen, to one consumer — `RunStream`.

    async with orch.stream(graph, inputs={"topic": "bees"}) as events:
        async for event in events:
            if isinstance(event, TaskTextDelta):
                print(event.text, end="")
    events.result.status, events.dropped_deltas

`Orchestrator.stream(graph_or_goal, ...)` runs a `TaskGraph` (as `execute`) or a goal (as `run`:
planned, with a `PlanTaskAdded` for each task as the planner writes it); `stream_resume(run_id)`
streams what a resume runs (restored tasks are not announced again). A stream yields every event
of its run, from `RunStarted` to `RunFinished`, and `TaskTextDelta`s: the models' answers, piece
by piece, per task and attempt. Then the iteration ends and `result` is the `RunResult`. An error
that ends the run comes out of the iteration (after the events before it).

**Buffering.** The run never waits for its consumer. Each stream has its own buffer: state
events are never dropped (a run makes a few per task, so they are kept however slow the
consumer is), and text deltas are kept up to `max_buffered_deltas` waiting to be read; past
that, new deltas are dropped and counted in `dropped_deltas` (a consumer that needs every
character reads the outputs from `TaskSucceeded`, which always arrives).

**Leaving early.** Leaving the `async with` block before the run has finished cancels the run,
as cancelling `execute` does: with a store it is kept as "interrupted" and can be resumed.

**Cost.** Text deltas are asked for only while a stream with `deltas=True` runs the run: the
requests of other runs carry no `on_text` and do not stream. A stream of a run is found through
a context variable that the run reads once, when it starts (`text_deltas`).

**JSON.** `event_json(event)` is the event as `{"kind": ..., "run_id": ..., "at": ..., ...}` (the
form `delegate run --events` writes, one per line), and `events_json_schema()` the JSON Schema of
every kind (`delegate schema --events`; kept in `configs/events.schema.json`).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, fields
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
from anyio.abc import TaskGroup

from delegate.errors import ConfigError
from delegate.orchestrator import events as _events
from delegate.orchestrator._persist import to_json
from delegate.orchestrator.events import Event, EventBus, TaskTextDelta

if TYPE_CHECKING:
    from delegate.orchestrator.results import RunResult

__all__ = [
    "DEFAULT_BUFFERED_DELTAS",
    "RunStream",
    "event_json",
    "event_types",
    "events_json_schema",
    "text_deltas",
]

DEFAULT_BUFFERED_DELTAS = 1024
"""Text deltas a stream keeps waiting for its consumer before it drops new ones."""

TextSink = Callable[[str | None, str, int], Callable[[str], None]]


@dataclass(frozen=True, slots=True)
class _Tap:
    run_id: str
    sink: TextSink


# Set by a stream's task for the run it starts (and inherited by that run's tasks only).
_TAP: ContextVar[_Tap | None] = ContextVar("delegate_stream_tap", default=None)


def text_deltas(run_id: str) -> TextSink | None:
    """How run `run_id` hands its requests' text to the stream that runs it; None when no stream
    wants deltas (a run started inside the streamed run's tasks, with its own id, gets none)."""
    tap = _TAP.get()
    return tap.sink if tap is not None and tap.run_id == run_id else None


class RunStream:
    """The events of one run, for one consumer: use as `async with ... as events:`, then
    `async for event in events:` (see the module's docs for buffering and leaving early).

    `Orchestrator.stream` and `Orchestrator.stream_resume` make one; code that drives runs of
    its own (the CLI's workflow runs) passes the orchestrator's `EventBus`, the run's id and a
    function that runs it.

    Args:
        bus: the bus the run's events are published on (`Orchestrator.events`).
        run_id: the run to stream; events of other runs are not yielded.
        start: called once, inside the `async with`, to run the run to its end.
        deltas: ask the run's model requests for their text as it arrives (`TaskTextDelta`).
        max_buffered_deltas: deltas kept waiting to be read; past it new ones are dropped.

    Attributes:
        run_id: the run's id.
        dropped_deltas: text deltas dropped because the consumer was behind.
        error: what ended the run, when it raised instead of finishing.

    Raises:
        ConfigError: `max_buffered_deltas` is not a whole number ≥ 0.
    """

    def __init__(
        self,
        bus: EventBus,
        run_id: str,
        start: Callable[[], Awaitable[RunResult[Any]]],
        *,
        deltas: bool = True,
        max_buffered_deltas: int = DEFAULT_BUFFERED_DELTAS,
    ) -> None:
        if (
            isinstance(max_buffered_deltas, bool)
            or not isinstance(max_buffered_deltas, int)
            or max_buffered_deltas < 0
        ):
            raise ConfigError(
                "max_buffered_deltas must be a whole number of text deltas ≥ 0 (0 drops them "
                f"all; deltas=False does not ask for them), got {max_buffered_deltas!r}"
            )
        self.run_id = run_id
        self.dropped_deltas = 0
        self.error: BaseException | None = None
        self._bus = bus
        self._start = start
        self._deltas = bool(deltas)
        self._max_deltas = max_buffered_deltas
        self._buffered_deltas = 0
        # Unbounded: the state events of a run are few (a handful per task), and a run must
        # never wait for its consumer; the deltas in it are bounded by `_max_deltas`.
        self._send, self._receive = anyio.create_memory_object_stream[Event](math.inf)
        self._result: RunResult[Any] | None = None
        self._group: TaskGroup | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._finished = False
        self._cancelled = False
        self._raised = False

    @property
    def result(self) -> RunResult[Any]:
        """The run's result, once the iteration has ended.

        Raises:
            ConfigError: the run has not finished (read the events to the end first), was
                cancelled (the block was left early), or ended with an error (`error`; the
                iteration raised it).
        """
        if self._result is not None:
            return self._result
        if self.error is not None:
            raise ConfigError(
                f"run {self.run_id!r} has no result: it ended with "
                f"{type(self.error).__name__}: {self.error} (see RunStream.error)"
            )
        if self._cancelled:
            raise ConfigError(
                f"run {self.run_id!r} has no result: it was cancelled (its stream's block was "
                "left before it ended); with a store, finish it with stream_resume(run_id)"
            )
        raise ConfigError(
            f"run {self.run_id!r} has not finished: read its events to the end "
            "(`async for event in events`) before reading `result`"
        )

    @property
    def buffered(self) -> int:
        """Events waiting to be read (a consumer can batch what is there before it writes)."""
        return self._receive.statistics().current_buffer_used

    async def __aenter__(self) -> Self:
        if self._group is not None:
            raise ConfigError(
                f"the stream of run {self.run_id!r} was entered already: a stream runs its run "
                "once; call orch.stream(...) again for another run"
            )
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        # Subscribed before the run starts: its first event is `RunStarted`.
        self._unsubscribe = self._bus.subscribe(self._on_event)
        group.start_soon(self._run, name=f"delegate stream of run {self.run_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        group = self._group
        if group is None:  # (entered, so never None; for the type checker)
            return None
        if not self._finished:
            group.cancel_scope.cancel()  # the consumer left: the run stops ("interrupted")
        try:
            if exc is None or isinstance(exc, anyio.get_cancelled_exc_class()):
                return await group.__aexit__(exc_type, exc, traceback)
            # The block raised (the run's error from the iteration, or the consumer's own):
            # it goes on as itself, not wrapped in the task group's exception group.
            await group.__aexit__(None, None, None)
            return None
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()
            self._send.close()
            self._receive.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        if self._group is None:
            raise ConfigError(
                "iterate a stream inside its block: `async with orch.stream(...) as events: "
                "async for event in events: ...`"
            )
        try:
            try:
                # What is buffered is handed out without a trip through the event loop (one
                # per event made a delta cost twice as much); the run goes on when it runs out.
                event = self._receive.receive_nowait()
            except anyio.WouldBlock:
                event = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self.error is not None and not self._raised:
                self._raised = True
                raise self.error from None
            raise StopAsyncIteration from None
        if type(event) is TaskTextDelta:
            self._buffered_deltas -= 1
        return event

    async def _run(self) -> None:
        if self._deltas:
            # Only this task's context (and the run's tasks, started from it) sees the tap.
            _TAP.set(_Tap(self.run_id, self._text_sink))
        try:
            self._result = await self._start()
        except Exception as exc:  # the run's own error: the iteration raises it
            self.error = exc
        except anyio.get_cancelled_exc_class():
            self._cancelled = True
            raise
        finally:
            self._finished = True
            self._send.close()  # the iteration ends once what is buffered has been read

    def _on_event(self, event: Event) -> None:
        # A bus handler: it must never raise (that would end the run).
        if event.run_id == self.run_id:
            self._put(event)

    def _put(self, event: Event) -> None:
        # Closed: the consumer has left, and the run is being cancelled.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._send.send_nowait(event)

    def _text_sink(self, task_id: str | None, agent: str, attempt: int) -> Callable[[str], None]:
        return functools.partial(self._delta, task_id, agent, attempt)

    def _delta(self, task_id: str | None, agent: str, attempt: int, text: str) -> None:
        if self._buffered_deltas >= self._max_deltas:
            self.dropped_deltas += 1
            return
        self._buffered_deltas += 1
        self._put(
            TaskTextDelta(
                run_id=self.run_id, task_id=task_id, agent=agent, attempt=attempt, text=text
            )
        )


# -- JSON ---------------------------------------------------------------------------------------

_PLAIN = (str, int, bool, type(None))


def event_json(event: Event) -> dict[str, Any]:
    """`event` as JSON data: `{"kind": ..., "run_id": ..., "at": ..., <its fields>}` (as
    `events_json_schema` describes; a value JSON cannot hold becomes the store's marker)."""
    data: dict[str, Any] = {"kind": event.kind}
    for item in fields(event):
        value = getattr(event, item.name)
        data[item.name] = value if type(value) in _PLAIN else to_json(value)
    return data


def event_types() -> tuple[type[Event], ...]:
    """Every kind of event a stream yields (those of `delegate.orchestrator.events`)."""
    found = (getattr(_events, name) for name in _events.__all__)
    kinds = [item for item in found if isinstance(item, type) and issubclass(item, Event)]
    return tuple(kind for kind in kinds if kind is not Event)


def events_json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of `event_json`'s output: one of the kinds, by `kind`.

    Made from the event dataclasses with pydantic's `TypeAdapter`; every field is always
    present, and no other is.
    """
    from pydantic import TypeAdapter

    definitions: dict[str, Any] = {}
    choices = []
    for kind in sorted(event_types(), key=lambda item: item.kind):
        schema = TypeAdapter(kind).json_schema(mode="serialization", ref_template="#/$defs/{model}")
        definitions.update(schema.pop("$defs", {}))
        properties = {"kind": {"const": kind.kind, "type": "string"}, **schema["properties"]}
        schema["properties"] = properties
        schema["required"] = list(properties)
        schema["additionalProperties"] = False
        definitions[kind.__name__] = schema
        choices.append({"$ref": f"#/$defs/{kind.__name__}"})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "delegate run event",
        "description": (
            "One event of a delegate run, as `delegate run --events` writes it (one JSON object "
            "per line) and `delegate.event_json` makes it; `kind` says which."
        ),
        "oneOf": choices,
        "$defs": dict(sorted(definitions.items())),
    }
