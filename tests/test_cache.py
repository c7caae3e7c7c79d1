"""The model-call cache: a repeated request is answered from the store, free and marked cached."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _backends import store_url  # noqa: F401 - a fixture, used by `store`
from pydantic import BaseModel

from delegate.agents.agent import Agent
from delegate.agents.models import (
    Model,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolDefinition,
    Usage,
)
from delegate.errors import ConfigError, RateLimitError
from delegate.memory.cache import CachedModel, cache_key, response_from_json, response_to_json
from delegate.memory.store import CorruptRecordError, Store
from delegate.testing import FunctionModel, ScriptedModel, tool_call

pytestmark = pytest.mark.anyio


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:  # noqa: F811 - the fixture imported above
    """A store on each backend of the matrix: a SQLite file and, when reachable, PostgreSQL."""
    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()


def _request(content: str = "What is 2+2?", **fields: Any) -> ModelRequest:
    return ModelRequest(messages=[{"role": "user", "content": content}], **fields)


def _echo(**kwargs: Any) -> FunctionModel:
    return FunctionModel(
        lambda request: f"echo: {request.messages[-1]['content']}",
        input_price=1.0,
        output_price=2.0,
        **kwargs,
    )


# --- hits and misses ---


async def test_second_identical_request_is_a_free_hit(store: Store) -> None:
    inner = _echo()
    model = CachedModel(inner, store)

    first = await model.request(_request())
    second = await model.request(_request())

    assert inner.calls == 1
    assert first.cached is False
    assert first.usage.cost_usd > 0
    assert first.usage.calls == 1
    assert second.cached is True
    assert second.usage == Usage()
    assert (second.text, second.model, second.finish_reason) == (
        "echo: What is 2+2?",
        "function",
        "stop",
    )


async def test_an_in_process_store_caches_too() -> None:
    inner = _echo()
    store = Store.open(":memory:")
    try:
        model = CachedModel(inner, store)
        await model.request(_request())
        again = await model.request(_request())
    finally:
        store.close()
    assert (inner.calls, again.cached, again.usage) == (1, True, Usage())


async def test_the_cache_outlives_the_wrapper_and_the_process(tmp_path: Path) -> None:
    path = str(tmp_path / "cache.db")
    first_store = Store.open(path)
    try:
        await CachedModel(_echo(), first_store).request(_request())
    finally:
        first_store.close()
    inner = _echo()
    second_store = Store.open(path)
    try:
        response = await CachedModel(inner, second_store).request(_request())
    finally:
        second_store.close()
    assert (inner.calls, response.cached, response.text) == (0, True, "echo: What is 2+2?")


@pytest.mark.parametrize(
    "changed",
    [
        _request("What is 3+3?"),
        _request(temperature=0.5),
        _request(max_output_tokens=100),
        _request(reasoning_effort="high"),
        _request(output_schema={"type": "object"}),
        _request(tools=(ToolDefinition("search", "Search.", {"type": "object"}),)),
        ModelRequest(
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is 2+2?"},
            ]
        ),
    ],
)
async def test_a_different_request_misses(store: Store, changed: ModelRequest) -> None:
    inner = _echo()
    model = CachedModel(inner, store)
    await model.request(_request())
    response = await model.request(changed)
    assert inner.calls == 2
    assert response.cached is False
    assert (await model.request(changed)).cached is True
    assert inner.calls == 2


async def test_another_model_with_the_same_request_misses(store: Store) -> None:
    mini, large = _echo(name="mini"), _echo(name="large")
    await CachedModel(mini, store).request(_request())
    response = await CachedModel(large, store).request(_request())
    assert (mini.calls, large.calls, response.cached, response.model) == (1, 1, False, "large")


async def test_timeout_is_not_part_of_the_key(store: Store) -> None:
    inner = _echo()
    model = CachedModel(inner, store)
    await model.request(_request(timeout=5.0))
    assert (await model.request(_request(timeout=60.0))).cached is True
    assert inner.calls == 1


def test_cache_key_is_canonical() -> None:
    base = _request(output_schema={"a": 1, "b": {"c": 2, "d": 3}})
    reordered = _request(output_schema={"b": {"d": 3, "c": 2}, "a": 1})
    assert cache_key("m", base) == cache_key("m", reordered)
    assert len(cache_key("m", base)) == 64
    assert cache_key("m", base) != cache_key("n", base)
    # The schema's name only matters when there is a schema.
    assert cache_key("m", _request(output_name="x")) == cache_key("m", _request(output_name="y"))
    assert cache_key("m", _request(output_schema={}, output_name="x")) != cache_key(
        "m", _request(output_schema={}, output_name="y")
    )


async def test_failed_calls_are_not_cached(store: Store) -> None:
    inner = ScriptedModel([RateLimitError("slow down", model="scripted"), "ok", "never"])
    model = CachedModel(inner, store)
    with pytest.raises(RateLimitError):
        await model.request(_request())
    assert (await model.request(_request())).text == "ok"
    again = await model.request(_request())
    assert (again.cached, again.text, inner.calls) == (True, "ok", 2)


async def test_concurrent_identical_requests_make_one_call(store: Store) -> None:
    inner = _echo(latency=0.05)
    model = CachedModel(inner, store)
    responses: list[ModelResponse] = []

    async def ask() -> None:
        responses.append(await model.request(_request()))

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(ask)

    assert inner.calls == 1
    assert sorted(r.cached for r in responses) == [False, True, True, True, True]
    assert {r.text for r in responses} == {"echo: What is 2+2?"}


async def test_a_corrupt_entry_is_ignored_and_replaced(store: Store) -> None:
    inner = _echo()
    model = CachedModel(inner, store)
    key = cache_key(inner.name, _request())
    store.put_cached(key, inner.name, {"format": 1, "text": 5})

    response = await model.request(_request())
    again = await model.request(_request())

    assert (response.cached, again.cached, inner.calls) == (False, True, 1)
    assert again.text == "echo: What is 2+2?"


async def test_unkeyable_requests_bypass_the_cache(store: Store) -> None:
    inner = _echo()
    model = CachedModel(inner, store)
    odd = _request(output_schema={"bad": float("nan")})
    await model.request(odd)
    await model.request(odd)
    assert inner.calls == 2


# --- what comes back ---


class Verdict(BaseModel):
    label: str
    confidence: float


async def test_structured_output_and_tool_calls_survive_the_cache(store: Store) -> None:
    answers: list[ModelResponse | dict[str, Any]] = [
        tool_call("search", q="anyio", limit=3),
        {"label": "spam", "confidence": 0.9},
    ]
    inner = FunctionModel(lambda request: answers[len(request.messages) - 1])
    model = CachedModel(inner, store)
    tools = (ToolDefinition("search", "Search.", {"type": "object"}),)
    schema = Verdict.model_json_schema()

    calling = _request(tools=tools, output_schema=schema)
    first = await model.request(calling)
    hit = await model.request(calling)
    assert hit.tool_calls == first.tool_calls == tool_call("search", q="anyio", limit=3).tool_calls
    assert hit.finish_reason == "tool_calls"

    structured = ModelRequest(
        messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        output_schema=schema,
        tools=tools,
    )
    first = await model.request(structured)
    hit = await model.request(structured)
    assert first.output == hit.output == {"label": "spam", "confidence": 0.9}
    assert (hit.cached, inner.calls) == (True, 2)


async def test_agent_runs_twice_for_the_price_of_one(store: Store) -> None:
    inner = FunctionModel(
        lambda request: {"label": "ham", "confidence": 0.75}, input_price=3.0, output_price=6.0
    )
    agent = Agent("judge", CachedModel(inner, store), output_type=Verdict)

    first = await agent.run("Is 'hello' spam?")
    second = await agent.run("Is 'hello' spam?")

    assert first.output == second.output == Verdict(label="ham", confidence=0.75)
    assert first.usage.cost_usd > 0
    assert second.usage == Usage()
    assert inner.calls == 1


def test_name_price_and_other_attributes_pass_through(store: Store) -> None:
    inner = _echo(name="fake/mini", latency=0.25)
    model = CachedModel(inner, store)
    assert isinstance(model, Model)
    assert (model.name, model.price) == ("fake/mini", inner.price)
    assert model.expected_latency(_request()) == 0.25
    assert model.wrapped is inner
    with pytest.raises(AttributeError):
        _ = model.no_such_attribute


def test_only_models_and_model_strings_can_be_wrapped(store: Store) -> None:
    with pytest.raises(ConfigError, match=r"CachedModel wraps a Model .* got int"):
        CachedModel(42, store)  # type: ignore[arg-type]
    assert CachedModel("openai/gpt-4o-mini", store).name == "openai/gpt-4o-mini"


# --- serialization ---

_RESPONSES = [
    ModelResponse(),
    ModelResponse(
        text='{"label": "spam"}',
        output={"label": "spam", "scores": [0.5, 1e-9, None], "nested": {"ok": True}},
        usage=Usage(
            input_tokens=120,
            output_tokens=45,
            reasoning_tokens=30,
            cached_tokens=100,
            cost_usd=0.000123456789,
            calls=1,
        ),
        latency=1.2345678901234567,
        finish_reason="stop",
        model="openai/gpt-4o-mini",
    ),
    ModelResponse(
        tool_calls=(
            ToolCall("call_1", "search", '{"q": "ünï"}'),
            ToolCall("call_2", "fetch", "{}"),
        ),
        finish_reason="tool_calls",
        model="anthropic/claude-haiku-4-5",
        cached=True,
    ),
    ModelResponse(text="cut", output=None, finish_reason="length", model="m"),
]


@pytest.mark.parametrize("response", _RESPONSES)
def test_response_json_round_trip_is_exact(response: ModelResponse) -> None:
    data = response_to_json(response)
    through_text = json.loads(json.dumps(data))
    assert response_from_json(through_text) == response
    assert response_from_json(data) == response
    assert dataclasses.asdict(response_from_json(through_text)) == dataclasses.asdict(response)


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.pop("text"), "text"),
        (lambda d: d.update(text=5), "text"),
        (lambda d: d.update(format=2), "format"),
        (lambda d: d["usage"].update(input_tokens="12"), "usage.input_tokens"),
        (lambda d: d.update(tool_calls=[{"id": "x", "name": "y"}]), "tool_calls.0.arguments"),
        (lambda d: d.update(extra="field"), "extra"),
    ],
)
def test_response_from_json_rejects_other_shapes(mutate: Any, where: str) -> None:
    data = response_to_json(_RESPONSES[1])
    mutate(data)
    with pytest.raises(CorruptRecordError, match=f"stored layout: .*{where}"):
        response_from_json(data)
