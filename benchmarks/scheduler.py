"""Scheduler benchmark: makespan against the critical path, overhead per task, peak memory.

    .venv/bin/python benchmarks/scheduler.py              # full run (3 repeats, median)
    .venv/bin/python benchmarks/scheduler.py --quick      # one repeat
    .venv/bin/python benchmarks/scheduler.py --markdown   # also print tables for the README
    .venv/bin/python benchmarks/scheduler.py --json results.json

Everything goes through the public API: `TaskGraph.add`, `Orchestrator.execute`, Agents on
`delegate.testing.FunctionModel`. Each task's `weight=` is its expected latency, as a user with
estimates would set it, so the ready queue's critical-path-first order is meaningful. The ideal
makespan is computed here, independently of `TaskGraph.critical_path`, as the longest sum of
latencies along a dependency path. Memory is measured in fresh subprocesses
(`--child NAME`) so earlier scenarios do not inflate the peak.

Targets (issue 2) are printed next to the results for information; the exit status is 0 either way.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from delegate import (
    Agent,
    ModelRequest,
    ModelResponse,
    Orchestrator,
    Price,
    Task,
    TaskContext,
    TaskGraph,
    Usage,
)
from delegate.testing import FunctionModel

LATENCY = 0.050  # seconds per model call in the makespan scenarios
STRAGGLER_LATENCY = 0.500
MAKESPAN_CONCURRENCY = 256  # more than the widest layer (200): slots never limit the makespan
OVERHEAD_CONCURRENCY = 16  # the orchestrator's default
OVERHEAD_TASKS = 10_000
SEED = 20240601

RATIO_TARGET = {"wide": 1.10, "layered": 1.05, "chain": 1.05, "straggler": 1.05}
OVERHEAD_TARGET_US = 100.0
RSS_TARGET_MB = 200.0

# A graph and each task's latency (the latencies, not the weights, define the ideal makespan).
Built = tuple[TaskGraph, dict[str, float]]


# --- workers ------------------------------------------------------------------------------------


class FixedModel:
    """The smallest `Model`: answers at once with one prebuilt response, no tokenizer, no sleep.

    With it, the time per task is delegate's own: graph, scheduler, agent, result.
    """

    _response = ModelResponse(
        text="ok", usage=Usage(input_tokens=12, output_tokens=1, calls=1), model="fixed"
    )

    @property
    def name(self) -> str:
        return "fixed"

    @property
    def price(self) -> Price | None:
        return None

    async def request(self, request: ModelRequest) -> ModelResponse:
        return self._response


def _answer(request: ModelRequest) -> str:
    return "ok"


def function_agent(name: str, latency: float) -> Agent:
    """An agent on `FunctionModel`: sleeps `latency`, counts tokens with tiktoken, prices usage."""
    return Agent(name, FunctionModel(_answer, latency=latency, name="gpt-4o-mini"))


async def _async_fn(context: TaskContext) -> str:
    return "ok"


def _reset(graph: TaskGraph) -> None:
    # FunctionModel records every request; drop them so repeats do not accumulate memory.
    for task in graph:
        agent = task.agent
        if isinstance(agent, Agent) and isinstance(agent.model, FunctionModel):
            agent.model.requests.clear()


# --- graphs ---------------------------------------------------------------------------------------


def _add(
    g: TaskGraph,
    lat: dict[str, float],
    task_id: str,
    agent: Agent,
    latency: float,
    deps: Sequence[Task] = (),
) -> Task:
    lat[task_id] = latency
    # weight=latency: the expected duration, so the ready queue runs the longest path first.
    return g.add(
        task_id, agent=agent, prompt=f"Do step {task_id}.", deps=deps, weight=latency or 1.0
    )


def build_wide(width: int = 200, latency: float = LATENCY) -> Built:
    """1 → width → 1: a root, `width` tasks that each depend on it, one sink depending on all."""
    agent = function_agent("worker", latency)
    g, lat = TaskGraph(), dict[str, float]()
    root = _add(g, lat, "root", agent, latency)
    mid = [_add(g, lat, f"mid{i}", agent, latency, [root]) for i in range(width)]
    _add(g, lat, "sink", agent, latency, mid)
    return g, lat


def build_layered(
    layers: int = 10, width: int = 20, latency: float = LATENCY, seed: int = SEED
) -> Built:
    """`layers` × `width`; each node after layer 0 depends on 2 random nodes of the layer before."""
    agent = function_agent("worker", latency)
    rng = random.Random(seed)
    g, lat = TaskGraph(), dict[str, float]()
    prev = [_add(g, lat, f"L0_{i}", agent, latency) for i in range(width)]
    for layer in range(1, layers):
        prev = [
            _add(g, lat, f"L{layer}_{i}", agent, latency, rng.sample(prev, 2)) for i in range(width)
        ]
    return g, lat


def build_chain(length: int = 100, latency: float = LATENCY) -> Built:
    """`length` tasks in sequence."""
    agent = function_agent("worker", latency)
    g, lat = TaskGraph(), dict[str, float]()
    prev: list[Task] = []
    for i in range(length):
        prev = [_add(g, lat, f"c{i}", agent, latency, prev)]
    return g, lat


def build_straggler(layers: int = 10, width: int = 20, latency: float = LATENCY) -> Built:
    """The layered graph plus one slow task that feeds only the last layer.

    Exact construction: the 10 × 20 layered graph above (same seed, 50 ms per task), and one extra
    task `straggler` (500 ms, its own agent) that depends on `L0_0` and is an extra dependency of
    every task of the last layer `L9_*`. Its path L0_0 → straggler → L9_i is 50 + 500 + 50 = 600 ms,
    longer than the layers' 10 × 50 = 500 ms, so it is the critical path; layers 1–8 must run
    while it is in flight. (A superstep scheduler would hold layer 2 for the whole 500 ms.)
    """
    agent = function_agent("worker", latency)
    slow = function_agent("slow", STRAGGLER_LATENCY)
    rng = random.Random(SEED)
    g, lat = TaskGraph(), dict[str, float]()
    prev = [_add(g, lat, f"L0_{i}", agent, latency) for i in range(width)]
    straggler = _add(g, lat, "straggler", slow, STRAGGLER_LATENCY, [prev[0]])
    for layer in range(1, layers):
        last = layer == layers - 1
        prev = [
            _add(
                g,
                lat,
                f"L{layer}_{i}",
                agent,
                latency,
                [*rng.sample(prev, 2), straggler] if last else rng.sample(prev, 2),
            )
            for i in range(width)
        ]
    return g, lat


def ideal_makespan(graph: TaskGraph, latency: dict[str, float]) -> float:
    """The longest sum of latencies along a dependency path (graph order is topological)."""
    finish: dict[str, float] = {}
    for task in graph:
        start = max((finish[d] for d in task.deps), default=0.0)
        finish[task.id] = start + latency[task.id]
    return max(finish.values(), default=0.0)


def overhead_graph(shape: str, worker: str, n: int = OVERHEAD_TASKS) -> TaskGraph:
    """`n` tasks at 0 ms: `wide` (all independent) or `fan` (1 → n-2 → 1)."""
    g = TaskGraph()
    if worker == "fn":

        def add(task_id: str, deps: Sequence[Task]) -> Task:
            return g.add(task_id, fn=_async_fn, deps=deps)

    else:
        model = FixedModel() if worker == "fixed" else FunctionModel(_answer, name="gpt-4o-mini")
        agent = Agent("worker", model)

        def add(task_id: str, deps: Sequence[Task]) -> Task:
            return g.add(task_id, agent=agent, prompt=f"Do step {task_id}.", deps=deps)

    if shape == "wide":
        for i in range(n):
            add(f"t{i}", ())
    else:
        root = add("root", ())
        mid = [add(f"mid{i}", [root]) for i in range(n - 2)]
        add("sink", mid)
    return g


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class MakespanResult:
    graph: str
    tasks: int
    makespan_s: float
    ideal_s: float
    ratio: float
    floor_ratio: float
    target: float
    passed: bool
    runs_s: list[float]


@dataclass
class OverheadResult:
    scenario: str
    tasks: int
    us_per_task: float
    cpu_us_per_task: float
    target_us: float | None
    passed: bool | None
    runs_us: list[float]


@dataclass
class MemoryResult:
    scenario: str
    tasks: int
    peak_rss_mb: float
    target_mb: float | None
    passed: bool | None


async def _timed(orch: Orchestrator, graph: TaskGraph) -> float:
    return (await _timed_cpu(orch, graph))[0]


async def _timed_cpu(orch: Orchestrator, graph: TaskGraph) -> tuple[float, float]:
    """Wall and CPU seconds of one run (CPU time is what other processes cannot inflate)."""
    _reset(graph)
    gc.collect()
    cpu, started = time.process_time(), time.perf_counter()
    result = await orch.execute(graph)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if result.status != "succeeded":
        raise SystemExit(f"benchmark run did not succeed: {result.status} {result.failed}")
    return elapsed, cpu


async def _timed_floor(run: Callable[..., Awaitable[None]], *args: Any) -> float:
    return (await _timed_floor_cpu(run, *args))[0]


async def _timed_floor_cpu(run: Callable[..., Awaitable[None]], *args: Any) -> tuple[float, float]:
    gc.collect()
    cpu, started = time.process_time(), time.perf_counter()
    await run(*args)
    return time.perf_counter() - started, time.process_time() - cpu


async def _warm_up() -> None:
    # The first FunctionModel call loads tiktoken's encoding (~1 s); keep it out of every timing.
    g = TaskGraph()
    g.add("warm", agent=function_agent("warm", 0.0), prompt="hello")
    await Orchestrator().execute(g)


async def anyio_floor(graph: TaskGraph, latency: dict[str, float]) -> None:
    """The same graph on bare anyio: a task per node, started when its last dependency ends.

    No prompts, agents, accounting or results: what is left is the event loop's own cost (task
    spawns, timer resolution), the floor any scheduler on this machine stands on.
    """
    pending = {task.id: len(task.deps) for task in graph}
    children: dict[str, list[str]] = {task.id: [] for task in graph}
    for task in graph:
        for dep in task.deps:
            children[dep].append(task.id)

    async with anyio.create_task_group() as tg:

        async def run(task_id: str) -> None:
            await anyio.sleep(latency[task_id])
            for child in children[task_id]:
                pending[child] -= 1
                if pending[child] == 0:
                    tg.start_soon(run, child)

        for task_id, count in pending.items():
            if count == 0:
                tg.start_soon(run, task_id)


async def measure_makespans(repeats: int) -> list[MakespanResult]:
    builders: dict[str, Callable[[], Built]] = {
        "wide": build_wide,
        "layered": build_layered,
        "chain": build_chain,
        "straggler": build_straggler,
    }
    results = []
    for name, build in builders.items():
        graph, latency = build()
        orch = Orchestrator(max_concurrency=MAKESPAN_CONCURRENCY, memory=MEMORY)
        await _timed(orch, graph)  # warm-up run, not counted
        runs = [await _timed(orch, graph) for _ in range(repeats)]
        floor = [await _timed_floor(anyio_floor, graph, latency) for _ in range(repeats)]
        makespan = statistics.median(runs)
        ideal = ideal_makespan(graph, latency)
        ratio = makespan / ideal
        target = RATIO_TARGET[name]
        results.append(
            MakespanResult(
                name,
                len(graph),
                makespan,
                ideal,
                ratio,
                statistics.median(floor) / ideal,
                target,
                ratio <= target,
                runs,
            )
        )
        _progress(f"makespan {name}: {makespan:.3f} s / {ideal:.3f} s = {ratio:.3f}")
    return results


OVERHEAD_SCENARIOS: dict[str, tuple[str, str]] = {
    "(a) FunctionModel agent, 10k independent": ("wide", "function"),
    "(a) FunctionModel agent, 1 → 9,998 → 1": ("fan", "function"),
    "(b) fixed-response Model agent, 10k independent": ("wide", "fixed"),
    "(b) fixed-response Model agent, 1 → 9,998 → 1": ("fan", "fixed"),
    "(c) async fn= task, 10k independent": ("wide", "fn"),
    "(c) async fn= task, 1 → 9,998 → 1": ("fan", "fn"),
}
# References on bare anyio, no delegate: what the event loop itself costs per item.
SPAWN_REFERENCE = "bare anyio: a task per item + CapacityLimiter(16)"
POOL_REFERENCE = "bare anyio: 16 workers pulling items from a stream"


async def spawn_reference(n: int = OVERHEAD_TASKS) -> None:
    """A task per item, all spawned up front, at most 16 past the limiter: the naive fan-out."""
    limiter = anyio.CapacityLimiter(OVERHEAD_CONCURRENCY)

    async def one() -> None:
        async with limiter:
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)


async def pool_reference(n: int = OVERHEAD_TASKS) -> None:
    """A fixed pool of 16 workers reading items from a memory stream: delegate's shape, empty."""
    send, receive = anyio.create_memory_object_stream[int](n)
    for item in range(n):
        send.send_nowait(item)
    send.close()

    async def worker() -> None:
        async for _ in receive:
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for _ in range(OVERHEAD_CONCURRENCY):
            tg.start_soon(worker)


