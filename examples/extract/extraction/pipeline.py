"""The map-reduce graph: one extraction per document on the mini model, a compact table, a review.

    extract[doc_1] ─┐
    extract[doc_2] ─┼─> table (Python, no model) ─> review (the planner's model)
    ...            ─┘

Each extraction samples three answers (`votes=3`) and keeps the majority field by field; only when
the samples disagree is the judge asked to check the merged answer against the document. The
reviewer never sees a document: it gets one line per invoice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from delegate import Agent, Model, TaskContext, TaskGraph
from extraction.documents import Document
from extraction.schema import Invoice, Review

EXTRACT_INSTRUCTIONS = """\
You extract the fields of one plain-text invoice into JSON.
- vendor: the company that issued the invoice, as printed (not the customer).
- invoice_number: as printed, without the label.
- date: the date the invoice was issued, never the due date; due_date: when payment is due, \
null when no date is printed.
- currency: the ISO 4217 code of the amounts (USD, EUR, GBP, CAD, JPY, CHF...).
- tax: sales tax, VAT, GST or HST charged, 0 when none.
- total: the final amount due, after discounts and tax.
- po_number: the customer's purchase order number; null when absent, "none" or "n/a".
- line_items: every charged line, with a discount as a line of negative amount.
Copy numbers exactly as printed; do not correct the vendor's arithmetic."""

EXTRACT_PROMPT = """\
Extract the fields of the invoice below.

<document name="{{ name }}">
{{ text }}
</document>"""

JUDGE_INSTRUCTIONS = """\
You check an invoice extraction against its source document. Pass it only when every field \
matches the document: vendor, invoice number, issue date (not the due date), due date, currency, \
tax, total (the final amount due after discounts and tax), PO number (null when absent) and line \
items. Otherwise fail it, and say which fields are wrong and what the document says."""

REVIEW_INSTRUCTIONS = """\
You review a batch of invoice extractions before accounts payable pays them. You get one row per \
document; lines_plus_tax is the sum of the extracted line items plus tax. Report only real \
anomalies, naming the documents by their first column:
- duplicate: the same vendor and invoice number more than once (a resent invoice);
- total_mismatch: a total that differs from lines_plus_tax;
- outlier: a total far above the others in the same currency;
- missing_po: invoices without a purchase order number;
- other: anything else a careful reviewer would query.
Compare amounts only within one currency. End with a short summary."""

REVIEW_PROMPT = """\
Review these {{ count }} invoice extractions.

{{ table }}"""

TABLE_COLUMNS = (
    "document",
    "vendor",
    "invoice_number",
    "date",
    "currency",
    "total",
    "lines_plus_tax",
    "po_number",
)
"""The columns the reviewer sees, one row per document: a few tokens each."""

_DOCUMENT_TAG = re.compile(r'<document name="(?P<name>[^"]+)">\n(?P<text>.*?)\n</document>', re.S)
_MINOR_UNITS = {"JPY": 0, "KRW": 0}


@dataclass(frozen=True, slots=True)
class Models:
    """The three models of the pipeline (real, simulated or fake)."""

    extractor: Model
    judge: Model
    reviewer: Model


@dataclass(frozen=True, slots=True)
class Agents:
    """The agents built on `Models`."""

    extractor: Agent
    judge: Agent
    reviewer: Agent


def build_agents(models: Models, *, votes: int = 3) -> Agents:
    """The extractor (sampled `votes` times, judged when samples disagree), judge and reviewer."""
    judge = Agent("judge", models.judge, instructions=JUDGE_INSTRUCTIONS, max_output_tokens=400)
    extractor = Agent(
        "extractor",
        models.extractor,
        instructions=EXTRACT_INSTRUCTIONS,
        output_type=Invoice,
        temperature=0.7,  # samples must be able to differ for votes to mean anything
        max_output_tokens=1200,
        votes=votes,
        verify=judge,
    )
    reviewer = Agent(
        "reviewer",
        models.reviewer,
        instructions=REVIEW_INSTRUCTIONS,
        output_type=Review,
        reasoning_effort="medium",
        max_output_tokens=8000,  # a reasoning model bills its thinking as output
    )
    return Agents(extractor=extractor, judge=judge, reviewer=reviewer)


def build_graph(documents: Sequence[Document], agents: Agents) -> TaskGraph:
    """One extraction task per document, the table that joins them, and the review."""
    graph = TaskGraph()
    extractions = [
        graph.add(
            document.name,
            agent=agents.extractor,
            prompt=EXTRACT_PROMPT,
            variables={"name": document.name, "text": document.text},
        )
        for document in documents
    ]
    # after="done": the table, and so the review, covers whatever was extracted, even when
    # some documents failed (their rows say so).
    table = graph.add("table", fn=compact_table, deps=extractions, after="done")
    graph.add(
        "review",
        agent=agents.reviewer,
        prompt=REVIEW_PROMPT,
        deps=[table],
        variables={"count": len(documents)},
    )
    return graph


def compact_table(context: TaskContext) -> str:
    """The reviewer's input: a markdown table with one short row per extracted invoice."""
    rows = [
        table_row(name, invoice) if invoice is not None else failed_row(name)
        for name, invoice in context.deps.items()
    ]
    lines = [
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(row[column] for column in TABLE_COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def failed_row(name: str) -> dict[str, str]:
    """The row of a document whose extraction failed: the reviewer sees the gap."""
    return {column: "" for column in TABLE_COLUMNS} | {"document": name, "vendor": "(failed)"}


def table_row(name: str, invoice: Invoice) -> dict[str, str]:
    """One document's row of the compact table, as text."""
    lines = sum((money(item.amount, invoice.currency) for item in invoice.line_items), Decimal(0))
    return {
        "document": name,
        "vendor": invoice.vendor.replace("|", "/"),
        "invoice_number": invoice.invoice_number,
        "date": invoice.date.isoformat(),
        "currency": invoice.currency,
        "total": str(money(invoice.total, invoice.currency)),
        "lines_plus_tax": str(lines + money(invoice.tax, invoice.currency)),
        "po_number": invoice.po_number or "",
    }


def money(value: float, currency: str) -> Decimal:
    """An extracted amount as an exact decimal in the currency's minor units (2, or 0 for JPY)."""
    places = _MINOR_UNITS.get(currency, 2)
    return Decimal(str(value)).quantize(Decimal(1).scaleb(-places))


def document_in(text: str) -> tuple[str, str] | None:
    """The (name, text) of the document quoted in a prompt, if there is one."""
    match = _DOCUMENT_TAG.search(text)
    return None if match is None else (match["name"], match["text"])


def extracted(outputs: Mapping[str, object]) -> dict[str, Invoice]:
    """The task outputs that are invoices, by document name."""
    return {name: output for name, output in outputs.items() if isinstance(output, Invoice)}
