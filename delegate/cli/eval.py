"""`delegate eval`: a workflow's quality, cost and latency over a dataset, beside a baseline.

    delegate eval extract.yaml --dataset cases.jsonl --scorer field:total~0.01 \\
        --compare planner-only --budget 1.00

What it shows: a table of the configurations side by side (pass rate, mean score, cost, cost
per case, saving against the baseline, p50/p95 latency, calls), then the failures, on stdout;
`--json` prints `EvalReport` as one JSON document instead; `--report FILE` also writes it as a
self-contained HTML page. Exit status 0, 1 when the workflow's pass rate is below
`--min-pass-rate`, 2 for bad input (a file, a dataset line, a scorer, missing credentials).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from delegate.cli._guard import bounded, stderr, stdout
from delegate.cli.run import WORKFLOW_FILE, check_credentials

if TYPE_CHECKING:
    from delegate.evals import Configuration, EvalReport
    from delegate.workflows.runtime import CompiledWorkflow

__all__ = ["eval_command", "parse_scorer", "print_report"]

_SHOWN_FAILURES = 10  # per configuration, in the text output
_SCORER_HELP = (
    "How an answer is scored; repeat for several (a case passes when all pass): exact, "
    "contains, regex:PATTERN, json_schema:FILE, field:NAME[~TOLERANCE] (a field of a "
    "structured answer, numbers within the tolerance), judge:AGENT (an agent of the workflow "
    "grades the answer). Default: exact."
)


def parse_scorer(text: str, compiled: CompiledWorkflow | None) -> Any:
    """The scorer `text` names (see `--scorer`); `judge:AGENT` takes the agent from `compiled`.

    Raises:
        ConfigError: an unknown scorer, or one whose argument is not valid.
    """
    from delegate.errors import ConfigError, did_you_mean
    from delegate.evals import contains, exact, field_equals, json_schema, judge, regex

    kind, sep, argument = text.partition(":")
    kind = kind.strip()
    if kind in ("exact", "contains") and not sep:
        return exact() if kind == "exact" else contains()
    if kind == "regex" and sep:
        return regex(argument)
    if kind == "json_schema" and sep and argument:
        return json_schema(Path(argument))
    if kind == "field" and sep and argument:
        name, tilde, tolerance = argument.partition("~")
        try:
            value = float(tolerance) if tilde else 0.0
        except ValueError:
            raise ConfigError(
                f"--scorer {text!r}: {tolerance!r} is not a tolerance; e.g. field:total~0.01"
            ) from None
        return field_equals(name.strip(), tolerance=value)
    if kind == "judge" and sep and argument:
        agents = {} if compiled is None else compiled.agents
        if argument not in agents:
            hint = did_you_mean(argument, agents)
            raise ConfigError(
                f"--scorer {text!r}: the workflow has no agent {argument!r}{hint}; judge:AGENT "
                "names an agent of the workflow file"
            )
        return judge(agents[argument])
    known = "exact, contains, regex:PATTERN, json_schema:FILE, field:NAME[~TOL], judge:AGENT"
    raise ConfigError(f"--scorer {text!r} is not a scorer; use one of: {known}")


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f} s"


def print_report(report: EvalReport, stream: TextIO, *, fancy: bool | None = None) -> None:
    """The configurations side by side, then each one's failures (at most ten each)."""
    from delegate.cli._format import format_usd, one_line, table

    if report.note:
        stream.write(report.note + "\n\n")
    headers = (
        "configuration",
        "pass rate",
        "score",
        "passed",
        "failed",
        "errors",
        "not run",
        "cost",
        "per case",
        "saving",
        "p50",
        "p95",
        "calls",
    )
    rows = []
    for config in report.configurations:
        name = config.name + (" (baseline)" if config.name == report.baseline else "")
        rows.append(
            [
                name,
                _share(config.pass_rate),
                "—" if config.mean_score is None else f"{config.mean_score:.2f}",
                str(config.passed),
                str(config.failed),
                str(config.errors),
                str(config.not_run),
                format_usd(config.cost_usd),
                format_usd(config.cost_per_case_usd),
                _share(config.saving),
                _seconds(config.p50_seconds),
                _seconds(config.p95_seconds),
                f"{config.calls:,}",
            ]
        )
    title = f"{report.dataset}: {report.cases} cases, scored by {', '.join(report.scorers)}"
    table(stream, headers, rows, right=range(1, 13), title=title, fancy=fancy)
    if report.simulated:
        stream.write("failures are not listed: the answers are simulated\n")
    for config in report.configurations if not report.simulated else ():
        failures = config.failures()
        for case in failures[:_SHOWN_FAILURES]:
            why = case.error or "; ".join(
                f"{name}: {score.reason}" for name, score in case.scores.items() if not score.passed
            )
            stream.write(f"  {config.name} · {case.case_id}: {case.status}: {one_line(why)}\n")
        if len(failures) > _SHOWN_FAILURES:
            stream.write(f"  {config.name}: {len(failures) - _SHOWN_FAILURES} more failures\n")
    spent = f"spent {format_usd(report.spent_usd)}"
    if report.budget_usd is not None:
        spent += f" of a {format_usd(report.budget_usd)} budget"
    not_run = sum(config.not_run for config in report.configurations)
    if not_run:
        spent += f"; {not_run} cases not run: the budget ran out first"
    stream.write(spent + "\n")


