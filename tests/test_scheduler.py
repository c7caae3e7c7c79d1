"""The scheduler: dependency order, exactly-once, critical path first, limits, retries, failures.

Nothing here measures wall-clock time: concurrency is observed with counters and anyio events,
order with sequence numbers, retries with the delays the scheduler reports in its events.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delegate.agents.agent import Agent
from delegate.agents.models import ModelRequest
from delegate.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ModelError,
    ModelTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)
from delegate.orchestrator.events import Event, TaskRetried
from delegate.orchestrator.graph import TaskContext, TaskGraph
from delegate.orchestrator.run import Orchestrator, RunResult
from delegate.orchestrator.scheduler import RetryPolicy
from delegate.testing import FunctionModel, ScriptedModel

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.01)


class Gauge:
    """Counts how many things are inside it at once, and the most there ever were."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    @contextmanager
    def inside(self) -> Iterator[None]:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            yield
        finally:
            self.now -= 1


async def _yield(times: int) -> None:
    for _ in range(times):
        await anyio.lowlevel.checkpoint()


async def _execute(graph: TaskGraph, **options: Any) -> tuple[RunResult, list[Event]]:
    events: list[Event] = []
    options.setdefault("retry", FAST)
    orch = Orchestrator(on_event=events.append, **options)
    with anyio.fail_after(10):  # a guard against hangs, not a timing assertion
        result = await orch.execute(graph)
    return result, events


def _statuses(result: RunResult) -> dict[str, str]:
    return {task_id: task.status for task_id, task in result.tasks.items()}


# --- random DAGs ------------------------------------------------------------------------------

_LIMITS = {"free": None, "one": 1, "two": 2}
_PROMPT_ID = re.compile(r"run (t\d+)\Z")

Dag = tuple[list[list[int]], list[str], list[int]]


@st.composite
def _dags(draw: st.DrawFn) -> Dag:
    """Up to 30 tasks, each depending on up to 4 earlier ones; a kind and a length for each."""
    n = draw(st.integers(min_value=1, max_value=30))
    deps: list[list[int]] = []
    for i in range(n):
        chosen = draw(st.sets(st.integers(0, i - 1), max_size=4)) if i else set()
        deps.append(sorted(chosen))
    kinds = draw(st.lists(st.sampled_from(["fn", "sync", *_LIMITS]), min_size=n, max_size=n))
    yields = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    return deps, kinds, yields


