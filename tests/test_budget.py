"""BudgetLedger: exact bookkeeping, nesting, shrinking, refusals, overshoots, no overshoot ever."""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from delegate.agents.models import Price, Usage
from delegate.errors import ConfigError, DelegateError
from delegate.orchestrator.budget import (
    NANOS_PER_USD,
    Budget,
    BudgetExceeded,
    BudgetLedger,
    BudgetScope,
    Overshoot,
    PriceUnknownError,
    format_usd,
)

pytestmark = pytest.mark.anyio

GPT4O = Price(2.5, 10.0)  # $ per million tokens: $0.0000025 per input token, $0.00001 per output
MINI = Price(0.15, 0.6)


def _nested() -> tuple[BudgetLedger, BudgetScope, BudgetScope, BudgetScope]:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(tokens=10_000, usd=1.0, calls=100))
    agent = ledger.open("agent 'scout'", Budget(tokens=6_000), parent=run)
    task = ledger.open("task 'search'", Budget(tokens=4_000), parent=agent)
    return ledger, run, agent, task


def _state(scope: BudgetScope) -> tuple[int, int, int, int, int, int]:
    return (
        scope.spent_tokens,
        scope.spent_usd_nanos,
        scope.spent_calls,
        scope.reserved_tokens,
        scope.reserved_usd_nanos,
        scope.reserved_calls,
    )


# --- Budget -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tokens": -1}, "Budget.tokens must be a whole number ≥ 0, or None for no limit; got -1"),
        (
            {"tokens": 1.5},
            "Budget.tokens must be a whole number ≥ 0, or None for no limit; got 1.5",
        ),
        (
            {"tokens": True},
            "Budget.tokens must be a whole number ≥ 0, or None for no limit; got True",
        ),
        ({"calls": -3}, "Budget.calls must be a whole number ≥ 0, or None for no limit; got -3"),
        ({"usd": -0.5}, "Budget.usd must be a number ≥ 0, or None for no limit; got -0.5"),
        ({"usd": math.nan}, "Budget.usd must be a number ≥ 0, or None for no limit; got nan"),
        ({"usd": "1"}, "Budget.usd must be a number ≥ 0, or None for no limit; got '1'"),
        ({"usd": math.inf}, "Budget.usd must be finite; got inf (use None for no limit)"),
        (
            {"seconds": math.nan},
            "Budget.seconds must be a number ≥ 0, or None for no limit; got nan",
        ),
        ({"seconds": -1.0}, "Budget.seconds must be a number ≥ 0, or None for no limit; got -1.0"),
        ({"reserve_seconds": -2.0}, "Budget.reserve_seconds must be a number ≥ 0; got -2.0"),
        ({"reserve_seconds": None}, "Budget.reserve_seconds must be a number ≥ 0; got None"),
        (
            {"seconds": 10.0, "reserve_seconds": 30.0},
            "Budget.reserve_seconds (30.0) is more than Budget.seconds (10.0); keep back less time "
            "than the whole budget",
        ),
    ],
)
def test_budget_rejects_bad_limits_naming_field_and_value(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Budget(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_budget_accepts_zero_and_reports_unlimited() -> None:
    assert Budget().unlimited is True
    assert Budget(reserve_seconds=5.0).unlimited is True  # keeping time back limits nothing
    assert Budget(tokens=0).unlimited is False
    assert Budget(usd=0.0).unlimited is False
    assert Budget(seconds=1).unlimited is False
    assert Budget(calls=0).unlimited is False


def test_tightest_takes_the_smaller_limit_and_none_loses() -> None:
    a = Budget(tokens=1_000, usd=2.0, seconds=None, calls=50, reserve_seconds=1.0)
    b = Budget(tokens=None, usd=0.5, seconds=30.0, calls=80, reserve_seconds=4.0)
    expected = Budget(tokens=1_000, usd=0.5, seconds=30.0, calls=50, reserve_seconds=4.0)
    assert a.tightest(b) == expected
    assert b.tightest(a) == expected
    assert Budget().tightest(Budget()) == Budget()
    # The larger reserve is clipped to the tighter deadline, so the result stays valid.
    assert Budget(seconds=60.0, reserve_seconds=20.0).tightest(Budget(seconds=10.0)) == Budget(
        seconds=10.0, reserve_seconds=10.0
    )


_limits = st.one_of(st.none(), st.integers(0, 10**9))
_amounts = st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False))


