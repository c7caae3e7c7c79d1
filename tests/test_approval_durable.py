"""Tool approvals that outlive a process: a pause is stored with its `task_waiting` event (a kill
-9 after it loses nothing), an inline `approve_tool` decision is an event and a store row, and
`delegate show` tells what waits, what was decided (and by whom), and what a human made of a
plan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from _backends import store_url  # noqa: F401 - the backend matrix fixture
from test_plan_approval import FAN_OUT, GOAL, Planning, Workers, _orchestrator
from test_tool_approval import (
    ARGS,
    ASKED,
    WHY,
    Refunds,
    _clerk,
    _graph,
    _writer,
    clerk_answers,
)

from delegate import (
    Agent,
    Deny,
    ModelRequest,
    ModelResponse,
    Orchestrator,
    PendingCall,
    TaskGraph,
    ToolCallDecided,
)
from delegate.agents.approval import PausedRound
from delegate.memory.records import ApprovalRecord
from delegate.memory.store import Store
from delegate.testing import FunctionModel, tool_call

pytestmark = pytest.mark.anyio


def _stored(url: str, run_id: str) -> dict[str, Any]:
    """What the store holds of a run's approvals, read as another process would."""
    with Store.open(url) as store:
        run = store.get_run(run_id)
        return {
            "status": None if run is None else run.status,
            "pending": store.list_pending(run_id),
            "paused": store.get_paused(run_id),
            "kinds": [event.kind for event in store.get_events(run_id)],
            "tasks": {task.task_id: task.status for task in store.get_tasks(run_id)},
        }


# -- a pause is durable when it happens ------------------------------------------------------


async def test_a_pause_is_stored_with_its_event_while_the_run_goes_on(
    store_url: str,  # noqa: F811 - the fixture
) -> None:
    refunds = Refunds()
    clerk = _clerk(refunds, FunctionModel(clerk_answers))
    gate = anyio.Event()

    async def slowly(request: ModelRequest) -> str:
        await gate.wait()
        return "slow done"

    slow = Agent("slow", FunctionModel(slowly))
    graph = TaskGraph()
    graph.add("refund", agent=clerk, prompt="Handle the refund of order A1.")
    graph.add("slow", agent=slow, prompt="Take your time.")
    results: list[Any] = []
    async with Orchestrator(workers=[clerk, slow], memory=store_url) as orch:

        async def run() -> None:
            results.append(await orch.execute(graph, run_id="p1"))

        async with anyio.create_task_group() as group:
            group.start_soon(run)
            with anyio.fail_after(30):
                while True:
                    found = await anyio.to_thread.run_sync(_stored, store_url, "p1")
                    if found["pending"]:
                        break
                    await anyio.sleep(0.01)
            # The run is not over ("slow" still waits), and the pause landed with its event.
            assert found["status"] == "running"
            assert found["tasks"] == {"refund": "waiting"}
            assert found["kinds"].count("task_waiting") == 1
            [row] = found["pending"]
            assert (row.task_id, row.agent, row.tool, row.arguments, row.why, row.status) == (
                "refund",
                "clerk",
                "refund",
                ARGS,
                WHY,
                "pending",
            )
            paused = PausedRound.model_validate(found["paused"]["refund"])
            assert list(found["paused"]) == ["refund"]
            assert (paused.agent, paused.tool_rounds, paused.why) == ("clerk", 1, WHY)
            assert paused.messages == ASKED
            assert [(c.name, c.result) for c in paused.calls] == [
                ("lookup", "order A1: paid twice"),
                ("refund", None),
            ]
            gate.set()
    [result] = results
    assert result.status == "waiting"
    assert [call.call_id for call in result.pending] == [row.call_id]
    after = await anyio.to_thread.run_sync(_stored, store_url, "p1")
    assert (after["status"], after["pending"], list(after["paused"])) == (
        "waiting",
        [row],
        ["refund"],
    )


