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
from typing import TYPE_CHECKING, Any, Literal

from jinja2 import TemplateError as JinjaTemplateError
from pydantic import BaseModel, Field, ValidationError

from delegate.agents.agent import Agent, ModelCaller
from delegate.agents.models import Model, ModelRequest, ModelResponse, Price, Usage
from delegate.agents.tools import validation_summary
from delegate.errors import (
    ConfigError,
    PlanInvalid,
    TemplateError,
    did_you_mean,
)
from delegate.orchestrator._sandbox import check_render
from delegate.orchestrator.graph import (
    PROMPT_ENV,
    RESERVED_NAMES,
    TASK_ID,
    TaskSpec,
    compile_prompt,
    format_output,
)
from delegate.orchestrator.plan_stream import PlanStream

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
    "plan_task_options",
    "plan_to_specs",
    "summarize_output",
    "validate_plan",
]

# The same sandbox as task prompts; block tags drop their own line so the prompt reads cleanly.
_prompt_env = PROMPT_ENV.overlay(trim_blocks=True, lstrip_blocks=True)


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


# --- validation ------------------------------------------------------------------------------


def _usd(value: float) -> str:
    return f"${value:.2f}" if value >= 0.1 else f"${value:.4f}"


def _check_ids(plan: Plan, finished: Collection[str]) -> list[str]:
    errors: list[str] = []
    counts: dict[str, int] = {}
    for task in plan.tasks:
        counts[task.id] = counts.get(task.id, 0) + 1
    for task_id, count in counts.items():
        if not TASK_ID.match(task_id) or task_id in RESERVED_NAMES:
            errors.append(
                f"task id {_shown(task_id)} is not valid; use short snake_case such as "
                "'search_papers' (letters, digits and '_', not 'inputs' or 'deps')"
            )
        if count > 1:
            errors.append(
                f"task id {task_id!r} is used by {count} tasks; give each task its own id"
            )
        if task_id in finished:
            errors.append(
                f"task id {task_id!r} is already a finished task, which is never re-planned; "
                f"depend on {task_id!r} instead of repeating it, or choose another id"
            )
    return errors


def _check_agents(plan: Plan, workers: Mapping[str, Agent]) -> list[str]:
    names = ", ".join(workers) or "(none)"
    return [
        f"task {_shown(task.id)} uses agent {_shown(task.agent)}, which is not a worker"
        f"{did_you_mean(task.agent, workers) if len(task.agent) <= 200 else ''}; use one of: "
        f"{names}"
        for task in plan.tasks
        if task.agent not in workers
    ]


def _check_deps(plan: Plan, finished: Collection[str]) -> list[str]:
    errors: list[str] = []
    position = {task.id: n for n, task in reversed(list(enumerate(plan.tasks)))}
    # A task id listed twice (already an error) has the dependencies of both listings here.
    deps: dict[str, list[str]] = {}
    for task in plan.tasks:
        deps.setdefault(task.id, []).extend(dep for dep in task.deps if dep in position)
    cyclic = _cyclic_components(deps)
    done = set(finished)
    known: list[str] | None = None
    for n, task in enumerate(plan.tasks):
        for dep in dict.fromkeys(task.deps):
            if dep in done and dep not in position:
                continue
            if dep not in position:
                if known is None:
                    known = [*position, *(f for f in finished if f not in position)]
                errors.append(
                    f"task {task.id!r} depends on {_shown(dep)}, which is not in the plan"
                    f"{did_you_mean(dep, known) if len(dep) <= 200 else ''}; depend only on "
                    "tasks of this plan or finished tasks"
                )
            elif position[dep] > n and cyclic.get(dep, -1) != cyclic.get(task.id, -2):
                errors.append(
                    f"task {task.id!r} depends on {dep!r}, which is listed after it; list "
                    f"{dep!r} before {task.id!r} (tasks must be in dependency order)"
                )
    errors.extend(_describe_cycles(plan, deps, cyclic))
    return errors


def _shown(name: str, limit: int = 80) -> str:
    """`repr(name)`, cut short: a model may write anything where a name belongs."""
    return repr(name) if len(name) <= limit else f"{name[:limit]!r}… ({len(name):,} characters)"


def _cyclic_components(deps: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Tasks on a cycle, each mapped to its cycle's number (tasks on one cycle share it).

    Tarjan's strongly connected components, iterative: linear in tasks and dependencies.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: dict[str, int] = {}
    for root in deps:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(deps[root]))]
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(deps[child])))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in deps[node]:
                        result.update(dict.fromkeys(component, index[node]))
    return result


