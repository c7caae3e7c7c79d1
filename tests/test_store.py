"""Store: runs, tasks, events, versioned memories, search, cache, migrations, concurrency.

Every test that takes `store` or `store_url` runs on SQLite and, when reachable, PostgreSQL.
"""

from __future__ import annotations

import datetime
import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from _backends import store_url, write_memories  # noqa: F401 - store_url is a fixture
from sqlalchemy import create_engine, text

from delegate.errors import ConfigError
from delegate.memory.migrations import SCRIPT_LOCATION
from delegate.memory.records import EventRecord, MemoryRecord, RunRecord, TaskRecord
from delegate.memory.schema import SCHEMA_REVISION
from delegate.memory.store import CorruptRecordError, RunExistsError, Store, StoreError

UTC = datetime.UTC
T0 = datetime.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:  # noqa: F811 - the fixture above, by name
    s = Store.open(store_url)
    yield s
    s.close()


def _raw(store: Store, sql: str, **params: Any) -> None:
    with store._write() as session:
        session.connection().execute(text(sql), params)


def _run(run_id: str = "r1", **kw: Any) -> RunRecord:
    return RunRecord(id=run_id, created_at=kw.pop("created_at", T0), **kw)


# -- runs, tasks, events -----------------------------------------------------------------------


def test_run_round_trip_and_finish(store: Store) -> None:
    run = RunRecord(
        id="r1",
        workflow="triage",
        goal="sort the inbox",
        inputs={"n": 3, "text": "héllo ✓"},
        graph={"tasks": [{"id": "a", "deps": []}]},
        status="running",
        budget={"usd": 0.5},
        output=None,
        created_at=T0,
    )
    store.create_run(run)
    assert store.get_run("r1") == run
    assert store.get_run("missing") is None

    store.finish_run(
        "r1", status="succeeded", output={"answer": [1, 2.5, None]}, usage={"calls": 2}, error=None
    )
    done = store.get_run("r1")
    assert done is not None
    assert (done.status, done.output, done.usage, done.error) == (
        "succeeded",
        {"answer": [1, 2.5, None]},
        {"calls": 2},
        None,
    )
    assert done.finished_at is not None
    assert done.finished_at.tzinfo == UTC
    with pytest.raises(StoreError, match="run 'nope' is not in"):
        store.finish_run("nope", status="failed", output=None, usage={}, error="x")


def test_create_run_twice_points_at_resume(store: Store) -> None:
    store.create_run(_run("r1", goal="first"))
    with pytest.raises(
        RunExistsError, match=r"run 'r1' already exists .*orch\.resume\('r1'\)"
    ) as info:
        store.create_run(_run("r1", goal="second"))
    assert info.value.run_id == "r1"
    run = store.get_run("r1")
    assert run is not None
    assert run.goal == "first"


def test_list_runs_newest_first_with_limit(store: Store) -> None:
    for i in range(5):
        store.create_run(_run(f"r{i}", created_at=T0 + datetime.timedelta(seconds=i)))
    assert [r.id for r in store.list_runs(limit=3)] == ["r4", "r3", "r2"]
    assert [r.id for r in store.list_runs()] == ["r4", "r3", "r2", "r1", "r0"]


def test_write_batch_upserts_tasks_in_first_write_order(store: Store) -> None:
    store.create_run(_run())
    a1 = TaskRecord(run_id="r1", task_id="a", status="running", attempts=1, started_at=T0)
    b1 = TaskRecord(run_id="r1", task_id="b", status="pending")
    store.write_batch("r1", [a1, b1], [])
    a2 = a1.model_copy(update={"status": "succeeded", "output": {"x": 1}, "finished_at": T0})
    c1 = TaskRecord(run_id="r1", task_id="c", spec={"agent": "w"}, usage={"calls": 1})
    c2 = c1.model_copy(update={"status": "failed", "error": "boom", "attempts": 2})
    store.write_batch("r1", [c1, a2, c2], [])
    assert store.get_tasks("r1") == [a2, b1, c2]
    assert store.get_tasks("other") == []


