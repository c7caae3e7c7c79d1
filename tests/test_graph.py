"""TaskGraph: handles, build-time checks with helpful messages, specs in any order, cycles."""

from __future__ import annotations

import random
from typing import Any

import pytest

from delegate.errors import GraphError, TemplateError
from delegate.orchestrator.graph import Task, TaskContext, TaskGraph, TaskSpec


def _noop(context: TaskContext) -> str:
    return context.task_id


# --- handles and dependencies -----------------------------------------------------------------


def test_add_returns_handles_and_keeps_insertion_order() -> None:
    g = TaskGraph()
    search = g.add("search", agent="scout", prompt="Find {{ topic }}.")
    write = g.add("write", agent="writer", prompt="Write it.", deps=[search])

    assert isinstance(search, Task)
    assert search.id == "search"
    assert search.agent == "scout"
    assert search.agent_name == "scout"
    assert search.deps == ()
    assert search.placeholders == frozenset({"topic"})
    assert write.deps == ("search",)
    assert write.template is None
    assert write.placeholders == frozenset()
    assert list(g) == [search, write]
    assert list(g.tasks) == ["search", "write"]
    assert len(g) == 2
    assert "search" in g
    assert "nope" not in g
    assert g["write"] is write
    assert repr(g) == "TaskGraph(2 tasks)"


def test_function_task_has_no_agent_name() -> None:
    g = TaskGraph()
    task = g.add("f", fn=_noop, timeout=2.5, retries=3, weight=4.0)
    assert task.agent is None
    assert task.agent_name is None
    assert task.fn is _noop
    assert (task.timeout, task.retries, task.weight) == (2.5, 3, 4.0)


def test_deps_by_handle_id_or_single_value_and_deduplicated() -> None:
    g = TaskGraph()
    a = g.add("a", fn=_noop)
    b = g.add("b", fn=_noop)
    assert g.add("c", fn=_noop, deps=[a, "b"]).deps == ("a", "b")
    assert g.add("d", fn=_noop, deps=a).deps == ("a",)
    assert g.add("e", fn=_noop, deps="b").deps == ("b",)
    assert g.add("f", fn=_noop, deps=[a, "a", b, "b", a]).deps == ("a", "b")


def test_getitem_of_unknown_task_suggests_a_close_name() -> None:
    g = TaskGraph()
    g.add("search", fn=_noop)
    with pytest.raises(GraphError) as info:
        g["serach"]
    assert str(info.value) == "no task 'serach' in this graph (did you mean 'search'?)"


# --- build-time errors ------------------------------------------------------------------------


def test_duplicate_id() -> None:
    g = TaskGraph()
    g.add("a", fn=_noop)
    with pytest.raises(GraphError) as info:
        g.add("a", fn=_noop)
    assert str(info.value) == "duplicate task id 'a': every task in a graph needs its own id"
    assert len(g) == 1


@pytest.mark.parametrize("bad_id", ["", "a b", "-x", ".x", "a/b", "é", "a\n", "x" * 201, 7, None])
def test_malformed_id(bad_id: Any) -> None:
    g = TaskGraph()
    with pytest.raises(GraphError) as info:
        g.add(bad_id, fn=_noop)
    assert str(info.value) == (
        f"task id {bad_id!r} is not valid: use 1–200 letters, digits or `_ . : - [ ]`, "
        "starting with a letter, digit or underscore"
    )


@pytest.mark.parametrize("good_id", ["a", "_x", "3", "step.1", "a:b", "map[0]", "a-b", "x" * 200])
def test_well_formed_ids(good_id: str) -> None:
    assert TaskGraph().add(good_id, fn=_noop).id == good_id


@pytest.mark.parametrize("reserved", ["inputs", "deps"])
def test_reserved_id(reserved: str) -> None:
    with pytest.raises(GraphError) as info:
        TaskGraph().add(reserved, fn=_noop)
    assert str(info.value) == (f"task id {reserved!r} is reserved for templates; choose another id")


