"""The store's side of task journals: the finished model calls of a run's multi-call tasks.

A task that makes several model calls for one answer (votes, a judge, a strategy, a tool loop)
has each answered call written as a row of `task_steps` — the request's key, its occurrence
among identical requests of the task, the response as JSON — in the group commit that writes the
run's spend (`delegate.orchestrator._journal` says when and why). A resume reads a run's rows in
one query. A task's rows are deleted in the batch that stores how it ended (succeeded, failed or
skipped): only a task that may still run again keeps a journal.

`Store` exposes these as `write_batch(..., steps=)` and `get_steps`; they live here so that
`store.py` stays about runs and memories. Every statement binds its values; the JSON is redacted
(`dump_json`) as it is written, like every other row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from delegate._log import get_logger
from delegate.errors import ConfigError, CorruptRecordError
from delegate.memory._rows import dump_json, load_json_dict, utc_now
from delegate.memory.schema import TaskStepRow

__all__ = ["StepBatch", "StepRow", "load", "write"]

log = get_logger("delegate.journal")

Journal = dict[str, dict[tuple[str, int], dict[str, Any]]]
"""A run's journals: task id → (request key, occurrence) → the response as JSON data."""


class StepRow(NamedTuple):
    """One answered call of a task: the request's key, its occurrence, the response (JSON)."""

    task_id: str
    key: str
    occurrence: int
    response: dict[str, Any]


class StepBatch(NamedTuple):
    """What a run's recorder writes of its journals with a batch: calls answered since the last
    batch, and the tasks whose journal ends (their result is stored in the same batch)."""

    rows: Sequence[StepRow]
    forget: Sequence[str] = ()


def write(
    conn: Connection,
    dialect: str,
    run_id: str,
    batch: StepBatch,
    redact: Callable[[str], str] | None = None,
) -> None:
    """Add the batch's answered calls (one already stored keeps its row; one JSON cannot hold
    is left out), then delete the journals of the tasks that ended."""
    values = []
    now = utc_now()
    for row in batch.rows:
        try:
            response = dump_json(row.response, "journal response", redact=redact)
        except ConfigError as exc:
            # JSON cannot hold it (a NaN a lenient parser let through): the call is not
            # journaled, and would be sent again, rather than the run's commit failing.
            log.warning(
                "journal_row_unstorable", run_id=run_id, task_id=row.task_id, error=str(exc)
            )
            continue
        values.append(
            {
                "run_id": run_id,
                "task_id": row.task_id,
                "key": row.key,
                "occurrence": row.occurrence,
                "response": response,
                "created_at": now,
            }
        )
    if values:
        stmt = sqlite_insert(TaskStepRow) if dialect == "sqlite" else pg_insert(TaskStepRow)
        conn.execute(stmt.on_conflict_do_nothing(), values)
    if batch.forget:
        conn.execute(
            delete(TaskStepRow).where(
                TaskStepRow.run_id == run_id, TaskStepRow.task_id.in_(list(batch.forget))
            )
        )


def load(session: Session, run_id: str) -> Journal:
    """The run's journals, in one query: task id → (key, occurrence) → response.

    A row that does not parse is left out (its call is sent again): a journal saves money, it
    must never stop a resume.
    """
    rows = session.execute(
        select(
            TaskStepRow.task_id, TaskStepRow.key, TaskStepRow.occurrence, TaskStepRow.response
        ).where(TaskStepRow.run_id == run_id)
    )
    found: Journal = {}
    for task_id, key, occurrence, raw in rows:
        where = f"run {run_id!r} task {task_id!r} call {key[:12]}#{occurrence}"
        try:
            response = load_json_dict(raw, table="task_steps", row=where, column="response")
        except CorruptRecordError as exc:
            log.warning("journal_row_corrupt", run_id=run_id, task_id=task_id, error=str(exc))
            continue
        if response is not None:
            found.setdefault(task_id, {})[(key, occurrence)] = response
    return found
