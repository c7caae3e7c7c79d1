"""Agent: a model with instructions, tools, an output type, and a fallback.

`Agent.run(prompt)` is one unit of work: it sends the instructions and the prompt, runs the tools
the model asks for (the calls of one round concurrently) for at most `max_tool_rounds` rounds, and,
with an `output_type`, validates the answer — re-asking once with the validation error, then
escalating to `fallback`::

    class Verdict(BaseModel):
        label: Literal["spam", "ham"]
        confidence: float

    strong = Agent("strong", "openai/gpt-4o", output_type=Verdict)
    judge = Agent("judge", "openai/gpt-4o-mini", output_type=Verdict, fallback=strong)
    result = await judge.run("Is 'WIN A FREE CRUISE' spam?")
    result.output.label, result.usage.cost_usd, result.agent   # "spam", 0.0002, "judge"

Every model call goes through a `ModelCaller` (by default straight to `model.request`); the
orchestrator passes its own to reserve budget, rate-limit and account each call. Transient model
errors are not handled here: they propagate to the scheduler, which retries the task, unless the
agent's model retries them itself (`RetryModel`). Falling back to another *model* on a provider's
error is `FallbackModel`'s; `fallback=` is the agent-level escalation, which re-runs the whole
conversation on another agent (see `delegate.agents.wrappers` for why both exist).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import typing
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeAlias

import anyio
import pydantic
from typing_extensions import TypeVar

from delegate._log import bind_model, get_logger
from delegate._sync import syncify
from delegate.agents.approval import (
    ApprovalDesk,
    Approve,
    Deny,
    PausedRound,
    RoundCall,
    current_desk,
)
from delegate.agents.limits import Budget
from delegate.agents.mcp import MCPServer, mcp_servers_open, mcp_tools, needs_mcp_pool
from delegate.agents.models import (
    _NO_USAGE,
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    ReasoningEffort,
    ToolCall,
    ToolDefinition,
    Usage,
)
from delegate.agents.tools import Tool, validation_summary
from delegate.errors import (
    ApprovalPending,
    ConfigError,
    ContextWindowExceededError,
    OutputValidationError,
    ToolLoopError,
    did_you_mean,
)

if TYPE_CHECKING:
    from delegate.orchestrator.strategies import AdaptiveVotes

__all__ = [
    "Agent",
    "AgentResult",
    "ModelCaller",
    "ToolHook",
    "VoteRecord",
    "judge_problem",
    "observing_tools",
    "with_output_type",
]

log = get_logger("delegate.agent")

OutputT = TypeVar("OutputT", covariant=True, default=str)
"""What an agent answers with: `str`, or its `output_type` (a pydantic model)."""
ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)

_AGENT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_EFFORTS: tuple[str, ...] = typing.get_args(ReasoningEffort)
# What a fallback agent can fix: a stronger model may follow the schema, stop calling tools, or
# have a larger context window. Transient errors are the scheduler's (or a RetryModel's) to retry;
# a provider's errors are a FallbackModel's to route around; other permanent errors (bad request,
# credentials) would fail the same way on any model.
_ESCALATE = (OutputValidationError, ToolLoopError, ContextWindowExceededError)


class ModelCaller(Protocol):
    """How an agent sends each model call; the orchestrator's accounts usage and budgets.

    Called as `await caller(agent, model, request)` for every call an agent makes, in order,
    including tool rounds, re-asks, and the calls of its fallback (with the fallback as `agent`).
    """

    async def __call__(
        self, agent: Agent[Any], model: Model, request: ModelRequest
    ) -> ModelResponse:
        """Send `request` to `model` on behalf of `agent` and return the response."""
        ...


async def _call_model(agent: Agent[Any], model: Model, request: ModelRequest) -> ModelResponse:
    """The default `ModelCaller`: send the request straight to the model."""
    return await model.request(request)


VoteStop: TypeAlias = Literal["confident", "unanimous", "max_samples", "budget"]
"""Why a vote stopped sampling (see `VoteRecord`)."""


@dataclass(frozen=True, slots=True)
class VoteRecord:
    """How a task's answer was voted on (`votes=`), as `TaskResult.vote` and the "vote" event
    tell it.

    Attributes:
        samples: the answers sampled (and tallied).
        agreement: the share of them that gave the leading answer (from 0 to 1; structured
            answers are compared whole here, though the answer kept is merged field by field).
        stopped: why sampling stopped: "unanimous" (every sample agreed and the stopping rule
            was met, or a fixed number of samples all agreed), "confident" (the leader could no
            longer lose at the chosen confidence), "max_samples" (the most allowed were asked),
            or "budget" (the budget left could not pay for another sample).
    """

    samples: int
    agreement: float
    stopped: VoteStop


@dataclass(frozen=True, slots=True)
class AgentResult(Generic[OutputT]):
    """What an agent run produced.

    Attributes:
        output: the answer: the text, or an `output_type` instance for a structured agent.
        text: the raw text of the final answer.
        usage: tokens and cost summed over every call: tool rounds, re-asks, the fallback's calls.
        calls: how many model calls the run made and got an answer to, the fallback's included
            (a call that raised is not counted).
        agent: the name of the agent that gave the final answer (the fallback's when escalated).
        model: the name of the model that gave the final answer.
        vote: how the answer was voted on, when it was (`votes=` in an orchestrator run).
    """

    output: OutputT
    text: str
    usage: Usage
    calls: int
    agent: str
    model: str
    vote: VoteRecord | None = None


@dataclass(slots=True)
class _Run:
    """The state of one `Agent.run`: the conversation so far and what it has spent."""

    caller: ModelCaller
    messages: list[Message]
    tools: Mapping[str, Tool]  # (read only: a run without extra tools shares the agent's own)
    definitions: tuple[ToolDefinition, ...]
    usage: Usage = _NO_USAGE  # (frozen: the one shared zero, which `+` recognizes at once)
    calls: int = 0
    tool_rounds: int = 0
    answered_by: str = ""  # the model that gave the latest answer (a budget may reroute)
    max_output_tokens: int | None = None  # the agent's own, or this run's override
    reasoning_effort: ReasoningEffort | None = None


class Agent(Generic[OutputT]):
    """A model with instructions, tools, an optional structured output type, and a fallback.

    Args:
        name: identifies the agent in plans, logs and usage reports: letters, digits, `_`, `-`, `.`.
        model: a litellm model string ("openai/gpt-4o-mini") or any `Model` (e.g. a fake from
            `delegate.testing`).
        instructions: the system message; none is sent when empty.
        description: what the agent is for, shown to the planner.
        tools: functions (sync or async, typed) or `Tool`s the model may call, and MCP servers
            (`MCPServerStdio`, `MCPServerHTTP`) whose tools it may call: a server starts when
            a run first needs it, is listed once, and stops when the run ends.
        output_type: a pydantic model the answer must validate against (structured output); None
            for plain text.
        reasoning_effort: "minimal", "low", "medium" or "high", for reasoning models.
        max_output_tokens: a hard cap on each answer, reasoning included.
        fallback: the agent that takes over when this one's answer does not validate after a
            re-ask, it calls tools past `max_tool_rounds`, or the prompt overflows its context
            window. It must have the same `output_type`.
        max_concurrency: at most this many runs of this agent at once (enforced by the scheduler).
        max_tool_rounds: the model may ask for tools this many times in one run; the answer after
            the last round must be final, so a run makes at most `max_tool_rounds + 1` calls
            (plus one re-ask).
        temperature: sampling temperature, for models that accept one.
        budget: limits on everything this agent spends in one run (all its tasks together).
        call_budget: limits on each single call of this agent.
        cheaper: a model (or litellm model string) the call is sent to instead when it does not
            fit the budgets on this agent's own model.
        min_output_tokens: under a budget, a call's output may be shrunk to fit, but never below
            this many tokens (then the call is refused instead).
        memory: give the agent the tools `remember`, `recall` and `search_memory` on the shared
            memory of its run (needs an orchestrator with a store).
        verify: a judge (usually a cheap model) that checks each answer of this agent's tasks in
            an orchestrator run and answers with a `Verdict`; a rejected answer is asked again
            once with the judge's feedback, then escalated to `fallback`, else the task fails
            with `VerificationFailed`. It must have no `output_type` of its own. A task's
            `verify=` replaces it. `Agent.run` itself never verifies (see
            `delegate.orchestrator.checks.run_checked`).
        votes: in an orchestrator run, ask this many answers concurrently and keep the majority
            (per top-level field for structured output); with `verify`, the judge settles
            disagreements. Give the model a `temperature` > 0 so that samples can differ. An
            `AdaptiveVotes(...)` samples a few at a time instead and stops as soon as the
            majority is settled (or the budget left cannot pay for another sample).

    Raises:
        ConfigError: any argument is invalid; the message names the agent and the fix.
    """

    def __init__(
        self,
        name: str,
        model: str | Model,
        *,
        instructions: str = "",
        description: str = "",
        tools: Iterable[Tool | Callable[..., Any] | MCPServer] = (),
        output_type: type[OutputT] | None = None,
        reasoning_effort: ReasoningEffort | None = None,
        max_output_tokens: int | None = None,
        fallback: Agent[OutputT] | None = None,
        max_concurrency: int | None = None,
        max_tool_rounds: int = 10,
        temperature: float | None = None,
        budget: Budget | None = None,
        call_budget: Budget | None = None,
        cheaper: str | Model | None = None,
        min_output_tokens: int = 256,
        memory: bool = False,
        verify: Agent[str] | None = None,
        votes: int | AdaptiveVotes = 1,
    ) -> None:
        self.name = _check_name(name)
        prefix = f"Agent {name!r}: "
        _check_text(prefix, instructions=instructions, description=description)
        self.instructions = instructions
        self.description = description
        self.output_type = _check_output_type(prefix, output_type)
        self.reasoning_effort = _check_effort(prefix, reasoning_effort)
        self.max_output_tokens = _check_limit(prefix, "max_output_tokens", max_output_tokens)
        self.max_concurrency = _check_limit(prefix, "max_concurrency", max_concurrency)
        self.max_tool_rounds = _check_count(prefix, "max_tool_rounds", max_tool_rounds)
        self.temperature = _check_temperature(prefix, temperature)
        self.fallback = _check_fallback(prefix, fallback, self.output_type)
        self.tools, self.mcp_servers = _check_tools(prefix, tools)
        self._tools_by_name = {t.name: t for t in self.tools}
        self._tool_definitions = tuple(t.definition for t in self.tools)
        self._output_schema = _output_schema(prefix, self.output_type)
        self.model: Model = _resolve(prefix, model)
        self.budget = _check_budget(prefix, "budget", budget)
        self.call_budget = _check_budget(prefix, "call_budget", call_budget)
        self.cheaper: Model | None = None if cheaper is None else _resolve(prefix, cheaper)
        self.min_output_tokens = _check_count(prefix, "min_output_tokens", min_output_tokens)
        if not isinstance(memory, bool):
            raise ConfigError(f"{prefix}memory must be True or False, got {memory!r}")
        self.memory = memory
        self.verify = _check_verify(prefix, verify)
        self.votes: int | AdaptiveVotes = _check_votes(prefix, votes)

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}", f"model={self.model.name!r}"]
        if self.tools:
            parts.append(f"tools={[t.name for t in self.tools]!r}")
        if self.output_type is not None:
            parts.append(f"output_type={self.output_type.__name__}")
        if self.fallback is not None:
            parts.append(f"fallback={self.fallback.name!r}")
        if self.verify is not None:
            parts.append(f"verify={self.verify.name!r}")
        if self.votes != 1:
            parts.append(f"votes={self.votes!r}")
        return f"Agent({', '.join(parts)})"

    async def run(
        self,
        prompt: str,
        *,
        caller: ModelCaller | None = None,
        tools: Sequence[Tool] = (),
        max_output_tokens: int | None = None,
        reasoning_effort: ReasoningEffort | None = None,
    ) -> AgentResult[OutputT]:
        """Answer `prompt`: run the tool loop, validate structured output, escalate if needed.

        This is one plain run: `verify` and `votes` apply in orchestrator runs (through
        `delegate.orchestrator.checks.run_checked`), not here.

        Args:
            prompt: the user message.
            caller: sends each model call; defaults to calling the model directly.
            tools: more tools for this run only, besides the agent's own (the orchestrator
                passes the memory tools of `memory=True` agents this way).
            max_output_tokens: replaces the agent's `max_output_tokens` for this run (and its
                fallback's, when it escalates); None keeps theirs.
            reasoning_effort: replaces the agent's `reasoning_effort` likewise; None keeps it.

        Raises:
            OutputValidationError: the answer did not validate after one re-ask, and there is no
                fallback.
            ToolLoopError: the model still called tools after `max_tool_rounds`, and there is no
                fallback.
            ModelError: any other model failure, transient ones included (the scheduler retries).
        """
        if not isinstance(prompt, str):
            raise ConfigError(
                f"Agent {self.name!r}: the prompt must be a str, got {type(prompt).__name__}"
            )
        if self.mcp_servers and needs_mcp_pool(self.mcp_servers):
            async with mcp_servers_open():  # outside a run: the servers live for this call
                return await self.run(
                    prompt,
                    caller=caller,
                    tools=tools,
                    max_output_tokens=max_output_tokens,
                    reasoning_effort=reasoning_effort,
                )
        offered = await self._with_mcp(tools) if self.mcp_servers else tools
        state = _Run(
            caller=caller or _call_model,
            messages=self._first_messages(prompt),
            tools=self._tools_by_name if not offered else self._with_tools(offered),
            definitions=(
                self._tool_definitions
                if not offered
                else (*self._tool_definitions, *(t.definition for t in offered))
            ),
            max_output_tokens=self.max_output_tokens,
            reasoning_effort=self.reasoning_effort,
        )
        if max_output_tokens is not None:
            state.max_output_tokens = _check_count(
                f"Agent {self.name!r}: run(): ", "max_output_tokens", max_output_tokens
            )
        if reasoning_effort is not None:
            state.reasoning_effort = _check_effort(
                f"Agent {self.name!r}: run(): ", reasoning_effort
            )
        desk = current_desk()
        if desk is not None:
            paused = desk.resumed(self.name)
            if paused is not None:  # it paused for approval in this task: go on from there
                state.messages = typing.cast("list[Message]", list(paused.messages))
                state.tool_rounds = paused.tool_rounds
                await self._settle_round(state, paused, desk)
        try:
            answer = self._accept(state, await self._until_final(state))
            output, text = answer if answer is not None else await self._answer_again(state)
        except _ESCALATE as exc:
            if self.fallback is None:
                raise
            log.warning(
                "agent_escalated",
                agent=self.name,
                fallback=self.fallback.name,
                reason=type(exc).__name__,
                error=str(exc),
            )
            result = await self.fallback.run(
                prompt,
                caller=state.caller,
                tools=tools,
                max_output_tokens=max_output_tokens,
                reasoning_effort=reasoning_effort,
            )
            return dataclasses.replace(
                result, usage=state.usage + result.usage, calls=state.calls + result.calls
            )
        return AgentResult(
            output=output,
            text=text,
            usage=state.usage,
            calls=state.calls,
            agent=self.name,
            model=state.answered_by or self.model.name,
        )

    run_sync = syncify(run)

    async def _with_mcp(self, extras: Sequence[Tool]) -> tuple[Tool, ...]:
        """A run's `extras` and the tools of the agent's MCP servers (each started and listed
        once per run: the definitions go in the first request, where the budget counts them)."""
        taken = {name: f"the Python tool {name!r}" for name in self._tools_by_name}
        taken.update((extra.name, f"the run's tool {extra.name!r}") for extra in extras)
        return (*extras, *await mcp_tools(self.mcp_servers, taken, agent=self.name))

    def _with_tools(self, extras: Sequence[Tool]) -> dict[str, Tool]:
        """The agent's tools and a run's `extras`, by name."""
        tools = dict(self._tools_by_name)
        for extra in extras:
            if extra.name in tools:
                raise ConfigError(
                    f"Agent {self.name!r}: a tool named {extra.name!r} is given twice; rename one"
                )
            tools[extra.name] = extra
        return tools

    def first_request(
        self,
        prompt: str,
        *,
        tools: Sequence[Tool] = (),
        max_output_tokens: int | None = None,
        reasoning_effort: ReasoningEffort | None = None,
    ) -> ModelRequest:
        """The first request a `run(prompt, ...)` with these arguments sends (the tools of MCP
        servers left out): what a budget check sizes one more run by."""
        return ModelRequest(
            messages=self._first_messages(prompt),
            output_schema=self._output_schema,
            output_name=self.output_type.__name__ if self.output_type is not None else "output",
            tools=(*self._tool_definitions, *(t.definition for t in tools)),
            max_output_tokens=self.max_output_tokens
            if max_output_tokens is None
            else max_output_tokens,
            reasoning_effort=self.reasoning_effort
            if reasoning_effort is None
            else reasoning_effort,
            temperature=self.temperature,
        )

    def _first_messages(self, prompt: str) -> list[Message]:
        messages: list[Message] = []
        if self.instructions:
            messages.append({"role": "system", "content": self.instructions})
        messages.append({"role": "user", "content": prompt})
        return messages

    def _accept(self, state: _Run, response: ModelResponse) -> tuple[Any, str] | None:
        """The (output, text) of the model's final answer; None when a structured answer did not
        validate, after adding the re-ask to the conversation (`_answer_again` sends it).

        Not a coroutine: the usual answer costs no frame of its own around the model call.
        """
        output_type = self.output_type
        if output_type is None:
            if response.finish_reason == "length":
                log.warning(
                    "agent_answer_truncated",
                    agent=self.name,
                    max_output_tokens=state.max_output_tokens,
                )
            return response.text, response.text
        try:
            return _validate(output_type, response), response.text
        except pydantic.ValidationError as exc:
            log.info("agent_reask", agent=self.name, error=validation_summary(exc))
            state.messages.append({"role": "assistant", "content": response.text})
            state.messages.append(
                {"role": "user", "content": self._reask(state, output_type, response, exc)}
            )
        return None

    async def _answer_again(self, state: _Run) -> tuple[Any, str]:
        """The answer to the re-ask `_accept` added; it must validate this time."""
        # (Set: only a structured answer is asked again.)
        output_type = typing.cast("type[pydantic.BaseModel]", self.output_type)
        response = await self._until_final(state)
        try:
            return _validate(output_type, response), response.text
        except pydantic.ValidationError as exc:
            raise OutputValidationError(
                f"Agent {self.name!r}: the answer did not validate as "
                f"{output_type.__name__} even after a re-ask: {validation_summary(exc)}; "
                "give the agent a fallback=Agent(...) with a stronger model, simplify the schema, "
                "or raise max_output_tokens",
                model=self.model.name,
            ) from exc

    async def _until_final(self, state: _Run) -> ModelResponse:
        """Call the model, running the tools it asks for, until it answers without tool calls."""
        while True:
            # (The call is inline, not a coroutine of its own: one frame less on every call.)
            bind_model(self.model.name)  # what the gate, the model and the retries log name
            response = await state.caller(self, self.model, self._request(state))
            state.calls += 1
            state.usage += response.usage
            state.answered_by = response.model or self.model.name
            if not response.tool_calls:
                return response
            if state.tool_rounds >= self.max_tool_rounds:
                names = sorted({call.name for call in response.tool_calls})
                raise ToolLoopError(
                    f"Agent {self.name!r}: the model still called tools ({', '.join(names)}) after "
                    f"max_tool_rounds={self.max_tool_rounds} rounds; raise max_tool_rounds "
                    "(e.g. Agent(..., max_tool_rounds="
                    f"{2 * self.max_tool_rounds})) or say in the instructions when to stop "
                    "calling tools and answer",
                    model=self.model.name,
                )
            state.tool_rounds += 1
            state.messages.append(_assistant_tool_calls(response))
            if _gated(state.tools, response.tool_calls):
                await self._settle_round(state, self._round(state, response), current_desk())
                continue
            results = await self._run_tools(state.tools, response.tool_calls)
            state.messages.extend(
                {"role": "tool", "tool_call_id": call.id, "content": result}
                for call, result in zip(response.tool_calls, results, strict=True)
            )

    def _request(self, state: _Run) -> ModelRequest:
        return ModelRequest(
            messages=list(state.messages),
            output_schema=self._output_schema,
            output_name=self.output_type.__name__ if self.output_type is not None else "output",
            tools=state.definitions,
            max_output_tokens=state.max_output_tokens,
            reasoning_effort=state.reasoning_effort,
            temperature=self.temperature,
        )

    async def _run_tools(self, tools: Mapping[str, Tool], calls: tuple[ToolCall, ...]) -> list[str]:
        if len(calls) == 1:
            return [await _run_tool(tools, calls[0])]
        results = [""] * len(calls)

        async def run_one(index: int, call: ToolCall) -> None:
            results[index] = await _run_tool(tools, call)

        async with anyio.create_task_group() as group:
            for index, call in enumerate(calls):
                group.start_soon(run_one, index, call)
        return results

    def _round(self, state: _Run, response: ModelResponse) -> PausedRound:
        """This round of tool calls, as it would be paused (nothing has run yet)."""
        tools = state.tools
        return PausedRound(
            agent=self.name,
            messages=list(state.messages),
            tool_rounds=state.tool_rounds,
            why=response.text,
            calls=[
                RoundCall(
                    id=call.id,
                    name=call.name,
                    arguments=call.arguments,
                    gated=gated,
                    description=tools[call.name].description if gated else "",
                )
                for call in response.tool_calls
                for gated in (call.name in tools and tools[call.name].requires_approval,)
            ],
        )

    async def _settle_round(
        self, state: _Run, paused: PausedRound, desk: ApprovalDesk | None
    ) -> None:
        """Run a round with gated calls: the ungated and approved calls run, a denied one
        answers with the denial; then the results join the conversation. A gated call with no
        decision pauses the task (`ApprovalPending`) with the results known so far."""
        calls = list(paused.calls)
        runnable: list[int] = []
        for index, call in enumerate(calls):
            if call.result is not None:
                continue
            if not call.gated:
                runnable.append(index)
                continue
            decision = None if desk is None else await desk.decide(paused, index)
            if isinstance(decision, Deny):
                calls[index] = call.model_copy(update={"result": decision.result})
            elif isinstance(decision, Approve):
                runnable.append(index)
        done = await self._run_tools(
            state.tools,
            tuple(ToolCall(calls[i].id, calls[i].name, calls[i].arguments) for i in runnable),
        )
        for index, result in zip(runnable, done, strict=True):
            calls[index] = calls[index].model_copy(update={"result": result})
        settled = paused.model_copy(update={"calls": calls})
        waiting = settled.undecided()
        if waiting:
            names = sorted({calls[i].name for i in waiting})
            raise ApprovalPending(
                f"Agent {self.name!r}: the tool call(s) {', '.join(names)} require a human's "
                "approval, and this run cannot pause: run the agent's task in an Orchestrator "
                "(the run ends 'waiting'; decide with orch.resume(run_id, decisions=...) or "
                "`delegate approve`), or give Orchestrator(approve_tool=...)",
                tools=names,
                paused=settled,
            )
        state.messages.extend(
            {"role": "tool", "tool_call_id": call.id, "content": call.result or ""}
            for call in calls
        )

    def _reask(
        self,
        state: _Run,
        output_type: type[pydantic.BaseModel],
        response: ModelResponse,
        exc: pydantic.ValidationError,
    ) -> str:
        name = output_type.__name__
        if response.finish_reason == "length":
            return (
                f"Your answer was cut off at max_output_tokens={state.max_output_tokens} before "
                f"it was complete, so it did not validate as {name}: {validation_summary(exc)}. "
                "Answer again with a shorter JSON object that matches the schema."
            )
        return (
            f"Your answer did not validate as {name}: {validation_summary(exc)}. "
            "Answer again with only a JSON object that matches the schema."
        )


def _gated(tools: Mapping[str, Tool], calls: tuple[ToolCall, ...]) -> bool:
    """Whether a call of this round needs a human's approval."""
    for call in calls:
        found = tools.get(call.name)
        if found is not None and found.requires_approval:
            return True
    return False


