"""The workflow file format: pydantic models of a YAML workflow, and its JSON Schema.

A workflow is either static, a list of `steps` (each step one task for one agent, or a `kind:
plan` step that lets a planner expand a sub-goal), or planner mode: `planner`, `workers` and a
`goal`, planned at run time. Every model forbids unknown keys; every field has a description and
a default shown in the schema (`delegate schema`).

Field-level rules (types, ranges, name patterns) are the models' own. The rules across fields
(agent names, `needs`, cycles, templates, output schemas, tools, prices) are checked by
`WorkflowSpec`'s validator, all at once, in `delegate.workflows._checks`.

Templates (`prompt`, `goal`, `when`, `foreach`) are jinja2, rendered in the sandboxed prompt
environment with these names:

- `inputs.<name>`: the run's inputs;
- `steps.<id>.output`: a finished step's output (a structured output's fields are attributes: a
  foreach step's output is the list of its items' outputs; a plan step's output is text);
- `item`, `loop.index` (1-based), `loop.index0`, `loop.first`, `loop.last`, `loop.length`: in
  the prompt of a step with `foreach`.

`when` and `foreach` are one expression in `{{ }}`, evaluated to a value, not rendered to text:
`when: "{{ inputs.depth == 'deep' }}"`, `foreach: "{{ steps.angles.output.angles }}"`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StringConstraints,
    Tag,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from delegate.agents.limits import Budget
from delegate.agents.rate_limits import RateLimit
from delegate.orchestrator.graph import TASK_ID

__all__ = [
    "AGENT_NAME",
    "INPUT_NAME",
    "MAX_STEPS",
    "TOOL_PATH",
    "WORKFLOW_NAME",
    "AgentSpec",
    "AgentStep",
    "BudgetSpec",
    "InputSpec",
    "PlanStep",
    "Step",
    "WorkflowSpec",
    "workflow_json_schema",
]

WORKFLOW_NAME = r"^[a-z0-9][a-z0-9_-]{0,99}$"
INPUT_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
AGENT_NAME = r"^[A-Za-z0-9_.-]{1,100}$"  # Agent's own rule
TOOL_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"
MAX_STEPS = 1000  # more is a generated graph, better built in Python with TaskGraph

InputName = Annotated[str, StringConstraints(pattern=INPUT_NAME)]
AgentName = Annotated[str, StringConstraints(pattern=AGENT_NAME)]
StepId = Annotated[str, StringConstraints(pattern=TASK_ID.pattern)]
ToolPath = Annotated[str, StringConstraints(pattern=TOOL_PATH)]
ModelName = Annotated[str, StringConstraints(min_length=1, pattern=r"^\S+$")]
NonNegative = Annotated[float, Field(ge=0)]
InputType: TypeAlias = Literal["string", "integer", "number", "boolean", "array", "object"]

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class BudgetSpec(_Spec):
    """Limits on a run, an agent or a step; a missing limit is no limit (`delegate.Budget`)."""

    tokens: int | None = Field(
        None, ge=0, description="Input plus output tokens over all calls. Default: no limit."
    )
    usd: float | None = Field(
        None, ge=0, description="Dollars over all calls, at the models' prices. Default: no limit."
    )
    seconds: float | None = Field(None, ge=0, description="Wall-clock seconds. Default: no limit.")
    calls: int | None = Field(None, ge=0, description="Model calls. Default: no limit.")
    reserve_seconds: float = Field(
        0.0,
        ge=0,
        description="Seconds kept back from `seconds` for the final synthesis. Default: 0.",
    )

    @model_validator(mode="after")
    def _reserve_fits(self) -> Self:
        if self.seconds is not None and self.reserve_seconds > self.seconds:
            raise ValueError(
                f"reserve_seconds ({self.reserve_seconds:g}) is more than seconds "
                f"({self.seconds:g}); keep back less time than the whole budget"
            )
        return self

    def to_budget(self) -> Budget:
        """This budget as the `delegate.Budget` the orchestrator takes."""
        return Budget(
            tokens=self.tokens,
            usd=self.usd,
            seconds=self.seconds,
            calls=self.calls,
            reserve_seconds=self.reserve_seconds,
        )


class RateLimitSpec(_Spec):
    """A model's rate limits (`delegate.RateLimit`), shared by every agent that uses the model."""

    rpm: float | None = Field(None, ge=1, description="Requests per minute. Default: no limit.")
    tpm: float | None = Field(
        None, ge=1, description="Tokens per minute, prompt and output. Default: no limit."
    )

    @model_validator(mode="after")
    def _some_limit(self) -> Self:
        if self.rpm is None and self.tpm is None:
            raise ValueError("give rpm, tpm or both, e.g. {rpm: 500, tpm: 200000}")
        return self

    def to_rate_limit(self) -> RateLimit:
        """These limits as the `delegate.RateLimit` the orchestrator takes."""
        return RateLimit(rpm=self.rpm, tpm=self.tpm)


