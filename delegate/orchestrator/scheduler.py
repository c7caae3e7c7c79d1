"""The event-driven executor of a task graph.

A pool of at most `max_concurrency` runners, started as work needs them (never one coroutine per
task up front), pulls from one ready queue. A task
enters the queue the moment its last dependency succeeds; the queue is ordered by the longest
remaining path through the graph (critical path first), ties by the order tasks were added. A task
whose agent is at its `max_concurrency` is parked and comes back the moment one of that agent's
tasks ends, so it never holds a runner while others could work. No supersteps, no polling: the only
waits are on tasks themselves and on an idle runner's wake-up event.

Transient failures (rate limits, timeouts, unavailable providers) are retried with exponential
backoff and jitter, honouring a provider's `retry_after` up to `RetryPolicy.max_delay` (a longer
hint, or a wait past the run's deadline, ends the retries); permanent ones are not. A task waiting
out a backoff holds no runner and no agent slot: it is queued again when the wait is over. A task
that fails skips its dependents (with the reason) while independent branches run on;
`fail_fast=True` cancels everything instead.

A task whose agent calls a tool that requires a human's approval, with no decision yet, is not
failed or retried: it is "waiting" (its `PausedRound` kept in `paused`), its dependents wait with
it (they stay "pending"), and every other task runs on (see `delegate.orchestrator.tool_approvals`).
"""

from __future__ import annotations

import heapq
import inspect
import math
import random
import time
from collections.abc import Coroutine, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from jinja2 import TemplateError as JinjaTemplateError

from delegate import _secrets
from delegate._log import bind_task
from delegate.agents.approval import PausedRound, use_desk
from delegate.agents.models import _NO_USAGE, Usage
from delegate.agents.retry import GiveUp, RetryPolicy
from delegate.errors import (
    ConfigError,
    DelegateError,
    TaskTimeoutError,
    TemplateError,
)
from delegate.orchestrator import _gc
from delegate.orchestrator._specs import strategy_workers
from delegate.orchestrator.calls import CallGate, RunAccount
from delegate.orchestrator.checks import CheckListener, run_checked
from delegate.orchestrator.events import (
    EventBus,
    TaskCancelled,
    TaskChecked,
    TaskFailed,
    TaskQueued,
    TaskRetried,
    TaskRouted,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskWaiting,
)
from delegate.orchestrator.graph import Task, TaskContext, format_output
from delegate.orchestrator.tool_approvals import RunApprovals, paused_signal

if TYPE_CHECKING:
    from delegate.agents.agent import Agent, ModelCaller, VoteRecord
    from delegate.agents.models import ReasoningEffort
    from delegate.agents.tools import Tool
    from delegate.orchestrator._journal import RunJournal
    from delegate.orchestrator.routing import Router

__all__ = ["Node", "RetryPolicy", "Scheduler", "TaskStatus"]

TaskStatus = Literal["pending", "running", "succeeded", "failed", "skipped", "cancelled", "waiting"]
# "waiting" ends a task for this run (a human decides before it goes on, in a resumed run).
_TERMINAL = frozenset({"succeeded", "failed", "skipped", "cancelled", "waiting"})
_BROKEN = frozenset({"failed", "skipped", "cancelled"})


@dataclass(slots=True, eq=False)
class Node:
    """The scheduler's mutable state of one task."""

    task: Task
    agent: Agent[Any] | None
    priority: float
    seq: int
    pending: int = 0
    children: list[Node] = field(default_factory=list)
    status: TaskStatus = "pending"
    attempts: int = 0
    output: Any = None
    error: str | None = None
    usage: Usage = _NO_USAGE  # (frozen: one shared zero, not one made per node)
    model: str | None = None
    answered_by: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    verify: Agent[Any] | None = None  # the judge: the task's own, else its agent's (`build_nodes`)
    workers: Mapping[str, Agent[Any]] | None = None  # the workers its strategy names, by name
    passable: bool = False  # skipped, yet its dependents run (a workflow step whose `when` failed)
    vote: VoteRecord | None = None  # how its answer was voted on (`votes=`)

    @property
    def task_id(self) -> str:
        """The task's id (what a `CallGate` charges the task's budget by)."""
        return self.task.id


