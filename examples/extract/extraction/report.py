"""What a run prints: the extractions, how the votes went, the review, and the cost table."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from delegate import Usage
from delegate.agents import count_text
from extraction.audit import Vote
from extraction.pipeline import money
from extraction.run import ExtractRun


def print_report(run: ExtractRun, console: Console, *, mode: str) -> None:
    """Print everything a reader of the run wants to see, in the order they want it."""
    console.print(
        f"[bold]invoice extraction[/bold]: {len(run.documents)} documents; workers "
        f"{escape(run.worker)} ({run.samples} votes, a judge on disagreement), reviewer "
        f"{escape(run.planner)}\n{escape(mode)}",
        soft_wrap=True,
    )
    console.print(_extractions(run))
    _print_votes(run, console)
    _print_review(run, console)
    console.print(cost_table(run))
    _print_saving(run, console)


def _extractions(run: ExtractRun) -> Table:
    table = Table(title="extractions", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("document", no_wrap=True)
    table.add_column("vendor", no_wrap=True, max_width=22)
    for column in ("invoice", "date"):
        table.add_column(column, no_wrap=True)
    table.add_column("total", justify="right", no_wrap=True)
    table.add_column("PO", no_wrap=True)
    table.add_column("votes", no_wrap=True)
    for document in run.documents:
        invoice = run.invoices.get(document.name)
        vote = run.votes[document.name]
        agreed = "—" if not vote.samples else "agree" if vote.unanimous else "split"
        if invoice is None:
            error = run.result.tasks[document.name].error or "no answer"
            table.add_row(document.name, f"[red]{escape(error)}[/red]", "", "", "", "", agreed)
            continue
        table.add_row(
            document.name,
            escape(invoice.vendor),
            escape(invoice.invoice_number),
            invoice.date.isoformat(),
            f"{money(invoice.total, invoice.currency):,} {invoice.currency}",
            escape(invoice.po_number or "—"),
            agreed,
        )
    return table


def _print_votes(run: ExtractRun, console: Console) -> None:
    sampled = [vote for vote in run.votes.values() if vote.samples]
    split = [vote for vote in sampled if not vote.unanimous]
    judged = sum(len(vote.verdicts) for vote in sampled)
    console.print(
        f"[bold]votes[/bold]: the samples agreed on {len(sampled) - len(split)} of "
        f"{len(sampled)} documents; the judge was asked {judged} "
        f"time{'s' if judged != 1 else ''}, only where they disagreed",
        soft_wrap=True,
    )
    for vote in split:
        console.print(f"  {vote.document}: {escape(_split(vote, run))}", soft_wrap=True)


def _split(vote: Vote, run: ExtractRun) -> str:
    parts = []
    invoice = run.invoices.get(vote.document)
    for field in vote.disagreements:
        counts = Counter(_shown(sample.get(field)) for sample in vote.samples)
        given = ", ".join(f"{value} ×{count}" for value, count in counts.most_common())
        if invoice is None:
            parts.append(f"{field} sampled as {given} → not settled (the task failed)")
        else:
            parts.append(f"{field} sampled as {given} → kept {_shown(getattr(invoice, field))}")
    verdicts = "; ".join(
        f"judge: {'passed' if verdict.passed else 'rejected'} ({verdict.feedback})"
        for verdict in vote.verdicts
    )
    return "; ".join(parts) + (f"; {verdicts}" if verdicts else "")


def _shown(value: Any) -> str:
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _print_review(run: ExtractRun, console: Console) -> None:
    if run.review is None:
        task = run.result.tasks["review"]
        console.print(
            f"[bold]review[/bold]: did not run ({task.status}: {escape(str(task.error))})"
        )
        return
    table = Table(
        title=(
            f"review by {escape(run.planner)}: it read {_prompt_tokens(run):,} tokens (its "
            f"instructions and a {len(run.invoices)}-row table), never the documents "
            f"({_document_tokens(run):,} tokens)"
        ),
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for column in ("finding", "documents", "detail"):
        table.add_column(column)
    for anomaly in run.review.anomalies:
        table.add_row(anomaly.kind, escape("\n".join(anomaly.documents)), escape(anomaly.detail))
    console.print(table)
    console.print(f"  {escape(run.review.summary)}", soft_wrap=True)


def _prompt_tokens(run: ExtractRun) -> int:
    return run.result.tasks["review"].usage.input_tokens


def _document_tokens(run: ExtractRun) -> int:
    return sum(count_text(document.text, run.planner) for document in run.documents)


def cost_table(run: ExtractRun) -> Table:
    """Calls, tokens and USD by role (with the agents in each), and the total."""
    usage = run.result.usage
    agents = {"workers": "extractor, judge", "planner": "reviewer"}
    models = {"workers": run.worker, "planner": run.planner}
    table = Table(title="cost", box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("role", "agents", "model"):
        table.add_column(column)
    for column in ("calls", "input tok", "output tok", "USD"):
        table.add_column(column, justify="right")
    for role, spent in sorted(usage.by_role.items(), key=lambda item: item[0] != "workers"):
        table.add_row(role, agents.get(role, ""), escape(models.get(role, "")), *_figures(spent))
    total = Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cost_usd=usage.cost_usd,
        calls=usage.calls,
    )
    table.add_section()
    table.add_row("total", "", "", *_figures(total))
    return table


def _figures(usage: Usage) -> tuple[str, str, str, str]:
    output = f"{usage.output_tokens:,}"
    if usage.reasoning_tokens:
        output += f" ({usage.reasoning_tokens:,} reasoning)"
    return f"{usage.calls:,}", f"{usage.input_tokens:,}", output, f"${usage.cost_usd:.4f}"


def saving(run: ExtractRun) -> float | None:
    """The share of `planner_only_usd` this run did not spend (None: no planner price)."""
    alone = run.result.usage.planner_only_usd
    if not alone:
        return None
    return 1 - run.result.usage.cost_usd / alone


def _print_saving(run: ExtractRun, console: Console) -> None:
    usage = run.result.usage
    share = saving(run)
    if usage.planner_only_usd is not None and share is not None:
        console.print(
            f"planner_only_usd: ${usage.planner_only_usd:.4f} — the same tokens on "
            f"{escape(run.planner)} "
            f"alone; this run cost ${usage.cost_usd:.4f}, a saving of {share:.0%}",
            soft_wrap=True,
        )
    limit = run.budget.usd
    if limit is not None:
        verdict = "[green]held[/green]" if usage.cost_usd <= limit else "[red]overspent[/red]"
        if usage.refused:
            verdict += f" [yellow](raise --budget-usd to run the {usage.refused} refused)[/yellow]"
        console.print(
            f"budget: {_usd(limit)} for the run; spent ${usage.cost_usd:.4f} "
            f"({usage.cost_usd / limit:.0%}), {usage.refused} calls refused — {verdict}",
            soft_wrap=True,
        )


def _usd(amount: float) -> str:
    """$0.10 for a round amount, $0.004 for a small one."""
    return f"${amount:.2f}" if round(amount, 2) == amount else f"${amount:.4g}"
