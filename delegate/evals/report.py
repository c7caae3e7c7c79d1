"""What an evaluation found: `EvalReport`, a `ConfigurationReport` per configuration, a
`CaseResult` per case and configuration.

Figures, per configuration: pass rate and mean score over the cases that ran, total cost and
cost per case, model calls, latency (p50 and p95, nearest rank), failures with their errors,
cases not run (the evaluation's budget ran out first), and the saving against the baseline:
`1 − cost per case / the baseline's cost per case`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from delegate.errors import ConfigError
from delegate.evals.scorers import Score

__all__ = [
    "SIMULATED_WARNING",
    "CaseResult",
    "CaseStatus",
    "ConfigurationReport",
    "EvalReport",
    "percentile",
]

CaseStatus = Literal["passed", "failed", "error", "not_run"]
"""passed / failed (by the scorers), error (the configuration failed to answer: a failure),
not_run (the evaluation's budget ran out before the case could run or finish: not a failure)."""

SIMULATED_WARNING = (
    "SIMULATED: the models were simulated (nothing was sent). Cost, calls and latency are what "
    "the real models would charge and take for these tokens, but the answers are generated "
    "filler, so pass rates and scores are meaningless."
)


class CaseResult(BaseModel):
    """One case under one configuration.

    Attributes:
        case_id: the case.
        status: "passed", "failed", "error" or "not_run" (see `CaseStatus`).
        score: the mean of the scorers' values (None when not scored).
        scores: each scorer's `Score`, by scorer name.
        output: the answer, as JSON data (None when there is none).
        error: why it errored or was not run.
        cost_usd: what its calls cost (a judge's included).
        calls: its model calls.
        seconds: its latency (None when it did not run).
    """

    model_config = ConfigDict(frozen=True)

    case_id: str
    status: CaseStatus
    score: float | None = None
    scores: dict[str, Score] = {}
    output: Any = None
    error: str | None = None
    cost_usd: float = 0.0
    calls: int = 0
    seconds: float | None = None


class ConfigurationReport(BaseModel):
    """The figures of one configuration over the dataset.

    Attributes:
        name: the configuration.
        kind: "workflow", "orchestrator", "function" or "planner_only".
        simulated: its models were simulated.
        cases: every case, in the dataset's order.
        passed, failed, errors, not_run: how many cases ended so.
        pass_rate: passed / (passed + failed + errors); None when no case ran.
        mean_score: the mean case score over the cases that ran (errors count 0).
        cost_usd: total cost.
        cost_per_case_usd: cost_usd / the cases that ran (None when none ran).
        calls: total model calls.
        p50_seconds, p95_seconds: latency percentiles over the cases that ran.
        saving: 1 − cost per case / the baseline's (None for the baseline itself, or without
            one).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    simulated: bool
    cases: list[CaseResult]
    passed: int
    failed: int
    errors: int
    not_run: int
    pass_rate: float | None
    mean_score: float | None
    cost_usd: float
    cost_per_case_usd: float | None
    calls: int
    p50_seconds: float | None
    p95_seconds: float | None
    saving: float | None = None

    @classmethod
    def of(
        cls, name: str, kind: str, simulated: bool, cases: Sequence[CaseResult]
    ) -> ConfigurationReport:
        """The figures of `cases`."""
        ran = [case for case in cases if case.status != "not_run"]
        counts = {status: sum(case.status == status for case in cases) for status in _STATUSES}
        cost = math.fsum(case.cost_usd for case in cases)
        seconds = sorted(case.seconds for case in ran if case.seconds is not None)
        return cls(
            name=name,
            kind=kind,
            simulated=simulated,
            cases=list(cases),
            passed=counts["passed"],
            failed=counts["failed"],
            errors=counts["error"],
            not_run=counts["not_run"],
            pass_rate=counts["passed"] / len(ran) if ran else None,
            mean_score=math.fsum(case.score or 0.0 for case in ran) / len(ran) if ran else None,
            cost_usd=cost,
            cost_per_case_usd=math.fsum(case.cost_usd for case in ran) / len(ran) if ran else None,
            calls=sum(case.calls for case in cases),
            p50_seconds=percentile(seconds, 50),
            p95_seconds=percentile(seconds, 95),
        )

    def failures(self) -> list[CaseResult]:
        """The cases that failed or errored."""
        return [case for case in self.cases if case.status in ("failed", "error")]


_STATUSES: tuple[CaseStatus, ...] = ("passed", "failed", "error", "not_run")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank `q`th percentile of sorted `values` (None when empty)."""
    if not values:
        return None
    rank = max(1, math.ceil(q / 100 * len(values)))
    return values[rank - 1]


class EvalReport(BaseModel):
    """What an evaluation found, configuration by configuration.

    Attributes:
        dataset: the dataset's name.
        cases: how many cases it holds.
        scorers: the scorers' names.
        baseline: the configuration savings are measured against (None: none).
        simulated: some configuration's models were simulated: see `note`.
        note: what to keep in mind reading it (SIMULATED_WARNING under simulation).
        budget_usd: the evaluation's usd budget (None: none).
        spent_usd: what every configuration's calls cost together.
        configurations: one report per configuration, in the order given.
    """

    model_config = ConfigDict(frozen=True)

    dataset: str
    cases: int
    scorers: list[str]
    baseline: str | None
    simulated: bool
    note: str = ""
    budget_usd: float | None
    spent_usd: float
    configurations: list[ConfigurationReport]

    def configuration(self, name: str) -> ConfigurationReport:
        """The report of the configuration `name`.

        Raises:
            ConfigError: no configuration has that name.
        """
        for report in self.configurations:
            if report.name == name:
                return report
        names = ", ".join(repr(report.name) for report in self.configurations)
        raise ConfigError(f"no configuration {name!r} in this report (it has {names})")
