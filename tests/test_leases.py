"""A run is owned: a live run cannot be resumed beside itself, a dead one is taken over, a forced
takeover stops the old owner, and a run that stops before it concludes says so ("interrupted").
On SQLite and PostgreSQL alike."""

from __future__ import annotations

import datetime
import os
import socket
import sys

import anyio
import pytest
from _backends import store_url  # noqa: F401

from delegate.agents.agent import Agent
from delegate.errors import RunLeasedError
from delegate.memory.records import LeaseRecord
from delegate.memory.schema import RunLeaseRow
from delegate.memory.store import Store
from delegate.orchestrator import _lease as lease_module
from delegate.orchestrator.events import Event
from delegate.orchestrator.graph import TaskGraph
from delegate.orchestrator.run import Orchestrator, RunResult
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio


class Counting:
    """A fake worker that counts each task's calls, answering after `latency` seconds."""

    def __init__(self, latency: float) -> None:
        self.calls: dict[str, int] = {}
        self.model = FunctionModel(self._answer, latency=latency)

    def _answer(self, request: object) -> str:
        prompt = request.messages[-1]["content"]  # type: ignore[attr-defined]
        self.calls[prompt] = self.calls.get(prompt, 0) + 1
        return f"done {prompt}"


def _graph(agent: Agent, tasks: int = 4) -> TaskGraph:
    graph = TaskGraph()
    for index in range(tasks):
        graph.add(f"t{index}", agent=agent, prompt=f"t{index}")
    return graph


def _write_lease(url: str, run_id: str, *, host: str, pid: int, seconds: float) -> None:
    now = datetime.datetime.now(datetime.UTC)
    lease = LeaseRecord(
        run_id=run_id,
        owner="someone-else",
        host=host,
        pid=pid,
        heartbeat_at=now,
        expires_at=now + datetime.timedelta(seconds=seconds),
    )
    with Store.open(url) as store, store._write() as session:
        session.connection().execute(
            RunLeaseRow.__table__.delete().where(RunLeaseRow.run_id == run_id)
        )
        session.connection().execute(RunLeaseRow.__table__.insert(), lease.model_dump())


async def _interrupted_run(url: str, worker: Counting) -> None:
    """Start run "r" and stop it from outside once its first task has finished."""
    agent = Agent("w", worker.model)
    scope = anyio.CancelScope()

    def stop(event: Event) -> None:
        if event.kind == "task_succeeded":
            scope.cancel()

    orchestrator = Orchestrator(workers=[agent], memory=url, max_concurrency=1, on_event=stop)
    with anyio.fail_after(30), scope:
        await orchestrator.execute(_graph(agent), run_id="r")
    assert scope.cancelled_caught