def test_unknown_dependency_suggests_a_close_name() -> None:
    g = TaskGraph()
    g.add("search", fn=_noop)
    with pytest.raises(GraphError) as info:
        g.add("summarize", fn=_noop, deps=["serach"])
    assert str(info.value) == (
        "task 'summarize' depends on 'serach', which is not in the graph "
        "(did you mean 'search'?); add it first"
    )
    assert "summarize" not in g


def test_unknown_dependency_without_close_name() -> None:
    g = TaskGraph()
    g.add("search", fn=_noop)
    with pytest.raises(GraphError) as info:
        g.add("b", fn=_noop, deps=["zzz"])
    assert str(info.value) == "task 'b' depends on 'zzz', which is not in the graph; add it first"


def test_dependency_handle_from_another_graph() -> None:
    other = TaskGraph()
    foreign = other.add("a", fn=_noop)
    g = TaskGraph()
    g.add("a", fn=_noop)  # same id, different task: still rejected
    with pytest.raises(GraphError) as info:
        g.add("b", fn=_noop, deps=[foreign])
    assert str(info.value) == (
        "task 'b' depends on a Task 'a' from another graph; pass tasks of this graph"
    )
    with pytest.raises(GraphError):
        TaskGraph().add("b", fn=_noop, deps=[foreign])


def test_dependency_of_wrong_type() -> None:
    g = TaskGraph()
    g.add("a", fn=_noop)
    with pytest.raises(GraphError) as info:
        g.add("b", fn=_noop, deps=[1])  # type: ignore[list-item]
    assert str(info.value) == "task 'b': deps must be Task handles or task ids, got int"


@pytest.mark.parametrize("kwargs", [{}, {"agent": "scout", "fn": _noop}], ids=["neither", "both"])
def test_exactly_one_of_agent_and_fn(kwargs: dict[str, Any]) -> None:
    with pytest.raises(GraphError) as info:
        TaskGraph().add("x", **kwargs)
    assert str(info.value) == (
        "task 'x': give exactly one of agent= (a model call) or fn= (a Python function)"
    )


def test_fn_must_be_callable() -> None:
    with pytest.raises(GraphError) as info:
        TaskGraph().add("x", fn=42)  # type: ignore[arg-type]
    assert str(info.value) == "task 'x': fn must be callable, got int"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": 0}, "task 'x': timeout must be > 0 seconds, got 0"),
        ({"timeout": -1.5}, "task 'x': timeout must be > 0 seconds, got -1.5"),
        ({"timeout": float("nan")}, "task 'x': timeout must be > 0 seconds, got nan"),
        ({"retries": -1}, "task 'x': retries must be an integer ≥ 0, got -1"),
        ({"retries": 1.5}, "task 'x': retries must be an integer ≥ 0, got 1.5"),
        ({"retries": "2"}, "task 'x': retries must be an integer ≥ 0, got '2'"),
        ({"weight": 0}, "task 'x': weight must be > 0, got 0"),
        ({"weight": -2.0}, "task 'x': weight must be > 0, got -2.0"),
        ({"weight": float("nan")}, "task 'x': weight must be > 0, got nan"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], message: str) -> None:
    g = TaskGraph()
    with pytest.raises(GraphError) as info:
        g.add("x", fn=_noop, **kwargs)
    assert str(info.value) == message
    assert len(g) == 0


@pytest.mark.parametrize("kwargs", [{"timeout": "5"}, {"weight": "2"}])
def test_non_numeric_timeout_or_weight_is_a_graph_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(GraphError):
        TaskGraph().add("x", fn=_noop, **kwargs)


def test_agent_of_wrong_type_is_a_graph_error() -> None:
    with pytest.raises(GraphError):
        TaskGraph().add("x", agent=42)  # type: ignore[arg-type]


