"""Orchestrator: what a worker sees, templates, events, results and usage, configuration errors."""

from __future__ import annotations

import re
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from delegate.agents.agent import Agent
from delegate.agents.models import Message, ModelRequest, Usage
from delegate.errors import BadRequestError, ConfigError, GraphError, RateLimitError
from delegate.orchestrator.events import (
    Event,
    EventBus,
    RunFinished,
    RunStarted,
    TaskFailed,
    TaskQueued,
    TaskStarted,
    TaskSucceeded,
)
from delegate.orchestrator.graph import TaskContext, TaskGraph
from delegate.orchestrator.run import Orchestrator, RunResult
from delegate.orchestrator.scheduler import RetryPolicy
from delegate.testing import FunctionModel, ScriptedModel, tool_call

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.01)


class Point(BaseModel):
    x: int
    y: int


def _const(value: Any) -> Any:
    async def fn(context: TaskContext) -> Any:
        return value

    return fn


def _echo(name: str = "echo") -> FunctionModel:
    return FunctionModel(lambda request: "ok", name=name)


def _messages(model: FunctionModel | ScriptedModel, call: int = 0) -> list[Message]:
    return list(model.requests[call].messages)


async def _run(graph: TaskGraph, inputs: dict[str, Any] | None = None, **options: Any) -> RunResult:
    options.setdefault("retry", FAST)
    with anyio.fail_after(10):  # a guard against hangs, not a timing assertion
        return await Orchestrator(**options).execute(graph, inputs)


# --- what a worker sees -----------------------------------------------------------------------


async def test_worker_gets_instructions_prompt_and_only_its_deps_outputs() -> None:
    model = _echo()
    g = TaskGraph()
    a = g.add("a", fn=_const("A-out"))
    b = g.add("b", fn=_const("B-out"))
    g.add("c", fn=_const("SECRET-C"))  # not a dependency: the worker must not see it
    g.add("w", agent=Agent("w", model, instructions="Be brief."), prompt="Summarize.", deps=[a, b])

    result = await _run(g)

    assert result.status == "succeeded"
    assert model.calls == 1
    assert _messages(model) == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": "## Result of task 'a'\nA-out\n\n## Result of task 'b'\nB-out\n\n"
            "## Your task\nSummarize.",
        },
    ]


async def test_worker_without_deps_or_instructions_gets_just_its_prompt() -> None:
    model = _echo()
    g = TaskGraph()
    g.add("other", fn=_const("SECRET"))
    g.add("w", agent=Agent("w", model), prompt="Say hi.")

    await _run(g)

    assert _messages(model) == [{"role": "user", "content": "Say hi."}]


async def test_deps_named_in_the_template_are_not_repeated_as_context() -> None:
    model = _echo()
    g = TaskGraph()
    a = g.add("a", fn=_const("A-out"))
    b = g.add("b", fn=_const("B-out"))
    worker = Agent("w", model)
    g.add("one", agent=worker, prompt="Use {{ a }}.", deps=[a, b])
    g.add("both", agent=worker, prompt="{{ a }} + {{ b }}", deps=[a, b])

    await _run(g, max_concurrency=1)

    prompts = {r.messages[-1]["content"] for r in model.requests}
    assert prompts == {
        "## Result of task 'b'\nB-out\n\n## Your task\nUse A-out.",
        "A-out + B-out",
    }


async def test_explicit_deps_mapping_replaces_the_context() -> None:
    model = _echo()
    g = TaskGraph()
    a = g.add("a", fn=_const("A-out"))
    b = g.add("b", fn=_const("B-out"))
    g.add("w", agent=Agent("w", model), prompt="Only {{ deps.a }}.", deps=[a, b])

    await _run(g)

    assert _messages(model) == [{"role": "user", "content": "Only A-out."}]


async def test_inputs_by_bare_name_and_through_inputs() -> None:
    model = _echo()
    g = TaskGraph()
    g.add("w", agent=Agent("w", model), prompt="{{ topic }} / {{ inputs.topic }} / {{ n + 1 }}")

    await _run(g, {"topic": "batteries", "n": 41})

    assert _messages(model) == [{"role": "user", "content": "batteries / batteries / 42"}]