@given(
    a=st.builds(Budget, tokens=_limits, usd=_amounts, calls=_limits),
    b=st.builds(Budget, tokens=_limits, usd=_amounts, calls=_limits),
)
def test_tightest_is_elementwise_min_and_commutative(a: Budget, b: Budget) -> None:
    t = a.tightest(b)
    assert t == b.tightest(a)
    for name in ("tokens", "usd", "calls"):
        mine, theirs = getattr(a, name), getattr(b, name)
        values = [v for v in (mine, theirs) if v is not None]
        assert getattr(t, name) == (min(values) if values else None)


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0.0, "$0.00"),
        (0.5, "$0.50"),
        (0.47, "$0.47"),
        (0.05, "$0.05"),
        (0.0473, "$0.0473"),
        (0.000123456, "$0.0001235"),
        (5.135, "$5.135"),
        (12.3456, "$12.35"),
        (1234.5, "$1,234.50"),
    ],
)
def test_format_usd(amount: float, text: str) -> None:
    assert format_usd(amount) == text


# --- reserve, settle, release -----------------------------------------------------------------


def test_reserve_settle_release_exact_bookkeeping() -> None:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(tokens=10_000, usd=1.0, calls=10))

    first = ledger.reserve([run], input_tokens=1_000, output_tokens=2_000, price=GPT4O, model="m")
    # 1,000 × $2.5/M + 2,000 × $10/M = $0.0025 + $0.02
    assert (first.tokens, first.usd_nanos, first.usd) == (3_000, 22_500_000, 0.0225)
    assert (first.scopes, first.state) == ((run,), "open")
    assert _state(run) == (0, 0, 0, 3_000, 22_500_000, 1)
    assert run.remaining_tokens == 7_000
    assert run.remaining_usd == 0.9775
    assert run.remaining_calls == 9

    second = ledger.reserve([run], input_tokens=500, output_tokens=500, price=MINI, model="mini")
    assert second.usd_nanos == 375_000  # 500 × 0.15 + 500 × 0.6 = 375 µ$
    assert _state(run) == (0, 0, 0, 4_000, 22_875_000, 2)

    ledger.settle(first, Usage(input_tokens=1_000, output_tokens=700, cost_usd=0.0095))
    assert first.state == "settled"
    assert _state(run) == (1_700, 9_500_000, 1, 1_000, 375_000, 1)
    assert run.spent_usd == 0.0095

    ledger.release(second)
    assert second.state == "released"
    assert _state(run) == (1_700, 9_500_000, 1, 0, 0, 0)
    assert (run.remaining_tokens, run.remaining_usd, run.remaining_calls) == (8_300, 0.9905, 9)
    assert ledger.refused == 0
    assert ledger.overshoots == []


def test_unlimited_scope_reports_none_remaining_and_still_counts() -> None:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget())
    reservation = ledger.reserve([run], input_tokens=10, output_tokens=5, price=None, model="m")
    assert (run.remaining_tokens, run.remaining_usd, run.remaining_calls) == (None, None, None)
    ledger.settle(reservation, Usage(input_tokens=10, output_tokens=3, cost_usd=0.0))
    assert _state(run) == (13, 0, 1, 0, 0, 0)


def test_settle_recomputes_a_zero_cost_from_the_known_price_with_cache_discount() -> None:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(usd=1.0))
    price = Price(2.0, 8.0, cached_input_per_mtok=0.5)
    reservation = ledger.reserve(
        [run], input_tokens=1_000, output_tokens=100, price=price, model="m"
    )
    assert reservation.usd_nanos == 2_800_000  # worst case: no cache discount
    ledger.settle(reservation, Usage(input_tokens=1_000, output_tokens=100, cached_tokens=600))
    # 400 uncached × $2 + 600 cached × $0.5 + 100 × $8, per million
    assert run.spent_usd_nanos == 1_900_000
    assert ledger.overshoots == []


def test_settle_with_unknown_price_and_no_usd_limit_records_reported_cost() -> None:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(tokens=1_000))
    reservation = ledger.reserve([run], input_tokens=100, output_tokens=100, price=None, model="m")
    assert reservation.usd_nanos == 0
    ledger.settle(reservation, Usage(input_tokens=100, output_tokens=50, cost_usd=0.001))
    assert _state(run) == (150, 1_000_000, 1, 0, 0, 0)
    assert ledger.overshoots == []  # nothing was reserved for money: no usd overshoot to report


