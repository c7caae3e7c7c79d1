"""Budget ledger benchmark: overhead per reserve + settle, and token counting throughput.

    .venv/bin/python benchmarks/ledger.py                  # 5 repeats, median
    .venv/bin/python benchmarks/ledger.py --quick          # 1 repeat
    .venv/bin/python benchmarks/ledger.py --json out.json  # also write the results as JSON

Ledger: 1,000 anyio tasks run at once, each with its own task scope under one of 10 agent scopes
under the run (3 nested scopes per call; the run has tokens, usd and calls limits, the agent and
the task tokens limits, none of which is reached). Each task reserves, yields to the event loop (so
all 1,000 reservations are outstanding together), then settles. Reported per reserve + settle pair:

- *in the ledger*: time spent inside `reserve` and `settle`, timed around each call;
- *event-loop delta*: the whole run's time minus the same run without the ledger, per task;
- *plan + reserve + settle*: in the ledger, with `plan` first, as the call path does it;
- *lock share*: how much of the in-ledger time the `threading.Lock` costs (same run, lock off).

Token counting: `delegate.agents.tokens.count_text` on a long text (tokens per second) and on a
short prompt (µs per call), for an exact o200k_base model and a cl100k_base estimate. The
tokenizer is loaded (from litellm's shipped files) before anything is timed.

The target (issue 3: ≤ 20 µs per reserve + settle) is printed next to the result; the exit
status is 0 either way.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from delegate.agents import tokens as tokens_module
from delegate.agents.models import Message, Price, Usage
from delegate.agents.tokens import count_messages, count_text, encoding_for
from delegate.orchestrator.budget import Budget, BudgetLedger, BudgetScope

TASKS = 1_000
AGENTS = 10
TARGET_US = 20.0
PRICE = Price(0.15, 0.6)
USAGE = Usage(input_tokens=1_200, output_tokens=300, calls=1)
MODELS = ("openai/gpt-4o-mini", "anthropic/claude-haiku-4-5")
SHORT_PROMPT = (
    "Summarize the three most important findings of the attached report on solid-state "
    "batteries in two sentences, for a reader who is not an engineer."
)
_PARAGRAPH = (
    "Solid-state batteries replace the liquid electrolyte with a solid one: a ceramic, a glass, "
    "a sulfide or a polymer. The promise is higher energy density (a lithium-metal anode becomes "
    "possible), no flammable liquid, and a wider temperature range. The problems are interfaces "
    "that crack as the electrodes swell, dendrites that still find a way through grain "
    "boundaries, and manufacturing at scale. def reserve(scopes, tokens): return [s for s in "
    "scopes if s.left >= tokens]  # 2024-06-01, v1.2.3, 42 %, $0.15/M, naïve café, 東京.\n"
)
# The paragraph's words in a seeded random order: ≈ 0.5 M tokens that do not repeat verbatim.
_WORDS = _PARAGRAPH.split(" ")
_RNG = random.Random(20240601)
LONG_TEXT = " ".join(_RNG.choice(_WORDS) for _ in range(300_000))


@dataclass
class LedgerResult:
    scenario: str
    tasks: int
    us_per_pair: float
    target_us: float | None
    passed: bool | None
    runs_us: list[float]


@dataclass
class TokenResult:
    scenario: str
    model: str
    value: float
    unit: str
    runs: list[float]


# --- ledger ---------------------------------------------------------------------------------------


def _world() -> tuple[BudgetLedger, list[BudgetScope]]:
    ledger = BudgetLedger()
    run = ledger.open("run", Budget(tokens=10**12, usd=10**6, calls=10**9))
    agents = [ledger.open(f"agent 'a{i}'", Budget(tokens=10**11), run) for i in range(AGENTS)]
    tasks = [
        ledger.open(f"task 't{i}'", Budget(tokens=10**10), agents[i % AGENTS]) for i in range(TASKS)
    ]
    return ledger, tasks


async def _concurrent(*, ledger_on: bool, plan: bool) -> tuple[float, float]:
    """One run of TASKS tasks; returns (seconds inside the ledger, seconds for the whole run)."""
    ledger, tasks = _world()
    inside = 0
    clock = time.perf_counter_ns

    async def one(task: BudgetScope) -> None:
        nonlocal inside
        scopes = (task,)
        if not ledger_on:
            await anyio.lowlevel.checkpoint()
            return
        started = clock()
        allowed = 4_096
        if plan:
            allowed = ledger.plan(
                scopes, input_tokens=1_200, output_tokens=4_096, price=PRICE, model="m"
            )
        reservation = ledger.reserve(
            scopes, input_tokens=1_200, output_tokens=allowed, price=PRICE, model="m"
        )
        inside += clock() - started
        await anyio.lowlevel.checkpoint()  # every reservation is outstanding at this point
        started = clock()
        ledger.settle(reservation, USAGE)
        inside += clock() - started

    gc.collect()
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for task in tasks:
            tg.start_soon(one, task)
    whole = time.perf_counter() - started
    if ledger_on and ledger.scopes[0].spent_calls != TASKS:
        raise SystemExit("benchmark run did not settle every call")
    return inside / 1e9, whole


def _sync_pairs(pairs: int = 200_000) -> float:
    """µs per reserve + settle in a tight loop, no event loop (1 reservation outstanding)."""
    ledger, tasks = _world()
    scopes = (tasks[0],)
    reserve, settle = ledger.reserve, ledger.settle
    gc.collect()
    started = time.perf_counter()
    for _ in range(pairs):
        reservation = reserve(
            scopes, input_tokens=1_200, output_tokens=4_096, price=PRICE, model="m"
        )
        settle(reservation, USAGE)
    return (time.perf_counter() - started) * 1e6 / pairs


def _lock_cost(rounds: int = 1_000_000) -> float:
    """µs the ledger's lock adds per reserve + settle: two uncontended `with lock:` blocks."""
    lock = threading.Lock()
    started = time.perf_counter()
    for _ in range(rounds):
        with lock:
            pass
    locked = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(rounds):
        pass
    empty = time.perf_counter() - started
    return 2 * (locked - empty) * 1e6 / rounds


