"""Hostile planner output, model output and run inputs: typed errors and bounded work (issue 12).

One section per way in: token counting, plan validation, templates (their compile-time checks,
what a render may raise, the sandbox's limits), untrusted JSON (plans, tool arguments, structured
outputs) and the memory API. Each test names the input the issue reported and asserts what
happens now, exactly. `tests/test_fuzz.py` runs the same ways in with generated inputs.
"""

from __future__ import annotations

import json
import re
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from _backends import store_url  # noqa: F401 - a fixture, used by `store`
from click.testing import CliRunner
from pydantic import BaseModel

from delegate._json import MAX_JSON_DEPTH, loads_untrusted
from delegate.agents.agent import Agent
from delegate.agents.models import ModelRequest, _structured
from delegate.agents.tokens import _chunks, _tiktoken, count_pieces, count_text, truncate_text
from delegate.agents.tools import Tool
from delegate.cli import main
from delegate.errors import (
    ConfigError,
    DelegateError,
    JSONInputError,
    MemoryInputError,
    OutputValidationError,
    TemplateError,
)
from delegate.memory.blackboard import Memory
from delegate.memory.store import Store
from delegate.orchestrator import _sandbox, _sandbox_limits
from delegate.orchestrator._sandbox import MAX_STEPS, check_render
from delegate.orchestrator.graph import PROMPT_ENV, TaskGraph, compile_prompt
from delegate.orchestrator.plan_stream import PlanStream
from delegate.orchestrator.planner import Plan, Planner, validate_plan
from delegate.orchestrator.run import Orchestrator
from delegate.testing import FunctionModel, ScriptedModel
from delegate.workflows import load_workflow_text

pytestmark = pytest.mark.anyio

MODEL = "openai/gpt-4o-mini"
DEEP = "[" * 100_000 + "]" * 100_000


def _task(id: str, deps: tuple[str, ...] = (), **more: Any) -> dict[str, Any]:
    return {"id": id, "agent": "w", "instructions": f"Do {id}.", "deps": list(deps), **more}


def _workers() -> dict[str, Agent]:
    return {"w": Agent("w", FunctionModel(lambda request: "ok", name=MODEL))}


def _validate(tasks: list[dict[str, Any]], max_tasks: int = 20) -> list[str]:
    return validate_plan(
        Plan.model_validate({"tasks": tasks}), workers=_workers(), max_tasks=max_tasks
    )


def _run_prompt(prompt: str, inputs: dict[str, Any] | None = None) -> tuple[str, str | None]:
    model = FunctionModel(lambda request: "ok", name=MODEL)
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model), prompt=prompt)
    result = Orchestrator().execute_sync(graph, inputs or {})
    assert model.calls == (1 if result.tasks["t"].status == "succeeded" else 0)
    return result.tasks["t"].status, result.tasks["t"].error


# --- token counting ------------------------------------------------------------------------------


def test_a_million_spaces_are_counted_not_a_panic() -> None:
    # tiktoken's pre-tokenizer overflowed its stack on this (a BaseException nothing caught).
    assert count_text(" " * 1_000_000, MODEL) == 7813
    assert count_text(" " * 1_000_000, "openai/gpt-4") == 7813
    assert len(truncate_text(" " * 1_000_000, 100, MODEL)) == 12_800


def test_chunked_counts_are_exact_for_text() -> None:
    words = ["the", "quick", "über", "naïve", "日本語", "😀", "don't", "x1234", "(a)", "!!!", "\n"]
    text = " ".join(words[(i * 7) % len(words)] for i in range(60_000))
    assert len(list(_chunks(text))) > 3
    encoder = _tiktoken("o200k_base")
    assert encoder is not None
    tokens = encoder.encode_ordinary(text)
    assert count_text(text, MODEL) == len(tokens)
    assert truncate_text(text, 50_000, MODEL) == encoder.decode(tokens[:50_000])


def test_a_text_beyond_any_context_window_is_not_tokenized() -> None:
    # gpt-4o-mini takes 128,000 tokens; no token is longer than 128 characters.
    chars = 128_000 * 128 + 1
    assert count_text("x" * chars, MODEL) == 128_001  # a lower bound, and more than the window


