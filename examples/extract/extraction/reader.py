"""A rule-based invoice reader: what the offline fakes "see" in a document.

It reads plain-text invoices the way a careful clerk would: labelled fields ("Invoice No:",
"Date of issue", "Your PO:"), the line-item table between its header row and the first summary
line, and the summary lines (subtotal, tax, total). Dates in ISO, European, US and spelled-out
forms; amounts with `1,234.56`, `1.234,56` or currency symbols; pipe tables. It is not meant to
read every invoice in the world — only to make the offline run extract real values from the
shipped documents, so that what the example prints means something.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

from extraction.schema import Invoice, LineItem

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_DATE = (
    r"(?:\d{4}-\d{2}-\d{2}|\d{1,2}\.\d{1,2}\.\d{4}|\d{1,2}/\d{1,2}/\d{4}"
    r"|[A-Za-z]{3,9}\.? \d{1,2}, \d{4}|\d{1,2} [A-Za-z]{3,9}\.? \d{4})"
)
_MONEY = r"-?\s?[$€£¥]?\s?\d[\d,.]*"
_CODE = r"(?=[A-Z0-9\-/.]*\d)[A-Z0-9][A-Z0-9\-/.]*[A-Z0-9]"

_INVOICE_NUMBER = re.compile(
    rf"invoice[ \t]*(?:(?:no\.?|number|nr\.?|#)[ \t]*:?|:)[ \t]*#?(?P<v>{_CODE})", re.I
)
_PO = re.compile(
    r"(?:purchase order(?:[ \t]*(?:no\.?|number|#))?|\b(?:p\.o\.|po\b)(?:[ \t]*(?:no\.?|number|#))?"
    rf"|order ref(?:erence)?)[ \t]*[:#]?[ \t]*(?P<v>{_CODE})",
    re.I,
)
_ISSUED = re.compile(
    rf"(?:invoice date|date of issue|issue date|issued|^[ \t]*date)[ \t]*:?[ \t]*(?P<d>{_DATE})",
    re.I | re.M,
)
_DUE = re.compile(
    rf"(?:due date|payment due|\bdue)[ \t]*:?[ \t]*(?:on[ \t]+)?(?P<d>{_DATE})", re.I | re.M
)
_CURRENCY_CODE = re.compile(r"\b(USD|EUR|GBP|CAD|JPY|CHF|AUD)\b")
_SYMBOLS = {"€": "EUR", "£": "GBP", "¥": "JPY", "$": "USD"}
_TITLE = re.compile(r"^(?:tax\s+)?invoice\b|reminder|^[*=\-#]", re.I)

_HEADER = re.compile(
    r"(?=.*\b(?:description|item|service|article)\b)(?=.*\b(?:amount|total)\b)", re.I
)
_SUBTOTAL = re.compile(r"sub-?total|net amount", re.I)
_TOTAL = re.compile(r"\btotal\b|amount due|balance due", re.I)
_TAX = re.compile(r"\b(?:tax|taxes|vat|gst|hst)\b", re.I)
_ROW = re.compile(
    rf"^(?P<desc>\S.*?)\s{{2,}}(?P<qty>\d+(?:\.\d+)?)\s+(?P<unit>{_MONEY})\s+(?P<amount>{_MONEY})$"
)
_FLAT_ROW = re.compile(rf"^(?P<desc>\S.*?)\s{{2,}}(?P<amount>{_MONEY})$")
_TIMES_ROW = re.compile(
    rf"^(?P<qty>\d+(?:\.\d+)?)\s*x\s+(?P<desc>.+?)\s+@\s+(?P<unit>{_MONEY})\s*=\s*(?P<amount>{_MONEY})$"
)
_LAST_MONEY = re.compile(rf"({_MONEY})\s*$")


@dataclass(frozen=True, slots=True)
class Reading:
    """What the reader found: the invoice, and the subtotal a hasty reader might take as total."""

    invoice: Invoice
    subtotal: Decimal | None


def amount(text: str) -> Decimal:
    """`text` as a decimal: "$1,234.56", "1.234,56", "¥74,000", "-128.00".

    Raises:
        ValueError: no number in `text`.
    """
    raw = re.sub(r"[^\d,.\-]", "", text)
    sign = -1 if raw.startswith("-") else 1
    digits = raw.lstrip("-")
    if not re.search(r"\d", digits):
        raise ValueError(f"no amount in {text!r}")
    last_comma, last_dot = digits.rfind(","), digits.rfind(".")
    if last_comma > last_dot and len(digits) - last_comma - 1 in (1, 2):
        digits = digits.replace(".", "").replace(",", ".")  # 1.234,56
    else:
        digits = digits.replace(",", "")  # 1,234.56 and ¥74,000
    return sign * Decimal(digits)


def parse_date(text: str) -> dt.date:
    """A date in any of the forms the documents use (US order for slashes).

    Raises:
        ValueError: not a date in a known form.
    """
    text = text.strip().rstrip(".")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return dt.date.fromisoformat(text)
    if match := re.fullmatch(r"(\d{1,2})\.(\d{1,2})\.(\d{4})", text):
        return dt.date(int(match[3]), int(match[2]), int(match[1]))
    if match := re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text):
        return dt.date(int(match[3]), int(match[1]), int(match[2]))
    if match := re.fullmatch(r"([A-Za-z]+)\.? (\d{1,2}), (\d{4})", text):
        return dt.date(int(match[3]), _MONTHS[match[1].lower()], int(match[2]))
    if match := re.fullmatch(r"(\d{1,2}) ([A-Za-z]+)\.? (\d{4})", text):
        return dt.date(int(match[3]), _MONTHS[match[2].lower()], int(match[1]))
    raise ValueError(f"not a date: {text!r}")


def read_invoice(text: str) -> Reading:
    """Read the fields of one plain-text invoice.

    Raises:
        ValueError: a required field (invoice number, issue date, total) is not in the text.
    """
    lines = [line.replace("|", "  ").rstrip() for line in text.splitlines()]
    flat = "\n".join(lines)
    items, summary = _table(lines)
    subtotal = _summary(summary, _SUBTOTAL)
    tax = _summary([line for line in summary if not _TOTAL.search(line)], _TAX)
    total = _summary([line for line in summary if not _SUBTOTAL.search(line)], _TOTAL)
    number, issued = _INVOICE_NUMBER.search(flat), _ISSUED.search(flat)
    if number is None or issued is None or total is None:
        missing = [
            name
            for name, found in (("invoice number", number), ("date", issued), ("total", total))
            if found is None
        ]
        raise ValueError(f"cannot read the {', '.join(missing)} of this invoice")
    due, po = _DUE.search(flat), _PO.search(flat)
    invoice = Invoice(
        vendor=_vendor(lines),
        invoice_number=number["v"],
        date=parse_date(issued["d"]),
        due_date=parse_date(due["d"]) if due else None,
        currency=_currency(flat),
        tax=float(tax or 0),
        total=float(total),
        po_number=po["v"] if po else None,
        line_items=items,
    )
    return Reading(invoice, subtotal)


def _vendor(lines: list[str]) -> str:
    for line in lines:
        stripped = line.strip()
        if stripped and not _TITLE.search(stripped):
            return stripped
    return "unknown vendor"


def _currency(text: str) -> str:
    code = _CURRENCY_CODE.search(text)
    if code is not None:
        return code[1]
    for symbol, currency in _SYMBOLS.items():
        if symbol in text:
            return currency
    return "USD"


def _table(lines: list[str]) -> tuple[list[LineItem], list[str]]:
    """The line items, and the summary lines after them (subtotal, tax, total...)."""
    items: list[LineItem] = []
    header = next((n for n, line in enumerate(lines) if _HEADER.search(line)), None)
    for line in lines:
        times = _TIMES_ROW.match(line.strip())
        if times is not None:
            items.append(_item(times["desc"], times["qty"], times["unit"], times["amount"]))
    if header is None:
        return items, [line for line in lines if _TOTAL.search(line) or _TAX.search(line)]
    rows = lines[header + 1 :]
    for index, line in enumerate(rows):
        stripped = line.strip()
        if _SUBTOTAL.search(stripped) or _TOTAL.search(stripped) or _TAX.search(stripped):
            return items, _block(rows[index:])
        row = _ROW.match(stripped)
        flat = _FLAT_ROW.match(stripped) if row is None else None
        if row is not None:
            items.append(_item(row["desc"], row["qty"], row["unit"], row["amount"]))
        elif flat is not None:
            items.append(_item(flat["desc"], "1", flat["amount"], flat["amount"]))
    return items, []


def _block(lines: list[str]) -> list[str]:
    """The lines up to the first blank one: the summary block, not the notes below it."""
    end = next((n for n, line in enumerate(lines) if not line.strip()), len(lines))
    return lines[:end]


def _item(description: str, quantity: str, unit: str, total: str) -> LineItem:
    description = re.sub(r"^\d+\s{2,}", "", description.strip())  # a position number
    description = " ".join(description.split())
    return LineItem(
        description=description,
        quantity=float(quantity),
        unit_price=float(amount(unit)),
        amount=float(amount(total)),
    )


def _summary(lines: list[str], label: re.Pattern[str]) -> Decimal | None:
    """The amount on the last summary line with this label."""
    found = None
    for line in lines:
        match = _LAST_MONEY.search(line)
        if label.search(line) and match is not None:
            found = amount(match[1])
    return found
