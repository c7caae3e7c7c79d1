"""Learned routing against fixed tiers, on a simulated workflow whose pass rates are known.

    .venv/bin/python benchmarks/routing.py              # 30 runs of each configuration
    .venv/bin/python benchmarks/routing.py --markdown   # also the tables as markdown
    .venv/bin/python benchmarks/routing.py --runs 40 --seed 3

The workflow has four steps, each fanned out over `ITEMS` items a run (every item a task). Three
tiers of fake models with known prices answer (`cheap` → `mid` → `strong`, each the fallback of
the one before); a fake judge passes an answer of tier *t* on step *s* with the known probability
`PASS_RATES[s][t]`, drawn from a hash of (run, task, tier, how many times that tier was asked), so
every configuration meets the same luck. Every call reports fixed token counts, so a task's cost
is its calls × their prices.

Three configurations, each 30 runs sharing one SQLite store (the learned one learns across them):

- always strong: the strong tier, judged (a rejection is re-asked once, then the task fails);
- cheap + escalate: the cheap tier with its fallbacks (re-ask, then mid, then strong);
- learned: `routing=LearnedRouting(...)` over the same chain (each task starts on the arm the
  policy picks and escalates from there), with a USD budget per run of twice an always-strong
  run's cost, and `explore_share` as given.

Reported per configuration: cost and pass rate (tasks whose final answer passed the judge) of
every run, and over runs 21–30 their means. Target (issue 16): learned ≥ 40 % cheaper than
always-strong over runs 21–30, at a pass rate ≥ always-strong's − 1 point.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from delegate import Agent, Budget, LearnedRouting, Orchestrator, TaskGraph
from delegate.agents.models import ModelRequest, ModelResponse, Usage
from delegate.orchestrator.events import Event, TaskRouted
from delegate.testing import FunctionModel

ITEMS = 4
TIERS = ("cheap", "mid", "strong")
PRICES = {"cheap": (0.15, 0.6), "mid": (1.0, 4.0), "strong": (5.0, 20.0), "judge": (0.15, 0.6)}
PASS_RATES = {  # the judge passes a first answer of this tier on this step this often
    "extract": {"cheap": 0.97, "mid": 0.99, "strong": 0.99},
    "classify": {"cheap": 0.95, "mid": 0.98, "strong": 0.99},
    "summarize": {"cheap": 0.55, "mid": 0.95, "strong": 0.98},
    "reason": {"cheap": 0.25, "mid": 0.6, "strong": 0.97},
}
INPUT_TOKENS, OUTPUT_TOKENS = 1200, 300
CONFIGS = ("always strong", "cheap + escalate", "learned")
FROM_RUN = 20  # the runs after this many are the ones the target is about


def _call_usd(tier: str) -> float:
    inp, out = PRICES[tier]
    return (INPUT_TOKENS * inp + OUTPUT_TOKENS * out) / 1_000_000


def _uniform(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class World:
    """The simulation's state: which run it is, and how often each tier answered each task."""

    run: int = 0
    asked: Counter[tuple[int, str, str]] = field(default_factory=Counter)

    def answer(self, tier: str) -> Any:
        def fn(request: ModelRequest) -> ModelResponse:
            task = _task_of(request)
            self.asked[(self.run, task, tier)] += 1
            count = self.asked[(self.run, task, tier)]
            return ModelResponse(
                text=f"[{tier}#{count}] answer to {task}",
                usage=Usage(input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS, calls=1),
            )

        inp, out = PRICES[tier]
        return FunctionModel(fn, input_price=inp, output_price=out, name=f"sim/{tier}")

    def judge(self, request: ModelRequest) -> ModelResponse:
        text = str(request.messages[-1]["content"])
        answer = text.rsplit("## Answer", 1)[-1]
        tier, count = answer.split("[", 1)[1].split("]", 1)[0].split("#")
        task = _task_of(request)
        rate = PASS_RATES[task.split("[", 1)[0]][tier]
        passed = _uniform(self.run, task, tier, count) < rate
        verdict = '{"passed": %s, "feedback": "not right"}' % ("true" if passed else "false")
        return ModelResponse(
            text=verdict,
            usage=Usage(input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS, calls=1),
        )


def _task_of(request: ModelRequest) -> str:
    text = str(request.messages[-1]["content"])
    return text.split("<task ", 1)[1].split(">", 1)[0]


def _agents(world: World, config: str) -> Agent[str]:
    judge = Agent(
        "judge", FunctionModel(world.judge, input_price=0.15, output_price=0.6, name="sim/judge")
    )
    if config == "always strong":
        return Agent("worker", world.answer("strong"), verify=judge)
    strong = Agent("strong", world.answer("strong"))
    mid = Agent("mid", world.answer("mid"), fallback=strong)
    return Agent("worker", world.answer("cheap"), fallback=mid, verify=judge)