def _configurations(
    file: Path, compare: tuple[str, ...], planner: str | None, simulate: bool, seed: int
) -> tuple[list[Configuration], list[CompiledWorkflow]]:
    """The configurations to run (FILE first), and each workflow compiled (not run: for its
    agents and its models)."""
    from delegate.errors import ConfigError
    from delegate.evals import Configuration, planner_only_of
    from delegate.workflows import load_workflow
    from delegate.workflows.runtime import compile_workflow

    if planner is not None and "planner-only" not in compare:
        raise ConfigError(
            "--planner names the planner-only baseline's model: add --compare planner-only"
        )

    def compiled_of(path: Path) -> CompiledWorkflow:
        # Never run (so its store is never opened): the agents a judge or the baseline uses.
        return compile_workflow(load_workflow(path), simulate=simulate, seed=seed, time_scale=0)

    compiled = [compiled_of(file)]
    configs = [Configuration.workflow(file, simulate=simulate, seed=seed)]
    for other in compare:
        if other == "planner-only":
            baseline = planner_only_of(compiled[0], model=planner, simulate=simulate, seed=seed)
            configs.append(baseline)
            continue
        path = Path(other)
        if not path.is_file():
            raise ConfigError(
                f"--compare {other!r}: no such workflow file; give planner-only or a workflow file"
            )
        taken = [config.name for config in configs]
        name = path.stem if path.stem not in taken else str(path)
        configs.append(Configuration.workflow(path, name=name, simulate=simulate, seed=seed))
        compiled.append(compiled_of(path))
    return configs, compiled


def _credentials(
    configs: list[Configuration], compiled: list[CompiledWorkflow], scorers: list[Any]
) -> None:
    """Refuse, before anything runs, models whose credentials are missing."""
    models: list[Any] = [model for workflow in compiled for model in workflow.called_models()]
    for config in configs:
        models.extend(config.models)
    for scorer in scorers:
        agent = getattr(scorer, "agent", None)
        if agent is not None:
            models.append(agent.model)
    check_credentials(models)


@click.command("eval")
@click.argument("file", type=WORKFLOW_FILE)
@click.option(
    "--dataset",
    "dataset_file",
    type=WORKFLOW_FILE,
    required=True,
    help="The cases: a JSON Lines file, one {inputs, expected, id, metadata} object per line.",
)
@click.option("--scorer", "scorers", multiple=True, metavar="SCORER", help=_SCORER_HELP)
@click.option(
    "--compare",
    multiple=True,
    metavar="planner-only|FILE",
    help="Also run the cases this way, side by side: planner-only (the task answered by the "
    "planner's model alone, in one call; savings are measured against it) or another workflow "
    "file. Repeatable.",
)
@click.option(
    "--planner",
    metavar="MODEL",
    help="The planner-only baseline's model. Default: the workflow's planner's, else its priciest.",
)
@click.option("--simulate", is_flag=True, help="Simulated models: real prices, no model called.")
@click.option("--seed", type=int, default=0, show_default=True, help="Varies simulated answers.")
@click.option(
    "--budget",
    "budget_usd",
    type=float,
    callback=bounded(0, math.inf, low_open=True),
    help="Spend at most this many USD on the whole evaluation (every case, every "
    "configuration, the judge). Cases it cannot pay for are reported as not run.",
)
@click.option(
    "--concurrency",
    type=int,
    default=8,
    show_default=True,
    callback=bounded(1, 256, integer=True),
    help="Cases run at once, across configurations.",
)
@click.option(
    "--min-pass-rate",
    type=float,
    callback=bounded(0, 1),
    help="Exit with status 1 when the workflow's pass rate is below this (0 to 1). Not "
    "checked with --simulate, whose pass rates mean nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@click.option(
    "--report",
    "report_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the report as a self-contained HTML page to this file.",
)
@click.pass_context
def eval_command(
    ctx: click.Context,
    file: Path,
    dataset_file: Path,
    scorers: tuple[str, ...],
    compare: tuple[str, ...],
    planner: str | None,
    simulate: bool,
    seed: int,
    budget_usd: float | None,
    concurrency: int,
    min_pass_rate: float | None,
    as_json: bool,
    report_file: Path | None,
) -> None:
    """Run every case of a dataset through the workflow FILE (and what --compare adds), score
    the answers, and show pass rate, cost, latency and saving side by side.

    Exit status 0, 1 when the workflow's pass rate is below --min-pass-rate, 2 when the
    workflow, the dataset, a scorer or an option is invalid or a model's credentials are
    missing.
    """
    from delegate._sync import run_sync
    from delegate.cli._format import write_json
    from delegate.evals import Dataset, eval_report_html, evaluate

    dataset = Dataset.from_jsonl(dataset_file)
    configs, compiled = _configurations(file, compare, planner, simulate, seed)
    checks = [parse_scorer(text, compiled[0]) for text in scorers or ("exact",)]
    if not simulate:
        _credentials(configs, compiled, checks)
    report = run_sync(
        evaluate, configs, dataset, checks, budget=budget_usd, concurrency=concurrency
    )
    if report_file is not None:
        report_file.write_text(eval_report_html(report), encoding="utf-8")
    if as_json:
        write_json(report.model_dump(mode="json"), stdout())
    else:
        print_report(report, stdout())
    if report_file is not None:
        click.echo(f"report written to {report_file}", err=True)
    main = report.configurations[0]
    if min_pass_rate is None:
        return
    if simulate:
        stderr().write("--min-pass-rate not checked: pass rates mean nothing under --simulate\n")
        return
    if main.pass_rate is None or main.pass_rate < min_pass_rate:
        shown = _share(main.pass_rate)
        stderr().write(
            f"pass rate {shown} of {main.name!r} is below --min-pass-rate {min_pass_rate:.0%}\n"
        )
        ctx.exit(1)