class _DagRun:
    """Builds a graph from a drawn DAG and records, for each task, calls and start/finish order.

    Kinds: "fn" an async function task, "sync" a function task run in a thread, and otherwise a
    model task on the agent of that name (see `_LIMITS` for their `max_concurrency`).
    """

    def __init__(self, dag: Dag) -> None:
        self.deps, self.kinds, self.yields = dag
        self.ids = [f"t{i}" for i in range(len(self.deps))]
        self.calls: Counter[str] = Counter()
        self.started: dict[str, int] = {}
        self.finished: dict[str, int] = {}
        self.overall = Gauge()
        self.gauges = {name: Gauge() for name in _LIMITS}
        self.problems: list[str] = []
        self._clock = iter(range(10**6))
        self._lock = threading.Lock()

    def dep_outputs(self, task_id: str) -> dict[str, str]:
        return {self.ids[d]: f"out-{self.ids[d]}" for d in self.deps[int(task_id[1:])]}

    def expected_prompt(self, task_id: str) -> str:
        parts = [f"## Result of task {d!r}\n{out}" for d, out in self.dep_outputs(task_id).items()]
        return "\n\n".join([*parts, f"## Your task\nrun {task_id}"]) if parts else f"run {task_id}"

    async def work(self, task_id: str, gauge: Gauge) -> str:
        self.calls[task_id] += 1
        self.started[task_id] = next(self._clock)
        with self.overall.inside(), gauge.inside():
            await _yield(self.yields[int(task_id[1:])])
        self.finished[task_id] = next(self._clock)
        return f"out-{task_id}"

    async def async_fn(self, context: TaskContext) -> str:
        if dict(context.deps) != self.dep_outputs(context.task_id):
            self.problems.append(f"{context.task_id}: deps {dict(context.deps)}")
        return await self.work(context.task_id, Gauge())

    def sync_fn(self, context: TaskContext) -> str:
        with self._lock:
            self.calls[context.task_id] += 1
            self.started[context.task_id] = next(self._clock)
            self.finished[context.task_id] = next(self._clock)
        return f"out-{context.task_id}"

    def answer(self, name: str) -> Callable[[ModelRequest], Any]:
        async def answer(request: ModelRequest) -> str:
            content = request.messages[-1]["content"]
            found = _PROMPT_ID.search(content)
            assert found is not None, content
            task_id = found.group(1)
            if content != self.expected_prompt(task_id):
                self.problems.append(f"{task_id}: prompt {content!r}")
            return await self.work(task_id, self.gauges[name])

        return answer

    def graph(self) -> TaskGraph:
        agents = {
            name: Agent(name, FunctionModel(self.answer(name)), max_concurrency=limit)
            for name, limit in _LIMITS.items()
        }
        g = TaskGraph()
        for task_id, deps, kind in zip(self.ids, self.deps, self.kinds, strict=True):
            dep_ids = [self.ids[d] for d in deps]
            if kind == "fn":
                g.add(task_id, fn=self.async_fn, deps=dep_ids)
            elif kind == "sync":
                g.add(task_id, fn=self.sync_fn, deps=dep_ids)
            else:
                g.add(task_id, agent=agents[kind], prompt=f"run {task_id}", deps=dep_ids)
        return g


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(dag=_dags(), max_concurrency=st.integers(1, 8))
async def test_random_dags_run_each_task_once_after_all_its_deps(
    dag: Dag, max_concurrency: int
) -> None:
    run = _DagRun(dag)

    result, _ = await _execute(run.graph(), max_concurrency=max_concurrency)

    assert result.status == "succeeded"
    assert run.problems == []
    assert run.calls == Counter(run.ids)
    assert {k: (t.output, t.attempts) for k, t in result.tasks.items()} == {
        task_id: (f"out-{task_id}", 1) for task_id in run.ids
    }
    for task_id, deps in zip(run.ids, run.deps, strict=True):
        for d in deps:
            assert run.finished[run.ids[d]] < run.started[task_id], (run.ids[d], task_id)
    assert run.overall.peak <= max_concurrency
    assert run.gauges["one"].peak <= 1
    assert run.gauges["two"].peak <= 2


# --- critical path first ----------------------------------------------------------------------


def _recording_graph(order: list[str]) -> tuple[TaskGraph, Callable[..., Any]]:
    async def record(context: TaskContext) -> str:
        order.append(context.task_id)
        await anyio.lowlevel.checkpoint()
        return context.task_id

    return TaskGraph(), record


async def test_one_slot_starts_the_longest_remaining_path_first() -> None:
    order: list[str] = []
    g, record = _recording_graph(order)
    short = g.add("short", fn=record)  # added first: insertion order would start it first
    b = g.add("b", fn=record)
    c = g.add("c", fn=record, deps=[b])
    g.add("d", fn=record, deps=[c])
    assert short.id == "short"

    result, _ = await _execute(g, max_concurrency=1)

    assert result.status == "succeeded"
    # b (path 3), c (path 2), then short and d tie at 1: insertion order decides.
    assert order == ["b", "c", "short", "d"]


async def test_weights_decide_the_critical_path() -> None:
    order: list[str] = []
    g, record = _recording_graph(order)
    g.add("light", fn=record)
    c1 = g.add("c1", fn=record)
    c2 = g.add("c2", fn=record, deps=[c1])
    g.add("c3", fn=record, deps=[c2])
    g.add("heavy", fn=record, weight=5)

    await _execute(g, max_concurrency=1)

    assert order == ["heavy", "c1", "c2", "light", "c3"]


