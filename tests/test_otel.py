"""OpenTelemetry traces (`Orchestrator(tracing=...)`): the span tree of runs, the GenAI
attributes, what is (never) recorded, resume links, OTLP/HTTP export, and no cost when off."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from delegate import Agent, Budget, ConfigError, FallbackModel, Orchestrator, TaskGraph, tool
from delegate.agents.models import ModelRequest
from delegate.errors import PermanentModelError, RateLimitError
from delegate.observe import Tracing, otlp
from delegate.orchestrator.scheduler import RetryPolicy
from delegate.testing import FunctionModel, ScriptedModel, tool_call

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.01)
PASS = {"passed": True, "feedback": ""}
SERVERS = str(Path(__file__).resolve().parent / "_mcp_servers.py")


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    found = InMemorySpanExporter()
    yield found
    found.clear()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    # A private provider: the global one is never touched.
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    yield made
    made.shutdown()


def _label(span: ReadableSpan) -> str:
    revision = (span.attributes or {}).get("delegate.plan.revision")
    return span.name if revision is None else f"{span.name} {revision}"


def _paths(spans: tuple[ReadableSpan, ...]) -> list[str]:
    """Each span as the path of names from its root ("run/task a/chat m"), sorted; every span's
    parent is in the same trace and was exported too."""
    by_id = {span.context.span_id: span for span in spans}
    paths = []
    for span in spans:
        names = [_label(span)]
        parent = span.parent
        while parent is not None:
            assert parent.trace_id == span.context.trace_id
            above = by_id[parent.span_id]
            names.append(_label(above))
            parent = above.parent
        paths.append("/".join(reversed(names)))
    return sorted(paths)


def _named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def _everything(spans: tuple[ReadableSpan, ...]) -> str:
    """Every attribute and event attribute of `spans`, as text."""
    parts = []
    for span in spans:
        parts.append(span.name)
        parts.extend(f"{k}={v}" for k, v in (span.attributes or {}).items())
        parts.append(str(span.status.description))
        for event in span.events:
            parts.extend(f"{k}={v}" for k, v in (event.attributes or {}).items())
    return "\n".join(parts)


async def _execute(graph: TaskGraph, **options: Any) -> Any:
    options.setdefault("retry", FAST)
    options.setdefault("memory", None)
    with anyio.fail_after(10):  # a guard against hangs, not a timing assertion
        return await Orchestrator(**options).execute(graph)


async def test_a_graph_with_a_retry_is_one_tree_with_exact_genai_attributes(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    flaky = ScriptedModel([RateLimitError("429 slow down"), "A"], name="openai/gpt-4o-mini")
    steady = FunctionModel(
        lambda r: "B", name="openai/gpt-4o-mini", input_price=0.15, output_price=0.6
    )
    g = TaskGraph()
    a = g.add("a", agent=Agent("flaky", flaky), prompt="Do a.")
    b = g.add("b", agent=Agent("steady", steady, temperature=0.2), prompt="Do b.")
    g.add("c", agent=Agent("joiner", steady), prompt="Join.", deps=[a, b], max_output_tokens=50)

    result = await _execute(g, tracing=provider)

    assert result.status == "succeeded"
    spans = exporter.get_finished_spans()
    model = "chat openai/gpt-4o-mini"
    assert _paths(spans) == [
        "run",
        "run/task a",
        f"run/task a/{model}",
        f"run/task a/{model}",
        "run/task b",
        f"run/task b/{model}",
        "run/task c",
        f"run/task c/{model}",
    ]
    [run] = _named(spans, "run")
    assert len({span.context.trace_id for span in spans}) == 1
    assert run.attributes is not None
    assert run.attributes["delegate.status"] == "succeeded"
    assert run.attributes["delegate.run_id"] == result.run_id

    # The retry: the first call failed (ERROR, its type), the task says so, the second answered.
    [task_a] = _named(spans, "task a")
    calls_a = sorted(
        (s for s in spans if s.parent and s.parent.span_id == task_a.context.span_id),
        key=lambda s: s.start_time or 0,
    )
    assert [c.status.status_code for c in calls_a] == [StatusCode.ERROR, StatusCode.UNSET]
    assert calls_a[0].attributes is not None
    assert calls_a[1].attributes is not None
    assert calls_a[0].attributes["error.type"] == "RateLimitError"
    assert calls_a[0].status.description == "429 slow down"
    assert (
        calls_a[0].attributes["delegate.attempt"],
        calls_a[1].attributes["delegate.attempt"],
    ) == (
        1,
        2,
    )
    assert [e.name for e in task_a.events] == ["retry"]
    assert task_a.attributes is not None
    assert task_a.attributes["delegate.attempts"] == 2

    [task_b] = _named(spans, "task b")
    [call_b] = [s for s in spans if s.parent and s.parent.span_id == task_b.context.span_id]
    usage = result.tasks["b"].usage
    assert usage.cost_usd > 0
    assert dict(call_b.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "openai/gpt-4o-mini",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.response.model": "openai/gpt-4o-mini",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "delegate.cost_usd": usage.cost_usd,
        "delegate.cache_hit": False,
        "delegate.run_id": result.run_id,
        "delegate.task_id": "b",
        "delegate.agent": "steady",
        "delegate.role": "worker",
        "delegate.attempt": 1,
    }
    [task_c] = _named(spans, "task c")
    [call_c] = [s for s in spans if s.parent and s.parent.span_id == task_c.context.span_id]
    assert call_c.attributes is not None
    assert call_c.attributes["gen_ai.request.max_tokens"] == 50
    assert "gen_ai.request.temperature" not in call_c.attributes


async def test_calls_under_a_usd_budget_say_what_is_left(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    model = FunctionModel(lambda r: "x", name="mini", input_price=100.0, output_price=100.0)
    g = TaskGraph()
    first = g.add("first", agent=Agent("w", model), prompt="One.")
    g.add("second", agent=Agent("w2", model), prompt="Two.", deps=[first])

    result = await _execute(g, tracing=provider, budget=Budget(usd=1.0))

    spans = exporter.get_finished_spans()
    left = {
        (s.attributes or {})["delegate.task_id"]: (s.attributes or {})["delegate.budget.left_usd"]
        for s in _named(spans, "chat mini")
    }
    first_cost = result.tasks["first"].usage.cost_usd
    total = result.usage.cost_usd
    assert first_cost > 0
    assert left == {
        "first": pytest.approx(1.0 - first_cost, abs=1e-9),
        "second": pytest.approx(1.0 - total, abs=1e-9),
    }
    [run] = _named(spans, "run")
    assert (run.attributes or {})["delegate.budget.left_usd"] == pytest.approx(
        1.0 - total, abs=1e-9
    )


async def test_judges_votes_and_fallbacks_are_parented_under_their_task(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    worker = ScriptedModel(["Lyon", "Paris"], name="mini")
    judge = ScriptedModel([{"passed": False, "feedback": "not Lyon"}, PASS], name="nano")
    voter = ScriptedModel(["Paris", "Paris", "Paris"], name="mini")
    primary = ScriptedModel([PermanentModelError("down")], name="primary")
    backup = ScriptedModel(["ok"], name="backup")
    g = TaskGraph()
    g.add("judged", agent=Agent("w", worker, verify=Agent("judge", judge)), prompt="Capital?")
    g.add("voted", agent=Agent("v", voter), prompt="Capital?", votes=3)
    g.add("fell_back", agent=Agent("f", FallbackModel(primary, backup)), prompt="Go.")

    result = await _execute(g, tracing=Tracing(provider=provider))

    assert result.status == "succeeded"
    spans = exporter.get_finished_spans()
    assert _paths(spans) == [
        "run",
        "run/task fell_back",
        "run/task fell_back/chat backup",
        "run/task fell_back/chat primary",
        "run/task judged",
        "run/task judged/chat mini",
        "run/task judged/chat mini",
        "run/task judged/chat nano",
        "run/task judged/chat nano",
        "run/task voted",
        "run/task voted/chat mini",
        "run/task voted/chat mini",
        "run/task voted/chat mini",
    ]
    roles = sorted(
        (s.name, (s.attributes or {})["delegate.role"], (s.attributes or {})["delegate.agent"])
        for s in spans
        if s.name.startswith("chat") and (s.attributes or {})["delegate.task_id"] == "judged"
    )
    assert roles == [
        ("chat mini", "worker", "w"),
        ("chat mini", "worker", "w"),
        ("chat nano", "judge", "judge"),
        ("chat nano", "judge", "judge"),
    ]
    [failed] = _named(spans, "chat primary")
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "PermanentModelError"
    assert (failed.attributes or {})["delegate.delivery"] == "refused"


def _task(id: str, agent: str = "scout", deps: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"id": id, "agent": agent, "instructions": f"Do {id}.", "deps": list(deps)}


async def test_a_planned_run_with_a_replan_nests_tasks_under_their_plan_revision(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    plans = [
        {"tasks": [_task("facts"), _task("report", deps=("facts",))]},
        {"tasks": [_task("report_again", deps=("facts",))]},
    ]

    def reason(request: ModelRequest) -> str:
        return json.dumps(plans.pop(0)) if request.output_name == "Plan" else "FINAL"

    def work(request: ModelRequest) -> str:
        if str(request.messages[-1]["content"]).endswith("Do report."):
            raise PermanentModelError("cannot do report")
        return "done"

    orch = Orchestrator(
        planner=Agent("planner", FunctionModel(reason, name="reasoner")),
        workers=[Agent("scout", FunctionModel(work, name="mini"), description="Does.")],
        memory=None,
        retry=FAST,
        tracing=provider,
    )
    with anyio.fail_after(10):
        result = await orch.run("Report on bees.")

    assert result.status == "succeeded"
    spans = exporter.get_finished_spans()
    assert _paths(spans) == [
        "run",
        "run/plan 1",
        "run/plan 1/chat reasoner",
        "run/plan 1/task facts",
        "run/plan 1/task facts/chat mini",
        "run/plan 1/task report",
        "run/plan 1/task report/chat mini",
        "run/plan 2",
        "run/plan 2/chat reasoner",
        "run/plan 2/task report_again",
        "run/plan 2/task report_again/chat mini",
        "run/synthesis",
        "run/synthesis/chat reasoner",
    ]
    [report] = _named(spans, "task report")
    assert report.status.status_code is StatusCode.ERROR
    assert (report.attributes or {})["delegate.status"] == "failed"
    planner_roles = {
        (s.attributes or {})["delegate.role"] for s in spans if s.name == "chat reasoner"
    }
    assert planner_roles == {"planner"}
    [second] = [
        s for s in _named(spans, "plan") if (s.attributes or {})["delegate.plan.revision"] == 2
    ]
    assert (second.attributes or {})["delegate.plan.reason"] == "failures"


async def test_tool_calls_are_spans_under_their_task(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    @tool
    def lookup(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    model = ScriptedModel([tool_call("lookup", city="Oslo"), "It is sunny."], name="mini")
    g = TaskGraph()
    g.add("weather", agent=Agent("w", model, tools=[lookup]), prompt="Weather in Oslo?")

    await _execute(g, tracing=Tracing(provider=provider, capture_content=True))

    spans = exporter.get_finished_spans()
    assert _paths(spans) == [
        "run",
        "run/task weather",
        "run/task weather/chat mini",
        "run/task weather/chat mini",
        "run/task weather/execute_tool lookup",
    ]
    [call] = _named(spans, "execute_tool lookup")
    attributes = dict(call.attributes or {})
    assert attributes.pop("gen_ai.tool.call.id")
    assert attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "lookup",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.arguments": '{"city": "Oslo"}',
        "gen_ai.tool.call.result": "sunny in Oslo",
        "delegate.run_id": (_named(spans, "run")[0].attributes or {})["delegate.run_id"],
        "delegate.task_id": "weather",
    }


async def test_mcp_tool_calls_are_spans_and_a_failing_tool_marks_its_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    from delegate import MCPServerStdio

    server = MCPServerStdio(sys.executable, [SERVERS, "stdio"], name="tests")
    model = ScriptedModel(
        [tool_call("add", a=2, b=3), tool_call("fail", reason="no"), "done"], name="mini"
    )
    g = TaskGraph()
    g.add("sum", agent=Agent("w", model, tools=[server]), prompt="Add.")

    with anyio.fail_after(60):  # starting the server is a subprocess: a hang guard only
        await _execute(g, tracing=provider)

    spans = exporter.get_finished_spans()
    assert _paths(spans) == [
        "run",
        "run/task sum",
        "run/task sum/chat mini",
        "run/task sum/chat mini",
        "run/task sum/chat mini",
        "run/task sum/execute_tool add",
        "run/task sum/execute_tool fail",
    ]
    [add] = _named(spans, "execute_tool add")
    assert (add.attributes or {})["gen_ai.tool.type"] == "extension"
    assert add.status.status_code is StatusCode.UNSET
    [fail] = _named(spans, "execute_tool fail")
    assert fail.status.status_code is StatusCode.ERROR
    assert (fail.attributes or {})["error.type"] == "tool_error"


async def test_prompts_and_answers_are_recorded_only_on_request_and_never_a_secret(
    provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-proj-4f9c2b7e1d8a6c3b5e0f9a2d7c4b1e8f"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    prompt = f"ZEBRA-PROMPT key={secret}"
    model = FunctionModel(lambda r: f"OKAPI-ANSWER {secret}", name="mini")

    def graph() -> TaskGraph:
        g = TaskGraph()
        g.add("t", agent=Agent("w", model), prompt=prompt)
        return g

    await _execute(graph(), tracing=Tracing(provider=provider))
    quiet = _everything(exporter.get_finished_spans())
    assert "ZEBRA" not in quiet
    assert "OKAPI" not in quiet
    assert secret not in quiet
    exporter.clear()

    await _execute(graph(), tracing=Tracing(provider=provider, capture_content=True))
    spans = exporter.get_finished_spans()
    loud = _everything(spans)
    assert "ZEBRA-PROMPT" in loud
    assert "OKAPI-ANSWER" in loud
    assert secret not in loud
    [call] = _named(spans, "chat mini")
    messages = json.loads(str((call.attributes or {})["gen_ai.input.messages"]))
    assert messages[-1]["role"] == "user"
    assert messages[-1]["parts"][0]["content"].startswith("ZEBRA-PROMPT key=")
    [answer] = json.loads(str((call.attributes or {})["gen_ai.output.messages"]))
    assert (answer["role"], answer["finish_reason"]) == ("assistant", "stop")


async def test_a_resumed_run_links_to_the_original_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    broken = ScriptedModel([PermanentModelError("down")], name="mini")
    g = TaskGraph()
    g.add("t", agent="w", prompt="Go.")
    async with Orchestrator(
        workers=[Agent("w", broken)], memory=url, retry=FAST, tracing=provider
    ) as first:
        failed = await first.execute(g, run_id="r1")
    assert failed.status == "failed"
    [original] = _named(exporter.get_finished_spans(), "run")
    assert original.status.status_code is StatusCode.ERROR
    exporter.clear()

    fixed = ScriptedModel(["ok"], name="mini")
    async with Orchestrator(workers=[Agent("w", fixed)], memory=url, tracing=provider) as again:
        resumed = await again.resume("r1")
    assert resumed.status == "succeeded"
    [run] = _named(exporter.get_finished_spans(), "run")
    assert run.context.trace_id != original.context.trace_id
    assert (run.attributes or {})["delegate.resumed"] is True
    [link] = run.links
    assert (link.context.trace_id, link.context.span_id) == (
        original.context.trace_id,
        original.context.span_id,
    )
    assert dict(link.attributes or {}) == {"delegate.link": "resumed_from"}


def test_tracing_off_adds_nothing_and_never_imports_opentelemetry() -> None:
    orch = Orchestrator(memory=None)
    assert (orch.tracer, orch.hooks, orch.events.active) == (None, (), False)
    code = (
        "import sys, delegate\n"
        "from delegate.testing import FunctionModel\n"
        "g = delegate.TaskGraph()\n"
        "g.add('t', agent=delegate.Agent('w', FunctionModel(lambda r: 'x')), prompt='p')\n"
        "r = delegate.Orchestrator(memory=None, tracing=False).execute_sync(g)\n"
        "assert r.status == 'succeeded', r\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


def test_bad_settings_and_a_missing_extra_are_config_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="tracing must be True"):
        Orchestrator(memory=None, tracing="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must be an http"):
        otlp("localhost:4318")
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ConfigError, match=r'pip install "delegate\[otel\]"'):
        Orchestrator(memory=None, tracing=True)


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append((self.path, self.headers.get("Authorization", ""), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """A small OTLP/HTTP receiver on 127.0.0.1: its URL, and the (path, auth, body) it got."""
    received: list[tuple[str, str, bytes]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    thread.join()


def _decoded(received: list[tuple[str, str, bytes]]) -> tuple[list[str], list[str], set[str]]:
    """The span names, `gen_ai.request.model` values and service names the receiver got."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    names: list[str] = []
    models: list[str] = []
    services: set[str] = set()
    for _, _, body in received:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            services |= {
                a.value.string_value
                for a in resource.resource.attributes
                if a.key == "service.name"
            }
            for scope in resource.scope_spans:
                for span in scope.spans:
                    names.append(span.name)
                    models += [
                        a.value.string_value
                        for a in span.attributes
                        if a.key == "gen_ai.request.model"
                    ]
    return names, models, services


