"""The `Orchestrator` and the lifecycle of one run: resolve, schedule, report.

    orch = Orchestrator(workers=[researcher, writer], max_concurrency=16)
    result = await orch.execute(graph, inputs={"topic": "solid-state batteries"})
    result.status, result.output, result.tasks["search"].attempts, result.usage.cost_usd

`RunResult.status` is "succeeded" when every task succeeded, "partial" when some did and others
failed, were skipped or were cancelled, and "failed" when none succeeded.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread
from pydantic import BaseModel

from delegate._sync import run_sync
from delegate.agents.limits import Budget
from delegate.agents.models import Price
from delegate.errors import (
    ConfigError,
    DelegateError,
    GraphError,
    PriceUnknownError,
    StoreError,
    did_you_mean,
)
from delegate.orchestrator.budget import BudgetLedger
from delegate.orchestrator.calls import (
    AUTO_CALLS,
    AUTO_CALLS_PER_ANSWER,
    RunAccount,
    answers_of,
    planner_only_usd,
)
from delegate.orchestrator.driver import RunDriver
from delegate.orchestrator.estimate import Estimate, estimate_tasks
from delegate.orchestrator.events import EventBus, EventHandler, RunFinished, RunStarted
from delegate.orchestrator.graph import RESERVED_NAMES, Task, TaskGraph
from delegate.orchestrator.lease import RunLease
from delegate.orchestrator.persist import (
    RunRecorder,
    graph_from_spec,
    graph_spec,
    restore_nodes,
    to_json,
)
from delegate.orchestrator.planned import PlannedRun, synthesizer_for
from delegate.orchestrator.planner import Planner, PlanResult
from delegate.orchestrator.results import (
    RunResult,
    RunStatus,
    RunUsage,
    TaskResult,
    interrupted_reason,
    result_of,
    run_error,
    usage_of,
)
from delegate.orchestrator.scheduler import (
    RetryPolicy,
    Scheduler,
    build_nodes,
)

if TYPE_CHECKING:
    from delegate.agents.agent import Agent
    from delegate.memory.records import RunRecord, TaskRecord
    from delegate.memory.store import Store

__all__ = ["Orchestrator", "RunResult", "RunStatus", "RunUsage", "TaskResult"]


class Orchestrator:
    """Runs task graphs on a pool of workers.

    Args:
        workers: the agents tasks may name by string (`g.add(..., agent="scout")`); names must be
            unique.
        planner: the reasoning model that plans `run(goal)`: an `Agent`, or a `Planner` to set
            `max_tasks`, plan repair attempts or the prompt. Its calls are reported as the
            planner's role, and `RunUsage.planner_only_usd` prices every token of a run at its
            model's price.
        synthesizer: the agent that writes a planned run's final answer (default: the planner).
        max_replans: how many times a planned run may be replanned after failures.
        judge_goal: before the final answer of a planned run, have the planner's model check that
            the task results meet the goal, and replan (within `max_replans`) when they do not.
        memory: where runs and the agents' shared memory are kept, so they survive the process.
            "default": `$DELEGATE_DB_URL`, else the SQLite file `$DELEGATE_HOME/delegate.db`
            (`DELEGATE_HOME` defaults to `~/.delegate`; the `delegate` command uses the same).
            Or a database URL ("sqlite:///path/runs.db", "postgresql+psycopg://…"), a `Store`,
            or ":memory:" (a store inside this process). None keeps nothing: no resume.
        cache: answer a request that was answered before (same model, same messages and
            settings) from the store's call cache, at no cost. Needs `memory`.
        budget: the default budget of every run (`execute(..., budget=)` replaces it for one run).
        prices: USD per million input/output tokens by model name, `{"my/model": (0.2, 0.8)}`;
            they override the models' own prices (litellm's cost map for real models).
        max_calls: a guard against runaway loops: at most this many model calls per run.
            "auto" (the default) allows 500, or 4 per answer the model tasks ask for (one
            each, or their `votes`, plus one for a judge) when that is more; an int is an exact
            cap; None removes the guard. A budget's `calls` applies as well, and the tighter
            wins.
        max_concurrency: how many tasks run at once, across the whole run.
        retry: how transient failures are retried (default: 2 retries, 0.5 s base backoff).
        fail_fast: cancel the whole run at the first task that fails for good, instead of
            skipping only its dependents.
        on_event: a handler called with every `Event` of every run (see `subscribe`).
        seed: seeds the retry jitter, for reproducible runs.
    """

    def __init__(
        self,
        *,
        workers: Sequence[Agent] = (),
        planner: Agent | Planner | None = None,
        synthesizer: Agent | None = None,
        max_replans: int = 2,
        judge_goal: bool = False,
        memory: str | Store | None = "default",
        cache: bool = False,
        budget: Budget | None = None,
        prices: Mapping[str, tuple[float, float] | Price] | None = None,
        max_calls: int | Literal["auto"] | None = "auto",
        max_concurrency: int = 16,
        retry: RetryPolicy | None = None,
        fail_fast: bool = False,
        on_event: EventHandler | None = None,
        seed: int | None = None,
    ) -> None:
        from delegate.agents.agent import Agent

        if (
            not isinstance(max_concurrency, int)
            or isinstance(max_concurrency, bool)
            or max_concurrency < 1
        ):
            raise ConfigError(f"max_concurrency must be an integer ≥ 1, got {max_concurrency!r}")
        if (memory is not None and not isinstance(memory, str) and not _is_store(memory)) or (
            isinstance(memory, str) and not memory.strip()
        ):
            raise ConfigError(
                f"memory must be a database URL, ':memory:', a Store or None; got "
                f"{type(memory).__name__}"
            )
        self.workers: dict[str, Agent] = {}
        for worker in workers:
            if not isinstance(worker, Agent):
                raise ConfigError(
                    f"workers must be Agent instances, got {type(worker).__name__}; "
                    "wrap a model as Agent(name, model)"
                )
            if worker.name in self.workers:
                raise ConfigError(
                    f"two workers are named {worker.name!r}; give each agent its own name"
                )
            self.workers[worker.name] = worker
        self.plans = _planner(planner, synthesizer, self.workers, max_replans)
        planner = None if self.plans is None else self.plans.agent
        self.synthesizer = synthesizer
        self.max_replans = max_replans
        self.judge_goal = bool(judge_goal)
        if budget is not None and not isinstance(budget, Budget):
            raise ConfigError(f"budget must be a delegate.Budget, got {type(budget).__name__}")
        if max_calls not in (None, "auto") and (
            not isinstance(max_calls, int) or isinstance(max_calls, bool) or max_calls < 1
        ):
            raise ConfigError(
                f'max_calls must be an integer ≥ 1, "auto", or None for no cap; got {max_calls!r}'
            )
        self.planner = planner
        if cache and memory is None:
            raise ConfigError("cache=True needs a store to keep answers in: pass memory=<URL>")
        self.memory = memory
        self.cache = bool(cache)
        self._store: Store | None = None
        self.budget = budget
        self.prices = _prices(prices)
        self.max_calls = max_calls
        self.max_concurrency = max_concurrency
        self.retry = retry if retry is not None else RetryPolicy()
        self.fail_fast = fail_fast
        self.events = EventBus()
        self._rng = random.Random(seed)
        if on_event is not None:
            self.events.subscribe(on_event)

    def subscribe(self, handler: EventHandler) -> Any:
        """Call `handler` with every event of every run; returns a function that unsubscribes."""
        return self.events.subscribe(handler)

    async def execute(
        self,
        graph: TaskGraph,
        inputs: Mapping[str, Any] | None = None,
        *,
        budget: Budget | None = None,
        run_id: str | None = None,
        workflow: str | None = None,
    ) -> RunResult:
        """Run every task of `graph` and return the result.

        Budgets never raise: a call that does not fit is refused (its task fails with
        `BudgetExceeded`), and when the time budget runs out the running tasks are cancelled
        and the result, status "partial", holds everything that finished.

        Args:
            graph: the tasks to run.
            inputs: values for the prompts' `{{ name }}` placeholders.
            budget: this run's budget, instead of the orchestrator's default.
            run_id: the run's id (default: a new random one).
            workflow: the name of the workflow this run belongs to: its runs share the
                "workflow" memory namespace, and the store records it.

        Raises:
            GraphError: an unknown agent name, or a placeholder that is neither an input nor a
                dependency.
            PriceUnknownError: a usd budget applies and a worker's model has no known price.
        """
        began = anyio.current_time()  # the time budget counts from here, store opening included
        inputs, tasks, agents = self._prepare("execute", graph, inputs)
        run_id = run_id or uuid.uuid4().hex
        store = await anyio.to_thread.run_sync(self._open_store)
        lease = None
        if store is not None:
            record = _run_record(run_id, graph_spec(tasks), inputs, budget, workflow)
            await anyio.to_thread.run_sync(store.create_run, record)
            lease = await _take(store, run_id)
        return await self._run(
            run_id,
            tasks,
            agents,
            inputs,
            budget,
            store,
            restored={},
            workflow=workflow,
            lease=lease,
            began=began,
        )

    async def run(
        self,
        goal: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        budget: Budget | None = None,
        run_id: str | None = None,
        workflow: str | None = None,
        output_type: type[BaseModel] | None = None,
    ) -> RunResult:
        """Plan `goal` with the planner, run the plan on the workers, and answer.

        The planner's model writes a plan (streamed: each task starts as soon as it is known),
        the workers run it in parallel, failures are replanned (at most `max_replans` times,
        finished tasks never run again), and the synthesizer writes the answer from the task
        outputs: `RunResult.output`, text or an `output_type` instance. Planner and synthesis
        calls count against the same budget as the workers'. See `delegate.orchestrator.planned`.

        Args:
            goal: what the run must achieve.
            inputs: values the planner sees and the tasks can use as `{{ inputs.name }}`.
            budget: this run's budget, instead of the orchestrator's default.
            run_id: the run's id (default: a new random one).
            workflow: the workflow this run belongs to (shared "workflow" memory).
            output_type: a pydantic model for a typed final answer.

        Raises:
            ConfigError: the orchestrator has no planner or no workers, or a bad argument.
            PriceUnknownError: a usd budget applies and a model has no known price.
        """
        self._check_planning(goal)
        if output_type is not None and not (
            isinstance(output_type, type) and issubclass(output_type, BaseModel)
        ):
            raise ConfigError(
                f"output_type must be a pydantic BaseModel subclass, got {output_type!r}"
            )
        checked = dict(inputs or {})
        run_id = run_id or uuid.uuid4().hex
        planned = self.planned_run(run_id, goal, checked, output_type)
        return await self.run_driven(
            planned, checked, budget=budget, run_id=run_id, workflow=workflow, goal=goal
        )

    async def plan(
        self,
        goal: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        budget: Budget | None = None,
    ) -> PlanResult:
        """The planner's plan for `goal`, checked and repaired like a run's first plan; nothing
        runs. The planner's calls are held to the budget (this one's, else the default).

        Raises:
            ConfigError: no planner or no workers.
            PlanInvalid: no valid plan in the planner's attempts.
            BudgetExceeded: the planner's call does not fit the budget.
        """
        self._check_planning(goal)
        planned = self.planned_run("plan", goal, dict(inputs or {}), None)
        account = self._account([], {**planned.agents(), **self.workers}, budget)
        return await planned.plan_only(account)

    def _check_planning(self, goal: object) -> None:
        if self.plans is None or self.planner is None:
            raise ConfigError(
                'run(goal) needs a planner: Orchestrator(planner=Agent("planner", '
                '"openai/o4-mini"), workers=[...]); or build a TaskGraph and call execute()'
            )
        if not self.workers:
            raise ConfigError("run(goal) needs workers for the plan: Orchestrator(workers=[...])")
        if not isinstance(goal, str) or not goal.strip():
            raise ConfigError(f"goal must be a non-empty str, got {goal!r}")

    def run_sync(
        self,
        goal: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        budget: Budget | None = None,
        run_id: str | None = None,
        workflow: str | None = None,
        output_type: type[BaseModel] | None = None,
    ) -> RunResult:
        """Blocking twin of `run`, for scripts and notebooks without an event loop."""
        return run_sync(
            self.run,
            goal,
            inputs,
            budget=budget,
            run_id=run_id,
            workflow=workflow,
            output_type=output_type,
        )

    async def run_driven(
        self,
        driver: RunDriver,
        inputs: Mapping[str, Any],
        *,
        budget: Budget | None = None,
        run_id: str,
        workflow: str | None = None,
        goal: str | None = None,
        resume: bool = False,
        force: bool = False,
    ) -> RunResult:
        """Run a graph that `driver` builds while it runs (see `delegate.orchestrator.driver`).

        For code that extends delegate (the YAML workflows use it); `run` and `execute` are the
        everyday entry points. With `resume=True` the run already exists in the store and the
        driver restores what finished (`force` as for `resume`).
        """
        began = anyio.current_time()
        checked = dict(inputs)
        store = await anyio.to_thread.run_sync(self._open_store)
        spend = None
        lease = None
        if store is not None and not resume:
            record = _run_record(run_id, driver.spec(), checked, budget, workflow, goal)
            await anyio.to_thread.run_sync(store.create_run, record)
            lease = await _take(store, run_id)
        elif store is not None:
            lease = await _take(store, run_id, force=force)
            stored = await anyio.to_thread.run_sync(store.get_run, run_id)
            if stored is not None:
                # The run's own budget, and what its calls already spent, hold after resume.
                if budget is None and stored.budget:
                    budget = Budget(**stored.budget)
                spend = stored.spend
        return await self._run(
            run_id,
            [],
            dict(self.workers),
            checked,
            budget,
            store,
            restored={},
            workflow=workflow,
            planned=driver,
            spend=spend,
            lease=lease,
            began=began,
        )

    def planned_run(
        self,
        run_id: str,
        goal: str,
        inputs: Mapping[str, Any],
        output_type: type[BaseModel] | None,
    ) -> PlannedRun:
        """The planning side of a run of `goal` (what `run` drives; see `run_driven`).

        Raises:
            ConfigError: the orchestrator has no planner.
        """
        planner = self.plans
        if planner is None:  # checked by run() and resume()
            raise ConfigError("this orchestrator has no planner")
        named = self.synthesizer
        return PlannedRun(
            run_id=run_id,
            goal=goal,
            inputs=inputs,
            planner=planner,
            workers=self.workers,
            synthesizer=synthesizer_for(named or planner.agent, output_type, planner=named is None),
            output_type=output_type,
            max_replans=self.max_replans,
            judge_goal=self.judge_goal,
            retry=self.retry,
            bus=self.events,
            rng=self._rng,
            prices=self.prices,
        )

    async def resume(
        self, run_id: str, *, output_type: type[BaseModel] | None = None, force: bool = False
    ) -> RunResult:
        """Finish a run that stopped (a crash, a kill, a deadline), from the store.

        The graph, inputs and budget are read back; tasks that succeeded keep their outputs and
        are not run again; the rest run now. Agents are found by name among this orchestrator's
        `workers` (and its planner), so resume with an orchestrator that has the same workers.

        A planned run (`run(goal)`) keeps its plans: what was planned is run, not planned again;
        a plan the crash interrupted is completed by the planner, failures already replanned are
        not replanned again, and the final answer is written (as `output_type`, when given).

        A run is owned: while another process runs it (its lease in the store is live), resume
        is refused with `RunLeasedError` naming that process; a lease that expired (its process
        died) is taken over. `force=True` takes a live lease over, for a process you know is dead
        (the other process, if alive, stops at its next renewal).

        Raises:
            RunLeasedError: another live process owns the run (and `force` is False).
            ConfigError: the orchestrator has no store (`memory=None`), or the run is unknown,
                or a planned run is resumed without a planner.
            GraphError: the stored graph names an agent this orchestrator does not have.
        """
        began = anyio.current_time()
        store = await anyio.to_thread.run_sync(self._open_store)
        if store is None:
            raise ConfigError(
                "resume() needs a store: create the Orchestrator with memory=<database URL> "
                "(the same database the run was written to)"
            )
        record = await anyio.to_thread.run_sync(store.get_run, run_id)
        if record is None:
            raise ConfigError(f"no run {run_id!r} in the store {store.url}; check the run id")
        lease = await _take(store, run_id, force=force)
        try:
            return await self._resume(record, store, lease, output_type, began)
        except BaseException:
            with anyio.CancelScope(shield=True):  # it never started: give the run back
                await anyio.to_thread.run_sync(lease.release)
            raise

    async def _resume(
        self,
        record: RunRecord,
        store: Store,
        lease: RunLease,
        output_type: type[BaseModel] | None,
        began: float,
    ) -> RunResult:
        run_id = record.id
        graph = graph_from_spec(record.graph)
        inputs, tasks, agents = self._prepare("resume", graph, record.inputs)
        rows = await anyio.to_thread.run_sync(store.get_tasks, run_id)
        restored = {row.task_id: row for row in rows if row.status == "succeeded"}
        budget = Budget(**record.budget) if record.budget else None
        planned = None
        if "planned" in record.graph:
            if self.plans is None:
                raise ConfigError(
                    f"run {run_id!r} was planned: resume it with an Orchestrator that has a "
                    "planner (and the same workers)"
                )
            planned = self.planned_run(run_id, record.goal or "", inputs, output_type)
            planned.graph = graph
            planned.revisions, planned.handled = PlannedRun.stored(record.graph)
            workflow_file = record.graph.get("workflow")
            planned.source = dict(workflow_file) if isinstance(workflow_file, Mapping) else None
            # Failures a replan already answered stay failed: they are not run again.
            restored |= {
                row.task_id: row
                for row in rows
                if row.task_id in planned.handled and row.status in ("failed", "skipped")
            }
            agents = dict(self.workers)
        return await self._run(
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
        )

    def resume_sync(
        self, run_id: str, *, output_type: type[BaseModel] | None = None, force: bool = False
    ) -> RunResult:
        """Blocking twin of `resume`."""
        return run_sync(self.resume, run_id, output_type=output_type, force=force)

    def _open_store(self) -> Store | None:
        if self.memory is None:
            return None
        if self._store is None:
            from delegate.memory.store import Store, default_url

            if isinstance(self.memory, Store):
                self._store = self.memory
            elif self.memory == "default":
                try:
                    url = default_url()
                except OSError as exc:
                    raise StoreError(
                        f"cannot create the default store's folder ({exc}); set DELEGATE_HOME to "
                        "a writable folder or DELEGATE_DB_URL to a database, or pass "
                        "Orchestrator(memory=None) to keep runs in memory only"
                    ) from None
                self._store = _shared_store(url)
            else:
                self._store = _shared_store(self.memory)
        return self._store

    async def _run(
        self,
        run_id: str,
        tasks: list[Task],
        agents: dict[str, Agent],
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
    ) -> RunResult:
        try:
            nodes = build_nodes(tasks, agents)
            # Every model a driven run may call is priced and budgeted up front.
            members = agents if planned is None else {**planned.agents(), **agents}
            account = self._account(tasks, members, budget, began)
            if spend:
                account.restore(spend)  # a resumed run: what it spent before still counts
            if store is not None:
                from delegate.memory.blackboard import Memory

                account.memory = Memory(store, run_id=run_id, workflow=workflow)
                account.cache = store if self.cache else None
            restore_nodes(nodes, restored, account)
        except BaseException as exc:
            # Refused before anything ran (an unknown price, a bad budget): the run says why,
            # and nobody owns it any more.
            if store is not None:
                await _stopped(store, run_id, "failed", RunUsage(), exc, lease)
            raise
        scheduler = Scheduler(
            nodes,
            run_id=run_id,
            inputs=inputs,
            max_concurrency=self.max_concurrency,
            retry=self.retry,
            fail_fast=self.fail_fast,
            bus=self.events,
            account=account,
            rng=self._rng,
        )
        if planned is not None:
            planned.prepare(account)
            scheduler.hold()  # open until the driver is done adding tasks
        return await self._drive(run_id, scheduler, account, planned, store, lease)

    async def _drive(
        self,
        run_id: str,
        scheduler: Scheduler,
        account: RunAccount,
        planned: RunDriver | None,
        store: Store | None,
        lease: RunLease | None,
    ) -> RunResult:
        """Run the scheduler (and the driver) with the store's recorder, then conclude.

        A run that stops before it concludes (cancelled, Ctrl-C, SIGTERM, an error) is stored as
        "interrupted" with the reason, and its lease is given up: it can be resumed at once.
        """
        started = time.time()
        recorder = None
        if store is not None:
            recorder = RunRecorder(
                store,
                run_id,
                scheduler.by_id,
                account,
                lease=lease,
                on_lease_lost=lambda: scheduler.cancel(
                    "another process took the run over (resume with force=True): this one stops"
                ),
            )
            # Under a budget, each call's reservation is durable before it is sent.
            account.journal = recorder.durable
        unsubscribe = None if recorder is None else self.events.subscribe(recorder)
        output: Any = None
        try:
            try:
                async with anyio.create_task_group() as group:
                    if recorder is not None:
                        group.start_soon(recorder.run)
                    if self.events.active:
                        self.events.emit(RunStarted(run_id=run_id, tasks=len(scheduler.nodes)))
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
                if recorder is not None:
                    # A run cancelled from outside cancels the recorder's loop too: what it had
                    # not written yet is written now.
                    with anyio.CancelScope(shield=True):
                        await recorder.flush()
            owned = lease is None or not lease.lost
            return await self._conclude(
                run_id, scheduler, account, planned, output, started, store if owned else None
            )
        except BaseException as exc:
            if store is not None and (lease is None or not lease.lost):
                usage = usage_of(account, self._roles(planned), None)
                await _stopped(store, run_id, "interrupted", usage, exc, None)
            if (
                isinstance(exc, BaseExceptionGroup)
                and len(exc.exceptions) == 1
                and isinstance(exc.exceptions[0], DelegateError)
            ):
                # One of ours from inside the run's task group (the store failed): raised as
                # itself, so callers can catch StoreError.
                raise exc.exceptions[0] from None
            raise
        finally:
            if lease is not None and not lease.lost:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(lease.release)

    async def _conclude(
        self,
        run_id: str,
        scheduler: Scheduler,
        account: RunAccount,
        planned: RunDriver | None,
        output: Any,
        started: float,
        store: Store | None,
    ) -> RunResult:
        """The run's result, written to the store and announced."""
        planner_price = None if self.planner is None else account.price(self.planner.model)
        usage = usage_of(
            account,
            self._roles(planned),
            planner_only_usd(account.book, planner_price),
        )
        nodes = scheduler.nodes
        result = result_of(run_id, nodes, usage, scheduler.deadline_passed, started, time.time())
        if planned is not None:
            result = planned.result(result, output, scheduler.deadline_passed)
        if result.error is None and result.status != "succeeded":
            # The run's own reason: a planned run keeps its planner's; others name their tasks'.
            error = run_error(result.tasks.values(), scheduler.deadline_passed)
            result = result.model_copy(update={"error": error})
        if store is not None:
            await anyio.to_thread.run_sync(_finish_run, store, result)
        if self.events.active:
            self.events.emit(
                RunFinished(run_id=run_id, status=result.status, usage=account.book.total)
            )
        return result

    def _roles(self, driver: RunDriver | None = None) -> dict[str, str]:
        """Agent name → role in `RunUsage.by_role` (everyone else is one of the "workers"); a
        driver names its own planners (a workflow's plan steps)."""
        roles: dict[str, str] = {} if driver is None else dict(driver.roles())
        if self.synthesizer is not None:
            roles[self.synthesizer.name] = "synthesizer"
        if self.planner is not None:
            roles[self.planner.name] = "planner"
        return roles

    def execute_sync(
        self,
        graph: TaskGraph,
        inputs: Mapping[str, Any] | None = None,
        *,
        budget: Budget | None = None,
        run_id: str | None = None,
        workflow: str | None = None,
    ) -> RunResult:
        """Blocking twin of `execute`, for scripts and notebooks without an event loop."""
        return run_sync(
            self.execute, graph, inputs, budget=budget, run_id=run_id, workflow=workflow
        )

    def estimate(self, graph: TaskGraph, inputs: Mapping[str, Any] | None = None) -> Estimate:
        """Project the tokens, cost and latency of executing `graph`, without calling a model.

        Each agent task counts as one call with its full output allowance (the worst case a
        budget reserves); the projected time is the critical path with each model's expected
        latency. See `delegate.orchestrator.estimate`.

        Raises:
            GraphError: as `execute` would, for an unknown agent or placeholder.
        """
        inputs, tasks, agents = self._prepare("estimate", graph, inputs)
        return estimate_tasks(tasks, agents, inputs, self.prices)

    def _prepare(
        self, method: str, graph: TaskGraph, inputs: Mapping[str, Any] | None
    ) -> tuple[dict[str, Any], list[Task], dict[str, Agent]]:
        """Check `graph` against the workers and `inputs` before anything runs."""
        if not isinstance(graph, TaskGraph):
            raise ConfigError(f"{method}() takes a TaskGraph, got {type(graph).__name__}")
        checked = dict(inputs or {})
        tasks = list(graph)
        agents = self._resolve_agents(tasks)
        if self.memory is None:
            for agent in _with_fallbacks(agents.values()):
                if agent.memory:
                    raise ConfigError(
                        f"agent {agent.name!r} has memory=True, but the orchestrator keeps no "
                        "memory; pass Orchestrator(memory=<database URL or ':memory:'>)"
                    )
        _check_placeholders(tasks, checked)
        return checked, tasks, agents

    def _account(
        self,
        tasks: Sequence[Task],
        agents: Mapping[str, Agent],
        budget: Budget | None,
        began: float | None = None,
    ) -> RunAccount:
        """The run's ledger and scopes: the run, each agent with a budget, each task with one.

        The deadline counts from `began` (anyio's clock when the caller called: opening the
        store is part of the run's time), or from now.
        """
        if budget is not None and not isinstance(budget, Budget):
            raise ConfigError(f"budget must be a delegate.Budget, got {type(budget).__name__}")
        run_budget = budget or self.budget or Budget()
        ledger = BudgetLedger()
        guard = None
        cap = self.max_calls
        answers = _answers(tasks, agents)
        if cap == "auto":
            # Enough for every answer the tasks ask for, its retries and a short tool loop,
            # however large the graph (it grows as tasks are added), while a task that loops
            # without end is still stopped.
            cap = max(AUTO_CALLS, AUTO_CALLS_PER_ANSWER * answers)
        if cap is not None:
            # The runaway guard is a scope of its own, so its refusal names its own remedy.
            guard = ledger.open(
                f"run (Orchestrator(max_calls={cap}))",
                Budget(calls=cap),
                remedy="raise Orchestrator(max_calls=...), or pass max_calls=None to remove "
                "the guard against runaway loops",
            )
        limited = (run_budget.tokens, run_budget.usd, run_budget.calls) != (None, None, None)
        run_scope = ledger.open("run", run_budget, guard) if limited else guard
        account = RunAccount(ledger, run_scope, self.prices, guard=guard)
        if self.max_calls == "auto":
            account.auto_answers = answers
        members = _with_fallbacks([*agents.values(), *([self.planner] if self.planner else [])])
        for agent in members:
            if agent.budget is not None:
                account.agents[agent.name] = ledger.open(
                    f"agent {agent.name!r}", agent.budget, account.run
                )
        for task in tasks:
            if task.budget is not None:
                account.tasks[task.id] = ledger.open(f"task {task.id!r}", task.budget, account.run)
        _check_prices(account, agents.values(), tasks)
        if run_budget.seconds is not None:
            start = anyio.current_time() if began is None else began
            account.deadline = start + run_budget.seconds - run_budget.reserve_seconds
        return account

    def _resolve_agents(self, tasks: Iterable[Task]) -> dict[str, Agent]:
        """The agents of `tasks` by name: workers and judges (`verify`), names resolved."""
        from delegate.agents.agent import judge_problem

        agents: dict[str, Agent] = {}

        def worker(task: Task, role: str, name: str) -> Agent:
            found = self.workers.get(name)
            if found is None:
                known = ", ".join(sorted(self.workers)) or "none"
                raise GraphError(
                    f"task {task.id!r} uses {role} {name!r}, which is not among the "
                    f"orchestrator's workers{did_you_mean(name, self.workers)} "
                    f"(workers: {known}); add it to Orchestrator(workers=[...])"
                )
            return found

        def add(task: Task, agent: Agent) -> None:
            seen = agents.setdefault(agent.name, agent)
            if seen is not agent:
                raise GraphError(
                    f"two different agents are named {agent.name!r} (task {task.id!r}); "
                    "give each agent its own name"
                )

        for task in tasks:
            if task.agent is None:
                continue
            agent = task.agent
            if isinstance(agent, str):
                agent = worker(task, "agent", agent)
            add(task, agent)
            judge = agent.verify if task.verify is None else task.verify
            if isinstance(judge, str):
                judge = worker(task, "verify", judge)
            if judge is not None:
                problem = judge_problem(judge)
                if problem is not None:
                    raise GraphError(f"task {task.id!r}: {problem}")
                add(task, judge)  # its budget and prices are checked like any worker's
        return agents