def test_a_run_with_a_million_spaces_in_and_out_succeeds() -> None:
    model = FunctionModel(lambda request: " " * 1_000_000, name=MODEL)
    graph = TaskGraph()
    graph.add("a", agent=Agent("w", model), prompt="{{ doc }}")
    result = Orchestrator().execute_sync(graph, {"doc": " " * 1_000_000})
    assert result.status == "succeeded"
    # The fakes bill a piece of the pre-tokenizer's split per token: a chunk of spaces each.
    assert result.tasks["a"].usage.output_tokens == count_pieces(" " * 1_000_000, MODEL) == 16


# --- plan validation -----------------------------------------------------------------------------


def test_a_duplicate_id_closing_a_cycle_is_reported() -> None:
    # It raised StopIteration ("coroutine raised StopIteration" while planning).
    assert _validate([_task("a"), _task("b", ("a",)), _task("a", ("b",))]) == [
        "task id 'a' is used by 2 tasks; give each task its own id",
        "tasks 'a' → 'b' → 'a' form a cycle (each depends on the next); remove one of these "
        "dependencies",
    ]


def test_a_huge_plan_is_refused_by_its_size_first() -> None:
    chain = [_task(f"t{i}", (f"t{i - 1}",) if i else ()) for i in range(10_000)]
    assert _validate(chain) == [
        "the plan has 10000 tasks, more than max_tasks=20; merge related tasks so there are at "
        "most 20"
    ]


def test_cycle_detection_is_linear() -> None:
    # A 10,000-task chain took 18-35 s and 3.25 GB; a ring of them is one cycle.
    n = 10_000
    chain = Plan.model_validate(
        {"tasks": [_task(f"t{i}", (f"t{i - 1}",) if i else ()) for i in range(n)]}
    )
    ring = Plan.model_validate({"tasks": [_task(f"t{i}", (f"t{(i - 1) % n}",)) for i in range(n)]})
    workers = _workers()
    tracemalloc.start()
    try:
        assert validate_plan(chain, workers=workers, max_tasks=n) == []
        errors = validate_plan(ring, workers=workers, max_tasks=n)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(errors) == 1
    assert errors[0].startswith("tasks 't0' → 't9999' → 't9998' → ")
    assert errors[0].count("→") == n
    assert peak < 200_000_000


def test_expected_output_is_validated_like_instructions() -> None:
    [error] = _validate([_task("a", expected_output="{{ oops")])
    assert error.startswith("task 'a': prompt template line 3: ")
    assert error.endswith("; expected_output is part of the prompt: write it as plain text")


@pytest.mark.parametrize(
    ("instructions", "problem"),
    [
        ("{% include 'x' %}", "prompt templates stand alone: {% include %}, {% import %} and "),
        ("{{ 1/0 }}", "ZeroDivisionError: division by zero"),
        ("{{ 'a'+1 }}", 'TypeError: can only concatenate str (not "int") to str'),
        ("{{ range(1,2,0) }}", "ValueError: range() arg 3 must not be zero"),
        ("{{ 10**4300 }}", "the template computes a number of about 17,200 bits, more than"),
        ("{{ 'a'*(10**9) }}", "the template builds a value of 1,000,000,000 characters, more"),
    ],
)
def test_instructions_that_cannot_render_are_sent_back(instructions: str, problem: str) -> None:
    [error] = _validate([_task("a", instructions=instructions)])
    assert error.startswith(f"task 'a': instructions fail to render whatever the inputs ({problem}")
    assert error.endswith("write instructions as plain text, or {{ inputs.NAME }} for an input")


def test_placeholders_do_not_fail_the_render_check() -> None:
    ordinary = (
        "Use {{ deps.search.results|first }} and {{ inputs.n * 2 }} items; "
        "{% for k, v in inputs.opts|dictsort %}{{ k }}={{ v|int + 1 }} {% endfor %}"
        "{{ '%s!'|format(inputs.name) }} {{ inputs.name|upper|tojson }} {{ x.y[0].z() }}"
    )
    assert check_render(PROMPT_ENV, ordinary) is None
    assert _validate([_task("a", instructions=ordinary)], max_tasks=20) == []


