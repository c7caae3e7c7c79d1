"""The store's side of tool approvals: pending calls, their decisions, and paused tasks.

`Store` exposes these as methods (`save_pauses`, `list_pending`, `list_approvals`,
`decide_call`, `get_paused`); they live here so that `store.py` stays about runs and memories.
Every statement binds its values; free text is masked (`mask_secrets`) and JSON is redacted
(`dump_json`) as it is written, like every other row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from delegate.errors import ConfigError, did_you_mean
from delegate.memory._rows import dump_json, load_json_dict, mask_secrets, utc_now
from delegate.memory.records import ApprovalRecord
from delegate.memory.schema import PausedTaskRow, RunRow, ToolApprovalRow

__all__ = [
    "ApprovalBatch",
    "decide",
    "list_approvals",
    "list_pending",
    "load_paused",
    "save_pauses",
    "write",
]

_MAX_REASON = 2000


def _insert(dialect: str, table: type[Any]) -> Any:
    return sqlite_insert(table) if dialect == "sqlite" else pg_insert(table)


def _record(row: ToolApprovalRow) -> ApprovalRecord:
    return ApprovalRecord(
        run_id=row.run_id,
        call_id=row.call_id,
        task_id=row.task_id,
        agent=row.agent,
        tool=row.tool,
        arguments=row.arguments,
        why=row.why,
        status=row.status,
        reason=row.reason,
        created_at=row.created_at,
        decided_at=row.decided_at,
    )


class ApprovalBatch(NamedTuple):
    """What a run's recorder writes of its approvals with a batch of events: the rounds tasks
    paused in (task id → state as JSON), the calls they wait for, and the calls an inline
    `approve_tool` decided (their `status` "approved" or "denied")."""

    paused: Mapping[str, Mapping[str, Any]]
    calls: Sequence[ApprovalRecord]
    decided: Sequence[ApprovalRecord] = ()


def save_pauses(
    session: Session,
    dialect: str,
    run_id: str,
    paused: Mapping[str, Mapping[str, Any]],
    calls: Sequence[ApprovalRecord],
) -> None:
    """Make the run's paused tasks exactly `paused` (task id → state), and add `calls`.

    A task that paused before and ended since loses its row (a later resume must not continue
    an old conversation). A call already stored keeps its row, and its decision.
    """
    conn = session.connection()
    conn.execute(
        delete(PausedTaskRow).where(
            PausedTaskRow.run_id == run_id, PausedTaskRow.task_id.not_in(list(paused))
        )
    )
    write(conn, dialect, run_id, ApprovalBatch(paused, calls))


def write(conn: Connection, dialect: str, run_id: str, batch: ApprovalBatch) -> None:
    """Add (or update) the batch's paused tasks, add its pending calls (a call already stored
    keeps its decision), and record its inline decisions (on calls still pending, or new)."""
    now = utc_now()
    if batch.paused:
        stmt = _insert(dialect, PausedTaskRow)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[PausedTaskRow.run_id, PausedTaskRow.task_id],
                set_={"state": stmt.excluded.state, "created_at": stmt.excluded.created_at},
            ),
            [
                {
                    "run_id": run_id,
                    "task_id": task_id,
                    "state": dump_json(
                        dict(state), "paused task {!r} of run {!r}", task_id, run_id
                    ),
                    "created_at": now,
                }
                for task_id, state in batch.paused.items()
            ],
        )
    calls = [*batch.calls, *batch.decided]
    if calls:
        conn.execute(
            _insert(dialect, ToolApprovalRow).on_conflict_do_nothing(),
            [_values(run_id, call) for call in calls],
        )
    for call in batch.decided:  # a call stored as pending before (a resumed run's) is decided now
        conn.execute(
            update(ToolApprovalRow)
            .where(
                ToolApprovalRow.run_id == run_id,
                ToolApprovalRow.call_id == call.call_id,
                ToolApprovalRow.status == "pending",
            )
            .values(status=call.status, reason=_reason(call.reason), decided_at=call.decided_at)
        )


def _reason(reason: str | None) -> str | None:
    return None if reason is None else (mask_secrets(reason.strip()[:_MAX_REASON]) or None)


def _values(run_id: str, call: ApprovalRecord) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "call_id": call.call_id,
        "task_id": call.task_id,
        "agent": call.agent,
        "tool": call.tool,
        "arguments": mask_secrets(call.arguments) or "",
        "why": mask_secrets(call.why) or "",
        "status": call.status,
        "reason": _reason(call.reason),
        "created_at": call.created_at,
        "decided_at": call.decided_at,
    }


def load_paused(session: Session, run_id: str) -> dict[str, dict[str, Any]]:
    """The run's paused tasks: task id → the state `save_pauses` stored."""
    rows = session.execute(
        select(PausedTaskRow.task_id, PausedTaskRow.state).where(PausedTaskRow.run_id == run_id)
    )
    found: dict[str, dict[str, Any]] = {}
    for task_id, raw in rows:
        state = load_json_dict(
            raw, table="paused_tasks", row=f"run {run_id!r} task {task_id!r}", column="state"
        )
        found[task_id] = state or {}
    return found


