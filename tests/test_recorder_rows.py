"""The run writer's rows: a batch of any size stored whole, in order and masked, numbered after
the run's own rows (read once, then kept by the run's writer); a finished task stored as it was
when it finished, though its row is made later, in the writer thread.

Every test that takes `store` runs on SQLite and, when reachable, PostgreSQL.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _backends import store_url  # noqa: F401 - a fixture

from delegate import _secrets
from delegate.memory.records import EventRecord, RunRecord, TaskRecord
from delegate.memory.store import Store, StoreError

T0 = datetime.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC)
SECRET = "dk-rows-test-3c4d5e6f7a8b9c0d"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:  # noqa: F811 - the fixture above, by name
    s = Store.open(store_url)
    s.create_run(RunRecord(id="r1", created_at=T0))
    yield s
    s.close()


def _event(kind: str, **data: Any) -> EventRecord:
    return EventRecord(run_id="r1", kind=kind, at=1.5, data=data)


def test_a_large_batch_is_stored_whole_in_order_and_masked(store: Store) -> None:
    # 300 events and 150 tasks: more rows than one statement binds, in chunks of several sizes.
    _secrets.register(SECRET)
    events = [
        EventRecord(
            run_id="r1", kind=f"k{i}", at=i / 4, data={"i": i, "note": SECRET if i == 200 else "é"}
        )
        for i in range(300)
    ]
    tasks = [
        TaskRecord(
            run_id="r1",
            task_id=f"t{i}",
            status="succeeded",
            attempts=1,
            output={"o": SECRET} if i == 99 else i,
            error=f"key {SECRET}" if i == 7 else None,
            started_at=T0,
        )
        for i in range(150)
    ]

    assert store.write_batch("r1", tasks, events) == (300, 150)

    assert [(e.seq, e.kind, e.at, e.data) for e in store.get_events("r1")] == [
        (i + 1, f"k{i}", i / 4, {"i": i, "note": "***" if i == 200 else "é"}) for i in range(300)
    ]
    rows = store.get_tasks("r1")
    assert [row.task_id for row in rows] == [f"t{i}" for i in range(150)]
    assert (rows[99].output, rows[7].error, rows[3].output) == ({"o": "***"}, "key ***", 3)
    assert all(row.started_at == T0 and row.status == "succeeded" for row in rows)


def test_a_batch_after_the_last_numbers_reads_none_and_recovers_from_stale_ones(
    store: Store,
) -> None:
    last = store.write_batch("r1", [TaskRecord(run_id="r1", task_id="a")], [_event("one")])
    assert last == (1, 1)
    again = TaskRecord(run_id="r1", task_id="a", status="running")
    last = store.write_batch(
        "r1",
        [TaskRecord(run_id="r1", task_id="b"), again],
        [_event("two"), _event("three")],
        after=last,
    )
    assert last == (3, 3)  # "a" keeps its first position: positions may leave gaps
    # Another process numbers rows of the run meanwhile (it took the run over):
    store.write_batch("r1", [TaskRecord(run_id="r1", task_id="c")], [_event("theirs")])

    # Numbers already taken: the batch is written again, after the run's own rows.
    late = store.write_batch(
        "r1", [TaskRecord(run_id="r1", task_id="d")], [_event("late", n=1)], after=last
    )

    assert late == (5, 4)
    assert [(e.seq, e.kind, e.data) for e in store.get_events("r1")] == [
        (1, "one", {}),
        (2, "two", {}),
        (3, "three", {}),
        (4, "theirs", {}),
        (5, "late", {"n": 1}),
    ]
    assert [(t.task_id, t.status) for t in store.get_tasks("r1")] == [
        ("a", "running"),
        ("b", "pending"),
        ("c", "pending"),
        ("d", "pending"),
    ]


def test_a_batch_after_numbers_for_a_run_not_stored_is_refused(store: Store) -> None:
    ghost = EventRecord(run_id="ghost", kind="k", at=0.0)
    with pytest.raises(StoreError, match=r"run 'ghost' is not in .*create_run it first"):
        store.write_batch("ghost", [], [ghost], after=(0, 0))
    assert store.get_events("ghost") == []


@pytest.mark.anyio
async def test_a_task_is_recorded_as_it_finished_though_a_later_task_changes_its_output(
    tmp_path: Path,
) -> None:
    from delegate import Orchestrator, TaskContext, TaskGraph

    def first(ctx: TaskContext) -> dict[str, Any]:
        return {"items": [1], "rate": 0.5}

    def second(ctx: TaskContext) -> str:
        ctx.deps["first"]["items"].append(2)  # the very object the first task answered
        return "changed it"

    graph = TaskGraph()
    graph.add("second", fn=second, deps=[graph.add("first", fn=first)])
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    async with Orchestrator(memory=url) as orch:
        result = await orch.execute(graph, run_id="r")
    assert result.tasks["first"].output == {"items": [1, 2], "rate": 0.5}

    with Store.open(url) as store:
        tasks = {row.task_id: row for row in store.get_tasks("r")}
        events = store.get_events("r")
    assert tasks["first"].output == {"items": [1], "rate": 0.5}
    assert tasks["second"].output == "changed it"
    assert [e.data["output"] for e in events if e.kind == "task_succeeded"] == [
        {"items": [1], "rate": 0.5},
        "changed it",
    ]
    assert [(e.kind, e.data.get("task_id")) for e in events] == [
        ("run_started", None),
        ("task_queued", "first"),
        ("task_started", "first"),
        ("task_succeeded", "first"),
        ("task_queued", "second"),
        ("task_started", "second"),
        ("task_succeeded", "second"),
    ]
