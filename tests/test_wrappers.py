"""Model wrappers: fallback, retry, concurrency limits, hooks, and where each sits around the
budget gate.

Routing wrappers (fallback, retry, the call cache) are outside the gate: every request they send
is reserved, charged at its own model's price and counted as a call; a cache hit is none of
these. Pass-through wrappers (concurrency limits, hooks) are inside it: a request they hold back
and that is cancelled there is never charged. Counts come from the fakes' own request lists.
"""

from __future__ import annotations

import json
import random
from typing import Any

import anyio
import pytest

from delegate import (
    Agent,
    Budget,
    ConcurrencyLimitedModel,
    FallbackFailed,
    FallbackModel,
    InstrumentedModel,
    Model,
    ModelCall,
    ModelHooks,
    ModelRequest,
    ModelResponse,
    Orchestrator,
    Price,
    RetryModel,
    RetryPolicy,
    TaskGraph,
    Usage,
    WrapperModel,
)
from delegate.agents.retry import GiveUp
from delegate.errors import (
    BadRequestError,
    BudgetExceeded,
    ConfigError,
    Delivery,
    ModelTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)
from delegate.orchestrator import calls
from delegate.orchestrator.events import Event, TaskFailed
from delegate.testing import FunctionModel, ScriptedModel

pytestmark = pytest.mark.anyio

NO_RETRY = RetryPolicy(max_retries=0)
NO_WAIT = RetryPolicy(max_retries=2, base_delay=0, max_delay=0)


def _request(text: str = "Hi") -> ModelRequest:
    return ModelRequest([{"role": "user", "content": text}])


def _fake(script: list[Any], name: str, price: tuple[float, float] = (1.0, 4.0)) -> ScriptedModel:
    return ScriptedModel(script, name=name, input_price=price[0], output_price=price[1])


def _one_task(model: Model | str, **agent: Any) -> TaskGraph:
    graph = TaskGraph()
    graph.add("t", agent=Agent("w", model, max_output_tokens=200, **agent), prompt="Go.")
    return graph


# --- WrapperModel ------------------------------------------------------------------------------


async def test_a_wrapper_forwards_name_price_window_and_other_attributes() -> None:
    inner = FunctionModel(
        lambda r: "ok", name="fake/mini", input_price=1.0, output_price=4.0, latency=0.25
    )
    model = WrapperModel(inner)
    assert isinstance(model, Model)
    assert (model.name, model.price, model.context_window) == ("fake/mini", Price(1.0, 4.0), None)
    assert model.expected_latency(_request()) == 0.25  # any attribute of the wrapped model
    with pytest.raises(AttributeError):
        _ = model.no_such_attribute
    response = await model.request(_request())
    assert (response.text, inner.calls, inner.requests[0]) == ("ok", 1, _request())


def test_a_wrapper_of_a_model_string_has_its_context_window() -> None:
    model = WrapperModel("openai/gpt-4o-mini")
    assert model.name == "openai/gpt-4o-mini"
    assert model.context_window == 128_000  # litellm's cost map, through the LiteLLMModel


@pytest.mark.parametrize(
    "make",
    [
        lambda: WrapperModel(42),  # type: ignore[arg-type]
        lambda: RetryModel(42),  # type: ignore[arg-type]
        lambda: FallbackModel(_fake([], "a"), 42),  # type: ignore[arg-type]
        lambda: ConcurrencyLimitedModel(42, 2),  # type: ignore[arg-type]
    ],
)
def test_wrappers_take_only_models(make: Any) -> None:
    with pytest.raises(ConfigError, match=r"wraps a Model .* got int"):
        make()


def test_wrapper_arguments_are_checked() -> None:
    model = _fake([], "a")
    with pytest.raises(ConfigError, match=r"limit=\.\.\.\) must be an int ≥ 1"):
        ConcurrencyLimitedModel(model, 0)
    with pytest.raises(ConfigError, match=r"policy=\.\.\.\) must be a delegate.RetryPolicy"):
        RetryModel(model, 3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"fallback_on=\.\.\.") as caught:
        FallbackModel(model, fallback_on=(RateLimitError, "oops"))  # type: ignore[arg-type]
    assert "got (" in str(caught.value)


# --- FallbackModel -----------------------------------------------------------------------------


async def test_fallback_sends_to_the_next_model_when_one_fails() -> None:
    first = _fake([ProviderUnavailableError("502", model="a")], "a")
    second = _fake(["from b"], "b")
    model = FallbackModel(first, second)
    response = await model.request(_request())
    assert (response.text, response.model, first.calls, second.calls) == ("from b", "b", 1, 1)
    assert (model.name, model.price) == ("a", first.price)  # the first model's


