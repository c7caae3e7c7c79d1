"""Budgets against a real HTTP server, counted by the server: what a provider would bill never
passes the budget — with timeouts, 429s, 5xx, a server that ignores max_tokens, and a process
killed with SIGKILL and resumed in another one.

The fake servers (`tests/_fake_openai_server.py`, `tests/_fake_anthropic_server.py`) keep their own
bill, independent of delegate: a completed answer at its usage, an answer the client abandoned at
the work the server did, an error reply at nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _fake_anthropic_server import FakeAnthropicServer
from _fake_openai_server import (
    FakeOpenAIServer,
    Reply,
    completion,
    over_max_tokens,
    rate_limited,
    server_error,
)
from _ledgers import capture_ledgers, run_scope

from delegate.agents.agent import Agent
from delegate.agents.limits import Budget
from delegate.agents.models import LiteLLMModel, ModelRequest
from delegate.agents.tokens import count_text
from delegate.orchestrator.budget import BudgetLedger
from delegate.orchestrator.graph import TaskGraph
from delegate.orchestrator.run import Orchestrator
from delegate.orchestrator.scheduler import RetryPolicy

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent
WIRES = {
    "openai": (FakeOpenAIServer, "openai/gpt-4o-mini"),
    "anthropic": (FakeAnthropicServer, "anthropic/claude-haiku-4-5"),
}
CAP = 2000  # each call's output allowance
FAST_RETRY = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05)


@pytest.fixture(params=sorted(WIRES))
def wire(request: pytest.FixtureRequest) -> Iterator[tuple[FakeOpenAIServer, str]]:
    server_class, model_name = WIRES[request.param]
    price = LiteLLMModel(model_name).price
    assert price is not None
    server = server_class(price=(price.input_per_mtok, price.output_per_mtok))
    with server:
        yield server, model_name


def _graph(model: LiteLLMModel, tasks: int, cap: int = CAP) -> TaskGraph:
    graph = TaskGraph()
    agent = Agent("w", model, max_output_tokens=cap)
    for index in range(tasks):
        graph.add(f"t{index}", agent=agent, prompt=f"Task {index}: say hello.")
    return graph


@pytest.fixture
def ledgers() -> Iterator[list[BudgetLedger]]:
    with capture_ledgers() as made:
        yield made


async def test_timed_out_requests_are_paid_for_and_the_bill_stays_in_budget(
    wire: tuple[FakeOpenAIServer, str], ledgers: list[BudgetLedger]
) -> None:
    server, model_name = wire
    # Every answer comes after the client gave up; the server still did (and bills) the work.
    server.default = completion("Hello " * 300, completion_tokens=1500, delay=1.5)
    model = LiteLLMModel(model_name, api_base=server.base_url, api_key="sk-test-key", timeout=0.4)
    assert model.price is not None
    usd = 5 * model.price.cost(60, CAP)  # room for about five reservations

    result = await Orchestrator(retry=FAST_RETRY, max_concurrency=4).execute(
        _graph(model, 12), budget=Budget(usd=usd)
    )
    server.release()
    await server.idle()

    assert server.billed_calls >= 3  # the budget was really used
    assert server.billed_usd <= usd  # what the provider bills never passes the budget
    # delegate counted every request that reached the server, at no less than it was billed.
    assert result.usage.calls == server.billed_calls
    assert result.usage.cost_usd >= server.billed_usd
    assert result.usage.unconfirmed_usd == result.usage.cost_usd  # none was confirmed
    assert run_scope(ledgers[0]).spent_usd == pytest.approx(result.usage.cost_usd, abs=1e-9)
    assert result.usage.refused > 0


@pytest.mark.parametrize("reply", [rate_limited(retry_after=0), server_error()], ids=["429", "500"])
async def test_a_calls_budget_counts_every_request_the_server_received(
    wire: tuple[FakeOpenAIServer, str], reply: Reply
) -> None:
    server, model_name = wire
    server.default = reply
    model = LiteLLMModel(model_name, api_base=server.base_url, api_key="sk-test-key")
    retry = RetryPolicy(max_retries=5, base_delay=0, max_delay=0.01)

    result = await Orchestrator(retry=retry).execute(_graph(model, 4), budget=Budget(calls=3))
    await server.idle()

    assert server.billed_calls == 3
    assert result.usage.calls == 3
    assert result.status == "failed"


async def test_a_stream_from_a_server_that_ignores_max_tokens_is_cut_at_the_allowance(
    wire: tuple[FakeOpenAIServer, str],
) -> None:
    server, model_name = wire
    server.default = over_max_tokens(400, chunk_delay=0.002)
    model = LiteLLMModel(model_name, api_base=server.base_url, api_key="sk-test-key")
    pieces: list[str] = []
    request = ModelRequest(
        [{"role": "user", "content": "Count."}], max_output_tokens=20, on_text=pieces.append
    )

    response = await model.request(request)
    await server.idle()

    assert response.finish_reason == "length"
    assert "".join(pieces) == response.text
    assert count_text(response.text, model_name) <= 20
    assert response.usage.output_tokens == 20  # charged at the allowance it reserved
    [bill] = server.bills
    assert bill.outcome == "abandoned"  # the client stopped reading: the server stopped too
    assert bill.output_tokens < 420


async def test_an_unstreamed_overshoot_is_counted_at_its_real_usage(
    wire: tuple[FakeOpenAIServer, str], ledgers: list[BudgetLedger]
) -> None:
    server, model_name = wire
    server.default = over_max_tokens(100)
    model = LiteLLMModel(model_name, api_base=server.base_url, api_key="sk-test-key")

    result = await Orchestrator().execute(_graph(model, 1, cap=20), budget=Budget(usd=1.0))
    await server.idle()

    usage = result.tasks["t0"].usage
    assert usage.output_tokens == 120
    [ledger] = ledgers
    assert len(ledger.overshoots) == 1
    assert run_scope(ledgers[0]).spent_usd == pytest.approx(server.billed_usd, abs=1e-9)
    assert result.usage.cost_usd == pytest.approx(server.billed_usd, abs=1e-9)


# -- SIGKILL and resume in another process -------------------------------------------------------

KILL_SCRIPT = HERE / "_budget_kill_run.py"


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    }
    return subprocess.Popen(
        [sys.executable, str(KILL_SCRIPT), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition did not hold in time")
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_run_killed_mid_flight_and_resumed_elsewhere_stays_in_budget(tmp_path: Path) -> None:
    server = FakeOpenAIServer()
    # Each answer takes a while, so requests are in flight when the process is killed.
    server.default = completion("Hello " * 300, prompt_tokens=40, completion_tokens=300, delay=0.3)
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    usd = "0.004"
    with server:
        first = _spawn("run", server.base_url, db, usd)
        try:
            _wait_for(lambda: server.billed_calls >= 6, 60)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        assert first.returncode == -signal.SIGKILL
        before = server.billed_calls
        second = _spawn("resume", server.base_url, db, usd)
        out, err = second.communicate(timeout=90)
        assert second.returncode == 0, err.decode()[-2000:]
        server.release()
        server.wait_idle()

    assert server.billed_calls > before  # the resumed process went on working
    # What the server billed, over both processes, never passed the budget.
    assert server.billed_usd <= float(usd)
    # And the resumed run reports at least that: the first process's spend still counts.
    reported = float(out.decode().split()[-1])
    assert reported >= server.billed_usd


@pytest.mark.parametrize(
    ("budget", "model_name", "window", "text"),
    [
        # Counted under a budget: 200,000 tokens into 128,000.
        (Budget(usd=1.0), "openai/gpt-4o-mini", 128_000, "word " * 200_000),
        # No budget, so nothing is counted: 2 M characters cannot fit 16,385 tokens.
        (None, "openai/gpt-3.5-turbo", 16_385, "x" * 2_000_000),
    ],
    ids=["counted", "by-size"],
)
async def test_a_prompt_larger_than_the_context_window_is_never_sent(
    budget: Budget | None, model_name: str, window: int, text: str
) -> None:
    with FakeOpenAIServer() as server:
        model = LiteLLMModel(model_name, api_base=server.base_url, api_key="sk-test")
        assert model.context_window == window
        graph = TaskGraph()
        graph.add("big", agent=Agent("w", model), prompt="{{ text }}")

        result = await Orchestrator(retry=FAST_RETRY).execute(graph, {"text": text}, budget=budget)

        task = result.tasks["big"]
        assert (task.status, task.attempts, task.usage.calls) == ("failed", 1, 0)
        assert task.error is not None
        assert f"context window of {window:,} tokens" in task.error
        assert "was not sent" in task.error
        assert server.billed_calls == 0
