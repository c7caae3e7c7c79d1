"""An evaluation's report as one self-contained HTML page (`delegate eval --report out.html`).

The run report's look (`delegate.observe.report`), nothing outside the file: no script at all,
a Content-Security-Policy that forbids every request. It shows the configurations side by side
(pass rate, mean score, cost, cost per case, saving, p50/p95 latency, calls), then each case
under each configuration with its scores, and the failures with their reasons. Everything from
the cases and the models is html-escaped, and credentials are masked.
"""

from __future__ import annotations

from collections.abc import Sequence

from delegate._secrets import redact
from delegate.evals.report import CaseResult, ConfigurationReport, EvalReport
from delegate.observe._report_svg import esc
from delegate.observe.report import _CSS as _RUN_REPORT_CSS  # one look for both reports
from delegate.observe.report import usd

__all__ = ["eval_report_html"]

_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
_CSS = _RUN_REPORT_CSS + ".warn{background:#fff4e5;border-color:#f0b35c}.pass{color:#1a7f37}\n"
_SHOWN = 300  # characters of an output or a reason in the case table


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _secs(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f} s"


def _summary(report: EvalReport) -> str:
    head = (
        "<tr><th>configuration</th><th class=n>pass rate</th><th class=n>mean score</th>"
        "<th class=n>passed</th><th class=n>failed</th><th class=n>errors</th>"
        "<th class=n>not run</th><th class=n>cost</th><th class=n>per case</th>"
        "<th class=n>saving</th><th class=n>p50</th><th class=n>p95</th><th class=n>calls</th></tr>"
    )
    rows = "".join(_summary_row(config, report.baseline) for config in report.configurations)
    return f'<section id="summary"><h2>Side by side</h2><table>{head}{rows}</table></section>'


def _summary_row(config: ConfigurationReport, baseline: str | None) -> str:
    name = esc(config.name) + (
        " <span class=muted>(baseline)</span>" if config.name == baseline else ""
    )
    score = "—" if config.mean_score is None else f"{config.mean_score:.2f}"
    return (
        f"<tr><td>{name}</td><td class=n>{_share(config.pass_rate)}</td><td class=n>{score}</td>"
        f"<td class=n>{config.passed}</td><td class=n>{config.failed}</td>"
        f"<td class=n>{config.errors}</td><td class=n>{config.not_run}</td>"
        f"<td class=n>{usd(config.cost_usd)}</td><td class=n>{usd(config.cost_per_case_usd)}</td>"
        f"<td class=n>{_share(config.saving)}</td><td class=n>{_secs(config.p50_seconds)}</td>"
        f"<td class=n>{_secs(config.p95_seconds)}</td><td class=n>{config.calls:,}</td></tr>"
    )


def _clip(text: str) -> str:
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _cell(case: CaseResult) -> str:
    status = f'<span class="status {"pass" if case.status == "passed" else "err"}">'
    status += f"{esc(case.status.replace('_', ' '))}</span>"
    why = case.error or "; ".join(
        f"{name}: {score.reason}" for name, score in case.scores.items() if not score.passed
    )
    detail = f"<br><span class=muted>{esc(_clip(why))}</span>" if why else ""
    return f"<td>{status} {usd(case.cost_usd)}{detail}</td>"


def _cases(configs: Sequence[ConfigurationReport]) -> str:
    head = "<tr><th>case</th>" + "".join(f"<th>{esc(c.name)}</th>" for c in configs) + "</tr>"
    rows = []
    for index, first in enumerate(configs[0].cases if configs else ()):
        cells = "".join(_cell(config.cases[index]) for config in configs)
        rows.append(f"<tr><td class=mono>{esc(first.case_id)}</td>{cells}</tr>")
    return (
        f'<section id="cases"><h2>Cases</h2><div class=scroll><table>{head}{"".join(rows)}'
        "</table></div></section>"
    )


def eval_report_html(report: EvalReport) -> str:
    """`report` as one self-contained HTML document."""
    facts = (
        f"dataset {esc(report.dataset)} · {report.cases:,} cases · scorers "
        f"{esc(', '.join(report.scorers))} · spent {usd(report.spent_usd)}"
        + (f" of {usd(report.budget_usd)}" if report.budget_usd is not None else "")
    )
    warning = ""
    if report.note:
        warning = (
            f'<section class="warn" id="note"><h2>Read this first</h2><p>{esc(report.note)}</p>'
            "</section>"
        )
    body = warning + _summary(report) + _cases(report.configurations)
    document = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>delegate eval {esc(report.dataset)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>Evaluation: {esc(report.dataset)}</h1><div class=facts>{facts}</div></header>"
        f"<main>{body}</main></body></html>\n"
    )
    return redact(document)
