"""Evals: quality as a number, next to cost and latency.

A `Dataset` of `Case`s (inputs, the expected answer), scorers that say whether an answer passes,
and `evaluate`, which runs every case under each `Configuration` (a workflow file, an
orchestrator, a function, the planner-only baseline) at once under one budget and reports, side
by side, the pass rate, the mean score, the cost, the latency and the saving against the
baseline::

    from delegate.evals import Configuration, Dataset, evaluate_sync, field_equals

    report = evaluate_sync(
        Configuration.workflow("examples/extract/evals/extract.yaml", simulate=True),
        Dataset.from_jsonl("examples/extract/evals/cases.jsonl"),
        [field_equals("total", tolerance=0.01)],
        budget=0.50,
    )

`delegate eval FILE --dataset cases.jsonl` is the same from the command line.
"""

from __future__ import annotations

from delegate.evals.configs import Answer, Configuration, ConfigurationKind, planner_only_of
from delegate.evals.dataset import MAX_CASES, MAX_DATASET_BYTES, Case, Dataset, DatasetError
from delegate.evals.evaluate import MAX_CONCURRENCY, evaluate, evaluate_sync
from delegate.evals.html import eval_report_html
from delegate.evals.report import (
    SIMULATED_WARNING,
    CaseResult,
    CaseStatus,
    ConfigurationReport,
    EvalReport,
    percentile,
)
from delegate.evals.scorers import (
    MAX_PATTERN_CHARS,
    MAX_SCORED_CHARS,
    JudgeGrade,
    Score,
    Scorer,
    contains,
    exact,
    field_equals,
    json_schema,
    judge,
    regex,
    scorer_name,
)

__all__ = [
    "MAX_CASES",
    "MAX_CONCURRENCY",
    "MAX_DATASET_BYTES",
    "MAX_PATTERN_CHARS",
    "MAX_SCORED_CHARS",
    "SIMULATED_WARNING",
    "Answer",
    "Case",
    "CaseResult",
    "CaseStatus",
    "Configuration",
    "ConfigurationKind",
    "ConfigurationReport",
    "Dataset",
    "DatasetError",
    "EvalReport",
    "JudgeGrade",
    "Score",
    "Scorer",
    "contains",
    "eval_report_html",
    "evaluate",
    "evaluate_sync",
    "exact",
    "field_equals",
    "json_schema",
    "judge",
    "percentile",
    "planner_only_of",
    "regex",
    "scorer_name",
]
