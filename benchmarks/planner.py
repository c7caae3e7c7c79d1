"""Planner benchmark: how soon workers start while the plan streams, and the planned makespan.

    .venv/bin/python benchmarks/planner.py                  # full: workers 1–3 s, 3 repeats, median
    .venv/bin/python benchmarks/planner.py --quick          # workers 0.1–0.3 s, 1 repeat
    .venv/bin/python benchmarks/planner.py --markdown       # also print the tables for the README
    .venv/bin/python benchmarks/planner.py --ttft 0.5       # the planner's first token after 0.5 s
    .venv/bin/python benchmarks/planner.py --memory sqlite  # also run with a durable store
    .venv/bin/python benchmarks/planner.py --chunks 1 --repeat 5 --json results.json

Every run is `await Orchestrator(planner=..., workers=[...]).run(goal)`, the public API, on fake
models (`delegate.testing.FunctionModel`; no real model is ever called). The planner streams its
plan at 20 ms per task: the plan's text is laid out so that its first chunk (`{"tasks": [`) comes
after `--ttft` and every task object then takes exactly `--chunks` chunks, 20 ms / `--chunks`
apart, so task i is complete `ttft + (i + 1) × 20 ms` after the request. Workers sleep a latency
drawn per task from a seeded RNG (1–3 s; 0.1–0.3 s with `--quick`). Each plan runs streamed, and
again with a planner that does not stream (it ignores `on_text`; the answer takes as long and
arrives whole), to show what streaming saves.

Times come from the run's events (`PlanStarted`, `TaskStarted`, `TaskSucceeded`, `PlanFinished`),
measured from the plan's start; the critical path is computed here from the drawn latencies.
Targets (issue 5) are printed as PASS/MISS, for information: the exit status is 0 either way.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio

from delegate import Agent, ModelRequest, ModelResponse, Orchestrator, Price
from delegate.orchestrator.events import (
    Event,
    PlanFinished,
    PlanStarted,
    TaskFailed,
    TaskStarted,
    TaskSucceeded,
)
from delegate.orchestrator.plan_stream import PlanStream
from delegate.testing import FunctionModel

PER_TASK = 0.020  # seconds the planner takes to write one task of its plan
WORKER_LATENCY = (1.0, 3.0)  # seconds, drawn per task
QUICK_WORKER_LATENCY = (0.1, 0.3)
SEED = 20240605
CHUNKS_PER_TASK = 4  # a task's text arrives in this many chunks (5 ms apart at 20 ms a task)
MAX_CONCURRENCY = 16  # the orchestrator's default; more than the widest plan (12 at once)

FIRST_WORKER_TOLERANCE = 0.002  # event-loop scheduling: timers, task spawns, one callback each
MAKESPAN_FACTOR = 1.05

GOAL = "Answer the question from the findings of the workers."
WORKER = "worker"
PLAN_PREFIX = '{"tasks": ['
PLAN_ENDING = '], "synthesis_note": "Combine the task results."}'


# --- plans ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanShape:
    """A plan's tasks as (id, deps), in dependency order."""

    name: str
    description: str
    tasks: tuple[tuple[str, tuple[str, ...]], ...]


def wide_plan(width: int = 12) -> PlanShape:
    """`width` independent tasks and one that combines them all."""
    parts = tuple((f"part{i:02d}", ()) for i in range(width))
    combine = ("combine", tuple(task_id for task_id, _ in parts))
    return PlanShape("wide", f"{width} independent tasks + 1 combining them", (*parts, combine))


def layered_plan(layers: int = 3, width: int = 4, seed: int = SEED) -> PlanShape:
    """`layers` × `width`; each task after layer 0 depends on 2 random tasks of the layer before."""
    rng = random.Random(seed)
    tasks: list[tuple[str, tuple[str, ...]]] = []
    previous: list[str] = []
    for layer in range(layers):
        current = [f"L{layer}_{i}" for i in range(width)]
        for task_id in current:
            deps = tuple(sorted(rng.sample(previous, 2))) if previous else ()
            tasks.append((task_id, deps))
        previous = current
    return PlanShape(
        "layered", f"{layers} layers × {width}, 2 deps each on the layer before", tuple(tasks)
    )


def chain_plan(length: int = 5) -> PlanShape:
    """`length` tasks in sequence."""
    tasks = tuple((f"step{i}", (f"step{i - 1}",) if i else ()) for i in range(length))
    return PlanShape("chain", f"a chain of {length}", tasks)


