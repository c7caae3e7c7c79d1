"""Email notifications."""

from __future__ import annotations

from typing import Protocol


class Mailer(Protocol):
    """Anything that sends email."""

    async def send(self, to: str, subject: str, body: str) -> None:
        """Send one email."""


async def send_receipt(mailer: Mailer, to: str, order_id: int) -> None:
    """Email the receipt of an order."""
    await mailer.send(to, f"Receipt for order {order_id}", "Thank you for your order.")
