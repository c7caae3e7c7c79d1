"""Scheduler benchmark: the speed and memory figures of issue 13, each beside a bare-anyio floor.

    .venv/bin/python benchmarks/scheduler.py                   # full: 3 repeats, median (~8 min)
    .venv/bin/python benchmarks/scheduler.py --quick           # 1 repeat, 20k-task runs (~1 min)
    .venv/bin/python benchmarks/scheduler.py --markdown        # also print the README's tables
    .venv/bin/python benchmarks/scheduler.py --only overhead,makespan --json out.json
    .venv/bin/python benchmarks/scheduler.py --from-json out.json --markdown   # its report again
    .venv/bin/python benchmarks/scheduler.py --memory postgres   # PostgreSQL for the store rows

One run measures every figure of the issue's table, and the floor of each in the same run:

- overhead per task at 0 ms: wide 1 → 200 → 1, layered 10 × 20, chain 100; no store, and a
  SQLite store (a temporary file, `memory="sqlite:///…"`);
- makespan / critical path at 50 ms per call: wide and layered, no store and SQLite;
- peak RSS of a 200-task run with the fakes (a fresh process each, `VmHWM`);
- the time to build a 100,000-task wide graph with `g.add`;
- 100,000-task runs (wide 1 → 99,998 → 1 and 100 layers × 1,000), µs per task and peak RSS, no
  store and SQLite (a fresh process each).

Everything goes through the public API: `TaskGraph.add`, `Orchestrator.execute`, Agents on
`delegate.testing.FunctionModel` (the fakes users test with). The floor (`anyio_floor.py`) is the
same graph on bare anyio: a task per node, spawned when its last dependency ends, that only sleeps.
Targets are printed next to the results (PASS/MISS) for information; the exit status is 0.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio_floor
from anyio_floor import Shape, critical_path, peak_rss_mb, timed_floor

LATENCY = 0.050  # seconds per model call in the makespan scenarios
MAKESPAN_CONCURRENCY = 256  # more than the widest layer (200): slots never limit the makespan
SMALL = {"wide": 202, "layered": 200, "chain": 100}  # the 200-task graphs (tasks)
BIG_TASKS = 100_000
QUICK_BIG_TASKS = 20_000
RUNS_PER_REPEAT = 20  # runs of a 200-task graph timed together (one is only ~10 ms)
STORES = ("none", "sqlite")

TARGETS: dict[str, float] = {
    "overhead/none": 30.0,  # µs per task
    "overhead/sqlite": 60.0,
    "makespan/wide": 1.04,  # makespan / critical path
    "makespan/layered": 1.03,
    "rss200": 60.0,  # MB
    "build": 1.0,  # seconds
    "big/none/us": 60.0,  # µs per task
    "big/none/mb": 400.0,
    "big/sqlite/mb": 500.0,
}


@dataclass
class Measure:
    """One figure: delegate's value and the floor's, measured in the same run."""

    section: str  # overhead, makespan, rss200, build, big
    graph: str
    store: str  # none, sqlite, or "-" (no run)
    tasks: int
    value: float  # µs per task, a ratio, MB or seconds (see `section`)
    floor: float | None
    detail: dict[str, float] = field(default_factory=dict)


# --- delegate's side --------------------------------------------------------------------------


def _answer(request: Any) -> str:
    return "ok"


def delegate_graph(shape: Shape, latency: float) -> Any:
    """`shape` as a TaskGraph of Agents on FunctionModel; each task's weight is its latency."""
    from delegate import Agent, TaskGraph
    from delegate.testing import FunctionModel

    agent = Agent("worker", FunctionModel(_answer, latency=latency, name="gpt-4o-mini"))
    graph = TaskGraph()
    handles: dict[str, Any] = {}
    weight = latency or 1.0
    for task_id, deps in shape.items():
        handles[task_id] = graph.add(
            task_id,
            agent=agent,
            prompt=f"Do step {task_id}.",
            deps=[handles[d] for d in deps],
            weight=weight,
        )
    return graph


def _reset(graph: Any) -> None:
    # FunctionModel records every request; drop them so repeats do not accumulate memory.
    for task in graph:
        task.agent.model.requests.clear()


STORE_URL: str | None = None
"""The database of the "sqlite" measurements when `--memory` names another one."""


