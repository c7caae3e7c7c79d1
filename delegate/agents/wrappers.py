"""Models that wrap a model: fallback, retry, concurrency limits, hooks (and the cache, and rate
limits in `delegate.agents.rate_limits`).

A `WrapperModel` is a `Model` that holds another (`wrapped`) and forwards `name`, `price`,
`context_window`, `request` and any other attribute to it; each concern overrides `request`.
They compose like pydantic-ai's, in the order written::

    mini = RateLimitedModel("openai/gpt-4o-mini", rpm=500, tpm=200_000)
    haiku = "anthropic/claude-haiku-4-5"
    agent = Agent("scout", FallbackModel(RetryModel(mini, RetryPolicy(max_retries=3)), haiku))

**Where the budget gate sits.** In an orchestrator run every request passes the run's budget gate
(`delegate.orchestrator.calls.CallGate`: reserved before, charged after, counted as a call).
Wrappers are of two kinds, by how many requests they send for one:

- *Routing* wrappers may send none or several (`FallbackModel`, `RetryModel`, and
  `delegate.memory.cache.CachedModel`). They sit **outside** the gate: each request they send to
  an inner model goes through `send`, which during a run passes the gate on its own — reserved,
  charged at that model's price and counted under that model's name — and a cache hit sends
  nothing, reserves nothing and costs nothing.
- *Pass-through* wrappers send exactly one request per request (`RateLimitedModel`,
  `ConcurrencyLimitedModel`, `InstrumentedModel`). They sit **inside** the gate, between it and
  the model: they see the request the gate admitted (its output allowance decided, and its
  prompt's tokens counted once, in `ModelRequest.input_tokens`), and a request they hold back
  that is then cancelled is known never to have left (it is released, not paid for).

The gate finds the routing wrappers outermost (`routes` is True) and installs, for the length of
the request, a context (`CallContext`) whose `send` passes the gate; outside a run `send` is a
plain `inner.request(request)`, so every wrapper also works on its own. A routing wrapper placed
inside a pass-through one acts within that one gated request.

**What stays where it is, and why.**

- `Agent(fallback=other_agent)` stays an agent-level escalation: it answers failures of the
  *conversation* — an answer that does not validate after a re-ask, a tool loop past
  `max_tool_rounds`, a prompt too long for the context window — by re-running the whole
  conversation on another agent, with its own instructions, tools and budget. A model wrapper
  sees single requests and cannot do that. Falling back on a provider's errors is a model
  concern, and that is `FallbackModel`.
- `Agent(cheaper=...)` stays in the gate: it is a budget decision (the request does not fit the
  budgets on the agent's own model), made when the request is reserved.
- `Agent(max_concurrency=...)` stays in the scheduler: it is task admission (a task over the
  limit is parked without holding a runner). `ConcurrencyLimitedModel` is the call-level limit,
  shared by every agent that uses the same wrapper (or `anyio.CapacityLimiter`).
- Retries: a task's retries stay in the scheduler, which waits out the backoff without holding a
  runner; `RetryModel` retries single requests. Both, and the planner's, decide with the one
  `RetryPolicy`.

**Rate limits** (`delegate.agents.rate_limits`): `RateLimitedModel` and `Orchestrator(rate_limits=)`
hold requests to requests and tokens per minute, shared by every agent on the model.

**Hooks** (`ModelHooks`, `InstrumentedModel`, `Orchestrator(hooks=)`): called before each request
(the model, the request, the agent and task), after it (the response, its usage, the latency) and
on its error (the exception and how far the request got). With no hooks, nothing is called.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

import anyio

from delegate._log import get_logger
from delegate.agents.models import Model, ModelRequest, ModelResponse, Price, ReasoningEffort
from delegate.agents.retry import RetryPolicy
from delegate.errors import (
    BudgetExceeded,
    ConfigError,
    Delivery,
    FallbackFailed,
    ModelError,
    ModelRequestsBlocked,
)

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "EFFORT_OUTPUT_TOKENS",
    "CallContext",
    "ConcurrencyLimitedModel",
    "FallbackModel",
    "FallbackOn",
    "InstrumentedModel",
    "ModelCall",
    "ModelHooks",
    "RetryModel",
    "Send",
    "WrapperModel",
    "calling",
    "current_call",
    "default_output",
    "delivery_of",
    "end_call",
    "fail_call",
    "hooks_of",
    "input_tokens_of",
    "output_allowance",
    "queued",
    "report_hit",
    "send",
    "start_call",
]

log = get_logger("delegate.wrappers")

DEFAULT_OUTPUT_TOKENS = 4096
"""Output reserved for a call with neither `max_output_tokens` nor a reasoning effort."""

EFFORT_OUTPUT_TOKENS: Mapping[str, int] = {
    "minimal": 2048,
    "low": 8192,
    "medium": 16384,
    "high": 32768,
}
"""Output (reasoning included) reserved for a reasoning call without `max_output_tokens`."""


def default_output(effort: ReasoningEffort | None) -> int:
    """The output allowance of a request without `max_output_tokens`, by its reasoning effort."""
    return DEFAULT_OUTPUT_TOKENS if effort is None else EFFORT_OUTPUT_TOKENS[effort]


def output_allowance(request: ModelRequest) -> int:
    """The most output tokens `request` can produce: its cap, else the default for its effort."""
    if request.max_output_tokens is not None:
        return request.max_output_tokens
    return default_output(request.reasoning_effort)


def input_tokens_of(request: ModelRequest, model: Model) -> int:
    """The prompt's tokens: the budget gate's exact count when it made one, else the model's
    own count (`delegate.agents.tokens.CountsTokens`), else counted now, exactly."""
    if request.input_tokens is not None:
        return request.input_tokens
    own = getattr(model, "count_tokens", None)
    if callable(own):
        return int(own(request))
    from delegate.agents.tokens import count_messages

    return count_messages(request.messages, model.name, request.tools, request.output_schema)


def delivery_of(exc: BaseException) -> Delivery:
    """How far the request of a call that raised `exc` got: what it is charged."""
    if isinstance(exc, ModelError):
        return exc.delivery
    if isinstance(exc, ModelRequestsBlocked | ConfigError | BudgetExceeded):
        return "not_sent"
    # A cancellation, a task timeout, an exception from on_text or from a custom Model: the
    # request may be out, so it is paid for.
    return "unknown"


# --- the context a run's gate installs --------------------------------------------------------

Send: TypeAlias = Callable[[Model, ModelRequest], Awaitable[ModelResponse]]


@dataclass(slots=True, eq=False)
class CallContext:
    """The agent call a request belongs to, while the budget gate sends it.

    Attributes:
        agent: the agent whose request it is.
        task_id: its task (None: the planner's calls, the final answer's).
        send: how a routing wrapper sends each of its requests: through the gate. None inside
            one gated request, where requests go straight to the model.
        hit: told of each answer a cache gave without sending anything.
        queued: True while a limiter holds the request back: cancelled then, it never left.
    """

    agent: str
    task_id: str | None
    send: Send | None = None
    hit: Callable[[ModelResponse], None] | None = None
    queued: bool = False


_CALL: ContextVar[CallContext | None] = ContextVar("delegate_model_call", default=None)


def current_call() -> CallContext | None:
    """The agent call being sent in this task (None outside an orchestrator run's gate)."""
    return _CALL.get()


@contextmanager
def calling(context: CallContext) -> Iterator[CallContext]:
    """`context` is the current call within this block (the gate uses it)."""
    token = _CALL.set(context)
    try:
        yield context
    finally:
        _CALL.reset(token)


async def send(model: Model, request: ModelRequest) -> ModelResponse:
    """Send `request` to `model`, as a routing wrapper sends to its inner models.

    In an orchestrator run the request passes the run's budget gate (unless `model` routes
    itself); otherwise it is `model.request(request)`.
    """
    if isinstance(model, WrapperModel) and model.routes:
        return await model.request(request)
    context = _CALL.get()
    if context is None or context.send is None:
        return await model.request(request)
    return await context.send(model, request)


def report_hit(response: ModelResponse) -> None:
    """Tell the gate (if any) that `response` came from a cache, without a request."""
    context = _CALL.get()
    if context is not None and context.hit is not None:
        context.hit(response)


@contextmanager
def queued() -> Iterator[None]:
    """Mark the current request as held back (not sent) within this block.

    When the block raises (a cancellation while waiting), the mark stays: the gate then knows
    the request never left and releases its reservation instead of charging it.
    """
    context = _CALL.get()
    if context is None:
        yield
        return
    context.queued = True
    yield
    context.queued = False


# --- the base ---------------------------------------------------------------------------------


def _model(owner: str, model: object) -> Model:
    from delegate.agents.models import resolve_model

    if not isinstance(model, str | Model):
        raise ConfigError(
            f"{owner} wraps a Model (e.g. LiteLLMModel or a delegate.testing fake) or a litellm "
            f"model string, got {type(model).__name__}"
        )
    try:
        return resolve_model(model)
    except ConfigError as exc:
        raise ConfigError(f"{owner}: {exc}") from exc


class WrapperModel:
    """A `Model` that wraps another; every attribute it does not override is the wrapped one's.

    Subclasses override `request`. One that may send a request more than once, or not at all
    (it routes), sets `routes = True` and sends through `self.send`, so that in an orchestrator
    run each of its requests passes the budget gate.

    Args:
        wrapped: the model (or a litellm model string) to wrap.
    """

    routes: ClassVar[bool] = False
    """True for wrappers that may send none or several requests for one (they route)."""

    def __init__(self, wrapped: str | Model) -> None:
        self.wrapped: Model = _model(type(self).__name__, wrapped)

    @property
    def name(self) -> str:
        """The wrapped model's name."""
        return self.wrapped.name

    @property
    def price(self) -> Price | None:
        """The wrapped model's price."""
        return self.wrapped.price

    @property
    def context_window(self) -> int | None:
        """The wrapped model's context window in tokens (None: unknown)."""
        window = getattr(self.wrapped, "context_window", None)
        return window if isinstance(window, int) else None

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes the wrapper itself does not have (`expected_latency`, ...).
        if name.startswith("_") or name == "wrapped":
            raise AttributeError(name)
        return getattr(self.wrapped, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.wrapped!r})"

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The wrapped model's answer to `request`."""
        return await self.wrapped.request(request)

    async def send(self, model: Model, request: ModelRequest) -> ModelResponse:
        """Send `request` to the inner `model` (through the budget gate during a run)."""
        return await send(model, request)


