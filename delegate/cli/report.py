"""`delegate report RUN_ID`: a stored run as one self-contained HTML file.

It reads the store without creating it (`--db`, else the home store), as `show` does; the page
is built by `delegate.observe.report`.
"""

from __future__ import annotations

from pathlib import Path

import click

from delegate.cli._guard import stdout
from delegate.cli._stores import DB_HELP, no_run, open_store, store_url

__all__ = ["report_command"]


@click.command("report")
@click.argument("run_id")
@click.option("--db", metavar="URL", help=DB_HELP)
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Where to write the report ('-' for stdout). Default: run-RUN_ID.html here.",
)
def report_command(run_id: str, db: str | None, output: str | None) -> None:
    """Write the report of the run RUN_ID as one HTML file that opens in any browser.

    The file needs no network (no CDN, no fonts): open it from disk or keep it as a CI
    artifact. It shows the task graph, a timeline with the critical path, cost and tokens by
    role, model and task, the planner-only cost, plan revisions and what changed, retries,
    votes and judges, each task's prompt and output, errors, and the spend over time.
    """
    from delegate.errors import ConfigError
    from delegate.observe.report import stored_report_html

    store = open_store(db)
    if store is None:
        raise no_run(run_id, store_url(None))
    with store:
        page = stored_report_html(store, run_id)
    if output == "-":
        stdout().write(page)
        return
    path = Path(output or f"run-{run_id}.html")
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write the report to {str(path)!r} ({exc.strerror or exc}); give -o a path "
            "in a folder that exists and that you can write to"
        ) from None
    size = len(page.encode("utf-8"))
    click.echo(f"wrote the report of run {run_id} to {path} ({size / 1024:,.0f} KiB)")