def test_prompt_of_wrong_type_is_a_graph_error() -> None:
    with pytest.raises(GraphError):
        TaskGraph().add("x", agent="scout", prompt=None)  # type: ignore[arg-type]


# --- per-task model settings, verify and votes ------------------------------------------------


def test_model_settings_verify_and_votes_are_kept_on_the_task() -> None:
    from delegate.agents.agent import Agent
    from delegate.testing import ScriptedModel

    judge = Agent("judge", ScriptedModel([]))
    g = TaskGraph()
    t = g.add(
        "x",
        agent="scout",
        max_output_tokens=300,
        reasoning_effort="low",
        verify=judge,
        votes=3,
    )
    by_name = g.add("y", agent="scout", verify="judge")
    plain = g.add("z", agent="scout")

    assert (t.max_output_tokens, t.reasoning_effort, t.verify, t.votes) == (300, "low", judge, 3)
    assert (t.verify_name, by_name.verify_name, plain.verify_name) == ("judge", "judge", None)
    assert (plain.max_output_tokens, plain.reasoning_effort, plain.votes) == (None, None, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"max_output_tokens": 0},
            "task 'x': max_output_tokens must be a positive int or None, got 0; e.g. "
            "max_output_tokens=2000",
        ),
        ({"max_output_tokens": True}, "task 'x': max_output_tokens must be a positive int"),
        (
            {"reasoning_effort": "extreme"},
            "task 'x': reasoning_effort must be one of 'minimal', 'low', 'medium', 'high' or "
            "None, got 'extreme'",
        ),
        ({"votes": 0}, "task 'x': votes must be a positive int, an AdaptiveVotes or None, got 0;"),
        (
            {"votes": 2.0},
            "task 'x': votes must be a positive int, an AdaptiveVotes or None, got 2.0;",
        ),
        ({"verify": 42}, "task 'x': verify must be an Agent (a judge), got int 42"),
        ({"verify": " "}, "task 'x': verify is an empty name"),
    ],
)
def test_bad_model_settings(kwargs: dict[str, Any], message: str) -> None:
    g = TaskGraph()
    with pytest.raises(GraphError) as info:
        g.add("x", agent="scout", **kwargs)
    assert message in str(info.value)
    assert len(g) == 0


def test_a_judge_with_an_output_type_is_refused() -> None:
    from pydantic import BaseModel

    from delegate.agents.agent import Agent
    from delegate.testing import ScriptedModel

    class Score(BaseModel):
        value: int

    judge = Agent("judge", ScriptedModel([]), output_type=Score)
    with pytest.raises(GraphError) as info:
        TaskGraph().add("x", agent="scout", verify=judge)
    assert str(info.value) == (
        "task 'x': the judge 'judge' has output_type Score, but a judge answers with a "
        "delegate.Verdict; give the judge no output_type"
    )


def test_model_settings_on_a_function_task_are_refused() -> None:
    with pytest.raises(GraphError) as info:
        TaskGraph().add("x", fn=_noop, votes=3, reasoning_effort="low")
    assert str(info.value) == (
        "task 'x': reasoning_effort, votes apply to model calls, but this is a function task "
        "(fn=); drop them or give the task an agent="
    )


# --- templates --------------------------------------------------------------------------------


def test_prompt_naming_a_task_it_does_not_depend_on() -> None:
    g = TaskGraph()
    g.add("search", fn=_noop)
    g.add("other", fn=_noop)
    with pytest.raises(TemplateError) as info:
        g.add("write", agent="w", prompt="Use {{ search }}.", deps=["other"])
    assert str(info.value) == (
        "task 'write': prompt uses {{ search }}, the output of task 'search', but does not "
        "depend on it; add deps=['search']"
    )
    assert "write" not in g


