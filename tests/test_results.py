"""How a run's result is made from its scheduler's nodes (`delegate.orchestrator.results`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from delegate import Agent, Orchestrator, TaskGraph
from delegate.agents.agent import VoteRecord
from delegate.agents.models import Usage
from delegate.orchestrator.results import TaskResult, _task_result
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio


def _values() -> dict[str, Any]:
    return {
        "id": "t",
        "status": "succeeded",
        "output": {"answer": 42},
        "error": None,
        "attempts": 2,
        "usage": Usage(input_tokens=10, output_tokens=3, cost_usd=0.5, calls=2),
        "agent": "w",
        "model": "m",
        "deps": ("a", "b"),
        "started_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "finished_at": None,
        "vote": VoteRecord(samples=4, agreement=0.75, stopped="confident"),
    }


def test_the_fast_task_result_is_what_model_construct_makes() -> None:
    fast, slow = _task_result(_values()), TaskResult.model_construct(**_values())
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set == set(TaskResult.model_fields)
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_dump_json() == slow.model_dump_json()
    assert repr(fast) == repr(slow)
    assert fast.model_extra is None
    copy = fast.model_copy(update={"error": "x"})
    assert copy.error == "x"
    assert fast.error is None
    # Each result has its own set of fields, never one shared by every fast-built result.
    assert copy.model_fields_set is not fast.model_fields_set
    assert _task_result(_values()).model_fields_set is not fast.model_fields_set
    with pytest.raises(pydantic.ValidationError):
        fast.error = "frozen"  # type: ignore[misc]


async def test_result_of_sets_every_field_of_a_task_result() -> None:
    # `_task_result` fills no defaults: a field added to TaskResult must be given there too.
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", FunctionModel(lambda request: "ok")), prompt="Go.")
    result = await Orchestrator(memory=None).execute(graph)
    task = result.tasks["t"]
    assert set(vars(task)) == set(TaskResult.model_fields)
    assert (task.status, task.output, task.attempts, task.agent) == ("succeeded", "ok", 1, "w")
    assert task.usage.calls == 1
    assert task.started_at is not None
