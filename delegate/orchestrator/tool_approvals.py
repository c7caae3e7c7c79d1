"""The orchestrator's side of tool approvals: call ids, the desks agents ask, the store.

A task whose agent calls a `requires_approval` tool with no decision pauses: the scheduler marks
it "waiting" and keeps its `PausedRound`; the run goes on with every task that does not depend
on it, and ends "waiting" with the calls in `RunResult.pending`. When the run concludes, the
pending calls are written to the store with the event that announces the pause
(`task_waiting`, in the run recorder's batch: `approval_batch`), so a process killed after it
loses neither; when the run concludes, `save` forgets the rounds of tasks that went on.

A later `Orchestrator.resume(run_id, decisions=...)` records the decisions, reads the paused
rounds and every stored decision back (`open_desks`), and gives each task a `TaskDesk`: the
agent continues the round it paused in — approved calls run, denied ones answer the model with
the denial — without asking the model again. A call still undecided pauses the task again at
once. With `Orchestrator(approve_tool=callback)` every desk asks the callback instead of pausing;
each of its decisions is a `ToolCallDecided` event, and a row of the store's approvals table.

A call's id is derived from where it was made (task, agent, round, position, the model's own id
of the call), so it is the same every time the round is looked at, unique in the run, and short
enough to type.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import anyio.to_thread

from delegate import _secrets
from delegate.agents.approval import Approve, Decision, Deny, PausedRound, PendingCall
from delegate.errors import ApprovalPending, ConfigError
from delegate.orchestrator.events import EventBus, ToolCallDecided

if TYPE_CHECKING:
    from delegate.memory._approvals import ApprovalBatch
    from delegate.memory.store import Store

__all__ = [
    "ApproveTool",
    "RunApprovals",
    "TaskDesk",
    "approval_batch",
    "call_id",
    "check_approve_tool",
    "check_decisions",
    "open_desks",
    "paused_signal",
    "pending_calls",
    "record_decisions",
    "save",
    "waiting_reason",
]

ApproveTool: TypeAlias = Callable[[PendingCall], Decision | Awaitable[Decision]]
"""`Orchestrator(approve_tool=...)`: decides a call inline (sync or async)."""


def call_id(task_id: str, paused: PausedRound, index: int) -> str:
    """The id of call `index` of `paused` in task `task_id`: stable, unique in the run."""
    call = paused.calls[index]
    key = "\x00".join((task_id, paused.agent, str(paused.tool_rounds), str(index), call.id))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _pending(run_id: str, task_id: str, paused: PausedRound, index: int) -> PendingCall:
    call = paused.calls[index]
    return PendingCall(
        run_id=run_id,
        call_id=call_id(task_id, paused, index),
        task_id=task_id,
        agent=paused.agent,
        tool=call.name,
        arguments=call.arguments,
        why=paused.why.strip() or call.description,
    )


def pending_calls(run_id: str, paused: Mapping[str, PausedRound]) -> list[PendingCall]:
    """The calls the paused tasks wait for, task by task in the order given, then by position."""
    return [
        _pending(run_id, task_id, round_, index)
        for task_id, round_ in paused.items()
        for index in round_.undecided()
    ]


def waiting_reason(pending: list[PendingCall]) -> str:
    """Why a run is "waiting": the calls, and how to decide them."""
    shown = ", ".join(f"{c.call_id} ({c.tool} in task {c.task_id!r})" for c in pending[:3])
    more = f" and {len(pending) - 3} more" if len(pending) > 3 else ""
    run_id = pending[0].run_id
    return (
        f"{len(pending)} tool call(s) wait for a human's decision: {shown}{more}; decide with "
        f"orch.resume({run_id!r}, decisions={{call_id: Approve() or Deny(reason=...)}}), or "
        f"`delegate approve {run_id} CALL_ID [--deny --reason TEXT]`, then "
        f"`delegate resume {run_id}`"
    )


def paused_signal(exc: BaseException) -> ApprovalPending | None:
    """The `ApprovalPending` that ended an attempt, also from inside an exception group (the
    samples of a vote), when nothing else failed beside it; else None."""
    if isinstance(exc, ApprovalPending):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        signals = [paused_signal(inner) for inner in exc.exceptions]
        if signals and all(signal is not None for signal in signals):
            return signals[0]
    return None


def check_approve_tool(approve_tool: object) -> ApproveTool | None:
    """`approve_tool` when it is None or callable.

    Raises:
        ConfigError: anything else.
    """
    if approve_tool is None or callable(approve_tool):
        return approve_tool
    raise ConfigError(
        f"approve_tool must be a function of a PendingCall returning Approve() or "
        f"Deny(reason=...), got {type(approve_tool).__name__}"
    )


def _decision(value: object, what: str) -> Decision:
    if isinstance(value, Approve | Deny):
        return value
    raise ConfigError(
        f"{what} must be delegate.Approve() or delegate.Deny(reason=...), got "
        f"{type(value).__name__} {value!r}"
    )


def check_decisions(decisions: Mapping[str, object] | None) -> dict[str, Decision]:
    """`decisions` (call id → decision), checked.

    Raises:
        ConfigError: not a mapping of call ids to `Approve()` / `Deny(...)`.
    """
    if decisions is None:
        return {}
    if not isinstance(decisions, Mapping):
        raise ConfigError(
            f"decisions must be a dict of call id → Approve() or Deny(reason=...), got "
            f"{type(decisions).__name__}; e.g. decisions={{call.call_id: Approve()}}"
        )
    checked: dict[str, Decision] = {}
    for key, value in decisions.items():
        if not isinstance(key, str):
            raise ConfigError(f"decisions: a call id must be a str, got {key!r}")
        checked[key] = _decision(value, f"decisions[{key!r}]")
    return checked


class TaskDesk:
    """The desk of one task: its paused round, the run's decisions, the inline callback."""

    __slots__ = ("_bus", "_callback", "_decisions", "_paused", "run_id", "task_id")

    def __init__(
        self,
        run_id: str,
        task_id: str,
        paused: PausedRound | None,
        decisions: Mapping[str, Decision],
        callback: ApproveTool | None,
        bus: EventBus | None = None,
    ) -> None:
        self.run_id, self.task_id = run_id, task_id
        self._paused = paused
        self._decisions = decisions
        self._callback = callback
        self._bus = bus

    def resumed(self, agent: str) -> PausedRound | None:
        """The round `agent` paused in, handed over once."""
        paused = self._paused
        if paused is None or paused.agent != agent:
            return None
        self._paused = None
        return paused

    async def decide(self, paused: PausedRound, index: int) -> Decision | None:
        """A stored (or given) decision on the call, else the callback's, else None."""
        found = self._decisions.get(call_id(self.task_id, paused, index))
        if found is not None or self._callback is None:
            return found
        call = _pending(self.run_id, self.task_id, paused, index)
        callback = self._callback
        answer: object
        if inspect.iscoroutinefunction(callback):
            answer = await callback(call)
        else:  # a sync one may block (a prompt on a terminal): a worker thread waits for it
            answer = await anyio.to_thread.run_sync(callback, call)
        if inspect.isawaitable(answer):
            answer = await answer
        decision = _decision(answer, "approve_tool's answer")
        if self._bus is not None and self._bus.active:
            self._bus.emit(_decided(call, decision))
        return decision


