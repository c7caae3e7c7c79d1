"""A run of instant tasks that is killed mid-way, for `test_durable_writer.py`.

    python _durable_kill_run.py DB_URL PROGRESS_FILE TASKS

Every task is an async function that finishes without ever yielding to the event loop, and
appends its id to PROGRESS_FILE (unbuffered, so a SIGKILL keeps it) just before it returns: the
file says which tasks finished, the store says which were written.
"""

from __future__ import annotations

import os
import sys

from delegate import Orchestrator, TaskContext, TaskGraph

_progress = -1


async def instant(context: TaskContext) -> str:
    os.write(_progress, f"{context.task_id}\n".encode())
    return context.task_id


def main(db: str, progress: str, tasks: str) -> None:
    global _progress
    _progress = os.open(progress, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    graph = TaskGraph()
    for index in range(int(tasks)):
        graph.add(f"t{index}", fn=instant)
    Orchestrator(memory=db, max_concurrency=16).execute_sync(graph, run_id="instant")


if __name__ == "__main__":
    main(*sys.argv[1:])
