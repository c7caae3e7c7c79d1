"""Tools from MCP servers, against real servers (tests/_mcp_servers.py): a stdio one started per
run, a streamable-HTTP one started per test; lifecycle, results, timeouts, secrets, YAML."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from delegate import Agent, Budget, Orchestrator, TaskGraph
from delegate.agents.mcp import MCPServerHTTP, MCPServerStdio, MCPTool
from delegate.agents.models import ModelRequest, ModelResponse
from delegate.errors import BadRequestError, ConfigError, MCPServerError
from delegate.testing import FunctionModel, tool_call

pytestmark = pytest.mark.anyio

SERVERS = str(Path(__file__).resolve().parent / "_mcp_servers.py")
TOKEN = "tok-9f8e7d6c5b4a3921"


def _stdio(tmp_path: Path, **options: Any) -> MCPServerStdio:
    env = {"MCP_STARTS_FILE": str(tmp_path / "starts"), "MCP_LISTS_FILE": str(tmp_path / "lists")}
    env.update(options.pop("env", {}))
    return MCPServerStdio(sys.executable, [SERVERS, "stdio"], env=env, name="tests", **options)


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _database_bytes(folder: Path) -> bytes:
    """Every byte of the SQLite store in `folder`, its WAL included."""
    return b"".join(p.read_bytes() for p in sorted(folder.glob("runs.db*")))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tool_results(request: ModelRequest) -> list[str]:
    return [str(m["content"]) for m in request.messages if m["role"] == "tool"]


def _calls_then_answer(*calls: ModelResponse) -> tuple[FunctionModel, list[ModelRequest]]:
    """A model that asks for `calls` (one per round), then answers with the tool results."""
    requests: list[ModelRequest] = []

    def answer(request: ModelRequest) -> ModelResponse | str:
        requests.append(request)
        done = len(_tool_results(request))
        return calls[done] if done < len(calls) else " | ".join(_tool_results(request))

    return FunctionModel(answer), requests


async def test_tool_results_text_json_and_errors_reach_the_model(tmp_path: Path) -> None:
    server = _stdio(tmp_path)
    model, requests = _calls_then_answer(
        tool_call("echo", text="hi"),
        tool_call("add", a=2, b=3),
        tool_call("fail", reason="no"),
        tool_call("add", a="x"),
        tool_call("echo"),
    )
    agent = Agent("w", model, tools=[server])
    result = await agent.run("go")  # outside a run: the agent opens the servers for this call

    assert [d.name for d in requests[0].tools] == ["add", "echo", "fail", "hang", "whoami"]
    add = requests[0].tools[0]
    assert add.description == "Add two integers."
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert add.parameters["required"] == ["a", "b"]
    results = _tool_results(requests[-1])
    assert results[:3] == [
        "echo: hi",
        "5",
        "Error: Error executing tool fail: refused: no",
    ]
    assert results[3].startswith("Error: Error executing tool add: ")  # the server validated
    assert "b\n  Field required" in results[3]
    assert results[4].startswith("Error: Error executing tool echo: ")  # text is missing
    assert result.output == " | ".join(results)
    [pid] = _lines(tmp_path / "starts")
    assert _lines(tmp_path / "lists") == [pid]  # listed once
    assert not _alive(int(pid))  # stopped when the call ended


def _five_tasks(agent: Agent) -> TaskGraph:
    graph = TaskGraph()
    for n in range(5):
        graph.add(f"t{n}", agent=agent, prompt=f"add {n}")
    return graph


def _adder() -> FunctionModel:
    def answer(request: ModelRequest) -> ModelResponse | str:
        results = _tool_results(request)
        if results:
            return results[0]
        n = int(str(request.messages[-1]["content"]).split()[-1])
        return tool_call("add", a=n, b=100)

    return FunctionModel(answer)


async def test_a_run_of_five_tasks_starts_the_server_once_and_stops_it(tmp_path: Path) -> None:
    server = _stdio(tmp_path)
    agent = Agent("w", _adder(), tools=[server])
    result = await Orchestrator(memory=None).execute(_five_tasks(agent))

    assert result.status == "succeeded"
    assert {k: t.output for k, t in result.tasks.items()} == {
        f"t{n}": str(n + 100) for n in range(5)
    }
    [pid] = _lines(tmp_path / "starts")  # once per run, not per task or call
    assert _lines(tmp_path / "lists") == [pid]
    assert not _alive(int(pid))

    again = await Orchestrator(memory=None).execute(_five_tasks(agent))
    assert again.status == "succeeded"
    assert len(_lines(tmp_path / "starts")) == 2  # a new run starts it again


async def test_a_server_held_open_serves_several_runs(tmp_path: Path) -> None:
    server = _stdio(tmp_path)
    agent = Agent("w", _adder(), tools=[server])
    async with server:
        [pid] = _lines(tmp_path / "starts")
        for _ in range(2):
            result = await Orchestrator(memory=None).execute(_five_tasks(agent))
            assert result.status == "succeeded"
        assert (await agent.run("add 7")).output == "107"  # the held server answered
        assert _lines(tmp_path / "starts") == [pid]
        assert _alive(int(pid))
    assert not _alive(int(pid))


async def test_a_resumed_run_starts_the_server_again(tmp_path: Path) -> None:
    server = _stdio(tmp_path)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    failing = {"t3"}

    def answer(request: ModelRequest) -> ModelResponse | str:
        prompt = str(request.messages[0]["content"])
        results = _tool_results(request)
        if results:
            if prompt == "add 3" and failing:
                failing.clear()
                raise BadRequestError("the fake refuses once", model="function")
            return results[0]
        return tool_call("add", a=int(prompt.split()[-1]), b=100)

    agent = Agent("w", FunctionModel(answer), tools=[server])
    first = await Orchestrator(workers=[agent], memory=url).execute(_five_tasks(agent), run_id="r")
    assert first.status == "partial"
    assert [k for k, t in first.tasks.items() if t.status != "succeeded"] == ["t3"]
    [pid] = _lines(tmp_path / "starts")
    assert not _alive(int(pid))

    resumed = await Orchestrator(workers=[agent], memory=url).resume("r")
    assert resumed.status == "succeeded"
    assert resumed.tasks["t3"].output == "103"
    starts = _lines(tmp_path / "starts")
    assert len(starts) == 2  # started again for the resumed run
    assert starts[0] == pid
    assert not _alive(int(starts[1]))


async def test_a_hanging_tool_is_cut_by_its_timeout_and_the_task_goes_on(tmp_path: Path) -> None:
    server = _stdio(tmp_path, timeout=2)
    model, requests = _calls_then_answer(tool_call("hang", seconds=60), tool_call("echo", text="x"))
    result = await Agent("w", model, tools=[server]).run("go")
    assert _tool_results(requests[-1]) == [
        "Error: tool 'hang' did not answer within 2 s (the timeout of MCP server 'tests'); "
        "try other arguments or answer without it",
        "echo: x",  # the server still answers after a call was cut
    ]
    assert result.output.endswith("echo: x")


async def test_the_run_deadline_cuts_a_tool_call(tmp_path: Path) -> None:
    server = _stdio(tmp_path, timeout=600)
    model, requests = _calls_then_answer(tool_call("hang", seconds=600))
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model, tools=[server]), prompt="go")
    result = await Orchestrator(memory=None).execute(graph, budget=Budget(seconds=5))
    assert result.status == "partial"
    assert (result.tasks["t"].status, result.tasks["t"].error) == (
        "cancelled",
        "the run's time budget ran out",
    )
    assert len(requests) == 1  # the tool call never came back: the deadline ended the task
    [pid] = _lines(tmp_path / "starts")
    assert not _alive(int(pid))


async def test_a_secret_in_env_reaches_no_event_log_or_stored_row(tmp_path: Path) -> None:
    server = _stdio(tmp_path, env={"MCP_TOKEN": TOKEN})
    model, requests = _calls_then_answer(tool_call("whoami"))
    agent = Agent("w", model, tools=[server])
    crashing = MCPServerStdio(sys.executable, [SERVERS, "crash"], env={"MCP_TOKEN": TOKEN})
    broken = Agent("b", FunctionModel(lambda r: "unused"), tools=[crashing])
    graph = TaskGraph()
    graph.add("ask", agent=agent, prompt="who?")
    graph.add("broken", agent=broken, prompt="hi")
    events: list[str] = []
    orch = Orchestrator(workers=[agent, broken], memory=f"sqlite:///{tmp_path / 'runs.db'}")
    orch.events.subscribe(lambda event: events.append(repr(event)))
    with capture_logs() as logs:
        result = await orch.execute(graph, run_id="secret")

    assert result.tasks["ask"].output == "token is ***"  # the model never saw it
    assert _tool_results(requests[-1]) == ["token is ***"]
    error = result.tasks["broken"].error or ""
    assert result.tasks["broken"].attempts == 1  # a server that cannot start is not retried
    assert error == (
        f"MCP server 'python' (command {sys.executable} {SERVERS} crash) could not be started: "
        "MCPError: Connection closed; check the command, its args and env (run it by hand to "
        "see); its stderr ended with:\nfatal: cannot load config (token ***)"
    )
    assert events
    assert logs
    assert not any(TOKEN in text for text in events)
    assert not any(TOKEN in repr(entry) for entry in logs)
    stored = _database_bytes(tmp_path)
    assert b"fatal: cannot load config" in stored
    assert TOKEN.encode() not in stored


async def test_a_server_that_fails_to_start_is_a_typed_error_with_its_stderr(
    tmp_path: Path,
) -> None:
    crashing = MCPServerStdio(
        sys.executable, [SERVERS, "crash"], env={"MCP_TOKEN": TOKEN}, name="broken"
    )
    agent = Agent("w", FunctionModel(lambda r: "unused"), tools=[crashing])
    with pytest.raises(MCPServerError) as caught:
        await agent.run("hi")
    assert caught.value.server == "broken"
    assert caught.value.stderr == "fatal: cannot load config (token ***)"
    message = str(caught.value)
    assert message.startswith(
        f"MCP server 'broken' (command {sys.executable} {SERVERS} crash) could not be started: "
    )
    assert message.endswith(
        "; check the command, its args and env (run it by hand to see); its stderr ended "
        "with:\nfatal: cannot load config (token ***)"
    )

    missing = MCPServerStdio(str(tmp_path / "no-such-server"), name="missing")
    with pytest.raises(MCPServerError, match=r"MCP server 'missing' .* could not be started"):
        await Agent("w", FunctionModel(lambda r: "unused"), tools=[missing]).run("hi")


async def test_tool_names_that_clash_name_both_and_a_prefix_fixes_it(tmp_path: Path) -> None:
    def echo(text: str) -> str:
        """A Python echo."""
        return text

    model = FunctionModel(lambda r: "done")
    with pytest.raises(ConfigError) as caught:
        await Agent("w", model, tools=[echo, _stdio(tmp_path)]).run("go")
    assert str(caught.value) == (
        "Agent 'w': the tool 'echo' of MCP server 'tests' has the name of the Python tool "
        "'echo'; give the server a prefix, e.g. prefix='tests_'"
    )
    other = MCPServerStdio(sys.executable, [SERVERS, "stdio"], name="other")
    with pytest.raises(
        ConfigError,
        match="the tool 'add' of MCP server 'other' has the name of "
        "the tool 'add' of MCP server 'tests'",
    ):
        await Agent("w", model, tools=[_stdio(tmp_path), other]).run("go")

    requests: list[ModelRequest] = []
    prefixed = _stdio(tmp_path, prefix="srv_", tools=["echo", "add"])
    spy = FunctionModel(lambda r: requests.append(r) or "done")
    assert (await Agent("w", spy, tools=[echo, prefixed]).run("go")).output == "done"
    assert [d.name for d in requests[0].tools] == ["echo", "srv_add", "srv_echo"]


async def test_an_allow_list_naming_a_missing_tool_says_which_exist(tmp_path: Path) -> None:
    server = _stdio(tmp_path, tools=["add", "ech"])
    with pytest.raises(ConfigError) as caught:
        await Agent("w", FunctionModel(lambda r: "x"), tools=[server]).run("go")
    assert str(caught.value) == (
        f"MCP server 'tests' (command {sys.executable} {SERVERS} stdio) has no tool 'ech' "
        "(did you mean 'echo'?); its tools are add, echo, fail, hang, whoami"
    )


async def test_requires_approval_marks_the_listed_tools(tmp_path: Path) -> None:
    server = _stdio(tmp_path, requires_approval=["hang"])
    async with server:
        tools = await _listed(server)
        assert {t.name: t.requires_approval for t in tools} == {
            "add": False,
            "echo": False,
            "fail": False,
            "hang": True,
            "whoami": False,
        }
        assert all(isinstance(t, MCPTool) and t.server is server for t in tools)
        view = server.with_tools(["add"])
        assert [t.name for t in await _listed(view)] == ["add"]
    assert len(_lines(tmp_path / "starts")) == 1  # the view shared the server's process


async def _listed(server: MCPServerStdio) -> list[Any]:
    from delegate.agents.mcp import mcp_tools

    return await mcp_tools([server], {}, agent="a")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "MCP_AUTH": f"Bearer {TOKEN}", "MCP_STARTS_FILE": str(tmp_path / "h")}
    process = subprocess.Popen(
        [sys.executable, SERVERS, "http", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):  # up to 30 s for the interpreter and uvicorn to come up
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError("the MCP HTTP test server exited") from None
                import time

                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_an_http_server_with_a_header_from_the_environment(
    http_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCS_AUTH", f"Bearer {TOKEN}")
    server = MCPServerHTTP(http_server, headers_env={"Authorization": "DOCS_AUTH"}, name="docs")
    model, requests = _calls_then_answer(tool_call("add", a=20, b=22), tool_call("whoami"))
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model, tools=[server]), prompt="go")
    with capture_logs() as logs:
        result = await Orchestrator(memory=None).execute(graph)
    assert result.status == "succeeded"
    assert _tool_results(requests[-1]) == ["42", "token is "]
    assert not any(TOKEN in repr(entry) for entry in logs)

    refused = MCPServerHTTP(http_server, headers={"Authorization": "Bearer wrong-token-123"})
    with pytest.raises(MCPServerError) as caught:
        await Agent("w", model, tools=[refused]).run("go")
    assert str(caught.value).startswith(f"MCP server '127.0.0.1' (URL {http_server}) could not be")
    assert "wrong-token-123" not in str(caught.value)

    monkeypatch.delenv("DOCS_AUTH")
    with pytest.raises(
        MCPServerError, match=r"header 'Authorization' is to be read from \$DOCS_AUTH"
    ):
        await Agent("w", model, tools=[server]).run("go")


# -- YAML ---------------------------------------------------------------------------------------


def _workflow(tmp_path: Path) -> str:
    return f"""\
