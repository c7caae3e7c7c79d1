"""Errors are not swallowed: delegate's own failures end a task, a step or a run with a recorded
reason; anything else (a bug: ours, a custom model's, an event handler's) ends the run and reaches
the caller as itself, after the store says why the run stopped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from delegate import Agent, Orchestrator, TaskContext, TaskGraph
from delegate.agents.models import ModelRequest
from delegate.errors import StoreError
from delegate.memory.store import Store
from delegate.orchestrator._persist import MAX_PENDING
from delegate.orchestrator.events import Event, EventBus, RunStarted, TaskSucceeded
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio

GOAL = "Write a short report on bees."
PLAN = {"tasks": [{"id": "facts", "agent": "scout", "instructions": "Find facts.", "deps": []}]}


@pytest.fixture(autouse=True)
def _unconfigured() -> Iterator[None]:
    yield
    structlog.reset_defaults()  # `capture_logs` leaves structlog marked as configured


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def _stored(url: str, run_id: str) -> tuple[str, str | None, dict[str, str]]:
    """The stored run's status and error, and each stored task's status."""
    with Store.open(url) as store:
        record = store.get_run(run_id)
        assert record is not None
        tasks = {row.task_id: row.status for row in store.get_tasks(run_id)}
    return record.status, record.error, tasks


def _const(value: str) -> Any:
    def fn(ctx: TaskContext) -> str:
        return value

    return fn


# --- bugs in a run's own work -------------------------------------------------------------------


async def test_a_model_that_raises_a_bug_ends_the_run_with_it(tmp_path: Path) -> None:
    def broken(request: ModelRequest) -> str:
        raise RuntimeError("the adapter has a bug")

    url = _url(tmp_path)
    graph = TaskGraph()
    graph.add("fine", fn=_const("A"))
    graph.add("buggy", agent=Agent("w", FunctionModel(broken)), prompt="go", deps=["fine"])

    with pytest.raises(RuntimeError, match="the adapter has a bug"):
        await Orchestrator(memory=url).execute(graph, run_id="bug")

    status, error, tasks = _stored(url, "bug")
    assert status == "interrupted"
    assert error == "the run stopped on an error: RuntimeError: the adapter has a bug"
    assert tasks["fine"] == "succeeded"  # kept: a resume does not run it again


async def test_a_task_function_that_raises_fails_only_its_task() -> None:
    # A task function is the user's own work, like a tool: what it raises is the task's failure.
    def broken(ctx: TaskContext) -> str:
        raise KeyError("missing")

    graph = TaskGraph()
    graph.add("broken", fn=broken)
    graph.add("other", fn=_const("B"))
    result = await Orchestrator(memory=None).execute(graph)

    assert result.status == "partial"
    assert (result.tasks["broken"].status, result.tasks["broken"].error) == (
        "failed",
        "KeyError: 'missing'",
    )
    assert result.tasks["other"].status == "succeeded"


def _planning(goal_check: Any) -> FunctionModel:
    def respond(request: ModelRequest) -> Any:
        if request.output_name == "Plan":
            return json.dumps(PLAN)
        if request.output_name == "GoalCheck":
            return goal_check(request)
        return "FINAL"

    return FunctionModel(respond, name="reasoner")


def _planned(planner: FunctionModel, **options: Any) -> Orchestrator:
    worker = FunctionModel(lambda request: "facts", name="mini")
    options.setdefault("memory", None)
    return Orchestrator(
        planner=Agent("planner", planner),
        workers=[Agent("scout", worker, description="Finds facts.")],
        **options,
    )


async def test_a_goal_check_that_raises_a_bug_ends_the_run_with_it(tmp_path: Path) -> None:
    def goal_check(request: ModelRequest) -> Any:
        raise RuntimeError("judge adapter bug")

    url = _url(tmp_path)
    orchestrator = _planned(_planning(goal_check), judge_goal=True, memory=url)
    with pytest.raises(RuntimeError, match="judge adapter bug"):
        await orchestrator.run(GOAL, run_id="goal-bug")

    # Not "goal met": the run is stored as stopped, with the reason, and no answer was written.
    status, error, tasks = _stored(url, "goal-bug")
    assert status == "interrupted"
    assert error == "the run stopped on an error: RuntimeError: judge adapter bug"
    assert tasks == {"facts": "succeeded"}


async def test_a_planner_that_raises_a_bug_ends_the_run_with_it() -> None:
    def planner(request: ModelRequest) -> Any:
        raise TypeError("planner adapter bug")

    with pytest.raises(TypeError, match="planner adapter bug"):
        await _planned(FunctionModel(planner, name="reasoner")).run(GOAL)


# --- event handlers -----------------------------------------------------------------------------


async def test_a_handler_that_raises_ends_the_run_and_is_named(tmp_path: Path) -> None:
    seen: list[str] = []

    def broken(event: Event) -> None:
        if isinstance(event, TaskSucceeded):
            raise ValueError("handler bug")

    url = _url(tmp_path)
    orchestrator = Orchestrator(memory=url, on_event=broken)
    orchestrator.subscribe(lambda event: seen.append(event.kind))
    graph = TaskGraph()
    graph.add("a", fn=_const("A"))
    graph.add("b", fn=_const("B"), deps=["a"])

    with (
        structlog.testing.capture_logs() as logs,
        pytest.raises(ValueError, match="handler bug") as caught,
    ):
        await orchestrator.execute(graph, run_id="handler")

    [note] = caught.value.__notes__
    assert note.startswith(
        f"raised by the event handler {__name__}.{broken.__qualname__} on a 'task_succeeded' "
        "event of run 'handler'"
    )
    # The handlers after it still got the event; then the run stopped: 'b' never started.
    assert seen == [
        "run_started",
        "task_queued",
        "task_started",
        "task_succeeded",
        "task_cancelled",
    ]
    assert [entry["event"] for entry in logs] == []  # raised, not logged and swallowed
    status, error, tasks = _stored(url, "handler")
    assert status == "interrupted"
    assert error == "the run stopped on an error: ValueError: handler bug"
    # The store's recorder, subscribed after the handler, still kept what 'a' did.
    assert tasks == {"a": "succeeded", "b": "cancelled"}


async def test_the_bus_delivers_to_every_handler_before_raising() -> None:
    bus = EventBus()
    calls: list[str] = []

    def first(event: Event) -> None:
        calls.append("first")
        raise KeyError("first")

    def second(event: Event) -> None:
        calls.append("second")

    def third(event: Event) -> None:
        calls.append("third")
        raise ZeroDivisionError("third")

    bus.subscribe(first)
    bus.subscribe(second)
    with pytest.raises(KeyError) as one:
        bus.emit(RunStarted(run_id="r", tasks=1))
    assert calls == ["first", "second"]
    assert len(one.value.__notes__) == 1

    calls.clear()
    bus.subscribe(third)
    with pytest.raises(ExceptionGroup) as several:
        bus.emit(RunStarted(run_id="r", tasks=1))
    assert calls == ["first", "second", "third"]
    assert [type(exc) for exc in several.value.exceptions] == [KeyError, ZeroDivisionError]
    assert (
        str(several.value) == "2 event handlers raised on a 'run_started' event (2 sub-exceptions)"
    )


# --- the store ------------------------------------------------------------------------------------


async def test_a_failing_store_stops_the_run_at_the_next_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(self: Store, *args: object, **kwargs: object) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(Store, "write_batch", failing)
    calls = [0]

    async def instant(ctx: TaskContext) -> int:  # never yields: the loop is never free
        calls[0] += 1
        return 1

    graph = TaskGraph()
    for index in range(3000):
        graph.add(f"t{index}", fn=instant)
    url = _url(tmp_path)

    with (
        structlog.testing.capture_logs() as logs,
        pytest.raises(StoreError, match="disk full") as caught,
    ):
        await Orchestrator(memory=url).execute(graph, run_id="full")

    # The loop never yields, so the writer thread cannot wake the run: the recorder itself raised
    # at its next back-pressure commit. Either that commit failed before any task ran, or the
    # writer's failed commit took every queued event first and the next one raised at most
    # MAX_PENDING events (two a task) later; it used to run all 3,000, each event a warning.
    assert calls[0] in (0, MAX_PENDING // 2)
    assert [entry["event"] for entry in logs] == []
    # (The writer starts at the run's first event: a batch is due while tasks are being queued.)
    assert any(
        "RunRecorder on a 'task_queued' event" in note or "'task_started' event" in note
        for note in caught.value.__notes__
    )
    status, error, _ = _stored(url, "full")
    assert (status, error) == ("interrupted", "the run stopped on an error: StoreError: disk full")
