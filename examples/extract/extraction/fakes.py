"""Offline stand-ins for the three models: they read the real text and answer like the models.

- The extractor reads each invoice with the rule-based `reader`. On the documents of `MISREADS`
  its second sample misreads one field the way a hurried model does (the subtotal taken for the
  total, the due date for the issue date), so the three samples disagree and the vote and the
  judge have something to settle.
- The judge re-reads the document in its prompt and compares it with the answer, field by field.
- The reviewer reads the compact table in its prompt and flags duplicates, totals that do not add
  up, outliers and missing purchase orders.

They are `FunctionModel`s carrying the real models' names and prices, so token counts, costs and
budgets are those of a real run with the same prompts and answers (reasoning tokens aside).
"""

from __future__ import annotations

import statistics
import zlib
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

from delegate import ConfigError, LiteLLMModel, ModelRequest, Price
from delegate.testing import FunctionModel
from extraction.pipeline import TABLE_COLUMNS, Models, document_in
from extraction.reader import Reading, read_invoice
from extraction.schema import Anomaly, Invoice

MISREADS: dict[str, str] = {
    "04_harbor_pine_logistics": "total",  # has a discount line: the subtotal looks like a total
    "09_quarry_hill_legal": "date",  # the due date is printed above the invoice date
}
"""Document → the field its second extraction sample gets wrong."""

_OUTLIER_FACTOR = 5  # a total this many times the currency's median is queried
_OUTLIER_MIN_PEERS = 5  # ...when there are at least this many invoices in the currency


def fake_models(worker: str, planner: str) -> Models:
    """Fakes named and priced like `worker` (extractor and judge) and `planner` (reviewer).

    Raises:
        ConfigError: litellm's cost map has no price for one of the names.
    """
    mini, reasoner = _price(worker), _price(planner)
    return Models(
        extractor=FunctionModel(
            Extractor(),
            latency=_latency,
            name=worker,
            input_price=mini.input_per_mtok,
            output_price=mini.output_per_mtok,
        ),
        judge=FunctionModel(
            judge,
            latency=0.04,
            name=worker,
            input_price=mini.input_per_mtok,
            output_price=mini.output_per_mtok,
        ),
        reviewer=FunctionModel(
            review,
            latency=0.3,
            name=planner,
            input_price=reasoner.input_per_mtok,
            output_price=reasoner.output_per_mtok,
        ),
    )


class Extractor:
    """The fake extractor: reads the document in the prompt; misreads on `MISREADS`' 2nd read."""

    def __init__(self) -> None:
        self.reads: Counter[str] = Counter()

    def __call__(self, request: ModelRequest) -> dict[str, Any]:
        # The document is in the task's prompt; a re-ask after a rejection quotes it again.
        found = next(
            (doc for message in request.messages if (doc := document_in(str(message["content"])))),
            None,
        )
        if found is None:
            raise ConfigError("the fake extractor got a request without a <document> in it")
        name, text = found
        reading = read_invoice(text)
        self.reads[name] += 1
        answer = reading.invoice.model_dump(mode="json")
        field = MISREADS.get(name)
        if field is not None and self.reads[name] == 2:
            answer[field] = _misread(reading, field)
        return answer


def judge(request: ModelRequest) -> dict[str, Any]:
    """The fake judge: passes an answer whose fields all match its own reading of the document."""
    task, _, answer = _prompt(request).partition("\n## Answer\n")
    found = document_in(task)
    if found is None:
        return {"passed": False, "feedback": "the task quotes no document to check against"}
    expected = read_invoice(found[1]).invoice
    got = Invoice.model_validate_json(answer.strip())
    wrong = [
        f"{field} is {getattr(got, field)!s}, the document says {getattr(expected, field)!s}"
        for field in Invoice.model_fields
        if getattr(got, field) != getattr(expected, field)
    ]
    if wrong:
        return {"passed": False, "feedback": "; ".join(wrong)}
    return {"passed": True, "feedback": "every field matches the document"}


