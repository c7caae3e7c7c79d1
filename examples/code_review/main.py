"""Review a git diff: mini models review and verify each file, a reasoning model writes the review.

    python examples/code_review/main.py                      # the demo repository, offline
    python examples/code_review/main.py ~/src/shop --base main
    python examples/code_review/main.py --simulate           # real prices, simulated answers
    python examples/code_review/main.py PATH --live          # real models (OPENAI_API_KEY)

Offline (the default), fake models stand in for `--planner` and `--worker` under their names and
prices: the reviewer runs pattern checks on the added lines, the verifier checks each finding
against the diff, the lead groups what is left. See README.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `code_review` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console

from code_review.demo import DEMO_BASE, make_demo_repo
from code_review.fakes import fake_planner, fake_worker
from code_review.findings import Review
from code_review.gitdiff import DiffError, FileDiff, git_diff, parse_diff
from code_review.pipeline import Crew, build_graph, make_crew, task_ids
from code_review.report import print_costs, print_dropped, render_review
from delegate import Budget, Model, Orchestrator, RunResult
from delegate.testing import simulate

__all__ = ["main"]

PLANNER = "openai/o4-mini"
WORKER = "openai/gpt-4o-mini"
BUDGET_USD = 0.10
MAX_FILES = 25


@dataclass(frozen=True, slots=True)
class Change:
    """What is reviewed: where, against what, and the files of the diff."""

    label: str
    base: str
    files: list[FileDiff]
    skipped: int = 0
    """Changed files left out by --max-files."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python examples/code_review/main.py",
        description="Review the git diff of a repository with a reasoning planner and mini "
        "workers. Without PATH (or with --demo), reviews a throwaway demo repository.",
    )
    parser.add_argument("path", nargs="?", type=Path, help="a directory in a git working tree")
    parser.add_argument(
        "--base",
        help="the revision to diff the working tree against "
        f"(default: HEAD; {DEMO_BASE} for the demo)",
    )
    parser.add_argument("--demo", action="store_true", help="review the demo repository")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--offline",
        dest="mode",
        action="store_const",
        const="offline",
        help="fake models with the real ones' prices (the default)",
    )
    mode.add_argument(
        "--simulate",
        dest="mode",
        action="store_const",
        const="simulate",
        help="simulated models: real prices, deterministic tokens, made-up answers",
    )
    mode.add_argument(
        "--live", dest="mode", action="store_const", const="live", help="call the real models"
    )
    parser.add_argument("--planner", default=PLANNER, help=f"the reasoning model ({PLANNER})")
    parser.add_argument("--worker", default=WORKER, help=f"the mini model ({WORKER})")
    parser.add_argument("--budget-usd", type=float, default=BUDGET_USD, help="the run's budget")
    parser.add_argument("--max-files", type=int, default=MAX_FILES, help="review at most N files")
    parser.add_argument("--seed", type=int, default=0, help="the seed of --simulate")
    parser.set_defaults(mode="offline")
    return parser


def read_change(path: Path | None, base: str | None, max_files: int) -> Change:
    """The diff to review: of `path` against `base`, or of a fresh demo repository.

    Raises:
        DiffError: git failed, or the diff is empty.
    """
    if path is None:
        with tempfile.TemporaryDirectory(prefix="code-review-demo-") as directory:
            repo = make_demo_repo(Path(directory) / "shop")
            base = base or DEMO_BASE
            files = parse_diff(git_diff(repo, base))
            label = "the demo repository"
    else:
        base = base or "HEAD"
        files = parse_diff(git_diff(path, base))
        label = str(path)
    if not files:
        raise DiffError(f"no changes between {base} and the working tree of {label}")
    return Change(label, base, files[:max_files], max(len(files) - max_files, 0))


def _models(mode: str, planner: str, worker: str, seed: int) -> tuple[Model | str, Model | str]:
    if mode == "offline":
        return fake_planner(planner), fake_worker(worker)
    if mode == "simulate":
        return (
            simulate(planner, seed=seed, time_scale=0.05),
            simulate(worker, seed=seed, time_scale=0.05),
        )
    from delegate.workflows import missing_credentials

    missing = missing_credentials([planner, worker])
    if missing:
        needs = "; ".join(f"{model} needs {', '.join(keys)}" for model, keys in missing.items())
        raise SystemExit(f"{needs}: export it, or run offline (the default) or with --simulate")
    return planner, worker


_MODES = {
    "offline": "offline: fake models under the real models' names and prices",
    "simulate": "SIMULATED — no model was called; prices are real, outputs are not",
    "live": "live: real models",
}


def main(argv: list[str] | None = None) -> RunResult:
    """Review a diff and print the review and its cost; returns the run's `RunResult`.

    The result's output is the final `Review`; `result.tasks["verify:<file>"].output` holds what
    each verifier kept and dropped, `result.tasks["collect"].output` the verified findings.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.demo and args.path is not None:
        parser.error("give PATH or --demo, not both")
    if args.budget_usd <= 0 or args.max_files < 1:
        parser.error("--budget-usd must be > 0 and --max-files ≥ 1")
    console = Console(width=None if sys.stdout.isatty() else 100)
    try:
        change = read_change(args.path, args.base, args.max_files)
    except DiffError as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    planner, worker = _models(args.mode, args.planner, args.worker, args.seed)
    crew = make_crew(planner, worker)
    budget = Budget(usd=args.budget_usd)
    orchestrator = Orchestrator(
        planner=crew.lead, workers=[crew.reviewer, crew.verifier], memory=None, max_concurrency=8
    )
    console.print(_header(change, crew, args.mode), highlight=False, soft_wrap=True)
    result = orchestrator.execute_sync(build_graph(change.files, crew), budget=budget)
    _print(result, change, crew, budget, console)
    return result


def _header(change: Change, crew: Crew, mode: str) -> str:
    count = len(change.files)
    added = sum(file.added for file in change.files)
    removed = sum(file.removed for file in change.files)
    lines = [
        f"code review of {change.label}: {change.base} → working tree, {count} "
        f"file{'' if count == 1 else 's'}, +{added} −{removed} lines; {crew.lead.model.name} "
        f"writes the review, {crew.reviewer.model.name} reviews and verifies",
        _MODES[mode],
    ]
    if change.skipped:
        lines.append(f"{change.skipped} more changed files left out (--max-files)")
    return "\n".join(lines)


def _print(result: RunResult, change: Change, crew: Crew, budget: Budget, console: Console) -> None:
    console.rule()
    if isinstance(result.output, Review):
        console.print(render_review(result.output), markup=False, highlight=False, soft_wrap=True)
    else:
        for task in result.failed.values():
            console.print(f"task {task.id} {task.status}: {task.error}", highlight=False)
    console.rule()
    console.print("dropped by the verifiers as unfounded:")
    print_dropped(result, task_ids(change.files), console)
    console.rule()
    print_costs(result, crew, budget, console)


if __name__ == "__main__":
    sys.exit(0 if main().status == "succeeded" else 1)