def test_placeholders_may_name_inputs_deps_and_the_reserved_mappings() -> None:
    g = TaskGraph()
    a = g.add("a", fn=_noop)
    task = g.add(
        "b",
        agent="w",
        prompt="{{ topic }} {{ a }} {{ inputs.topic }} {{ deps.a }} {% if x %}{{ y }}{% endif %}",
        deps=[a],
    )
    assert task.placeholders == frozenset({"topic", "a", "inputs", "deps", "x", "y"})
    assert task.template is not None


def test_loop_variables_and_jinja_globals_are_not_placeholders() -> None:
    task = TaskGraph().add(
        "t", agent="w", prompt="{% for i in range(3) %}{{ i }}{{ item }}{% endfor %}"
    )
    assert task.placeholders == frozenset({"item"})


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (
            "Hello {{ name ",
            "task 'x': prompt template line 1: unexpected end of template, expected "
            "'end of print statement'.",
        ),
        (
            "line one\n{% for %}",
            "task 'x': prompt template line 2: Expected an expression, got 'end of statement "
            "block'",
        ),
        (
            "{{ }}",
            "task 'x': prompt template line 1: Expected an expression, got 'end of print "
            "statement'",
        ),
    ],
)
def test_template_syntax_error(prompt: str, message: str) -> None:
    g = TaskGraph()
    with pytest.raises(TemplateError) as info:
        g.add("x", agent="w", prompt=prompt)
    assert str(info.value) == message
    assert len(g) == 0


def test_plain_prompt_is_not_compiled() -> None:
    # Braces that are not jinja syntax stay literal text.
    task = TaskGraph().add("x", agent="w", prompt='Answer as {"a": 1} in JSON.')
    assert task.template is None
    assert task.placeholders == frozenset()


# --- from_specs and cycles --------------------------------------------------------------------

_DIAMOND = [
    TaskSpec(id="a", agent="w"),
    TaskSpec(id="b", agent="w", deps=("a",)),
    TaskSpec(id="c", agent="w", deps=("a",)),
    TaskSpec(id="d", agent="w", deps=("b", "c")),
    TaskSpec(id="e", agent="w", deps=("d",)),
    TaskSpec(id="f", agent="w"),
    TaskSpec(id="g", agent="w", deps=("f", "a")),
]


def test_from_specs_in_reverse_order() -> None:
    specs = [
        TaskSpec(
            id="c", agent="w", prompt="third", deps=("b",), timeout=3.0, retries=1, weight=2.0
        ),
        TaskSpec(id="b", agent="w", deps=("a",)),
        TaskSpec(id="a", agent="w"),
    ]
    g = TaskGraph.from_specs(specs)
    assert list(g.tasks) == ["a", "b", "c"]
    c = g["c"]
    assert (c.agent, c.prompt, c.deps, c.timeout, c.retries, c.weight) == (
        "w",
        "third",
        ("b",),
        3.0,
        1,
        2.0,
    )


def test_from_specs_keeps_model_settings_verify_and_votes() -> None:
    spec = TaskSpec(
        id="a", agent="w", max_output_tokens=64, reasoning_effort="minimal", verify="judge", votes=5
    )
    a = TaskGraph.from_specs([spec])["a"]
    assert (a.max_output_tokens, a.reasoning_effort, a.verify, a.votes) == (
        64,
        "minimal",
        "judge",
        5,
    )


def test_from_specs_ties_keep_the_listed_order() -> None:
    specs = [
        TaskSpec(id="z", agent="w"),
        TaskSpec(id="y", agent="w", deps=("x",)),
        TaskSpec(id="x", agent="w"),
    ]
    assert list(TaskGraph.from_specs(specs).tasks) == ["z", "x", "y"]


@pytest.mark.parametrize("seed", range(8))
def test_from_specs_in_shuffled_order_is_topological(seed: int) -> None:
    specs = list(_DIAMOND)
    random.Random(seed).shuffle(specs)
    g = TaskGraph.from_specs(specs)
    order = list(g.tasks)
    assert sorted(order) == ["a", "b", "c", "d", "e", "f", "g"]
    position = {task_id: n for n, task_id in enumerate(order)}
    for spec in _DIAMOND:
        assert g[spec.id].deps == spec.deps
        for dep in spec.deps:
            assert position[dep] < position[spec.id], (order, spec)


