"""Streaming: `ModelRequest.on_text`, the fakes' chunked answers, and the call cache's share of it.

The wire-level tests of `LiteLLMModel`'s streaming are in test_litellm_model.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from _backends import store_url  # noqa: F401 - a fixture, used by `store`

from delegate.agents.models import ModelRequest, ModelResponse, ToolDefinition, Usage
from delegate.errors import ConfigError, RateLimitError
from delegate.memory.cache import CachedModel, cache_key
from delegate.memory.store import Store
from delegate.testing import FunctionModel, ScriptedModel, tool_call
from delegate.testing import _fakes as testing_module

pytestmark = pytest.mark.anyio

ANSWER = "The quick brown fox jumps over the lazy dog."  # 44 characters


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:  # noqa: F811 - the fixture imported above
    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()


def _request(content: str = "Tell me.", **fields: Any) -> ModelRequest:
    return ModelRequest(messages=[{"role": "user", "content": content}], **fields)


class _Timeline:
    """Records the fake's sleeps and the pieces of text, in the order they happen."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.now = 0.0  # a clock that moves only when the fake sleeps

    def on_text(self, delta: str) -> None:
        self.events.append(("text", delta))

    def current_time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.events.append(("sleep", seconds))
        self.now += seconds
        await anyio.lowlevel.checkpoint()

    async def sleep_until(self, deadline: float) -> None:
        if deadline > self.now:
            self.events.append(("sleep", round(deadline - self.now, 9)))
            self.now = deadline
        await anyio.lowlevel.checkpoint()

    @property
    def texts(self) -> list[str]:
        return [value for kind, value in self.events if kind == "text"]

    @property
    def sleeps(self) -> list[float]:
        return [value for kind, value in self.events if kind == "sleep"]


@pytest.fixture
def timeline(monkeypatch: pytest.MonkeyPatch) -> _Timeline:
    """The fakes' sleeps recorded instead of slept: timing is checked exactly, not by a clock."""
    recorded = _Timeline()
    monkeypatch.setattr(testing_module.anyio, "sleep", recorded.sleep)
    monkeypatch.setattr(testing_module.anyio, "sleep_until", recorded.sleep_until)
    monkeypatch.setattr(testing_module.anyio, "current_time", recorded.current_time)
    return recorded


def _fakes(answer: Any, **kwargs: Any) -> list[FunctionModel | ScriptedModel]:
    return [FunctionModel(lambda request: answer, **kwargs), ScriptedModel([answer], **kwargs)]


# --- the request field -------------------------------------------------------------------------


def test_on_text_is_not_part_of_a_requests_identity() -> None:
    pieces: list[str] = []
    streamed = _request(on_text=pieces.append)
    assert streamed == _request()
    assert "on_text" not in repr(streamed)
    assert dataclasses.replace(streamed, timeout=3.0).on_text == pieces.append
    assert _request().on_text is None


def test_on_text_is_not_part_of_the_cache_key() -> None:
    pieces: list[str] = []
    assert cache_key("m", _request(on_text=pieces.append)) == cache_key("m", _request())


# --- the fakes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1], ids=["FunctionModel", "ScriptedModel"])
async def test_a_fake_streams_its_text_in_chunks_between_delays(
    timeline: _Timeline, index: int
) -> None:
    model = _fakes(ANSWER, latency=0.5, chunk_size=10, chunk_delay=0.25)[index]
    response = await model.request(_request(on_text=timeline.on_text))

    assert timeline.events == [
        ("sleep", 0.5),
        ("text", "The quick "),
        ("sleep", 0.25),
        ("text", "brown fox "),
        ("sleep", 0.25),
        ("text", "jumps over"),
        ("sleep", 0.25),
        ("text", " the lazy "),
        ("sleep", 0.25),
        ("text", "dog."),
    ]
    assert response.text == ANSWER == "".join(timeline.texts)
    assert response.finish_reason == "stop"