class InputSpec(_Spec):
    """A run input, read in templates as `inputs.<name>`."""

    type: InputType = Field("string", description="The value's JSON type. Default: string.")
    description: str = Field("", description="What the input is, for people and for `--help`.")
    default: Any = Field(
        None,
        description="The value when a run gives none; an input with a default is optional. "
        "Default: none.",
    )
    required: bool = Field(
        True, description="A run must give a value. Default: true, unless a default is given."
    )
    enum: list[Any] | None = Field(
        None, min_length=1, description="The only values allowed. Default: any value of the type."
    )

    @model_validator(mode="before")
    @classmethod
    def _optional_with_default(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "default" in data and "required" not in data:
            return {**data, "required": False}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if "default" in self.model_fields_set:
            if self.required:
                raise ValueError(
                    "an input with a default is optional: drop required: true, or the default"
                )
            self.check_value(self.default, "default")
        for value in self.enum or ():
            self.check_value(value, "enum value", check_enum=False)
        return self

    def check_value(self, value: Any, what: str = "value", *, check_enum: bool = True) -> None:
        """Raise ValueError unless `value` fits this input's type (and enum).

        Args:
            value: a value given for the input.
            what: how the message names it ("default", "value of input 'topic'").
            check_enum: check membership of `enum` too.
        """
        kinds = _PYTHON_TYPES[self.type]
        if (isinstance(value, bool) and self.type != "boolean") or not isinstance(value, kinds):
            raise ValueError(f"{what} {value!r} is not of type {self.type}")
        if check_enum and self.enum is not None and value not in self.enum:
            raise ValueError(
                f"{what} {value!r} is not one of {', '.join(repr(v) for v in self.enum)}"
            )


class AgentSpec(_Spec):
    """An agent: a model with instructions, tools and limits (`delegate.Agent`)."""

    model: ModelName = Field(
        description="A litellm model string, e.g. openai/gpt-4o-mini or anthropic/claude-haiku-4-5."
    )
    instructions: str = Field("", description="The system message. Default: none.")
    description: str = Field(
        "", description="What the agent is good at, shown to planners choosing workers."
    )
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = Field(
        None, description="For reasoning models. Default: the model's own."
    )
    max_output_tokens: int | None = Field(
        None, ge=1, description="A cap on each answer, reasoning included. Default: no cap."
    )
    temperature: float | None = Field(
        None, ge=0, description="Sampling temperature. Default: the model's own."
    )
    fallback: str | None = Field(
        None,
        description="The agent that takes over when this one's answer does not validate, it "
        "loops on tools, or the prompt overflows its context window. Default: none.",
    )
    cheaper: ModelName | None = Field(
        None,
        description="A model to send a call to instead when it does not fit the budgets on "
        "this agent's model. Default: none.",
    )
    max_concurrency: int | None = Field(
        None, ge=1, description="At most this many tasks of this agent at once. Default: no cap."
    )
    tools: list[ToolPath] = Field(
        [],
        description="Functions the model may call, as import paths `package.module:function`, "
        "from modules in the workflow's folder or installed packages. Default: none.",
    )
    memory: bool = Field(
        False,
        description="Give the agent the remember/recall/search_memory tools on the run's shared "
        "memory. Default: false.",
    )
    budget: BudgetSpec | None = Field(
        None, description="Limits on everything this agent spends in a run. Default: none."
    )
    verify: str | None = Field(
        None,
        description="An agent that judges each answer; a rejected answer is redone once with "
        "its feedback, then handed to the fallback. Default: none.",
    )
    votes: int = Field(
        1, ge=1, description="Answers sampled per task, the majority wins. Default: 1."
    )


class AgentStep(_Spec):
    """A step run by one agent: one task, or one task per item with `foreach`."""

    id: StepId = Field(
        description="Unique step id: letters, digits and `_ . : - [ ]`, at most 200 characters."
    )
    kind: Literal["agent"] = Field("agent", description="`agent` (the default) or `plan`.")
    agent: str = Field(description="The agent that runs the step.")
    prompt: str = Field(
        min_length=1,
        description="The task, a jinja2 template over inputs.<name>, steps.<id>.output and, "
        "with foreach, item and loop.",
    )
    needs: list[str] = Field(
        [],
        description="Steps (listed above this one) that must finish first. Steps the templates "
        "name are added. Default: none.",
    )
    foreach: str | None = Field(
        None,
        description="Fan out: one expression in {{ }} giving a list; one task per item, with "
        "`item` and `loop` in the prompt. Default: one task.",
    )
    output: dict[str, Any] | None = Field(
        None,
        description="A JSON Schema with type: object: the answer is structured and validated. "
        "Default: text.",
    )
    timeout: float | None = Field(None, gt=0, description="Seconds per attempt. Default: no limit.")
    retries: int | None = Field(
        None, ge=0, description="Retries after a transient failure. Default: the run's policy (2)."
    )
    when: str | None = Field(
        None,
        description="Run only if this expression in {{ }} is true, e.g. "
        "\"{{ inputs.depth == 'deep' }}\"; otherwise the step is skipped, and steps that need "
        "it see its output as null. Default: always.",
    )
    verify: str | None = Field(
        None, description="An agent that judges the answer. Default: the agent's verify."
    )
    votes: int | None = Field(
        None, ge=1, description="Answers sampled, the majority wins. Default: the agent's votes."
    )
    budget: BudgetSpec | None = Field(
        None, description="Limits on this step's calls. Default: none."
    )


class PlanStep(_Spec):
    """A step whose sub-goal a planner expands into tasks for its workers, at run time."""

    id: StepId = Field(
        description="Unique step id: letters, digits and `_ . : - [ ]`, at most 200 characters."
    )
    kind: Literal["plan"] = Field(description="`plan`: the planner expands the goal.")
    goal: str = Field(
        min_length=1,
        description="The sub-goal, a jinja2 template over inputs.<name> and steps.<id>.output.",
    )
    planner: str = Field(description="The agent that plans (a reasoning model).")
    workers: list[str] = Field(
        min_length=1, description="The agents the planner may give tasks to."
    )
    max_tasks: int = Field(
        20, ge=1, description="At most this many tasks in the plan. Default: 20."
    )
    needs: list[str] = Field(
        [],
        description="Steps (listed above this one) that must finish first. Default: none.",
    )
    when: str | None = Field(
        None,
        description="Run only if this expression in {{ }} is true; otherwise the step is "
        "skipped, and steps that need it see its output as null. Default: always.",
    )
    budget: BudgetSpec | None = Field(
        None, description="Limits on the planning and the planned tasks. Default: none."
    )


def _step_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        kind = value.get("kind", "agent")
        return kind if isinstance(kind, str) else repr(kind)
    return str(getattr(value, "kind", "agent"))


Step = Annotated[
    Annotated[AgentStep, Tag("agent")] | Annotated[PlanStep, Tag("plan")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message="kind must be 'agent' or 'plan'",
    ),
]


class WorkflowSpec(_Spec):
    """A workflow file: static `steps`, or planner mode (`planner`, `workers`, `goal`)."""

    name: str = Field(
        pattern=WORKFLOW_NAME,
        description="The workflow's name: lowercase letters, digits, '-' and '_'. Its runs share "
        "the workflow's memory namespace.",
    )
    description: str = Field("", description="What the workflow does.")
    inputs: dict[InputName, InputSpec] = Field(
        {}, description="The run's inputs by name. Default: none."
    )
    agents: dict[AgentName, AgentSpec] = Field(
        min_length=1, description="The agents by name: letters, digits, '_', '-' and '.'."
    )
    budget: BudgetSpec | None = Field(None, description="Limits on the whole run. Default: none.")
    memory: str | None = Field(
        None,
        pattern=r"^([A-Za-z][A-Za-z0-9+.-]*://.*|:memory:)$",
        description="The database that keeps runs and shared memory (a SQLAlchemy URL such as "
        "sqlite:///runs.db). Default: $DELEGATE_DB_URL, else $DELEGATE_HOME/delegate.db.",
    )
    prices: dict[ModelName, tuple[NonNegative, NonNegative]] = Field(
        {},
        description="USD per million [input, output] tokens by model, for models litellm does "
        "not price or to override it. Default: litellm's prices.",
    )
    rate_limits: dict[ModelName, RateLimitSpec] = Field(
        {},
        description="Requests and tokens per minute by model, {rpm, tpm}: requests to the model "
        "wait their turn rather than meet the provider's 429s. Default: none.",
    )
    max_concurrency: int | None = Field(
        None, ge=1, description="How many tasks run at once. Default: 16."
    )
    output: str | None = Field(
        None,
        description="The id of the step whose output is the run's output. Default: the "
        "last step's.",
    )
    steps: list[Step] | None = Field(
        None,
        min_length=1,
        max_length=MAX_STEPS,
        description="Static mode: the steps, each after the steps it needs (a foreach step fans "
        "out at run time, so one step can be many tasks).",
    )
    planner: str | None = Field(None, description="Planner mode: the agent that plans.")
    workers: list[str] | None = Field(
        None, min_length=1, description="Planner mode: the agents the planner gives tasks to."
    )
    goal: str | None = Field(
        None, min_length=1, description="Planner mode: the goal, a template over inputs.<name>."
    )
    max_replans: int = Field(
        2, ge=0, description="Planner mode: new plans after failures. Default: 2."
    )
    max_tasks: int = Field(
        20, ge=1, description="Planner mode: at most this many tasks per plan. Default: 20."
    )
    synthesizer: str | None = Field(
        None,
        description="Planner mode: the agent that combines the task outputs into the answer. "
        "Default: the planner.",
    )
    judge_goal: bool = Field(
        False,
        description="Planner mode: ask the planner whether the answer meets the goal, and replan "
        "(within max_replans) if not. Default: false.",
    )

    _implicit_needs: dict[str, tuple[str, ...]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check_across_fields(self, info: ValidationInfo) -> Self:
        from delegate.workflows._checks import check_workflow

        context = info.context if isinstance(info.context, Mapping) else {}
        base_dir = context.get("base_dir")
        report = check_workflow(
            self.model_dump(exclude_unset=True),
            base_dir=Path(base_dir) if base_dir is not None else Path.cwd(),
        )
        if report.issues:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "workflow",
                            "{message}",
                            {"message": issue.message, "key": issue.key, "line": issue.line},
                        ),
                        loc=issue.loc,
                        input=None,
                    )
                    for issue in report.issues
                ],
            )
        self._implicit_needs = report.implicit_needs
        return self

    @property
    def mode(self) -> Literal["steps", "planner"]:
        """ "steps" for a static workflow, "planner" for planner mode."""
        return "steps" if self.steps is not None else "planner"

    @property
    def implicit_needs(self) -> Mapping[str, tuple[str, ...]]:
        """Per step id, the steps its templates name that its `needs` does not list."""
        return self._implicit_needs

    def needs_of(self, step_id: str) -> tuple[str, ...]:
        """Every step `step_id` depends on: its `needs`, then the ones its templates name.

        Raises:
            KeyError: no step has this id.
        """
        for step in self.steps or ():
            if step.id == step_id:
                return (*step.needs, *self._implicit_needs.get(step_id, ()))
        raise KeyError(step_id)


def workflow_json_schema() -> dict[str, Any]:
    """The JSON Schema of workflow files, for editors (`# yaml-language-server: $schema=...`)."""
    schema = WorkflowSpec.model_json_schema()
    return {
        "$schema": SCHEMA_URL,
        "title": "delegate workflow",
        "description": "A delegate workflow file: static steps, or planner mode (planner, "
        "workers, goal). Validate with `delegate validate FILE`.",
        **{key: value for key, value in schema.items() if key not in ("title", "description")},
    }