ToolHook: TypeAlias = Callable[[Tool, ToolCall, Callable[[str], Awaitable[str]]], Awaitable[str]]
"""Runs one tool call: `hook(tool, call, run)` awaits `run(call.arguments)` and returns its
result (tracing wraps each call in a span this way)."""

_TOOL_HOOK: ContextVar[ToolHook | None] = ContextVar("delegate_tool_hook", default=None)


@contextmanager
def observing_tools(hook: ToolHook) -> Iterator[None]:
    """Every tool call made in this block, and in the tasks started from it, runs through
    `hook`. Without one, a tool call pays for a single `ContextVar.get`."""
    token = _TOOL_HOOK.set(hook)
    try:
        yield
    finally:
        _TOOL_HOOK.reset(token)


async def _run_tool(tools: Mapping[str, Tool], call: ToolCall) -> str:
    found = tools.get(call.name)
    if found is None:
        if not tools:
            return f"Error: unknown tool {call.name!r}; no tools are available, answer directly"
        available = ", ".join(sorted(tools))
        return (
            f"Error: unknown tool {call.name!r}{did_you_mean(call.name, tools)}; "
            f"available tools: {available}"
        )
    hook = _TOOL_HOOK.get()
    if hook is None:
        return await found.call(call.arguments)
    return await hook(found, call, found.call)


