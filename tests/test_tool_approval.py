"""Tool calls a human approves: a task pauses, the run ends "waiting", a resume goes on exactly
there — in one process, across processes, and through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _backends import store_url  # noqa: F401 - the backend matrix fixture

from delegate import (
    Agent,
    ApprovalPending,
    Approve,
    Budget,
    ConfigError,
    Deny,
    ModelRequest,
    ModelResponse,
    Orchestrator,
    PendingCall,
    TaskGraph,
    TaskWaiting,
    Tool,
    tool,
)
from delegate.memory.records import ApprovalRecord
from delegate.memory.store import Store
from delegate.testing import FunctionModel, tool_call

pytestmark = pytest.mark.anyio

WHY = "The customer was charged twice for order A1."
ARGS = '{"order": "A1", "usd": 5.0}'


class Refunds:
    """A refund tool that requires approval, a lookup that does not, and what each really did."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.looked: list[str] = []

        def refund(order: str, usd: float) -> str:
            """Refund an order."""
            self.done.append(order)
            return f"refunded {usd} on {order}"

        def lookup(order: str) -> str:
            """Look an order up."""
            self.looked.append(order)
            return f"order {order}: paid twice"

        self.tool = Tool(refund, requires_approval=True)
        self.lookup = Tool(lookup)


LOOKUP = tool_call("lookup", order="A1").tool_calls[0]
REFUND = tool_call("refund", order="A1", usd=5.0).tool_calls[0]
PROMPT = "Handle the refund of order A1."
ASKED: list[dict[str, Any]] = [
    {"role": "user", "content": PROMPT},
    {
        "role": "assistant",
        "content": WHY,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in (LOOKUP, REFUND)
        ],
    },
]
"""The conversation up to the round that pauses."""


def clerk_answers(request: ModelRequest) -> ModelResponse | str:
    """Look the order up and refund it in one round; then report what the tools said."""
    if request.messages[-1]["role"] == "user":
        return ModelResponse(text=WHY, tool_calls=(LOOKUP, REFUND), finish_reason="tool_calls")
    return " | ".join(m["content"] for m in request.messages if m["role"] == "tool")


def _clerk(refunds: Refunds, model: FunctionModel) -> Agent:
    return Agent("clerk", model, tools=[refunds.tool, refunds.lookup])


def _graph(clerk: Agent, writer: Agent) -> TaskGraph:
    graph = TaskGraph()
    refund = graph.add("refund", agent=clerk, prompt=PROMPT)
    graph.add("letter", agent=writer, prompt="Write to the customer.", deps=[refund])
    graph.add("other", agent=writer, prompt="Summarize the day.")
    return graph


def _writer() -> tuple[Agent, FunctionModel]:
    model = FunctionModel(lambda request: "written", name="writer")
    return Agent("writer", model), model


# -- the flag ------------------------------------------------------------------------------------


def test_requires_approval_flag() -> None:
    def send(to: str) -> str:
        """Send mail."""
        return to

    assert Tool(send).requires_approval is False
    assert Tool(send, requires_approval=True).requires_approval is True
    assert tool(requires_approval=True)(send).requires_approval is True
    assert tool(send).requires_approval is False
    assert repr(Tool(send, requires_approval=True)) == "Tool(name='send', requires_approval=True)"
    with pytest.raises(ConfigError, match="requires_approval must be True or False, got 'yes'"):
        Tool(send, requires_approval="yes")  # type: ignore[arg-type]


async def test_agent_outside_a_run_cannot_pause() -> None:
    refunds = Refunds()
    model = FunctionModel(clerk_answers)
    with pytest.raises(ApprovalPending, match="require a human's approval") as caught:
        await _clerk(refunds, model).run(PROMPT)
    assert caught.value.tools == ("refund",)
    assert refunds.done == []
    assert model.calls == 1


# -- one process ---------------------------------------------------------------------------------