def _decided(call: PendingCall, decision: Decision) -> ToolCallDecided:
    """The event of a decision the callback made (what the store's row is made of, too)."""
    return ToolCallDecided(
        run_id=call.run_id,
        task_id=call.task_id,
        call_id=call.call_id,
        agent=call.agent,
        tool=call.tool,
        arguments=_secrets.redact(call.arguments),
        why=_secrets.redact(call.why),
        approved=isinstance(decision, Approve),
        reason=decision.reason if isinstance(decision, Deny) else None,
    )


class RunApprovals:
    """A run's paused rounds and decisions, and the desk each task gets."""

    __slots__ = ("bus", "callback", "decisions", "paused", "restored", "run_id")

    def __init__(
        self,
        run_id: str,
        *,
        callback: ApproveTool | None = None,
        paused: Mapping[str, PausedRound] | None = None,
        decisions: Mapping[str, Decision] | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.run_id = run_id
        self.callback = callback
        self.bus = bus  # where the callback's decisions are announced (and so recorded)
        self.paused = dict(paused or {})
        self.restored = bool(self.paused)  # rounds came from the store: `save` tidies them
        self.decisions = dict(decisions or {})

    def desk(self, task_id: str) -> TaskDesk:
        """The desk of `task_id` (its paused round is handed over once, to its first attempt)."""
        paused = self.paused.pop(task_id, None)
        return TaskDesk(self.run_id, task_id, paused, self.decisions, self.callback, self.bus)


def _stored_decision(status: str, reason: str | None) -> Decision | None:
    if status == "approved":
        return Approve()
    if status == "denied":
        return Deny(reason=reason or "no reason given")
    return None


async def record_decisions(store: Store, run_id: str, decisions: Mapping[str, Decision]) -> None:
    """Write `decisions` to the store, each checked against the run's calls.

    Raises:
        ConfigError: an unknown call (with a did-you-mean), or one decided the other way.
    """
    for key, decision in decisions.items():
        decide = functools.partial(
            store.decide_call,
            run_id,
            key,
            approve=isinstance(decision, Approve),
            reason=decision.reason if isinstance(decision, Deny) else None,
        )
        await anyio.to_thread.run_sync(decide)


async def open_desks(
    store: Store | None,
    run_id: str,
    callback: ApproveTool | None,
    *,
    resumed: bool,
    bus: EventBus | None = None,
) -> RunApprovals | None:
    """What a run's tasks decide approvals with: None when there is nothing to give them (no
    callback, and no paused task in the store). The callback's decisions are announced on
    `bus` (`ToolCallDecided`)."""
    paused: dict[str, PausedRound] = {}
    decisions: dict[str, Decision] = {}
    if resumed and store is not None:
        stored = await anyio.to_thread.run_sync(store.get_paused, run_id)
        if stored:
            paused = {task: PausedRound.model_validate(state) for task, state in stored.items()}
            rows = await anyio.to_thread.run_sync(store.list_approvals, run_id)
            for row in rows:
                decision = _stored_decision(row.status, row.reason)
                if decision is not None:
                    decisions[row.call_id] = decision
    if not paused and callback is None:
        return None
    return RunApprovals(run_id, callback=callback, paused=paused, decisions=decisions, bus=bus)


async def save(
    store: Store, run_id: str, paused: Mapping[str, PausedRound], had_paused: bool
) -> None:
    """Store the run's paused rounds and their pending calls (and forget rounds of tasks that
    went on); nothing when no task paused now or before."""
    if not paused and not had_paused:
        return
    from delegate.memory.records import ApprovalRecord

    calls = [ApprovalRecord(**call.model_dump()) for call in pending_calls(run_id, paused)]
    states: dict[str, Any] = {
        task: round_.model_dump(mode="json") for task, round_ in paused.items()
    }
    await anyio.to_thread.run_sync(store.save_pauses, run_id, states, calls)


def approval_batch(
    run_id: str, paused: Mapping[str, PausedRound], decided: Sequence[ToolCallDecided]
) -> ApprovalBatch:
    """What a run's recorder writes with a batch of events: the rounds `paused` (task id → round)
    and the calls they wait for, and the callback's `decided` calls (in the writer thread)."""
    from delegate.memory._approvals import ApprovalBatch
    from delegate.memory.records import ApprovalRecord

    calls = [ApprovalRecord(**call.model_dump()) for call in pending_calls(run_id, paused)]
    states = {task: round_.model_dump(mode="json") for task, round_ in paused.items()}
    rows = []
    for event in decided:
        when = datetime.fromtimestamp(event.at, UTC)
        rows.append(
            ApprovalRecord(
                run_id=run_id,
                call_id=event.call_id,
                task_id=event.task_id,
                agent=event.agent,
                tool=event.tool,
                arguments=event.arguments,
                why=event.why,
                status="approved" if event.approved else "denied",
                reason=event.reason,
                created_at=when,
                decided_at=when,
            )
        )
    return ApprovalBatch(states, calls, rows)
