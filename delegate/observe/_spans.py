"""The spans of traced runs (imported only when tracing is on: see `delegate.observe.otel`).

One `RunTracer` per orchestrator. It attaches the way every observer does, never through flags
in the scheduler: a `ModelHooks` in the run's budget gate (a span per model request), a handler
on the event bus (run, plan revisions, tasks, the answer), and a tool hook
(`delegate.agents.agent.observing_tools`) for tool calls. A run's spans are found through a
context variable set for the run's task group, so concurrent runs of one orchestrator, and
concurrent tasks and votes of one run, each parent their spans correctly; a model call or tool
call is parented explicitly under its task (by the task id the gate and the runner know), not
under whatever span happens to be current.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, StatusCode, TraceFlags

from delegate._log import bound_values, get_logger
from delegate._secrets import redact
from delegate.agents.agent import observing_tools
from delegate.agents.models import ModelRequest, ModelResponse, ToolCall
from delegate.agents.wrappers import ModelCall, ModelHooks
from delegate.errors import Delivery
from delegate.orchestrator.events import (
    Event,
    PlanFinished,
    PlanStarted,
    RunFinished,
    SynthesisStarted,
    TaskCancelled,
    TaskFailed,
    TaskRetried,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskWaiting,
)

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from delegate.agents.models import Usage
    from delegate.agents.tools import Tool
    from delegate.memory.store import Store
    from delegate.orchestrator.calls import RunAccount

__all__ = ["RunTracer", "traceparent"]

log = get_logger("delegate.observe")

_SCOPE = "delegate"
_MAX_ERROR = 1000  # characters of an error message kept on a span
_MAX_LINKS = 8  # earlier attempts of a resumed run linked from its span


def traceparent(span: Span) -> str | None:
    """`span`'s W3C traceparent ("00-<trace id>-<span id>-<flags>"), None when not recording."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _link(parent: object) -> Link | None:
    """A link to the span a stored traceparent names (None: not one)."""
    if not isinstance(parent, str):
        return None
    parts = parent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    ctx = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 0xFF))
    return Link(ctx, {"delegate.link": "resumed_from"}) if ctx.is_valid else None


def _text(value: object) -> str:
    return redact(str(value), lookalikes=True)


def _error_text(error: BaseException | str) -> str:
    return _text(error)[:_MAX_ERROR]


def _fail(span: Span, error: BaseException | str, kind: str | None = None) -> None:
    """Mark `span` failed: `error.type`, status ERROR with the redacted message, an exception
    event without the traceback (whose locals and paths could hold anything)."""
    name = kind or (type(error).__qualname__ if isinstance(error, BaseException) else "error")
    message = _error_text(error)
    span.set_attribute("error.type", name)
    span.add_event("exception", {"exception.type": name, "exception.message": message})
    span.set_status(StatusCode.ERROR, message)


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "delegate.cost_usd": usage.cost_usd,
    }


def _provider(model: str) -> str | None:
    """The provider of a litellm model name ("openai/gpt-4o-mini" → "openai")."""
    head, slash, _ = model.partition("/")
    return head if slash and head else None


def _input_messages(request: ModelRequest) -> str:
    """The request's messages in the GenAI conventions' shape, as redacted JSON."""
    messages = []
    for message in request.messages:
        parts: list[dict[str, Any]] = []
        role = str(message.get("role", "user"))
        content = message.get("content")
        if role == "tool":
            parts.append(
                {
                    "type": "tool_call_response",
                    "id": message.get("tool_call_id"),
                    "response": content,
                }
            )
        elif content:
            parts.append({"type": "text", "content": content})
        for call in message.get("tool_calls") or ():
            function = call.get("function", {})
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments"),
                }
            )
        messages.append({"role": role, "parts": parts})
    return _text(json.dumps(messages, ensure_ascii=False, default=str))


def _output_messages(response: ModelResponse) -> str:
    parts: list[dict[str, Any]] = []
    if response.text:
        parts.append({"type": "text", "content": response.text})
    parts.extend(
        {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}
        for call in response.tool_calls
    )
    message = {"role": "assistant", "parts": parts, "finish_reason": response.finish_reason}
    return _text(json.dumps([message], ensure_ascii=False, default=str))


@dataclass(slots=True, eq=False)
class _Task:
    span: Span
    attempt: int = 1