# --- routing: fallback and retry --------------------------------------------------------------

FallbackOn: TypeAlias = type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool]
"""What `FallbackModel` falls back on: exception types, or a predicate on the exception."""


class FallbackModel(WrapperModel):
    """Tries its models in order until one answers.

    A model whose request fails with an error `fallback_on` accepts (by default any `ModelError`:
    a provider's error, a context window too small, a rate limit or a timeout that its own
    `RetryModel`, if it has one, did not get past) hands the request to the next. A budget
    refusal never falls back (the next model would spend from the same budget); other errors
    propagate at once. When every model failed, `FallbackFailed` holds each one's error.

    `name`, `price` and the other attributes are the first model's; in a run each request is
    charged at the price of the model that was sent it, under that model's name.

    Args:
        first: the model tried first (a `Model` or a litellm model string).
        *rest: the models tried next, in order.
        fallback_on: exception types, or a function of the exception that says whether to try
            the next model.

    Example::

        model = FallbackModel("openai/gpt-4o-mini", "anthropic/claude-haiku-4-5")
    """

    routes = True

    def __init__(
        self, first: str | Model, *rest: str | Model, fallback_on: FallbackOn = ModelError
    ) -> None:
        super().__init__(first)
        self.models: tuple[Model, ...] = (
            self.wrapped,
            *(_model("FallbackModel", model) for model in rest),
        )
        self._falls_back = _predicate(fallback_on)

    def __repr__(self) -> str:
        return f"FallbackModel({', '.join(repr(model) for model in self.models)})"

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The answer of the first model that gives one.

        Raises:
            FallbackFailed: every model failed with an error `fallback_on` accepts.
            BudgetExceeded: the request does not fit the run's budget (not retried elsewhere).
        """
        errors: list[Exception] = []
        for model in self.models:
            try:
                return await self.send(model, request)
            except BudgetExceeded:
                raise
            except Exception as exc:
                if not self._falls_back(exc):
                    raise
                errors.append(exc)
                log.warning("model_fallback", model=model.name, error=str(exc))
        names = [model.name for model in self.models]
        detail = "; ".join(f"{name}: {error}" for name, error in zip(names, errors, strict=True))
        raise FallbackFailed(
            f"every model of the fallback chain failed ({detail}); fix the first error, or add "
            "a model to the FallbackModel",
            errors,
        )


def _predicate(fallback_on: FallbackOn) -> Callable[[Exception], bool]:
    if isinstance(fallback_on, type | tuple):
        kinds = fallback_on if isinstance(fallback_on, tuple) else (fallback_on,)
        if all(isinstance(kind, type) and issubclass(kind, Exception) for kind in kinds):
            return lambda exc: isinstance(exc, kinds)
    elif callable(fallback_on):
        return fallback_on
    raise ConfigError(
        "FallbackModel(fallback_on=...) must be an exception type, a tuple of them, or a "
        f"function of the exception returning a bool; got {fallback_on!r}"
    )


class RetryModel(WrapperModel):
    """Retries a request that fails with a transient error (rate limit, timeout, 5xx).

    The waits are `policy`'s, the same policy the scheduler uses for tasks: exponential backoff
    with jitter, a provider's Retry-After as a lower bound up to `max_delay`, and no wait that
    would end past the run's deadline (or the task's timeout). In a run, each attempt passes the
    budget gate and is counted as a call. A task's own retries (`Orchestrator(retry=)`) still
    apply on top: give the orchestrator `RetryPolicy(max_retries=0)` to retry calls only.

    While it waits out a backoff the task keeps its runner (the scheduler's task retries do not).

    Args:
        model: the model to send to.
        policy: how to retry (default: `RetryPolicy()`, 2 retries).
        seed: seeds the jitter, for reproducible waits.
    """

    routes = True

    def __init__(
        self, model: str | Model, policy: RetryPolicy | None = None, *, seed: int | None = None
    ) -> None:
        super().__init__(model)
        if policy is not None and not isinstance(policy, RetryPolicy):
            raise ConfigError(
                f"RetryModel(policy=...) must be a delegate.RetryPolicy, got "
                f"{type(policy).__name__}"
            )
        self.policy = policy or RetryPolicy()
        self._rng = random.Random(seed)

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The wrapped model's answer, after as many retries as the policy allows."""
        deadline = anyio.current_effective_deadline()
        return await self.policy.call(
            lambda: self.send(self.wrapped, request),
            rng=self._rng,
            deadline=None if math.isinf(deadline) else deadline,
            on_retry=self._retrying,
        )

    def _retrying(self, error: Exception, attempt: int, delay: float) -> None:
        log.info(
            "model_retry", model=self.wrapped.name, attempt=attempt, delay=delay, error=str(error)
        )


# --- pass-through: concurrency and rate limits ------------------------------------------------


class ConcurrencyLimitedModel(WrapperModel):
    """At most `limit` requests in flight to the wrapped model at once; the others wait in turn.

    Every agent that uses this wrapper shares its limit; pass one `anyio.CapacityLimiter` to
    several wrappers to share a limit between models (one provider account, say).

    Args:
        model: the model to send to.
        limit: the most requests in flight, or a limiter to share.
    """

    def __init__(self, model: str | Model, limit: int | anyio.CapacityLimiter) -> None:
        super().__init__(model)
        if isinstance(limit, anyio.CapacityLimiter):
            self.limiter = limit
        elif isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1:
            self.limiter = anyio.CapacityLimiter(limit)
        else:
            raise ConfigError(
                f"ConcurrencyLimitedModel(limit=...) must be an int ≥ 1 or an "
                f"anyio.CapacityLimiter, got {limit!r}"
            )

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The wrapped model's answer, once a slot is free."""
        borrower = object()  # one slot per request, even for several requests of one task
        try:
            self.limiter.acquire_on_behalf_of_nowait(borrower)
        except anyio.WouldBlock:
            with queued():
                await self.limiter.acquire_on_behalf_of(borrower)
        try:
            return await self.wrapped.request(request)
        finally:
            self.limiter.release_on_behalf_of(borrower)


# --- hooks ------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class ModelCall:
    """One request, as hooks see it (the same object before, after and on error).

    Attributes:
        model: the name of the model the request is sent to.
        request: the request.
        agent: the agent whose request it is (None outside an orchestrator run).
        task_id: its task (None outside a task: the planner's calls, or outside a run).
        started: `time.perf_counter()` when it was sent.
    """

    model: str
    request: ModelRequest
    agent: str | None = None
    task_id: str | None = None
    started: float = 0.0


class ModelHooks:
    """Called around model requests: subclass it and override what you need.

    Give hooks to `InstrumentedModel` for one model, or to `Orchestrator(hooks=[...])` for every
    request of its runs (seen after the budget gate: with the usage it charged). A hook that
    raises fails the call it observes.
    """

    def before(self, call: ModelCall) -> None:
        """Before `call.request` is sent."""

    def after(self, call: ModelCall, response: ModelResponse, latency: float) -> None:
        """After the answer arrived: `response.usage` is what it cost; `latency` in seconds."""

    def error(self, call: ModelCall, error: BaseException, delivery: Delivery) -> None:
        """After the request failed with `error`; `delivery` says how far it got."""


def hooks_of(hooks: ModelHooks | Iterable[ModelHooks]) -> tuple[ModelHooks, ...]:
    """`hooks` as a checked tuple."""
    found = (hooks,) if isinstance(hooks, ModelHooks) else tuple(hooks)
    for hook in found:
        if not isinstance(hook, ModelHooks):
            raise ConfigError(
                f"hooks must be delegate.ModelHooks instances (subclass it), got "
                f"{type(hook).__name__}"
            )
    return found


def start_call(
    hooks: Sequence[ModelHooks],
    model: str,
    request: ModelRequest,
    context: CallContext | None = None,
) -> ModelCall:
    """A `ModelCall` for `request` (of the call `context`, else the current one), after every
    hook's `before` saw it."""
    context = context or _CALL.get()
    call = ModelCall(
        model,
        request,
        agent=None if context is None else context.agent,
        task_id=None if context is None else context.task_id,
        started=time.perf_counter(),
    )
    for hook in hooks:
        hook.before(call)
    return call


def end_call(hooks: Sequence[ModelHooks], call: ModelCall, response: ModelResponse) -> None:
    """Every hook's `after`."""
    latency = time.perf_counter() - call.started
    for hook in hooks:
        hook.after(call, response, latency)


def fail_call(
    hooks: Sequence[ModelHooks], call: ModelCall, error: BaseException, delivery: Delivery
) -> None:
    """Every hook's `error`."""
    for hook in hooks:
        hook.error(call, error, delivery)


class InstrumentedModel(WrapperModel):
    """Calls `hooks` around every request to the wrapped model (see `ModelHooks`).

    It passes each request through once, so in a run it sits inside the budget gate: its hooks
    see the admitted request and the response before the gate re-prices it.

    Args:
        model: the model to observe.
        hooks: one `ModelHooks` or several, called in order.
    """

    def __init__(self, model: str | Model, hooks: ModelHooks | Iterable[ModelHooks]) -> None:
        super().__init__(model)
        self.hooks = hooks_of(hooks)

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The wrapped model's answer, observed by the hooks."""
        if not self.hooks:
            return await self.wrapped.request(request)
        call = start_call(self.hooks, self.wrapped.name, request)
        try:
            response = await self.wrapped.request(request)
        except BaseException as exc:
            fail_call(self.hooks, call, exc, delivery_of(exc))
            raise
        end_call(self.hooks, call, response)
        return response
