"""Endpoints: models on servers of one's own, in Python, YAML and the CLI, against real local
OpenAI-compatible servers (`tests/_fake_openai_server.py`): keys and headers from the
environment (sent, never shown), keyless servers, two servers on one prefix, prices declared on
the endpoint, and what a refused connection says.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _fake_openai_server import FakeOpenAIServer, Reply, completion, unauthorized_echo
from click.testing import CliRunner

from delegate import (
    Agent,
    AuthenticationError,
    Budget,
    ConfigError,
    Endpoint,
    LiteLLMModel,
    ModelRequest,
    Orchestrator,
    Price,
    PriceUnknownError,
    ProviderUnavailableError,
    RetryPolicy,
    TaskGraph,
    WorkflowError,
)
from delegate.agents.endpoints import KEYLESS_API_KEY, connection_error
from delegate.cli import main
from delegate.cli.run import check_credentials
from delegate.workflows import load_workflow, load_workflow_text
from delegate.workflows.runtime import compile_workflow

pytestmark = pytest.mark.anyio

HELLO = ModelRequest([{"role": "user", "content": "Hello?"}])
LOCAL_MODEL = "openai/llama-3.1-8b-local"  # a name litellm does not know or price
SERVER_KEY = "srv-0123456789-abcdef"  # in MY_SERVER_KEY: a name _secrets does not guess
ORG = "org-77aa88bb99cc"  # a header value, from ORG_ID


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def other() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def no_provider_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def stored_bytes(folder: Path) -> bytes:
    """Everything a SQLite store in `folder` wrote (the database, its WAL)."""
    return b"".join(path.read_bytes() for path in sorted(folder.glob("runs.db*")))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- Endpoint and LiteLLMModel ------------------------------------------------------------------


async def test_a_keyless_endpoint_needs_no_key(
    server: FakeOpenAIServer, no_provider_key: None
) -> None:
    model = LiteLLMModel(LOCAL_MODEL, endpoint=Endpoint(server.base_url))

    answer = await model.request(HELLO)

    assert answer.text == "Hello!"
    assert [request.path for request in server.requests] == ["/v1/chat/completions"]
    assert server.requests[0].headers["authorization"] == f"Bearer {KEYLESS_API_KEY}"
    assert server.requests[0].body["model"] == "llama-3.1-8b-local"


async def test_a_keyless_endpoint_never_gets_the_providers_key_from_the_environment(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-real-provider-key-42")
    model = LiteLLMModel(LOCAL_MODEL, endpoint=Endpoint(server.base_url))

    await model.request(HELLO)

    assert server.requests[0].headers["authorization"] == f"Bearer {KEYLESS_API_KEY}"


async def test_two_endpoints_on_one_prefix_reach_their_own_servers(
    server: FakeOpenAIServer, other: FakeOpenAIServer, no_provider_key: None
) -> None:
    server.default = completion("from the first")
    other.default = completion("from the second")
    first = Agent("first", LiteLLMModel(LOCAL_MODEL, endpoint=Endpoint(server.base_url)))
    second = Agent("second", LiteLLMModel(LOCAL_MODEL, endpoint=Endpoint(other.base_url)))
    graph = TaskGraph()
    graph.add("a", agent=first, prompt="Task A.")
    graph.add("b", agent=second, prompt="Task B.")

    result = await Orchestrator().execute(graph)

    assert result.status == "succeeded"
    assert (result["a"], result["b"]) == ("from the first", "from the second")
    assert [r.body["messages"][-1]["content"] for r in server.requests] == ["Task A."]
    assert [r.body["messages"][-1]["content"] for r in other.requests] == ["Task B."]


async def test_the_call_cache_keeps_two_servers_of_one_model_name_apart(
    server: FakeOpenAIServer, other: FakeOpenAIServer, no_provider_key: None, tmp_path: Path
) -> None:
    server.default = completion("from the first")
    other.default = completion("from the second")
    first = Agent("first", LiteLLMModel(LOCAL_MODEL, endpoint=Endpoint(server.base_url)))
    second = Agent("second", LiteLLMModel(LOCAL_MODEL, endpoint=Endpoint(other.base_url)))
    graph = TaskGraph()
    graph.add("a", agent=first, prompt="The same prompt.")
    graph.add("b", agent=second, prompt="The same prompt.")
    again = TaskGraph()
    again.add("a", agent=first, prompt="The same prompt.")
    again.add("b", agent=second, prompt="The same prompt.")

    async with Orchestrator(memory=f"sqlite:///{tmp_path / 'runs.db'}", cache=True) as orch:
        result = await orch.execute(graph)
        cached = await orch.execute(again)

    # Same model name, messages and settings, but two servers: neither answers for the other,
    # and the second run is answered from the cache, server by server.
    assert (result["a"], result["b"]) == ("from the first", "from the second")
    assert (cached["a"], cached["b"]) == ("from the first", "from the second")
    assert (len(server.requests), len(other.requests)) == (1, 1)
    assert cached.usage.cache_hits == 2


async def test_the_key_variable_is_sent_as_the_bearer_key_and_never_shown(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_SERVER_KEY", SERVER_KEY)
    model = LiteLLMModel(
        LOCAL_MODEL, endpoint=Endpoint(server.base_url, api_key_env="MY_SERVER_KEY")
    )
    server.script(unauthorized_echo())  # the server echoes the key it got in its error

    with pytest.raises(AuthenticationError) as refused:
        await model.request(HELLO)
    answer = await model.request(HELLO)

    assert answer.text == "Hello!"
    assert [r.headers["authorization"] for r in server.requests] == [f"Bearer {SERVER_KEY}"] * 2
    assert SERVER_KEY not in str(refused.value)
    assert "Incorrect API key provided: ***." in str(refused.value)
    assert SERVER_KEY not in repr(model)
    assert "MY_SERVER_KEY" in repr(model)


async def test_an_unset_key_variable_is_a_config_error_naming_it_and_nothing_is_sent(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MY_SERVER_KEY", raising=False)
    endpoint = Endpoint(server.base_url, api_key_env="MY_SERVER_KEY", name="local")
    model = LiteLLMModel(LOCAL_MODEL, endpoint=endpoint)  # built without it: read per call

    with pytest.raises(ConfigError) as missing:
        await model.request(HELLO)

    assert str(missing.value) == (
        "endpoint 'local': the environment variable MY_SERVER_KEY (its api_key_env) is not "
        "set; export MY_SERVER_KEY=..., or remove its api_key_env if the server wants none"
    )
    assert server.requests == []
    assert endpoint.missing_env() == ["MY_SERVER_KEY"]


async def test_headers_from_the_environment_reach_the_server_and_never_the_run_records(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORG_ID", ORG)
    monkeypatch.setenv("MY_SERVER_KEY", SERVER_KEY)
    # The server echoes both in its error, as misbehaving proxies do.
    server.script(
        Reply(
            status=400,
            body={"error": {"message": f"org {ORG} may not use key {SERVER_KEY}", "type": "x"}},
        )
    )
    endpoint = Endpoint(
        server.base_url, api_key_env="MY_SERVER_KEY", headers_env={"X-Org-Id": "ORG_ID"}
    )
    agent = Agent("w", LiteLLMModel(LOCAL_MODEL, endpoint=endpoint))
    graph = TaskGraph()
    graph.add("one", agent=agent, prompt="One.")
    graph.add("two", agent=agent, prompt="Two.")
    events: list[Any] = []
    db = tmp_path / "runs.db"

    async with Orchestrator(memory=f"sqlite:///{db}", on_event=events.append) as orch:
        result = await orch.execute(graph)

    assert [r.headers["x-org-id"] for r in server.requests] == [ORG, ORG]
    # One request was refused (whichever came first), the other answered.
    assert sorted(task.status for task in result.tasks.values()) == ["failed", "succeeded"]
    (error,) = [task.error for task in result.tasks.values() if task.error]
    assert "org *** may not use key ***" in error
    stored = stored_bytes(tmp_path)
    shown = repr(events) + repr(result)
    for secret in (ORG, SERVER_KEY):
        assert secret not in shown
        assert secret.encode() not in stored


def test_an_endpoint_is_checked_when_built() -> None:
    with pytest.raises(ConfigError, match=r"^endpoint 'x': base_url 'ftp://h/v1' must be an "):
        Endpoint("ftp://h/v1", name="x")
    with pytest.raises(ConfigError, match=r"api_key_env must be the name of an environment"):
        Endpoint("http://127.0.0.1:1/v1", api_key_env="sk-live-key")
    with pytest.raises(ConfigError, match=r"headers_env key 'X Org' is not an HTTP header"):
        Endpoint("http://127.0.0.1:1/v1", headers_env={"X Org": "ORG_ID"})
    with pytest.raises(ConfigError, match=r"price must be \(input_usd_per_million, output"):
        Endpoint("http://127.0.0.1:1/v1", price=(-1, 0))
    with pytest.raises(ConfigError, match=r"api_base and endpoint= both say where to send"):
        LiteLLMModel(LOCAL_MODEL, endpoint=Endpoint("http://h/v1"), api_base="http://h/v1")
    assert Endpoint("http://h/v1", price=(0, 0)).price == Price(0.0, 0.0)
    assert Endpoint("http://h/v1") == Endpoint("http://h/v1")
    assert len({Endpoint("http://h/v1", headers_env={"X-A": "A"}), Endpoint("http://h/v1")}) == 2


def test_an_endpoint_gives_litellm_its_url_key_version_and_headers_read_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = Endpoint(
        "https://my-azure.example/openai",
        api_key_env="MY_SERVER_KEY",
        api_version="2024-10-21",
        headers_env={"X-Org-Id": "ORG_ID"},
    )
    monkeypatch.setenv("MY_SERVER_KEY", SERVER_KEY)
    monkeypatch.setenv("ORG_ID", ORG)
    assert endpoint.arguments() == {
        "api_base": "https://my-azure.example/openai",
        "api_key": SERVER_KEY,
        "api_version": "2024-10-21",
        "extra_headers": {"X-Org-Id": ORG},
    }
    monkeypatch.setenv("MY_SERVER_KEY", "srv-rotated-key-9876")
    assert endpoint.arguments()["api_key"] == "srv-rotated-key-9876"
    monkeypatch.delenv("ORG_ID")
    assert endpoint.missing_env() == ["ORG_ID"]
    with pytest.raises(ConfigError, match=r"ORG_ID \(its header X-Org-Id\) is not set"):
        endpoint.arguments()


# -- connection failures -----------------------------------------------------------------------


async def test_a_refused_connection_names_the_url_and_what_to_check(no_provider_key: None) -> None:
    port = closed_port()
    model = LiteLLMModel(LOCAL_MODEL, endpoint=Endpoint(f"http://127.0.0.1:{port}/v1"))

    with pytest.raises(ProviderUnavailableError) as unreachable:
        await model.request(HELLO)

    error = unreachable.value
    assert str(error) == (
        f"{LOCAL_MODEL}: cannot reach http://127.0.0.1:{port}/v1: the connection was refused; "
        "is the server running, and listening on that host and port? — try "
        f"`curl http://127.0.0.1:{port}/v1/models`"
    )
    assert (error.retryable, error.delivery) == (True, "not_sent")
    assert error.__cause__ is not None  # litellm's own text, kept as the cause only


async def test_a_refused_connection_is_retried_as_transient_and_costs_nothing(
    no_provider_key: None,
) -> None:
    port = closed_port()
    model = LiteLLMModel(LOCAL_MODEL, endpoint=Endpoint(f"http://127.0.0.1:{port}/v1"))
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model), prompt="Hi.")
    retry = RetryPolicy(max_retries=2, base_delay=0, max_delay=0)

    result = await Orchestrator(retry=retry).execute(graph)

    task = result.tasks["t"]
    assert (task.status, task.attempts) == ("failed", 3)
    assert f"cannot reach http://127.0.0.1:{port}/v1: the connection was refused" in (
        task.error or ""
    )
    assert result.usage.cost_usd == 0


def test_a_connection_failure_shows_the_url_without_its_credentials() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connect call failed")
        except ConnectionRefusedError as refused:
            raise httpx.ConnectError("All connection attempts failed") from refused
    except httpx.ConnectError as exc:
        error = connection_error(
            exc, model="m", base_url="http://admin:hunter2hunter2@10.0.0.5:8000/v1?key=abc123xyz"
        )
    assert error is not None
    assert "hunter2hunter2" not in str(error)
    assert "abc123xyz" not in str(error)
    assert str(error).startswith("m: cannot reach http://***@10.0.0.5:8000/v1: the connection ")
    assert connection_error(ValueError("no"), model="m", base_url=None) is None


@pytest.mark.parametrize(
    ("inner", "reason"),
    [
        (socket.gaierror(-2, "Name or service not known"), "its host name does not resolve"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "the TLS handshake failed"),
        (httpx.ConnectTimeout("timed out"), "no connection was made within the timeout"),
    ],
    ids=["dns", "tls", "connect-timeout"],
)
def test_each_kind_of_connection_failure_says_what_to_check(
    inner: BaseException, reason: str
) -> None:
    try:
        try:
            raise inner
        except BaseException as cause:
            raise httpx.ConnectError("failed") from cause
    except httpx.ConnectError as exc:
        error = connection_error(exc, model="m", base_url="https://llm.internal:8443/v1")
    assert error is not None
    assert str(error).startswith(f"m: cannot reach https://llm.internal:8443/v1: {reason}; ")
    assert str(error).endswith(" — try `curl https://llm.internal:8443/v1/models`")
    assert (error.retryable, error.delivery) == (True, "not_sent")


# -- prices ------------------------------------------------------------------------------------


async def test_a_usd_budget_refuses_a_model_with_no_price(server: FakeOpenAIServer) -> None:
    graph = TaskGraph()
    model = LiteLLMModel(LOCAL_MODEL, endpoint=Endpoint(server.base_url))
    graph.add("t", agent=Agent("w", model), prompt="Hi.")

    with pytest.raises(PriceUnknownError) as refused:
        await Orchestrator().execute(graph, budget=Budget(usd=1.0))

    assert refused.value.model == LOCAL_MODEL
    assert server.requests == []


@pytest.mark.parametrize(
    ("endpoint_price", "model_price", "charged"),
    [
        ((0, 0), None, (0.0, 0.0)),
        ((2.0, 8.0), None, (2.0, 8.0)),
        ((2.0, 8.0), (1.0, 3.0), (1.0, 3.0)),
    ],
    ids=["free", "endpoint", "model-over-endpoint"],
)
async def test_the_endpoints_price_is_what_a_run_charges(
    server: FakeOpenAIServer,
    endpoint_price: tuple[float, float],
    model_price: tuple[float, float] | None,
    charged: tuple[float, float],
) -> None:
    server.default = completion("Hi.", prompt_tokens=1000, completion_tokens=500)
    endpoint = Endpoint(server.base_url, price=endpoint_price)
    model = LiteLLMModel(LOCAL_MODEL, endpoint=endpoint, price=model_price)
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model, max_output_tokens=500), prompt="Hi.")

    result = await Orchestrator().execute(graph, budget=Budget(usd=0.5))

    assert result.status == "succeeded"
    assert model.price == Price(*charged)
    assert result.usage.cost_usd == pytest.approx((1000 * charged[0] + 500 * charged[1]) / 1e6)


# -- YAML --------------------------------------------------------------------------------------

HEAD = """\
name: local
endpoints:
  local:
    base_url: "http://127.0.0.1:8000/v1"
    price: [0, 0]