async def test_two_slots_start_both_long_chains_before_the_short_tasks() -> None:
    order: list[str] = []
    g, record = _recording_graph(order)
    for name in ("x1", "x2", "x3"):
        g.add(name, fn=record)
    for chain in ("p", "q"):
        prev = g.add(f"{chain}1", fn=record)
        for step in range(2, 5):
            prev = g.add(f"{chain}{step}", fn=record, deps=[prev])

    result, _ = await _execute(g, max_concurrency=2)

    assert result.status == "succeeded"
    assert set(order[:2]) == {"p1", "q1"}
    assert set(order[:6]) == {"p1", "p2", "p3", "q1", "q2", "q3"}
    # The chains' last tasks tie with the short ones at 1: insertion order decides.
    assert order[6:] == ["x1", "x2", "x3", "p4", "q4"]


async def test_ties_start_in_insertion_order() -> None:
    order: list[str] = []
    g, record = _recording_graph(order)
    names = ["e", "a", "d", "b", "c"]
    for name in names:
        g.add(name, fn=record)

    await _execute(g, max_concurrency=1)

    assert order == names


# --- concurrency limits -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "tasks", "peak"), [(1, 6, 1), (3, 20, 3), (8, 20, 8), (16, 5, 5)]
)
async def test_global_max_concurrency_is_the_peak(limit: int, tasks: int, peak: int) -> None:
    gauge = Gauge()
    full = anyio.Event()

    async def work(context: TaskContext) -> None:
        with gauge.inside():
            if gauge.now == peak:
                full.set()
            await full.wait()  # hold the slot until the limit is reached
            await _yield(2)

    g = TaskGraph()
    for n in range(tasks):
        g.add(f"t{n}", fn=work)

    result, _ = await _execute(g, max_concurrency=limit)

    assert result.status == "succeeded"
    assert gauge.peak == peak


async def test_per_agent_limit_parks_tasks_without_blocking_other_agents() -> None:
    slow_gauge, free_gauge = Gauge(), Gauge()
    all_free_running = anyio.Event()

    async def slow_answer(request: ModelRequest) -> str:
        with slow_gauge.inside():
            # Holds its slot until every task of the other agent runs: if parked tasks held
            # runners, the free tasks could not all start and this would never return.
            await all_free_running.wait()
            await _yield(2)
        return "slow"

    async def free_answer(request: ModelRequest) -> str:
        with free_gauge.inside():
            if free_gauge.now == 6:
                all_free_running.set()
            await all_free_running.wait()
        return "free"

    slow_model, free_model = FunctionModel(slow_answer), FunctionModel(free_answer)
    slow = Agent("slow", slow_model, max_concurrency=2)
    free = Agent("free", free_model)
    g = TaskGraph()
    for n in range(10):  # added first, so they are first in the ready queue
        g.add(f"s{n}", agent=slow, prompt="go")
    for n in range(6):
        g.add(f"f{n}", agent=free, prompt="go")

    result, _ = await _execute(g, max_concurrency=8)

    assert result.status == "succeeded"
    assert slow_gauge.peak == 2
    assert free_gauge.peak == 6
    assert slow_model.calls == 10
    assert free_model.calls == 6


async def test_per_agent_limit_by_worker_name() -> None:
    gauge = Gauge()
    full = anyio.Event()

    async def answer(request: ModelRequest) -> str:
        with gauge.inside():
            if gauge.now == 3:
                full.set()
            await full.wait()
            await _yield(2)
        return "ok"

    worker = Agent("w", FunctionModel(answer), max_concurrency=3)
    g = TaskGraph()
    for n in range(12):
        g.add(f"t{n}", agent="w", prompt="go")
    events: list[Event] = []
    orch = Orchestrator(workers=[worker], max_concurrency=10, on_event=events.append)
    with anyio.fail_after(20):
        result = await orch.execute(g)

    assert result.status == "succeeded"
    assert gauge.peak == 3
    # A parked task is queued once: it is not announced again when it comes back.
    assert sum(e.kind == "task_queued" for e in events) == 12


