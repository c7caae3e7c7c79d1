"""The `delegate` command (also `python -m delegate`).

Every command gets one error policy from `DelegateGroup.invoke`, so a command only raises:

- a `DelegateError` (the user's input or set-up is wrong) or a click usage error: the message on
  stderr, exit status 2, no traceback;
- anything else (a bug): a one-line message and a hint to rerun with `--debug`, exit status 1.

`--debug` adds the traceback to both. Ctrl-C, SIGTERM and SIGHUP stop a command with one line and
exit status 128 + the signal's number (130, 143, 129); a run they stop is stored as interrupted.
A closed stdout or stderr (`delegate run … | head -3`) is not an error: what was to be written
there is dropped, and the command goes on (`delegate.cli_guard`).

Commands import what they need inside their function, so `delegate --help` never pays for
litellm, SQLAlchemy or rich.
"""

from __future__ import annotations

import errno
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO, cast

import click

from delegate.cli_guard import bounded, check_store
from delegate.errors import DelegateError

__all__ = ["DelegateGroup", "main"]


class _UserError(click.ClickException):
    """A DelegateError, reported as `Error: <message>` on stderr with exit status 2."""

    exit_code = 2


class _InternalError(click.ClickException):
    """An unexpected exception, reported like a user error but with exit status 1."""

    exit_code = 1


def _passes_through(exc: Exception) -> bool:
    # click's own control flow (usage errors, --help, ctx.exit, Abort) and a closed pipe
    # (`delegate ... | head`) are handled by click's main loop, not by our policy.
    if isinstance(exc, click.ClickException | click.exceptions.Exit | click.Abort):
        return True
    return isinstance(exc, OSError) and exc.errno == errno.EPIPE


class DelegateGroup(click.Group):
    """A click group that applies delegate's error policy to every command below it."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Run the command line with pipe-safe stdout and stderr, and SIGTERM/SIGHUP handled
        as Ctrl-C (both restored afterwards)."""
        from delegate.cli_guard import pipe_safe, stop_signals

        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = pipe_safe(sys.stdout), pipe_safe(sys.stderr)
        try:
            with stop_signals():
                return super().main(*args, **kwargs)
        finally:
            # What is still buffered is flushed now, where a closed pipe is tolerated, not at
            # the interpreter's exit ("Exception ignored ... BrokenPipeError").
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = saved

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, turning exceptions into exit statuses and messages."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            from delegate.cli_guard import stopped_by

            name, code = stopped_by()
            click.echo(f"stopped by {_signal_name(name)}", err=True)
            raise click.exceptions.Exit(code) from None
        except Exception as exc:
            if _passes_through(exc):
                raise
            # Credentials can hide in any exception text (an API key in a URL or a header).
            from delegate._log import redact_text

            debug = bool(ctx.params.get("debug"))
            if debug:
                click.echo(redact_text(traceback.format_exc().rstrip()), err=True)
            if isinstance(exc, DelegateError):
                raise _UserError(redact_text(str(exc))) from exc
            message = redact_text(f"unexpected {type(exc).__name__}: {exc}")
            if not debug:
                message += " (rerun with --debug to see the traceback)"
            raise _InternalError(message) from exc


def _signal_name(name: str) -> str:
    return "Ctrl-C" if name == "SIGINT" else name


