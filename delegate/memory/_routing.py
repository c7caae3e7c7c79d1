"""The store's side of learned routing: the outcome of every routed task, and their tallies.

`Store` exposes these as `add_routing_outcomes` and `routing_history`
(`delegate.orchestrator.routing` decides with them). A run reads its namespace's history once,
when it starts — one grouped query, so a long history costs one row per (kind, arm) — and writes
its outcomes when it ends. Outcomes are not tied to the run's row: deleting old runs keeps what
was learned from them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, case, func, insert, select
from sqlalchemy.orm import Session

from delegate.memory._rows import mask_secrets, validate_namespace
from delegate.memory.schema import RoutingOutcomeRow

__all__ = ["ArmHistory", "RoutingOutcome", "add_outcomes", "history"]

_MAX_TEXT = 500  # kinds, arms and ids are names; anything longer is cut


@dataclass(frozen=True, slots=True)
class RoutingOutcome:
    """One routed task's outcome.

    Attributes:
        namespace: whose history it adds to (a workflow's name, by default).
        kind: the task's kind (a step id, or `<agent>#<signature>` for a planned task).
        arm: the model (and effort) it ran on, "<model>" or "<model>/<effort>".
        passed: whether its first answer passed verification.
        cost_usd: what the task cost, judge and escalations included.
        latency_s: from its start to its end.
        run_id, task_id: where it happened.
        explored: the arm was tried to learn about it, not because the rule picked it.
        at: when it ended.
    """

    namespace: str
    kind: str
    arm: str
    passed: bool
    cost_usd: float
    latency_s: float
    run_id: str
    task_id: str
    explored: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class ArmHistory:
    """The tally of one arm of one kind: trials, passes and their summed cost."""

    kind: str
    arm: str
    trials: int
    passes: int
    cost_usd: float


def _text(value: str) -> str:
    return (mask_secrets(value) or "")[:_MAX_TEXT]


def _finite(value: float) -> float:
    return value if math.isfinite(value) and value >= 0 else 0.0


def add_outcomes(session: Session | Connection, outcomes: Sequence[RoutingOutcome]) -> None:
    """Insert `outcomes` (one statement), in the caller's transaction."""
    if not outcomes:
        return
    rows = [
        {
            "namespace": validate_namespace(item.namespace),
            "kind": _text(item.kind),
            "arm": _text(item.arm),
            "passed": bool(item.passed),
            "cost_usd": _finite(item.cost_usd),
            "latency_s": _finite(item.latency_s),
            "run_id": _text(item.run_id),
            "task_id": _text(item.task_id),
            "explored": bool(item.explored),
            "at": item.at,
        }
        for item in outcomes
    ]
    session.execute(insert(RoutingOutcomeRow), rows)


def history(session: Session, namespace: str) -> list[ArmHistory]:
    """Every (kind, arm) of `namespace` with its trials, passes and cost (one query)."""
    validate_namespace(namespace)
    table = RoutingOutcomeRow
    query = (
        select(
            table.kind,
            table.arm,
            func.count(),
            func.sum(case((table.passed, 1), else_=0)),
            func.sum(table.cost_usd),
        )
        .where(table.namespace == namespace)
        .group_by(table.kind, table.arm)
        .order_by(table.kind, table.arm)
    )
    return [
        ArmHistory(str(kind), str(arm), int(trials), int(passes or 0), float(cost or 0.0))
        for kind, arm, trials, passes, cost in session.execute(query)
    ]
