"""delegate: a reasoning model plans, cheap mini models execute, under budgets that never overshoot.

Everything public is re-exported here; anything not in `__all__` is internal.

    from delegate import Agent, Orchestrator, TaskGraph

Importing delegate is fast: litellm (seconds to import) loads only at the first real model call.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from delegate.agents.agent import Agent, AgentResult, ModelCaller, VoteRecord
from delegate.agents.approval import Approve, Deny, PendingCall
from delegate.agents.endpoints import Endpoint
from delegate.agents.limits import Budget
from delegate.agents.mcp import MCPServer, MCPServerHTTP, MCPServerStdio, MCPTool
from delegate.agents.models import (
    LiteLLMModel,
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    Price,
    ToolCall,
    ToolDefinition,
    Usage,
    resolve_model,
)
from delegate.agents.rate_limits import RateLimit, RateLimitedModel, RateLimiter
from delegate.agents.retry import RetryPolicy
from delegate.agents.tools import Tool, tool
from delegate.agents.wrappers import (
    ConcurrencyLimitedModel,
    FallbackModel,
    InstrumentedModel,
    ModelCall,
    ModelHooks,
    RetryModel,
    WrapperModel,
)
from delegate.errors import (
    ApprovalPending,
    AuthenticationError,
    BadRequestError,
    BudgetExceeded,
    ConfigError,
    ContentPolicyError,
    ContextWindowExceededError,
    CorruptRecordError,
    DelegateError,
    FallbackFailed,
    GraphError,
    JSONInputError,
    MCPServerError,
    MemoryInputError,
    ModelError,
    ModelRequestsBlocked,
    ModelSetupError,
    ModelTimeoutError,
    OutputValidationError,
    PermanentModelError,
    PlanInvalid,
    PriceUnknownError,
    ProviderUnavailableError,
    RateLimitError,
    RunExistsError,
    RunLeasedError,
    StoreError,
    TaskNotSucceeded,
    TaskTimeoutError,
    TemplateError,
    ToolLoopError,
    TransientModelError,
    VerificationFailed,
    WorkflowError,
)
from delegate.observe.otel import Tracing
from delegate.observe.report import report_html, stored_report_html
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
from delegate.orchestrator.planner import Plan, Planner, PlanResult, PlanTask
from delegate.orchestrator.routing import LearnedRouting
from delegate.orchestrator.run import Orchestrator, RunResult, RunStatus, RunUsage, TaskResult
from delegate.orchestrator.scheduler import TaskStatus
from delegate.orchestrator.strategies import (
    AdaptiveVotes,
    BestOfN,
    MixtureOfAgents,
    SelfRefine,
    Strategy,
)
from delegate.orchestrator.stream import RunStream, event_json, events_json_schema
from delegate.testing import SimulatedModel

try:
    __version__ = _version("delegate")
except _PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "AdaptiveVotes",
    "Agent",
    "AgentResult",
    "ApprovalPending",
    "Approve",
    "ApprovedPlan",
    "AuthenticationError",
    "BadRequestError",
    "BestOfN",
    "Budget",
    "BudgetExceeded",
    "ConcurrencyLimitedModel",
    "ConfigError",
    "ContentPolicyError",
    "ContextWindowExceededError",
    "CorruptRecordError",
    "DelegateError",
    "Deny",
    "Endpoint",
    "Estimate",
    "Event",
    "EventBus",
    "FallbackFailed",
    "FallbackModel",
    "GoalCheck",
    "GraphError",
    "GraphSpec",
    "InstrumentedModel",
    "JSONInputError",
    "LearnedRouting",
    "LiteLLMModel",
    "MCPServer",
    "MCPServerError",
    "MCPServerHTTP",
    "MCPServerStdio",
    "MCPTool",
    "MemoryInputError",
    "Message",
    "MixtureOfAgents",
    "Model",
    "ModelCall",
    "ModelCaller",
    "ModelError",
    "ModelHooks",
    "ModelRequest",
    "ModelRequestsBlocked",
    "ModelResponse",
    "ModelSetupError",
    "ModelTimeoutError",
    "Orchestrator",
    "OutputValidationError",
    "PendingCall",
    "PermanentModelError",
    "Plan",
    "PlanApprover",
    "PlanDecision",
    "PlanFinished",
    "PlanInvalid",
    "PlanProposal",
    "PlanResult",
    "PlanRevision",
    "PlanStarted",
    "PlanTask",
    "PlanTaskAdded",
    "Planner",
    "Price",
    "PriceUnknownError",
    "ProviderUnavailableError",
    "RateLimit",
    "RateLimitError",
    "RateLimitedModel",
    "RateLimiter",
    "RetryModel",
    "RetryPolicy",
    "RunExistsError",
    "RunFinished",
    "RunLeasedError",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "RunStream",
    "RunUsage",
    "SelfRefine",
    "SimulatedModel",
    "StoreError",
    "Strategy",
    "SynthesisStarted",
    "Task",
    "TaskCancelled",
    "TaskChecked",
    "TaskContext",
    "TaskEstimate",
    "TaskFailed",
    "TaskGraph",
    "TaskNotSucceeded",
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
    "TaskTimeoutError",
    "TaskWaiting",
    "TemplateError",
    "Tool",
    "ToolCall",
    "ToolCallDecided",
    "ToolDefinition",
    "ToolLoopError",
    "Tracing",
    "TransientModelError",
    "Usage",
    "Verdict",
    "VerificationFailed",
    "VoteRecord",
    "WorkflowError",
    "WrapperModel",
    "__version__",
    "event_json",
    "events_json_schema",
    "report_html",
    "resolve_model",
    "stored_report_html",
    "tool",
]