def _attempt_failure(task: Task, exc: Exception) -> Exception:
    """`exc` when it ends the attempt: one of delegate's errors, or anything a task function
    raised (its own failure, as a tool's is). Anything else is a bug (ours, a custom model's) and
    is raised: the run stops with it, instead of a task failing with a string of it."""
    if isinstance(exc, DelegateError) or task.fn is not None:
        return exc
    raise exc


def _describe(exc: BaseException) -> str:
    # A task's error is shown, stored and sent in events: no key in it, whatever raised it (a
    # tool, a function task); model errors were masked at the model boundary already.
    if isinstance(exc, DelegateError):
        return _secrets.redact(str(exc), lookalikes=True)
    return _secrets.redact(f"{type(exc).__name__}: {exc}", lookalikes=True)


class Scheduler:
    """Runs the nodes of one graph to completion. Used once, by `Orchestrator.execute`."""

    def __init__(
        self,
        nodes: list[Node],
        *,
        run_id: str,
        inputs: Mapping[str, Any],
        max_concurrency: int,
        retry: RetryPolicy,
        fail_fast: bool,
        bus: EventBus,
        account: RunAccount,
        rng: random.Random,
    ) -> None:
        self.nodes = nodes
        self.by_id = {node.task.id: node for node in nodes}
        self.run_id = run_id
        self.inputs = inputs
        self._frozen_inputs = MappingProxyType(dict(inputs))
        self.retry = retry
        self.fail_fast = fail_fast
        self.bus = bus
        self.account = account
        self.deadline_passed = False
        self.rng = rng
        self.runners = max_concurrency
        # Heap entries: the longest remaining path first, then the order tasks were added.
        self._ready: list[tuple[float, int, Node]] = []
        self._idle: list[anyio.Event] = []
        self._remaining = sum(node.status not in _TERMINAL for node in nodes)
        self._limits: dict[str, int] = {}
        self._running: dict[str, int] = {}
        self._parked: dict[str, list[tuple[float, int, Node]]] = {}
        self._scope: anyio.CancelScope | None = None
        self._group: TaskGroup | None = None
        self._spawned = 0
        self._reason: str | None = None
        self._holds = 0
        self._done: anyio.Event | None = None
        self._settled: anyio.Event | None = None
        self._end: anyio.Event | None = None
        self.stopped = False
        # Tool approvals: the desks tasks decide with (None: every gated call pauses), the rounds
        # paused tasks stopped in, and the pending tasks held back by a waiting one.
        self.approvals: RunApprovals | None = None
        self.router: Router | None = None  # learned routing (`delegate.orchestrator.routing`)
        self.journal: RunJournal | None = None  # a durable run's task journals (`_journal`)
        self.paused: dict[str, PausedRound] = {}
        self._held: set[Node] = set()
        for node in nodes:
            self._limit(node)

    def _limit(self, node: Node) -> None:
        limit = node.agent.max_concurrency if node.agent is not None else None
        if limit is not None:
            self._limits[node.agent.name] = limit  # type: ignore[union-attr]

    async def run(self) -> None:
        """Run every node; returns when all are succeeded, failed, skipped or cancelled."""
        deadline = self.account.deadline
        try:
            with (
                _gc.during_run(),  # the collector skips the graph and collects less often
                anyio.CancelScope(deadline=math.inf if deadline is None else deadline) as limit,
            ):
                async with anyio.create_task_group() as group:
                    self._scope = group.cancel_scope
                    self._group = group
                    for node in self.nodes:
                        if node.pending == 0 and node.status == "pending":
                            self._push(node)
                    if self._remaining == 0:
                        return  # everything was restored from the store: nothing to run
                    if self._holds:
                        # Tasks are still to come (`add`): stay open until the last hold goes.
                        self._done = anyio.Event()
                        await self._done.wait()
            self.deadline_passed = limit.cancelled_caught
        finally:
            self.stopped = True
            self._cancel_unfinished(self.cancel_reason)
            for event in (self._settled, self._end):
                if event is not None:
                    event.set()

    # -- tasks that arrive while the run is under way (plans) -------------------------------

    def hold(self) -> None:
        """Keep the run open for tasks still to be added, until `release`.

        Call before `run` starts (a planned run holds while its planner works).
        """
        self._holds += 1
        self._remaining += 1

    def release(self) -> None:
        """Drop one `hold`: once none is left and every task has ended, `run` returns."""
        self._holds -= 1
        self._ended()

    def add(self, nodes: list[Node], *, skipped: Mapping[str, str] | None = None) -> None:
        """Add `nodes` (built by `build_nodes(..., known=self.by_id)`) to the running graph.

        A node whose dependency already failed (or was skipped or cancelled) is skipped at once;
        one whose dependencies all succeeded is queued at once; one that already ended (restored
        from a store) stays as it is. Nodes named in `skipped` are skipped at once with the
        reason given, but do not hold back their dependents (they become `passable`). After the
        run stopped (a deadline, fail-fast), new nodes are cancelled.
        """
        skipped = skipped or {}
        for node in nodes:
            self.nodes.append(node)
            self.by_id[node.task.id] = node
            if node.status not in _TERMINAL:
                self._remaining += 1
            self._limit(node)
        self.account.admit_tasks([node.task for node in nodes], [node.agent for node in nodes])
        for node in nodes:
            if node.status in _TERMINAL:
                continue
            if node.task.id in skipped:
                node.passable = True
                self._finish(node, "skipped", skipped[node.task.id])
                if self.bus.active:
                    self.bus.emit(
                        TaskSkipped(
                            run_id=self.run_id, task_id=node.task.id, reason=node.error or ""
                        )
                    )
                for child in node.children:  # they wait for it no longer
                    child.pending -= 1
                continue
            if self.stopped:
                self._finish(node, "cancelled", self.cancel_reason)
                continue
            broken = self._broken_dep(node)
            if broken is not None and node.status == "pending":
                self._skip(node, f"dependency {broken!r} {self.by_id[broken].status}")
            elif self.paused and self._waits_on_pause(node):
                self._hold(node)
            elif node.pending == 0 and node.status == "pending" and self._group is not None:
                self._push(node)  # (before `run` starts, `run` queues the ready ones itself)

    def _broken_dep(self, node: Node) -> str | None:
        """The first dependency that ended without success and so skips `node` (never one of a
        task run `after="done"`)."""
        if node.task.after == "done":
            return None
        for dep in node.task.deps:
            parent = self.by_id[dep]
            if parent.status in _BROKEN and not parent.passable:
                return dep
        return None

    async def next_end(self) -> None:
        """Until the next task ends (or the run stops)."""
        if self.stopped:
            return
        if self._end is None:
            self._end = anyio.Event()
        await self._end.wait()

    async def settled(self) -> None:
        """Until no added task is pending or running (or the run stopped)."""
        while not self.stopped and self._remaining > self._holds:
            self._settled = anyio.Event()
            await self._settled.wait()

    @property
    def cancel_reason(self) -> str:
        """Why running tasks are being cancelled: fail-fast, the deadline, or the caller."""
        if self._reason is not None:
            return self._reason
        deadline = self.account.deadline
        if deadline is not None and anyio.current_time() >= deadline:
            return "the run's time budget ran out"
        return "the run was cancelled"

    def cancel(self, reason: str) -> None:
        """Stop the run: running tasks are cancelled, waiting ones never start."""
        self._reason = reason
        if self._scope is not None:
            self._scope.cancel()

    def _past_deadline(self) -> bool:
        deadline = self.account.deadline
        return deadline is not None and anyio.current_time() >= deadline

    @property
    def ending(self) -> bool:
        """The run is over or on its way out (cancelled, fail-fast, past its deadline)."""
        return self.stopped or self._reason is not None or self._past_deadline()

    # -- the ready queue -------------------------------------------------------------------

    def _push(self, node: Node, *, queued: bool = True) -> None:
        heapq.heappush(self._ready, (-node.priority, node.seq, node))
        if queued and self.bus.active:  # a retry was announced by its TaskRetried already
            self.bus.emit(TaskQueued(run_id=self.run_id, task_id=node.task.id))
        self._wake()

    def _wake(self) -> None:
        # An idle runner if there is one, else a new one while under max_concurrency: runners
        # are started as work arrives, so a wide graph does not pay for all of them up front.
        if self._idle:
            self._idle.pop().set()
        elif self._spawned < self.runners and self._group is not None:
            self._spawned += 1
            self._group.start_soon(self._runner)

    def _pop(self) -> Node | None:
        while self._ready:
            entry = heapq.heappop(self._ready)
            node = entry[2]
            if node.status != "pending":
                continue  # ended while it waited (skipped or cancelled)
            name = node.task.agent_name if self._limits else None  # (most runs set no limit)
            if name is not None and name in self._limits:
                running = self._running.get(name, 0)
                if running >= self._limits[name]:
                    heapq.heappush(self._parked.setdefault(name, []), entry)
                    continue
                self._running[name] = running + 1
            return node
        return None

    def _release(self, node: Node) -> None:
        name = node.task.agent_name if self._limits else None
        if name is None or name not in self._limits:
            return
        self._running[name] -= 1
        parked = self._parked.get(name)
        if parked:
            heapq.heappush(self._ready, heapq.heappop(parked))
            self._wake()

    async def _runner(self) -> None:
        while True:
            if self._scope is not None and (self._scope.cancel_called or self._past_deadline()):
                return  # fail-fast or a deadline: start nothing more
            node = self._pop()
            if node is None:
                if self._remaining == 0:
                    return
                if self._idle:
                    # One idle runner is enough to wait for work; more would all have to be woken
                    # at the end. `_wake` starts a new runner when work outnumbers the idle ones.
                    self._spawned -= 1
                    return
                wake = anyio.Event()
                self._idle.append(wake)
                await wake.wait()
                continue
            bind_task(node.task.id, node.task.agent_name)  # every event it logs names it
            if self.approvals is not None:
                use_desk(self.approvals.desk(node.task.id))
            try:
                await self._run_node(node)
            finally:
                self._release(node)

    # -- one task --------------------------------------------------------------------------

    async def _run_node(self, node: Node) -> None:
        """One attempt of a task; a retry is queued again after its backoff, holding no runner."""
        task = node.task
        max_retries = self.retry.max_retries if task.retries is None else task.retries
        node.status = "running"
        if node.started_at is None:
            node.started_at = time.time()
        try:
            node.attempts += 1
            if self.bus.active:
                self.bus.emit(
                    TaskStarted(
                        run_id=self.run_id,
                        task_id=task.id,
                        attempt=node.attempts,
                        agent=task.agent_name,
                    )
                )
            try:
                with _timeout(task.timeout):
                    output = await self._attempt(node)
                if task.fn is None:  # an agent's answer: note who gave it
                    node.model = output.model
                    node.answered_by = output.agent
                    node.vote = output.vote
                    output = output.output
            except TimeoutError:
                error: Exception = TaskTimeoutError(
                    f"task {task.id!r} timed out after {task.timeout}s; raise its timeout "
                    "or give the worker less to do"
                )
            except Exception as exc:
                signal = paused_signal(exc)
                if signal is not None:
                    self._pause(node, signal.paused)
                    return
                error = _attempt_failure(task, exc)
            else:
                self._succeed(node, output)
                return
            delay = self.retry.decide(
                error, node.attempts, self.rng, self.account.deadline, max_retries=max_retries
            )
            if isinstance(delay, GiveUp):
                self._fail(node, delay.describe(_describe(error)))
                return
            self._retry(node, error, delay)
        except anyio.get_cancelled_exc_class():
            reason = self.cancel_reason
            self._finish(node, "cancelled", reason)
            if self.bus.active:
                self.bus.emit(TaskCancelled(run_id=self.run_id, task_id=task.id, reason=reason))
            raise

    def _retry(self, node: Node, error: Exception, delay: float) -> None:
        """Announce the retry of `node` and queue it again after `delay` seconds."""
        if self.bus.active:
            self.bus.emit(
                TaskRetried(
                    run_id=self.run_id,
                    task_id=node.task.id,
                    attempt=node.attempts,
                    error=_describe(error),
                    delay=delay,
                )
            )
        node.status = "pending"  # until its backoff is over; it holds no runner meanwhile
        if self._group is None:  # pragma: no cover - runners only exist inside `run`
            raise ConfigError("the scheduler is not running")
        self._group.start_soon(self._retry_later, node, delay)

    async def _retry_later(self, node: Node, delay: float) -> None:
        """Queue `node` again once its backoff is over (unless the run ended it meanwhile)."""
        await anyio.sleep(delay)
        if node.status == "pending":
            self._push(node, queued=False)

    def _attempt(self, node: Node) -> Coroutine[Any, Any, Any]:
        """The attempt to await: the function's output, or the agent's `AgentResult`.

        A plain call, not a coroutine awaiting another: one frame less under every task.
        """
        task = node.task
        if task.fn is not None:
            return self._call_function(node)
        agent = node.agent
        if agent is None:  # resolved by the orchestrator before the run starts
            raise ConfigError(f"task {task.id!r} has no agent")
        tools: tuple[Tool, ...] = ()
        if agent.memory and self.account.memory is not None:
            from delegate.memory.blackboard import memory_tools

            tools = tuple(memory_tools(self.account.memory, task_id=task.id))
        votes = agent.votes if task.votes is None else task.votes
        strategy = task.strategy
        if strategy is not None and task.votes is None:
            votes = 1  # the task's strategy replaces its worker's votes
        checked = self.bus.active and (
            node.verify is not None or votes != 1 or strategy is not None
        )
        prompt = self._prompt(node)
        listener = self._check_listener(node) if checked else None
        effort = task.reasoning_effort
        if self.router is not None:  # learned routing picks the tier and effort
            agent, effort, listener = self._route(node, agent, prompt, listener)
        return run_checked(
            agent,
            prompt,
            caller=self._caller(node, agent, votes, tools),
            tools=tools,
            verify=node.verify,
            votes=votes,
            max_output_tokens=task.max_output_tokens,
            reasoning_effort=effort,
            on_check=listener,
            strategy=strategy,
            agents=node.workers,
        )

    def _caller(
        self, node: Node, agent: Agent[Any], votes: object, tools: tuple[Tool, ...]
    ) -> ModelCaller:
        """The attempt's caller: the budget gate, behind the task's journal in a durable run when
        the task makes several calls per answer (those answered are not paid again on a retry
        or a resume: `delegate.orchestrator._journal`)."""
        gate = CallGate(self.account, node)
        journal = self.journal
        if journal is None or not journal.wants(
            votes, node.verify, node.task.strategy, tools or agent.tools
        ):
            return gate
        return journal.caller(gate, node.task.id)

    def _route(
        self, node: Node, agent: Agent[Any], prompt: str, listener: CheckListener | None
    ) -> tuple[Agent[Any], ReasoningEffort | None, CheckListener | None]:
        """The agent, effort and check listener of `node`'s attempt under learned routing (its
        own, when the task is not routed); a task's first routing is a `TaskRouted` event."""
        effort = node.task.reasoning_effort
        router = self.router
        if router is None:
            return agent, effort, listener
        first = node.task.id not in router.routes
        route = router.route(node, agent, prompt)
        if route is None:
            return agent, effort, listener
        if first and self.bus.active:
            decision = route.decision
            self.bus.emit(
                TaskRouted(
                    run_id=self.run_id,
                    task_id=node.task.id,
                    task_kind=decision.kind,
                    arm=decision.arm,
                    agent=decision.agent,
                    effort=decision.effort,
                    explored=decision.explored,
                    passes=decision.passes,
                    trials=decision.trials,
                    cost_usd=decision.cost_usd,
                    reason=decision.reason,
                )
            )
        return route.agent, route.effort, route.listen(listener)

    def _check_listener(self, node: Node) -> CheckListener:
        """What publishes each vote, pick and verdict of `node`'s attempt as a `TaskChecked`."""
        task_id, attempt = node.task.id, node.attempts

        def publish(**decision: Any) -> None:
            self.bus.emit(
                TaskChecked(run_id=self.run_id, task_id=task_id, attempt=attempt, **decision)
            )

        return publish

    async def _call_function(self, node: Node) -> Any:
        task = node.task
        fn = task.fn
        if fn is None:  # only called for function tasks
            raise ConfigError(f"task {task.id!r} has no function")
        context = TaskContext(
            task_id=task.id,
            run_id=self.run_id,
            inputs=self._frozen_inputs,
            deps={dep: self.by_id[dep].output for dep in task.deps},
        )
        if inspect.iscoroutinefunction(fn):
            return await fn(context)
        # abandon_on_cancel: a timeout or cancellation ends the task at once; the thread itself
        # cannot be interrupted and finishes in the background.
        result = await anyio.to_thread.run_sync(fn, context, abandon_on_cancel=True)
        if inspect.isawaitable(result):
            return await result
        return result

    def _prompt(self, node: Node) -> str:
        task = node.task
        deps = {dep: self.by_id[dep].output for dep in task.deps}
        if task.template is None:
            text = task.prompt
        else:
            names = {**self.inputs, **deps, "inputs": self.inputs, "deps": deps}
            if "steps" in task.placeholders:
                names["steps"] = {dep: {"output": output} for dep, output in deps.items()}
            if task.variables:
                names.update(task.variables)
            try:
                text = task.template.render(names)
            except JinjaTemplateError as exc:
                raise TemplateError(f"task {task.id!r}: prompt template failed: {exc}") from None
        if "deps" in task.placeholders or "steps" in task.placeholders:
            return text  # the template picks from `deps` (or a workflow's `steps`) itself
        context = [
            f"## Result of task {dep!r}\n{self._result_text(dep, out)}"
            for dep, out in deps.items()
            if dep not in task.placeholders
        ]
        if not context:
            return text
        return "\n\n".join([*context, f"## Your task\n{text}"])

    def _result_text(self, dep: str, output: Any) -> str:
        node = self.by_id[dep]
        if node.status == "succeeded" or node.passable:
            return format_output(output)
        return f"(no result: the task {node.status}: {node.error})"  # for tasks run after="done"

    # -- state changes ---------------------------------------------------------------------

    def _finish(self, node: Node, status: TaskStatus, error: str | None = None) -> None:
        if node.status in _TERMINAL:
            return
        node.status = status
        node.error = error
        node.finished_at = time.time()
        if self.router is not None:
            self.router.ended(node)
        if self._held and node in self._held:
            self._held.discard(node)  # counted out when it was held
            return
        self._ended()

    def _ended(self) -> None:
        """One task ended (or one hold was released): wake who waits for the run to settle."""
        self._remaining -= 1
        if self._end is not None:
            self._end.set()
            self._end = None
        if self._remaining == self._holds and self._settled is not None:
            self._settled.set()
        if self._remaining == 0:
            idle, self._idle = self._idle, []
            for wake in idle:
                wake.set()
            if self._done is not None:
                self._done.set()

    def _succeed(self, node: Node, output: Any) -> None:
        node.output = output
        self._finish(node, "succeeded")
        if self.bus.active:
            self.bus.emit(
                TaskSucceeded(
                    run_id=self.run_id,
                    task_id=node.task.id,
                    attempt=node.attempts,
                    output=output,
                    usage=node.usage,
                    model=node.model,
                )
            )
        for child in node.children:
            child.pending -= 1
            if child.pending == 0 and child.status == "pending":
                self._push(child)

    def _fail(self, node: Node, error: str) -> None:
        self._finish(node, "failed", error)
        if self.bus.active:
            self.bus.emit(
                TaskFailed(
                    run_id=self.run_id,
                    task_id=node.task.id,
                    attempt=node.attempts,
                    error=error,
                    usage=node.usage,
                )
            )
        if self.fail_fast:
            self.cancel(f"fail_fast: task {node.task.id!r} failed")
            return
        self._skip_children(node, f"dependency {node.task.id!r} failed")

    def _skip(self, node: Node, reason: str) -> None:
        self._finish(node, "skipped", reason)
        if self.bus.active:
            self.bus.emit(TaskSkipped(run_id=self.run_id, task_id=node.task.id, reason=reason))
        self._skip_children(node, reason)

    def _skip_children(self, node: Node, reason: str) -> None:
        stack = list(node.children)
        while stack:
            child = stack.pop()
            if child.status != "pending":
                continue
            if child.task.after == "done":
                # It runs once its dependencies have ended, however they ended.
                child.pending -= 1
                if child.pending == 0 and self._group is not None:
                    self._push(child)
                continue
            self._finish(child, "skipped", reason)
            if self.bus.active:
                self.bus.emit(TaskSkipped(run_id=self.run_id, task_id=child.task.id, reason=reason))
            stack.extend(child.children)

    def _pause(self, node: Node, paused: object) -> None:
        """The task waits for a human's decision: it ends for this run, and so, held back, do the
        tasks that depend on it (they stay "pending")."""
        if not isinstance(paused, PausedRound):  # pragma: no cover - raised by our agents only
            raise ConfigError(f"task {node.task.id!r}: a pause without its round")
        self.paused[node.task.id] = paused
        self._finish(node, "waiting")
        if self.bus.active:
            self.bus.emit(
                TaskWaiting(
                    run_id=self.run_id,
                    task_id=node.task.id,
                    tools=tuple(paused.calls[i].name for i in paused.undecided()),
                    usage=node.usage,
                )
            )
        stack = list(node.children)
        while stack:
            child = stack.pop()
            if child.status == "pending" and child not in self._held:
                self._hold(child)
                stack.extend(child.children)

    def _hold(self, node: Node) -> None:
        """Count a pending task out of this run: a task it depends on is waiting."""
        self._held.add(node)
        self._ended()

    def _waits_on_pause(self, node: Node) -> bool:
        for dep in node.task.deps:
            parent = self.by_id[dep]
            if parent.status == "waiting" or parent in self._held:
                return True
        return False

    def _cancel_unfinished(self, reason: str) -> None:
        for node in self.nodes:
            if node.status not in _TERMINAL and node not in self._held:
                self._finish(node, "cancelled", reason)
                if self.bus.active:
                    self.bus.emit(
                        TaskCancelled(run_id=self.run_id, task_id=node.task.id, reason=reason)
                    )


