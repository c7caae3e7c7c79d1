"""Every `BudgetLedger` an orchestrator makes while a test runs, to check it during and after.

with capture_ledgers() as ledgers:
    result = await Orchestrator().execute(graph, budget=Budget(usd=1.0))
run_scope(ledgers[0]).spent_usd
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from delegate.orchestrator import _setup
from delegate.orchestrator.budget import BudgetLedger, BudgetScope

__all__ = ["capture_ledgers", "run_scope"]


@contextlib.contextmanager
def capture_ledgers() -> Iterator[list[BudgetLedger]]:
    """The ledgers made meanwhile, in order (one per run)."""
    made: list[BudgetLedger] = []

    def make() -> BudgetLedger:
        ledger = BudgetLedger()
        made.append(ledger)
        return ledger

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_setup, "BudgetLedger", make)
        yield made


def run_scope(ledger: BudgetLedger) -> BudgetScope:
    """The run's own scope of a ledger."""
    return next(scope for scope in ledger.scopes if scope.label == "run")