@dataclass(slots=True, eq=False)
class _RunSpans:
    """The open spans of one run, and what its calls' attributes are read from."""

    tracer: RunTracer
    run_id: str | None
    span: Span | None  # None: calls made outside a run (`Orchestrator.plan`)
    account: RunAccount | None = None
    roles: Mapping[str, str] = field(default_factory=dict)
    judges: Callable[[str], str | None] | None = None  # task id → its judge's name
    tasks: dict[str, _Task] = field(default_factory=dict)
    plan: Span | None = None  # the latest plan revision's span (its tasks go under it)
    planning: bool = False  # the latest plan revision is still being written
    synthesis: Span | None = None
    calls: dict[int, Span] = field(default_factory=dict)  # open model-call spans by id(call)

    def parent(self, task_id: str | None) -> Span | None:
        """The span a call (or tool call) of `task_id` goes under."""
        if task_id is not None:
            task = self.tasks.get(task_id)
            if task is not None:
                return task.span
        if self.planning and self.plan is not None:
            return self.plan
        return self.synthesis or self.span

    def role(self, agent: str | None, task_id: str | None) -> str:
        if agent is not None:
            named = self.roles.get(agent)
            if named is not None:
                return named
            if task_id is not None and self.judges is not None and self.judges(task_id) == agent:
                return "judge"
        return "worker" if task_id is not None else "planner"

    def base(self, task_id: str | None, agent: str | None) -> dict[str, Any]:
        """The delegate attributes every span of a call has."""
        attributes: dict[str, Any] = {"delegate.role": self.role(agent, task_id)}
        if self.run_id is not None:
            attributes["delegate.run_id"] = self.run_id
        if agent is not None:
            attributes["delegate.agent"] = agent
        if task_id is not None:
            attributes["delegate.task_id"] = task_id
            task = self.tasks.get(task_id)
            if task is not None:
                attributes["delegate.attempt"] = task.attempt
        return attributes

    def budget_left(self) -> float | None:
        scope = None if self.account is None else self.account.run
        return None if scope is None else scope.remaining_usd

    def close(self) -> None:
        """End whatever is still open (a run stopped mid-way): its calls, tasks and steps."""
        for span in self.calls.values():
            span.set_attribute("delegate.status", "interrupted")
            span.end()
        for task in self.tasks.values():
            if task.span.is_recording():
                task.span.set_attribute("delegate.status", "interrupted")
                task.span.end()
        for step in (self.plan, self.synthesis):
            if step is not None and step.is_recording():
                step.end()
        self.calls.clear()
        self.tasks.clear()


_RUN: ContextVar[_RunSpans | None] = ContextVar("delegate_trace_run", default=None)


