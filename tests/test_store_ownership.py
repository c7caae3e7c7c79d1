"""Where an orchestrator keeps its runs, and that it owns (and closes) the store it opens."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from delegate import Agent, ConfigError, Orchestrator, TaskGraph
from delegate.errors import StoreError
from delegate.memory.store import Store
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio


def _graph(model: FunctionModel | None = None) -> TaskGraph:
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model or FunctionModel(lambda r: "done")), prompt="Go.")
    return graph


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Store]:
    """Every store `Store.open` opens while the test runs, in order."""
    stores: list[Store] = []
    real_open = Store.open.__func__  # type: ignore[attr-defined]

    def spy(cls: type[Store], url: str | None = None) -> Store:
        store: Store = real_open(cls, url)
        stores.append(store)
        return store

    monkeypatch.setattr(Store, "open", classmethod(spy))
    return stores


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh DELEGATE_HOME (not created yet) and no DELEGATE_DB_URL."""
    folder = tmp_path / "home"
    monkeypatch.setenv("DELEGATE_HOME", str(folder))
    monkeypatch.delenv("DELEGATE_DB_URL", raising=False)
    return folder


async def test_two_in_memory_orchestrators_do_not_see_each_others_runs() -> None:
    model = FunctionModel(lambda r: "done")
    first = Orchestrator(workers=[Agent("w", model)], memory=":memory:")
    second = Orchestrator(workers=[Agent("w", model)], memory=":memory:")
    graph = TaskGraph()
    graph.add("t", agent="w", prompt="Go.")

    await first.execute(graph, run_id="r1")
    with pytest.raises(ConfigError, match="no run 'r1'"):
        await second.resume("r1")
    again = await first.resume("r1")

    assert again.status == "succeeded"
    assert model.calls == 1  # the resumed run restored its task from the first one's store


async def test_async_with_closes_the_store_it_opened(tmp_path: Path, opened: list[Store]) -> None:
    async with Orchestrator(memory=f"sqlite:///{tmp_path / 'runs.db'}") as orch:
        await orch.execute(_graph(), run_id="r1")
        await orch.execute(_graph(), run_id="r2")
        [store] = opened  # opened once, on first use, for both runs
        assert store.get_run("r1") is not None

    with pytest.raises(StoreError, match="was closed"):
        store.get_run("r1")
    with pytest.raises(ConfigError, match="was closed"):
        await orch.execute(_graph())
    await orch.aclose()  # closing twice is harmless
    assert len(opened) == 1  # the closed orchestrator did not reopen


async def test_a_store_the_caller_gives_stays_open(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'runs.db'}")
    async with Orchestrator(memory=store) as orch:
        await orch.execute(_graph(), run_id="r1")

    record = store.get_run("r1")
    assert record is not None
    assert record.status == "succeeded"
    store.close()


def test_close_closes_the_store_for_the_sync_api(opened: list[Store]) -> None:
    orch = Orchestrator(memory=":memory:")
    assert orch.execute_sync(_graph(), run_id="r1").status == "succeeded"
    [store] = opened

    orch.close()

    with pytest.raises(StoreError, match="was closed"):
        store.get_run("r1")
    with pytest.raises(ConfigError, match="was closed"):
        orch.execute_sync(_graph())


