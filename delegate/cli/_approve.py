"""Approving a plan from the command line: `plan --out`, `run --plan` and `run --approve`.

    delegate plan wf.yaml -i topic=bees --out plan.json   # the checked plan and its estimate
    $EDITOR plan.json                                     # drop a task, change a prompt
    delegate run wf.yaml --plan plan.json                 # exactly that plan: no planning call

A plan file is made for one workflow, goal and set of inputs. `run --plan` without `-i` or
`--input-file` runs it with the inputs it was made with; with them, they must be the same
inputs (defaults filled in), or the run is refused (exit 2) — as it is for a plan made for
another workflow, or for a goal the workflow's file no longer gives.

`run --approve` shows each plan (the first, and each revision after failures) with its estimate
on the terminal and asks `Run this plan? [y]es / [n]o / [e]dit`; `e` opens `$EDITOR` on the
plan's JSON and shows the edited plan again once it checks out.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from delegate.cli._guard import stderr

if TYPE_CHECKING:
    from collections.abc import Sequence

    from delegate.cli._live import RunDisplay
    from delegate.orchestrator.approval import ApprovedPlan, PlanDecision, PlanProposal
    from delegate.orchestrator.planner import Plan
    from delegate.workflows.runtime import CompiledWorkflow, Preview
    from delegate.workflows.spec import WorkflowSpec

__all__ = [
    "TerminalApprover",
    "check_plan",
    "plan_document",
    "plan_inputs",
    "read_plan",
    "require_terminal",
    "stdin_is_terminal",
    "write_plan",
]

_QUESTION = "Run this plan? [y]es / [n]o / [e]dit"


def read_plan(path: Path) -> ApprovedPlan:
    """The plan file at `path`, read as untrusted input (bounded, shape checked).

    Raises:
        ConfigError: it cannot be read, or is not a plan document (what and where).
    """
    from delegate.errors import ConfigError
    from delegate.orchestrator.approval import MAX_PLAN_FILE_CHARS, ApprovedPlan
    from delegate.workflows._files import FileProblem, read_bounded

    shown = repr(str(path))
    try:
        data = read_bounded(path, 4 * MAX_PLAN_FILE_CHARS)  # UTF-8: up to 4 bytes a character
    except FileProblem as exc:
        raise ConfigError(f"cannot read the plan file {shown}: {exc}") from None
    return ApprovedPlan.from_json(data, source=f"plan file {shown}")


def write_plan(path: Path, document: ApprovedPlan) -> None:
    """Write `document` to `path` (replacing it).

    Raises:
        ConfigError: the file cannot be written.
    """
    from delegate.errors import ConfigError

    try:
        path.write_text(document.to_json(), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write the plan to {str(path)!r}: {exc.strerror or exc}; "
            "give --out a writable path"
        ) from None


def plan_document(
    compiled: CompiledWorkflow, inputs: dict[str, Any], preview: Preview
) -> ApprovedPlan:
    """`delegate plan --out`: the preview's plan (planner mode) as a plan document."""
    from delegate.orchestrator.approval import ApprovedPlan
    from delegate.workflows.runtime import _goal

    assert preview.plan is not None  # planner mode, checked by the command
    return ApprovedPlan(
        workflow=compiled.spec.name,
        goal=_goal(compiled.spec, inputs),
        inputs=inputs,
        plan=preview.plan,
        estimate=preview.estimate,
    )


def plan_inputs(
    spec: WorkflowSpec,
    document: ApprovedPlan | None,
    pairs: Sequence[str],
    input_file: Path | None,
) -> dict[str, Any]:
    """The inputs to run with: the given ones; with a plan `document` and none given, the
    plan's own (a run compares given ones with the plan's).

    Raises:
        ConfigError: the plan was made for another workflow, or an input is invalid.
    """
    from delegate.errors import ConfigError
    from delegate.workflows.runtime import parse_inputs

    if document is None:
        return parse_inputs(spec, pairs, input_file)
    if document.workflow is not None and document.workflow != spec.name:
        raise ConfigError(
            f"the plan file was made for the workflow {document.workflow!r}, not "
            f"{spec.name!r}; make one for this workflow with `delegate plan FILE --out PLAN`"
        )
    if pairs or input_file is not None:
        return parse_inputs(spec, pairs, input_file)
    return dict(document.inputs)


def check_plan(
    compiled: CompiledWorkflow, document: ApprovedPlan | None, inputs: dict[str, Any]
) -> None:
    """Refuse, before the run starts, a plan file the run would refuse (`run_workflow` checks
    it again): one for a workflow without a planner, or for other inputs or another goal, or
    with tasks the planner's checks refuse.

    Raises:
        ConfigError: what does not match, and the remedy.
        PlanInvalid: every problem of its tasks.
    """
    from delegate.errors import ConfigError
    from delegate.orchestrator.approval import given_plan
    from delegate.workflows.runtime import _complete, _goal

    spec = compiled.spec
    if document is None:
        return
    if spec.mode != "planner":
        raise ConfigError(
            f"workflow {spec.name!r} has no planner: its steps are the plan; run it without "
            "--plan (`delegate plan` shows what it would do)"
        )
    problems: list[str] = []
    completed = _complete(spec, inputs, problems)
    if problems:
        raise ConfigError("; ".join(problems))
    given_plan(
        document,
        goal=_goal(spec, completed),
        inputs=completed,
        workflow=spec.name,
        workers=compiled.orchestrator.workers,
        max_tasks=spec.max_tasks,
    )