def _store_url(store: str) -> str | None:
    """None, or a new SQLite file with its schema created, as a user's store is after its first
    run (creating it imports the migration tool, once); `--memory`'s database instead, if any."""
    if store == "none":
        return None
    from delegate.memory.store import Store

    url = STORE_URL or f"sqlite:///{tempfile.mkdtemp(prefix='delegate-bench-')}/runs.db"
    Store.open(url).close()
    return url


def _memory_option(choice: str | None) -> str | None:
    if choice in (None, "sqlite"):
        return None
    if choice == "postgres":
        url = os.environ.get("DELEGATE_TEST_PG_URL")
        if not url:
            raise SystemExit("--memory postgres needs DELEGATE_TEST_PG_URL (a PostgreSQL URL)")
        return url
    return choice


@contextlib.asynccontextmanager
async def _orchestrator(memory: str | None, **kwargs: Any) -> AsyncIterator[Any]:
    """An Orchestrator on `memory` (None: no store), closed after use."""
    from delegate import Orchestrator

    orch = Orchestrator(memory=memory, **kwargs)
    try:
        yield orch
    finally:
        close = getattr(orch, "aclose", None)  # (older checkouts, measured for comparison)
        if close is not None:
            await close()


async def _execute(orch: Any, graph: Any) -> None:
    result = await orch.execute(graph)
    if result.status != "succeeded":
        raise SystemExit(f"benchmark run did not succeed: {result.status} {result.error}")


async def overhead(graph_name: str, store: str, repeats: int, runs: int) -> Measure:
    """µs per task at 0 ms: `runs` runs timed together, median of `repeats`."""
    shape = anyio_floor.build(graph_name, SMALL[graph_name])
    graph = delegate_graph(shape, 0.0)
    per_task, cpu_per_task = [], []
    async with _orchestrator(_store_url(store)) as orch:
        await _execute(orch, graph)  # warm-up, not counted
        for _ in range(repeats):
            _reset(graph)
            gc.collect()
            cpu, started = time.process_time(), time.perf_counter()
            for _ in range(runs):
                await _execute(orch, graph)
            scale = 1e6 / (runs * len(shape))
            per_task.append((time.perf_counter() - started) * scale)
            cpu_per_task.append((time.process_time() - cpu) * scale)
    floors = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(runs):
            await anyio_floor.run_floor(shape, 0.0)
        floors.append((time.perf_counter() - started) * 1e6 / (runs * len(shape)))
    value = statistics.median(per_task)
    _progress(f"overhead {graph_name}, store {store}: {value:.1f} µs/task")
    return Measure(
        "overhead",
        graph_name,
        store,
        len(shape),
        value,
        statistics.median(floors),
        {"cpu_us": statistics.median(cpu_per_task)},
    )


async def makespan(graph_name: str, store: str, repeats: int) -> Measure:
    """Makespan / critical path at `LATENCY` per call, median of `repeats` runs."""
    shape = anyio_floor.build(graph_name, SMALL[graph_name])
    graph = delegate_graph(shape, LATENCY)
    ideal = critical_path(shape, LATENCY)
    spans = []
    async with _orchestrator(_store_url(store), max_concurrency=MAKESPAN_CONCURRENCY) as orch:
        await _execute(orch, graph)  # warm-up, not counted
        for _ in range(repeats):
            _reset(graph)
            gc.collect()
            started = time.perf_counter()
            await _execute(orch, graph)
            spans.append(time.perf_counter() - started)
    floors = [(await timed_floor(shape, LATENCY))[0] for _ in range(repeats)]
    span = statistics.median(spans)
    _progress(f"makespan {graph_name}, store {store}: {span:.3f} s / {ideal:.3f} s")
    return Measure(
        "makespan",
        graph_name,
        store,
        len(shape),
        span / ideal,
        statistics.median(floors) / ideal,
        {"makespan_s": span, "ideal_s": ideal},
    )


def build_time(repeats: int) -> Measure:
    """Seconds to add a 100,000-task wide graph with `g.add` (the floor: the same as dicts)."""
    shape = anyio_floor.build("wide", BIG_TASKS)
    times = []
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        delegate_graph(shape, 0.0)
        times.append(time.perf_counter() - started)
        if times[-1] > 5:
            break  # slow enough that repeating tells nothing more
    floors = []
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        anyio_floor.build("wide", BIG_TASKS)
        floors.append(time.perf_counter() - started)
    value = statistics.median(times)
    _progress(f"build {BIG_TASKS:,}-task wide graph: {value:.2f} s")
    return Measure("build", "wide", "-", BIG_TASKS, value, statistics.median(floors))


