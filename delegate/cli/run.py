"""The commands that run a workflow file: `run`, and `plan` (what running it would do).

What they show is built by `delegate.cli._live` (progress), `_summary` (the end of a run) and
`_preview` (a plan); the commands only wire it up. `resume` (`delegate.cli.runs`) finishes a
stored run through the same `execute` and `report`.

Commands import what they need inside their function, so `delegate --help` never pays for
litellm, SQLAlchemy or rich.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from delegate.cli._guard import bounded, signal_label, stderr, stdout
from delegate.cli._stores import DB_HELP, check_store, store_option, store_url

if TYPE_CHECKING:
    from delegate.agents.models import Model
    from delegate.cli._live import RunDisplay
    from delegate.orchestrator.run import RunResult

__all__ = [
    "WORKFLOW_FILE",
    "check_credentials",
    "display",
    "execute",
    "input_options",
    "plan_command",
    "report",
    "resume_line",
    "run_command",
]

F = TypeVar("F", bound=Callable[..., Any])

WORKFLOW_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
"""A workflow file argument: it must exist and not be a folder."""

_MAX_TIME_SCALE = 100.0  # --time-scale: 100× the models' latency is already a long wait


def input_options(fn: F) -> F:
    """The `-i KEY=VALUE` and `--input-file` options of the commands that take inputs."""
    fn = click.option(
        "--input-file",
        type=WORKFLOW_FILE,
        help="A JSON or YAML mapping of input values (-i values win over it).",
    )(fn)
    return click.option(
        "-i",
        "--input",
        "pairs",
        multiple=True,
        metavar="KEY=VALUE",
        help="An input value, typed by the input's declared type (JSON for arrays and "
        "objects). Repeat for more inputs.",
    )(fn)


def check_credentials(models: Iterable[str | Model]) -> None:
    """Refuse, before anything runs, models whose credentials are not set: the provider's
    variables, or the ones their endpoint names (none for a keyless endpoint).

    Raises:
        ConfigError: naming each missing variable, and `--simulate` as the way to go on.
    """
    from delegate.cli._summary import credentials_message
    from delegate.errors import ConfigError
    from delegate.workflows.runtime import missing_credentials

    message = credentials_message(missing_credentials(models))
    if message is not None:
        raise ConfigError(message)


def display(as_json: bool, progress: bool, **options: Any) -> RunDisplay | None:
    """The progress display of a run on stderr; None for `--json` without `--progress`."""
    from delegate.cli._live import RunDisplay

    return None if as_json and not progress else RunDisplay(stderr(), **options)


def resume_line(run_id: str, db: str | None) -> str:
    """The command line that resumes the run `run_id` (with `--db` when one was given)."""
    import shlex

    return f"delegate resume {shlex.quote(run_id)}" + (f" --db {shlex.quote(db)}" if db else "")


def execute(
    shown: RunDisplay | None,
    run_id: str,
    db: str | None,
    fn: Callable[..., Any],
    /,
    *args: Any,
    **kwargs: Any,
) -> RunResult:
    """Run `fn` to the end with the progress display open; tell how to resume if interrupted
    (Ctrl-C, SIGTERM, SIGHUP: the run is stored as interrupted).

    Raises:
        click.exceptions.Exit: the run was stopped by a signal (exit status 128 + its number).
        RunExistsError: a run with this id is already stored (naming `delegate resume`).
    """
    from contextlib import nullcontext

    from delegate._sync import run_sync
    from delegate.cli._guard import stopped_by
    from delegate.errors import RunExistsError

    try:
        with shown if shown is not None else nullcontext():
            result: RunResult = run_sync(fn, *args, **kwargs)
            return result
    except KeyboardInterrupt:
        name, code = stopped_by()
        click.echo(
            f"run {run_id} stopped by {signal_label(name)} and kept as interrupted; continue "
            f"it with `{resume_line(run_id, db)}`",
            err=True,
        )
        raise click.exceptions.Exit(code) from None
    except RunExistsError as exc:
        raise RunExistsError(
            f"run {run_id!r} is already in the store; continue it with `delegate resume "
            f"{run_id}`, or give another --run-id",
            run_id=exc.run_id,
        ) from None


def report(result: RunResult, shown: RunDisplay | None, *, as_json: bool, **options: Any) -> int:
    """Print the run's summary (stderr) and output (stdout), or its JSON; the exit status.

    With the option `events` stdout holds the run's events only: the output is in the last."""
    from delegate.cli import _summary
    from delegate.cli._format import write_json

    if as_json:
        document = _summary.result_json(
            result, simulated=options["simulated"], workflow=options["workflow"]
        )
        write_json(document, stdout())
    else:
        _summary.print_summary(
            result,
            stderr(),
            budget_usd=options["budget_usd"],
            simulated=options["simulated"],
            time_scale=options["time_scale"],
            model_seconds=options.get("model_seconds"),
            resumed=bool(options.get("resumed")),
            fancy=shown.live if shown is not None else None,
        )
        if not options.get("events"):
            _summary.print_output(result.output, stdout())
        _summary.print_pending(result, stderr())
    return EXIT_CODES.get(result.status, 1)