async def test_when_every_model_fails_each_error_is_kept_in_order() -> None:
    errors = [
        RateLimitError("429 a", model="a", retry_after=3.0),
        RateLimitError("429 b", model="b", retry_after=1.0),
    ]
    model = FallbackModel(_fake([errors[0]], "a"), _fake([errors[1]], "b"))
    with pytest.raises(FallbackFailed) as caught:
        await model.request(_request())
    failed = caught.value
    assert failed.errors == tuple(errors)
    assert (failed.retryable, failed.retry_after, failed.delivery) == (True, 1.0, "refused")
    assert "a: 429 a; b: 429 b" in str(failed)


async def test_a_chain_that_failed_for_good_is_not_retryable() -> None:
    model = FallbackModel(
        _fake([RateLimitError("429", model="a")], "a"),
        _fake([BadRequestError("400", model="b")], "b"),
    )
    with pytest.raises(FallbackFailed) as caught:
        await model.request(_request())
    assert (caught.value.retryable, caught.value.retry_after) == (False, None)


async def test_fallback_on_says_which_errors_move_on() -> None:
    first = _fake([BadRequestError("400", model="a")], "a")
    second = _fake(["b"], "b")
    with pytest.raises(BadRequestError):
        await FallbackModel(first, second, fallback_on=RateLimitError).request(_request())
    assert second.calls == 0
    first = _fake([BadRequestError("400", model="a")], "a")
    model = FallbackModel(first, second, fallback_on=lambda exc: "400" in str(exc))
    assert (await model.request(_request())).text == "b"


async def test_a_budget_refusal_never_falls_back() -> None:
    refusal = BudgetExceeded("no", scope="run", limit=1, spent=1, requested=1, unit="calls")
    second = _fake(["b"], "b")
    with pytest.raises(BudgetExceeded):
        await FallbackModel(_fake([refusal], "a"), second).request(_request())
    assert second.calls == 0


async def test_in_a_run_each_model_of_the_chain_is_charged_at_its_own_price() -> None:
    first = _fake([RateLimitError("429", model="a")], "a", price=(1.0, 4.0))
    second = _fake(["answer"], "b", price=(3.0, 15.0))
    orchestrator = Orchestrator(retry=NO_RETRY, prices={"b": (10.0, 40.0)})
    result = await orchestrator.execute(
        _one_task(FallbackModel(first, second)), budget=Budget(usd=1.0)
    )
    assert result.status == "succeeded"
    answered = second.requests[0]
    tokens = result.usage.by_model["b"]
    assert result.usage.by_model["a"] == Usage(calls=1)  # a 429: one call, no tokens
    assert tokens.calls == 1
    assert tokens.cost_usd == pytest.approx(
        Price(10.0, 40.0).cost(tokens.input_tokens, tokens.output_tokens)
    )
    assert answered.max_output_tokens == 200  # admitted by the gate like any request
    assert (result.usage.calls, result.tasks["t"].model) == (2, "b")  # the model that answered


async def test_in_a_run_every_request_of_the_chain_counts_against_max_calls() -> None:
    first = _fake([RateLimitError("429", model="a")], "a")
    second = _fake(["answer"], "b")
    result = await Orchestrator(retry=NO_RETRY, max_calls=1).execute(
        _one_task(FallbackModel(first, second))
    )
    assert result.status == "failed"
    assert "max_calls=1" in (result.tasks["t"].error or "")
    assert (first.calls, second.calls, result.usage.calls) == (1, 0, 1)


class _SmallWindow(WrapperModel):
    @property
    def context_window(self) -> int:
        return 2


async def test_a_prompt_too_long_for_one_model_goes_to_the_next_unsent_and_free() -> None:
    small = _fake(["never"], "small")
    large = _fake(["fits"], "large")
    model = FallbackModel(_SmallWindow(small), large)
    result = await Orchestrator().execute(_one_task(model), budget=Budget(usd=1.0))
    assert result.output == "fits"
    assert (small.calls, large.calls, result.usage.calls) == (0, 1, 1)
    assert "small" not in result.usage.by_model


# --- RetryModel and the one RetryPolicy ---------------------------------------------------------


async def test_retry_model_retries_transient_errors() -> None:
    inner = _fake(
        [RateLimitError("429", model="m", retry_after=0), ModelTimeoutError("slow"), "ok"], "m"
    )
    response = await RetryModel(inner, NO_WAIT).request(_request())
    assert (response.text, inner.calls) == ("ok", 3)


