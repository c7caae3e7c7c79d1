"""The lifecycle of one run: set up, schedule (with a driver beside it), record, conclude.

    launch -> drive -> conclude        every run: execute, run, run_driven, resume
    begin / take / stopped              its row and lease in the store, when there is one

A run with a store is owned through its lease and recorded by a `RunRecorder` while it runs; a
run that stops before it concludes (cancelled, Ctrl-C, SIGTERM, an error) is stored as
"interrupted" with the reason and its lease is given up, so it can be resumed at once.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from pydantic import BaseModel

from delegate._log import bound_run
from delegate.agents.limits import Budget
from delegate.agents.mcp import mcp_servers_open
from delegate.errors import ConfigError
from delegate.orchestrator import routing, tool_approvals
from delegate.orchestrator._driver import RunDriver
from delegate.orchestrator._lease import RunLease
from delegate.orchestrator._persist import RunRecorder, restore_nodes, to_json
from delegate.orchestrator.calls import RunAccount, planner_only_usd
from delegate.orchestrator.events import RunFinished, RunStarted
from delegate.orchestrator.graph import GraphSpec, Task, TaskGraph
from delegate.orchestrator.planned import PlannedRun
from delegate.orchestrator.results import (
    RunResult,
    RunUsage,
    interrupted_reason,
    result_of,
    run_error,
    usage_of,
)
from delegate.orchestrator.scheduler import Node, Scheduler, build_nodes
from delegate.orchestrator.stream import text_deltas

if TYPE_CHECKING:
    from delegate.agents.agent import Agent
    from delegate.memory.records import RunRecord, TaskRecord
    from delegate.memory.store import Store
    from delegate.orchestrator.run import Orchestrator

__all__ = ["begin", "launch", "reclaim", "resume_record", "roles", "take"]


async def begin(
    store: Store,
    run_id: str,
    spec: dict[str, Any],
    inputs: Mapping[str, Any],
    budget: Budget | None,
    workflow: str | None,
    goal: str | None = None,
) -> RunLease:
    """Write a new run's row ("running") and take its lease, in one transaction."""
    record = _run_record(run_id, spec, inputs, budget, workflow, goal)
    lease = RunLease(store, run_id)
    await anyio.to_thread.run_sync(lease.start, record)
    return lease


async def reclaim(
    store: Store, run_id: str, budget: Budget | None, *, force: bool
) -> tuple[RunLease, Budget | None, Mapping[str, Any] | None]:
    """Take a stored run's lease back: the lease, its budget and what its calls already spent.

    The run's own budget, and its spend, hold after resume; `budget` replaces the stored one.
    """
    lease = await take(store, run_id, force=force)
    stored = await anyio.to_thread.run_sync(store.get_run, run_id)
    if stored is None:
        return lease, budget, None
    if budget is None and stored.budget:
        budget = Budget(**stored.budget)
    return lease, budget, stored.spend


async def take(store: Store, run_id: str, *, force: bool = False) -> RunLease:
    """This process's lease on the run (see `delegate.orchestrator._lease`)."""
    lease = RunLease(store, run_id)
    await anyio.to_thread.run_sync(functools.partial(lease.acquire, force=force))
    return lease


async def resume_record(
    orch: Orchestrator,
    record: RunRecord,
    store: Store,
    lease: RunLease,
    output_type: type[BaseModel] | None,
    began: float,
) -> RunResult:
    """Run what a stored run left: its succeeded tasks are restored, the rest run now."""
    run_id = record.id
    spec = GraphSpec.from_json(record.graph)
    graph = TaskGraph.from_spec(spec)
    inputs, tasks, agents = orch._prepare("resume", graph, record.inputs)
    rows = await anyio.to_thread.run_sync(store.get_tasks, run_id)
    restored = {row.task_id: row for row in rows if row.status == "succeeded"}
    budget = Budget(**record.budget) if record.budget else None
    planned = None
    if spec.planned is not None:
        if orch.plans is None:
            raise ConfigError(
                f"run {run_id!r} was planned: resume it with an Orchestrator that has a "
                "planner (and the same workers)"
            )
        planned = orch.planned_run(run_id, record.goal or "", inputs, output_type)
        planned.graph = graph
        planned.revisions, planned.handled = PlannedRun.stored(spec.planned)
        planned.source = None if spec.workflow is None else dict(spec.workflow)
        # Failures a replan already answered stay failed: they are not run again.
        restored |= {
            row.task_id: row
            for row in rows
            if row.task_id in planned.handled and row.status in ("failed", "skipped")
        }
        agents = dict(orch.workers)
    return await launch(
        orch,
        run_id,
        tasks,
        agents,
        inputs,
        budget,
        store,
        restored=restored,
        workflow=record.workflow,
        planned=planned,
        spend=record.spend,
        lease=lease,
        began=began,
        resumed=True,
    )


