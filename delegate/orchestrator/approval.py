"""A plan a human approves before it runs: the document, the proposal, the decision.

    approved = await orch.draft("Compare the three papers", {"urls": urls})
    Path("plan.json").write_text(approved.to_json())        # a human reads, edits, approves
    approved = ApprovedPlan.from_json(Path("plan.json").read_text())
    result = await orch.run(approved.goal, approved.inputs, plan=approved)  # no planning call

Or in the run itself: `Orchestrator(approve_plan=callback)` hands every plan (the first, and
each revision after failures: a replan spends money too) to `callback` as a `PlanProposal`,
with its estimate, before any of its tasks starts. The callback returns True (run it), False
(reject it: the run ends, nothing spent beyond planning) or an edited `Plan` (checked again, as
the planner's are). It may be sync (it then runs in a worker thread: it may block on a
terminal) or async.

An `ApprovedPlan` read back is untrusted input — a human, or anything else, edited it: its size
is bounded, unknown keys are refused, and its plan goes through the same checks as a planner's
(`validate_plan`) before anything runs. Every problem names the task and the remedy.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, ValidationError

from delegate._json import loads_untrusted
from delegate.agents.models import Usage
from delegate.errors import ConfigError, JSONInputError, PlanInvalid
from delegate.orchestrator.estimate import Estimate
from delegate.orchestrator.planner import Plan, PlanResult, PlanTask, validate_plan

__all__ = [
    "MAX_PLAN_FILE_CHARS",
    "ApprovedPlan",
    "PlanApprover",
    "PlanDecision",
    "PlanProposal",
    "RevisionState",
    "decide",
    "decide_on",
    "given_plan",
    "given_result",
]

MAX_PLAN_FILE_CHARS = 1_000_000
"""The longest approved-plan document read back, in characters."""

Approval = Literal["given", "approved", "edited", "rejected"]

if TYPE_CHECKING:
    from delegate.orchestrator.planned import PlannedRun

_SHOWN_PROBLEMS = 10  # problems of a document listed one by one


class _StrictTask(PlanTask):
    model_config = ConfigDict(extra="forbid")


class _StrictPlan(Plan):
    model_config = ConfigDict(extra="forbid")

    tasks: list[_StrictTask]  # type: ignore[assignment]  # the same tasks, no unknown keys


class ApprovedPlan(BaseModel):
    """A checked plan with its estimate, as a document a human reads, edits and approves.

    `to_json()` writes it (`delegate plan --out plan.json`); `from_json()` reads it back as
    untrusted input; `Orchestrator.run(goal, plan=approved)` runs exactly its tasks, with no
    planning call (replanning after failures still asks the planner).

    Attributes:
        version: the document's format, 1.
        workflow: the workflow it was planned for (None outside a workflow).
        goal: the goal it was planned for.
        inputs: the run's inputs it was planned with.
        plan: the tasks and the note for the final answer.
        estimate: what the plan's tasks were projected to cost when it was written (tokens, USD,
            critical-path seconds); the final answer's call comes on top. Informational: a
            run re-checks an edited plan's cost against its budget.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    workflow: str | None = None
    goal: str
    inputs: dict[str, Any] = {}
    plan: Plan
    estimate: Estimate | None = None

    def to_json(self) -> str:
        """The document as indented JSON text."""
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "the plan") -> ApprovedPlan:
        """Read a document written by `to_json` (and maybe edited since).

        Only its shape is checked here; `problems` (and `Orchestrator.run`) check its plan.

        Args:
            text: the JSON text.
            source: what to call it in messages (a file name).

        Raises:
            ConfigError: too large, not JSON, nested too deep, an unknown version, a missing or
                unknown key, a value of the wrong type; every problem names where it is.
        """
        data = _loads(text, source)
        if not isinstance(data, dict):
            raise ConfigError(
                f"{source} must be a JSON object with version, goal and plan, not a {_kind(data)}"
            )
        version = data.get("version")
        if version != 1:
            raise ConfigError(
                f"{source} has version {version!r}; this delegate reads version 1: plan again "
                "with `delegate plan --out` (or Orchestrator.draft)"
            )
        try:
            _StrictDocument.model_validate(data)  # unknown keys are mistakes in an edit
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_shape_problems(source, data, exc)) from None

    @staticmethod
    def parse_plan(text: str | bytes, *, source: str = "the plan") -> Plan:
        """Read a bare `Plan` (`{"tasks": [...], "synthesis_note": ...}`), as an editor holds it,
        with the same limits and shape checks as `from_json`.

        Raises:
            ConfigError: as `from_json`.
        """
        data = _loads(text, source)
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must be a JSON object with tasks, not a {_kind(data)}")
        try:
            _StrictDocument.model_validate({"goal": "", "plan": data})
            return Plan.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_shape_problems(source, {"plan": data}, exc)) from None

    def problems(
        self, workers: Mapping[str, Any], *, max_tasks: int, inputs: Sequence[str] | None = None
    ) -> list[str]:
        """The plan's problems against `workers` (the checks a planner's plan gets); empty when
        it is valid. `inputs`: the input names its instructions may use (default: its own)."""
        names = list(self.inputs) if inputs is None else list(inputs)
        return validate_plan(self.plan, workers=workers, max_tasks=max_tasks, inputs=names)


