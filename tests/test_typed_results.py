"""Typed edges: outputs read through task handles, and the public API's types (checked by mypy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from delegate import (
    Agent,
    Orchestrator,
    TaskContext,
    TaskGraph,
    TaskNotSucceeded,
)
from delegate.errors import DelegateError
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio


class Answer(BaseModel):
    value: int


async def test_a_handle_reads_its_tasks_output_as_the_task_answers() -> None:
    typed = Agent(
        "typed", FunctionModel(lambda request: json.dumps({"value": 7})), output_type=Answer
    )
    g = TaskGraph()
    a = g.add("a", agent=typed, prompt="q")

    async def double(ctx: TaskContext) -> int:
        return ctx.deps["a"].value * 2

    b = g.add("b", fn=double, deps=[a])
    result = await Orchestrator(memory=None).execute(g)
    assert result[a] == Answer(value=7)
    assert result[b] == 14
    assert result.task(b).output == 14
    assert result.task("a").status == "succeeded"


async def test_reading_a_task_that_did_not_succeed_names_it_and_why() -> None:
    g = TaskGraph()

    def boom(ctx: TaskContext) -> int:
        raise ValueError("no such file")

    a = g.add("a", fn=boom)
    b = g.add("b", fn=lambda ctx: 1, deps=[a])
    result = await Orchestrator(memory=None).execute(g)
    with pytest.raises(TaskNotSucceeded) as failed:
        result[a]
    assert (failed.value.task_id, failed.value.status) == ("a", "failed")
    assert "no such file" in str(failed.value)
    assert isinstance(failed.value, DelegateError)
    assert isinstance(failed.value, LookupError)
    with pytest.raises(TaskNotSucceeded, match="'b' has no output: it skipped"):
        result[b]
    assert result.task(b).output is None


async def test_a_handle_from_another_graph_is_a_key_error() -> None:
    g, other = TaskGraph(), TaskGraph()
    g.add("a", fn=lambda ctx: 1)
    stranger = other.add("zzz", fn=lambda ctx: 2)
    result = await Orchestrator(memory=None).execute(g)
    with pytest.raises(KeyError, match="has no task 'zzz'"):
        result[stranger]


def test_the_public_types_hold_under_mypy_strict() -> None:
    # tests/typecheck/public_types.py states, with assert_type, what a user's type checker sees:
    # Agent[Answer], Task[int] from an async fn, result[task] typed, RunResult[Answer], ...
    from mypy import api

    path = Path(__file__).parent / "typecheck" / "public_types.py"
    stdout, stderr, status = api.run(["--strict", "--no-error-summary", str(path)])
    assert status == 0, stdout + stderr
