"""Durable runs: a run's graph, task results and events written to the `Store` as it goes.

When a run starts, its graph (as a spec of names: agents by name, function tasks by import path),
inputs and budget are stored; every scheduler event is appended to the run's log and every task that
finishes has its result written. Writes are batched — a group commit every few milliseconds, in a
worker thread — so persistence costs little per task, and the run is reported finished only after
its last batch is durable. `Orchestrator.resume(run_id)` rebuilds the graph from the spec, restores
every task that succeeded, and runs only the rest.

Outputs are stored as JSON: strings, numbers, lists and dicts as they are, pydantic models through
`model_dump(mode="json")` (re-validated into the agent's `output_type` on resume). A function task's
output that JSON cannot hold is stored as not restorable, and the task runs again on resume.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from pydantic import BaseModel

from delegate._log import get_logger
from delegate.agents.models import Usage
from delegate.errors import StoreError
from delegate.orchestrator.events import (
    Event,
    TaskCancelled,
    TaskFailed,
    TaskSkipped,
    TaskSucceeded,
    TaskWaiting,
    ToolCallDecided,
)
from delegate.orchestrator.tool_approvals import approval_batch

if TYPE_CHECKING:
    from delegate.agents.approval import PausedRound
    from delegate.memory.records import TaskRecord
    from delegate.memory.store import Store
    from delegate.orchestrator._journal import RunJournal
    from delegate.orchestrator._lease import RunLease
    from delegate.orchestrator.calls import RunAccount
    from delegate.orchestrator.graph import Task
    from delegate.orchestrator.routing import Router
    from delegate.orchestrator.scheduler import Node

__all__ = ["RunRecorder", "restore_output", "to_json"]

FLUSH_INTERVAL = 0.005
"""Seconds between two group commits of a run's writer thread."""

MAX_PENDING = 512
"""Events that may wait to be written; past it the event loop writes a batch itself."""

_EARLY = MAX_PENDING // 4
"""Events waiting at which the writer is woken before its tick."""

log = get_logger("delegate.persist")

_NOT_RESTORABLE = "__delegate_not_restorable__"
_TERMINAL_EVENTS = (TaskSucceeded, TaskFailed, TaskSkipped, TaskCancelled, TaskWaiting)


_PLAIN = (str, int, bool, type(None))


def to_json(value: Any) -> Any:
    """`value` as plain JSON data; a marker dict when JSON cannot hold it.

    Runs for every event of a durable run, so the common shapes (strings, numbers, usage, small
    dicts and lists) take a fast path; anything else makes a round trip through `json`.
    """
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _not_restorable(value)
    if isinstance(value, Usage):
        return value.to_dict()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        items = [to_json(item) for item in value]
        return _not_restorable(value) if any(map(_is_marker, items)) else items
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        converted = {key: to_json(item) for key, item in value.items()}
        return _not_restorable(value) if any(map(_is_marker, converted.values())) else converted
    if is_dataclass(value) and not isinstance(value, type):
        return to_json({f.name: getattr(value, f.name) for f in fields(value)})
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return _not_restorable(value)


def _not_restorable(value: Any) -> dict[str, str]:
    return {_NOT_RESTORABLE: f"{type(value).__name__}: {value!r}"[:500]}


def _is_marker(value: Any) -> bool:
    return isinstance(value, dict) and _NOT_RESTORABLE in value


def restorable(value: Any) -> bool:
    """False for an output stored as the not-restorable marker."""
    return not _is_marker(value)


def restore_output(value: Any, output_type: type[BaseModel] | None) -> Any:
    """A stored output as the task produced it: re-validated into `output_type` when it has one."""
    if output_type is not None and isinstance(value, dict):
        return output_type.model_validate(value)
    return value