def _answers(tasks: Sequence[Task], agents: Mapping[str, Agent]) -> int:
    """How many answers the model tasks ask for: one each, or their `votes`, plus a judge's."""
    return sum(answers_of(task, agents.get(task.agent_name or "")) for task in tasks if task.agent)


def _planner(
    planner: object, synthesizer: object, workers: Mapping[str, Agent], max_replans: object
) -> Planner | None:
    """The orchestrator's `Planner`, after checking the planning arguments."""
    from delegate.agents.agent import Agent

    if isinstance(planner, Planner):
        plans: Planner | None = planner
    elif planner is None or isinstance(planner, Agent):
        plans = None if planner is None else Planner(planner)
    else:
        raise ConfigError(f"planner must be an Agent or a Planner, got {type(planner).__name__}")
    if synthesizer is not None and not isinstance(synthesizer, Agent):
        raise ConfigError(f"synthesizer must be an Agent, got {type(synthesizer).__name__}")
    roles = (("planner", None if plans is None else plans.agent), ("synthesizer", synthesizer))
    for role, agent in roles:
        if agent is not None and workers.get(agent.name, agent) is not agent:
            raise ConfigError(
                f"the {role} and a worker are both named {agent.name!r}; give each its own name"
            )
    if not isinstance(max_replans, int) or isinstance(max_replans, bool) or max_replans < 0:
        raise ConfigError(f"max_replans must be an integer ≥ 0, got {max_replans!r}")
    return plans