def test_events_are_numbered_gap_free_across_batches(store: Store) -> None:
    store.create_run(_run("r1"))
    store.create_run(_run("r2"))
    batch = [
        EventRecord(run_id="r1", seq=99, kind=f"k{i}", at=float(i), data={"i": i}) for i in range(3)
    ]
    store.write_batch("r1", [], batch)
    store.write_batch("r2", [], [EventRecord(run_id="r2", kind="other", at=0.0)])
    store.write_batch("r1", [], [EventRecord(run_id="r1", kind="k3", at=3.0, data={"i": 3})])
    events = store.get_events("r1")
    assert [(e.seq, e.kind, e.data) for e in events] == [
        (1, "k0", {"i": 0}),
        (2, "k1", {"i": 1}),
        (3, "k2", {"i": 2}),
        (4, "k3", {"i": 3}),
    ]
    assert [e.seq for e in store.get_events("r1", after=2)] == [3, 4]
    assert [(e.seq, e.kind) for e in store.get_events("r2")] == [(1, "other")]


def test_write_batch_refuses_unknown_run_and_foreign_records(store: Store) -> None:
    with pytest.raises(StoreError, match=r"run 'ghost' is not in .*create_run it first"):
        store.write_batch("ghost", [], [EventRecord(run_id="ghost", kind="k", at=0.0)])
    store.create_run(_run("r1"))
    with pytest.raises(ConfigError, match="write_batch for run 'r1' got a record of run 'r2'"):
        store.write_batch("r1", [TaskRecord(run_id="r2", task_id="a")], [])
    assert store.get_events("ghost") == []
    assert store.get_tasks("r1") == []


def test_concurrent_batches_from_threads_keep_seq_gap_free(store: Store) -> None:
    store.create_run(_run("r1"))

    def writer(w: int) -> None:
        for i in range(20):
            events = [EventRecord(run_id="r1", kind=f"w{w}", at=float(i)) for _ in range(3)]
            store.write_batch("r1", [TaskRecord(run_id="r1", task_id=f"t{w}", attempts=i)], events)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.seq for e in store.get_events("r1")] == list(range(1, 241))
    assert sorted((t.task_id, t.attempts) for t in store.get_tasks("r1")) == [
        (f"t{w}", 19) for w in range(4)
    ]


# -- memories ----------------------------------------------------------------------------------


def test_memory_versions_and_history(store: Store) -> None:
    assert store.get_memory("global", "k") is None
    assert store.memory_history("global", "k") == []
    first = store.put_memory(
        "global", "k", {"v": 1}, text="one", tags=["a", "b", "a"], run_id="r1", task_id="t"
    )
    second = store.put_memory("global", "k", [1, "two"], text=None)
    third = store.put_memory("run:r1", "k", "other namespace")
    assert (first.version, second.version, third.version) == (1, 2, 1)
    assert first.tags == ["a", "b"]
    assert store.get_memory("global", "k") == second
    assert store.memory_history("global", "k") == [first, second]
    assert store.get_memory("run:r1", "k") == third


def test_list_memories_latest_by_key_with_case_sensitive_prefix(store: Store) -> None:
    store.put_memory("ns", "user.a", 1)
    store.put_memory("ns", "user.a", 2)
    store.put_memory("ns", "user%b", 3)
    store.put_memory("ns", "User.c", 4)
    store.put_memory("ns", "other", 5)
    store.put_memory("ns2", "user.d", 6)
    assert [(m.key, m.value) for m in store.list_memories("ns", "user")] == [
        ("user%b", 3),
        ("user.a", 2),
    ]
    assert [m.key for m in store.list_memories("ns", "user%")] == ["user%b"]
    assert [m.key for m in store.list_memories("ns")] == ["User.c", "other", "user%b", "user.a"]


@pytest.mark.parametrize(
    ("namespace", "key"),
    [
        ("", "k"),
        ("a b", "k"),
        ("x'; DROP TABLE memories; --", "k"),
        ("n" * 201, "k"),
        ("ns", ""),
        ("ns", "a\nb"),
        ("ns", "k" * 501),
        ("ns", "tab\there"),
    ],
)
def test_invalid_namespaces_and_keys_fail_closed(store: Store, namespace: str, key: str) -> None:
    with pytest.raises(ConfigError, match="is not valid"):
        store.put_memory(namespace, key, 1)
    with pytest.raises(ConfigError, match="is not valid"):
        store.get_memory(namespace, key)


def test_values_must_be_json(store: Store) -> None:
    with pytest.raises(ConfigError, match=r"memory 'k' in namespace 'ns' cannot be stored: .*JSON"):
        store.put_memory("ns", "k", {1, 2})
    with pytest.raises(ConfigError, match="cannot be stored"):
        store.put_memory("ns", "k", float("nan"))
    assert store.get_memory("ns", "k") is None


