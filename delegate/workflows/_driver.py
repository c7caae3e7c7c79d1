"""Running a static workflow: its steps become tasks, fanned out and planned as the run goes.

A step with nothing dynamic about it is added to the run's graph at once (the scheduler starts it
when its `needs` have finished). A step with `foreach`, `when` or `kind: plan` is expanded once
every step it needs has ended, because what it becomes depends on their outputs:

- `when` false: the step is skipped, and the steps that need it still run (its output is null);
- `foreach`: one task per item, `<id>[0]`, `<id>[1]`, ..., each with `item` and `loop` in its
  prompt, and a task `<id>` whose output is the list of the items' outputs;
- `kind: plan`: the step's planner plans the sub-goal over the step's workers (streamed: tasks
  start while it plans), and the planner's model writes the step's output, `<id>`, from the
  planned tasks' outputs. The planning itself is the task `<id>.plan` (its planner, model,
  calls, usage and time; its output is the planned task ids): it is in the task table and the
  run's usage like any task, and its agent counts as a "planner" in `RunUsage.by_role`. When no
  valid plan comes, `<id>.plan` fails with the reason and `<id>` is skipped.

A step that needs a failed step is skipped with the reason, like any task. The run's output is
the output of the workflow's `output` step, else of its last step.

On resume the same expansion is done again from the restored outputs (so it comes out the
same), except that plan steps reuse the plan stored with the run: nothing is planned twice, and
what the stored planning cost is counted in the run's usage again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError as JinjaTemplateError
from jinja2 import Undefined

from delegate._log import bound_context, get_logger
from delegate.agents.agent import Agent, with_output_type
from delegate.errors import DelegateError, StoreError, TemplateError
from delegate.orchestrator._persist import restore_nodes, to_json, usage_from
from delegate.orchestrator.calls import CallGate
from delegate.orchestrator.events import TaskFailed, TaskStarted, TaskSucceeded
from delegate.orchestrator.graph import (
    PROMPT_ENV,
    GraphSpec,
    Task,
    TaskContext,
    TaskGraph,
    TaskSpec,
)
from delegate.orchestrator.planned import PlannerCalls, synthesizer_for
from delegate.orchestrator.planner import (
    Plan,
    Planner,
    PlanTask,
    summarize_output,
    validate_plan,
)
from delegate.orchestrator.scheduler import build_nodes
from delegate.orchestrator.strategies import AdaptiveVotes, Strategy
from delegate.workflows._templates import expression_of
from delegate.workflows.spec import AgentSpec, AgentStep, PlanStep

if TYPE_CHECKING:
    from pydantic import BaseModel

    from delegate.memory.records import TaskRecord
    from delegate.orchestrator._persist import RunRecorder
    from delegate.orchestrator.calls import RunAccount
    from delegate.orchestrator.run import RunResult, RunStatus
    from delegate.orchestrator.scheduler import Scheduler
    from delegate.workflows.spec import WorkflowSpec

__all__ = ["WorkflowRun"]

log = get_logger("delegate.workflows")

_TERMINAL = frozenset({"succeeded", "failed", "skipped", "cancelled"})

PLAN_STEP_PROMPT = (
    "## Goal\n{{ goal }}\n{% if note %}\n## What the answer must contain\n{{ note }}\n{% endif %}"
    "\nWrite the answer to the goal from the results above."
)


@dataclass(slots=True)
class WorkflowRun:
    """The driver of one run of a static workflow (see the module docstring)."""

    run_id: str
    workflow: WorkflowSpec
    by_name: Mapping[str, Agent[Any]]
    inputs: Mapping[str, Any]
    output_types: Mapping[str, type[BaseModel]]
    source: dict[str, Any]
    restored: Mapping[str, TaskRecord] = field(default_factory=dict)
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    graph: TaskGraph = field(default_factory=TaskGraph)
    error: str | None = None
    _account: RunAccount | None = None
    _recorder: RunRecorder | None = None

    # -- the driver's side of the run ----------------------------------------------------------

    def agents(self) -> Mapping[str, Agent[Any]]:
        """The workflow's agents, by name."""
        return self.by_name

    def prepare(self, account: RunAccount) -> None:
        """Keep the run's account (restored tasks' usage is counted in it)."""
        self._account = account

    def roles(self) -> Mapping[str, str]:
        """The planners of the plan steps count as "planner" in `RunUsage.by_role`."""
        return {
            step.planner: "planner"
            for step in self.workflow.steps or ()
            if isinstance(step, PlanStep)
        }

    def spec(self) -> dict[str, Any]:
        """The `GraphSpec` so far, with the workflow file and the plans of its plan steps."""
        return GraphSpec.of(self.graph, workflow=self.source, plans=self.plans).to_json()

    async def drive(
        self, scheduler: Scheduler, account: RunAccount, recorder: RunRecorder | None
    ) -> None:
        """Add the steps as they can be added; release the scheduler when all are in."""
        self._recorder = recorder
        pending = list(self.workflow.steps or ())
        try:
            while pending and not scheduler.stopped:
                added = False
                for step in list(pending):
                    if await self._try_add(step, scheduler, account):
                        pending.remove(step)
                        added = True
                if added and recorder is not None:
                    recorder.graph_changed(self.spec())
                if pending and not added:
                    await scheduler.next_end()
        except StoreError:
            raise  # the run cannot be kept: it stops, as when its recorder fails
        except DelegateError as exc:  # one of ours: the run ends with what it has, and says why
            self.error = f"the workflow stopped adding steps: {exc}"
            log.error("workflow_stopped", error=self.error)
        finally:
            scheduler.release()

    async def answer(self, scheduler: Scheduler, account: RunAccount) -> Any:
        """The output of the `output` step (else the last step), None when it did not succeed."""
        steps = self.workflow.steps or ()
        target = self.workflow.output or (steps[-1].id if steps else None)
        node = scheduler.by_id.get(target) if target is not None else None
        if node is None or node.status != "succeeded":
            return None
        return node.output

    def result(self, result: RunResult, output: Any, deadline_passed: bool) -> RunResult:
        """A step skipped by its `when` counts as done; the output is the output step's."""
        done = [
            task.status == "succeeded" or (task.status == "skipped" and _by_condition(task.error))
            for task in result.tasks.values()
        ]
        status: RunStatus
        if done and all(done) and not deadline_passed:
            status = "succeeded"
        elif any(task.status == "succeeded" for task in result.tasks.values()):
            status = "partial"
        else:
            status = "failed"
        return result.model_copy(update={"status": status, "output": output, "error": self.error})

    # -- steps ---------------------------------------------------------------------------------

    async def _try_add(
        self, step: AgentStep | PlanStep, scheduler: Scheduler, account: RunAccount
    ) -> bool:
        """Add `step` if it can be added now; False when it must wait."""
        needs = self.workflow.needs_of(step.id)
        if any(need not in self.graph for need in needs):
            return False  # a step it needs is not expanded yet
        dynamic = isinstance(step, PlanStep) or step.foreach is not None or step.when is not None
        if not dynamic:
            self._add_agent_step(step, needs, scheduler)  # type: ignore[arg-type]
            return True
        nodes = [scheduler.by_id[need] for need in needs]
        if any(node.status not in _TERMINAL for node in nodes):
            return False
        broken = [n for n in nodes if n.status != "succeeded" and not n.passable]
        if broken:
            # Added with its needs, the scheduler skips it with the reason, like any task.
            self._add(self._placeholder(step.id, needs), scheduler)
            return True
        names = self._names(scheduler)
        if step.when is not None:
            try:
                go = bool(_evaluate(step.when, names))
            except TemplateError as exc:  # it reads model outputs: anything may go wrong in it
                self._fail_step(step.id, needs, f"when: {exc}", scheduler)
                return True
            if not go:
                reason = f"when: {step.when.strip()} is false"
                self._add(self._placeholder(step.id, needs), scheduler, skipped=reason)
                return True
        if isinstance(step, PlanStep):
            await self._expand_plan(step, needs, names, scheduler, account)
        elif step.foreach is not None:
            self._expand_foreach(step, needs, names, scheduler)
        else:
            self._add_agent_step(step, needs, scheduler)
        return True

    def _names(self, scheduler: Scheduler) -> dict[str, Any]:
        """What `when` and `foreach` read: the inputs and the outputs of the steps so far."""
        steps = {
            node.task.id: {"output": node.output}
            for node in scheduler.nodes
            if node.status in ("succeeded", "skipped")
        }
        return {"inputs": dict(self.inputs), "steps": steps}

    def _agent(self, step: AgentStep) -> Agent[Any]:
        agent = self.by_name[step.agent]
        output_type = self.output_types.get(step.id)
        return agent if output_type is None else with_output_type(agent, output_type)

    def _spec(
        self,
        step: AgentStep,
        task_id: str,
        deps: Sequence[str],
        variables: Mapping[str, Any] | None = None,
    ) -> TaskSpec:
        """The task of an agent step (or of one of its items), with the agent's defaults."""
        base = self.workflow.agents[step.agent]
        verify = step.verify or base.verify
        votes, strategy = _settings(step, base)
        return TaskSpec(
            id=task_id,
            agent=step.agent,
            prompt=_prompt_with_context(step.prompt, step.needs),
            deps=tuple(deps),
            timeout=step.timeout,
            retries=step.retries,
            budget=None if step.budget is None else step.budget.to_budget(),
            verify=verify,
            votes=votes,
            variables=dict(variables or {}),
            strategy=strategy,
        )

    def _add_step_task(self, spec: TaskSpec, step: AgentStep, scheduler: Scheduler) -> None:
        verify = None if spec.verify is None else self.by_name[spec.verify]
        self._add(self.graph.add_spec(spec, agent=self._agent(step), verify=verify), scheduler)

    def _add_agent_step(self, step: AgentStep, needs: Sequence[str], scheduler: Scheduler) -> None:
        self._add_step_task(self._spec(step, step.id, needs), step, scheduler)

    def _expand_foreach(
        self,
        step: AgentStep,
        needs: Sequence[str],
        names: Mapping[str, Any],
        scheduler: Scheduler,
    ) -> None:
        try:
            items = _evaluate(step.foreach or "", names)
        except TemplateError as exc:  # it reads model outputs: anything may go wrong in it
            self._fail_step(step.id, needs, f"foreach: {exc}", scheduler)
            return
        if isinstance(items, Mapping) or not isinstance(items, list | tuple):
            self._fail_step(
                step.id,
                needs,
                f"foreach: {step.foreach!r} gave a {type(items).__name__}, not a list",
                scheduler,
            )
            return
        # An item task needs what its prompt reads, not the steps the list came from: its item
        # carries that.
        deps = [need for need in needs if need in step.needs or _names_step(step.prompt, need)]
        ids: list[str] = []
        count = len(items)
        for index, item in enumerate(items):
            loop = {
                "index": index + 1,
                "index0": index,
                "first": index == 0,
                "last": index == count - 1,
                "length": count,
            }
            spec = self._spec(
                step, f"{step.id}[{index}]", deps, {"item": to_json(item), "loop": loop}
            )
            ids.append(spec.id)
            self._add_step_task(spec, step, scheduler)
        self._add(self.graph.add(step.id, fn=_gather, deps=ids), scheduler)

    async def _expand_plan(
        self,
        step: PlanStep,
        needs: Sequence[str],
        names: Mapping[str, Any],
        scheduler: Scheduler,
        account: RunAccount,
    ) -> None:
        try:
            goal = PROMPT_ENV.from_string(step.goal).render(names)
        except JinjaTemplateError as exc:
            self._fail_step(step.id, needs, f"goal: {exc}", scheduler)
            return
        stored = self.plans.get(step.id)
        planned_now = stored is None or not stored.get("complete")
        if stored is not None:  # resumed: the plan was made before
            spent = usage_from(stored.get("usage"))
            if spent.calls and not account.resumed:  # else the stored spend counted it
                planner = self.by_name[step.planner]
                account.book.add(planner.model.name, planner.name, spent)
            tasks = [PlanTask.model_validate(t) for t in stored.get("tasks", ())]
            for task in tasks:
                self._add_plan_task(task, scheduler)
            note = str(stored.get("note", ""))
            if not stored.get("complete"):
                note = await self._plan(step, goal, needs, scheduler, account, tasks) or note
        else:
            note = await self._plan(step, goal, needs, scheduler, account, [])
        record = self.plans.get(step.id, {})
        self._add_planning(step, needs, record, scheduler, announce=planned_now)
        if not record.get("complete"):
            # Skipped by the scheduler, with the failed planning as its reason.
            deps = [*needs, _planning_id(step.id), *_ids(record)]
            self._add(self._placeholder(step.id, deps), scheduler)
            return
        planner = synthesizer_for(self.by_name[step.planner], None, planner=True)
        answer = self.graph.add(
            step.id,
            agent=planner,
            prompt=PLAN_STEP_PROMPT,
            deps=[*needs, *_ids(record)],
            variables={"goal": goal, "note": note},
            budget=None if step.budget is None else step.budget.to_budget(),
        )
        self._add(answer, scheduler)

    async def _plan(
        self,
        step: PlanStep,
        goal: str,
        needs: Sequence[str],
        scheduler: Scheduler,
        account: RunAccount,
        started: list[PlanTask],
    ) -> str:
        workers = {name: self.by_name[name] for name in step.workers}
        agent = self.by_name[step.planner]
        planner = Planner(agent, max_tasks=step.max_tasks)
        taken = {s.id for s in self.workflow.steps or ()} | set(self.graph.tasks)
        taken.add(_planning_id(step.id))
        record = self.plans.setdefault(step.id, {"tasks": [], "complete": False})
        record["tasks"] = [t.model_dump() for t in started]
        record["started_at"] = time.time()
        if scheduler.bus.active:
            # The planning shows as its task while it runs (its calls are made from here).
            scheduler.bus.emit(
                TaskStarted(
                    run_id=self.run_id,
                    task_id=_planning_id(step.id),
                    attempt=1,
                    agent=agent.name,
                )
            )
        charge = PlannerCalls()

        def on_task(task: PlanTask) -> bool:
            if task.id in taken and task.id not in {t["id"] for t in record["tasks"]}:
                return False
            self._add_plan_task(task, scheduler)
            record["tasks"].append(task.model_dump())
            if self._recorder is not None:
                self._recorder.graph_changed(self.spec())
            return True

        def validate(plan: Plan, known: list[str]) -> list[str]:
            clashes = [
                f"task id {t.id!r} is already a step or task of the workflow; choose another id"
                for t in plan.tasks
                if t.id in taken and t.id not in known and t.id not in {s.id for s in started}
            ]
            return clashes + validate_plan(
                plan,
                workers=workers,
                max_tasks=step.max_tasks,
                finished=known,
                inputs=list(self.inputs),
            )

        finished = {need: summarize_output(scheduler.by_id[need].output) for need in needs}
        try:
            # The planning is the task `<id>.plan`: what its calls log names it.
            with bound_context(task_id=_planning_id(step.id), agent=agent.name):
                result = await planner.plan(
                    goal,
                    inputs=self.inputs,
                    workers=workers,
                    budget_text="as the workflow's budget allows",
                    finished=finished,
                    caller=CallGate(account, charge),
                    validate=validate,
                    on_task=on_task,
                    prices=account.prices,
                    started=started,
                )
        except StoreError:
            raise  # the run's store failed: the run cannot be kept, it stops
        except DelegateError as exc:  # no valid plan, a model error, a refused budget
            record["error"] = str(exc)
            log.warning("plan_step_failed", step=step.id, error=str(exc))
            return ""
        finally:
            # Stored with the plan: the planning's row, and its usage on resume.
            record["usage"] = (usage_from(record.get("usage")) + charge.usage).to_dict()
            record["finished_at"] = time.time()
        record.pop("error", None)
        record["complete"] = True
        record["note"] = result.plan.synthesis_note
        return result.plan.synthesis_note

    def _add_planning(
        self,
        step: PlanStep,
        needs: Sequence[str],
        record: Mapping[str, Any],
        scheduler: Scheduler,
        *,
        announce: bool,
    ) -> None:
        """The task `<id>.plan`, ended as the planning ended: its calls, usage and time.

        `announce`: it was planned now (not restored): its end is an event, stored and shown.
        """
        agent = self.by_name[step.planner]
        node = build_nodes(
            [self.graph.add(_planning_id(step.id), fn=_nothing, deps=needs)],
            self.by_name,
            known=scheduler.by_id,
        )[0]
        node.usage = usage_from(record.get("usage"))
        node.attempts = max(node.usage.calls, 1)
        node.model, node.answered_by = agent.model.name, agent.name
        node.started_at, node.finished_at = record.get("started_at"), record.get("finished_at")
        if record.get("complete"):
            node.status = "succeeded"
            node.output = {"tasks": _ids(record), "synthesis_note": record.get("note", "")}
        else:
            node.status = "failed"
            error = record.get("error") or "no valid plan"
            node.error = f"step {step.id!r}: plan: {error}"
        scheduler.add([node])
        if not announce or not scheduler.bus.active:
            return
        task_id = node.task.id
        if node.status == "succeeded":
            scheduler.bus.emit(
                TaskSucceeded(
                    run_id=self.run_id,
                    task_id=task_id,
                    attempt=node.attempts,
                    output=node.output,
                    usage=node.usage,
                    model=node.model,
                )
            )
        else:
            scheduler.bus.emit(
                TaskFailed(
                    run_id=self.run_id,
                    task_id=task_id,
                    attempt=node.attempts,
                    error=node.error or "",
                    usage=node.usage,
                )
            )

    def _add_plan_task(self, task: PlanTask, scheduler: Scheduler) -> None:
        worker = self.by_name[task.agent]
        self._add(self.graph.add_spec(task.spec(worker), agent=worker), scheduler)

    # -- nodes ---------------------------------------------------------------------------------

    def _placeholder(self, step_id: str, needs: Sequence[str]) -> Task:
        """A task standing for a step that does not run (skipped): it never runs."""
        return self.graph.add(step_id, fn=_nothing, deps=needs)

    def _fail_step(
        self, step_id: str, needs: Sequence[str], message: str, scheduler: Scheduler
    ) -> None:
        """A task for a step that cannot be expanded: it fails with `message`."""
        text = f"step {step_id!r}: {message}"

        def fail(ctx: TaskContext) -> None:
            raise _StepError(text)

        self._add(self.graph.add(step_id, fn=fail, deps=needs), scheduler)

    def _add(self, task: Task, scheduler: Scheduler, *, skipped: str | None = None) -> None:
        nodes = build_nodes([task], self.by_name, known=scheduler.by_id)
        if skipped is None and self._account is not None:
            restore_nodes(nodes, self.restored, self._account)
        scheduler.add(nodes, skipped=None if skipped is None else {task.id: skipped})