def test_a_calls_only_reservation_counts_as_the_general_one_does() -> None:
    # try_reserve_call / settle_call: the cheap path for calls-only scopes, same numbers as
    # try_reserve / settle with no tokens and no money, and the same limit.
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(calls=3))
    task = ledger.open("task 't'", Budget(calls=2), parent=run)
    first = ledger.try_reserve_call([task], model="m")
    second = ledger.try_reserve([task], input_tokens=0, output_tokens=0, price=None, model="m")
    assert first is not None
    assert second is not None
    assert first.scopes == second.scopes == (task, run)
    assert (first.tokens, first.usd_nanos) == (0, 0)
    assert ledger.try_reserve_call([task], model="m") is None  # the task's 2 calls are held
    assert ledger.refused == 0  # not a refusal: the caller waits
    assert _state(task) == _state(run) == (0, 0, 0, 0, 0, 2)
    ledger.settle_call(first)
    ledger.release(second)
    assert _state(task) == _state(run) == (0, 0, 1, 0, 0, 0)
    with pytest.raises(ConfigError, match="already settled"):
        ledger.settle_call(first)
    third = ledger.try_reserve_call([run], model="m")
    assert third is not None
    ledger.settle(third, Usage(calls=1))
    assert _state(run) == (0, 0, 2, 0, 0, 0)


def test_settle_or_release_twice_is_a_config_error() -> None:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(tokens=1_000))
    done = ledger.reserve([run], input_tokens=10, output_tokens=10, price=None, model="m")
    ledger.settle(done, Usage(input_tokens=10, output_tokens=10))
    message = (
        "the reservation for a call to m was already settled; settle or release each "
        "reservation exactly once"
    )
    with pytest.raises(ConfigError) as caught:
        ledger.settle(done, Usage(input_tokens=10, output_tokens=10))
    assert str(caught.value) == message
    with pytest.raises(ConfigError, match="already settled"):
        ledger.release(done)
    failed = ledger.reserve([run], input_tokens=10, output_tokens=10, price=None, model="m")
    ledger.release(failed)
    with pytest.raises(ConfigError, match="already released"):
        ledger.settle(failed, Usage(input_tokens=10, output_tokens=10))
    with pytest.raises(ConfigError, match="already released"):
        ledger.release(failed)
    # Nothing was counted twice.
    assert _state(run) == (20, 0, 1, 0, 0, 0)


def test_money_is_exact_where_floats_would_drift() -> None:
    # 0.1 + 0.1 + 0.1 == 0.30000000000000004 > 0.3 as floats: a float ledger refuses the third.
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(usd=0.3))
    dime = Price(input_per_mtok=100_000.0, output_per_mtok=0.0)  # one input token costs $0.10
    reservations = [
        ledger.reserve([run], input_tokens=1, output_tokens=0, price=dime, model="m")
        for _ in range(3)
    ]
    assert run.reserved_usd_nanos == 300_000_000
    assert run.remaining_usd == 0.0
    with pytest.raises(BudgetExceeded):
        ledger.reserve([run], input_tokens=1, output_tokens=0, price=dime, model="m")
    for reservation in reservations:
        ledger.settle(reservation, Usage(input_tokens=1, cost_usd=0.1))
    assert run.spent_usd == 0.3
    assert run.spent_usd <= run.budget.usd  # type: ignore[operator]


@pytest.mark.parametrize(
    ("usd", "nanos"),
    [
        (0.3, 300_000_000),
        (2.5e-9, 2),  # rounded down: half a nano-dollar is not there to spend
        (297.02822757399997, 297_028_227_573),  # naive floor(usd × 10⁹) is one too many
        (536.655127111, 536_655_127_111),  # naive floor(usd × 10⁹) is one too few
    ],
)
def test_usd_limits_round_down_to_the_exact_nano_dollar(usd: float, nanos: int) -> None:
    scope = BudgetLedger().open("run", Budget(usd=usd))
    assert scope.usd_limit_nanos == nanos
    assert nanos / NANOS_PER_USD <= usd < (nanos + 1) / NANOS_PER_USD


@given(usd=st.floats(0.0, 1e4, allow_nan=False))
def test_any_usd_limit_converts_to_the_largest_nano_amount_not_above_it(usd: float) -> None:
    nanos = BudgetLedger().open("run", Budget(usd=usd)).usd_limit_nanos
    assert nanos is not None
    assert nanos / NANOS_PER_USD <= usd < (nanos + 1) / NANOS_PER_USD


def test_reservations_round_money_up_and_settlements_to_the_nearest() -> None:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(usd=1.0))
    tenth = Price(0.0001, 0.0001)  # $0.0001 per million: a tenth of a nano-dollar per token
    reservation = ledger.reserve([run], input_tokens=15, output_tokens=0, price=tenth, model="m")
    assert reservation.usd_nanos == 2  # 1.5 n$ reserved as 2: never less than the call can cost
    ledger.settle(reservation, Usage(input_tokens=14, output_tokens=0))
    assert run.spent_usd_nanos == 1  # 1.4 n$ spent, to the nearest
    assert ledger.overshoots == []