async def test_spans_reach_an_otlp_http_collector(
    collector: tuple[str, list[tuple[str, str, bytes]]],
) -> None:
    url, received = collector
    token = "otlp-token-7d1e9a4b2c6f8e3a"
    traced = otlp(url, headers={"Authorization": f"Bearer {token}"}, service_name="bench")
    try:
        g = TaskGraph()
        g.add("t", agent=Agent("w", FunctionModel(lambda r: "x", name="openai/gpt-4o-mini")))
        await _execute(g, tracing=traced)
        assert await anyio.to_thread.run_sync(traced.force_flush)
    finally:
        traced.shutdown()

    assert {path for path, _, _ in received} == {"/v1/traces"}
    assert {auth for _, auth, _ in received} == {f"Bearer {token}"}
    names, models, services = _decoded(received)
    assert sorted(names) == ["chat openai/gpt-4o-mini", "run", "task t"]
    assert models == ["openai/gpt-4o-mini"]
    assert services == {"bench"}


async def test_tracing_true_exports_to_the_otlp_endpoint_the_environment_names(
    collector: tuple[str, list[tuple[str, str, bytes]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry import trace

    url, received = collector
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        pytest.skip("a global SDK tracer provider is installed: tracing=True uses it")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    orch = Orchestrator(memory=None, tracing=Tracing(service_name="from-env"))
    g = TaskGraph()
    g.add("t", agent=Agent("w", FunctionModel(lambda r: "x", name="mini")), prompt="Go.")
    await orch.execute(g)
    assert orch.tracer is not None
    assert await anyio.to_thread.run_sync(orch.tracer.provider.force_flush)

    names, _, services = _decoded(received)
    assert sorted(names) == ["chat mini", "run", "task t"]
    assert services == {"from-env"}


def test_delegate_run_otlp_sends_the_workflow_trace(
    collector: tuple[str, list[tuple[str, str, bytes]]], tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from delegate.cli import main

    url, received = collector
    workflow = Path(__file__).resolve().parent.parent / "configs" / "market-brief.yaml"
    args = ["run", str(workflow), "-i", "market=home batteries", "--simulate"]
    args += ["--time-scale", "0", "--db", f"sqlite:///{tmp_path / 'runs.db'}", "--otlp", url]
    done = CliRunner().invoke(main, args, prog_name="delegate")

    assert done.exit_code == 0, done.output
    names, models, services = _decoded(received)
    assert names.count("run") == 1
    assert services == {"delegate"}
    assert models
    assert len(models) == sum(name.startswith("chat ") for name in names)

    bad = CliRunner().invoke(main, [*args[:-1], "localhost:4318"], prog_name="delegate")
    assert bad.exit_code == 2
    assert "the OTLP endpoint must be an http(s) URL" in bad.output
    assert "Traceback" not in bad.output
