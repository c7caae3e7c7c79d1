"""Rate limits: requests and tokens per minute, shared by every agent on a model.

Time is a fake clock that moves only when a test says so, and a fake provider counts what it
receives with its own limiter (token buckets refilled continuously up to the per-minute limit,
a request's tokens taken on arrival as its prompt plus its max_tokens and corrected to its real
usage when it ends, as Anthropic documents it); over its limits it answers 429. Every assertion
is a count: requests the provider saw, 429s it gave, the clock time each request was sent at.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio
import pytest

from delegate import (
    Agent,
    Budget,
    ModelRequest,
    ModelResponse,
    Orchestrator,
    RateLimit,
    RateLimitedModel,
    RateLimiter,
    RetryPolicy,
    TaskGraph,
    Usage,
)
from delegate.agents.wrappers import output_allowance
from delegate.errors import ConfigError, RateLimitError
from delegate.testing import FunctionModel
from delegate.workflows.loader import load_workflow_text
from delegate.workflows.runtime import compile_workflow

pytestmark = pytest.mark.anyio

NO_RETRY = RetryPolicy(max_retries=0)


class FakeClock:
    """Time that moves only in `advance`; a limiter waiting for it wakes when it is due."""

    def __init__(self) -> None:
        self.time = 0.0
        self._sleepers: list[tuple[float, anyio.Event]] = []

    def now(self) -> float:
        return self.time

    def deadline(self) -> float:
        return math.inf

    async def wait(self, event: anyio.Event, until: float) -> None:
        if until > self.time:
            self._sleepers.append((until, event))
            await event.wait()

    async def advance(self, seconds: float) -> None:
        """Move the time on, wake who is due, and let everything run until it blocks again."""
        self.time += seconds
        due = [event for until, event in self._sleepers if until <= self.time + 1e-9]
        self._sleepers = [(u, e) for u, e in self._sleepers if u > self.time + 1e-9]
        for event in due:
            event.set()
        await anyio.wait_all_tasks_blocked()


class Provider:
    """A fake provider of one model, with its own limits and its own count of what it got."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        name: str = "m",
        answer: str = "ok",
        hold: anyio.Event | None = None,
    ) -> None:
        self.clock = clock
        self.rpm, self.tpm = rpm, tpm
        self.requests = rpm or 0.0
        self.tokens = tpm or 0.0
        self.updated = 0.0
        self.sent_at: list[float] = []  # when each accepted request arrived
        self.refused = 0  # 429s
        self.hold = hold

        async def respond(request: ModelRequest) -> str:
            if self.hold is not None:
                await self.hold.wait()
            return answer

        self.inner = FunctionModel(respond, name=name, input_price=1.0, output_price=4.0)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def price(self) -> Any:
        return self.inner.price

    def count_tokens(self, request: ModelRequest) -> int:
        return self.inner.count_tokens(request)

    def _refill(self) -> None:
        elapsed = self.clock.now() - self.updated
        self.updated = self.clock.now()
        if self.rpm is not None:
            self.requests = min(self.rpm, self.requests + elapsed * self.rpm / 60)
        if self.tpm is not None:
            self.tokens = min(self.tpm, self.tokens + elapsed * self.tpm / 60)

    async def request(self, request: ModelRequest) -> ModelResponse:
        self._refill()
        taken = self.count_tokens(request) + output_allowance(request)
        if (self.rpm is not None and self.requests < 1) or (
            self.tpm is not None and self.tokens < taken
        ):
            self.refused += 1
            raise RateLimitError("429: over the rate limit", model=self.name)
        self.requests -= 1
        self.tokens -= taken
        self.sent_at.append(self.clock.now())
        response = await self.inner.request(request)
        self._refill()
        self.tokens += taken - response.usage.input_tokens - response.usage.output_tokens
        return response


def _request(text: str = "Hi", max_output_tokens: int | None = 100) -> ModelRequest:
    return ModelRequest([{"role": "user", "content": text}], max_output_tokens=max_output_tokens)


def _fan_out(model: Any, count: int, **agent: Any) -> TaskGraph:
    graph = TaskGraph()
    worker = Agent("w", model, max_output_tokens=100, **agent)
    for n in range(count):
        graph.add(f"t{n}", agent=worker, prompt=f"Question {n}.")
    return graph


