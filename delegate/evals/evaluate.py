"""`evaluate`: every case under every configuration, at once, under one budget.

    from delegate import Budget
    from delegate.evals import Configuration, Dataset, evaluate, field_equals

    report = await evaluate(
        [Configuration.workflow("extract.yaml"), baseline],
        Dataset.from_jsonl("cases.jsonl"),
        [field_equals("total", tolerance=0.01)],
        budget=Budget(usd=1.00),
    )
    report.configuration("extract").pass_rate

Cases start in the dataset's order, each under every configuration before the next case, at
most `concurrency` at a time. Every model call of every case (a judge scorer's too) reserves its
worst case in the evaluation's budget before it is sent (`delegate.evals._budget`): the budget
is never passed. Once it refuses a call, no further case starts; the cases it stopped, and
those never started, are reported as not run — not as failures.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import anyio

from delegate._sync import run_sync
from delegate.agents.limits import Budget
from delegate.errors import ConfigError
from delegate.evals import _budget
from delegate.evals.configs import Configuration
from delegate.evals.dataset import Case, Dataset
from delegate.evals.report import SIMULATED_WARNING, CaseResult, ConfigurationReport, EvalReport
from delegate.evals.scorers import Score, Scorer, scorer_name

__all__ = ["MAX_CONCURRENCY", "evaluate", "evaluate_sync"]

MAX_CONCURRENCY = 256
"""The most cases run at once."""

P = ParamSpec("P")
T = TypeVar("T")

Target = Configuration | str | os.PathLike[str] | Callable[[dict[str, Any]], Any]


async def evaluate(
    configurations: Target | Sequence[Target],
    dataset: Dataset | Sequence[Case | Mapping[str, Any]] | str | os.PathLike[str],
    scorers: Scorer | Callable[..., Any] | Sequence[Scorer | Callable[..., Any]],
    *,
    budget: Budget | float | None = None,
    concurrency: int = 8,
    baseline: str | None = None,
    db: str | None = None,
) -> EvalReport:
    """Run every case of `dataset` under each configuration and score the answers.

    Args:
        configurations: a `Configuration`, a workflow file's path or a callable of the inputs
            (`Configuration.function`), or a list of them (compared side by side).
        dataset: a `Dataset`, a list of cases, or the path of a JSON Lines file.
        scorers: one scorer or several (see `delegate.evals.scorers`); a case passes when all
            pass it.
        budget: the limit on the whole evaluation (a `Budget`, or USD as a number), shared by
            every case of every configuration and the judge's calls.
        concurrency: how many cases run at once (across configurations).
        baseline: the configuration savings are measured against (default: the planner-only
            one, if there is one).
        db: the store the runs are kept in (default: a temporary SQLite file, removed after).

    Raises:
        ConfigError: a bad argument, two configurations with one name, an unknown `baseline`,
            or a scorer that cannot score a case (e.g. `expected` lacks its field).
        DatasetError: the dataset cannot be used.
        WorkflowError: a workflow file has problems.
    """
    configs = _configurations(configurations)
    cases = dataset if isinstance(dataset, Dataset) else _dataset(dataset)
    checks = _scorers(scorers)
    limit = _budget_of(budget)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise ConfigError(f"concurrency must be a whole number, got {concurrency!r}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ConfigError(f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}")
    names = [config.name for config in configs]
    if baseline is None:
        baseline = next((c.name for c in configs if c.kind == "planner_only"), None)
    elif baseline not in names:
        raise ConfigError(f"baseline {baseline!r} is not one of the configurations ({names})")
    shared = _budget.EvalBudget(limit)
    with tempfile.TemporaryDirectory(prefix="delegate-eval-") as folder:
        store = db or f"sqlite:///{Path(folder) / 'runs.db'}"
        try:
            for config in configs:  # one at a time: each may open a store
                config.prepare(store, shared)
            results = await _run_all(configs, cases, checks, shared, concurrency)
        finally:
            with anyio.CancelScope(shield=True):
                for config in configs:
                    await config.aclose()
    reports = [
        ConfigurationReport.of(c.name, c.kind, c.simulated, results[c.name]) for c in configs
    ]
    reports = _with_savings(reports, baseline)
    simulated = any(config.simulated for config in configs)
    return EvalReport(
        dataset=cases.name or "dataset",
        cases=len(cases),
        scorers=[scorer_name(check) for check in checks],
        baseline=baseline,
        simulated=simulated,
        note=SIMULATED_WARNING if simulated else "",
        budget_usd=limit.usd if limit is not None else None,
        spent_usd=math.fsum(report.cost_usd for report in reports),
        configurations=reports,
    )


def _sync_twin(fn: Callable[P, Any]) -> Callable[[Callable[..., T]], Callable[P, T]]:
    def declare(twin: Callable[..., T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def blocking(*args: P.args, **kwargs: P.kwargs) -> T:
            return run_sync(fn, *args, **kwargs)  # type: ignore[no-any-return]

        blocking.__doc__ = f"Blocking twin of `{fn.__name__}` (see it).\n\n{fn.__doc__ or ''}"
        blocking.__name__ = twin.__name__
        blocking.__qualname__ = twin.__qualname__
        return blocking

    return declare


@_sync_twin(evaluate)
def evaluate_sync() -> EvalReport:  # type: ignore[empty-body]  # the signature is `evaluate`'s
    """Replaced by the blocking twin of `evaluate`."""


# -- the runs -----------------------------------------------------------------------------------


async def _run_all(
    configs: Sequence[Configuration],
    cases: Dataset,
    checks: Sequence[Any],
    shared: _budget.EvalBudget,
    concurrency: int,
) -> dict[str, list[CaseResult]]:
    slots = anyio.CapacityLimiter(concurrency)
    found: dict[tuple[str, int], CaseResult] = {}
    fatal: list[tuple[int, ConfigError]] = []

    async def one(config: Configuration, index: int, case: Case, scope: anyio.CancelScope) -> None:
        async with slots:
            if shared.exhausted or fatal:
                found[config.name, index] = _not_run(case, "the evaluation's budget ran out")
                return
            try:
                found[config.name, index] = await _case(config, case, checks, shared)
            except ConfigError as exc:  # a scorer that cannot score: the user's mistake
                fatal.append((index, exc))
                scope.cancel()

    async with anyio.create_task_group() as group:
        for index, case in enumerate(cases):
            for config in configs:
                group.start_soon(one, config, index, case, group.cancel_scope)
    if fatal:
        raise min(fatal, key=lambda found: found[0])[1]  # the first case's, of those scored
    return {c.name: [found[c.name, i] for i in range(len(cases))] for c in configs}


def _not_run(case: Case, why: str) -> CaseResult:
    return CaseResult(case_id=case.id or "", status="not_run", error=why)


async def _case(
    config: Configuration, case: Case, checks: Sequence[Any], shared: _budget.EvalBudget
) -> CaseResult:
    spend = _budget.CaseSpend(shared)
    token = _budget.enter(spend)
    try:
        answer = await config.answer(dict(case.inputs))
        scores: dict[str, Score] = {}
        error = answer.error
        if error is None:
            scores, error = await _score(checks, case, answer.output)
    finally:
        _budget.leave(token)
    cost = spend.usage.cost_usd
    calls = spend.calls
    if calls == 0 and answer.usage_usd is not None:  # calls the evaluation could not see
        cost, calls = answer.usage_usd, answer.calls or 0
    common: dict[str, Any] = {"case_id": case.id or "", "cost_usd": cost, "calls": calls}
    if spend.refused and error is not None:
        return CaseResult(
            status="not_run",
            error=f"stopped by the evaluation's budget ({error or 'a call was refused'})",
            **common,
        )
    if error is not None:
        return CaseResult(status="error", error=error, seconds=answer.seconds, score=0.0, **common)
    value = math.fsum(score.value for score in scores.values()) / len(scores)
    passed = all(score.passed for score in scores.values())
    return CaseResult(
        status="passed" if passed else "failed",
        score=value,
        scores=scores,
        output=_json_data(answer.output),
        seconds=answer.seconds,
        **common,
    )


async def _score(
    checks: Sequence[Any], case: Case, output: Any
) -> tuple[dict[str, Score], str | None]:
    """Each scorer's score; a scorer that fails (a judge's model error, a bug in a user's
    function) makes the case an error, named so. ConfigError (the scorer cannot score this
    case) propagates."""
    from delegate._log import redact_text
    from delegate.errors import BudgetExceeded, ModelError

    scores: dict[str, Score] = {}
    for check in checks:
        name = scorer_name(check)
        try:
            result = check(case, output)
            if inspect.isawaitable(result):
                result = await result
        except ConfigError:
            raise
        except (ModelError, BudgetExceeded) as exc:
            return scores, redact_text(f"scorer {name!r} failed: {exc}")[:2_000]
        except Exception as exc:  # a bug in a user's scorer: named on the case, not fatal
            why = f"scorer {name!r} raised {type(exc).__name__}: {exc}"
            return scores, redact_text(why)[:2_000]
        scores[name] = Score.of(result, name)
    return scores, None


def _json_data(value: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _with_savings(
    reports: list[ConfigurationReport], baseline: str | None
) -> list[ConfigurationReport]:
    base = next((r for r in reports if r.name == baseline), None)
    if base is None or not base.cost_per_case_usd:
        return reports
    out = []
    for report in reports:
        saving = None
        if report.name != baseline and report.cost_per_case_usd is not None:
            saving = 1 - report.cost_per_case_usd / base.cost_per_case_usd
        out.append(report.model_copy(update={"saving": saving}))
    return out


# -- arguments ----------------------------------------------------------------------------------


def _configurations(given: Target | Sequence[Target]) -> list[Configuration]:
    items = (
        list(given)
        if isinstance(given, Sequence) and not isinstance(given, str | bytes)
        else [given]
    )
    configs: list[Configuration] = []
    for item in items:
        if isinstance(item, Configuration):
            configs.append(item)
        elif isinstance(item, str | os.PathLike):
            configs.append(Configuration.workflow(item))
        elif callable(item):
            configs.append(Configuration.function(item))
        else:
            raise ConfigError(
                f"a configuration is a Configuration, a workflow file or a callable, got "
                f"{type(item).__name__}"
            )
    if not configs:
        raise ConfigError("give at least one configuration to evaluate")
    names = [config.name for config in configs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(
            f"two configurations are named {twice[0]!r}; give each its own name (name=...)"
        )
    return configs


def _dataset(given: Sequence[Case | Mapping[str, Any]] | str | os.PathLike[str]) -> Dataset:
    if isinstance(given, str | os.PathLike):
        return Dataset.from_jsonl(given)
    return Dataset(given)


def _scorers(given: Any) -> list[Any]:
    items = list(given) if isinstance(given, Sequence) else [given]
    if not items:
        raise ConfigError("give at least one scorer (e.g. delegate.evals.exact())")
    for item in items:
        if not callable(item):
            raise ConfigError(f"a scorer is callable as scorer(case, output); got {item!r}")
    names = [scorer_name(item) for item in items]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"two scorers are named {twice[0]!r}; give each its own name")
    return items


def _budget_of(budget: Budget | float | None) -> Budget | None:
    if budget is None or isinstance(budget, Budget):
        return budget
    if isinstance(budget, bool) or not isinstance(budget, int | float):
        raise ConfigError(
            f"budget must be a delegate.Budget or USD as a number, got {type(budget).__name__}"
        )
    return Budget(usd=float(budget))
