"""The `delegate` command (also `python -m delegate`).

Every command gets one error policy from `DelegateGroup.invoke`, so a command only raises:

- a `DelegateError` (the user's input or set-up is wrong) or a click usage error: the message on
  stderr, exit status 2, no traceback;
- anything else (a bug): a one-line message and a hint to rerun with `--debug`, exit status 1.

`--debug` adds the traceback to both. Commands import what they need inside their function, so
`delegate --help` never pays for litellm, SQLAlchemy or rich.
"""

from __future__ import annotations

import errno
import sys
import traceback
from typing import Any

import click

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

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, turning exceptions into exit statuses and messages."""
        try:
            return super().invoke(ctx)
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
        text = sys.stdin.read()
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