# --- the limiter on its own --------------------------------------------------------------------


async def test_requests_per_minute_go_out_on_the_bucket_schedule() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(rpm=3), clock=clock)
    sent: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        sent.append(clock.now())

    async with anyio.create_task_group() as group:
        for _ in range(7):
            group.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        assert (sent, limiter.waiting) == ([0.0, 0.0, 0.0], 4)  # the full bucket, at once
        await clock.advance(19.9)
        assert len(sent) == 3
        await clock.advance(0.1)  # one request every 60 / 3 seconds from now on
        for _ in range(3):
            await clock.advance(20)
    assert sent == [0.0, 0.0, 0.0, 20.0, 40.0, 60.0, 80.0]


async def test_tokens_per_minute_hold_a_request_until_its_tokens_are_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(tpm=1_000), clock=clock)
    await limiter.acquire(400)
    await limiter.acquire(400)
    done = anyio.Event()

    async def third() -> None:
        await limiter.acquire(400)
        done.set()

    async with anyio.create_task_group() as group:
        group.start_soon(third)
        await anyio.wait_all_tasks_blocked()
        await clock.advance(11.9)  # 200 tokens are left: 200 more take 12 s at 1,000 a minute
        assert not done.is_set()
        await clock.advance(0.1)
        assert done.is_set()
    assert limiter.tokens_left == pytest.approx(0.0)


async def test_usage_below_the_allowance_is_given_back_at_once() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(tpm=1_000), clock=clock)
    await limiter.acquire(900)
    done = anyio.Event()

    async def next_one() -> None:
        await limiter.acquire(500)
        done.set()

    async with anyio.create_task_group() as group:
        group.start_soon(next_one)
        await anyio.wait_all_tasks_blocked()
        assert not done.is_set()
        limiter.settle(900, Usage(input_tokens=60, output_tokens=40))  # it used 100
        await anyio.wait_all_tasks_blocked()
        assert done.is_set()  # without the clock moving
    assert limiter.tokens_left == 400


async def test_requests_wait_first_come_first_served() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(tpm=1_000), clock=clock)
    await limiter.acquire(900)
    order: list[str] = []

    async def one(name: str, tokens: int) -> None:
        await limiter.acquire(tokens)
        order.append(name)

    async with anyio.create_task_group() as group:
        group.start_soon(one, "large", 500)
        await anyio.wait_all_tasks_blocked()
        group.start_soon(one, "small", 50)  # would fit now, but the large one came first
        await anyio.wait_all_tasks_blocked()
        assert order == []
        await clock.advance(24)  # 400 more tokens
        assert order == ["large"]
        await clock.advance(24)
    assert order == ["large", "small"]


async def test_a_429_with_retry_after_pauses_the_limiter() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(rpm=60), clock=clock)
    await limiter.acquire()
    limiter.failed(0, RateLimitError("429", retry_after=10.0))
    sent: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        sent.append(clock.now())

    async with anyio.create_task_group() as group:
        group.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        await clock.advance(9.5)
        assert sent == []
        await clock.advance(0.5)
    assert sent == [10.0]


async def test_a_429_without_retry_after_empties_the_buckets() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(rpm=60, tpm=6_000), clock=clock)
    await limiter.acquire(100)
    limiter.failed(100, RateLimitError("429"))
    assert (limiter.requests_left, limiter.tokens_left) == (0.0, 0.0)
    await clock.advance(1)
    assert (limiter.requests_left, limiter.tokens_left) == (1.0, 100.0)


async def test_a_request_that_never_left_gives_everything_back() -> None:
    limiter = RateLimiter(RateLimit(rpm=10, tpm=1_000), clock=FakeClock())
    await limiter.acquire(300)
    limiter.failed(300, ConfigError("refused before sending"))
    assert (limiter.requests_left, limiter.tokens_left) == (10, 1_000)


async def test_a_request_larger_than_tpm_can_never_fit() -> None:
    limiter = RateLimiter(RateLimit(tpm=1_000), name="m", clock=FakeClock())
    with pytest.raises(ConfigError, match=r"1,001 tokens .* can never fit .* tpm=1,000"):
        await limiter.acquire(1_001)


