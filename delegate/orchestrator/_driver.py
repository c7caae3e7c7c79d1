"""What a run driven from outside its graph implements: a planner, or a workflow's steps.

`Orchestrator.execute` runs a graph that is complete before the run starts. A driven run starts
with what is known (maybe nothing) and a driver that adds tasks while the run is under way — a
planner streaming its plan and replanning (`delegate.orchestrator.planned.PlannedRun`), or a
workflow expanding `foreach`, `when` and `plan` steps as their inputs finish
(`delegate.workflows._driver.WorkflowRun`). The scheduler stays open until the driver is done.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from delegate.agents.agent import Agent
    from delegate.orchestrator._persist import RunRecorder
    from delegate.orchestrator.calls import RunAccount
    from delegate.orchestrator.run import RunResult
    from delegate.orchestrator.scheduler import Scheduler

__all__ = ["RunDriver"]


class RunDriver(Protocol):
    """Adds tasks to a running graph, then gives the run its answer.

    The orchestrator calls, in order: `agents` (before the run: their budgets and prices are
    set up like the workers'), `prepare` (with the run's account), `drive` beside the scheduler
    (which stays open until `drive` releases its hold), `answer` once every task has ended,
    `roles` to report usage by role, and `result` to shape the `RunResult`. `spec` is the run's
    graph as stored, for `resume`.
    """

    def agents(self) -> Mapping[str, Agent[Any]]:
        """Every agent the driver itself may call, or add tasks for, by name."""
        ...

    def prepare(self, account: RunAccount) -> None:
        """Called once the run's account exists, before anything runs."""
        ...

    def roles(self) -> Mapping[str, str]:
        """Agent name → role in `RunUsage.by_role` for the agents the driver plans with
        ("planner"); the orchestrator's own planner and synthesizer are named already."""
        ...

    async def drive(
        self, scheduler: Scheduler, account: RunAccount, recorder: RunRecorder | None
    ) -> None:
        """Add tasks with `scheduler.add`; call `scheduler.release()` when done (always)."""
        ...

    async def answer(self, scheduler: Scheduler, account: RunAccount) -> Any:
        """The run's output, once every task has ended."""
        ...

    def spec(self) -> dict[str, Any]:
        """The run's graph and the driver's state as JSON data (stored with the run)."""
        ...

    def result(self, result: RunResult, output: Any, deadline_passed: bool) -> RunResult:
        """The run's result, given the graph's result and the answer."""
        ...
