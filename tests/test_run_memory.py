"""Shared memory and the call cache, end to end through the orchestrator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from delegate import Agent, ConfigError, Orchestrator, TaskGraph
from delegate.agents.models import ModelRequest, ModelResponse
from delegate.memory.blackboard import Memory
from delegate.memory.store import Store
from delegate.testing import FunctionModel, ScriptedModel, tool_call

pytestmark = pytest.mark.anyio


def _last_tool_result(request: ModelRequest) -> str:
    return next(m["content"] for m in reversed(request.messages) if m["role"] == "tool")


async def test_memory_agents_share_what_they_learn_within_a_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    writer_model = ScriptedModel(
        [tool_call("remember", key="capital", value="Paris", tags=["geo"]), "noted"]
    )
    reader_model = ScriptedModel([tool_call("recall", key="capital"), "done"])
    writer = Agent("writer", writer_model, memory=True)
    reader = Agent("reader", reader_model, memory=True)
    graph = TaskGraph()
    learn = graph.add("learn", agent=writer, prompt="Learn the capital.")
    graph.add("use", agent=reader, prompt="Use it.", deps=[learn])

    result = await Orchestrator(memory=url).execute(graph, run_id="m1", workflow="geo")

    assert result.status == "succeeded"
    assert _last_tool_result(reader_model.requests[-1]) == "Paris"
    tool_names = {t.name for t in writer_model.requests[0].tools}
    assert tool_names == {"remember", "recall", "search_memory"}
    store = Store.open(url)
    record = store.get_memory("run:m1", "capital")
    assert record is not None
    assert (record.value, record.tags, record.task_id) == ("Paris", ["geo"], "learn")


async def test_the_workflow_namespace_is_shared_across_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = Store.open(url)
    await Memory(store, workflow="geo").put("motto", "plan, then delegate", namespace="workflow")
    model = ScriptedModel([tool_call("recall", key="motto"), "ok"])
    graph = TaskGraph()
    graph.add("t", agent=Agent("a", model, memory=True), prompt="Recall the motto.")
    await Orchestrator(memory=url).execute(graph, workflow="geo")
    assert _last_tool_result(model.requests[-1]) == "plan, then delegate"
    # another workflow's run does not see it
    other = ScriptedModel([tool_call("recall", key="motto"), "ok"])
    graph = TaskGraph()
    graph.add("t", agent=Agent("a", other, memory=True), prompt="Recall the motto.")
    await Orchestrator(memory=url).execute(graph, workflow="other")
    assert _last_tool_result(other.requests[-1]) == "no memory under 'motto'"


async def test_memory_agents_need_a_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DELEGATE_DB_URL", raising=False)
    model = FunctionModel(lambda r: "x")
    graph = TaskGraph()
    graph.add("t", agent=Agent("a", model, memory=True), prompt="p")
    for orchestrator in (Orchestrator(memory=None), Orchestrator()):  # the default keeps none
        with pytest.raises(ConfigError) as info:
            await orchestrator.execute(graph)
        assert str(info.value) == (
            "agent 'a' has memory=True, but the orchestrator keeps no memory; pass "
            "Orchestrator(memory=<database URL>, \"home\" or ':memory:')"
        )
    assert model.calls == 0


async def test_an_in_process_store_is_its_orchestrators_alone() -> None:
    def graph(*answers: Any) -> tuple[TaskGraph, ScriptedModel]:
        model = ScriptedModel(list(answers))
        built = TaskGraph()
        built.add("t", agent=Agent("a", model, memory=True), prompt="p")
        return built, model

    first, second = Orchestrator(memory=":memory:"), Orchestrator(memory=":memory:")
    learn, _ = graph(tool_call("remember", key="motto", value="hi", scope="global"), "ok")
    await first.execute(learn)

    mine, mine_model = graph(tool_call("recall", key="motto"), "ok")
    await first.execute(mine)
    theirs, their_model = graph(tool_call("recall", key="motto"), "ok")
    await second.execute(theirs)

    assert _last_tool_result(mine_model.requests[-1]) == "hi"
    assert _last_tool_result(their_model.requests[-1]) == "no memory under 'motto'"


async def test_the_call_cache_answers_a_repeated_run_for_free(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    model = FunctionModel(
        lambda r: "an answer", input_price=1.0, output_price=2.0, name="openai/gpt-4o-mini"
    )
    agent = Agent("a", model)

    def graph() -> TaskGraph:
        g = TaskGraph()
        g.add("q", agent=agent, prompt="The same question.")
        return g

    orchestrator = Orchestrator(memory=url, cache=True)
    first = await orchestrator.execute(graph())
    second = await orchestrator.execute(graph())
    assert model.calls == 1
    assert (first.usage.cache_hits, second.usage.cache_hits) == (0, 1)
    assert first.usage.cost_usd > 0
    assert second.usage.cost_usd == 0.0
    assert second.output == first.output == "an answer"


async def test_every_event_and_the_outcome_are_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"

    def answer(request: ModelRequest) -> ModelResponse | str:
        return json.dumps({"n": 1})

    graph = TaskGraph()
    graph.add("only", agent=Agent("a", FunctionModel(answer)), prompt="p")
    await Orchestrator(memory=url).execute(graph, run_id="ev")
    events = Store.open(url).get_events("ev")
    kinds = [e.kind for e in events]
    assert kinds == ["run_started", "task_queued", "task_started", "task_succeeded"]
    assert [e.seq for e in events] == [1, 2, 3, 4]  # the run's log, numbered without gaps
    run = Store.open(url).get_run("ev")
    assert run is not None
    assert (run.status, run.output) == ("succeeded", '{"n": 1}')
