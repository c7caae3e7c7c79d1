"""From a validated workflow file to a run: agents, orchestrator, inputs, run, resume, preview.

    loaded = load_workflow("configs/market-brief.yaml")
    compiled = compile_workflow(loaded, simulate=True)
    inputs = parse_inputs(loaded.spec, ["market=home batteries"], None)
    result = await run_workflow(compiled, inputs)

Static workflows run with `WorkflowRun` (`delegate.workflows._driver`); planner-mode workflows are
planned runs (`Orchestrator.run`). Either way the workflow file's text is stored with the run, so
`resume_workflow(run_id)` (and `delegate resume`) needs nothing but the run id.

With `simulate=True` every model, the cheaper ones and fallbacks included, is a `SimulatedModel`
(`delegate.testing`): real prices, deterministic latencies and token counts, outputs generated
from the steps' schemas, a planner that plans over the declared workers. Nothing is sent; the
compiled workflow's `pace` (a `SimulatedPace`) says how long a run would take at the models' pace.
"""

from __future__ import annotations

import functools
import math
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from delegate._json import loads_untrusted
from delegate.agents.agent import Agent
from delegate.agents.limits import Budget
from delegate.agents.tools import Tool, tool, validation_summary
from delegate.errors import ConfigError, JSONInputError, TemplateError, did_you_mean
from delegate.orchestrator.approval import ApprovedPlan, given_plan
from delegate.orchestrator.graph import PROMPT_ENV, GraphSpec, TaskGraph
from delegate.orchestrator.planner import Plan, Planner
from delegate.orchestrator.run import Orchestrator, RunResult
from delegate.workflows._driver import WorkflowRun
from delegate.workflows._models import agent_model
from delegate.workflows.loader import LoadedWorkflow, load_workflow_text
from delegate.workflows.outputs import output_model
from delegate.workflows.spec import AgentSpec, AgentStep, PlanStep, WorkflowSpec
from delegate.workflows.tools import import_tool

if TYPE_CHECKING:
    from delegate.agents.mcp import MCPServer
    from delegate.agents.models import Model, Usage
    from delegate.memory.records import RunRecord, TaskRecord
    from delegate.orchestrator.estimate import Estimate
    from delegate.orchestrator.events import EventHandler
    from delegate.testing import SimulatedPace

__all__ = [
    "CompiledWorkflow",
    "Preview",
    "compile_workflow",
    "missing_credentials",
    "parse_inputs",
    "preview_workflow",
    "resume_workflow",
    "run_workflow",
    "waited_for",
]

MAX_INPUT_FILE_BYTES = 1 << 20
_UNKNOWN_SHOWN = 20  # unknown input names told one by one (an input file may hold thousands)
_FOREACH_GUESS = 3  # items a preview assumes for a fan-out it cannot evaluate yet


# --- inputs ----------------------------------------------------------------------------------


def _convert(name: str, kind: str, raw: str) -> Any:
    try:
        if kind == "string":
            return raw
        if kind == "integer":
            return int(raw)
        if kind == "number":
            number = float(raw)
            if not math.isfinite(number):
                raise ValueError("not a finite number")
            return number
        if kind == "boolean":
            lowered = raw.strip().lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ValueError("not true or false")
        return loads_untrusted(raw, what=f"input {name!r}")
    except JSONInputError as exc:
        if exc.reason != "syntax":  # too long or too deep: the message says so
            raise ConfigError(str(exc)) from None
        problem = str(exc).removeprefix(f"input {name!r} is not valid JSON ")
        if problem.startswith("(") and problem.endswith(")"):
            problem = problem[1:-1]
        raise ConfigError(_not_valid(name, kind, raw, problem)) from None
    except ValueError as exc:
        raise ConfigError(_not_valid(name, kind, raw, str(exc))) from None


def _not_valid(name: str, kind: str, raw: str, problem: str) -> str:
    shown = raw if len(raw) <= 80 else raw[:77] + "..."
    problem = problem if len(problem) <= 200 else problem[:197] + "..."
    return (
        f"input {name!r}: {shown!r} is not a valid {kind} ({problem}); e.g. "
        f"{_EXAMPLES.get(kind, 'a value')}"
    )


_EXAMPLES = {
    "integer": "-i n=3",
    "number": "-i ratio=0.5",
    "boolean": "-i deep=true",
    "array": """-i 'items=["a", "b"]'""",
    "object": """-i 'limits={"max": 3}'""",
}


