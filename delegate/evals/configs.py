"""What an evaluation compares: `Configuration`s, each a way of answering a case.

- `Configuration.workflow(path)`: a workflow file, run with the case's inputs;
- `Configuration.orchestrator(orch, goal)`: `orch.run(goal, inputs)`, the goal a template over
  the case's inputs (`{{ inputs.question }}`);
- `Configuration.function(fn)`: any Python callable of the inputs (sync or async);
- `Configuration.planner_only(model, prompt)`: the baseline — the same task answered by one
  model in one call (`planner_only_of(workflow)` builds it from a workflow: its planner's
  model, else its priciest, given the workflow's task).

Each case runs as its own run. The runs of a configuration share its orchestrator, in a store
of the evaluation's own (a temporary SQLite file, not the home store).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread

from delegate.agents.agent import Agent, AgentResult
from delegate.agents.models import Model, Price
from delegate.errors import ConfigError
from delegate.evals import _budget
from delegate.testing import SimulatedPace

if TYPE_CHECKING:
    from delegate.orchestrator.events import Event
    from delegate.orchestrator.run import Orchestrator, RunResult
    from delegate.workflows.runtime import CompiledWorkflow

__all__ = ["Answer", "Configuration", "ConfigurationKind", "planner_only_of"]

ConfigurationKind = Literal["workflow", "orchestrator", "function", "planner_only"]

_BASELINE_INSTRUCTIONS = "Answer the task completely and accurately in one reply."


@dataclass(slots=True)
class Answer:
    """What a configuration made of one case.

    Attributes:
        output: the answer (None when it failed).
        error: why it failed (None when it succeeded).
        seconds: how long it took: wall-clock, or under simulation the simulated seconds at
            the models' pace.
        usage_usd: the cost the configuration reported itself (a run's usage), when known.
        calls: model calls it reported itself, when known.
    """

    output: Any = None
    error: str | None = None
    seconds: float = 0.0
    usage_usd: float | None = None
    calls: int | None = None


@dataclass(eq=False)
class Configuration:
    """One way of answering the cases of a dataset; build it with a class method.

    Attributes:
        name: how reports name it (unique in an evaluation).
        kind: "workflow", "orchestrator", "function" or "planner_only".
        simulated: its models are simulated: its quality numbers mean nothing.
    """

    name: str
    kind: ConfigurationKind
    simulated: bool = False
    _run: Callable[[dict[str, Any]], Awaitable[Answer]] | None = field(
        default=None, init=False, repr=False
    )
    _orchestrator: Orchestrator | None = field(default=None, init=False, repr=False)
    _prices: dict[str, Price | None] = field(default_factory=dict, init=False, repr=False)
    _open: Callable[[str], None] | None = field(default=None, init=False, repr=False)
    _held: list[tuple[Agent[Any], Model, Model | None]] = field(
        default_factory=list, init=False, repr=False
    )
    compiled: CompiledWorkflow | None = field(default=None, init=False, repr=False)
    """A workflow configuration's compiled workflow, once prepared."""
    models: list[Model] = field(default_factory=list, init=False, repr=False)
    """The models it calls, as far as known before it runs (the planner-only baseline's)."""

    # -- builders ------------------------------------------------------------------------------

    @classmethod
    def workflow(
        cls,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        simulate: bool = False,
        seed: int = 0,
        time_scale: float = 0.0,
    ) -> Configuration:
        """A workflow file, run with each case's inputs.

        Args:
            path: the workflow file.
            name: the configuration's name (default: the file's name without its suffix).
            simulate: every model a `SimulatedModel` (nothing is sent); latency is then the
                simulated seconds at the models' pace.
            seed: the simulation's seed.
            time_scale: with `simulate`, the share of the simulated latencies to wait.

        Raises:
            WorkflowError: the file has problems.
        """
        from delegate.workflows import load_workflow

        loaded = load_workflow(path)
        config = cls(name or Path(path).stem, "workflow", simulated=simulate)
        config._open = functools.partial(config._compile, loaded, simulate, seed, time_scale)
        return config

    @classmethod
    def orchestrator(
        cls, orch: Orchestrator, goal: str, *, name: str = "orchestrator"
    ) -> Configuration:
        """`orch.run(goal, inputs)` for each case, `goal` a template over the case's inputs
        ("Summarize {{ inputs.text }}"). The orchestrator needs a planner.

        Raises:
            ConfigError: `orch` has no planner, or `goal` is empty.
        """
        if getattr(orch, "planner", None) is None:
            raise ConfigError(
                f"configuration {name!r}: the orchestrator has no planner, so it cannot run a "
                "goal; give Orchestrator(planner=...), or wrap your graph in "
                "Configuration.function"
            )
        if not goal or not goal.strip():
            raise ConfigError(f"configuration {name!r}: give the goal to run for each case")
        config = cls(name, "orchestrator")
        config._open = lambda db: config._attach(orch)

        async def run(inputs: dict[str, Any]) -> Answer:
            from delegate.orchestrator.graph import PROMPT_ENV

            text = PROMPT_ENV.from_string(goal).render({"inputs": inputs})
            began = anyio.current_time()
            result = await orch.run(text, inputs)
            return _of_run(result, anyio.current_time() - began)

        config._run = run
        return config

    @classmethod
    def function(
        cls, fn: Callable[[dict[str, Any]], Any], *, name: str | None = None
    ) -> Configuration:
        """`fn(inputs)` for each case: its return value is the output (a `RunResult` or
        `AgentResult` is unwrapped, its usage counted). A sync `fn` runs in a worker thread.

        Calls made through an `Orchestrator` that `fn` builds are not held to the evaluation's
        budget; use `Configuration.orchestrator` or a workflow for that.
        """
        if not callable(fn):
            raise ConfigError(f"Configuration.function takes a callable, got {type(fn).__name__}")
        config = cls(name or str(getattr(fn, "__name__", "function")), "function")

        async def run(inputs: dict[str, Any]) -> Answer:
            began = anyio.current_time()
            if inspect.iscoroutinefunction(fn):
                value = await fn(inputs)
            else:
                context = contextvars.copy_context()
                value = await anyio.to_thread.run_sync(context.run, fn, inputs)
                if inspect.isawaitable(value):
                    value = await value
            return _of_value(value, anyio.current_time() - began)

        config._run = run
        return config

    @classmethod
    def planner_only(
        cls,
        model: str | Model | Agent[Any],
        prompt: str,
        *,
        instructions: str = _BASELINE_INSTRUCTIONS,
        output_schema: Mapping[str, Any] | None = None,
        name: str = "planner-only",
        simulate: bool = False,
        seed: int = 0,
        time_scale: float = 0.0,
    ) -> Configuration:
        """The baseline: one model answers each case in one call (re-asked once if a
        structured answer does not validate), `prompt` a template over the case's inputs.

        Args:
            model: the model (a litellm string or a `Model`), or an `Agent` whose model it is.
            prompt: the task, e.g. "Extract the invoice's fields: {{ inputs.document }}".
            instructions: the system message.
            output_schema: a JSON Schema (type: object) the answer must follow.
            name: the configuration's name.
            simulate, seed, time_scale: a `SimulatedModel` instead of the real one.
        """
        from delegate.testing import simulate as simulated

        if isinstance(model, Agent):
            model = model.model
        if simulate:
            model = simulated(model, seed=seed, time_scale=time_scale)
        output_type = None
        if output_schema is not None:
            from delegate.workflows.outputs import output_model

            output_type = output_model(output_schema, "Answer")
        agent: Agent[Any] = Agent(
            "planner-only", model, instructions=instructions, output_type=output_type
        )
        config = cls(name, "planner_only", simulated=simulate)
        config._prices = {agent.model.name: agent.model.price}
        config.models = [agent.model]

        async def run(inputs: dict[str, Any]) -> Answer:
            from delegate.orchestrator.graph import PROMPT_ENV

            text = PROMPT_ENV.from_string(prompt).render({"inputs": inputs})
            began = anyio.current_time()
            result = await agent.run(text, caller=_budget.eval_caller())
            spend = _budget.current()
            seconds = anyio.current_time() - began
            if simulate and spend is not None:
                seconds = spend.model_seconds
            return Answer(output=result.output, seconds=seconds)

        config._run = run
        return config

    # -- what evaluate() uses -------------------------------------------------------------------

    def prepare(self, db: str, budget: _budget.EvalBudget) -> None:
        """Build what runs the cases (a workflow is compiled now, its store at `db`), and tell
        `budget` its models' prices."""
        if self._open is not None:
            self._open(db)
        budget.learn_prices(self._prices)

    async def answer(self, inputs: dict[str, Any]) -> Answer:
        """Run one case's inputs; a failure is an `Answer` with its error, never raised
        (cancellation is)."""
        if self._run is None:
            raise ConfigError(f"configuration {self.name!r} was not prepared")
        from delegate._log import redact_text

        try:
            return await self._run(inputs)
        except Exception as exc:
            return Answer(error=redact_text(f"{type(exc).__name__}: {exc}")[:2_000])

    async def aclose(self) -> None:
        """Give an orchestrator's agents their own models back; close the store a workflow's
        orchestrator opened."""
        for agent, model, cheaper in self._held:
            agent.model, agent.cheaper = model, cheaper
        self._held.clear()
        if self.kind == "workflow" and self._orchestrator is not None:
            await self._orchestrator.aclose()

    # -- workflows ------------------------------------------------------------------------------

    def _attach(self, orch: Orchestrator) -> None:
        """Hold every model of `orch`'s agents to the evaluation's budget (`HeldModel`)."""
        self._orchestrator = orch
        for agent in _agents_of(orch):
            if isinstance(agent.model, _budget.HeldModel):
                continue
            self._held.append((agent, agent.model, agent.cheaper))
            for model in (agent.model, agent.cheaper):
                if model is not None:
                    self._prices.setdefault(model.name, orch.prices.get(model.name) or model.price)
            agent.model = _budget.HeldModel(agent.model)
            if agent.cheaper is not None:
                agent.cheaper = _budget.HeldModel(agent.cheaper)

    def _compile(self, loaded: Any, simulate: bool, seed: int, time_scale: float, db: str) -> None:
        from delegate.workflows.runtime import compile_workflow, run_workflow

        pace = _CasePace() if simulate else None
        compiled = compile_workflow(
            loaded, simulate=simulate, seed=seed, db=db, time_scale=time_scale, pace=pace
        )
        self._attach(compiled.orchestrator)
        self.compiled = compiled

        async def run(inputs: dict[str, Any]) -> Answer:
            own = SimulatedPace()
            if pace is not None:
                own.waits = pace.waits
            token = _PACE.set(own)
            try:
                began = anyio.current_time()
                result = await run_workflow(compiled, inputs)
                seconds = anyio.current_time() - began
            finally:
                _PACE.reset(token)
            if pace is not None:
                seconds = own.run_seconds(result)
            return _of_run(result, seconds)

        self._run = run


def _agents_of(orch: Orchestrator) -> list[Agent[Any]]:
    found: list[Agent[Any]] = []
    pending: list[Agent[Any] | None] = [*orch.workers.values(), orch.planner, orch.synthesizer]
    while pending:
        agent = pending.pop()
        if agent is None or any(agent is seen for seen in found):
            continue
        found.append(agent)
        pending.extend([agent.fallback, agent.verify])
    return found


def _of_run(result: RunResult[Any], seconds: float) -> Answer:
    error = None
    if result.status != "succeeded":
        error = f"the run ended {result.status}" + (f": {result.error}" if result.error else "")
    return Answer(
        output=result.output if error is None else None,
        error=error,
        seconds=seconds,
        usage_usd=result.usage.cost_usd,
        calls=result.usage.calls,
    )


def _of_value(value: Any, seconds: float) -> Answer:
    from delegate.orchestrator.run import RunResult

    if isinstance(value, RunResult):
        return _of_run(value, seconds)
    if isinstance(value, AgentResult):
        return Answer(
            output=value.output,
            seconds=seconds,
            usage_usd=value.usage.cost_usd,
            calls=value.usage.calls,
        )
    return Answer(output=value, seconds=seconds)


# -- simulated pace, per case ---------------------------------------------------------------

_PACE: contextvars.ContextVar[SimulatedPace | None] = contextvars.ContextVar(
    "delegate_eval_pace", default=None
)


class _CasePace(SimulatedPace):
    """The pace a compiled workflow's models record into, passed on to the pace of the case
    being run (cases run at once, and their tasks have the same ids)."""

    def __call__(self, event: Event) -> None:
        own = _PACE.get()
        if own is not None:
            own(event)

    def record(self, seconds: float) -> None:
        own = _PACE.get()
        if own is not None:
            own.record(seconds)


# -- the baseline of a workflow -------------------------------------------------------------


def planner_only_of(
    compiled: CompiledWorkflow,
    *,
    model: str | None = None,
    simulate: bool = False,
    seed: int = 0,
    time_scale: float = 0.0,
) -> Configuration:
    """The planner-only baseline of a workflow: its task answered by one model in one call.

    The model is `model`, else the workflow's planner's, else its priciest (by output price).
    The task is the goal (planner mode), else the step whose output is the workflow's output:
    its agent's instructions and its prompt, with its output schema; when that prompt needs
    other steps' outputs, the workflow's description and the inputs as JSON instead.

    Raises:
        ConfigError: no model is named and none of the workflow's has a known price.
    """
    spec = compiled.spec
    chosen = _baseline_model(compiled, model)
    if spec.mode == "planner":
        return Configuration.planner_only(
            chosen, spec.goal or "", simulate=simulate, seed=seed, time_scale=time_scale
        )
    from delegate.workflows.spec import AgentStep

    steps = [step for step in spec.steps or () if isinstance(step, AgentStep)]
    last = next((s for s in steps if s.id == spec.output), steps[-1] if steps else None)
    instructions, schema = _BASELINE_INSTRUCTIONS, None
    prompt = f"{spec.description}\n\nInputs:\n{{{{ inputs | tojson }}}}"
    if last is not None:
        schema = last.output
        if "steps." not in last.prompt and last.foreach is None:
            prompt = last.prompt
            instructions = spec.agents[last.agent].instructions or instructions
    return Configuration.planner_only(
        chosen,
        prompt,
        instructions=instructions,
        output_schema=schema,
        simulate=simulate,
        seed=seed,
        time_scale=time_scale,
    )


def _baseline_model(compiled: CompiledWorkflow, model: str | None) -> str | Model:
    agents = compiled.agents
    spec = compiled.spec
    if model is not None:  # the workflow's own model object (its endpoint, its price) if it has one
        for agent in agents.values():
            if agent.model.name == model:
                return _real(compiled, agent.name)
        return model
    if spec.planner is not None:
        return _real(compiled, spec.planner)
    priced = [
        (agent.model.price.output_per_mtok, name)
        for name, agent in agents.items()
        if agent.model.price is not None
    ]
    if not priced:
        raise ConfigError(
            f"workflow {spec.name!r}: none of its models has a known price, so the planner-only "
            "baseline cannot be chosen; name its model (--planner MODEL)"
        )
    return _real(compiled, max(priced)[1])


def _real(compiled: CompiledWorkflow, agent: str) -> str | Model:
    """The model of `agent` as the workflow file gives it (simulated or not)."""
    from delegate.workflows._models import agent_model

    spec = compiled.spec
    return agent_model(spec, agent, spec.agents[agent].model, "model")
