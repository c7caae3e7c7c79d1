"""Rate limits: requests and tokens per minute for a model, shared by everything that sends to it.

Providers limit each model to so many requests and tokens a minute; a wide fan-out of cheap
workers meets those limits first, as a storm of 429s. `RateLimiter` keeps requests within them
before they are sent: two token buckets (requests, tokens), each holding up to its per-minute
limit and refilled continuously at that rate, the way providers count. A request takes one request
and its tokens — its prompt's, counted once by the budget gate (`ModelRequest.input_tokens`), plus
its output allowance — and when its answer arrives the real usage replaces the allowance. A request
that does not fit waits, first come first served; one whose wait would pass the run's deadline
fails at once, never sent; one larger than the tokens-per-minute limit can never fit (a
`ConfigError`). A provider's 429 with a Retry-After pauses the limiter for that long; one without
empties the buckets.

`RateLimitedModel(model, rpm=, tpm=)` wraps one model; `Orchestrator(rate_limits={name:
RateLimit(...)})` keeps one limiter per model name for all the orchestrator's runs. Either sits
inside the budget gate (it sends exactly one request per request: see `delegate.agents.wrappers`).

    model = RateLimitedModel("openai/gpt-4o-mini", rpm=500, tpm=200_000)
    orch = Orchestrator(rate_limits={"openai/gpt-4o-mini": RateLimit(rpm=500, tpm=200_000)})
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import anyio

from delegate._log import get_logger
from delegate.agents.models import Model, ModelRequest, ModelResponse, Usage
from delegate.agents.wrappers import (
    WrapperModel,
    delivery_of,
    input_tokens_of,
    output_allowance,
    queued,
)
from delegate.errors import ConfigError, RateLimitError

__all__ = ["Clock", "RateLimit", "RateLimitedModel", "RateLimiter", "rate_limiters"]

log = get_logger("delegate.rate_limits")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A model's rate limits, as its provider sets them.

    Attributes:
        rpm: requests per minute (None: no limit on requests).
        tpm: tokens per minute, prompt and output together (None: no limit on tokens).
    """

    rpm: float | None = None
    tpm: float | None = None

    def __post_init__(self) -> None:
        for key, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 1
            ):
                raise ConfigError(f"RateLimit.{key} must be a number ≥ 1 or None, got {value!r}")
        if self.rpm is None and self.tpm is None:
            raise ConfigError("RateLimit needs rpm=, tpm= or both, e.g. RateLimit(rpm=60)")


class Clock(Protocol):
    """The time a `RateLimiter` counts by: anyio's clock, or a fake or faster one (tests and
    benchmarks)."""

    def now(self) -> float:
        """The current time in seconds."""
        ...

    def deadline(self) -> float:
        """When the current cancel scope ends, in this clock's time (`math.inf`: never)."""
        ...

    async def wait(self, event: anyio.Event, until: float) -> None:
        """Until `event` is set or the time is `until`, whichever comes first."""
        ...


class _AnyioClock:
    def now(self) -> float:
        return anyio.current_time()

    def deadline(self) -> float:
        return anyio.current_effective_deadline()

    async def wait(self, event: anyio.Event, until: float) -> None:
        with anyio.CancelScope(deadline=until):
            await event.wait()


_ANYIO_CLOCK = _AnyioClock()
_EPSILON = 1e-9  # the float error allowed when a bucket is exactly full enough


@dataclass(slots=True)
class _Bucket:
    """A token bucket: `capacity` a minute, refilled continuously, full at first use."""

    capacity: float
    level: float
    updated: float | None = None

    def refill(self, now: float) -> None:
        if self.updated is not None and now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.capacity / 60)
        self.updated = now if self.updated is None else max(now, self.updated)

    def give(self, amount: float) -> None:
        """Put `amount` back (take it, when negative), never above the capacity."""
        self.level = min(self.capacity, self.level + amount)

    def wait(self, amount: float) -> float:
        """Seconds until `amount` is in the bucket (0 when it is now); call `refill` first."""
        missing = amount - self.level
        return 0.0 if missing <= _EPSILON else missing * 60 / self.capacity