def _read_input_file(path: Path) -> dict[str, Any]:
    from delegate.workflows._files import FileProblem, read_bounded
    from delegate.workflows._yaml import YamlError, parse

    shown = repr(str(path))
    try:
        data = read_bounded(path, MAX_INPUT_FILE_BYTES)
    except FileProblem as exc:
        raise ConfigError(f"cannot read the input file {shown}: {exc}") from None
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise ConfigError(f"input file {shown} is not UTF-8 text") from None
    if path.suffix in (".yaml", ".yml"):
        # The workflow files' parser: safe tags only, bounded aliases and nesting.
        try:
            document = parse(text)
        except YamlError as exc:
            where = f"line {exc.mark.line}, column {exc.mark.col}"
            raise ConfigError(f"input file {shown} does not parse ({where}): {exc}") from None
        if document.problems:
            mark, message = min(document.problems, key=lambda p: (p[0].line, p[0].col))
            where = f"line {mark.line}, column {mark.col}"
            raise ConfigError(f"input file {shown} does not parse ({where}): {message}")
        values = document.data
    else:
        try:
            values = loads_untrusted(text, what=f"input file {shown}")
        except JSONInputError as exc:
            raise ConfigError(str(exc)) from None
    if not isinstance(values, dict):
        raise ConfigError(
            f"input file {shown} must hold a mapping of input names to values, "
            f"not a {type(values).__name__}"
        )
    return values


def parse_inputs(
    spec: WorkflowSpec, pairs: Sequence[str] = (), input_file: Path | None = None
) -> dict[str, Any]:
    """The run's inputs from `-i key=value` pairs and an input file, checked against `spec`.

    Values of `-i` are read by the input's declared type (JSON for arrays and objects); the file
    (JSON, or YAML when it ends in .yaml/.yml) holds typed values; `-i` wins over the file.
    Defaults fill what is not given.

    Raises:
        ConfigError: an unknown input, a value of the wrong type or not in `enum`, a required
            input missing, a malformed pair or file; every problem at once.
    """
    given: dict[str, Any] = {} if input_file is None else _read_input_file(input_file)
    problems: list[str] = []
    invalid: set[str] = set()
    given |= _pairs(spec, pairs, problems, invalid)
    inputs = _complete(spec, given, problems, hint=True, invalid=invalid)
    if problems:
        raise ConfigError("; ".join(problems))
    return inputs


def _pairs(
    spec: WorkflowSpec, pairs: Sequence[str], problems: list[str], invalid: set[str]
) -> dict[str, Any]:
    """The values of `-i name=value` pairs, typed; problems are appended to `problems`, and the
    names of inputs whose value is invalid to `invalid`."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            problems.append(f"-i {pair!r}: write an input as name=value")
            continue
        declared = spec.inputs.get(name)
        if declared is None:
            problems.append(_unknown(name, spec))
            continue
        try:
            values[name] = _convert(name, declared.type, raw)
        except ConfigError as exc:
            problems.append(str(exc))
            invalid.add(name)
    return values


def _finite(value: Any) -> bool:
    """Whether every number in `value` (nested lists and mappings too) is finite: JSON, and so
    the store, has no NaN or infinity."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, Mapping):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return True


def _complete(
    spec: WorkflowSpec,
    inputs: Mapping[str, Any],
    problems: list[str],
    *,
    hint: bool = False,
    invalid: Iterable[str] = (),
) -> dict[str, Any]:
    """`inputs` checked against the declarations, with the defaults of those not given.

    Problems are appended to `problems`; `hint` adds the `-i` remedy for a missing input; the
    inputs named in `invalid` were given (with a value that was refused) and are not missing.
    """
    checked: dict[str, Any] = {}
    reported = set(problems)  # an unknown name given by -i and by the file is told once
    unknown_names = 0
    for name, value in inputs.items():
        declared = spec.inputs.get(name)
        if declared is None:
            unknown = _unknown(name, spec)
            if unknown not in reported:
                reported.add(unknown)
                unknown_names += 1
                if unknown_names <= _UNKNOWN_SHOWN:
                    problems.append(unknown)
            continue
        try:
            declared.check_value(value, f"input {name!r}:")
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if not _finite(value):
            problems.append(
                f"input {name!r} holds NaN or an infinity, which JSON (and so the store) "
                "cannot hold; give finite numbers"
            )
            continue
        checked[name] = value
    if unknown_names > _UNKNOWN_SHOWN:
        more = unknown_names - _UNKNOWN_SHOWN
        problems.append(f"and {more:,} more names that are not inputs of {spec.name!r}")
    given = set(invalid)
    for name, declared in spec.inputs.items():
        if name in inputs or name in given:
            continue
        if declared.required:
            about = f" ({declared.description})" if declared.description else ""
            remedy = f": pass -i {name}=..." if hint else ""
            problems.append(f"input {name!r}{about} is required{remedy}")
        else:
            checked[name] = declared.default
    return checked


