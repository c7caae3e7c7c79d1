"""One budget for a whole evaluation: every model call of every case reserves in it first.

Each case runs as its own run (with its own ledger), so the evaluation's budget is a second
ledger in front of them. `HeldModel` wraps each model of a configuration (a pass-through
wrapper: in a run it sits inside the run's gate and gets the admitted request, its prompt
counted and its output capped): before the request is sent it reserves the request's worst case
in the evaluation's scope — waiting, when it would fit once calls in flight settle — and after,
it settles the reservation at the usage reported. `eval_caller()` does the same for calls made
outside a run (a judge scorer, the planner-only baseline). A request that cannot fit even then
is refused with `BudgetExceeded` and never sent, so the evaluation's spend never passes its
budget, however many cases run at once; after the first such refusal no new case starts.

What each case spent, and whether the budget refused one of its calls, is kept on the
`CaseSpend` of the case the call belongs to (a context variable set around each case).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from delegate.agents.limits import Budget
from delegate.agents.models import Model, ModelRequest, ModelResponse, Price, Usage
from delegate.agents.tokens import estimate_messages
from delegate.agents.wrappers import WrapperModel, delivery_of, output_allowance, queued
from delegate.errors import BudgetExceeded, Delivery
from delegate.orchestrator.budget import BudgetLedger, BudgetScope, Reservation

if TYPE_CHECKING:
    from delegate.agents.agent import Agent, ModelCaller

__all__ = ["CaseSpend", "EvalBudget", "HeldModel", "current", "enter", "eval_caller", "leave"]

_LABEL = "evaluation"
_REMEDY = "raise --budget (evaluate(budget=...)), or evaluate fewer cases"


@dataclass(slots=True)
class CaseSpend:
    """What one case's calls cost, counted as the evaluation's budget charged them.

    Attributes:
        budget: the evaluation's budget.
        usage: the usage charged (answered calls at their cost, failed ones by how far they got).
        calls: requests that reached a model.
        refused: requests the evaluation's budget refused (never sent).
        model_seconds: the latencies the models reported, added up.
    """

    budget: EvalBudget
    usage: Usage = field(default_factory=Usage)
    calls: int = 0
    refused: int = 0
    model_seconds: float = 0.0


_CASE: ContextVar[CaseSpend | None] = ContextVar("delegate_eval_case", default=None)


def current() -> CaseSpend | None:
    """The case whose calls are being made here, if any."""
    return _CASE.get()


def enter(spend: CaseSpend) -> Token[CaseSpend | None]:
    """Make `spend` the current case (in this context and the tasks it starts)."""
    return _CASE.set(spend)


def leave(token: Token[CaseSpend | None]) -> None:
    """Undo `enter`."""
    _CASE.reset(token)


class EvalBudget:
    """The evaluation's ledger and its one scope (None: no limit; calls are only counted).

    Args:
        budget: the limit on the whole evaluation, or None.
    """

    def __init__(self, budget: Budget | None) -> None:
        self.budget = budget
        self.ledger = BudgetLedger()
        self.prices: dict[str, Price] = {}
        self._settled = anyio.Event()
        limited = budget is not None and (budget.tokens, budget.usd, budget.calls) != (
            None,
            None,
            None,
        )
        self.scope: BudgetScope | None = None
        if budget is not None and limited:
            self.scope = self.ledger.open(_LABEL, budget, remedy=_REMEDY)

    @property
    def exhausted(self) -> bool:
        """Whether the budget refused a call for good: no new case starts after that."""
        return self.scope is not None and self.scope.refusals > 0

    def learn_prices(self, models: Mapping[str, Price | None]) -> None:
        """Note the prices of a configuration's models by name (an override first)."""
        for name, price in models.items():
            if price is not None:
                self.prices.setdefault(name, price)

    def price_of(self, model: Model) -> Price | None:
        """The price the evaluation charges `model`'s calls at."""
        return self.prices.get(model.name) or model.price

    async def admit(
        self, model: Model, request: ModelRequest
    ) -> tuple[ModelRequest, Reservation | None]:
        """Reserve `request`'s worst case (its output capped at what was reserved), waiting
        while it fits only once calls in flight settle; no reservation without a limit.

        Raises:
            BudgetExceeded: it cannot fit even then (counted on the current case as refused).
        """
        scope = self.scope
        if scope is None:
            return request, None
        tokens = request.input_tokens
        if tokens is None:
            counter = getattr(model, "count_tokens", None)
            if counter is not None:
                tokens = int(counter(request))
            else:  # an upper bound on every tokenizer's count: safe to reserve
                tokens = estimate_messages(request.messages, request.tools, request.output_schema)
        output = output_allowance(request)
        if request.max_output_tokens is None:  # capped at what is reserved
            request = dataclasses.replace(request, max_output_tokens=output)
        price = self.price_of(model)
        sizes: dict[str, Any] = {
            "input_tokens": tokens,
            "output_tokens": output,
            "price": price,
            "model": model.name,
        }
        while True:
            reservation = self.ledger.try_reserve([scope], **sizes)
            if reservation is not None:
                return request, reservation
            try:  # would it fit once the calls in flight settle? If never, this refuses.
                self.ledger.plan([scope], floor=output, held=False, **sizes)
            except BudgetExceeded:
                spend = _CASE.get()
                if spend is not None:
                    spend.refused += 1
                raise
            with queued():  # cancelled while waiting: it never left
                await self._settled.wait()

    def settle(self, reservation: Reservation | None, usage: Usage, seconds: float) -> None:
        """Charge an answered request its usage, to the scope and the current case."""
        if reservation is not None:
            self.ledger.settle(reservation, usage)
            self._wake()
        spend = _CASE.get()
        if spend is not None:
            spend.usage += usage
            spend.calls += 1
            spend.model_seconds += seconds

    def fail(self, reservation: Reservation | None, delivery: Delivery) -> None:
        """Charge a failed request by how far it got, as a run's gate does: never sent is
        free, refused by the provider is one call, anything else its whole reservation."""
        if delivery == "not_sent":
            if reservation is not None:
                self.ledger.release(reservation)
                self._wake()
            return
        usage = Usage(calls=1)
        if delivery == "unknown" and reservation is not None:
            usage = Usage(
                input_tokens=reservation.input_tokens,
                output_tokens=reservation.output_tokens,
                cost_usd=reservation.usd,
                calls=1,
                unconfirmed_usd=reservation.usd,
            )
        self.settle(reservation, usage, 0.0)

    def _wake(self) -> None:
        self._settled.set()
        self._settled = anyio.Event()

    async def send(self, model: Model, request: ModelRequest) -> ModelResponse:
        """Send `request` to `model` under the evaluation's budget, charged by how it ends."""
        request, reservation = await self.admit(model, request)
        try:
            response = await model.request(request)
        except BaseException as exc:
            self.fail(reservation, delivery_of(exc))
            raise
        usage = response.usage
        price = self.price_of(model)
        if price is not None:  # an override price, or a model that did not price itself
            cost = price.cost(usage.input_tokens, usage.output_tokens, usage.cached_tokens)
            if cost != usage.cost_usd:
                usage = dataclasses.replace(usage, cost_usd=cost)
        self.settle(reservation, usage, response.latency)
        return response


class HeldModel(WrapperModel):
    """A configuration's model, its every request held to the evaluation's budget (that of the
    case being run; outside a case, it passes requests through)."""

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The wrapped model's answer, once the evaluation's budget admitted the request."""
        spend = _CASE.get()
        if spend is None:
            return await self.wrapped.request(request)
        return await spend.budget.send(self.wrapped, request)


async def _held_call(agent: Agent[Any], model: Model, request: ModelRequest) -> ModelResponse:
    """A `ModelCaller` for calls outside a run: held to the evaluation's budget."""
    spend = _CASE.get()
    if spend is None or isinstance(model, HeldModel):
        return await model.request(request)
    return await spend.budget.send(model, request)


def eval_caller() -> ModelCaller:
    """The `ModelCaller` of calls an evaluation makes outside a run (a judge, a baseline)."""
    return _held_call
