"""Planner: plan schema, prompt, validation that gathers every error, repair, plans into graphs."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from delegate.agents.agent import Agent
from delegate.agents.models import Model, ModelRequest, ModelResponse
from delegate.errors import DelegateError, GraphError, TemplateError
from delegate.orchestrator.graph import TaskGraph, TaskSpec
from delegate.orchestrator.planner import (
    Plan,
    PlanInvalid,
    Planner,
    PlanTask,
    add_plan,
    describe_budget,
    plan_to_specs,
    validate_plan,
)
from delegate.orchestrator.strategies import AdaptiveVotes, BestOfN, SelfRefine
from delegate.testing import ScriptedModel

pytestmark = pytest.mark.anyio

GOAL = "Write a short report on bees."


class WindowedModel(ScriptedModel):
    """A fake whose context window is known, like a LiteLLMModel's."""

    @property
    def context_window(self) -> int:
        return 128_000


def _workers() -> dict[str, Agent]:
    def web_search(query: str) -> str:
        """Search the web."""
        return query

    return {
        "search": Agent(
            "search",
            WindowedModel([], name="mini-model", input_price=0.15, output_price=0.6),
            description="Finds sources on the web.",
            tools=[web_search],
        ),
        "writer": Agent(
            "writer",
            ScriptedModel([], name="big-model", input_price=2.5, output_price=10),
            description="Writes polished prose.",
            reasoning_effort="low",
        ),
    }


def _task(
    id: str, agent: str = "search", deps: tuple[str, ...] = (), **more: Any
) -> dict[str, Any]:
    return {"id": id, "agent": agent, "instructions": f"Do {id}.", "deps": list(deps), **more}


VALID = {
    "tasks": [
        _task("find_facts"),
        _task("find_images"),
        _task("write", "writer", ("find_facts", "find_images"), expected_output="A report."),
    ],
    "synthesis_note": "Return the report.",
}
CYCLIC = {"tasks": [_task("a", deps=("b",)), _task("b", deps=("a",))]}
CYCLE_ERROR = (
    "tasks 'a' → 'b' → 'a' form a cycle (each depends on the next); "
    "remove one of these dependencies"
)


def _planner(answers: list[Any], **options: Any) -> tuple[Planner, ScriptedModel]:
    model = ScriptedModel(answers, name="reasoner")
    agent = Agent("planner", model, reasoning_effort="high", max_output_tokens=4000)
    return Planner(agent, **options), model


async def _plan(planner: Planner, **options: Any) -> Any:
    return await planner.plan(
        GOAL, inputs={"topic": "bees"}, workers=_workers(), budget_text="no limit", **options
    )


def _repair(answer: dict[str, Any], errors: list[str]) -> str:
    previous = Plan.model_validate(answer).model_dump_json(indent=2)
    problems = "\n".join(f"- {e}" for e in errors)
    return (
        f"{GOAL}\n\nYour previous plan:\n\n```json\n{previous}\n```\n\n"
        f"Your plan has these problems:\n{problems}\n\nReturn a corrected plan."
    )


# --- planning and repair -------------------------------------------------------------------------


async def test_valid_plan_in_one_attempt() -> None:
    planner, model = _planner([VALID])
    result = await _plan(planner)

    assert result.plan == Plan.model_validate(VALID)
    assert result.attempts == 1
    assert result.errors == []
    assert result.usage.calls == 1
    assert model.calls == 1
    request = model.requests[0]
    assert request.output_schema == Plan.model_json_schema()
    assert request.output_name == "Plan"
    assert request.reasoning_effort == "high"
    assert request.max_output_tokens == 4000
    system = planner.render(
        GOAL, inputs={"topic": "bees"}, workers=_workers(), budget_text="no limit"
    )
    assert list(request.messages) == [
        {"role": "system", "content": system},
        {"role": "user", "content": GOAL},
    ]


async def test_cyclic_plan_is_repaired_and_the_repair_quotes_the_error() -> None:
    planner, model = _planner([CYCLIC, VALID])
    result = await _plan(planner)

    assert result.plan == Plan.model_validate(VALID)
    assert result.attempts == 2
    assert result.errors == [[CYCLE_ERROR]]
    assert result.usage.calls == 2
    assert model.calls == 2
    second = model.requests[1].messages
    assert len(second) == 2
    assert second[0] == model.requests[0].messages[0]
    assert second[1] == {"role": "user", "content": _repair(CYCLIC, [CYCLE_ERROR])}


