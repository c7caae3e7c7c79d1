"""No credential is ever shown or stored (`delegate._secrets` and every sink it guards).

The end-to-end tests run against local servers that echo the API key back in their 401, as some
proxies and local servers do, in the OpenAI and the Anthropic wire formats; the key comes from
the environment, as the CLI and YAML workflows get it. The canary does not look like a key
(no `sk-` prefix): only delegate's knowledge of it can mask it, not a pattern.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner

from delegate import Agent, Orchestrator, TaskGraph, _log, _secrets
from delegate.agents import models as models_module
from delegate.agents.models import LiteLLMModel, ModelRequest
from delegate.cli import main
from delegate.errors import AuthenticationError
from delegate.memory.records import EventRecord, RunRecord, TaskRecord
from delegate.memory.store import Store
from delegate.orchestrator.events import TaskFailed
from tests._fake_openai_server import FakeOpenAIServer, unauthorized

pytestmark = pytest.mark.anyio

CANARY = "dk-canary-7f3a9c1e5b2d4680"  # only ever in the environment: never registered
KNOWN = "dk-known-0a1b2c3d4e5f6789"  # registered by the unit tests
HELLO = ModelRequest([{"role": "user", "content": "Hello?"}])


def _chain_text(error: BaseException) -> str:
    """Everything an exception chain can show: each message, repr, args and traceback."""
    parts = ["".join(traceback.format_exception(error))]
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args), repr(vars(current))]
        pending += [current.__cause__, current.__context__]
    return "\n".join(parts)


# -- the registry and the masking ---------------------------------------------------------------


def test_values_shorter_than_8_characters_are_never_masked() -> None:
    _secrets.register("k", "1234567")
    assert _log.redact_text("Traceback 1234567", ["k", "Traceba"]) == "Traceback 1234567"
    assert _secrets.redact("Traceback (most recent call last): k") == (
        "Traceback (most recent call last): k"
    )
    assert "k" not in _secrets.known()
    assert "1234567" not in _secrets.known()


def test_a_value_is_masked_only_as_a_whole_token() -> None:
    _secrets.register("whole-token-a1b2c3")
    assert _secrets.redact("key whole-token-a1b2c3, again:whole-token-a1b2c3.") == (
        "key ***, again:***."
    )
    assert _secrets.redact("_whole-token-a1b2c3_") == "_***_"
    inside = "xwhole-token-a1b2c3 whole-token-a1b2c3z 9whole-token-a1b2c3"
    assert _secrets.redact(inside) == inside


def test_the_longest_value_is_masked_first() -> None:
    _secrets.register("prefix-key-123", "prefix-key-123-and-more")
    assert _secrets.redact("a prefix-key-123-and-more b prefix-key-123") == "a *** b ***"


def test_the_json_escaped_and_url_encoded_forms_are_masked_too() -> None:
    secret = 'quo"te/slash-9876'
    _secrets.register(secret)
    document = json.dumps({"error": f"bad key {secret}"})
    assert _secrets.redact(document) == '{"error": "bad key ***"}'
    assert _secrets.redact("https://x.test/?k=quo%22te%2Fslash-9876") == "https://x.test/?k=***"


def test_stored_json_stays_valid_when_a_key_matches_outside_a_string() -> None:
    _secrets.register("20240601777")
    text = json.dumps({"n": 20240601777, "s": "id 20240601777"})
    assert json.loads(_secrets.redact_json(text)) == {"n": 20240601777, "s": "id ***"}


@pytest.mark.parametrize(
    "name",
    [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "AZURE_API_KEY",
        "AZURE_AD_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "GROQ_API_KEY",
        "MISTRAL_API_KEY",
        "WATSONX_APIKEY",
        "HF_TOKEN",
        "ANTHROPIC_AUTH_TOKEN",
        "AZURE_CLIENT_SECRET",
        "LITELLM_MASTER_KEY",
        "REDIS_PASSWORD",
    ],
)
def test_provider_credentials_in_the_environment_are_masked(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = f"env-{name.lower()}-0123456789"
    _secrets.redact("warm the cache first")
    monkeypatch.setenv(name, value)  # set after delegate has read the environment once
    assert _secrets.redact(f"{name}={value}") == f"{name}=***"
    monkeypatch.delenv(name)
    assert _secrets.redact(f"{name}={value}") == f"{name}={value}"


@pytest.mark.parametrize(
    "name",
    [
        "OPENAI_API_BASE",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_BASE",
        "AWS_REGION_NAME",
        "AWS_ACCESS_KEY_ID",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AZURE_API_VERSION",
        "LITELLM_LOCAL_MODEL_COST_MAP",
        "MAX_TOKENS",
    ],
)
def test_neighbouring_variables_are_not_credentials(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not _secrets.is_secret_env_name(name)
    value = "http://127.0.0.1:4000/v1" if "BASE" in name else f"value-of-{name.lower()}"
    monkeypatch.setenv(name, value)
    assert _secrets.redact(f"using {value}") == f"using {value}"


def test_credentials_inside_urls_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    api_base = "https://bob:url-pass-0123456@proxy.test/v1?key=query-key-4567&api-version=2024-06"
    model = LiteLLMModel("openai/gpt-4o-mini", api_base=api_base)
    assert _secrets.redact(f"POST {api_base}/chat") == (
        "POST https://bob:***@proxy.test/v1?key=***&api-version=2024-06/chat"
    )
    assert "url-pass-0123456" not in repr(model)
    assert (
        _secrets.redact("https://token-as-user-1234@git.test/")
        == "https://token-as-user-1234@git.test/"
    )
    _secrets.register_url("https://token-as-user-1234@git.test/")
    assert _secrets.redact("https://token-as-user-1234@git.test/") == "https://***@git.test/"

    monkeypatch.setenv("HTTPS_PROXY", "http://carol:proxy-pass-9876@proxy.test:3128")
    assert _secrets.redact("via proxy-pass-9876") == "via ***"


def test_auth_like_headers_and_credential_arguments_are_masked() -> None:
    LiteLLMModel(
        "openai/gpt-4o-mini",
        extra_headers={
            "Authorization": "Bearer header-token-1234",
            "x-api-key": "header-key-5678",
            "Ocp-Apim-Subscription-Key": "subscription-9012",
            "X-Trace": "trace-id-not-secret",
        },
        aws_secret_access_key="aws-secret-argument-3456",
        seed=12345678,
    )
    text = (
        "Authorization: Bearer header-token-1234; x-api-key: header-key-5678; "
        "subscription-9012; aws-secret-argument-3456; X-Trace: trace-id-not-secret; 12345678"
    )
    assert _secrets.redact(text) == (
        "Authorization: Bearer ***; x-api-key: ***; ***; ***; X-Trace: trace-id-not-secret; "
        "12345678"
    )


def test_redact_text_adds_the_look_alikes_for_messages_and_logs() -> None:
    assert _log.redact_text("key sk-proj-abcdef123456 here") == "key sk-*** here"
    # the store and the CLI's streams mask known values only: user data is not mangled
    assert _secrets.redact("key sk-proj-abcdef123456 here") == "key sk-proj-abcdef123456 here"


def test_a_redacting_stream_masks_what_is_written_and_forwards_the_rest() -> None:
    import io

    _secrets.register("stream-secret-0001")
    inner = io.StringIO()
    stream = _secrets.RedactingStream(inner)
    assert stream.write("a stream-secret-0001 b\n") == len("a stream-secret-0001 b\n")
    stream.writelines(["stream-secret-0001\n"])
    stream.flush()
    assert inner.getvalue() == "a *** b\n***\n"
    assert stream.isatty() is False


def test_a_cause_holding_a_key_is_not_chained_and_a_clean_one_is() -> None:
    _secrets.register(KNOWN)

    class Response:
        text = f'{{"error": "bad key {KNOWN}"}}'

    class ProviderError(Exception):
        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.response = Response()

    error = AuthenticationError(f"model: 401 bad key {KNOWN}")
    error.__cause__ = ProviderError("401 Unauthorized")  # the key only in the response body
    _secrets.scrub_error(error)
    assert str(error) == "model: 401 bad key ***"
    assert (error.__cause__, error.__suppress_context__) == (None, True)
    assert KNOWN not in _chain_text(error)

    clean = ProviderError("503 unavailable")
    clean.response.text = "try later"  # type: ignore[misc]
    kept = AuthenticationError("model: 503")
    kept.__cause__ = clean
    assert _secrets.scrub_error(kept).__cause__ is clean


def test_the_stdlib_fallback_masks_values_and_exceptions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _secrets.register(KNOWN)
    structlog.reset_defaults()
    with caplog.at_level(logging.DEBUG, logger="delegate.test"):
        _log.get_logger("delegate.test").debug(
            "failed", note=f"key {KNOWN}", error=ValueError(f"bad {KNOWN}"), api_key=KNOWN
        )
    assert [r.getMessage() for r in caplog.records] == [
        "failed note='key ***' error='ValueError: bad ***' api_key='***'"
    ]


def test_the_store_masks_every_row_it_writes(tmp_path: Path) -> None:
    _secrets.register(KNOWN)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with Store.open(url) as store:
        store.create_run(
            RunRecord(id="r1", goal=f"goal with {KNOWN}", inputs={"k": KNOWN}, error=KNOWN)
        )
        task = TaskRecord(
            run_id="r1", task_id="t1", status="failed", output={"o": KNOWN}, error=KNOWN
        )
        event = EventRecord(run_id="r1", kind="task_failed", at=1.0, data={"error": KNOWN})
        store.write_batch("r1", [task], [event], graph={"tasks": [], "note": KNOWN})
        store.finish_run("r1", status="failed", output=KNOWN, usage={}, error=f"x {KNOWN}")
        store.put_memory("ns", "key", {"v": KNOWN}, text=f"text {KNOWN}")
        run, tasks, events = store.get_run("r1"), store.get_tasks("r1"), store.get_events("r1")
        memory = store.get_memory("ns", "key")
    assert run is not None
    assert memory is not None
    assert (run.goal, run.inputs, run.error, run.output) == (
        "goal with ***",
        {"k": "***"},
        "x ***",
        "***",
    )
    assert (tasks[0].output, tasks[0].error, events[0].data) == (
        {"o": "***"},
        "***",
        {"error": "***"},
    )
    assert (memory.value, memory.text) == ({"v": "***"}, "text ***")
    for file in tmp_path.iterdir():  # the database and its WAL
        assert KNOWN.encode() not in file.read_bytes(), file.name


# -- end to end, against servers that echo the key ----------------------------------------------


class _AnthropicEcho(BaseHTTPRequestHandler):
    """Anthropic's Messages API answering every request with a 401 that quotes the key."""

    server: _AnthropicServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        key = self.headers.get("x-api-key", "")
        self.server.received.append((self.path, key))
        body = {
            "type": "error",
            "error": {"type": "authentication_error", "message": f"The key {key} is not valid."},
        }
        payload = json.dumps(body).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _AnthropicServer(ThreadingHTTPServer):
    daemon_threads = True
    received: list[tuple[str, str]]


