"""Typed task graphs: `TaskGraph.add(...)` returns a `Task` handle that later tasks depend on.

    g = TaskGraph()
    search = g.add("search", agent=researcher, prompt="Find sources on {{ topic }}.")
    g.add("write", agent=writer, prompt="Write a summary.", deps=[search])

A task depends only on tasks already added, so a graph built with `add` has no cycles by
construction; `TaskGraph.from_specs` accepts tasks in any order (YAML files, stored runs, plans)
and reports cycles by naming the tasks on them. Prompts are jinja2 templates, sandboxed, with strict
undefined names: `{{ name }}` is a run input or a dependency's output, `{{ inputs.x }}` and
`{{ deps.x }}` are explicit. Names are checked when the task is added and when the run starts.

A task described by names only (its worker and judge by name, its function by import path) is a
`TaskSpec`; a whole graph, with what a stored run keeps beside it, is a `GraphSpec`. Plans, workflow
steps and stored runs all become `TaskSpec`s, checked by the same rules as `TaskGraph.add`.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeAlias, TypedDict, overload

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2 import TemplateError as JinjaTemplateError
from pydantic import BaseModel
from typing_extensions import TypeVar, Unpack

from delegate.agents.agent import Agent, judge_problem
from delegate.agents.limits import Budget
from delegate.agents.models import ReasoningEffort
from delegate.errors import GraphError, TemplateError, did_you_mean
from delegate.orchestrator._sandbox import PromptEnvironment
from delegate.orchestrator._specs import (
    GRAPH_SPEC_VERSION,
    RESERVED_NAMES,
    TASK_ID,
    GraphSpec,
    PlannedSpec,
    TaskSpec,
    check_id,
    check_task,
    function_path,
    load_function,
    shown,
    unchecked_spec,
    upgrade_graph_spec,
)
from delegate.orchestrator.strategies import AdaptiveVotes, Strategy

if TYPE_CHECKING:
    from jinja2 import Template

__all__ = [
    "GRAPH_SPEC_VERSION",
    "PROMPT_ENV",
    "RESERVED_NAMES",
    "TASK_ID",
    "GraphSpec",
    "PlannedSpec",
    "Task",
    "TaskContext",
    "TaskFunction",
    "TaskGraph",
    "TaskSpec",
    "compile_prompt",
    "format_output",
    "upgrade_graph_spec",
]


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

# Shared by every task without variables: no dict per task (100,000-task graphs).
_NO_VARIABLES: Mapping[str, Any] = MappingProxyType({})


# --- handles ----------------------------------------------------------------------------------

OutputT = TypeVar("OutputT", covariant=True, default=object)
"""What a task answers: its agent's output type, or its function's return type."""
R = TypeVar("R")


class TaskOptions(TypedDict, total=False):
    """The options of `TaskGraph.add` besides its agent or function, its prompt and its deps."""

    timeout: float | None
    retries: int | None
    weight: float
    budget: Budget | None
    max_output_tokens: int | None
    reasoning_effort: ReasoningEffort | None
    verify: Agent[Any] | str | None
    votes: int | AdaptiveVotes | None
    variables: Mapping[str, Any] | None
    after: Literal["success", "done"]
    strategy: Strategy | None


# Not frozen: a frozen dataclass sets each of its 17 fields through object.__setattr__, which
# made up a third of `TaskGraph.add`. A handle is read, never changed (the graph checked it).
@dataclass(slots=True, eq=False)
class Task(Generic[OutputT]):
    """A handle on one task of a `TaskGraph`; pass it in `deps=[...]` of later tasks.

    It is generic in what the task answers: `g.add("t", agent=Agent(..., output_type=Answer))`
    is a `Task[Answer]`, a function task returning `int` a `Task[int]`, a task given a worker's
    name a `Task[object]`; `RunResult[task]` is then typed the same.

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
        votes: answers sampled for a majority, a count or an `AdaptiveVotes`; None: the
            worker's own `votes`.
        variables: more names for the prompt template (JSON data), e.g. a fan-out's `item`.
        after: "success" (run once every dependency succeeded; skipped when one fails) or
            "done" (run once every dependency has ended, however: a reduce over a partial map).
        strategy: `BestOfN`, `MixtureOfAgents` or `SelfRefine`, its workers by name (resolved
            when the run starts); None: one answer (or the votes).
    """

    id: str
    agent: Agent[Any] | str | None
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
    verify: Agent[Any] | str | None = None
    votes: int | AdaptiveVotes | None = None
    variables: Mapping[str, Any] = field(default_factory=lambda: _NO_VARIABLES, repr=False)
    after: Literal["success", "done"] = "success"
    strategy: Strategy | None = None

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

    def spec(self) -> TaskSpec:
        """This task as a `TaskSpec`: worker and judge by name, a function by its import path
        (a lambda or a closure by a marker: its output can be restored, it cannot run again)."""
        # Built without validation: `TaskGraph.add` checked every value by the same rules.
        return unchecked_spec(
            {
                "id": self.id,
                "agent": self.agent_name,
                "fn": None if self.fn is None else function_path(self.fn),
                "prompt": self.prompt,
                "deps": self.deps,
                "timeout": self.timeout,
                "retries": self.retries,
                "weight": self.weight,
                "budget": self.budget,
                "max_output_tokens": self.max_output_tokens,
                "reasoning_effort": self.reasoning_effort,
                "verify": self.verify_name,
                "votes": self.votes,
                "variables": _json_variables(self.variables),
                "after": self.after,
                "strategy": self.strategy,
            }
        )

    @classmethod
    def of(
        cls, spec: TaskSpec, *, agent: Agent[Any] | None = None, verify: Agent[Any] | None = None
    ) -> Task:
        """The handle of `spec` outside any graph (`TaskGraph.add_spec` adds one to a graph).

        Args:
            spec: the task.
            agent: the `Agent` that `spec.agent` names, when the caller holds it (an agent with
                an output type, say); else the name is resolved when the run starts.
            verify: the `Agent` that `spec.verify` names, likewise.

        Raises:
            GraphError: `agent` or `verify` is not the agent the spec names, or the spec's
                function cannot be imported.
            TemplateError: the prompt is not a valid template.
        """
        _check_bound(spec, "agent", spec.agent, agent)
        _check_bound(spec, "verify", spec.verify, verify)
        template, names = compile_prompt(spec.id, spec.prompt)
        return cls(
            spec.id,
            agent or spec.agent,
            spec.prompt,
            spec.deps,
            None if spec.fn is None else load_function(spec.fn, spec.id),
            spec.timeout,
            spec.retries,
            spec.weight,
            spec.budget,
            template,
            names,
            spec.max_output_tokens,
            spec.reasoning_effort,
            verify or spec.verify,
            spec.votes,
            spec.variables or _NO_VARIABLES,
            spec.after,
            spec.strategy,
        )


def _json_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    if not variables:
        return {}
    # (imported here: persist, the store's side, may build on this module)
    from delegate.orchestrator._persist import to_json

    converted: dict[str, Any] = to_json(dict(variables))
    return converted


def _check_bound(spec: TaskSpec, key: str, name: str | None, agent: object) -> None:
    """An `Agent` given for a spec's name must be an Agent of that name."""
    if agent is None:
        return
    if not isinstance(agent, Agent):
        raise GraphError(f"task {spec.id!r}: {key} must be an Agent, got {type(agent).__name__}")
    if agent.name != name:
        raise GraphError(
            f"task {spec.id!r}: {key} is the Agent {agent.name!r}, but the spec names "
            f"{name!r}; pass the agent the spec names"
        )
    if key == "verify" and (problem := judge_problem(agent)) is not None:
        raise GraphError(f"task {spec.id!r}: {problem}")


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