name: mcp-demo
mcp_servers:
  calc:
    command: {json.dumps(sys.executable)}
    args: [{json.dumps(SERVERS)}, stdio]
    env: {{MCP_STARTS_FILE: {json.dumps(str(tmp_path / "starts"))}}}
    env_from: {{MCP_TOKEN: TEST_MCP_TOKEN}}
    timeout: 20
agents:
  scout: {{model: openai/gpt-4o-mini, mcp: {{calc: [add, whoami]}}}}
  editor: {{model: openai/gpt-4o-mini, mcp: [calc]}}
steps:
  - {{id: total, agent: scout, prompt: "add 1"}}
  - {{id: who, agent: editor, prompt: "who are you?"}}
"""


async def test_a_workflow_gives_agents_the_tools_of_its_mcp_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from delegate.workflows.loader import load_workflow_text
    from delegate.workflows.runtime import compile_workflow, run_workflow

    monkeypatch.setenv("TEST_MCP_TOKEN", TOKEN)
    text = _workflow(tmp_path)
    compiled = compile_workflow(
        load_workflow_text(text, str(tmp_path / "w.yaml")), simulate=True, text=text
    )
    scout, scout_requests = _calls_then_answer(tool_call("add", a=1, b=2))
    editor, editor_requests = _calls_then_answer(tool_call("whoami"))
    compiled.agents["scout"].model = scout
    compiled.agents["editor"].model = editor
    result = await run_workflow(compiled, {})

    assert result.status == "succeeded"
    assert (result.tasks["total"].output, result.tasks["who"].output) == ("3", "token is ***")
    assert [d.name for d in scout_requests[0].tools] == ["add", "whoami"]
    assert [d.name for d in editor_requests[0].tools] == ["add", "echo", "fail", "hang", "whoami"]
    [pid] = _lines(tmp_path / "starts")  # one process for both agents (and the view)
    assert not _alive(int(pid))


def test_delegate_run_simulate_starts_the_real_server_and_shows_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(_workflow(tmp_path))
    env = {**os.environ, "TEST_MCP_TOKEN": TOKEN, "DELEGATE_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "delegate", "run", str(path), "--simulate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(_lines(tmp_path / "starts")) == 1  # simulated models, a real MCP server
    assert TOKEN not in done.stdout + done.stderr
    assert "test server ready" not in done.stdout + done.stderr  # its stderr is kept apart
    stored = b"".join(p.read_bytes() for p in sorted((tmp_path / "home").glob("*.db*")))
    assert stored
    assert TOKEN.encode() not in stored


def _problems(text: str) -> list[tuple[int, int, str]]:
    from delegate.errors import WorkflowError
    from delegate.workflows.loader import load_workflow_text

    with pytest.raises(WorkflowError) as caught:
        load_workflow_text(text, "w.yaml")
    return [(p.line, p.col, p.message) for p in caught.value.problems]


def test_workflow_mistakes_in_mcp_keys_are_pointed_at() -> None:
    text = """\
