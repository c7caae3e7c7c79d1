"""A durable run's start and end are one store call and one transaction each: `Store.start_run`
writes the run and its lease together, `Store.end_run` writes the last batch, how the run ended
and gives the lease up — and writes nothing for an owner that lost the run. On SQLite and
PostgreSQL alike."""

from __future__ import annotations

import datetime
import os
import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest
from _backends import store_url  # noqa: F401 - a fixture, used by name

from delegate.errors import RunExistsError, StoreError
from delegate.memory.records import EventRecord, RunRecord, TaskRecord
from delegate.memory.store import Store
from delegate.orchestrator.events import Event
from delegate.orchestrator.graph import TaskContext, TaskGraph
from delegate.orchestrator.run import Orchestrator

UTC = datetime.UTC
T0 = datetime.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:  # noqa: F811 - the fixture above, by name
    s = Store.open(store_url)
    yield s
    s.close()


def _run(run_id: str = "r1") -> RunRecord:
    return RunRecord(
        id=run_id,
        workflow="triage",
        goal="sort the inbox",
        inputs={"n": 3},
        graph={"tasks": [{"id": "a", "deps": []}]},
        budget={"usd": 0.5},
        spend={"usd": 0.125},
        created_at=T0,
    )


def _task(status: str, output: Any = None) -> TaskRecord:
    return TaskRecord(run_id="r1", task_id="a", status=status, attempts=1, output=output)


def _event(kind: str, at: float) -> EventRecord:
    return EventRecord(run_id="r1", kind=kind, at=at, data={"task_id": "a"})


def _end(store: Store, owner: str | None, last_batch: Any = None) -> bool:
    return store.end_run(
        "r1",
        status="succeeded",
        output={"answer": 42},
        usage={"calls": 1},
        error=None,
        owner=owner,
        last_batch=last_batch,
    )


def test_start_run_stores_the_run_and_its_lease_at_once(store: Store) -> None:
    before = datetime.datetime.now(UTC)
    lease = store.start_run(_run(), "owner-1", seconds=30)

    stored = store.get_run("r1")
    assert stored is not None
    assert stored.model_dump() == {**_run().model_dump(), "status": "running"}
    assert store.get_lease("r1") == lease
    assert (lease.run_id, lease.owner) == ("r1", "owner-1")
    assert (lease.host, lease.pid) == (socket.gethostname(), os.getpid())
    assert before <= lease.heartbeat_at <= datetime.datetime.now(UTC)
    assert lease.expires_at - lease.heartbeat_at == datetime.timedelta(seconds=30)

    with pytest.raises(RunExistsError, match="'r1' already exists"):
        store.start_run(_run(), "owner-2", seconds=30)
    assert store.get_lease("r1") == lease  # the refused start changed nothing


def test_end_run_writes_the_last_batch_and_the_end_and_gives_the_lease_up(store: Store) -> None:
    store.start_run(_run(), "owner-1", seconds=30)
    store.write_batch("r1", [_task("running")], [_event("task_started", 1.0)])

    def last_batch() -> None:
        store.write_batch(
            "r1", [_task("succeeded", "A")], [_event("task_succeeded", 2.0)], spend={"usd": 0.25}
        )

    assert _end(store, "owner-1", last_batch) is True

    stored = store.get_run("r1")
    assert stored is not None
    assert (stored.status, stored.output, stored.usage, stored.error) == (
        "succeeded",
        {"answer": 42},
        {"calls": 1},
        None,
    )
    assert stored.finished_at is not None
    assert stored.spend == {"usd": 0.25}
    assert [(t.task_id, t.status, t.output) for t in store.get_tasks("r1")] == [
        ("a", "succeeded", "A")
    ]
    assert [(e.seq, e.kind, e.at) for e in store.get_events("r1")] == [
        (1, "task_started", 1.0),
        (2, "task_succeeded", 2.0),
    ]
    assert store.get_lease("r1") is None


def test_end_run_for_an_owner_that_lost_the_run_writes_nothing(store: Store) -> None:
    store.start_run(_run(), "owner-1", seconds=30)
    taken = store.acquire_lease("r1", "owner-2", seconds=30, force=True)  # a forced resume
    batches: list[str] = []

    assert _end(store, "owner-1", lambda: batches.append("called")) is False

    stored = store.get_run("r1")
    assert stored is not None
    assert (stored.status, stored.output, stored.finished_at) == ("running", None, None)
    assert batches == []  # its last batch was not even formed
    assert store.get_tasks("r1") == []
    assert store.get_lease("r1") == taken


