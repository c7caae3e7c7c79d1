"""The one retry policy: exponential backoff with jitter, a bounded Retry-After, a deadline.

Every retry in delegate is decided here, with attempts numbered the same way everywhere (attempt
1 is the first try): a task's retries in the scheduler (which waits out the backoff without
holding a runner), the planner's plan and the final answer (`RetryPolicy.call`), and
`RetryModel`'s call-level retries. A transient error (`retryable` is True: a rate limit, a
timeout, an unavailable provider, a task timeout) is retried; anything else is not::

    policy = RetryPolicy(max_retries=3, base_delay=0.5)
    decision = policy.decide(error, attempt=1, rng=random.Random())
    if isinstance(decision, GiveUp):
        ...  # decision.describe(str(error)) says why, when there is more to say
    else:
        await anyio.sleep(decision)  # then attempt 2

    answer = await policy.call(lambda: model.request(request), rng=random.Random())
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from delegate.errors import ConfigError

__all__ = ["GiveUp", "RetryPolicy"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The retries end here.

    Attributes:
        reason: why, when the error itself does not say it: the provider asked for a wait longer
            than `max_delay`, or the wait would end past the deadline. None when the error is
            not transient or the retries are used up.
    """

    reason: str | None = None

    def describe(self, error: str) -> str:
        """`error`, followed by the reason the retries ended (when there is one)."""
        return error if self.reason is None else f"{error} — {self.reason}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures are retried.

    The n-th retry waits `min(max_delay, base_delay * 2**(n-1))`, scaled by a random factor in
    `[1 - jitter, 1]` so that many tasks hit by one rate limit do not come back in lockstep; a
    provider's `retry_after` is a lower bound on the wait. A `retry_after` beyond `max_delay`, or
    a wait that would end past the run's deadline, is not waited out: the retries end there, with
    the reason (`GiveUp.reason`).

    Attributes:
        max_retries: retries after the first attempt (0 disables retrying).
        base_delay: seconds before the first retry.
        max_delay: the longest wait between attempts.
        jitter: the fraction of each wait that is random (0 to 1).
    """

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_retries, int)
            or isinstance(self.max_retries, bool)
            or self.max_retries < 0
        ):
            raise ConfigError(
                f"RetryPolicy.max_retries must be an integer ≥ 0, got {self.max_retries!r}"
            )
        if not (math.isfinite(self.base_delay) and math.isfinite(self.max_delay)) or (
            self.base_delay < 0 or self.max_delay < 0
        ):
            raise ConfigError(
                f"RetryPolicy delays must be ≥ 0 seconds, got base_delay={self.base_delay}, "
                f"max_delay={self.max_delay}"
            )
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"RetryPolicy.jitter must be between 0 and 1, got {self.jitter}")

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        backoff *= 1 - self.jitter * rng.random()
        return max(backoff, float(retry_after or 0.0))

    def wait(
        self, error: BaseException, retry: int, rng: random.Random, deadline: float | None = None
    ) -> float | str:
        """Seconds to wait before retry number `retry` after a transient `error`, or why not to.

        Returns the delay, or a sentence saying why the retries end here: the provider asked for
        a wait longer than `max_delay`, or the wait would end past `deadline` (anyio's clock).
        """
        retry_after = _retry_after(error)
        if retry_after is not None and retry_after > self.max_delay:
            return (
                f"the provider asked to wait {retry_after:g} s before retrying, more than "
                f"RetryPolicy.max_delay ({self.max_delay:g} s); raise max_delay to wait that "
                "long, or lower the request rate (a rate limit or max_concurrency)"
            )
        delay = self.delay(retry, rng, retry_after)
        if deadline is not None and anyio.current_time() + delay >= deadline:
            return (
                f"retrying after {delay:.3g} s would pass the run's deadline; raise "
                "budget.seconds to leave time for retries"
            )
        return delay

    def decide(
        self,
        error: BaseException,
        attempt: int,
        rng: random.Random,
        deadline: float | None = None,
        *,
        max_retries: int | None = None,
    ) -> float | GiveUp:
        """After attempt number `attempt` (1 is the first try) failed with `error`: the seconds
        to wait before the next attempt, or `GiveUp`.

        Args:
            error: what the attempt raised; only a transient one (`retryable`) is retried.
            attempt: the number of the attempt that failed, 1 for the first try.
            rng: the source of the jitter (seeded for reproducible runs).
            deadline: no wait may end at or past it (anyio's clock); None for no deadline.
            max_retries: replaces the policy's own (a task's `retries=`).
        """
        limit = self.max_retries if max_retries is None else max_retries
        if not getattr(error, "retryable", False) or attempt > limit:
            return GiveUp()
        delay = self.wait(error, attempt, rng, deadline)
        return GiveUp(delay) if isinstance(delay, str) else delay

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        rng: random.Random,
        deadline: float | None = None,
        on_retry: Callable[[Exception, int, float], None] | None = None,
    ) -> T:
        """`await fn()`, retrying transient errors as `decide` says; returns its result.

        The error of the last attempt propagates unchanged, except that the reason the retries
        ended (a `retry_after` above `max_delay`, a deadline) is added to its message.

        Args:
            fn: makes one attempt.
            rng: the source of the jitter.
            deadline: no wait may end at or past it (anyio's clock).
            on_retry: called with the error, the number of the attempt that failed and the delay
                before each retry (for logs and events).
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return await fn()
            except Exception as exc:
                decision = self.decide(exc, attempt, rng, deadline)
                if isinstance(decision, GiveUp):
                    if decision.reason is not None:
                        exc.args = (decision.describe(str(exc)), *exc.args[1:])
                    raise
                if on_retry is not None:
                    on_retry(exc, attempt, decision)
                await anyio.sleep(decision)


def _retry_after(error: BaseException) -> float | None:
    """The provider's hint in seconds (a 429's Retry-After), when the error carries one."""
    hint = getattr(error, "retry_after", None)
    if isinstance(hint, int | float) and not isinstance(hint, bool) and math.isfinite(hint):
        return float(hint)
    return None
