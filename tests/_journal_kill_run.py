"""A run whose task votes five times, killed after three samples answered, for
`test_journal_kill.py`.

    python _journal_kill_run.py run|resume DB_URL CALLS_FILE

Every model call appends "sent" to CALLS_FILE when it reaches the fake model and "answered"
when it answers (unbuffered, so a SIGKILL keeps both): an account of the calls independent of
delegate's. In `run`, the first three calls answer and the others never do, so the test can
kill the process once the three answers are in the store; `resume` finishes the run (every call
answers) and prints its result as JSON.
"""

from __future__ import annotations

import json
import os
import sys

import anyio

from delegate import Agent, Orchestrator, TaskGraph
from delegate.agents.models import ModelRequest
from delegate.testing import FunctionModel

PRICE = 1.0  # USD per million tokens, in and out


def main(mode: str, db: str, calls: str) -> None:
    log = os.open(calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sent = 0

    async def answer(request: ModelRequest) -> str:
        nonlocal sent
        sent += 1
        os.write(log, b"sent\n")
        if mode == "run" and sent > 3:
            await anyio.sleep_forever()  # in flight when the process is killed
        os.write(log, b"answered\n")
        return "42"

    model = FunctionModel(answer, input_price=PRICE, output_price=PRICE, name="voter")
    worker = Agent("worker", model)
    orchestrator = Orchestrator(workers=[worker], memory=db)
    if mode == "run":
        graph = TaskGraph()
        graph.add("vote", agent=worker, prompt="What is six times seven?", votes=5)
        orchestrator.execute_sync(graph, run_id="killed")
        return
    result = orchestrator.resume_sync("killed")
    task = result.tasks["vote"]
    print(
        json.dumps(
            {
                "status": result.status,
                "output": result.output,
                "calls": result.usage.calls,
                "cache_hits": result.usage.cache_hits,
                "cost_usd": result.usage.cost_usd,
                "unconfirmed_usd": result.usage.unconfirmed_usd,
                "task_calls": task.usage.calls,
                "task_cost_usd": task.usage.cost_usd,
                "task_unconfirmed_usd": task.usage.unconfirmed_usd,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
