"""Lone surrogates and NULs reach the store from models ("x\\ud800" from a provider's JSON
escapes), run inputs and memory: they never crash the writer, and read back the same way on
SQLite and PostgreSQL — JSON values losslessly, free text with U+FFFD in their place."""

from __future__ import annotations

import pytest
from _backends import store_url  # noqa: F401

from delegate.agents.agent import Agent
from delegate.errors import PermanentModelError
from delegate.memory.store import Store
from delegate.orchestrator.graph import TaskGraph
from delegate.orchestrator.run import Orchestrator
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio

ODD = "x\ud800y\udfffz\x00end"


async def test_surrogates_and_nuls_in_outputs_inputs_and_errors_are_stored(
    store_url: str,  # noqa: F811
) -> None:
    def answer(request: object) -> str:
        return ODD

    def broken(request: object) -> str:
        raise PermanentModelError(f"bad {ODD}")  # a model's failure (a bug would end the run)

    graph = TaskGraph()
    graph.add("odd", agent=Agent("w", FunctionModel(answer)), prompt="{{ text }}")
    graph.add("fails", agent=Agent("b", FunctionModel(broken)), prompt="go")

    result = await Orchestrator(memory=store_url).execute(graph, {"text": ODD}, run_id="u")

    assert result.tasks["odd"].output == ODD
    with Store.open(store_url) as store:
        record = store.get_run("u")
        rows = {row.task_id: row for row in store.get_tasks("u")}
        events = store.get_events("u")
    assert record is not None
    assert record.inputs == {"text": ODD}  # JSON keeps it exactly
    assert rows["odd"].output == ODD
    assert rows["odd"].status == "succeeded"
    error = rows["fails"].error
    assert error is not None
    assert "x\ufffdy\ufffdz\ufffdend" in error  # free text: replaced, the same on both backends
    assert any(event.data.get("output") == ODD for event in events)
    assert record.status == "partial"
