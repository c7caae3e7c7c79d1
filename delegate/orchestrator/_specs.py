"""Tasks and graphs as data: `TaskSpec`, `GraphSpec`, and the checks every task passes.

`TaskGraph.add` (typed, with `Agent` objects and functions) and `TaskSpec` (names only: plans,
workflow steps, stored runs) refuse the same values with the same messages: both call
`check_task`. A stored graph is a `GraphSpec` as JSON; `GraphSpec.from_json` reads it back,
upgrading what older versions wrote (`upgrade_graph_spec`). Re-exported by
`delegate.orchestrator.graph`, where the graph itself lives.
"""

from __future__ import annotations

import importlib
import math
import re
import typing
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ModelWrapValidatorHandler,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from delegate.agents.agent import judge_problem
from delegate.agents.limits import Budget
from delegate.agents.models import ReasoningEffort
from delegate.errors import ConfigError, GraphError, did_you_mean
from delegate.orchestrator.strategies import (
    AdaptiveVotes,
    BestOfN,
    MixtureOfAgents,
    SelfRefine,
    Strategy,
)

if TYPE_CHECKING:
    from delegate.orchestrator.graph import Task, TaskContext, TaskFunction

__all__ = [
    "GRAPH_SPEC_VERSION",
    "RESERVED_NAMES",
    "TASK_ID",
    "GraphSpec",
    "PlannedSpec",
    "TaskSpec",
    "check_id",
    "check_task",
    "function_path",
    "import_object",
    "load_function",
    "shown",
    "strategy_workers",
    "unchecked_spec",
    "upgrade_graph_spec",
    "verified_after",
]

# What a task id may look like, and the names templates reserve (the planner checks plans
# against the same rules). Checked with `fullmatch`: `$` alone would let a trailing newline in.
TASK_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-\[\]]{0,199}$")
RESERVED_NAMES = frozenset({"inputs", "deps", "steps"})

GRAPH_SPEC_VERSION: Final = 2
"""The format of a `GraphSpec`; `GraphSpec.from_json` upgrades data of older versions."""


# --- checks shared by TaskGraph.add and TaskSpec ----------------------------------------------


def shown(value: object) -> str:
    """`repr(value)`, cut short: a hostile spec's id may be megabytes long."""
    text = repr(value)
    return text if len(text) <= 300 else f"{text[:300]}…"


def check_id(id: object) -> None:
    """A task id's form: `TASK_ID`, and not a name templates reserve."""
    if not isinstance(id, str) or not TASK_ID.fullmatch(id):
        raise GraphError(
            f"task id {shown(id)} is not valid: use 1–200 letters, digits or `_ . : - [ ]`, "
            "starting with a letter, digit or underscore"
        )
    if id in RESERVED_NAMES:
        raise GraphError(f"task id {id!r} is reserved for templates; choose another id")


def check_task(
    id: str,
    agent: object,
    fn: object,
    prompt: object,
    timeout: object,
    retries: object,
    weight: object,
    max_output_tokens: object,
    reasoning_effort: object,
    verify: object,
    votes: object,
    variables: object,
    after: object,
    strategy: object = None,
) -> None:
    """What every task must satisfy, whether added with `TaskGraph.add` or described by a
    `TaskSpec` (where agent, fn and verify are names, checked by `_check_names` first, and
    votes and strategy given as JSON data are read by `_read` first)."""
    if not isinstance(prompt, str):
        raise GraphError(f"task {id!r}: prompt must be a str, got {type(prompt).__name__}")
    if (agent is None) == (fn is None):
        raise GraphError(
            f"task {id!r}: give exactly one of agent= (a model call) or fn= (a Python function)"
        )
    if after != "success" and after != "done":
        raise GraphError(f'task {id!r}: after must be "success" or "done", got {shown(after)}')
    if variables is not None and not isinstance(variables, Mapping):
        raise GraphError(
            f"task {id!r}: variables must be a mapping of names to values, got "
            f"{type(variables).__name__}"
        )
    _check_numbers(id, timeout, retries, weight)
    if (max_output_tokens, reasoning_effort, verify, votes, strategy) != (None,) * 5:
        _check_model_options(id, fn, max_output_tokens, reasoning_effort, verify, votes)
        if strategy is not None:
            _check_strategy(id, fn, votes, strategy)


