"""The planner: a reasoning model turns a goal into a `Plan` of tasks for cheaper workers.

    planner = Planner(Agent("planner", "openai/o4-mini", reasoning_effort="medium"))
    result = await planner.plan(
        "Compare the three papers", inputs={"urls": urls}, workers=workers,
        budget_text=describe_budget(usd=0.40, seconds=120),
    )
    add_plan(graph, result.plan)

The planner sees the goal, the inputs, the catalogue of workers (model, price, context window,
tools, reasoning effort), the budget left and relevant memory; on a replan also the finished
tasks and the failures. Its answer is checked by `validate_plan`, which gathers every problem at
once (duplicate or malformed ids, unknown agents, missing or misordered dependencies, cycles, too
many tasks, a projected cost over the budget); an invalid plan, or an answer that is not a plan at
all, is sent back with the problems quoted verbatim, at most `max_attempts` times in all, and then
`PlanInvalid` is raised with every problem of the last attempt.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from jinja2 import TemplateError as JinjaTemplateError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from delegate._log import bind_model
from delegate.agents.agent import Agent, ModelCaller
from delegate.agents.models import Model, ModelRequest, ModelResponse, Price, Usage
from delegate.agents.tools import validation_summary
from delegate.errors import (
    ConfigError,
    PlanInvalid,
    TemplateError,
)
from delegate.orchestrator._plan_checks import (
    check_agents,
    check_deps,
    check_ids,
    check_strategies,
    check_templates,
    plan_prompt,
    usd_text,
    validate_plan,
)
from delegate.orchestrator.graph import (
    PROMPT_ENV,
    TaskSpec,
    format_output,
)
from delegate.orchestrator.plan_stream import PlanStream
from delegate.orchestrator.strategies import (
    AdaptiveVotes,
    BestOfN,
    MixtureOfAgents,
    SelfRefine,
    Strategy,
)

if TYPE_CHECKING:
    from jinja2 import Template

    from delegate.orchestrator.graph import Task, TaskGraph

__all__ = [
    "Plan",
    "PlanInvalid",
    "PlanResult",
    "PlanTask",
    "Planner",
    "add_plan",
    "default_prompt",
    "describe_budget",
    "plan_prompt",
    "plan_to_specs",
    "summarize_output",
    "validate_plan",
]

# The same sandbox as task prompts; block tags drop their own line so the prompt reads cleanly.
_prompt_env = PROMPT_ENV.overlay(trim_blocks=True, lstrip_blocks=True)


class _PlanSetting(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _PlanBestOfN(_PlanSetting):
    """`BestOfN` as a plan asks for it: scored by a judge (a plan names no code to run)."""

    model_config = ConfigDict(title="BestOfN")

    kind: Literal["best_of_n"]
    n: int = Field(default=4, ge=2, le=50, description="Answers sampled at once.")
    judge: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The worker that scores each answer from 0 to 10.",
    )

    def setting(self) -> BestOfN:
        return BestOfN(n=self.n, judge=self.judge)


class _PlanMixture(_PlanSetting):
    """`MixtureOfAgents` as a plan asks for it."""

    model_config = ConfigDict(title="MixtureOfAgents")

    kind: Literal["mixture_of_agents"]
    proposers: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=2,
        max_length=20,
        description="The workers that propose answers, typically on different models.",
    )
    aggregator: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The worker that writes the answer from the proposals (default: the task's).",
    )

    def setting(self) -> MixtureOfAgents:
        return MixtureOfAgents(proposers=tuple(self.proposers), aggregator=self.aggregator)


class _PlanSelfRefine(_PlanSetting):
    """`SelfRefine` as a plan asks for it."""

    model_config = ConfigDict(title="SelfRefine")

    kind: Literal["self_refine"]
    rounds: int = Field(default=2, ge=1, le=10, description="Critique → revise rounds at most.")
    critic: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The worker that critiques (default: the task's judge, else its worker).",
    )

    def setting(self) -> SelfRefine:
        return SelfRefine(rounds=self.rounds, critic=self.critic)


# The settings a plan may ask for, each rule of them in their JSON Schema (`kind` required, no
# rule across fields): a plan that follows the schema parses.
_PlanStrategy = Annotated[
    _PlanBestOfN | _PlanMixture | _PlanSelfRefine, Field(discriminator="kind")
]


class PlanTask(BaseModel):
    """One task of a plan, done by one worker."""

    id: str = Field(
        description="Unique short snake_case id, e.g. 'search_papers'; other tasks depend on it."
    )
    agent: str = Field(description="The name of the worker that does the task.")
    instructions: str = Field(
        description="What the worker must do, complete on its own: the worker sees only these "
        "instructions and the outputs of the tasks this one depends on."
    )
    deps: list[str] = Field(
        default_factory=list,
        description="Ids of the tasks whose outputs this task needs: tasks listed earlier in "
        "this plan, or finished tasks. Empty when it needs none, so it starts at once.",
    )
    expected_output: str = Field(
        default="", description="What the task must return (content and form), briefly."
    )
    effort: Literal["low", "medium", "high"] | None = Field(
        default=None, description="How hard the task is, as a hint for the worker's effort."
    )
    max_output_tokens: int | None = Field(
        default=None, ge=1, description="A cap on the length of the task's answer, in tokens."
    )
    strategy: _PlanStrategy | None = Field(
        default=None,
        description="Only for a hard task whose answer is worth several calls: best_of_n, "
        "mixture_of_agents or self_refine, naming workers (see Strategies). Default: one answer.",
    )
    votes: int | None = Field(
        default=None,
        ge=2,
        le=20,
        description="Only for a task with one short right answer (a number, a label, a "
        "choice): sample up to this many answers, stopping as soon as the majority is settled. "
        "Not with a strategy.",
    )

    def spec(self, worker: Agent[Any] | None = None) -> TaskSpec:
        """The task as a `TaskSpec`: its prompt from the instructions and expected output, its
        output cap, its strategy or votes, and its effort when `worker` is a reasoning model
        (an effort means nothing to the others, nor without a worker).

        Raises:
            GraphError: a value a task may not have (`validate_plan` reports these first).
        """
        reasoning = worker is not None and worker.reasoning_effort is not None
        return TaskSpec(
            id=self.id,
            agent=self.agent,
            prompt=plan_prompt(self),
            deps=tuple(self.deps),
            max_output_tokens=self.max_output_tokens,
            reasoning_effort=self.effort if reasoning else None,
            votes=None if self.votes is None else AdaptiveVotes(max_samples=self.votes),
            strategy=self.strategy_setting(),
        )

    def strategy_setting(self) -> Strategy | None:
        """The task's strategy as the run carries it out (None: one answer)."""
        return None if self.strategy is None else self.strategy.setting()


