"""Invoice extraction, map-reduce: mini models extract, a reasoning model reviews the aggregate.

Every invoice in a folder is extracted into typed fields by a mini model, one task per document,
three samples each; where the samples disagree, a cheap judge checks the merged answer against the
document. The reasoning model only reviews a compact table of the results (duplicates, totals that
do not add up, outliers). Writes extractions.csv and extractions.json to --out.

    python examples/extract/main.py                 # offline: fake models, real prices (default)
    python examples/extract/main.py --simulate      # simulated models: real prices, fake text
    python examples/extract/main.py --live          # real providers (needs OPENAI_API_KEY)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from extraction.documents import DEFAULT_FOLDER, load_documents
from extraction.fakes import fake_models
from extraction.output import write_outputs
from extraction.pipeline import Models
from extraction.report import print_report
from extraction.run import ExtractRun, run_extraction
from rich.console import Console

from delegate import Budget, LiteLLMModel
from delegate.testing import simulate

PLANNER = "openai/o4-mini"
WORKER = "openai/gpt-4o-mini"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; see `--help`."""
    parser = argparse.ArgumentParser(
        prog="python examples/extract/main.py",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", help="fake models (the default)")
    mode.add_argument("--simulate", action="store_true", help="simulated models, real prices")
    mode.add_argument("--live", action="store_true", help="call the real models")
    parser.add_argument("--planner", default=PLANNER, help=f"the reviewer's model ({PLANNER})")
    parser.add_argument("--worker", default=WORKER, help=f"extractor and judge ({WORKER})")
    parser.add_argument("--documents", type=Path, default=DEFAULT_FOLDER, help="a folder of .txt")
    parser.add_argument("--out", type=Path, default=Path("extract-out"), help="where to write")
    parser.add_argument("--budget-usd", type=float, default=0.10, help="the run's budget (0.10)")
    parser.add_argument("--votes", type=int, default=3, help="samples per document (3)")
    parser.add_argument("--concurrency", type=int, default=8, help="documents at once (8)")
    parser.add_argument("--seed", type=int, default=0, help="--simulate: the simulation's seed")
    parser.add_argument(
        "--time-scale", type=float, default=0.05, help="--simulate: share of the latency to wait"
    )
    args = parser.parse_args(argv)
    if args.live:
        missing = _missing_keys([args.worker, args.planner])
        if missing:
            parser.error(
                f"--live: {missing}; export it, or run offline (the default) or with --simulate"
            )
    return args


def models_for(args: argparse.Namespace) -> tuple[Models, str]:
    """The models of the chosen mode, and how to label the run."""
    if args.live:
        worker, planner = LiteLLMModel(args.worker), LiteLLMModel(args.planner)
        return Models(extractor=worker, judge=worker, reviewer=planner), "LIVE"
    if args.simulate:
        options = {"seed": args.seed, "time_scale": args.time_scale}
        return (
            Models(
                extractor=simulate(args.worker, **options),
                judge=simulate(args.worker, **options),
                reviewer=simulate(args.planner, **options),
            ),
            "SIMULATED — no model was called; prices are real, outputs are not",
        )
    return (
        fake_models(args.worker, args.planner),
        "OFFLINE — fake models that read the documents with rules; prices are real",
    )


def main(argv: list[str] | None = None) -> ExtractRun:
    """Run the example; returns the `ExtractRun` (the test suite checks it)."""
    args = parse_args(argv)
    models, mode = models_for(args)
    run = run_extraction(
        load_documents(args.documents),
        models,
        budget=Budget(usd=args.budget_usd),
        votes_per_document=args.votes,
        max_concurrency=args.concurrency,
    )
    console = Console(width=None if sys.stdout.isatty() else 130)
    print_report(run, console, mode=mode)
    csv_path, json_path = write_outputs(run, args.out)
    console.print(f"wrote {csv_path} and {json_path}")
    return run


def _missing_keys(models: list[str]) -> str:
    """Which environment variables the models need and lack ("" when none)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
    import litellm  # only here: it takes seconds to import, and only --live needs it

    missing = []
    for model in dict.fromkeys(models):
        keys = litellm.validate_environment(model=model).get("missing_keys") or []
        if keys:
            missing.append(f"model {model} needs {' and '.join(keys)}, which is not set")
    return "; ".join(missing)


if __name__ == "__main__":
    sys.exit(0 if main().result.status == "succeeded" else 1)