def _describe_cycles(
    plan: Plan, deps: Mapping[str, Sequence[str]], cyclic: Mapping[str, int]
) -> list[str]:
    errors: list[str] = []
    described: set[int] = set()
    for task in plan.tasks:
        number = cyclic.get(task.id)
        if number is None or number in described:
            continue
        described.add(number)
        if task.id in deps[task.id]:
            errors.append(f"task {task.id!r} depends on itself; remove {task.id!r} from its deps")
            continue
        # Walk dependencies inside the component from its first-listed task until one repeats
        # (every task of a component depends on another task of it).
        seen: dict[str, int] = {}  # task -> its position on the walk
        node = task.id
        while node not in seen:
            seen[node] = len(seen)
            node = next(dep for dep in deps[node] if cyclic.get(dep) == number)
        loop = [*list(seen)[seen[node] :], node]
        errors.append(
            f"tasks {' → '.join(repr(t) for t in loop)} form a cycle (each depends on the next); "
            "remove one of these dependencies"
        )
    return errors


def _template_errors(task: PlanTask) -> tuple[frozenset[str], list[str]]:
    """The names a task's prompt uses, and its problems: it must compile and render."""
    prompt = plan_prompt(task)
    try:
        template, names = compile_prompt(task.id, prompt)
    except TemplateError as exc:
        try:
            compile_prompt(task.id, task.instructions)
        except TemplateError:
            remedy = "write instructions as plain text, or {{ inputs.NAME }} for an input"
        else:
            remedy = "expected_output is part of the prompt: write it as plain text"
        return frozenset(), [f"{exc}; {remedy}"]
    if template is None:
        return names, []
    problem = check_render(PROMPT_ENV, prompt)
    if problem is None:
        return names, []
    return names, [
        f"task {task.id!r}: instructions fail to render whatever the inputs ({problem}); write "
        "instructions as plain text, or {{ inputs.NAME }} for an input"
    ]


def _check_templates(plan: Plan, inputs: Collection[str] | None = None) -> list[str]:
    errors: list[str] = []
    ids = {task.id for task in plan.tasks}
    allowed = RESERVED_NAMES | set(inputs or ())
    for task in plan.tasks:
        names, problems = _template_errors(task)
        if problems:
            errors.extend(problems)
            continue
        errors.extend(
            f"task {task.id!r}: instructions use {{{{ {name} }}}}, the output of task {name!r}, "
            f"but the task does not depend on it; add {name!r} to its deps"
            for name in sorted((names & ids) - set(task.deps))
        )
        if inputs is not None:
            errors.extend(
                f"task {task.id!r}: instructions use {{{{ {name} }}}}, which is neither an input"
                f"{did_you_mean(name, [*allowed, *task.deps])} nor a dependency; write "
                "{{ inputs.NAME }} for an input, or add the task to deps"
                for name in sorted(names - allowed - ids - set(task.deps))
            )
    return errors


def validate_plan(
    plan: Plan,
    *,
    workers: Mapping[str, Agent],
    max_tasks: int,
    finished: Collection[str] = (),
    budget_usd_left: float | None = None,
    estimate_usd: Callable[[Plan], float | None] | None = None,
    inputs: Collection[str] | None = None,
) -> list[str]:
    """Every problem of `plan`, each naming the task and the remedy; empty when it is valid.

    Args:
        plan: the planner's plan.
        workers: the workers a task may name, by name.
        max_tasks: the most tasks a plan may have.
        finished: ids of tasks already finished: a task may depend on them, never reuse their ids.
        budget_usd_left: USD left in the run's budget (None: no USD limit).
        estimate_usd: projects the plan's cost in USD (None when unknown); called only when the
            plan has no other problem, so it may assume known workers and acyclic dependencies.
        inputs: the run's input names; when given, a placeholder that is neither an input nor a
            dependency is an error.
    """
    if not plan.tasks:
        return ["the plan has no tasks; add at least one task that works toward the goal"]
    errors: list[str] = []
    if len(plan.tasks) > max_tasks:
        errors.append(
            f"the plan has {len(plan.tasks)} tasks, more than max_tasks={max_tasks}; merge "
            f"related tasks so there are at most {max_tasks}"
        )
        if len(plan.tasks) > 2 * max_tasks:
            return errors  # far too large: checking the rest would only make noise (and work)
    errors += _check_ids(plan, finished)
    errors += _check_agents(plan, workers)
    errors += _check_deps(plan, finished)
    errors += _check_templates(plan, inputs)
    if not errors and estimate_usd is not None and budget_usd_left is not None:
        cost = estimate_usd(plan)
        if cost is not None and cost > budget_usd_left:
            errors.append(
                f"the plan's projected cost of {_usd(cost)} is over the {_usd(budget_usd_left)} "
                "left in the budget; use cheaper workers, fewer tasks, or smaller "
                "max_output_tokens"
            )
    return errors


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
        line = f"- USD: {_usd(usd)}"
        if planner_usd is not None:
            line += f" (of which {_usd(planner_usd)} is kept for planning and the final answer)"
        parts.append(line)
    if seconds is not None:
        parts.append(f"- time: {seconds:.0f} s")
    return "\n".join(parts) if parts else "no limit"