def _unknown(name: str, spec: WorkflowSpec) -> str:
    names = ", ".join(spec.inputs) or "none"
    return (
        f"workflow {spec.name!r} has no input {name!r}{did_you_mean(name, spec.inputs)} "
        f"(inputs: {names})"
    )


# --- compiling -------------------------------------------------------------------------------


@dataclass
class CompiledWorkflow:
    """A workflow made runnable: its agents and the orchestrator that runs it.

    Attributes:
        loaded: the validated file.
        text: the file's text (stored with each run, for resume).
        agents: the agents by name.
        orchestrator: runs it (its store, budget, prices and concurrency are the workflow's).
        output_types: the pydantic models of the steps with an `output` schema, by step id.
        simulated: every model is a `SimulatedModel`.
        seed: the simulation's seed.
        time_scale: a simulation's models sleep this share of their simulated latencies.
        budget_usd: the usd budget given instead of the workflow's.
        pace: when simulated, the simulated seconds of the runs' calls:
            `pace.run_seconds(result)` is how long a run would take at the models' pace.
    """

    loaded: LoadedWorkflow
    text: str
    agents: dict[str, Agent[Any]]
    orchestrator: Orchestrator
    output_types: dict[str, type[BaseModel]] = field(default_factory=dict)
    simulated: bool = False
    seed: int = 0
    time_scale: float = 1.0
    budget_usd: float | None = None
    pace: SimulatedPace | None = None

    @property
    def spec(self) -> WorkflowSpec:
        """The validated workflow."""
        return self.loaded.spec

    @property
    def path(self) -> Path:
        """The workflow file."""
        return self.loaded.path

    def models(self) -> list[str]:
        """Every model the workflow may call (cheaper models included), as written in it."""
        names: list[str] = []
        for agent in self.spec.agents.values():
            for model in (agent.model, agent.cheaper):
                if model is not None and model not in names:
                    names.append(model)
        return names

    def called_models(self) -> list[Model]:
        """Every model the workflow may call (cheaper models included), as built: each on its
        endpoint; one entry per distinct model."""
        found: list[Model] = []
        for agent in self.agents.values():
            for model in (agent.model, agent.cheaper):
                if model is not None and all(model is not other for other in found):
                    found.append(model)
        return found

    def source(self) -> dict[str, Any]:
        """What a run stores to be resumed: the file, and how it was simulated."""
        return {
            "name": self.spec.name,
            "path": str(self.path),
            "text": self.text,
            "simulate": self.simulated,
            "seed": self.seed,
            "time_scale": self.time_scale,
            "budget_usd": self.budget_usd,
        }


def _planners(spec: WorkflowSpec) -> dict[str, list[str]]:
    """Each planning agent's workers (a simulated planner plans over them)."""
    planners: dict[str, list[str]] = {}
    if spec.planner is not None:
        planners[spec.planner] = list(spec.workers or ())
    for step in spec.steps or ():
        if isinstance(step, PlanStep):
            planners.setdefault(step.planner, list(step.workers))
    return planners


