"""Hostile inputs, generated: the strategies and properties behind `test_fuzz.py` and
`benchmarks/fuzz.py` (the same properties, a few examples in CI, many more in the benchmark).

Every property feeds one way into delegate — a planner's answer, a plan, a prompt template, tool
arguments, a structured answer, a memory call, CLI arguments, a text to count — and returns the
outcome: "ok", or the class name of the delegate error it raised. Anything else raised is a bug and
fails the property (`Untyped`). jinja2's template errors count as typed: every caller turns them
into delegate's `TemplateError` naming the task (the tests of `test_hostile_inputs.py` check that).
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
from click.testing import CliRunner
from hypothesis import strategies as st
from jinja2 import TemplateError as JinjaTemplateError
from pydantic import BaseModel, ValidationError

from delegate.agents.agent import Agent
from delegate.agents.models import ModelRequest, _structured
from delegate.agents.tokens import count_text, truncate_text
from delegate.agents.tools import Tool
from delegate.cli import main
from delegate.errors import DelegateError
from delegate.memory.blackboard import Memory
from delegate.orchestrator._sandbox import check_render
from delegate.orchestrator.graph import PROMPT_ENV, TaskGraph, compile_prompt
from delegate.orchestrator.plan_stream import PlanStream
from delegate.orchestrator.planner import Plan, Planner, validate_plan
from delegate.testing import FunctionModel, ScriptedModel
from delegate.workflows._templates import Scope, StepInfo, check_template
from delegate.workflows.runtime import parse_inputs
from delegate.workflows.spec import WorkflowSpec

MODEL = "openai/gpt-4o-mini"


class Untyped(AssertionError):
    """A property raised something other than delegate's own errors."""


def outcome_of(fn: Callable[[], Any]) -> str:
    """Run `fn`: "ok", or the class of the delegate (or jinja2 template) error it raised."""
    try:
        fn()
    except (DelegateError, JinjaTemplateError) as exc:
        return type(exc).__name__
    except Exception as exc:
        raise Untyped(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    return "ok"


# --- strategies: text ----------------------------------------------------------------------------

NUMBERS = ["0", "1", "2", "7", "-3", "100", "10**5", "10**9", "10**4300", "9**9", "2**64", "1e308"]
SIZES = [0, 1, 2, 3, 10, 1000, 100_000, 10**6, 10**9, -1]

hostile_text = st.one_of(
    st.text(max_size=50),
    st.sampled_from(["\x00", "\ud800", "a\udfffb", "\u2028", "\ufeff", " " * 1000, "\n" * 100]),
    st.builds(
        lambda c, n: c * n,
        st.sampled_from(["[", "{", '"', "\\", " ", "a"]),
        st.sampled_from(SIZES[:7]),
    ),
)


def _deep(opening: str, closing: str, depth: int, inner: str = "1") -> str:
    return opening * depth + inner + closing * depth


json_text = st.one_of(
    hostile_text,
    st.builds(_deep, st.just("["), st.just("]"), st.sampled_from([1, 99, 100, 101, 1000, 100_000])),
    st.builds(
        _deep,
        st.just('{"a":'),
        st.just("}"),
        st.sampled_from([1, 100, 101, 10_000]),
    ),
    st.builds(lambda d: "[" * d, st.sampled_from([10, 1000, 100_000])),
    st.sampled_from(
        [
            '"\\ud800"',
            "1" * 5000,
            "NaN",
            "-Infinity",
            "1e999",
            '{"a": 1, "a": 2}',
            "[" + "1," * 10_000 + "1]",
        ]
    ),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=8), children, max_size=4),
        ),
        max_leaves=20,
    ).map(lambda value: json.dumps(value)),
)


# --- strategies: templates -----------------------------------------------------------------------