PLANS: tuple[Callable[[], PlanShape], ...] = (wide_plan, layered_plan, chain_plan)


def draw_latencies(shape: PlanShape, low: float, high: float, seed: int = SEED) -> dict[str, float]:
    """Each task's worker latency, uniform in [low, high], the same for every run of the plan."""
    rng = random.Random(f"{seed}:{shape.name}")
    return {task_id: rng.uniform(low, high) for task_id, _ in shape.tasks}


def critical_path(shape: PlanShape, latency: Mapping[str, float]) -> float:
    """The longest sum of worker latencies along a dependency path (the plan is in dep order)."""
    finish: dict[str, float] = {}
    for task_id, deps in shape.tasks:
        finish[task_id] = max((finish[d] for d in deps), default=0.0) + latency[task_id]
    return max(finish.values(), default=0.0)


def plan_text(shape: PlanShape, chunks_per_task: int) -> tuple[str, int]:
    """The planner's answer for `shape`, and the chunk size that paces it.

    The first chunk is `{"tasks": [` (padded); then every task takes exactly `chunks_per_task`
    chunks, its object padded in front with whitespace so that its closing brace arrives in its
    last chunk. The plan's ending rides in the last task's last chunk, so the plan is complete
    when its last task is.
    """
    objects = [
        json.dumps(
            {"id": task_id, "agent": WORKER, "instructions": f"Do {task_id}.", "deps": list(deps)}
        )
        for task_id, deps in shape.tasks
    ]
    segments = [("," if i else "") + text for i, text in enumerate(objects)]
    segments[-1] += PLAN_ENDING
    chunk = max(
        len(PLAN_PREFIX),
        len(PLAN_ENDING) + 1,  # the last task's brace must be in its last chunk
        *(math.ceil(len(segment) / chunks_per_task) for segment in segments),
    )
    size = chunk * chunks_per_task
    text = PLAN_PREFIX.ljust(chunk) + "".join(segment.rjust(size) for segment in segments)
    _check_pacing(text, chunk, chunks_per_task, len(objects))
    return text, chunk


def _check_pacing(text: str, chunk: int, chunks_per_task: int, tasks: int) -> None:
    """Raise unless task i is complete exactly at chunk `(i + 1) × chunks_per_task`."""
    stream = PlanStream()
    completed = [
        index
        for index, start in enumerate(range(0, len(text), chunk))
        for _ in stream.feed(text[start : start + chunk])
    ]
    expected = [(i + 1) * chunks_per_task for i in range(tasks)]
    if completed != expected or len(text) != chunk * (1 + tasks * chunks_per_task):
        raise ValueError(
            f"the plan's text is not paced as documented: its tasks complete in chunks "
            f"{completed}, not {expected}; fix plan_text's padding"
        )


# --- fake models ----------------------------------------------------------------------------------


class PlannerModel:
    """The planner's model: answers plan requests with a paced plan, anything else briefly.

    It wraps a `FunctionModel` that streams `chunk_size` characters every `chunk_delay` seconds
    after `ttft`. With `stream=False` it ignores `on_text`, as a model that cannot stream does:
    the plan takes as long and arrives whole. It records when the plan was asked for, when each
    chunk was handed over and when the answer returned (`time.time()`, like the events).
    """

    def __init__(
        self, text: str, *, chunk_size: int, chunk_delay: float, ttft: float, stream: bool
    ) -> None:
        self._plan = text
        self._inner = FunctionModel(
            self._respond,
            latency=ttft,
            chunk_size=chunk_size,
            chunk_delay=chunk_delay,
            name="o4-mini",
        )
        self.stream = stream
        self.requested_at: float | None = None
        self.chunks_at: list[float] = []
        self.returned_at: float | None = None

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def price(self) -> Price | None:
        return self._inner.price

    def _respond(self, request: ModelRequest) -> str:
        return self._plan if request.output_name == "Plan" else "The final answer."

    async def request(self, request: ModelRequest) -> ModelResponse:
        if request.output_name != "Plan":
            return await self._inner.request(request)
        self.requested_at = time.time()
        on_text = request.on_text if self.stream else None
        if on_text is not None:

            def timed(delta: str) -> None:
                self.chunks_at.append(time.time())
                on_text(delta)

            request = dataclasses.replace(request, on_text=timed)
        else:
            request = dataclasses.replace(request, on_text=None)
        response = await self._inner.request(request)
        self.returned_at = time.time()
        return response


