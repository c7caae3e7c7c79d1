"""Stock levels and prices of the shop's items."""

from __future__ import annotations


def low_stock(levels: dict[str, int], minimum: int) -> list[str]:
    """The items whose stock is below `minimum`, alphabetically."""
    return sorted(item for item, level in levels.items() if level < minimum)


def total_value(levels: dict[str, int], prices: dict[str, float]) -> float:
    """What the stock is worth at current prices."""
    return sum(level * prices[item] for item, level in levels.items())