class RunTracer:
    """Makes the spans of an orchestrator's runs (see the module docstring).

    Args:
        provider: where spans go.
        capture_content: record prompts, answers and tool arguments/results (redacted).
    """

    def __init__(self, provider: TracerProvider, *, capture_content: bool = False) -> None:
        from delegate import __version__

        self.provider = provider
        self.tracer = provider.get_tracer(_SCOPE, __version__)
        self.capture_content = capture_content
        self.hooks = _CallSpans(self)
        self._runs: dict[str, _RunSpans] = {}
        self._loose = _RunSpans(self, None, None)  # calls outside a run
        self._handlers: dict[type[Event], Callable[[_RunSpans, Any], None]] = {
            PlanStarted: self._plan_started,
            PlanFinished: self._plan_finished,
            SynthesisStarted: self._synthesis_started,
            TaskStarted: self._task_started,
            TaskRetried: self._task_retried,
            TaskSucceeded: self._task_succeeded,
            TaskFailed: self._task_failed,
            TaskCancelled: self._task_ended,
            TaskWaiting: self._task_ended,
            TaskSkipped: self._task_skipped,
            RunFinished: self._run_finished,
        }

    def current(self) -> _RunSpans:
        """The spans of the run this code is part of (a stand-in outside any run)."""
        return _RUN.get() or self._loose

    @asynccontextmanager
    async def run(
        self,
        run_id: str,
        *,
        store: Store | None = None,
        resumed: bool = False,
        account: RunAccount | None = None,
        roles: Mapping[str, str] | None = None,
        judges: Callable[[str], str | None] | None = None,
    ) -> AsyncIterator[str | None]:
        """The run's span around the block, current in it (and in the tasks started from it);
        yields its traceparent, which the run's `run_started` event keeps for a resume to link
        to. A `resumed` run's span links to the spans of the run's earlier attempts."""
        links = await self._earlier(store, run_id) if resumed and store is not None else []
        span = self.tracer.start_span(
            "run",
            kind=SpanKind.INTERNAL,
            links=links,
            attributes={"delegate.run_id": run_id, "delegate.resumed": resumed},
        )
        spans = _RunSpans(
            self, run_id, span, account=account, roles=dict(roles or {}), judges=judges
        )
        self._runs[run_id] = spans
        token = _RUN.set(spans)
        attached = otel_context.attach(trace.set_span_in_context(span))
        try:
            with observing_tools(self._tool):
                yield traceparent(span)
        except BaseException as exc:
            span.set_attribute("delegate.status", "interrupted")
            _fail(span, exc)
            raise
        finally:
            otel_context.detach(attached)
            _RUN.reset(token)
            self._runs.pop(run_id, None)
            spans.close()
            left = spans.budget_left()
            if left is not None:
                span.set_attribute("delegate.budget.left_usd", left)
            span.end()

    async def _earlier(self, store: Store, run_id: str) -> list[Link]:
        """Links to the spans of the run's earlier attempts, from their `run_started` events
        (none when they cannot be read: a trace never stops a resume)."""
        try:
            events = await anyio.to_thread.run_sync(store.get_events, run_id)
        except Exception as exc:
            log.warning("trace_links_unread", run_id=run_id, error=_error_text(exc))
            return []
        links: list[Link] = []
        seen: set[str] = set()
        for event in events:
            parent = event.data.get("trace") if event.kind == "run_started" else None
            link = _link(parent)
            if link is not None and parent not in seen:
                seen.add(str(parent))
                links.append(link)
        return links[-_MAX_LINKS:] if len(links) > _MAX_LINKS else links

    def on_event(self, event: Event) -> None:
        """The event-bus handler: spans for plan revisions, tasks and the answer."""
        handler = self._handlers.get(type(event))
        if handler is None:
            return
        spans = self._runs.get(event.run_id)
        if spans is not None:
            handler(spans, event)

    # -- events -------------------------------------------------------------------------------

    def _child(self, parent: Span | None, name: str, attributes: dict[str, Any]) -> Span:
        ctx = None if parent is None else trace.set_span_in_context(parent)
        return self.tracer.start_span(name, context=ctx, attributes=attributes)

    def _plan_started(self, spans: _RunSpans, event: PlanStarted) -> None:
        if spans.synthesis is not None:  # the goal check sent the run back to planning
            spans.synthesis.end()
            spans.synthesis = None
        spans.plan = self._child(
            spans.span,
            "plan",
            {
                "delegate.run_id": event.run_id,
                "delegate.plan.revision": event.revision,
                "delegate.plan.reason": _text(event.reason),
            },
        )
        spans.planning = True

    def _plan_finished(self, spans: _RunSpans, event: PlanFinished) -> None:
        span = spans.plan
        if span is None:
            return
        span.set_attributes(
            {"delegate.plan.tasks": event.tasks, "delegate.attempts": event.attempts}
            | _usage(event.usage)
        )
        if event.error is not None:
            _fail(span, event.error, "plan_invalid")
        span.end()
        spans.planning = False

    def _synthesis_started(self, spans: _RunSpans, event: SynthesisStarted) -> None:
        spans.synthesis = self._child(
            spans.span,
            "synthesis",
            {
                "delegate.run_id": event.run_id,
                "delegate.agent": event.agent,
                "delegate.role": spans.roles.get(event.agent, "synthesizer"),
                "delegate.tasks": event.tasks,
            },
        )

    def _task_started(self, spans: _RunSpans, event: TaskStarted) -> None:
        task = spans.tasks.get(event.task_id)
        if task is not None:
            task.attempt = event.attempt
            return
        attributes: dict[str, Any] = {
            "delegate.run_id": event.run_id,
            "delegate.task_id": event.task_id,
        }
        if event.agent is not None:
            attributes |= {
                "delegate.agent": event.agent,
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": event.agent,
            }
        # A planned run's task goes under the plan revision that added it (the latest one).
        parent = spans.plan or spans.span
        span = self._child(parent, f"task {event.task_id}", attributes)
        spans.tasks[event.task_id] = _Task(span, event.attempt)

    def _task_retried(self, spans: _RunSpans, event: TaskRetried) -> None:
        task = spans.tasks.get(event.task_id)
        if task is not None:
            task.span.add_event(
                "retry",
                {
                    "delegate.attempt": event.attempt,
                    "delegate.retry.delay_s": event.delay,
                    "exception.message": _error_text(event.error),
                },
            )

    def _end_task(self, spans: _RunSpans, task_id: str, attributes: dict[str, Any]) -> Span | None:
        """The task's span, its last attributes set (in one call: each costs), not ended."""
        task = spans.tasks.pop(task_id, None)
        if task is None:
            return None
        task.span.set_attributes(attributes)
        return task.span

    def _task_succeeded(self, spans: _RunSpans, event: TaskSucceeded) -> None:
        ending = {"delegate.status": "succeeded", "delegate.attempts": event.attempt}
        if event.model is not None:
            ending["delegate.model"] = event.model
        span = self._end_task(spans, event.task_id, ending | _usage(event.usage))
        if span is not None:
            span.end()

    def _task_failed(self, spans: _RunSpans, event: TaskFailed) -> None:
        ending = {"delegate.status": "failed", "delegate.attempts": event.attempt}
        span = self._end_task(spans, event.task_id, ending | _usage(event.usage))
        if span is not None:
            _fail(span, event.error, "task_failed")
            span.end()

    def _task_ended(self, spans: _RunSpans, event: TaskCancelled | TaskWaiting) -> None:
        status = "cancelled" if isinstance(event, TaskCancelled) else "waiting"
        span = self._end_task(spans, event.task_id, {"delegate.status": status})
        if span is not None:
            span.end()

    def _task_skipped(self, spans: _RunSpans, event: TaskSkipped) -> None:
        if spans.span is not None:
            spans.span.add_event(
                "task_skipped",
                {"delegate.task_id": event.task_id, "delegate.reason": _text(event.reason)},
            )

    def _run_finished(self, spans: _RunSpans, event: RunFinished) -> None:
        span = spans.span
        if span is None:
            return
        span.set_attributes({"delegate.status": event.status} | _usage(event.usage))
        if event.status == "failed":
            span.set_status(StatusCode.ERROR, "the run failed")

    # -- tool calls ---------------------------------------------------------------------------

    async def _tool(self, tool: Tool, call: ToolCall, run: Callable[[str], Awaitable[str]]) -> str:
        """One tool call, in a span of its own (current while the tool runs)."""
        from delegate.agents.mcp import MCPTool

        spans = self.current()
        task_id = bound_values().get("task_id")
        task_id = task_id if isinstance(task_id, str) else None
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool.name,
            "gen_ai.tool.call.id": call.id,
            "gen_ai.tool.type": "extension" if isinstance(tool, MCPTool) else "function",
        }
        if spans.run_id is not None:
            attributes["delegate.run_id"] = spans.run_id
        if task_id is not None:
            attributes["delegate.task_id"] = task_id
        if self.capture_content:
            attributes["gen_ai.tool.call.arguments"] = _text(call.arguments)
        span = self._child(spans.parent(task_id), f"execute_tool {tool.name}", attributes)
        attached = otel_context.attach(trace.set_span_in_context(span))
        try:
            result = await run(call.arguments)
        except BaseException as exc:
            _fail(span, exc)
            raise
        else:
            if result.startswith("Error:"):  # the tool's own failure, told to the model
                _fail(span, result, "tool_error")
            if self.capture_content:
                span.set_attribute("gen_ai.tool.call.result", _text(result))
            return result
        finally:
            otel_context.detach(attached)
            span.end()