async def test_a_wait_past_the_deadline_fails_at_once_unsent() -> None:
    limiter = RateLimiter(RateLimit(rpm=1), name="m")  # anyio's clock
    await limiter.acquire()
    with anyio.fail_after(5), pytest.raises(RateLimitError, match="would pass the deadline") as e:
        await limiter.acquire()  # the next request is due in 60 s
    assert (e.value.delivery, e.value.retry_after) == ("not_sent", pytest.approx(60, rel=0.01))


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ({}, "RateLimit needs rpm=, tpm= or both"),
        ({"rpm": 0}, "RateLimit.rpm must be a number ≥ 1 or None, got 0"),
        ({"tpm": math.inf}, "RateLimit.tpm must be a number ≥ 1 or None, got inf"),
        ({"rpm": True}, "RateLimit.rpm must be a number ≥ 1 or None, got True"),
    ],
)
def test_rate_limits_are_checked(limit: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RateLimit(**limit)


def test_rate_limit_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"rate_limits\['m'\] must be a delegate.RateLimit"):
        Orchestrator(rate_limits={"m": 60})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="rpm=/tpm= or a shared limiter=, not both"):
        RateLimitedModel("m/x", rpm=1, limiter=RateLimiter(RateLimit(rpm=1)))


# --- in runs: shared, exact, fed by the gate's count -------------------------------------------


async def test_a_fan_out_never_exceeds_the_providers_limits() -> None:
    clock = FakeClock()
    provider = Provider(clock, rpm=4, tpm=2_000)
    limiter = RateLimiter(RateLimit(rpm=4, tpm=2_000), name="m", clock=clock)
    orchestrator = Orchestrator(rate_limits={"m": limiter}, retry=NO_RETRY, max_concurrency=32)
    results = []

    async def run() -> None:
        results.append(await orchestrator.execute(_fan_out(provider, 12)))

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await anyio.wait_all_tasks_blocked()
        assert len(provider.sent_at) == 4  # the full bucket
        for _ in range(8):
            await clock.advance(15)  # one request's worth at 4 a minute
    assert results[0].status == "succeeded"
    assert provider.refused == 0
    assert provider.sent_at == [0.0] * 4 + [15.0 * n for n in range(1, 9)]


async def test_agents_on_one_model_share_its_limiter_and_orchestrators_do_not() -> None:
    clock = FakeClock()
    provider = Provider(clock, rpm=2)
    limiter = RateLimiter(RateLimit(rpm=2), name="m", clock=clock)
    orchestrator = Orchestrator(rate_limits={"m": limiter}, retry=NO_RETRY)
    graph = TaskGraph()
    for n, name in enumerate(["a", "b", "c"]):
        graph.add(f"t{n}", agent=Agent(name, provider, max_output_tokens=100), prompt="Hi.")

    async with anyio.create_task_group() as group:
        group.start_soon(orchestrator.execute, graph)
        await anyio.wait_all_tasks_blocked()
        assert len(provider.sent_at) == 2  # three agents, one limiter
        await clock.advance(30)
    assert (len(provider.sent_at), provider.refused) == (3, 0)
    first, second = (Orchestrator(rate_limits={"m": RateLimit(rpm=2)}) for _ in range(2))
    assert first.rate_limits["m"] is not second.rate_limits["m"]


async def test_the_limiter_takes_the_gates_count_plus_the_allowance_then_the_real_usage() -> None:
    clock = FakeClock()
    hold = anyio.Event()
    provider = Provider(clock, hold=hold)
    limiter = RateLimiter(RateLimit(tpm=10_000), name="m", clock=clock)
    orchestrator = Orchestrator(rate_limits={"m": limiter})
    results = []

    async def run() -> None:
        graph = _fan_out(provider, 1)
        results.append(await orchestrator.execute(graph, budget=Budget(tokens=50_000)))

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await anyio.wait_all_tasks_blocked()
        request = provider.inner.requests[0]
        assert request.input_tokens == provider.count_tokens(request)  # the gate's own count
        assert limiter.tokens_left == 10_000 - request.input_tokens - 100  # + max_output_tokens
        hold.set()
    usage = results[0].usage
    assert limiter.tokens_left == 10_000 - usage.input_tokens - usage.output_tokens