# --- retries ----------------------------------------------------------------------------------

_TRANSIENT: list[Callable[[str], ModelError]] = [
    lambda m: RateLimitError(m),
    lambda m: ProviderUnavailableError(m),
    lambda m: ModelTimeoutError(m),
]


@pytest.mark.parametrize("make", _TRANSIENT, ids=["rate_limit", "unavailable", "timeout"])
async def test_transient_errors_retried_until_max_retries(
    make: Callable[[str], ModelError],
) -> None:
    model = ScriptedModel([make("boom 1"), make("boom 2"), make("boom 3"), "never"])
    g = TaskGraph()
    g.add("t", agent=Agent("w", model), prompt="go")

    result, events = await _execute(g)

    task = result.tasks["t"]
    assert (task.status, task.attempts, task.error) == ("failed", 3, "boom 3")
    assert model.calls == 3
    assert [
        (e.kind, getattr(e, "attempt", None)) for e in events if e.kind.startswith("task_")
    ] == [
        ("task_queued", None),
        ("task_started", 1),
        ("task_retried", 1),
        ("task_started", 2),
        ("task_retried", 2),
        ("task_started", 3),
        ("task_failed", 3),
    ]
    assert result.status == "failed"


@pytest.mark.parametrize("make", _TRANSIENT, ids=["rate_limit", "unavailable", "timeout"])
async def test_success_on_the_second_attempt(make: Callable[[str], ModelError]) -> None:
    model = ScriptedModel([make("once"), "fine"])
    g = TaskGraph()
    g.add("t", agent=Agent("w", model), prompt="go")

    result, _ = await _execute(g)

    task = result.tasks["t"]
    assert (task.status, task.attempts, task.output, task.error) == ("succeeded", 2, "fine", None)
    assert model.calls == 2
    assert result.status == "succeeded"


@pytest.mark.parametrize(
    "error",
    [BadRequestError("bad request"), AuthenticationError("bad request")],
    ids=["bad_request", "authentication"],
)
async def test_permanent_errors_are_not_retried(error: ModelError) -> None:
    model = ScriptedModel([error, "never"])
    g = TaskGraph()
    g.add("t", agent=Agent("w", model), prompt="go")

    result, events = await _execute(g, retry=RetryPolicy(max_retries=5, base_delay=0.001))

    task = result.tasks["t"]
    assert (task.status, task.attempts, task.error) == ("failed", 1, "bad request")
    assert model.calls == 1
    assert not any(e.kind == "task_retried" for e in events)


async def test_task_retries_override_the_policy() -> None:
    more = ScriptedModel([RateLimitError(f"r{n}") for n in range(6)])
    none = ScriptedModel([RateLimitError("r"), "never"])
    g = TaskGraph()
    g.add("more", agent=Agent("a", more), prompt="go", retries=4)
    g.add("none", agent=Agent("b", none), prompt="go", retries=0)

    result, _ = await _execute(g, retry=RetryPolicy(max_retries=1, base_delay=0.001))

    assert (result.tasks["more"].attempts, result.tasks["more"].error) == (5, "r4")
    assert more.calls == 5
    assert (result.tasks["none"].attempts, result.tasks["none"].status) == (1, "failed")
    assert none.calls == 1


async def test_policy_with_no_retries() -> None:
    model = ScriptedModel([ProviderUnavailableError("down"), "never"])
    g = TaskGraph()
    g.add("t", agent=Agent("w", model), prompt="go")

    result, _ = await _execute(g, retry=RetryPolicy(max_retries=0))

    assert (result.tasks["t"].status, result.tasks["t"].attempts) == ("failed", 1)
    assert model.calls == 1


