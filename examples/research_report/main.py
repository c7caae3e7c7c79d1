"""Research report: a reasoning model plans the questions, mini workers research them in parallel in
a local corpus, a writer composes a cited report, and the findings are kept for the next run.

    python examples/research_report/main.py "LFP vs NMC for home storage"
    python examples/research_report/main.py "Fire safety of home batteries"   # reuses findings

Offline by default (fake models that work from the real corpus, at the real models' prices);
`--simulate` plays the run on simulated models; `--live` calls the real ones (needs their API
keys, e.g. OPENAI_API_KEY).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `research_report` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio
from rich.console import Console
from rich.table import Table

from delegate import Budget, Model, Orchestrator, RunResult
from delegate.memory import MemoryRecord, Store
from delegate.testing import SimulatedPace, simulate
from research_report import offline
from research_report.corpus import Corpus
from research_report.costs import budget_line, cost_table, saving_line
from research_report.knowledge import saved_by, shown_to_planner
from research_report.report import audit, render
from research_report.team import Finding, Report, Team, build_team

DEFAULT_GOAL = "LFP vs NMC for home storage"
WORKFLOW = "research-report"
_API_KEYS = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "groq": "GROQ_API_KEY",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; exits with status 2 on a bad argument or a missing API key."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("goal", nargs="?", default=DEFAULT_GOAL, help="what the report is about")
    mode = parser.add_mutually_exclusive_group()
    for flag, help_text in (
        ("--offline", "fake models from the real corpus, real prices (the default)"),
        ("--simulate", "simulated models: real prices and pace, generated outputs"),
        ("--live", "call the real models (needs their API keys)"),
    ):
        mode.add_argument(flag, dest="mode", action="store_const", const=flag[2:], help=help_text)
    parser.set_defaults(mode="offline")
    parser.add_argument("--planner", default="openai/o4-mini", help="the reasoning model")
    parser.add_argument("--worker", default="openai/gpt-4o-mini", help="the researchers' model")
    parser.add_argument("--writer", help="the writer's model (default: the worker's)")
    parser.add_argument("--db", type=Path, help="the SQLite store of runs and shared memory")
    parser.add_argument("--workflow", help=f"memory shared by runs (default: {WORKFLOW}-MODE)")
    parser.add_argument("--budget-usd", type=float, default=0.10)
    parser.add_argument("--budget-seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0, help="--simulate: varies the outputs")
    parser.add_argument("--time-scale", type=float, default=0.05, help="--simulate: pacing")
    args = parser.parse_args(argv)
    args.writer = args.writer or args.worker
    home = Path(os.environ.get("DELEGATE_HOME") or "~/.delegate").expanduser()
    args.db = (args.db or home / "research-report.db").expanduser()
    # Offline and simulated findings must never be recalled by a live run: one namespace each.
    args.workflow = args.workflow or (
        WORKFLOW if args.mode == "live" else f"{WORKFLOW}-{args.mode}"
    )
    if args.mode == "live":
        for model in dict.fromkeys((args.planner, args.worker, args.writer)):
            variable = _API_KEYS.get(model.split("/", 1)[0])
            if variable and not os.environ.get(variable):
                parser.error(
                    f"--live: model {model} needs {variable}, which is not set; export it, or "
                    "run offline (the default) or with --simulate"
                )
    return args


def models_for(
    args: argparse.Namespace, corpus: Corpus
) -> tuple[Model | str, Model | str, Model | str]:
    """The planner's, the researchers' and the writer's models for the chosen mode."""
    if args.mode == "live":
        return args.planner, args.worker, args.writer
    if args.mode == "simulate":
        pace = {"seed": args.seed, "time_scale": args.time_scale, "pace": args.pace}
        return (
            simulate(args.planner, workers=["researcher"], **pace),
            simulate(args.worker, **pace),
            simulate(args.writer, **pace),
        )
    fakes = offline.offline_models(corpus, args.planner, args.worker)
    return fakes.planner, fakes.researcher, fakes.writer


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished run and what it meant for the shared memory."""

    result: RunResult
    shown: list[MemoryRecord]  # memory entries the planner was shown
    saved: list[MemoryRecord]  # findings its researchers remembered in the workflow's memory


async def research(args: argparse.Namespace, team: Team, budget: Budget) -> Outcome:
    """Run the goal once against the store at `args.db`; note what it saw and saved in memory."""
    args.db.parent.mkdir(parents=True, exist_ok=True)
    with Store.open(str(args.db)) as store:
        shown = await shown_to_planner(store, args.workflow, args.goal)
        orchestrator = Orchestrator(
            planner=team.planner,
            workers=[team.researcher],
            synthesizer=team.writer,
            memory=store,
            max_concurrency=8,
        )
        if args.pace is not None:  # how long the simulated calls would take at the models' pace
            orchestrator.subscribe(args.pace)
        result = await orchestrator.run(
            args.goal, budget=budget, workflow=args.workflow, output_type=Report
        )
        saved = await saved_by(store, args.workflow, result.run_id)
    return Outcome(result, shown, saved)


def _memory_lines(title: str, records: Sequence[MemoryRecord], preview: int) -> list[str]:
    if not records:
        return [f"{title}: none"]
    lines = [f"{title}:"]
    for record in records:
        origin = f"run {(record.run_id or '?')[:8]}, task {record.task_id or '?'}"
        text = str(record.value)
        text = text if len(text) <= preview else text[: preview - 1] + "…"
        lines.append(f"  {record.key} ({origin}): {text}")
    return lines


def _task_table(result: RunResult, *, researched: bool) -> Table:
    """One row per research task; with `researched`, the files it cites and its memory use."""
    table = Table(title="research tasks", title_justify="left", box=None, pad_edge=False)
    columns = ["task", "status", "calls", "tokens", "USD"]
    columns += ["cites", "memory"] if researched else []
    for column in columns:
        table.add_column(
            column, justify="right" if column in ("calls", "tokens", "USD") else "left"
        )
    for task in result.tasks.values():
        row = [
            task.id,
            task.status,
            str(task.usage.calls),
            f"{task.usage.input_tokens + task.usage.output_tokens:,}",
            f"${task.usage.cost_usd:.4f}",
        ]
        finding = task.output if isinstance(task.output, Finding) else None
        if researched and finding is not None:
            reused = ", ".join(finding.from_memory)
            row += [", ".join(finding.sources), f"reused {reused}" if reused else "researched"]
        table.add_row(*row)
    return table


def reused_keys(result: RunResult) -> list[str]:
    """The memory keys whose findings the researchers of `result` reused."""
    return sorted(
        {
            key
            for t in result.tasks.values()
            if isinstance(t.output, Finding)
            for key in t.output.from_memory
        }
    )


def show(
    outcome: Outcome, args: argparse.Namespace, team: Team, budget: Budget, corpus: Corpus
) -> None:
    """Print the memory the run saw, the report, its tasks, what it saved, and what it cost."""
    console = Console(width=None if sys.stdout.isatty() else 110, highlight=False)
    result, simulated = outcome.result, args.mode == "simulate"

    def say(text: str = "") -> None:
        console.print(text, markup=False, soft_wrap=True)

    mode = {"offline": "offline: fake models, real prices", "simulate": "SIMULATED", "live": "live"}
    say(f"research-report · {mode[args.mode]} · run {result.run_id[:8]} · {args.workflow}")
    say(f"goal: {args.goal}")
    say("\n".join(_memory_lines("memory shown to the planner", outcome.shown, 90)))
    say()
    if isinstance(result.output, Report):
        say(render(result.output, corpus))
        checked = audit(result.output, corpus).describe()
        say("citations: not checked (the outputs are simulated)" if simulated else checked)
    else:
        errors = [result.error] if result.error else [t.error for t in result.failed.values()]
        say(f"no report: the run {result.status}: {next(filter(None, errors), 'no answer')}")
    say()
    console.print(_task_table(result, researched=not simulated))
    say(f"\nmemory reused by the researchers: {', '.join(reused_keys(result)) or 'none'}")
    say("\n".join(_memory_lines(f"saved for later runs ({args.workflow})", outcome.saved, 60)))
    say()
    roles = {
        "planner": team.planner.agent.model.name,
        "workers": team.researcher.model.name,
        "synthesizer": team.writer.model.name,
    }
    console.print(cost_table(result, roles))
    say(saving_line(result, roles["planner"]))
    say(budget_line(result, budget))
    if simulated:
        seconds = args.pace.run_seconds(result)  # the critical path of the simulated calls
        waited = "did not wait"
        if args.time_scale:
            waited = f"waited {args.time_scale:g}× the models' latency"
        say(f"the simulation {waited}: at their pace the run would take about {seconds:.0f} s")
        say("SIMULATED — no model was called; prices are real, outputs are not")


def main(argv: Sequence[str] | None = None) -> RunResult:
    """Run the example once; returns the `RunResult` (the test suite checks it)."""
    args = parse_args(argv)
    args.pace = SimulatedPace() if args.mode == "simulate" else None
    corpus = Corpus.load()
    planner, worker, writer = models_for(args, corpus)
    team = build_team(planner, worker, writer, corpus)
    budget = Budget(usd=args.budget_usd, seconds=args.budget_seconds)
    outcome = anyio.run(research, args, team, budget)
    show(outcome, args, team, budget, corpus)
    return outcome.result


if __name__ == "__main__":
    main()
