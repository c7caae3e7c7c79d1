"""A voting task killed with SIGKILL after three of its five samples answered, and resumed in
another process: only the two missing samples are sent, and the spend counts every call the
model got exactly once (`delegate.orchestrator._journal`), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _backends import store_url  # noqa: F401

from delegate.memory.store import Store

HERE = Path(__file__).parent
SCRIPT = HERE / "_journal_kill_run.py"


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    }
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _journal_rows(url: str) -> int:
    store = Store.open(url)
    try:
        return sum(len(entries) for entries in store.get_steps("killed").values())
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_vote_killed_after_three_samples_resumes_with_two_calls(
    store_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    calls = tmp_path / "calls.log"
    job = _spawn("run", store_url, str(calls))
    try:
        deadline = time.monotonic() + 60
        while _journal_rows(store_url) < 3:  # the three answers are durable: kill
            assert job.poll() is None, job.stderr.read() if job.stderr else ""
            assert time.monotonic() < deadline, "the three answers never reached the store"
            time.sleep(0.01)
        os.kill(job.pid, signal.SIGKILL)
    finally:
        job.wait(timeout=30)
    before = calls.read_text().split()
    # Five samples were sent; three answered, two were in flight when the process died.
    assert before.count("sent") == 5
    assert before.count("answered") == 3

    resumed = _spawn("resume", store_url, str(calls))
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    after = calls.read_text().split()[len(before) :]

    assert result["status"] == "succeeded"
    assert result["output"] == "42"
    assert after == ["sent", "answered"] * 2  # exactly the two missing samples
    assert result["cache_hits"] == 3  # the three answered before the kill, from the journal
    # The spend counts every call the model got, once: the budget ledger against the model's
    # own count. The two cut off by the kill are charged at their reservation (unconfirmed).
    assert result["calls"] == calls.read_text().split().count("sent") == 7
    # The answer itself cost exactly five answered calls, all confirmed.
    assert result["task_calls"] == 5
    assert result["task_unconfirmed_usd"] == 0.0
    assert result["task_cost_usd"] > 0
    assert result["cost_usd"] - result["unconfirmed_usd"] == pytest.approx(
        result["task_cost_usd"], rel=1e-9
    )
    assert _journal_rows(store_url) == 0  # the journal ended with the task