async def test_structured_and_dict_outputs_are_given_as_json() -> None:
    model = _echo()
    g = TaskGraph()
    p = g.add("p", agent=Agent("s", ScriptedModel(['{"x": 1, "y": 2}']), output_type=Point))
    d = g.add("d", fn=_const({"city": "Zürich", "n": [1, 2]}))
    g.add("w", agent=Agent("w", model), prompt="Combine.", deps=[p, d])

    result = await _run(g)

    assert result.tasks["p"].output == Point(x=1, y=2)
    assert _messages(model)[-1]["content"] == (
        '## Result of task \'p\'\n{"x":1,"y":2}\n\n'
        '## Result of task \'d\'\n{"city": "Zürich", "n": [1, 2]}\n\n'
        "## Your task\nCombine."
    )


async def test_template_can_read_fields_of_a_structured_output() -> None:
    model = _echo()
    g = TaskGraph()
    p = g.add("p", agent=Agent("s", ScriptedModel(['{"x": 3, "y": 4}']), output_type=Point))
    g.add("w", agent=Agent("w", model), prompt="x={{ p.x }}, y={{ deps.p.y }}", deps=[p])

    await _run(g)

    assert _messages(model)[-1]["content"] == "x=3, y=4"


async def test_structured_output_printed_by_the_template_is_json() -> None:
    model = _echo()
    g = TaskGraph()
    p = g.add("p", agent=Agent("s", ScriptedModel(['{"x": 1, "y": 2}']), output_type=Point))
    d = g.add("d", fn=_const({"k": "v"}))
    g.add("w", agent=Agent("w", model), prompt="{{ p }} {{ d }}", deps=[p, d])

    await _run(g)

    assert _messages(model)[-1]["content"] == '{"x":1,"y":2} {"k": "v"}'


# --- template errors --------------------------------------------------------------------------


async def test_undefined_placeholder_fails_before_any_call() -> None:
    model = _echo()
    calls: list[str] = []

    async def a_fn(context: TaskContext) -> str:
        calls.append(context.task_id)
        return "A"

    g = TaskGraph()
    a = g.add("a", fn=a_fn)
    g.add("w", agent=Agent("w", model), prompt="About {{ topc }} with {{ a }}.", deps=[a])

    with pytest.raises(GraphError) as info:
        await Orchestrator().execute(g, {"topic": "x", "style": "y"})

    assert str(info.value) == (
        "task 'w': placeholder {{ topc }} is neither a run input nor a dependency "
        "(did you mean 'topic'?) (inputs: style, topic; deps: a)"
    )
    assert model.calls == 0
    assert calls == []


async def test_every_undefined_placeholder_is_reported() -> None:
    g = TaskGraph()
    g.add("u", agent=Agent("w", _echo()), prompt="{{ zeta }} {{ alpha }}")
    g.add("v", agent=Agent("w2", _echo()), prompt="{{ beta }}")

    with pytest.raises(GraphError) as info:
        await Orchestrator().execute(g)

    assert str(info.value) == (
        "task 'u': placeholder {{ alpha }} is neither a run input nor a dependency "
        "(inputs: none; deps: none); "
        "task 'u': placeholder {{ zeta }} is neither a run input nor a dependency "
        "(inputs: none; deps: none); "
        "task 'v': placeholder {{ beta }} is neither a run input nor a dependency "
        "(inputs: none; deps: none)"
    )


async def test_render_error_fails_the_task_and_skips_its_dependents() -> None:
    model = _echo()
    g = TaskGraph()
    a = g.add("a", fn=_const("plain text"))
    b = g.add("b", agent=Agent("w", model), prompt="{{ a.nope }}", deps=[a])
    g.add("c", fn=_const("C"), deps=[b])
    g.add("free", fn=_const("F"))

    result = await _run(g)

    assert {k: t.status for k, t in result.tasks.items()} == {
        "a": "succeeded",
        "b": "failed",
        "c": "skipped",
        "free": "succeeded",
    }
    assert result.tasks["b"].error == (
        "task 'b': prompt template failed: 'str object' has no attribute 'nope'"
    )
    assert result.tasks["b"].attempts == 1  # a template error is not retried
    assert result.tasks["c"].error == "dependency 'b' failed"
    assert model.calls == 0
    assert result.status == "partial"