_JOB = textwrap.dedent(
    """
    import json, sys
    from delegate import Agent, Approve, ModelResponse, Orchestrator, TaskGraph, Tool
    from delegate.testing import FunctionModel, tool_call

    url, logs, mode = sys.argv[1], sys.argv[2], sys.argv[3]

    def note(name, line):
        with open(f"{logs}/{name}.log", "a") as f:
            f.write(line + "\\n")

    LOOKUP = tool_call("lookup", order="A1").tool_calls[0]
    REFUND = tool_call("refund", order="A1", usd=5.0).tool_calls[0]

    def answer(request):
        last = request.messages[-1]
        note("clerk", last["role"])  # "user": the round that pauses; "tool": the one after
        if last["role"] == "user":
            return ModelResponse(
                text="Paid twice.", tool_calls=(LOOKUP, REFUND), finish_reason="tool_calls"
            )
        return " | ".join(m["content"] for m in request.messages if m["role"] == "tool")

    def refund(order: str, usd: float) -> str:
        \"\"\"Refund an order.\"\"\"
        note("refund", order)
        return f"refunded {usd} on {order}"

    def lookup(order: str) -> str:
        \"\"\"Look an order up.\"\"\"
        note("lookup", order)
        return f"order {order}: paid twice"

    clerk = Agent(
        "clerk",
        FunctionModel(answer),
        tools=[Tool(refund, requires_approval=True), Tool(lookup)],
    )
    # "slow" is still running when the test kills the first process; the second runs it at once
    slow = Agent("slow", FunctionModel(lambda r: "slow done", latency=600 if mode == "run" else 0))
    graph = TaskGraph()
    graph.add("refund", agent=clerk, prompt="Refund order A1.")
    graph.add("slow", agent=slow, prompt="Take your time.")
    orchestrator = Orchestrator(workers=[clerk, slow], memory=url)
    if mode == "run":
        result = orchestrator.execute_sync(graph, run_id="paused")
    else:
        result = orchestrator.resume_sync("paused", decisions={sys.argv[4]: Approve()})
    outputs = {task_id: task.output for task_id, task in result.tasks.items()}
    print(json.dumps({"status": result.status, "outputs": outputs}))
    """
)