def test_negative_sizes_and_foreign_parents_are_config_errors() -> None:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget())
    with pytest.raises(ConfigError) as caught:
        ledger.reserve([run], input_tokens=-1, output_tokens=10, price=None, model="m")
    assert str(caught.value) == (
        "call to m: token counts must be ≥ 0, got input_tokens=-1, output_tokens=10"
    )
    with pytest.raises(ConfigError, match="output_tokens=-5"):
        ledger.plan([run], input_tokens=1, output_tokens=-5, price=None, model="m")
    with pytest.raises(ConfigError) as caught:
        BudgetLedger().open("task 't'", Budget(), parent=run)
    assert str(caught.value) == (
        "budget scope \"task 't'\": its parent 'run' belongs to another BudgetLedger; open both "
        "scopes on the same ledger"
    )
    assert ledger.scopes == [run]


# --- nesting ----------------------------------------------------------------------------------


def test_nested_scopes_charge_every_ancestor_and_the_tightest_binds() -> None:
    ledger, run, agent, task = _nested()
    assert task.chain == (task, agent, run)

    # task allows 4,000 tokens, agent 6,000, run 10,000: the task's limit binds.
    assert ledger.plan([task], input_tokens=1_000, output_tokens=8_000, price=MINI, model="m") == (
        3_000
    )
    reservation = ledger.reserve(
        [task], input_tokens=1_000, output_tokens=3_000, price=MINI, model="m"
    )
    assert reservation.scopes == (task, agent, run)
    for scope in (task, agent, run):
        assert _state(scope) == (0, 0, 0, 4_000, 1_950_000, 1)

    ledger.settle(reservation, Usage(input_tokens=1_000, output_tokens=1_000, cost_usd=0.00075))
    for scope in (task, agent, run):
        assert _state(scope) == (2_000, 750_000, 1, 0, 0, 0)

    # A sibling task under the same agent: now the agent's 4,000 left binds, not its own 4,000.
    sibling = ledger.open("task 'write'", Budget(tokens=4_000), parent=agent)
    assert ledger.plan([sibling], input_tokens=500, output_tokens=8_000, price=MINI, model="m") == (
        3_500
    )
    # A task directly under the run sees the run's 8,000 left.
    direct = ledger.open("task 'other'", Budget(), parent=run)
    assert ledger.plan([direct], input_tokens=500, output_tokens=9_000, price=MINI, model="m") == (
        7_500
    )


def test_a_scope_listed_and_reached_as_a_parent_is_charged_once() -> None:
    ledger, run, agent, task = _nested()
    planner = ledger.open("agent 'planner'", Budget(), parent=run)
    reservation = ledger.reserve(
        [task, agent, run, planner], input_tokens=100, output_tokens=100, price=MINI, model="m"
    )
    assert reservation.scopes == (task, agent, run, planner)
    assert [s.reserved_tokens for s in (task, agent, run, planner)] == [200, 200, 200, 200]
    assert run.reserved_calls == 1
    ledger.release(reservation)
    assert [s.reserved_tokens for s in (task, agent, run, planner)] == [0, 0, 0, 0]


# --- plan: shrinking and the floor ------------------------------------------------------------


def test_plan_returns_the_whole_request_when_it_fits() -> None:
    ledger, _, _, task = _nested()
    assert ledger.plan([task], input_tokens=100, output_tokens=512, price=MINI, model="m") == 512


def test_plan_shrinks_output_to_the_tokens_left() -> None:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(tokens=5_000))
    held = ledger.reserve([run], input_tokens=1_000, output_tokens=1_000, price=None, model="m")
    # 5,000 - 2,000 reserved - 1,200 input = 1,800
    assert ledger.plan([run], input_tokens=1_200, output_tokens=4_096, price=None, model="m") == (
        1_800
    )
    ledger.settle(held, Usage(input_tokens=1_000, output_tokens=400))
    # 5,000 - 1,400 spent - 1,200 input = 2,400
    assert ledger.plan([run], input_tokens=1_200, output_tokens=4_096, price=None, model="m") == (
        2_400
    )
    assert ledger.refused == 0


def test_plan_shrinks_output_to_the_dollars_left() -> None:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(usd=0.05))
    held = ledger.reserve([run], input_tokens=2_000, output_tokens=0, price=GPT4O, model="m")
    assert held.usd_nanos == 5_000_000
    # $0.045 left; input 4,000 × $2.5/M = $0.01, so $0.035 / ($10/M) = 3,500 output tokens.
    allowed = ledger.plan([run], input_tokens=4_000, output_tokens=8_000, price=GPT4O, model="m")
    assert allowed == 3_500
    ledger.reserve([run], input_tokens=4_000, output_tokens=allowed, price=GPT4O, model="m")
    assert run.remaining_usd == 0.0