async def test_missing_key_of_inputs_fails_the_task() -> None:
    model = _echo()
    g = TaskGraph()
    g.add("t", agent=Agent("w", model), prompt="{{ inputs.missing }}")

    result = await _run(g, {"present": 1})

    assert result.tasks["t"].status == "failed"
    assert result.tasks["t"].error == (
        "task 't': prompt template failed: 'dict object' has no attribute 'missing'"
    )
    assert model.calls == 0


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (
            "{{ ''.__class__.__mro__ }}",
            "task 't': prompt template failed: access to attribute '__class__' of 'str' "
            "object is unsafe.",
        ),
        (
            "{{ inputs.update({'x': 1}) }}",
            "task 't': prompt template failed: access to attribute 'update' of 'dict' "
            "object is unsafe.",
        ),
        (
            "{{ topic.__init__.__globals__ }}",
            "task 't': prompt template failed: access to attribute '__init__' of 'str' "
            "object is unsafe.",
        ),
    ],
)
async def test_sandbox_blocks_unsafe_access(prompt: str, message: str) -> None:
    model = _echo()
    inputs = {"topic": "t"}
    g = TaskGraph()
    g.add("t", agent=Agent("w", model), prompt=prompt)
    g.add("other", fn=_const("fine"))

    result = await _run(g, inputs)

    assert result.tasks["t"].status == "failed"
    assert result.tasks["t"].error == message
    assert result.tasks["other"].status == "succeeded"
    assert inputs == {"topic": "t"}
    assert model.calls == 0


# --- events -----------------------------------------------------------------------------------


def _kinds(events: list[Event]) -> list[tuple[str, str | None]]:
    return [(e.kind, getattr(e, "task_id", None)) for e in events]


async def test_event_sequence_of_a_two_task_chain() -> None:
    events: list[Event] = []
    model = FunctionModel(lambda request: "done", name="m")
    g = TaskGraph()
    a = g.add("a", fn=_const("A"))
    g.add("b", agent=Agent("w", model), prompt="go", deps=[a])

    result = await Orchestrator(on_event=events.append).execute(g, run_id="r-1")

    assert _kinds(events) == [
        ("run_started", None),
        ("task_queued", "a"),
        ("task_started", "a"),
        ("task_succeeded", "a"),
        ("task_queued", "b"),
        ("task_started", "b"),
        ("task_succeeded", "b"),
        ("run_finished", None),
    ]
    assert {e.run_id for e in events} == {"r-1"}
    assert [e.at for e in events] == sorted(e.at for e in events)
    started = events[0]
    assert isinstance(started, RunStarted)
    assert started.tasks == 2
    assert isinstance(events[1], TaskQueued)
    b_started = events[5]
    assert isinstance(b_started, TaskStarted)
    assert (b_started.attempt, b_started.agent) == (1, "w")
    b_done = events[6]
    assert isinstance(b_done, TaskSucceeded)
    assert (b_done.attempt, b_done.output, b_done.model) == (1, "done", "m")
    assert b_done.usage == result.tasks["b"].usage
    assert b_done.usage.calls == 1
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.status == "succeeded"
    assert finished.usage.calls == result.usage.calls == 1


async def test_events_of_retries_failures_and_skips() -> None:
    events: list[Event] = []
    model = ScriptedModel([RateLimitError("429"), BadRequestError("bad")])
    g = TaskGraph()
    a = g.add("a", agent=Agent("w", model), prompt="go")
    g.add("b", fn=_const("B"), deps=[a])

    await Orchestrator(on_event=events.append, retry=FAST).execute(g)

    assert _kinds(events) == [
        ("run_started", None),
        ("task_queued", "a"),
        ("task_started", "a"),
        ("task_retried", "a"),
        ("task_started", "a"),
        ("task_failed", "a"),
        ("task_skipped", "b"),
        ("run_finished", None),
    ]
    failed = events[5]
    assert isinstance(failed, TaskFailed)
    assert (failed.attempt, failed.error) == (2, "bad")


async def test_a_raising_handler_ends_the_run_with_its_exception() -> None:
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("handler bug")

    orch = Orchestrator()
    orch.subscribe(broken)
    orch.subscribe(lambda event: seen.append(event.kind))
    g = TaskGraph()
    g.add("a", fn=_const("A"))

    with pytest.raises(RuntimeError, match="handler bug"):
        await orch.execute(g)

    # The handlers after it got the event; then the run stopped (tests/test_errors_propagate.py).
    assert seen == ["run_started"]