def _validate(output_type: type[pydantic.BaseModel], response: ModelResponse) -> pydantic.BaseModel:
    if response.output is not None:
        return output_type.model_validate(response.output)
    return output_type.model_validate_json(response.text)


def _assistant_tool_calls(response: ModelResponse) -> Message:
    return {
        "role": "assistant",
        "content": response.text,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in response.tool_calls
        ],
    }


def _describe(value: object) -> str:
    if isinstance(value, type):
        return value.__name__
    return f"{type(value).__name__} {value!r}"


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _AGENT_NAME.match(name):
        raise ConfigError(
            f"Agent name {name!r} is not valid; use a non-empty name of letters, digits, '_', "
            "'-' or '.', e.g. Agent('researcher', ...)"
        )
    return name


def _check_text(prefix: str, **values: object) -> None:
    for key, value in values.items():
        if not isinstance(value, str):
            raise ConfigError(f"{prefix}{key} must be a str, got {_describe(value)}")


def _check_output_type(prefix: str, output_type: object) -> type[pydantic.BaseModel] | None:
    if output_type is None:
        return None
    if isinstance(output_type, type) and issubclass(output_type, pydantic.BaseModel):
        return output_type
    raise ConfigError(
        f"{prefix}output_type must be a pydantic BaseModel subclass, got "
        f"{_describe(output_type)}; define class Answer(BaseModel): ... and pass "
        "output_type=Answer"
    )


