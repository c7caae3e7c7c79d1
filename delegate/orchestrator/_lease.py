"""A run is owned: the process running it holds a lease in the store and renews it.

`resume` of a run whose lease is live is refused with `RunLeasedError` naming the owner (unless
`force=True`, for a lease the user knows is dead); a lease that expired — its process was killed,
its machine lost power — is taken over. The run's writer thread renews the lease (`renew_due`),
so a busy event loop does not let it lapse; a lease taken over by a forced resume ends this run.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from delegate.memory.records import RunRecord
    from delegate.memory.store import Store

__all__ = ["LEASE_SECONDS", "RunLease"]

LEASE_SECONDS = 30.0
"""How long a lease lasts without renewal: a killed run shows as stale this long after."""


@dataclass(slots=True, eq=False)
class RunLease:
    """This process's lease on one run. The methods block (database I/O): call them in a
    worker thread from async code."""

    store: Store
    run_id: str
    seconds: float = LEASE_SECONDS
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    renewed: float = 0.0  # time.monotonic() of the last renewal
    lost: bool = False

    def start(self, record: RunRecord) -> None:
        """Store the new run `record` and take it, in one transaction (see `Store.start_run`).

        Raises:
            RunExistsError: a run with this id is already in the store.
        """
        self.store.start_run(record, self.owner, seconds=self.seconds)
        self.renewed = time.monotonic()

    def acquire(self, *, force: bool = False) -> None:
        """Take the run (see `Store.acquire_lease`).

        Raises:
            RunLeasedError: another process's lease is live and `force` is False.
        """
        self.store.acquire_lease(self.run_id, self.owner, seconds=self.seconds, force=force)
        self.renewed = time.monotonic()

    def renew_due(self) -> bool:
        """Renew when a third of the lease has passed; False once the lease was taken over."""
        if self.lost:
            return False
        if time.monotonic() - self.renewed < self.seconds / 3:
            return True
        if not self.store.renew_lease(self.run_id, self.owner, seconds=self.seconds):
            self.lost = True
            return False
        self.renewed = time.monotonic()
        return True

    def release(self) -> None:
        """Give the run up (a run that ends gives it up in `Store.end_run`, with its last
        write)."""
        self.store.release_lease(self.run_id, self.owner)