async def test_attempts_exhausted_raise_plan_invalid_with_every_error() -> None:
    bad = {"tasks": [_task("a", "writter", ("serach",)), _task("a")]}
    planner, model = _planner([CYCLIC, CYCLIC, bad], max_attempts=3)
    with pytest.raises(PlanInvalid) as caught:
        await _plan(planner)

    errors = [
        "task id 'a' is used by 2 tasks; give each task its own id",
        "task 'a' uses agent 'writter', which is not a worker (did you mean 'writer'?); "
        "use one of: search, writer",
        "task 'a' depends on 'serach', which is not in the plan; "
        "depend only on tasks of this plan or finished tasks",
    ]
    assert caught.value.errors == errors
    assert caught.value.attempts == 3
    assert isinstance(caught.value, DelegateError)
    assert str(caught.value) == (
        "the planner 'planner' gave no valid plan in 3 attempts; the last had these problems: "
        + "; ".join(errors)
        + ". Raise max_attempts, use a stronger planner model, or add the workers the goal needs"
    )
    assert model.calls == 3
    assert model.requests[2].messages[1]["content"] == _repair(CYCLIC, [CYCLE_ERROR])


async def test_malformed_json_is_a_validation_error_like_any_other() -> None:
    # One call per attempt: an answer that is not a plan is sent back like any invalid plan.
    planner, model = _planner(['{"tasks": [', VALID])
    result = await _plan(planner)

    assert result.attempts == 2
    assert model.calls == 2
    assert result.usage.calls == 2
    [[error]] = result.errors
    assert error.startswith("the answer is not a valid plan: (root): Invalid JSON: EOF")
    assert model.requests[1].messages[1] == {
        "role": "user",
        "content": f"{GOAL}\n\nYour previous answer was not a valid plan.\n\n"
        f"Your plan has these problems:\n- {error}\n\nReturn a corrected plan.",
    }


async def test_plan_calls_go_through_the_caller_and_a_custom_validate() -> None:
    seen: list[tuple[str, str]] = []

    async def caller(agent: Agent, model: Model, request: ModelRequest) -> ModelResponse:
        seen.append((agent.name, model.name))
        return await model.request(request)

    checked: list[Plan] = []

    def validate(plan: Plan, known: list[str]) -> list[str]:
        assert known == []
        checked.append(plan)
        return ["first plan rejected"] if len(checked) == 1 else []

    planner, _ = _planner([VALID, VALID])
    result = await _plan(planner, caller=caller, validate=validate)
    assert seen == [("planner", "reasoner"), ("planner", "reasoner")]
    assert len(checked) == 2
    assert result.errors == [["first plan rejected"]]


async def test_replanning_prompt_lists_finished_tasks_and_failures() -> None:
    replan = {"tasks": [_task("write_again", "writer", ("find_facts",))]}
    planner, model = _planner([{"tasks": [_task("find_facts")]}, replan])
    result = await _plan(
        planner,
        finished={"find_facts": "12 facts about bees"},
        failures={"write": "ContextWindowExceededError: prompt too long"},
    )

    # Re-planning a finished task is refused; depending on it is fine.
    assert result.errors == [
        [
            "task id 'find_facts' is already a finished task, which is never re-planned; "
            "depend on 'find_facts' instead of repeating it, or choose another id"
        ]
    ]
    assert result.plan == Plan.model_validate(replan)
    system = model.requests[0].messages[0]["content"]
    assert (
        "## Finished tasks (may be depended on by id; never re-planned)\n\n"
        "- find_facts: 12 facts about bees\n"
    ) in system
    assert (
        "## Failed tasks and why\n\n- write: ContextWindowExceededError: prompt too long\n"
    ) in system


# --- the prompt ----------------------------------------------------------------------------------