@click.group(cls=DelegateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="delegate", prog_name="delegate", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("--log-json", is_flag=True, help="Write logs as JSON lines instead of text.")
def main(debug: bool, log_json: bool) -> None:
    """Planner–executor LLM orchestration: a reasoning model plans, cheap models execute."""
    from delegate._log import configure_logging

    configure_logging(level="DEBUG" if debug else "INFO", json=log_json)


_MAX_TOKENS_TEXT = 16_000_000  # characters `tokens -` reads (stdin may be endless: /dev/zero)


def _format_usd(amount: float) -> str:
    # Costs of a few tokens are fractions of a cent: keep every significant digit, no exponent.
    whole, _, fraction = f"{amount:.10f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


@main.command()
@click.argument("text")
@click.option(
    "--model",
    "-m",
    default="openai/gpt-4o-mini",
    show_default=True,
    help="litellm model string whose tokenizer and prices to use.",
)
def tokens(text: str, model: str) -> None:
    """Count TEXT's tokens (stdin when TEXT is -) and price them as input tokens.

    OpenAI models are counted exactly; other models are estimated with a similar tokenizer.
    Prices come from litellm's bundled cost map.
    """
    from delegate.agents._costmap import model_info
    from delegate.agents.tokens import count_text, encoding_for

    if text == "-":
        text = sys.stdin.read(_MAX_TOKENS_TEXT + 1)
        if len(text) > _MAX_TOKENS_TEXT:
            from delegate.errors import ConfigError

            raise ConfigError(
                f"stdin has more than {_MAX_TOKENS_TEXT:,} characters; count a part of it"
            )
    count = count_text(text, model)
    encoding = encoding_for(model)
    kind = "exact" if encoding.exact else "estimate"
    click.echo(f"model:  {model}")
    click.echo(f"tokens: {count} ({kind}, {encoding.name})")

    info = model_info(model)
    per_token = info.get("input_cost_per_token") if info else None
    if not isinstance(per_token, int | float) or per_token <= 0:
        click.echo("price:  unknown (not in litellm's cost map)")
        click.echo("cost:   unknown")
        return
    click.echo(f"price:  {_format_usd(per_token * 1_000_000)} per million input tokens")
    click.echo(f"cost:   {_format_usd(per_token * count)} for {count} input tokens")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@main.command()
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.pass_context
def validate(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Check workflow FILES without running anything.

    Prints `FILE: ok (...)` for a valid file, and `FILE:LINE:COL: problem` for every problem
    of an invalid one (on stderr). Exit status 0 when every file is valid, else 2.
    """
    from delegate._log import redact_text
    from delegate.errors import WorkflowError
    from delegate.workflows import load_workflow

    debug = bool(ctx.find_root().params.get("debug"))
    invalid = 0
    for file in files:
        try:
            loaded = load_workflow(file)
        except WorkflowError as exc:
            invalid += 1
            if debug:
                click.echo(redact_text(traceback.format_exc().rstrip()), err=True)
            # One write for all of them: a file can have tens of thousands.
            click.echo(redact_text("\n".join(map(str, exc.problems))), err=True)
            continue
        spec = loaded.spec
        shape = _count(len(spec.steps), "step") if spec.steps is not None else "planner mode"
        click.echo(f"{file}: ok ({shape}, {_count(len(spec.agents), 'agent')})")
    if invalid:
        ctx.exit(2)


@main.command()
def schema() -> None:
    """Print the JSON Schema of workflow files, for editors.

    Save it (`delegate schema > workflow.schema.json`) and start a workflow file with
    `# yaml-language-server: $schema=workflow.schema.json` to get completion and checks.
    """
    import json

    from delegate.workflows import workflow_json_schema

    click.echo(json.dumps(workflow_json_schema(), indent=2, ensure_ascii=False))


# -- running workflows: run, plan, runs, show, resume ---------------------------------------
# What they show is built by `delegate.cli_run` (a run) and `delegate.cli_show` (stored runs,
# plans); the commands only wire it up.

_WORKFLOW_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_DB_HELP = "The store's database URL. Default: $DELEGATE_DB_URL, else $DELEGATE_HOME/delegate.db."


def _input_options(fn: Any) -> Any:
    fn = click.option(
        "--input-file",
        type=_WORKFLOW_FILE,
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


def _check_credentials(models: Any) -> None:
    from delegate.cli_run import credentials_message
    from delegate.errors import ConfigError
    from delegate.workflows.runtime import missing_credentials

    message = credentials_message(missing_credentials(models))
    if message is not None:
        raise ConfigError(message)


def _store_url(db: str | None) -> str:
    from delegate.errors import StoreError
    from delegate.memory.store import default_url

    try:
        return db or default_url()
    except OSError as exc:
        raise StoreError(
            f"cannot create the default store's folder ({exc}); set DELEGATE_HOME to a writable "
            "folder or DELEGATE_DB_URL to a database, or pass --db URL"
        ) from None


def _store_option(db: str | None) -> str:
    """Where the store's URL came from, as messages name it."""
    if db is not None:
        return "--db"
    return "DELEGATE_DB_URL" if os.environ.get("DELEGATE_DB_URL") else "the default store"


def _open_store(db: str | None) -> Any:
    """The store `runs`, `show` and `resume` read, opened without creating anything; None when
    the default store does not exist yet (no run was stored).

    Raises:
        ConfigError: the URL is invalid, names a file that does not exist, or a file that is
            not a delegate store (`cli_guard.check_store`).
    """
    from delegate.cli_guard import check_store
    from delegate.errors import ConfigError
    from delegate.memory.store import Store

    url = _store_url(db)
    option = _store_option(db)
    if check_store(url, create=False, option=option):
        return Store.open(url)
    if option == "the default store":
        return None
    raise ConfigError(
        f"{option}: there is no store at {url!r} (the file does not exist); give the path or "
        "URL of an existing store (sqlite:///path/to/delegate.db, postgresql://...)"
    )


def _stdout() -> TextIO:
    """stdout, every credential delegate knows masked in what is written (the last line of
    redaction: errors, logs and stored rows are masked before they get here), quiet once its
    reader is gone (`cli_guard.PipeSafeStream`)."""
    from delegate._secrets import RedactingStream
    from delegate.cli_guard import pipe_safe

    return cast(TextIO, RedactingStream(pipe_safe(sys.stdout)))


def _stderr() -> TextIO:
    """stderr, credentials masked and a closed pipe tolerated like `_stdout`'s."""
    from delegate._secrets import RedactingStream
    from delegate.cli_guard import pipe_safe

    return cast(TextIO, RedactingStream(pipe_safe(sys.stderr)))


def _display(as_json: bool, progress: bool, **options: Any) -> Any:
    from delegate.cli_run import RunDisplay

    return None if as_json and not progress else RunDisplay(_stderr(), **options)


def _resume_command(run_id: str, db: str | None) -> str:
    import shlex

    return f"delegate resume {shlex.quote(run_id)}" + (f" --db {shlex.quote(db)}" if db else "")


def _execute(
    display: Any, run_id: str, db: str | None, fn: Any, /, *args: Any, **kwargs: Any
) -> Any:
    """Run `fn` to the end with the progress display open; tell how to resume if interrupted
    (Ctrl-C, SIGTERM, SIGHUP: the run is stored as interrupted)."""
    from contextlib import nullcontext

    from delegate._sync import run_sync
    from delegate.cli_guard import stopped_by
    from delegate.errors import RunExistsError

    try:
        with display if display is not None else nullcontext():
            return run_sync(fn, *args, **kwargs)
    except KeyboardInterrupt:
        name, code = stopped_by()
        click.echo(
            f"run {run_id} stopped by {_signal_name(name)} and kept as interrupted; continue "
            f"it with `{_resume_command(run_id, db)}`",
            err=True,
        )
        raise click.exceptions.Exit(code) from None
    except RunExistsError as exc:
        raise RunExistsError(
            f"run {run_id!r} is already in the store; continue it with `delegate resume "
            f"{run_id}`, or give another --run-id",
            run_id=exc.run_id,
        ) from None


def _report(result: Any, display: Any, *, as_json: bool, **options: Any) -> int:
    """Print the run's summary (stderr) and output (stdout), or its JSON; the exit status."""
    from delegate import cli_run

    if as_json:
        document = cli_run.result_json(
            result, simulated=options["simulated"], workflow=options["workflow"]
        )
        cli_run.write_json(document, _stdout())
    else:
        live = display.live if display is not None else None
        cli_run.print_summary(
            result,
            _stderr(),
            budget_usd=options["budget_usd"],
            simulated=options["simulated"],
            time_scale=options["time_scale"],
            model_seconds=options.get("model_seconds"),
            resumed=bool(options.get("resumed")),
            fancy=live,
        )
        cli_run.print_output(result.output, _stdout())
    return 0 if result.status == "succeeded" else 1


_MAX_TIME_SCALE = 100.0  # --time-scale: 100× the models' latency is already a long wait
_MAX_RUNS = 10_000  # --limit of `runs`


@main.command("run")
@click.argument("file", type=_WORKFLOW_FILE)
@_input_options
@click.option(
    "--budget-usd",
    type=float,
    callback=bounded(0, math.inf, low_open=True),
    help="Spend at most this many USD (replaces the file's budget.usd).",
)
@click.option("--db", metavar="URL", help=_DB_HELP)
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
@click.option("--run-id", metavar="ID", help="The run's id. Default: a new random one.")
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
    run_id: str | None,
) -> None:
    """Run the workflow FILE: progress and a summary on stderr, the output on stdout.

    Exit status 0 when the run succeeded, 1 when it failed or succeeded only partly, 2 when
    the file or an input is invalid or a model's credentials are missing.
    """
    import uuid

    from delegate.workflows import load_workflow
    from delegate.workflows.runtime import compile_workflow, parse_inputs, run_workflow

    loaded = load_workflow(file)
    spec = loaded.spec
    inputs = parse_inputs(spec, pairs, input_file)
    # The store is checked before the run starts (a file that is not a database, a folder that
    # does not exist): the run would fail on it only after it began.
    option = "memory: of the workflow" if db is None and spec.memory else _store_option(db)
    check_store(db or spec.memory or _store_url(None), create=True, option=option)
    run_id = run_id or uuid.uuid4().hex
    limit = budget_usd if budget_usd is not None else spec.budget.usd if spec.budget else None
    display = _display(as_json, progress, title=spec.name, run_id=run_id, budget_usd=limit)
    compiled = compile_workflow(
        loaded,
        simulate=simulate,
        seed=seed,
        db=db,
        budget_usd=budget_usd,
        on_event=display,
        time_scale=time_scale,
    )
    if display is not None:
        display.simulated = compiled.simulated
    if not compiled.simulated:
        _check_credentials(compiled.models())
    result = _execute(display, run_id, db, run_workflow, compiled, inputs, run_id=run_id)
    options = {
        "simulated": compiled.simulated,
        "workflow": spec.name,
        "budget_usd": limit,
        "time_scale": time_scale,
        "model_seconds": None if compiled.pace is None else compiled.pace.run_seconds(result),
    }
    ctx.exit(_report(result, display, as_json=as_json, **options))


@main.command("plan")
@click.argument("file", type=_WORKFLOW_FILE)
@_input_options
@click.option("--simulate", is_flag=True, help="A simulated planner: real prices, no model called.")
@click.option("--seed", type=int, default=0, show_default=True, help="Varies simulated plans.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def plan_command(
    file: Path,
    pairs: tuple[str, ...],
    input_file: Path | None,
    simulate: bool,
    seed: int,
    as_json: bool,
) -> None:
    """Show what running FILE would do: its tasks, or in planner mode the planner's plan, with
    the projected tokens, cost and time and the critical path.

    Nothing is executed beyond planning: in planner mode the planner's model is asked for a
    plan (with --simulate, a simulated one is).
    """
    from delegate import cli_run, cli_show
    from delegate._sync import run_sync
    from delegate.workflows import load_workflow
    from delegate.workflows.runtime import compile_workflow, parse_inputs, preview_workflow

    loaded = load_workflow(file)
    spec = loaded.spec
    inputs = parse_inputs(spec, pairs, input_file)
    compiled = compile_workflow(loaded, simulate=simulate, seed=seed, time_scale=0.0)
    if spec.planner is not None and not compiled.simulated:
        _check_credentials([compiled.agents[spec.planner].model.name])
    preview = run_sync(preview_workflow, compiled, inputs)
    if as_json:
        document = cli_show.preview_json(preview, workflow=spec.name, simulated=compiled.simulated)
        cli_run.write_json(document, _stdout())
        return
    cli_show.print_preview(preview, _stdout(), workflow=spec.name, simulated=compiled.simulated)


@main.command("runs")
@click.option("--db", metavar="URL", help=_DB_HELP)
@click.option(
    "--limit",
    type=int,
    default=20,
    show_default=True,
    callback=bounded(1, _MAX_RUNS, integer=True),
    help=f"List at most this many runs (at most {_MAX_RUNS:,}).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def runs_command(db: str | None, limit: int, as_json: bool) -> None:
    """List the most recent runs in the store, newest first.

    A run stored as running that no live process owns (it was killed) shows as `stale`;
    `delegate resume` finishes it, as it does an `interrupted` one.
    """
    from delegate import cli_run, cli_show

    runs: list[Any] = []
    leases: dict[str, Any] = {}
    store = _open_store(db)
    if store is not None:
        with store:
            runs = store.list_runs(limit=limit)
            # A run is owned while it runs or is being resumed (its stored status stays).
            leases = {run.id: store.get_lease(run.id) for run in runs if run.status != "succeeded"}
    if as_json:
        cli_run.write_json(cli_show.runs_json(runs, leases), _stdout())
    else:
        cli_show.print_runs(runs, _stdout(), leases=leases)


def _no_run(run_id: str, url: str) -> Exception:
    from delegate.errors import ConfigError

    return ConfigError(
        f"no run {run_id!r} in the store {url}; `delegate runs` lists the recent ones "
        "(--db URL reads another store)"
    )


def _stored_run(store: Any, run_id: str) -> Any:
    run = store.get_run(run_id)
    if run is None:
        raise _no_run(run_id, store.url)
    return run


@main.command("show")
@click.argument("run_id")
@click.option("--db", metavar="URL", help=_DB_HELP)
@click.option("--full", is_flag=True, help="Show whole outputs instead of their beginnings.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def show_command(run_id: str, db: str | None, full: bool, as_json: bool) -> None:
    """Show the run RUN_ID from the store: status, goal, inputs, tasks with their usage and
    outputs, plan revisions and errors."""
    from delegate import cli_run, cli_show

    store = _open_store(db)
    if store is None:
        raise _no_run(run_id, _store_url(None))
    with store:
        run = _stored_run(store, run_id)
        tasks = store.get_tasks(run_id)
        lease = store.get_lease(run_id)
    if as_json:
        cli_run.write_json(cli_show.stored_run_json(run, tasks, lease), _stdout())
    else:
        cli_show.print_stored_run(
            run, tasks, _stdout(), full=full, lease=lease, resume=_resume_command(run_id, db)
        )


def _leased(run_id: str, owner: str, db: str | None) -> str:
    return (
        f"run {run_id!r} is being run by {owner}; wait for it to finish, or, if you know that "
        f"process is dead, take the run over: {_resume_command(run_id, db)} --force"
    )


@main.command("resume")
@click.argument("run_id")
@click.option("--db", metavar="URL", help=_DB_HELP)
@click.option(
    "--force",
    is_flag=True,
    help="Take the run over even though a live process owns it (when you know it is dead).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document, no progress.")
@click.option("--progress", is_flag=True, help="With --json: show progress on stderr too.")
@click.pass_context
def resume_command(
    ctx: click.Context, run_id: str, db: str | None, force: bool, as_json: bool, progress: bool
) -> None:
    """Finish the run RUN_ID of a workflow, which stopped (a crash, a kill, Ctrl-C, a deadline).

    Tasks that succeeded keep their outputs and are not run again; a run started with
    --simulate goes on simulated. A run that another live process owns is refused (naming it)
    unless --force. Exit statuses as for `run`.
    """
    from delegate.cli_show import run_state
    from delegate.errors import ConfigError, RunLeasedError
    from delegate.workflows.runtime import resume_workflow

    store = _open_store(db)
    if store is None:
        raise _no_run(run_id, _store_url(None))
    with store:
        record = _stored_run(store, run_id)
        lease = store.get_lease(run_id)
    if record.status == "succeeded":
        raise ConfigError(
            f"run {run_id!r} already succeeded: there is nothing to resume; "
            f"`delegate show {run_id}` shows it"
        )
    if lease is not None and not force and run_state(record, lease) == "running":
        raise RunLeasedError(
            _leased(run_id, lease.describe(), db), run_id=run_id, owner=lease.describe()
        )
    source = record.graph.get("workflow")
    source = source if isinstance(source, dict) else {}
    simulated = bool(source.get("simulate"))
    budget_usd = (record.budget or {}).get("usd")
    if isinstance(source.get("text"), str):
        from delegate.workflows import load_workflow_text
        from delegate.workflows.runtime import compile_workflow

        loaded = load_workflow_text(source["text"], str(source.get("path", "<workflow>")))
        if budget_usd is None and loaded.spec.budget is not None:
            budget_usd = loaded.spec.budget.usd
        if not simulated:
            _check_credentials(compile_workflow(loaded, db=db, text=source["text"]).models())
    display = _display(
        as_json,
        progress,
        title=record.workflow or "",
        run_id=run_id,
        budget_usd=budget_usd,
        simulated=simulated,
    )
    from delegate.simulate import SimulatedPace

    pace = SimulatedPace() if simulated else None
    try:
        result = _execute(
            display,
            run_id,
            db,
            resume_workflow,
            run_id,
            db=db,
            on_event=display,
            pace=pace,
            force=force,
        )
    except RunLeasedError as exc:  # taken by another process since the check above
        raise RunLeasedError(
            _leased(run_id, exc.owner, db), run_id=run_id, owner=exc.owner
        ) from None
    options = {
        "simulated": simulated,
        "workflow": record.workflow,
        "budget_usd": budget_usd,
        "time_scale": source.get("time_scale"),
        "model_seconds": None if pace is None else pace.run_seconds(result),
        "resumed": True,
    }
    ctx.exit(_report(result, display, as_json=as_json, **options))