EXIT_CODES = {"succeeded": 0, "waiting": 3}
"""The exit status of `run` and `resume` by the run's status; any other status is 1."""


@click.command("run")
@click.argument("file", type=WORKFLOW_FILE)
@input_options
@click.option(
    "--budget-usd",
    type=float,
    callback=bounded(0, math.inf, low_open=True),
    help="Spend at most this many USD (replaces the file's budget.usd).",
)
@click.option("--db", metavar="URL", help=DB_HELP)
@click.option("--simulate", is_flag=True, help="Simulated models: real prices, no model called.")
@click.option("--seed", type=int, default=0, show_default=True, help="Varies simulated answers.")
@click.option(
    "--time-scale",
    type=float,
    default=0.05,
    show_default=True,
    callback=bounded(0, _MAX_TIME_SCALE, remedy="1 waits at the models' pace, 0 does not wait"),
    help="With --simulate: wait this share of the simulated latencies (1: the models' pace; "
    f"at most {_MAX_TIME_SCALE:g}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document, no progress.")
@click.option("--progress", is_flag=True, help="With --json: show progress on stderr too.")
@click.option(
    "--events",
    is_flag=True,
    help="Write every event of the run to stdout as it happens, one JSON object per line "
    "(text deltas included; schema: `delegate schema --events`); progress and the summary "
    "stay on stderr.",
)
@click.option("--run-id", metavar="ID", help="The run's id. Default: a new random one.")
@click.option(
    "--plan",
    "plan_file",
    type=WORKFLOW_FILE,
    help="Run this plan (from `delegate plan --out`) as it is: no planning call for it. "
    "Without -i it runs with the inputs it was made with.",
)
@click.option(
    "--approve",
    is_flag=True,
    help="Show each plan and its estimate on the terminal and ask before it runs.",
)
@click.option(
    "--otlp",
    "otlp_url",
    metavar="URL",
    help="Send the run's OpenTelemetry trace to this OTLP/HTTP endpoint (Jaeger, Grafana "
    "Tempo, Langfuse, ...: e.g. http://localhost:4318; headers from "
    "OTEL_EXPORTER_OTLP_HEADERS). Needs the otel extra.",
)
@click.pass_context
def run_command(
    ctx: click.Context,
    file: Path,
    pairs: tuple[str, ...],
    input_file: Path | None,
    budget_usd: float | None,
    db: str | None,
    simulate: bool,
    seed: int,
    time_scale: float,
    as_json: bool,
    progress: bool,
    events: bool,
    run_id: str | None,
    plan_file: Path | None,
    approve: bool,
    otlp_url: str | None,
) -> None:
    """Run the workflow FILE: progress and a summary on stderr, the output on stdout.

    Exit status 0 when the run succeeded, 1 when it failed or succeeded only partly (or its
    plan was rejected), 2 when the file, an input or the plan file is invalid or a model's
    credentials are missing, 3 when it waits for a human to approve tool calls (`delegate
    pending`, `delegate approve`, then `delegate resume`).
    """
    import uuid

    from delegate.cli import _approve
    from delegate.cli._events import stream_events
    from delegate.workflows import load_workflow
    from delegate.workflows.runtime import compile_workflow, run_workflow

    if approve:
        _approve.require_terminal()
    tracing = None
    if otlp_url is not None:
        from delegate.observe import otlp

        tracing = otlp(otlp_url)  # checked before anything runs (exit 2 when bad)
    if events and as_json:
        from delegate.errors import ConfigError

        raise ConfigError(
            "--events and --json both write to stdout: use --events for the events as they "
            "happen (the last, run_finished, has the output), or --json for one document"
        )
    loaded = load_workflow(file)
    spec = loaded.spec
    approved = None if plan_file is None else _approve.read_plan(plan_file)
    inputs = _approve.plan_inputs(spec, approved, pairs, input_file)
    # The command keeps every run: in --db, else the workflow's `memory:`, else the home store
    # (named here, whatever the library's own default is). It is checked before the run starts
    # (a file that is not a database, a folder that does not exist): the run would fail on it
    # only after it began.
    option = "memory: of the workflow" if db is None and spec.memory else store_option(db)
    target = db or spec.memory or store_url(None)
    check_store(target, create=True, option=option)
    run_id = run_id or uuid.uuid4().hex
    limit = budget_usd if budget_usd is not None else spec.budget.usd if spec.budget else None
    shown = display(as_json, progress, title=spec.name, run_id=run_id, budget_usd=limit)
    compiled = compile_workflow(
        loaded,
        simulate=simulate,
        seed=seed,
        db=target,
        budget_usd=budget_usd,
        on_event=shown,
        time_scale=time_scale,
        tracing=tracing or False,
    )
    if shown is not None:
        shown.simulated = compiled.simulated
    if not compiled.simulated:
        check_credentials(compiled.called_models())
    _approve.check_plan(compiled, approved, inputs)
    approver = _approve.TerminalApprover.attach(compiled, shown) if approve else None
    runner = stream_events if events else run_workflow
    try:
        result = execute(shown, run_id, db, runner, compiled, inputs, run_id=run_id, plan=approved)
    finally:
        if tracing is not None:
            tracing.shutdown()  # sends what the batch holds before the command exits
    options = {
        "simulated": compiled.simulated,
        "workflow": spec.name,
        "budget_usd": limit,
        "time_scale": time_scale,
        "model_seconds": None if compiled.pace is None else compiled.pace.run_seconds(result),
    }
    status = report(result, shown, as_json=as_json, events=events, **options)
    if approver is not None and approver.rejected:
        click.echo("plan rejected: none of its tasks ran", err=True)
    ctx.exit(status)