async def test_unsubscribe_stops_delivery() -> None:
    seen: list[str] = []
    orch = Orchestrator()
    unsubscribe = orch.subscribe(lambda event: seen.append(event.kind))
    g = TaskGraph()
    g.add("a", fn=_const("A"))

    await orch.execute(g)
    assert len(seen) == 5
    unsubscribe()
    unsubscribe()  # a second call is harmless
    await orch.execute(g)

    assert len(seen) == 5
    assert not orch.events.active


def test_event_bus_delivers_in_subscription_order() -> None:
    bus = EventBus()
    order: list[str] = []
    assert not bus.active
    bus.subscribe(lambda event: order.append("first"))
    remove = bus.subscribe(lambda event: order.append("second"))
    bus.subscribe(lambda event: order.append("third"))
    assert bus.active

    bus.emit(RunStarted(run_id="r", tasks=0))
    remove()
    bus.emit(RunStarted(run_id="r", tasks=0))

    assert order == ["first", "second", "third", "first", "third"]


# --- results ----------------------------------------------------------------------------------


async def test_output_is_the_sink_output() -> None:
    g = TaskGraph()
    a = g.add("a", fn=_const(1))
    g.add("b", fn=_const({"final": True}), deps=[a])

    result = await Orchestrator().execute(g, run_id="given")

    assert result.output == {"final": True}
    assert result.run_id == "given"
    assert result.status == "succeeded"
    assert result.failed == {}
    assert list(result.tasks) == ["a", "b"]
    b = result.tasks["b"]
    assert (b.id, b.deps, b.attempts, b.error, b.agent, b.model) == (
        "b",
        ("a",),
        1,
        None,
        None,
        None,
    )
    assert b.started_at is not None
    assert b.finished_at is not None
    assert b.started_at <= b.finished_at
    assert result.started_at <= result.finished_at
    assert result.duration >= 0


async def test_default_run_id_is_fresh_hex() -> None:
    g = TaskGraph()
    g.add("a", fn=_const(1))
    orch = Orchestrator()
    first, second = await orch.execute(g), await orch.execute(g)
    assert re.fullmatch(r"[0-9a-f]{32}", first.run_id)
    assert first.run_id != second.run_id


async def test_several_sinks_give_a_dict_of_the_succeeded_ones() -> None:
    async def bad(context: TaskContext) -> str:
        raise BadRequestError("no")

    g = TaskGraph()
    a = g.add("a", fn=_const("A"))
    g.add("x", fn=_const("X"), deps=[a])
    g.add("y", fn=_const("Y"), deps=[a])
    g.add("z", fn=bad)

    result = await _run(g)

    assert result.output == {"x": "X", "y": "Y"}
    assert result.status == "partial"


async def test_a_failed_single_sink_gives_no_output() -> None:
    async def bad(context: TaskContext) -> str:
        raise BadRequestError("no")

    g = TaskGraph()
    a = g.add("a", fn=_const("A"))
    g.add("b", fn=bad, deps=[a])

    result = await _run(g)

    assert (result.status, result.output) == ("partial", None)