async def test_retry_after_is_a_lower_bound_on_the_delay() -> None:
    model = ScriptedModel([RateLimitError("429", retry_after=0.03), "ok"])
    g = TaskGraph()
    g.add("t", agent=Agent("w", model), prompt="go")

    result, events = await _execute(
        g, retry=RetryPolicy(max_retries=1, base_delay=0.001, max_delay=0.05)
    )

    retried = [e for e in events if isinstance(e, TaskRetried)]
    assert [(e.task_id, e.attempt, e.error, e.delay) for e in retried] == [("t", 1, "429", 0.03)]
    assert result.tasks["t"].attempts == 2


async def test_retry_delays_follow_the_policy_with_seeded_jitter() -> None:
    policy = RetryPolicy(max_retries=3, base_delay=0.002, max_delay=0.005, jitter=0.5)
    model = ScriptedModel([ProviderUnavailableError("503")] * 3 + ["ok"])
    g = TaskGraph()
    g.add("t", agent=Agent("w", model), prompt="go")

    result, events = await _execute(g, retry=policy, seed=7)

    rng = random.Random(7)
    expected = [policy.delay(n, rng) for n in (1, 2, 3)]
    assert [e.delay for e in events if isinstance(e, TaskRetried)] == expected
    assert result.tasks["t"].attempts == 4


async def test_function_tasks_are_retried_on_transient_errors_only() -> None:
    calls: Counter[str] = Counter()

    async def flaky(context: TaskContext) -> str:
        calls[context.task_id] += 1
        if calls[context.task_id] == 1:
            raise RateLimitError("slow down")
        return "ok"

    async def broken(context: TaskContext) -> str:
        calls[context.task_id] += 1
        raise ValueError("boom")

    g = TaskGraph()
    g.add("flaky", fn=flaky)
    g.add("broken", fn=broken)

    result, _ = await _execute(g)

    assert (result.tasks["flaky"].status, result.tasks["flaky"].attempts) == ("succeeded", 2)
    assert (result.tasks["broken"].status, result.tasks["broken"].error) == (
        "failed",
        "ValueError: boom",
    )
    assert calls == Counter({"flaky": 2, "broken": 1})


# --- RetryPolicy ------------------------------------------------------------------------------


def test_retry_policy_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.base_delay, policy.max_delay, policy.jitter) == (
        2,
        0.5,
        30.0,
        0.5,
    )


def test_retry_policy_exponential_backoff_capped_without_jitter() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0, jitter=0.0)
    rng = random.Random(0)
    assert [policy.delay(n, rng) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_retry_policy_jitter_scales_each_wait_within_bounds() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0, jitter=0.5)
    rng, twin = random.Random(3), random.Random(3)
    for n, backoff in enumerate([1.0, 2.0, 4.0, 8.0, 10.0, 10.0], start=1):
        delay = policy.delay(n, rng)
        assert delay == backoff * (1 - 0.5 * twin.random())
        assert backoff * 0.5 <= delay <= backoff


def test_retry_policy_full_jitter() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=4.0, jitter=1.0)
    rng = random.Random(11)
    delays = [policy.delay(3, rng) for _ in range(200)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) == 200


