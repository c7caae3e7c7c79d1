"""The `Orchestrator`: the facade that owns a store and runs, plans, resumes and streams.

    async with Orchestrator(workers=[researcher, writer], max_concurrency=16) as orch:
        result = await orch.execute(graph, inputs={"topic": "solid-state batteries"})
    result.status, result.output, result.tasks["search"].attempts, result.usage.cost_usd

`RunResult.status` is "succeeded" when every task succeeded, "partial" when some did and others
failed, were skipped or were cancelled, and "failed" when none succeeded.

What each entry point does lives beside it: the arguments are checked in `_setup`, the store is
chosen, opened and closed in `_stores`, and a run's lifecycle (schedule, record, conclude) is
`_runner`'s.
"""

from __future__ import annotations

import functools
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, cast

import anyio
import anyio.to_thread
from pydantic import BaseModel
from typing_extensions import TypeVar

from delegate._sync import syncify
from delegate.agents.approval import Approve, Deny
from delegate.agents.limits import Budget
from delegate.agents.models import Price
from delegate.agents.rate_limits import RateLimit, RateLimiter, rate_limiters
from delegate.agents.wrappers import ModelHooks, hooks_of
from delegate.errors import ConfigError
from delegate.orchestrator import _runner, _setup, tool_approvals
from delegate.orchestrator._driver import RunDriver
from delegate.orchestrator._stores import FROM_ENV, StoreSlot
from delegate.orchestrator.approval import ApprovedPlan, PlanApprover, given_plan
from delegate.orchestrator.calls import RunAccount
from delegate.orchestrator.estimate import Estimate, estimate_tasks
from delegate.orchestrator.events import EventBus, EventHandler
from delegate.orchestrator.graph import GraphSpec, Task, TaskGraph
from delegate.orchestrator.planned import PlannedRun, synthesizer_for
from delegate.orchestrator.planner import Plan, Planner, PlanResult
from delegate.orchestrator.results import RunResult, RunStatus, RunUsage, TaskResult
from delegate.orchestrator.routing import LearnedRouting, routing_of
from delegate.orchestrator.scheduler import RetryPolicy
from delegate.orchestrator.stream import DEFAULT_BUFFERED_DELTAS, RunStream
from delegate.orchestrator.tool_approvals import ApproveTool

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from delegate.agents.agent import Agent
    from delegate.memory.store import Store
    from delegate.observe.otel import Tracing

__all__ = ["Orchestrator", "RunResult", "RunStatus", "RunUsage", "TaskResult"]

AnswerT = TypeVar("AnswerT", default=str)
"""What a planned run answers: text, or its `output_type`."""