def test_from_specs_duplicate_id() -> None:
    with pytest.raises(GraphError) as info:
        TaskGraph.from_specs([TaskSpec(id="a", agent="w"), TaskSpec(id="a", agent="v")])
    assert str(info.value) == "duplicate task id 'a': every task in a graph needs its own id"


def test_from_specs_unknown_dependency() -> None:
    with pytest.raises(GraphError) as info:
        TaskGraph.from_specs(
            [
                TaskSpec(id="summarize", agent="w", deps=("serach",)),
                TaskSpec(id="search", agent="w"),
            ]
        )
    assert str(info.value) == (
        "task 'summarize' depends on 'serach', which is not in the graph (did you mean 'search'?)"
    )


def test_from_specs_template_naming_a_non_dependency() -> None:
    specs = [TaskSpec(id="b", agent="w", prompt="{{ a }}"), TaskSpec(id="a", agent="w")]
    with pytest.raises(TemplateError) as info:
        TaskGraph.from_specs([*reversed(specs)])
    assert "prompt uses {{ a }}, the output of task 'a', but does not depend on it" in str(
        info.value
    )


def test_self_loop() -> None:
    with pytest.raises(GraphError) as info:
        TaskGraph.from_specs(
            [TaskSpec(id="ok", agent="w"), TaskSpec(id="a", agent="w", deps=("a",))]
        )
    assert str(info.value) == (
        "the tasks form a cycle: 'a' → 'a' (each depends on the next); break one dependency"
    )


def test_two_cycle() -> None:
    with pytest.raises(GraphError) as info:
        TaskGraph.from_specs(
            [
                TaskSpec(id="a", agent="w", deps=("b",)),
                TaskSpec(id="b", agent="w", deps=("a",)),
                TaskSpec(id="c", agent="w"),
            ]
        )
    assert str(info.value) == (
        "the tasks form a cycle: 'a' → 'b' → 'a' (each depends on the next); break one dependency"
    )


def test_three_cycle_names_only_the_tasks_on_it() -> None:
    # 'd' is stuck behind the cycle and listed first, but is not on it.
    specs = [
        TaskSpec(id="d", agent="w", deps=("a",)),
        TaskSpec(id="x", agent="w"),
        TaskSpec(id="a", agent="w", deps=("x", "c")),
        TaskSpec(id="b", agent="w", deps=("a",)),
        TaskSpec(id="c", agent="w", deps=("b",)),
    ]
    with pytest.raises(GraphError) as info:
        TaskGraph.from_specs(specs)
    assert str(info.value) == (
        "the tasks form a cycle: 'a' → 'c' → 'b' → 'a' (each depends on the next); "
        "break one dependency"
    )


# --- critical path ----------------------------------------------------------------------------


def test_critical_path_of_a_weighted_graph() -> None:
    g = TaskGraph()
    a = g.add("a", fn=_noop, weight=1)
    b = g.add("b", fn=_noop, deps=[a], weight=5)
    c = g.add("c", fn=_noop, deps=[a], weight=2)
    g.add("d", fn=_noop, deps=[b, c], weight=1)
    g.add("e", fn=_noop, weight=6.5)  # heavy, but alone: 6.5 < 7
    assert g.critical_path() == (["a", "b", "d"], 7.0)


def test_critical_path_of_a_heavy_single_task() -> None:
    g = TaskGraph()
    a = g.add("a", fn=_noop)
    g.add("b", fn=_noop, deps=[a])
    g.add("heavy", fn=_noop, weight=3.5)
    assert g.critical_path() == (["heavy"], 3.5)


def test_critical_path_of_an_empty_graph() -> None:
    assert TaskGraph().critical_path() == ([], 0.0)