@dataclass
class Provider:
    """One wire format: the model to name, and the keys its local server received."""

    model: str
    keys: Callable[[], list[str]]


@pytest.fixture(params=["openai", "anthropic"])
def provider(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Provider]:
    """A local server that echoes the key in its 401, and an environment that points litellm at
    it with the canary as the key — as the CLI and YAML workflows get keys."""
    # The base URL comes from the environment too, so the guard against real requests (which
    # looks at LiteLLMModel's api_base) must let this test's calls through.
    monkeypatch.setattr(models_module, "ALLOW_MODEL_REQUESTS", True)
    if request.param == "openai":
        with FakeOpenAIServer() as server:
            server.default = unauthorized(f"Incorrect API key provided: {CANARY}.")
            for name in ("OPENAI_API_BASE", "OPENAI_BASE_URL"):
                monkeypatch.setenv(name, server.base_url)
            monkeypatch.setenv("OPENAI_API_KEY", CANARY)

            def bearers() -> list[str]:
                return [r.headers["authorization"].removeprefix("Bearer ") for r in server.requests]

            yield Provider("openai/gpt-4o-mini", bearers)
        return
    anthropic = _AnthropicServer(("127.0.0.1", 0), _AnthropicEcho)
    anthropic.received = []
    thread = threading.Thread(target=anthropic.serve_forever, daemon=True)
    thread.start()
    try:
        for name in ("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{anthropic.server_address[1]}")
        monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY)

        def api_keys() -> list[str]:
            return [key for path, key in anthropic.received if path == "/v1/messages"]

        yield Provider("anthropic/claude-haiku-4-5", api_keys)
    finally:
        anthropic.shutdown()
        anthropic.server_close()
        thread.join(timeout=5)