_NO_TIMEOUT = nullcontext()  # (stateless, so one serves every task without a timeout)


def _timeout(seconds: float | None) -> AbstractContextManager[Any]:
    return anyio.fail_after(seconds) if seconds is not None else _NO_TIMEOUT


def build_nodes(
    tasks: list[Task], agents: Mapping[str, Agent[Any]], known: Mapping[str, Node] | None = None
) -> list[Node]:
    """Scheduler nodes for `tasks` (in topological order), with critical-path priorities.

    `known` holds the nodes of a running graph that `tasks` are added to (`Scheduler.add`):
    `tasks` may depend on them; a dependency that already succeeded does not hold a new node
    back, and the new nodes raise the priorities of those they wait for.
    """
    with _gc.during_run():  # a node per task, all kept: nothing for the collector to find
        return _nodes(tasks, agents, known)


def _nodes(
    tasks: list[Task], agents: Mapping[str, Agent[Any]], known: Mapping[str, Node] | None
) -> list[Node]:
    nodes: list[Node] = []
    by_id: dict[str, Node] = {}
    known = known or {}
    seq = len(known)
    for task in tasks:
        agent = task.agent if not isinstance(task.agent, str) else agents[task.agent]
        node = Node(task, agent, 0.0, seq, 0)
        seq += 1
        if task.verify is not None:
            verify = task.verify
            node.verify = agents[verify] if isinstance(verify, str) else verify
        elif node.agent is not None:
            node.verify = node.agent.verify
        if task.strategy is not None:
            node.workers = {name: agents[name] for name in strategy_workers(task.strategy)}
        nodes.append(node)
        by_id[task.id] = node
        for dep in task.deps:
            parent = by_id.get(dep) or known[dep]
            ended = parent.status == "succeeded" or parent.passable
            if task.after == "done":
                ended = parent.status in _TERMINAL
            if not ended:
                node.pending += 1
                parent.children.append(node)
    for node in reversed(nodes):
        tail = max((child.priority for child in node.children), default=0.0)
        node.priority = node.task.weight + tail
    if known:
        _raise_priorities(nodes, by_id, known)
    return nodes


def _raise_priorities(
    nodes: list[Node], by_id: Mapping[str, Node], known: Mapping[str, Node]
) -> None:
    """Carry the new nodes' remaining paths up to the older nodes they wait for."""
    # Two lookups, not one merged copy: a copy of the running graph per added task made adding
    # tasks one at a time (plans, fan-outs) quadratic.
    stack = list(nodes)
    while stack:
        node = stack.pop()
        for dep in node.task.deps:
            parent = by_id.get(dep) or known[dep]
            if parent.status == "pending" and parent.priority < parent.task.weight + node.priority:
                parent.priority = parent.task.weight + node.priority
                stack.append(parent)
