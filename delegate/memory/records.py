"""Rows read back from the store, as frozen pydantic records.

These are the only shapes that cross the `Store` boundary: callers build `RunRecord`,
`TaskRecord` and `EventRecord` to write, and get these records (never ORM rows) back.
"""

from __future__ import annotations

import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ApprovalRecord",
    "EventRecord",
    "LeaseRecord",
    "MemoryRecord",
    "RunRecord",
    "TaskRecord",
]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunRecord(_Record):
    """One run: what was asked, the graph it ran, and how it ended.

    Attributes:
        id: the run id, unique in the store.
        workflow: the workflow's name, when the run came from one.
        goal: the goal given to the planner, when there was one.
        inputs: the run's inputs.
        graph: the graph spec as JSON, enough to rebuild the graph on resume: the
            orchestrator's versioned `GraphSpec` (`to_json`), read back and validated with
            `GraphSpec.from_json` (the store keeps it as data and never reads into it).
        status: "running", "succeeded", "failed", "cancelled", ...
        budget: the run's budget, as JSON.
        usage: the run's usage when it finished.
        output: the run's output (any JSON value).
        error: why the run failed, when it did.
        spend: what the run's calls have charged its budgets so far, calls in flight at their
            reservation (kept as the run goes, so a resumed run keeps its budget).
        created_at: when the run was created (UTC).
        finished_at: when the run finished (UTC), None while it runs.
    """

    id: str
    workflow: str | None = None
    goal: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    graph: dict[str, Any] = Field(default_factory=dict)
    status: str = "running"
    budget: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    output: Any = None
    error: str | None = None
    spend: dict[str, Any] | None = None
    created_at: datetime.datetime = Field(default_factory=_now)
    finished_at: datetime.datetime | None = None


class LeaseRecord(_Record):
    """Who owns a running run.

    Attributes:
        run_id: the run.
        owner: the owner's token (one per process and run).
        host: the machine the owner runs on.
        pid: its process id.
        heartbeat_at: when the owner last renewed the lease (UTC).
        expires_at: when the lease lapses unless renewed (UTC); past it the run is stale and
            another process may take it over.
    """

    run_id: str
    owner: str
    host: str
    pid: int
    heartbeat_at: datetime.datetime
    expires_at: datetime.datetime

    def live(self, now: datetime.datetime | None = None) -> bool:
        """Whether the lease has not expired."""
        return self.expires_at > (now or _now())

    def describe(self, now: datetime.datetime | None = None) -> str:
        """ "pid 123 on host h (renewed 2 s ago, expires in 28 s)"."""
        now = now or _now()
        renewed = max((now - self.heartbeat_at).total_seconds(), 0.0)
        left = (self.expires_at - now).total_seconds()
        expiry = f"expires in {left:.0f} s" if left > 0 else f"expired {-left:.0f} s ago"
        return f"pid {self.pid} on host {self.host} (renewed {renewed:.0f} s ago, {expiry})"


class TaskRecord(_Record):
    """The latest state of one task of a run (upserted by `Store.write_batch`).

    Attributes:
        run_id: the run the task belongs to.
        task_id: the task's id, unique within the run.
        spec: the task's spec (agent, prompt, deps, ...).
        status: "pending", "running", "succeeded", "failed", ...
        attempts: how many attempts were started.
        agent: the agent that ran it.
        model: the model that answered.
        output: the task's output (any JSON value).
        error: why it failed, when it did.
        usage: its usage, as JSON.
        started_at: when its first attempt started (UTC).
        finished_at: when it finished (UTC).
    """

    run_id: str
    task_id: str
    spec: dict[str, Any] = Field(default_factory=dict)
    status: str = "pending"
    attempts: int = 0
    agent: str | None = None
    model: str | None = None
    output: Any = None
    error: str | None = None
    usage: dict[str, Any] | None = None
    started_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None


class EventRecord(_Record):
    """One entry of a run's append-only event log.

    Attributes:
        run_id: the run the event belongs to.
        seq: its number in the run's log, from 1, gap-free; 0 on a record not yet written
            (the store numbers events when it writes them).
        kind: the event's kind ("task_started", ...).
        at: when it happened (seconds since the epoch).
        data: the event's payload.
    """

    run_id: str
    seq: int = 0
    kind: str
    at: float
    data: dict[str, Any] = Field(default_factory=dict)


class MemoryRecord(_Record):
    """One version of one memory entry; a write adds a version and never changes an old one.

    Attributes:
        namespace: the namespace ("run:<id>", "workflow:<name>", "global", ...).
        key: the entry's key within the namespace.
        version: 1 for the first write of the key, then +1 per write.
        value: the value (any JSON value).
        text: the text indexed for search, besides the key and the value.
        tags: the entry's tags.
        run_id: the run that wrote it, if any.
        task_id: the task that wrote it, if any.
        created_at: when this version was written (UTC).
    """

    namespace: str
    key: str
    version: int
    value: Any = None
    text: str | None = None
    tags: list[str] = Field(default_factory=list)
    run_id: str | None = None
    task_id: str | None = None
    created_at: datetime.datetime = Field(default_factory=_now)


class ApprovalRecord(_Record):
    """A tool call that needs a human's decision, and the decision once made.

    Attributes:
        run_id: the run.
        call_id: the call's id, unique in the run.
        task_id: the task that waits for it.
        agent: the agent that called the tool.
        tool: the tool's name.
        arguments: the JSON arguments the model wrote (credentials masked).
        why: the model's words with the call, else the tool's description.
        status: "pending", "approved" or "denied".
        reason: why it was denied (None otherwise).
        created_at: when the call was paused (UTC).
        decided_at: when it was decided (UTC), None while pending.
    """

    run_id: str
    call_id: str
    task_id: str
    agent: str
    tool: str
    arguments: str
    why: str = ""
    status: str = "pending"
    reason: str | None = None
    created_at: datetime.datetime = Field(default_factory=_now)
    decided_at: datetime.datetime | None = None
