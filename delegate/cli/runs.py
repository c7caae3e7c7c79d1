"""The commands on stored runs: `runs` (the recent ones), `show` (one) and `resume` (finish one).

They read the store without creating it (`delegate.cli._stores.open_store`): `--db`, else the
home store. What they show is built by `delegate.cli._stored`; `resume` runs through the same
`execute` and `report` as `run`.
"""

from __future__ import annotations

from typing import Any

import click

from delegate.cli._guard import bounded, stdout
from delegate.cli._stores import DB_HELP, no_run, open_store, store_url, stored_run
from delegate.cli.run import check_credentials, display, execute, report, resume_line

__all__ = ["resume_command", "runs_command", "show_command"]

_MAX_RUNS = 10_000  # --limit of `runs`


@click.command("runs")
@click.option("--db", metavar="URL", help=DB_HELP)
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
    from delegate.cli import _stored
    from delegate.cli._format import write_json

    runs: list[Any] = []
    leases: dict[str, Any] = {}
    store = open_store(db)
    if store is not None:
        with store:
            runs = store.list_runs(limit=limit)
            # A run is owned while it runs or is being resumed (its stored status stays).
            leases = {run.id: store.get_lease(run.id) for run in runs if run.status != "succeeded"}
    if as_json:
        write_json(_stored.runs_json(runs, leases), stdout())
    else:
        _stored.print_runs(runs, stdout(), leases=leases)


@click.command("show")
@click.argument("run_id")
@click.option("--db", metavar="URL", help=DB_HELP)
@click.option("--full", is_flag=True, help="Show whole outputs instead of their beginnings.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def show_command(run_id: str, db: str | None, full: bool, as_json: bool) -> None:
    """Show the run RUN_ID from the store: status, goal, inputs, tasks with their usage and
    outputs, plan revisions (and what a human decided on them), tool calls that wait for a
    decision (and how to decide them), the decisions made, and errors."""
    from delegate.cli import _stored
    from delegate.cli._format import write_json
    from delegate.cli.approvals import call_documents, decided_by

    store = open_store(db)
    if store is None:
        raise no_run(run_id, store_url(None))
    with store:
        run = stored_run(store, run_id)
        tasks = store.get_tasks(run_id)
        lease = store.get_lease(run_id)
        calls = store.list_approvals(run_id)
        by = decided_by(store, run_id) if calls else {}
    if as_json:
        document = _stored.stored_run_json(run, tasks, lease, call_documents(calls, by))
        write_json(document, stdout())
    else:
        _stored.print_stored_run(
            run,
            tasks,
            stdout(),
            full=full,
            lease=lease,
            resume=resume_line(run_id, db),
            calls=calls,
            decided_by=by,
            db=db,
        )


def _leased(run_id: str, owner: str, db: str | None) -> str:
    return (
        f"run {run_id!r} is being run by {owner}; wait for it to finish, or, if you know that "
        f"process is dead, take the run over: {resume_line(run_id, db)} --force"
    )


def _budget_and_credentials(
    source: dict[str, Any], budget_usd: float | None, url: str, simulated: bool
) -> float | None:
    """The usd budget a resumed run keeps (the file's, unless the run stored one); the models'
    credentials checked unless the run is simulated.

    Raises:
        ConfigError: a model's credentials are missing.
    """
    if not isinstance(source.get("text"), str):
        return budget_usd
    from delegate.workflows import load_workflow_text
    from delegate.workflows.runtime import compile_workflow

    loaded = load_workflow_text(source["text"], str(source.get("path", "<workflow>")))
    if budget_usd is None and loaded.spec.budget is not None:
        budget_usd = loaded.spec.budget.usd
    if not simulated:
        check_credentials(compile_workflow(loaded, db=url, text=source["text"]).called_models())
    return budget_usd


@click.command("resume")
@click.argument("run_id")
@click.option("--db", metavar="URL", help=DB_HELP)
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
    from delegate.cli._stored import run_state
    from delegate.errors import ConfigError, RunLeasedError
    from delegate.testing import SimulatedPace
    from delegate.workflows.runtime import resume_workflow

    url = store_url(db)  # the home store without --db, whatever the library's default is
    store = open_store(db)
    if store is None:
        raise no_run(run_id, url)
    with store:
        record = stored_run(store, run_id)
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
    budget_usd = _budget_and_credentials(source, (record.budget or {}).get("usd"), url, simulated)
    shown = display(
        as_json,
        progress,
        title=record.workflow or "",
        run_id=run_id,
        budget_usd=budget_usd,
        simulated=simulated,
    )
    pace = SimulatedPace() if simulated else None
    try:
        result = execute(
            shown,
            run_id,
            db,
            resume_workflow,
            run_id,
            db=url,
            on_event=shown,
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
    ctx.exit(report(result, shown, as_json=as_json, **options))
