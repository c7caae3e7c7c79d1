"""`delegate tokens`: count a text's tokens and price them, offline."""

from __future__ import annotations

import sys

import click

__all__ = ["tokens"]

_MAX_TOKENS_TEXT = 16_000_000  # characters `tokens -` reads (stdin may be endless: /dev/zero)


def _format_usd(amount: float) -> str:
    # Costs of a few tokens are fractions of a cent: keep every significant digit, no exponent.
    whole, _, fraction = f"{amount:.10f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


@click.command()
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
