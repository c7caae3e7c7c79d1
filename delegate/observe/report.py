"""A run report: one self-contained HTML file to open in a browser, or keep as a CI artifact.

    html = result.report_html()                    # a RunResult, as the run returned it
    with Store.open(url) as store:                 # a stored run, with its event log
        html = stored_report_html(store, run_id)   # (`delegate report RUN_ID -o run.html`)

The file needs nothing outside itself: no script or style from a network, no fonts, no images;
its Content-Security-Policy forbids every request, and its one small script (which opens a
task's details when its node is clicked) is allowed by its hash alone. It shows the task graph
with statuses, a timeline with the critical path marked, cost and tokens by role, model, agent
and task, what the same tokens would have cost on the planner's model, the plan revisions and
what each changed, retries, votes and judges (each tally, pick and verdict, with the judge's
feedback, from a stored run's events), each task's prompt and output (collapsed), the
errors, and the spend over time against the budget.

Everything a run produced — outputs, prompts, errors, ids — is untrusted: it is html-escaped
wherever it is written, and credentials are masked (`delegate._secrets.redact`). Prompts and
outputs are cut so that a report holds about 2 M characters of them in all (at least 1,000
characters each); `delegate show RUN_ID --full` prints them whole.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from delegate._secrets import redact
from delegate.errors import ConfigError
from delegate.observe._report_data import (
    Check,
    RunView,
    TaskView,
    clip,
    critical_path,
    plan_changes,
    spend_series,
    usage_from_json,
    view_of_result,
    view_of_stored,
)
from delegate.observe._report_svg import STATUS_COLORS, esc, gantt_svg, graph_svg, spend_svg

if TYPE_CHECKING:
    from delegate.agents.models import Usage
    from delegate.memory.store import Store
    from delegate.orchestrator.graph import TaskGraph
    from delegate.orchestrator.results import RunResult

__all__ = ["report_html", "stored_report_html"]

_SCRIPT = (
    "function openTarget(){var id=decodeURIComponent(location.hash.slice(1));"
    "var el=id&&document.getElementById(id);"
    'if(el&&el.tagName==="DETAILS"){el.open=true;}}'
    'window.addEventListener("hashchange",openTarget);openTarget();'
)
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'none'"
)

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328;
background:#f6f7f9}
header{background:#1f2937;color:#fff;padding:16px 24px}header h1{margin:0 0 4px;font-size:20px}
header .facts{color:#cfd6e0}main{padding:8px 24px 40px;max-width:1500px}
nav{padding:8px 24px;background:#e9edf2;position:sticky;top:0;z-index:1}
nav a{margin-right:14px;color:#1f4f99;text-decoration:none}
section{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:12px 18px;
margin:14px 0}h2{font-size:17px;margin:4px 0 10px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px}
th,td{padding:3px 10px;border-bottom:1px solid #eceff3;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;height:10px;background:#4c7bd9;border-radius:2px}
.bar.alt{background:#9aa0a6}.scroll{overflow:auto;max-height:75vh;border:1px solid #eceff3}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;padding:8px;
border-radius:4px;margin:4px 0 8px;max-height:480px;overflow:auto}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:6px}
.status{font-weight:600}.crit-mark{color:#b3261e;font-weight:700}
details.task{border-bottom:1px solid #eceff3;padding:4px 0}details.task summary{cursor:pointer}
.legend span{margin-right:12px}.muted{color:#667085}.err{color:#b3261e}
.stat{display:inline-block;margin-right:28px}.stat b{font-size:18px;display:block}
svg text{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
svg.dag .node text{fill:#fff;text-anchor:middle}svg.dag .edge{fill:none;stroke:#8a8f98;
stroke-width:1.2}svg.dag .edge.crit{stroke:#b3261e;stroke-width:2.6}
svg.dag .node.crit rect{stroke:#b3261e;stroke-width:3}
svg.gantt .row.crit rect{stroke:#b3261e;stroke-width:2.5}svg.gantt .row.crit .label{fill:#b3261e;
font-weight:700}svg .tick{stroke:#e3e7ec}svg .axis{fill:#667085;font-size:11px}
svg.spend .spent{fill:none;stroke:#4c7bd9;stroke-width:2}svg.spend circle{fill:#4c7bd9}
svg.spend .budget{stroke:#b3261e;stroke-dasharray:6 4}
"""