_ATOMS = [
    *NUMBERS,
    "'a'",
    "'x' * 1000",
    "''",
    "[1, 2]",
    "[]",
    "{'k': 'v'}",
    "range(3)",
    "range(100000)",
    "range(1, 2, 0)",
    "x",
    "inputs.topic",
    "deps.search",
    "deps.search.results",
    "steps.a.output",
    "item",
    "loop.index",
    "lipsum(3)",
    "lipsum(1000000)",
    "dict(a=1)",
    "namespace(n=1)",
    "none",
    "true",
    "'%s'",
    "'{}'",
    "'\\t'",
]
_BINARY = ["+", "-", "*", "/", "//", "%", "**", "~", "==", "<", "and", "or", "in"]
_FILTERS = [
    "upper",
    "length",
    "list",
    "first",
    "last",
    "join",
    "join(', ')",
    "tojson",
    "string",
    "center(10)",
    "center(1000000000)",
    "indent(100000000)",
    "replace('', 'yy')",
    "replace('a', 'b' * 100000)",
    "format(1)",
    "batch(3)",
    "batch(1000000000, 0)",
    "slice(100000000)",
    "wordwrap(1)",
    "sum",
    "sum(start=[])",
    "int",
    "float",
    "round",
    "abs",
    "dictsort",
    "map('upper')",
    "select",
    "unique",
    "sort",
    "reverse",
    "truncate(5)",
    "default('d')",
    "attr('x')",
    "items",
    "pprint",
    "trim",
    "title",
    "wordcount",
]
_METHODS = [
    "center(1000000000)",
    "ljust(10)",
    "rjust(1000000000)",
    "zfill(1000000000)",
    "upper()",
    "expandtabs(1000000000)",
    "replace('', 'z')",
    "join(['a'] * 100000)",
    "format(1, 2)",
    "split()",
    "items()",
    "keys()",
    "to_bytes(1000000000, 'big')",
    "__class__",
    "mro()",
]


def _expression(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from(_BINARY), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(children, st.sampled_from(_FILTERS)).map(lambda t: f"({t[0]})|{t[1]}"),
        st.tuples(children, st.sampled_from(_METHODS)).map(lambda t: f"({t[0]}).{t[1]}"),
        st.tuples(children, children).map(lambda t: f"{t[0]}[{t[1]}]"),
        children.map(lambda c: f"[{c}] * 1000"),
        children.map(lambda c: f"range({c})"),
        children.map(lambda c: f"'%999999999s' % {c}"),
        children.map(lambda c: f"'{{:>{c}}}'.format(1)"),
    )


expressions = st.recursive(st.sampled_from(_ATOMS), _expression, max_leaves=6)


def _block(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(st.sampled_from("ijk"), expressions, children).map(
            lambda t: f"{{% for {t[0]} in {t[1]} %}}{t[2]}{{% endfor %}}"
        ),
        st.tuples(expressions, children, children).map(
            lambda t: f"{{% if {t[0]} %}}{t[1]}{{% else %}}{t[2]}{{% endif %}}"
        ),
        st.tuples(st.sampled_from("abc"), expressions, children).map(
            lambda t: f"{{% set {t[0]} = {t[1]} %}}{t[2]}"
        ),
        st.tuples(st.sampled_from("abc"), children).map(
            lambda t: f"{{% set {t[0]} %}}{t[1]}{{% endset %}}{{{{ {t[0]} * 100 }}}}"
        ),
        children.map(
            lambda c: (
                f"{{% macro f(n) %}}{c}{{{{ f(n) }}}}{{{{ f(n) }}}}{{% endmacro %}}{{{{ f(1) }}}}"
            )
        ),
        children.map(
            lambda c: (
                f"{{% set ns = namespace(v={c!r}) %}}{{% for i in range(64) %}}"
                "{% set ns.v = ns.v ~ ns.v %}{% endfor %}"
            )
        ),
        children.map(
            lambda c: f"{{% for x in [1] recursive %}}{c}{{{{ loop(range(1000)) }}}}{{% endfor %}}"
        ),
        st.tuples(children, children).map(lambda t: t[0] + t[1]),
    )


