"""The public API's types, as a user's type checker sees them.

Checked by mypy --strict in tests/test_typed_results.py; never run.
"""

from __future__ import annotations

from typing import assert_type

from pydantic import BaseModel

from delegate import Agent, AgentResult, Orchestrator, RunResult, Task, TaskContext, TaskGraph
from delegate.testing import FunctionModel


class Answer(BaseModel):
    value: int


async def double(ctx: TaskContext) -> int:
    return 2


def names(ctx: TaskContext) -> list[str]:
    return []


async def check() -> None:
    plain = Agent("plain", FunctionModel(lambda request: "x"))
    typed = Agent("typed", FunctionModel(lambda request: '{"value": 1}'), output_type=Answer)
    assert_type(plain, Agent[str])
    assert_type(typed, Agent[Answer])
    assert_type(await typed.run("q"), AgentResult[Answer])
    assert_type(plain.run_sync("q").output, str)

    g = TaskGraph()
    a = g.add("a", agent=typed, prompt="q")
    b = g.add("b", agent=plain, prompt="q", deps=[a])
    c = g.add("c", fn=double, deps=[a, b])
    d = g.add("d", fn=names)
    e = g.add("e", agent="worker", prompt="q", timeout=3.0, votes=3)
    assert_type(a, Task[Answer])
    assert_type(b, Task[str])
    assert_type(c, Task[int])
    assert_type(d, Task[list[str]])
    assert_type(e, Task[object])

    async with Orchestrator(workers=[plain, typed]) as orch:
        result = await orch.execute(g)
        assert_type(result[a], Answer)
        assert_type(result[c], int)
        assert_type(result.task(a).output, Answer | None)
        planned = await orch.run("goal", output_type=Answer)
        assert_type(planned, RunResult[Answer])
        assert_type(planned.output, Answer | None)
        text = await orch.run("goal")
        assert_type(text.output, str | None)
        unsubscribe = orch.subscribe(print)
        unsubscribe()