_SECTIONS = (
    ("summary", "Summary"),
    ("graph", "Task graph"),
    ("timeline", "Timeline"),
    ("cost", "Cost"),
    ("spend", "Spend over time"),
    ("plans", "Plans"),
    ("checks", "Retries, votes, judges"),
    ("errors", "Errors"),
    ("tasks", "Tasks"),
)


def usd(value: float | None) -> str:
    """Dollars with three significant digits below $1 ("$0.00141"), cents above."""
    if value is None:
        return "—"
    if value == 0:
        return "$0"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    decimals = min(-math.floor(math.log10(abs(value))) + 2, 12)
    return f"${value:.{decimals}f}"


def _when(value: float | None) -> str:
    if value is None:
        return "—"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:,.3f} s"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _bar(share: float, alt: bool = False) -> str:
    width = max(min(share, 1.0), 0.0) * 160
    return f'<span class="bar{" alt" if alt else ""}" style="width:{width:.1f}px"></span>'


# -- sections ----------------------------------------------------------------------------------


def _header(view: RunView) -> str:
    title = view.workflow or (f"goal: {view.goal[:120]}" if view.goal else "task graph")
    duration = None if view.finished is None else view.finished - view.started
    simulated = " · simulated (no model was called)" if view.simulated else ""
    return (
        f'<header><h1>delegate run <span class="mono">{esc(view.run_id)}</span></h1>'
        f'<div class="facts">{esc(title)} · <span class="status">{esc(view.status)}</span> · '
        f"started {esc(_when(view.started))} · took {esc(_seconds(duration))}"
        f"{esc(simulated)}</div></header>"
    )


def _summary(view: RunView, critical: Sequence[str]) -> str:
    usage = view.usage
    counts: dict[str, int] = {}
    for task in view.tasks.values():
        counts[task.status] = counts.get(task.status, 0) + 1
    statuses = ", ".join(f"{count} {esc(status)}" for status, count in counts.items()) or "none"
    parts = ['<section id="summary"><h2>Summary</h2><div>']
    if usage is not None:
        parts.append(
            f'<span class="stat">total cost<b id="total-usd" data-usd="{usage.cost_usd!r}">'
            f"{esc(usd(usage.cost_usd))}</b></span>"
            f'<span class="stat">tokens in / out<b id="total-tokens" '
            f'data-input="{usage.input_tokens}" data-output="{usage.output_tokens}">'
            f"{usage.input_tokens:,} / {usage.output_tokens:,}</b></span>"
            f'<span class="stat">model calls<b id="total-calls">{usage.calls:,}</b></span>'
        )
    parts.append(
        f'<span class="stat">tasks<b id="total-tasks">{len(view.tasks):,}</b></span></div>'
        f"<p>Tasks: {statuses}.</p>"
    )
    if usage is not None and usage.unconfirmed_usd:
        parts.append(
            f"<p>{esc(usd(usage.unconfirmed_usd))} of the cost is delegate's estimate for calls "
            "that failed after their request may have reached the provider.</p>"
        )
    if usage is not None and (usage.refused or usage.cache_hits):
        parts.append(
            f"<p>{usage.refused:,} calls refused by a budget (never sent); "
            f"{usage.cache_hits:,} answered from the call cache.</p>"
        )
    if view.budget_usd is not None:
        parts.append(f"<p>Budget: {esc(usd(view.budget_usd))}.</p>")
    if view.goal:
        parts.append(f"<h3>Goal</h3><pre>{esc(view.goal)}</pre>")
    if view.output is not None:
        parts.append(f"<details><summary>The run's output</summary><pre>{esc(view.output)}</pre>")
        parts.append("</details>")
    if view.error:
        parts.append(f'<p class="err">{esc(view.error)}</p>')
    parts.append("</section>")
    return "".join(parts)