def _task_of(request: ModelRequest) -> str:
    # The task's prompt comes last, after its dependencies' outputs: "Do <id>."
    prompt = str(request.messages[-1]["content"])
    return prompt.rsplit("Do ", 1)[-1].rstrip(".")


def worker_model(latency: Mapping[str, float]) -> FunctionModel:
    """The workers' model: answers each task after that task's drawn latency."""
    return FunctionModel(
        lambda request: f"result of {_task_of(request)}",
        latency=lambda request: latency[_task_of(request)],
        name="gpt-4o-mini",
    )


# --- measuring ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """What every run of one benchmark invocation shares."""

    chunks_per_task: int
    ttft: float
    worker_latency: tuple[float, float]
    repeats: int
    store_url: str | None


@dataclass(frozen=True, slots=True)
class Mode:
    """How a plan is run: streamed or not, with a store or not."""

    label: str
    stream: bool
    durable: bool


STREAMED = Mode("streamed", stream=True, durable=False)
UNSTREAMED = Mode("not streamed", stream=False, durable=False)
DURABLE = Mode("streamed, SQLite", stream=True, durable=True)


@dataclass(frozen=True, slots=True)
class Sample:
    """One run's times in seconds after the plan's start (`PlanStarted.at`)."""

    plan_start: float  # after `run()` was called
    request: float  # the planner's request was sent
    first_chunk: float  # its first chunk (the plan's prefix) arrived (unstreamed: the whole plan)
    first_text: float  # the chunk completing the first task arrived (unstreamed: the whole plan)
    first_worker: float  # the first TaskStarted
    full_plan: float  # PlanFinished
    last_end: float  # the last task ended
    run: float  # the whole `run()` call, synthesis included

    @property
    def task_phase(self) -> float:
        """First worker start → last task end."""
        return self.last_end - self.first_worker

    @property
    def dispatch(self) -> float:
        """First task's text in hand → its worker started: delegate's own cost."""
        return self.first_worker - self.first_text


@dataclass
class PlanTiming:
    """One plan in one mode: the medians of its repeats (ms for the short times, s for the rest)."""

    plan: str
    mode: str
    tasks: int
    critical_path_s: float
    nominal_plan_ms: float  # ttft + 20 ms per task
    plan_start_ms: float  # after `run()` was called
    request_ms: float
    first_chunk_ms: float
    first_text_ms: float
    first_worker_ms: float
    dispatch_ms: float
    full_plan_ms: float
    task_phase_s: float
    makespan_s: float
    run_s: float
    ratio: float  # (makespan − planning time) / critical path
    first_worker_limit_ms: float
    first_worker_passed: bool
    ratio_passed: bool
    samples: list[dict[str, float]]


def _sample(
    events: Sequence[Event],
    planner: PlannerModel,
    tasks: int,
    chunks_per_task: int,
    called: float,
    wall: float,
) -> Sample:
    plan_start = next(e.at for e in events if isinstance(e, PlanStarted))
    started = [e.at for e in events if isinstance(e, TaskStarted)]
    ended = [e.at for e in events if isinstance(e, TaskSucceeded | TaskFailed)]
    finished = next(e.at for e in events if isinstance(e, PlanFinished))
    if len(started) != tasks or len(ended) != tasks:
        raise SystemExit(
            f"a benchmark run started {len(started)} and ended {len(ended)} tasks of {tasks}; "
            "every task must run exactly once"
        )
    if planner.requested_at is None or planner.returned_at is None:
        raise SystemExit("the planner's model was never asked for a plan")
    # Chunk 0 is the plan's prefix; the first task closes in chunk `chunks_per_task`.
    streamed = len(planner.chunks_at) > chunks_per_task
    first_text = planner.chunks_at[chunks_per_task] if streamed else planner.returned_at
    first_chunk = planner.chunks_at[0] if streamed else planner.returned_at
    return Sample(
        plan_start=plan_start - called,
        request=planner.requested_at - plan_start,
        first_chunk=first_chunk - plan_start,
        first_text=first_text - plan_start,
        first_worker=min(started) - plan_start,
        full_plan=finished - plan_start,
        last_end=max(ended) - plan_start,
        run=wall,
    )