def _price(agent: Agent, prices: Mapping[str, Price]) -> str:
    price = prices.get(agent.model.name, agent.model.price)
    if price is None:
        return "unknown"
    return f"${price.input_per_mtok:g} input / ${price.output_per_mtok:g} output"


def _catalogue(workers: Mapping[str, Agent], prices: Mapping[str, Price]) -> list[dict[str, Any]]:
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
                "tools": ", ".join(tool.name for tool in agent.tools),
                "reasoning_effort": agent.reasoning_effort,
            }
        )
    return catalogue


def _compile_prompt(text: str) -> Template:
    if not isinstance(text, str):
        raise ConfigError(f"Planner: prompt must be a template str, got {type(text).__name__}")
    try:
        return _prompt_env.from_string(text)
    except JinjaTemplateError as exc:
        raise TemplateError(f"Planner: the prompt template does not parse: {exc}") from None


_PROMPT_NAMES = "goal, inputs, workers, budget, memory, finished, failures, max_tasks"


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
            goal, inputs, workers, budget, memory, finished, failures and max_tasks.

    Raises:
        ConfigError: a bad argument.
        TemplateError: `prompt` is not a valid template.
    """

    def __init__(
        self,
        agent: Agent,
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
        workers: Mapping[str, Agent],
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
        workers: Mapping[str, Agent],
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


async def _direct(agent: Agent, model: Model, request: ModelRequest) -> ModelResponse:
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
    workers: Mapping[str, Agent]
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
    task: PlanTask, workers: Mapping[str, Agent], known: Sequence[str], inputs: Collection[str]
) -> list[str]:
    """The problems one task has on its own (what a streamed task is checked for)."""
    plan = Plan(tasks=[task])
    return [
        *_check_ids(plan, known),
        *_check_agents(plan, workers),
        *_check_deps(plan, known),
        *_check_templates(plan, inputs),
    ]


# --- from plan to graph ----------------------------------------------------------------------


def plan_prompt(task: PlanTask) -> str:
    """A plan task's prompt: its instructions, and what it must return."""
    if not task.expected_output:
        return task.instructions
    return f"{task.instructions}\n\nExpected output: {task.expected_output}"


SUMMARY_CHARS = 300
"""How much of a finished task's output a planner is shown (replanning, plan steps)."""


def summarize_output(output: Any) -> str:
    """A finished task's output as one short line for a planner's prompt."""
    text = format_output(output).replace("\n", " ").strip()
    if len(text) > SUMMARY_CHARS:
        text = text[:SUMMARY_CHARS] + "…"
    return text or "(empty output)"


def plan_task_options(task: PlanTask, worker: Agent) -> dict[str, Any]:
    """`TaskGraph.add` options from a plan task's hints: its output cap, and its effort when
    the worker is a reasoning model (an effort means nothing to the others)."""
    options: dict[str, Any] = {}
    if task.max_output_tokens is not None:
        options["max_output_tokens"] = task.max_output_tokens
    if task.effort is not None and worker.reasoning_effort is not None:
        options["reasoning_effort"] = task.effort
    return options


def plan_to_specs(plan: Plan) -> list[TaskSpec]:
    """The plan's tasks as `TaskSpec`s (for `TaskGraph.from_specs` or storing the plan)."""
    return [
        TaskSpec(id=task.id, agent=task.agent, prompt=plan_prompt(task), deps=tuple(task.deps))
        for task in plan.tasks
    ]


def add_plan(graph: TaskGraph, plan: Plan) -> list[Task]:
    """Append the plan's tasks to `graph`; they may depend on tasks already in it.

    Validate the plan first (`validate_plan`): this adds tasks one by one and stops at the first
    one the graph rejects, leaving the tasks before it added.

    Raises:
        GraphError: a duplicate id, an unknown dependency, a dependency listed after its task.
        TemplateError: instructions that are not a valid template.
    """
    return [
        graph.add(task.id, agent=task.agent, prompt=plan_prompt(task), deps=task.deps)
        for task in plan.tasks
    ]