async def test_usage_totals_and_breakdowns() -> None:
    m1 = FunctionModel(lambda r: "short answer", name="m-one", input_price=1.0, output_price=4.0)
    m2 = FunctionModel(
        lambda r: "a somewhat longer answer here", name="m-two", input_price=2.0, output_price=8.0
    )
    alpha, beta = Agent("alpha", m1), Agent("beta", m2)
    g = TaskGraph()
    a1 = g.add("a1", agent=alpha, prompt="first question")
    a2 = g.add("a2", agent=alpha, prompt="second, longer question with more words", deps=[a1])
    g.add("b1", agent=beta, prompt="third", deps=[a1, a2])
    g.add("f", fn=_const("no model"))

    result = await _run(g)

    tasks = result.tasks
    alpha_usage = tasks["a1"].usage + tasks["a2"].usage
    beta_usage = tasks["b1"].usage
    total = alpha_usage + beta_usage
    assert tasks["f"].usage == Usage()
    assert (tasks["a1"].agent, tasks["a1"].model, tasks["b1"].agent, tasks["b1"].model) == (
        "alpha",
        "m-one",
        "beta",
        "m-two",
    )
    usage = result.usage
    assert (usage.input_tokens, usage.output_tokens, usage.calls) == (
        total.input_tokens,
        total.output_tokens,
        3,
    )
    assert usage.input_tokens > 0
    assert usage.output_tokens > 0
    assert usage.cost_usd == pytest.approx(total.cost_usd, rel=1e-12)
    assert usage.cost_usd > 0
    assert (usage.reasoning_tokens, usage.cached_tokens) == (0, 0)
    assert set(usage.by_model) == {"m-one", "m-two"}
    assert set(usage.by_agent) == {"alpha", "beta"}
    for key, expected in (("m-one", alpha_usage), ("m-two", beta_usage)):
        got = usage.by_model[key]
        assert (got.input_tokens, got.output_tokens, got.calls) == (
            expected.input_tokens,
            expected.output_tokens,
            expected.calls,
        )
        assert got.cost_usd == pytest.approx(expected.cost_usd, rel=1e-12)
    assert usage.by_agent["alpha"].calls == 2
    assert usage.by_agent["beta"].calls == 1
    assert usage.by_agent["alpha"].input_tokens == alpha_usage.input_tokens


async def test_usage_of_a_tool_loop_counts_every_call() -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    model = ScriptedModel([tool_call("add", a=2, b=3), "5"], name="tooly")
    g = TaskGraph()
    g.add("t", agent=Agent("calc", model, tools=[add]), prompt="2+3?")

    result = await _run(g)

    task = result.tasks["t"]
    assert (task.status, task.output) == ("succeeded", "5")
    assert task.usage.calls == 2
    assert result.usage.calls == 2
    assert result.usage.by_model["tooly"].calls == 2
    assert result.usage.input_tokens == task.usage.input_tokens
    assert model.requests[1].messages[-1] == {
        "role": "tool",
        "tool_call_id": tool_call("add", a=2, b=3).tool_calls[0].id,
        "content": "5",
    }


async def test_usage_of_a_structured_reask() -> None:
    model = ScriptedModel(['{"x": "not a number", "y": 2}', '{"x": 1, "y": 2}'], name="sm")
    g = TaskGraph()
    g.add("t", agent=Agent("s", model, output_type=Point), prompt="point?")

    result = await _run(g)

    task = result.tasks["t"]
    assert (task.status, task.output, task.attempts) == ("succeeded", Point(x=1, y=2), 1)
    assert task.usage.calls == 2
    assert result.usage.calls == 2
    assert result.usage.by_agent["s"].calls == 2


async def test_fallback_answer_is_reported_as_the_fallbacks() -> None:
    weak = ScriptedModel(["not json", "still not json"], name="weak-m")
    strong_model = ScriptedModel(['{"x": 5, "y": 6}'], name="strong-m")
    strong = Agent("strong", strong_model, output_type=Point)
    cheap = Agent("cheap", weak, output_type=Point, fallback=strong)
    g = TaskGraph()
    g.add("t", agent=cheap, prompt="point?")

    result = await _run(g)

    task = result.tasks["t"]
    assert (task.status, task.output, task.agent, task.model) == (
        "succeeded",
        Point(x=5, y=6),
        "strong",
        "strong-m",
    )
    assert task.usage.calls == 3
    assert {k: v.calls for k, v in result.usage.by_agent.items()} == {"cheap": 2, "strong": 1}
    assert {k: v.calls for k, v in result.usage.by_model.items()} == {"weak-m": 2, "strong-m": 1}


async def test_usage_of_a_failed_task_is_counted() -> None:
    events: list[Event] = []
    model = ScriptedModel(["nope", "still nope"], name="sm")
    g = TaskGraph()
    g.add("t", agent=Agent("s", model, output_type=Point), prompt="point?")

    result = await Orchestrator(on_event=events.append, retry=FAST).execute(g)

    task = result.tasks["t"]
    assert (task.status, task.attempts) == ("failed", 1)  # a validation failure is permanent
    assert task.error is not None
    assert task.error.startswith("Agent 's': the answer did not validate as Point even after")
    assert task.usage.calls == 2
    assert result.usage.calls == 2
    failed = [e for e in events if isinstance(e, TaskFailed)]
    assert [e.usage.calls for e in failed] == [2]