async def launch(
    orch: Orchestrator,
    run_id: str,
    tasks: list[Task],
    agents: dict[str, Agent[Any]],
    inputs: dict[str, Any],
    budget: Budget | None,
    store: Store | None,
    *,
    restored: Mapping[str, TaskRecord],
    workflow: str | None,
    planned: RunDriver | None = None,
    spend: Mapping[str, Any] | None = None,
    lease: RunLease | None = None,
    began: float | None = None,
    resumed: bool = False,
) -> RunResult:
    """Set the run up (nodes, account, memory, cache, what was restored) and drive it.

    A `resumed` run gets back the rounds its waiting tasks paused in, and the decisions made.
    """
    try:
        nodes = build_nodes(tasks, agents)
        # Every model a driven run may call is priced and budgeted up front.
        members = agents if planned is None else {**planned.agents(), **agents}
        account = orch._account(tasks, members, budget, began)
        if spend:
            account.restore(spend)  # a resumed run: what it spent before still counts
        if store is not None:
            from delegate.memory.blackboard import Memory

            account.memory = Memory(store, run_id=run_id, workflow=workflow)
            account.cache = store if orch.cache else None
        restore_nodes(nodes, restored, account)
        # A resumed run's task journals: the calls its unfinished tasks had answered.
        steps = None
        if resumed and store is not None:
            steps = await anyio.to_thread.run_sync(store.get_steps, run_id)
        account.deltas = text_deltas(run_id)  # None unless a stream of this run wants them
        desks = await tool_approvals.open_desks(
            store, run_id, orch.approve_tool, resumed=resumed, bus=orch.events
        )
        router = None
        if orch.routing is not None:
            router = await _router(orch, run_id, nodes, members, planned, account, store, workflow)
    except BaseException as exc:
        # Refused before anything ran (an unknown price, a bad budget): the run says why,
        # and nobody owns it any more.
        if store is not None:
            await stopped(store, run_id, "failed", RunUsage(), exc, lease)
        raise
    scheduler = Scheduler(
        nodes,
        run_id=run_id,
        inputs=inputs,
        max_concurrency=orch.max_concurrency,
        retry=orch.retry,
        fail_fast=orch.fail_fast,
        bus=orch.events,
        account=account,
        rng=orch._rng,
    )
    scheduler.approvals = desks
    if store is not None:
        from delegate.orchestrator._journal import RunJournal

        scheduler.journal = RunJournal(steps)
    scheduler.router = router
    if planned is not None:
        planned.prepare(account)
        scheduler.hold()  # open until the driver is done adding tasks
    with bound_run(run_id):  # every event logged during the run names it
        async with _traced(orch, run_id, scheduler, account, planned, store, resumed) as trace:
            try:
                return await _drive(orch, run_id, scheduler, account, planned, store, lease, trace)
            finally:
                if router is not None and store is not None:
                    await routing.save_outcomes(router, store)


async def _router(
    orch: Orchestrator,
    run_id: str,
    nodes: list[Node],
    members: Mapping[str, Agent[Any]],
    planned: RunDriver | None,
    account: RunAccount,
    store: Store | None,
    workflow: str | None,
) -> routing.Router:
    """The run's learned routing, with its history read from the store (one query)."""
    setting = orch.routing
    if setting is None:  # only called with routing on
        raise ConfigError("this orchestrator does not route")
    steps, steps_verified = routing.driver_steps(planned)
    verified = steps_verified or any(node.verify is not None for node in nodes)
    verified = verified or any(agent.verify is not None for agent in members.values())
    budget = account.run.budget if account.run is not None else None
    return await routing.open_router(
        setting,
        store,
        run_id=run_id,
        workflow=workflow,
        account=account,
        budget_usd=None if budget is None else budget.usd,
        verified=verified,
        # A driver's tasks are its steps (a workflow's) or a planner's (their ids say nothing).
        fixed=steps if planned is not None else frozenset(node.task.id for node in nodes),
        rng=orch._rng,
    )


