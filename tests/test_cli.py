"""The `delegate` command: help, version, `tokens`, and the error policy every command shares."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from delegate.cli import main
from delegate.errors import ConfigError

# The sentence of a (short) gpt-4o-mini count: 9 tokens in o200k_base, 9 in cl100k_base.
SENTENCE = "hello world, how many tokens is this?"


@pytest.fixture
def logging_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record configure_logging calls instead of reconfiguring logging for the whole test run."""
    calls: list[dict[str, Any]] = []

    def fake_configure_logging(**kwargs: Any) -> None:
        calls.append(kwargs)

    monkeypatch.setattr("delegate._log.configure_logging", fake_configure_logging)
    return calls


@pytest.fixture
def failing_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two extra commands on `main`: one raises a DelegateError, one has a bug."""

    @click.command("misconfigured")
    def misconfigured() -> None:
        raise ConfigError("agent 'writer' is not defined; add it to workers=[...]")

    @click.command("buggy")
    def buggy() -> None:
        raise RuntimeError("kaboom")

    @click.command("leaky")
    def leaky() -> None:
        raise RuntimeError("POST failed with Authorization: Bearer sk-proj-abcdef123456")

    monkeypatch.setitem(main.commands, "misconfigured", misconfigured)
    monkeypatch.setitem(main.commands, "buggy", buggy)
    monkeypatch.setitem(main.commands, "leaky", leaky)


def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin, prog_name="delegate")


def test_help_lists_commands_and_options(logging_calls: list[dict[str, Any]]) -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "Usage: delegate [OPTIONS] COMMAND [ARGS]..." in result.stdout
    assert "tokens" in result.stdout
    assert "--debug" in result.stdout
    assert "--version" in result.stdout
    assert logging_calls == []  # --help does no work, not even logging set-up


def test_version_is_the_installed_distribution_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"delegate {importlib.metadata.version('delegate')}\n"


def test_tokens_counts_an_openai_model_exactly_and_prices_it(
    logging_calls: list[dict[str, Any]],
) -> None:
    result = invoke("tokens", SENTENCE, "--model", "openai/gpt-4o-mini")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "model:  openai/gpt-4o-mini",
        "tokens: 9 (exact, o200k_base)",
        "price:  $0.15 per million input tokens",
        "cost:   $0.00000135 for 9 input tokens",
    ]
    assert logging_calls == [{"level": "INFO", "json": False}]


def test_tokens_of_a_claude_model_is_an_estimate() -> None:
    result = invoke("tokens", SENTENCE, "--model", "anthropic/claude-haiku-4-5")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == "tokens: 9 (estimate, cl100k_base)"
    assert lines[2] == "price:  $1.00 per million input tokens"
    assert lines[3] == "cost:   $0.000009 for 9 input tokens"


def test_tokens_reads_stdin_for_dash() -> None:
    result = invoke("tokens", "-", stdin=SENTENCE)
    assert result.exit_code == 0, result.output
    assert "tokens: 9 (exact, o200k_base)" in result.stdout.splitlines()


def test_tokens_says_unknown_for_a_model_without_a_price() -> None:
    result = invoke("tokens", SENTENCE, "--model", "ollama/not-a-real-model-xyz")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == [
        "tokens: 9 (estimate, cl100k_base)",
        "price:  unknown (not in litellm's cost map)",
        "cost:   unknown",
    ]


def test_bad_option_is_a_usage_error_without_traceback() -> None:
    result = invoke("tokens", "--nope", "text")
    assert result.exit_code == 2
    assert result.stderr.startswith("Usage: delegate tokens [OPTIONS] TEXT\n")
    assert "Error: No such option" in result.stderr
    assert "--nope" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("failing_commands")
def test_delegate_error_exits_2_with_its_message_only(
    logging_calls: list[dict[str, Any]],
) -> None:
    result = invoke("misconfigured")
    assert result.exit_code == 2
    assert result.stderr == "Error: agent 'writer' is not defined; add it to workers=[...]\n"
    assert result.stdout == ""


@pytest.mark.usefixtures("failing_commands")
def test_delegate_error_with_debug_shows_the_traceback(
    logging_calls: list[dict[str, Any]],
) -> None:
    result = invoke("--debug", "misconfigured")
    assert result.exit_code == 2
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert "delegate.errors.ConfigError: agent 'writer' is not defined" in result.stderr
    assert result.stderr.endswith("Error: agent 'writer' is not defined; add it to workers=[...]\n")
    assert logging_calls == [{"level": "DEBUG", "json": False}]


@pytest.mark.usefixtures("failing_commands")
def test_unexpected_error_exits_1_with_a_hint(logging_calls: list[dict[str, Any]]) -> None:
    result = invoke("buggy")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: unexpected RuntimeError: kaboom (rerun with --debug to see the traceback)\n"
    )


@pytest.mark.usefixtures("failing_commands")
def test_unexpected_error_with_debug_shows_the_traceback(
    logging_calls: list[dict[str, Any]],
) -> None:
    result = invoke("--debug", "buggy")
    assert result.exit_code == 1
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert 'raise RuntimeError("kaboom")' in result.stderr
    assert result.stderr.endswith("Error: unexpected RuntimeError: kaboom\n")


@pytest.mark.usefixtures("failing_commands")
def test_error_output_masks_credentials(logging_calls: list[dict[str, Any]]) -> None:
    result = invoke("--debug", "leaky")
    assert result.exit_code == 1
    assert "abcdef123456" not in result.output
    last_line = result.stderr.splitlines()[-1]
    assert last_line.startswith("Error: unexpected RuntimeError: POST failed with Authorization:")
    assert last_line.endswith("***")


def test_log_json_is_passed_to_logging(logging_calls: list[dict[str, Any]]) -> None:
    result = invoke("--log-json", "tokens", "x")
    assert result.exit_code == 0, result.output
    assert logging_calls == [{"level": "INFO", "json": True}]


def _run_module(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "delegate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_python_dash_m_delegate_help() -> None:
    result = _run_module("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: delegate [OPTIONS] COMMAND [ARGS]...")
    assert "tokens" in result.stdout


def test_python_dash_m_delegate_runs_a_command_with_real_logging() -> None:
    result = _run_module("--debug", "tokens", SENTENCE)
    assert result.returncode == 0, result.stderr
    assert "tokens: 9 (exact, o200k_base)" in result.stdout.splitlines()
