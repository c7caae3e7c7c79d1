"""What a failed call costs, one rule in one place (`CallGate`): never sent → free; refused by
the provider → one call; anything that may have been processed → its reservation, reported as
`unconfirmed_usd`. Also: retries that never hold a slot and never wait past a bound, setup errors
that are not retried, and a resumed run that keeps its budget.

Spend is checked against an independent count: the fakes record every request they received, and
the expected charge is computed here from those requests, not read back from delegate.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio
import pytest
from _ledgers import capture_ledgers, run_scope

from delegate.agents.agent import Agent
from delegate.agents.limits import Budget
from delegate.agents.models import LiteLLMModel, ModelRequest, Price
from delegate.agents.tokens import count_pieces_messages
from delegate.errors import (
    ModelSetupError,
    ModelTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    from_litellm,
)
from delegate.orchestrator.budget import NANOS_PER_USD
from delegate.orchestrator.events import Event
from delegate.orchestrator.graph import TaskGraph
from delegate.orchestrator.run import Orchestrator
from delegate.orchestrator.scheduler import RetryPolicy
from delegate.testing import FunctionModel, ScriptedModel

pytestmark = pytest.mark.anyio

PRICE = Price(1.0, 4.0)  # USD per million tokens, for the fakes below
CAP = 500  # the agents' max_output_tokens: what a call reserves for its answer


def _reserved_usd(request: ModelRequest, model: str = "function") -> float:
    """What a request reserved, computed here from what the model received."""
    # As the fakes count (`count_tokens`), and so the gate does.
    tokens = count_pieces_messages(request.messages, model, request.tools, request.output_schema)
    assert request.max_output_tokens is not None
    nanos = math.ceil(PRICE.cost(tokens, request.max_output_tokens) * NANOS_PER_USD)
    return nanos / NANOS_PER_USD


def _fake(script: list[Any], **kwargs: Any) -> ScriptedModel:
    return ScriptedModel(
        script, input_price=PRICE.input_per_mtok, output_price=PRICE.output_per_mtok, **kwargs
    )


def _one_task(model: Any, **agent: Any) -> TaskGraph:
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model, max_output_tokens=CAP, **agent), prompt="Go.")
    return graph


NO_RETRY = RetryPolicy(max_retries=0)


@pytest.mark.parametrize(
    "error",
    [
        ModelTimeoutError("timed out", model="function"),
        ProviderUnavailableError("502 bad gateway", model="function"),
    ],
    ids=["timeout", "5xx"],
)
async def test_a_call_that_may_have_been_processed_is_charged_at_its_reservation(
    error: Exception,
) -> None:
    model = _fake([error])
    events: list[Event] = []
    orchestrator = Orchestrator(retry=NO_RETRY)
    orchestrator.subscribe(events.append)
    with capture_ledgers() as ledgers:
        result = await orchestrator.execute(_one_task(model), budget=Budget(usd=1.0))

    [request] = model.requests
    reserved = _reserved_usd(request, model.name)
    task = result.tasks["t"]
    assert task.status == "failed"
    assert (task.usage.calls, task.usage.output_tokens) == (1, CAP)
    assert task.usage.cost_usd == task.usage.unconfirmed_usd == reserved
    assert task.model == "scripted"  # a failed task still names the model it called
    assert (result.usage.calls, result.usage.cost_usd, result.usage.unconfirmed_usd) == (
        1,
        reserved,
        reserved,
    )
    # What the ledger charged is what the user is shown.
    scope = run_scope(ledgers[0])
    assert scope.spent_usd == reserved
    assert (scope.reserved_usd_nanos, scope.spent_calls) == (0, 1)
    [failed] = [e for e in events if e.kind == "task_failed"]
    assert failed.usage == task.usage  # type: ignore[attr-defined]
    [finished] = [e for e in events if e.kind == "run_finished"]
    assert finished.usage.cost_usd == reserved  # type: ignore[attr-defined]


async def test_a_custom_model_that_breaks_after_sending_is_charged_and_ends_the_run() -> None:
    model = _fake([RuntimeError("a custom Model broke after sending")])
    with (
        capture_ledgers() as ledgers,
        pytest.raises(RuntimeError, match="a custom Model broke after sending"),
    ):
        # A bug, not a model error: the run ends with it (tests/test_errors_propagate.py).
        await Orchestrator(retry=NO_RETRY).execute(_one_task(model), budget=Budget(usd=1.0))

    [request] = model.requests
    scope = run_scope(ledgers[0])
    assert scope.spent_usd == _reserved_usd(request, model.name)  # it may have been processed
    assert (scope.reserved_usd_nanos, scope.spent_calls) == (0, 1)


async def test_a_refused_request_is_one_call_and_no_money() -> None:
    model = _fake([RateLimitError("429", model="function", retry_after=0)])
    with capture_ledgers() as ledgers:
        result = await Orchestrator(retry=NO_RETRY).execute(
            _one_task(model), budget=Budget(usd=1.0)
        )

    usage = result.tasks["t"].usage
    assert (usage.calls, usage.total_tokens, usage.cost_usd, usage.unconfirmed_usd) == (1, 0, 0, 0)
    scope = run_scope(ledgers[0])
    assert (scope.spent_calls, scope.spent_usd_nanos, scope.reserved_calls) == (1, 0, 0)


async def test_a_request_that_never_left_is_free() -> None:
    refused = ProviderUnavailableError("connection refused", model="function", delivery="not_sent")
    model = _fake([refused])
    with capture_ledgers() as ledgers:
        result = await Orchestrator(retry=NO_RETRY).execute(
            _one_task(model), budget=Budget(usd=1.0, calls=5)
        )

    assert result.tasks["t"].usage.calls == 0
    assert result.usage.calls == 0
    scope = run_scope(ledgers[0])
    assert (scope.spent_calls, scope.spent_usd_nanos, scope.reserved_calls) == (0, 0, 0)


async def test_a_calls_budget_counts_429s_and_timeouts_as_requests_sent() -> None:
    # Every request fails transiently; each is a request that left the process.
    errors: list[Any] = [
        RateLimitError("429", model="function", retry_after=0),
        ModelTimeoutError("timed out", model="function"),
    ] * 10
    model = _fake(errors)
    graph = TaskGraph()
    agent = Agent("w", model, max_output_tokens=CAP)
    for index in range(5):
        graph.add(f"t{index}", agent=agent, prompt="Go.")
    retry = RetryPolicy(max_retries=3, base_delay=0, max_delay=0)

    result = await Orchestrator(retry=retry).execute(graph, budget=Budget(calls=3))

    assert model.calls == 3  # not 10: the budget counted every request that was sent
    assert result.usage.calls == 3
    assert result.usage.refused > 0


async def test_the_max_calls_guard_counts_failed_requests_too() -> None:
    model = _fake([RateLimitError("429", model="function", retry_after=0)] * 20)
    graph = TaskGraph()
    agent = Agent("w", model, max_output_tokens=CAP)
    for index in range(4):
        graph.add(f"t{index}", agent=agent, prompt="Go.")
    retry = RetryPolicy(max_retries=5, base_delay=0, max_delay=0)

    result = await Orchestrator(retry=retry, max_calls=6).execute(graph)

    assert model.calls == 6
    assert result.usage.calls == 6


async def test_a_call_cancelled_at_the_deadline_is_reported_where_the_ledger_charged_it(
    tmp_path: Path,
) -> None:
    slow = FunctionModel(
        lambda request: "late",
        latency=30.0,
        input_price=PRICE.input_per_mtok,
        output_price=PRICE.output_per_mtok,
    )
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    events: list[Event] = []
    orchestrator = Orchestrator(memory=url)
    orchestrator.subscribe(events.append)
    with capture_ledgers() as ledgers:
        result = await orchestrator.execute(
            _one_task(slow), budget=Budget(usd=1.0, seconds=0.5), run_id="cut"
        )

    [request] = slow.requests
    reserved = _reserved_usd(request)
    assert result.tasks["t"].status == "cancelled"
    assert (result.usage.calls, result.usage.cost_usd, result.usage.unconfirmed_usd) == (
        1,
        reserved,
        reserved,
    )
    scope = run_scope(ledgers[0])
    assert scope.spent_usd == reserved
    [finished] = [e for e in events if e.kind == "run_finished"]
    assert finished.usage.cost_usd == reserved  # type: ignore[attr-defined]
    from delegate.memory.store import Store

    with Store.open(url) as store:
        record = store.get_run("cut")
        [row] = store.get_tasks("cut")
    assert record is not None
    assert record.usage is not None
    assert (record.usage["calls"], record.usage["cost_usd"]) == (1, reserved)
    assert record.usage["unconfirmed_usd"] == reserved
    assert row.usage is not None
    assert row.usage["unconfirmed_usd"] == reserved


# -- retries -------------------------------------------------------------------------------------


async def test_a_retry_after_beyond_max_delay_ends_the_retries_with_the_reason() -> None:
    model = _fake([RateLimitError("429", model="function", retry_after=3600), "ok"])
    retry = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=30.0)

    with anyio.fail_after(10):  # it must not wait out the hour
        result = await Orchestrator(retry=retry).execute(_one_task(model))

    task = result.tasks["t"]
    assert (task.status, task.attempts, model.calls) == ("failed", 1, 1)
    assert task.error is not None
    assert "asked to wait 3600 s before retrying, more than RetryPolicy.max_delay (30 s)" in (
        task.error
    )
    assert "raise max_delay" in task.error


async def test_a_retry_that_would_end_past_the_deadline_is_not_waited_for() -> None:
    model = _fake([RateLimitError("429", model="function", retry_after=20), "ok"])
    retry = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=60.0)

    with anyio.fail_after(10):
        result = await Orchestrator(retry=retry).execute(_one_task(model), budget=Budget(seconds=5))

    task = result.tasks["t"]
    assert (task.status, model.calls) == ("failed", 1)
    assert task.error is not None
    assert "would pass the run's deadline" in task.error


def _a_fails_once(error: Exception) -> tuple[FunctionModel, list[str]]:
    """A model whose first answer to prompt "A" is `error`, and the prompts in the order asked."""
    order: list[str] = []

    def answer(request: ModelRequest) -> str:
        prompt = request.messages[-1]["content"]
        order.append(prompt)
        if order == ["A"]:
            raise error
        return prompt.lower()

    return FunctionModel(answer), order


async def test_a_task_waiting_out_a_backoff_holds_no_slot() -> None:
    model, order = _a_fails_once(RateLimitError("429", model="function", retry_after=0.2))
    graph = TaskGraph()
    agent = Agent("w", model)
    graph.add("a", agent=agent, prompt="A")
    graph.add("b", agent=agent, prompt="B")
    graph.add("c", agent=agent, prompt="C")
    retry = RetryPolicy(max_retries=1, base_delay=0.001, max_delay=5.0)

    result = await Orchestrator(retry=retry, max_concurrency=1).execute(graph)

    assert result.status == "succeeded"
    # With one slot, B and C ran while A waited out its 0.2 s backoff.
    assert order == ["A", "B", "C", "A"]
    assert result.tasks["a"].attempts == 2


async def test_an_agents_slot_is_free_while_its_task_backs_off() -> None:
    model, order = _a_fails_once(ModelTimeoutError("timed out", model="function"))
    agent = Agent("w", model, max_concurrency=1)
    graph = TaskGraph()
    graph.add("a", agent=agent, prompt="A")
    graph.add("b", agent=agent, prompt="B")
    retry = RetryPolicy(max_retries=1, base_delay=0.2, max_delay=0.2, jitter=0)

    result = await Orchestrator(retry=retry, max_concurrency=4).execute(graph)

    assert result.status == "succeeded"
    assert order == ["A", "B", "A"]


# -- setup errors --------------------------------------------------------------------------------


def _chained(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except Exception as caught:
        return caught


@pytest.mark.parametrize(
    ("inner", "words"),
    [
        (ModuleNotFoundError("No module named 'google'", name="google"), "pip install google-auth"),
        (type("NoCredentialsError", (Exception,), {})("Unable to locate credentials"), "API key"),
    ],
    ids=["sdk-missing", "no-credentials"],
)
def test_setup_errors_are_permanent_and_never_sent(inner: BaseException, words: str) -> None:
    error = from_litellm(_chained(RuntimeError("provider setup failed"), inner), model="x/y")

    assert isinstance(error, ModelSetupError)
    assert (error.retryable, error.delivery) == (False, "not_sent")
    assert words in str(error)


async def test_missing_credentials_and_unknown_models_fail_once_with_the_remedy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    # litellm stops both before connecting (the loopback address is never reached).
    no_key = LiteLLMModel("anthropic/claude-3-5-haiku-20241022", api_base="http://127.0.0.1:9")
    unknown = LiteLLMModel("no-such-model-xyz", api_base="http://127.0.0.1:9")
    graph = TaskGraph()
    graph.add("a", agent=Agent("keyless", no_key, max_output_tokens=CAP), prompt="Go.")
    graph.add("b", agent=Agent("unknown", unknown, max_output_tokens=CAP), prompt="Go.")

    result = await Orchestrator(retry=RetryPolicy(max_retries=3, base_delay=0)).execute(graph)

    a, b = result.tasks["a"], result.tasks["b"]
    assert (a.status, a.attempts, a.usage.calls) == ("failed", 1, 0)
    assert (b.status, b.attempts, b.usage.calls) == ("failed", 1, 0)
    assert a.error is not None
    assert "ANTHROPIC_API_KEY" in a.error
    assert b.error is not None
    assert "provider prefix" in b.error


async def test_a_refused_connection_is_retried_but_never_charged() -> None:
    port = _closed_port()
    model = LiteLLMModel("openai/gpt-4o-mini", api_base=f"http://127.0.0.1:{port}/v1", api_key="k")
    retry = RetryPolicy(max_retries=2, base_delay=0.001, max_delay=0.01)

    result = await Orchestrator(retry=retry).execute(
        _one_task(model), budget=Budget(usd=0.01, calls=10)
    )

    task = result.tasks["t"]
    assert (task.status, task.attempts) == ("failed", 3)  # transient: retried
    assert (task.usage.calls, result.usage.calls, result.usage.cost_usd) == (0, 0, 0.0)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- resume --------------------------------------------------------------------------------------


async def test_resume_keeps_the_budget_spent_before(tmp_path: Path) -> None:
    # The case: Budget(usd=0.03), 20 tasks one at a time; the first run stops when the
    # budget is spent, and a resume must not spend it again.
    model = FunctionModel(
        lambda request: "x " * 400,
        input_price=PRICE.input_per_mtok,
        output_price=PRICE.output_per_mtok,
    )
    graph = TaskGraph()
    agent = Agent("w", model, max_output_tokens=CAP)
    for index in range(20):
        graph.add(f"t{index}", agent=agent, prompt="Go.")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    budget = Budget(usd=0.015)

    first = await Orchestrator(memory=url, max_concurrency=1).execute(
        graph, budget=budget, run_id="r"
    )
    assert first.status == "partial"
    spent_first = first.usage.cost_usd
    assert 0 < spent_first <= 0.015
    calls_first = model.calls

    resumed = await Orchestrator(memory=url, max_concurrency=1, workers=[agent]).resume("r")

    assert model.calls == calls_first  # nothing fit: the budget was already spent
    assert resumed.usage.cost_usd == pytest.approx(spent_first, abs=1e-12)
    assert resumed.usage.calls == first.usage.calls
    assert resumed.usage.refused > first.usage.refused


async def test_a_reservation_is_in_the_store_before_its_call_is_sent(tmp_path: Path) -> None:
    from delegate.memory.store import Store

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    seen: list[list[int]] = []

    def answer(request: ModelRequest) -> str:
        # What a crash at this instant would leave: the store must already hold this call.
        with Store.open(url) as store:
            record = store.get_run("ahead")
        assert record is not None
        assert record.spend is not None
        seen.append(record.spend["scopes"]["run"])
        return "ok"

    model = FunctionModel(
        answer, input_price=PRICE.input_per_mtok, output_price=PRICE.output_per_mtok
    )
    graph = TaskGraph()
    agent = Agent("w", model, max_output_tokens=CAP)
    graph.add("a", agent=agent, prompt="Go.")
    graph.add("b", agent=agent, prompt="Go on.", deps=["a"])

    result = await Orchestrator(memory=url).execute(graph, budget=Budget(usd=1.0), run_id="ahead")

    assert result.status == "succeeded"
    first, _ = model.requests
    # [tokens, nano-dollars, calls], calls in flight at their reservation.
    assert seen[0][2] == 1
    assert seen[0][1] == math.ceil(
        PRICE.cost(count_pieces_messages(first.messages, model.name), CAP) * NANOS_PER_USD
    )
    assert seen[1][2] == 2
    with Store.open(url) as store:
        record = store.get_run("ahead")
    assert record is not None
    assert record.spend is not None
    assert record.spend["scopes"]["run"][2] == 2
    assert round(record.spend["scopes"]["run"][1]) == round(result.usage.cost_usd * NANOS_PER_USD)