async def test_usage_of_an_attempt_that_failed_after_a_call_is_kept() -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    # Attempt 1: one call answered (a tool round), then a 429; attempt 2: two calls.
    model = ScriptedModel(
        [tool_call("add", a=1, b=1), RateLimitError("429"), tool_call("add", a=1, b=1), "2"]
    )
    g = TaskGraph()
    g.add("t", agent=Agent("calc", model, tools=[add]), prompt="1+1?")

    result = await _run(g)

    task = result.tasks["t"]
    assert (task.status, task.attempts, task.output) == ("succeeded", 2, "2")
    assert model.calls == 4
    assert task.usage.calls == 4  # requests sent: the 429 is one of them
    assert result.usage.calls == 4


def test_execute_sync_outside_an_event_loop() -> None:
    g = TaskGraph()
    a = g.add("a", fn=_const(20))

    def double(context: TaskContext) -> int:
        return 2 * int(context.deps["a"]) + int(context.inputs["plus"])

    g.add("b", fn=double, deps=[a])

    result = Orchestrator().execute_sync(g, {"plus": 2}, run_id="sync-run")

    assert (result.status, result.output, result.run_id) == ("succeeded", 42, "sync-run")


async def test_execute_sync_inside_an_event_loop_is_a_config_error() -> None:
    g = TaskGraph()
    g.add("a", fn=_const(1))
    with pytest.raises(ConfigError) as info:
        Orchestrator().execute_sync(g)
    assert str(info.value) == (
        "execute_sync() was called inside a running event loop; await execute() instead"
    )