def _agents(
    loaded: LoadedWorkflow,
    simulate: bool,
    seed: int,
    time_scale: float,
    pace: SimulatedPace | None = None,
) -> dict[str, Agent[Any]]:
    from delegate.testing import simulate as simulated

    spec = loaded.spec
    planners = _planners(spec)
    built: dict[str, Agent[Any]] = {}
    servers = _mcp_servers(spec, loaded.base_dir)

    def model(name: str, agent: str, key: str = "model") -> str | Model:
        real = agent_model(spec, agent, name, key)
        if not simulate:
            return real
        workers = planners.get(agent, ())
        return simulated(real, seed=seed, workers=workers, time_scale=time_scale, pace=pace)

    def build(name: str, chain: tuple[str, ...]) -> Agent[Any]:
        if name in built:
            return built[name]
        if name in chain:
            loop = " → ".join([*chain[chain.index(name) :], name])
            raise ConfigError(f"agents {loop} refer to each other (fallback/verify); break it")
        agent = spec.agents[name]
        gated = set(agent.approve_tools)  # a human approves each call of these
        tools: list[Tool] = [
            tool(import_tool(path, loaded.base_dir), requires_approval=path in gated)
            for path in dict.fromkeys([*agent.tools, *agent.approve_tools])
        ]
        built[name] = Agent(
            name,
            model(agent.model, name),
            instructions=agent.instructions,
            description=agent.description,
            tools=[*tools, *_mcp_of(agent, servers)],
            reasoning_effort=agent.reasoning_effort,
            max_output_tokens=agent.max_output_tokens,
            temperature=agent.temperature,
            fallback=None if agent.fallback is None else build(agent.fallback, (*chain, name)),
            cheaper=None if agent.cheaper is None else model(agent.cheaper, name, "cheaper"),
            max_concurrency=agent.max_concurrency,
            budget=None if agent.budget is None else agent.budget.to_budget(),
            memory=agent.memory,
            verify=None if agent.verify is None else build(agent.verify, (*chain, name)),
            votes=agent.votes if isinstance(agent.votes, int) else agent.votes.to_votes(),
        )
        return built[name]

    for name in spec.agents:
        build(name, ())
    return built


def _mcp_servers(spec: WorkflowSpec, base_dir: Path) -> dict[str, MCPServer]:
    """The MCP servers some agent uses, built once: the agents share each one's process."""
    used = {name for agent in spec.agents.values() for name in agent.mcp}
    return {
        name: server.to_server(name, base_dir)
        for name, server in spec.mcp_servers.items()
        if name in used
    }


def _mcp_of(agent: AgentSpec, servers: Mapping[str, MCPServer]) -> list[MCPServer]:
    """Agent `agent`'s MCP servers; views offering only some tools for `{server: [tools]}`."""
    if isinstance(agent.mcp, list):
        return [servers[name] for name in agent.mcp]
    return [servers[name].with_tools(tools) for name, tools in agent.mcp.items()]


def _class_name(step_id: str) -> str:
    words = re.split(r"[^A-Za-z0-9]+", step_id)
    name = "".join(word[:1].upper() + word[1:] for word in words if word)
    return name if name[:1].isalpha() else f"Step{name}"


def compile_workflow(
    loaded: LoadedWorkflow,
    *,
    simulate: bool = False,
    seed: int = 0,
    db: str | None = None,
    budget_usd: float | None = None,
    on_event: EventHandler | None = None,
    time_scale: float = 1.0,
    text: str | None = None,
    pace: SimulatedPace | None = None,
    tracing: Any = False,
) -> CompiledWorkflow:
    """Build the agents and the orchestrator of a validated workflow.

    Args:
        loaded: from `load_workflow`.
        simulate: replace every model by its `SimulatedModel` (nothing is sent).
        seed: the simulation's seed.
        db: the store's URL, instead of the workflow's `memory` (and the default store).
        budget_usd: replaces the workflow's usd budget.
        on_event: gets every event of the runs (a progress display).
        time_scale: a simulation sleeps this fraction of the simulated latencies.
        text: the file's text (read from `loaded.path` when not given).
        pace: with `simulate`, records the simulated seconds of the calls (default: a new
            `SimulatedPace`, the compiled workflow's `pace`).
        tracing: the orchestrator's `tracing` (OpenTelemetry spans; see `delegate.observe`).

    Raises:
        ConfigError: a tool that does not import, agents that refer to each other.
    """
    spec = loaded.spec
    if text is None:
        text = Path(loaded.path).read_text(encoding="utf-8")
    if simulate and pace is None:
        from delegate.testing import SimulatedPace

        pace = SimulatedPace()
    agents = _agents(loaded, simulate, seed, time_scale, pace if simulate else None)
    budget = None if spec.budget is None else spec.budget.to_budget()
    if budget_usd is not None:
        if budget_usd < 0:
            raise ConfigError(f"--budget-usd must be ≥ 0, got {budget_usd}")
        base = budget or Budget()
        budget = Budget(
            tokens=base.tokens,
            usd=budget_usd,
            seconds=base.seconds,
            calls=base.calls,
            reserve_seconds=base.reserve_seconds,
        )
    options: dict[str, Any] = {
        "memory": db or spec.memory or "home",
        "budget": budget,
        "prices": {model: tuple(pair) for model, pair in spec.prices.items()},
        "rate_limits": {model: limit.to_rate_limit() for model, limit in spec.rate_limits.items()},
        "max_concurrency": spec.max_concurrency or 16,
        "on_event": on_event,
        "seed": seed if simulate else None,
        "tracing": tracing,
        "routing": spec.routing,
    }
    if spec.mode == "planner":
        assert spec.planner is not None  # the spec's validation guarantees planner mode fields
        orchestrator = Orchestrator(
            workers=[agents[name] for name in spec.workers or ()],
            planner=Planner(agents[spec.planner], max_tasks=spec.max_tasks),
            synthesizer=None if spec.synthesizer is None else agents[spec.synthesizer],
            max_replans=spec.max_replans,
            judge_goal=spec.judge_goal,
            **options,
        )
    else:
        orchestrator = Orchestrator(workers=list(agents.values()), **options)
    if simulate and pace is not None:
        orchestrator.subscribe(pace)
        pace.waits = functools.partial(waited_for, spec)
    output_types = {
        step.id: output_model(step.output, _class_name(step.id))
        for step in spec.steps or ()
        if isinstance(step, AgentStep) and step.output is not None
    }
    return CompiledWorkflow(
        loaded=loaded,
        text=text,
        agents=agents,
        orchestrator=orchestrator,
        output_types=output_types,
        simulated=simulate,
        seed=seed,
        time_scale=time_scale,
        budget_usd=budget_usd,
        pace=pace if simulate else None,
    )