# --- the graph --------------------------------------------------------------------------------


class TaskGraph:
    """A directed acyclic graph of tasks, built with `add`.

    Iterating yields the tasks in the order they were added, which is a topological order.
    Building is linear in the tasks and their dependencies: a 100,000-task fan-out and its
    99,998-dependency reduce take well under a second.
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

    @overload
    def add(
        self,
        id: str,
        *,
        agent: Agent[R],
        prompt: str = "",
        deps: Iterable[Task | str] = (),
        **options: Unpack[TaskOptions],
    ) -> Task[R]: ...

    @overload
    def add(
        self,
        id: str,
        *,
        agent: str,
        prompt: str = "",
        deps: Iterable[Task | str] = (),
        **options: Unpack[TaskOptions],
    ) -> Task[object]: ...

    @overload
    def add(  # an async fn matches this one and the next: the first match wins
        self,
        id: str,
        *,
        fn: Callable[[TaskContext], Awaitable[R]],
        prompt: str = "",
        deps: Iterable[Task | str] = (),
        **options: Unpack[TaskOptions],
    ) -> Task[R]: ...

    @overload
    def add(
        self,
        id: str,
        *,
        fn: Callable[[TaskContext], R],
        prompt: str = "",
        deps: Iterable[Task | str] = (),
        **options: Unpack[TaskOptions],
    ) -> Task[R]: ...

    def add(
        self,
        id: str,
        *,
        agent: Agent[Any] | str | None = None,
        prompt: str = "",
        deps: Iterable[Task | str] = (),
        fn: TaskFunction | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        weight: float = 1.0,
        budget: Budget | None = None,
        max_output_tokens: int | None = None,
        reasoning_effort: ReasoningEffort | None = None,
        verify: Agent[Any] | str | None = None,
        votes: int | AdaptiveVotes | None = None,
        variables: Mapping[str, Any] | None = None,
        after: Literal["success", "done"] = "success",
        strategy: Strategy | None = None,
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
                worker's `votes`; or an `AdaptiveVotes`, which samples in small batches and
                stops once the majority is settled (at most `max_samples`).
            variables: more names for the prompt template, as JSON data (a workflow's fan-out
                gives each item task its `item` and `loop` this way).
            after: "success" (the default): the task runs once all its dependencies succeeded,
                and is skipped when one fails. "done": it runs once they have all ended, however
                they ended — a reduce that should summarize a partial map; a failed
                dependency's output is None, and the worker is told it failed and why.
            strategy: spend more calls on a better answer: `BestOfN(n=4, judge="critic")`,
                `MixtureOfAgents(proposers=(...), aggregator=...)` or `SelfRefine(rounds=2)`.
                The workers it names are resolved like `agent` when the run starts. Not with
                `votes` (a strategy picks its answer its own way), nor on a function task.

        Raises:
            GraphError: a duplicate or malformed id, an unknown dependency, a bad argument.
            TemplateError: a prompt that is not a valid template, or that names a task it does
                not depend on.
        """
        self._check_new(id)
        if agent is not None and not isinstance(agent, str | Agent):
            raise GraphError(
                f"task {id!r}: agent must be an Agent or a worker's name, got "
                f"{type(agent).__name__}"
            )
        if fn is not None and not callable(fn):
            raise GraphError(f"task {id!r}: fn must be callable, got {type(fn).__name__}")
        if budget is not None and not isinstance(budget, Budget):
            raise GraphError(
                f"task {id!r}: budget must be a delegate.Budget, got {type(budget).__name__}"
            )
        check_task(
            id,
            agent,
            fn,
            prompt,
            timeout,
            retries,
            weight,
            max_output_tokens,
            reasoning_effort,
            verify,
            votes,
            variables,
            after,
            strategy,
        )
        dep_ids = self._resolve_deps(id, deps)
        template, names = compile_prompt(id, prompt)
        self._check_placeholders(id, names, dep_ids)
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
            dict(variables) if variables else _NO_VARIABLES,
            after,
            strategy,
        )
        self._tasks[id] = task
        return task

    def add_spec(
        self, spec: TaskSpec, *, agent: Agent[Any] | None = None, verify: Agent[Any] | None = None
    ) -> Task:
        """Add the task `spec` describes (its deps must be in the graph) and return its handle.

        Args:
            spec: the task; its agent and judge stay names, resolved when the run starts,
                unless given here; its function is imported by path.
            agent: the `Agent` that `spec.agent` names, when the caller holds it.
            verify: the `Agent` that `spec.verify` names, when the caller holds it.

        Raises:
            GraphError: a duplicate id, an unknown dependency, an agent that is not the one
                named, a function that cannot be imported.
            TemplateError: a prompt that is not a valid template, or that names a task it does
                not depend on.
        """
        self._check_new(spec.id)
        self._resolve_deps(spec.id, spec.deps)
        task = Task.of(spec, agent=agent, verify=verify)
        self._check_placeholders(task.id, task.placeholders, task.deps)
        self._tasks[task.id] = task
        return task

    def spec(self) -> GraphSpec:
        """The graph as a `GraphSpec` (`TaskGraph.from_spec` builds it back)."""
        return GraphSpec.of(self._tasks.values())

    def _check_new(self, id: object) -> None:
        check_id(id)
        if id in self._tasks:
            raise GraphError(f"duplicate task id {id!r}: every task in a graph needs its own id")

    def _resolve_deps(self, id: str, deps: Iterable[Task | str]) -> tuple[str, ...]:
        if isinstance(deps, str | Task):
            deps = (deps,)
        # A dict keeps the order and drops repeats in O(1) each: a 99,998-dependency reduce
        # is linear, not quadratic.
        resolved: dict[str, None] = {}
        tasks = self._tasks
        for dep in deps:
            if isinstance(dep, str):
                if dep not in tasks:
                    raise GraphError(
                        f"task {id!r} depends on {shown(dep)}, which is not in the graph"
                        f"{did_you_mean(dep, tasks)}; add it first"
                    )
                resolved[dep] = None
            elif isinstance(dep, Task):
                if tasks.get(dep.id) is not dep:
                    raise GraphError(
                        f"task {id!r} depends on a Task {dep.id!r} from another graph; "
                        "pass tasks of this graph"
                    )
                resolved[dep.id] = None
            else:
                raise GraphError(
                    f"task {id!r}: deps must be Task handles or task ids, got {type(dep).__name__}"
                )
        return tuple(resolved)

    def _check_placeholders(self, id: str, names: frozenset[str], deps: tuple[str, ...]) -> None:
        if not names:
            return
        known = set(deps)
        for name in sorted(names - RESERVED_NAMES):
            if name not in known and name in self._tasks:
                raise TemplateError(
                    f"task {id!r}: prompt uses {{{{ {name} }}}}, the output of task {name!r}, but "
                    f"does not depend on it; add deps=[{name!r}]"
                )

    @classmethod
    def from_specs(cls, specs: Iterable[TaskSpec]) -> TaskGraph:
        """Build a graph from specs listed in any order; dependencies are resolved by id.

        Agents and judges stay names (resolved against the workers when the run starts);
        function tasks are imported by their path.

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
            graph.add_spec(spec)
        return graph

    @classmethod
    def from_spec(cls, spec: GraphSpec) -> TaskGraph:
        """Build the graph of a `GraphSpec` (`GraphSpec.from_json` reads a stored one).

        Raises:
            GraphError: duplicate ids, unknown dependencies, a cycle, or a function task whose
                function cannot be imported.
        """
        return cls.from_specs(spec.tasks)

    def critical_path(self) -> tuple[list[str], float]:
        """The heaviest chain of dependent tasks by `weight`, and its total weight."""
        length: dict[str, float] = {}  # the heaviest chain ending at each task
        before: dict[str, str | None] = {}  # the task before it on that chain
        for task in self._tasks.values():
            prev = max(task.deps, key=length.__getitem__, default=None)
            length[task.id] = task.weight + (0.0 if prev is None else length[prev])
            before[task.id] = prev
        if not length:
            return [], 0.0
        end = max(length, key=length.__getitem__)
        path: list[str] = []
        node: str | None = end
        while node is not None:
            path.append(node)
            node = before[node]
        return path[::-1], length[end]


def _topological(by_id: Mapping[str, TaskSpec]) -> list[TaskSpec]:
    """Kahn's algorithm, stable (ties keep the listed order); a cycle is a GraphError."""
    order = {task_id: n for n, task_id in enumerate(by_id)}
    pending = {task_id: len(spec.deps) for task_id, spec in by_id.items()}
    children: dict[str, list[str]] = {task_id: [] for task_id in by_id}
    for spec in by_id.values():
        for dep in spec.deps:
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
