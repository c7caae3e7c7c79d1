"""Fuzz benchmark: the properties of `tests/test_fuzz.py`, with many more examples, counted.

    .venv/bin/python benchmarks/fuzz.py                  # 2,000 examples per property (minutes)
    .venv/bin/python benchmarks/fuzz.py --examples 200   # a quick look
    .venv/bin/python benchmarks/fuzz.py --only templates,plans --seed 7
    .venv/bin/python benchmarks/fuzz.py --markdown       # also print the table for the README

Each property runs in a fresh process (`--child NAME`) under hypothesis, with no example database
and a fixed seed, so a run is repeatable and one property's memory does not count for another.
For each property the table gives: the examples run, their outcomes (done, or the class of the
delegate error — jinja2's template errors are reported as such, the callers turn them into
`TemplateError`), how many raised anything else (untyped: must be 0), the slowest example, and
the process's peak RSS (`VmHWM`) after all of them. The exit status is 1 when any example was
untyped, else 0; the first few untyped examples are printed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROPERTIES = (
    "templates",
    "plans",
    "planner_answers",
    "tool_arguments",
    "structured_outputs",
    "memory_calls",
    "cli_arguments",
    "token_counts",
)
# Properties that run whole planner calls or CLI commands take longer per example.
SHARE = {"planner_answers": 0.25, "structured_outputs": 0.5, "cli_arguments": 0.25}


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _child(name: str, examples: int, seed: int) -> dict[str, Any]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
    sys.path.insert(0, str(ROOT / "tests"))
    import _fuzz
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    from delegate.memory.blackboard import Memory
    from delegate.memory.store import Store
    from delegate.testing import block_model_requests

    outcomes: collections.Counter[str] = collections.Counter()
    untyped: list[str] = []
    slowest = 0.0
    directory = Path(tempfile.mkdtemp(prefix="delegate-fuzz-"))
    store = Store.open(f"sqlite:///{directory / 'memory.db'}")
    memory = Memory(store, run_id="r1", workflow="w")

    def record(run: Callable[[], str], shown: Any) -> None:
        nonlocal slowest
        started = time.perf_counter()
        try:
            outcome = run()
        except _fuzz.Untyped as exc:
            outcome = "UNTYPED"
            if len(untyped) < 5:
                untyped.append(f"{exc} <- {shown!r:.300}")
        slowest = max(slowest, time.perf_counter() - started)
        outcomes[outcome] += 1

    runs: dict[str, tuple[Any, Callable[..., None]]] = {
        "templates": (
            _fuzz.templates,
            lambda text: record(lambda: _fuzz.template_property(text), text),
        ),
        "plans": (_fuzz.plans, lambda plan: record(lambda: _fuzz.plan_property(plan), plan)),
        "planner_answers": (
            st.tuples(_fuzz.planner_answers, st.booleans()),
            lambda case: record(lambda: _fuzz.planner_property(*case), case),
        ),
        "tool_arguments": (
            _fuzz.tool_arguments,
            lambda text: record(lambda: _fuzz.tool_property(text), text),
        ),
        "structured_outputs": (
            _fuzz.structured_answers,
            lambda text: record(lambda: _fuzz.structured_property(text), text),
        ),
        "memory_calls": (
            _fuzz.memory_calls,
            lambda call: record(lambda: _fuzz.memory_property(memory, *call), call),
        ),
        "cli_arguments": (
            st.tuples(_fuzz.cli_pairs, st.one_of(st.none(), _fuzz.json_text), _fuzz.templates),
            lambda case: record(lambda: _fuzz.cli_property(*case, directory), case),
        ),
        "token_counts": (
            _fuzz.count_texts,
            lambda text: record(lambda: _fuzz.tokens_property(text), text),
        ),
    }
    strategy, body = runs[name]
    test = hypothesis_seed(seed)(
        settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )(given(strategy)(body))
    )
    started = time.perf_counter()
    with block_model_requests():
        test()
    store.close()
    return {
        "property": name,
        "cases": sum(outcomes.values()),
        "outcomes": dict(outcomes),
        "untyped": outcomes.get("UNTYPED", 0),
        "untyped_examples": untyped,
        "slowest_s": slowest,
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| property | cases | outcomes | untyped | slowest case | peak RSS |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for result in results:
        outcomes = ", ".join(
            f"{name} {count:,}"
            for name, count in sorted(result["outcomes"].items(), key=lambda item: -item[1])
            if name != "UNTYPED"
        )
        lines.append(
            f"| {result['property']} | {result['cases']:,} | {outcomes} | {result['untyped']} | "
            f"{result['slowest_s']:.2f} s | {result['peak_rss_mb']:.0f} MB |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--examples", type=int, default=2000, help="per property (scaled down for the slow ones)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="comma-separated property names")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.examples, args.seed)))
        return 0
    names = args.only.split(",") if args.only else list(PROPERTIES)
    results = []
    for name in names:
        examples = max(1, int(args.examples * SHARE.get(name, 1.0)))
        print(f"{name}: {examples:,} examples ...", file=sys.stderr, flush=True)
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                name,
                "--examples",
                str(examples),
                "--seed",
                str(args.seed),
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        print(
            f"  {result['cases']:,} cases in {result['seconds']:.0f} s, untyped "
            f"{result['untyped']}, slowest {result['slowest_s']:.2f} s, peak "
            f"{result['peak_rss_mb']:.0f} MB",
            file=sys.stderr,
            flush=True,
        )
        for example in result["untyped_examples"]:
            print(f"  UNTYPED: {example}", file=sys.stderr)
    print(_table(results) if args.markdown else json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if any(result["untyped"] for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
