"""Rate limits end to end: a wide fan-out against a provider that answers 429 above its limits.

    .venv/bin/python benchmarks/rate_limit.py                   # 500 tasks, clock ×100 (~10 s)
    .venv/bin/python benchmarks/rate_limit.py --time-scale 20   # slower, closer to real time
    .venv/bin/python benchmarks/rate_limit.py --json out.json

The fake provider limits one model to 60 requests and 40,000 tokens a minute, counted as
Anthropic documents its limits: token buckets refilled continuously up to the per-minute limit,
a request's tokens taken when it arrives (its prompt plus its max_tokens) and corrected to its real
usage when it ends; a request over either limit gets a 429 at once. Each request takes 2 s to
answer. 500 tasks (prompts of 250-350 tokens, answers of 150-250, max_output_tokens 400) run on
one agent with `max_concurrency=64`, twice:

- **limited**: `Orchestrator(rate_limits={model: RateLimit(rpm=60, tpm=40_000)})`;
- **unlimited**: no rate limit, the default task retries (2, with backoff) — the 429 storm.

Real time at 60 rpm would be 8 minutes, so the provider's clock, the limiter's and the model's
latency all run `--time-scale` times faster than the wall clock (the limits stay 60 rpm / 40k tpm
of that clock; retry backoffs are scaled the same way). Reported: 429s, tasks that failed, the
run's length in clock seconds, and the throughput the provider saw against its limits, over the
whole run and *sustained*: after the first minute (the buckets start full, and any client may
spend that at once), the rate between the first request that arrived then and the last. Target: 0
rate-limit errors and sustained throughput within 5 % of the limit that binds.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio

from delegate import Agent, Orchestrator, RateLimit, RateLimiter, RetryPolicy, TaskGraph
from delegate.agents.models import ModelRequest, ModelResponse, Price
from delegate.agents.wrappers import output_allowance
from delegate.errors import RateLimitError
from delegate.testing import FunctionModel

MODEL = "fake/mini"
RPM, TPM = 60, 40_000
TASKS = 500
LATENCY = 2.0  # clock seconds per request
MAX_OUTPUT = 400
WORDS = ("battery", "market", "storage", "price", "grid", "home", "solar", "demand")


class ScaledClock:
    """anyio's clock, `scale` times faster, from when it was made (a `delegate` `Clock`)."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.origin = anyio.current_time()

    def now(self) -> float:
        return (anyio.current_time() - self.origin) * self.scale

    def deadline(self) -> float:
        deadline = anyio.current_effective_deadline()
        return math.inf if math.isinf(deadline) else (deadline - self.origin) * self.scale

    async def wait(self, event: anyio.Event, until: float) -> None:
        with anyio.CancelScope(deadline=self.origin + until / self.scale):
            await event.wait()


class Provider:
    """One model behind the provider's own limits: over them, a 429 at once."""

    def __init__(self, clock: ScaledClock, seed: int) -> None:
        self.clock = clock
        self.requests, self.tokens, self.updated = float(RPM), float(TPM), 0.0
        self.accepted: list[tuple[float, int]] = []  # (clock time, tokens really used)
        self.refused = 0
        rng = random.Random(seed)
        self.answers = [" ".join(rng.choices(WORDS, k=rng.randint(150, 250))) for _ in range(64)]
        self.inner = FunctionModel(self._answer, name=MODEL, input_price=0.15, output_price=0.6)

    name = MODEL

    @property
    def price(self) -> Price:
        return self.inner.price

    def count_tokens(self, request: ModelRequest) -> int:
        return self.inner.count_tokens(request)

    def _answer(self, request: ModelRequest) -> str:
        return self.answers[len(self.accepted) % len(self.answers)]

    def _refill(self) -> None:
        now = self.clock.now()
        elapsed, self.updated = now - self.updated, now
        self.requests = min(RPM, self.requests + elapsed * RPM / 60)
        self.tokens = min(TPM, self.tokens + elapsed * TPM / 60)

    async def request(self, request: ModelRequest) -> ModelResponse:
        self._refill()
        taken = self.count_tokens(request) + output_allowance(request)
        if self.requests < 1 or self.tokens < taken:
            self.refused += 1
            raise RateLimitError("429: rate limit exceeded", model=MODEL)
        self.requests -= 1
        self.tokens -= taken
        arrived = self.clock.now()
        await anyio.sleep(LATENCY / self.clock.scale)
        response = await self.inner.request(request)
        used = response.usage.input_tokens + response.usage.output_tokens
        self._refill()
        self.tokens = min(TPM, self.tokens + taken - used)
        self.accepted.append((arrived, used))
        return response


