"""Tracing benchmark: the cost per task of OpenTelemetry spans, on against off, in one run.

    .venv/bin/python benchmarks/tracing.py             # 5 repeats of 10 runs each, median
    .venv/bin/python benchmarks/tracing.py --repeats 9 --runs 20 --json out.json

The graph is the scheduler benchmark's 200-task wide one (1 → 200 → 1, 202 tasks, no store) of
Agents on `delegate.testing.FunctionModel` at 0 ms: what is measured is delegate's own work per
task. Three settings, interleaved in every repeat so that a noisy neighbour moves them alike:

- off: `Orchestrator()` (no hook, no event handler: the default);
- batch: `tracing=` a private `TracerProvider` with a `BatchSpanProcessor` into the SDK's
  `InMemorySpanExporter` (what an OTLP setup does, without the network);
- content: the same with `Tracing(capture_content=True)` (prompts and answers, redacted).

Each run makes 2 spans per task (the task and its model call) and one for the run. Printed: µs
per task for each setting (median), and the difference on against off.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio_floor
from scheduler import SMALL, delegate_graph

TASKS = SMALL["wide"]


def _provider() -> tuple[Any, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    # As an OTLP setup sends them: in batches, from the processor's thread.
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=1 << 16))
    return provider, exporter


async def _measure(repeats: int, runs: int) -> dict[str, Any]:
    from delegate import Orchestrator, Tracing

    graph = delegate_graph(anyio_floor.build("wide", TASKS), 0.0)
    provider, exporter = _provider()
    settings: dict[str, Callable[[], Any]] = {
        "off": lambda: Orchestrator(memory=None, max_concurrency=16),
        "batch": lambda: Orchestrator(memory=None, max_concurrency=16, tracing=provider),
        "content": lambda: Orchestrator(
            memory=None,
            max_concurrency=16,
            tracing=Tracing(provider=provider, capture_content=True),
        ),
    }
    orchestrators = {name: make() for name, make in settings.items()}
    timings: dict[str, list[float]] = {name: [] for name in settings}
    for orch in orchestrators.values():  # warm-up, not counted
        await orch.execute(graph)
    for _ in range(repeats):
        for name, orch in orchestrators.items():
            for task in graph:
                task.agent.model.requests.clear()
            provider.force_flush()
            exporter.clear()
            gc.collect()
            started = time.perf_counter()
            for _ in range(runs):
                result = await orch.execute(graph)
                if result.status != "succeeded":
                    raise SystemExit(f"benchmark run did not succeed: {result.error}")
            timings[name].append((time.perf_counter() - started) * 1e6 / (runs * TASKS))
    provider.force_flush()
    spans = len(exporter.get_finished_spans())
    provider.shutdown()
    medians = {name: statistics.median(values) for name, values in timings.items()}
    return {
        "tasks": TASKS,
        "runs": runs,
        "repeats": repeats,
        "us_per_task": medians,
        "all": timings,
        "spans_last_repeat": spans,
        "spans_per_run": spans / runs,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10, help="runs timed together per repeat")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers to FILE")
    args = parser.parse_args(argv)
    found = anyio.run(_measure, args.repeats, args.runs)
    off = found["us_per_task"]["off"]
    print(f"{TASKS}-task wide graph, no store, 0 ms calls; median of {args.repeats} × {args.runs}")
    print(f"{'setting':<10}{'µs/task':>10}{'vs off':>10}")
    for name, value in found["us_per_task"].items():
        extra = "" if name == "off" else f"+{value - off:.0f}"
        print(f"{name:<10}{value:>10.0f}{extra:>10}")
    print(f"spans per run: {found['spans_per_run']:.0f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(found, out, indent=2)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
