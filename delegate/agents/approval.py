"""Tool calls a human approves: the decisions, the pending call, and where an agent paused.

A `Tool(fn, requires_approval=True)` (or `@tool(requires_approval=True)`) never runs on the
model's word alone. When the model calls it, the agent runs the other calls of that round, then
asks the run's `ApprovalDesk` for a decision on each gated call: `Approve()` runs it, `Deny(reason)`
answers the model with `"Denied by a human: <reason>"` as the tool's result, in the same
conversation. A call with no decision yet raises `ApprovalPending`, which carries a `PausedRound`
(the conversation so far and the round's results): the orchestrator stores it, the task waits,
and a later resume hands it back to the agent, which goes on exactly there — the model is not
called again for the round it already answered::

    @tool(requires_approval=True)
    def refund(order: str, usd: float) -> str:
        \"\"\"Refund an order.\"\"\"

    result = await orch.execute(graph)  # result.status == "waiting"
    call = result.pending[0]  # PendingCall(tool="refund", arguments='{"order": ...}', ...)
    await orch.resume(result.run_id, decisions={call.call_id: Approve()})

The agents layer knows nothing of runs or stores: the orchestrator puts a desk in the task's
context (`use_desk`) when it has decisions to give (an `approve_tool` callback, or decisions
and paused rounds read back from the store); without one, every gated call pauses.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DENIED",
    "ApprovalDesk",
    "Approve",
    "Decision",
    "Deny",
    "PausedRound",
    "PendingCall",
    "RoundCall",
    "current_desk",
    "use_desk",
]

DENIED = "Denied by a human: {reason}"
"""What the model reads as the result of a call a human denied."""

_MAX_REASON = 2000  # characters of a denial's reason kept (it goes to the model and the store)


@dataclass(frozen=True, slots=True)
class Approve:
    """A human's decision: run the tool call as the model wrote it."""


@dataclass(frozen=True, slots=True)
class Deny:
    """A human's decision: do not run the call; the model reads `"Denied by a human: <reason>"`.

    Attributes:
        reason: why, for the model (it may try another way); at most 2,000 characters are kept.
    """

    reason: str = "no reason given"

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str):
            from delegate.errors import ConfigError

            raise ConfigError(
                f"Deny(reason=...) must be a str, got {type(self.reason).__name__}; e.g. "
                'Deny(reason="refunds over $100 need a manager")'
            )
        object.__setattr__(self, "reason", self.reason.strip()[:_MAX_REASON] or "no reason given")

    @property
    def result(self) -> str:
        """The tool result the model reads."""
        return DENIED.format(reason=self.reason)


Decision = Approve | Deny
"""What a human decides about one tool call."""


class PendingCall(BaseModel):
    """A tool call that waits for a human's decision (`RunResult.pending`, `delegate pending`).

    Attributes:
        run_id: the run.
        call_id: the call's id, unique in the run and stable across resumes: what
            `resume(run_id, decisions={call_id: ...})` and `delegate approve` take.
        task_id: the task that waits.
        agent: the agent that called the tool.
        tool: the tool's name.
        arguments: the JSON arguments the model wrote (credentials masked when stored).
        why: the model's own words with the call, else the tool's description.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    call_id: str
    task_id: str
    agent: str
    tool: str
    arguments: str
    why: str = ""


class RoundCall(BaseModel):
    """One tool call of a paused round: what the model asked, and its result once known."""

    model_config = ConfigDict(frozen=True)

    id: str  # the model's own id of the call (the tool message answers it)
    name: str
    arguments: str
    gated: bool = False  # the tool requires approval
    description: str = ""  # the tool's, for a human when the model said nothing
    result: str | None = None


class PausedRound(BaseModel):
    """Where an agent stopped for approval: enough to go on without asking the model again.

    Attributes:
        agent: the agent that paused.
        messages: the conversation so far, ending with the model's message that made the calls.
        tool_rounds: the tool rounds used, this one included.
        why: the model's text with the calls (may be empty).
        calls: the round's calls in the model's order, with the results known so far.
    """

    model_config = ConfigDict(frozen=True)

    agent: str
    messages: list[dict[str, Any]]
    tool_rounds: int
    why: str = ""
    calls: list[RoundCall] = Field(default_factory=list)

    def undecided(self) -> list[int]:
        """The positions of the gated calls that have no result yet."""
        return [i for i, call in enumerate(self.calls) if call.result is None and call.gated]


class ApprovalDesk(Protocol):
    """Where an agent in a run gets decisions and its paused round (set by the orchestrator)."""

    def resumed(self, agent: str) -> PausedRound | None:
        """The round `agent` paused in, handed over once; None when it did not pause."""
        ...

    async def decide(self, paused: PausedRound, index: int) -> Decision | None:
        """The decision on call `index` of `paused`; None when nobody decided yet."""
        ...


_DESK: contextvars.ContextVar[ApprovalDesk | None] = contextvars.ContextVar(
    "delegate_approval_desk", default=None
)


def current_desk() -> ApprovalDesk | None:
    """The desk of the task running in this context, if the orchestrator set one."""
    return _DESK.get()


def use_desk(desk: ApprovalDesk | None) -> None:
    """Set the desk of the task about to run in this context (a scheduler's runner)."""
    _DESK.set(desk)