async def test_retry_model_gives_up_after_max_retries_with_the_last_error() -> None:
    inner = _fake([ModelTimeoutError("first"), ModelTimeoutError("second"), "ok"], "m")
    policy = RetryPolicy(max_retries=1, base_delay=0, max_delay=0)
    with pytest.raises(ModelTimeoutError, match=r"^second$"):
        await RetryModel(inner, policy).request(_request())
    assert inner.calls == 2


async def test_retry_model_does_not_retry_permanent_errors() -> None:
    inner = _fake([BadRequestError("400"), "ok"], "m")
    with pytest.raises(BadRequestError):
        await RetryModel(inner, NO_WAIT).request(_request())
    assert inner.calls == 1


async def test_retry_model_does_not_wait_out_a_retry_after_beyond_max_delay() -> None:
    inner = _fake([RateLimitError("429", model="m", retry_after=3600), "ok"], "m")
    with pytest.raises(RateLimitError, match=r"asked to wait 3600 s .*max_delay \(30 s\)"):
        await RetryModel(inner, RetryPolicy(max_retries=3)).request(_request())
    assert inner.calls == 1


async def test_retry_model_never_waits_past_the_run_deadline() -> None:
    inner = _fake([RateLimitError("429", model="m", retry_after=20), "ok"], "m")
    model = RetryModel(inner, RetryPolicy(max_retries=3, max_delay=60))
    result = await Orchestrator(retry=NO_RETRY).execute(_one_task(model), budget=Budget(seconds=5))
    assert result.status == "failed"
    assert "would pass the run's deadline" in (result.tasks["t"].error or "")
    assert inner.calls == 1


async def test_in_a_run_each_attempt_is_a_call_under_max_calls() -> None:
    inner = _fake([RateLimitError("429", model="m")] * 3 + ["ok"], "m")
    model = RetryModel(inner, RetryPolicy(max_retries=5, base_delay=0, max_delay=0))
    result = await Orchestrator(retry=NO_RETRY, max_calls=2).execute(_one_task(model))
    assert result.status == "failed"
    assert "max_calls=2" in (result.tasks["t"].error or "")
    assert (inner.calls, result.usage.calls, result.usage.by_model["m"]) == (2, 2, Usage(calls=2))


def test_attempts_are_numbered_from_one_everywhere() -> None:
    policy = RetryPolicy(max_retries=2, base_delay=1.0, max_delay=10.0, jitter=0.0)
    rng = random.Random(0)
    error = ModelTimeoutError("slow")
    assert [policy.decide(error, attempt, rng) for attempt in (1, 2, 3)] == [1.0, 2.0, GiveUp()]
    assert policy.decide(error, 1, rng, max_retries=0) == GiveUp()
    assert policy.decide(BadRequestError("400"), 1, rng) == GiveUp()
    assert policy.decide(RateLimitError("429", retry_after=5.0), 1, rng) == 5.0


def test_a_give_up_says_why_when_the_error_does_not() -> None:
    policy = RetryPolicy(max_retries=3, max_delay=30.0)
    decision = policy.decide(RateLimitError("429", retry_after=60.0), 1, random.Random(0))
    assert isinstance(decision, GiveUp)
    assert decision.describe("429").startswith("429 — the provider asked to wait 60 s")
    assert GiveUp().describe("400") == "400"


async def test_policy_call_retries_and_tells_each_retry() -> None:
    outcomes: list[Exception | str] = [ModelTimeoutError("a"), ModelTimeoutError("b"), "done"]
    told: list[tuple[str, int, float]] = []

    async def attempt() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    answer = await NO_WAIT.call(
        attempt, rng=random.Random(0), on_retry=lambda e, n, d: told.append((str(e), n, d))
    )
    assert (answer, told) == ("done", [("a", 1, 0.0), ("b", 2, 0.0)])


def _reasoner(failures: dict[str, list[Exception]]) -> FunctionModel:
    """A planner's model: a one-task plan, then "FINAL"; each kind fails first as given."""
    plan = {"tasks": [{"id": "a", "agent": "scout", "instructions": "Do a."}]}

    def answer(request: ModelRequest) -> str:
        kind = "plan" if request.output_name == "Plan" else "answer"
        if failures.get(kind):
            raise failures[kind].pop(0)
        return json.dumps(plan) if kind == "plan" else "FINAL"

    return FunctionModel(answer, name="reasoner")


def _planned(model: FunctionModel, policy: RetryPolicy) -> Orchestrator:
    return Orchestrator(
        planner=Agent("planner", model),
        workers=[Agent("scout", _fake(["done"], "mini"))],
        memory=None,
        retry=policy,
    )