# Templates as users write them: text, names that are defined, small loops, filters.
ordinary_templates = st.lists(
    st.sampled_from(
        [
            "Summarize ",
            "{{ x }}",
            "{{ inputs.topic|upper }}",
            " for {{ inputs.n * 2 }} readers. ",
            "{% for r in deps.search.results %}- {{ loop.index }}. {{ r }}\n{% endfor %}",
            "{{ deps.search.results|join(', ') }}",
            "{% if inputs.n > 2 %}long{% else %}short{% endif %}",
            "{{ '%s/%d' % (x, inputs.n) }}",
            "{{ '{}!'.format(x) }}",
            "{{ item.x + 1 }}",
            "{{ steps.a.output|truncate(3) }}",
            "{{ deps.search }}",
            "{{ range(3)|list }}",
        ]
    ),
    max_size=6,
).map("".join)

templates = st.one_of(
    ordinary_templates,
    st.recursive(
        st.one_of(
            expressions.map(lambda e: f"{{{{ {e} }}}}"),
            st.sampled_from(
                [
                    "plain text",
                    "{% include 'x' %}",
                    "{% import 'x' as y %}",
                    "{% extends 'x' %}",
                    "{{ oops",
                    "{% if %}",
                    "{% raw %}{{{% endraw %}",
                    "{{ ''.__class__ }}",
                    "{#",
                ]
            ),
            st.text(alphabet=string.printable, max_size=20),
        ),
        _block,
        max_leaves=5,
    ),
    st.builds(lambda n: "{{" + "(" * n + "1" + ")" * n + "}}", st.sampled_from([10, 100, 1000])),
    st.builds(
        lambda n: "{% if 1 %}" * n + "x" + "{% endif %}" * n, st.sampled_from([10, 100, 2000])
    ),
)

NAMES: dict[str, Any] = {
    "x": "value",
    "inputs": {"topic": "bees", "n": 3},
    "deps": {"search": {"results": ["r1", "r2"]}},
    "steps": {"a": {"output": "text"}},
    "item": {"x": 1},
}


# --- properties ----------------------------------------------------------------------------------


def template_property(text: str) -> str:
    """A prompt template: compiled for a task, rendered, checked as a plan's and a workflow's."""

    def run() -> None:
        template, _ = compile_prompt("t", text)
        if template is not None:
            template.render(NAMES)

    result = outcome_of(run)
    problem = check_render(PROMPT_ENV, text)
    if not (problem is None or isinstance(problem, str)):
        raise Untyped(f"check_render returned {problem!r}")
    graph = TaskGraph()
    outcome_of(lambda: graph.add("t", agent="w", prompt=text))
    scope = Scope(inputs={"topic": "string"}, steps={"a": StepInfo("a", 0)}, owner=StepInfo("b", 1))
    outcome_of(lambda: check_template(text, scope, what="prompt"))
    return result


_ids = st.sampled_from(["a", "b", "c", "d", "bad id", "inputs", "x" * 300])
plan_tasks = st.fixed_dictionaries(
    {
        "id": _ids,
        "agent": st.sampled_from(["w", "nobody", ""]),
        "instructions": st.one_of(templates, hostile_text),
        "deps": st.lists(_ids, max_size=4),
    },
    optional={
        "expected_output": st.one_of(templates, hostile_text),
        "effort": st.sampled_from(["low", "high", None]),
        "max_output_tokens": st.sampled_from([1, 500, None]),
    },
)
plans = st.fixed_dictionaries({"tasks": st.lists(plan_tasks, max_size=8)})


def _workers() -> dict[str, Agent]:
    return {"w": Agent("w", FunctionModel(lambda request: "ok", name=MODEL))}


def plan_property(plan: dict[str, Any], max_tasks: int = 4) -> str:
    """A plan (as the planner's JSON): validated; every problem is a message, never a raise."""
    try:
        parsed = Plan.model_validate(plan)
    except ValidationError:
        return "ValidationError"

    errors: list[str] = []

    def run() -> None:
        errors.extend(
            validate_plan(parsed, workers=_workers(), max_tasks=max_tasks, inputs=["topic"])
        )
        if not all(isinstance(error, str) for error in errors):
            raise Untyped(f"validate_plan returned {errors!r}")

    outcome = outcome_of(run)
    return outcome if outcome != "ok" else "valid" if not errors else "problems listed"


