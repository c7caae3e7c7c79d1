"""The `delegate` group: its global options, its error policy, and the commands below it.

Every command gets one error policy from `DelegateGroup.invoke`, so a command only raises:

- a `DelegateError` (the user's input or set-up is wrong) or a click usage error: the message on
  stderr, exit status 2, no traceback;
- anything else (a bug): a one-line message and a hint to rerun with `--debug`, exit status 1.

`--debug` adds the traceback to both. Ctrl-C, SIGTERM and SIGHUP stop a command with one line and
exit status 128 + the signal's number (130, 143, 129); a run they stop is stored as interrupted.
A closed stdout or stderr (`delegate run … | head -3`) is not an error: what was to be written
there is dropped, and the command goes on (`delegate.cli._guard`).
"""

from __future__ import annotations

import errno
import sys
import traceback
from typing import Any

import click

from delegate.cli.approvals import approve_command, pending_command
from delegate.cli.eval import eval_command
from delegate.cli.files import schema, validate
from delegate.cli.init import init_command
from delegate.cli.report import report_command
from delegate.cli.run import plan_command, run_command
from delegate.cli.runs import resume_command, runs_command, show_command
from delegate.cli.tokens import tokens
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
        from delegate.cli._guard import pipe_safe, stop_signals

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
            from delegate.cli._guard import signal_label, stopped_by

            name, code = stopped_by()
            click.echo(f"stopped by {signal_label(name)}", err=True)
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


@click.group(cls=DelegateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="delegate", prog_name="delegate", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("--log-json", is_flag=True, help="Write logs as JSON lines instead of text.")
def main(debug: bool, log_json: bool) -> None:
    """Planner–executor LLM orchestration: a reasoning model plans, cheap models execute."""
    from delegate._log import configure_logging

    configure_logging(level="DEBUG" if debug else "INFO", json=log_json)


for _command in (
    tokens,
    validate,
    schema,
    run_command,
    plan_command,
    runs_command,
    show_command,
    resume_command,
    init_command,
    pending_command,
    approve_command,
    report_command,
    eval_command,
):
    main.add_command(_command)