agents:
"""
STEP = """\
steps:
  - {id: s, agent: w, prompt: "Hi."}
"""


def problems(text: str) -> list[tuple[int, int, str]]:
    with pytest.raises(WorkflowError) as caught:
        load_workflow_text(textwrap.dedent(text), "w.yaml")
    return [(p.line, p.col, p.message) for p in caught.value.problems]


def test_an_unknown_endpoint_is_named_with_a_suggestion_at_its_place() -> None:
    assert problems(HEAD + "  w: {model: openai/llama3, endpoint: locl}\n" + STEP) == [
        (
            7,
            39,
            "agent 'w': endpoint 'locl' is not an endpoint of this workflow (did you mean "
            "'local'?) (endpoints: 'local'); define it under endpoints:",
        )
    ]


def test_an_endpoint_and_an_inline_server_together_are_refused() -> None:
    text = HEAD + "  w:\n    model: openai/llama3\n    endpoint: local\n    base_url: http://h/v1\n"
    assert problems(text + STEP) == [
        (
            10,
            5,
            "agent 'w' has endpoint: and base_url:; give the server once — under endpoints: (and "
            "keep endpoint: local), or inline (and drop endpoint:)",
        )
    ]


def test_bad_urls_and_key_names_are_reported_at_their_place_without_the_value() -> None:
    text = """\
        name: local
        endpoints:
          local: {base_url: "localhost:8000", api_key_env: "sk-proj-abc-123"}
        agents:
          w: {model: openai/llama3, base_url: "http:///v1"}
        steps:
          - {id: s, agent: w, prompt: "Hi."}
        """
    found = problems(text)
    assert found == [
        (
            3,
            21,
            "endpoint 'local': base_url 'localhost:8000' must be an http:// or https:// URL "
            "with a host, such as 'http://127.0.0.1:8000/v1'",
        ),
        (
            3,
            52,
            "endpoint 'local': api_key_env must be the name of an environment variable (letters, "
            "digits and '_', e.g. LOCAL_LLM_KEY), not the value",
        ),
        (
            5,
            39,
            "agent 'w': base_url 'http:///v1' must be an http:// or https:// URL with a host, "
            "such as 'http://127.0.0.1:8000/v1'",
        ),
    ]
    assert "sk-proj" not in repr(found)


def test_an_unknown_key_in_an_endpoint_gets_a_suggestion() -> None:
    text = (
        HEAD.replace("price: [0, 0]", "prise: [0, 0]") + "  w: {model: openai/x, endpoint: local}\n"
    )
    assert problems(text + STEP) == [
        (5, 5, "unknown key 'prise' in endpoint 'local'; did you mean 'price'?")
    ]


def test_a_model_on_an_endpoint_may_be_any_name_and_takes_the_endpoints_price() -> None:
    loaded = load_workflow_text(HEAD + f"  w: {{model: {LOCAL_MODEL}, endpoint: local}}\n" + STEP)
    compiled = compile_workflow(loaded, db=":memory:", text="")
    model = compiled.agents["w"].model
    assert isinstance(model, LiteLLMModel)
    assert model.endpoint == Endpoint("http://127.0.0.1:8000/v1", price=(0, 0), name="local")
    assert model.price == Price(0.0, 0.0)
    assert loaded.warnings == ()
    # Without the endpoint the same name is a typo to litellm.
    assert problems(f"name: x\nagents:\n  w: {{model: {LOCAL_MODEL}}}\n" + STEP)[0][:2] == (3, 14)


def test_a_usd_budget_with_an_unpriced_endpoint_model_is_refused_with_the_remedy() -> None:
    text = (
        HEAD.replace("    price: [0, 0]\n", "")
        + f"  w: {{model: {LOCAL_MODEL}, endpoint: local}}\n"
    )
    found = problems("budget: {usd: 1}\n" + text + STEP)
    assert found == [
        (
            7,
            14,
            f"agent 'w': model '{LOCAL_MODEL}' has no known price, so its calls cannot be "
            "checked against the workflow's budget (an unknown price is never taken as free); "
            "give endpoint 'local' a price (price: [0, 0] for a self-hosted model you do not pay "
            f"per token), or give its price: prices: {{{LOCAL_MODEL}: [input_usd_per_million, "
            "output_usd_per_million]}",
        )
    ]


# -- the CLI -----------------------------------------------------------------------------------


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), prog_name="delegate")


def test_validate_warns_of_models_with_no_price_and_exits_0(tmp_path: Path) -> None:
    file = tmp_path / "w.yaml"
    file.write_text(
        HEAD
        + f"  w: {{model: {LOCAL_MODEL}, endpoint: local}}\n"
        + "  v: {model: ollama/llama3}\n"
        + f"  u: {{model: {LOCAL_MODEL}, base_url: 'http://127.0.0.1:9/v1', price: [0.1, 0.2]}}\n"
        + STEP
    )

    result = invoke("validate", str(file))

    assert result.exit_code == 0
    assert result.stdout == f"{file}: ok (1 step, 3 agents)\n"
    assert result.stderr == (
        f"{file}:8:14: warning: agent 'v': model 'ollama/llama3' has no price, so its spend is "
        "not counted in dollars and no usd budget can cover it; give its price: prices: "
        "{ollama/llama3: [input_usd_per_million, output_usd_per_million]}\n"
    )


def test_validate_of_a_usd_budget_over_an_unpriced_model_exits_2(tmp_path: Path) -> None:
    file = tmp_path / "w.yaml"
    file.write_text("budget: {usd: 1}\n" + HEAD + "  w: {model: ollama/llama3}\n" + STEP)

    result = invoke("validate", str(file))

    assert result.exit_code == 2
    assert f"{file}:8:14: agent 'w': model 'ollama/llama3' has no known price" in result.stderr
    assert "Traceback" not in result.output


def test_credentials_are_asked_only_for_what_the_endpoints_need(
    monkeypatch: pytest.MonkeyPatch, no_provider_key: None
) -> None:
    monkeypatch.delenv("MY_SERVER_KEY", raising=False)
    text = (
        HEAD
        + "  paid:\n    base_url: http://127.0.0.1:8001/v1\n    api_key_env: MY_SERVER_KEY\n"
        + f"agents:\n  w: {{model: {LOCAL_MODEL}, endpoint: local}}\n"
        + f"  k: {{model: {LOCAL_MODEL}, endpoint: paid, price: [0, 0]}}\n"
    ).replace("agents:\n  paid", "  paid", 1)
    compiled = compile_workflow(load_workflow_text(text + STEP), db=":memory:", text="")
    keyless = compiled.agents["w"].model

    check_credentials([keyless])  # no OPENAI_API_KEY asked for
    with pytest.raises(ConfigError) as missing:
        check_credentials(compiled.called_models())

    assert str(missing.value).startswith(
        f"model {LOCAL_MODEL} needs MY_SERVER_KEY, which is not set; export it"
    )
    monkeypatch.setenv("MY_SERVER_KEY", SERVER_KEY)
    check_credentials(compiled.called_models())


def test_delegate_run_on_an_endpoint_with_a_missing_key_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MY_SERVER_KEY", raising=False)
    file = tmp_path / "w.yaml"
    file.write_text(
        HEAD.replace("price: [0, 0]", "price: [0, 0]\n    api_key_env: MY_SERVER_KEY")
        + f"  w: {{model: {LOCAL_MODEL}, endpoint: local}}\n"
        + STEP
    )

    result = invoke("run", str(file), "--db", f"sqlite:///{tmp_path / 'runs.db'}")

    assert result.exit_code == 2
    assert f"model {LOCAL_MODEL} needs MY_SERVER_KEY, which is not set" in result.stderr
    assert "Traceback" not in result.output


def test_a_workflow_runs_end_to_end_on_its_endpoints_through_delegate_run(
    server: FakeOpenAIServer, other: FakeOpenAIServer, tmp_path: Path
) -> None:
    server.default = completion("Facts about tea.", prompt_tokens=1000, completion_tokens=200)
    other.default = completion("A brief on tea.", prompt_tokens=2000, completion_tokens=100)
    file = tmp_path / "tea.yaml"
    file.write_text(
        textwrap.dedent(
            f"""\
            name: tea
            budget: {{usd: 0.5}}
            endpoints:
              vllm:
                base_url: "{server.base_url}"
                headers_env: {{X-Org-Id: ORG_ID}}
                price: [0, 0]
              gateway:
                base_url: "{other.base_url}"
                api_key_env: MY_SERVER_KEY
                price: [3, 15]
            agents:
              scout: {{model: {LOCAL_MODEL}, endpoint: vllm}}
              editor: {{model: openai/qwen-72b, endpoint: gateway}}
            steps:
              - {{id: facts, agent: scout, prompt: "Facts about tea."}}
              - {{id: brief, agent: editor, prompt: "Brief: {{{{ steps.facts.output }}}}"}}
            """
        )
    )
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    env |= {"ORG_ID": ORG, "MY_SERVER_KEY": SERVER_KEY}
    db = tmp_path / "runs.db"
    command = [sys.executable, "-m", "delegate", "run", str(file), "--json"]

    done = subprocess.run(
        [*command, "--db", f"sqlite:///{db}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "succeeded"
    assert document["output"] == "A brief on tea."
    assert [r.headers["x-org-id"] for r in server.requests] == [ORG]
    assert [r.headers["authorization"] for r in server.requests] == [f"Bearer {KEYLESS_API_KEY}"]
    assert [r.headers["authorization"] for r in other.requests] == [f"Bearer {SERVER_KEY}"]
    assert other.requests[0].body["messages"][-1]["content"] == "Brief: Facts about tea."
    assert document["usage"]["cost_usd"] == pytest.approx((2000 * 3 + 100 * 15) / 1e6)
    stored = stored_bytes(tmp_path)
    for secret in (ORG, SERVER_KEY):
        assert secret not in done.stdout + done.stderr
        assert secret.encode() not in stored


# -- the recipes (examples/own_models) ---------------------------------------------------------

RECIPES = Path(__file__).resolve().parent.parent / "examples" / "own_models"


@pytest.mark.parametrize("name", ["ollama", "vllm", "lm_studio", "llama_cpp"])
def test_each_recipe_file_is_valid_priced_and_on_its_server(name: str) -> None:
    result = invoke("validate", str(RECIPES / f"{name}.yaml"))

    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""  # every model priced: no warning
    loaded = load_workflow(RECIPES / f"{name}.yaml")
    compiled = compile_workflow(loaded, db=":memory:")
    own = [m for m in compiled.called_models() if isinstance(m, LiteLLMModel) and m.endpoint]
    assert own
    assert all(m.price == Price(0.0, 0.0) for m in own)


@pytest.mark.parametrize("server_name", ["vllm", "lm_studio", "llama_cpp"])
def test_the_python_recipe_reaches_an_openai_compatible_server(
    server: FakeOpenAIServer, server_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_API_KEY", SERVER_KEY)
    monkeypatch.syspath_prepend(str(RECIPES))
    recipes = importlib.import_module("own_models")

    model = recipes.model(server_name, base_url=server.base_url)
    answer = Agent("local", model).run_sync("Hi.")

    assert answer.output == "Hello!"
    assert server.requests[0].path == "/v1/chat/completions"
    expected = SERVER_KEY if server_name == "vllm" else KEYLESS_API_KEY
    assert server.requests[0].headers["authorization"] == f"Bearer {expected}"