def test_a_failed_last_batch_leaves_the_run_and_its_lease_as_they_were(store: Store) -> None:
    store.start_run(_run(), "owner-1", seconds=30)

    def last_batch() -> None:
        store.write_batch("r1", [_task("succeeded", "A")], [_event("task_succeeded", 2.0)])
        raise StoreError("disk full")

    with pytest.raises(StoreError, match="disk full"):
        _end(store, "owner-1", last_batch)

    stored = store.get_run("r1")
    assert stored is not None
    assert (stored.status, stored.finished_at) == ("running", None)
    assert store.get_tasks("r1") == []  # rolled back with the end
    assert store.get_events("r1") == []
    lease = store.get_lease("r1")
    assert lease is not None
    assert lease.owner == "owner-1"


def test_end_run_without_an_owner_and_of_an_unknown_run(store: Store) -> None:
    store.create_run(_run())
    assert _end(store, None) is True
    stored = store.get_run("r1")
    assert stored is not None
    assert stored.status == "succeeded"

    with pytest.raises(StoreError, match="run 'nope' is not in"):
        store.end_run("nope", status="failed", output=None, usage={}, error="x", owner="o")


# -- runs -------------------------------------------------------------------------------------


def _count_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    calls: Counter[str] = Counter()
    names = ("start_run", "end_run", "create_run", "acquire_lease", "finish_run", "release_lease")
    for name in names:
        real = getattr(Store, name)

        def counted(
            self: Store, *args: Any, _real: Any = real, _name: str = name, **kw: Any
        ) -> Any:
            calls[_name] += 1
            return _real(self, *args, **kw)

        monkeypatch.setattr(Store, name, counted)
    return calls


def _graph(tasks: int = 3) -> TaskGraph:
    graph = TaskGraph()
    for index in range(tasks):
        graph.add(f"t{index}", fn=lambda ctx, index=index: f"out{index}")
    return graph


@pytest.mark.anyio
async def test_a_run_starts_and_ends_in_one_store_call_each(
    store_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _count_calls(monkeypatch)
    result = await Orchestrator(memory=store_url).execute(_graph(), run_id="r")

    assert result.status == "succeeded"
    assert calls == {"start_run": 1, "end_run": 1}
    with Store.open(store_url) as store:
        stored = store.get_run("r")
        assert stored is not None
        assert stored.status == "succeeded"
        assert {t.task_id: t.status for t in store.get_tasks("r")} == {
            "t0": "succeeded",
            "t1": "succeeded",
            "t2": "succeeded",
        }
        assert store.get_lease("r") is None


@pytest.mark.anyio
async def test_a_run_stopped_from_outside_ends_in_one_store_call(
    store_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _count_calls(monkeypatch)
    scope = anyio.CancelScope()
    never = anyio.Event()

    async def blocked(ctx: TaskContext) -> str:
        await never.wait()
        return "never"

    def stop(event: Event) -> None:
        if event.kind == "task_succeeded":
            scope.cancel()

    graph = TaskGraph()
    graph.add("first", fn=lambda ctx: "done")
    graph.add("second", fn=blocked, deps=["first"])
    with anyio.fail_after(30), scope:
        await Orchestrator(memory=store_url, on_event=stop).execute(graph, run_id="r")
    assert scope.cancelled_caught

    assert calls == {"start_run": 1, "end_run": 1}
    with Store.open(store_url) as store:
        stored = store.get_run("r")
        assert stored is not None
        assert stored.status == "interrupted"
        # What the recorder had not written yet was written with the end.
        assert {t.task_id: t.status for t in store.get_tasks("r")} == {
            "first": "succeeded",
            "second": "cancelled",
        }
        assert store.get_lease("r") is None


@pytest.mark.anyio
async def test_a_run_whose_lease_was_taken_over_does_not_write_its_end(
    store_url: str,  # noqa: F811
) -> None:
    taken = []

    async def take_over(ctx: TaskContext) -> str:
        # Another process resumes the run with force=True while this one still runs it.
        def force() -> None:
            with Store.open(store_url) as other:
                taken.append(other.acquire_lease("r", "other-process", seconds=60, force=True))

        await anyio.to_thread.run_sync(force)
        return "done"

    graph = TaskGraph()
    graph.add("t", fn=take_over)
    result = await Orchestrator(memory=store_url).execute(graph, run_id="r")

    assert result.status == "succeeded"  # the run did not notice in time (no renewal was due)
    with Store.open(store_url) as store:
        stored = store.get_run("r")
        lease = store.get_lease("r")
    assert stored is not None
    # Not "succeeded": the run is the other process's now, and its row says so until it ends.
    assert (stored.status, stored.finished_at, stored.usage) == ("running", None, None)
    assert lease == taken[0]