def test_retry_policy_retry_after_is_a_lower_bound() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0, jitter=0.0)
    rng = random.Random(0)
    assert policy.delay(1, rng, retry_after=5.0) == 5.0
    assert policy.delay(3, rng, retry_after=0.5) == 4.0
    assert policy.delay(2, rng, retry_after=None) == 2.0
    assert policy.delay(1, rng, retry_after=60.0) == 60.0  # above max_delay: the provider wins


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -1}, "RetryPolicy.max_retries must be an integer ≥ 0, got -1"),
        ({"max_retries": 1.5}, "RetryPolicy.max_retries must be an integer ≥ 0, got 1.5"),
        (
            {"base_delay": -0.1},
            "RetryPolicy delays must be ≥ 0 seconds, got base_delay=-0.1, max_delay=30.0",
        ),
        (
            {"max_delay": -1.0},
            "RetryPolicy delays must be ≥ 0 seconds, got base_delay=0.5, max_delay=-1.0",
        ),
        ({"jitter": 1.5}, "RetryPolicy.jitter must be between 0 and 1, got 1.5"),
        ({"jitter": -0.1}, "RetryPolicy.jitter must be between 0 and 1, got -0.1"),
    ],
)
def test_retry_policy_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        RetryPolicy(**kwargs)
    assert str(info.value) == message


# --- failures ---------------------------------------------------------------------------------


async def test_a_failed_task_skips_only_its_transitive_dependents() -> None:
    calls: Counter[str] = Counter()

    async def ok(context: TaskContext) -> str:
        calls[context.task_id] += 1
        return context.task_id

    async def bad(context: TaskContext) -> str:
        calls[context.task_id] += 1
        raise BadRequestError("rejected")

    g = TaskGraph()
    a = g.add("a", fn=bad)
    b = g.add("b", fn=ok, deps=[a])
    g.add("c", fn=ok, deps=[b])
    g.add("d", fn=ok, deps=[a])
    e = g.add("e", fn=ok)
    g.add("f", fn=ok, deps=[e])
    g.add("g", fn=ok, deps=[e, b])

    result, events = await _execute(g, max_concurrency=1)

    assert _statuses(result) == {
        "a": "failed",
        "b": "skipped",
        "c": "skipped",
        "d": "skipped",
        "e": "succeeded",
        "f": "succeeded",
        "g": "skipped",
    }
    assert result.status == "partial"
    assert result.tasks["a"].error == "rejected"
    for skipped in "bcdg":
        task = result.tasks[skipped]
        assert task.error == "dependency 'a' failed"
        assert (task.attempts, task.started_at, task.output) == (0, None, None)
        assert task.finished_at is not None
    assert calls == Counter({"a": 1, "e": 1, "f": 1})
    assert sorted((e.task_id, e.reason) for e in events if e.kind == "task_skipped") == [  # type: ignore[attr-defined]
        (t, "dependency 'a' failed") for t in "bcdg"
    ]
    assert set(result.failed) == {"a", "b", "c", "d", "g"}


async def test_all_failed_is_a_failed_run() -> None:
    async def bad(context: TaskContext) -> str:
        raise BadRequestError(f"{context.task_id} rejected")

    async def ok(context: TaskContext) -> str:
        return "ok"

    g = TaskGraph()
    a = g.add("a", fn=bad)
    g.add("b", fn=bad)
    g.add("c", fn=ok, deps=[a])

    result, _ = await _execute(g)

    assert _statuses(result) == {"a": "failed", "b": "failed", "c": "skipped"}
    assert result.status == "failed"
    assert result.output is None


async def test_fail_fast_cancels_running_and_waiting_tasks() -> None:
    calls: Counter[str] = Counter()
    never = anyio.Event()

    async def ok(context: TaskContext) -> str:
        calls[context.task_id] += 1
        return context.task_id

    async def bad(context: TaskContext) -> str:
        calls[context.task_id] += 1
        raise BadRequestError("rejected")

    async def hang(context: TaskContext) -> str:
        calls[context.task_id] += 1
        await never.wait()
        return "unreachable"

    g = TaskGraph()
    e = g.add("e", fn=ok)
    b = g.add("b", fn=hang)
    g.add("a", fn=bad, deps=[e])
    g.add("c", fn=ok, deps=[b])

    result, events = await _execute(g, max_concurrency=2, fail_fast=True)

    reason = "fail_fast: task 'a' failed"
    assert _statuses(result) == {
        "e": "succeeded",
        "b": "cancelled",
        "a": "failed",
        "c": "cancelled",
    }
    assert result.status == "partial"
    assert (result.tasks["b"].error, result.tasks["b"].attempts) == (reason, 1)
    assert (result.tasks["c"].error, result.tasks["c"].attempts) == (reason, 0)
    assert calls == Counter({"e": 1, "b": 1, "a": 1})
    cancelled = [(ev.task_id, ev.reason) for ev in events if ev.kind == "task_cancelled"]  # type: ignore[attr-defined]
    assert sorted(cancelled) == [("b", reason), ("c", reason)]
    assert not any(ev.kind == "task_skipped" for ev in events)


