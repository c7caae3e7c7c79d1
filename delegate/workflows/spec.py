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
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, TypeAlias

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
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from delegate.agents.limits import Budget
from delegate.agents.rate_limits import RateLimit
from delegate.orchestrator.graph import TASK_ID
from delegate.orchestrator.routing import LearnedRouting
from delegate.workflows._settings import (
    AdaptiveVotesSpec,
    BestOfNSpec,
    MixtureOfAgentsSpec,
    SelfRefineSpec,
    StrategySpec,
    Votes,
)

if TYPE_CHECKING:
    from delegate.agents.mcp import MCPServer

__all__ = [
    "AGENT_NAME",
    "ENDPOINT_NAME",
    "ENV_NAME",
    "HEADER_NAME",
    "INPUT_NAME",
    "MAX_STEPS",
    "TOOL_PATH",
    "WORKFLOW_NAME",
    "AdaptiveVotesSpec",
    "AgentSpec",
    "AgentStep",
    "BestOfNSpec",
    "BudgetSpec",
    "EndpointSpec",
    "InputSpec",
    "MCPServerSpec",
    "MixtureOfAgentsSpec",
    "PlanStep",
    "SelfRefineSpec",
    "Step",
    "StrategySpec",
    "Votes",
    "WorkflowSpec",
    "workflow_json_schema",
]

WORKFLOW_NAME = r"^[a-z0-9][a-z0-9_-]{0,99}$"
INPUT_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
AGENT_NAME = r"^[A-Za-z0-9_.-]{1,100}$"  # Agent's own rule
ENDPOINT_NAME = r"^[A-Za-z0-9_.-]{1,100}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,199}$"
HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,200}$"
TOOL_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"
MAX_STEPS = 1000  # more is a generated graph, better built in Python with TaskGraph

InputName = Annotated[str, StringConstraints(pattern=INPUT_NAME)]
AgentName = Annotated[str, StringConstraints(pattern=AGENT_NAME)]
EndpointName = Annotated[str, StringConstraints(pattern=ENDPOINT_NAME)]
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


EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME)]
HeaderName = Annotated[str, StringConstraints(pattern=HEADER_NAME)]
PriceSpec: TypeAlias = tuple[NonNegative, NonNegative]


class EndpointSpec(_Spec):
    """A server that answers models' requests (`delegate.Endpoint`): your own (Ollama, vLLM,
    LM Studio, llama.cpp's server, a proxy) or a provider's non-default address."""

    base_url: str = Field(
        description="The server's base URL, e.g. http://127.0.0.1:8000/v1 (vLLM) or "
        "http://127.0.0.1:11434 (Ollama)."
    )
    api_key_env: EnvName | None = Field(
        None,
        description="The environment variable holding the server's key (its name, never the "
        "key). Default: none — a keyless server; the provider's key is not sent to it.",
    )
    api_version: str | None = Field(
        None, min_length=1, description="The API version the provider asks for (Azure OpenAI)."
    )
    headers_env: dict[HeaderName, EnvName] = Field(
        {},
        description="Extra headers: header name → the environment variable holding its value "
        "(read at each call, never shown). Default: none.",
    )
    price: PriceSpec | None = Field(
        None,
        description="USD per million [input, output] tokens of the models it serves; [0, 0] for "
        "a self-hosted model. Default: litellm's price for the model, if it has one (an unknown "
        "price is never taken as free).",
    )


MCPServerName = Annotated[str, StringConstraints(pattern=AGENT_NAME)]  # MCPServer's own rule
STDIO_KEYS = ("args", "env", "env_from", "cwd")  # the keys that go with command: only