name: bad
mcp_servers:
  github: {command: npx, args: [-y, server-github]}
  docs: {url: "http://127.0.0.1:8000/mcp", args: [x]}
  both: {command: npx, url: "http://127.0.0.1:1/mcp"}
  none: {timeout: 5}
  stdio: {command: uvx, headers_env: {Authorization: AUTH}}
agents:
  a: {model: openai/gpt-4o-mini, mcp: [github, gihtub]}
  b: {model: openai/gpt-4o-mini, mcp: {dcos: [search]}}
steps:
  - {id: s, agent: a, prompt: hi}
"""
    assert _problems(text) == [
        (
            4,
            44,
            "MCP server 'docs': args: goes with command: (a server run over stdio); a url: "
            "server takes headers_env:",
        ),
        (
            5,
            24,
            "MCP server 'both' has command: and url:; give command: for a server run over "
            "stdio, or url: for one reached over HTTP, not both",
        ),
        (
            6,
            9,
            "MCP server 'none' has neither command: nor url:; give command: (and args:) for a "
            "server run over stdio, or url: for one reached over HTTP",
        ),
        (
            7,
            25,
            "MCP server 'stdio': headers_env: goes with url: (a server reached over HTTP); give "
            "a command: server its secrets with env_from:",
        ),
        (
            9,
            48,
            "agent 'a': MCP server 'gihtub' is not defined under mcp_servers: (did you mean "
            "'github'?) (servers: 'github', 'docs', 'both', 'none', 'stdio'); define it there",
        ),
        (
            10,
            40,
            "agent 'b': MCP server 'dcos' is not defined under mcp_servers: (did you mean "
            "'docs'?) (servers: 'github', 'docs', 'both', 'none', 'stdio'); define it there",
        ),
    ]


def test_an_unknown_key_of_an_mcp_server_gets_a_did_you_mean() -> None:
    text = """\