async def test_the_planner_and_the_final_answer_retry_with_the_one_policy() -> None:
    model = _reasoner(
        {
            "plan": [RateLimitError("429", retry_after=0), ModelTimeoutError("slow")],
            "answer": [ProviderUnavailableError("503", delivery="refused")],
        }
    )
    result = await _planned(model, NO_WAIT).run("Do the thing.")
    assert (result.status, result.output) == ("succeeded", "FINAL")
    assert model.calls == 3 + 2  # the plan: 2 failures, then it; the answer: 1 failure, then it


async def test_the_planners_retries_end_where_the_policy_says() -> None:
    model = _reasoner({"plan": [ModelTimeoutError("slow 1"), ModelTimeoutError("slow 2")]})
    policy = RetryPolicy(max_retries=1, base_delay=0, max_delay=0)
    result = await _planned(model, policy).run("Do the thing.")
    assert result.status == "failed"
    assert "slow 2" in (result.error or "")
    assert model.calls == 2  # attempt 1 and its one retry


async def test_a_final_answer_that_cannot_wait_says_why() -> None:
    model = _reasoner({"plan": [], "answer": [RateLimitError("429", retry_after=3600)]})
    result = await _planned(model, RetryPolicy(max_retries=2)).run("Do the thing.")
    assert result.output is None
    assert "the final answer failed: 429 — the provider asked to wait 3600 s" in (
        result.error or ""
    )


# --- ConcurrencyLimitedModel -------------------------------------------------------------------


def _held(name: str, release: anyio.Event) -> FunctionModel:
    async def answer(request: ModelRequest) -> str:
        await release.wait()
        return "done"

    return FunctionModel(answer, name=name)


async def test_at_most_limit_requests_reach_the_model_shared_by_every_agent() -> None:
    release = anyio.Event()
    inner = _held("m", release)
    model = ConcurrencyLimitedModel(inner, 2)
    agents = [Agent("a", model), Agent("b", model)]
    async with anyio.create_task_group() as group:
        for n in range(6):
            group.start_soon(agents[n % 2].run, f"q{n}")
        await anyio.wait_all_tasks_blocked()
        assert inner.calls == 2  # four wait their turn
        release.set()
    assert inner.calls == 6


async def test_one_capacity_limiter_shared_by_two_models() -> None:
    release = anyio.Event()
    limiter = anyio.CapacityLimiter(1)
    first, second = _held("a", release), _held("b", release)
    models = [ConcurrencyLimitedModel(first, limiter), ConcurrencyLimitedModel(second, limiter)]
    async with anyio.create_task_group() as group:
        for n in range(4):
            group.start_soon(models[n % 2].request, _request())
        await anyio.wait_all_tasks_blocked()
        assert first.calls + second.calls == 1
        release.set()
    assert (first.calls, second.calls) == (2, 2)


async def test_a_request_cancelled_while_it_waits_for_a_slot_is_not_charged() -> None:
    release = anyio.Event()

    async def answer_hold(request: ModelRequest) -> str:
        await release.wait()
        return "held"

    inner = FunctionModel(answer_hold, name="m", input_price=1.0, output_price=4.0)
    agent = Agent("w", ConcurrencyLimitedModel(inner, 1), max_output_tokens=200)
    graph = TaskGraph()
    graph.add("hold", agent=agent, prompt="hold the slot")
    graph.add("late", agent=agent, prompt="wait for it", timeout=0.05, retries=0)

    def on_event(event: Event) -> None:
        if isinstance(event, TaskFailed) and event.task_id == "late":
            release.set()  # the late task gave up while queued: now let the first one finish

    orchestrator = Orchestrator(on_event=on_event)
    result = await orchestrator.execute(graph, budget=Budget(usd=1.0))
    late = result.tasks["late"]
    assert (result.tasks["hold"].status, late.status) == ("succeeded", "failed")
    assert late.usage == Usage()  # released: never sent, so neither a call nor unconfirmed spend
    assert (inner.calls, result.usage.calls, result.usage.unconfirmed_usd) == (1, 1, 0.0)


# --- the call cache, outside the gate ----------------------------------------------------------


