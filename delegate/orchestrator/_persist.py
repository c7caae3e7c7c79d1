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
)

if TYPE_CHECKING:
    from delegate.memory.records import TaskRecord
    from delegate.memory.store import Store
    from delegate.orchestrator._lease import RunLease
    from delegate.orchestrator.calls import RunAccount
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
_TERMINAL_EVENTS = (TaskSucceeded, TaskFailed, TaskSkipped, TaskCancelled)


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


class _EventRow(NamedTuple):
    """An event as `Store.write_batch` writes it (what it reads of an `EventRecord`)."""

    run_id: str
    kind: str
    at: float
    data: dict[str, Any]


class _TaskRow(NamedTuple):
    """A task's state as `Store.write_batch` writes it (what it reads of a `TaskRecord`).

    Tuples, not pydantic records: one is made for every event of a durable run, on the event
    loop, and a model's construction cost several times a tuple's.
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
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        by_id: Mapping[str, Node],
        account: RunAccount | None = None,
        lease: RunLease | None = None,
        on_lease_lost: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.lease = lease
        self.on_lease_lost = on_lease_lost  # called on the event loop when the lease is lost
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self.run_id = run_id
        self.by_id = by_id  # the scheduler's own map: tasks added during the run are found too
        self.account = account
        self._lock = threading.Lock()  # guards what waits to be written
        self._graph: dict[str, Any] | None = None
        self._tasks: dict[str, _TaskRow] = {}
        self._events: list[_EventRow] = []
        self._commit_lock = threading.Lock()  # one commit at a time, from whichever thread
        self._spend_written = -1  # the account's `changes` when its spend was last written
        self._started = 0  # commits started
        self._completed = 0  # commits finished
        self._stop = threading.Event()
        self._due = threading.Event()  # set to start a commit before the writer's next tick
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = anyio.Event()

    def __call__(self, event: Event) -> None:
        """The event handler: queue the event (and the task's result when it finished)."""
        if getattr(event, "run_id", None) != self.run_id:
            return
        if self._thread is None:
            self._start()  # `run` may not have had its turn yet: the loop never yielded
        # The values are ours and already JSON data: no validation, and JSON is encoded once,
        # in the writer thread.
        row = _EventRow(self.run_id, event.kind, event.at, _event_data(event))
        task = None
        if isinstance(event, _TERMINAL_EVENTS):
            node = self.by_id.get(event.task_id)
            if node is not None:
                task = self.task_record(node)
        with self._lock:
            self._events.append(row)
            if task is not None:
                self._tasks[task.task_id] = task
            pending = len(self._events)
        if pending >= MAX_PENDING:
            # Back-pressure: the run makes events faster than the writer writes them.
            self._commit()
        elif pending == _EARLY:
            # Wake the writer before its tick: a commit started now is done before the loop
            # would have to write one itself (while it writes, the loop stands still).
            self._due.set()

    def task_record(self, node: Node) -> _TaskRow:
        """The stored form of a task's current state (what `Store.write_batch` writes)."""
        task = node.task
        return _TaskRow(
            self.run_id,
            task.id,
            {"agent": task.agent_name, "deps": list(task.deps)},
            node.status,
            node.attempts,
            node.answered_by or task.agent_name,
            node.model,
            to_json(node.output) if node.status == "succeeded" else None,
            node.error,
            node.usage.to_dict(),
            _timestamp(node.started_at),
            _timestamp(node.finished_at),
        )

    async def run(self) -> None:
        """Write in the background until `close` is called; then write what is left.

        Raises:
            StoreError: a commit failed (the run cannot be kept).
        """
        thread = self._start()
        try:
            await self._closed.wait()
        finally:
            self._stop.set()
            self._due.set()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(thread.join)
                await anyio.to_thread.run_sync(self._commit)
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

    async def flush(self) -> None:
        """Write everything queued so far in one transaction."""
        with anyio.CancelScope(shield=True):  # a cancelled run still keeps what it finished
            await anyio.to_thread.run_sync(self._commit)
        self._raise_failure()

    def close(self) -> None:
        """Ask `run` to write what is left and stop; the writer thread stops too (even when
        `run` never had its turn: the first event started the thread)."""
        self._closed.set()
        self._stop.set()
        self._due.set()

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
                tasks, self._tasks = list(self._tasks.values()), {}
                events, self._events = self._events, []
                graph, self._graph = self._graph, None
            spend = None
            account = self.account
            if account is not None and account.changes != self._spend_written:
                self._spend_written = account.changes
                spend = account.spend()
            if tasks or events or graph is not None or spend is not None:
                try:
                    self.store.write_batch(self.run_id, tasks, events, graph=graph, spend=spend)
                except BaseException as exc:
                    self._error = exc
                    raise
            self._completed = number