async def test_a_request_that_can_never_fit_fails_unsent_and_free() -> None:
    provider = Provider(FakeClock())
    result = await Orchestrator(rate_limits={"m": RateLimit(tpm=50)}, retry=NO_RETRY).execute(
        _fan_out(provider, 1), budget=Budget(usd=1.0)
    )
    assert "can never fit the rate limit of tpm=50" in (result.tasks["t0"].error or "")
    assert (len(provider.sent_at), result.usage.calls, result.usage.cost_usd) == (0, 0, 0.0)


async def test_a_wait_past_the_run_deadline_ends_the_task_unsent() -> None:
    provider = Provider(FakeClock())
    orchestrator = Orchestrator(rate_limits={"m": RateLimit(rpm=1)}, retry=NO_RETRY)
    result = await orchestrator.execute(_fan_out(provider, 2), budget=Budget(seconds=30))
    failed = [task for task in result.tasks.values() if task.status == "failed"]
    assert len(failed) == 1
    assert "would pass the deadline" in (failed[0].error or "")
    assert (failed[0].usage, result.usage.calls) == (Usage(), 1)


async def test_a_request_cancelled_while_it_waits_is_not_charged() -> None:
    clock = FakeClock()  # never advanced: the second request waits until its task times out
    provider = Provider(clock)
    limiter = RateLimiter(RateLimit(rpm=1), name="m", clock=clock)
    graph = TaskGraph()
    agent = Agent("w", provider, max_output_tokens=100)
    graph.add("first", agent=agent, prompt="One.")
    graph.add("second", agent=agent, prompt="Two.", timeout=0.05, retries=0)
    result = await Orchestrator(rate_limits={"m": limiter}, max_concurrency=1).execute(
        graph, budget=Budget(usd=1.0)
    )
    assert result.tasks["second"].status == "failed"
    assert result.tasks["second"].usage == Usage()
    assert (result.usage.calls, result.usage.unconfirmed_usd) == (1, 0.0)


async def test_a_providers_429_pauses_every_agent_on_the_model() -> None:
    clock = FakeClock()
    calls = 0

    def answer(request: ModelRequest) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RateLimitError("429", model="m", retry_after=30.0)
        return "ok"

    model = RateLimitedModel(
        FunctionModel(answer, name="m"), limiter=RateLimiter(RateLimit(rpm=100), clock=clock)
    )
    with pytest.raises(RateLimitError):
        await model.request(_request())
    done = anyio.Event()

    async def again() -> None:
        await Agent("other", model).run("Hi")
        done.set()

    async with anyio.create_task_group() as group:
        group.start_soon(again)
        await clock.advance(29)
        assert (calls, done.is_set()) == (1, False)
        await clock.advance(1)
    assert calls == 2


async def test_a_workflow_sets_rate_limits_by_model(tmp_path: Path) -> None:
    text = """
name: limited
agents:
  scout: {model: openai/gpt-4o-mini}
rate_limits:
  openai/gpt-4o-mini: {rpm: 500, tpm: 200000}
steps:
  - id: one
    agent: scout
    prompt: "Say hi."
"""
    loaded = load_workflow_text(text, str(tmp_path / "wf.yaml"))
    compiled = compile_workflow(loaded, simulate=True, text=text, time_scale=0.0, db=None)
    limiter = compiled.orchestrator.rate_limits["openai/gpt-4o-mini"]
    assert limiter.limit == RateLimit(rpm=500, tpm=200_000)


def test_a_workflow_rate_limit_needs_a_limit(tmp_path: Path) -> None:
    text = """
name: limited
agents:
  scout: {model: openai/gpt-4o-mini}
rate_limits:
  openai/gpt-4o-mini: {}
steps:
  - id: one
    agent: scout
    prompt: "Say hi."
"""
    with pytest.raises(ConfigError, match="give rpm, tpm or both"):
        load_workflow_text(text, str(tmp_path / "wf.yaml"))
