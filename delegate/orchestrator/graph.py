"""Typed task graphs: `TaskGraph.add(...)` returns a `Task` handle that later tasks depend on.

    g = TaskGraph()
    search = g.add("search", agent=researcher, prompt="Find sources on {{ topic }}.")
    g.add("write", agent=writer, prompt="Write a summary.", deps=[search])

A task depends only on tasks already added, so a graph built with `add` has no cycles by
construction; `TaskGraph.from_specs` accepts tasks in any order (YAML files, stored runs, plans)
and reports cycles by naming the tasks on them. Prompts are jinja2 templates, sandboxed, with strict
undefined names: `{{ name }}` is a run input or a dependency's output, `{{ inputs.x }}` and
`{{ deps.x }}` are explicit. Names are checked when the task is added and when the run starts.
"""

from __future__ import annotations

import heapq
import json
import math
import re
import typing
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2 import TemplateError as JinjaTemplateError
from pydantic import BaseModel

from delegate.agents.limits import Budget
from delegate.agents.models import ReasoningEffort
from delegate.errors import GraphError, TemplateError, did_you_mean
from delegate.orchestrator._sandbox import PromptEnvironment

if TYPE_CHECKING:
    from jinja2 import Template

    from delegate.agents.agent import Agent

__all__ = [
    "PROMPT_ENV",
    "RESERVED_NAMES",
    "TASK_ID",
    "Task",
    "TaskContext",
    "TaskFunction",
    "TaskGraph",
    "TaskSpec",
    "compile_prompt",
    "format_output",
]

# What a task id may look like, and the names templates reserve (the planner checks plans
# against the same rules).
TASK_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-\[\]]{0,199}$")
RESERVED_NAMES = frozenset({"inputs", "deps", "steps"})


def format_output(value: Any) -> str:
    """A task output as text for a prompt: strings as they are, structured values as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


# Printed values go through format_output, so `{{ research }}` shows a structured output as JSON
# (as the labelled context does) while `{{ research.field }}` still reaches into it. The one
# sandbox of every template (tasks, plans, workflows): resource-limited, see `_sandbox`.
PROMPT_ENV = PromptEnvironment(undefined=StrictUndefined, autoescape=False, finalize=format_output)


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a function task receives: its id, the run's inputs, and its dependencies' outputs."""

    task_id: str
    run_id: str
    inputs: Mapping[str, Any]
    deps: Mapping[str, Any]


TaskFunction: TypeAlias = Callable[[TaskContext], Any | Awaitable[Any]]