def test_kill_9_after_a_pause_then_resume_with_an_approval(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(_JOB)
    url = f"sqlite:///{tmp_path / 'paused.db'}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    job = subprocess.Popen(
        [sys.executable, str(script), url, str(tmp_path), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        found: dict[str, Any] = {"pending": []}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and job.poll() is None:
            if (tmp_path / "clerk.log").exists():  # the store is set up: read it
                found = _stored(url, "paused")
                if found["pending"]:
                    break
            time.sleep(0.02)
        assert found["pending"], job.stderr.read().decode() if job.poll() is not None else ""
        os.kill(job.pid, signal.SIGKILL)
    finally:
        job.wait(timeout=30)
    assert job.returncode == -signal.SIGKILL
    # Killed while "slow" ran: the run never ended, but its pause was stored with its event.
    assert found["status"] == "running"
    assert found["tasks"] == {"refund": "waiting"}
    assert "task_waiting" in found["kinds"]
    assert list(found["paused"]) == ["refund"]
    [call] = found["pending"]
    assert (call.tool, call.arguments) == ("refund", ARGS)
    assert (tmp_path / "clerk.log").read_text() == "user\n"
    assert not (tmp_path / "refund.log").exists()

    done = subprocess.run(
        [sys.executable, str(script), url, str(tmp_path), "resume", call.call_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "status": "succeeded",
        "outputs": {"refund": "order A1: paid twice | refunded 5.0 on A1", "slow": "slow done"},
    }
    # The paused round's model call was made once, by the killed process; the resumed one only
    # asked the model what comes after the tool results. Each tool ran exactly once.
    assert (tmp_path / "clerk.log").read_text() == "user\ntool\n"
    assert (tmp_path / "refund.log").read_text() == "A1\n"
    assert (tmp_path / "lookup.log").read_text() == "A1\n"
    after = _stored(url, "paused")
    assert (after["status"], after["pending"], after["paused"]) == ("succeeded", [], {})
    with Store.open(url) as store:
        [decided] = store.list_approvals("paused")
    assert (decided.call_id, decided.status) == (call.call_id, "approved")


# -- inline decisions are recorded ------------------------------------------------------------

SECRET = "sk-proj-" + "Q" * 40


def _secret_clerk(refunds: Refunds) -> tuple[Agent, ModelResponse]:
    """A clerk whose refund call carries a credential in its arguments."""
    call = tool_call("refund", order="A1 " + SECRET, usd=5.0).tool_calls[0]
    asked = ModelResponse(text=WHY, tool_calls=(call,), finish_reason="tool_calls")

    def answer(request: ModelRequest) -> ModelResponse | str:
        if request.messages[-1]["role"] == "user":
            return asked
        return str(request.messages[-1]["content"])

    return Agent("clerk", FunctionModel(answer), tools=[refunds.tool]), asked


async def test_an_inline_decision_is_an_event_and_a_store_row(
    store_url: str,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # a credential delegate knows: masked
    refunds = Refunds()
    clerk, _ = _secret_clerk(refunds)
    seen: list[PendingCall] = []

    def decide(call: PendingCall) -> Deny:
        seen.append(call)
        return Deny(reason="over the limit")

    events: list[Any] = []
    graph = TaskGraph()
    graph.add("refund", agent=clerk, prompt="Handle the refund of order A1.")
    async with Orchestrator(
        workers=[clerk], memory=store_url, approve_tool=decide, on_event=events.append
    ) as orch:
        result = await orch.execute(graph, run_id="c1")
    assert result.status == "succeeded"
    assert result.output == "Denied by a human: over the limit"
    assert refunds.done == []
    [call] = seen
    masked = '{"order": "A1 ***", "usd": 5.0}'
    [event] = [e for e in events if isinstance(e, ToolCallDecided)]
    assert event == ToolCallDecided(
        run_id="c1",
        task_id="refund",
        call_id=call.call_id,
        agent="clerk",
        tool="refund",
        arguments=masked,
        why=WHY,
        approved=False,
        reason="over the limit",
        by="callback",
        at=event.at,
    )
    with Store.open(store_url) as store:
        [row] = store.list_approvals("c1")
        [stored] = store.get_events("c1", kinds=("tool_call_decided",))
        assert store.list_pending("c1") == []
        assert store.get_paused("c1") == {}
    assert row.decided_at is not None
    assert row == ApprovalRecord(
        run_id="c1",
        call_id=call.call_id,
        task_id="refund",
        agent="clerk",
        tool="refund",
        arguments=masked,
        why=WHY,
        status="denied",
        reason="over the limit",
        created_at=row.created_at,
        decided_at=row.decided_at,
    )
    assert stored.data == {
        "task_id": "refund",
        "call_id": call.call_id,
        "agent": "clerk",
        "tool": "refund",
        "arguments": masked,
        "why": WHY,
        "approved": False,
        "reason": "over the limit",
        "by": "callback",
    }


async def test_an_inline_decision_without_a_store_is_an_event() -> None:
    refunds = Refunds()
    writer, _ = _writer()
    clerk = _clerk(refunds, FunctionModel(clerk_answers))
    events: list[Any] = []
    async with Orchestrator(
        workers=[clerk, writer],
        memory=None,
        approve_tool=lambda call: Deny(),
        on_event=events.append,
    ) as orch:
        result = await orch.execute(_graph(clerk, writer), run_id="n1")
    assert result.status == "succeeded"
    decided = [
        (e.tool, e.approved, e.reason, e.by) for e in events if isinstance(e, ToolCallDecided)
    ]
    assert decided == [("refund", False, "no reason given", "callback")]


# -- delegate show ----------------------------------------------------------------------------


def _invoke(*args: str) -> Any:
    from click.testing import CliRunner

    from delegate.cli import main

    return CliRunner().invoke(main, list(args), prog_name="delegate")


def _section(text: str, title: str) -> str:
    """The lines of `delegate show`'s section `title`, up to the next blank line."""
    start = text.index(f"\n{title}\n") + len(title) + 2
    end = text.find("\n\n", start)
    return text[start : None if end < 0 else end + 1]


async def test_show_lists_the_calls_that_wait_and_how_to_decide_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    refunds = Refunds()
    writer, _ = _writer()
    clerk = _clerk(refunds, FunctionModel(clerk_answers))
    async with Orchestrator(workers=[clerk, writer], memory=url) as orch:
        waiting = await orch.execute(_graph(clerk, writer), run_id="w1")
    [call] = waiting.pending
    cid = call.call_id

    shown = await anyio.to_thread.run_sync(_invoke, "show", "w1", "--db", url)
    assert shown.exit_code == 0, shown.output
    assert _section(shown.output, "tool calls waiting for a decision:") == (
        f"  {cid}  task 'refund'  refund({ARGS})\n"
        f"      why: {WHY}\n"
        f"  decide each: delegate approve w1 {cid} --db {url} (or --deny --reason TEXT), "
        "then resume the run\n"
    )
    assert "tool call decisions:" not in shown.output
    document = json.loads(
        (await anyio.to_thread.run_sync(_invoke, "show", "w1", "--db", url, "--json")).output
    )
    [listed] = document["approvals"]
    assert listed == {
        "run_id": "w1",
        "call_id": cid,
        "task_id": "refund",
        "agent": "clerk",
        "tool": "refund",
        "arguments": ARGS,
        "why": WHY,
        "status": "pending",
        "reason": None,
        "created_at": listed["created_at"],
        "decided_by": None,
        "decided_at": None,
    }

    denied = await anyio.to_thread.run_sync(
        _invoke, "approve", "w1", cid, "--deny", "--reason", "ask a manager", "--db", url
    )
    assert denied.exit_code == 0, denied.output
    shown = await anyio.to_thread.run_sync(_invoke, "show", "w1", "--db", url)
    assert "tool calls waiting for a decision:" not in shown.output
    assert _section(shown.output, "tool call decisions:") == (
        f"  {cid}  task 'refund'  refund({ARGS}): denied by human: ask a manager\n"
    )
    document = json.loads(
        (await anyio.to_thread.run_sync(_invoke, "show", "w1", "--db", url, "--json")).output
    )
    [listed] = document["approvals"]
    assert (listed["status"], listed["reason"], listed["decided_by"]) == (
        "denied",
        "ask a manager",
        "human",
    )
    assert listed["decided_at"] is not None


async def test_show_tells_a_callbacks_decisions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    refunds = Refunds()
    writer, _ = _writer()
    clerk = _clerk(refunds, FunctionModel(clerk_answers))
    seen: list[PendingCall] = []

    def approve(call: PendingCall) -> Any:
        seen.append(call)
        from delegate import Approve

        return Approve()

    async with Orchestrator(workers=[clerk, writer], memory=url, approve_tool=approve) as orch:
        result = await orch.execute(_graph(clerk, writer), run_id="a1")
    assert result.status == "succeeded"
    assert refunds.done == ["A1"]
    [call] = seen
    shown = await anyio.to_thread.run_sync(_invoke, "show", "a1", "--db", url)
    assert _section(shown.output, "tool call decisions:") == (
        f"  {call.call_id}  task 'refund'  refund({ARGS}): approved by callback\n"
    )
    document = json.loads(
        (await anyio.to_thread.run_sync(_invoke, "show", "a1", "--db", url, "--json")).output
    )
    assert [(c["call_id"], c["status"], c["decided_by"]) for c in document["approvals"]] == [
        (call.call_id, "approved", "callback")
    ]


async def test_show_tells_what_a_human_made_of_a_plan(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    planning, workers = Planning([FAN_OUT]), Workers()
    orch = _orchestrator(planning, workers, approve_plan=lambda proposal: True, memory=url)
    async with orch:
        result = await orch.run(GOAL, {"topic": "bees"}, run_id="g1")
    assert result.plans[0].approval == "approved"

    shown = await anyio.to_thread.run_sync(_invoke, "show", "g1", "--db", url)
    [line] = [line for line in shown.output.splitlines() if line.startswith("  plan 1 ")]
    assert line.endswith(", complete, approved by a human")
    document = json.loads(
        (await anyio.to_thread.run_sync(_invoke, "show", "g1", "--db", url, "--json")).output
    )
    assert [plan["approval"] for plan in document["plans"]] == ["approved"]
    assert document["approvals"] == []