# --- fresh processes --------------------------------------------------------------------------


def _child(args: Sequence[str], script: str = __file__) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, script, *args], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def _floor_child(graph_name: str, tasks: int, latency: float) -> dict[str, float]:
    script = str(Path(__file__).with_name("anyio_floor.py"))
    return _child([graph_name, str(tasks), "--latency", str(latency)], script)


def rss200(graph_name: str, store: str) -> Measure:
    """Peak RSS of one 200-task run at 50 ms (as the makespan rows), in a fresh process."""
    tasks = SMALL[graph_name]
    mine = _child(["--child", "run", graph_name, str(tasks), _memory_arg(store), str(LATENCY)])
    floor = _floor_child(graph_name, tasks, LATENCY)
    _progress(f"peak RSS, {graph_name} run, store {store}: {mine['peak_rss_mb']:.0f} MB")
    return Measure("rss200", graph_name, store, tasks, mine["peak_rss_mb"], floor["peak_rss_mb"])


def import_rss() -> float:
    """Peak RSS of a process that imports delegate and runs nothing."""
    return _child(["--child", "import"])["peak_rss_mb"]


def big(graph_name: str, store: str, tasks: int) -> Measure:
    """One run of `tasks` tasks at 0 ms in a fresh process: µs per task and peak RSS."""
    mine = _child(["--child", "run", graph_name, str(tasks), _memory_arg(store), "0"])
    floor = _floor_child(graph_name, tasks, 0.0)
    us = mine["seconds"] * 1e6 / mine["tasks"]
    floor_us = floor["seconds"] * 1e6 / floor["tasks"]
    _progress(
        f"{tasks:,} tasks {graph_name}, store {store}: {us:.0f} µs/task, "
        f"{mine['peak_rss_mb']:.0f} MB"
    )
    return Measure(
        "big",
        graph_name,
        store,
        int(mine["tasks"]),
        us,
        floor_us,
        {
            "cpu_us": mine["cpu_seconds"] * 1e6 / mine["tasks"],
            "peak_rss_mb": mine["peak_rss_mb"],
            "floor_peak_rss_mb": floor["peak_rss_mb"],
        },
    )


def _memory_arg(store: str) -> str:
    return _store_url(store) or "none"


def run_child(args: Sequence[str]) -> None:
    """In this fresh process: `import`, or `run GRAPH TASKS MEMORY LATENCY` (one run, after a
    1-task warm-up run; MEMORY a database URL or "none"); print its time and peak RSS as JSON."""
    if args[0] == "import":
        import delegate  # noqa: F401

        print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
        return
    _, graph_name, tasks, store, latency = args

    async def main() -> dict[str, float]:
        shape = anyio_floor.build(graph_name, int(tasks))
        graph = delegate_graph(shape, float(latency))
        warm = delegate_graph({"warm": []}, 0.0)
        concurrency = MAKESPAN_CONCURRENCY if float(latency) > 0 else 16
        memory = None if store == "none" else store
        async with _orchestrator(memory, max_concurrency=concurrency) as orch:
            await _execute(orch, warm)
            gc.collect()
            cpu, started = time.process_time(), time.perf_counter()
            await _execute(orch, graph)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        return {"tasks": len(shape), "seconds": wall, "cpu_seconds": cpu}

    result = anyio.run(main)
    print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))


# --- report -----------------------------------------------------------------------------------


def _progress(line: str) -> None:
    print(f"  … {line}", file=sys.stderr, flush=True)


def _machine() -> str:
    return (
        f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )


def _verdict(value: float | None, target: float) -> str:
    if value is None:
        return ""
    return "PASS" if value <= target else "MISS"


def _pick(measures: list[Measure], section: str, **where: str) -> list[Measure]:
    return [
        m
        for m in measures
        if m.section == section and all(getattr(m, k) == v for k, v in where.items())
    ]


def _span(values: Sequence[float], fmt: str) -> str:
    low, high = min(values), max(values)
    return (
        format(low, fmt)
        if format(low, fmt) == format(high, fmt)
        else (f"{format(low, fmt)}–{format(high, fmt)}")
    )