async def test_a_live_run_cannot_be_resumed_beside_itself(store_url: str) -> None:  # noqa: F811
    worker = Counting(latency=0.2)
    agent = Agent("w", worker.model)
    results: list[RunResult] = []

    started = anyio.Event()

    def on_event(event: Event) -> None:
        if event.kind == "task_started":
            started.set()

    async def owner() -> None:
        orchestrator = Orchestrator(
            workers=[agent], memory=store_url, max_concurrency=1, on_event=on_event
        )
        results.append(await orchestrator.execute(_graph(agent), run_id="r"))

    async with anyio.create_task_group() as group:
        group.start_soon(owner)
        with anyio.fail_after(30):
            await started.wait()  # the owner holds the run now
        with pytest.raises(RunLeasedError) as refused:
            await Orchestrator(workers=[agent], memory=store_url).resume("r")

    message = str(refused.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
    assert "force=True" in message
    assert refused.value.run_id == "r"
    [result] = results
    assert result.status == "succeeded"
    assert worker.calls == {f"t{i}": 1 for i in range(4)}  # nothing ran twice


async def test_a_lease_from_elsewhere_is_refused_while_live_and_taken_once_expired(
    store_url: str,  # noqa: F811
) -> None:
    worker = Counting(latency=0.05)
    await _interrupted_run(store_url, worker)
    agent = Agent("w", worker.model)

    _write_lease(store_url, "r", host="elsewhere", pid=4242, seconds=30)
    with pytest.raises(RunLeasedError, match="pid 4242 on host elsewhere"):
        await Orchestrator(workers=[agent], memory=store_url).resume("r")

    _write_lease(store_url, "r", host="elsewhere", pid=4242, seconds=-1)  # expired
    result = await Orchestrator(workers=[agent], memory=store_url).resume("r")

    assert result.status == "succeeded"
    assert set(worker.calls) == {f"t{i}" for i in range(4)}
    with Store.open(store_url) as store:
        assert store.get_lease("r") is None  # given up when the run ended


async def test_force_takes_a_live_lease_over(store_url: str) -> None:  # noqa: F811
    worker = Counting(latency=0.05)
    await _interrupted_run(store_url, worker)
    agent = Agent("w", worker.model)
    _write_lease(store_url, "r", host="elsewhere", pid=4242, seconds=30)

    result = await Orchestrator(workers=[agent], memory=store_url).resume("r", force=True)

    assert result.status == "succeeded"


async def test_the_lease_of_a_dead_process_on_this_machine_is_taken_at_once(
    store_url: str,  # noqa: F811
) -> None:
    worker = Counting(latency=0.05)
    await _interrupted_run(store_url, worker)
    agent = Agent("w", worker.model)
    async with await anyio.open_process([sys.executable, "-c", "pass"]) as process:
        dead = process.pid
        await process.wait()  # reaped: no process has this pid now
    _write_lease(store_url, "r", host=socket.gethostname(), pid=dead, seconds=30)

    result = await Orchestrator(workers=[agent], memory=store_url).resume("r")

    assert result.status == "succeeded"


async def test_a_run_stopped_from_outside_is_interrupted_and_resumable_at_once(
    store_url: str,  # noqa: F811
) -> None:
    worker = Counting(latency=0.2)
    await _interrupted_run(store_url, worker)

    with Store.open(store_url) as store:
        record = store.get_run("r")
        lease = store.get_lease("r")
    assert record is not None
    assert record.status == "interrupted"
    assert record.error is not None
    assert "stopped before it finished" in record.error
    assert lease is None  # given up: resumable now, not in 30 s
    done_before = {task for task, count in worker.calls.items() if count}

    agent = Agent("w", worker.model)
    result = await Orchestrator(workers=[agent], memory=store_url).resume("r")

    assert result.status == "succeeded"
    assert set(worker.calls) == {f"t{i}" for i in range(4)}
    assert done_before  # the first run had really started


async def test_a_forced_takeover_stops_the_old_owner(
    store_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lease_module, "LEASE_SECONDS", 0.3)  # renewed every 0.1 s
    monkeypatch.setattr(lease_module.RunLease, "__init__", _short_lease_init)
    worker = Counting(latency=0.25)
    agent = Agent("w", worker.model)
    results: dict[str, RunResult] = {}

    one_done = anyio.Event()

    def on_event(event: Event) -> None:
        if event.kind == "task_succeeded":
            one_done.set()

    async def first() -> None:
        orchestrator = Orchestrator(
            workers=[agent], memory=store_url, max_concurrency=1, on_event=on_event
        )
        results["first"] = await orchestrator.execute(_graph(agent, 8), run_id="r")

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        with anyio.fail_after(30):
            await one_done.wait()
        results["second"] = await Orchestrator(workers=[agent], memory=store_url).resume(
            "r", force=True
        )

    assert results["second"].status == "succeeded"
    assert results["first"].status == "partial"  # it stopped when it lost the run
    with Store.open(store_url) as store:
        record = store.get_run("r")
    assert record is not None
    assert record.status == "succeeded"  # the old owner did not overwrite the new one's end


_original_init = lease_module.RunLease.__init__


def _short_lease_init(self: lease_module.RunLease, *args: object, **kwargs: object) -> None:
    _original_init(self, *args, **kwargs)  # type: ignore[arg-type]
    self.seconds = lease_module.LEASE_SECONDS


async def test_a_run_refused_before_it_starts_is_failed_and_not_owned(
    store_url: str,  # noqa: F811
) -> None:
    from delegate.agents.limits import Budget
    from delegate.agents.models import ModelRequest, ModelResponse
    from delegate.errors import PriceUnknownError

    class Unpriced:
        name = "unpriced/model"
        price = None

        async def request(self, request: ModelRequest) -> ModelResponse:
            raise AssertionError("never called")

    graph = TaskGraph()
    graph.add("t", agent=Agent("w", Unpriced()), prompt="go")

    with pytest.raises(PriceUnknownError):
        await Orchestrator(memory=store_url).execute(graph, budget=Budget(usd=1.0), run_id="p")

    with Store.open(store_url) as store:
        record = store.get_run("p")
        lease = store.get_lease("p")
    assert record is not None
    assert record.status == "failed"
    assert record.error is not None
    assert "no known price" in record.error
    assert lease is None