@pytest.mark.parametrize(
    "key",
    ["'; DROP TABLE memories; --", 'quote " inside', "x' OR '1'='1", "NEAR(a b)", "*", "%_\\"],
)
def test_hostile_keys_round_trip_verbatim(store: Store, key: str) -> None:
    store.put_memory("ns", key, {"k": key}, text=key)
    store.put_memory("ns", "bystander", 1)
    got = store.get_memory("ns", key)
    assert got is not None
    assert got.key == key
    assert got.value == {"k": key}
    assert sorted(m.key for m in store.list_memories("ns")) == sorted(["bystander", key])
    assert [m.key for m in store.list_memories("ns", key)] == [key]


# -- search ------------------------------------------------------------------------------------


@pytest.fixture
def corpus(store: Store) -> Store:
    store.put_memory("global", "paris", {"country": "france"}, text="the capital city of France")
    store.put_memory(
        "global", "berlin", {"country": "germany"}, text="capital of Germany", tags=["eu", "city"]
    )
    store.put_memory("global", "madrid", "spain", text="capital of Spain", tags=["eu"])
    store.put_memory("global", "note", "a capital idea about OR and NEAR operators")
    store.put_memory("run:r1", "paris", "run-local notes on paris")
    # An old version mentioning "tokyo" is overwritten: only the latest is searchable.
    store.put_memory("global", "old", "tokyo", text="tokyo tower")
    store.put_memory("global", "old", "kyoto", text="kyoto temple")
    return store


def _keys(records: list[MemoryRecord]) -> list[tuple[str, str]]:
    return [(m.namespace, m.key) for m in records]


def test_search_finds_latest_versions_in_given_namespaces(corpus: Store) -> None:
    assert _keys(corpus.search_memories("kyoto", namespaces=["global"])) == [("global", "old")]
    assert corpus.search_memories("tokyo", namespaces=["global"]) == []
    assert _keys(corpus.search_memories("paris", namespaces=["global"])) == [("global", "paris")]
    assert _keys(corpus.search_memories("paris", namespaces=["run:r1"])) == [("run:r1", "paris")]
    assert sorted(_keys(corpus.search_memories("paris", namespaces=["global", "run:r1"]))) == [
        ("global", "paris"),
        ("run:r1", "paris"),
    ]
    assert corpus.search_memories("paris", namespaces=["workflow:x"]) == []


def test_search_ranks_key_and_repeated_matches_first(corpus: Store) -> None:
    # "germany" is in berlin's text and value; "france" in paris's text and value; a query
    # matching both words of one entry ranks it above entries matching one word.
    found = _keys(corpus.search_memories("germany capital", namespaces=["global"]))
    assert found[0] == ("global", "berlin")
    assert set(found) == {("global", k) for k in ("berlin", "paris", "madrid", "note")}
    # Words match case-insensitively and searching the value's JSON text works.
    assert _keys(corpus.search_memories("SPAIN", namespaces=["global"])) == [("global", "madrid")]
    assert len(corpus.search_memories("capital", namespaces=["global"], limit=2)) == 2


def test_search_tags_filter_requires_every_tag(corpus: Store) -> None:
    assert sorted(_keys(corpus.search_memories("capital", namespaces=["global"], tags=["eu"]))) == [
        ("global", "berlin"),
        ("global", "madrid"),
    ]
    assert _keys(corpus.search_memories("capital", namespaces=["global"], tags=["eu", "city"])) == [
        ("global", "berlin")
    ]
    assert corpus.search_memories("capital", namespaces=["global"], tags=["eu", "nope"]) == []