planner_answers = st.one_of(
    json_text,
    plans.map(json.dumps),
    st.just(json.dumps({"tasks": [{"id": "a", "agent": "w", "instructions": "Do a."}]})),
)


def planner_property(answer: str, stream: bool) -> str:
    """A planner's answer, streamed or not: a plan, or PlanInvalid after the repair attempt."""
    model = ScriptedModel([answer, answer], name="reasoner", chunk_size=997)
    planner = Planner(Agent("planner", model), max_tasks=4)
    on_task = (lambda task: True) if stream else None

    async def plan() -> None:
        await planner.plan("goal", inputs={}, workers=_workers(), budget_text="", on_task=on_task)

    result = outcome_of(lambda: anyio.run(plan))
    parser = PlanStream()
    outcome_of(lambda: parser.feed(answer))
    return result


def _echo(text: str, n: int = 1) -> str:
    """Echo the text.

    Args:
        text: what to echo.
        n: how many times.
    """
    return text * min(n, 3)


_ECHO = Tool(_echo)


tool_arguments = st.one_of(
    json_text,
    st.fixed_dictionaries(
        {"text": st.one_of(hostile_text, st.integers())},
        optional={"n": st.one_of(st.integers(), st.floats(), hostile_text), "extra": st.none()},
    ).map(json.dumps),
)


def tool_property(arguments: str) -> str:
    """Tool arguments from a model: `Tool.call` answers with a string, whatever they are."""

    async def call() -> str:
        return await _ECHO.call(arguments)

    answer = anyio.run(call)
    if not isinstance(answer, str):
        raise Untyped(f"Tool.call returned {type(answer).__name__}")
    return "error message" if answer.startswith("Error:") else "ok"


class Answer(BaseModel):
    x: int
    tags: list[str] = []


structured_answers = st.one_of(
    json_text,
    st.fixed_dictionaries(
        {"x": st.one_of(st.integers(), hostile_text)},
        optional={"tags": st.lists(hostile_text, max_size=3)},
    ).map(json.dumps),
)


def structured_property(text: str) -> str:
    """A structured answer: parsed (the real path), validated by an agent (the fake path)."""
    request = ModelRequest(messages=[], output_schema=Answer.model_json_schema())
    outcome_of(lambda: _structured(request, text))
    agent = Agent("s", ScriptedModel([text, text], name=MODEL), output_type=Answer)
    return outcome_of(lambda: anyio.run(agent.run, "q"))


memory_values = st.one_of(
    hostile_text,
    st.sampled_from([float("nan"), 10**5000, {1: "a"}, {"\ud800": 1}, b"bytes", {1, 2}]),
    st.recursive(
        st.one_of(st.none(), st.integers(), st.text(max_size=10)),
        lambda children: st.lists(children, max_size=3),
        max_leaves=10,
    ),
    st.builds(lambda n: json.loads("[" * n + "]" * n), st.sampled_from([50, 100, 101, 900])),
)
memory_names = st.one_of(
    hostile_text,
    st.sampled_from(["run", "global", "workflow", "k", "k" * 500, "k" * 10_000, "run\n", "a b"]),
    st.sampled_from([None, 5, ["k"], b"k"]),
)
memory_calls = st.one_of(
    st.tuples(
        st.just("put"),
        st.fixed_dictionaries(
            {"key": memory_names, "value": memory_values},
            optional={
                "namespace": memory_names,
                "tags": st.one_of(memory_names, st.lists(memory_names, max_size=3)),
                "text": memory_names,
                "task_id": memory_names,
            },
        ),
    ),
    st.tuples(
        st.sampled_from(["get", "history", "get_record"]),
        st.fixed_dictionaries({"key": memory_names}, optional={"namespace": memory_names}),
    ),
    st.tuples(
        st.just("search"),
        st.fixed_dictionaries(
            {"text": memory_names},
            optional={
                "namespace": st.one_of(memory_names, st.lists(memory_names, max_size=3)),
                "tags": st.one_of(memory_names, st.lists(memory_names, max_size=3)),
                "limit": st.sampled_from([0, 1, 10**6, -1, True, "5"]),
            },
        ),
    ),
    st.tuples(
        st.just("list"),
        st.fixed_dictionaries({}, optional={"prefix": memory_names, "namespace": memory_names}),
    ),
)