def _check_placeholders(tasks: Iterable[Task], inputs: Mapping[str, Any]) -> None:
    problems: list[str] = []
    for task in tasks:
        unknown = task.placeholders - RESERVED_NAMES - set(task.deps) - set(inputs)
        unknown -= set(task.variables)
        problems.extend(
            f"task {task.id!r}: placeholder {{{{ {name} }}}} is neither a run input nor a "
            f"dependency{did_you_mean(name, [*inputs, *task.deps])} "
            f"(inputs: {', '.join(sorted(inputs)) or 'none'}; "
            f"deps: {', '.join(task.deps) or 'none'})"
            for name in sorted(unknown)
        )
    if problems:
        raise GraphError("; ".join(problems))


_STORES: dict[str, Store] = {}
_STORES_LOCK = threading.Lock()


def _shared_store(url: str) -> Store:
    """One open `Store` per URL in this process: orchestrators on one database share it."""
    from delegate.memory.store import Store

    with _STORES_LOCK:
        store = _STORES.get(url)
        if store is None:
            store = _STORES[url] = Store.open(url)
        return store


def _is_store(value: object) -> bool:
    from delegate.memory.store import Store

    return isinstance(value, Store)


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


def _finish_run(store: Store, result: RunResult) -> None:
    # The run's row holds the run's reason (`RunResult.error`), as `run --json` shows it; each
    # task's row holds its own.
    store.finish_run(
        result.run_id,
        status=result.status,
        output=to_json(result.output),
        usage=result.usage.model_dump(mode="json"),
        error=None if result.error is None else result.error[:2000],
    )