async def run_once(
    shape: PlanShape, latency: Mapping[str, float], mode: Mode, settings: Settings
) -> Sample:
    """One planned run of `shape`, and its times."""
    text, chunk = plan_text(shape, settings.chunks_per_task)
    planner = PlannerModel(
        text,
        chunk_size=chunk,
        chunk_delay=PER_TASK / settings.chunks_per_task,
        ttft=settings.ttft,
        stream=mode.stream,
    )
    events: list[Event] = []
    orchestrator = Orchestrator(
        planner=Agent("planner", planner),
        workers=[Agent(WORKER, worker_model(latency), description="Does one step.")],
        memory=settings.store_url if mode.durable else None,
        max_concurrency=MAX_CONCURRENCY,
        on_event=events.append,
    )
    gc.collect()
    called, begun = time.time(), time.perf_counter()
    result = await orchestrator.run(GOAL)
    wall = time.perf_counter() - begun
    if result.status != "succeeded":
        raise SystemExit(f"the benchmark run of {shape.name} ended {result.status}: {result.error}")
    return _sample(events, planner, len(shape.tasks), settings.chunks_per_task, called, wall)


def summarize(
    shape: PlanShape, mode: Mode, samples: Sequence[Sample], cp: float, settings: Settings
) -> PlanTiming:
    """The medians of `samples`, with the targets checked."""

    def median(value: Callable[[Sample], float]) -> float:
        return statistics.median(value(sample) for sample in samples)

    ratio = median(lambda s: (s.last_end - s.full_plan) / cp)
    first_worker = median(lambda s: s.first_worker)
    limit = settings.ttft + PER_TASK + FIRST_WORKER_TOLERANCE
    return PlanTiming(
        plan=shape.name,
        mode=mode.label,
        tasks=len(shape.tasks),
        critical_path_s=cp,
        nominal_plan_ms=(settings.ttft + PER_TASK * len(shape.tasks)) * 1000,
        plan_start_ms=median(lambda s: s.plan_start) * 1000,
        request_ms=median(lambda s: s.request) * 1000,
        first_chunk_ms=median(lambda s: s.first_chunk) * 1000,
        first_text_ms=median(lambda s: s.first_text) * 1000,
        first_worker_ms=first_worker * 1000,
        dispatch_ms=median(lambda s: s.dispatch) * 1000,
        full_plan_ms=median(lambda s: s.full_plan) * 1000,
        task_phase_s=median(lambda s: s.task_phase),
        makespan_s=median(lambda s: s.last_end),
        run_s=median(lambda s: s.run),
        ratio=ratio,
        first_worker_limit_ms=limit * 1000,
        first_worker_passed=first_worker <= limit,
        ratio_passed=ratio <= MAKESPAN_FACTOR,
        samples=[
            {**asdict(sample), "ratio": (sample.last_end - sample.full_plan) / cp}
            for sample in samples
        ],
    )


async def warm_up(settings: Settings, modes: Sequence[Mode]) -> None:
    """One run of each plan in each mode with instant workers, not counted.

    The first run loads the tokenizer; the first with a store creates its tables.
    """
    for build in PLANS:
        shape = build()
        instant = {task_id: 0.0 for task_id, _ in shape.tasks}
        for mode in modes:
            await run_once(shape, instant, mode, settings)


async def measure(settings: Settings, modes: Sequence[Mode]) -> list[PlanTiming]:
    """Every plan in every mode, `settings.repeats` times each (modes interleaved per repeat)."""
    await warm_up(settings, modes)
    results = []
    for build in PLANS:
        shape = build()
        latency = draw_latencies(shape, *settings.worker_latency)
        cp = critical_path(shape, latency)
        samples: dict[str, list[Sample]] = {mode.label: [] for mode in modes}
        for _ in range(settings.repeats):
            for mode in modes:
                samples[mode.label].append(await run_once(shape, latency, mode, settings))
        for mode in modes:
            timing = summarize(shape, mode, samples[mode.label], cp, settings)
            results.append(timing)
            _progress(
                f"{shape.name}, {mode.label}: first worker {timing.first_worker_ms:.1f} ms, "
                f"makespan {timing.makespan_s:.3f} s, ratio {timing.ratio:.3f}"
            )
    return results


# --- report ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Table:
    """A titled table; `right` marks the columns aligned to the right (numbers)."""

    title: str
    headers: tuple[str, ...]
    right: tuple[bool, ...]
    rows: Sequence[tuple[str, ...]]


def _progress(line: str) -> None:
    print(f"  … {line}", file=sys.stderr, flush=True)


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def _machine() -> str:
    return (
        f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )


def _setup(settings: Settings) -> str:
    low, high = settings.worker_latency
    k = settings.chunks_per_task
    return (
        f"planner {PER_TASK * 1000:.0f} ms per task in {k} chunk{'s' * (k > 1)} "
        f"({PER_TASK / k * 1000:.1f} ms apart), ttft {settings.ttft * 1000:.0f} ms; workers "
        f"{low:g}–{high:g} s per task (seed {SEED}); max_concurrency {MAX_CONCURRENCY}; "
        f"median of {settings.repeats}"
    )


def _plans() -> str:
    return "; ".join(f"{shape.name}: {shape.description}" for shape in (b() for b in PLANS))


def _by(results: Sequence[PlanTiming], mode: Mode) -> dict[str, PlanTiming]:
    return {r.plan: r for r in results if r.mode == mode.label}


def main_table(results: Sequence[PlanTiming]) -> Table:
    rows = []
    for r in results:
        target1 = "—"
        if r.mode != UNSTREAMED.label:
            target1 = f"≤ {r.first_worker_limit_ms:.0f} {_verdict(r.first_worker_passed)}"
        rows.append(
            (
                r.plan,
                str(r.tasks),
                f"{r.critical_path_s:.3f}",
                r.mode,
                f"{r.first_worker_ms:.1f}",
                f"{r.full_plan_ms:.1f}",
                f"{r.task_phase_s:.3f}",
                f"{r.makespan_s:.3f}",
                f"{r.run_s:.3f}",
                f"{r.ratio:.3f}",
                target1,
                f"≤ {MAKESPAN_FACTOR:.2f} {_verdict(r.ratio_passed)}",
            )
        )
    return Table(
        "Planned runs (times from the plan's start)",
        (
            "plan",
            "tasks",
            "critical path (s)",
            "planner",
            "first worker (ms)",
            "full plan (ms)",
            "task phase (s)",
            "makespan (s)",
            "whole run (s)",
            "(makespan − plan) / CP",
            "target 1",
            "target 2",
        ),
        (False, True, True, False, True, True, True, True, True, True, False, False),
        rows,
    )


def streaming_table(results: Sequence[PlanTiming]) -> Table:
    streamed, unstreamed = _by(results, STREAMED), _by(results, UNSTREAMED)
    rows = []
    for plan, s in streamed.items():
        u = unstreamed[plan]
        rows.append(
            (
                plan,
                f"{s.first_worker_ms:.1f}",
                f"{u.first_worker_ms:.1f}",
                f"{s.nominal_plan_ms:.0f}",
                f"{s.full_plan_ms:.1f}",
                f"{u.full_plan_ms:.1f}",
                f"{s.makespan_s:.3f}",
                f"{u.makespan_s:.3f}",
                f"{(u.makespan_s - s.makespan_s) * 1000:.0f}",
            )
        )
    return Table(
        "What streaming saves",
        (
            "plan",
            "first worker, streamed (ms)",
            "not streamed (ms)",
            "full plan due (ms)",
            "full plan, streamed (ms)",
            "not streamed (ms)",
            "makespan, streamed (s)",
            "not streamed (s)",
            "saved (ms)",
        ),
        (False, *(True,) * 8),
        rows,
    )


def first_worker_table(results: Sequence[PlanTiming], settings: Settings) -> Table:
    rows = [
        (
            r.plan,
            f"{-r.plan_start_ms:.2f}",
            f"{r.request_ms:.2f}",
            f"{r.first_chunk_ms:.2f}",
            f"{(settings.ttft + PER_TASK) * 1000:.0f}",
            f"{r.first_text_ms:.2f}",
            f"{r.first_worker_ms:.2f}",
            f"{r.dispatch_ms:.2f}",
        )
        for r in _by(results, STREAMED).values()
    ]
    return Table(
        "Where the time to the first worker goes (streamed; ms after the plan's start)",
        (
            "plan",
            "run() called",
            "planner request sent",
            "first chunk arrived",
            "first task due",
            "first task's text in hand",
            "first worker started",
            "dispatch (text → worker)",
        ),
        (False, *(True,) * 7),
        rows,
    )