async def test_an_unstreamed_call_waits_as_long_as_a_streamed_one(timeline: _Timeline) -> None:
    model = FunctionModel(lambda request: ANSWER, latency=0.5, chunk_size=10, chunk_delay=0.25)
    plain = await model.request(_request())
    assert timeline.events == [("sleep", 0.5), ("sleep", 1.0)]  # 5 chunks: 4 gaps after the first

    timeline.events.clear()
    streamed = await model.request(_request(on_text=timeline.on_text))
    assert sum(timeline.sleeps) == 1.5
    assert dataclasses.replace(streamed, latency=0.0) == dataclasses.replace(plain, latency=0.0)


async def test_the_default_chunks_are_16_characters_with_no_delay(timeline: _Timeline) -> None:
    await FunctionModel(lambda request: ANSWER).request(_request(on_text=timeline.on_text))
    assert timeline.texts == [ANSWER[:16], ANSWER[16:32], ANSWER[32:]]
    assert timeline.sleeps == []


async def test_streamed_usage_and_output_match_an_unstreamed_call() -> None:
    def answer(request: ModelRequest) -> dict[str, Any]:
        return {"answer": 42, "why": "six times seven"}

    model = FunctionModel(answer, input_price=1.0, output_price=2.0, chunk_size=7)
    pieces: list[str] = []
    schema = {"type": "object"}
    streamed = await model.request(_request(output_schema=schema, on_text=pieces.append))
    plain = await model.request(_request(output_schema=schema))

    assert "".join(pieces) == streamed.text == json.dumps(answer(_request()))
    assert len(pieces) == math.ceil(len(streamed.text) / 7)
    assert streamed.output == {"answer": 42, "why": "six times seven"}
    assert streamed.usage == plain.usage
    assert streamed.usage.output_tokens > 0
    assert streamed.usage.cost_usd > 0


async def test_the_answer_is_cut_at_max_output_tokens_before_it_streams() -> None:
    long_answer = " ".join(f"word{i}" for i in range(200))
    model = FunctionModel(lambda request: long_answer, chunk_size=5)
    pieces: list[str] = []
    response = await model.request(_request(max_output_tokens=10, on_text=pieces.append))

    assert response.finish_reason == "length"
    assert response.usage.output_tokens == 10
    assert "".join(pieces) == response.text
    assert len(response.text) < len(long_answer)
    assert long_answer.startswith(response.text)


async def test_tool_call_answers_are_not_streamed(timeline: _Timeline) -> None:
    search = ToolDefinition("search", "Search.", {"type": "object"})
    answer = dataclasses.replace(tool_call("search", q="anyio"), text="Let me look that up.")
    model = ScriptedModel([answer], latency=0.5, chunk_size=5, chunk_delay=0.25)
    response = await model.request(_request(tools=[search], on_text=timeline.on_text))

    assert timeline.texts == []
    assert response.tool_calls == answer.tool_calls
    assert response.text == "Let me look that up."
    assert timeline.sleeps == [0.5, 0.25 * 3]  # 20 characters: 4 chunks' time, unstreamed


async def test_an_empty_answer_streams_nothing(timeline: _Timeline) -> None:
    model = FunctionModel(lambda request: "", latency=0.5, chunk_delay=0.25)
    response = await model.request(_request(on_text=timeline.on_text))
    assert (response.text, timeline.events) == ("", [("sleep", 0.5)])


async def test_a_failing_fake_streams_nothing() -> None:
    model = ScriptedModel([RateLimitError("slow down", retry_after=1.0)], chunk_delay=0.01)
    pieces: list[str] = []
    with pytest.raises(RateLimitError):
        await model.request(_request(on_text=pieces.append))
    assert pieces == []


async def test_an_exception_in_on_text_ends_the_call_unchanged() -> None:
    def on_text(delta: str) -> None:
        raise KeyError(delta)

    with pytest.raises(KeyError, match="The quick brown "):
        await FunctionModel(lambda request: ANSWER).request(_request(on_text=on_text))