def _graph() -> TaskGraph:
    graph = TaskGraph()
    for step in PASS_RATES:
        for item in range(ITEMS):
            task = f"{step}[{item}]"
            graph.add(task, agent="worker", prompt=f"Do <task {task}> for the record.")
    return graph


@dataclass
class Series:
    cost: list[float] = field(default_factory=list)
    passed: list[float] = field(default_factory=list)
    explored: list[int] = field(default_factory=list)


def _strong_run_usd() -> float:
    tasks = len(PASS_RATES) * ITEMS
    return tasks * (_call_usd("strong") + _call_usd("judge"))


async def _config(config: str, runs: int, seed: int, share: float) -> Series:
    world = World()
    worker = _agents(world, config)
    events: list[Event] = []
    options: dict[str, Any] = {}
    if config == "learned":
        options["routing"] = LearnedRouting(seed=seed, explore_share=share)
    series = Series()
    store = f"sqlite:///{tempfile.mkdtemp()}/routing.db"
    async with Orchestrator(
        workers=[worker],
        memory=store,
        budget=Budget(usd=2 * _strong_run_usd()),
        on_event=events.append,
        **options,
    ) as orch:
        for run in range(runs):
            world.run = run
            events.clear()
            result = await orch.execute(_graph(), workflow="sim")
            tasks = result.tasks.values()
            series.cost.append(result.usage.cost_usd)
            series.passed.append(sum(t.status == "succeeded" for t in tasks) / len(tasks))
            series.explored.append(sum(isinstance(e, TaskRouted) and e.explored for e in events))
            print(f"  {config}: run {run + 1}/{runs}", file=sys.stderr)
    return series


def _runs_table(results: dict[str, Series], runs: Sequence[int]) -> list[str]:
    lines = [
        "| run | " + " | ".join(CONFIGS) + " | explorations (learned) |",
        "|---" * (len(CONFIGS) + 2) + "|",
    ]
    for run in runs:
        cells = [f"${results[c].cost[run]:.4f} / {results[c].passed[run]:.0%}" for c in CONFIGS]
        lines.append(
            f"| {run + 1} | " + " | ".join(cells) + f" | {results['learned'].explored[run]} |"
        )
    return lines


def _report(results: dict[str, Series], runs: int, markdown: bool, share: float) -> bool:
    late = slice(FROM_RUN, runs)
    mean_cost = {name: statistics.fmean(s.cost[late]) for name, s in results.items()}
    mean_pass = {name: statistics.fmean(s.passed[late]) for name, s in results.items()}
    print(f"\nper run: cost (USD) / pass rate, {len(PASS_RATES) * ITEMS} tasks a run")
    print("\n".join(_runs_table(results, range(runs))))
    saving = 1 - mean_cost["learned"] / mean_cost["always strong"]
    change = (mean_pass["learned"] - mean_pass["always strong"]) * 100
    drop = -change
    met = saving >= 0.40 and drop <= 1.0
    lines = [
        f"| configuration | mean cost a run, runs {FROM_RUN + 1}–{runs} | vs always strong "
        f"| pass rate, runs {FROM_RUN + 1}–{runs} |",
        "|---|---|---|---|",
    ]
    for name in CONFIGS:
        ratio = mean_cost[name] / mean_cost["always strong"]
        versus = "—" if name == "always strong" else f"{1 - ratio:.0%} cheaper"
        lines.append(f"| {name} | ${mean_cost[name]:.4f} | {versus} | {mean_pass[name]:.1%} |")
    target = (
        f"target: learned ≥ 40 % cheaper than always strong at ≥ its pass rate − 1 point "
        f"(explore_share={share}): {saving:.0%} cheaper, pass rate {change:+.1f} points: "
        f"{'PASS' if met else 'MISS'}"
    )
    print("\nsummary")
    print("\n".join(lines))
    print(target)
    if markdown:
        every = [0, *range(4, runs, 5)]
        print("\n```markdown")
        print("\n".join(lines))
        print(f"\n{target}\n")
        print("\n".join(_runs_table(results, every)))
        print("```")
    return met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30, help="runs per configuration (30)")
    parser.add_argument("--seed", type=int, default=1, help="the routing's seed (1)")
    parser.add_argument(
        "--explore-share", type=float, default=0.05, help="LearnedRouting.explore_share (0.05)"
    )
    parser.add_argument("--markdown", action="store_true", help="also print markdown tables")
    args = parser.parse_args(argv)
    if args.runs <= FROM_RUN:
        parser.error(f"--runs must be more than {FROM_RUN}")

    async def everything() -> dict[str, Series]:
        return {
            config: await _config(config, args.runs, args.seed, args.explore_share)
            for config in CONFIGS
        }

    results = anyio.run(everything)
    _report(results, args.runs, args.markdown, args.explore_share)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