def waited_for(spec: WorkflowSpec, result: RunResult) -> dict[str, list[str]]:
    """What the tasks of a run of `spec` waited for beyond their `deps`: a fan-out's items were
    added once the steps the fan-out needs had ended, a plan step's tasks once it planned them
    (its task `<id>.plan`)."""
    waits: dict[str, list[str]] = {}
    for step in spec.steps or ():
        if isinstance(step, PlanStep):
            planning = result.tasks.get(f"{step.id}.plan")
            made = planning.output if planning is not None else None
            if planning is not None and isinstance(made, Mapping):
                for task_id in [*(made.get("tasks") or ()), step.id]:
                    waits[str(task_id)] = [planning.id]
        elif step.foreach is not None:
            needs = list(spec.needs_of(step.id))
            index = 0
            while f"{step.id}[{index}]" in result.tasks:
                waits[f"{step.id}[{index}]"] = needs
                index += 1
    return waits


# --- running ---------------------------------------------------------------------------------


def _goal(spec: WorkflowSpec, inputs: Mapping[str, Any]) -> str:
    return PROMPT_ENV.from_string(spec.goal or "").render({"inputs": dict(inputs)})


async def run_workflow(
    compiled: CompiledWorkflow,
    inputs: Mapping[str, Any],
    *,
    run_id: str | None = None,
    plan: ApprovedPlan | None = None,
) -> RunResult:
    """Run the workflow with `inputs` and return the result.

    Inputs not given take their defaults. `plan`: in planner mode, a plan approved beforehand
    (`delegate plan --out`), run with no planning call; it must have been made for this
    workflow, its goal and these inputs (see `Orchestrator.run`).

    Raises:
        ConfigError: an input is unknown, of the wrong type, or required and missing; a `plan`
            for another workflow, goal or inputs, or for a workflow without a planner.
        PlanInvalid: `plan` has tasks the planner's checks refuse.
    """
    spec = compiled.spec
    problems: list[str] = []
    inputs = _complete(spec, inputs, problems)
    if problems:
        raise ConfigError("; ".join(problems))
    run_id = run_id or uuid.uuid4().hex
    orchestrator = compiled.orchestrator
    if plan is not None and spec.mode != "planner":
        raise ConfigError(
            f"workflow {spec.name!r} has no planner: its steps are the plan; run it without "
            "--plan (`delegate plan` shows what it would do)"
        )
    if spec.mode == "planner":
        goal = _goal(spec, inputs)
        given = None
        if plan is not None:
            given, inputs = given_plan(
                plan,
                goal=goal,
                inputs=inputs,
                workflow=spec.name,
                workers=orchestrator.workers,
                max_tasks=spec.max_tasks,
            )
        planned = orchestrator.planned_run(run_id, goal, inputs, None, given=given)
        planned.source = compiled.source()
        return await orchestrator.run_driven(
            planned, inputs, run_id=run_id, workflow=spec.name, goal=goal
        )
    driver = WorkflowRun(
        run_id=run_id,
        workflow=spec,
        by_name=compiled.agents,
        inputs=dict(inputs),
        output_types=compiled.output_types,
        source=compiled.source(),
    )
    return await orchestrator.run_driven(driver, inputs, run_id=run_id, workflow=spec.name)