async def test_pause_then_approve(tmp_path: Path) -> None:
    refunds = Refunds()
    model = FunctionModel(clerk_answers, input_price=1.0, output_price=2.0, name="clerk-model")
    writer, writer_model = _writer()
    events: list[Any] = []
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    async with Orchestrator(
        workers=[_clerk(refunds, model), writer], memory=url, on_event=events.append
    ) as orch:
        result = await orch.execute(_graph(_clerk(refunds, model), writer), run_id="r1")

        assert result.status == "waiting"
        assert {k: t.status for k, t in result.tasks.items()} == {
            "refund": "waiting",
            "letter": "pending",
            "other": "succeeded",
        }
        [call] = result.pending
        assert len(call.call_id) == 12
        assert int(call.call_id, 16) >= 0
        assert call == PendingCall(
            run_id="r1",
            call_id=call.call_id,
            task_id="refund",
            agent="clerk",
            tool="refund",
            arguments=ARGS,
            why=WHY,
        )
        assert result.error is not None
        assert call.call_id in result.error
        assert refunds.done == []
        assert refunds.looked == ["A1"]  # the call that needs no approval ran
        assert model.calls == 1
        assert writer_model.calls == 1
        [waiting] = [e for e in events if isinstance(e, TaskWaiting)]
        assert (waiting.task_id, waiting.tools) == ("refund", ("refund",))

        resumed = await orch.resume("r1", decisions={call.call_id: Approve()})

    assert resumed.status == "succeeded"
    assert resumed.pending == []
    assert refunds.done == ["A1"]  # once
    assert refunds.looked == ["A1"]  # not again: its result was kept with the paused round
    assert model.calls == 2  # the paused round was not asked again
    assert writer_model.calls == 2  # "other" kept its output; "letter" ran now
    assert model.requests[-1].messages == [
        *ASKED,
        {"role": "tool", "tool_call_id": LOOKUP.id, "content": "order A1: paid twice"},
        {"role": "tool", "tool_call_id": REFUND.id, "content": "refunded 5.0 on A1"},
    ]
    assert resumed.tasks["refund"].output == "order A1: paid twice | refunded 5.0 on A1"


async def test_the_commands_summary_lists_what_waits_and_how_to_go_on(tmp_path: Path) -> None:
    import io

    from delegate.cli import _summary
    from delegate.cli.run import EXIT_CODES

    refunds = Refunds()
    model = FunctionModel(clerk_answers, name="clerk-model")
    writer, _ = _writer()
    async with Orchestrator(workers=[_clerk(refunds, model), writer]) as orch:
        result = await orch.execute(_graph(_clerk(refunds, model), writer), run_id="r9")
    [call] = result.pending
    stream = io.StringIO()

    _summary.print_pending(result, stream)
    document = _summary.result_json(result, simulated=False)

    assert stream.getvalue() == (
        "\n1 tool call waiting for approval:\n"
        f"  {call.call_id}  task refund: refund({ARGS}) — {WHY}\n"
        f"approve with `delegate approve r9 {call.call_id}` (or `--deny --reason TEXT`), then "
        "continue with `delegate resume r9`\n"
    )
    assert document["pending"] == [call.model_dump(mode="json")]
    assert EXIT_CODES[result.status] == 3


async def test_deny_answers_the_model_with_the_reason(tmp_path: Path) -> None:
    refunds = Refunds()
    model = FunctionModel(clerk_answers)
    writer, _ = _writer()
    clerk = _clerk(refunds, model)
    async with Orchestrator(workers=[clerk, writer], memory=f"sqlite:///{tmp_path / 'r.db'}") as o:
        first = await o.execute(_graph(clerk, writer), run_id="r2")
        [call] = first.pending
        result = await o.resume("r2", decisions={call.call_id: Deny(reason="  over the limit ")})
    assert result.status == "succeeded"
    assert refunds.done == []
    assert model.requests[-1].messages == [
        *ASKED,
        {"role": "tool", "tool_call_id": LOOKUP.id, "content": "order A1: paid twice"},
        {
            "role": "tool",
            "tool_call_id": REFUND.id,
            "content": "Denied by a human: over the limit",
        },
    ]
    assert result.tasks["refund"].output == (
        "order A1: paid twice | Denied by a human: over the limit"
    )