class _StepError(DelegateError):
    """A step that could not be expanded (its `when`, `foreach` or goal did not evaluate)."""


def _nothing(ctx: TaskContext) -> None:
    """The function of a step that is skipped: never called."""


def _gather(ctx: TaskContext) -> list[Any]:
    """A fanned-out step's output: its items' outputs, in order."""
    return list(ctx.deps.values())


def _planning_id(step_id: str) -> str:
    """The id of a plan step's planning task."""
    return f"{step_id}.plan"


def _ids(record: Mapping[str, Any]) -> list[str]:
    return [str(task["id"]) for task in record.get("tasks", ())]


def _by_condition(error: str | None) -> bool:
    return error is not None and error.startswith("when: ")


def _evaluate(text: str, names: Mapping[str, Any]) -> Any:
    """The value of a `when`/`foreach` expression (`{{ ... }}`), in the prompt sandbox.

    Raises:
        TemplateError: the expression failed. It is untrusted code over model outputs, so
            whatever it raises (`'a' + 1`, an undefined name, a sandbox limit) is its own failure,
            as a template's is when it renders.
    """
    try:
        expression = PROMPT_ENV.compile_expression(expression_of(text), undefined_to_none=False)
    except JinjaTemplateError as exc:
        raise TemplateError(str(exc)) from None
    try:
        value = expression(**names)
        if isinstance(value, Undefined):
            str(value)  # a name the outputs do not have: StrictUndefined raises, naming it
        return value
    except JinjaTemplateError as exc:  # the sandbox's own message names the cause
        raise TemplateError(str(exc)) from None
    except Exception as exc:  # what the expression's own code raised
        raise TemplateError(f"{type(exc).__name__}: {exc}") from None