async def test_a_plan_that_cannot_render_gets_a_repair_request() -> None:
    bad = {"tasks": [_task("a", instructions="{{ 1/0 }}")]}
    good = {"tasks": [_task("a")]}
    model = ScriptedModel([bad, good], name="reasoner")
    result = await Planner(Agent("planner", model)).plan(
        "goal", inputs={}, workers=_workers(), budget_text="no limit"
    )
    assert result.attempts == 2
    assert result.errors[0][0].startswith("task 'a': instructions fail to render")
    assert "ZeroDivisionError" in model.requests[1].messages[1]["content"]


# --- templates: compile-time ---------------------------------------------------------------------


def test_huge_numbers_do_not_break_constant_folding() -> None:
    # jinja folded {{ 10**4300 }} at compile time and raised ValueError.
    graph = TaskGraph()
    task = graph.add("t", agent="w", prompt="{{ 10**4300 }}")
    assert task.template is not None
    loaded = load_workflow_text(
        "name: t\nagents:\n  w: {model: openai/gpt-4o-mini}\n"
        "steps:\n  - id: a\n    agent: w\n    prompt: '{{ 10**4300 }}'\n"
    )
    assert loaded.spec.name == "t"
    assert _run_prompt("{{ 10**4300 }}") == (
        "failed",
        "task 't': prompt template failed: the template computes a number of about 17,200 bits, "
        "more than the limit of 4,096",
    )


def test_delegate_validate_accepts_a_huge_number(tmp_path: Any) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        "name: t\nagents:\n  w: {model: openai/gpt-4o-mini}\n"
        "steps:\n  - id: a\n    agent: w\n    prompt: '{{ 10**4300 }}'\n"
    )
    result = CliRunner().invoke(main, ["validate", str(path)], prog_name="delegate")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("{{ 1" + "0" * 5000 + " }}", "prompt template line 1: ValueError: Exceeds the limit"),
        ("{{" + "(" * 1000 + "1" + ")" * 1000 + "}}", "the prompt template nests too deeply"),
        ("{% if 1 %}" * 2000 + "{% endif %}" * 2000, "the prompt template nests too deeply"),
    ],
)
def test_templates_that_cannot_compile_are_template_errors(prompt: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_prompt("t", prompt)
    assert str(caught.value).startswith(f"task 't': {message}")


# --- templates: what a render raises -------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (
            "{% include 'x' %}",
            "prompt templates stand alone: {% include %}, {% import %} and "
            "{% extends %} are not available",
        ),
        ("{{ 1/0 }}", "ZeroDivisionError: division by zero"),
        ("{{ 'a'+1 }}", 'TypeError: can only concatenate str (not "int") to str'),
        ("{{ range(1,2,0) }}", "ValueError: range() arg 3 must not be zero"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "the template recurses too deeply"),
    ],
)
def test_a_render_that_raises_fails_its_task_naming_it(prompt: str, message: str) -> None:
    status, error = _run_prompt(prompt)
    assert status == "failed"
    assert error is not None
    assert error.startswith(f"task 't': prompt template failed: {message}")


# --- templates: the sandbox's limits -------------------------------------------------------------