def _per_task_us(runs: list[tuple[float, float]], tasks: int) -> tuple[float, float]:
    wall = statistics.median(wall for wall, _ in runs)
    cpu = statistics.median(cpu for _, cpu in runs)
    return wall * 1e6 / tasks, cpu * 1e6 / tasks


async def measure_overheads(repeats: int) -> list[OverheadResult]:
    results = []
    for label, (shape, worker) in OVERHEAD_SCENARIOS.items():
        graph = overhead_graph(shape, worker)
        orch = Orchestrator(max_concurrency=OVERHEAD_CONCURRENCY, memory=MEMORY)
        await _timed(orch, graph)  # warm-up run, not counted
        runs = [await _timed_cpu(orch, graph) for _ in range(repeats)]
        us, cpu_us = _per_task_us(runs, len(graph))
        results.append(
            OverheadResult(
                label,
                len(graph),
                us,
                cpu_us,
                OVERHEAD_TARGET_US,
                us <= OVERHEAD_TARGET_US,
                [wall * 1e6 / len(graph) for wall, _ in runs],
            )
        )
        _progress(f"overhead {label}: {us:.1f} µs/task")
    for label, reference in ((SPAWN_REFERENCE, spawn_reference), (POOL_REFERENCE, pool_reference)):
        await _timed_floor(reference)
        runs = [await _timed_floor_cpu(reference) for _ in range(repeats)]
        us, cpu_us = _per_task_us(runs, OVERHEAD_TASKS)
        walls = [wall * 1e6 / OVERHEAD_TASKS for wall, _ in runs]
        results.append(OverheadResult(label, OVERHEAD_TASKS, us, cpu_us, None, None, walls))
        _progress(f"overhead {label}: {us:.1f} µs/task")
    return results