_STEP_REFERENCE = r"steps\s*(?:\.\s*{name}\b|\[\s*['\"]{name}['\"]\s*\])"


def _names_step(template: str, step_id: str) -> bool:
    """Whether `template` reads `steps.<step_id>` (or `steps['<step_id>']`)."""
    return re.search(_STEP_REFERENCE.format(name=re.escape(step_id)), template) is not None


def _prompt_with_context(prompt: str, needs: Sequence[str]) -> str:
    """The prompt, with the outputs of `needs` it does not name put before it.

    A prompt that reads `steps.x.output` picks what it uses itself, so the scheduler adds no
    context to it; the steps it needs but does not name still reach the worker, labelled.
    """
    if "steps" not in prompt:
        return prompt  # the scheduler labels every dependency's output itself
    missing = [need for need in needs if not _names_step(prompt, need)]
    if not missing:
        return prompt
    context = "\n\n".join(
        f"## Result of step {need!r}\n{{{{ steps[{need!r}].output }}}}" for need in missing
    )
    return f"{context}\n\n## Your task\n{prompt}"


def _settings(
    step: AgentStep, agent: AgentSpec
) -> tuple[int | AdaptiveVotes | None, Strategy | None]:
    """A step task's votes and strategy: the step's own, else its agent's. One given by the
    step replaces both of the agent's (a step's `votes: 1` turns its agent's strategy off)."""
    if step.strategy is not None:
        return None, step.strategy.to_strategy()
    if step.votes is None:
        # The agent's votes are the Agent's own (None: take them); its strategy is not.
        return None, None if agent.strategy is None else agent.strategy.to_strategy()
    if step.votes == agent.votes:
        return None, None
    return (step.votes if isinstance(step.votes, int) else step.votes.to_votes()), None
