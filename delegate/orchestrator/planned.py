"""Planned runs, `Orchestrator.run(goal)`: plan, execute while the plan streams, replan, answer.

The planner's plan is checked task by task as the planner's model streams it: each task that
checks out on its own is added to the running graph at once, so workers start before the plan is
finished (LLMCompiler's idea). When the plan is complete it is validated as a whole (the projected
cost included) and repaired if needed; tasks already started are kept.

Once every task has ended, the run looks at what failed (a permanent error, a refused budget, a
timeout, and the tasks skipped because of them) and — with `judge_goal=True` — asks the planner's
model whether the goal is met. If something is missing and replans are left, the planner gets the
state (finished tasks with short summaries, failures with their errors, the budget left) and plans
the remaining work; finished tasks are never run again. Finally the synthesizer (the planner, or
a named agent) writes the answer from the task outputs, with time kept back from the deadline.

Each plan revision is kept (`RunResult.plans`) and stored with the run's graph, so `resume` runs
what was planned and only plans again what was never planned. A plan approved beforehand
(`run(goal, plan=...)`) is the first revision, with no planning call; with `approve_plan` each
plan waits, unstreamed, for the approver's decision (`delegate.orchestrator.approval`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from delegate._log import get_logger
from delegate.agents.agent import Agent, AgentResult
from delegate.agents.models import ModelRequest, Usage
from delegate.agents.tools import validation_summary
from delegate.errors import (
    BudgetExceeded,
    DelegateError,
    GraphError,
    ModelError,
    PlanInvalid,
    StoreError,
)
from delegate.orchestrator.approval import (
    Approval,
    PlanApprover,
    RevisionState,
    decide_on,
    given_result,
)
from delegate.orchestrator.calls import DEFAULT_OUTPUT_TOKENS, EFFORT_OUTPUT_TOKENS, CallGate
from delegate.orchestrator.estimate import Estimate, estimate_tasks
from delegate.orchestrator.events import (
    PlanFinished,
    PlanStarted,
    PlanTaskAdded,
    SynthesisStarted,
)
from delegate.orchestrator.graph import GraphSpec, PlannedSpec, Task, TaskGraph, format_output
from delegate.orchestrator.planner import (
    SUMMARY_CHARS,
    Plan,
    Planner,
    PlanResult,
    PlanTask,
    describe_budget,
    summarize_output,
    validate_plan,
)
from delegate.orchestrator.scheduler import build_nodes

if TYPE_CHECKING:
    from delegate.memory.blackboard import Memory
    from delegate.orchestrator._persist import RunRecorder
    from delegate.orchestrator.calls import RunAccount
    from delegate.orchestrator.events import EventBus
    from delegate.orchestrator.run import RunResult, RunStatus
    from delegate.orchestrator.scheduler import RetryPolicy, Scheduler

__all__ = [
    "SYNTHESIS_INSTRUCTIONS",
    "GoalCheck",
    "PlanRevision",
    "PlannedRun",
    "PlannerCalls",
    "synthesizer_for",
]

log = get_logger("delegate.planner")

PlanReason = Literal["goal", "failures", "goal_unmet", "resumed"]

SYNTHESIS_INSTRUCTIONS = (
    "You write the final answer to a goal from the results of the tasks a team of workers did "
    "for it. Use the task results as your sources: combine them, resolve contradictions, and "
    "leave out what does not serve the goal. Do not mention the tasks or the workers; answer "
    "the goal directly. If the results do not cover part of the goal, say so plainly."
)

GOAL_CHECK_INSTRUCTIONS = (
    "You check whether the results of a team's tasks are enough to fully answer a goal. Judge "
    "only what the results contain. Answer met=true when a complete answer can be written "
    "from them; otherwise met=false and say in `missing` exactly what is still needed."
)

_SYNTHESIS_INPUT_GUESS = 4000  # tokens of task results a synthesis reads, before they exist


class GoalCheck(BaseModel):
    """The planner model's judgement, before synthesis, of whether the goal is met."""

    met: bool = Field(description="True when the results are enough to answer the goal fully.")
    missing: str = Field(default="", description="What is still needed, when not met.")