class _CallSpans(ModelHooks):
    """A span per model request, with the GenAI conventions' attributes."""

    def __init__(self, tracer: RunTracer) -> None:
        self.owner = tracer

    def before(self, call: ModelCall) -> None:
        owner = self.owner
        spans = owner.current()
        request = call.request
        attributes = spans.base(call.task_id, call.agent)
        attributes |= {"gen_ai.operation.name": "chat", "gen_ai.request.model": call.model}
        provider = _provider(call.model)
        if provider is not None:
            attributes["gen_ai.provider.name"] = attributes["gen_ai.system"] = provider
        if request.max_output_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = request.max_output_tokens
        if request.temperature is not None:
            attributes["gen_ai.request.temperature"] = request.temperature
        if request.reasoning_effort is not None:
            attributes["delegate.reasoning_effort"] = request.reasoning_effort
        if owner.capture_content:
            attributes["gen_ai.input.messages"] = _input_messages(request)
        parent = spans.parent(call.task_id)
        ctx = None if parent is None else trace.set_span_in_context(parent)
        spans.calls[id(call)] = owner.tracer.start_span(
            f"chat {call.model}", context=ctx, kind=SpanKind.CLIENT, attributes=attributes
        )

    def after(self, call: ModelCall, response: ModelResponse, latency: float) -> None:
        spans = self.owner.current()
        span = spans.calls.pop(id(call), None)
        if span is None:
            return
        ending: dict[str, Any] = {
            "gen_ai.response.model": response.model or call.model,
            "gen_ai.response.finish_reasons": (response.finish_reason,),
            "delegate.cache_hit": response.cached,
        } | _usage(response.usage)
        left = spans.budget_left()
        if left is not None:
            ending["delegate.budget.left_usd"] = left
        if self.owner.capture_content:
            ending["gen_ai.output.messages"] = _output_messages(response)
        span.set_attributes(ending)
        span.end()

    def error(self, call: ModelCall, error: BaseException, delivery: Delivery) -> None:
        spans = self.owner.current()
        span = spans.calls.pop(id(call), None)
        if span is None:
            return
        span.set_attribute("delegate.delivery", delivery)
        _fail(span, error)
        span.end()