@dataclass
class Outcome:
    mode: str
    refused: int
    failed: int
    clock_seconds: float
    wall_seconds: float
    rpm: float
    tpm: float
    sustained_rpm: float
    sustained_tpm: float


def _graph(provider: Provider, seed: int) -> TaskGraph:
    rng = random.Random(seed)
    agent = Agent("scout", provider, max_output_tokens=MAX_OUTPUT)
    graph = TaskGraph()
    for n in range(TASKS):
        words = " ".join(rng.choices(WORDS, k=rng.randint(250, 350)))
        graph.add(f"t{n}", agent=agent, prompt=f"Notes {n}: {words}")
    return graph


async def _run(mode: str, scale: float, seed: int) -> Outcome:
    clock = ScaledClock(scale)
    provider = Provider(clock, seed)
    if mode == "limited":
        limiter = RateLimiter(RateLimit(rpm=RPM, tpm=TPM), name=MODEL, clock=clock)
        orchestrator = Orchestrator(
            rate_limits={MODEL: limiter}, max_concurrency=64, memory=None, seed=seed
        )
    else:  # the default retries, their backoff on the scaled clock
        retry = RetryPolicy(base_delay=0.5 / scale, max_delay=30.0 / scale)
        orchestrator = Orchestrator(max_concurrency=64, memory=None, retry=retry, seed=seed)
    started = time.perf_counter()
    result = await orchestrator.execute(_graph(provider, seed))
    wall = time.perf_counter() - started
    failed = sum(task.status != "succeeded" for task in result.tasks.values())
    return _outcome(mode, provider, clock.now(), wall, failed)


def _outcome(
    mode: str, provider: Provider, clock_seconds: float, wall: float, failed: int
) -> Outcome:
    times = [at for at, _ in provider.accepted]
    used = [tokens for _, tokens in provider.accepted]
    last = max(times, default=0.0)
    minutes = max(last, 1e-9) / 60
    # Sustained: after the first minute (the buckets start full, and any client may spend
    # that at once), the rate between the first request that arrived then and the last.
    later = sorted((at, tokens) for at, tokens in provider.accepted if at >= 60.0)
    window = (later[-1][0] - later[0][0]) / 60 if len(later) > 1 else math.inf
    sustained_rpm = (len(later) - 1) / window
    sustained_tpm = sum(tokens for _, tokens in later[1:]) / window
    return Outcome(
        mode=mode,
        refused=provider.refused,
        failed=failed,
        clock_seconds=clock_seconds,
        wall_seconds=wall,
        rpm=len(times) / minutes,
        tpm=sum(used) / minutes,
        sustained_rpm=sustained_rpm,
        sustained_tpm=sustained_tpm,
    )


def _report(outcomes: list[Outcome], scale: float) -> None:
    print(
        f"rate_limit: {TASKS} tasks on {MODEL}, provider limits {RPM} rpm / {TPM:,} tpm (429 "
        f"above), {LATENCY:g} s a request, clock ×{scale:g}"
    )
    print(
        f"{'':10} {'429s':>6} {'failed':>7} {'clock s':>8} {'wall s':>7} "
        f"{'rpm':>6} {'sustained':>10} {'tpm':>8} {'sustained':>10}"
    )
    for o in outcomes:
        print(
            f"{o.mode:10} {o.refused:>6} {o.failed:>7} {o.clock_seconds:>8.1f} "
            f"{o.wall_seconds:>7.1f} {o.rpm:>6.1f} {o.sustained_rpm:>10.1f} {o.tpm:>8,.0f} "
            f"{o.sustained_tpm:>10,.0f}"
        )
    limited = outcomes[0]
    binding = max(limited.sustained_rpm / RPM, limited.sustained_tpm / TPM)
    verdict = "PASS" if limited.refused == 0 and binding >= 0.95 else "MISS"
    print(
        f"limited: {limited.refused} rate-limit errors, sustained throughput {binding:.1%} of "
        f"the binding limit (target: 0 errors, ≥ 95 %) {verdict}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time-scale", type=float, default=100.0, help="clock speed-up")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only-limited", action="store_true", help="skip the unlimited run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.time_scale <= 0:
        parser.error("--time-scale must be > 0")
    modes = ["limited"] if args.only_limited else ["limited", "unlimited"]
    outcomes = [anyio.run(_run, mode, args.time_scale, args.seed) for mode in modes]
    _report(outcomes, args.time_scale)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2))


if __name__ == "__main__":
    sys.exit(main())
