"""Budgets end to end: what the call gate adds per call, and how fast a deadline returns.

    .venv/bin/python benchmarks/budget_runs.py            # 5 repeats, median
    .venv/bin/python benchmarks/budget_runs.py --quick    # 1 repeat

Gate overhead: 10,000 independent tasks at 0 ms model latency (FunctionModel, max_concurrency 16),
without a store, run three ways: no budget at all (`max_calls=None`); a calls guard only (the
default is 500 calls, here 20,000 so that it never binds; no token counting); and a tokens + usd
budget large enough never to bind (every call counts its input tokens, plans its allowance,
reserves and settles). Then the same budget on a durable run (a SQLite file), where each call
waits until its reservation is committed before it is sent, against the same run without a
budget. Reported: µs per task, and the differences.

Deadline grace: a run with `Budget(seconds=0.2)` whose 50 tasks each take 30 s; reported is how
long after the deadline `execute` returned (target: < 100 ms), with every task cancelled.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence

import anyio

from delegate import Agent, Budget, Orchestrator, TaskGraph
from delegate.testing import FunctionModel

TASKS = 10_000
_MODES = ("none", "calls", "sized", "durable", "durable-sized")
DEADLINE = 0.2


def _graph(agent: Agent, tasks: int) -> TaskGraph:
    graph = TaskGraph()
    for n in range(tasks):
        graph.add(f"t{n}", agent=agent, prompt=f"Summarize item {n} in one line.")
    return graph


async def _gate(mode: str) -> float:
    model = FunctionModel(
        lambda request: "done", input_price=0.15, output_price=0.6, name="openai/gpt-4o-mini"
    )
    agent = Agent("worker", model, instructions="Be brief.", max_output_tokens=64)
    graph = _graph(agent, TASKS)
    if mode == "none":
        orchestrator = Orchestrator(max_calls=None, memory=None)
        budget = None
    elif mode == "calls":
        orchestrator = Orchestrator(max_calls=2 * TASKS, memory=None)
        budget = None
    elif mode == "sized":
        orchestrator = Orchestrator(max_calls=None, memory=None)
        budget = Budget(tokens=10**9, usd=10_000.0)
    else:  # "durable" / "durable-sized": a store, where a budget holds each call for a commit
        store = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
        orchestrator = Orchestrator(max_calls=None, memory=store)
        budget = Budget(tokens=10**9, usd=10_000.0) if mode == "durable-sized" else None
    started = time.perf_counter()
    result = await orchestrator.execute(graph, budget=budget)
    elapsed = time.perf_counter() - started
    if result.status != "succeeded":
        raise RuntimeError(f"benchmark run {mode} ended {result.status}")
    return elapsed / TASKS * 1e6


async def _deadline() -> float:
    model = FunctionModel(lambda request: "late", latency=30.0)
    agent = Agent("slow", model)
    orchestrator = Orchestrator(max_concurrency=64)
    started = time.perf_counter()
    result = await orchestrator.execute(_graph(agent, 50), budget=Budget(seconds=DEADLINE))
    elapsed = time.perf_counter() - started
    if any(task.status != "cancelled" for task in result.tasks.values()):
        raise RuntimeError("a task was not cancelled at the deadline")
    return (elapsed - DEADLINE) * 1e3


async def measure(repeats: int) -> dict[str, float]:
    await _gate("none")  # warm-up: loads the tokenizer
    results: dict[str, list[float]] = {mode: [] for mode in (*_MODES, "grace")}
    for _ in range(repeats):
        for mode in _MODES:
            results[mode].append(await _gate(mode))
        results["grace"].append(await _deadline())
    return {key: statistics.median(values) for key, values in results.items()}


def report(medians: dict[str, float], repeats: int) -> str:
    base = medians["none"]
    lines = [
        f"median of {repeats} run(s); {TASKS:,} tasks at 0 ms, FunctionModel, concurrency 16",
        "",
        "| run | µs per task | added by the gate |",
        "|---|---:|---:|",
        f"| no budget (`max_calls=None`) | {base:.1f} | — |",
        f"| calls guard only (the default) | {medians['calls']:.1f} | "
        f"{medians['calls'] - base:+.1f} |",
        f"| tokens + usd budget (count, plan, reserve, settle) | {medians['sized']:.1f} | "
        f"{medians['sized'] - base:+.1f} |",
        "",
        "| durable run (a SQLite file) | µs per task | added by the budget |",
        "|---|---:|---:|",
        f"| no budget | {medians['durable']:.1f} | — |",
        f"| tokens + usd budget: each reservation committed before its call | "
        f"{medians['durable-sized']:.1f} | {medians['durable-sized'] - medians['durable']:+.1f} |",
        "",
        "| deadline | returned after the deadline | target |",
        "|---|---:|---|",
        f"| `Budget(seconds={DEADLINE})`, 50 tasks of 30 s | {medians['grace']:.1f} ms | "
        f"< 100 ms {'PASS' if medians['grace'] < 100 else 'MISS'} |",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one repeat instead of five")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 5
    print(report(anyio.run(measure, repeats), repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