# --- configuration errors ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, 1.5, "4"])
def test_max_concurrency_must_be_a_positive_int(value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        Orchestrator(max_concurrency=value)
    assert str(info.value) == f"max_concurrency must be an integer ≥ 1, got {value!r}"


def test_duplicate_worker_names() -> None:
    with pytest.raises(ConfigError) as info:
        Orchestrator(workers=[Agent("w", _echo()), Agent("w", _echo())])
    assert str(info.value) == "two workers are named 'w'; give each agent its own name"


def test_workers_must_be_agents() -> None:
    with pytest.raises(ConfigError) as info:
        Orchestrator(workers=[Agent("w", _echo()), "scout"])  # type: ignore[list-item]
    assert str(info.value) == (
        "workers must be Agent instances, got str; wrap a model as Agent(name, model)"
    )


def test_memory_must_be_a_url_a_store_or_none() -> None:
    with pytest.raises(ConfigError, match="memory must be a database URL"):
        Orchestrator(memory=42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="memory must be a database URL"):
        Orchestrator(memory="  ")
    with pytest.raises(ConfigError, match="cache=True needs a store"):
        Orchestrator(memory=None, cache=True)


async def test_in_process_memory_runs() -> None:
    g = TaskGraph()
    g.add("a", fn=_const("A"))
    result = await Orchestrator(memory=":memory:").execute(g)
    assert result.output == "A"


async def test_unknown_agent_name_suggests_a_worker() -> None:
    model = _echo()
    orch = Orchestrator(workers=[Agent("writer", model), Agent("reader", _echo())])
    g = TaskGraph()
    g.add("t", agent="writr", prompt="go")

    with pytest.raises(GraphError) as info:
        await orch.execute(g)

    assert str(info.value) == (
        "task 't' uses agent 'writr', which is not among the orchestrator's workers "
        "(did you mean 'writer'?) (workers: reader, writer); add it to "
        "Orchestrator(workers=[...])"
    )
    assert model.calls == 0


async def test_unknown_agent_name_without_workers() -> None:
    g = TaskGraph()
    g.add("t", agent="scout", prompt="go")
    with pytest.raises(GraphError) as info:
        await Orchestrator().execute(g)
    assert str(info.value) == (
        "task 't' uses agent 'scout', which is not among the orchestrator's workers "
        "(workers: none); add it to Orchestrator(workers=[...])"
    )


async def test_worker_by_name_and_by_handle_is_the_same_agent() -> None:
    model = _echo()
    writer = Agent("writer", model)
    g = TaskGraph()
    a = g.add("a", agent="writer", prompt="one")
    g.add("b", agent=writer, prompt="two", deps=[a])

    result = await Orchestrator(workers=[writer]).execute(g)

    assert result.status == "succeeded"
    assert model.calls == 2


@pytest.mark.parametrize("by_name", [False, True], ids=["two-handles", "handle-and-worker"])
async def test_two_different_agents_with_one_name(by_name: bool) -> None:
    first, second = Agent("w", _echo()), Agent("w", _echo())
    g = TaskGraph()
    g.add("a", agent="w" if by_name else first, prompt="one")
    g.add("b", agent=second, prompt="two")

    with pytest.raises(GraphError) as info:
        await Orchestrator(workers=[first]).execute(g)

    assert str(info.value) == (
        "two different agents are named 'w' (task 'b'); give each agent its own name"
    )
    assert first.model.calls == 0  # type: ignore[attr-defined]


async def test_execute_takes_a_graph() -> None:
    with pytest.raises(ConfigError) as info:
        await Orchestrator().execute({"a": 1})  # type: ignore[arg-type]
    assert str(info.value) == "execute() takes a TaskGraph, got dict"


async def test_agent_tasks_and_model_requests_carry_the_agent_settings() -> None:
    captured: list[ModelRequest] = []

    def answer(request: ModelRequest) -> str:
        captured.append(request)
        return "ok"

    agent = Agent(
        "w",
        FunctionModel(answer),
        max_output_tokens=50,
        reasoning_effort="low",
        temperature=0.25,
    )
    g = TaskGraph()
    g.add("t", agent=agent, prompt="go")

    await _run(g)

    [request] = captured
    assert (request.max_output_tokens, request.reasoning_effort, request.temperature) == (
        50,
        "low",
        0.25,
    )
    assert request.tools == ()
    assert request.output_schema is None


async def test_a_reduce_after_done_runs_over_a_partial_map() -> None:
    def answer(request: ModelRequest) -> str:
        prompt = str(request.messages[-1]["content"])
        if prompt.endswith("Map b."):
            raise BadRequestError("document b is unreadable")
        return f"summary of {len(prompt)} chars" if "Reduce" in prompt else prompt[-6:]

    model = FunctionModel(answer)
    worker = Agent("worker", model)
    graph = TaskGraph()
    maps = [graph.add(f"map_{x}", agent=worker, prompt=f"Map {x}.") for x in "abc"]
    graph.add("reduce", agent=worker, prompt="Reduce.", deps=maps, after="done")
    graph.add("strict", agent=worker, prompt="Strict.", deps=maps)
    result = await Orchestrator(memory=None, retry=FAST).execute(graph)

    assert result.tasks["map_b"].status == "failed"
    assert result.tasks["strict"].status == "skipped"
    assert result.tasks["reduce"].status == "succeeded"
    assert result.status == "partial"
    reduce_prompt = str(model.requests[-1].messages[-1]["content"])
    assert "## Result of task 'map_a'\nMap a." in reduce_prompt
    assert (
        "## Result of task 'map_b'\n(no result: the task failed: document b is unreadable)"
    ) in reduce_prompt
    assert reduce_prompt.endswith("## Your task\nReduce.")


async def test_after_done_waits_for_every_dependency_and_survives_cascades() -> None:
    order: list[str] = []

    async def step(ctx: TaskContext) -> str:
        order.append(ctx.task_id)
        if ctx.task_id == "first":
            raise ValueError("boom")
        await anyio.sleep(0.01 if ctx.task_id == "slow" else 0)
        return ctx.task_id

    graph = TaskGraph()
    graph.add("first", fn=step)
    graph.add("middle", fn=step, deps=["first"])  # skipped: its dependency failed
    graph.add("slow", fn=step)
    graph.add("last", fn=step, deps=["middle", "slow"], after="done")
    result = await Orchestrator(memory=None).execute(graph)

    assert result.tasks["middle"].status == "skipped"
    assert result.tasks["last"].status == "succeeded"
    assert order.index("last") > order.index("slow")
    with pytest.raises(GraphError, match='after must be "success" or "done"'):
        TaskGraph().add("x", fn=step, after="always")  # type: ignore[arg-type]
