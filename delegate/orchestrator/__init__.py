"""Turns goals into graphs and graphs into results: `Orchestrator`, `TaskGraph`, the planner,
the events a run emits and the results it returns.

The names here are also exported by `delegate` itself; `default_prompt()` is the planner's
shipped system prompt, for a `Planner(prompt=default_prompt() + notes)` that extends it.
"""

from __future__ import annotations

from delegate.orchestrator.approval import ApprovedPlan, PlanApprover, PlanDecision, PlanProposal
from delegate.orchestrator.checks import Verdict
from delegate.orchestrator.estimate import Estimate, TaskEstimate
from delegate.orchestrator.events import (
    Event,
    EventBus,
    PlanFinished,
    PlanStarted,
    PlanTaskAdded,
    RunFinished,
    RunStarted,
    SynthesisStarted,
    TaskCancelled,
    TaskChecked,
    TaskFailed,
    TaskQueued,
    TaskRetried,
    TaskRouted,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskTextDelta,
    TaskWaiting,
    ToolCallDecided,
)
from delegate.orchestrator.graph import GraphSpec, Task, TaskContext, TaskGraph, TaskSpec
from delegate.orchestrator.planned import GoalCheck, PlanRevision
from delegate.orchestrator.planner import Plan, Planner, PlanResult, PlanTask, default_prompt
from delegate.orchestrator.routing import LearnedRouting
from delegate.orchestrator.run import Orchestrator, RunResult, RunStatus, RunUsage, TaskResult
from delegate.orchestrator.scheduler import RetryPolicy, TaskStatus
from delegate.orchestrator.strategies import (
    AdaptiveVotes,
    BestOfN,
    MixtureOfAgents,
    SelfRefine,
    Strategy,
)
from delegate.orchestrator.stream import RunStream, event_json, events_json_schema

__all__ = [
    "AdaptiveVotes",
    "ApprovedPlan",
    "BestOfN",
    "Estimate",
    "Event",
    "EventBus",
    "GoalCheck",
    "GraphSpec",
    "LearnedRouting",
    "MixtureOfAgents",
    "Orchestrator",
    "Plan",
    "PlanApprover",
    "PlanDecision",
    "PlanFinished",
    "PlanProposal",
    "PlanResult",
    "PlanRevision",
    "PlanStarted",
    "PlanTask",
    "PlanTaskAdded",
    "Planner",
    "RetryPolicy",
    "RunFinished",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "RunStream",
    "RunUsage",
    "SelfRefine",
    "Strategy",
    "SynthesisStarted",
    "Task",
    "TaskCancelled",
    "TaskChecked",
    "TaskContext",
    "TaskEstimate",
    "TaskFailed",
    "TaskGraph",
    "TaskQueued",
    "TaskResult",
    "TaskRetried",
    "TaskRouted",
    "TaskSkipped",
    "TaskSpec",
    "TaskStarted",
    "TaskStatus",
    "TaskSucceeded",
    "TaskTextDelta",
    "TaskWaiting",
    "ToolCallDecided",
    "Verdict",
    "default_prompt",
    "event_json",
    "events_json_schema",
]