class Orchestrator:
    """Runs task graphs on a pool of workers.

    It owns the store it opens: close it with `aclose()` (or `close()`), or use it as
    `async with Orchestrator(...) as orch:`. Without a store there is nothing to close.

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
        memory: where runs and the agents' shared memory are kept, so they survive the process
            and can be resumed. Left out ("env"): the database `$DELEGATE_DB_URL` names, and
            none when it is not set. "home": `$DELEGATE_DB_URL`, else the SQLite file
            `$DELEGATE_HOME/delegate.db` (`DELEGATE_HOME` defaults to `~/.delegate`; the
            `delegate` command and YAML workflows use it). A database URL
            ("sqlite:///path/runs.db", "postgresql+psycopg://…"); ":memory:" (a database inside
            this process, for this orchestrator only); a `Store` (yours to close); or None: no
            store, whatever the environment says, and no resume.
        cache: answer a request that was answered before (same model, same messages and
            settings) from the store's call cache, at no cost. Needs a store (`memory`).
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
        on_event: a handler called with every `Event` of every run (see `subscribe`); what it
            raises ends the run and reaches the caller.
        seed: seeds the retry jitter, for reproducible runs.
        rate_limits: requests and tokens per minute by model name,
            `{"openai/gpt-4o-mini": RateLimit(rpm=500, tpm=200_000)}`: every request of this
            orchestrator's runs to that model waits its turn in one shared limiter (see
            `delegate.RateLimitedModel`).
        hooks: `ModelHooks` called around every model request of this orchestrator's runs.
        approve_tool: decides, inline, each call of a tool that requires approval
            (`Tool(..., requires_approval=True)`): called with a `PendingCall`, it returns
            `Approve()` or `Deny(reason=...)`; a sync one runs in a worker thread, an async
            one is awaited. Without it such a call pauses its task and the run ends
            "waiting" (see `resume(decisions=...)`).
        approve_plan: asked about every plan of `run(goal)` before any of its tasks starts (so
            plans are not streamed): the first and each revision after failures. It gets a
            `PlanProposal` (the checked plan, its estimate) and returns True (run it), False
            (reject it: the run ends "failed", or "partial" after a replan, and nothing more
            is spent) or an edited `Plan`, checked again as the planner's are. Sync callables
            run in a worker thread; async ones are awaited. A run's time budget keeps counting
            while it waits. See `delegate.orchestrator.approval`.
        tracing: OpenTelemetry spans of every run (the run, plan revisions, tasks, model and
            tool calls, with the GenAI attributes): True (the global tracer provider, or OTLP
            when `OTEL_EXPORTER_OTLP_ENDPOINT` is set), a `TracerProvider` (e.g.
            `delegate.observe.otlp(endpoint)`), or `delegate.Tracing(...)` for options
            (`capture_content=True` records prompts and answers, redacted). Off by default, and
            then nothing of it runs. Needs `pip install "delegate[otel]"`.
        routing: "learned" (or `LearnedRouting(target=, explore_share=, namespace=, seed=)`):
            run each verified task on the cheapest tier of its worker's fallback chain (and
            effort, for reasoning workers) whose pass rate, learned from the store's history of
            the same kind of task, meets the target; exploration is bounded by a share of the
            budget. Needs a store and a judge (`verify`). See `delegate.orchestrator.routing`.

    Raises:
        ConfigError: a bad argument, named with its remedy (`memory="default"` was removed:
            use "home").
    """

    def __init__(
        self,
        *,
        workers: Sequence[Agent[object]] = (),
        planner: Agent[object] | Planner | None = None,
        synthesizer: Agent[object] | None = None,
        max_replans: int = 2,
        judge_goal: bool = False,
        memory: str | Store | None = FROM_ENV,
        cache: bool = False,
        budget: Budget | None = None,
        prices: Mapping[str, tuple[float, float] | Price] | None = None,
        max_calls: int | Literal["auto"] | None = "auto",
        max_concurrency: int = 16,
        retry: RetryPolicy | None = None,
        fail_fast: bool = False,
        on_event: EventHandler | None = None,
        seed: int | None = None,
        rate_limits: Mapping[str, RateLimit | RateLimiter] | None = None,
        hooks: Sequence[ModelHooks] = (),
        approve_plan: PlanApprover | None = None,
        approve_tool: ApproveTool | None = None,
        tracing: bool | TracerProvider | Tracing = False,
        routing: Literal["learned"] | LearnedRouting | None = None,
    ) -> None:
        _setup.check_limits(max_concurrency, budget, max_calls)
        self.approve_tool = tool_approvals.check_approve_tool(approve_tool)
        if approve_plan is not None and not callable(approve_plan):
            raise ConfigError(
                f"approve_plan must be a callable taking a PlanProposal, got {approve_plan!r}"
            )
        self.approve_plan = approve_plan
        self._stores = StoreSlot(memory)
        if cache and not self._stores.keeps:
            raise ConfigError(
                "cache=True needs a store to keep answers in: pass memory=<database URL>, "
                "\"home\" or ':memory:' (or set DELEGATE_DB_URL)"
            )
        self.routing = routing_of(routing)
        if self.routing is not None and not self._stores.keeps:
            raise ConfigError(
                'routing="learned" learns from the runs kept in a store: pass memory=<database '
                "URL>, \"home\" or ':memory:' (or set DELEGATE_DB_URL)"
            )
        self.workers: dict[str, Agent[Any]] = _setup.workers_of(workers)
        self.plans = _setup.planner_of(planner, synthesizer, self.workers, max_replans)
        self.planner = None if self.plans is None else self.plans.agent
        self.synthesizer = synthesizer
        self.max_replans = max_replans
        self.judge_goal = bool(judge_goal)
        self.memory = memory
        self.cache = bool(cache)
        self.budget = budget
        self.prices = _setup.prices_of(prices)
        self.max_calls = max_calls
        self.max_concurrency = max_concurrency
        self.retry = retry if retry is not None else RetryPolicy()
        self.fail_fast = fail_fast
        self.events = EventBus()
        self._rng = random.Random(seed)
        if on_event is not None:
            self.events.subscribe(on_event)
        # Owned by the orchestrator: shared by its runs, never by another orchestrator's.
        self.rate_limits = rate_limiters(rate_limits)
        self.hooks = hooks_of(hooks)
        self.tracer = _setup.tracer_of(tracing)
        if self.tracer is not None:  # it observes through the hooks and the bus, like anyone
            self.hooks = (*self.hooks, self.tracer.hooks)
            self.events.subscribe(self.tracer.on_event)

    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        """Call `handler` with every event of every run; returns a function that unsubscribes.

        `handler` runs on the event loop and must not block. An exception it raises is not
        swallowed (as in anyio's task groups): the other handlers still get the event, then the
        run stops, is stored as "interrupted" with the reason, and `execute`/`run` raise the
        exception itself, with a note naming the handler and the event.
        """
        return self.events.subscribe(handler)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the store this orchestrator opened (a `Store` you passed stays open).

        Runs in progress keep their store until they end; new runs are refused with
        `ConfigError`. Closing twice is harmless.
        """
        await self._stores.aclose()

    def close(self) -> None:
        """Blocking twin of `aclose`, for the sync API (`execute_sync`, `run_sync`, ...)."""
        self._stores.close()

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
            ConfigError: the orchestrator was closed.
        """
        began = anyio.current_time()  # the time budget counts from here, store opening included
        inputs, tasks, agents = self._prepare("execute", graph, inputs)
        run_id = run_id or uuid.uuid4().hex
        async with self._stores.use() as store:
            lease = None
            if store is not None:
                spec = GraphSpec.of(tasks).to_json()
                lease = await _runner.begin(store, run_id, spec, inputs, budget, workflow)
            return await _runner.launch(
                self,
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
        output_type: type[AnswerT] | None = None,
        plan: ApprovedPlan | Plan | None = None,
    ) -> RunResult[AnswerT]:
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
            output_type: a pydantic model for a typed final answer (`RunResult[output_type]`;
                without it the answer is text, `RunResult[str]`).
            plan: a plan approved beforehand (`draft`, `ApprovedPlan.from_json`, or a bare
                `Plan`): its tasks run as they are, with no planning call and no
                `approve_plan` question for them; replanning after failures asks the planner
                as usual. An `ApprovedPlan` must match the run: its goal, its workflow when it
                names one, and its inputs (`inputs=None` takes the plan's).

        Raises:
            ConfigError: the orchestrator has no planner or no workers, a bad argument, or a
                `plan` made for another goal, workflow or inputs.
            PlanInvalid: `plan` has tasks the planner's checks refuse (every problem named).
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
        given = None
        if plan is not None:
            max_tasks = self.plans.max_tasks if self.plans is not None else 0
            given, checked = given_plan(
                plan,
                goal=goal,
                inputs=inputs,
                workflow=workflow,
                workers=self.workers,
                max_tasks=max_tasks,
            )
        run_id = run_id or uuid.uuid4().hex
        planned = self.planned_run(
            run_id, goal, checked, cast("type[BaseModel] | None", output_type), given=given
        )
        result = await self.run_driven(
            planned, checked, budget=budget, run_id=run_id, workflow=workflow, goal=goal
        )
        return cast("RunResult[AnswerT]", result)

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

    async def draft(
        self,
        goal: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        budget: Budget | None = None,
        workflow: str | None = None,
    ) -> ApprovedPlan:
        """The planner's plan for `goal` with its estimate, as a document for a human to
        approve (or edit) and pass back as `run(goal, plan=...)`; nothing runs.

        Raises:
            ConfigError: no planner or no workers.
            PlanInvalid: no valid plan in the planner's attempts.
            BudgetExceeded: the planner's call does not fit the budget.
        """
        checked = dict(inputs or {})
        result = await self.plan(goal, checked, budget=budget)
        planned = self.planned_run("draft", goal, checked, None)
        return ApprovedPlan(
            workflow=workflow,
            goal=goal,
            inputs=checked,
            plan=result.plan,
            estimate=planned.estimate_plan(result.plan),
        )

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

    run_sync = syncify(run)

    draft_sync = syncify(draft)

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
        """Run a graph that `driver` builds while it runs (see `delegate.orchestrator._driver`).

        For code that extends delegate (the YAML workflows use it); `run` and `execute` are the
        everyday entry points. With `resume=True` the run already exists in the store and the
        driver restores what finished (`force` as for `resume`).
        """
        began = anyio.current_time()
        checked = dict(inputs)
        async with self._stores.use() as store:
            spend = None
            lease = None
            if store is not None and not resume:
                spec = driver.spec()
                lease = await _runner.begin(store, run_id, spec, checked, budget, workflow, goal)
            elif store is not None:
                lease, budget, spend = await _runner.reclaim(store, run_id, budget, force=force)
            return await _runner.launch(
                self,
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
                resumed=resume,
            )

    def planned_run(
        self,
        run_id: str,
        goal: str,
        inputs: Mapping[str, Any],
        output_type: type[BaseModel] | None,
        *,
        given: Plan | None = None,
    ) -> PlannedRun:
        """The planning side of a run of `goal` (what `run` drives; see `run_driven`).

        `given`: the first plan, approved beforehand (checked by the caller: see `given_plan`).

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
            approve=self.approve_plan,
            given=given,
        )

    async def resume(
        self,
        run_id: str,
        *,
        output_type: type[BaseModel] | None = None,
        force: bool = False,
        decisions: Mapping[str, Approve | Deny] | None = None,
    ) -> RunResult:
        """Finish a run that stopped (a crash, a kill, a deadline) or waits, from the store.

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

        A run that ended "waiting" goes on exactly where its tasks paused: `decisions` (call id
        → `Approve()` or `Deny(reason=...)`, for the calls in `RunResult.pending`) are stored
        with those made before (`delegate approve`); an approved call runs, a denied one answers
        the model with "Denied by a human: <reason>", and a call still undecided keeps its task
        waiting without calling its model again. What the run spent before counts against its
        budget.

        Raises:
            RunLeasedError: another live process owns the run (and `force` is False).
            ConfigError: the orchestrator has no store (`memory=None`), or the run is unknown,
                or a planned run is resumed without a planner, or the orchestrator was closed,
                or `decisions` names a call the run does not have (or decides one again the
                other way).
            GraphError: the stored graph names an agent this orchestrator does not have.
        """
        began = anyio.current_time()
        async with self._stores.use() as store:
            if store is None:
                raise ConfigError(
                    "resume() needs a store: create the Orchestrator with memory=<database URL> "
                    'or "home" (the same database the run was written to)'
                )
            record = await anyio.to_thread.run_sync(store.get_run, run_id)
            if record is None:
                raise ConfigError(f"no run {run_id!r} in the store {store.url}; check the run id")
            checked = tool_approvals.check_decisions(decisions)
            lease = await _runner.take(store, run_id, force=force)
            try:
                await tool_approvals.record_decisions(store, run_id, checked)
                return await _runner.resume_record(self, record, store, lease, output_type, began)
            except BaseException:
                with anyio.CancelScope(shield=True):  # it never started: give the run back
                    await anyio.to_thread.run_sync(lease.release)
                raise

    resume_sync = syncify(resume)

    def stream(
        self,
        graph_or_goal: TaskGraph | str,
        inputs: Mapping[str, Any] | None = None,
        *,
        budget: Budget | None = None,
        run_id: str | None = None,
        workflow: str | None = None,
        output_type: type[BaseModel] | None = None,
        plan: ApprovedPlan | Plan | None = None,
        deltas: bool = True,
        max_buffered_deltas: int = DEFAULT_BUFFERED_DELTAS,
    ) -> RunStream:
        """Run `graph_or_goal` and stream its events: `async with orch.stream(...) as events:
        async for event in events: ...`, then `events.result`.

        A `TaskGraph` runs as `execute` does, a goal as `run` does (planned: a `PlanTaskAdded`
        for each task the planner writes); the other arguments are theirs. Every event of the
        run is yielded, and with `deltas` each model answer's text as it arrives
        (`TaskTextDelta`). The run never waits for the consumer: state events are all kept,
        and past `max_buffered_deltas` unread deltas new ones are dropped (counted in
        `dropped_deltas`). Leaving the block before the run ends cancels the run (kept as
        "interrupted" in a store, to resume). See `delegate.orchestrator.stream`.

        Raises:
            ConfigError: `graph_or_goal` is neither a `TaskGraph` nor a str, or `output_type`
                or `plan` is given with a graph. What `execute` or `run` raise comes out of
                the iteration.
        """
        run_id = run_id or uuid.uuid4().hex
        start: Callable[[], Awaitable[RunResult[Any]]]
        if isinstance(graph_or_goal, TaskGraph):
            if output_type is not None or plan is not None:
                raise ConfigError(
                    "stream(graph, ...) runs the graph as it is: output_type and plan are for "
                    "a goal, stream(goal, ...); drop them"
                )
            start = functools.partial(
                self.execute, graph_or_goal, inputs, budget=budget, run_id=run_id, workflow=workflow
            )
        elif isinstance(graph_or_goal, str):
            start = functools.partial(
                self.run,
                graph_or_goal,
                inputs,
                budget=budget,
                run_id=run_id,
                workflow=workflow,
                output_type=output_type,
                plan=plan,
            )
        else:
            raise ConfigError(
                "stream() takes a TaskGraph (run as execute() does) or a goal str (planned, as "
                f"run() does), got {type(graph_or_goal).__name__}"
            )
        return RunStream(
            self.events, run_id, start, deltas=deltas, max_buffered_deltas=max_buffered_deltas
        )

    def stream_resume(
        self,
        run_id: str,
        *,
        output_type: type[BaseModel] | None = None,
        force: bool = False,
        decisions: Mapping[str, Approve | Deny] | None = None,
        deltas: bool = True,
        max_buffered_deltas: int = DEFAULT_BUFFERED_DELTAS,
    ) -> RunStream:
        """Resume the stored run `run_id` (as `resume` does) and stream what it runs, as
        `stream` does: tasks restored from the store are not announced again."""
        start = functools.partial(
            self.resume, run_id, output_type=output_type, force=force, decisions=decisions
        )
        return RunStream(
            self.events, run_id, start, deltas=deltas, max_buffered_deltas=max_buffered_deltas
        )

    execute_sync = syncify(execute)

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
    ) -> tuple[dict[str, Any], list[Task], dict[str, Agent[Any]]]:
        """Check `graph` against the workers and `inputs` before anything runs."""
        return _setup.prepare(method, graph, inputs, self.workers, keeps_memory=self._stores.keeps)

    def _account(
        self,
        tasks: Sequence[Task],
        agents: Mapping[str, Agent[Any]],
        budget: Budget | None,
        began: float | None = None,
    ) -> RunAccount:
        """The run's ledger and scopes (see `_setup.open_account`), its rate limits and hooks."""
        account = _setup.open_account(self, tasks, agents, budget, began)
        account.limiters, account.hooks = self.rate_limits, self.hooks
        return account