async def test_a_cache_hit_reserves_nothing_and_is_not_a_call() -> None:
    inner = _fake(["answer"], "m")
    graph = TaskGraph()
    agent = Agent("w", inner, max_output_tokens=200)
    graph.add("first", agent=agent, prompt="Same question.")
    graph.add("again", agent=agent, prompt="Same question.")
    async with Orchestrator(memory=":memory:", cache=True, max_concurrency=1) as orchestrator:
        # One call is all the budget allows: the hit needs none.
        result = await orchestrator.execute(graph, budget=Budget(calls=1))
    assert [task.status for task in result.tasks.values()] == ["succeeded", "succeeded"]
    assert (inner.calls, result.usage.calls, result.usage.cache_hits) == (1, 1, 1)
    assert result.tasks["again"].usage == Usage()
    assert result.tasks["again"].model == "m"


async def test_a_cached_fallback_chain_answers_again_without_any_request() -> None:
    first = _fake([ProviderUnavailableError("502", model="a")], "a")
    second = _fake(["from b"], "b")
    agent = Agent("w", FallbackModel(first, second), max_output_tokens=200)
    graph = TaskGraph()
    graph.add("first", agent=agent, prompt="Same question.")
    graph.add("again", agent=agent, prompt="Same question.")
    async with Orchestrator(
        memory=":memory:", cache=True, max_concurrency=1, retry=NO_RETRY
    ) as orchestrator:
        result = await orchestrator.execute(graph)
    assert result.output == {"first": "from b", "again": "from b"}
    assert (first.calls, second.calls, result.usage.calls, result.usage.cache_hits) == (1, 1, 2, 1)


# --- hooks --------------------------------------------------------------------------------------


class _Recorder(ModelHooks):
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def before(self, call: ModelCall) -> None:
        self.seen.append(("before", call.model, call.agent, call.task_id))

    def after(self, call: ModelCall, response: ModelResponse, latency: float) -> None:
        assert latency >= 0
        self.seen.append(("after", call.model, response.usage.calls, response.usage.cost_usd))

    def error(self, call: ModelCall, error: BaseException, delivery: Delivery) -> None:
        self.seen.append(("error", call.model, type(error).__name__, delivery))


async def test_orchestrator_hooks_see_every_request_with_its_agent_task_and_charge() -> None:
    first = _fake([RateLimitError("429", model="a")], "a")
    second = _fake(["answer"], "b")
    recorder = _Recorder()
    orchestrator = Orchestrator(retry=NO_RETRY, hooks=[recorder], prices={"b": (10.0, 40.0)})
    result = await orchestrator.execute(_one_task(FallbackModel(first, second)))
    charged = result.usage.by_model["b"]
    assert recorder.seen == [
        ("before", "a", "w", "t"),
        ("error", "a", "RateLimitError", "refused"),
        ("before", "b", "w", "t"),
        ("after", "b", 1, charged.cost_usd),  # as the gate charged it, at the override price
    ]


async def test_instrumented_model_calls_its_hooks_around_each_request() -> None:
    recorder = _Recorder()
    inner = _fake(["ok", ModelTimeoutError("slow", model="m")], "m", price=(0.0, 0.0))
    model = InstrumentedModel(inner, recorder)
    await model.request(_request())
    with pytest.raises(ModelTimeoutError):
        await model.request(_request())
    assert recorder.seen == [
        ("before", "m", None, None),
        ("after", "m", 1, 0.0),
        ("before", "m", None, None),
        ("error", "m", "ModelTimeoutError", "unknown"),
    ]


async def test_in_a_run_an_instrumented_model_knows_its_agent_and_task() -> None:
    recorder = _Recorder()
    model = InstrumentedModel(_fake(["ok"], "m"), [recorder])
    await Orchestrator().execute(_one_task(model))
    assert recorder.seen[0] == ("before", "m", "w", "t")


class _Refuses(ModelHooks):
    def before(self, call: ModelCall) -> None:
        raise ConfigError("not this one")


async def test_a_hook_that_refuses_a_request_fails_it_unsent_and_free() -> None:
    inner = _fake(["ok"], "m")
    result = await Orchestrator(hooks=[_Refuses()], retry=NO_RETRY).execute(
        _one_task(inner), budget=Budget(usd=1.0)
    )
    assert result.tasks["t"].error == "not this one"
    assert (inner.calls, result.usage.calls, result.usage.cost_usd) == (0, 0, 0.0)


async def test_without_hooks_nothing_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> None:
        raise AssertionError("hooks were called without hooks")

    monkeypatch.setattr(calls, "start_call", refuse)
    result = await Orchestrator().execute(_one_task(_fake(["ok"], "m")))
    assert result.output == "ok"


def test_hooks_must_be_model_hooks() -> None:
    with pytest.raises(ConfigError, match=r"hooks must be delegate\.ModelHooks instances"):
        Orchestrator(hooks=[print])  # type: ignore[list-item]
