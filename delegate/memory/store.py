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
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
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
from delegate.memory import migrations
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
        self._events_insert = (
            f"INSERT INTO events (run_id, seq, kind, at, data) "
            f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark})"
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
        self._tasks_upsert = (
            f"INSERT INTO tasks ({', '.join(TASK_COLUMNS)}) "
            f"VALUES ({', '.join(mark for _ in TASK_COLUMNS)}) "
            "ON CONFLICT (run_id, task_id) DO UPDATE SET "
            + ", ".join(f"{name} = excluded.{name}" for name in TASK_UPDATED)
        )
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
        exit; without a `Session`, for the run writer's batches."""
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
                    yield conn
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
        what = f"run {run.id!r}"
        row = {
            "id": run.id,
            "workflow": run.workflow,
            "goal": mask_secrets(run.goal),
            "inputs": dump_json(run.inputs, f"{what}: inputs"),
            "graph": dump_json(run.graph, f"{what}: graph"),
            "status": run.status,
            "budget": None if run.budget is None else dump_json(run.budget, f"{what}: budget"),
            "usage": None if run.usage is None else dump_json(run.usage, f"{what}: usage"),
            "output": dump_json(run.output, f"{what}: output"),
            "error": mask_secrets(run.error),
            "created_at": run.created_at,
            "finished_at": run.finished_at,
        }
        try:
            with self._write() as session:
                conn = session.connection()
                conn.execute(self._insert(RunRow), row)
                if run.spend is not None:
                    conn.exec_driver_sql(
                        self._spend_upsert, (run.id, dump_json(run.spend, f"{what}: spend"))
                    )
        except IntegrityError:
            raise RunExistsError(
                f"run {run.id!r} already exists in {self.url}; resume it with "
                f"`await orch.resume({run.id!r})` (or orch.resume_sync), or pick another run_id",
                run_id=run.id,
            ) from None

    def finish_run(
        self, run_id: str, *, status: str, output: Any, usage: dict[str, Any], error: str | None
    ) -> None:
        """Record how a run ended, and when.

        Raises:
            StoreError: there is no run with this id.
        """
        values = {
            "status": status,
            "output": dump_json(output, f"run {run_id!r}: output"),
            "usage": dump_json(usage, f"run {run_id!r}: usage"),
            "error": mask_secrets(error),
            "finished_at": utc_now(),
        }
        with self._write() as session:
            result = session.connection().execute(
                update(RunRow).where(RunRow.id == run_id).values(**values)
            )
            if result.rowcount == 0:
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
    ) -> None:
        """In one write transaction, upsert `tasks` and append `events` to the run's log.

        Tasks are upserted by (run_id, task_id); the last record of a task in the batch wins.
        Events get the numbers following the run's last event (their own `seq` is ignored).
        `graph`, when given, replaces the run's graph spec (a planned run's graph grows);
        `spend`, when given, replaces what the run's calls have charged so far.

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
        with self._connection(write=True) as conn:
            if conn.exec_driver_sql(self._run_lock, (run_id,)).first() is None:
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
            if latest:
                self._upsert_tasks(conn, run_id, list(latest.values()), redact)
            if events:
                last = conn.exec_driver_sql(self._last_seq, (run_id,)).scalar_one()
                what = "event {!r} of run {!r}: data"
                rows = [
                    (
                        run_id,
                        last + i,
                        ev.kind,
                        ev.at,
                        dump_json(ev.data, what, ev.kind, run_id, redact=redact),
                    )
                    for i, ev in enumerate(events, start=1)
                ]
                # The hottest insert of a durable run (every scheduler event): straight to the
                # driver's executemany, with bound parameters, skipping SQLAlchemy's per-row
                # parameter processing (about half the cost of a batch).
                conn.exec_driver_sql(self._events_insert, rows)

    def _upsert_tasks(
        self,
        conn: Connection,
        run_id: str,
        tasks: list[TaskState],
        redact: Callable[[str], str] | None = None,
    ) -> None:
        last = conn.exec_driver_sql(self._last_position, (run_id,)).scalar_one()
        when = sqlite_time if self.dialect == "sqlite" else as_utc
        rows = [task_values(task, last + i, when, redact) for i, task in enumerate(tasks, start=1)]
        # The other hot write of a durable run: the driver's executemany with bound parameters
        # (`ON CONFLICT ... DO UPDATE` reads the same on SQLite and PostgreSQL). On conflict the
        # task keeps its first position, so get_tasks lists first-write order.
        conn.exec_driver_sql(self._tasks_upsert, rows)

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
        now = utc_now()
        lease = LeaseRecord(
            run_id=run_id,
            owner=owner,
            host=socket.gethostname(),
            pid=os.getpid(),
            heartbeat_at=now,
            expires_at=now + datetime.timedelta(seconds=seconds),
        )
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
            conn.execute(self._insert(RunLeaseRow), lease.model_dump())
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
        with self._write() as session:
            session.connection().execute(
                delete(RunLeaseRow).where(RunLeaseRow.run_id == run_id, RunLeaseRow.owner == owner)
            )

    def get_lease(self, run_id: str) -> LeaseRecord | None:
        """The run's lease, live or expired; None when nobody owns it."""
        with self._read() as session:
            row = session.get(RunLeaseRow, run_id)
            return None if row is None else lease_record(row)

    def _lock_run(self, conn: Connection, run_id: str) -> None:
        lock = select(RunRow.id).where(RunRow.id == run_id)
        if self.dialect == "postgresql":
            lock = lock.with_for_update()
        if conn.execute(lock).first() is None:
            raise self._no_run(run_id)

    def get_tasks(self, run_id: str) -> list[TaskRecord]:
        """The run's tasks, in the order each was first written."""
        query = select(TaskRow).where(TaskRow.run_id == run_id).order_by(TaskRow.position)
        with self._read() as session:
            return [task_record(row) for row in session.scalars(query)]

    def get_events(self, run_id: str, *, after: int = 0) -> list[EventRecord]:
        """The run's events numbered above `after`, in order."""
        query = (
            select(EventRow)
            .where(EventRow.run_id == run_id, EventRow.seq > after)
            .order_by(EventRow.seq)
        )
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

    # -- helpers --------------------------------------------------------------------------------

    def _insert(self, table: type[Any]) -> Any:
        return sqlite_insert(table) if self.dialect == "sqlite" else pg_insert(table)

    def _no_run(self, run_id: str) -> StoreError:
        return StoreError(f"run {run_id!r} is not in {self.url}; create_run it first")


_PG_KEY_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))")