_STEPS = f"the template takes more than {MAX_STEPS:,} steps (loop iterations, calls, filters and "
_TOO_LONG = "the template builds a value of {}, more than the limit of {}"


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            _STEPS,
        ),
        (
            "{% set a='a'*1000 %}{% set b=a*1000 %}{{ b*300 }}",
            _TOO_LONG.format("300,000,000 characters", "8,000,000"),
        ),
        ("{{ 'a'*(10**9) }}", _TOO_LONG.format("1,000,000,000 characters", "8,000,000")),
        ("{{ [1]*(10**8) }}", _TOO_LONG.format("100,000,000 items", "1,000,000")),
        ("{{ 2**5000 }}", "the template computes a number of about 10,000 bits, more than"),
        ("{{ 'a'|center(10**9) }}", _TOO_LONG.format("1,000,000,000 characters", "8,000,000")),
        ("{{ 'a'.ljust(10**9) }}", _TOO_LONG.format("1,000,000,000 characters", "8,000,000")),
        ("{{ '%999999999d' % 1 }}", "the template formats with a width or precision of 999999999"),
        ("{{ '{:>999999999}'.format(1) }}", "the template formats with a width or precision"),
        (
            "{{ ('x'*10)|replace('', 'y'*10**6) }}",
            _TOO_LONG.format("11,000,010 characters", "8,000,000"),
        ),
        (
            "{% set s='x'*10**5 %}{{ ([s]*1000)|join }}",
            _TOO_LONG.format("100,000,000 characters", "8,000,000"),
        ),
        ("{% set s='x'*10**5 %}{{ [s]*1000 }}", "the template turns a value of more than"),
        ("{{ lipsum(10**6) }}", "lipsum() takes counts from 0 to 1000"),
        ("{{ [1]|batch(10**9, 'x')|list }}", _TOO_LONG.format("1,000,000,000 items", "1,000,000")),
        (
            "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
            "{% endfor %}",
            _TOO_LONG.format("8,388,608 characters", "8,000,000"),
        ),
        (
            "{% for i in range(100000) %}{% set x %}{{ 'y'*10000 }}{% endset %}{% endfor %}",
            "the template builds more than 32,000,000 characters in all",
        ),
    ],
)
def test_the_sandbox_bounds_work_and_sizes(
    prompt: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wall-clock backstop stays out of the way (a loaded machine must not change the error).
    monkeypatch.setattr(_sandbox_limits, "MAX_SECONDS", 600.0)
    tracemalloc.start()
    try:
        template, _ = compile_prompt("t", prompt)
        assert template is not None
        try:
            template.render()
            outcome = "OK"
        except Exception as exc:  # jinja2's errors, turned into TemplateError by the callers
            outcome = str(exc)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert outcome.startswith(message)
    assert peak < 100_000_000


def test_calls_count_as_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sandbox_limits, "MAX_SECONDS", 600.0)
    template, _ = compile_prompt(
        "t",
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}",
    )
    assert template is not None
    with pytest.raises(_sandbox.SandboxLimitError, match=f"^{re.escape(_STEPS)}"):
        template.render()


def test_a_render_past_its_time_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Work no step counts (here: comparisons) is stopped by the clock; a fake one, a second a look.
    ticks = iter(range(1_000_000))
    monkeypatch.setattr(_sandbox_limits.time, "perf_counter", lambda: float(next(ticks)))
    template, _ = compile_prompt("t", "{% for i in range(1000) %}{{ i == 1 }}{% endfor %}")
    assert template is not None
    with pytest.raises(
        _sandbox.SandboxLimitError, match=r"^the template renders for more than 2 s"
    ):
        template.render()


def test_ordinary_templates_render_as_before() -> None:
    template, _ = compile_prompt(
        "t",
        "{% for s in results %}{{ loop.index }}. {{ s.title|upper }} ({{ s.url }})\n"
        "{% endfor %}{{ n * 2 }} {{ 'x' * 3 }} {{ [1, 2] + [3] }} {{ '%s-%d' % ('a', 1) }} "
        "{{ '{}!'.format('hi') }} {{ items|join(', ') }} {{ data }} {{ 2**10 }} {{ 7 // 2 }}",
    )
    assert template is not None
    text = template.render(
        results=[{"title": "a", "url": "u1"}, {"title": "b", "url": "u2"}],
        n=4,
        items=["x", "y"],
        data={"k": [1, "é"]},
    )
    assert text == ('1. A (u1)\n2. B (u2)\n8 xxx [1, 2, 3] a-1 hi! x, y {"k": [1, "é"]} 1024 3')


# --- untrusted JSON ------------------------------------------------------------------------------


def test_loads_untrusted_refuses_depth_size_and_syntax() -> None:
    for text, reason in ((DEEP, "depth"), ("[" * 100_000, "depth"), ("[1,", "syntax")):
        with pytest.raises(JSONInputError) as caught:
            loads_untrusted(text)
        assert caught.value.reason == reason
        assert isinstance(caught.value, ValueError)
        assert isinstance(caught.value, DelegateError)
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads_untrusted(nested) is not None
    assert loads_untrusted('"[[[[[[["') == "[[[[[[["
    with pytest.raises(
        JSONInputError, match=r"^x is 11 characters long, more than the limit of 10"
    ):
        loads_untrusted("[1,2,3,4,5]", max_chars=10, what="x")