def _check_numbers(id: str, timeout: object, retries: object, weight: object) -> None:
    if timeout is not None and not _positive_number(timeout):
        raise GraphError(f"task {id!r}: timeout must be > 0 seconds, got {shown(timeout)}")
    if retries is not None and (
        not isinstance(retries, int) or isinstance(retries, bool) or retries < 0
    ):
        raise GraphError(f"task {id!r}: retries must be an integer ≥ 0, got {shown(retries)}")
    # (the common case, a float weight, in one comparison: it runs for every task added)
    if not (type(weight) is float and 0.0 < weight < math.inf) and not _positive_number(weight):
        raise GraphError(f"task {id!r}: weight must be > 0, got {shown(weight)}")


def _positive_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


_EFFORTS: tuple[str, ...] = typing.get_args(ReasoningEffort)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_model_options(
    id: str,
    fn: object,
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
            f"{shown(max_output_tokens)}; e.g. max_output_tokens=2000"
        )
    if reasoning_effort is not None and reasoning_effort not in _EFFORTS:
        raise GraphError(
            f"task {id!r}: reasoning_effort must be one of {', '.join(map(repr, _EFFORTS))} or "
            f"None, got {shown(reasoning_effort)}"
        )
    if votes is not None and not (_positive_int(votes) or isinstance(votes, AdaptiveVotes)):
        raise GraphError(
            f"task {id!r}: votes must be a positive int, an AdaptiveVotes or None, got "
            f"{shown(votes)}; e.g. votes=5 or votes=AdaptiveVotes(max_samples=10)"
        )
    if verify is not None and not isinstance(verify, str):
        problem = judge_problem(verify)
        if problem is not None:
            raise GraphError(f"task {id!r}: {problem}")
    elif isinstance(verify, str) and not verify.strip():
        raise GraphError(f"task {id!r}: verify is an empty name; give a worker's name or an Agent")


_STRATEGIES = (BestOfN, MixtureOfAgents, SelfRefine)


def _check_strategy(id: str, fn: object, votes: object, strategy: object) -> None:
    """A strategy is one of the settings, on a model task, instead of several votes."""
    if not isinstance(strategy, _STRATEGIES):
        raise GraphError(
            f"task {id!r}: strategy must be a BestOfN, MixtureOfAgents or SelfRefine, got "
            f"{type(strategy).__name__}; e.g. strategy=BestOfN(n=4, judge='critic')"
        )
    if fn is not None:
        raise GraphError(
            f"task {id!r}: strategy applies to model calls, but this is a function task (fn=); "
            "drop it or give the task an agent="
        )
    if votes is not None and votes != 1:
        raise GraphError(
            f"task {id!r}: give votes or a strategy, not both (votes={shown(votes)} and "
            f"strategy={type(strategy).__name__}); drop one: a strategy picks its own answer"
        )


def strategy_workers(strategy: Strategy | None) -> tuple[str, ...]:
    """The workers a strategy names (its judge, proposers, aggregator or critic), in order."""
    if isinstance(strategy, BestOfN):
        return () if strategy.judge is None else (strategy.judge,)
    if isinstance(strategy, MixtureOfAgents):
        named = strategy.proposers
        return named if strategy.aggregator is None else (*named, strategy.aggregator)
    if isinstance(strategy, SelfRefine):
        return () if strategy.critic is None else (strategy.critic,)
    return ()


def verified_after(strategy: Strategy | None) -> bool:
    """Whether a task's judge (`verify`) checks the answer its strategy chose: not when the
    judge already did the strategy's scoring (a `BestOfN` without its own judge or score) or
    critiquing (a `SelfRefine` without its own critic)."""
    if isinstance(strategy, BestOfN):
        return strategy.judge is not None or strategy.score is not None
    if isinstance(strategy, SelfRefine):
        return strategy.critic is not None
    return True


_NAMES = {
    "agent": "a worker's name",
    "verify": "a worker's name (the judge)",
    "fn": "an import path 'module:qualname'",
}