async def test_the_model_error_and_its_chain_hold_no_key(provider: Provider) -> None:
    with pytest.raises(AuthenticationError) as raised:
        await LiteLLMModel(provider.model).request(HELLO)
    assert provider.keys() == [CANARY]  # the key was sent, and echoed back
    error = raised.value
    assert str(error).startswith(f"{provider.model}: AuthenticationError: ")
    assert "***" in str(error)
    assert CANARY not in _chain_text(error)
    assert (error.__cause__, error.__suppress_context__) == (None, True)


@contextlib.contextmanager
def _json_logs() -> Iterator[None]:
    """delegate's events and litellm's own records, at DEBUG, as JSON lines on stderr (the
    stream of the moment: inside the test, capsys's)."""
    models_module._litellm()  # routes litellm's loggers (at WARNING) on import
    _log.configure_logging("DEBUG", json=True)
    _log.route_litellm_logging(logging.DEBUG)
    try:
        yield
    finally:
        _log.route_litellm_logging()
        structlog.reset_defaults()


async def _runs(provider: Provider, url: str) -> tuple[list[Any], list[Any]]:
    """A failed task (execute) and a failed plan (run), with events and a store."""
    scout = Agent("scout", provider.model)
    events: list[Any] = []
    orch = Orchestrator(workers=[scout], planner=Agent("planner", provider.model), memory=url)
    orch.subscribe(events.append)
    graph = TaskGraph()
    graph.add("facts", agent=scout, prompt="Find the facts.")
    executed = await orch.execute(graph, run_id="executed")
    planned = await orch.run("Write a report.", run_id="planned")
    return [executed, planned], events