def test_prompt_carries_catalogue_budget_and_memory() -> None:
    planner, _ = _planner([], max_tasks=7)
    prompt = planner.render(
        GOAL,
        inputs={"topic": "bees", "pages": 3},
        workers=_workers(),
        budget_text=describe_budget(tokens=50_000, usd=0.4, seconds=90, planner_usd=0.1),
        memory=["Bee reports need citations.", "The user reads German."],
    )
    assert "## Goal\n\nWrite a short report on bees.\n" in prompt
    assert "- topic: bees\n- pages: 3\n" in prompt
    assert (
        "### search\nFinds sources on the web.\n- model: mini-model\n"
        "- price per million tokens: $0.15 input / $0.6 output\n"
        "- context window: 128,000 tokens\n- tools: web_search\n\n"
        "### writer\nWrites polished prose.\n- model: big-model\n"
        "- price per million tokens: $2.5 input / $10 output\n- tools: none\n"
        "- reasoning effort: low\n"
    ) in prompt
    assert (
        "## Budget left\n\n- tokens: 50,000\n"
        "- USD: $0.40 (of which $0.10 is kept for planning and the final answer)\n"
        "- time: 90 s\n"
    ) in prompt
    assert (
        "## Relevant memory\n\n- Bee reports need citations.\n- The user reads German.\n"
    ) in prompt
    assert "at most 7 tasks" in prompt
    assert "step by step" not in prompt
    assert "Finished tasks" not in prompt
    assert "Failed tasks" not in prompt


def test_prompt_lists_the_strategies_with_their_price_multipliers() -> None:
    planner, _ = _planner([])
    prompt = planner.render(GOAL, inputs={}, workers=_workers(), budget_text="no limit")
    start = prompt.index("## Strategies for hard tasks")
    section = prompt[start : prompt.index("## Budget left")]
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert [(line.split("`")[1], line.rsplit("Up to ", 1)[1]) for line in lines] == [
        (
            '"strategy": {"kind": "best_of_n", "n": 4, "judge": "<worker>"}',
            f"{BestOfN(n=4, judge='j').max_calls()}× the task's cost.",
        ),
        (
            '"strategy": {"kind": "mixture_of_agents", "proposers": ["<worker>", "<worker>"], '
            '"aggregator": "<worker>"}',
            "3× the task's cost.",
        ),
        (
            '"strategy": {"kind": "self_refine", "rounds": 2, "critic": "<worker>"}',
            "5× the task's cost.",
        ),
        ('"votes": 10', "10× the task's cost."),
    ]
    assert "8× the task's cost." in lines[0]
    # Custom prompts may list them too.
    custom = Planner(
        planner.agent, prompt="{% for s in strategies %}{{ s.multiplier }} {% endfor %}"
    )
    assert custom.render(GOAL, inputs={}, workers={}, budget_text="") == "8 3 5 10\n"


def test_describe_budget_says_no_limit_when_nothing_is_limited() -> None:
    assert describe_budget() == "no limit"
    assert describe_budget(usd=0.05) == "- USD: $0.0500"


def test_prompt_can_be_overridden() -> None:
    agent = Agent("planner", ScriptedModel([]))
    planner = Planner(
        agent, prompt="Plan {{ goal }} with {{ workers | map(attribute='name') | join(', ') }}."
    )
    assert planner.render(GOAL, inputs={}, workers=_workers(), budget_text="") == (
        "Plan Write a short report on bees. with search, writer.\n"
    )
    with pytest.raises(TemplateError, match=r"does not parse"):
        Planner(agent, prompt="{% if %}")
    with pytest.raises(TemplateError, match=r"may use goal, inputs, workers"):
        Planner(agent, prompt="{{ nope }}").render(GOAL, inputs={}, workers={}, budget_text="")


# --- validation ----------------------------------------------------------------------------------


def _validate(tasks: list[dict[str, Any]], **options: Any) -> list[str]:
    options.setdefault("max_tasks", 20)
    return validate_plan(Plan.model_validate({"tasks": tasks}), workers=_workers(), **options)


def test_unknown_agent_missing_dep_and_duplicate_id_reported_at_once() -> None:
    errors = _validate(
        [
            _task("search_web"),
            _task("search_web"),
            _task("write", "writr", ("serach_web", "search_web")),
        ]
    )
    assert errors == [
        "task id 'search_web' is used by 2 tasks; give each task its own id",
        "task 'write' uses agent 'writr', which is not a worker (did you mean 'writer'?); "
        "use one of: search, writer",
        "task 'write' depends on 'serach_web', which is not in the plan "
        "(did you mean 'search_web'?); depend only on tasks of this plan or finished tasks",
    ]