@click.command("plan")
@click.argument("file", type=WORKFLOW_FILE)
@input_options
@click.option("--simulate", is_flag=True, help="A simulated planner: real prices, no model called.")
@click.option("--seed", type=int, default=0, show_default=True, help="Varies simulated plans.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the checked plan with its estimate to this file (planner mode), to read, "
    "edit and run with `delegate run FILE --plan FILE`.",
)
def plan_command(
    file: Path,
    pairs: tuple[str, ...],
    input_file: Path | None,
    simulate: bool,
    seed: int,
    as_json: bool,
    out: Path | None,
) -> None:
    """Show what running FILE would do: its tasks, or in planner mode the planner's plan, with
    the projected tokens, cost and time and the critical path.

    Nothing is executed beyond planning: in planner mode the planner's model is asked for a
    plan (with --simulate, a simulated one is). --out needs a planner: a workflow's own steps
    are its plan.
    """
    from delegate._sync import run_sync
    from delegate.cli import _preview
    from delegate.cli._format import write_json
    from delegate.errors import ConfigError
    from delegate.workflows import load_workflow
    from delegate.workflows.runtime import compile_workflow, parse_inputs, preview_workflow

    loaded = load_workflow(file)
    spec = loaded.spec
    inputs = parse_inputs(spec, pairs, input_file)
    if out is not None and spec.mode != "planner":
        raise ConfigError(
            f"workflow {spec.name!r} has no planner: its steps are the plan, so there is no "
            "plan to write; drop --out (`delegate run` runs the steps as they are)"
        )
    compiled = compile_workflow(loaded, simulate=simulate, seed=seed, time_scale=0.0)
    if spec.planner is not None and not compiled.simulated:
        check_credentials([compiled.agents[spec.planner].model])
    preview = run_sync(preview_workflow, compiled, inputs)
    if out is not None:
        from delegate.cli._approve import plan_document, write_plan

        write_plan(out, plan_document(compiled, inputs, preview))
    if as_json:
        document = _preview.preview_json(preview, workflow=spec.name, simulated=compiled.simulated)
        write_json(document, stdout())
    else:
        _preview.print_preview(preview, stdout(), workflow=spec.name, simulated=compiled.simulated)
    if out is not None:
        click.echo(f"plan written to {out}: run it with `delegate run FILE --plan {out}`", err=True)