async def test_tool_arguments_nested_too_deep_come_back_as_an_error() -> None:
    def echo(text: str) -> str:
        """Echo the text."""
        return text

    assert await Tool(echo).call("[" * 100_000) == (
        "Error: arguments for tool 'echo' are nested more than 100 levels deep; send a JSON "
        "object with the tool's parameters"
    )


class Point(BaseModel):
    x: int


async def test_deep_structured_outputs_are_validation_failures() -> None:
    request = ModelRequest(messages=[], output_schema=Point.model_json_schema())
    assert _structured(request, DEEP) is None  # the real (litellm) path
    agent = Agent("s", ScriptedModel([DEEP, DEEP]), output_type=Point)  # the fake path
    with pytest.raises(OutputValidationError, match="did not validate as Point even after"):
        await agent.run("where?")


def test_a_streamed_task_nested_too_deep_is_skipped() -> None:
    stream = PlanStream()
    found = stream.feed('{"tasks": [{"id": "a", "deps": ' + DEEP + "}]}")
    assert found == []
    assert stream.errors[0].startswith(
        "tasks[0] (id 'a') is nested more than 100 levels deep; it was skipped: "
    )


async def test_a_deep_plan_gets_a_repair_request_streamed_or_not() -> None:
    deep = '{"tasks": [{"id": "a", "agent": "w", "instructions": "x", "deps": ' + DEEP + "}]}"
    good = {"tasks": [_task("a")]}
    for on_task in (None, lambda task: True):
        model = ScriptedModel([deep, good], name="reasoner", chunk_size=4096)
        result = await Planner(Agent("planner", model)).plan(
            "goal", inputs={}, workers=_workers(), budget_text="", on_task=on_task
        )
        assert result.attempts == 2
        [[error]] = result.errors
        assert error.startswith("the answer is not a valid plan: (root): Invalid JSON")


# --- memory --------------------------------------------------------------------------------------


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:  # noqa: F811 - the fixture imported above
    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()


_HOSTILE_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("value", "put", {"key": "k", "value": "a\ud800b"}),
    ("value", "put", {"key": "k", "value": {"\udc00": 1}}),
    ("value", "put", {"key": "k", "value": json.loads("[" * 101 + "]" * 101)}),
    ("value", "put", {"key": "k", "value": 10**5000}),
    ("key", "put", {"key": "k" * 10_000, "value": 1}),
    ("key", "put", {"key": "a\x00b", "value": 1}),
    ("key", "get", {"key": "\ud800"}),
    ("text", "put", {"key": "k", "value": 1, "text": "a\x00b"}),
    ("text", "put", {"key": "k", "value": 1, "text": "\ud800"}),
    ("task_id", "put", {"key": "k", "value": 1, "task_id": "a\x00b"}),
    ("task_id", "put", {"key": "k", "value": 1, "task_id": "t" * 501}),
    ("task_id", "put", {"key": "k", "value": 1, "task_id": "\ud800"}),
    ("tags", "put", {"key": "k", "value": 1, "tags": None}),
    ("tags", "put", {"key": "k", "value": 1, "tags": 5}),
    ("tags", "search", {"text": "k", "tags": 5}),
    ("namespace", "search", {"text": "k", "namespace": 5}),
    ("namespace", "put", {"key": "k", "value": 1, "namespace": "a\x00"}),
    ("namespace", "get", {"key": "k", "namespace": "run\n"}),
    ("prefix", "list", {"prefix": "\ud800"}),
    ("limit", "search", {"text": "k", "limit": 10**6}),
    ("query", "search", {"text": b"k"}),
]


@pytest.mark.parametrize(("field", "method", "arguments"), _HOSTILE_CALLS)
async def test_hostile_memory_calls_are_typed_errors(
    store: Store, field: str, method: str, arguments: dict[str, Any]
) -> None:
    memory = Memory(store, run_id="r1")
    with pytest.raises(MemoryInputError) as caught:
        await getattr(memory, method)(**arguments)
    assert caught.value.field == field
    assert isinstance(caught.value, ConfigError)
    assert await memory.list() == []


async def test_hostile_memory_names_are_typed_errors(store: Store) -> None:
    for name in ("r1\n", "r" * 300, "a b", 7):
        with pytest.raises(MemoryInputError) as caught:
            Memory(store, run_id=name)  # type: ignore[arg-type]
        assert caught.value.field == "run_id"