def _traced(
    orch: Orchestrator,
    run_id: str,
    scheduler: Scheduler,
    account: RunAccount,
    planned: RunDriver | None,
    store: Store | None,
    resumed: bool,
) -> AbstractAsyncContextManager[str | None]:
    """The run's span when the orchestrator traces (`delegate.observe`), yielding its
    traceparent for the `RunStarted` event; else nothing at all."""
    if orch.tracer is None:
        return nullcontext()
    by_id = scheduler.by_id

    def judge(task_id: str) -> str | None:
        node = by_id.get(task_id)
        return None if node is None or node.verify is None else node.verify.name

    return orch.tracer.run(
        run_id,
        store=store,
        resumed=resumed,
        account=account,
        roles=roles(orch, planned),
        judges=judge,
    )


async def _drive(
    orch: Orchestrator,
    run_id: str,
    scheduler: Scheduler,
    account: RunAccount,
    planned: RunDriver | None,
    store: Store | None,
    lease: RunLease | None,
    trace: str | None = None,
) -> RunResult:
    """Run the scheduler (and the driver) with the store's recorder, then conclude.

    A run that stops before it concludes (cancelled, Ctrl-C, SIGTERM, an error) is stored as
    "interrupted" with the reason, and its lease is given up: it can be resumed at once. Either
    way the run's end is one transaction (`RunRecorder.end`): its last batch, how it ended, its
    lease given up; and nothing of it when the lease was lost.
    """
    started = time.time()
    recorder = None if store is None else _recorder(store, run_id, scheduler, account, lease)
    unsubscribe = None if recorder is None else orch.events.subscribe(recorder)
    output: Any = None
    try:
        try:
            # The MCP servers the run's agents use start inside it and stop when it ends.
            async with (
                mcp_servers_open(deadline=lambda: account.deadline),
                anyio.create_task_group() as group,
            ):
                if recorder is not None:
                    group.start_soon(recorder.run)
                if orch.events.active:
                    orch.events.emit(
                        RunStarted(run_id=run_id, tasks=len(scheduler.nodes), trace=trace)
                    )
                try:
                    if planned is None:
                        await scheduler.run()
                    else:
                        output = await _plan_and_answer(planned, scheduler, account, recorder)
                finally:
                    if recorder is not None:
                        recorder.close()
        finally:
            if unsubscribe is not None:
                unsubscribe()
        return await _conclude(orch, run_id, scheduler, account, planned, output, started, recorder)
    except BaseException as exc:
        sole = _sole_error(exc)
        if store is not None:
            usage = usage_of(account, roles(orch, planned), None)
            # A run cancelled from outside cancels the recorder's loop too: what it had not
            # written yet is written now, with the run's end (nothing, when the lease was lost:
            # `RunRecorder.end` only stops the writer then).
            await stopped(store, run_id, "interrupted", usage, sole, lease, recorder)
        if sole is not exc:
            # The one error from inside the run's task groups (the store failed, a bug, an event
            # handler raised): raised as itself, so callers can catch it by its type.
            raise sole from None
        raise


def _sole_error(exc: BaseException) -> BaseException:
    """The one exception in `exc` when it is a group (of groups) holding one (the same one may be
    raised twice: a failed store's error by its writer and by the event it was handed); else
    `exc`."""
    found: list[BaseException] = []
    stack = [exc]
    while stack:
        item = stack.pop()
        if isinstance(item, BaseExceptionGroup):
            stack.extend(item.exceptions)
        elif all(item is not seen for seen in found):
            found.append(item)
    return found[0] if len(found) == 1 else exc


def _recorder(
    store: Store, run_id: str, scheduler: Scheduler, account: RunAccount, lease: RunLease | None
) -> RunRecorder:
    """The run's recorder; under a budget, each call's reservation is durable before it is sent."""
    recorder = RunRecorder(
        store,
        run_id,
        scheduler.by_id,
        account,
        lease=lease,
        on_lease_lost=lambda: scheduler.cancel(
            "another process took the run over (resume with force=True): this one stops"
        ),
        paused=scheduler.paused,  # a pause is durable with its event
    )
    account.journal = recorder.durable
    recorder.journal = scheduler.journal  # multi-call tasks' answered calls, with the spend
    recorder.router = scheduler.router  # routing outcomes, with the results they come from
    return recorder


