"""delegate logs quietly: nothing on stdout unless the host configures structlog; every event
carries the run, task, agent and model it happened in."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import BaseModel
from structlog.testing import capture_logs

from delegate import Agent, Orchestrator, RetryPolicy, TaskContext, TaskGraph, tool
from delegate._log import get_logger
from delegate.agents.models import ModelRequest
from delegate.errors import PermanentModelError, RateLimitError
from delegate.testing import FunctionModel, tool_call


@pytest.fixture(autouse=True)
def _unconfigured() -> Iterator[None]:
    # `capture_logs` (here and in other test files) leaves structlog marked as configured, which
    # sends delegate's events to structlog instead of stdlib logging: each test starts as a host
    # that configured nothing, and leaves it so.
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


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


# --- context: run_id, task_id, agent, model on every event ---------------------------------------


def test_a_configured_chain_merges_the_context_and_still_masks_secrets() -> None:
    done = _run(
        """
        import structlog
        from delegate._log import bound_run, configure_logging, get_logger
        configure_logging("INFO", json=True)
        with bound_run("r1"):
            structlog.contextvars.bind_contextvars(token="sk-secret-1234567890")
            get_logger("delegate.test").warning("ours", note="Bearer sk-secret-1234567890")
            structlog.get_logger("host").warning("theirs")  # a task function's own event
        get_logger("delegate.test").warning("after")
        """
    )
    ours, theirs, after = (json.loads(line) for line in done.stderr.splitlines())
    assert (ours["event"], ours["run_id"], ours["token"]) == ("ours", "r1", "***")
    assert (theirs["event"], theirs["run_id"], theirs["token"]) == ("theirs", "r1", "***")
    assert "sk-secret-1234567890" not in done.stderr
    assert "run_id" not in after  # the run's end unbinds it


def test_unconfigured_events_carry_the_context_too() -> None:
    done = _run(
        """
        from delegate._log import bound_run, get_logger
        with bound_run("r7"):
            get_logger("delegate.test").warning("inside", n=1)
        """
    )
    assert "inside run_id='r7' n=1" in done.stderr


class Facts(BaseModel):
    facts: list[str]


@pytest.mark.anyio
async def test_every_event_of_a_run_carries_its_run_and_task_events_their_task() -> None:
    plan = {
        "tasks": [
            {"id": task, "agent": agent, "instructions": f"Do {task}.", "deps": []}
            for task, agent in [
                ("facts", "scout"),
                ("flaky", "scout"),
                ("doomed", "scout"),
                ("typed", "analyst"),
            ]
        ]
    }
    attempts: Counter[str] = Counter()

    def planner(request: ModelRequest) -> Any:
        return json.dumps(plan) if request.output_name == "Plan" else "FINAL"

    def scout(request: ModelRequest) -> Any:
        prompt = next(m["content"] for m in request.messages if m["role"] == "user")
        task = str(prompt).rsplit("Do ", 1)[-1].rstrip(".")
        attempts[task] += 1
        if task == "facts" and attempts[task] == 1:
            return tool_call("lookup", query="bees")  # the tool fails: a warning
        if task == "flaky" and attempts[task] == 1:
            raise RateLimitError("slow down", retry_after=0.0)  # retried
        if task == "doomed":
            raise PermanentModelError("cannot")  # fails; no replan is left
        return f"result of {task}"

    def lookup(query: str) -> str:
        """Look `query` up."""
        raise ValueError("index offline")

    strong = FunctionModel(lambda r: {"facts": ["x"]}, name="strong")
    analyst = Agent(
        "analyst",
        FunctionModel(lambda r: "not json", name="weak"),  # re-asked, then escalated
        output_type=Facts,
        fallback=Agent("analyst_big", strong, output_type=Facts),
    )
    orchestrator = Orchestrator(
        planner=Agent("planner", FunctionModel(planner, name="reasoner")),
        workers=[
            Agent("scout", FunctionModel(scout, name="mini"), tools=[tool(lookup)]),
            analyst,
        ],
        max_replans=0,
        retry=RetryPolicy(base_delay=0.0, jitter=0.0),
        memory=None,
    )

    with capture_logs() as logs:
        result = await orchestrator.run("Report on bees.", run_id="logged")

    assert result.tasks["flaky"].attempts == 2
    assert result.tasks["doomed"].status == "failed"
    assert result.tasks["typed"].status == "succeeded"
    events = {entry["event"] for entry in logs}
    assert events >= {"tool_failed", "agent_reask", "agent_escalated", "replans_exhausted"}
    assert [entry for entry in logs if entry.get("run_id") != "logged"] == []
    in_tasks = {
        entry["event"]: (entry["task_id"], entry["agent"], entry["model"])
        for entry in logs
        if entry["event"] in ("tool_failed", "agent_reask", "agent_escalated")
    }
    assert in_tasks == {
        "tool_failed": ("facts", "scout", "mini"),
        "agent_reask": ("typed", "analyst", "weak"),
        "agent_escalated": ("typed", "analyst", "weak"),
    }
    [exhausted] = [entry for entry in logs if entry["event"] == "replans_exhausted"]
    assert "task_id" not in exhausted  # the planner's side of the run is no task
    assert structlog.contextvars.get_contextvars() == {}  # nothing stays bound after the run


@pytest.mark.anyio
async def test_a_task_function_in_a_thread_sees_its_run_and_task() -> None:
    seen: list[dict[str, Any]] = []

    def probe(ctx: TaskContext) -> str:  # a sync function: it runs in a worker thread
        seen.append(structlog.contextvars.get_contextvars())
        return "ok"

    graph = TaskGraph()
    graph.add("probe", fn=probe)
    await Orchestrator(memory=None).execute(graph, run_id="threaded")

    assert seen == [{"run_id": "threaded", "task_id": "probe"}]


@pytest.mark.anyio
async def test_an_agent_run_on_its_own_leaves_the_context_as_it_was() -> None:
    await Agent("solo", FunctionModel(lambda r: "hi", name="m")).run("hello")
    assert structlog.contextvars.get_contextvars() == {}


@pytest.mark.anyio
async def test_every_call_of_a_workflow_sees_its_run_task_agent_and_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from delegate.testing import SimulatedModel
    from delegate.workflows.loader import load_workflow_text
    from delegate.workflows.runtime import compile_workflow, run_workflow

    text = """