async def test_no_decision_keeps_waiting_without_calling_the_model(tmp_path: Path) -> None:
    refunds = Refunds()
    model = FunctionModel(clerk_answers)
    writer, writer_model = _writer()
    clerk = _clerk(refunds, model)
    async with Orchestrator(workers=[clerk, writer], memory=f"sqlite:///{tmp_path / 'r.db'}") as o:
        first = await o.execute(_graph(clerk, writer), run_id="r3")
        again = await o.resume("r3")
        later = await o.resume("r3")
        [call] = first.pending
        with pytest.raises(ConfigError, match=r"has no tool call 'nope'"):
            await o.resume("r3", decisions={"nope": Approve()})
        with pytest.raises(ConfigError, match=r"must be delegate.Approve\(\) or"):
            await o.resume("r3", decisions={call.call_id: True})  # type: ignore[dict-item]
        done = await o.resume("r3", decisions={call.call_id: Approve()})
    assert again.status == later.status == "waiting"
    assert again.pending == later.pending == first.pending
    assert {k: t.status for k, t in again.tasks.items()} == {
        "refund": "waiting",
        "letter": "pending",
        "other": "succeeded",
    }
    assert model.calls == 2
    assert writer_model.calls == 2
    assert done.status == "succeeded"
    assert refunds.done == ["A1"]


async def test_budget_holds_across_the_pause(tmp_path: Path) -> None:
    refunds = Refunds()
    model = FunctionModel(clerk_answers, input_price=1.0, output_price=2.0, name="clerk-model")
    writer_model = FunctionModel(lambda r: "written", input_price=1.0, output_price=2.0)
    writer = Agent("writer", writer_model)
    clerk = _clerk(refunds, model)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    async with Orchestrator(workers=[clerk, writer], memory=url, budget=Budget(calls=3)) as orch:
        first = await orch.execute(_graph(clerk, writer), run_id="r4")
        with Store.open(url) as store:
            stored = store.get_run("r4")
        assert stored is not None
        assert stored.status == "waiting"
        assert stored.usage is not None
        assert stored.usage["calls"] == 2 == first.usage.calls
        assert stored.usage["cost_usd"] == pytest.approx(first.usage.cost_usd)
        result = await orch.resume("r4", decisions={first.pending[0].call_id: Approve()})
    # 2 calls before the pause + the clerk's answer = the budget's 3: the letter is refused.
    assert model.calls + writer_model.calls == 3 == result.usage.calls
    assert result.usage.refused == 1
    assert result.tasks["refund"].status == "succeeded"
    assert result.tasks["letter"].status == "failed"
    assert "budget" in (result.tasks["letter"].error or "")
    assert result.usage.cost_usd > first.usage.cost_usd > 0


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_approve_tool_decides_inline(asynchronous: bool) -> None:
    refunds = Refunds()
    model = FunctionModel(clerk_answers)
    writer, _ = _writer()
    asked: list[PendingCall] = []

    def sync_decide(call: PendingCall) -> Approve | Deny:
        asked.append(call)
        return Deny(reason="not today") if call.arguments == ARGS else Approve()

    async def async_decide(call: PendingCall) -> Approve | Deny:
        return sync_decide(call)

    decide: Callable[[PendingCall], Any] = async_decide if asynchronous else sync_decide
    clerk = _clerk(refunds, model)
    async with Orchestrator(workers=[clerk, writer], memory=None, approve_tool=decide) as orch:
        result = await orch.execute(_graph(clerk, writer), run_id="r5")
    assert result.status == "succeeded"
    assert result.pending == []
    [call] = asked
    assert (call.run_id, call.task_id, call.tool, call.arguments, call.why) == (
        "r5",
        "refund",
        "refund",
        ARGS,
        WHY,
    )
    assert refunds.done == []
    assert result.tasks["refund"].output == "order A1: paid twice | Denied by a human: not today"


def test_approve_tool_must_be_callable() -> None:
    with pytest.raises(ConfigError, match="approve_tool must be a function of a PendingCall"):
        Orchestrator(approve_tool="yes", memory=None)  # type: ignore[arg-type]