def test_search_without_namespaces_fails_closed(corpus: Store) -> None:
    with pytest.raises(ConfigError, match="needs at least one namespace"):
        corpus.search_memories("capital", namespaces=[])
    with pytest.raises(ConfigError, match="is not valid"):
        corpus.search_memories("capital", namespaces=["global' OR '1'='1"])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"', []),
        ("*", []),
        ("NEAR(", [("global", "note")]),
        ("capital*", ["berlin", "madrid", "note", "paris"]),
        ('kyoto" OR "capital', ["berlin", "madrid", "note", "old", "paris"]),
        ("'; DROP TABLE memories; --", []),
        ("OR", [("global", "note")]),
        ("kyoto AND NOT tower", ["note", "old"]),  # "and" is a word of note
        ("col:kyoto ^kyoto {kyoto} (kyoto)", [("global", "old")]),
        ("kyoto & !temple | <-> :*", [("global", "old")]),
    ],
)
def test_search_text_is_data_never_syntax(corpus: Store, query: str, expected: list[Any]) -> None:
    found = _keys(corpus.search_memories(query, namespaces=["global"]))
    if expected and isinstance(expected[0], str):
        assert sorted(found) == [("global", k) for k in expected]
    else:
        assert found == expected
    # Nothing was dropped or rewritten.
    assert corpus.get_memory("global", "paris") is not None
    assert len(corpus.list_memories("global")) == 5


# -- cache -------------------------------------------------------------------------------------


def test_cache_round_trip_and_replace(store: Store) -> None:
    assert store.get_cached("k") is None
    store.put_cached("k", "gpt-4o-mini", {"text": "hi", "usage": {"in": 3}})
    assert store.get_cached("k") == {"text": "hi", "usage": {"in": 3}}
    store.put_cached("k", "gpt-4o-mini", {"text": "again"})
    assert store.get_cached("k") == {"text": "again"}


# -- tampered rows -----------------------------------------------------------------------------


def test_tampered_memory_is_rejected(store: Store) -> None:
    store.put_memory("ns", "k", {"ok": True})
    _raw(store, "UPDATE memories SET value = :v WHERE key = 'k'", v="{not json")
    with pytest.raises(
        CorruptRecordError,
        match=r"table 'memories', namespace='ns' key='k' version=1: column 'value'",
    ) as info:
        store.get_memory("ns", "k")
    assert (info.value.table, info.value.column) == ("memories", "value")
    _raw(store, "UPDATE memories SET value = '1', tags = :t WHERE key = 'k'", t='"a"')
    with pytest.raises(CorruptRecordError, match="column 'tags' is not a JSON list"):
        store.memory_history("ns", "k")


def test_tampered_run_task_event_and_cache_rows_are_rejected(store: Store) -> None:
    store.create_run(_run("r1"))
    store.write_batch(
        "r1", [TaskRecord(run_id="r1", task_id="a")], [EventRecord(run_id="r1", kind="k", at=0.0)]
    )
    store.put_cached("c", "m", {"x": 1})
    _raw(store, "UPDATE runs SET output = 'pickle:\x80\x04'")
    _raw(store, "UPDATE tasks SET spec = '[1, 2]'")
    _raw(store, "UPDATE events SET data = 'nan nan'")
    _raw(store, "UPDATE cache SET response = ''")
    with pytest.raises(CorruptRecordError, match="table 'runs', run 'r1': column 'output'"):
        store.get_run("r1")
    with pytest.raises(
        CorruptRecordError,
        match="table 'tasks', run 'r1' task 'a': column 'spec' holds a JSON list",
    ):
        store.get_tasks("r1")
    with pytest.raises(CorruptRecordError, match="table 'events', run 'r1' seq 1: column 'data'"):
        store.get_events("r1")
    with pytest.raises(CorruptRecordError, match="table 'cache', key 'c': column 'response'"):
        store.get_cached("c")


# -- opening and migrations --------------------------------------------------------------------


def test_migration_head_matches_schema_revision() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option(
        "script_location", str(Path(__file__).parents[1] / "delegate/memory/migrations")
    )
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION


def test_database_at_revision_0001_opens_and_keeps_its_rows(store_url: str) -> None:  # noqa: F811
    from alembic import command
    from alembic.config import Config

    engine = create_engine(store_url.replace("sqlite:///", "sqlite:///", 1))
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(
            text(
                "INSERT INTO memories (namespace, key, version, value, text, tags, created_at)"
                " VALUES ('global', 'old', 1, '\"kept\"', 'written by 0001', '[]', :at)"
            ),
            {"at": T0.replace(tzinfo=None)},
        )
    engine.dispose()
    with Store.open(store_url) as store:
        got = store.get_memory("global", "old")
        assert got is not None
        assert got.value == "kept"
        assert _keys(store.search_memories("written", namespaces=["global"])) == [("global", "old")]


def test_reopening_is_idempotent(store_url: str) -> None:  # noqa: F811
    with Store.open(store_url) as first:
        first.put_memory("ns", "k", 1)
    with Store.open(store_url) as second:
        assert second.put_memory("ns", "k", 2).version == 2