def _check_names(id: str, data: Mapping[str, Any]) -> None:
    """A spec names its worker, judge and function: strings, not objects."""
    for key, what in _NAMES.items():
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise GraphError(f"task {id!r}: {key} must be {what}, got {type(value).__name__}")
    fn = data.get("fn")
    if isinstance(fn, str) and ":" not in fn:
        raise GraphError(f"task {id!r}: fn must be {_NAMES['fn']}, got {shown(fn)}")


_VOTES: TypeAdapter[AdaptiveVotes] = TypeAdapter(AdaptiveVotes)
_SETTING_FIELDS = sorted(
    {key for kind in (AdaptiveVotes, *_STRATEGIES) for key in kind.model_fields}
)
_STRATEGY: TypeAdapter[Strategy] = TypeAdapter(Strategy)


def _read(id: str, key: str, value: object, adapter: TypeAdapter[Any]) -> object:
    """A spec's votes or strategy, read from JSON data when given as an object of keys."""
    if not isinstance(value, Mapping):
        return value  # an int, a setting's object, or a wrong type (check_task says which)
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise GraphError(f"task {id!r}: {key}: {_problems(exc, _SETTING_FIELDS)}") from None


def _check_spec_input(data: Mapping[str, Any]) -> None:
    """`TaskSpec`'s own checks on the raw values, so a spec and `TaskGraph.add` refuse the same
    values with the same messages (before pydantic could coerce "5" into 5.0)."""
    id = data.get("id")
    check_id(id)
    task_id = typing.cast("str", id)
    _check_names(task_id, data)
    votes = _read(task_id, "votes", data.get("votes"), _VOTES)
    strategy = _read(task_id, "strategy", data.get("strategy"), _STRATEGY)
    check_task(
        task_id,
        data.get("agent"),
        data.get("fn"),
        data.get("prompt", ""),
        data.get("timeout"),
        data.get("retries"),
        data.get("weight", 1.0),
        data.get("max_output_tokens"),
        data.get("reasoning_effort"),
        data.get("verify"),
        votes,
        data.get("variables"),
        data.get("after", "success"),
        strategy,
    )


def _problems(exc: ValidationError, fields: Iterable[str]) -> str:
    """pydantic's errors as one line: where, and what is wrong (at most three of them)."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    parts: list[str] = []
    for error in errors[:3]:
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            name = str(error["loc"][-1])
            parts.append(f"unknown field {shown(where)}{did_you_mean(name, fields)}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {message}" if where else message)
    if len(errors) > len(parts):
        parts.append(f"and {len(errors) - len(parts)} more")
    return "; ".join(parts)


# --- function tasks by import path ------------------------------------------------------------

NOT_IMPORTABLE = "<not importable>:"


def function_path(fn: TaskFunction) -> str:
    """A function task's import path; a marker for one that has none (a lambda, a closure)."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    if module is None or not qualname or "<" in qualname:
        return f"{NOT_IMPORTABLE}{fn!r}"[:300]
    return f"{module}:{qualname}"


def import_object(path: str) -> Any:
    """What `"package.module:qualified.name"` names.

    Raises:
        ImportError: the module cannot be imported, or has no such name (an empty or relative
            module name, as in a corrupt spec, is reported the same way).
    """
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except ImportError:
        raise
    except (AttributeError, ValueError, TypeError) as exc:
        raise ImportError(str(exc)) from None
    return target


def load_function(path: str, task_id: str) -> TaskFunction:
    """The function a `function_path` names; for the marker, one that says why it cannot run.

    Raises:
        GraphError: the path cannot be imported, or names something that is not callable.
    """
    if path.startswith(NOT_IMPORTABLE):
        # A resume can still restore this task's output; only running it again is impossible.
        def not_importable(ctx: TaskContext) -> Any:
            raise GraphError(
                f"task {task_id!r} must run again to resume the run, but its function "
                f"({path.removeprefix(NOT_IMPORTABLE)}) is a lambda or a nested function, which "
                "a stored run cannot import; make it a module-level function"
            )

        return not_importable
    try:
        target = import_object(path)
    except ImportError as exc:
        raise GraphError(
            f"task {task_id!r}: its function {shown(path)} cannot be imported ({exc}); build "
            "the graph in a process that can import it"
        ) from None
    if not callable(target):
        raise GraphError(f"task {task_id!r}: {shown(path)} is not callable")
    fn: TaskFunction = target
    return fn


