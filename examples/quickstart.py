"""Quickstart: research three angles of a market in parallel on a mini model, then write a brief.

Runs offline with fake models that behave like real ones (latency, token counts, prices, one rate
limit on the way):

    python examples/quickstart.py

or against real providers (needs OPENAI_API_KEY):

    python examples/quickstart.py --real --market "home batteries"
"""

from __future__ import annotations

import argparse
import random
import sys

from rich.console import Console
from rich.table import Table

from delegate import (
    Agent,
    ModelRequest,
    Orchestrator,
    RateLimitError,
    RetryPolicy,
    RunResult,
    TaskGraph,
)
from delegate.testing import FunctionModel

ANGLES = ("customers", "competitors", "regulation")


def fake_workers() -> tuple[Agent, Agent]:
    """A mini-model researcher and a writer, faked offline with gpt-4o-mini's prices."""
    rng = random.Random(7)
    throttled = {"customers"}  # the first call on this angle gets a 429, then succeeds

    def research(request: ModelRequest) -> str:
        prompt = request.messages[-1]["content"]
        angle = next(a for a in ANGLES if a in prompt)
        if angle in throttled:
            throttled.discard(angle)
            raise RateLimitError("429 Too Many Requests", model="gpt-4o-mini", retry_after=0.05)
        return "\n".join(f"- {angle} finding {n}: {rng.choice(('rising', 'flat'))}" for n in (1, 2))

    def write(request: ModelRequest) -> str:
        sources = request.messages[-1]["content"].count("## Result of task")
        return f"BRIEF: three angles, {sources} research notes combined into one page."

    mini = {"input_price": 0.15, "output_price": 0.60, "name": "openai/gpt-4o-mini"}
    researcher = Agent(
        "researcher",
        FunctionModel(research, latency=lambda r: rng.uniform(0.2, 0.4), **mini),  # type: ignore[arg-type]
        instructions="Answer in at most five bullet points.",
        max_concurrency=3,
    )
    writer = Agent(
        "writer",
        FunctionModel(write, latency=0.3, **mini),  # type: ignore[arg-type]
        instructions="Write a one-page brief.",
    )
    return researcher, writer


def real_workers() -> tuple[Agent, Agent]:
    """The same two workers on a real provider (gpt-4o-mini through litellm)."""
    researcher = Agent(
        "researcher",
        "openai/gpt-4o-mini",
        instructions="Answer in at most five bullet points.",
        max_output_tokens=400,
        max_concurrency=3,
    )
    writer = Agent(
        "writer",
        "openai/gpt-4o-mini",
        instructions="Write a one-page brief.",
        max_output_tokens=900,
    )
    return researcher, writer


def build_graph(researcher: Agent, writer: Agent) -> TaskGraph:
    """One research task per angle, all in parallel, and a brief that depends on all of them."""
    graph = TaskGraph()
    research = [
        graph.add(
            f"research_{angle}",
            agent=researcher,
            prompt=f"Research the {angle} of the {{{{ market }}}} market.",
        )
        for angle in ANGLES
    ]
    graph.add("brief", agent=writer, prompt="Write a brief on {{ market }}.", deps=research)
    return graph


def report(result: RunResult, console: Console) -> None:
    """Print the tasks, the output and the cost of a run."""
    table = Table(title=f"run {result.run_id[:8]} — {result.status} in {result.duration:.2f}s")
    for column in ("task", "status", "attempts", "model", "tokens in/out", "USD"):
        table.add_column(column)
    for task in result.tasks.values():
        table.add_row(
            task.id,
            task.status,
            str(task.attempts),
            task.model or "-",
            f"{task.usage.input_tokens}/{task.usage.output_tokens}",
            f"{task.usage.cost_usd:.6f}",
        )
    console.print(table)
    console.print(f"[bold]output[/bold]: {result.output}")
    console.print(
        f"total: {result.usage.calls} calls, {result.usage.input_tokens} input + "
        f"{result.usage.output_tokens} output tokens, ${result.usage.cost_usd:.6f}"
    )


def main(argv: list[str] | None = None) -> RunResult:
    """Run the example; returns the `RunResult` (the test suite checks it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--market", default="home batteries")
    parser.add_argument("--real", action="store_true", help="call gpt-4o-mini for real")
    args = parser.parse_args(argv)
    researcher, writer = real_workers() if args.real else fake_workers()
    orchestrator = Orchestrator(
        workers=[researcher, writer],
        retry=RetryPolicy(max_retries=2, base_delay=0.05),
        seed=1,
    )
    result = orchestrator.execute_sync(
        build_graph(researcher, writer), inputs={"market": args.market}
    )
    report(result, Console(width=None if sys.stdout.isatty() else 120))
    return result


if __name__ == "__main__":
    main()