@given(
    limit_usd=st.floats(0.0001, 5.0, allow_nan=False),
    spent_fraction=st.floats(0.0, 1.0),
    input_tokens=st.integers(0, 200_000),
    output_tokens=st.integers(1, 100_000),
    price=st.builds(
        Price,
        st.floats(0.0, 100.0, allow_nan=False),
        st.floats(0.001, 200.0, allow_nan=False),
    ),
)
def test_plan_allowance_is_exactly_the_largest_that_reserve_accepts(
    limit_usd: float, spent_fraction: float, input_tokens: int, output_tokens: int, price: Price
) -> None:
    def ledger_at() -> tuple[BudgetLedger, BudgetScope]:
        ledger = BudgetLedger()
        run = ledger.open("run", Budget(usd=limit_usd))
        run.spent_usd_nanos = int(run.usd_limit_nanos * spent_fraction)  # type: ignore[operator]
        return ledger, run

    ledger, run = ledger_at()
    try:
        allowed = ledger.plan(
            [run],
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            price=price,
            model="m",
            floor=0,
        )
    except BudgetExceeded:
        allowed = -1  # not even the input fits
    assert -1 <= allowed <= output_tokens
    if allowed >= 0:
        ledger.reserve(
            [run], input_tokens=input_tokens, output_tokens=allowed, price=price, model="m"
        )
    if allowed < output_tokens:
        other, other_run = ledger_at()
        with pytest.raises(BudgetExceeded):
            other.reserve(
                [other_run],
                input_tokens=input_tokens,
                output_tokens=allowed + 1,
                price=price,
                model="m",
            )


def test_plan_refuses_below_the_floor_with_at_least() -> None:
    ledger, run, agent, task = _nested()
    held = ledger.reserve([task], input_tokens=2_000, output_tokens=1_000, price=MINI, model="m")
    assert held.tokens == 3_000
    # The task has 1,000 left: 900 input + 100 output fits, but the floor asks for 256.
    with pytest.raises(BudgetExceeded) as caught:
        ledger.plan([task], input_tokens=900, output_tokens=4_096, price=MINI, model="gpt-x")
    error = caught.value
    assert str(error) == (
        "budget of 4,000 tokens for task 'search' would be exceeded: spent 0, reserved 3,000, "
        "this call to gpt-x needs at least 1,156 (900 input + 256 output tokens); "
        "raise budget.tokens or lower max_output_tokens"
    )
    assert (error.scope, error.unit, error.limit, error.spent, error.reserved, error.requested) == (
        "task 'search'",
        "tokens",
        4_000,
        0,
        3_000,
        1_156,
    )
    assert isinstance(error, DelegateError)
    assert (ledger.refused, task.refusals, agent.refusals, run.refusals) == (1, 1, 0, 0)
    # A lower floor lets the shrunk call through.
    assert (
        ledger.plan(
            [task], input_tokens=900, output_tokens=4_096, price=MINI, model="gpt-x", floor=64
        )
        == 100
    )
    # The floor never exceeds what the call asks for.
    assert ledger.plan([task], input_tokens=900, output_tokens=50, price=MINI, model="m") == 50


def test_refusal_messages_for_usd_and_calls_and_a_prompt_too_long() -> None:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(usd=0.50, calls=3, tokens=50_000))
    run.spent_usd_nanos, run.reserved_usd_nanos = 470_000_000, 10_000_000
    with pytest.raises(BudgetExceeded) as caught:
        ledger.reserve([run], input_tokens=2_000, output_tokens=4_500, price=GPT4O, model="gpt-4o")
    assert str(caught.value) == (
        "budget of $0.50 for run would be exceeded: spent $0.47, reserved $0.01, this call to "
        "gpt-4o needs $0.05 (2,000 input + 4,500 output tokens); raise budget.usd or lower "
        "max_output_tokens"
    )
    assert (caught.value.unit, caught.value.limit, caught.value.requested) == ("usd", 0.5, 0.05)

    # $0.02 left, and the 10,000 input tokens alone cost $0.025: no output allowance can help.
    with pytest.raises(BudgetExceeded) as caught:
        ledger.plan([run], input_tokens=10_000, output_tokens=2_500, price=GPT4O, model="gpt-4o")
    assert str(caught.value).endswith(
        "this call to gpt-4o needs at least $0.02756 (10,000 input + 256 output tokens); "
        "raise budget.usd or shorten the prompt"
    )

    with pytest.raises(BudgetExceeded) as caught:
        ledger.plan([run], input_tokens=60_000, output_tokens=1_000, price=GPT4O, model="gpt-4o")
    assert str(caught.value).endswith(
        "this call to gpt-4o needs at least 60,256 (60,000 input + 256 output tokens); "
        "raise budget.tokens or shorten the prompt"
    )

    run.spent_calls, run.reserved_calls = 2, 1
    with pytest.raises(BudgetExceeded) as caught:
        ledger.plan([run], input_tokens=1, output_tokens=1, price=GPT4O, model="gpt-4o")
    assert str(caught.value) == (
        "budget of 3 calls for run would be exceeded: spent 2, reserved 1, this call to gpt-4o "
        "needs 1; raise budget.calls or set it to None to remove the cap"
    )
    assert ledger.refused == 4
    assert run.refusals == 4