async def test_fail_fast_with_nothing_succeeded_is_a_failed_run() -> None:
    async def bad(context: TaskContext) -> str:
        raise BadRequestError("rejected")

    async def ok(context: TaskContext) -> str:
        return "ok"

    g = TaskGraph()
    a = g.add("a", fn=bad)
    g.add("b", fn=ok, deps=[a])

    result, _ = await _execute(g, fail_fast=True)

    assert _statuses(result) == {"a": "failed", "b": "cancelled"}
    assert result.status == "failed"


async def test_fail_fast_does_not_start_queued_tasks() -> None:
    calls: Counter[str] = Counter()

    async def ok(context: TaskContext) -> str:
        calls[context.task_id] += 1
        return context.task_id

    async def bad(context: TaskContext) -> str:
        calls[context.task_id] += 1
        raise BadRequestError("rejected")

    g = TaskGraph()
    g.add("a", fn=bad)
    g.add("d", fn=ok)  # queued behind 'a' on the only slot

    result, _ = await _execute(g, max_concurrency=1, fail_fast=True)

    assert _statuses(result) == {"a": "failed", "d": "cancelled"}
    assert calls == Counter({"a": 1})


# --- timeouts ---------------------------------------------------------------------------------


async def test_timeout_is_retried_then_fails() -> None:
    calls = 0

    async def slow(context: TaskContext) -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep(30)
        return "late"

    g = TaskGraph()
    g.add("slow", fn=slow, timeout=0.02)

    result, events = await _execute(g, retry=RetryPolicy(max_retries=1, base_delay=0.001))

    task = result.tasks["slow"]
    message = "task 'slow' timed out after 0.02s; raise its timeout or give the worker less to do"
    assert (task.status, task.attempts, task.error) == ("failed", 2, message)
    assert calls == 2
    assert [e.error for e in events if isinstance(e, TaskRetried)] == [message]


async def test_timeout_of_a_model_call_without_retries() -> None:
    model = FunctionModel(lambda request: "late", latency=30)
    g = TaskGraph()
    g.add("t", agent=Agent("w", model), prompt="go", timeout=0.02, retries=0)

    result, _ = await _execute(g)

    task = result.tasks["t"]
    assert (task.status, task.attempts) == ("failed", 1)
    assert task.error is not None
    assert "timed out after 0.02s" in task.error
    assert model.calls == 1


async def test_timeout_then_success() -> None:
    calls = 0

    async def slow_once(context: TaskContext) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep(30)
        return "done"

    g = TaskGraph()
    g.add("t", fn=slow_once, timeout=0.02)

    result, _ = await _execute(g)

    assert (result.tasks["t"].status, result.tasks["t"].attempts) == ("succeeded", 2)
    assert result.tasks["t"].output == "done"


# --- function tasks ---------------------------------------------------------------------------