def _legend() -> str:
    items = "".join(
        f'<span><span class="dot" style="background:{color}"></span>{esc(status)}</span>'
        for status, color in STATUS_COLORS.items()
        if status not in ("pending", "held")
    )
    return (
        f'<p class="legend">{items}<span class="crit-mark">bold red: the critical path</span></p>'
    )


def _graph(view: RunView, critical: Sequence[str]) -> str:
    return (
        '<section id="graph"><h2>Task graph</h2>'
        '<p class="muted">Each task after the tasks it depends on; click one for its '
        f"prompt and output.</p>{_legend()}"
        f'<div class="scroll">{graph_svg(view, critical)}</div></section>'
    )


def _timeline(view: RunView, critical: Sequence[str]) -> str:
    if critical:
        seconds = sum(view.tasks[task_id].seconds for task_id in critical)
        chain = " → ".join(f"<code>{esc(task_id)}</code>" for task_id in critical)
        path = (
            f'<p id="critical-path">Critical path ({len(critical)} tasks, '
            f"{esc(_seconds(seconds))} of running time): {chain}</p>"
        )
    else:
        path = '<p id="critical-path" class="muted">No task ran: no critical path.</p>'
    return (
        f'<section id="timeline"><h2>Timeline</h2>{path}'
        f'<div class="scroll">{gantt_svg(view, critical)}</div></section>'
    )


def _usage_table(title: str, rows: Mapping[str, Usage], total: float, key: str) -> str:
    if not rows:
        return ""
    body = "".join(
        f'<tr data-{key}="{esc(name)}"><td>{esc(name)}</td><td class="n">{u.calls:,}</td>'
        f'<td class="n">{u.input_tokens:,}</td><td class="n">{u.output_tokens:,}</td>'
        f'<td class="n" data-usd="{u.cost_usd!r}">{esc(usd(u.cost_usd))}</td>'
        f"<td>{_bar(u.cost_usd / total if total else 0.0)}</td></tr>"
        for name, u in sorted(rows.items(), key=lambda item: -item[1].cost_usd)
    )
    return (
        f'<h3>By {esc(title)}</h3><table><tr><th>{esc(title)}</th><th class="n">calls</th>'
        '<th class="n">input tokens</th><th class="n">output tokens</th><th class="n">cost</th>'
        f"<th></th></tr>{body}</table>"
    )


def _counterfactual(view: RunView) -> str:
    usage = view.usage
    if usage is None or usage.planner_only_usd is None:
        return (
            '<p id="planner-only" class="muted">No planner-only figure: the run had no '
            "planner, or its model's price is unknown.</p>"
        )
    alone = usage.planner_only_usd
    top = max(alone, usage.cost_usd, 1e-12)
    share = f"{usage.cost_usd / alone:.0%} of that" if alone else "—"
    return (
        f'<h3>On the planner alone</h3><p id="planner-only" data-usd="{alone!r}">The same tokens '
        f"on the planner's model would have cost <b>{esc(usd(alone))}</b>; this run cost "
        f"<b>{esc(usd(usage.cost_usd))}</b>, {esc(share)} (saved "
        f"{esc(usd(max(alone - usage.cost_usd, 0.0)))}).</p><table>"
        f"<tr><td>planner alone</td><td>{_bar(alone / top, alt=True)}</td></tr>"
        f"<tr><td>this run</td><td>{_bar(usage.cost_usd / top)}</td></tr></table>"
    )


