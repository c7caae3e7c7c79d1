"""Stores opened at the same time from several threads each get their own, migrated database."""

from __future__ import annotations

import threading

from delegate.memory.records import RunRecord
from delegate.memory.store import Store


def test_fresh_stores_opened_at_once_from_threads_are_each_migrated_once() -> None:
    # Alembic's migration context is a process-wide global: without a lock, two threads
    # migrating two fresh databases ran each other's steps ("table tasks already exists",
    # KeyError('config'), and sqlite3 misuse that could crash the process).
    errors: list[BaseException] = []
    stores: list[Store] = []
    start = threading.Barrier(6)
    lock = threading.Lock()

    def open_some() -> None:
        start.wait()
        for _ in range(5):
            try:
                store = Store.open(":memory:")
            except BaseException as exc:  # every failure is the finding
                errors.append(exc)
                continue
            with lock:
                stores.append(store)

    threads = [threading.Thread(target=open_some) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert len(stores) == 30
        # Each is its own database: a run created in one is not seen by another.
        stores[0].create_run(RunRecord(id="r1", graph={"tasks": []}))
        assert stores[0].get_run("r1") is not None
        assert [store.get_run("r1") for store in stores[1:]] == [None] * 29
    finally:
        for store in stores:
            store.close()
