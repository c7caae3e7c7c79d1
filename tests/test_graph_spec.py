"""TaskSpec and GraphSpec: one shape of a task, checked once, stored versioned, read back safely."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from delegate import Agent, Budget, GraphSpec, Orchestrator, TaskContext, TaskGraph, TaskSpec
from delegate.errors import ConfigError, GraphError
from delegate.memory.records import RunRecord, TaskRecord
from delegate.memory.store import Store
from delegate.orchestrator.graph import PlannedSpec, Task, upgrade_graph_spec
from delegate.orchestrator.planned import PlannedRun
from delegate.orchestrator.planner import PlanTask
from delegate.orchestrator.strategies import AdaptiveVotes, BestOfN
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio

JUDGE = Agent("judge", FunctionModel(lambda request: "PASS"))


def double(ctx: TaskContext) -> int:
    """A module-level function task: a spec stores it by its import path."""
    return int(ctx.deps["count"]) * 2


def _full_graph() -> TaskGraph:
    """One task of each kind, with every option away from its default."""
    g = TaskGraph()
    writer = Agent("writer", FunctionModel(lambda request: "7"))
    count = g.add(
        "count",
        agent=writer,
        prompt="Count {{ things }}.",
        timeout=5.0,
        retries=1,
        weight=2.5,
        budget=Budget(tokens=1000, usd=0.5),
        max_output_tokens=64,
        reasoning_effort="low",
        verify=JUDGE,
        votes=3,
        variables={"things": ["a", "b"], "n": 2},
    )
    g.add("double", fn=double, deps=[count], after="done")
    g.add("note", agent="writer", prompt="Note {{ count }}.", deps=["count"], verify="judge")
    return g


# --- round trips ------------------------------------------------------------------------------


def test_a_graph_round_trips_through_json() -> None:
    g = _full_graph()
    spec = g.spec()
    text = json.dumps(spec.to_json())

    back = GraphSpec.from_json(json.loads(text))
    rebuilt = TaskGraph.from_spec(back)

    assert back == spec
    assert rebuilt.spec() == spec
    assert list(rebuilt.tasks) == ["count", "double", "note"]
    count = rebuilt["count"]
    assert (count.agent, count.verify, count.budget) == ("writer", "judge", Budget(1000, 0.5))
    assert (count.timeout, count.retries, count.weight, count.votes) == (5.0, 1, 2.5, 3)
    assert (count.max_output_tokens, count.reasoning_effort) == (64, "low")
    assert dict(count.variables) == {"things": ["a", "b"], "n": 2}
    assert count.placeholders == frozenset({"things"})
    assert count.template is not None
    assert rebuilt["double"].fn is double
    assert rebuilt["double"].after == "done"
    assert rebuilt["note"].deps == ("count",)


def test_the_stored_json_leaves_defaults_out() -> None:
    g = TaskGraph()
    a = g.add("a", agent="w", prompt="First.")
    g.add("b", fn=double, deps=[a, a])
    assert g.spec().to_json() == {
        "version": 2,
        "tasks": [
            {"id": "a", "agent": "w", "prompt": "First."},
            {"id": "b", "fn": f"{__name__}:double", "deps": ["a"]},
        ],
    }


def test_a_task_converts_to_its_spec_and_back() -> None:
    g = _full_graph()
    for task in g:
        spec = task.spec()
        assert TaskSpec.model_validate(spec.model_dump()) == spec
        assert Task.of(spec).spec() == spec
    lambdas = TaskGraph()
    lambdas.add("anon", fn=lambda ctx: 1)
    [stored] = lambdas.spec().tasks
    assert stored.fn is not None
    assert stored.fn.startswith("<not importable>:")
    rebuilt = TaskGraph.from_spec(lambdas.spec())["anon"]
    assert rebuilt.fn is not None
    with pytest.raises(GraphError, match="lambda or a nested function"):
        rebuilt.fn(TaskContext(task_id="anon", run_id="r", inputs={}, deps={}))


def test_add_spec_binds_the_agents_the_spec_names() -> None:
    writer = Agent("writer", FunctionModel(lambda request: "x"))
    g = TaskGraph()
    task = g.add_spec(TaskSpec(id="t", agent="writer", verify="judge"), agent=writer, verify=JUDGE)
    assert (task.agent, task.verify) == (writer, JUDGE)
    assert task.spec() == TaskSpec(id="t", agent="writer", verify="judge")
    with pytest.raises(GraphError) as info:
        g.add_spec(TaskSpec(id="u", agent="editor"), agent=writer)
    assert str(info.value) == (
        "task 'u': agent is the Agent 'writer', but the spec names 'editor'; pass the agent the "
        "spec names"
    )
    with pytest.raises(GraphError, match="depends on 'nope', which is not in the graph"):
        g.add_spec(TaskSpec(id="v", agent="writer", deps=("nope",)))
    assert list(g.tasks) == ["t"]


# --- one set of checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"timeout": "5"},
        {"retries": -1},
        {"retries": True},
        {"weight": float("nan")},
        {"max_output_tokens": 0},
        {"reasoning_effort": "extreme"},
        {"votes": 2.0},
        {"verify": " "},
        {"after": "always"},
        {"prompt": None},
        {"variables": ["x"]},
    ],
)
def test_a_spec_refuses_what_add_refuses_with_the_same_message(options: dict[str, Any]) -> None:
    with pytest.raises(GraphError) as by_add:
        TaskGraph().add("x", agent="w", **options)
    with pytest.raises(GraphError) as by_spec:
        TaskSpec(id="x", agent="w", **options)
    assert str(by_spec.value) == str(by_add.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"id": "a\n", "agent": "w"}, "task id 'a\\n' is not valid"),
        ({"id": "inputs", "agent": "w"}, "task id 'inputs' is reserved for templates"),
        ({"id": "x"}, "task 'x': give exactly one of agent= (a model call) or fn="),
        ({"id": "x", "agent": "w", "fn": "m:f"}, "task 'x': give exactly one of agent="),
        ({"id": "x", "fn": "m:f", "votes": 3}, "task 'x': votes apply to model calls"),
        ({"id": "x", "agent": 7}, "task 'x': agent must be a worker's name, got int"),
        ({"id": "x", "agent": "w", "verify": JUDGE}, "task 'x': verify must be a worker's name"),
        ({"id": "x", "fn": "double"}, "task 'x': fn must be an import path 'module:qualname'"),
        ({"id": "x", "agent": "w", "promt": "hi"}, "unknown field 'promt' (did you mean 'prompt'"),
        (
            {"id": "x", "agent": "w", "deps": [1]},
            "task 'x': deps.0: Input should be a valid string",
        ),
        ({"id": "x", "agent": "w", "budget": {"tokens": -1}}, "task 'x': budget: Budget.tokens"),
    ],
)
def test_a_spec_names_what_is_wrong(values: dict[str, Any], message: str) -> None:
    with pytest.raises(GraphError) as info:
        TaskSpec.model_validate(values)
    assert message in str(info.value)


def test_a_spec_drops_repeated_deps_and_keeps_their_order() -> None:
    assert TaskSpec(id="x", agent="w", deps=("b", "a", "b")).deps == ("b", "a")


def test_a_plan_task_and_a_workflow_step_make_the_same_spec() -> None:
    from delegate.workflows import load_workflow_text
    from delegate.workflows._driver import WorkflowRun

    loaded = load_workflow_text(
        "name: w\n"
        "agents:\n"
        "  scout: {model: openai/gpt-4o-mini}\n"
        "  writer: {model: openai/gpt-4o-mini}\n"
        "steps:\n"
        "  - {id: facts, agent: scout, prompt: Find facts.}\n"
        "  - {id: summary, agent: writer, needs: [facts], prompt: Summarize the facts.}\n"
    )
    step = (loaded.spec.steps or [])[1]
    run = WorkflowRun(
        run_id="r", workflow=loaded.spec, by_name={}, inputs={}, output_types={}, source={}
    )
    from_yaml = run._spec(step, step.id, ["facts"])  # type: ignore[arg-type]
    from_plan = PlanTask(
        id="summary", agent="writer", instructions="Summarize the facts.", deps=["facts"]
    ).spec()

    assert from_yaml == from_plan
    assert from_plan == TaskSpec(
        id="summary", agent="writer", prompt="Summarize the facts.", deps=("facts",)
    )


def test_a_plan_task_keeps_its_effort_only_for_a_reasoning_worker() -> None:
    task = PlanTask(
        id="t", agent="w", instructions="Do it.", expected_output="A list.", effort="high"
    )
    thinker = Agent("w", FunctionModel(lambda request: "x"), reasoning_effort="low")
    plain = Agent("w", FunctionModel(lambda request: "x"))
    assert task.spec(thinker).reasoning_effort == "high"
    assert task.spec(plain).reasoning_effort is None
    assert task.spec().prompt == "Do it.\n\nExpected output: A list."


def test_a_plan_task_and_a_workflow_step_carry_the_same_strategy_and_votes() -> None:
    from delegate.workflows import load_workflow_text
    from delegate.workflows._driver import WorkflowRun

    loaded = load_workflow_text(
        "name: w\n"
        "agents:\n"
        "  writer: {model: openai/gpt-4o-mini}\n"
        "  critic: {model: openai/gpt-4o-mini}\n"
        "steps:\n"
        "  - {id: draft, agent: writer, prompt: Draft., strategy: {best_of_n: {judge: critic}}}\n"
        "  - {id: count, agent: writer, prompt: Count., votes: {max_samples: 6}}\n"
    )
    run = WorkflowRun(
        run_id="r", workflow=loaded.spec, by_name={}, inputs={}, output_types={}, source={}
    )
    draft, count = loaded.spec.steps or []
    planned = [
        PlanTask.model_validate(
            {
                "id": "draft",
                "agent": "writer",
                "instructions": "Draft.",
                "strategy": {"kind": "best_of_n", "judge": "critic"},
            }
        ),
        PlanTask.model_validate(
            {
                "id": "count",
                "agent": "writer",
                "instructions": "Count.",
                "votes": 6,
            }
        ),
    ]

    from_yaml = [run._spec(step, step.id, []) for step in (draft, count)]  # type: ignore[arg-type]

    assert from_yaml == [task.spec() for task in planned]
    assert from_yaml[0].strategy == BestOfN(judge="critic")
    assert from_yaml[1].votes == AdaptiveVotes(max_samples=6)


# --- version 2, as the code before strategies wrote it ------------------------------------------

_VERSION_2 = {
    "version": 2,
    "tasks": [
        {"id": "count", "agent": "writer", "prompt": "Count.", "votes": 3, "verify": "judge"},
        {"id": "double", "fn": f"{__name__}:double", "deps": ["count"]},
    ],
}


def test_a_version_2_graph_without_settings_reads_and_writes_back_the_same() -> None:
    spec = GraphSpec.from_json(_VERSION_2)
    assert [(task.votes, task.strategy) for task in spec.tasks] == [(3, None), (None, None)]
    assert spec.to_json() == _VERSION_2


async def test_a_run_stored_before_strategies_resumes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    with Store.open(url) as store:
        store.create_run(RunRecord(id="old", graph=_VERSION_2))
        done = TaskRecord(
            run_id="old", task_id="count", status="succeeded", attempts=1, output="21"
        )
        store.write_batch("old", [done], [])
    model = FunctionModel(lambda request: "never asked")

    async with Orchestrator(workers=[Agent("writer", model), JUDGE], memory=url) as orchestrator:
        result = await orchestrator.resume("old")

    assert model.calls == 0
    assert result.status == "succeeded"
    assert result.tasks["double"].output == 42


# --- version 1, as the code before GraphSpec wrote it -------------------------------------------

REVISION = {
    "revision": 1,
    "reason": "goal",
    "failures": {},
    "tasks": [
        {
            "id": "facts",
            "agent": "search",
            "instructions": "Find facts.",
            "deps": [],
            "expected_output": "",
            "effort": None,
            "max_output_tokens": None,
        }
    ],
    "synthesis_note": "Be brief.",
    "attempts": 1,
    "errors": [],
    "complete": True,
    "error": None,
    "started_at": "2026-01-01T00:00:00Z",
    "finished_at": "2026-01-01T00:00:02Z",
    "usage": {
        "input_tokens": 10,
        "output_tokens": 5,
        "reasoning_tokens": 0,
        "cached_tokens": 0,
        "cost_usd": 0.0,
        "calls": 1,
        "unconfirmed_usd": 0.0,
    },
}

VERSION_1 = {
    "version": 1,
    "tasks": [
        {
            "id": "facts",
            "agent": "search",
            "fn": None,
            "prompt": "Find facts.",
            "deps": [],
            "timeout": None,
            "retries": None,
            "weight": 1.0,
            "budget": {
                "tokens": 500,
                "usd": None,
                "seconds": None,
                "calls": None,
                "reserve_seconds": 0.0,
            },
            "max_output_tokens": None,
            "reasoning_effort": None,
            "verify": None,
            "votes": None,
            "variables": {},
            "after": "success",
        },
        {
            "id": "double",
            "agent": None,
            "fn": f"{__name__}:double",
            "prompt": "",
            "deps": ["facts"],
            "timeout": 2.0,
            "retries": 0,
            "weight": 1.0,
            "budget": None,
            "max_output_tokens": None,
            "reasoning_effort": None,
            "verify": None,
            "votes": None,
            "variables": {"item": "x"},
            "after": "done",
        },
    ],
    "planned": {"goal": "Find facts.", "plans": [REVISION], "handled": {"old": "it failed"}},
    "workflow": {"text": "name: w\n", "path": "w.yaml", "simulate": True},
}


def test_version_1_is_upgraded_by_a_pure_function() -> None:
    before = json.dumps(VERSION_1)
    upgraded = upgrade_graph_spec(VERSION_1)
    assert json.dumps(VERSION_1) == before  # the input is not changed
    assert upgraded == {
        "version": 2,
        "tasks": [
            {
                "id": "facts",
                "agent": "search",
                "prompt": "Find facts.",
                "deps": [],
                "weight": 1.0,
                "budget": VERSION_1["tasks"][0]["budget"],  # type: ignore[index]
                "variables": {},
                "after": "success",
            },
            {
                "id": "double",
                "fn": f"{__name__}:double",
                "prompt": "",
                "deps": ["facts"],
                "timeout": 2.0,
                "retries": 0,
                "weight": 1.0,
                "variables": {"item": "x"},
                "after": "done",
            },
        ],
        "planned": VERSION_1["planned"],
        "workflow": VERSION_1["workflow"],
    }


def test_a_version_1_graph_reads_as_a_graph_spec() -> None:
    spec = GraphSpec.from_json(VERSION_1)

    assert spec.version == 2
    assert [task.id for task in spec.tasks] == ["facts", "double"]
    assert spec.tasks[0].budget == Budget(tokens=500)
    assert spec.tasks[1] == TaskSpec(
        id="double",
        fn=f"{__name__}:double",
        deps=("facts",),
        timeout=2.0,
        retries=0,
        variables={"item": "x"},
        after="done",
    )
    assert spec.planned == PlannedSpec(
        goal="Find facts.", plans=(REVISION,), handled={"old": "it failed"}
    )
    assert spec.workflow == {"text": "name: w\n", "path": "w.yaml", "simulate": True}
    revisions, handled = PlannedRun.stored(spec.planned)
    assert [(r.revision, r.synthesis_note, r.usage.calls) for r in revisions] == [
        (1, "Be brief.", 1)
    ]
    assert [t.id for t in revisions[0].tasks] == ["facts"]
    assert handled == {"old": "it failed"}
    assert TaskGraph.from_spec(spec)["double"].fn is double


@pytest.mark.parametrize(
    "old",
    [
        {"tasks": [{"id": "a", "agent": "w"}]},  # no version: version 1
        {"version": 1, "tasks": [{"id": "a", "agent": "w", "prompt": None, "note": "x"}]},
        {"version": 1, "tasks": [{"id": "a", "agent": "ignored", "fn": "m:f"}]},
    ],
)
def test_version_1_reads_leniently_as_it_always_did(old: dict[str, Any]) -> None:
    [task] = GraphSpec.from_json(old).tasks
    assert (task.id, task.prompt) == ("a", "")
    assert (task.agent, task.fn) in (("w", None), (None, "m:f"))


async def test_a_run_stored_as_version_1_resumes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    unset = dict.fromkeys(["timeout", "retries", "budget", "max_output_tokens", "verify"])
    unset |= dict.fromkeys(["reasoning_effort", "votes"])
    graph = {
        "version": 1,
        "tasks": [
            {**unset, "id": "count", "agent": "writer", "fn": None, "prompt": "Count.", "deps": []}
            | {"weight": 1.0, "variables": {}, "after": "success"},
            {**unset, "id": "double", "agent": None, "fn": f"{__name__}:double"}
            | {"prompt": "", "deps": ["count"], "weight": 1.0, "variables": {}, "after": "success"},
        ],
    }
    with Store.open(url) as store:
        store.create_run(RunRecord(id="old", graph=graph))
        done = TaskRecord(
            run_id="old", task_id="count", status="succeeded", attempts=1, output="21"
        )
        store.write_batch("old", [done], [])
    model = FunctionModel(lambda request: "never asked")
    writer = Agent("writer", model)

    async with Orchestrator(workers=[writer], memory=url) as orchestrator:
        result = await orchestrator.resume("old")

    assert model.calls == 0
    assert result.status == "succeeded"
    assert result.tasks["double"].output == 42
    with Store.open(url) as store:
        stored = store.get_run("old")
    assert stored is not None
    assert stored.graph["version"] == 1  # a resume reads the old row; it does not rewrite it


# --- hostile stored graphs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["not", "a", "graph"], "a graph spec is a JSON object, got list"),
        ({"version": 3, "tasks": []}, "graph spec version 3 is from a newer delegate; upgrade"),
        ({"version": "2", "tasks": []}, "graph spec version '2' is unknown"),
        ({"version": 2, "tasks": {"a": 1}}, "not a valid graph spec: tasks: Input should be"),
        ({"version": 2, "tasks": [7]}, "task spec: Input should be a valid dictionary"),
        ({"version": 2, "tasks": [{"agent": "w"}]}, "task id None is not valid"),
        ({"version": 2, "tasks": [{"id": "a", "agent": "w", "timeout": -1}]}, "timeout must be"),
        ({"version": 2, "tasks": [], "extra": 1}, "unknown field 'extra'"),
        ({"version": 2, "planned": {"plans": "x"}}, "planned.plans: Input should be"),
        ({"version": 1, "tasks": [{"id": "x" * 10_000}]}, "is not valid"),
    ],
)
def test_a_corrupt_stored_graph_is_a_clear_graph_error(data: Any, message: str) -> None:
    with pytest.raises(GraphError) as info:
        GraphSpec.from_json(data)
    assert message in str(info.value)
    assert len(str(info.value)) < 1000  # a hostile id is cut short


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([{"id": "a", "agent": "w", "deps": ["a"]}], "the tasks form a cycle: 'a' → 'a'"),
        ([{"id": "a", "agent": "w", "deps": ["b"]}], "depends on 'b', which is not in the graph"),
        ([{"id": "a", "fn": ":x"}], "task 'a': its function ':x' cannot be imported"),
        ([{"id": "a", "fn": f"{__name__}:nothing"}], "cannot be imported"),
        ([{"id": "a", "fn": f"{__name__}:REVISION"}], "is not callable"),
    ],
)
def test_a_stored_graph_that_cannot_be_built_is_a_graph_error(
    tasks: list[dict[str, Any]], message: str
) -> None:
    spec = GraphSpec.from_json({"version": 2, "tasks": tasks})
    with pytest.raises(GraphError) as info:
        TaskGraph.from_spec(spec)
    assert message in str(info.value)


def test_a_corrupt_plan_revision_is_a_graph_error() -> None:
    planned = PlannedSpec(plans=({"revision": "first"},))
    with pytest.raises(GraphError, match="stored plan revision 1 is not valid: revision:"):
        PlannedRun.stored(planned)
    planned = PlannedSpec(plans=({**REVISION, "usage": ["not", "usage"]},))
    with pytest.raises(GraphError, match="stored plan revision 1 is not valid"):
        PlannedRun.stored(planned)


async def test_resuming_a_run_with_a_corrupt_graph_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    with Store.open(url) as store:
        store.create_run(RunRecord(id="bad", graph={"version": 2, "tasks": [{"id": "a"}]}))
    async with Orchestrator(workers=[JUDGE], memory=url) as orchestrator:
        with pytest.raises(ConfigError) as info:
            await orchestrator.resume("bad")
    assert str(info.value) == (
        "task 'a': give exactly one of agent= (a model call) or fn= (a Python function)"
    )


# --- linear time --------------------------------------------------------------------------------


class CountedId(str):
    """A task id that counts the comparisons made with it."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        CountedId.compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_a_task_with_many_deps_is_added_with_a_linear_number_of_comparisons() -> None:
    # De-duplicating by list membership compared each dep with every one before it: 4.5 M
    # comparisons for 3,000 deps (99,998 deps took 40 s). A dict makes it one lookup each.
    k = 3_000
    g = TaskGraph()
    ids = [g.add(f"m{i}", agent="w").id for i in range(k)]
    deps = [CountedId(task_id) for task_id in ids]
    CountedId.compared = 0

    sink = g.add("sink", agent="w", deps=[*deps, *deps])

    assert sink.deps == tuple(ids)
    assert CountedId.compared <= 3 * k
    CountedId.compared = 0
    rebuilt = TaskGraph.from_spec(GraphSpec.from_json(g.spec().to_json()))
    assert rebuilt["sink"].deps == tuple(ids)