def _task_costs(view: RunView, critical: Sequence[str]) -> str:
    on_path = set(critical)
    tasks = sorted(view.tasks.values(), key=lambda t: -t.usage.cost_usd)
    top = max((t.usage.cost_usd for t in tasks), default=0.0) or 1.0
    mark = ' <span class="crit-mark">●</span>'
    body = "".join(
        f'<tr data-cost-task="{esc(t.id)}"><td><a href="#task-{esc(t.id)}"><code>{esc(t.id)}'
        f"</code></a>{mark if t.id in on_path else ''}</td>"
        f"<td>{esc(t.status)}</td><td>{esc(t.agent or '—')}</td><td>{esc(t.model or '—')}</td>"
        f'<td class="n">{t.usage.calls:,}</td><td class="n">{t.usage.input_tokens:,}</td>'
        f'<td class="n">{t.usage.output_tokens:,}</td>'
        f'<td class="n" data-usd="{t.usage.cost_usd!r}">{esc(usd(t.usage.cost_usd))}</td>'
        f'<td class="n">{esc(_seconds(t.seconds))}</td>'
        f"<td>{_bar(t.usage.cost_usd / top)}</td></tr>"
        for t in tasks
    )
    return (
        "<h3>By task</h3><table><tr><th>task</th><th>status</th><th>agent</th><th>model</th>"
        '<th class="n">calls</th><th class="n">input</th><th class="n">output</th>'
        f'<th class="n">cost</th><th class="n">ran</th><th></th></tr>{body}</table>'
    )


def _cost(view: RunView, critical: Sequence[str]) -> str:
    usage = view.usage
    parts = ['<section id="cost"><h2>Cost and tokens</h2>']
    if usage is not None:
        total = usage.cost_usd
        parts += [
            _usage_table("role", usage.by_role, total, "role"),
            _usage_table("model", usage.by_model, total, "model"),
            _usage_table("agent", usage.by_agent, total, "agent"),
        ]
    else:
        parts.append('<p class="muted">The run has not finished: no totals yet.</p>')
    parts += [_counterfactual(view), _task_costs(view, critical), "</section>"]
    return "".join(parts)


def _spend(view: RunView) -> str:
    points = spend_series(view)
    note = "The run's spend after each task, plan and the answer." + (
        "" if view.budget_usd is not None else " No USD budget was set."
    )
    return (
        f'<section id="spend"><h2>Spend over time</h2><p class="muted">{esc(note)}</p>'
        f"{spend_svg(points, view.budget_usd, usd)}</section>"
    )


def _plan(plan: Mapping[str, Any], change: Any) -> str:
    revision, reason = plan.get("revision"), plan.get("reason")
    tasks = [item for item in plan.get("tasks") or () if isinstance(item, dict)]
    facts = [
        _plural(len(tasks), "task"),
        _plural(int(plan.get("attempts") or 0), "attempt"),
        usd(usage_from_json(plan.get("usage")).cost_usd),
        "complete" if plan.get("complete") else "incomplete",
    ]
    if plan.get("approval"):
        facts.append(f"approval: {plan['approval']}")
    parts = [
        f'<div class="plan" data-revision="{esc(revision)}"><h3>Plan {esc(revision)} '
        f"({esc(reason)}): {esc(', '.join(facts))}</h3>"
    ]
    failures = plan.get("failures") or {}
    if failures:
        items = "".join(
            f"<li><code>{esc(name)}</code>: {esc(clip(str(error), 2_000))}</li>"
            for name, error in failures.items()
        )
        parts.append(f"<p>In answer to:</p><ul>{items}</ul>")
    for number, errors in enumerate(plan.get("errors") or (), 1):
        items = "".join(f"<li>{esc(clip(str(error), 2_000))}</li>" for error in errors)
        parts.append(f'<p>Attempt {number} was repaired:</p><ul class="err">{items}</ul>')
    parts.append(_change(change, first=revision == 1))
    rows = "".join(
        f'<tr><td><a href="#task-{esc(item.get("id"))}"><code>{esc(item.get("id"))}</code></a>'
        f"</td><td>{esc(item.get('agent'))}</td><td>{esc(', '.join(item.get('deps') or ()))}</td>"
        f"<td>{esc(clip(str(item.get('instructions', '')), 300))}</td></tr>"
        for item in tasks
    )
    if rows:
        parts.append(
            "<table><tr><th>task</th><th>agent</th><th>after</th><th>instructions</th></tr>"
            f"{rows}</table>"
        )
    if plan.get("error"):
        parts.append(f'<p class="err">{esc(clip(str(plan["error"]), 4_000))}</p>')
    parts.append("</div>")
    return "".join(parts)