class PlanRevision(BaseModel):
    """One plan of a planned run: the first, or a revision after failures.

    Attributes:
        revision: 1 for the first plan, then 2, 3, ...
        reason: "goal" (the first plan), "failures" (tasks failed), "goal_unmet" (the goal check
            found something missing) or "resumed" (a resumed run completes an interrupted plan).
        failures: what the revision responded to: task id (or "goal") → error.
        tasks: the tasks it added, in order.
        synthesis_note: the planner's note for the final answer.
        attempts: plans asked for (more than 1 when a plan had to be repaired).
        errors: the problems of each repaired attempt.
        usage: the planner's calls for this revision.
        complete: False when planning was interrupted or gave no valid plan (see `error`).
        error: why no valid plan came, when it did not.
        approval: how a human decided on it: "given" (`run(goal, plan=...)`), "approved",
            "edited" or "rejected" (`approve_plan`); None when nobody was asked.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    revision: int
    reason: PlanReason
    failures: dict[str, str] = Field(default_factory=dict)
    tasks: list[PlanTask] = Field(default_factory=list)
    synthesis_note: str = ""
    attempts: int = 0
    errors: list[list[str]] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    complete: bool = False
    error: str | None = None
    approval: Approval | None = None
    started_at: datetime
    finished_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The revision as JSON data (how the store keeps it)."""
        data = self.model_dump(mode="json", exclude={"usage"})
        data["usage"] = self.usage.to_dict()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanRevision:
        """A revision from `to_json` data."""
        values = dict(data)
        values["usage"] = Usage(**values.get("usage") or {})
        return cls.model_validate(values)


@dataclass(slots=True)
class PlannerCalls:
    """What the planner's and the synthesizer's calls are charged to: no task, just usage."""

    usage: Usage = field(default_factory=Usage)
    model: str | None = None

    @property
    def task_id(self) -> str | None:
        """None: the calls fall under no task's budget."""
        return None


