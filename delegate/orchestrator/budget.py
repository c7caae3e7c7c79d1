"""Budgets that never overshoot: every model call reserves its worst case before it is sent.

A `BudgetLedger` holds a `BudgetScope` per budgeted thing (the run, an agent in it, a task), each
with a `Budget` and an optional parent, so a task's spend counts against its agent and its run too.
Before a call, `plan` finds the largest `max_output_tokens` that fits every enclosing scope and
`reserve` sets aside the input tokens plus that allowance, their price and one call, in all of them
at once; after it, `settle` swaps the reservation for the real usage (`release` returns it when the
call failed). So `spent + reserved ≤ limit` holds in every scope at every instant; spent passes a
limit only when a provider reports more than its call was allowed (`BudgetLedger.overshoots`).

Concurrency: no operation awaits, so under one event loop each runs to completion before another
task resumes — no two reservations interleave, however many anyio tasks share the ledger. A
`threading.Lock` (≈0.2 µs uncontended) also keeps a ledger shared across threads exact.

Money is whole nano-dollars (`int`), not floats: float sums drift (0.1 + 0.2 ≠ 0.3), and a drifted
sum can let through a reservation that does not fit. A `usd` limit is rounded down to the
nano-dollar, a reservation's price up, an actual cost to the nearest; the `*_usd` floats are those
integers / 10⁹, so `spent_usd ≤ budget.usd` holds exactly as floats too.

```
DelegateError
├── ConfigError
│   └── PriceUnknownError   a usd budget, a model with no known price   (.model .scope)
└── BudgetExceeded          a call does not fit   (.scope .unit .limit .spent .reserved .requested)
```
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from delegate._log import get_logger
from delegate.agents.limits import Budget
from delegate.agents.models import Price, Usage
from delegate.errors import BudgetExceeded, BudgetUnit, ConfigError, PriceUnknownError

__all__ = [
    "NANOS_PER_USD",
    "Budget",
    "BudgetExceeded",
    "BudgetLedger",
    "BudgetScope",
    "Overshoot",
    "PriceUnknownError",
    "Reservation",
    "format_usd",
]

log = get_logger("delegate.budget")

NANOS_PER_USD = 1_000_000_000
"""The ledger counts money in whole nano-dollars (10⁻⁹ USD)."""


def format_usd(amount: float) -> str:
    """`amount` as dollars: 4 significant digits, at least 2 decimals ("$0.50", "$0.0001235")."""
    if amount == 0:
        return "$0.00"
    decimals = max(2, 3 - math.floor(math.log10(abs(amount))))
    whole, _, fraction = f"{amount:,.{decimals}f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def _usd_limit_nanos(usd: float) -> int:
    """The most nano-dollars `n` with `n / 10⁹ ≤ usd`, so the float invariant holds as well."""
    nanos = math.floor(usd * NANOS_PER_USD)
    while nanos / NANOS_PER_USD > usd:
        nanos -= 1
    while (nanos + 1) / NANOS_PER_USD <= usd:
        nanos += 1
    return nanos


def _reserve_nanos(price: Price, input_tokens: int, output_tokens: int) -> int:
    """The worst-case price of a call (no cache discount), rounded up to the nano-dollar."""
    return math.ceil(price.cost(input_tokens, output_tokens) * NANOS_PER_USD)


@dataclass(slots=True, eq=False)
class BudgetScope:
    """One account against a `Budget`'s tokens, usd and calls; made by `BudgetLedger.open`.

    `spent_*` counts finished calls, `reserved_*` calls in flight, `remaining_*` is
    `limit - spent - reserved` (None: no limit; never below 0, even after an overshoot). Money is
    exact in `*_usd_nanos`; `*_usd` are the same amounts in dollars.

    Attributes:
        label: how messages name it: "run", "agent 'scout'", "task 'search'".
        budget: its limits.
        parent: the enclosing scope, whose limits apply too, or None.
        chain: this scope and its ancestors, innermost first.
        usd_limit_nanos: `budget.usd` in nano-dollars, rounded down (None: no limit).
        refusals: calls refused because they did not fit this scope.
    """

    label: str
    budget: Budget
    parent: BudgetScope | None = field(default=None, repr=False)
    ledger: BudgetLedger | None = field(default=None, repr=False)
    remedy: str | None = field(default=None, repr=False)
    chain: tuple[BudgetScope, ...] = field(init=False, repr=False)
    usd_limit_nanos: int | None = field(init=False)
    spent_tokens: int = field(default=0, init=False)
    spent_usd_nanos: int = field(default=0, init=False)
    spent_calls: int = field(default=0, init=False)
    reserved_tokens: int = field(default=0, init=False)
    reserved_usd_nanos: int = field(default=0, init=False)
    reserved_calls: int = field(default=0, init=False)
    refusals: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.chain = (self, *(self.parent.chain if self.parent else ()))
        usd = self.budget.usd
        self.usd_limit_nanos = None if usd is None else _usd_limit_nanos(usd)

    @property
    def spent_usd(self) -> float:
        """Dollars spent by finished calls."""
        return self.spent_usd_nanos / NANOS_PER_USD

    @property
    def reserved_usd(self) -> float:
        """Dollars reserved by calls in flight."""
        return self.reserved_usd_nanos / NANOS_PER_USD

    @property
    def remaining_tokens(self) -> int | None:
        """Tokens a new call may still reserve, or None for no limit."""
        limit = self.budget.tokens
        return None if limit is None else max(0, limit - self.spent_tokens - self.reserved_tokens)

    @property
    def remaining_usd(self) -> float | None:
        """Dollars a new call may still reserve, or None for no limit."""
        if (limit := self.usd_limit_nanos) is None:
            return None
        return max(0, limit - self.spent_usd_nanos - self.reserved_usd_nanos) / NANOS_PER_USD

    @property
    def remaining_calls(self) -> int | None:
        """Calls that may still be made, or None for no limit."""
        limit = self.budget.calls
        return None if limit is None else max(0, limit - self.spent_calls - self.reserved_calls)


@dataclass(slots=True, eq=False)
class Reservation:
    """What one call set aside in every scope it counts against; settle or release it once.

    Attributes:
        scopes: every scope charged, each once (the listed ones and their ancestors).
        model: the model called.
        input_tokens: the call's input tokens.
        output_tokens: its output allowance (`max_output_tokens`).
        tokens: input plus output tokens reserved.
        usd_nanos: the reserved price in nano-dollars (0 when the price is unknown).
        price: the model's price, or None when unknown.
        state: "open", then "settled" or "released".
    """

    scopes: tuple[BudgetScope, ...]
    model: str
    input_tokens: int
    output_tokens: int
    tokens: int
    usd_nanos: int
    price: Price | None
    state: Literal["open", "settled", "released"] = "open"

    @property
    def usd(self) -> float:
        """The reserved price in dollars."""
        return self.usd_nanos / NANOS_PER_USD


@dataclass(frozen=True, slots=True)
class Overshoot:
    """A provider reported more than its call had reserved (the only way spent passes a limit)."""

    model: str
    scopes: tuple[str, ...]
    reserved_tokens: int
    actual_tokens: int
    reserved_usd: float
    actual_usd: float


# --- checks ----------------------------------------------------------------------------------


def _members(scopes: Sequence[BudgetScope]) -> tuple[BudgetScope, ...]:
    """The scopes and all their ancestors, each once, in order."""
    if len(scopes) == 1:
        return scopes[0].chain
    members: list[BudgetScope] = []
    for scope in scopes:
        members.extend(member for member in scope.chain if member not in members)
    return tuple(members)


def _usd_allowance(price: Price, input_tokens: int, left: int, cap: int) -> int:
    """The most output tokens (≤ cap) whose reserved price fits `left` nano-dollars, or -1."""
    if _reserve_nanos(price, input_tokens, cap) <= left:  # the common case: no shrinking
        return cap

    def fits(output: int) -> bool:
        return _reserve_nanos(price, input_tokens, output) <= left

    # Solve the price for the output tokens; the exact, rounded check then fixes the last step
    # (one or two steps at any real price: each token costs at least a nano-dollar or so).
    guess = (left / 1000 - input_tokens * price.input_per_mtok) / max(price.output_per_mtok, 1e-9)
    allowed = min(max(math.floor(guess), 0), cap - 1) if math.isfinite(guess) else 0
    while allowed >= 0 and not fits(allowed):
        allowed -= 1
    while allowed + 1 < cap and fits(allowed + 1):
        allowed += 1
    return allowed


def _allowance(
    scope: BudgetScope, input_tokens: int, cap: int, price: Price | None, *, held: bool = True
) -> tuple[int, BudgetUnit]:
    """The most output tokens (≤ cap) `scope` allows now (-1: none), and the unit that binds.

    With `held=False` the reservations of calls in flight are left out: what would fit once they
    settle at no cost, the best the future can bring.
    """
    budget = scope.budget
    reserved_calls = scope.reserved_calls if held else 0
    if budget.calls is not None and scope.spent_calls + reserved_calls >= budget.calls:
        return -1, "calls"
    allowed = cap
    if budget.tokens is not None:
        left = budget.tokens - scope.spent_tokens - (scope.reserved_tokens if held else 0)
        allowed = min(cap, left - input_tokens)
        if allowed < 0:
            return -1, "tokens"
    if scope.usd_limit_nanos is not None and price is not None:
        left = (
            scope.usd_limit_nanos
            - scope.spent_usd_nanos
            - (scope.reserved_usd_nanos if held else 0)
        )
        by_usd = _usd_allowance(price, input_tokens, left, allowed)
        if by_usd < allowed:
            return by_usd, "usd"
    return allowed, "tokens"


def _check_call(
    members: tuple[BudgetScope, ...],
    input_tokens: int,
    output_tokens: int,
    price: Price | None,
    model: str,
) -> None:
    """Reject negative sizes, and an unknown price under any usd limit."""
    if input_tokens < 0 or output_tokens < 0:
        raise ConfigError(
            f"call to {model}: token counts must be ≥ 0, got input_tokens={input_tokens}, "
            f"output_tokens={output_tokens}"
        )
    if price is not None:
        return
    for scope in members:
        if scope.budget.usd is not None:
            raise PriceUnknownError(
                f"model {model!r} has no known price, so its calls cannot be checked against the "
                f"{format_usd(scope.budget.usd)} budget of {scope.label} (an unknown price is "
                "never taken as free); give its price in USD per million tokens: "
                f'Orchestrator(prices={{"{model}": (input_usd_per_million, '
                "output_usd_per_million)})",
                model=model,
                scope=scope.label,
            )


def _amount(unit: BudgetUnit, amount: float) -> str:
    return format_usd(amount) if unit == "usd" else f"{int(amount):,}"


def _remedy(unit: BudgetUnit, remedy: str, *, used_up: bool) -> str:
    if used_up and unit != "calls":
        return f"the budget is used up: raise budget.{unit}"
    return f"raise budget.{unit} or {remedy}"


def _refusal(
    scope: BudgetScope,
    unit: BudgetUnit,
    model: str,
    sizes: tuple[int, int],
    price: Price | None,
    at_least: bool,
) -> BudgetExceeded:
    """The `BudgetExceeded` for a call of `sizes` (input, output) that does not fit `scope`."""
    budget, (input_tokens, output_tokens) = scope.budget, sizes
    detail = f" ({input_tokens:,} input + {output_tokens:,} output tokens)"
    remedy = "lower max_output_tokens"
    limit: float
    spent: float
    reserved: float
    if unit == "tokens":
        limit, spent, reserved = budget.tokens or 0, scope.spent_tokens, scope.reserved_tokens
        requested: float = input_tokens + output_tokens
        if input_tokens > limit - spent - reserved:
            remedy = "shorten the prompt"
        what = f"{limit:,} tokens"
    elif unit == "usd":
        limit, spent, reserved = budget.usd or 0.0, scope.spent_usd, scope.reserved_usd
        requested = 0 if price is None else price.cost(input_tokens, output_tokens)
        if price is not None and price.cost(input_tokens, 0) > limit - spent - reserved:
            remedy = "shorten the prompt"
        what = format_usd(limit)
    else:
        limit, spent, reserved = budget.calls or 0, scope.spent_calls, scope.reserved_calls
        requested, detail, at_least = 1, "", False
        remedy, what = "set it to None to remove the cap", f"{limit:,} calls"
    message = (
        f"budget of {what} for {scope.label} would be exceeded: spent {_amount(unit, spent)}, "
        f"reserved {_amount(unit, reserved)}, this call to {model} needs "
        f"{'at least ' if at_least else ''}{_amount(unit, requested)}{detail}; "
        + (scope.remedy or _remedy(unit, remedy, used_up=spent + reserved >= limit))
    )
    return BudgetExceeded(
        message,
        scope=scope.label,
        limit=limit,
        spent=spent,
        reserved=reserved,
        requested=requested,
        unit=unit,
    )


# --- the ledger ------------------------------------------------------------------------------


class BudgetLedger:
    """Reservations against nested budgets: the one place a call's spend is checked and counted.

    Every method is synchronous and never awaits (see the module docstring), so any number of
    anyio tasks may share a ledger. The call path, around each model call::

        allowed = ledger.plan(scopes, input_tokens=n, output_tokens=4096, price=p, model=m)
        reservation = ledger.reserve(scopes, input_tokens=n, output_tokens=allowed, price=p,
                                     model=m)
        try:
            response = await model.request(request)  # with max_output_tokens=allowed
        except BaseException:
            ledger.release(reservation)
            raise
        ledger.settle(reservation, response.usage)

    Attributes:
        scopes: every scope opened, in order.
        refused: calls refused (each `BudgetExceeded` raised by `plan` or `reserve`).
        overshoots: calls whose reported usage exceeded their reservation.
    """

    def __init__(self) -> None:
        self.scopes: list[BudgetScope] = []
        self.refused = 0
        self.overshoots: list[Overshoot] = []
        self._lock = threading.Lock()

    def open(
        self,
        label: str,
        budget: Budget,
        parent: BudgetScope | None = None,
        *,
        remedy: str | None = None,
    ) -> BudgetScope:
        """A new scope with `budget`'s limits, nested in `parent` (whose limits apply as well).

        Args:
            label: how messages name it: "run", "agent 'scout'", "task 'search'".
            budget: its limits.
            parent: the enclosing scope, of this ledger, or None.
            remedy: what a refusal message tells the user to do, instead of the default
                "raise budget.<unit> or …" (for limits that are not set through a Budget).

        Raises:
            ConfigError: `parent` belongs to another ledger.
        """
        if parent is not None and parent.ledger is not self:
            raise ConfigError(
                f"budget scope {label!r}: its parent {parent.label!r} belongs to another "
                "BudgetLedger; open both scopes on the same ledger"
            )
        scope = BudgetScope(label, budget, parent, self, remedy)
        with self._lock:
            self.scopes.append(scope)
        return scope

    def plan(
        self,
        scopes: Sequence[BudgetScope],
        *,
        input_tokens: int,
        output_tokens: int,
        price: Price | None,
        model: str,
        floor: int = 256,
        held: bool = True,
        count: bool = True,
    ) -> int:
        """The largest output-token allowance ≤ `output_tokens` that fits every scope now.

        Nothing is reserved: pass the answer to `reserve` with no await in between (or expect
        `reserve` to refuse what another task took meanwhile).

        Args:
            scopes: the scopes the call counts against; their ancestors are included.
            input_tokens: the request's input tokens.
            output_tokens: the output the call wants (the agent's `max_output_tokens`).
            price: the model's price, or None when unknown.
            model: the model's name, for messages.
            floor: the least output worth a call (capped at `output_tokens`).
            held: False to leave out the reservations of calls in flight, asking what would fit
                once they settle — a refusal then is final, while one with `held=True` may pass
                after in-flight calls finish.
            count: False for a check that is not the final word on the call (it may yet go to
                another model): a refusal then is not counted in `refused`.

        Raises:
            BudgetExceeded: not even `floor` output tokens fit, or no call is left.
            PriceUnknownError: a scope has a usd limit and `price` is None.
        """
        members = _members(scopes)
        _check_call(members, input_tokens, output_tokens, price, model)
        floor = min(max(floor, 0), output_tokens)
        allowed, binding = output_tokens, None
        unit: BudgetUnit = "tokens"
        with self._lock:
            for scope in members:
                allowance, scope_unit = _allowance(scope, input_tokens, allowed, price, held=held)
                if allowance < allowed:
                    allowed, binding, unit = allowance, scope, scope_unit
            if binding is None or allowed >= floor:
                return allowed
            if count:
                self._count_refusal(binding)
        sizes = (input_tokens, floor)
        raise _refusal(binding, unit, model, sizes, price, at_least=floor < output_tokens)

    def reserve(
        self,
        scopes: Sequence[BudgetScope],
        *,
        input_tokens: int,
        output_tokens: int,
        price: Price | None,
        model: str,
    ) -> Reservation:
        """Set aside a call's tokens, price and one call in every scope: all or nothing.

        Arguments as for `plan`, with `output_tokens` the call's `max_output_tokens` (from
        `plan`). A scope listed and also reached as an ancestor is charged once.

        Raises:
            BudgetExceeded: the call does not fit some scope; nothing was reserved.
            PriceUnknownError: a scope has a usd limit and `price` is None.
        """
        outcome = self._reserve(scopes, input_tokens, output_tokens, price, model)
        if isinstance(outcome, Reservation):
            return outcome
        scope, unit = outcome
        with self._lock:
            self._count_refusal(scope)
        sizes = (input_tokens, output_tokens)
        raise _refusal(scope, unit, model, sizes, price, at_least=False)

    def try_reserve(
        self,
        scopes: Sequence[BudgetScope],
        *,
        input_tokens: int,
        output_tokens: int,
        price: Price | None,
        model: str,
    ) -> Reservation | None:
        """Like `reserve`, but None (not counted as a refusal) when the call does not fit now.

        For a caller that waits for calls in flight to settle and then tries again.
        """
        outcome = self._reserve(scopes, input_tokens, output_tokens, price, model)
        return outcome if isinstance(outcome, Reservation) else None

    def try_reserve_call(self, scopes: Sequence[BudgetScope], *, model: str) -> Reservation | None:
        """`try_reserve` for a call under calls-only budgets (no token or usd limit in any
        scope's chain): one call, no tokens, no money; None when a scope has no call left now.

        The same test as `plan`'s and `_reserve`'s for the calls unit, without sizing the call.
        """
        members = _members(scopes)
        with self._lock:
            for scope in members:
                calls = scope.budget.calls
                if calls is not None and scope.spent_calls + scope.reserved_calls >= calls:
                    return None
            for scope in members:
                scope.reserved_calls += 1
        return Reservation(members, model, 0, 0, 0, 0, None)

    def _reserve(
        self,
        scopes: Sequence[BudgetScope],
        input_tokens: int,
        output_tokens: int,
        price: Price | None,
        model: str,
    ) -> Reservation | tuple[BudgetScope, BudgetUnit]:
        members = _members(scopes)
        _check_call(members, input_tokens, output_tokens, price, model)
        tokens = input_tokens + output_tokens
        nanos = 0 if price is None else _reserve_nanos(price, input_tokens, output_tokens)
        with self._lock:
            for scope in members:  # the same test as `plan`'s, so what plan allows, fits
                allowance, unit = _allowance(scope, input_tokens, output_tokens, price)
                if allowance < output_tokens:
                    return scope, unit
            for scope in members:
                scope.reserved_tokens += tokens
                scope.reserved_usd_nanos += nanos
                scope.reserved_calls += 1
            return Reservation(members, model, input_tokens, output_tokens, tokens, nanos, price)

    def settle(self, reservation: Reservation, usage: Usage) -> None:
        """Replace a reservation with the call's real usage in every scope it charged.

        Tokens are `usage.input_tokens + usage.output_tokens` (output includes reasoning). The
        cost is `usage.cost_usd`, except that 0 with a known price is recomputed from the price
        (with the cache discount): some providers report no cost, and a known price is never
        taken as free. It counts as one call, whatever `usage.calls` says. Usage above the
        reservation is recorded in `overshoots` and logged as a warning.

        Raises:
            ConfigError: the reservation was already settled or released.
        """
        tokens, price = usage.input_tokens + usage.output_tokens, reservation.price
        cost = usage.cost_usd
        if cost <= 0 and price is not None:
            cost = price.cost(usage.input_tokens, usage.output_tokens, usage.cached_tokens)
        nanos = round(cost * NANOS_PER_USD)
        overshoot = None
        if tokens > reservation.tokens or (price is not None and nanos > reservation.usd_nanos):
            labels = tuple(scope.label for scope in reservation.scopes)
            overshoot = Overshoot(
                reservation.model, labels, reservation.tokens, tokens, reservation.usd, cost
            )
        with self._lock:
            self._close(reservation, "settled")
            for scope in reservation.scopes:
                scope.reserved_tokens -= reservation.tokens
                scope.reserved_usd_nanos -= reservation.usd_nanos
                scope.reserved_calls -= 1
                scope.spent_tokens += tokens
                scope.spent_usd_nanos += nanos
                scope.spent_calls += 1
            if overshoot is not None:
                self.overshoots.append(overshoot)
        if overshoot is not None:
            log.warning("budget_overshoot", **dataclasses.asdict(overshoot))

    def settle_call(self, reservation: Reservation) -> None:
        """`settle` for a reservation from `try_reserve_call`: its one call is spent, no tokens,
        no money — whatever the call reported (no scope of it limits tokens or money).

        Raises:
            ConfigError: the reservation was already settled or released.
        """
        with self._lock:
            self._close(reservation, "settled")
            for scope in reservation.scopes:
                scope.reserved_calls -= 1
                scope.spent_calls += 1

    def release(self, reservation: Reservation) -> None:
        """Return everything a reservation set aside: the call failed without usage.

        Raises:
            ConfigError: the reservation was already settled or released.
        """
        with self._lock:
            self._close(reservation, "released")
            for scope in reservation.scopes:
                scope.reserved_tokens -= reservation.tokens
                scope.reserved_usd_nanos -= reservation.usd_nanos
                scope.reserved_calls -= 1

    def restore(self, scope: BudgetScope, *, tokens: int, usd_nanos: int, calls: int) -> None:
        """Count what `scope` had spent before this ledger existed (a resumed run's earlier
        calls). Only `scope` itself is charged: a stored scope's figures already include its
        inner scopes' spend.

        Raises:
            ConfigError: a negative amount.
        """
        if min(tokens, usd_nanos, calls) < 0:
            raise ConfigError(
                f"restoring {scope.label}: spent amounts must be ≥ 0, got tokens={tokens}, "
                f"usd_nanos={usd_nanos}, calls={calls}"
            )
        with self._lock:
            scope.spent_tokens += tokens
            scope.spent_usd_nanos += usd_nanos
            scope.spent_calls += calls

    def _count_refusal(self, scope: BudgetScope) -> None:
        self.refused += 1
        scope.refusals += 1

    @staticmethod
    def _close(reservation: Reservation, state: Literal["settled", "released"]) -> None:
        # A second settle would count the call twice: a bug in the caller, so say so loudly.
        if reservation.state != "open":
            raise ConfigError(
                f"the reservation for a call to {reservation.model} was already "
                f"{reservation.state}; settle or release each reservation exactly once"
            )
        reservation.state = state
