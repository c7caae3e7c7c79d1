"""Budget: limits on a run, an agent or a task — tokens, dollars, seconds and calls.

A plain value, shared by every layer: agents carry one (`Agent(budget=..., call_budget=...)`),
tasks and runs too; `delegate.orchestrator.budget.BudgetLedger` enforces them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from delegate.errors import ConfigError

__all__ = ["Budget"]


def _check(name: str, value: float | None, *, whole: bool, optional: bool = True) -> None:
    if value is None and optional:
        return
    kinds = int if whole else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or not value >= 0:
        what = "a whole number" if whole else "a number"
        none = ", or None for no limit" if optional else ""
        raise ConfigError(f"Budget.{name} must be {what} ≥ 0{none}; got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"Budget.{name} must be finite; got {value!r} (use None for no limit)")


def _tighter(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits on a run, an agent or a task. None means no limit.

    Attributes:
        tokens: input plus output tokens (reasoning included) over all calls.
        usd: dollars over all calls, at the models' prices.
        seconds: wall-clock time (kept by the scheduler, not the ledger).
        calls: model calls.
        reserve_seconds: time kept back from `seconds` for the final step (the synthesis).

    Raises:
        ConfigError: a limit is negative, NaN, infinite or of the wrong type.
    """

    tokens: int | None = None
    usd: float | None = None
    seconds: float | None = None
    calls: int | None = None
    reserve_seconds: float = 0.0

    def __post_init__(self) -> None:
        _check("tokens", self.tokens, whole=True)
        _check("usd", self.usd, whole=False)
        _check("seconds", self.seconds, whole=False)
        _check("calls", self.calls, whole=True)
        _check("reserve_seconds", self.reserve_seconds, whole=False, optional=False)
        if self.seconds is not None and self.reserve_seconds > self.seconds:
            raise ConfigError(
                f"Budget.reserve_seconds ({self.reserve_seconds}) is more than Budget.seconds "
                f"({self.seconds}); keep back less time than the whole budget"
            )

    @property
    def unlimited(self) -> bool:
        """True when tokens, usd, seconds and calls are all None."""
        return (self.tokens, self.usd, self.seconds, self.calls) == (None, None, None, None)

    def tightest(self, other: Budget) -> Budget:
        """The elementwise tighter of two budgets; None (no limit) loses to any limit.

        `reserve_seconds` is the larger of the two, clipped to the resulting `seconds`.
        """
        seconds = _tighter(self.seconds, other.seconds)
        reserve = max(self.reserve_seconds, other.reserve_seconds)
        tokens = _tighter(self.tokens, other.tokens)
        calls = _tighter(self.calls, other.calls)
        return Budget(
            tokens=None if tokens is None else int(tokens),
            usd=_tighter(self.usd, other.usd),
            seconds=seconds,
            calls=None if calls is None else int(calls),
            reserve_seconds=reserve if seconds is None else min(reserve, seconds),
        )