@dataclass(slots=True)
class PlannedRun:
    """The planning side of one `Orchestrator.run`: used by the orchestrator, once per run."""

    run_id: str
    goal: str
    inputs: Mapping[str, Any]
    planner: Planner
    workers: Mapping[str, Agent[Any]]
    synthesizer: Agent[Any]
    output_type: type[BaseModel] | None
    max_replans: int
    judge_goal: bool
    retry: RetryPolicy
    bus: EventBus
    rng: Any
    prices: Mapping[str, Any]
    graph: TaskGraph = field(default_factory=TaskGraph)
    revisions: list[PlanRevision] = field(default_factory=list)
    handled: dict[str, str] = field(default_factory=dict)  # failures a revision responded to
    memory: Memory | None = None
    final_deadline: float | None = None
    answer_usage: Usage = field(default_factory=Usage)
    error: str | None = None
    unresolved: bool = False  # failures were left when the run stopped replanning
    source: dict[str, Any] | None = None  # the workflow file a run came from, for resume
    approve: PlanApprover | None = None  # asked about each plan before its tasks start
    given: Plan | None = None  # the first plan, approved beforehand: no planning call for it

    # -- the graph as stored -------------------------------------------------------------------

    def spec(self) -> dict[str, Any]:
        """The run's `GraphSpec` with the plan revisions, as JSON: what `resume` needs."""
        planned = PlannedSpec(
            goal=self.goal,
            plans=tuple(revision.to_json() for revision in self.revisions),
            handled=self.handled,
        )
        return GraphSpec.of(self.graph, planned=planned, workflow=self.source).to_json()

    @classmethod
    def stored(cls, planned: PlannedSpec) -> tuple[list[PlanRevision], dict[str, str]]:
        """The plan revisions and handled failures of a stored planned run.

        Raises:
            GraphError: a stored revision that is not one (a row changed outside delegate).
        """
        revisions = []
        for number, item in enumerate(planned.plans, 1):
            try:
                revisions.append(PlanRevision.from_json(item))
            except (ValueError, TypeError) as exc:  # (its usage is read by `Usage(**...)`)
                problem = validation_summary(exc) if isinstance(exc, ValidationError) else exc
                raise GraphError(f"stored plan revision {number} is not valid: {problem}") from None
        return revisions, dict(planned.handled)

    # -- the driver's side of the run ----------------------------------------------------------

    def agents(self) -> Mapping[str, Agent[Any]]:
        """The planner's and the synthesizer's agents, and the workers."""
        agents = {**self.workers, self.planner.agent.name: self.planner.agent}
        agents.setdefault(self.synthesizer.name, self.synthesizer)
        return agents

    def prepare(self, account: RunAccount) -> None:
        """Share the run's memory with the planner and keep time back for the answer.

        On resume, what the stored plans cost is counted again in the run's usage.
        """
        self.memory = account.memory
        self.keep_time_for_answer(account)
        agent = self.planner.agent
        for revision in self.revisions:
            if revision.usage.calls and not account.resumed:  # else the stored spend has it
                account.book.add(agent.model.name, agent.name, revision.usage)

    def roles(self) -> Mapping[str, str]:
        """None of its own: the planner and synthesizer are the orchestrator's."""
        return {}

    def result(self, result: RunResult, output: Any, deadline_passed: bool) -> RunResult:
        """The answer is the output; failures a replan recovered from do not count."""
        # Failures a replan answered do not count; any other task that did not succeed does.
        left = any(
            task.status != "succeeded" and task.id not in self.handled
            for task in result.tasks.values()
        )
        if output is None:
            succeeded = any(task.status == "succeeded" for task in result.tasks.values())
            status: RunStatus = "partial" if succeeded else "failed"
        elif left or self.unresolved or deadline_passed or self.error:
            status = "partial"
        else:
            status = "succeeded"
        return result.model_copy(
            update={
                "status": status,
                "output": output,
                "goal": self.goal,
                "plans": list(self.revisions),
                "error": self.error,
            }
        )

    def keep_time_for_answer(self, account: RunAccount) -> None:
        """Move the workers' deadline forward by the time the final answer is expected to take."""
        if account.deadline is None:
            return
        self.final_deadline = account.deadline
        left = account.deadline - anyio.current_time()
        model = self.synthesizer.model
        expected = getattr(model, "expected_latency", None)
        request = ModelRequest(messages=[{"role": "user", "content": self.goal}])
        seconds = float(expected(request)) if callable(expected) else 0.15 * left
        account.deadline -= min(max(seconds, 0.0) * 1.5, 0.5 * left)

    # -- the planning loop ------------------------------------------------------------------------

    async def drive(
        self, scheduler: Scheduler, account: RunAccount, recorder: RunRecorder | None
    ) -> None:
        """Plan, let the tasks run, replan after failures; then release the scheduler's hold."""
        try:
            await self._drive(scheduler, account, recorder)
        except StoreError:
            raise  # the run cannot be kept: it stops, as when its recorder fails
        except DelegateError as exc:  # one of ours: the run ends with what it has, and says why
            self.error = f"planning stopped: {exc}"
            self.unresolved = True
            log.error("planning_stopped", error=self.error)
        finally:
            scheduler.release()

    async def _drive(
        self, scheduler: Scheduler, account: RunAccount, recorder: RunRecorder | None
    ) -> None:
        reason: PlanReason | None = "goal"
        failures: dict[str, str] = {}
        started: list[PlanTask] = []
        if self.revisions:
            last = self.revisions[-1]
            reason = None
            if not last.complete:  # a plan the crash interrupted: complete it, for its reasons
                reason, failures, started = "resumed", dict(last.failures), list(last.tasks)
        replans = sum(r.reason in ("failures", "goal_unmet") for r in self.revisions)
        while True:
            if reason is not None:
                planned = await self._revise(
                    reason, failures, scheduler, account, recorder, started
                )
                started = []
                if not planned and (len(self.revisions) == 1 or failures):
                    # No first plan: nothing to run (the error is on the result); no replan:
                    # the failures stay unresolved once what is running has ended.
                    await scheduler.settled()
                    return
            await scheduler.settled()
            if scheduler.ending:
                return  # cancelled, fail-fast or out of time: no replan, no goal check
            failures = self._new_failures(scheduler)
            reason = "failures"
            if not failures and self.judge_goal and replans < self.max_replans:
                missing = await self._check_goal(scheduler, account)
                if missing:
                    failures, reason = {"goal": missing}, "goal_unmet"
            if not failures:
                self.unresolved = False
                return
            self.unresolved = True
            if replans >= self.max_replans or self._past_deadline(account):
                log.info("replans_exhausted", max_replans=self.max_replans)
                return
            replans += 1
            self.handled.update(failures)

    def _past_deadline(self, account: RunAccount) -> bool:
        return account.deadline is not None and anyio.current_time() >= account.deadline

    def _new_failures(self, scheduler: Scheduler) -> dict[str, str]:
        return {
            node.task.id: node.error or node.status
            for node in scheduler.nodes
            if node.status in ("failed", "skipped") and node.task.id not in self.handled
        }

    async def _revise(
        self,
        reason: PlanReason,
        failures: dict[str, str],
        scheduler: Scheduler,
        account: RunAccount,
        recorder: RunRecorder | None,
        started: Sequence[PlanTask] = (),
    ) -> bool:
        """Ask for a plan (or a revision) and add its tasks as they come; False when none came.

        `started`: tasks of an interrupted plan, already in the graph, that the plan keeps.
        """
        number = len(self.revisions) + 1
        began = datetime.now(UTC)
        if self.bus.active:
            self.bus.emit(PlanStarted(run_id=self.run_id, revision=number, reason=reason))
        added: list[PlanTask] = []
        charge = PlannerCalls()
        usd_left, share = self._usd_left(account)
        known_before = set(self.graph.tasks)
        committed = [0.0]  # the projected cost of the tasks started so far

        def estimate(plan: Plan) -> float | None:
            return self._estimate_usd(plan, known_before)

        def on_task(task: PlanTask) -> bool:
            if task.id in self.graph:
                return False  # started by an attempt that then failed: the plan checks it
            if usd_left is not None:
                # A streamed task starts before the plan's total is known: it starts only while
                # the tasks started so far fit in the budget.
                cost = estimate(Plan(tasks=[task])) or 0.0
                if committed[0] + cost > max(usd_left - share, 0.0):
                    return False
                committed[0] += cost
            self._add(task, scheduler, number)
            added.append(task)
            if recorder is not None:  # the store learns of each task before its result
                self._record(
                    reason, failures, number, began, [*started, *added], charge, recorder, None
                )
            return True

        def validate(plan: Plan, known: list[str]) -> list[str]:
            kept = {task.id for task in started}
            taken = [
                f"task id {task.id!r} is taken by a task that {scheduler.by_id[task.id].status} "
                f"in an earlier plan; give the new task another id, e.g. '{task.id}_2'"
                for task in plan.tasks
                if task.id in known_before and task.id not in known and task.id not in kept
            ]
            listed = {task.id for task in plan.tasks}
            return taken + validate_plan(
                plan,
                workers=self.workers,
                max_tasks=self.planner.max_tasks,
                # The interrupted plan's own tasks are listed again, unchanged, even when they
                # have finished since (a second interruption): they are kept, not re-planned.
                finished=[done for done in known if done not in kept or done not in listed],
                budget_usd_left=None if usd_left is None else max(usd_left - share, 0.0),
                estimate_usd=estimate,
                inputs=list(self.inputs),
            )

        finished, problems = self._state(scheduler, failures)
        memory = await self._memory()
        result, error, approval = await self._plan(
            RevisionState(number, reason, failures, finished, validate),
            lambda: {
                "budget_text": self._budget_text(account, usd_left, share),
                "memory": memory,
                "finished": finished,
                # an interrupted plan's tasks, and those of an attempt that failed transiently
                "started": [*started, *added],
                "failures": problems,
                "caller": CallGate(account, charge),
                "validate": validate,
                "on_task": on_task,
            },
            account.deadline,
            scheduler,
            added,
        )
        if result is not None:
            note = result.plan.synthesis_note
            attempts, errors = result.attempts, result.errors
        else:
            note, attempts, errors = "", 0, []
            what = "planning" if number == 1 else f"replanning (revision {number})"
            self.error = f"{what} failed: {error}"
        self._record(
            reason,
            failures,
            number,
            began,
            # An interrupted plan's kept tasks belong to the completed plan too: a second
            # interruption must find them among this revision's tasks.
            [*started, *added],
            charge,
            recorder,
            error,
            note=note,
            attempts=attempts,
            errors=errors,
            complete=result is not None,
            approval=approval,
        )
        if error is not None:
            log.warning("plan_failed", revision=number, error=error)
        if self.bus.active:
            self.bus.emit(
                PlanFinished(
                    run_id=self.run_id,
                    revision=number,
                    tasks=len(self.graph.tasks) - len(known_before),
                    attempts=attempts,
                    usage=charge.usage,
                    error=error,
                )
            )
        return result is not None

    async def _plan(
        self,
        state: RevisionState,
        options: Callable[[], dict[str, Any]],
        deadline: float | None,
        scheduler: Scheduler,
        added: list[PlanTask],
    ) -> tuple[PlanResult | None, str | None, Approval | None]:
        """The plan of a revision: the one approved before the run (the first), or the
        planner's, streamed, or shown to the approver first. Its tasks start when they are
        not streamed; `added` gets them."""
        approval: Approval | None = None
        if state.number == 1 and state.reason == "goal" and self.given is not None:
            result, error, approval = given_result(self.given, state.validate(self.given, []))
        elif self.approve is None:
            result, error = await self._ask(options, deadline)
        else:  # nothing starts before the approver's decision: the plan is not streamed
            result, error = await self._ask(lambda: {**options(), "on_task": None}, deadline)
            if result is not None:
                result, error, approval = await decide_on(self, self.approve, result, state)
        if result is not None and approval is not None:
            for task in result.plan.tasks:
                if task.id not in self.graph:
                    self._add(task, scheduler, state.number)
                    added.append(task)
        return result, error, approval

    async def plan_only(self, account: RunAccount) -> PlanResult:
        """One plan for the goal, its calls held to the run's budget; nothing is run.

        Raises:
            PlanInvalid: no valid plan in the planner's attempts.
            BudgetExceeded: the planner's call does not fit the budget.
            ModelError: the planner's call failed.
        """
        usd_left, share = self._usd_left(account)

        def validate(plan: Plan, known: list[str]) -> list[str]:
            return validate_plan(
                plan,
                workers=self.workers,
                max_tasks=self.planner.max_tasks,
                finished=known,
                budget_usd_left=None if usd_left is None else max(usd_left - share, 0.0),
                estimate_usd=lambda candidate: self._estimate_usd(candidate, set()),
                inputs=list(self.inputs),
            )

        return await self.planner.plan(
            self.goal,
            inputs=self.inputs,
            workers=self.workers,
            budget_text=self._budget_text(account, usd_left, share),
            memory=await self._memory(),
            caller=CallGate(account, PlannerCalls()),
            validate=validate,
            prices=self.prices,
        )

    async def _ask(
        self, options: Callable[[], dict[str, Any]], deadline: float | None
    ) -> tuple[PlanResult | None, str | None]:
        """A plan from the planner, retrying transient errors; or why there is none.

        `options` gives `Planner.plan`'s arguments for each attempt (what is finished changes);
        no retry waits past `deadline` (the run's).
        """

        async def attempt() -> PlanResult:
            return await self.planner.plan(
                self.goal, inputs=self.inputs, workers=self.workers, prices=self.prices, **options()
            )

        try:
            return await self.retry.call(attempt, rng=self.rng, deadline=deadline), None
        except (ModelError, PlanInvalid, BudgetExceeded) as exc:
            return None, str(exc)

    def _record(
        self,
        reason: PlanReason,
        failures: Mapping[str, str],
        number: int,
        started: datetime,
        added: Sequence[PlanTask],
        charge: PlannerCalls,
        recorder: RunRecorder | None,
        error: str | None,
        *,
        note: str = "",
        attempts: int = 0,
        errors: Sequence[Sequence[str]] = (),
        complete: bool = False,
        approval: Approval | None = None,
    ) -> None:
        """Keep the revision as it stands (and queue the graph for the store)."""
        revision = PlanRevision(
            revision=number,
            reason=reason,
            failures=dict(failures),
            tasks=list(added),
            synthesis_note=note,
            attempts=attempts,
            errors=[list(e) for e in errors],
            usage=charge.usage,
            complete=complete,
            error=error,
            approval=approval,
            started_at=started,
            finished_at=datetime.now(UTC) if complete or error is not None else None,
        )
        if len(self.revisions) >= number:
            self.revisions[number - 1] = revision
        else:
            self.revisions.append(revision)
        if recorder is not None:
            recorder.graph_changed(self.spec())

    def _add(self, task: PlanTask, scheduler: Scheduler, revision: int) -> None:
        """Add one planned task of plan `revision` to the graph and the running scheduler."""
        added = self.graph.add_spec(task.spec(self.workers[task.agent]))
        if self.bus.active:  # announced before it can be queued
            self.bus.emit(
                PlanTaskAdded(
                    run_id=self.run_id,
                    revision=revision,
                    task_id=task.id,
                    agent=task.agent,
                    deps=tuple(task.deps),
                    instructions=task.instructions,
                )
            )
        scheduler.add(build_nodes([added], self.workers, known=scheduler.by_id))

    def _state(
        self, scheduler: Scheduler, failures: Mapping[str, str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """What the planner is told: finished tasks with summaries, and the failures."""
        finished: dict[str, str] = {}
        for node in scheduler.nodes:
            if node.status == "succeeded":
                finished[node.task.id] = summarize_output(node.output)
            elif node.status in ("pending", "running"):
                finished[node.task.id] = "(still running)"
        return finished, dict(failures)

    async def _memory(self) -> list[str]:
        if self.memory is None:
            return []
        from delegate.memory.blackboard import relevant, render

        try:
            records = await relevant(self.memory, self.goal)
        except StoreError:
            raise  # the run's store failed: the run cannot be kept, it stops
        except DelegateError as exc:  # a goal memory cannot search for: plan without memory
            log.warning("planner_memory_unavailable", error=str(exc))
            return []
        return [f"{record.key}: {render(record.value)[:SUMMARY_CHARS]}" for record in records]

    # -- budget -----------------------------------------------------------------------------

    def _usd_left(self, account: RunAccount) -> tuple[float | None, float]:
        """USD left in the run's budget (None: no limit), and the planner's share of it."""
        lefts = [
            scope.remaining_usd
            for scope in (account.run.chain if account.run is not None else ())
            if scope.remaining_usd is not None
        ]
        left = min(lefts) if lefts else None
        price = account.price(self.synthesizer.model)
        share = 0.0
        if price is not None:
            share = price.cost(_SYNTHESIS_INPUT_GUESS, _allowance(self.synthesizer))
        return left, share

    def _budget_text(self, account: RunAccount, usd_left: float | None, share: float) -> str:
        scopes = account.run.chain if account.run is not None else ()
        tokens = [s.remaining_tokens for s in scopes if s.remaining_tokens is not None]
        seconds = None
        if account.deadline is not None:
            seconds = max(account.deadline - anyio.current_time(), 0.0)
        return describe_budget(
            tokens=min(tokens) if tokens else None,
            usd=usd_left,
            seconds=seconds,
            planner_usd=share if usd_left is not None else None,
        )

    def estimate_plan(self, plan: Plan) -> Estimate:
        """The projection of the plan's tasks that are not in the graph yet."""
        done = dict.fromkeys(self.graph.tasks, 0)
        tasks = [self._task(t) for t in plan.tasks if t.id not in done]
        return estimate_tasks(tasks, self.workers, self.inputs, self.prices, done=done)

    def _estimate_usd(self, plan: Plan, before: set[str]) -> float | None:
        """The projected cost of the plan's tasks, except those of earlier revisions (`before`)."""
        # Tasks already in the graph cost nothing more here; their outputs are not projected.
        done = dict.fromkeys(self.graph.tasks, 0)
        tasks = [self._task(t) for t in plan.tasks if t.id not in before]
        if not tasks:
            return 0.0
        estimate = estimate_tasks(tasks, self.workers, self.inputs, self.prices, done=done)
        return estimate.usd

    def _task(self, task: PlanTask) -> Task:
        """A plan task as a graph `Task`, outside any graph (for estimating a plan)."""
        return Task.of(task.spec(self.workers[task.agent]))

    # -- the goal check and the answer --------------------------------------------------------

    async def _check_goal(self, scheduler: Scheduler, account: RunAccount) -> str | None:
        """What the planner's model finds missing before synthesis (None: nothing to replan for).

        A check that fails with one of delegate's errors (its call refused by the budget, a
        model error) is not taken for "goal met": the answer is still written, but the run is
        "partial" and its error says that the goal check could not run. Anything else raised is
        a bug, and ends the run.
        """
        base = self.planner.agent
        judge = Agent(
            base.name,
            base.model,
            instructions=GOAL_CHECK_INSTRUCTIONS,
            output_type=GoalCheck,
            reasoning_effort=base.reasoning_effort,
            max_output_tokens=base.max_output_tokens,
            temperature=base.temperature,
            call_budget=base.call_budget,
        )
        charge = PlannerCalls()
        try:
            result = await judge.run(
                self._answer_prompt(scheduler), caller=CallGate(account, charge)
            )
        except StoreError:
            raise  # the run's store failed: the run cannot be kept, it stops
        except DelegateError as exc:
            self.error = self.error or f"the goal check could not run: {exc}"
            log.warning("goal_check_failed", error=str(exc))
            return None
        finally:
            self.answer_usage += charge.usage
        check: GoalCheck = result.output
        return None if check.met else (check.missing or "the goal is not met")

    def _answer_prompt(self, scheduler: Scheduler) -> str:
        notes = [r.synthesis_note for r in self.revisions if r.synthesis_note]
        parts = [f"## Goal\n{self.goal}"]
        if self.inputs:
            lines = "\n".join(f"- {k}: {format_output(v)}" for k, v in self.inputs.items())
            parts.append(f"## Inputs\n{lines}")
        if notes:
            parts.append("## What the answer must contain\n" + "\n".join(notes))
        results = [
            f"### {node.task.id}\n{format_output(node.output)}"
            for node in scheduler.nodes
            if node.status == "succeeded"
        ]
        parts.append("## Results of the tasks\n\n" + "\n\n".join(results))
        return "\n\n".join(parts)

    async def answer(self, scheduler: Scheduler, account: RunAccount) -> Any:
        """The final answer from the task outputs (None when there is nothing to answer from)."""
        succeeded = [node for node in scheduler.nodes if node.status == "succeeded"]
        if not succeeded:
            return None
        if self.final_deadline is not None:
            account.deadline = self.final_deadline
            if self._past_deadline(account):
                self.error = self.error or "no time was left for the final answer"
                return None
        if self.bus.active:
            self.bus.emit(
                SynthesisStarted(
                    run_id=self.run_id, agent=self.synthesizer.name, tasks=len(succeeded)
                )
            )
        prompt = self._answer_prompt(scheduler)
        charge = PlannerCalls()

        async def attempt() -> AgentResult[Any]:
            with _until(account.deadline):
                return await self.synthesizer.run(prompt, caller=CallGate(account, charge))

        try:
            result = await self.retry.call(attempt, rng=self.rng, deadline=account.deadline)
            return result.output
        except (DelegateError, TimeoutError) as exc:
            message = str(exc) or "the final answer ran out of time"
            self.error = f"the final answer failed: {message}"
            log.warning("synthesis_failed", error=message)
        finally:
            self.answer_usage += charge.usage
        return None


def _until(deadline: float | None) -> AbstractContextManager[anyio.CancelScope]:
    return anyio.fail_after(None if deadline is None else max(deadline - anyio.current_time(), 0))


def _allowance(agent: Agent[Any]) -> int:
    if agent.max_output_tokens is not None:
        return agent.max_output_tokens
    if agent.reasoning_effort is not None:
        return EFFORT_OUTPUT_TOKENS[agent.reasoning_effort]
    return DEFAULT_OUTPUT_TOKENS


def synthesizer_for(
    agent: Agent[Any], output_type: type[BaseModel] | None, *, planner: bool
) -> Agent[Any]:
    """The agent that writes the final answer, as text or as `output_type`.

    The planner writes it with the synthesis instructions; a named synthesizer keeps its own
    instructions (the synthesis instructions when it has none).
    """
    if not planner and output_type is None:
        return agent
    instructions = SYNTHESIS_INSTRUCTIONS if planner else agent.instructions
    return Agent(
        agent.name,
        agent.model,
        instructions=instructions or SYNTHESIS_INSTRUCTIONS,
        description=agent.description,
        output_type=output_type if output_type is not None else agent.output_type,
        tools=[*agent.tools, *agent.mcp_servers],
        fallback=agent.fallback,
        reasoning_effort=agent.reasoning_effort,
        max_output_tokens=agent.max_output_tokens,
        temperature=agent.temperature,
        budget=agent.budget,
        call_budget=agent.call_budget,
        cheaper=agent.cheaper,
        min_output_tokens=agent.min_output_tokens,
        memory=agent.memory,
    )