@dataclass(frozen=True, slots=True, eq=False)
class Task:
    """A handle on one task of a `TaskGraph`; pass it in `deps=[...]` of later tasks.

    Attributes:
        id: unique within its graph.
        agent: the worker that runs it (an `Agent`, or a worker's name resolved when the run
            starts); None for a function task.
        prompt: the task's instructions, a jinja2 template.
        deps: ids of the tasks whose outputs this one needs.
        fn: for a function task, called with a `TaskContext` instead of a model.
        timeout: seconds per attempt, None for no limit.
        retries: transient failures retried at most this many times (None: the run's policy).
        weight: the expected relative duration, used to find the critical path.
        budget: limits on this task's own calls (they count against the run's budget too).
        max_output_tokens: replaces the worker's `max_output_tokens` for this task (None: the
            worker's).
        reasoning_effort: replaces the worker's `reasoning_effort` for this task (None: the
            worker's).
        verify: the judge of this task's answers (an `Agent`, or a worker's name resolved when
            the run starts); None: the worker's own `verify`.
        votes: answers sampled for a majority; None: the worker's own `votes`.
        variables: more names for the prompt template (JSON data), e.g. a fan-out's `item`.
        after: "success" (run once every dependency succeeded; skipped when one fails) or
            "done" (run once every dependency has ended, however: a reduce over a partial map).
    """

    id: str
    agent: Agent | str | None
    prompt: str
    deps: tuple[str, ...]
    fn: TaskFunction | None = None
    timeout: float | None = None
    retries: int | None = None
    weight: float = 1.0
    budget: Budget | None = None
    template: Template | None = field(default=None, repr=False)
    placeholders: frozenset[str] = field(default=frozenset(), repr=False)
    max_output_tokens: int | None = None
    reasoning_effort: ReasoningEffort | None = None
    verify: Agent | str | None = None
    votes: int | None = None
    variables: Mapping[str, Any] = field(default_factory=dict, repr=False)
    after: Literal["success", "done"] = "success"

    @property
    def agent_name(self) -> str | None:
        """The name of the task's worker, or None for a function task."""
        if self.agent is None or isinstance(self.agent, str):
            return self.agent
        return self.agent.name

    @property
    def verify_name(self) -> str | None:
        """The name of the task's own judge, or None when it has none."""
        if self.verify is None or isinstance(self.verify, str):
            return self.verify
        return self.verify.name


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A task described by names only (agent by name, deps by id), for `TaskGraph.from_specs`."""

    id: str
    agent: str
    prompt: str = ""
    deps: tuple[str, ...] = ()
    timeout: float | None = None
    retries: int | None = None
    weight: float = 1.0
    budget: Budget | None = None
    max_output_tokens: int | None = None
    reasoning_effort: ReasoningEffort | None = None
    verify: str | None = None
    votes: int | None = None


def compile_prompt(task_id: str, prompt: str) -> tuple[Template | None, frozenset[str]]:
    """The compiled template of a task's prompt (None for plain text) and the names it uses.

    Raises:
        TemplateError: the prompt is not a valid template (naming the task and the line).
    """
    if "{{" not in prompt and "{%" not in prompt and "{#" not in prompt:
        return None, frozenset()
    try:
        parsed = PROMPT_ENV.parse(prompt)
        names = frozenset(meta.find_undeclared_variables(parsed))
        template = PROMPT_ENV.from_string(prompt)
    except TemplateSyntaxError as exc:
        raise TemplateError(
            f"task {task_id!r}: prompt template line {exc.lineno}: {exc.message}"
        ) from None
    except RecursionError:
        raise TemplateError(
            f"task {task_id!r}: the prompt template nests too deeply; simplify it"
        ) from None
    except (JinjaTemplateError, ValueError, OverflowError, MemoryError) as exc:
        # (find_undeclared_variables runs jinja's own code generator, which folds constants)
        raise TemplateError(f"task {task_id!r}: prompt template: {exc}") from None
    return template, names


class TaskGraph:
    """A directed acyclic graph of tasks, built with `add`.

    Iterating yields the tasks in the order they were added, which is a topological order.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __getitem__(self, task_id: str) -> Task:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise GraphError(
                f"no task {task_id!r} in this graph{did_you_mean(task_id, self._tasks)}"
            ) from None

    def __repr__(self) -> str:
        return f"TaskGraph({len(self._tasks)} tasks)"

    @property
    def tasks(self) -> Mapping[str, Task]:
        """The tasks by id, in the order they were added."""
        return self._tasks

    def add(
        self,
        id: str,
        *,
        agent: Agent | str | None = None,
        prompt: str = "",
        deps: Iterable[Task | str] = (),
        fn: TaskFunction | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        weight: float = 1.0,
        budget: Budget | None = None,
        max_output_tokens: int | None = None,
        reasoning_effort: ReasoningEffort | None = None,
        verify: Agent | str | None = None,
        votes: int | None = None,
        variables: Mapping[str, Any] | None = None,
        after: Literal["success", "done"] = "success",
    ) -> Task:
        """Add a task and return its handle.

        Args:
            id: unique in the graph (letters, digits and `_ . : - [ ]`, at most 200 characters).
            agent: the worker that runs the task, or a worker's name (resolved against the
                orchestrator's `workers` when the run starts). Give either `agent` or `fn`.
            prompt: the task's instructions; a jinja2 template over run inputs and dependency
                outputs (structured values print as JSON). Outputs of dependencies the prompt does
                not name are given to the worker as labelled context before the prompt; a prompt
                that uses the `deps` mapping picks what it needs and gets no extra context.
            deps: tasks (handles or ids) that must finish first; they must already be in the graph.
            fn: a function task: called with a `TaskContext` (sync functions run in a thread),
                its return value is the task's output. No model is called.
            timeout: seconds per attempt.
            retries: how many times a transient failure is retried (None: the orchestrator's
                `RetryPolicy`).
            weight: the task's expected duration relative to others (default 1), used to start the
                longest remaining path first when slots are scarce.
            budget: limits on this task's calls (tokens, usd, calls); they nest inside the run's
                budget and the agent's, and the tightest applies.
            max_output_tokens: a cap on each answer of this task, replacing the worker's.
            reasoning_effort: "minimal", "low", "medium" or "high" for this task, replacing the
                worker's.
            verify: a judge for this task's answers, replacing the worker's `verify`: an `Agent`
                without `output_type`, or a worker's name (resolved like `agent`). See
                `delegate.orchestrator.checks`.
            votes: sample this many answers concurrently and keep the majority, replacing the
                worker's `votes`.
            variables: more names for the prompt template, as JSON data (a workflow's fan-out
                gives each item task its `item` and `loop` this way).
            after: "success" (the default): the task runs once all its dependencies succeeded,
                and is skipped when one fails. "done": it runs once they have all ended, however
                they ended — a reduce that should summarize a partial map; a failed
                dependency's output is None, and the worker is told it failed and why.

        Raises:
            GraphError: a duplicate or malformed id, an unknown dependency, a bad argument.
            TemplateError: a prompt that is not a valid template, or that names a task it does
                not depend on.
        """
        self._check_id(id)
        _check_agent(id, agent)
        if not isinstance(prompt, str):
            raise GraphError(f"task {id!r}: prompt must be a str, got {type(prompt).__name__}")
        if (agent is None) == (fn is None):
            raise GraphError(
                f"task {id!r}: give exactly one of agent= (a model call) or fn= (a Python function)"
            )
        if after not in ("success", "done"):
            raise GraphError(f'task {id!r}: after must be "success" or "done", got {after!r}')
        if variables is not None and not isinstance(variables, Mapping):
            raise GraphError(
                f"task {id!r}: variables must be a mapping of names to values, got "
                f"{type(variables).__name__}"
            )
        if fn is not None and not callable(fn):
            raise GraphError(f"task {id!r}: fn must be callable, got {type(fn).__name__}")
        self._check_options(id, timeout, retries, weight)
        if budget is not None and not isinstance(budget, Budget):
            raise GraphError(
                f"task {id!r}: budget must be a delegate.Budget, got {type(budget).__name__}"
            )
        _check_model_options(id, fn, max_output_tokens, reasoning_effort, verify, votes)
        dep_ids = self._resolve_deps(id, deps)
        template, names = compile_prompt(id, prompt)
        for name in names - RESERVED_NAMES - set(dep_ids):
            if name in self._tasks:
                raise TemplateError(
                    f"task {id!r}: prompt uses {{{{ {name} }}}}, the output of task {name!r}, but "
                    f"does not depend on it; add deps=[{name!r}]"
                )
        task = Task(
            id,
            agent,
            prompt,
            dep_ids,
            fn,
            timeout,
            retries,
            weight,
            budget,
            template,
            names,
            max_output_tokens,
            reasoning_effort,
            verify,
            votes,
            dict(variables or {}),
            after,
        )
        self._tasks[id] = task
        return task

    def _check_id(self, id: object) -> None:
        if not isinstance(id, str) or not TASK_ID.match(id):
            raise GraphError(
                f"task id {id!r} is not valid: use 1–200 letters, digits or `_ . : - [ ]`, "
                "starting with a letter, digit or underscore"
            )
        if id in RESERVED_NAMES:
            raise GraphError(f"task id {id!r} is reserved for templates; choose another id")
        if id in self._tasks:
            raise GraphError(f"duplicate task id {id!r}: every task in a graph needs its own id")

    @staticmethod
    def _check_options(id: str, timeout: float | None, retries: int | None, weight: float) -> None:
        if timeout is not None and not _positive_number(timeout):
            raise GraphError(f"task {id!r}: timeout must be > 0 seconds, got {timeout}")
        if retries is not None and (
            not isinstance(retries, int) or isinstance(retries, bool) or retries < 0
        ):
            raise GraphError(f"task {id!r}: retries must be an integer ≥ 0, got {retries!r}")
        if not _positive_number(weight):
            raise GraphError(f"task {id!r}: weight must be > 0, got {weight}")

    def _resolve_deps(self, id: str, deps: Iterable[Task | str]) -> tuple[str, ...]:
        if isinstance(deps, str | Task):
            deps = (deps,)
        resolved: list[str] = []
        for dep in deps:
            if isinstance(dep, Task):
                if self._tasks.get(dep.id) is not dep:
                    raise GraphError(
                        f"task {id!r} depends on a Task {dep.id!r} from another graph; "
                        "pass tasks of this graph"
                    )
                dep_id = dep.id
            elif isinstance(dep, str):
                if dep not in self._tasks:
                    raise GraphError(
                        f"task {id!r} depends on {dep!r}, which is not in the graph"
                        f"{did_you_mean(dep, self._tasks)}; add it first"
                    )
                dep_id = dep
            else:
                raise GraphError(
                    f"task {id!r}: deps must be Task handles or task ids, got {type(dep).__name__}"
                )
            if dep_id not in resolved:
                resolved.append(dep_id)
        return tuple(resolved)

    @classmethod
    def from_specs(cls, specs: Iterable[TaskSpec]) -> TaskGraph:
        """Build a graph from specs listed in any order; dependencies are resolved by id.

        Raises:
            GraphError: duplicate ids, unknown dependencies, or a cycle (naming its tasks).
        """
        by_id: dict[str, TaskSpec] = {}
        for spec in specs:
            if spec.id in by_id:
                raise GraphError(
                    f"duplicate task id {spec.id!r}: every task in a graph needs its own id"
                )
            by_id[spec.id] = spec
        for spec in by_id.values():
            for dep in spec.deps:
                if dep not in by_id:
                    raise GraphError(
                        f"task {spec.id!r} depends on {dep!r}, which is not in the graph"
                        f"{did_you_mean(dep, by_id)}"
                    )
        graph = cls()
        for spec in _topological(by_id):
            graph.add(
                spec.id,
                agent=spec.agent,
                prompt=spec.prompt,
                deps=spec.deps,
                timeout=spec.timeout,
                retries=spec.retries,
                weight=spec.weight,
                budget=spec.budget,
                max_output_tokens=spec.max_output_tokens,
                reasoning_effort=spec.reasoning_effort,
                verify=spec.verify,
                votes=spec.votes,
            )
        return graph

    def critical_path(self) -> tuple[list[str], float]:
        """The heaviest chain of dependent tasks by `weight`, and its total weight."""
        best: dict[str, tuple[float, str | None]] = {}
        for task in self._tasks.values():
            prev = max(task.deps, key=lambda d: best[d][0], default=None)
            best[task.id] = (task.weight + (best[prev][0] if prev else 0.0), prev)
        if not best:
            return [], 0.0
        end = max(best, key=lambda t: best[t][0])
        total = best[end][0]
        path: list[str] = []
        node: str | None = end
        while node is not None:
            path.append(node)
            node = best[node][1]
        return path[::-1], total


