"""How the store's rows are written and read: validation of names, JSON in and out (secrets masked,
never pickle), rows to records and task states to rows. Used by `delegate.memory.store` only."""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from delegate import _secrets
from delegate.errors import ConfigError, CorruptRecordError
from delegate.memory.records import (
    EventRecord,
    LeaseRecord,
    MemoryRecord,
    RunRecord,
    TaskRecord,
)
from delegate.memory.schema import EventRow, MemoryRow, RunLeaseRow, RunRow, RunSpendRow, TaskRow

__all__ = [
    "TASK_COLUMNS",
    "TASK_UPDATED",
    "EventState",
    "TaskState",
    "as_utc",
    "dump_json",
    "event_record",
    "lease_is_dead",
    "lease_record",
    "load_json_dict",
    "mask_secrets",
    "memory_record",
    "run_record",
    "sqlite_time",
    "task_record",
    "task_values",
    "utc_now",
    "validate_key",
    "validate_namespace",
    "validate_tags",
]

_NAMESPACE = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


def validate_namespace(namespace: str) -> str:
    """Return `namespace` if it is 1–200 of `A-Z a-z 0-9 _ . : -`, else raise MemoryInputError
    (a ConfigError)."""
    from delegate.errors import MemoryInputError

    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        shown = repr(namespace)[:80] if isinstance(namespace, str) else type(namespace).__name__
        raise MemoryInputError(
            f"memory namespace {shown} is not valid: use 1-200 characters from "
            "A-Z a-z 0-9 _ . : - (e.g. 'run:r1', 'workflow:triage', 'global')",
            field="namespace",
        )
    return namespace


def validate_key(key: str, *, field: str = "key") -> str:
    """Return `key` if it is 1–500 printable characters, else raise MemoryInputError (a
    ConfigError). Printable excludes control characters (NUL, newlines, tabs) and lone
    surrogates, which neither SQLite nor PostgreSQL can store."""
    from delegate.errors import MemoryInputError

    if not isinstance(key, str) or not 1 <= len(key) <= 500 or not key.isprintable():
        if not isinstance(key, str):
            shown = f"of type {type(key).__name__}"
        elif len(key) > 500:
            shown = f"{key[:40]!r}… ({len(key):,} characters)"
        else:
            shown = repr(key)
        raise MemoryInputError(
            f"memory {field} {shown} is not valid: use 1-500 printable characters "
            "(no newlines, tabs, control characters or lone surrogates)",
            field=field,
        )
    return key


def validate_tags(tags: Sequence[str]) -> list[str]:
    if isinstance(tags, str):
        raise ConfigError(f"tags must be a list of strings, not the string {tags!r}")
    for tag in tags:
        if not isinstance(tag, str) or not 1 <= len(tag) <= 200 or not tag.isprintable():
            raise ConfigError(f"memory tag {tag!r} is not valid: use 1-200 printable characters")
    return list(dict.fromkeys(tags))


