"""Daily sales reports."""

from __future__ import annotations

import json
from pathlib import Path


def load_settings(path: Path) -> dict[str, str]:
    """The report settings stored as JSON at `path`."""
    with path.open(encoding="utf-8") as handle:
        return dict(json.load(handle))


def daily_total(sales: list[dict[str, float]]) -> float:
    """The sum of the day's sales."""
    return sum(sale["amount"] for sale in sales)