def review(request: ModelRequest) -> dict[str, Any]:
    """The fake reviewer: rules over the compact table, as a careful person would apply them."""
    rows = _table(_prompt(request))
    anomalies = [*_duplicates(rows), *_mismatches(rows), *_outliers(rows), *_missing_po(rows)]
    flagged = sorted({doc for anomaly in anomalies for doc in anomaly.documents})
    summary = (
        f"{len(rows)} invoices reviewed; {len(anomalies)} findings on {len(flagged)} documents. "
        "Hold the duplicate and the mismatched total, confirm the outlier with the buyer, and "
        "ask the requesters for the missing purchase orders."
        if anomalies
        else f"{len(rows)} invoices reviewed; nothing to query."
    )
    return {"anomalies": [a.model_dump() for a in anomalies], "summary": summary}


def _prompt(request: ModelRequest) -> str:
    return str(request.messages[-1]["content"])


def _latency(request: ModelRequest) -> float:
    """50-100 ms, the same for the same prompt: deterministic, yet not all equal."""
    return 0.05 + zlib.crc32(_prompt(request).encode()) % 50 / 1000


def _price(model: str) -> Price:
    price = LiteLLMModel(model).price
    if price is None:
        raise ConfigError(
            f"litellm's cost map has no price for {model!r}, so the offline fakes cannot be "
            "priced like it; pick a model it knows, e.g. --worker openai/gpt-4o-mini"
        )
    return price


def _misread(reading: Reading, field: str) -> Any:
    invoice = reading.invoice
    if field == "total" and reading.subtotal is not None:
        return float(reading.subtotal)
    if field == "date" and invoice.due_date is not None:
        return invoice.due_date.isoformat()
    raise ConfigError(f"MISREADS: no plausible misreading of {field!r} for {invoice.vendor!r}")


def _table(prompt: str) -> list[dict[str, str]]:
    """The rows of the markdown table in `prompt`, by column name."""
    rows = []
    for line in prompt.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == len(TABLE_COLUMNS) and cells[0] != "document":
            if set(cells[0]) <= {"-", ":"}:
                continue
            rows.append(dict(zip(TABLE_COLUMNS, cells, strict=True)))
    return rows


def _duplicates(rows: list[dict[str, str]]) -> list[Anomaly]:
    groups: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    for row in rows:
        groups[(row["vendor"].casefold(), row["invoice_number"])].append(row["document"])
    return [
        Anomaly(
            kind="duplicate",
            documents=documents,
            detail=f"invoice {number} appears {len(documents)} times; pay it once",
        )
        for (_, number), documents in groups.items()
        if len(documents) > 1
    ]


def _mismatches(rows: list[dict[str, str]]) -> list[Anomaly]:
    return [
        Anomaly(
            kind="total_mismatch",
            documents=[row["document"]],
            detail=(
                f"total {row['total']} {row['currency']} but the lines plus tax come to "
                f"{row['lines_plus_tax']}: a difference of "
                f"{Decimal(row['total']) - Decimal(row['lines_plus_tax'])}"
            ),
        )
        for row in rows
        if Decimal(row["total"]) != Decimal(row["lines_plus_tax"])
    ]


def _outliers(rows: list[dict[str, str]]) -> list[Anomaly]:
    by_currency: defaultdict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_currency[row["currency"]].append(row)
    found = []
    for currency, peers in by_currency.items():
        if len(peers) < _OUTLIER_MIN_PEERS:
            continue
        median = statistics.median(Decimal(row["total"]) for row in peers)
        found += [
            Anomaly(
                kind="outlier",
                documents=[row["document"]],
                detail=(
                    f"total {row['total']} {currency} is "
                    f"{Decimal(row['total']) / median:.0f}× the median {currency} invoice "
                    f"({median:.2f}); confirm it with the buyer"
                ),
            )
            for row in peers
            if Decimal(row["total"]) > _OUTLIER_FACTOR * median
        ]
    return found


def _missing_po(rows: list[dict[str, str]]) -> list[Anomaly]:
    missing = [row["document"] for row in rows if not row["po_number"]]
    if not missing:
        return []
    return [
        Anomaly(
            kind="missing_po",
            documents=missing,
            detail=f"{len(missing)} invoices carry no purchase order number",
        )
    ]
