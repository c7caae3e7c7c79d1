"""The typed answers: what a mini model extracts from one invoice, and what the reviewer finds.

Amounts are floats in the schema because that is what models write reliably in JSON; the
outputs (`extraction.output`) turn them into exact decimal strings.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field


class LineItem(BaseModel):
    """One line of an invoice; a discount is a line with a negative amount."""

    description: str
    quantity: float = Field(description="1 for a flat charge or a discount")
    unit_price: float
    amount: float = Field(description="The line's amount as printed; negative for a discount")


class Invoice(BaseModel):
    """The fields extracted from one invoice."""

    vendor: str = Field(description="The company that issued the invoice, as printed")
    invoice_number: str
    date: dt.date = Field(description="The date the invoice was issued, not the due date")
    due_date: dt.date | None = Field(description="When payment is due; null when not printed")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. USD, EUR")
    tax: float = Field(description="Sales tax, VAT, GST or HST charged; 0 when none")
    total: float = Field(description="The final amount due, after discounts and tax")
    po_number: str | None = Field(
        description="The customer's purchase order number; null when absent or 'n/a'"
    )
    line_items: list[LineItem]


AnomalyKind = Literal["duplicate", "total_mismatch", "outlier", "missing_po", "other"]


class Anomaly(BaseModel):
    """Something in the batch a person should look at before paying."""

    kind: AnomalyKind
    documents: list[str] = Field(description="The documents concerned, by their table name")
    detail: str


class Review(BaseModel):
    """The reviewer's verdict on the whole batch of extractions."""

    anomalies: list[Anomaly]
    summary: str = Field(description="Two or three sentences for the accounts-payable team")