# --- specs ------------------------------------------------------------------------------------


class TaskSpec(BaseModel):
    """A task described by names only: the shape plans, workflow steps and stored runs share.

    Its values are checked by the same rules, with the same messages, as `TaskGraph.add`; a
    spec that breaks them raises `GraphError` (never pydantic's `ValidationError`).

    Attributes:
        id: unique within its graph (letters, digits and `_ . : - [ ]`, at most 200).
        agent: the worker's name, resolved when the run starts; None for a function task.
        fn: a function task's import path, "module:qualname"; None for a model task.
        prompt: the task's instructions, a jinja2 template.
        deps: ids of the tasks whose outputs this one needs (duplicates dropped).
        timeout: seconds per attempt, None for no limit.
        retries: transient failures retried at most this many times (None: the run's policy).
        weight: the expected relative duration, used to find the critical path.
        budget: limits on this task's own calls.
        max_output_tokens: replaces the worker's `max_output_tokens` for this task.
        reasoning_effort: replaces the worker's `reasoning_effort` for this task.
        verify: the name of the judge of this task's answers (None: the worker's own).
        votes: answers sampled for a majority, a count or an `AdaptiveVotes` (None: the
            worker's own `votes`).
        variables: more names for the prompt template (JSON data).
        after: "success" (run once every dependency succeeded) or "done" (once all ended).
        strategy: how the task spends extra calls on a better answer (`BestOfN`,
            `MixtureOfAgents`, `SelfRefine`), its workers by name; None: one answer.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    agent: str | None = None
    fn: str | None = None
    prompt: str = ""
    deps: tuple[str, ...] = ()
    timeout: float | None = None
    retries: int | None = None
    weight: float = 1.0
    budget: Budget | None = None
    max_output_tokens: int | None = None
    reasoning_effort: ReasoningEffort | None = None
    verify: str | None = None
    votes: int | AdaptiveVotes | None = None
    variables: dict[str, JsonValue] = Field(default_factory=dict)
    after: Literal["success", "done"] = "success"
    strategy: Strategy | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _checked(cls, data: Any, handler: ModelWrapValidatorHandler[TaskSpec]) -> TaskSpec:
        task_id = data.get("id") if isinstance(data, Mapping) else None
        if isinstance(data, Mapping):
            _check_spec_input(data)
        try:
            return handler(data)
        except ValidationError as exc:
            where = "task spec" if task_id is None else f"task {shown(task_id)}"
            raise GraphError(f"{where}: {_problems(exc, cls.model_fields)}") from None
        except GraphError:
            raise
        except ConfigError as exc:  # Budget's own checks
            raise GraphError(f"task {shown(task_id)}: budget: {exc}") from None

    @field_validator("deps")
    @classmethod
    def _unique(cls, deps: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(deps))


_object_setattr = object.__setattr__


def unchecked_spec(values: dict[str, Any]) -> TaskSpec:
    """A `TaskSpec` of every field's value, already checked (a graph's own task), built without
    validation: `model_construct` without its per-field alias lookups, which cost 17 µs a task
    against 3 µs here — a durable run stores its whole graph before its first task starts."""
    spec = TaskSpec.__new__(TaskSpec)
    _object_setattr(spec, "__dict__", values)
    _object_setattr(spec, "__pydantic_fields_set__", set(values))
    _object_setattr(spec, "__pydantic_extra__", None)
    _object_setattr(spec, "__pydantic_private__", None)
    return spec


class PlannedSpec(BaseModel):
    """What a planned run (`Orchestrator.run(goal)`) stores beside its tasks, for `resume`.

    Attributes:
        goal: the run's goal.
        plans: the plan revisions, as `PlanRevision.to_json()` data (the planned run validates
            them when it resumes).
        handled: the failures a revision responded to, task id → error: not run again.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    goal: str = ""
    plans: tuple[dict[str, JsonValue], ...] = ()
    handled: dict[str, str] = Field(default_factory=dict)