def restore_nodes(
    nodes: Sequence[Node], restored: Mapping[str, TaskRecord], account: RunAccount
) -> None:
    """Mark the tasks a store says succeeded as done, with their outputs and usage.

    Rows of failed or skipped tasks (a planned run's failures that were already replanned) are
    restored as they ended, and are not run again.
    """
    for node in nodes:
        row = restored.get(node.task.id)
        if row is not None and row.status in ("failed", "skipped"):
            node.status = "failed" if row.status == "failed" else "skipped"
            node.error = row.error
            node.attempts = row.attempts
            node.usage = usage_from(row.usage)
            continue
        if row is None or not restorable(row.output):
            continue
        output_type = node.agent.output_type if node.agent is not None else None
        node.status = "succeeded"
        node.output = restore_output(row.output, output_type)
        node.attempts = row.attempts
        node.usage = usage_from(row.usage)
        node.model = row.model
        node.answered_by = row.agent
        node.started_at = row.started_at.timestamp() if row.started_at else None
        node.finished_at = row.finished_at.timestamp() if row.finished_at else None
        if node.usage.calls and not account.resumed:  # else the stored spend counted it
            account.book.add(row.model or "unknown", row.agent or "unknown", node.usage)
        for child in node.children:
            child.pending -= 1


def usage_from(data: Mapping[str, Any] | None) -> Usage:
    """A `Usage` from JSON data (zeros when missing)."""
    return Usage(**data) if data else Usage()