def _json_default(obj: object) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _text_encoder() -> Callable[[Any], str]:
    """`json.dumps(value, ensure_ascii=False, allow_nan=False, default=_json_default)`, built
    once: `dumps` builds an encoder per call, which costs as much as encoding a small dict.

    Without a check for cycles (a cycle ends in RecursionError, which `dump_json` reports).
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (another Python)
        return json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_json_default).encode
    chunks = make(
        None, _json_default, json.encoder.encode_basestring, None, ": ", ", ", False, False, False
    )
    return lambda value: "".join(chunks(value, 0))


_encode = _text_encoder()


def dump_json(
    value: Any, what: str, *parts: object, redact: Callable[[str], str] | None = None
) -> str:
    """`value` as JSON text for a column; `what` names it in an error (formatted with `parts`,
    only then: the writer calls this for every row). `redact` masks credentials in the text
    (`_secrets.json_redactor()`, taken once for a batch); by default the ones known now."""
    try:
        text = _encode(value)
        if not _encodable(text):
            # A lone surrogate ("x\ud800", from a provider's JSON escapes or bad argv bytes):
            # UTF-8 cannot hold it, JSON's escapes can, so it is kept losslessly as "\ud800".
            text = json.dumps(value, ensure_ascii=True, allow_nan=False, default=_json_default)
    except (TypeError, ValueError, RecursionError) as exc:
        label = what.format(*parts) if parts else what
        raise ConfigError(
            f"{label} cannot be stored: {exc}; store JSON values only (dict, list, str, int, "
            "float, bool, None, or a pydantic model)"
        ) from None
    # One pass over the text; free when no key is known.
    return _secrets.redact_json(text) if redact is None else redact(text)


def _encodable(text: str) -> bool:
    """Whether UTF-8 (so SQLite and PostgreSQL text) can hold `text`: no lone surrogates."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def mask_secrets(text: str | None) -> str | None:
    """Free text as stored: keys masked; a NUL or a lone surrogate (which PostgreSQL or UTF-8
    cannot hold) becomes U+FFFD, the same on both backends."""
    if text is None:
        return None
    if "\x00" in text or not _encodable(text):
        text = _UNSTORABLE.sub("\ufffd", text)
    return _secrets.redact(text)


def load_json(raw: str | None, *, table: str, row: str, column: str) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise CorruptRecordError(
            f"table '{table}', {row}: column '{column}' does not hold valid JSON ({exc}); "
            "the row was changed outside delegate: restore it from a backup or delete it",
            table=table,
            row=row,
            column=column,
        ) from None


def load_json_dict(raw: str | None, *, table: str, row: str, column: str) -> dict[str, Any] | None:
    value = load_json(raw, table=table, row=row, column=column)
    if value is not None and not isinstance(value, dict):
        raise CorruptRecordError(
            f"table '{table}', {row}: column '{column}' holds a JSON {type(value).__name__}, "
            "not an object; the row was changed outside delegate: restore it or delete it",
            table=table,
            row=row,
            column=column,
        )
    return value


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# -- rows → records -----------------------------------------------------------------------------