def _prices(prices: Mapping[str, tuple[float, float] | Price] | None) -> dict[str, Price]:
    checked: dict[str, Price] = {}
    for model, price in (prices or {}).items():
        if isinstance(price, Price):
            pair: tuple[Any, ...] = (price.input_per_mtok, price.output_per_mtok)
        elif isinstance(price, tuple | list) and len(price) == 2:
            pair = tuple(price)
        else:
            pair = ()
        if len(pair) != 2 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for v in pair
        ):
            raise ConfigError(
                f"prices[{model!r}] must be (input_usd_per_million, output_usd_per_million) with "
                f"two numbers ≥ 0, got {price!r}"
            )
        checked[model] = price if isinstance(price, Price) else Price(*pair)
    return checked


def _with_fallbacks(agents: Iterable[Agent]) -> list[Agent]:
    found: dict[str, Agent] = {}
    for agent in agents:
        current: Agent | None = agent
        while current is not None and current.name not in found:
            found[current.name] = current
            current = current.fallback
    return list(found.values())


def _usd_label(account: RunAccount, agent: Agent, tasks: Sequence[Task]) -> str | None:
    """The label of a usd budget `agent`'s calls fall under (the run, its own, a task's)."""
    for scope in (account.agents.get(agent.name), account.run):
        for member in scope.chain if scope is not None else ():
            if member.budget.usd is not None:
                return member.label
    for task in tasks:
        if (
            task.agent_name == agent.name
            and task.budget is not None
            and task.budget.usd is not None
        ):
            return f"task {task.id!r}"
    return None