def test_strategy_workers_scores_and_votes_are_checked() -> None:
    errors = _validate(
        [
            _task("a", strategy={"kind": "best_of_n", "judge": "writr"}),
            _task(
                "c",
                strategy={"kind": "mixture_of_agents", "proposers": ["search", "serch", "serch"]},
                votes=4,
            ),
            _task("d", strategy={"kind": "self_refine", "critic": "writer"}),
            _task("e", votes=5),
        ]
    )
    assert errors == [
        "task 'a': its best_of_n strategy names 'writr', which is not a worker (did you mean "
        "'writer'?); use one of: search, writer",
        "task 'c': its mixture_of_agents strategy names 'serch', which is not a worker (did you "
        "mean 'search'?); use one of: search, writer",
        "task 'c' has both votes and a strategy; keep one (a strategy picks its own answer)",
    ]


def test_a_plan_names_no_scoring_function_and_its_settings_parse_by_their_schema() -> None:
    with pytest.raises(ValidationError, match="score"):
        PlanTask.model_validate(
            _task("b", strategy={"kind": "best_of_n", "judge": "w", "score": "os:system"})
        )
    with pytest.raises(ValidationError, match="votes"):
        PlanTask.model_validate(_task("b", votes=1))  # two at least: one is no vote


def test_a_plan_tasks_strategy_and_votes_reach_its_spec() -> None:
    plan = Plan.model_validate(
        {
            "tasks": [
                _task("a", strategy={"kind": "self_refine", "rounds": 1, "critic": "writer"}),
                _task("b", votes=5),
            ]
        }
    )
    assert plan_to_specs(plan) == [
        TaskSpec(
            id="a", agent="search", prompt="Do a.", strategy=SelfRefine(rounds=1, critic="writer")
        ),
        TaskSpec(id="b", agent="search", prompt="Do b.", votes=AdaptiveVotes(max_samples=5)),
    ]


async def test_a_streamed_task_naming_an_unknown_strategy_worker_waits_for_the_repair() -> None:
    bad = {
        "tasks": [
            _task("a", strategy={"kind": "best_of_n", "judge": "critic"}),
            _task("b"),
        ]
    }
    fixed = {"tasks": [_task("a", strategy={"kind": "best_of_n", "judge": "writer"}), _task("b")]}
    planner, _ = _planner([bad, fixed])
    handed: list[tuple[str, Any]] = []

    def take(task: PlanTask) -> bool:
        handed.append((task.id, task.strategy_setting()))
        return True

    result = await _plan(planner, on_task=take)

    assert result.attempts == 2
    assert result.errors == [
        [
            "task 'a': its best_of_n strategy names 'critic', which is not a worker; use one of: "
            "search, writer"
        ]
    ]
    # `b` started while the plan was streamed; `a` only once its repair named a worker.
    assert handed == [("b", None), ("a", BestOfN(judge="writer"))]


def test_order_cycles_size_and_ids() -> None:
    errors = _validate(
        [
            _task("early", deps=("late",)),
            _task("late"),
            _task("loop", deps=("loop",)),
            _task("x", deps=("y",)),
            _task("y", deps=("z",)),
            _task("z", deps=("x",)),
            _task("bad id"),
        ],
        max_tasks=6,
    )
    assert errors == [
        "the plan has 7 tasks, more than max_tasks=6; merge related tasks so there are at most 6",
        "task id 'bad id' is not valid; use short snake_case such as 'search_papers' "
        "(letters, digits and '_', not 'inputs' or 'deps')",
        "task 'early' depends on 'late', which is listed after it; list 'late' before 'early' "
        "(tasks must be in dependency order)",
        "task 'loop' depends on itself; remove 'loop' from its deps",
        "tasks 'x' → 'y' → 'z' → 'x' form a cycle (each depends on the next); "
        "remove one of these dependencies",
    ]
    assert _validate([]) == [
        "the plan has no tasks; add at least one task that works toward the goal"
    ]


def test_instructions_must_be_templates_naming_only_their_deps() -> None:
    errors = _validate(
        [
            _task("facts"),
            {"id": "write", "agent": "writer", "instructions": "Use {{ facts }}."},
            {"id": "broken", "agent": "writer", "instructions": "{{ oops"},
        ]
    )
    assert len(errors) == 2
    assert errors[0] == (
        "task 'write': instructions use {{ facts }}, the output of task 'facts', but the task "
        "does not depend on it; add 'facts' to its deps"
    )
    assert errors[1].startswith("task 'broken': prompt template line 1: ")
    assert errors[1].endswith(
        "; write instructions as plain text, or {{ inputs.NAME }} for an input"
    )


