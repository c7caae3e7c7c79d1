"""Blocking twins are declared from their async original (`delegate._sync.syncify`): the same
parameters, the same docs, the override of a subclass, and one refusal inside an event loop."""

from __future__ import annotations

import inspect

import pytest

from delegate import Agent, AgentResult, ConfigError, Tool, tool
from delegate._sync import syncify
from delegate.testing import ScriptedModel, tool_call


def _lookup_tool(seen: list[str]) -> Tool:
    @tool
    def lookup(key: str) -> str:
        """Look a key up.

        Args:
            key: what to look up.
        """
        seen.append(key)
        return f"value of {key}"

    return lookup


def test_agent_run_sync_passes_tools_for_this_run() -> None:
    # `tools=` was missing from the hand-written twin; the declared one has every parameter.
    seen: list[str] = []
    model = ScriptedModel([tool_call("lookup", key="x"), "the value is known"])
    agent = Agent("a", model)

    result = agent.run_sync("what is x?", tools=[_lookup_tool(seen)], max_output_tokens=64)

    assert result.output == "the value is known"
    assert seen == ["x"]
    assert model.calls == 2
    assert [definition.name for definition in model.requests[0].tools] == ["lookup"]
    assert model.requests[0].max_output_tokens == 64
    assert model.requests[1].messages[-1] == {
        "role": "tool",
        "tool_call_id": tool_call("lookup", key="x").tool_calls[0].id,
        "content": "value of x",
    }


def test_agent_run_sync_is_declared_from_run() -> None:
    assert Agent.run_sync.__wrapped__ is Agent.run  # type: ignore[attr-defined]
    assert inspect.signature(Agent.run_sync) == inspect.signature(Agent.run)
    assert (Agent.run_sync.__name__, Agent.run_sync.__qualname__) == ("run_sync", "Agent.run_sync")
    doc = inspect.getdoc(Agent.run_sync) or ""
    assert doc.startswith(
        "Blocking twin of `run`, for scripts and notebooks without an event loop.\n\n"
    )
    assert doc.endswith(inspect.getdoc(Agent.run) or "")


class _Shouting(Agent):
    async def run(self, prompt: str, **options: object) -> AgentResult:  # type: ignore[override]
        return await super().run(prompt.upper())


def test_a_twin_runs_the_override_of_a_subclass() -> None:
    model = ScriptedModel(["ok"])
    _Shouting("a", model).run_sync("quiet please")
    assert model.requests[0].messages[-1] == {"role": "user", "content": "QUIET PLEASE"}


class _Counter:
    """A class with a twin of its own, as a user would declare one."""

    def __init__(self) -> None:
        self.count = 0

    async def add(self, step: int = 1, *, times: int = 1) -> int:
        """Add `step`, `times` times; the new count."""
        self.count += step * times
        return self.count

    add_sync = syncify(add)


def test_a_declared_twin_has_the_signature_and_result_of_its_original() -> None:
    counter = _Counter()
    assert counter.add_sync(2, times=3) == 6
    assert counter.add_sync() == 7
    assert inspect.signature(_Counter.add_sync) == inspect.signature(_Counter.add)
    assert (
        str(inspect.signature(counter.add_sync))
        == "(step: 'int' = 1, *, times: 'int' = 1) -> 'int'"
    )


def test_syncify_refuses_a_function_that_is_not_async() -> None:
    def plain(self: object) -> int:
        return 1

    with pytest.raises(ConfigError, match=r"syncify\(\) takes an async method, got <function"):
        syncify(plain)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_twin_inside_an_event_loop_says_to_await_the_original() -> None:
    model = ScriptedModel(["never sent"])
    with pytest.raises(
        ConfigError,
        match=r"^run_sync\(\) was called inside a running event loop; await run\(\) instead$",
    ):
        Agent("a", model).run_sync("hello")
    assert model.calls == 0