def _timestamp(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


_EXACT = frozenset((str, int, bool, type(None)))
"""Types stored as they are, checked before `to_json` (most of an event's fields)."""


def _event_data(event: Event) -> dict[str, Any]:
    data = {}
    for name in _event_fields(type(event)):
        value = getattr(event, name)
        data[name] = value if type(value) in _EXACT else to_json(value)
    return data


_FIELDS: dict[type[Event], tuple[str, ...]] = {}


def _event_fields(kind: type[Event]) -> tuple[str, ...]:
    """The fields of an event's stored data: all but `run_id` and `at` (columns of their own)."""
    names = _FIELDS.get(kind)
    if names is None:
        names = tuple(f.name for f in fields(kind) if f.name not in ("run_id", "at"))
        _FIELDS[kind] = names
    return names


_IMMUTABLE = frozenset((str, int, bool, float, type(None), Usage))
"""Types of values that cannot change once an event is made: kept as they are until the writer
thread encodes them."""

_SETTLED = frozenset(
    ("str", "int", "float", "bool", "Usage", "str | None", "int | None", "float | None")
)
"""Field annotations of values that cannot change (any other field is checked at event time)."""

_VOLATILE: dict[type[Event], tuple[str, ...]] = {}


def _volatile_fields(kind: type[Event]) -> tuple[str, ...]:
    """The stored fields of an event that may hold a mutable value (`output: Any`)."""
    settled = {f.name for f in fields(kind) if f.type in _SETTLED or f.type in _IMMUTABLE}
    names = tuple(name for name in _event_fields(kind) if name not in settled)
    _VOLATILE[kind] = names
    return names


_NodeState = tuple[
    "Task[Any]",
    str,
    int,
    str | None,
    str | None,
    Any,
    str | None,
    Usage,
    float | None,
    float | None,
]
"""A finished task's state when its event came: task, status, attempts, answered_by, model,
output, error, usage, started_at, finished_at (a tuple: one is made on the event loop for every
task of a durable run)."""


def _node_state(node: Node) -> _NodeState:
    output = node.output if node.status == "succeeded" else None
    if type(output) not in _IMMUTABLE:
        output = to_json(output)  # as it is now: a later task may change the object
    return (
        node.task,
        node.status,
        node.attempts,
        node.answered_by,
        node.model,
        output,
        node.error,
        node.usage,
        node.started_at,
        node.finished_at,
    )


_Queued = tuple[Event, dict[str, Any] | None, _NodeState | None]
"""An event waiting to be written: the event, its data when it had to be captured at once, and
the task's state when it finished."""


class _EventRow(NamedTuple):
    """An event as `Store.write_batch` writes it (what it reads of an `EventRecord`)."""

    run_id: str
    kind: str
    at: float
    data: dict[str, Any]


class _TaskRow(NamedTuple):
    """A task's state as `Store.write_batch` writes it (what it reads of a `TaskRecord`).

    Tuples, not pydantic records: one is made for every task of a durable run (in the writer
    thread), and a model's construction costs several times a tuple's.
    """

    run_id: str
    task_id: str
    spec: dict[str, Any]
    status: str
    attempts: int
    agent: str | None
    model: str | None
    output: Any
    error: str | None
    usage: dict[str, Any]
    started_at: datetime | None
    finished_at: datetime | None


class RunRecorder:
    """Subscribes to one run's events and writes them, and finished tasks, in group commits.

    The commits are driven by a writer thread with its own clock (every `FLUSH_INTERVAL`), not by
    the event loop: a run whose tasks finish without ever yielding is written as it goes all the
    same, so a process killed at any instant loses at most the last commit window. What waits to
    be written is bounded (`MAX_PENDING` events): past it, the event loop itself writes a batch
    before going on (back-pressure), so a fast run cannot outgrow its writer.

    With the run's `RunAccount`, each commit also writes what the run's calls have charged so
    far (calls in flight at their reservation), and `durable()` lets a call wait until a commit
    holds its reservation before it is sent: a resumed run then keeps its budget whenever the
    process died.

    With the scheduler's `paused` rounds, a task that pauses for a tool call's approval has its
    round and pending calls written in the same commit as its `task_waiting` event, and an
    inline decision (`tool_call_decided`) its approvals row: a process killed after a pause does
    not pay for the round again on resume. A run that never pauses writes nothing more.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        by_id: Mapping[str, Node],
        account: RunAccount | None = None,
        lease: RunLease | None = None,
        on_lease_lost: Callable[[], None] | None = None,
        paused: Mapping[str, PausedRound] | None = None,
    ) -> None:
        self.store = store
        self.paused = paused  # the scheduler's own map of the rounds its tasks paused in
        self.lease = lease
        self.on_lease_lost = on_lease_lost  # called on the event loop when the lease is lost
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self.run_id = run_id
        self.by_id = by_id  # the scheduler's own map: tasks added during the run are found too
        self.account = account
        # Task journals (`delegate.orchestrator._journal`): their rows go in the commit that
        # writes the spend of their calls, taken after it.
        self.journal: RunJournal | None = None
        # Learned routing (`delegate.orchestrator.routing`): the outcomes of the tasks that
        # ended go in the next commit, so a run killed later still taught what it learned.
        self.router: Router | None = None
        self._lock = threading.Lock()  # guards what waits to be written
        self._graph: dict[str, Any] | None = None
        self._queue: list[_Queued] = []  # events as they came, with what they must keep
        self._pauses: dict[str, PausedRound] = {}  # rounds paused since the last commit
        self._decided: list[ToolCallDecided] = []  # inline decisions since the last commit
        self._commit_lock = threading.Lock()  # one commit at a time, from whichever thread
        self._spend_written = -1  # the account's `changes` when its spend was last written
        # The run's last event number and task position, as the last commit left them: this
        # process holds the run's lease, so no one else numbers its rows meanwhile.
        self._after: tuple[int, int] | None = None
        self._started = 0  # commits started
        self._completed = 0  # commits finished
        self._stop = threading.Event()
        self._due = threading.Event()  # set to start a commit before the writer's next tick
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = anyio.Event()

    def __call__(self, event: Event) -> None:
        """The event handler: queue the event (and the task's state when it finished).

        It runs on the event loop, for every event of the run, so it only keeps what could
        change after the event (the finished task's state, a mutable output as JSON data);
        rows and JSON are made in the writer thread, while the run's calls wait.
        """
        if event.run_id != self.run_id:
            return
        if self._thread is None:
            self._start()  # `run` may not have had its turn yet: the loop never yielded
        kind = type(event)
        volatile = _VOLATILE.get(kind)
        if volatile is None:
            volatile = _volatile_fields(kind)
        data = None
        for name in volatile:
            if type(getattr(event, name)) not in _IMMUTABLE:
                data = _event_data(event)  # as it is now: its owner may change it later
                break
        state = None
        if isinstance(event, _TERMINAL_EVENTS):
            node = self.by_id.get(event.task_id)
            if node is not None:
                state = _node_state(node)
        with self._lock:
            self._queue.append((event, data, state))
            pending = len(self._queue)
            if kind is TaskWaiting or kind is ToolCallDecided:
                self._approval(event)  # in the commit that writes the event
        if pending >= MAX_PENDING:
            # Back-pressure: the run makes events faster than the writer writes them.
            self._commit()
        elif pending == _EARLY:
            # Wake the writer before its tick: a commit started now is done before the loop
            # would have to write one itself (while it writes, the loop stands still).
            self._due.set()

    def _approval(self, event: Event) -> None:
        """Keep what a pause or an inline decision must write with its event (under the lock)."""
        if isinstance(event, ToolCallDecided):
            self._decided.append(event)
        elif isinstance(event, TaskWaiting) and self.paused is not None:
            round_ = self.paused.get(event.task_id)
            if round_ is not None:
                self._pauses[event.task_id] = round_

    def task_record(self, node: Node) -> _TaskRow:
        """The stored form of a task's current state (what `Store.write_batch` writes)."""
        return self._task_row(_node_state(node))

    def _task_row(self, state: _NodeState) -> _TaskRow:
        task, status, attempts, answered_by, model, output, error, usage, started, finished = state
        agent = task.agent_name
        return _TaskRow(
            self.run_id,
            task.id,
            {"agent": agent, "deps": list(task.deps)},
            status,
            attempts,
            answered_by or agent,
            model,
            None if status != "succeeded" else to_json(output),
            error,
            usage.to_dict(),
            _timestamp(started),
            _timestamp(finished),
        )

    def _rows(self, queued: list[_Queued]) -> tuple[list[_TaskRow], list[_EventRow]]:
        """The rows of queued events, in the writer thread: the events in order, and the last
        state of each task that finished (in the order each first finished)."""
        run_id = self.run_id
        events = []
        tasks: dict[str, _TaskRow] = {}
        for event, data, state in queued:
            stored = _event_data(event) if data is None else data
            events.append(_EventRow(run_id, event.kind, event.at, stored))
            if state is not None:
                row = self._task_row(state)
                tasks[row.task_id] = row
        return list(tasks.values()), events

    async def run(self) -> None:
        """Write in the background until `close` is called; what is left then is written by
        `end`, in the run's last transaction.

        Raises:
            StoreError: a commit failed (the run cannot be kept).
        """
        self._start()
        try:
            await self._closed.wait()
        finally:
            self._stop.set()
            self._due.set()
        self._raise_failure()

    def _start(self) -> threading.Thread:
        """The writer thread, started on the first call (from the event loop's thread)."""
        if self._thread is None:
            self._token = anyio.lowlevel.current_token()
            self._thread = threading.Thread(
                target=self._write_loop, name=f"delegate-writer-{self.run_id}"[:60], daemon=True
            )
            self._thread.start()
        return self._thread

    def _write_loop(self) -> None:
        """The writer thread: a commit every `FLUSH_INTERVAL`, whatever the event loop does, and
        the lease renewed on the same clock."""
        while True:
            self._due.wait(FLUSH_INTERVAL)
            if self._stop.is_set():
                return
            self._due.clear()
            try:
                self._commit()
            except BaseException:
                # Kept in `_error`. The run must not go on spending without a record: `run`
                # wakes, raises it, and the run stops.
                self._on_loop(self._closed.set)
                return
            self._keep_lease()

    def _on_loop(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the event loop (from the writer thread); nothing when the loop is gone."""
        if self._token is not None:
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(fn, token=self._token)

    def _keep_lease(self) -> None:
        lease = self.lease
        if lease is None or lease.lost:
            return
        try:
            kept = lease.renew_due()
        except StoreError as exc:  # a busy database: try again at the next tick
            log.warning("lease_renewal_failed", run_id=self.run_id, error=str(exc))
            return
        if not kept and self.on_lease_lost is not None:
            self._on_loop(self.on_lease_lost)

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    async def durable(self) -> None:
        """Until a commit that started after this call has written the run's spend."""
        with self._lock:
            target = self._started + 1
        await anyio.to_thread.run_sync(self._commit, target)
        self._raise_failure()

    def graph_changed(self, spec: dict[str, Any]) -> None:
        """Queue the run's new graph spec; it is written before the results of its new tasks."""
        with self._lock:
            self._graph = spec

    def close(self) -> None:
        """Ask `run` to stop; the writer thread stops too (even when `run` never had its turn:
        the first event started the thread). Then `end` the run."""
        self._closed.set()
        self._stop.set()
        self._due.set()

    def end(self, *, status: str, output: Any, usage: dict[str, Any], error: str | None) -> bool:
        """End the run in the store, in a worker thread, once the run is over and `close` was
        called: the writer thread stops, then one transaction (`Store.end_run`) writes what
        waits, how the run ended (`Store.finish_run`'s arguments), and gives the lease up.

        The run is reported finished only after this returns: its last batch is durable. False
        when another process took the run over: then nothing is written.

        Raises:
            StoreError: the transaction failed.
        """
        self._stop.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join()  # no commit or renewal of the writer's after the run's end
        lease = self.lease
        if lease is not None and lease.lost:
            return False
        # What waits is written in the run's last transaction (nothing else commits now). After a
        # failed commit, `_commit` would raise the failure again: only the end is written.
        last_batch = self._commit if self._error is None else None
        owner = None if lease is None else lease.owner
        kept = self.store.end_run(
            self.run_id,
            status=status,
            output=output,
            usage=usage,
            error=error,
            owner=owner,
            last_batch=last_batch,
        )
        if not kept and lease is not None:
            lease.lost = True
        return kept

    def _commit(self, target: int | None = None) -> None:
        """Write what waits, in one transaction; with `target`, only until commit number
        `target` has finished (a commit that started meanwhile may already have written it)."""
        with self._commit_lock:
            if self._error is not None:
                raise self._error
            if target is not None and self._completed >= target:
                return
            with self._lock:
                self._started += 1
                number = self._started
                queued, self._queue = self._queue, []
                graph, self._graph = self._graph, None
                pauses, decided = self._pauses, self._decided
                if pauses or decided:
                    self._pauses, self._decided = {}, []
            spend = None
            account = self.account
            if account is not None and account.changes != self._spend_written:
                self._spend_written = account.changes
                spend = account.spend()
            journal = self.journal
            outcomes = None if self.router is None else self.router.take_outcomes()
            if (
                queued
                or graph is not None
                or spend is not None
                or outcomes
                or (journal and journal.waiting())
            ):
                try:
                    tasks, events = self._rows(queued)
                    steps = None if journal is None else journal.take(tasks)
                    approvals = None
                    if pauses or decided:
                        approvals = approval_batch(self.run_id, pauses, decided)
                    self._after = self.store.write_batch(
                        self.run_id,
                        tasks,
                        events,
                        graph=graph,
                        spend=spend,
                        after=self._after,
                        approvals=approvals,
                        steps=steps,
                        outcomes=outcomes,
                    )
                except BaseException as exc:
                    self._error = exc
                    raise
            self._completed = number