def _positive_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _check_agent(id: str, agent: object) -> None:
    from delegate.agents.agent import Agent

    if agent is not None and not isinstance(agent, Agent | str):
        raise GraphError(
            f"task {id!r}: agent must be an Agent or a worker's name, got {type(agent).__name__}"
        )


_EFFORTS: tuple[str, ...] = typing.get_args(ReasoningEffort)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_model_options(
    id: str,
    fn: TaskFunction | None,
    max_output_tokens: object,
    reasoning_effort: object,
    verify: object,
    votes: object,
) -> None:
    """The per-task overrides of the worker's settings; they need a model task."""
    given = {
        "max_output_tokens": max_output_tokens,
        "reasoning_effort": reasoning_effort,
        "verify": verify,
        "votes": votes,
    }
    if fn is not None:
        named = [key for key, value in given.items() if value is not None]
        if named:
            raise GraphError(
                f"task {id!r}: {', '.join(named)} apply to model calls, but this is a function "
                "task (fn=); drop them or give the task an agent="
            )
        return
    if max_output_tokens is not None and not _positive_int(max_output_tokens):
        raise GraphError(
            f"task {id!r}: max_output_tokens must be a positive int or None, got "
            f"{max_output_tokens!r}; e.g. max_output_tokens=2000"
        )
    if reasoning_effort is not None and reasoning_effort not in _EFFORTS:
        raise GraphError(
            f"task {id!r}: reasoning_effort must be one of {', '.join(map(repr, _EFFORTS))} or "
            f"None, got {reasoning_effort!r}"
        )
    if votes is not None and not _positive_int(votes):
        raise GraphError(f"task {id!r}: votes must be a positive int or None, got {votes!r}")
    if verify is not None and not isinstance(verify, str):
        from delegate.agents.agent import judge_problem

        problem = judge_problem(verify)
        if problem is not None:
            raise GraphError(f"task {id!r}: {problem}")
    elif isinstance(verify, str) and not verify.strip():
        raise GraphError(f"task {id!r}: verify is an empty name; give a worker's name or an Agent")


