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
