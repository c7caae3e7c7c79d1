"""A budgeted run against a fake provider, for `test_wire_budget.py`'s kill-and-resume test.

    python _budget_kill_run.py run|resume BASE_URL DB_URL USD

`run` starts run "killed" (30 tasks, four at a time, under `Budget(usd=USD)`), and is meant to be
killed with SIGKILL while calls are in flight; `resume` finishes it and prints the run's reported
cost as its last word.
"""

from __future__ import annotations

import sys

from delegate import Agent, Budget, LiteLLMModel, Orchestrator, RetryPolicy, TaskGraph


def main(mode: str, base_url: str, db: str, usd: str) -> None:
    model = LiteLLMModel("openai/gpt-4o-mini", api_base=base_url, api_key="sk-test-kill-key")
    agent = Agent("w", model, max_output_tokens=400)
    orchestrator = Orchestrator(
        workers=[agent],
        memory=db,
        max_concurrency=4,
        retry=RetryPolicy(max_retries=1, base_delay=0.01, max_delay=0.05),
    )
    if mode == "run":
        graph = TaskGraph()
        for index in range(30):
            graph.add(f"t{index}", agent=agent, prompt=f"Task {index}: say hello.")
        orchestrator.execute_sync(graph, budget=Budget(usd=float(usd)), run_id="killed")
        return
    result = orchestrator.resume_sync("killed")
    print(result.status, result.usage.calls, result.usage.cost_usd)


if __name__ == "__main__":
    main(*sys.argv[1:])