def test_a_wide_graph_builds_and_round_trips() -> None:
    # 1 → 9,998 → 1 with `add`, the shape of the 100,000-task benchmark; its spec stores each
    # task once, with only what differs from the defaults.
    g = TaskGraph()
    source = g.add("source", agent="w")
    middle = [g.add(f"m{i}", agent="w", deps=[source]) for i in range(9_998)]
    g.add("sink", agent="w", deps=middle)

    assert len(g) == 10_000
    assert g.critical_path() == (["source", "m0", "sink"], 3.0)
    data = g.spec().to_json()
    assert data["tasks"][:2] == [
        {"id": "source", "agent": "w"},
        {"id": "m0", "agent": "w", "deps": ["source"]},
    ]
    assert data["tasks"][-1] == {"id": "sink", "agent": "w", "deps": [t.id for t in middle]}
    rebuilt = TaskGraph.from_spec(GraphSpec.from_json(json.loads(json.dumps(data))))
    assert [t.deps for t in rebuilt] == [t.deps for t in g]


class _NotCopied(dict[str, Any]):
    """A running graph's nodes that may be looked up but not copied."""

    def __iter__(self) -> Any:
        raise AssertionError("the running graph was copied")

    def keys(self) -> Any:
        raise AssertionError("the running graph was copied")


def test_adding_to_a_running_graph_does_not_copy_it() -> None:
    # Plans and fan-outs add tasks one at a time to a running graph; a copy of its nodes per
    # added task made that quadratic.
    from delegate.orchestrator.scheduler import build_nodes

    g = TaskGraph()
    first = g.add("first", fn=double)
    known = _NotCopied({node.task.id: node for node in build_nodes([first], {})})
    second = g.add("second", fn=double, deps=[first], weight=2.0)

    [node] = build_nodes([second], {}, known=known)

    assert node.pending == 1
    assert known["first"].children == [node]
    assert known["first"].priority == 3.0  # its own weight and the new task's, raised