def run_record(row: RunRow, spend: RunSpendRow | None = None) -> RunRecord:
    where = f"run {row.id!r}"

    def load(column: str, raw: str | None) -> Any:
        return load_json(raw, table="runs", row=where, column=column)

    def load_dict(column: str, raw: str | None) -> dict[str, Any] | None:
        return load_json_dict(raw, table="runs", row=where, column=column)

    return RunRecord(
        id=row.id,
        workflow=row.workflow,
        goal=row.goal,
        inputs=load_dict("inputs", row.inputs) or {},
        graph=load_dict("graph", row.graph) or {},
        status=row.status,
        budget=load_dict("budget", row.budget),
        usage=load_dict("usage", row.usage),
        output=load("output", row.output),
        error=row.error,
        spend=None if spend is None else load_dict("spend", spend.spend),
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def lease_is_dead(lease: LeaseRecord) -> bool:
    """Whether the lease's owner is a process of this machine that no longer exists (killed):
    its run can be taken over at once, without waiting for the lease to expire."""
    if lease.host != socket.gethostname() or lease.pid <= 0:
        return False
    try:
        os.kill(lease.pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, owned by another user
        return False
    return False


def lease_record(row: RunLeaseRow) -> LeaseRecord:
    return LeaseRecord.model_validate(row, from_attributes=True)


def task_record(row: TaskRow) -> TaskRecord:
    where = f"run {row.run_id!r} task {row.task_id!r}"
    return TaskRecord(
        run_id=row.run_id,
        task_id=row.task_id,
        spec=load_json_dict(row.spec, table="tasks", row=where, column="spec") or {},
        status=row.status,
        attempts=row.attempts,
        agent=row.agent,
        model=row.model,
        output=load_json(row.output, table="tasks", row=where, column="output"),
        error=row.error,
        usage=load_json_dict(row.usage, table="tasks", row=where, column="usage"),
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def event_record(row: EventRow) -> EventRecord:
    where = f"run {row.run_id!r} seq {row.seq}"
    return EventRecord(
        run_id=row.run_id,
        seq=row.seq,
        kind=row.kind,
        at=row.at,
        data=load_json_dict(row.data, table="events", row=where, column="data") or {},
    )


def memory_record(row: MemoryRow) -> MemoryRecord:
    where = f"namespace={row.namespace!r} key={row.key!r} version={row.version}"
    tags = load_json(row.tags, table="memories", row=where, column="tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise CorruptRecordError(
            f"table 'memories', {where}: column 'tags' is not a JSON list of strings; "
            "the row was changed outside delegate: restore it or delete it",
            table="memories",
            row=where,
            column="tags",
        )
    return MemoryRecord(
        namespace=row.namespace,
        key=row.key,
        version=row.version,
        value=load_json(row.value, table="memories", row=where, column="value"),
        text=row.text,
        tags=tags,
        run_id=row.run_id,
        task_id=row.task_id,
        created_at=row.created_at,
    )


class TaskState(Protocol):
    """What `Store.write_batch` reads of a task: a `TaskRecord`, or a lighter row with the same
    attributes (the run recorder's)."""

    @property
    def run_id(self) -> str: ...
    @property
    def task_id(self) -> str: ...
    @property
    def spec(self) -> dict[str, Any]: ...
    @property
    def status(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def agent(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def output(self) -> Any: ...
    @property
    def error(self) -> str | None: ...
    @property
    def usage(self) -> dict[str, Any] | None: ...
    @property
    def started_at(self) -> datetime.datetime | None: ...
    @property
    def finished_at(self) -> datetime.datetime | None: ...


class EventState(Protocol):
    """What `Store.write_batch` reads of an event: an `EventRecord`, or a lighter row."""

    @property
    def run_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def at(self) -> float: ...
    @property
    def data(self) -> dict[str, Any]: ...


def task_values(
    task: TaskState,
    position: int,
    when: Callable[[datetime.datetime | None], Any],
    redact: Callable[[str], str] | None = None,
) -> tuple[Any, ...]:
    """A task's row as the upsert binds it: its values in `TASK_COLUMNS`' order (a tuple, not a
    dict: one is made for every task of a durable run), times through `when` (the dialect's)."""
    what, key = "task {!r} of run {!r}: {}", (task.task_id, task.run_id)
    usage = task.usage
    return (
        task.run_id,
        task.task_id,
        position,
        dump_json(task.spec, what, *key, "spec", redact=redact),
        task.status,
        task.attempts,
        task.agent,
        task.model,
        dump_json(task.output, what, *key, "output", redact=redact),
        mask_secrets(task.error),
        None if usage is None else dump_json(usage, what, *key, "usage", redact=redact),
        when(task.started_at),
        when(task.finished_at),
    )


# Columns an upsert overwrites; a task keeps its key and its first position.
TASK_COLUMNS = tuple(c.name for c in TaskRow.__table__.columns)
# `task_values` binds the columns in this order.
assert TASK_COLUMNS == (
    "run_id",
    "task_id",
    "position",
    "spec",
    "status",
    "attempts",
    "agent",
    "model",
    "output",
    "error",
    "usage",
    "started_at",
    "finished_at",
), TASK_COLUMNS
TASK_UPDATED = tuple(c for c in TASK_COLUMNS if c not in ("run_id", "task_id", "position"))


def as_utc(value: datetime.datetime | None) -> datetime.datetime | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=datetime.UTC)).astimezone(datetime.UTC)


def sqlite_time(value: datetime.datetime | None) -> str | None:
    """A datetime as `UTCDateTime` stores it in SQLite: naive UTC, SQLAlchemy's text format."""
    if value is not None and value.tzinfo is datetime.UTC:  # the run recorder's: no conversion
        # (isoformat with microseconds, less its "+00:00": the same text, five times faster
        # than strftime)
        return value.isoformat(" ", "microseconds")[:-6]
    utc = as_utc(value)
    return None if utc is None else utc.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


# -- URLs and engines ---------------------------------------------------------------------------