async def measure_ledger(repeats: int) -> list[LedgerResult]:
    await _concurrent(ledger_on=True, plan=True)  # warm-up
    inside, delta, planned = [], [], []
    for _ in range(repeats):
        seconds, whole = await _concurrent(ledger_on=True, plan=False)
        _, bare = await _concurrent(ledger_on=False, plan=False)
        inside.append(seconds * 1e6 / TASKS)
        delta.append((whole - bare) * 1e6 / TASKS)
        planned.append((await _concurrent(ledger_on=True, plan=True))[0] * 1e6 / TASKS)
    sync = [_sync_pairs() for _ in range(repeats)]
    lock_share = [_lock_cost() for _ in range(repeats)]
    rows = [
        ("reserve + settle, in the ledger", inside, TARGET_US),
        ("reserve + settle, event-loop delta", delta, TARGET_US),
        ("plan + reserve + settle, in the ledger", planned, None),
        ("reserve + settle, sync loop (no event loop)", sync, TARGET_US),
        ("of which the threading.Lock (2 × uncontended `with lock`)", lock_share, None),
    ]
    results = []
    for label, runs, target in rows:
        us = statistics.median(runs)
        passed = None if target is None else us <= target
        results.append(LedgerResult(label, TASKS, us, target, passed, runs))
        _progress(f"{label}: {us:.2f} µs")
    return results


# --- token counting -------------------------------------------------------------------------------


def _best_of(repeats: int, fn: Callable[[], Any], number: int) -> list[float]:
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - started) / number)
    return runs


def measure_tokens(repeats: int) -> list[TokenResult]:
    results = []
    messages: list[Message] = [
        {"role": "system", "content": "You are a careful research assistant."},
        {"role": "user", "content": SHORT_PROMPT},
    ]
    for model in MODELS:
        tokens = count_text(LONG_TEXT, model)  # also loads the tokenizer, untimed
        runs = [
            tokens / s
            for s in _best_of(repeats, functools.partial(count_text, LONG_TEXT, model), 1)
        ]
        results.append(
            TokenResult(f"long text ({tokens:,} tokens)", model, max(runs), "tokens/s", runs)
        )
        # count_text caches short texts (instructions repeat across calls): time the tokenizer
        # itself for a text seen for the first time, and the cache for a repeated one.
        fresh = functools.partial(tokens_module._count, SHORT_PROMPT, encoding_for(model).name)
        runs = [s * 1e6 for s in _best_of(repeats, fresh, 20_000)]
        tokens = count_text(SHORT_PROMPT, model)
        results.append(
            TokenResult(
                f"short prompt ({tokens} tokens), new text", model, min(runs), "µs/call", runs
            )
        )
        cached = functools.partial(count_text, SHORT_PROMPT, model)
        runs = [s * 1e6 for s in _best_of(repeats, cached, 20_000)]
        results.append(
            TokenResult("short prompt, repeated (cached)", model, min(runs), "µs/call", runs)
        )
        chat = _best_of(repeats, functools.partial(count_messages, messages, model), 20_000)
        runs = [s * 1e6 for s in chat]
        results.append(TokenResult("count_messages, 2 messages", model, min(runs), "µs/call", runs))
        for r in results[-4:]:
            _progress(f"{r.scenario} {model}: {r.value:,.2f} {r.unit}")
    return results


# --- report ---------------------------------------------------------------------------------------


def _progress(line: str) -> None:
    print(f"  … {line}", file=sys.stderr, flush=True)


def _machine() -> str:
    return (
        f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )


def markdown_report(ledger: list[LedgerResult], tokens: list[TokenResult], repeats: int) -> str:
    lines = [
        f"Measured on {_machine()}; median of {repeats} run(s) (token counting: best).",
        "",
        f"| budget ledger, {TASKS:,} concurrent tasks, 3 nested scopes | µs per call | target |",
        "|---|---:|---|",
    ]
    for r in ledger:
        verdict = "" if r.passed is None else (" PASS" if r.passed else " MISS")
        target = "—" if r.target_us is None else f"≤ {r.target_us:.0f}{verdict}"
        lines.append(f"| {r.scenario} | {r.us_per_pair:.2f} | {target} |")
    lines += ["", "| token counting | model | result |", "|---|---|---:|"]
    for t in tokens:
        value = f"{t.value / 1e6:.2f} M tokens/s" if t.unit == "tokens/s" else f"{t.value:.1f} µs"
        lines.append(f"| {t.scenario} | {t.model} | {value} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one repeat instead of five")
    parser.add_argument("--json", metavar="PATH", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 5
    ledger = anyio.run(measure_ledger, repeats)
    tokens = measure_tokens(repeats)
    print(markdown_report(ledger, tokens, repeats))
    if args.json:
        payload: dict[str, Any] = {
            "machine": _machine(),
            "repeats": repeats,
            "ledger": [asdict(r) for r in ledger],
            "tokens": [asdict(t) for t in tokens],
        }
        args.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
