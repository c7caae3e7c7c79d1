"""Checks of a plan from the planner: every problem at once, in linear time.

`validate_plan` gathers duplicate or malformed ids, unknown agents (a strategy's too), missing or
misordered dependencies, cycles (named), templates that do not parse or name what they may not,
too many tasks and a projected cost over the budget; the planner sends them back verbatim for a
repair.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from delegate.errors import TemplateError, did_you_mean
from delegate.orchestrator._sandbox import check_render
from delegate.orchestrator._specs import strategy_workers
from delegate.orchestrator.graph import PROMPT_ENV, RESERVED_NAMES, TASK_ID, compile_prompt

if TYPE_CHECKING:
    from delegate.agents.agent import Agent
    from delegate.orchestrator.planner import Plan, PlanTask

__all__ = [
    "check_agents",
    "check_deps",
    "check_ids",
    "check_strategies",
    "check_templates",
    "plan_prompt",
    "usd_text",
    "validate_plan",
]


def plan_prompt(task: PlanTask) -> str:
    """A plan task's prompt: its instructions, and what it must return."""
    if not task.expected_output:
        return task.instructions
    return f"{task.instructions}\n\nExpected output: {task.expected_output}"


def usd_text(value: float) -> str:
    """Dollars as plans and budgets show them: cents, or four decimals below $0.10."""
    return f"${value:.2f}" if value >= 0.1 else f"${value:.4f}"


def check_ids(plan: Plan, finished: Collection[str]) -> list[str]:
    errors: list[str] = []
    counts: dict[str, int] = {}
    for task in plan.tasks:
        counts[task.id] = counts.get(task.id, 0) + 1
    for task_id, count in counts.items():
        if not TASK_ID.fullmatch(task_id) or task_id in RESERVED_NAMES:
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


def check_agents(plan: Plan, workers: Mapping[str, Agent[Any]]) -> list[str]:
    names = ", ".join(workers) or "(none)"
    return [
        f"task {_shown(task.id)} uses agent {_shown(task.agent)}, which is not a worker"
        f"{did_you_mean(task.agent, workers) if len(task.agent) <= 200 else ''}; use one of: "
        f"{names}"
        for task in plan.tasks
        if task.agent not in workers
    ]


def check_strategies(plan: Plan, workers: Mapping[str, Agent[Any]]) -> list[str]:
    """A task's strategy names workers, and does not come with votes."""
    errors: list[str] = []
    for task in plan.tasks:
        strategy = task.strategy_setting()
        if strategy is None:
            continue
        # (a strategy's names are at most 200 characters: did-you-mean stays cheap)
        errors.extend(
            f"task {_shown(task.id)}: its {strategy.kind} strategy names {_shown(name)}, which "
            f"is not a worker{did_you_mean(name, workers)}; use one of: "
            f"{', '.join(workers) or '(none)'}"
            for name in dict.fromkeys(strategy_workers(strategy))
            if name not in workers
        )
        if task.votes is not None:
            errors.append(
                f"task {_shown(task.id)} has both votes and a strategy; keep one (a strategy "
                "picks its own answer)"
            )
    return errors


def check_deps(plan: Plan, finished: Collection[str]) -> list[str]:
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


def check_templates(plan: Plan, inputs: Collection[str] | None = None) -> list[str]:
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
    workers: Mapping[str, Agent[Any]],
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
    errors += check_ids(plan, finished)
    errors += check_agents(plan, workers)
    errors += check_strategies(plan, workers)
    errors += check_deps(plan, finished)
    errors += check_templates(plan, inputs)
    if not errors and estimate_usd is not None and budget_usd_left is not None:
        cost = estimate_usd(plan)
        if cost is not None and cost > budget_usd_left:
            errors.append(
                f"the plan's projected cost of {usd_text(cost)} is over the "
                f"{usd_text(budget_usd_left)} "
                "left in the budget; use cheaper workers, fewer tasks, or smaller "
                "max_output_tokens"
            )
    return errors