def durability_table(results: Sequence[PlanTiming]) -> Table:
    plain, durable = _by(results, STREAMED), _by(results, DURABLE)
    rows = []
    for plan, d in durable.items():
        p = plain[plan]
        rows.append(
            (
                plan,
                f"{p.request_ms:.2f}",
                f"{d.request_ms:.2f}",
                f"{p.first_worker_ms:.1f}",
                f"{d.first_worker_ms:.1f}",
                f"{p.full_plan_ms:.1f}",
                f"{d.full_plan_ms:.1f}",
                f"{p.makespan_s:.3f}",
                f"{d.makespan_s:.3f}",
                f"{p.run_s:.3f}",
                f"{d.run_s:.3f}",
            )
        )
    return Table(
        "The cost of durability (streamed; no store vs. a SQLite file)",
        (
            "plan",
            "planner request sent, no store (ms)",
            "SQLite (ms)",
            "first worker, no store (ms)",
            "SQLite (ms)",
            "full plan, no store (ms)",
            "SQLite (ms)",
            "makespan, no store (s)",
            "SQLite (s)",
            "whole run, no store (s)",
            "SQLite (s)",
        ),
        (False, *(True,) * 10),
        rows,
    )


def tables(results: Sequence[PlanTiming], settings: Settings) -> list[Table]:
    found = [main_table(results), streaming_table(results), first_worker_table(results, settings)]
    if any(r.mode == DURABLE.label for r in results):
        found.append(durability_table(results))
    return found


def text_report(results: Sequence[PlanTiming], settings: Settings) -> str:
    lines = [f"delegate planner benchmark — {_machine()}", _setup(settings), f"plans: {_plans()}"]
    for table in tables(results, settings):
        widths = [
            max(len(header), *(len(row[i]) for row in table.rows))
            for i, header in enumerate(table.headers)
        ]

        def line(cells: Sequence[str], widths: list[int] = widths, table: Table = table) -> str:
            return (
                "  "
                + "  ".join(
                    cell.rjust(width) if right else cell.ljust(width)
                    for cell, width, right in zip(cells, widths, table.right, strict=True)
                ).rstrip()
            )

        lines += ["", table.title, line(table.headers), *(line(row) for row in table.rows)]
    lines += [
        "",
        f"target 1: the first worker starts within one task's planning time of the plan's start "
        f"(ttft + {PER_TASK * 1000:.0f} ms, + {FIRST_WORKER_TOLERANCE * 1000:.0f} ms for the "
        "event loop), streamed runs",
        f"target 2: makespan ≤ planning time + {MAKESPAN_FACTOR} × critical path, i.e. "
        f"(makespan − full plan) / critical path ≤ {MAKESPAN_FACTOR}",
    ]
    return "\n".join(lines)


def markdown_report(results: Sequence[PlanTiming], settings: Settings) -> str:
    lines = [f"Measured on {_machine()}; {_setup(settings)}. Plans: {_plans()}."]
    for table in tables(results, settings):
        align = "|" + "|".join("---:" if right else "---" for right in table.right) + "|"
        lines += ["", f"**{table.title}**", "", "| " + " | ".join(table.headers) + " |", align]
        lines.extend("| " + " | ".join(row) + " |" for row in table.rows)
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, got {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds ≥ 0, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="workers 0.1–0.3 s instead of 1–3 s, one repeat"
    )
    parser.add_argument(
        "--repeat", type=_positive_int, help="runs per plan and mode (default 3; 1 with --quick)"
    )
    parser.add_argument(
        "--ttft", type=_seconds, default=0.0, help="the planner's time to first token, seconds"
    )
    parser.add_argument(
        "--chunks",
        type=_positive_int,
        default=CHUNKS_PER_TASK,
        help=f"chunks per planned task (default {CHUNKS_PER_TASK})",
    )
    parser.add_argument(
        "--memory",
        choices=("sqlite",),
        help="also run each plan streamed with a durable store (a temporary SQLite file)",
    )
    parser.add_argument("--markdown", action="store_true", help="also print markdown tables")
    parser.add_argument("--json", metavar="PATH", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    store_url = None
    if args.memory == "sqlite":
        store_url = f"sqlite:///{tempfile.mkdtemp(prefix='delegate-bench-')}/runs.db"
    settings = Settings(
        chunks_per_task=args.chunks,
        ttft=args.ttft,
        worker_latency=QUICK_WORKER_LATENCY if args.quick else WORKER_LATENCY,
        repeats=args.repeat or (1 if args.quick else 3),
        store_url=store_url,
    )
    modes = [STREAMED, UNSTREAMED, *([DURABLE] if store_url else [])]

    async def timings() -> list[PlanTiming]:
        return await measure(settings, modes)

    results = anyio.run(timings)
    print(text_report(results, settings))
    if args.markdown:
        print()
        print(markdown_report(results, settings))
    if args.json:
        payload = {
            "machine": _machine(),
            "settings": asdict(settings),
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
