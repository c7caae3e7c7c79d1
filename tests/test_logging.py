"""delegate logs quietly: nothing on stdout unless the host configures structlog."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from delegate._log import get_logger


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_unconfigured_events_go_to_stdlib_logging_not_stdout() -> None:
    done = _run(
        """
        from delegate._log import get_logger
        log = get_logger("delegate.test", run_id="r1")
        log.info("quiet_event", n=1)
        log.warning("loud_event", api_key="sk-secret-123456", n=2)
        """
    )
    assert done.stdout == ""
    # logging's last-resort handler prints warnings (not info) to stderr, secrets masked
    assert "loud_event" in done.stderr
    assert "quiet_event" not in done.stderr
    assert "sk-secret-123456" not in done.stderr
    assert "run_id='r1'" in done.stderr


def test_a_host_logging_configuration_receives_the_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = get_logger("delegate.test").bind(task_id="t1")
    with caplog.at_level("INFO", logger="delegate.test"):
        log.info("task_note", size=3)
    assert [r.getMessage() for r in caplog.records] == ["task_note task_id='t1' size=3"]


def test_configured_structlog_receives_the_events() -> None:
    done = _run(
        """
        import structlog
        from structlog.testing import capture_logs
        from delegate._log import get_logger
        with capture_logs() as logs:
            get_logger("delegate.test", run_id="r1").warning("seen", n=1)
        print(logs)
        """
    )
    assert "'event': 'seen'" in done.stdout
    assert "'run_id': 'r1'" in done.stdout