async def test_store_rows(store_url: str) -> None:  # noqa: F811 - the fixture
    refunds = Refunds()
    model = FunctionModel(clerk_answers)
    writer, _ = _writer()
    clerk = _clerk(refunds, model)
    secret = "sk-proj-" + "Z" * 40
    os.environ["OPENAI_API_KEY"] = secret
    try:
        async with Orchestrator(workers=[clerk, writer], memory=store_url) as orch:
            first = await orch.execute(_graph(clerk, writer), run_id="r6")
            [call] = first.pending
            with Store.open(store_url) as store:
                [row] = store.list_pending("r6")
                assert store.list_pending() == [row]  # every waiting run
                assert (row.call_id, row.task_id, row.tool, row.arguments, row.why) == (
                    call.call_id,
                    "refund",
                    "refund",
                    ARGS,
                    WHY,
                )
                assert row.status == "pending"
                assert row.decided_at is None
                assert list(store.get_paused("r6")) == ["refund"]
                assert [t.status for t in store.get_tasks("r6")].count("waiting") == 1
                with pytest.raises(ConfigError, match=r"no run 'r66' .*\(did you mean 'r6'\?\)"):
                    store.decide_call("r66", call.call_id, approve=True)
                typo = call.call_id[:-1] + ("0" if call.call_id[-1] != "0" else "1")
                with pytest.raises(ConfigError, match=f"did you mean '{call.call_id}'"):
                    store.decide_call("r6", typo, approve=True)
                denied = store.decide_call("r6", call.call_id, approve=False, reason=secret)
                assert denied.status == "denied"
                assert secret not in (denied.reason or "")
                assert store.decide_call("r6", call.call_id, approve=False).status == "denied"
                with pytest.raises(ConfigError, match="already denied"):
                    store.decide_call("r6", call.call_id, approve=True)
                assert store.list_pending() == []
                leaky = ApprovalRecord(
                    run_id="r6",
                    call_id="c-leaky",
                    task_id="refund",
                    agent="clerk",
                    tool="send",
                    arguments=json.dumps({"key": secret}),
                    why=f"using {secret}",
                )
                store.save_pauses("r6", store.get_paused("r6"), [leaky])
                [kept] = store.list_pending("r6")
                assert secret not in kept.arguments + kept.why
                assert kept.arguments.startswith('{"key": "')
                store.decide_call("r6", "c-leaky", approve=True)
            result = await orch.resume("r6")  # the decision comes from the store
            with Store.open(store_url) as store:
                assert store.get_paused("r6") == {}
                assert [a.status for a in store.list_approvals("r6")] == ["denied", "approved"]
                assert store.get_run("r6").status == "succeeded"  # type: ignore[union-attr]
    finally:
        os.environ.pop("OPENAI_API_KEY", None)
    assert result.status == "succeeded"
    assert refunds.done == []
    assert model.requests[-1].messages[-1]["content"].startswith("Denied by a human: ")
    assert secret not in model.requests[-1].messages[-1]["content"]


# -- across processes ----------------------------------------------------------------------------

SCRIPT = textwrap.dedent(
    '''
    import json
    import sys
    from pathlib import Path

    import anyio

    from delegate import Agent, Orchestrator, TaskGraph, Tool
    from delegate.testing import FunctionModel, tool_call

    url, log, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]


    def refund(order: str) -> str:
        """Refund an order."""
        with log.open("a") as out:
            out.write(order + "\\n")
        return "refunded " + order


    def answer(request):
        if request.messages[-1]["role"] == "user":
            return tool_call("refund", order="A1")
        return "done: " + request.messages[-1]["content"]


    clerk = Agent("clerk", FunctionModel(answer), tools=[Tool(refund, requires_approval=True)])


    async def main():
        async with Orchestrator(workers=[clerk], memory=url) as orch:
            if mode == "run":
                graph = TaskGraph()
                graph.add("refund", agent=clerk, prompt="Refund A1.")
                result = await orch.execute(graph, run_id="e2e")
            else:
                result = await orch.resume("e2e")
        pending = [call.call_id for call in result.pending]
        print(json.dumps({"status": result.status, "output": result.output, "pending": pending}))


    anyio.run(main)
    '''
)


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, **kwargs)