def _topological(by_id: Mapping[str, TaskSpec]) -> list[TaskSpec]:
    """Kahn's algorithm, stable (ties keep the listed order); a cycle is a GraphError."""
    order = {task_id: n for n, task_id in enumerate(by_id)}
    pending = {task_id: len(set(spec.deps)) for task_id, spec in by_id.items()}
    children: dict[str, list[str]] = {task_id: [] for task_id in by_id}
    for spec in by_id.values():
        for dep in set(spec.deps):
            children[dep].append(spec.id)
    ready = [(order[t], t) for t, n in pending.items() if n == 0]
    heapq.heapify(ready)
    result: list[TaskSpec] = []
    while ready:
        _, task_id = heapq.heappop(ready)
        result.append(by_id[task_id])
        for child in children[task_id]:
            pending[child] -= 1
            if pending[child] == 0:
                heapq.heappush(ready, (order[child], child))
    if len(result) < len(by_id):
        stuck = {t for t, n in pending.items() if n > 0}
        raise GraphError(f"the tasks form a cycle: {_describe_cycle(by_id, stuck)}")
    return result


def _describe_cycle(by_id: Mapping[str, TaskSpec], stuck: set[str]) -> str:
    # Walk dependencies inside the stuck set until a task repeats: that loop is a cycle.
    start = next(t for t in by_id if t in stuck)
    seen: dict[str, int] = {}  # task -> its position on the walk
    node = start
    while node not in seen:
        seen[node] = len(seen)
        node = next(dep for dep in by_id[node].deps if dep in stuck)
    cycle = [*list(seen)[seen[node] :], node]
    return " → ".join(f"{t!r}" for t in cycle) + " (each depends on the next); break one dependency"