def _assert_store_clean(tmp_path: Path, url: str) -> None:
    files = list(tmp_path.glob("runs.db*"))
    assert files
    for file in files:
        assert CANARY.encode() not in file.read_bytes(), file.name
    with Store.open(url) as store:
        for run_id in ("executed", "planned"):
            rows = [store.get_run(run_id), *store.get_tasks(run_id), *store.get_events(run_id)]
            assert CANARY not in repr(rows)


async def test_results_events_logs_and_the_store_hold_no_key(
    provider: Provider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with _json_logs():
        (executed, planned), events = await _runs(provider, url)
    assert provider.keys() == [CANARY, CANARY]  # the task's call and the planner's

    task = executed.tasks["facts"]
    assert (executed.status, task.status) == ("failed", "failed")
    assert task.error is not None
    assert task.error.startswith(f"{provider.model}: AuthenticationError: ")
    assert "***" in task.error
    assert task.model == provider.model  # a failed task still says which model it called
    assert planned.status == "failed"
    assert planned.error is not None
    assert "***" in planned.error

    failed = [event for event in events if isinstance(event, TaskFailed)]
    assert [event.task_id for event in failed] == ["facts"]
    assert failed[0].error == task.error
    assert CANARY not in repr(events)

    captured = capsys.readouterr()
    assert CANARY not in captured.out + captured.err
    logged = [json.loads(line) for line in captured.err.splitlines()]
    assert any(line.get("logger_name") == "LiteLLM" for line in logged)  # litellm's, forwarded
    plan_failed = [line for line in logged if line["event"] == "plan_failed"]
    assert len(plan_failed) == 1
    assert "***" in plan_failed[0]["error"]

    _assert_store_clean(tmp_path, url)
    with Store.open(url) as store:
        assert [(t.status, t.model) for t in store.get_tasks("executed")] == [
            ("failed", provider.model)
        ]


async def test_stdlib_logs_at_debug_hold_no_key(
    provider: Provider,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    structlog.reset_defaults()  # unconfigured: delegate's events go to stdlib logging
    with caplog.at_level(logging.DEBUG):
        (executed, _), _ = await _runs(provider, f"sqlite:///{tmp_path / 'runs.db'}")
    assert executed.status == "failed"
    assert any(record.getMessage().startswith("plan_failed ") for record in caplog.records)
    assert CANARY not in caplog.text
    assert CANARY not in "\n".join(record.getMessage() for record in caplog.records)
    captured = capsys.readouterr()
    assert CANARY not in captured.out + captured.err


# -- the CLI ------------------------------------------------------------------------------------


def _workflow(tmp_path: Path, model: str) -> Path:
    path = tmp_path / "echo.yaml"
    path.write_text(
        "name: echo\n"
        f"agents:\n  scout: {{model: {model}}}\n"
        "steps:\n  - id: facts\n    agent: scout\n    prompt: Find the facts.\n"
        "output: facts\n"
    )
    return path


def test_cli_output_and_logs_hold_no_key(provider: Provider, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    workflow = str(_workflow(tmp_path, provider.model))

    def invoke(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(main, list(args), prog_name="delegate")
        return result.exit_code, result.stdout, result.stderr

    try:
        plain = invoke("--debug", "--log-json", "run", workflow, "--db", url, "--run-id", "plain")
        as_json = invoke("--debug", "run", workflow, "--db", url, "--run-id", "js", "--json")
        shown = invoke("show", "plain", "--db", url, "--json")
        full = invoke("show", "plain", "--db", url, "--full")
        listed = invoke("runs", "--db", url)
    finally:
        structlog.reset_defaults()
    assert provider.keys() == [CANARY, CANARY]
    assert (plain[0], as_json[0], shown[0], full[0], listed[0]) == (1, 1, 0, 0, 0)
    for _, out, err in (plain, as_json, shown, full, listed):
        assert CANARY not in out + err
    document = json.loads(as_json[1])
    assert document["tasks"]["facts"]["model"] == provider.model
    assert "***" in document["tasks"]["facts"]["error"]
    stored = json.loads(shown[1])
    assert "***" in json.dumps(stored)
    assert "***" in plain[2]  # the failure is shown, masked
    assert "  facts failed: " in plain[2]
    for file in tmp_path.glob("runs.db*"):
        assert CANARY.encode() not in file.read_bytes()


@pytest.mark.slow
def test_a_cli_process_prints_no_key(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        server.default = unauthorized(f"Incorrect API key provided: {CANARY}.")
        env = {
            **os.environ,
            "OPENAI_API_KEY": CANARY,
            "OPENAI_API_BASE": server.base_url,
            "OPENAI_BASE_URL": server.base_url,
        }
        workflow = str(_workflow(tmp_path, "openai/gpt-4o-mini"))
        url = f"sqlite:///{tmp_path / 'runs.db'}"
        done = subprocess.run(
            [sys.executable, "-m", "delegate", "--debug", "run", workflow, "--db", url, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )
        received = [r.headers["authorization"] for r in server.requests]
    assert received == [f"Bearer {CANARY}"]
    assert done.returncode == 1, done.stderr
    assert CANARY not in done.stdout + done.stderr
    assert "***" in json.loads(done.stdout)["tasks"]["facts"]["error"]