def _change(change: Any, first: bool) -> str:
    if first:
        return ""
    items = []
    if change.added:
        added = ", ".join(f"<code>{esc(t)}</code>" for t in change.added)
        items.append(f'<li class="added">added: {added}</li>')
    if change.dropped:
        dropped = ", ".join(f"<code>{esc(t)}</code> ({esc(s)})" for t, s in change.dropped)
        items.append(f'<li class="dropped">dropped or replaced: {dropped}</li>')
    if change.changed:
        changed = ", ".join(
            f"<code>{esc(t)}</code> ({esc(', '.join(fields))})" for t, fields in change.changed
        )
        items.append(f'<li class="changed">changed: {changed}</li>')
    if change.kept:
        items.append(f"<li>kept: {_plural(change.kept, 'finished task')}</li>")
    return f"<p>What changed:</p><ul>{''.join(items) or '<li>nothing</li>'}</ul>"


def _plans(view: RunView) -> str:
    if not view.plans:
        return (
            '<section id="plans"><h2>Plans</h2><p class="muted">No planner: the run executed '
            "a graph it was given.</p></section>"
        )
    changes = plan_changes(view.plans, view.tasks)
    body = "".join(_plan(plan, change) for plan, change in zip(view.plans, changes, strict=True))
    return f'<section id="plans"><h2>Plans</h2>{body}</section>'


def _checked(task: TaskView, retried: bool) -> bool:
    return retried or task.attempts > 1 or bool(task.votes and task.votes > 1) or bool(task.verify)


def _decision(check: Check) -> str:
    """One vote tally, pick or verdict, as the text of a list item (escaped)."""
    judge = esc(check.judge or "the judge")
    if check.check == "vote":
        outcome = (
            "unanimous"
            if check.unanimous
            else f"split; answer {esc(check.chosen if check.chosen is not None else '?')} won"
        )
        text = f"{_plural(check.samples, 'sample')} voted: {outcome}{_vote_stop(check)}"
    elif check.check == "pick":
        picked = (
            f"picked answer {check.chosen} of {check.samples}"
            if check.chosen is not None
            else f"picked none of the {check.samples} answers (the majority's was kept)"
        )
        text = f"judge {judge} {picked}"
    elif check.check in _STRATEGY_CHECKS:
        text = _strategy_decision(check, judge)
    else:
        verdict = "passed" if check.passed else "rejected"
        text = f"judge {judge} {verdict} the answer of {esc(check.agent or 'the worker')}"
        if check.effort is not None:
            text += f" (asked at effort {esc(check.effort)})"
    reason = f': <q class="feedback">{esc(check.feedback)}</q>' if check.feedback else ""
    verdict_attr = "" if check.passed is None else f' data-passed="{str(check.passed).lower()}"'
    return (
        f'<li data-check="{esc(check.check)}"{verdict_attr}>attempt {check.attempt}: '
        f"{text}{reason}</li>"
    )


_STRATEGY_CHECKS = frozenset({"score", "best", "propose", "aggregate", "critique"})
_EARLY_STOPS = {  # (a vote that asked all it could, or agreed throughout, says so already)
    "confident": "stopped early: the leader could no longer lose",
    "budget": "stopped: the budget left could not pay for another sample",
}


def _vote_stop(check: Check) -> str:
    """Why an adaptive vote stopped before its most samples, and how much they agreed."""
    reason = _EARLY_STOPS.get(check.stopped or "")
    if reason is None or check.agreement is None:
        return ""
    return f" ({reason}; {check.agreement:.0%} agreed)"


def _strategy_decision(check: Check, judge: str) -> str:
    """A strategy's decision (best-of-n, mixture-of-agents, self-refine), escaped."""
    agent = esc(check.agent or "the worker")
    if check.check == "score":
        return f"{judge} scored answer {check.chosen} of {check.samples} (by {agent})"
    if check.check == "best":
        return f"best of {check.samples}: answer {check.chosen} kept"
    if check.check == "propose":
        return f"{agent} proposed answer {check.chosen} of {check.samples}"
    if check.check == "aggregate":
        return f"{agent} aggregated the {_plural(check.samples, 'proposal')}"
    verdict = "passed" if check.passed else "rejected"
    return (
        f"critic {judge} {verdict} the answer of {agent} "
        f"(self-refine round {check.chosen} of at most {check.samples})"
    )


