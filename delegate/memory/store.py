"""`Store`: the one gateway to delegate's database (SQLite by default, PostgreSQL to share).

```
DelegateError
└── StoreError                 the database cannot be opened, migrated, read or written
    ├── RunExistsError         create_run with an id already in the store (.run_id)
    └── CorruptRecordError     a row whose JSON payload does not parse (.table .row .column)
```

Every method is synchronous and thread-safe; async code calls them through
`anyio.to_thread.run_sync`. Each call is one transaction. On SQLite every write transaction is
`BEGIN IMMEDIATE` (WAL, busy_timeout): a read-then-write transaction takes the write lock
before it reads, so writers in several processes queue up instead of losing updates. On
PostgreSQL, writers that read before they write serialise on a lock of their own (the run's
row, or a transaction-level advisory lock per memory key).

JSON only, never pickle: payloads are TEXT holding `json.dumps` output; a payload that does
not parse when read back raises `CorruptRecordError`.

No credential is written: every one delegate knows (`delegate._secrets`) is masked in each JSON
payload and in the free-text columns (a run's goal and error, a task's error, a memory's text)
as they are written, whatever produced them.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from itertools import chain
from typing import Any, Literal

from sqlalchemy import (
    Connection,
    Engine,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from delegate import _secrets
from delegate.errors import (
    ConfigError,
    CorruptRecordError,
    RunExistsError,
    RunLeasedError,
    StoreError,
)
from delegate.memory import _approvals, _routing, _steps, migrations
from delegate.memory._engine import WRITE_OPTION, default_url, make_engine, normalize_url
from delegate.memory._rows import (
    TASK_COLUMNS,
    TASK_UPDATED,
    EventState,
    TaskState,
    as_utc,
    dump_json,
    event_record,
    lease_is_dead,
    lease_record,
    load_json_dict,
    mask_secrets,
    memory_record,
    run_record,
    sqlite_time,
    task_record,
    task_values,
    utc_now,
    validate_key,
    validate_namespace,
    validate_tags,
)
from delegate.memory._search import is_latest, pg_search, sqlite_search
from delegate.memory.records import (
    ApprovalRecord,
    EventRecord,
    LeaseRecord,
    MemoryRecord,
    RunRecord,
    TaskRecord,
)
from delegate.memory.schema import (
    SCHEMA_REVISION,
    CacheRow,
    EventRow,
    MemoryRow,
    MemoryTagRow,
    RunLeaseRow,
    RunRow,
    RunSpendRow,
    TaskRow,
)

__all__ = [
    "CorruptRecordError",
    "RunExistsError",
    "Store",
    "StoreError",
    "default_url",
    "lease_is_dead",
    "validate_key",
    "validate_namespace",
]
MAX_SEARCH_TERMS = 32
_WORD = re.compile(r"[^\W_]+")
# Key of the PostgreSQL advisory lock held while migrating ("delegate" in ASCII).
_MIGRATION_LOCK = 0x64656C6567617465
# The columns `start_run` binds, in this order (`_run_row`, `_lease_row`).
_RUN_COLUMNS = (
    "id",
    "workflow",
    "goal",
    "inputs",
    "graph",
    "status",
    "budget",
    "usage",
    "output",
    "error",
    "created_at",
    "finished_at",
)
_LEASE_COLUMNS = ("run_id", "owner", "host", "pid", "heartbeat_at", "expires_at")


class Store:
    """The one gateway to delegate's database: runs, tasks, events, memories and the cache.

    Open it with `Store.open(url)`; use it from any thread; `close()` it (or use it as a
    context manager) when done.

    Attributes:
        url: the database URL, password masked.
        dialect: "sqlite" or "postgresql".
    """

    url: str
    dialect: Literal["sqlite", "postgresql"]

    def __init__(self, engine: Engine, url: str) -> None:
        """Wrap an engine; use `Store.open`, which also creates and migrates the schema."""
        self._engine = engine
        self.url = url
        self.dialect = "sqlite" if engine.dialect.name == "sqlite" else "postgresql"
        mark = "?" if self.dialect == "sqlite" else "%s"  # the driver's own parameter style
        # The writer's inserts, many rows per statement (`_insert_rows`).
        self._events_insert = _RowsInsert(
            "INSERT INTO events (run_id, seq, kind, at, data) VALUES ", mark, 5
        )
        # The writer's per-batch reads, as driver SQL too: a batch of a few rows costs less than
        # building and compiling three SQLAlchemy statements.
        self._run_lock = f"SELECT id FROM runs WHERE id = {mark}" + (
            " FOR UPDATE" if self.dialect == "postgresql" else ""
        )
        self._last_seq = f"SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = {mark}"
        self._last_position = f"SELECT COALESCE(MAX(position), 0) FROM tasks WHERE run_id = {mark}"
        self._spend_upsert = (
            f"INSERT INTO run_spend (run_id, spend) VALUES ({mark}, {mark}) "
            "ON CONFLICT (run_id) DO UPDATE SET spend = excluded.spend"
        )
        self._tasks_upsert = _RowsInsert(
            f"INSERT INTO tasks ({', '.join(TASK_COLUMNS)}) VALUES ",
            mark,
            len(TASK_COLUMNS),
            " ON CONFLICT (run_id, task_id) DO UPDATE SET "
            + ", ".join(f"{name} = excluded.{name}" for name in TASK_UPDATED),
        )
        # A run's start and end (`start_run`, `end_run`), prebuilt like the writer's statements:
        # they are the fixed cost of every durable run.
        self._run_insert = (
            f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) "
            f"VALUES ({', '.join(mark for _ in _RUN_COLUMNS)})"
        )
        self._run_finish = (
            f"UPDATE runs SET status = {mark}, output = {mark}, usage = {mark}, error = {mark}, "
            f"finished_at = {mark} WHERE id = {mark}"
        )
        self._lease_insert = (
            f"INSERT INTO run_leases ({', '.join(_LEASE_COLUMNS)}) "
            f"VALUES ({', '.join(mark for _ in _LEASE_COLUMNS)})"
        )
        self._lease_release = f"DELETE FROM run_leases WHERE run_id = {mark} AND owner = {mark}"
        self._when = sqlite_time if self.dialect == "sqlite" else as_utc  # a datetime, bound
        # The write transaction this thread is in, which a nested call joins (`_connection`).
        self._joined = threading.local()
        memory = engine.dialect.name == "sqlite" and engine.url.database in (None, "")
        # One shared in-memory connection: every call holds the lock. A SQLite file: writers in
        # this process queue on the lock instead of polling SQLite's busy handler.
        self._all_lock: threading.RLock | None = threading.RLock() if memory else None
        self._write_lock: threading.Lock | None = (
            threading.Lock() if self.dialect == "sqlite" and not memory else None
        )
        # The engine would silently open new connections after `dispose()`; a closed store
        # refuses instead, so a use after close is a clear error rather than a leak.
        self._closed = False

    @classmethod
    def open(cls, url: str | None = None) -> Store:
        """Open (creating and migrating as needed) the database at `url`.

        Args:
            url: None for `default_url()`; ":memory:" for an in-process SQLite database; a
                path or "sqlite:///path" for a SQLite file; "postgresql+psycopg://..." for
                PostgreSQL.

        Raises:
            ConfigError: the URL is not one delegate supports.
            StoreError: the database cannot be reached, or was written by a newer delegate.
        """
        raw = url if url is not None else default_url()
        engine = make_engine(normalize_url(raw))
        masked = engine.url.render_as_string(hide_password=True)
        store = cls(engine, masked)
        try:
            store._migrate()
        except BaseException:
            engine.dispose()
            raise
        return store

    def close(self) -> None:
        """Close every pooled connection. Using the store afterwards raises `StoreError`."""
        self._closed = True
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    __str__ = __repr__

    # -- transactions ---------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Session]:
        with self._connection(write=write) as conn, Session(bind=conn, autoflush=False) as session:
            yield session

    @contextmanager
    def _connection(self, *, write: bool) -> Iterator[Connection]:
        """A connection in a transaction (BEGIN IMMEDIATE on SQLite when `write`), committed on
        exit; without a `Session`, for the run writer's batches.

        A call made inside this thread's write transaction joins it (`end_run` writes the run's
        last batch with `write_batch`): the outer call commits, or rolls back, both.
        """
        joined: Connection | None = getattr(self._joined, "conn", None)
        if joined is not None:
            yield joined
            return
        if self._closed:
            raise StoreError(
                f"the store {self.url} was closed; open it again with Store.open(url), or use "
                "it before closing its Orchestrator"
            )
        lock: AbstractContextManager[Any] = nullcontext()
        if self._all_lock is not None:
            lock = self._all_lock
        elif write and self._write_lock is not None:
            lock = self._write_lock
        try:
            with lock, self._engine.connect() as conn:
                conn.execution_options(**{WRITE_OPTION: write})
                with conn.begin():
                    if not write:
                        yield conn
                        return
                    self._joined.conn = conn
                    try:
                        yield conn
                    finally:
                        self._joined.conn = None
        except OperationalError as exc:
            raise StoreError(
                f"database {self.url}: {exc.orig or exc}; check that it is reachable and "
                "that no other program holds a long write lock on it"
            ) from exc

    def _write(self) -> AbstractContextManager[Session]:
        """A session in a write transaction (BEGIN IMMEDIATE on SQLite), committed on exit."""
        return self._transaction(write=True)

    def _read(self) -> AbstractContextManager[Session]:
        """A session in a read transaction: one consistent snapshot."""
        return self._transaction(write=False)

    def _migrate(self) -> None:
        with self._write() as session:
            conn = session.connection()
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            current = migrations.current_revisions(conn)
            if current == [SCHEMA_REVISION]:
                return
            unknown, head = migrations.unknown_revisions(current)
            if unknown:
                raise StoreError(
                    f"the database {self.url} is at schema revision {unknown[0]!r}, which this "
                    f"delegate does not know (it knows up to {head!r}): it was written by a "
                    "newer delegate; upgrade delegate"
                )
            migrations.upgrade(conn)

    # -- runs and tasks -------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        """Store a new run.

        Raises:
            RunExistsError: a run with this id is already in the store.
        """
        with self._new_run(run) as conn:
            self._insert_run(conn, run)

    def start_run(self, run: RunRecord, owner: str, *, seconds: float) -> LeaseRecord:
        """Store a new run and make `owner` (this process) its owner for `seconds`, renewable,
        in one write transaction: what `create_run` and `acquire_lease` do for a run nobody
        else can hold yet (a run is resumed with `acquire_lease`).

        Raises:
            RunExistsError: a run with this id is already in the store.
        """
        lease = _new_lease(run.id, owner, seconds)
        with self._new_run(run) as conn:
            self._insert_run(conn, run)
            conn.exec_driver_sql(self._lease_insert, self._lease_row(lease))
        return lease

    @contextmanager
    def _new_run(self, run: RunRecord) -> Iterator[Connection]:
        """A write transaction that stores `run`: an id already stored is `RunExistsError`."""
        try:
            with self._connection(write=True) as conn:
                yield conn
        except IntegrityError:
            raise RunExistsError(
                f"run {run.id!r} already exists in {self.url}; resume it with "
                f"`await orch.resume({run.id!r})` (or orch.resume_sync), or pick another run_id",
                run_id=run.id,
            ) from None

    def _insert_run(self, conn: Connection, run: RunRecord) -> None:
        what = f"run {run.id!r}"
        row = (
            run.id,
            run.workflow,
            mask_secrets(run.goal),
            dump_json(run.inputs, f"{what}: inputs"),
            dump_json(run.graph, f"{what}: graph"),
            run.status,
            None if run.budget is None else dump_json(run.budget, f"{what}: budget"),
            None if run.usage is None else dump_json(run.usage, f"{what}: usage"),
            dump_json(run.output, f"{what}: output"),
            mask_secrets(run.error),
            self._when(run.created_at),
            self._when(run.finished_at),
        )
        conn.exec_driver_sql(self._run_insert, row)
        if run.spend is not None:
            conn.exec_driver_sql(
                self._spend_upsert, (run.id, dump_json(run.spend, f"{what}: spend"))
            )

    def _lease_row(self, lease: LeaseRecord) -> tuple[Any, ...]:
        when = self._when
        return (
            lease.run_id,
            lease.owner,
            lease.host,
            lease.pid,
            when(lease.heartbeat_at),
            when(lease.expires_at),
        )

    def finish_run(
        self, run_id: str, *, status: str, output: Any, usage: dict[str, Any], error: str | None
    ) -> None:
        """Record how a run ended, and when.

        Raises:
            StoreError: there is no run with this id.
        """
        with self._connection(write=True) as conn:
            self._finish(conn, run_id, status, output, usage, error)

    def end_run(
        self,
        run_id: str,
        *,
        status: str,
        output: Any,
        usage: dict[str, Any],
        error: str | None,
        owner: str | None = None,
        last_batch: Callable[[], object] | None = None,
    ) -> bool:
        """End a run in one write transaction: its last batch, how it ended (as `finish_run`
        records it) and, with `owner`, its lease given up.

        With `owner`, only while `owner` holds the run's lease: when another process took the
        run over, nothing is written and the answer is False (the run is theirs now).

        Args:
            run_id: the run.
            status: how it ended ("succeeded", "partial", "failed", "interrupted", ...).
            output: its output (any JSON value).
            usage: its usage.
            error: why it did not succeed, when it did not.
            owner: this process's lease owner token; None for a run without a lease.
            last_batch: called in the transaction, once the lease is known to be `owner`'s: the
                writes it makes through this store in this thread (`write_batch`, the run's
                recorder writing what waits) join the transaction, and commit with the end.

        Raises:
            StoreError: there is no run with this id.
        """
        with self._connection(write=True) as conn:
            # The run's row first, then its lease: the order `acquire_lease` locks them in.
            if conn.exec_driver_sql(self._run_lock, (run_id,)).first() is None:
                raise self._no_run(run_id)
            if owner is not None:
                released = conn.exec_driver_sql(self._lease_release, (run_id, owner))
                if released.rowcount == 0:
                    return False
            if last_batch is not None:
                last_batch()
            self._finish(conn, run_id, status, output, usage, error)
        return True

    def _finish(
        self,
        conn: Connection,
        run_id: str,
        status: str,
        output: Any,
        usage: dict[str, Any],
        error: str | None,
    ) -> None:
        row = (
            status,
            dump_json(output, f"run {run_id!r}: output"),
            dump_json(usage, f"run {run_id!r}: usage"),
            mask_secrets(error),
            self._when(utc_now()),
            run_id,
        )
        if conn.exec_driver_sql(self._run_finish, row).rowcount == 0:
            raise self._no_run(run_id)

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run with this id, or None."""
        with self._read() as session:
            row = session.get(RunRow, run_id)
            if row is None:
                return None
            spend = session.get(RunSpendRow, run_id)
            return run_record(row, spend)

    def list_runs(self, *, limit: int = 20) -> list[RunRecord]:
        """The `limit` most recent runs, newest first."""
        query = select(RunRow).order_by(RunRow.created_at.desc(), RunRow.id.desc()).limit(limit)
        with self._read() as session:
            rows = list(session.scalars(query))
            spends = {
                spend.run_id: spend
                for spend in session.scalars(
                    select(RunSpendRow).where(RunSpendRow.run_id.in_([row.id for row in rows]))
                )
            }
            return [run_record(row, spends.get(row.id)) for row in rows]

    def write_batch(
        self,
        run_id: str,
        tasks: Sequence[TaskState],
        events: Sequence[EventState],
        *,
        graph: dict[str, Any] | None = None,
        spend: dict[str, Any] | None = None,
        after: tuple[int, int] | None = None,
        approvals: _approvals.ApprovalBatch | None = None,
        steps: _steps.StepBatch | None = None,
        outcomes: Sequence[_routing.RoutingOutcome] | None = None,
    ) -> tuple[int, int]:
        """In one write transaction, upsert `tasks` and append `events` to the run's log.

        Tasks are upserted by (run_id, task_id); the last record of a task in the batch wins.
        Events get the numbers following the run's last event (their own `seq` is ignored).
        `graph`, when given, replaces the run's graph spec (a planned run's graph grows);
        `spend`, when given, replaces what the run's calls have charged so far.

        Args:
            run_id: the run written.
            tasks: task states to upsert.
            events: events to append.
            graph: the run's new graph spec, if it changed.
            spend: what the run's calls have charged so far, if it changed.
            after: what the previous batch returned, from the run's one writer (the holder of
                its lease): the batch then reads nothing before it writes. When the numbers
                turn out taken (another process wrote the run meanwhile), the batch is written
                again after the run's own.
            approvals: rounds tasks paused in, the calls they wait for, and inline decisions,
                written with the events that announce them (`delegate.memory._approvals`).
            steps: calls of multi-call tasks answered since the last batch, and the tasks
                whose journals end (`delegate.memory._steps`).
            outcomes: learned routing's outcomes of tasks that ended since the last batch
                (`delegate.memory._routing`), kept with the results they come from.

        Returns:
            The run's last event number and a task position at or after its last (pass it as
            `after` to the next batch).

        Raises:
            ConfigError: a record belongs to another run.
            StoreError: there is no run with this id.
        """
        for other in {r.run_id for r in tasks} | {e.run_id for e in events}:
            if other != run_id:
                raise ConfigError(
                    f"write_batch for run {run_id!r} got a record of run {other!r}; "
                    "batch each run's records separately"
                )
        latest = {task.task_id: task for task in tasks}
        try:
            with self._connection(write=True) as conn:
                seq = self._write_batch(
                    conn, run_id, list(latest.values()), events, graph, spend, after
                )
                if approvals is not None:
                    _approvals.write(conn, self.dialect, run_id, approvals)
                if steps is not None:
                    _steps.write(conn, self.dialect, run_id, steps)
                if outcomes:
                    _routing.add_outcomes(conn, outcomes)
                return seq
        except IntegrityError:
            if after is None:
                raise
        # Numbers taken by another writer of the run: again, after the stored ones.
        return self.write_batch(
            run_id,
            tasks,
            events,
            graph=graph,
            spend=spend,
            approvals=approvals,
            steps=steps,
            outcomes=outcomes,
        )

    def _write_batch(
        self,
        conn: Connection,
        run_id: str,
        tasks: list[TaskState],
        events: Sequence[EventState],
        graph: dict[str, Any] | None,
        spend: dict[str, Any] | None,
        after: tuple[int, int] | None,
    ) -> tuple[int, int]:
        # A run the writer has written before exists still (delegate never deletes one): on
        # SQLite, where BEGIN IMMEDIATE already holds the write lock, it is not looked up again.
        if (after is None or self.dialect == "postgresql") and conn.exec_driver_sql(
            self._run_lock, (run_id,)
        ).first() is None:
            raise self._no_run(run_id)
        if graph is not None:
            conn.execute(
                update(RunRow)
                .where(RunRow.id == run_id)
                .values(graph=dump_json(graph, f"run {run_id!r}: graph"))
            )
        if spend is not None:
            conn.exec_driver_sql(
                self._spend_upsert, (run_id, dump_json(spend, f"run {run_id!r}: spend"))
            )
        redact = _secrets.json_redactor()  # the credentials known now, for every row
        seq, position = (None, None) if after is None else after
        if tasks:
            position = self._upsert_tasks(conn, run_id, tasks, redact, position)
        if events:
            if seq is None:
                seq = conn.exec_driver_sql(self._last_seq, (run_id,)).scalar_one()
            what = "event {!r} of run {!r}: data"
            rows = [
                (
                    run_id,
                    seq + i,
                    ev.kind,
                    ev.at,
                    dump_json(ev.data, what, ev.kind, run_id, redact=redact),
                )
                for i, ev in enumerate(events, start=1)
            ]
            # The hottest insert of a durable run (every scheduler event).
            _insert_rows(conn, self._events_insert, rows)
            seq += len(rows)
        if seq is None:
            seq = conn.exec_driver_sql(self._last_seq, (run_id,)).scalar_one()
        if position is None:
            position = conn.exec_driver_sql(self._last_position, (run_id,)).scalar_one()
        return seq, position

    def _upsert_tasks(
        self,
        conn: Connection,
        run_id: str,
        tasks: list[TaskState],
        redact: Callable[[str], str] | None = None,
        last: int | None = None,
    ) -> int:
        """Upsert `tasks` after position `last` (the run's last, read when None); returns the
        position of the last one (a task stored already keeps its own: there may be gaps)."""
        if last is None:
            last = conn.exec_driver_sql(self._last_position, (run_id,)).scalar_one()
        when = sqlite_time if self.dialect == "sqlite" else as_utc
        rows = [task_values(task, last + i, when, redact) for i, task in enumerate(tasks, start=1)]
        # The other hot write of a durable run (`ON CONFLICT ... DO UPDATE` reads the same on
        # SQLite and PostgreSQL). On conflict the task keeps its first position, so get_tasks
        # lists first-write order.
        _insert_rows(conn, self._tasks_upsert, rows)
        return last + len(rows)

    # -- leases: who owns a running run ---------------------------------------------------------

    def acquire_lease(
        self, run_id: str, owner: str, *, seconds: float, force: bool = False
    ) -> LeaseRecord:
        """Make `owner` (this process) the owner of the run for `seconds`, renewable.

        Compare-and-set in one write transaction (SQLite's writer lock, a row lock on
        PostgreSQL): of two processes taking the same run at once, one gets it.

        Raises:
            RunLeasedError: another owner's lease is live (unless `force`).
            StoreError: there is no run with this id.
        """
        lease = _new_lease(run_id, owner, seconds)
        now = lease.heartbeat_at
        with self._write() as session:
            conn = session.connection()
            self._lock_run(conn, run_id)
            current = session.get(RunLeaseRow, run_id)
            if current is not None:
                held = lease_record(current)
                if held.owner != owner and held.live(now) and not force and not lease_is_dead(held):
                    who = held.describe(now)
                    raise RunLeasedError(
                        f"run {run_id!r} is being run by {who}; wait for it to finish (or for "
                        "its lease to expire, if that process died), or take it over with "
                        f"force=True (`delegate resume {run_id} --force`) if you know it is "
                        "dead",
                        run_id=run_id,
                        owner=who,
                    )
                conn.execute(delete(RunLeaseRow).where(RunLeaseRow.run_id == run_id))
            conn.exec_driver_sql(self._lease_insert, self._lease_row(lease))
        return lease

    def renew_lease(self, run_id: str, owner: str, *, seconds: float) -> bool:
        """Extend `owner`'s lease by `seconds` from now; False when it is no longer the owner
        (the lease was taken over)."""
        now = utc_now()
        with self._write() as session:
            result = session.connection().execute(
                update(RunLeaseRow)
                .where(RunLeaseRow.run_id == run_id, RunLeaseRow.owner == owner)
                .values(heartbeat_at=now, expires_at=now + datetime.timedelta(seconds=seconds))
            )
            return bool(result.rowcount)

    def release_lease(self, run_id: str, owner: str) -> None:
        """Give the run up (it finished or stopped); nothing happens when `owner` lost it."""
        with self._connection(write=True) as conn:
            conn.exec_driver_sql(self._lease_release, (run_id, owner))

    def get_lease(self, run_id: str) -> LeaseRecord | None:
        """The run's lease, live or expired; None when nobody owns it."""
        with self._read() as session:
            row = session.get(RunLeaseRow, run_id)
            return None if row is None else lease_record(row)

    def _lock_run(self, conn: Connection, run_id: str) -> None:
        if conn.exec_driver_sql(self._run_lock, (run_id,)).first() is None:
            raise self._no_run(run_id)

    def get_tasks(self, run_id: str) -> list[TaskRecord]:
        """The run's tasks, in the order each was first written."""
        query = select(TaskRow).where(TaskRow.run_id == run_id).order_by(TaskRow.position)
        with self._read() as session:
            return [task_record(row) for row in session.scalars(query)]

    def get_events(
        self, run_id: str, *, after: int = 0, kinds: Sequence[str] | None = None
    ) -> list[EventRecord]:
        """The run's events numbered above `after` (only those of `kinds`, if given), in order."""
        query = select(EventRow).where(EventRow.run_id == run_id, EventRow.seq > after)
        if kinds is not None:
            query = query.where(EventRow.kind.in_(list(kinds)))
        query = query.order_by(EventRow.seq)
        with self._read() as session:
            return [event_record(row) for row in session.scalars(query)]

    # -- memories -------------------------------------------------------------------------------

    def put_memory(
        self,
        namespace: str,
        key: str,
        value: Any,
        *,
        text: str | None = None,
        tags: Sequence[str] = (),
        run_id: str | None = None,
        task_id: str | None = None,
    ) -> MemoryRecord:
        """Write a new version of (namespace, key): the previous version + 1, or 1.

        Raises:
            ConfigError: the namespace, key or tags are not valid, or the value is not JSON.
        """
        validate_namespace(namespace)
        validate_key(key)
        tag_list = validate_tags(tags)
        if text is not None and "\x00" in text:
            raise ConfigError(f"memory {key!r}: text contains a NUL character; remove it")
        row: dict[str, Any] = {
            "namespace": namespace,
            "key": key,
            "value": dump_json(value, f"memory {key!r} in namespace {namespace!r}"),
            "text": mask_secrets(text),
            "tags": json.dumps(tag_list, ensure_ascii=False),
            "run_id": run_id,
            "task_id": task_id,
            "created_at": utc_now(),
        }
        with self._write() as session:
            conn = session.connection()
            if self.dialect == "postgresql":
                # Writers of one key queue here; the namespace has no spaces, so the lock's
                # name is unambiguous.
                conn.execute(_PG_KEY_LOCK, {"name": f"delegate.memory {namespace} {key}"})
            version = conn.execute(
                select(func.coalesce(func.max(MemoryRow.version), 0)).where(
                    MemoryRow.namespace == namespace, MemoryRow.key == key
                )
            ).scalar_one()
            row["version"] = version + 1
            result = conn.execute(self._insert(MemoryRow), row)
            memory_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
            if tag_list:
                conn.execute(
                    self._insert(MemoryTagRow),
                    [{"memory_id": memory_id, "tag": tag} for tag in tag_list],
                )
        return MemoryRecord(
            namespace=namespace,
            key=key,
            version=row["version"],
            value=json.loads(row["value"]),
            text=text,
            tags=tag_list,
            run_id=run_id,
            task_id=task_id,
            created_at=row["created_at"],
        )

    def get_memory(self, namespace: str, key: str) -> MemoryRecord | None:
        """The latest version of (namespace, key), or None."""
        validate_namespace(namespace)
        validate_key(key)
        query = (
            select(MemoryRow)
            .where(MemoryRow.namespace == namespace, MemoryRow.key == key)
            .order_by(MemoryRow.version.desc())
            .limit(1)
        )
        with self._read() as session:
            row = session.scalars(query).first()
            return None if row is None else memory_record(row)

    def memory_history(self, namespace: str, key: str) -> list[MemoryRecord]:
        """Every version of (namespace, key), oldest first."""
        validate_namespace(namespace)
        validate_key(key)
        query = (
            select(MemoryRow)
            .where(MemoryRow.namespace == namespace, MemoryRow.key == key)
            .order_by(MemoryRow.version)
        )
        with self._read() as session:
            return [memory_record(row) for row in session.scalars(query)]

    def list_memories(self, namespace: str, prefix: str = "") -> list[MemoryRecord]:
        """The latest version of every key in `namespace` starting with `prefix`, by key."""
        validate_namespace(namespace)
        query = (
            select(MemoryRow)
            .where(MemoryRow.namespace == namespace, is_latest())
            .order_by(MemoryRow.key)
        )
        if prefix:
            # substr, not LIKE: LIKE is case-insensitive on SQLite and needs escaping.
            query = query.where(func.substr(MemoryRow.key, 1, len(prefix)) == prefix)
        with self._read() as session:
            return [memory_record(row) for row in session.scalars(query)]

    def search_memories(
        self,
        query: str,
        *,
        namespaces: Sequence[str],
        tags: Sequence[str] | None = None,
        limit: int = 10,
    ) -> list[MemoryRecord]:
        """Full-text search over the latest versions in `namespaces`, best match first.

        The query is split into words (letters and digits); an entry matches when it contains
        any of them in its key, text or value, and entries with more and rarer matches rank
        higher. Operators and punctuation in the query are plain separators, never syntax.

        Args:
            query: the words to look for.
            namespaces: where to look; at least one (an empty list is an error, not "all").
            tags: when given, only entries carrying every one of these tags.
            limit: the most entries to return.

        Raises:
            ConfigError: no namespace, or a namespace or tag that is not valid.
        """
        if isinstance(namespaces, str):
            namespaces = [namespaces]
        if not namespaces:
            raise ConfigError(
                "search_memories needs at least one namespace; pass namespaces=[...] "
                "(the run's, the workflow's, 'global') — there is no search over everything"
            )
        for namespace in namespaces:
            validate_namespace(namespace)
        tag_list = validate_tags(tags or ())
        words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))[:MAX_SEARCH_TERMS]
        if not words or limit <= 0:
            return []
        search = sqlite_search if self.dialect == "sqlite" else pg_search
        with self._read() as session:
            ids = search(session.connection(), words, list(namespaces), tag_list, limit)
            if not ids:
                return []
            rows = {
                r.id: r for r in session.scalars(select(MemoryRow).where(MemoryRow.id.in_(ids)))
            }
            return [memory_record(rows[i]) for i in ids if i in rows]

    # -- model-call cache -----------------------------------------------------------------------

    def get_cached(self, key: str) -> dict[str, Any] | None:
        """The cached response stored under `key`, or None."""
        with self._read() as session:
            row = session.get(CacheRow, key)
            if row is None:
                return None
            return load_json_dict(
                row.response, table="cache", row=f"key {key!r}", column="response"
            )

    def put_cached(self, key: str, model: str, response: dict[str, Any]) -> None:
        """Store (or replace) the response cached under `key`."""
        if not 1 <= len(key) <= 200:
            raise ConfigError(f"cache key must be 1-200 characters, got {len(key)}")
        values = {
            "key": key,
            "model": model,
            "response": dump_json(response, f"cached response {key!r}"),
            "created_at": utc_now(),
        }
        stmt = sqlite_insert(CacheRow) if self.dialect == "sqlite" else pg_insert(CacheRow)
        upsert = stmt.on_conflict_do_update(
            index_elements=[CacheRow.key],
            set_={c: stmt.excluded[c] for c in ("model", "response", "created_at")},
        )
        with self._write() as session:
            session.connection().execute(upsert, values)

    # -- journals of multi-call tasks (see `delegate.memory._steps`) -----------------------------

    def get_steps(self, run_id: str) -> dict[str, dict[tuple[str, int], dict[str, Any]]]:
        """The run's journals, in one query: task id → (request key, occurrence) → the
        response as JSON data (`write_batch(..., steps=)` writes them)."""
        with self._read() as session:
            return _steps.load(session, run_id)

    # -- tool calls that wait for a human (see `delegate.memory._approvals`) ---------------------

    def save_pauses(
        self,
        run_id: str,
        paused: Mapping[str, Mapping[str, Any]],
        calls: Sequence[ApprovalRecord],
    ) -> None:
        """Make the run's paused tasks exactly `paused` (task id → where its agent stopped, as
        JSON) and add the pending `calls` (a call already stored keeps its decision)."""
        with self._write() as session:
            _approvals.save_pauses(session, self.dialect, run_id, paused, calls)

    def get_paused(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The run's paused tasks: task id → where its agent stopped (`save_pauses`)."""
        with self._read() as session:
            return _approvals.load_paused(session, run_id)

    def list_approvals(self, run_id: str) -> list[ApprovalRecord]:
        """Every call of the run that needed a decision, pending or decided, oldest first."""
        with self._read() as session:
            return _approvals.list_approvals(session, run_id)

    def list_pending(self, run_id: str | None = None) -> list[ApprovalRecord]:
        """The calls waiting for a decision: of `run_id`, or (None) of every waiting run."""
        with self._read() as session:
            return _approvals.list_pending(session, run_id)

    def decide_call(
        self, run_id: str, call_id: str, *, approve: bool, reason: str | None = None
    ) -> ApprovalRecord:
        """Record a human's decision on a pending tool call; a resume acts on it.

        Raises:
            ConfigError: no such run or call (with a did-you-mean), or the call was already
                decided the other way.
        """
        with self._write() as session:
            return _approvals.decide(
                session, self.url, run_id, call_id, approve=approve, reason=reason
            )

    # -- learned routing (see `delegate.memory._routing`) ----------------------------------------

    def add_routing_outcomes(self, outcomes: Sequence[_routing.RoutingOutcome]) -> None:
        """Keep the outcomes of a run's routed tasks (one transaction)."""
        if not outcomes:
            return
        with self._write() as session:
            _routing.add_outcomes(session, outcomes)

    def routing_history(self, namespace: str) -> list[_routing.ArmHistory]:
        """Trials, passes and cost of every (task kind, arm) routed in `namespace`."""
        with self._read() as session:
            return _routing.history(session, namespace)

    # -- helpers --------------------------------------------------------------------------------

    def _insert(self, table: type[Any]) -> Any:
        return sqlite_insert(table) if self.dialect == "sqlite" else pg_insert(table)

    def _no_run(self, run_id: str) -> StoreError:
        return StoreError(f"run {run_id!r} is not in {self.url}; create_run it first")


def _new_lease(run_id: str, owner: str, seconds: float) -> LeaseRecord:
    """`owner`'s lease on the run, from now for `seconds`, naming this process."""
    now = utc_now()
    return LeaseRecord(
        run_id=run_id,
        owner=owner,
        host=socket.gethostname(),
        pid=os.getpid(),
        heartbeat_at=now,
        expires_at=now + datetime.timedelta(seconds=seconds),
    )


_MAX_PARAMETERS = 999
"""Bound parameters of one statement: the smallest limit of the SQLite builds in use (3.32 raised
its default to 32,766)."""


class _RowsInsert:
    """An INSERT of many rows in one statement: its text for each number of rows, built once."""

    __slots__ = ("_head", "_row", "_tail", "_texts", "most")

    def __init__(self, head: str, mark: str, columns: int, tail: str = "") -> None:
        self._head, self._tail = head, tail
        self._row = f"({', '.join(mark for _ in range(columns))})"
        self._texts: dict[int, str] = {}
        # The most rows of a statement: a power of two, so that a batch of any size takes a
        # few distinct statements (each prepared once, then reused from the driver's cache).
        self.most = 1 << ((_MAX_PARAMETERS // columns).bit_length() - 1)

    def text(self, rows: int) -> str:
        found = self._texts.get(rows)
        if found is None:
            found = self._texts[rows] = f"{self._head}{', '.join([self._row] * rows)}{self._tail}"
        return found


def _insert_rows(conn: Connection, insert: _RowsInsert, rows: list[tuple[Any, ...]]) -> None:
    """`rows` in a few statements of many rows each (largest powers of two first), bound
    parameters only.

    Not `executemany`: it steps the database once per row, and each step gives the GIL up and
    takes it back, which a busy event loop in another thread delays by up to the interpreter's
    switch interval (5 ms). A run's writer thread would write a few rows per tick.
    """
    done, count = 0, len(rows)
    while done < count:
        size = min(insert.most, 1 << ((count - done).bit_length() - 1))
        chunk = rows[done : done + size]
        conn.exec_driver_sql(insert.text(size), tuple(chain.from_iterable(chunk)))
        done += size


_PG_KEY_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))")
