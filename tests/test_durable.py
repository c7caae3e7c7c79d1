"""Durable runs: a run killed mid-way resumes in another process without redoing finished work."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _backends import store_url  # noqa: F401 - the backend matrix fixture
from pydantic import BaseModel

from delegate import Agent, ConfigError, DelegateError, Orchestrator, TaskContext, TaskGraph
from delegate.testing import FunctionModel

pytestmark = pytest.mark.anyio


class Fact(BaseModel):
    topic: str
    words: int


def double(ctx: TaskContext) -> int:
    """A module-level function task: importable, so a durable run can store it."""
    return int(ctx.deps["count"]) * 2


def _graph(agent: Agent, typed: Agent) -> TaskGraph:
    graph = TaskGraph()
    notes = [graph.add(f"note{i}", agent=agent, prompt=f"Note {i}.") for i in range(3)]
    fact = graph.add("fact", agent=typed, prompt="A fact.", deps=notes)
    count = graph.add("count", agent=agent, prompt="Count.", deps=[fact])
    graph.add("double", fn=double, deps=[count])
    return graph


def _agents() -> tuple[Agent, Agent, FunctionModel, FunctionModel]:
    plain = FunctionModel(lambda r: "7" if "Count" in r.messages[-1]["content"] else "a note")
    typed = FunctionModel(lambda r: {"topic": "batteries", "words": 3})
    return Agent("writer", plain), Agent("fact", typed, output_type=Fact), plain, typed


async def test_a_finished_run_is_stored_and_resumes_without_calls(
    store_url: str,  # noqa: F811 - the fixture imported above
) -> None:
    url = store_url
    writer, fact, plain, typed = _agents()
    orchestrator = Orchestrator(workers=[writer, fact], memory=url)
    first = await orchestrator.execute(_graph(writer, fact), run_id="r1")
    assert first.status == "succeeded"
    assert first.output == 14
    calls = (plain.calls, typed.calls)
    assert calls == (4, 1)

    again_writer, again_fact, again_plain, again_typed = _agents()
    again = Orchestrator(workers=[again_writer, again_fact], memory=url)
    resumed = await again.resume("r1")
    assert (again_plain.calls, again_typed.calls) == (0, 0)  # nothing ran twice
    assert resumed.status == "succeeded"
    assert resumed.output == 14
    assert resumed.tasks["fact"].output == Fact(topic="batteries", words=3)
    assert resumed.usage.calls == first.usage.calls
    assert {k: t.attempts for k, t in resumed.tasks.items()} == {
        k: t.attempts for k, t in first.tasks.items()
    }


async def test_executing_an_existing_run_id_points_at_resume(
    store_url: str,  # noqa: F811 - the fixture imported above
) -> None:
    writer, fact, _, _ = _agents()
    orchestrator = Orchestrator(workers=[writer, fact], memory=store_url)
    await orchestrator.execute(_graph(writer, fact), run_id="same")
    with pytest.raises(DelegateError, match="resume"):
        await orchestrator.execute(_graph(writer, fact), run_id="same")


async def test_a_lambda_task_resumes_when_it_already_finished(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    graph = TaskGraph()
    first = graph.add("first", fn=lambda ctx: 1)
    graph.add("second", fn=lambda ctx: ctx.deps["first"] + 1, deps=[first])
    result = await Orchestrator(memory=url).execute(graph, run_id="lam")
    assert result.output == 2
    resumed = await Orchestrator(memory=url).resume("lam")  # both restored: nothing to import
    assert resumed.output == 2


async def test_a_lambda_task_that_must_run_again_fails_with_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"

    def boom(ctx: TaskContext) -> int:
        raise RuntimeError("not yet")

    graph = TaskGraph()
    graph.add("later", fn=lambda ctx: 1)
    graph.add("broken", fn=boom)
    first = await Orchestrator(memory=url).execute(graph, run_id="lam2")
    assert first.tasks["broken"].status == "failed"
    resumed = await Orchestrator(memory=url).resume("lam2")
    assert resumed.tasks["later"].status == "succeeded"  # restored, not re-run
    assert resumed.tasks["broken"].status == "failed"
    assert "module-level function" in (resumed.tasks["broken"].error or "")


async def test_resume_without_a_store_or_an_unknown_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a store"):
        await Orchestrator(memory=None).resume("x")
    with pytest.raises(ConfigError, match="no run 'nope'"):
        await Orchestrator(memory=f"sqlite:///{tmp_path / 'u.db'}").resume("nope")


_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from delegate import Agent, Orchestrator, TaskGraph
    from delegate.testing import FunctionModel

    url, log, mode = sys.argv[1], sys.argv[2], sys.argv[3]

    def answer(request):
        prompt = request.messages[-1]["content"]
        task = prompt.split("TASK=")[1].split()[0]
        with open(log, "a") as f:  # a finished call: the fake sleeps first, then answers
            f.write(task + "\\n")
        return "done " + task

    slow = FunctionModel(answer, latency=0.15)
    worker = Agent("worker", slow)
    graph = TaskGraph()
    previous = []
    for layer in range(4):
        current = [
            graph.add(f"L{layer}_{n}", agent=worker, prompt=f"TASK=L{layer}_{n}", deps=previous)
            for n in range(3)
        ]
        previous = current
    orchestrator = Orchestrator(workers=[worker], memory=url, max_concurrency=3)
    if mode == "run":
        result = orchestrator.execute_sync(graph, run_id="killed")
    else:
        result = orchestrator.resume_sync("killed")
    print(json.dumps({"status": result.status, "output": result.output}))
    """
)