def _checks(view: RunView) -> str:
    retries: dict[str, list[Any]] = {}
    for retry in view.retries:
        retries.setdefault(retry.task_id, []).append(retry)
    decisions: dict[str, list[Check]] = {}
    for check in view.checks:
        decisions.setdefault(check.task_id, []).append(check)
    rows = []
    for task in view.tasks.values():
        if not _checked(task, task.id in retries or task.id in decisions):
            continue
        tried = "".join(
            f"<li>attempt {r.attempt}: {esc(r.error)} (retried after {r.delay:.2f} s)</li>"
            for r in retries.get(task.id, ())
        )
        decided = "".join(_decision(check) for check in decisions.get(task.id, ()))
        outcome = task.status + (f": {task.error}" if task.error else "")
        rows.append(
            f'<tr data-check-task="{esc(task.id)}"><td><code>{esc(task.id)}</code></td>'
            f'<td class="n">{task.attempts}</td><td class="n">{task.usage.calls}</td>'
            f"<td>{esc(task.votes or 1)}</td><td>{esc(task.verify or '—')}</td>"
            f"<td>{esc(clip(outcome, 1_000))}</td><td><ul>{tried}</ul></td>"
            f"<td><ul>{decided}</ul></td></tr>"
        )
    note = (
        ""
        if view.has_events
        else "<p class=\"muted\">Each retry's error is in the run's event log, as are the votes "
        "and the judges' verdicts: a report of the stored run "
        "(<code>delegate report RUN_ID</code>) lists them.</p>"
    )
    if not rows:
        return (
            '<section id="checks"><h2>Retries, votes and judges</h2><p>No task was retried, '
            f"sampled or judged.</p>{note}</section>"
        )
    return (
        '<section id="checks"><h2>Retries, votes and judges</h2><table><tr><th>task</th>'
        '<th class="n">attempts</th><th class="n">model calls</th><th>votes</th><th>judge</th>'
        f"<th>outcome</th><th>retries</th><th>votes and verdicts</th></tr>{''.join(rows)}"
        f"</table>{note}</section>"
    )


def _routing(view: RunView) -> str:
    """Learned routing's decision for each task it placed (nothing without routing)."""
    if not view.routes:
        return ""
    explored = sum(route.explored for route in view.routes)
    rows = "".join(
        f'<tr data-route-task="{esc(route.task_id)}"><td><code>{esc(route.task_id)}</code></td>'
        f"<td><code>{esc(route.kind)}</code></td><td>{esc(route.arm)}</td>"
        f"<td>{'explored' if route.explored else 'rule'}</td><td>{esc(route.reason)}</td></tr>"
        for route in view.routes
    )
    return (
        '<section id="routing"><h2>Routing</h2><p class="muted">Learned routing placed '
        f"{_plural(len(view.routes), 'task')} on the cheapest tier and effort whose pass rate "
        f"in past runs meets the target; {explored} of them explored an arm to learn about "
        "it.</p><table><tr><th>task</th><th>kind</th><th>arm</th><th>why</th><th>decision</th>"
        f"</tr>{rows}</table></section>"
    )


def _errors(view: RunView) -> str:
    items = [
        f'<li data-error-task="{esc(t.id)}"><a href="#task-{esc(t.id)}"><code>{esc(t.id)}</code>'
        f'</a> ({esc(t.status)}): <span class="err">{esc(t.error)}</span></li>'
        for t in view.tasks.values()
        if t.error
    ]
    run = f'<p class="err" id="run-error">{esc(view.error)}</p>' if view.error else ""
    if not items and not run:
        return '<section id="errors"><h2>Errors</h2><p>None.</p></section>'
    return f'<section id="errors"><h2>Errors</h2>{run}<ul>{"".join(items)}</ul></section>'