def list_approvals(session: Session, run_id: str) -> list[ApprovalRecord]:
    """Every call of the run that needed a decision, pending or decided, oldest first."""
    query = (
        select(ToolApprovalRow)
        .where(ToolApprovalRow.run_id == run_id)
        .order_by(ToolApprovalRow.created_at, ToolApprovalRow.call_id)
    )
    return [_record(row) for row in session.scalars(query)]


def list_pending(session: Session, run_id: str | None) -> list[ApprovalRecord]:
    """The calls still waiting for a decision: of `run_id`, or of every run that is waiting."""
    query = select(ToolApprovalRow).where(ToolApprovalRow.status == "pending")
    if run_id is not None:
        query = query.where(ToolApprovalRow.run_id == run_id)
    else:
        query = query.join(RunRow, RunRow.id == ToolApprovalRow.run_id).where(
            RunRow.status == "waiting"
        )
    query = query.order_by(
        ToolApprovalRow.run_id, ToolApprovalRow.created_at, ToolApprovalRow.call_id
    )
    return [_record(row) for row in session.scalars(query)]


def decide(
    session: Session,
    url: str,
    run_id: str,
    call_id: str,
    *,
    approve: bool,
    reason: str | None,
) -> ApprovalRecord:
    """Record a human's decision on a pending call (in the caller's write transaction).

    Deciding a call again the same way changes nothing; the other way is refused.

    Raises:
        ConfigError: no such run, no such call in it (with a did-you-mean), or the call was
            already decided the other way.
    """
    if session.get(RunRow, run_id) is None:
        runs = list(session.scalars(select(RunRow.id).limit(1000)))
        raise ConfigError(
            f"no run {run_id!r} in {url}{did_you_mean(run_id, runs)}; `delegate pending` lists "
            "the runs that wait for a decision"
        )
    row = session.get(ToolApprovalRow, (run_id, call_id))
    if row is None:
        calls = list(
            session.scalars(select(ToolApprovalRow.call_id).where(ToolApprovalRow.run_id == run_id))
        )
        listed = f"its calls: {', '.join(calls)}" if calls else "it has no calls that need one"
        raise ConfigError(
            f"run {run_id!r} has no tool call {call_id!r}{did_you_mean(call_id, calls)}; "
            f"{listed} (`delegate pending {run_id}` lists them)"
        )
    status = "approved" if approve else "denied"
    if row.status != "pending":
        if row.status == status:
            return _record(row)
        raise ConfigError(
            f"tool call {call_id!r} of run {run_id!r} was already {row.status}; a decision "
            "cannot be changed once made"
        )
    text = None if approve else _reason(reason or "")
    now = utc_now()
    record = _record(row)
    session.connection().execute(
        update(ToolApprovalRow)
        .where(ToolApprovalRow.run_id == run_id, ToolApprovalRow.call_id == call_id)
        .values(status=status, reason=text, decided_at=now)
    )
    return record.model_copy(update={"status": status, "reason": text, "decided_at": now})