name: bad
mcp_servers:
  github: {command: npx, tool: [search]}
  other-one: {url: "http://127.0.0.1:8000/mcp", header_env: {X-Key: KEY}}
agents:
  a: {model: openai/gpt-4o-mini, mcp: [github]}
steps:
  - {id: s, agent: a, prompt: hi}
"""
    assert _problems(text) == [
        (3, 26, "unknown key 'tool' in MCP server 'github'; did you mean 'tools'?"),
        (4, 49, "unknown key 'header_env' in MCP server 'other-one'; did you mean 'headers_env'?"),
    ]


async def test_an_mcp_tool_that_requires_approval_pauses_the_run_until_resumed(
    tmp_path: Path,
) -> None:
    from delegate import Approve

    server = _stdio(tmp_path, requires_approval=["echo"])
    model, requests = _calls_then_answer(tool_call("echo", text="ship it"))
    agent = Agent("w", model, tools=[server])
    graph = TaskGraph()
    graph.add("t", agent=agent, prompt="go")
    orch = Orchestrator(workers=[agent], memory=f"sqlite:///{tmp_path / 'runs.db'}")
    result = await orch.execute(graph, run_id="gated")
    assert result.status == "waiting"
    [call] = result.pending
    assert (call.tool, call.arguments) == ("echo", '{"text": "ship it"}')
    [pid] = _lines(tmp_path / "starts")
    assert not _alive(int(pid))  # the waiting run ended: its server stopped

    resumed = await orch.resume("gated", decisions={call.call_id: Approve()})
    assert resumed.status == "succeeded"
    assert resumed.tasks["t"].output == "echo: ship it"  # run by the restarted server
    assert _tool_results(requests[-1]) == ["echo: ship it"]
    assert len(_lines(tmp_path / "starts")) == 2


def test_the_planners_synthesizer_keeps_the_agents_mcp_servers(tmp_path: Path) -> None:
    from pydantic import BaseModel

    from delegate.orchestrator.planned import synthesizer_for

    class Answer(BaseModel):
        text: str

    server = _stdio(tmp_path)
    planner = Agent("planner", FunctionModel(lambda request: "ok"), tools=[server])

    for planner_writes in (True, False):
        synthesizer = synthesizer_for(planner, Answer, planner=planner_writes)
        assert synthesizer is not planner
        assert synthesizer.mcp_servers == (server,)