@pytest.mark.slow
def _stop_outside_a_write(job: subprocess.Popen[bytes], db: Path) -> None:
    """SIGSTOP `job` at a moment it holds no write lock on the SQLite file `db`.

    A process stopped inside its writer's commit would hold the database's write lock for as
    long as it stays stopped, and every other process would wait out its busy timeout for
    "database is locked" instead of being told who owns the run.
    """
    for _ in range(1000):
        job.send_signal(signal.SIGSTOP)
        probe = sqlite3.connect(db, timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.rollback()
            return
        except sqlite3.OperationalError:
            job.send_signal(signal.SIGCONT)  # stopped mid-commit: let it finish, try again
            time.sleep(0.005)
        finally:
            probe.close()
    raise AssertionError("the job never stopped outside a write")


def test_kill_9_mid_run_then_resume_in_another_process(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(_SCRIPT)
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    log = tmp_path / "calls.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    job = subprocess.Popen(
        [sys.executable, str(script), url, str(log), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until two layers finished, then kill
            if log.exists() and len(log.read_text().split()) >= 6:
                break
            time.sleep(0.01)
        # While its owner lives, the run cannot be resumed beside it (it would run twice).
        _stop_outside_a_write(job, tmp_path / "kill.db")  # hold the owner still, alive
        try:
            beside = subprocess.run(
                [sys.executable, str(script), url, str(log), "resume"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            job.send_signal(signal.SIGCONT)
        assert beside.returncode != 0
        assert "RunLeasedError" in beside.stderr
        assert f"pid {job.pid}" in beside.stderr
        os.kill(job.pid, signal.SIGKILL)
    finally:
        job.wait(timeout=30)
    before = log.read_text().split()
    assert 6 <= len(before) < 12, "the kill must land mid-run"
    from delegate.memory.store import Store

    store = Store.open(url)
    finished = {t.task_id for t in store.get_tasks("killed") if t.status == "succeeded"}
    store.close()
    assert finished, "some tasks were durable before the kill"

    done = subprocess.run(
        [sys.executable, str(script), url, str(log), "resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    calls = log.read_text().split()
    assert result["status"] == "succeeded"
    assert result["output"] == {f"L3_{n}": f"done L3_{n}" for n in range(3)}
    everything = {f"L{layer}_{n}" for layer in range(4) for n in range(3)}
    assert set(calls) == everything
    # a task that was durable before the kill ran exactly once over both processes; one whose
    # call ended but whose result was not yet committed may run again (it never "finished")
    for task in finished:
        assert calls.count(task) == 1, task
    assert len(calls) - len(everything) <= len(set(before) - finished)


async def test_an_unwritable_default_home_is_a_clear_store_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DELEGATE_HOME", str(blocker / "home"))
    graph = TaskGraph()
    graph.add("a", fn=double_of_two)
    with pytest.raises(DelegateError, match="DELEGATE_HOME"):
        await Orchestrator(memory="home").execute(graph)
    assert (await Orchestrator(memory=None).execute(graph)).output == 4


def double_of_two(ctx: TaskContext) -> int:
    return 4