def _kind(value: object) -> str:
    return "list" if isinstance(value, list) else type(value).__name__


def _loads(text: str | bytes, source: str) -> Any:
    try:
        return loads_untrusted(text, max_chars=MAX_PLAN_FILE_CHARS, what=source)
    except JSONInputError as exc:
        raise ConfigError(
            f"{source} is {exc.detail}; write it again with `delegate plan --out` (or "
            "Orchestrator.draft), or fix it"
        ) from None


class _StrictDocument(ApprovedPlan):
    plan: _StrictPlan


def _task_label(data: Mapping[str, Any], index: int) -> str:
    """'task 3 ('search')' for the plan's task at `index`, as the document lists it."""
    tasks = data.get("plan", {}).get("tasks") if isinstance(data.get("plan"), dict) else None
    raw = tasks[index] if isinstance(tasks, list) and index < len(tasks) else None
    task_id = raw.get("id") if isinstance(raw, dict) else None
    shown = f" ({task_id[:80]!r})" if isinstance(task_id, str) else ""
    return f"task {index + 1}{shown}"


def _shape_problems(source: str, data: Mapping[str, Any], exc: ValidationError) -> str:
    lines: list[str] = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = "the document"
        if loc[:2] == ["plan", "tasks"] and len(loc) > 2 and isinstance(loc[2], int):
            where, loc = _task_label(data, loc[2]), loc[3:]
        key = ".".join(str(part) for part in loc) or "(its value)"
        line = f"{where}: {key}: {error['msg']}"
        if error["type"] == "extra_forbidden":
            line = f"{where}: unknown key {key[:80]!r}; remove it"
        if line not in lines:
            lines.append(line)
    more = len(lines) - _SHOWN_PROBLEMS
    shown = "; ".join(lines[:_SHOWN_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
    return f"{source} is not a valid plan document: {shown}"


def _same(a: object, b: object) -> bool:
    """Whether two input values are the same as JSON (a tuple and a list, 1 and 1.0 are)."""

    def as_json(value: object) -> object:
        return json.loads(json.dumps(value, default=str))

    return bool(as_json(a) == as_json(b))


def _differing(given: Mapping[str, Any], planned: Mapping[str, Any]) -> list[str]:
    names = dict.fromkeys([*planned, *given])
    return [
        name
        for name in names
        if name not in given or name not in planned or not _same(given[name], planned[name])
    ]


def given_plan(
    plan: ApprovedPlan | Plan,
    *,
    goal: str,
    inputs: Mapping[str, Any] | None,
    workflow: str | None,
    workers: Mapping[str, Any],
    max_tasks: int,
) -> tuple[Plan, dict[str, Any]]:
    """The plan to run for `run(goal, inputs, plan=...)`, and the run's inputs.

    A plan matches the run when its goal is the run's goal, its workflow (when it names one) is
    the run's, and its inputs are the run's: inputs not given (None) are the plan's own. A bare
    `Plan` carries none of these, so only its tasks are checked.

    Raises:
        ConfigError: not a plan, or one made for another goal, workflow or inputs.
        PlanInvalid: a task the planner's checks refuse (a cycle, an unknown worker, too many
            tasks, ...), with every problem.
    """
    if isinstance(plan, ApprovedPlan):
        if workflow is not None and plan.workflow is not None and plan.workflow != workflow:
            raise ConfigError(
                f"the plan was made for the workflow {plan.workflow!r}, not {workflow!r}; "
                f"plan {workflow!r} again (`delegate plan FILE --out plan.json`)"
            )
        if inputs is None:
            inputs = plan.inputs
        differing = _differing(inputs, plan.inputs)
        if differing:
            raise ConfigError(
                f"the plan was made with other inputs: {', '.join(map(repr, differing[:20]))} "
                "differ; give the inputs it was made with (or none, to use them), or plan "
                "again with these"
            )
        if plan.goal != goal:
            raise ConfigError(
                f"the plan was made for the goal {plan.goal[:200]!r}, not {goal[:200]!r}; "
                "run it with the goal it was made for, or plan this goal again"
            )
        tasks = plan.plan
    elif isinstance(plan, Plan):
        tasks = plan
    else:
        raise ConfigError(
            f"plan must be an ApprovedPlan or a Plan, got {type(plan).__name__}; read a plan "
            "file with ApprovedPlan.from_json(text)"
        )
    checked = dict(inputs or {})
    problems = validate_plan(tasks, workers=workers, max_tasks=max_tasks, inputs=list(checked))
    if problems:
        raise PlanInvalid(
            f"the approved plan cannot run: {'; '.join(problems)}. Fix the plan (or plan again)",
            errors=problems,
            attempts=0,
        )
    return tasks, checked


@dataclass(frozen=True)
class PlanProposal:
    """A plan waiting for approval: what `approve_plan` receives.

    Attributes:
        run_id: the run's id.
        revision: 1 for the first plan, then 2, 3, ... for revisions after failures.
        reason: "goal" (the first plan), "failures", "goal_unmet" or "resumed".
        goal: the run's goal.
        inputs: the run's inputs.
        plan: the checked plan (for a revision: the tasks it adds).
        estimate: the projection of its tasks (tokens, USD, critical-path seconds); finished
            tasks cost nothing more. The final answer's call comes on top.
        usage: what planning it cost.
        failures: what a revision responds to: task id (or "goal") → error.
        workflow: the workflow the run belongs to, if any.
    """

    run_id: str
    revision: int
    reason: str
    goal: str
    inputs: Mapping[str, Any]
    plan: Plan
    estimate: Estimate
    usage: Usage = field(default_factory=Usage)
    failures: Mapping[str, str] = field(default_factory=dict)
    workflow: str | None = None
    check: Callable[[Plan], list[str]] = field(default=lambda plan: [], repr=False, compare=False)
    project: Callable[[Plan], Estimate] | None = field(default=None, repr=False, compare=False)

    def problems(self, plan: Plan) -> list[str]:
        """What the run would refuse in `plan` (an edit of this one): empty when it would run."""
        return self.check(plan)

    def estimate_of(self, plan: Plan) -> Estimate:
        """The projection of `plan` (an edit of this one) in this run, as `estimate` is."""
        return self.estimate if self.project is None or plan == self.plan else self.project(plan)

    def document(self) -> ApprovedPlan:
        """The proposal as an `ApprovedPlan` document (to write, edit and read back)."""
        return ApprovedPlan(
            workflow=self.workflow,
            goal=self.goal,
            inputs=dict(self.inputs),
            plan=self.plan,
            estimate=self.estimate,
        )


PlanDecision = bool | Plan | ApprovedPlan
"""What `approve_plan` returns: True (run it), False (reject it), or an edited plan."""

PlanApprover = Callable[[PlanProposal], PlanDecision | Awaitable[PlanDecision]]
"""`Orchestrator(approve_plan=...)`: sync (run in a worker thread) or async."""


async def decide(
    approver: PlanApprover, proposal: PlanProposal
) -> tuple[Plan | None, Approval, str | None]:
    """Ask `approver` about `proposal`: the plan to run (None when rejected), how it was
    decided, and why it cannot run (an edited plan with problems).

    Raises:
        ConfigError: the approver returned something that is not a decision.
    """
    call = getattr(approver, "__call__", None)  # noqa: B004  # an async __call__ counts too
    if inspect.iscoroutinefunction(approver) or inspect.iscoroutinefunction(call):
        decision: Any = await approver(proposal)  # type: ignore[misc]
    else:
        decision = await anyio.to_thread.run_sync(approver, proposal, abandon_on_cancel=True)
        if inspect.isawaitable(decision):
            decision = await decision
    if decision is True:
        return proposal.plan, "approved", None
    if decision is False:
        return None, "rejected", None
    if isinstance(decision, ApprovedPlan):
        decision = decision.plan
    if not isinstance(decision, Plan):
        raise ConfigError(
            f"approve_plan returned {type(decision).__name__}; return True to run the plan, "
            "False to reject it, or an edited Plan"
        )
    if decision == proposal.plan:
        return decision, "approved", None
    problems = proposal.problems(decision)
    if problems:
        return None, "edited", f"the edited plan cannot run: {'; '.join(problems)}"
    return decision, "edited", None


@dataclass(frozen=True, slots=True)
class RevisionState:
    """What a plan revision is asked for: what an approver is told, and how a plan is checked.

    `validate(plan, known)` is the run's check of a plan that may also depend on `known`.
    """

    number: int
    reason: str
    failures: Mapping[str, str]
    finished: Mapping[str, str]
    validate: Callable[[Plan, list[str]], list[str]]


async def decide_on(
    run: PlannedRun, approver: PlanApprover, result: PlanResult, state: RevisionState
) -> tuple[PlanResult | None, str | None, Approval]:
    """Show the planner's `result` to `approver`: the plan to run (None: none runs), why none
    runs, and how it was decided."""

    def check(plan: Plan) -> list[str]:
        listed = {task.id for task in plan.tasks}
        return state.validate(plan, [done for done in state.finished if done not in listed])

    proposal = PlanProposal(
        run_id=run.run_id,
        revision=state.number,
        reason=state.reason,
        goal=run.goal,
        inputs=run.inputs,
        plan=result.plan,
        estimate=run.estimate_plan(result.plan),
        usage=result.usage,
        failures=dict(state.failures),
        workflow=None if run.source is None else run.source.get("name"),
        check=check,
        project=run.estimate_plan,
    )
    plan, approval, problem = await decide(approver, proposal)
    if plan is None:
        return None, problem or "the plan was rejected (approve_plan)", approval
    return replace(result, plan=plan), None, approval


def given_result(
    plan: Plan, problems: Sequence[str]
) -> tuple[PlanResult | None, str | None, Approval]:
    """A run's plan approved before it started, with its problems against the run (its budget)."""
    if problems:
        return None, f"the approved plan cannot run: {'; '.join(problems)}", "given"
    return PlanResult(plan=plan, attempts=0), None, "given"