class Plan(BaseModel):
    """A plan: tasks in dependency order, and a note for the final synthesis."""

    tasks: list[PlanTask] = Field(
        description="The tasks, in dependency order: each depends only on tasks listed before it "
        "(or on finished tasks)."
    )
    synthesis_note: str = Field(
        default="",
        description="What the final answer must contain and how to combine the task outputs.",
    )


@dataclass(frozen=True, slots=True)
class PlanResult:
    """A valid plan and how it was reached.

    Attributes:
        plan: the plan that passed validation.
        attempts: how many plans were asked for (1 when the first was valid).
        errors: the problems of each failed attempt, in order (empty when the first was valid).
        usage: tokens and cost of every planner call (one per attempt).
    """

    plan: Plan
    attempts: int
    errors: list[list[str]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


# --- the prompt ------------------------------------------------------------------------------


def default_prompt() -> str:
    """The planner prompt template shipped with delegate (`prompts/planner.md`)."""
    resource = importlib.resources.files("delegate.orchestrator") / "prompts" / "planner.md"
    return resource.read_text(encoding="utf-8")


def describe_budget(
    *,
    tokens: int | None = None,
    usd: float | None = None,
    seconds: float | None = None,
    planner_usd: float | None = None,
) -> str:
    """The budget left, as the planner prompt shows it ("no limit" when nothing is limited).

    Args:
        tokens: tokens left in the run's budget.
        usd: USD left.
        seconds: seconds left before the deadline.
        planner_usd: the part of `usd` kept for the planner's own calls (plans and synthesis).
    """
    parts: list[str] = []
    if tokens is not None:
        parts.append(f"- tokens: {tokens:,}")
    if usd is not None:
        line = f"- USD: {usd_text(usd)}"
        if planner_usd is not None:
            line += f" (of which {usd_text(planner_usd)} is kept for planning and the final answer)"
        parts.append(line)
    if seconds is not None:
        parts.append(f"- time: {seconds:.0f} s")
    return "\n".join(parts) if parts else "no limit"


def _price(agent: Agent[Any], prices: Mapping[str, Price]) -> str:
    price = prices.get(agent.model.name, agent.model.price)
    if price is None:
        return "unknown"
    return f"${price.input_per_mtok:g} input / ${price.output_per_mtok:g} output"


def _catalogue(
    workers: Mapping[str, Agent[Any]], prices: Mapping[str, Price]
) -> list[dict[str, Any]]:
    catalogue = []
    for name, agent in workers.items():
        window = getattr(agent.model, "context_window", None)
        catalogue.append(
            {
                "name": name,
                "description": agent.description,
                "model": agent.model.name,
                "price": _price(agent, prices),
                "context_window": f"{window:,}" if isinstance(window, int) and window else None,
                "tools": ", ".join(_tool_names(agent)),
                "reasoning_effort": agent.reasoning_effort,
            }
        )
    return catalogue


# What the planner is told of each strategy: how a plan asks for it, what it does, and the most
# calls it makes per answer at those settings (`max_calls()`: the price multiplier).
_STRATEGIES: tuple[tuple[str, str, BestOfN | MixtureOfAgents | SelfRefine | AdaptiveVotes], ...] = (
    (
        '"strategy": {"kind": "best_of_n", "n": 4, "judge": "<worker>"}',
        "n answers at once; the judge scores each and the best is kept. For open-ended work "
        "whose quality varies (writing, code, analysis).",
        BestOfN(n=4, judge="judge"),
    ),
    (
        '"strategy": {"kind": "mixture_of_agents", "proposers": ["<worker>", "<worker>"], '
        '"aggregator": "<worker>"}',
        "each proposer (workers on different models) answers; the aggregator writes the "
        "answer from their proposals. For questions where models see different things.",
        MixtureOfAgents(proposers=("a", "b"), aggregator="c"),
    ),
    (
        '"strategy": {"kind": "self_refine", "rounds": 2, "critic": "<worker>"}',
        "an answer, then critique and revision until the critic passes it. For work with "
        "checkable mistakes (code, extraction, math).",
        SelfRefine(rounds=2, critic="critic"),
    ),
    (
        '"votes": 10',
        "answers sampled two at a time until the majority is settled (often after a few). "
        "For a task with one short right answer (a number, a label).",
        AdaptiveVotes(max_samples=10),
    ),
)


def _strategies() -> list[dict[str, Any]]:
    return [
        {"example": example, "description": description, "multiplier": setting.max_calls()}
        for example, description, setting in _STRATEGIES
    ]


def _tool_names(agent: Agent[Any]) -> list[str]:
    """The tools a worker may call, as the planner reads them: an MCP server's allow-listed tools
    by the names the model sees, or the whole server when it offers all of its own (its tools are
    listed only once a run starts it)."""
    names = [tool.name for tool in agent.tools]
    for server in agent.mcp_servers:
        if server.tools is None:
            names.append(f"the tools of MCP server {server.name!r}")
        else:
            names.extend(server.prefix + tool for tool in sorted(server.tools))
    return names


def _compile_prompt(text: str) -> Template:
    if not isinstance(text, str):
        raise ConfigError(f"Planner: prompt must be a template str, got {type(text).__name__}")
    try:
        return _prompt_env.from_string(text)
    except JinjaTemplateError as exc:
        raise TemplateError(f"Planner: the prompt template does not parse: {exc}") from None


_PROMPT_NAMES = "goal, inputs, workers, budget, memory, finished, failures, max_tasks, strategies"


# --- the planner -----------------------------------------------------------------------------


def _repair_request(
    goal: str, answer: str | None, errors: Sequence[str], started: Sequence[str] = ()
) -> str:
    problems = "\n".join(f"- {error}" for error in errors)
    if answer is None:
        previous = "Your previous answer was not a valid plan."
    else:
        previous = f"Your previous plan:\n\n```json\n{answer}\n```"
    note = ""
    if started:
        note = (
            f"\n\nThese tasks of your previous plan have already started and are kept: "
            f"{', '.join(started)}. Later tasks may depend on them; do not change them."
        )
    return (
        f"{goal}\n\n{previous}\n\nYour plan has these problems:\n{problems}{note}\n\n"
        "Return a corrected plan."
    )


class Planner:
    """Asks a (reasoning) model for a `Plan`, validates it, and has it repaired when invalid.

    Args:
        agent: the planner's model and settings (`model`, `reasoning_effort`,
            `max_output_tokens`, `temperature`, budgets); its instructions are replaced by the
            rendered planner prompt and its output type by `Plan`.
        max_tasks: the most tasks a plan may have.
        max_attempts: plans asked for in all, the first included, before `PlanInvalid`.
        prompt: a jinja2 template replacing the shipped `prompts/planner.md`; it may use
            goal, inputs, workers, budget, memory, finished, failures, max_tasks and
            strategies (each with its `example`, `description` and price `multiplier`).

    Raises:
        ConfigError: a bad argument.
        TemplateError: `prompt` is not a valid template.
    """

    def __init__(
        self,
        agent: Agent[Any],
        *,
        max_tasks: int = 20,
        max_attempts: int = 2,
        prompt: str | None = None,
    ) -> None:
        if not isinstance(agent, Agent):
            raise ConfigError(f"Planner: agent must be an Agent, got {type(agent).__name__}")
        for name, value in (("max_tasks", max_tasks), ("max_attempts", max_attempts)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"Planner: {name} must be an integer ≥ 1, got {value!r}")
        self.agent = agent
        self.max_tasks = max_tasks
        self.max_attempts = max_attempts
        self.prompt = default_prompt() if prompt is None else prompt
        self._template = _compile_prompt(self.prompt)

    def __repr__(self) -> str:
        return (
            f"Planner(agent={self.agent.name!r}, max_tasks={self.max_tasks}, "
            f"max_attempts={self.max_attempts})"
        )

    def render(
        self,
        goal: str,
        *,
        inputs: Mapping[str, Any],
        workers: Mapping[str, Agent[Any]],
        budget_text: str,
        memory: Sequence[str] = (),
        finished: Mapping[str, str] | None = None,
        failures: Mapping[str, str] | None = None,
        prices: Mapping[str, Price] | None = None,
    ) -> str:
        """The planner's system prompt for this goal and state.

        `prices` override the workers' models' own prices (as `Orchestrator(prices=)` does).

        Raises:
            TemplateError: a custom prompt uses a name that is not given.
        """
        context = {
            "goal": goal,
            "inputs": {name: format_output(value) for name, value in inputs.items()},
            "workers": _catalogue(workers, prices or {}),
            "budget": budget_text,
            "memory": list(memory),
            "finished": dict(finished or {}),
            "failures": dict(failures or {}),
            "max_tasks": self.max_tasks,
            "strategies": _strategies(),
        }
        try:
            return self._template.render(context).strip() + "\n"
        except JinjaTemplateError as exc:
            raise TemplateError(
                f"Planner: the prompt template does not render: {exc}; it may use {_PROMPT_NAMES}"
            ) from None

    async def plan(
        self,
        goal: str,
        *,
        inputs: Mapping[str, Any],
        workers: Mapping[str, Agent[Any]],
        budget_text: str,
        memory: Sequence[str] = (),
        finished: Mapping[str, str] | None = None,
        failures: Mapping[str, str] | None = None,
        caller: ModelCaller | None = None,
        validate: Callable[[Plan, list[str]], list[str]] | None = None,
        on_task: Callable[[PlanTask], bool] | None = None,
        prices: Mapping[str, Price] | None = None,
        started: Sequence[PlanTask] = (),
    ) -> PlanResult:
        """Ask for a plan for `goal`, and have it repaired until it validates.

        With `on_task`, tasks are handed over as soon as they are known: while the planner's
        model streams its answer, each task is passed to `on_task` the moment it has been parsed,
        if it already checks out on its own (a fresh, valid id, a known worker, dependencies on
        finished or earlier tasks, instructions that parse, within `max_tasks`); the rest follow
        when the whole plan has validated. `on_task` returns False to decline a task (it then
        goes back to the planner with the plan's other problems). A task handed over is never
        taken back: a repaired plan may depend on it, and may list it again unchanged.

        Args:
            goal: what the run must achieve; the user message of the first request.
            inputs: the run's inputs, shown to the planner.
            workers: the workers a task may name, by name.
            budget_text: the budget left, as text (see `describe_budget`).
            memory: relevant memory entries.
            finished: on a replan, the finished tasks' ids with short summaries of their outputs.
            failures: on a replan, the failed tasks' ids with their errors.
            caller: sends each model call (the orchestrator's accounts usage and budgets).
            validate: the plan's problems, given the ids a plan may depend on besides its own
                (finished tasks, and tasks handed over by an earlier attempt); by default
                `validate_plan` against `workers` and `max_tasks`.
            on_task: takes each task of the plan, in plan order, as early as it can.
            prices: USD per million tokens by model name, overriding the workers' own.
            started: tasks of this plan already handed over (by an attempt that then failed):
                kept as if this call had handed them over.

        Raises:
            PlanInvalid: the plan of the last attempt was still invalid (or not a plan).
            ModelError: a planner call failed (transient ones are worth retrying).
        """
        finished = dict(finished or {})
        handover = _Handover(
            on_task=on_task,
            taken={task.id: task for task in started},
            known=[*finished],
            workers=workers,
            inputs=list(inputs),
            max_tasks=self.max_tasks,
        )

        def check(plan: Plan, known: list[str]) -> list[str]:
            changed = _changed(plan, handover.taken)
            if validate is not None:
                return changed + validate(plan, known)
            return changed + validate_plan(
                plan, workers=workers, max_tasks=self.max_tasks, finished=known
            )

        instructions = self.render(
            goal,
            inputs=inputs,
            workers=workers,
            budget_text=budget_text,
            memory=memory,
            finished=finished,
            failures=failures,
            prices=prices,
        )
        send = caller or _direct
        history: list[list[str]] = []
        usage = Usage()
        request = goal
        for attempt in range(1, self.max_attempts + 1):
            parser = PlanStream() if on_task is not None else None
            bind_model(self.agent.model.name)  # what the call logs names it (as Agent.run does)
            response = await send(
                self.agent,
                self.agent.model,
                self._request(instructions, request, parser, handover.stream),
            )
            usage += response.usage
            plan, errors = _parse(response)
            if plan is not None:
                listed = {task.id for task in plan.tasks}
                earlier = [task for task in handover.taken.values() if task.id not in listed]
                # A task handed over earlier may be listed again (unchanged), finished or not.
                known = [f for f in finished if f not in listed or f not in handover.taken]
                errors = check(plan, [*known, *(task.id for task in earlier)])
            if plan is not None and not errors:
                errors = handover.hand_over(plan)
                if not errors:
                    full = Plan(tasks=[*earlier, *plan.tasks], synthesis_note=plan.synthesis_note)
                    return PlanResult(plan=full, attempts=attempt, errors=history, usage=usage)
            history.append(errors)
            answer = None if plan is None else plan.model_dump_json(indent=2)
            request = _repair_request(goal, answer, errors, list(handover.taken))
        raise PlanInvalid(
            f"the planner {self.agent.name!r} gave no valid plan in {self.max_attempts} "
            f"attempts; the last had these problems: {'; '.join(history[-1])}. Raise "
            "max_attempts, use a stronger planner model, or add the workers the goal needs",
            errors=history[-1],
            attempts=self.max_attempts,
        )

    def _request(
        self,
        instructions: str,
        prompt: str,
        parser: PlanStream | None,
        on_raw: Callable[[dict[str, Any]], None],
    ) -> ModelRequest:
        agent = self.agent
        on_text = None
        if parser is not None:

            def on_text(delta: str) -> None:
                for raw in parser.feed(delta):
                    on_raw(raw)

        return ModelRequest(
            messages=[
                {"role": "system", "content": instructions},
                {"role": "user", "content": prompt},
            ],
            output_schema=_PLAN_SCHEMA,
            output_name="Plan",
            max_output_tokens=agent.max_output_tokens,
            reasoning_effort=agent.reasoning_effort,
            temperature=agent.temperature,
            on_text=on_text,
        )


_PLAN_SCHEMA = Plan.model_json_schema()


async def _direct(agent: Agent[Any], model: Model, request: ModelRequest) -> ModelResponse:
    """Without a caller, the planner's requests go straight to its model."""
    return await model.request(request)


def _parse(response: ModelResponse) -> tuple[Plan | None, list[str]]:
    """The plan in a planner's answer, or the reason it is not one."""
    if response.finish_reason == "length":
        return None, [
            "the answer was cut off at max_output_tokens before the plan was complete; "
            "return a shorter plan (fewer tasks, shorter instructions)"
        ]
    try:
        return Plan.model_validate_json(response.text), []
    except ValidationError as exc:
        return None, [f"the answer is not a valid plan: {validation_summary(exc)}"]


def _parsed_task(raw: dict[str, Any]) -> PlanTask | None:
    """A streamed task object as a `PlanTask`, or None when it is not one."""
    try:
        return PlanTask.model_validate(raw)
    except ValidationError:
        return None


def _changed(plan: Plan, taken: Mapping[str, PlanTask]) -> list[str]:
    """Tasks the plan lists again, but changed, after they were handed over."""
    return [
        f"task {t.id!r} has already started and cannot change; list it unchanged, or give the "
        "changed task a new id"
        for t in plan.tasks
        if t.id in taken and taken[t.id] != t
    ]


@dataclass(slots=True)
class _Handover:
    """What `Planner.plan` has handed over to `on_task`, and how a task gets handed over."""

    on_task: Callable[[PlanTask], bool] | None
    taken: dict[str, PlanTask]  # handed over, by id
    known: list[str]  # finished tasks a task may depend on
    workers: Mapping[str, Agent[Any]]
    inputs: list[str]
    max_tasks: int

    def offer(self, task: PlanTask) -> bool:
        """Hand `task` over; False when `on_task` declines it."""
        if self.on_task is None or task.id in self.taken:
            return True
        if not self.on_task(task):
            return False
        self.taken[task.id] = task
        return True

    def stream(self, raw: dict[str, Any]) -> None:
        """A task parsed from the stream: handed over now if it checks out on its own."""
        task = _parsed_task(raw)  # (a malformed one is reported with the whole plan)
        if task is None or len(self.taken) >= self.max_tasks:
            return
        known = [*self.known, *self.taken]
        if not _task_errors(task, self.workers, known, self.inputs):
            self.offer(task)

    def hand_over(self, plan: Plan) -> list[str]:
        """Offer a valid plan's tasks in order; the problem when one is declined."""
        for task in plan.tasks:
            if not self.offer(task):
                return [
                    f"task {task.id!r} could not start: with the tasks already started it does "
                    "not fit in the budget left; plan fewer or cheaper tasks for what is left"
                ]
        return []


def _task_errors(
    task: PlanTask, workers: Mapping[str, Agent[Any]], known: Sequence[str], inputs: Collection[str]
) -> list[str]:
    """The problems one task has on its own (what a streamed task is checked for)."""
    plan = Plan(tasks=[task])
    return [
        *check_ids(plan, known),
        *check_agents(plan, workers),
        *check_strategies(plan, workers),
        *check_deps(plan, known),
        *check_templates(plan, inputs),
    ]


# --- from plan to graph ----------------------------------------------------------------------


SUMMARY_CHARS = 300
"""How much of a finished task's output a planner is shown (replanning, plan steps)."""


def summarize_output(output: Any) -> str:
    """A finished task's output as one short line for a planner's prompt."""
    text = format_output(output).replace("\n", " ").strip()
    if len(text) > SUMMARY_CHARS:
        text = text[:SUMMARY_CHARS] + "…"
    return text or "(empty output)"


def plan_to_specs(plan: Plan, workers: Mapping[str, Agent[Any]] | None = None) -> list[TaskSpec]:
    """The plan's tasks as `TaskSpec`s (for `TaskGraph.from_specs` or storing the plan); with
    `workers`, the effort hints of tasks for reasoning models are kept (see `PlanTask.spec`)."""
    workers = workers or {}
    return [task.spec(workers.get(task.agent)) for task in plan.tasks]


def add_plan(graph: TaskGraph, plan: Plan) -> list[Task]:
    """Append the plan's tasks to `graph`; they may depend on tasks already in it.

    Validate the plan first (`validate_plan`): this adds tasks one by one and stops at the first
    one the graph rejects, leaving the tasks before it added.

    Raises:
        GraphError: a duplicate id, an unknown dependency, a dependency listed after its task.
        TemplateError: instructions that are not a valid template.
    """
    return [graph.add_spec(task.spec()) for task in plan.tasks]