class RateLimiter:
    """Requests and tokens per minute for one model, shared by everything that sends to it.

    Two token buckets (requests, tokens), each holding up to its per-minute limit and refilled
    continuously at that rate: a request takes one request and its tokens (the prompt's count
    plus the output allowance), waiting first come first served until both have enough. When
    the answer arrives `settle` puts back what the request did not use (or takes what it used
    beyond). A 429 pauses the limiter for its Retry-After (`failed`).

    Args:
        limit: the limits.
        name: the model's name, for messages.
        clock: the time to count by (default anyio's); tests pass a fake `Clock`.
    """

    def __init__(self, limit: RateLimit, *, name: str = "", clock: Clock | None = None) -> None:
        if not isinstance(limit, RateLimit):
            raise ConfigError(
                f"a rate limit must be a delegate.RateLimit, got {type(limit).__name__}; "
                "e.g. RateLimit(rpm=60, tpm=40_000)"
            )
        self.limit = limit
        self.name = name
        self._clock = clock or _ANYIO_CLOCK
        self._requests = None if limit.rpm is None else _Bucket(limit.rpm, limit.rpm)
        self._tokens = None if limit.tpm is None else _Bucket(limit.tpm, limit.tpm)
        self._paused_until = -math.inf
        self._queue: deque[anyio.Event] = deque()
        self._changed: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"RateLimiter({self.name!r}, rpm={self.limit.rpm}, tpm={self.limit.tpm})"

    @property
    def counts_tokens(self) -> bool:
        """Whether requests must say their tokens (there is a tokens-per-minute limit)."""
        return self._tokens is not None

    @property
    def waiting(self) -> int:
        """Requests waiting for their turn."""
        return len(self._queue)

    @property
    def requests_left(self) -> float | None:
        """Requests that could be sent now (None: no requests-per-minute limit)."""
        return self._left(self._requests)

    @property
    def tokens_left(self) -> float | None:
        """Tokens a request could take now (None: no tokens-per-minute limit)."""
        return self._left(self._tokens)

    def _left(self, bucket: _Bucket | None) -> float | None:
        if bucket is None:
            return None
        bucket.refill(self._clock.now())
        return bucket.level

    async def acquire(self, tokens: int = 0) -> None:
        """Take one request and `tokens` tokens, waiting (in turn) until both are there.

        Raises:
            ConfigError: `tokens` is more than the tokens-per-minute limit: it can never fit.
            RateLimitError: the wait would end past the deadline of the current cancel scope
                (the run's, a task's timeout); the request was not sent (`delivery` "not_sent").
        """
        tpm = self.limit.tpm
        if tpm is not None and tokens > tpm:
            raise ConfigError(
                f"{self.name or 'model'}: a request of {tokens:,} tokens (its prompt plus its "
                f"output allowance) can never fit the rate limit of tpm={tpm:,g}; lower "
                "max_output_tokens or shorten the prompt, or raise tpm"
            )
        if not self._queue and self._take(tokens) <= 0:
            return
        turn = anyio.Event()
        self._queue.append(turn)
        try:
            with queued():
                if self._queue[0] is not turn:
                    await turn.wait()
                while (wait := self._take(tokens)) > 0:
                    self._check_deadline(wait)
                    self._changed = changed = anyio.Event()
                    await self._clock.wait(changed, self._clock.now() + wait)
        finally:
            head = self._queue[0] is turn
            self._queue.remove(turn)
            if head and self._queue:
                self._queue[0].set()

    def settle(self, tokens: int, usage: Usage) -> None:
        """A request that took `tokens` was answered with `usage`: count what it really used.

        A response without usage (a provider that reported none) keeps what was taken.
        """
        used = usage.input_tokens + usage.output_tokens
        if self._tokens is None or used == 0 or used == tokens:
            return
        self._tokens.refill(self._clock.now())
        self._tokens.give(tokens - used)
        if used < tokens:
            self._wake()

    def failed(self, tokens: int, error: BaseException) -> None:
        """A request that took `tokens` failed with `error`: give back what it did not use.

        A request that never left gives back its request and tokens; one the provider refused
        its tokens. A 429 pauses the limiter for the provider's Retry-After, or, without one,
        empties the buckets (the provider counts more than this limiter did: another client on
        the same account), so that requests go on at the refill rate.
        """
        delivery = delivery_of(error)
        now = self._clock.now()
        for bucket, amount in ((self._requests, 1), (self._tokens, tokens)):
            if bucket is None:
                continue
            bucket.refill(now)
            if delivery == "not_sent" or (delivery == "refused" and bucket is self._tokens):
                bucket.give(amount)
        if isinstance(error, RateLimitError) and delivery != "not_sent":
            if error.retry_after is not None and error.retry_after > 0:
                self._paused_until = max(self._paused_until, now + error.retry_after)
            else:
                for bucket in (self._requests, self._tokens):
                    if bucket is not None:
                        bucket.level = min(bucket.level, 0.0)
            log.warning("rate_limited_by_provider", model=self.name, retry_after=error.retry_after)
        elif delivery != "unknown":
            self._wake()

    def _take(self, tokens: int) -> float:
        """Take one request and `tokens` now (returns 0), or the seconds until they are there."""
        now = self._clock.now()
        wait = self._paused_until - now
        requests, budget = self._requests, self._tokens
        if requests is not None:
            requests.refill(now)
            wait = max(wait, requests.wait(1))
        if budget is not None:
            budget.refill(now)
            wait = max(wait, budget.wait(tokens))
        if wait > 0:
            return wait
        if requests is not None:
            requests.level -= 1
        if budget is not None:
            budget.level -= tokens
        return 0.0

    def _check_deadline(self, wait: float) -> None:
        if self._clock.now() + wait >= self._clock.deadline():
            raise RateLimitError(
                f"{self.name or 'model'}: waiting {wait:.3g} s for the rate limit "
                f"(rpm={self.limit.rpm}, tpm={self.limit.tpm}) would pass the deadline; it was "
                "not sent — raise budget.seconds or the task's timeout, or the rate limit if "
                "the provider allows more",
                model=self.name,
                retry_after=wait,
                delivery="not_sent",
            )

    def _wake(self) -> None:
        """Tokens came back: the request at the head of the line looks again."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None


def rate_limiters(
    limits: Mapping[str, RateLimit | RateLimiter] | None,
) -> dict[str, RateLimiter]:
    """`Orchestrator(rate_limits=)` checked: a limiter by model name (new for a `RateLimit`)."""
    found: dict[str, RateLimiter] = {}
    for model, limit in (limits or {}).items():
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(
                f"rate_limits keys must be model names such as 'openai/gpt-4o-mini', got {model!r}"
            )
        if isinstance(limit, RateLimiter):
            found[model] = limit
        elif isinstance(limit, RateLimit):
            found[model] = RateLimiter(limit, name=model)
        else:
            raise ConfigError(
                f"rate_limits[{model!r}] must be a delegate.RateLimit (or a RateLimiter to "
                f"share), got {type(limit).__name__}; e.g. RateLimit(rpm=60, tpm=40_000)"
            )
    return found


class RateLimitedModel(WrapperModel):
    """The wrapped model within requests and tokens per minute (see `RateLimiter`).

    Give the limits (`rpm=`, `tpm=`), or a `RateLimiter` to share with other wrappers. Every
    agent that uses this wrapper shares its limits; `Orchestrator(rate_limits=...)` sets them by
    model name for every agent of the orchestrator's runs instead.

    The tokens a request takes are the prompt's, as the budget gate counted them
    (`ModelRequest.input_tokens`; counted here when it did not), plus its output allowance.

    Args:
        model: the model to send to.
        rpm: requests per minute.
        tpm: tokens per minute, prompt and output together.
        limiter: a limiter to share, instead of `rpm`/`tpm`.
    """

    def __init__(
        self,
        model: str | Model,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        super().__init__(model)
        if limiter is not None:
            if rpm is not None or tpm is not None:
                raise ConfigError("RateLimitedModel takes rpm=/tpm= or a shared limiter=, not both")
            if not isinstance(limiter, RateLimiter):
                raise ConfigError(
                    f"RateLimitedModel(limiter=...) must be a RateLimiter, got "
                    f"{type(limiter).__name__}"
                )
            self.limiter = limiter
        else:
            self.limiter = RateLimiter(RateLimit(rpm=rpm, tpm=tpm), name=self.wrapped.name)

    def __repr__(self) -> str:
        return f"RateLimitedModel({self.wrapped!r}, {self.limiter!r})"

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The wrapped model's answer, sent once the limits allow it."""
        limiter = self.limiter
        tokens = 0
        if limiter.counts_tokens:
            tokens = input_tokens_of(request, self.wrapped) + output_allowance(request)
        await limiter.acquire(tokens)
        try:
            response = await self.wrapped.request(request)
        except BaseException as exc:
            limiter.failed(tokens, exc)
            raise
        limiter.settle(tokens, response.usage)
        return response