def test_a_refused_reservation_changes_nothing() -> None:
    ledger, run, agent, task = _nested()
    before = [_state(s) for s in (task, agent, run)]
    # Fits the run and the agent, not the task: nothing may be reserved anywhere.
    with pytest.raises(BudgetExceeded) as caught:
        ledger.reserve([task], input_tokens=3_000, output_tokens=1_001, price=MINI, model="m")
    assert caught.value.scope == "task 'search'"
    assert [_state(s) for s in (task, agent, run)] == before


# --- unknown prices ---------------------------------------------------------------------------


def test_unknown_price_under_a_usd_limit_says_how_to_give_it() -> None:
    ledger, run, _, task = _nested()
    expected = (
        "model 'anthropic/claude-3-5-haiku' has no known price, so its calls cannot be checked "
        "against the $1.00 budget of run (an unknown price is never taken as free); give its "
        'price in USD per million tokens: Orchestrator(prices={"anthropic/claude-3-5-haiku": '
        "(input_usd_per_million, output_usd_per_million)})"
    )
    for method in (ledger.plan, ledger.reserve):
        with pytest.raises(PriceUnknownError) as caught:
            method(
                [task],
                input_tokens=10,
                output_tokens=10,
                price=None,
                model="anthropic/claude-3-5-haiku",
            )
        assert str(caught.value) == expected
        assert (caught.value.model, caught.value.scope) == ("anthropic/claude-3-5-haiku", "run")
        assert isinstance(caught.value, ConfigError)
    assert ledger.refused == 0  # a configuration mistake, not a refusal
    assert _state(run) == (0, 0, 0, 0, 0, 0)


def test_unknown_price_without_usd_limit_still_enforces_tokens_and_calls() -> None:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(tokens=1_000, calls=1))
    assert ledger.plan([run], input_tokens=400, output_tokens=900, price=None, model="m") == 600
    reservation = ledger.reserve([run], input_tokens=400, output_tokens=600, price=None, model="m")
    assert reservation.usd_nanos == 0
    ledger.release(reservation)
    ledger.settle(
        ledger.reserve([run], input_tokens=1, output_tokens=1, price=None, model="m"), Usage()
    )
    with pytest.raises(BudgetExceeded, match="budget of 1 calls for run"):
        ledger.reserve([run], input_tokens=1, output_tokens=1, price=None, model="m")


# --- overshoots -------------------------------------------------------------------------------


def test_settle_larger_than_reserved_records_an_overshoot_and_warns() -> None:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(tokens=1_000, usd=0.01))
    task = ledger.open("task 't'", Budget(), parent=run)
    reservation = ledger.reserve([task], input_tokens=500, output_tokens=500, price=MINI, model="m")
    assert reservation.usd_nanos == 375_000
    with capture_logs() as logs:
        ledger.settle(reservation, Usage(input_tokens=500, output_tokens=700, cost_usd=0.0005))
    overshoot = Overshoot(
        model="m",
        scopes=("task 't'", "run"),
        reserved_tokens=1_000,
        actual_tokens=1_200,
        reserved_usd=0.000375,
        actual_usd=0.0005,
    )
    assert ledger.overshoots == [overshoot]
    assert logs == [
        {
            "event": "budget_overshoot",
            "log_level": "warning",
            "logger_name": "delegate.budget",
            "model": "m",
            "scopes": ("task 't'", "run"),
            "reserved_tokens": 1_000,
            "actual_tokens": 1_200,
            "reserved_usd": 0.000375,
            "actual_usd": 0.0005,
        }
    ]
    # The provider's word is what was spent, even past the limit: the one way to exceed it.
    assert run.spent_tokens == 1_200
    assert run.spent_tokens > run.budget.tokens  # type: ignore[operator]
    assert run.remaining_tokens == 0