async def test_two_orchestrators_on_one_url_each_open_their_own(
    tmp_path: Path, opened: list[Store]
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    release = anyio.Event()
    started = anyio.Event()

    async def wait(request: Any) -> str:
        started.set()
        await release.wait()
        return "slow"

    first = Orchestrator(memory=url)
    results = []
    async with anyio.create_task_group() as group:

        async def slow_run() -> None:
            results.append(await first.execute(_graph(FunctionModel(wait)), run_id="slow"))

        group.start_soon(slow_run)
        await started.wait()  # the first run holds its store, mid-call
        async with Orchestrator(memory=url) as second:
            await second.execute(_graph(), run_id="quick")
        release.set()

    assert len(opened) == 2
    assert opened[0] is not opened[1]
    assert [result.status for result in results] == ["succeeded"]  # the other's close was not its
    record = opened[0].get_run("slow")
    assert record is not None
    assert (record.status, record.output) == ("succeeded", "slow")
    await first.aclose()


async def test_a_run_in_progress_keeps_its_store_until_it_ends(
    tmp_path: Path, opened: list[Store]
) -> None:
    release = anyio.Event()
    started = anyio.Event()

    async def wait(request: Any) -> str:
        started.set()
        await release.wait()
        return "late"

    orch = Orchestrator(memory=f"sqlite:///{tmp_path / 'runs.db'}")
    results = []
    async with anyio.create_task_group() as group:

        async def run() -> None:
            results.append(await orch.execute(_graph(FunctionModel(wait)), run_id="r1"))

        group.start_soon(run)
        await started.wait()
        await orch.aclose()  # while the run is in its call
        with pytest.raises(ConfigError, match="was closed"):
            await orch.execute(_graph())  # no new run
        [store] = opened
        assert store.get_run("r1") is not None  # still open for the run in progress
        release.set()

    assert [result.status for result in results] == ["succeeded"]
    with pytest.raises(StoreError, match="was closed"):
        store.get_run("r1")  # closed when the run ended


async def test_by_default_runs_go_to_delegate_db_url(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("DELEGATE_DB_URL", url)

    async with Orchestrator() as orch:
        await orch.execute(_graph(), run_id="r1")

    with Store.open(url) as store:
        record = store.get_run("r1")
    assert record is not None
    assert record.status == "succeeded"
    assert not await anyio.Path(home).exists()


async def test_by_default_without_delegate_db_url_nothing_is_written(
    home: Path, opened: list[Store]
) -> None:
    orch = Orchestrator(cache=False)

    result = await orch.execute(_graph(), run_id="r1")

    assert result.status == "succeeded"
    assert opened == []
    assert not await anyio.Path(home).exists()
    with pytest.raises(ConfigError, match="resume\\(\\) needs a store"):
        await orch.resume("r1")


async def test_home_keeps_runs_under_delegate_home(home: Path) -> None:
    async with Orchestrator(memory="home") as orch:
        await orch.execute(_graph(), run_id="r1")

    with Store.open(f"sqlite:///{home / 'delegate.db'}") as store:
        record = store.get_run("r1")
    assert record is not None
    assert record.status == "succeeded"


async def test_none_keeps_nothing_even_with_delegate_db_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: list[Store]
) -> None:
    monkeypatch.setenv("DELEGATE_DB_URL", f"sqlite:///{tmp_path / 'env.db'}")

    await Orchestrator(memory=None).execute(_graph())

    assert opened == []
    assert not await anyio.Path(tmp_path / "env.db").exists()


@pytest.mark.usefixtures("home")
def test_default_is_refused_with_the_name_of_home() -> None:
    with pytest.raises(
        ConfigError, match='memory="default" is no longer accepted: pass memory="home"'
    ):
        Orchestrator(memory="default")


def test_cache_needs_a_store(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="cache=True needs a store"):
        Orchestrator(cache=True)
    with pytest.raises(ConfigError, match="cache=True needs a store"):
        Orchestrator(cache=True, memory=None)
    assert Orchestrator(cache=True, memory=":memory:").cache is True
    monkeypatch.setenv("DELEGATE_DB_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert Orchestrator(cache=True).cache is True


@pytest.mark.parametrize("memory", ["", "  ", 3, b"sqlite://"])
def test_memory_that_names_no_store_is_refused(memory: Any) -> None:
    with pytest.raises(ConfigError, match='memory must be a database URL, "home"'):
        Orchestrator(memory=memory)


async def test_a_run_without_a_store_never_hops_to_a_thread(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[Callable[..., Any]] = []
    real = anyio.to_thread.run_sync

    async def spy(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        hops.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", spy)
    async with Orchestrator() as orch:
        result = await orch.execute(_graph())

    assert result.status == "succeeded"
    assert hops == []


def test_a_run_without_a_store_imports_no_sqlalchemy(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from delegate import Agent, Orchestrator, TaskGraph\n"
        "from delegate.testing import FunctionModel\n"
        "graph = TaskGraph()\n"
        "graph.add('t', agent=Agent('w', FunctionModel(lambda r: 'done')), prompt='Go.')\n"
        "orch = Orchestrator()\n"
        "print(orch.execute_sync(graph).status)\n"
        "orch.close()\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'sqlalchemy'))\n"
    )
    env = {**os.environ, "DELEGATE_HOME": str(tmp_path / "home")}
    env.pop("DELEGATE_DB_URL", None)

    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )

    assert done.stdout.splitlines() == ["succeeded", "[]"]
    assert not (tmp_path / "home").exists()
