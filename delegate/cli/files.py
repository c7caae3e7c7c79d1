"""The commands that read workflow files without running them: `validate` and `schema`."""

from __future__ import annotations

import traceback
from pathlib import Path

import click

__all__ = ["schema", "validate"]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@click.command()
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
    of an invalid one (on stderr). A valid file's warnings (models with no price) follow its
    line as `FILE:LINE:COL: warning: ...` (on stderr). Exit status 0 when every file is valid,
    else 2.
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
        if loaded.warnings:
            # Valid, but worth knowing: models with no price (on stderr, exit status still 0).
            lines = (f"{w.file}:{w.line}:{w.col}: warning: {w.message}" for w in loaded.warnings)
            click.echo(redact_text("\n".join(lines)), err=True)
    if invalid:
        ctx.exit(2)


@click.command()
@click.option(
    "--events",
    is_flag=True,
    help="Print the JSON Schema of the events `delegate run --events` writes instead.",
)
def schema(events: bool) -> None:
    """Print the JSON Schema of workflow files, for editors.

    Save it (`delegate schema > workflow.schema.json`) and start a workflow file with
    `# yaml-language-server: $schema=workflow.schema.json` to get completion and checks.
    With --events: the schema of one line of `delegate run --events` (one of the event kinds).
    """
    import json

    if events:
        from delegate.orchestrator.stream import events_json_schema

        click.echo(json.dumps(events_json_schema(), indent=2, ensure_ascii=False))
        return
    from delegate.workflows import workflow_json_schema

    click.echo(json.dumps(workflow_json_schema(), indent=2, ensure_ascii=False))
