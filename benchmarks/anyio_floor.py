"""The graphs of `scheduler.py` as plain data, and the same graphs run on bare anyio: the floor.

This module imports anyio and nothing of delegate, so a fresh process running it
(`python benchmarks/anyio_floor.py SHAPE TASKS`) measures the floor's own peak memory:

    .venv/bin/python benchmarks/anyio_floor.py layered 200 --latency 0.05
    .venv/bin/python benchmarks/anyio_floor.py wide 100000

A shape is a dict from task id to the ids it depends on, in insertion order (which is a
topological order). The floor runs a task per node, started the moment its last dependency ends,
that only sleeps its latency (0: one checkpoint): no prompts, agents, accounting or results. What
is left is the event loop's own cost (task spawns, timer resolution), which any scheduler on this
machine stands on.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time

import anyio
import anyio.lowlevel

Shape = dict[str, list[str]]

SEED = 20240601


def wide(width: int) -> Shape:
    """1 → `width` → 1: a root, `width` tasks that each depend on it, one sink depending on all."""
    shape: Shape = {"root": []}
    for i in range(width):
        shape[f"mid{i}"] = ["root"]
    shape["sink"] = [f"mid{i}" for i in range(width)]
    return shape


def layered(layers: int, width: int, seed: int = SEED) -> Shape:
    """`layers` × `width`; each task after layer 0 depends on 2 random tasks of the layer before."""
    rng = random.Random(seed)
    shape: Shape = {}
    previous = [f"L0_{i}" for i in range(width)]
    for task_id in previous:
        shape[task_id] = []
    for layer in range(1, layers):
        current = [f"L{layer}_{i}" for i in range(width)]
        for task_id in current:
            shape[task_id] = rng.sample(previous, 2)
        previous = current
    return shape


def chain(length: int) -> Shape:
    """`length` tasks in sequence."""
    shape: Shape = {}
    for i in range(length):
        shape[f"c{i}"] = [f"c{i - 1}"] if i else []
    return shape


def build(name: str, tasks: int) -> Shape:
    """The shape `name` with `tasks` tasks: wide (1 → tasks-2 → 1), layered (layers of 20 up to
    200 tasks, of 1,000 beyond), chain."""
    if name == "wide":
        return wide(tasks - 2)
    if name == "layered":
        width = 20 if tasks <= 200 else 1000
        return layered(tasks // width, width)
    if name == "chain":
        return chain(tasks)
    raise SystemExit(f"unknown shape {name!r}: wide, layered or chain")


def critical_path(shape: Shape, latency: float) -> float:
    """The longest sum of latencies along a dependency path (every task takes `latency`)."""
    finish: dict[str, float] = {}
    for task_id, deps in shape.items():
        finish[task_id] = max((finish[d] for d in deps), default=0.0) + latency
    return max(finish.values(), default=0.0)


async def run_floor(shape: Shape, latency: float) -> None:
    """The shape on bare anyio: a task per node, spawned when its last dependency ends."""
    pending = {task_id: len(deps) for task_id, deps in shape.items()}
    children: dict[str, list[str]] = {task_id: [] for task_id in shape}
    for task_id, deps in shape.items():
        for dep in deps:
            children[dep].append(task_id)

    async with anyio.create_task_group() as tg:

        async def run(task_id: str) -> None:
            if latency > 0:
                await anyio.sleep(latency)
            else:
                await anyio.lowlevel.checkpoint()
            for child in children[task_id]:
                pending[child] -= 1
                if pending[child] == 0:
                    tg.start_soon(run, child)

        for task_id, count in pending.items():
            if count == 0:
                tg.start_soon(run, task_id)


async def timed_floor(shape: Shape, latency: float) -> tuple[float, float]:
    """Wall and CPU seconds of one floor run."""
    gc.collect()
    cpu, started = time.process_time(), time.perf_counter()
    await run_floor(shape, latency)
    return time.perf_counter() - started, time.process_time() - cpu


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB: `VmHWM` on Linux.

    Unlike `getrusage().ru_maxrss`, which Linux carries over from the parent across fork and exec,
    `VmHWM` starts afresh at exec, so a child process reports its own peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description="one floor run in this process, as JSON")
    parser.add_argument("shape", choices=("wide", "layered", "chain"))
    parser.add_argument("tasks", type=int)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    shape = build(args.shape, args.tasks)
    wall, cpu = anyio.run(timed_floor, shape, args.latency)
    print(
        json.dumps(
            {"tasks": len(shape), "seconds": wall, "cpu_seconds": cpu, "peak_rss_mb": peak_rss_mb()}
        )
    )


if __name__ == "__main__":
    main()