# --- memory, each in a fresh process --------------------------------------------------------------

MEMORY_SCENARIOS: dict[str, tuple[str, int]] = {
    "import": ("import delegate only", 0),
    "baseline": ("import delegate + tokenizer loaded (1-task run)", 1),
    "rss10k-wide": ("10k independent tasks, FunctionModel, 0 ms", OVERHEAD_TASKS),
    "rss10k-layered": ("10k tasks, 100 layers × 100, 2 deps each, FunctionModel, 0 ms", 10_000),
}


def _child_graph(name: str) -> TaskGraph | None:
    if name == "rss10k-wide":
        return overhead_graph("wide", "function")
    if name == "rss10k-layered":
        return build_layered(layers=100, width=100, latency=0.0)[0]
    return None


def run_child(name: str) -> None:
    """Run one memory scenario in this (fresh) process and print its peak RSS as JSON."""
    if name not in MEMORY_SCENARIOS:
        raise SystemExit(f"unknown child scenario {name!r}; one of {', '.join(MEMORY_SCENARIOS)}")

    async def main() -> None:
        if name == "import":
            return
        await _warm_up()  # the 1-task run of "baseline"; loads the tokenizer
        graph = _child_graph(name)
        if graph is not None:
            await Orchestrator(max_concurrency=OVERHEAD_CONCURRENCY).execute(graph)

    anyio.run(main)
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    On Linux this is `VmHWM`, the high-water mark of this process's own address space: unlike
    `getrusage().ru_maxrss`, which Linux carries over from the parent across fork and exec (so a
    child started by a 180 MB parent reports at least ~180 MB), it starts afresh at exec.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KB on Linux