def test_database_from_a_newer_delegate_is_refused(store_url: str) -> None:  # noqa: F811
    with Store.open(store_url) as store:
        _raw(store, "UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(
        StoreError,
        match=r"schema revision '9999_future'.*written by a newer delegate; upgrade delegate",
    ):
        Store.open(store_url)


def test_memory_url_and_plain_path_and_default_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store.open(":memory:") as mem:
        assert (mem.url, mem.dialect) == ("sqlite://", "sqlite")
        mem.put_memory("ns", "k", 1)
        assert mem.get_memory("ns", "k") is not None
    with Store.open(":memory:") as fresh:
        assert fresh.get_memory("ns", "k") is None
    with Store.open(str(tmp_path / "plain.db")) as plain:
        assert plain.url == f"sqlite:///{tmp_path / 'plain.db'}"
    monkeypatch.delenv("DELEGATE_DB_URL", raising=False)
    monkeypatch.setenv("DELEGATE_HOME", str(tmp_path / "home"))
    with Store.open() as default:
        assert default.url == f"sqlite:///{tmp_path / 'home' / 'delegate.db'}"
    assert (tmp_path / "home" / "delegate.db").exists()
    monkeypatch.setenv("DELEGATE_DB_URL", str(tmp_path / "env.db"))
    with Store.open() as from_env:
        assert from_env.url == f"sqlite:///{tmp_path / 'env.db'}"


def test_unsupported_url_and_unreachable_server_hide_the_password() -> None:
    with pytest.raises(ConfigError, match="scheme 'mysql' is not supported"):
        Store.open("mysql://u:pw@localhost/db")
    with pytest.raises(StoreError) as info:
        Store.open("postgresql://user:s3cr3t-pw@127.0.0.1:1/db")
    assert "s3cr3t-pw" not in str(info.value)
    assert "postgresql+psycopg://user:***@127.0.0.1:1/db" in str(info.value)


def test_threads_sharing_an_in_memory_store_lose_nothing() -> None:
    with Store.open(":memory:") as store:

        def writer() -> None:
            for i in range(50):
                store.put_memory("ns", "shared", i)

        threads = [threading.Thread(target=writer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [m.version for m in store.memory_history("ns", "shared")] == list(range(1, 201))


# -- several processes -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_concurrent_processes_lose_nothing(store_url: str) -> None:  # noqa: F811
    workers = 2 if store_url.startswith("sqlite") else 4
    count = 500
    Store.open(store_url).close()  # migrate once, as an app would before forking workers
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(write_memories, store_url, w, count) for w in range(workers)]
        results = [f.result() for f in futures]
    assert results == [{"written": 2 * count, "locked": 0}] * workers
    with Store.open(store_url) as store:
        shared = store.memory_history("bench", "shared")
        assert [m.version for m in shared] == list(range(1, workers * count + 1))
        for w in range(workers):
            per_worker = [m for m in shared if m.value["worker"] == w]
            assert [m.value["i"] for m in per_worker] == list(range(count))
            own = store.list_memories("bench", f"own-{w}-")
            assert sorted((m.key, m.version) for m in own) == [
                (f"own-{w}-{k}", count // 10) for k in range(10)
            ]


def test_a_connection_opened_while_the_wal_is_locked_tries_again() -> None:
    import sqlite3

    from delegate.memory._engine import _wal

    class Cursor:
        """Refuses the journal-mode pragma twice, as SQLite does while another connection
        resets the WAL, then answers it."""

        def __init__(self, mode: str) -> None:
            self.mode, self.asked = mode, []

        def execute(self, sql: str) -> Cursor:
            self.asked.append(sql)
            if len(self.asked) <= 2:
                raise sqlite3.OperationalError("database is locked")
            return self

        def fetchone(self) -> tuple[str]:
            return (self.mode,)

    already = Cursor("wal")
    _wal(already)
    assert already.asked == ["PRAGMA journal_mode"] * 3  # asked again; WAL already: not set

    fresh = Cursor("delete")
    _wal(fresh)
    assert fresh.asked == ["PRAGMA journal_mode"] * 3 + ["PRAGMA journal_mode = WAL"]

    class Broken(Cursor):
        def execute(self, sql: str) -> Cursor:
            raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        _wal(Broken("wal"))  # not a lock: raised at once