def _slashes(values: Sequence[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def _worst(values: Sequence[float], target: float) -> str:
    return _verdict(max(values), target) if values else ""


def summary_rows(measures: list[Measure], import_mb: float | None) -> list[list[str]]:
    """The issue's table: figure, delegate, anyio floor, target, verdict."""
    rows: list[list[str]] = []
    for store, label in (("none", "no store"), ("sqlite", "SQLite store")):
        found = _pick(measures, "overhead", store=store)
        if found:
            values = [m.value for m in found]
            target = TARGETS[f"overhead/{store}"]
            rows.append(
                [
                    f"overhead/task, 0 ms, {label} ({'/'.join(m.graph for m in found)})",
                    f"{_slashes(values, '.0f')} µs",
                    f"{_slashes([m.floor or 0 for m in found], '.0f')} µs",
                    f"≤ {target:.0f} µs",
                    _worst(values, target),
                ]
            )
    for graph_name, label in (("wide", "wide 1→200→1"), ("layered", "layered 10×20")):
        found = {m.store: m for m in _pick(measures, "makespan", graph=graph_name)}
        if found:
            main = found.get("sqlite") or found["none"]
            text = f"{main.value:.3f}"
            if "sqlite" in found and "none" in found:
                text += f" (no store {found['none'].value:.3f})"
            target = TARGETS[f"makespan/{graph_name}"]
            store_label = ", SQLite" if main.store == "sqlite" else ", no store"
            rows.append(
                [
                    f"makespan / critical path, {label} @{LATENCY * 1000:.0f} ms{store_label}",
                    text,
                    f"{main.floor:.3f}",
                    f"≤ {target:.2f}",
                    _worst([m.value for m in found.values()], target),
                ]
            )
    for store, label in (("none", "no store"), ("sqlite", "SQLite")):
        found_rss = _pick(measures, "rss200", store=store)
        if not found_rss:
            continue
        values = [m.value for m in found_rss]
        imported = "" if import_mb is None else f" (import {import_mb:.0f})"
        rows.append(
            [
                f"peak RSS, 200-task run with the fakes, {label}",
                f"{_span(values, '.0f')} MB{imported}",
                f"{_span([m.floor or 0 for m in found_rss], '.0f')} MB",
                f"≤ {TARGETS['rss200']:.0f} MB",
                _worst(values, TARGETS["rss200"]),
            ]
        )
    rows.extend(
        [
            f"build a {m.tasks:,}-task wide graph",
            f"{m.value:.2f} s",
            f"{m.floor or 0:.2f} s",
            f"≤ {TARGETS['build']:.0f} s",
            _verdict(m.value, TARGETS["build"]),
        ]
        for m in _pick(measures, "build")
    )
    rows.extend(_big_summary(measures))
    return rows


def _big_summary(measures: list[Measure]) -> list[list[str]]:
    none, sqlite = _pick(measures, "big", store="none"), _pick(measures, "big", store="sqlite")
    if not none and not sqlite:
        return []
    everything = none + sqlite
    tasks = everything[0].tasks

    def cell(found: list[Measure]) -> str:
        if not found:
            return "–"
        us = _span([m.value for m in found], ".0f")
        mb = _span([m.detail["peak_rss_mb"] for m in found], ".0f")
        return f"{us} µs, {mb} MB"

    floor_us = _span([m.floor or 0 for m in everything], ".0f")
    floor_mb = _span([m.detail["floor_peak_rss_mb"] for m in everything], ".0f")
    verdicts = [
        _worst([m.value for m in none], TARGETS["big/none/us"]),
        _worst([m.detail["peak_rss_mb"] for m in none], TARGETS["big/none/mb"]),
        _worst([m.detail["peak_rss_mb"] for m in sqlite], TARGETS["big/sqlite/mb"]),
    ]
    return [
        [
            f"{tasks:,} tasks: µs/task, peak RSS (no store / SQLite)",
            f"{cell(none)} / {cell(sqlite)}",
            f"{floor_us} µs, {floor_mb} MB",
            f"≤ {TARGETS['big/none/us']:.0f} µs, ≤ {TARGETS['big/none/mb']:.0f} MB / "
            f"≤ {TARGETS['big/sqlite/mb']:.0f} MB",
            "MISS" if "MISS" in verdicts else ("PASS" if any(verdicts) else ""),
        ]
    ]


_UNITS = {
    "overhead": "µs/task",
    "makespan": "ratio",
    "rss200": "MB",
    "build": "s",
    "big": "µs/task",
}


def detail_rows(measures: list[Measure]) -> list[list[str]]:
    """Every measurement: section, graph, store, tasks, value, floor, and what else it has."""
    rows = []
    for m in measures:
        extra = ", ".join(f"{k} {v:.3g}" for k, v in m.detail.items())
        rows.append(
            [
                m.section,
                m.graph,
                m.store,
                f"{m.tasks:,}",
                f"{m.value:.3f} {_UNITS[m.section]}",
                "" if m.floor is None else f"{m.floor:.3f}",
                extra,
            ]
        )
    return rows


def _text_table(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [list(header), *rows]) for i in range(len(header))]
    return [
        "  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
        for row in [list(header), *rows]
    ]


def _markdown_table(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


SUMMARY_HEADER = ("figure", "delegate", "anyio floor", "target", "")
DETAIL_HEADER = ("section", "graph", "store", "tasks", "delegate", "floor", "detail")


def report(measures: list[Measure], import_mb: float | None, *, markdown: bool) -> str:
    table = _markdown_table if markdown else _text_table
    lines = [f"delegate scheduler benchmark — {_machine()}", ""]
    lines += table(SUMMARY_HEADER, summary_rows(measures, import_mb))
    lines += ["", "Every measurement:", ""]
    lines += table(DETAIL_HEADER, detail_rows(measures))
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------

SECTIONS = ("overhead", "makespan", "rss", "build", "big")


def measure(sections: Sequence[str], repeats: int, runs: int, big_tasks: int) -> list[Measure]:
    measures: list[Measure] = []

    async def in_process() -> None:
        if "overhead" in sections:
            for store in STORES:
                measures.extend([await overhead(g, store, repeats, runs) for g in SMALL])
        if "makespan" in sections:
            for store in STORES:
                measures.extend([await makespan(g, store, repeats) for g in ("wide", "layered")])

    anyio.run(in_process)
    steps: list[Callable[[], Measure]] = []
    if "rss" in sections:
        steps += [lambda g=g, s=s: rss200(g, s) for s in STORES for g in ("wide", "layered")]
    if "build" in sections:
        steps.append(lambda: build_time(repeats))
    if "big" in sections:
        steps += [
            lambda g=g, s=s: big(g, s, big_tasks) for s in STORES for g in ("wide", "layered")
        ]
    measures.extend(step() for step in steps)
    return measures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one repeat instead of three")
    parser.add_argument("--json", metavar="PATH", type=Path, help="write the results as JSON")
    parser.add_argument("--markdown", action="store_true", help="also print markdown tables")
    parser.add_argument(
        "--only", metavar="SECTIONS", help=f"comma-separated, of: {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--big-tasks",
        type=int,
        help="tasks of the big runs (default 100,000; 20,000 with --quick)",
    )
    parser.add_argument(
        "--from-json", metavar="PATH", type=Path, help="print the report of a saved --json run"
    )
    parser.add_argument(
        "--memory",
        metavar="STORE",
        help="the store of the store rows: 'sqlite' (a temporary file, the default), 'postgres' "
        "($DELEGATE_TEST_PG_URL) or a database URL",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global STORE_URL
    STORE_URL = _memory_option(args.memory)
    if args.child:
        run_child(args.child)
        return 0
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        measures = [Measure(**m) for m in saved["measures"]]
        print(report(measures, saved["import_rss_mb"], markdown=args.markdown))
        return 0
    sections = SECTIONS if not args.only else tuple(args.only.split(","))
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    repeats = 1 if args.quick else 3
    runs = RUNS_PER_REPEAT // 2 if args.quick else RUNS_PER_REPEAT
    big_tasks = args.big_tasks or (QUICK_BIG_TASKS if args.quick else BIG_TASKS)
    measures = measure(sections, repeats, runs, big_tasks)
    import_mb = import_rss() if "rss" in sections else None
    print(report(measures, import_mb, markdown=False))
    if args.markdown:
        print()
        print(report(measures, import_mb, markdown=True))
    if args.json:
        payload: dict[str, Any] = {
            "machine": _machine(),
            "repeats": repeats,
            "import_rss_mb": import_mb,
            "measures": [asdict(m) for m in measures],
        }
        args.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