def test_wait_exit_approve_resume_in_other_processes(tmp_path: Path) -> None:
    script, log = tmp_path / "refunds.py", tmp_path / "refunds.log"
    script.write_text(SCRIPT)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    cli = [sys.executable, "-m", "delegate"]

    ran = _run([sys.executable, str(script), url, str(log), "run"])
    assert ran.returncode == 0, ran.stderr
    first = json.loads(ran.stdout)
    assert first["status"] == "waiting"
    assert not log.exists()
    [call_id] = first["pending"]

    listed = _run([*cli, "pending", "--db", url, "--json"])
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)["pending"]
    assert (row["run_id"], row["call_id"], row["task_id"], row["tool"], row["arguments"]) == (
        "e2e",
        call_id,
        "refund",
        "refund",
        '{"order": "A1"}',
    )
    assert row["why"] == "Refund an order."  # the model said nothing: the tool's description
    table = _run([*cli, "pending", "e2e", "--db", url])
    assert f"e2e  {call_id}  task 'refund'  refund(" in table.stdout
    runs = _run([*cli, "runs", "--db", url, "--json"])
    assert [r["status"] for r in json.loads(runs.stdout)["runs"]] == ["waiting"]

    typo = _run([*cli, "approve", "e2e", call_id[:-1] + "x", "--db", url])
    assert typo.returncode == 2
    assert f"did you mean '{call_id}'" in typo.stderr
    assert "Traceback" not in typo.stderr
    unknown = _run([*cli, "approve", "e2f", call_id, "--db", url])
    assert unknown.returncode == 2
    assert "did you mean 'e2e'" in unknown.stderr
    approved = _run([*cli, "approve", "e2e", call_id, "--db", url])
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith(f"approved refund call {call_id} of run e2e")
    assert json.loads(_run([*cli, "pending", "--db", url, "--json"]).stdout) == {"pending": []}

    resumed = _run([sys.executable, str(script), url, str(log), "resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {
        "status": "succeeded",
        "output": "done: refunded A1",
        "pending": [],
    }
    assert log.read_text() == "A1\n"  # the tool ran once, in the third process


REFUNDS_MODULE = textwrap.dedent(
    '''
    import os


    def refund(order: str) -> str:
        """Refund an order."""
        with open(os.environ["REFUND_LOG"], "a") as out:
            out.write(order + "\\n")
        return "refunded " + order


    def lookup(order: str) -> str:
        """Look an order up."""
        return "order " + order + ": paid twice"
    '''
)


def test_a_workflow_waits_and_delegate_resume_finishes_it(tmp_path: Path) -> None:
    from _fake_openai_server import FakeOpenAIServer, completion

    (tmp_path / "refunds.py").write_text(REFUNDS_MODULE)
    log = tmp_path / "refunds.log"
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    cli = [sys.executable, "-m", "delegate"]
    env = {
        **{k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"},
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "REFUND_LOG": str(log),
    }

    def delegate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, *args, "--db", url], capture_output=True, text=True, timeout=120, env=env
        )

    with FakeOpenAIServer() as server:
        server.script(
            completion(
                "Order A1 was paid twice.",
                finish_reason="tool_calls",
                tool_calls=[
                    ("call_1", "lookup", {"order": "A1"}),
                    ("call_2", "refund", {"order": "A1"}),
                ],
            ),
            completion("Refunded A1."),
        )
        workflow = tmp_path / "refunds.yaml"
        workflow.write_text(
            textwrap.dedent(
                f"""\
                name: refunds
                agents:
                  clerk:
                    model: openai/llama-3.1-8b-local
                    base_url: "{server.base_url}"
                    tools: [refunds:lookup]
                    approve_tools: [refunds:refund]
                steps:
                  - {{id: refund, agent: clerk, prompt: "Refund order A1."}}
                """
            )
        )
        validated = subprocess.run(
            [*cli, "validate", str(workflow)], capture_output=True, text=True, env=env, timeout=60
        )
        assert validated.returncode == 0, validated.stderr

        ran = delegate("run", str(workflow), "--json")
        assert ran.returncode == 3, ran.stderr  # waiting for a human
        document = json.loads(ran.stdout)
        run_id = document["run_id"]
        assert document["status"] == "waiting", json.dumps(document)[:3000]
        assert document["tasks"]["refund"]["status"] == "waiting"
        assert [(p["task_id"], p["tool"]) for p in document["pending"]] == [("refund", "refund")]
        assert not log.exists()
        assert len(server.requests) == 1

        [row] = json.loads(delegate("pending", run_id, "--json").stdout)["pending"]
        assert (row["tool"], row["arguments"], row["why"]) == (
            "refund",
            '{"order": "A1"}',
            "Order A1 was paid twice.",
        )
        show = delegate("show", run_id)
        assert "waiting" in show.stdout
        assert delegate("approve", run_id, row["call_id"]).returncode == 0

        resumed = delegate("resume", run_id, "--json")
        assert resumed.returncode == 0, resumed.stderr
        finished = json.loads(resumed.stdout)
        assert finished["status"] == "succeeded"
        assert finished["output"] == "Refunded A1."
        assert log.read_text() == "A1\n"
        assert len(server.requests) == 2  # the paused round was not asked again
        assert server.requests[1].body["messages"][-2:] == [
            {"role": "tool", "tool_call_id": "call_1", "content": "order A1: paid twice"},
            {"role": "tool", "tool_call_id": "call_2", "content": "refunded A1"},
        ]


