"""Durable commits whatever the event loop is doing: a run of 20,000 instant tasks (async
functions that never yield) killed with SIGKILL at a random moment has lost at most one commit
window of finished work, and stays bounded in memory while it runs."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from delegate.memory.store import Store

HERE = Path(__file__).parent
TASKS = 20_000
LOST_AT_MOST = 1_000  # the bound: one commit window of instant tasks


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [1, 2])
def test_a_run_killed_at_a_random_moment_lost_at_most_one_commit_window(
    tmp_path: Path, seed: int
) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    progress = tmp_path / "finished.txt"
    kill_after = random.Random(seed).randrange(2_000, 16_000)
    process = subprocess.Popen(
        [sys.executable, str(HERE / "_durable_kill_run.py"), db, str(progress), str(TASKS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while _lines(progress) < kill_after:
            if process.poll() is not None:
                pytest.fail(f"the run ended before the kill: {process.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("the run did not reach the kill point in time")
            time.sleep(0.001)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    finished = {line for line in progress.read_text().split("\n") if line}
    with Store.open(db) as store:
        stored = {row.task_id for row in store.get_tasks("instant") if row.status == "succeeded"}
    assert stored <= finished  # nothing is written before it finished
    lost = len(finished - stored)
    assert len(finished) >= kill_after
    print(f"killed after {len(finished)} finished: {lost} not written")
    assert lost <= LOST_AT_MOST, f"{lost} finished tasks were not written"
    assert stored, "nothing was written while the loop never yielded"


@pytest.mark.anyio
async def test_a_run_whose_store_fails_stops_instead_of_spending_unrecorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from delegate.agents.agent import Agent
    from delegate.errors import StoreError
    from delegate.orchestrator.graph import TaskGraph
    from delegate.orchestrator.run import Orchestrator
    from delegate.testing import FunctionModel

    real = Store.write_batch
    writes = [0]

    def failing(self: Store, *args: object, **kwargs: object) -> None:
        writes[0] += 1
        if writes[0] >= 3:
            raise StoreError("disk full")
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "write_batch", failing)
    model = FunctionModel(lambda request: "ok", latency=0.05)
    agent = Agent("w", model)
    graph = TaskGraph()
    for index in range(100):
        graph.add(f"t{index}", agent=agent, prompt="go")

    store = f"sqlite:///{tmp_path / 'runs.db'}"
    with pytest.raises(StoreError, match="disk full"):
        await Orchestrator(memory=store, max_concurrency=1).execute(graph)

    assert model.calls < 20  # it stopped soon after the store failed, not after 100 calls


@pytest.mark.anyio
async def test_the_recorder_writes_each_task_and_event_as_the_run_saw_it(tmp_path: Path) -> None:
    from delegate.agents.agent import Agent
    from delegate.agents.models import ModelRequest
    from delegate.errors import ProviderUnavailableError
    from delegate.orchestrator.events import Event
    from delegate.orchestrator.graph import TaskGraph
    from delegate.orchestrator.run import Orchestrator
    from delegate.orchestrator.scheduler import RetryPolicy
    from delegate.testing import FunctionModel

    def answer(request: ModelRequest) -> str:
        if "fail" in request.messages[-1]["content"]:
            raise ProviderUnavailableError("502 bad gateway", model="function")
        return "naïve ✓ answer"

    agent = Agent("w", FunctionModel(answer, input_price=1.0, output_price=2.0))
    graph = TaskGraph()
    first = graph.add("first", agent=agent, prompt="Start.")
    graph.add("second", agent=agent, prompt="Then fail.", deps=[first])
    graph.add("third", agent=agent, prompt="Never.", deps=["second"])
    seen: list[Event] = []
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    async with Orchestrator(memory=url, retry=RetryPolicy(max_retries=0)) as orch:
        orch.subscribe(seen.append)
        result = await orch.execute(graph, run_id="r")

    with Store.open(url) as store:
        tasks = {row.task_id: row for row in store.get_tasks("r")}
        events = store.get_events("r")
    assert list(tasks) == ["first", "second", "third"]  # first-write order
    for task_id, task in result.tasks.items():
        row = tasks[task_id]
        assert (row.status, row.attempts, row.error) == (task.status, task.attempts, task.error)
        assert row.usage == task.usage.to_dict()
        assert (row.started_at, row.finished_at) == (task.started_at, task.finished_at)  # to the µs
        assert row.spec == {"agent": "w", "deps": list(task.deps)}
    assert tasks["first"].output == "naïve ✓ answer"
    assert tasks["second"].output is None
    run_events = [event for event in seen if getattr(event, "run_id", None) == "r"]
    assert run_events.pop().kind == "run_finished"  # announced once the run's row is written
    assert [(e.seq, e.kind, e.at) for e in events] == [
        (number, event.kind, event.at) for number, event in enumerate(run_events, start=1)
    ]
    succeeded = next(e for e in events if e.kind == "task_succeeded")
    assert succeeded.data == {
        "task_id": "first",
        "attempt": 1,
        "output": "naïve ✓ answer",
        "usage": result.tasks["first"].usage.to_dict(),
        "model": "function",
    }