def memory_property(memory: Memory, method: str, arguments: dict[str, Any]) -> str:
    """A memory call with hostile arguments: done, or `MemoryInputError` (never the database's)."""
    return outcome_of(lambda: anyio.run(lambda: getattr(memory, method)(**arguments)))


_SPEC = WorkflowSpec.model_validate(
    {
        "name": "fuzz",
        "inputs": {
            "items": {"type": "array", "default": []},
            "limits": {"type": "object", "default": {}},
            "n": {"type": "integer", "default": 1},
            "ratio": {"type": "number", "default": 0.5},
            "deep": {"type": "boolean", "default": False},
            "topic": {"type": "string", "default": "bees"},
        },
        "agents": {"w": {"model": MODEL}},
        "steps": [{"id": "a", "agent": "w", "prompt": "{{ inputs.topic }}"}],
    }
)
_TYPED_VALUES = {
    "items": st.one_of(json_text, st.lists(st.integers(), max_size=3).map(json.dumps)),
    "limits": st.one_of(
        json_text, st.dictionaries(st.text(max_size=5), st.integers(), max_size=2).map(json.dumps)
    ),
    "n": st.one_of(hostile_text, st.integers().map(str), st.sampled_from(["1" * 5000, "1e9"])),
    "ratio": st.one_of(hostile_text, st.floats().map(str), st.sampled_from(["nan", "1e999"])),
    "deep": st.one_of(hostile_text, st.sampled_from(["true", "no", "maybe"])),
    "topic": hostile_text,
    "nope": hostile_text,
}
cli_pairs = st.lists(
    st.sampled_from(sorted(_TYPED_VALUES)).flatmap(
        lambda name: _TYPED_VALUES[name].map(lambda value: f"{name}={value}")
    ),
    max_size=3,
)


def cli_property(pairs: Sequence[str], file_text: str | None, prompt: str, directory: Path) -> str:
    """CLI arguments: `-i` values, an `--input-file`, and a workflow for `delegate validate`."""
    input_file = None
    if file_text is not None:
        input_file = directory / "inputs.json"
        input_file.write_text(file_text, encoding="utf-8", errors="surrogatepass")
    result = outcome_of(lambda: parse_inputs(_SPEC, pairs, input_file))
    workflow = directory / "wf.yaml"
    workflow.write_text(
        "name: fuzz\nagents:\n  w: {model: openai/gpt-4o-mini}\nsteps:\n  - id: a\n"
        f"    agent: w\n    prompt: {json.dumps(prompt)}\n",
        encoding="utf-8",
        errors="surrogatepass",
    )
    validated = CliRunner().invoke(main, ["validate", str(workflow)], prog_name="delegate")
    if validated.exit_code not in (0, 2) or "Traceback" in validated.output:
        raise Untyped(f"delegate validate exited {validated.exit_code}: {validated.output[-300:]}")
    return result


count_texts = st.one_of(
    hostile_text,
    st.builds(
        lambda c, n: c * n,
        st.sampled_from([" ", "\n", "a", "😀", " a", "\t\n "]),
        st.sampled_from([1000, 100_000, 1_000_000]),
    ),
)


def tokens_property(text: str) -> str:
    """A model's answer or an input to count: a count, never a tokenizer panic."""
    count = count_text(text, MODEL)
    truncated = truncate_text(text, 100, MODEL)
    if not (isinstance(count, int) and count >= 0 and isinstance(truncated, str)):
        raise Untyped(f"count_text gave {count!r}")
    return "ok"