def stdin_is_terminal() -> bool:
    """Whether a human can answer on stdin."""
    isatty = getattr(sys.stdin, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def require_terminal() -> None:
    """Refuse `--approve` without a terminal to answer on.

    Raises:
        click.UsageError: stdin is not a terminal (exit status 2), with the remedy.
    """
    if not stdin_is_terminal():
        raise click.UsageError(
            "--approve asks on a terminal, and stdin is not one; approve the plan ahead "
            "instead: `delegate plan FILE --out plan.json`, read or edit plan.json, then "
            "`delegate run FILE --plan plan.json`"
        )


def _preview(proposal: PlanProposal, plan: Plan) -> Preview:
    from delegate.workflows.runtime import Preview

    estimate = proposal.estimate_of(plan)
    tasks: list[tuple[str, str | None, str | None, tuple[str, ...]]] = [
        (
            task.id,
            task.agent,
            estimate.tasks[task.id].model if task.id in estimate.tasks else None,
            tuple(task.deps),
        )
        for task in plan.tasks
    ]
    return Preview(tasks=tasks, estimate=estimate, plan=plan, planning_usage=proposal.usage)


class TerminalApprover:
    """`approve_plan` for `delegate run --approve`: asks on the terminal (on stderr).

    It asks from a daemon thread, so the run's event loop goes on meanwhile (its lease is
    renewed) and Ctrl-C ends the process even while a question waits for its answer; the
    progress display is paused while it asks.

    Attributes:
        rejected: the human answered no.
    """

    def __init__(self, compiled: CompiledWorkflow, shown: RunDisplay | None) -> None:
        self.compiled = compiled
        self.shown = shown
        self.rejected = False

    @classmethod
    def attach(cls, compiled: CompiledWorkflow, shown: RunDisplay | None) -> TerminalApprover:
        """A terminal approver for `compiled`'s plans, set as its orchestrator's `approve_plan`.

        Raises:
            ConfigError: the workflow has no planner.
        """
        from delegate.errors import ConfigError

        spec = compiled.spec
        if spec.mode != "planner":
            raise ConfigError(
                f"workflow {spec.name!r} has no planner: its steps are the plan; see them and "
                f"their estimate with `delegate plan FILE`, then run it without --approve"
            )
        approver = cls(compiled, shown)
        compiled.orchestrator.approve_plan = approver
        return approver

    async def __call__(self, proposal: PlanProposal) -> PlanDecision:
        import threading

        import anyio
        import anyio.from_thread
        import anyio.lowlevel

        done = anyio.Event()
        token = anyio.lowlevel.current_token()
        outcome: list[PlanDecision] = []
        failure: list[BaseException] = []

        def ask() -> None:
            try:
                outcome.append(self.decide(proposal))
            except BaseException as exc:  # (click.Abort on end of input): raised in the run
                failure.append(exc)
            finally:
                with contextlib.suppress(RuntimeError):  # the run has ended meanwhile
                    anyio.from_thread.run_sync(done.set, token=token)

        threading.Thread(target=ask, name="delegate-approve", daemon=True).start()
        await done.wait()
        if failure:
            raise failure[0]
        return outcome[0]

    def decide(self, proposal: PlanProposal) -> PlanDecision:
        """Show the plan and ask until the human decides (blocking)."""
        live = self.shown is not None and self.shown.live
        if live and self.shown is not None:
            self.shown.stop()
        try:
            return self._ask(proposal)
        finally:
            if live and self.shown is not None:
                self.shown.start()

    def _ask(self, proposal: PlanProposal) -> PlanDecision:
        from delegate.cli import _preview as preview_text

        plan = proposal.plan
        while True:
            stream = stderr()
            if proposal.revision > 1:
                failed = ", ".join(proposal.failures) or "—"
                stream.write(f"\nrevision {proposal.revision} of the plan, after: {failed}\n")
            preview_text.print_preview(
                _preview(proposal, plan),
                stream,
                workflow=self.compiled.spec.name,
                simulated=self.compiled.simulated,
                status="waiting for your approval",
            )
            answer = click.prompt(
                _QUESTION,
                type=click.Choice(["y", "yes", "n", "no", "e", "edit"], case_sensitive=False),
                show_choices=False,
                err=True,
            ).lower()[:1]
            if answer == "y":
                return True if plan is proposal.plan else plan
            if answer == "n":
                self.rejected = True
                return False
            plan = self._edit(proposal, plan)

    def _edit(self, proposal: PlanProposal, plan: Plan) -> Plan:
        """The plan as edited in $EDITOR, once it checks out; `plan` when left unchanged."""
        from delegate.errors import ConfigError
        from delegate.orchestrator.approval import ApprovedPlan

        text = plan.model_dump_json(indent=2) + "\n"
        while True:
            edited = click.edit(text, extension=".json", require_save=True)
            if edited is None:
                return plan
            try:
                candidate = ApprovedPlan.parse_plan(edited, source="the edited plan")
                problems = proposal.problems(candidate)
            except ConfigError as exc:
                problems = [str(exc)]
            if not problems:
                return candidate
            lines = "".join(f"  - {problem}\n" for problem in problems)
            stderr().write(f"the edited plan cannot run:\n{lines}")
            if not click.confirm("Edit it again?", default=True, err=True):
                return plan
            text = edited