def _task(task: TaskView, critical: bool) -> str:
    facts = [task.status, task.agent or "function", task.model or "", usd(task.usage.cost_usd)]
    facts.append(_seconds(task.seconds) if task.started is not None else "not started")
    mark = ' <span class="crit-mark">critical path</span>' if critical else ""
    deps = ", ".join(task.deps) or "nothing"
    parts = [
        f'<details class="task" id="task-{esc(task.id)}" data-status="{esc(task.status)}">'
        f'<summary><span class="dot" style="background:{STATUS_COLORS.get(task.status, "#ccc")}">'
        f"</span><code>{esc(task.id)}</code> {esc(' · '.join(f for f in facts if f))}{mark}"
        f"</summary><p>After: {esc(deps)} · attempts: {task.attempts} · tokens: "
        f"{task.usage.input_tokens:,} in, {task.usage.output_tokens:,} out"
        + (f" · planned in revision {task.revision}" if task.revision else "")
        + "</p>"
    ]
    if task.prompt is not None:
        parts.append(f"<h4>Prompt</h4><pre>{esc(task.prompt)}</pre>")
    if task.output is not None:
        parts.append(f'<h4>Output</h4><pre class="output">{esc(task.output)}</pre>')
    if task.error:
        parts.append(f'<h4>Error</h4><pre class="err">{esc(task.error)}</pre>')
    parts.append("</details>")
    return "".join(parts)


def _tasks(view: RunView, critical: Sequence[str]) -> str:
    on_path = set(critical)
    body = "".join(_task(task, task.id in on_path) for task in view.tasks.values())
    note = (
        ""
        if any(task.prompt for task in view.tasks.values())
        else '<p class="muted">No prompts: pass the graph, <code>result.report_html(graph)'
        "</code>, or report the stored run.</p>"
    )
    return f'<section id="tasks"><h2>Tasks</h2>{note}{body}</section>'


def render(view: RunView) -> str:
    """The report of `view` as one HTML document."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        made_by = f"delegate {version('delegate')}"
    except PackageNotFoundError:  # pragma: no cover - a source tree that is not installed
        made_by = "delegate"
    critical = critical_path(view.tasks)
    sections = (*_SECTIONS, ("routing", "Routing")) if view.routes else _SECTIONS
    nav = "".join(f'<a href="#{key}">{esc(title)}</a>' for key, title in sections)
    body = "".join(
        (
            _summary(view, critical),
            _graph(view, critical),
            _timeline(view, critical),
            _cost(view, critical),
            _spend(view),
            _plans(view),
            _checks(view),
            _routing(view),
            _errors(view),
            _tasks(view, critical),
        )
    )
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    document = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>delegate run {esc(view.run_id)}</title><style>{_CSS}</style></head><body>"
        f"{_header(view)}<nav>{nav}</nav><main>{body}"
        f'<p class="muted">Made by {esc(made_by)} on {esc(made)} from the run\'s '
        f"{'store' if view.source == 'store' else 'result'}.</p></main>"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
    return redact(document)  # every text was masked already; this is the second line of defence


def report_html(result: RunResult[Any], *, graph: TaskGraph | None = None) -> str:
    """The HTML report of a run from its `RunResult`: one self-contained file's text.

    A result has no event log: the report counts each task's attempts but does not list its
    retries' errors (`stored_report_html` does), and it shows a task's prompt only when `graph`
    (the graph the run executed) is given, or for a planned run's tasks.

    Args:
        result: what `execute` or `run` returned.
        graph: the graph the run executed, for its prompts, votes and judges.
    """
    return render(view_of_result(result, graph))


def stored_report_html(store: Store, run_id: str) -> str:
    """The HTML report of the run `run_id` kept in `store`, with its event log.

    Raises:
        ConfigError: the store has no such run (the message suggests close run ids).
    """
    run = store.get_run(run_id)
    if run is None:
        recent = [record.id for record in store.list_runs(limit=1_000)]
        close = difflib.get_close_matches(run_id, recent, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise ConfigError(
            f"no run {run_id!r} in the store {store.url}{hint}; `delegate runs` lists the recent "
            "ones (--db URL reads another store)"
        )
    return render(view_of_stored(run, store.get_tasks(run_id), store.get_events(run_id)))