def test_a_cost_overshoot_alone_is_recorded_and_a_well_behaved_settle_is_not() -> None:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(usd=1.0))
    fine = ledger.reserve([run], input_tokens=100, output_tokens=100, price=MINI, model="m")
    with capture_logs() as logs:
        ledger.settle(fine, Usage(input_tokens=100, output_tokens=100, cost_usd=0.000075))
    assert (logs, ledger.overshoots) == ([], [])
    dear = ledger.reserve([run], input_tokens=100, output_tokens=100, price=MINI, model="m")
    with capture_logs() as logs:
        ledger.settle(dear, Usage(input_tokens=100, output_tokens=100, cost_usd=0.001))
    assert [entry["event"] for entry in logs] == ["budget_overshoot"]
    assert [(o.reserved_tokens, o.actual_tokens, o.actual_usd) for o in ledger.overshoots] == [
        (200, 200, 0.001)
    ]


# --- concurrency ------------------------------------------------------------------------------


async def test_concurrent_reservations_admit_exactly_what_fits() -> None:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(tokens=50_000, calls=1_000))
    hold = anyio.Event()
    admitted: list[int] = []
    refused: list[int] = []

    async def call(i: int) -> None:
        await anyio.lowlevel.checkpoint()
        try:
            reservation = ledger.reserve(
                [run], input_tokens=600, output_tokens=400, price=None, model="m"
            )
        except BudgetExceeded:
            refused.append(i)
            return
        admitted.append(i)
        await hold.wait()  # every admitted call is in flight at once
        ledger.settle(reservation, Usage(input_tokens=600, output_tokens=100))

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(call, i)
        await anyio.sleep(0.01)
        assert (len(admitted), len(refused)) == (50, 150)
        assert (run.reserved_tokens, run.reserved_calls) == (50_000, 50)
        hold.set()
    assert (run.spent_tokens, run.spent_calls, run.reserved_tokens) == (35_000, 50, 0)
    assert ledger.refused == 150
    assert run.refusals == 150


def test_threads_sharing_a_ledger_keep_exact_totals() -> None:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(tokens=10**9, usd=10**6, calls=10**6))
    task = ledger.open("task 't'", Budget(), parent=run)

    def work() -> None:
        for _ in range(2_000):
            reservation = ledger.reserve(
                [task], input_tokens=3, output_tokens=4, price=MINI, model="m"
            )
            ledger.settle(reservation, Usage(input_tokens=3, output_tokens=2))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Per call: 3 × 0.15 + 2 × 0.6 = 1.65 µ$ → 1,650 n$.
    assert _state(run) == (40_000, 8_000 * 1_650, 8_000, 0, 0, 0)
    assert _state(task) == _state(run)


# --- the invariant, property-tested ---------------------------------------------------------


@dataclass
class _Totals:
    tokens: int = 0
    nanos: int = 0
    calls: int = 0


@dataclass
class _World:
    ledger: BudgetLedger
    run: BudgetScope
    agents: list[BudgetScope]
    tasks: list[BudgetScope]
    expected: dict[int, _Totals] = field(default_factory=dict)
    refusals: int = 0
    shrunk: int = 0
    demand: int = 0
    checks: int = 0

    def check(self) -> None:
        """spent + reserved ≤ limit in every scope, in every unit, exactly."""
        self.checks += 1
        for scope in self.ledger.scopes:
            budget = scope.budget
            assert min(_state(scope)) >= 0
            if budget.tokens is not None:
                assert scope.spent_tokens + scope.reserved_tokens <= budget.tokens
            if budget.calls is not None:
                assert scope.spent_calls + scope.reserved_calls <= budget.calls
            if budget.usd is not None:
                held = scope.spent_usd_nanos + scope.reserved_usd_nanos
                assert scope.usd_limit_nanos is not None
                assert held <= scope.usd_limit_nanos
                assert held / NANOS_PER_USD <= budget.usd  # as floats too, no epsilon

    def charge(self, scopes: list[BudgetScope], tokens: int, nanos: int) -> None:
        charged: set[int] = set()
        for scope in scopes:
            node: BudgetScope | None = scope
            while node is not None:
                if id(node) not in charged:
                    charged.add(id(node))
                    totals = self.expected.setdefault(id(node), _Totals())
                    totals.tokens += tokens
                    totals.nanos += nanos
                    totals.calls += 1
                node = node.parent