def test_approve_tools_in_a_workflow_are_checked_and_gate_their_tools(tmp_path: Path) -> None:
    from delegate import WorkflowError
    from delegate.workflows import load_workflow_text
    from delegate.workflows.runtime import compile_workflow

    (tmp_path / "refunds.py").write_text(REFUNDS_MODULE)
    head = "name: r\nagents:\n  clerk:\n    model: openai/gpt-4o-mini\n"
    step = "steps:\n  - {id: a, agent: clerk, prompt: go}\n"
    path = str(tmp_path / "w.yaml")
    with pytest.raises(WorkflowError) as caught:
        load_workflow_text(head + "    approve_tools: [refunds:refnd]\n" + step, path)
    assert [(p.line, p.col, p.message) for p in caught.value.problems] == [
        (
            5,
            21,
            "agent 'clerk': tool 'refunds:refnd': module 'refunds' "
            f"({tmp_path / 'refunds.py'}) defines no 'refnd' (did you mean 'refund'?)",
        )
    ]
    text = head + "    tools: [refunds:lookup, refunds:refund]\n"
    text += "    approve_tools: [refunds:refund]\n" + step
    compiled = compile_workflow(load_workflow_text(text, path), db=None, text=text)
    clerk = compiled.agents["clerk"]
    assert [(t.name, t.requires_approval) for t in clerk.tools] == [
        ("lookup", False),
        ("refund", True),
    ]


async def test_a_planned_run_waits_then_answers_once_resumed(tmp_path: Path) -> None:
    refunds = Refunds()
    clerk_model = FunctionModel(clerk_answers)
    plan = {
        "tasks": [
            {"id": "refund", "agent": "clerk", "instructions": PROMPT},
            {"id": "tally", "agent": "writer", "instructions": "Count today's orders."},
        ]
    }
    planner_model = FunctionModel(
        lambda r: json.dumps(plan) if r.output_name == "Plan" else "All handled."
    )
    writer, _ = _writer()
    async with Orchestrator(
        planner=Agent("planner", planner_model),
        workers=[_clerk(refunds, clerk_model), writer],
        memory=f"sqlite:///{tmp_path / 'r.db'}",
    ) as orch:
        first = await orch.run("Handle today's refunds.", run_id="p1")
        assert first.status == "waiting"
        assert first.output is None
        assert {k: t.status for k, t in first.tasks.items()} == {
            "refund": "waiting",
            "tally": "succeeded",
        }
        assert planner_model.calls == 1  # the plan; no answer while a task waits
        [call] = first.pending
        done = await orch.resume("p1", decisions={call.call_id: Approve()})
    assert done.status == "succeeded"
    assert done.output == "All handled."
    assert planner_model.calls == 2  # the answer, once; no replan
    assert refunds.done == ["A1"]