def _check_effort(prefix: str, effort: object) -> ReasoningEffort | None:
    if effort is None or effort in _EFFORTS:
        return typing.cast("ReasoningEffort | None", effort)
    raise ConfigError(
        f"{prefix}reasoning_effort must be one of {', '.join(map(repr, _EFFORTS))} or None, "
        f"got {effort!r}"
    )


def _check_count(prefix: str, key: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(f"{prefix}{key} must be a positive int, got {value!r}; e.g. {key}=4")


def _check_votes(prefix: str, votes: object) -> int | AdaptiveVotes:
    # Told apart by its `kind`, not imported: agents do not depend on the orchestrator.
    if isinstance(votes, pydantic.BaseModel) and getattr(votes, "kind", None) == "adaptive_votes":
        return typing.cast("AdaptiveVotes", votes)
    if isinstance(votes, int) and not isinstance(votes, bool) and votes >= 1:
        return votes
    raise ConfigError(
        f"{prefix}votes must be a positive int, got {votes!r}; e.g. votes=4, or "
        "votes=AdaptiveVotes(max_samples=10) to stop sampling once the majority is settled"
    )


def _check_limit(prefix: str, key: str, value: object) -> int | None:
    """A positive int, or None for no limit."""
    return None if value is None else _check_count(prefix, key, value)


def _check_budget(prefix: str, key: str, value: object) -> Budget | None:
    if value is None or isinstance(value, Budget):
        return value
    raise ConfigError(
        f"{prefix}{key} must be a delegate.Budget, got {type(value).__name__}; "
        f"write {key}=Budget(usd=0.10, tokens=20_000)"
    )


def _check_temperature(prefix: str, temperature: object) -> float | None:
    if temperature is None:
        return None
    if (
        isinstance(temperature, int | float)
        and not isinstance(temperature, bool)
        and math.isfinite(temperature)
        and temperature >= 0
    ):
        return float(temperature)
    raise ConfigError(
        f"{prefix}temperature must be a number ≥ 0 or None, got {temperature!r}; e.g. "
        "temperature=0.2"
    )


def _check_fallback(
    prefix: str, fallback: object, output_type: type[pydantic.BaseModel] | None
) -> Agent[Any] | None:
    if fallback is None:
        return None
    if not isinstance(fallback, Agent):
        raise ConfigError(
            f"{prefix}fallback must be an Agent, got {_describe(fallback)}; e.g. "
            "fallback=Agent('strong', 'openai/gpt-4o', output_type=...)"
        )
    if fallback.output_type is not output_type:
        theirs = fallback.output_type.__name__ if fallback.output_type else "None (text)"
        ours = output_type.__name__ if output_type else "None (text)"
        raise ConfigError(
            f"{prefix}fallback {fallback.name!r} has output_type {theirs}, but this agent's is "
            f"{ours}; give the fallback the same output_type so its answer can stand in"
        )
    return fallback


def judge_problem(judge: object) -> str | None:
    """What is wrong with `judge` as a `verify=` agent, or None when it can judge."""
    if not isinstance(judge, Agent):
        return (
            f"verify must be an Agent (a judge), got {_describe(judge)}; e.g. "
            "verify=Agent('judge', 'openai/gpt-4o-mini')"
        )
    if judge.output_type is not None:
        return (
            f"the judge {judge.name!r} has output_type {judge.output_type.__name__}, but a judge "
            "answers with a delegate.Verdict; give the judge no output_type"
        )
    return None


def _check_verify(prefix: str, verify: object) -> Agent[Any] | None:
    if verify is None:
        return None
    problem = judge_problem(verify)
    if problem is not None:
        raise ConfigError(f"{prefix}{problem}")
    return typing.cast("Agent", verify)


_RETYPED: weakref.WeakKeyDictionary[Agent[Any], dict[type[pydantic.BaseModel], Agent[Any]]] = (
    weakref.WeakKeyDictionary()
)


def with_output_type(agent: Agent[Any], output_type: type[ModelT]) -> Agent[ModelT]:
    """`agent` answering as `output_type`: a copy with the same name, model, tools and budgets.

    Its fallbacks are copied the same way (a fallback answers as the agent it stands in for);
    `verify` and `votes` are dropped. This is how a judge answers with a `Verdict` or a `Choice`.
    Copies are kept per agent and type, so asking again costs nothing.
    """
    by_type = _RETYPED.get(agent)
    if by_type is None:
        by_type = _RETYPED[agent] = {}
    found = by_type.get(output_type)
    if found is not None:
        return found
    retyped = copy.copy(agent)
    retyped.output_type = output_type
    retyped._output_schema = _output_schema(f"Agent {agent.name!r}: ", output_type)
    retyped.fallback = (
        None if agent.fallback is None else with_output_type(agent.fallback, output_type)
    )
    retyped.verify = None
    retyped.votes = 1
    by_type[output_type] = retyped
    return retyped


def _check_tools(prefix: str, tools: object) -> tuple[tuple[Tool, ...], tuple[MCPServer, ...]]:
    if isinstance(tools, str | bytes) or not isinstance(tools, Iterable):
        raise ConfigError(
            f"{prefix}tools must be a list of functions, Tools or MCP servers, got "
            f"{_describe(tools)}"
        )
    checked: list[Tool] = []
    servers: list[MCPServer] = []
    for item in tools:
        if isinstance(item, MCPServer):
            servers.append(item)
            continue
        try:
            checked.append(item if isinstance(item, Tool) else Tool(item))
        except ConfigError as exc:
            raise ConfigError(f"{prefix}{exc}") from exc
    names = [t.name for t in checked]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"{prefix}two tools are named {', '.join(map(repr, duplicates))}; tool names must be "
            "unique, rename one with Tool(fn, name='...')"
        )
    names = [server.name for server in servers]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(
            f"{prefix}two MCP servers are named {', '.join(map(repr, twice))}; give each its own "
            "name=..."
        )
    return tuple(checked), tuple(servers)


def _output_schema(
    prefix: str, output_type: type[pydantic.BaseModel] | None
) -> dict[str, Any] | None:
    if output_type is None:
        return None
    try:
        return output_type.model_json_schema()
    except (pydantic.PydanticUserError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{prefix}output_type {output_type.__name__} has no JSON Schema ({exc}); use "
            "JSON-friendly field types"
        ) from exc


def _resolve(prefix: str, model: object) -> Model:
    if isinstance(model, str):
        if not model.strip():
            raise ConfigError(
                f"{prefix}model is empty; pass a litellm model string like 'openai/gpt-4o-mini' "
                "or a Model"
            )
        from delegate.agents.models import resolve_model  # lazily: it may reach litellm's files

        try:
            return resolve_model(model)
        except ConfigError as exc:
            raise ConfigError(f"{prefix}{exc}") from exc
    if isinstance(model, Model):
        return model
    raise ConfigError(
        f"{prefix}model must be a litellm model string like 'openai/gpt-4o-mini' or a Model "
        f"(e.g. delegate.testing.FunctionModel), got {_describe(model)}"
    )