def _maybe(rng: random.Random, value: int) -> int | None:
    return value if rng.random() < 0.6 else None


def _world(seed: int, run_budget: Budget) -> _World:
    rng = random.Random(seed)
    ledger = BudgetLedger()
    run = ledger.open("run", run_budget)
    agents = [
        ledger.open(f"agent 'a{i}'", Budget(tokens=_maybe(rng, rng.randint(5_000, 150_000))), run)
        for i in range(3)
    ]
    tasks = [
        ledger.open(
            f"task 't{i}'",
            Budget(
                tokens=_maybe(rng, rng.randint(2_000, 40_000)),
                usd=None if rng.random() < 0.5 else rng.uniform(0.001, 0.2),
                calls=_maybe(rng, rng.randint(1, 20)),
            ),
            rng.choice([*agents, run]),
        )
        for i in range(rng.randint(10, 30))
    ]
    return _World(ledger, run, agents, tasks)


_prices = st.builds(
    Price,
    st.floats(0.0, 20.0, allow_nan=False),
    st.floats(0.0, 80.0, allow_nan=False),
    st.one_of(st.none(), st.floats(0.0, 2.0, allow_nan=False)),
)


async def _one_call(world: _World, rng: random.Random, i: int, prices: list[Price]) -> None:
    task = rng.choice(world.tasks)
    scopes = rng.choice([[task], [task, task.parent or world.run], [task, world.run]])
    price = rng.choice(prices)
    input_tokens, wanted = rng.randint(0, 3_000), rng.randint(1, 4_000)
    delay, fails = rng.choice([0.0, 0.0, 0.001, 0.003]), rng.random() < 0.1
    world.demand += 0 if fails else input_tokens
    ledger = world.ledger
    try:
        allowed = ledger.plan(
            scopes,
            input_tokens=input_tokens,
            output_tokens=wanted,
            price=price,
            model=f"m{i}",
            floor=rng.choice([1, 64, 256]),
        )
    except BudgetExceeded:
        world.refusals += 1
        world.check()
        return
    world.shrunk += allowed < wanted
    world.check()
    # Others may take what plan saw as free meanwhile: reserve must still be exact.
    await anyio.lowlevel.checkpoint()
    try:
        reservation = ledger.reserve(
            scopes, input_tokens=input_tokens, output_tokens=allowed, price=price, model=f"m{i}"
        )
    except BudgetExceeded:
        world.refusals += 1
        world.check()
        return
    world.check()
    await anyio.sleep(delay)
    world.check()
    if fails:
        ledger.release(reservation)
    else:
        output = rng.randint(0, allowed)  # a well-behaved provider: never more than allowed
        cost = 0.0 if rng.random() < 0.3 else price.cost(input_tokens, output)
        ledger.settle(
            reservation,
            Usage(input_tokens=input_tokens, output_tokens=output, cost_usd=cost, calls=1),
        )
        nanos = round(price.cost(input_tokens, output) * NANOS_PER_USD)
        world.charge(scopes, input_tokens + output, nanos)
    world.check()


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    calls=st.integers(100, 300),
    tokens=st.integers(20_000, 1_500_000),
    usd=st.floats(0.005, 5.0, allow_nan=False),
    max_calls=st.integers(50, 400),
    prices=st.lists(_prices, min_size=1, max_size=6).map(lambda drawn: [MINI, *drawn]),
)
async def test_no_scope_ever_overshoots_under_concurrency(
    seed: int, calls: int, tokens: int, usd: float, max_calls: int, prices: list[Price]
) -> None:
    world = _world(seed, Budget(tokens=tokens, usd=usd, calls=max_calls))
    rng = random.Random(seed + 1)
    async with anyio.create_task_group() as tg:
        for i in range(calls):
            tg.start_soon(_one_call, world, random.Random(rng.getrandbits(64)), i, prices)

    world.check()
    assert world.checks > calls  # at least one after each call's every step
    assert world.ledger.refused == world.refusals
    assert world.ledger.overshoots == []
    if world.demand > tokens:  # the calls' inputs alone overflow the run: some must be refused
        assert world.refusals > 0
    for scope in world.ledger.scopes:
        assert (scope.reserved_tokens, scope.reserved_usd_nanos, scope.reserved_calls) == (0, 0, 0)
        totals = world.expected.get(id(scope), _Totals())
        assert (scope.spent_tokens, scope.spent_usd_nanos, scope.spent_calls) == (
            totals.tokens,
            totals.nanos,
            totals.calls,
        )
    assert world.run.spent_usd <= usd
    assert world.run.spent_tokens <= tokens
    assert world.run.spent_calls <= max_calls