async def resume_workflow(
    run_id: str,
    *,
    db: str | None = None,
    on_event: EventHandler | None = None,
    pace: SimulatedPace | None = None,
    force: bool = False,
) -> RunResult:
    """Finish a run of a workflow file from the store, with the file's text stored with it.

    A simulated run resumes simulated, with the same seed (`pace`, when given, records the
    simulated seconds of the calls made now). Finished tasks keep their outputs. A run another
    live process owns is refused, unless `force` (see `Orchestrator.resume`).

    Raises:
        ConfigError: no such run, or the run did not come from a workflow file.
        RunLeasedError: another live process owns the run (and `force` is False).
    """
    from delegate.memory.store import Store, default_url

    url = db or default_url()
    store = await anyio.to_thread.run_sync(Store.open, url)
    try:
        record = await anyio.to_thread.run_sync(store.get_run, run_id)
        rows = await anyio.to_thread.run_sync(store.get_tasks, run_id)
    finally:
        store.close()
    if record is None:
        raise ConfigError(f"no run {run_id!r} in the store {url}; `delegate runs` lists them")
    graph = GraphSpec.from_json(record.graph)  # a corrupt row: a GraphError naming the problem
    source = _StoredSource.of(run_id, graph.workflow)
    loaded = load_workflow_text(source.text, source.path)
    compiled = compile_workflow(
        loaded,
        simulate=source.simulate,
        seed=source.seed,
        db=url,
        on_event=on_event,
        time_scale=source.time_scale,
        text=source.text,
        budget_usd=source.budget_usd,
        pace=pace,
    )
    async with compiled.orchestrator:  # compiled here, so its store is closed here
        return await _resume_compiled(compiled, record, graph, rows, force)