def _check_prices(account: RunAccount, agents: Iterable[Agent], tasks: Sequence[Task]) -> None:
    """Refuse to start a run whose usd budget covers a model with no known price.

    Every model a task's calls may reach is checked: its agent's, the agent's `cheaper` one, and
    those of its fallbacks (which inherit the usd budgets of the agent they stand in for).
    """
    for agent in agents:
        label = _usd_label(account, agent, tasks)
        current: Agent | None = agent
        while current is not None:
            label = label or _usd_label(account, current, ())
            for model in (current.model, current.cheaper):
                if label is not None and model is not None and account.price(model) is None:
                    raise PriceUnknownError(
                        f"model {model.name!r} of agent {current.name!r} has no known price, so "
                        f"its calls cannot be checked against the usd budget of {label} (an "
                        "unknown price is never taken as free); give its price: "
                        f'Orchestrator(prices={{"{model.name}": (input_usd_per_million, '
                        "output_usd_per_million)})",
                        model=model.name,
                        scope=label,
                    )
            current = current.fallback


async def _stopped(
    store: Store,
    run_id: str,
    status: str,
    usage: RunUsage,
    exc: BaseException,
    lease: RunLease | None,
) -> None:
    """Record a run that ended without concluding (and give its lease up, when given)."""
    finish = functools.partial(
        store.finish_run,
        run_id,
        status=status,
        output=None,
        usage=usage.model_dump(mode="json"),
        error=interrupted_reason(exc),
    )
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(finish)
        if lease is not None:
            await anyio.to_thread.run_sync(lease.release)


async def _take(store: Store, run_id: str, *, force: bool = False) -> RunLease:
    """This process's lease on the run (see `delegate.orchestrator.lease`)."""
    lease = RunLease(store, run_id)
    await anyio.to_thread.run_sync(functools.partial(lease.acquire, force=force))
    return lease


async def _plan_and_answer(
    planned: RunDriver, scheduler: Scheduler, account: RunAccount, recorder: RunRecorder | None
) -> Any:
    """Run the driver beside the scheduler, then have it answer; returns the answer."""
    async with anyio.create_task_group() as planning:
        planning.start_soon(planned.drive, scheduler, account, recorder)
        await scheduler.run()
        planning.cancel_scope.cancel()  # when a deadline ended the run, planning ends too
    output = await planned.answer(scheduler, account)
    if recorder is not None:
        recorder.graph_changed(planned.spec())
    return output