async def _conclude(
    orch: Orchestrator,
    run_id: str,
    scheduler: Scheduler,
    account: RunAccount,
    planned: RunDriver | None,
    output: Any,
    started: float,
    recorder: RunRecorder | None,
) -> RunResult:
    """The run's result, written to the store (with the run's last batch) and announced."""
    planner_price = None if orch.planner is None else account.price(orch.planner.model)
    usage = usage_of(
        account,
        roles(orch, planned),
        planner_only_usd(account.book, planner_price),
    )
    nodes = scheduler.nodes
    result = result_of(run_id, nodes, usage, scheduler.deadline_passed, started, time.time())
    if planned is not None:
        result = planned.result(result, output, scheduler.deadline_passed)
    if scheduler.paused or (scheduler.approvals is not None and scheduler.approvals.restored):
        result = await _waiting(result, scheduler, recorder)
    if result.error is None and result.status != "succeeded":
        # The run's own reason: a planned run keeps its planner's; others name their tasks'.
        error = run_error(result.tasks.values(), scheduler.deadline_passed)
        result = result.model_copy(update={"error": error})
    if recorder is not None:
        await anyio.to_thread.run_sync(_end_run, recorder, result)
    if orch.events.active:
        orch.events.emit(
            RunFinished(
                run_id=run_id,
                status=result.status,
                usage=account.book.total,
                output=result.output,
                error=result.error,
            )
        )
    return result


async def _waiting(
    result: RunResult, scheduler: Scheduler, recorder: RunRecorder | None
) -> RunResult:
    """The result with the calls its waiting tasks wait for, which the store keeps with the
    rounds they paused in (rounds of tasks that went on since are forgotten)."""
    paused = {
        node.task.id: scheduler.paused[node.task.id]
        for node in scheduler.nodes
        if node.task.id in scheduler.paused
    }
    if recorder is not None and (recorder.lease is None or not recorder.lease.lost):
        restored = scheduler.approvals is not None and scheduler.approvals.restored
        await tool_approvals.save(recorder.store, result.run_id, paused, restored)
    pending = tool_approvals.pending_calls(result.run_id, paused)
    if not pending:
        return result
    # Whatever a driver made of its tasks, a run with a task that waits is not over.
    reason = result.error or tool_approvals.waiting_reason(pending)
    return result.model_copy(update={"status": "waiting", "pending": pending, "error": reason})


def roles(orch: Orchestrator, driver: RunDriver | None = None) -> dict[str, str]:
    """Agent name → role in `RunUsage.by_role` (everyone else is one of the "workers"); a
    driver names its own planners (a workflow's plan steps)."""
    named: dict[str, str] = {} if driver is None else dict(driver.roles())
    if orch.synthesizer is not None:
        named[orch.synthesizer.name] = "synthesizer"
    if orch.planner is not None:
        named[orch.planner.name] = "planner"
    return named


async def stopped(
    store: Store,
    run_id: str,
    status: str,
    usage: RunUsage,
    exc: BaseException,
    lease: RunLease | None,
    recorder: RunRecorder | None = None,
) -> None:
    """Record a run that ended without concluding, with what its recorder had not written yet,
    and give its lease up (one transaction: `Store.end_run`)."""
    ending: dict[str, Any] = {
        "status": status,
        "output": None,
        "usage": usage.model_dump(mode="json"),
        "error": interrupted_reason(exc),
    }
    if recorder is not None:
        end = functools.partial(recorder.end, **ending)
    else:
        owner = None if lease is None else lease.owner
        end = functools.partial(store.end_run, run_id, owner=owner, **ending)
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(end)


async def _plan_and_answer(
    planned: RunDriver, scheduler: Scheduler, account: RunAccount, recorder: RunRecorder | None
) -> Any:
    """Run the driver beside the scheduler, then have it answer; returns the answer."""
    async with anyio.create_task_group() as planning:
        planning.start_soon(planned.drive, scheduler, account, recorder)
        await scheduler.run()
        planning.cancel_scope.cancel()  # when a deadline ended the run, planning ends too
    # A task that waits for a human: the answer is written once the resumed run has its result.
    output = None if scheduler.paused else await planned.answer(scheduler, account)
    if recorder is not None:
        recorder.graph_changed(planned.spec())
    return output


def _run_record(
    run_id: str,
    spec: dict[str, Any],
    inputs: Mapping[str, Any],
    budget: Budget | None,
    workflow: str | None,
    goal: str | None = None,
) -> RunRecord:
    from delegate.memory.records import RunRecord

    return RunRecord(
        id=run_id,
        workflow=workflow,
        goal=goal,
        inputs={key: to_json(value) for key, value in inputs.items()},
        graph=spec,
        status="running",
        budget=None if budget is None else dataclasses.asdict(budget),
        usage=None,
        output=None,
        error=None,
        created_at=datetime.now(UTC),
        finished_at=None,
    )


def _end_run(recorder: RunRecorder, result: RunResult) -> bool:
    # The run's row holds the run's reason (`RunResult.error`), as `run --json` shows it; each
    # task's row holds its own.
    return recorder.end(
        status=result.status,
        output=to_json(result.output),
        usage=result.usage.model_dump(mode="json"),
        error=None if result.error is None else result.error[:2000],
    )
