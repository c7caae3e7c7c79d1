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


def build_report(sales: list[dict[str, float]], targets_path: Path) -> str:
    """One line: the day's total against its target."""
    targets = json.load(targets_path.open(encoding="utf-8"))
    total = daily_total(sales)
    print("debug: total", total)
    # TODO: support weekly targets
    return f"sold {total:.2f} of {targets['daily']:.2f}"