async def test_a_consumer_sees_the_first_chunk_before_the_call_returns() -> None:
    model = ScriptedModel([ANSWER], chunk_size=11, chunk_delay=0.02)
    send, receive = anyio.create_memory_object_stream[str](math.inf)
    order: list[str] = []

    async def consume() -> None:
        async with receive:
            async for delta in receive:
                order.append(f"got {delta!r}")  # noqa: PERF401 - as each arrives, not at the end

    async def call() -> None:
        async with send:
            await model.request(_request(on_text=send.send_nowait))
            order.append("returned")

    async with anyio.create_task_group() as group:
        group.start_soon(consume)
        group.start_soon(call)

    assert order[0] == "got 'The quick b'"
    assert order.index("returned") >= 3  # the consumer ran while the later chunks were due
    assert sorted(order) == sorted(
        ["returned", *(f"got {ANSWER[i : i + 11]!r}" for i in range(0, 44, 11))]
    )


def test_expected_latency_includes_the_chunk_time_of_the_longest_allowed_answer() -> None:
    model = FunctionModel(lambda request: "", latency=0.5, chunk_size=16, chunk_delay=0.01)
    # 100 tokens at 4 characters: 400 characters, 25 chunks, 24 gaps.
    assert model.expected_latency(_request(max_output_tokens=100)) == pytest.approx(0.5 + 0.24)
    assert model.expected_latency(_request()) == 0.5
    quick = FunctionModel(lambda request: "", latency=lambda request: 0.2)
    assert quick.expected_latency(_request(max_output_tokens=100)) == 0.2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_size": 0}, "chunk_size must be a whole number of characters ≥ 1, got 0"),
        ({"chunk_size": -4}, "chunk_size must be a whole number of characters ≥ 1, got -4"),
        ({"chunk_size": 2.5}, "chunk_size must be a whole number of characters ≥ 1, got 2.5"),
        ({"chunk_size": True}, "chunk_size must be a whole number of characters ≥ 1, got True"),
        ({"chunk_delay": -0.1}, "chunk_delay must be ≥ 0 seconds, got -0.1"),
    ],
)
def test_chunk_settings_are_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        FunctionModel(lambda request: "", **kwargs)
    assert str(raised.value) == message
    with pytest.raises(ConfigError):
        ScriptedModel([], **kwargs)


# --- the call cache ----------------------------------------------------------------------------


async def test_a_cache_miss_streams_from_the_model_and_a_hit_sends_the_whole_text(
    store: Store,
) -> None:
    inner = FunctionModel(lambda request: ANSWER, input_price=1.0, chunk_size=20)
    model = CachedModel(inner, store)
    missed: list[str] = []
    hit: list[str] = []

    first = await model.request(_request(on_text=missed.append))
    second = await model.request(_request(on_text=hit.append))
    third = await model.request(_request())

    assert missed == [ANSWER[:20], ANSWER[20:40], ANSWER[40:]]
    assert hit == [ANSWER]
    assert inner.calls == 1
    assert inner.requests[0].on_text == missed.append  # passed through unchanged
    assert (first.cached, second.cached, third.cached) == (False, True, True)
    assert second.text == third.text == ANSWER
    assert second.usage == Usage()


async def test_waiters_on_an_identical_call_in_flight_get_the_text_once(store: Store) -> None:
    inner = FunctionModel(lambda request: ANSWER, latency=0.05, chunk_size=30)
    model = CachedModel(inner, store)
    received: list[list[str]] = [[] for _ in range(3)]

    async with anyio.create_task_group() as group:
        for pieces in received:
            group.start_soon(model.request, _request(on_text=pieces.append))

    assert inner.calls == 1
    assert sorted(received, key=len) == [[ANSWER], [ANSWER], [ANSWER[:30], ANSWER[30:]]]


async def test_a_cached_answer_without_text_calls_on_text_never(store: Store) -> None:
    inner = ScriptedModel([tool_call("search", q="x")])
    model = CachedModel(inner, store)
    await model.request(_request())
    pieces: list[str] = []
    again = await model.request(_request(on_text=pieces.append))
    assert (again.cached, again.tool_calls != (), pieces) == (True, True, [])


async def test_the_cache_returns_what_an_unstreamed_call_returns(store: Store) -> None:
    inner = FunctionModel(lambda request: ANSWER)
    model = CachedModel(inner, store)
    pieces: list[str] = []
    await model.request(_request())
    hit: ModelResponse = await model.request(_request(on_text=pieces.append))
    plain = await model.request(_request())
    assert dataclasses.replace(hit, latency=0.0) == dataclasses.replace(plain, latency=0.0)
