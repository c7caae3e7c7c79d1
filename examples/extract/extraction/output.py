"""The files a run writes: `extractions.csv` (one row per document) and `extractions.json`.

Amounts are written as exact decimal strings ("1249.92", "122100" for yen) and dates in ISO form,
so a spreadsheet or `decimal.Decimal` reads them back without float noise.
"""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from extraction.pipeline import money, table_row
from extraction.run import ExtractRun

CSV_COLUMNS = (
    "document",
    "status",
    "vendor",
    "invoice_number",
    "date",
    "due_date",
    "currency",
    "tax",
    "total",
    "lines_plus_tax",
    "po_number",
    "line_items",
    "samples_agreed",
    "judge_calls",
    "flags",
)


def rows(run: ExtractRun) -> list[dict[str, Any]]:
    """One row per document, in document order, with its line items and how its votes went."""
    flags: dict[str, list[str]] = {}
    for anomaly in run.review.anomalies if run.review else []:
        for name in anomaly.documents:
            flags.setdefault(name, []).append(anomaly.kind)
    found = []
    for document in run.documents:
        task = run.result.tasks[document.name]
        vote = run.votes[document.name]
        row: dict[str, Any] = {column: "" for column in CSV_COLUMNS}
        row.update(
            document=document.name,
            status=task.status if task.error is None else f"{task.status}: {task.error}",
            samples_agreed=vote.unanimous if vote.samples else None,
            judge_calls=len(vote.verdicts),
            flags=flags.get(document.name, []),
        )
        invoice = run.invoices.get(document.name)
        if invoice is not None:
            row.update(table_row(document.name, invoice))
            row.update(
                due_date=invoice.due_date.isoformat() if invoice.due_date else "",
                tax=str(money(invoice.tax, invoice.currency)),
                line_items=[
                    {
                        "description": item.description,
                        "quantity": _number(item.quantity),
                        "unit_price": str(money(item.unit_price, invoice.currency)),
                        "amount": str(money(item.amount, invoice.currency)),
                    }
                    for item in invoice.line_items
                ],
            )
        found.append(row)
    return found


def write_outputs(run: ExtractRun, folder: Path) -> tuple[Path, Path]:
    """Write `extractions.csv` and `extractions.json` into `folder` (created if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = rows(run)
    csv_path, json_path = folder / "extractions.csv", folder / "extractions.json"
    with csv_path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in table:
            writer.writerow(
                {
                    **row,
                    "line_items": len(row["line_items"]),
                    "samples_agreed": {True: "yes", False: "no", None: ""}[row["samples_agreed"]],
                    "flags": " ".join(row["flags"]),
                }
            )
    usage = run.result.usage
    document = {
        "run_id": run.result.run_id,
        "status": run.result.status,
        "models": {"planner": run.planner, "worker": run.worker},
        "documents": table,
        "review": run.review.model_dump(mode="json") if run.review else None,
        "usage": {
            "cost_usd": usage.cost_usd,
            "planner_only_usd": usage.planner_only_usd,
            "budget_usd": run.budget.usd,
            "refused_calls": usage.refused,
            "by_role": {role: u.to_dict() for role, u in usage.by_role.items()},
        },
    }
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return csv_path, json_path


def _number(value: float) -> str:
    """A quantity without float noise: "10", "12.5"."""
    return f"{Decimal(str(value)).normalize():f}"