class GraphSpec(BaseModel):
    """A task graph as data: what a durable run stores, and what `TaskGraph.from_spec` builds.

    Attributes:
        version: the format, `GRAPH_SPEC_VERSION`; `from_json` upgrades older data.
        tasks: the tasks, in a topological order.
        planned: a planned run's goal and plan revisions.
        workflow: the workflow file a run came from (its text, path and run options).
        plans: the plans of a workflow's plan steps, by step id.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[2] = GRAPH_SPEC_VERSION
    tasks: tuple[TaskSpec, ...] = ()
    planned: PlannedSpec | None = None
    workflow: dict[str, JsonValue] | None = None
    plans: dict[str, dict[str, JsonValue]] | None = None

    @classmethod
    def of(
        cls,
        tasks: Iterable[Task],
        *,
        planned: PlannedSpec | None = None,
        workflow: Mapping[str, Any] | None = None,
        plans: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> GraphSpec:
        """The spec of `tasks` (a graph, or its tasks in order), with a run's state."""
        return cls.model_construct(
            tasks=tuple(task.spec() for task in tasks),
            planned=planned,
            workflow=None if workflow is None else dict(workflow),
            plans=None if plans is None else {key: dict(value) for key, value in plans.items()},
        )

    @classmethod
    def from_json(cls, data: object) -> GraphSpec:
        """A spec from JSON data (`to_json`, or a stored run's graph); older versions upgraded.

        Raises:
            GraphError: the data is not a graph spec (naming what is wrong and where).
        """
        upgraded = upgrade_graph_spec(data)
        try:
            return cls.model_validate(upgraded)
        except ValidationError as exc:
            problem = _problems(exc, cls.model_fields)
            raise GraphError(f"not a valid graph spec: {problem}") from None

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON data; fields at their defaults are left out (`from_json` restores
        them), so a 100,000-task graph stores its ids, agents, prompts and deps, not nulls."""
        return {"version": self.version, **self.model_dump(mode="json", exclude_defaults=True)}


_V1_TOP = ("tasks", "planned", "workflow", "plans")
_V1_TASK = frozenset(TaskSpec.model_fields)


def upgrade_graph_spec(data: object) -> dict[str, Any]:
    """Graph spec data of any version as data of the current version (`GRAPH_SPEC_VERSION`).

    Version 1 (no "version", or 1) was written with every field of every task, nulls included,
    and read leniently: unknown keys were ignored, a missing or null field took its default, and
    a task with a function ignored its agent. The upgrade keeps exactly what that reader read.

    Raises:
        GraphError: not a JSON object, or a version this delegate does not know.
    """
    if not isinstance(data, Mapping):
        raise GraphError(f"a graph spec is a JSON object, got {type(data).__name__}")
    version = data.get("version", 1)
    if version == GRAPH_SPEC_VERSION and type(version) is int:
        return dict(data)
    if version != 1 or type(version) is not int:
        newer = isinstance(version, int) and version > GRAPH_SPEC_VERSION
        raise GraphError(
            f"graph spec version {shown(version)} is "
            + (
                "from a newer delegate; upgrade delegate to read it"
                if newer
                else f"unknown; this delegate reads versions 1 to {GRAPH_SPEC_VERSION}"
            )
        )
    upgraded: dict[str, Any] = {"version": GRAPH_SPEC_VERSION}
    for key in _V1_TOP:
        if data.get(key) is not None:
            upgraded[key] = data[key]
    tasks = upgraded.get("tasks")
    if isinstance(tasks, list | tuple):
        upgraded["tasks"] = [_upgrade_task(item) for item in tasks]
    return upgraded


def _upgrade_task(item: object) -> object:
    if not isinstance(item, Mapping):
        return item  # refused by validation, with its position
    task = {key: value for key, value in item.items() if key in _V1_TASK and value is not None}
    if "fn" in task:
        task.pop("agent", None)
    return task