async def test_sync_functions_run_in_a_thread_async_ones_on_the_loop() -> None:
    loop_thread = threading.get_ident()
    threads: dict[str, int] = {}
    contexts: dict[str, TaskContext] = {}

    def sync_fn(context: TaskContext) -> int:
        threads[context.task_id] = threading.get_ident()
        contexts[context.task_id] = context
        return int(context.inputs["n"]) * 10

    async def async_fn(context: TaskContext) -> dict[str, Any]:
        threads[context.task_id] = threading.get_ident()
        contexts[context.task_id] = context
        return {"sum": sum(context.deps.values())}

    g = TaskGraph()
    a = g.add("a", fn=sync_fn)
    b = g.add("b", fn=sync_fn)
    g.add("unrelated", fn=sync_fn)
    g.add("c", fn=async_fn, deps=[a, b])

    events: list[Event] = []
    orch = Orchestrator(on_event=events.append)
    result = await orch.execute(g, {"n": 2}, run_id="run-1")

    assert result.status == "succeeded"
    assert threads["a"] != loop_thread
    assert threads["b"] != loop_thread
    assert threads["c"] == loop_thread
    assert result.tasks["c"].output == {"sum": 40}
    c = contexts["c"]
    assert (c.task_id, c.run_id) == ("c", "run-1")
    assert dict(c.inputs) == {"n": 2}
    assert dict(c.deps) == {"a": 20, "b": 20}
    assert dict(contexts["a"].deps) == {}
    assert (result.tasks["c"].agent, result.tasks["c"].model) == (None, None)
    assert {e.agent for e in events if e.kind == "task_started"} == {None}  # type: ignore[attr-defined]


async def test_sync_callable_returning_an_awaitable() -> None:
    class Doubler:
        async def __call__(self, context: TaskContext) -> int:
            return 2 * int(context.inputs["x"])

    g = TaskGraph()
    g.add("t", fn=Doubler())

    result = await Orchestrator().execute(g, {"x": 21})

    assert result.tasks["t"].output == 42


async def test_empty_graph_succeeds_with_no_output() -> None:
    result, events = await _execute(TaskGraph())
    assert (result.status, result.output, result.tasks) == ("succeeded", None, {})
    assert [e.kind for e in events] == ["run_started", "run_finished"]


async def test_nodes_added_in_a_batch_with_skips_and_after_done_run_once() -> None:
    import random

    from delegate.orchestrator.budget import BudgetLedger
    from delegate.orchestrator.calls import RunAccount
    from delegate.orchestrator.events import EventBus
    from delegate.orchestrator.scheduler import Scheduler, build_nodes

    calls: dict[str, int] = {}

    def fn(ctx: TaskContext) -> str:
        calls[ctx.task_id] = calls.get(ctx.task_id, 0) + 1
        if ctx.task_id == "x":
            raise ValueError("x fails")
        return ctx.task_id

    scheduler = Scheduler(
        [],
        run_id="r",
        inputs={},
        max_concurrency=4,
        retry=RetryPolicy(max_retries=0),
        fail_fast=False,
        bus=EventBus(),
        account=RunAccount(BudgetLedger(), None, {}),
        rng=random.Random(0),
    )
    scheduler.hold()
    graph = TaskGraph()

    async def drive() -> None:
        first = graph.add("first", fn=fn)
        after = graph.add("after", fn=fn, deps=[first])
        # `first` is skipped by a condition, yet `after`, added with it, runs.
        scheduler.add(
            build_nodes([first, after], {}, known=scheduler.by_id), skipped={"first": "no"}
        )
        x = graph.add("x", fn=fn)
        scheduler.add(build_nodes([x], {}, known=scheduler.by_id))
        await scheduler.settled()
        a = graph.add("a", fn=fn, deps=[x])
        d = graph.add("d", fn=fn, deps=[a], after="done")
        scheduler.add(build_nodes([a, d], {}, known=scheduler.by_id))
        scheduler.release()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(drive)
            await scheduler.run()

    statuses = {node.task.id: node.status for node in scheduler.nodes}
    assert statuses == {
        "first": "skipped",
        "after": "succeeded",
        "x": "failed",
        "a": "skipped",
        "d": "succeeded",
    }
    assert calls == {"after": 1, "x": 1, "d": 1}
