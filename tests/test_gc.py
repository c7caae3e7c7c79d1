"""The garbage collector's policy while runs are under way (`delegate.orchestrator._gc`): the
process's objects frozen and the youngest generation collected less often, for as long as at
least one run is under way, and the process left as it was found."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import anyio
import pytest

from delegate import Agent, Orchestrator, TaskGraph
from delegate.orchestrator import _gc
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _known_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_a_run_freezes_and_raises_the_young_threshold_then_restores_both() -> None:
    gc.set_threshold(500, 7, 9)
    with _gc.during_run():
        assert gc.get_threshold() == (_gc.YOUNG_THRESHOLD, 7, 9)
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (500, 7, 9)
    assert gc.get_freeze_count() == 0


def test_a_higher_threshold_of_the_process_is_kept() -> None:
    gc.set_threshold(50_000, 10, 10)
    with _gc.during_run():
        assert gc.get_threshold() == (50_000, 10, 10)
    assert gc.get_threshold() == (50_000, 10, 10)


def test_overlapping_runs_share_the_setting_and_the_last_one_restores_it() -> None:
    first, second = _gc.during_run(), _gc.during_run()
    first.__enter__()
    frozen = gc.get_freeze_count()
    second.__enter__()
    assert gc.get_freeze_count() == frozen  # not frozen twice
    first.__exit__(None, None, None)
    assert gc.get_threshold()[0] == _gc.YOUNG_THRESHOLD  # the second run is still under way
    assert gc.get_freeze_count() == frozen
    second.__exit__(None, None, None)
    assert (gc.get_threshold(), gc.get_freeze_count()) == ((700, 10, 10), 0)


def test_runs_in_several_threads_leave_the_process_as_it_was() -> None:
    start = threading.Barrier(4)

    def run() -> None:
        start.wait()
        for _ in range(200):
            with _gc.during_run():
                assert gc.get_threshold()[0] == _gc.YOUNG_THRESHOLD

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (gc.get_threshold(), gc.get_freeze_count()) == ((700, 10, 10), 0)


def test_objects_the_process_froze_itself_stay_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    unfrozen: list[bool] = []
    unfreeze = gc.unfreeze
    gc.freeze()
    try:
        monkeypatch.setattr(gc, "unfreeze", lambda: unfrozen.append(True))
        with _gc.during_run():
            assert gc.get_threshold()[0] == _gc.YOUNG_THRESHOLD
        assert gc.get_threshold() == (700, 10, 10)
        assert unfrozen == []  # its own freeze is not undone
    finally:
        unfreeze()


async def test_an_orchestrator_run_applies_the_policy_while_it_runs() -> None:
    seen: list[tuple[int, bool]] = []

    def answer(request: object) -> str:
        seen.append((gc.get_threshold()[0], gc.get_freeze_count() > 0))
        return "ok"

    graph = TaskGraph()
    agent = Agent("w", FunctionModel(answer))
    first = graph.add("a", agent=agent, prompt="One.")
    graph.add("b", agent=agent, prompt="Two.", deps=[first])
    async with anyio.create_task_group() as group:  # two runs at once
        for _ in range(2):
            group.start_soon(Orchestrator(memory=None).execute, graph)
    assert seen == [(_gc.YOUNG_THRESHOLD, True)] * 4
    assert (gc.get_threshold(), gc.get_freeze_count()) == ((700, 10, 10), 0)
