"""Everything that talks to a model: `Agent`, the `Model` protocol and `LiteLLMModel`, tools,
budgets, offline token counting, and the wrappers that compose a model (fallback, retries, rate
and concurrency limits, hooks).

The names here are also exported by `delegate` itself, but for `count_text` and
`count_messages`, which count tokens the way the budgets do (exactly for OpenAI models, estimated
for others).
"""

from __future__ import annotations

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
from delegate.agents.tokens import count_messages, count_text
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

__all__ = [
    "Agent",
    "AgentResult",
    "Approve",
    "Budget",
    "ConcurrencyLimitedModel",
    "Deny",
    "Endpoint",
    "FallbackModel",
    "InstrumentedModel",
    "LiteLLMModel",
    "MCPServer",
    "MCPServerHTTP",
    "MCPServerStdio",
    "MCPTool",
    "Message",
    "Model",
    "ModelCall",
    "ModelCaller",
    "ModelHooks",
    "ModelRequest",
    "ModelResponse",
    "PendingCall",
    "Price",
    "RateLimit",
    "RateLimitedModel",
    "RateLimiter",
    "RetryModel",
    "RetryPolicy",
    "Tool",
    "ToolCall",
    "ToolDefinition",
    "Usage",
    "VoteRecord",
    "WrapperModel",
    "count_messages",
    "count_text",
    "resolve_model",
    "tool",
]