class _StoredSource(BaseModel):
    """The workflow file a run stored (`CompiledWorkflow.source()`), read back and checked."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    text: str
    path: str = "<workflow>"
    simulate: bool = False
    seed: int = 0
    time_scale: float = Field(default=1.0, ge=0)  # 0: a simulation that does not sleep
    budget_usd: float | None = Field(default=None, ge=0)

    @classmethod
    def of(cls, run_id: str, stored: Mapping[str, Any] | None) -> _StoredSource:
        """The source of run `run_id`, or a `ConfigError` saying why it cannot be resumed so."""
        if stored is None or not isinstance(stored.get("text"), str):
            raise ConfigError(
                f"run {run_id!r} did not come from a workflow file; resume it from Python with "
                "Orchestrator(...).resume(run_id) and the same workers"
            )
        try:
            return cls.model_validate(stored)
        except ValidationError as exc:
            raise ConfigError(
                f"run {run_id!r}: the workflow stored with it cannot be read back "
                f"({validation_summary(exc)}); the row was changed or truncated"
            ) from None


async def _resume_compiled(
    compiled: CompiledWorkflow,
    record: RunRecord,
    graph: GraphSpec,
    rows: list[TaskRecord],
    force: bool,
) -> RunResult:
    run_id = record.id
    if graph.planned is not None:
        return await compiled.orchestrator.resume(run_id, force=force)
    driver = WorkflowRun(
        run_id=run_id,
        workflow=compiled.spec,
        by_name=compiled.agents,
        inputs=dict(record.inputs),
        output_types=compiled.output_types,
        source=compiled.source(),
        restored={row.task_id: row for row in rows if row.status == "succeeded"},
        plans=dict(graph.plans or {}),
    )
    return await compiled.orchestrator.run_driven(
        driver, record.inputs, run_id=run_id, workflow=record.workflow, resume=True, force=force
    )


# --- previewing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """What a run would do, before it runs: the tasks, their projected cost and time.

    Attributes:
        tasks: (id, agent, model, deps) of each task, in order. A fan-out whose items are not
            known before the run is shown with 3 items; a plan step as its planner's answer.
        estimate: tokens, USD and seconds projected (`Orchestrator.estimate`).
        plan: in planner mode, the plan the planner made (planning is the only thing done).
        planning_usage: what that planning cost.
    """

    tasks: list[tuple[str, str | None, str | None, tuple[str, ...]]]
    estimate: Estimate
    plan: Plan | None = None
    planning_usage: Usage | None = None


def _preview_graph(compiled: CompiledWorkflow, inputs: Mapping[str, Any]) -> TaskGraph:
    from delegate.orchestrator.planned import synthesizer_for
    from delegate.workflows._driver import _evaluate

    spec = compiled.spec
    graph = TaskGraph()
    for step in spec.steps or ():
        needs = spec.needs_of(step.id)
        if isinstance(step, PlanStep):
            planner = synthesizer_for(compiled.agents[step.planner], None, planner=True)
            graph.add(step.id, agent=planner, prompt=step.goal, deps=needs)
            continue
        # The step's own output type is left out: one agent per name in a graph (it changes
        # only the schema's few tokens in the projection).
        agent = compiled.agents[step.agent]
        if step.foreach is None:
            graph.add(step.id, agent=agent, prompt=step.prompt, deps=needs)
            continue
        try:
            value = _evaluate(step.foreach, {"inputs": dict(inputs), "steps": {}})
        except TemplateError:  # it depends on outputs not known yet
            value = None
        # Not a list (yet): the run would fail the step; the projection guesses its size.
        items = list(value) if isinstance(value, list | tuple) else list(range(_FOREACH_GUESS))
        ids = []
        for index, item in enumerate(items):
            task = graph.add(
                f"{step.id}[{index}]",
                agent=agent,
                prompt=step.prompt,
                deps=needs,
                variables={"item": item, "loop": {"index": index + 1}},
            )
            ids.append(task.id)
        graph.add(step.id, fn=lambda ctx: list(ctx.deps.values()), deps=ids)
    return graph


async def preview_workflow(compiled: CompiledWorkflow, inputs: Mapping[str, Any]) -> Preview:
    """The run's tasks and their projected cost and time; in planner mode, after planning.

    Nothing is executed beyond planning (which calls the planner's model, unless simulated,
    held to the workflow's budget).
    """
    spec = compiled.spec
    orchestrator = compiled.orchestrator
    plan: Plan | None = None
    usage = None
    if spec.mode == "planner":
        result = await orchestrator.plan(_goal(spec, inputs), inputs)
        plan, usage = result.plan, result.usage
        graph = TaskGraph()
        from delegate.orchestrator.planner import add_plan

        add_plan(graph, plan)
    else:
        graph = _preview_graph(compiled, inputs)
    estimate = orchestrator.estimate(graph, inputs)
    tasks = [
        (
            task.id,
            task.agent_name,
            estimate.tasks[task.id].model if task.id in estimate.tasks else None,
            task.deps,
        )
        for task in graph
    ]
    return Preview(tasks=tasks, estimate=estimate, plan=plan, planning_usage=usage)


# --- credentials -----------------------------------------------------------------------------


def missing_credentials(models: Iterable[str | Model]) -> dict[str, list[str]]:
    """The environment variables each model needs that are not set (empty: all set).

    A model name, or a `LiteLLMModel` without an endpoint or key, is checked by litellm
    (imported here: it takes seconds), which knows every provider's variables. A `LiteLLMModel`
    on an `Endpoint` needs the variables the endpoint names (none for a keyless one); one given
    its `api_key`, and any other `Model` (a fake), need none.
    """
    from delegate.agents.models import LiteLLMModel

    missing: dict[str, list[str]] = {}
    names: list[str] = []
    for model in models:
        if isinstance(model, str):
            names.append(model)
        elif isinstance(model, LiteLLMModel) and model.endpoint is not None:
            keys = model.endpoint.missing_env()
            if keys:
                known = missing.setdefault(model.name, [])
                known.extend(key for key in keys if key not in known)
        elif isinstance(model, LiteLLMModel) and not model.has_api_key:
            names.append(model.name)
    if not names:
        return missing
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
    import litellm

    for name in dict.fromkeys(names):
        try:
            report = litellm.validate_environment(model=name)
        except Exception:  # a model litellm cannot place: nothing to check
            continue
        keys = [str(key) for key in report.get("missing_keys") or ()]
        if keys:
            known = missing.setdefault(name, [])
            known.extend(key for key in keys if key not in known)
    return missing