class MCPServerSpec(_Spec):
    """An MCP server whose tools agents may call: a command spoken to over stdio
    (`delegate.MCPServerStdio`) or a streamable HTTP URL (`delegate.MCPServerHTTP`). It starts
    once per run, when a task first needs it, and stops when the run ends."""

    command: str | None = Field(
        None,
        min_length=1,
        description="The program that runs the server (stdio), e.g. npx or uvx; give command: "
        "or url:.",
    )
    args: list[str] = Field([], description="The command's arguments. Default: none.")
    env: dict[EnvName, str] = Field(
        {},
        description="Environment variables for the command, as written (masked in logs). The "
        "host's other variables are not passed. Default: none.",
    )
    env_from: dict[EnvName, EnvName] = Field(
        {},
        description="Environment variables for the command, each read from a variable of the "
        "host: {GITHUB_TOKEN: MY_GITHUB_TOKEN} (names only, never values). Default: none.",
    )
    cwd: str | None = Field(
        None,
        min_length=1,
        description="The folder the command runs in, relative to the workflow's. Default: the "
        "current folder.",
    )
    url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="The server's streamable HTTP endpoint, e.g. http://127.0.0.1:8000/mcp; give "
        "command: or url:.",
    )
    headers_env: dict[HeaderName, EnvName] = Field(
        {},
        description="With url: headers, each read from an environment variable: "
        "{Authorization: DOCS_AUTH} (the variable holds the whole value). Default: none.",
    )
    tools: list[Annotated[str, StringConstraints(min_length=1)]] | None = Field(
        None,
        min_length=1,
        description="Only these of the server's tools are offered (its names). Default: all.",
    )
    prefix: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_-]{0,32}$",
        description="Put before each tool's name, e.g. github_, when two servers (or a Python "
        "tool) would offer the same name. Default: none.",
    )
    timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds for each tool call (the run's deadline cuts it). Default: 30.",
    )
    start_timeout: float = Field(
        60.0, gt=0, description="Seconds to start the server and list its tools. Default: 60."
    )
    requires_approval: bool | list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        False,
        description="true, or the server's tools whose calls a human approves first: the task "
        "waits, the run ends `waiting`. Default: false.",
    )

    def to_server(self, name: str, base_dir: Path) -> MCPServer:
        """This server as the `MCPServerStdio` or `MCPServerHTTP` agents are given, its
        `env_from` read from the environment now.

        Raises:
            ConfigError: a variable `env_from` names is not set.
        """
        import os

        from delegate.agents.mcp import MCPServerHTTP, MCPServerStdio
        from delegate.errors import ConfigError

        approval = self.requires_approval
        common: dict[str, Any] = {
            "name": name,
            "tools": self.tools,
            "prefix": self.prefix,
            "timeout": self.timeout,
            "start_timeout": self.start_timeout,
            "requires_approval": approval if isinstance(approval, bool) else list(approval),
        }
        if self.url is not None:
            return MCPServerHTTP(self.url, headers_env=self.headers_env, **common)
        env = dict(self.env)
        for variable, host in self.env_from.items():
            value = os.environ.get(host)
            if value is None:
                raise ConfigError(
                    f"MCP server {name!r}: env_from gives {variable} the value of ${host}, which "
                    f"is not set; export {host}"
                )
            env[variable] = value
        cwd = None if self.cwd is None else base_dir / self.cwd
        return MCPServerStdio(str(self.command), self.args, env, cwd, **common)


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
    approve_tools: list[ToolPath] = Field(
        [],
        description="Tools (import paths, like tools:) the model may call only once a human "
        "approves each call: the task waits, the run ends `waiting`, and `delegate approve` "
        "then `delegate resume` go on. Listed here, a tool need not be in tools:. Default: none.",
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
    votes: Votes = Field(
        1,
        description="Answers sampled per task, the majority wins: a number, or {max_samples, "
        "confidence, ...} to stop sampling once the majority is settled. Default: 1.",
    )
    strategy: StrategySpec | None = Field(
        None,
        description="The strategy of the steps this agent runs (a step's own votes or strategy "
        "replaces it): {best_of_n: {n, judge}}, {mixture_of_agents: {proposers, aggregator}} "
        "or {self_refine: {rounds, critic}}. Not with votes. Default: none.",
    )
    endpoint: str | None = Field(
        None,
        description="The server (a name under endpoints:) that serves this agent's models, "
        "model and cheaper. Default: the provider's own.",
    )
    base_url: str | None = Field(
        None,
        description="Instead of endpoint: the base URL of the server that serves this agent's "
        "models, e.g. http://127.0.0.1:8000/v1. Default: the provider's own.",
    )
    api_key_env: EnvName | None = Field(
        None,
        description="With base_url: the environment variable holding the server's key. Default: "
        "none (a keyless server).",
    )
    price: PriceSpec | None = Field(
        None,
        description="USD per million [input, output] tokens of this agent's model; before its "
        "endpoint's price and litellm's. Default: the endpoint's, else litellm's.",
    )
    mcp: list[MCPServerName] | dict[MCPServerName, list[str]] = Field(
        [],
        description="MCP servers (names under mcp_servers:) whose tools the model may call: "
        "[github, docs], or {github: [search_issues]} to offer only some tools. Default: none.",
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
    votes: Votes | None = Field(
        None,
        description="Answers sampled, the majority wins: a number, or {max_samples, confidence, "
        "...} to stop sampling once the majority is settled. Default: the agent's votes.",
    )
    strategy: StrategySpec | None = Field(
        None,
        description="Spend more calls on a better answer: {best_of_n: {n, judge}}, "
        "{mixture_of_agents: {proposers, aggregator}} or {self_refine: {rounds, critic}}. Not "
        "with votes. Default: the agent's strategy, else one answer.",
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
    endpoints: dict[EndpointName, EndpointSpec] = Field(
        {},
        description="Servers that answer models' requests, by name; an agent names one with "
        "endpoint:. Default: none.",
    )
    mcp_servers: dict[MCPServerName, MCPServerSpec] = Field(
        {},
        description="MCP servers whose tools agents may call (agents list them with mcp:), by "
        "name: {command:, args:, env:, env_from:} or {url:, headers_env:}. Default: none.",
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
    routing: LearnedRouting | None = Field(
        None,
        description="learned (or {target, explore_share, namespace, seed}): run each verified "
        "step on the cheapest tier of its agent's fallback chain (and effort) that its past "
        "runs say passes verification often enough (target, default 0.9); exploration is "
        "bounded by explore_share (default 0.05) of the budget. Needs a judge (verify). "
        "Default: off.",
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

    @field_validator("routing", mode="before")
    @classmethod
    def _routing_word(cls, value: Any) -> Any:
        return LearnedRouting() if value == "learned" else value

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