name: planned-step
agents:
  boss: {model: openai/o4-mini}
  scout: {model: openai/gpt-4o-mini, description: Quick research.}
steps:
  - id: profile
    agent: scout
    prompt: "Profile Acme."
  - id: study
    kind: plan
    planner: boss
    workers: [scout]
    goal: "Study the risks of Acme."
"""
    seen: list[tuple[str | None, dict[str, Any]]] = []
    real = SimulatedModel.request

    async def request(self: SimulatedModel, request: ModelRequest) -> Any:
        seen.append((request.output_name, structlog.contextvars.get_contextvars()))
        return await real(self, request)

    monkeypatch.setattr(SimulatedModel, "request", request)
    loaded = load_workflow_text(text, str(tmp_path / "wf.yaml"))
    compiled = compile_workflow(loaded, simulate=True, text=text, time_scale=0.0, db=None)
    result = await run_workflow(compiled, {}, run_id="wf")

    assert result.status == "succeeded"
    by_task = {context.get("task_id"): context for _, context in seen}
    assert by_task["profile"] == {
        "run_id": "wf",
        "task_id": "profile",
        "agent": "scout",
        "model": "openai/gpt-4o-mini",
    }
    # The planning is the task `study.plan`; the step's answer is the task `study`.
    [planning] = [context for name, context in seen if name == "Plan"]
    assert planning == {
        "run_id": "wf",
        "task_id": "study.plan",
        "agent": "boss",
        "model": "openai/o4-mini",
    }
    assert by_task["study"]["agent"] == "boss"
    assert {context["run_id"] for _, context in seen} == {"wf"}