def measure_memory() -> list[MemoryResult]:
    results = []
    for name, (label, tasks) in MEMORY_SCENARIOS.items():
        out = subprocess.run(
            [sys.executable, __file__, "--child", name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        peak = float(json.loads(out.strip().splitlines()[-1])["peak_rss_mb"])
        target = RSS_TARGET_MB if name.startswith("rss10k") else None
        passed = None if target is None else peak <= target
        results.append(MemoryResult(label, tasks, peak, target, passed))
        _progress(f"memory {label}: {peak:.0f} MB")
    return results


# --- report ---------------------------------------------------------------------------------------


def _progress(line: str) -> None:
    print(f"  … {line}", file=sys.stderr, flush=True)


def _verdict(passed: bool | None) -> str:
    return "" if passed is None else ("PASS" if passed else "MISS")


def _machine() -> str:
    return (
        f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )


def text_report(
    spans: list[MakespanResult], overheads: list[OverheadResult], memory: list[MemoryResult]
) -> str:
    lines = [
        f"delegate scheduler benchmark — {_machine()}",
        "",
        f"Makespan at {LATENCY * 1000:.0f} ms per task, max_concurrency={MAKESPAN_CONCURRENCY}, "
        "weight = latency",
        f"  {'graph':<10} {'tasks':>6} {'makespan s':>11} {'ideal s':>8} {'ratio':>6} "
        f"{'target':>7}        {'bare anyio':>10}",
    ]
    lines.extend(
        f"  {r.graph:<10} {r.tasks:>6} {r.makespan_s:>11.3f} {r.ideal_s:>8.3f} "
        f"{r.ratio:>6.3f} {'≤ ' + format(r.target, '.2f'):>7}  {_verdict(r.passed):4}  "
        f"{r.floor_ratio:>10.3f}"
        for r in spans
    )
    lines += [
        "",
        f"Overhead per task at 0 ms, max_concurrency={OVERHEAD_CONCURRENCY}",
        f"  {'scenario':<60} {'tasks':>6} {'µs/task':>8} {'CPU µs':>8} {'target':>7}",
    ]
    lines.extend(
        f"  {o.scenario:<60} {o.tasks:>6} {o.us_per_task:>8.1f} {o.cpu_us_per_task:>8.1f} "
        f"{_target_us(o):>7}  {_verdict(o.passed)}"
        for o in overheads
    )
    lines += ["", "Peak RSS, a fresh process each"]
    lines.extend(
        f"  {m.scenario:<62} {m.peak_rss_mb:>6.0f} MB {_target_mb(m):>6}  {_verdict(m.passed)}"
        for m in memory
    )
    return "\n".join(lines)


def _cell(target: str, passed: bool | None) -> str:
    return f"{target} {_verdict(passed)}" if target else "—"


def _target_us(o: OverheadResult) -> str:
    return "" if o.target_us is None else f"≤ {o.target_us:.0f}"


def _target_mb(m: MemoryResult) -> str:
    return "" if m.target_mb is None else f"≤ {m.target_mb:.0f}"


def markdown_report(
    spans: list[MakespanResult], overheads: list[OverheadResult], memory: list[MemoryResult]
) -> str:
    lines = [
        f"Measured on {_machine()}; median of the repeats.",
        "",
        f"| graph, {LATENCY * 1000:.0f} ms per task | tasks | makespan (s) | ideal = critical "
        "path (s) | ratio | target | bare anyio ratio |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    lines.extend(
        f"| {r.graph} | {r.tasks} | {r.makespan_s:.3f} | {r.ideal_s:.3f} | {r.ratio:.3f} | "
        f"≤ {r.target:.2f} {_verdict(r.passed)} | {r.floor_ratio:.3f} |"
        for r in spans
    )
    lines += [
        "",
        f"| overhead at 0 ms, max_concurrency={OVERHEAD_CONCURRENCY} | tasks | µs per task "
        "| CPU µs per task | target |",
        "|---|---:|---:|---:|---|",
    ]
    lines.extend(
        f"| {o.scenario} | {o.tasks} | {o.us_per_task:.1f} | {o.cpu_us_per_task:.1f} | "
        f"{_cell(_target_us(o), o.passed)} |"
        for o in overheads
    )
    lines += ["", "| peak RSS, fresh process | tasks | MB | target |", "|---|---:|---:|---|"]
    lines.extend(
        f"| {m.scenario} | {m.tasks} | {m.peak_rss_mb:.0f} | {_cell(_target_mb(m), m.passed)} |"
        for m in memory
    )
    return "\n".join(lines)


MEMORY: str | None = None
"""Where runs are persisted (`--memory`); None keeps runs in memory only."""


def _memory_url(choice: str | None) -> str | None:
    if choice is None:
        return None
    if choice == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='delegate-bench-')}/runs.db"
    if choice == "postgres":
        url = os.environ.get("DELEGATE_TEST_PG_URL")
        if not url:
            raise SystemExit("--memory postgres needs DELEGATE_TEST_PG_URL (a PostgreSQL URL)")
        return url
    return choice


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one repeat instead of three")
    parser.add_argument("--json", metavar="PATH", type=Path, help="write the results as JSON")
    parser.add_argument("--markdown", action="store_true", help="also print markdown tables")
    parser.add_argument("--child", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument(
        "--memory",
        metavar="STORE",
        help="persist runs: 'sqlite' (a temporary file), 'postgres' ($DELEGATE_TEST_PG_URL) or a "
        "database URL; timings then include durable writes",
    )
    parser.add_argument(
        "--only",
        choices=("makespan", "overhead"),
        help="run only these timings (and skip the memory scenarios)",
    )
    args = parser.parse_args(argv)
    global MEMORY
    MEMORY = _memory_url(args.memory)
    if args.child:
        run_child(args.child)
        return 0
    repeats = 1 if args.quick else 3

    async def timings() -> tuple[list[MakespanResult], list[OverheadResult]]:
        await _warm_up()
        return await measure_makespans(repeats), await measure_overheads(repeats)

    async def selected() -> tuple[list[MakespanResult], list[OverheadResult]]:
        await _warm_up()
        spans = await measure_makespans(repeats) if args.only != "overhead" else []
        overheads = await measure_overheads(repeats) if args.only != "makespan" else []
        return spans, overheads

    spans, overheads = anyio.run(selected if args.only else timings)
    memory = [] if args.only else measure_memory()
    print(text_report(spans, overheads, memory))
    if args.markdown:
        print()
        print(markdown_report(spans, overheads, memory))
    if args.json:
        payload: dict[str, Any] = {
            "machine": _machine(),
            "repeats": repeats,
            "makespan": [asdict(r) for r in spans],
            "overhead": [asdict(o) for o in overheads],
            "memory": [asdict(m) for m in memory],
        }
        args.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
