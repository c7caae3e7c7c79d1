"""How CPython's cyclic garbage collector behaves while runs are under way.

A run allocates a few objects per task that live until it ends (nodes, usage, events, results)
and creates almost no reference cycles (measured: none per task). The collector's work is then
wasted traversal: every full collection walks every object of the process — the graph, the
nodes, every module ever imported — and the youngest generation is collected every 700
allocations. That was 10 % of a 10,000-task run's CPU time and 25 % of a 100,000-task run's
(measured with `gc.callbacks`), most of it a few full collections; about 4 % now.

While at least one run is under way in the process:

- the objects that existed when the first run started (the graph, its nodes, the imports) are
  frozen (`gc.freeze()`): collections skip them. They are unfrozen when the last run ends, so
  whatever became garbage meanwhile is collected then;
- the youngest generation is collected every `YOUNG_THRESHOLD` net allocations instead of every
  700: short-lived objects die by reference counting before a collection ever sees them.

Runs that overlap (in one event loop or in several threads) share one setting; the last one to
end restores the thresholds the process had. A process that froze objects itself (its own
`gc.freeze()`) keeps them frozen: then only the threshold changes.

Where it applies: `build_nodes`, `Scheduler.run` and `result_of` — the three phases of a run that
make an object or more per task and keep them all.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["YOUNG_THRESHOLD", "during_run"]

YOUNG_THRESHOLD = 10_000
"""Net allocations between two collections of the youngest generation while a run is under way
(CPython's default is 700)."""

_lock = threading.Lock()
_active = 0
_saved: tuple[int, int, int] = (700, 10, 10)
_froze = False


@contextlib.contextmanager
def during_run() -> Iterator[None]:
    """The collector's policy for the duration of one run (see the module docstring)."""
    _enter()
    try:
        yield
    finally:
        _leave()


def _enter() -> None:
    global _active, _saved, _froze
    with _lock:
        _active += 1
        if _active > 1:
            return
        _saved = gc.get_threshold()
        _froze = gc.get_freeze_count() == 0
        if _froze:
            gc.freeze()
        gc.set_threshold(max(YOUNG_THRESHOLD, _saved[0]), _saved[1], _saved[2])


def _leave() -> None:
    global _active
    with _lock:
        _active -= 1
        if _active > 0:
            return
        gc.set_threshold(*_saved)
        if _froze:
            gc.unfreeze()