def test_deps_on_finished_tasks_are_allowed() -> None:
    assert _validate([_task("write", "writer", ("facts",))], finished={"facts"}) == []
    assert _validate([_task("write", "writer", ("facts",))]) == [
        "task 'write' depends on 'facts', which is not in the plan; depend only on tasks of "
        "this plan or finished tasks"
    ]


def test_over_budget_plan_rejected_via_estimate_usd() -> None:
    estimated: list[int] = []

    def estimate(plan: Plan) -> float:
        estimated.append(len(plan.tasks))
        return 0.3

    tasks = [_task("facts"), _task("write", "writer", ("facts",))]
    assert _validate(tasks, budget_usd_left=0.25, estimate_usd=estimate) == [
        "the plan's projected cost of $0.30 is over the $0.25 left in the budget; use cheaper "
        "workers, fewer tasks, or smaller max_output_tokens"
    ]
    assert _validate(tasks, budget_usd_left=0.5, estimate_usd=estimate) == []
    assert _validate(tasks, estimate_usd=estimate) == []  # no USD limit: nothing to check
    assert estimated == [2, 2]
    # A structurally broken plan is not estimated (the estimator may assume known workers).
    assert len(_validate([_task("x", "nobody")], budget_usd_left=0.1, estimate_usd=estimate)) == 1
    assert estimated == [2, 2]


# --- from plan to graph --------------------------------------------------------------------------


def test_plan_to_specs() -> None:
    assert plan_to_specs(Plan.model_validate(VALID)) == [
        TaskSpec(id="find_facts", agent="search", prompt="Do find_facts."),
        TaskSpec(id="find_images", agent="search", prompt="Do find_images."),
        TaskSpec(
            id="write",
            agent="writer",
            prompt="Do write.\n\nExpected output: A report.",
            deps=("find_facts", "find_images"),
        ),
    ]


def test_add_plan_appends_to_a_graph_with_finished_tasks() -> None:
    graph = TaskGraph()
    facts = graph.add("facts", agent="search", prompt="Find facts.")
    plan = Plan.model_validate(
        {
            "tasks": [
                _task("outline", "writer", ("facts",)),
                _task("write", "writer", ("outline", "facts"), expected_output="Markdown."),
            ]
        }
    )
    added = add_plan(graph, plan)

    assert [task.id for task in added] == ["outline", "write"]
    assert list(graph.tasks) == ["facts", "outline", "write"]
    assert graph["facts"] is facts
    assert graph["outline"].deps == ("facts",)
    assert graph["write"].deps == ("outline", "facts")
    assert graph["write"].agent == "writer"
    assert graph["write"].prompt == "Do write.\n\nExpected output: Markdown."
    with pytest.raises(GraphError, match="duplicate task id 'outline'"):
        add_plan(graph, Plan(tasks=[PlanTask(id="outline", agent="writer", instructions="x")]))


def test_planner_arguments_are_checked() -> None:
    agent = Agent("planner", ScriptedModel([]))
    with pytest.raises(DelegateError, match=r"max_attempts must be an integer ≥ 1, got 0"):
        Planner(agent, max_attempts=0)
    with pytest.raises(DelegateError, match=r"max_tasks must be an integer ≥ 1, got 0"):
        Planner(agent, max_tasks=0)
    assert repr(Planner(agent)) == "Planner(agent='planner', max_tasks=20, max_attempts=2)"


def test_the_catalogue_names_a_workers_mcp_tools() -> None:
    from delegate import MCPServerStdio

    planner, _ = _planner([])
    github = MCPServerStdio("github-mcp", name="github", prefix="gh_", tools=["search", "issue"])
    files = MCPServerStdio("files-mcp", name="files")
    worker = Agent("coder", ScriptedModel([]), description="Writes code.", tools=[github, files])

    prompt = planner.render(GOAL, inputs={}, workers={"coder": worker}, budget_text="no limit")

    assert "- tools: gh_issue, gh_search, the tools of MCP server 'files'\n" in prompt, prompt
