"""LiteLLMModel on the wire, against a fake OpenAI server on 127.0.0.1; its price; its logs.

Every request goes through real litellm and the real OpenAI SDK to `_fake_openai_server`, so what
is checked is what a provider would receive and how its answers and errors come back.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
import structlog
from _fake_openai_server import (
    FakeOpenAIServer,
    completion,
    context_length_exceeded,
    rate_limited,
    server_error,
    stream_error,
    unauthorized,
)
from structlog.testing import capture_logs

from delegate import _log
from delegate.agents import _costmap
from delegate.agents import models as models_module
from delegate.agents.models import (
    LiteLLMModel,
    Message,
    ModelRequest,
    Price,
    ToolCall,
    ToolDefinition,
    Usage,
    resolve_model,
)
from delegate.agents.tokens import count_messages, count_text
from delegate.errors import (
    AuthenticationError,
    ConfigError,
    ContextWindowExceededError,
    ModelRequestsBlocked,
    ModelTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)
from delegate.testing import FunctionModel, block_model_requests

pytestmark = pytest.mark.anyio

SECRET = "sk-test-secret"
HELLO: list[Message] = [{"role": "user", "content": "Hello?"}]
SEARCH = ToolDefinition(
    name="search",
    description="Search the web.",
    parameters={"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
)
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
}


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def model(server: FakeOpenAIServer) -> LiteLLMModel:
    return LiteLLMModel("openai/gpt-4o-mini", api_base=server.base_url, api_key=SECRET)


# --- what is sent ------------------------------------------------------------------------------


async def test_request_body_carries_messages_limits_tools_and_schema(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    messages: list[Message] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 6 × 7?"},
    ]
    server.script(completion('{"answer": 42}'))
    await model.request(
        ModelRequest(
            messages,
            output_schema=ANSWER_SCHEMA,
            output_name="answer",
            tools=[SEARCH],
            max_output_tokens=50,
            temperature=0.2,
        )
    )

    assert len(server.requests) == 1
    sent = server.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.body["messages"] == messages
    assert sent.body["max_tokens"] == 50
    assert sent.body["temperature"] == 0.2
    assert sent.body["tools"] == [SEARCH.to_openai()]
    assert sent.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": False},
    }
    assert "stream" not in sent.body or sent.body["stream"] is False


async def test_optional_fields_are_not_sent_when_unset(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    await model.request(ModelRequest(HELLO))
    body = server.bodies[0]
    assert body == {"model": "gpt-4o-mini", "messages": HELLO}


async def test_reasoning_effort_is_not_sent_to_a_model_without_reasoning(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    # litellm raises UnsupportedParamsError if gpt-4o-mini is sent reasoning_effort.
    response = await model.request(ModelRequest(HELLO, reasoning_effort="high"))
    assert response.text == "Hello!"
    assert "reasoning_effort" not in server.bodies[0]


async def test_reasoning_effort_is_sent_to_a_reasoning_model_and_temperature_dropped(
    server: FakeOpenAIServer,
) -> None:
    o3 = LiteLLMModel("openai/o3-mini", api_base=server.base_url, api_key=SECRET)
    await o3.request(ModelRequest(HELLO, reasoning_effort="low", temperature=0.3))
    body = server.bodies[0]
    assert body["model"] == "o3-mini"
    assert body["reasoning_effort"] == "low"
    assert "temperature" not in body  # o-series models reject it; drop_params removes it


async def test_extra_litellm_arguments_reach_the_provider(server: FakeOpenAIServer) -> None:
    model = LiteLLMModel(
        "openai/gpt-4o-mini",
        api_base=server.base_url,
        api_key=SECRET,
        seed=7,
        extra_headers={"X-Trace": "abc"},
    )
    await model.request(ModelRequest(HELLO))
    assert server.requests[0].body["seed"] == 7
    assert server.requests[0].headers["x-trace"] == "abc"


def test_arguments_delegate_controls_cannot_be_overridden() -> None:
    with pytest.raises(ConfigError) as raised:
        LiteLLMModel("openai/gpt-4o-mini", num_retries=3, stream=True)
    assert str(raised.value) == (
        "model 'openai/gpt-4o-mini': num_retries, stream cannot be passed as extra litellm "
        "arguments; use LiteLLMModel's own parameters or the ModelRequest's fields (retries "
        "belong to delegate's scheduler)"
    )


@pytest.mark.parametrize("bad", ["", "   "])
def test_an_empty_model_name_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="not a litellm model string"):
        LiteLLMModel(bad)


def test_a_non_positive_timeout_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"timeout must be > 0 seconds, got 0"):
        LiteLLMModel("openai/gpt-4o-mini", timeout=0)


# --- what comes back ---------------------------------------------------------------------------


async def test_usage_reasoning_cached_tokens_and_cost_are_parsed(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(
        completion(
            "Hi there.",
            prompt_tokens=1000,
            completion_tokens=200,
            reasoning_tokens=50,
            cached_tokens=400,
        )
    )
    response = await model.request(ModelRequest(HELLO))

    assert response.text == "Hi there."
    assert response.output is None
    assert response.tool_calls == ()
    assert response.finish_reason == "stop"
    assert response.model == "openai/gpt-4o-mini"
    assert response.cached is False
    assert response.latency > 0
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.calls) == (1000, 200, 1)
    assert (usage.reasoning_tokens, usage.cached_tokens) == (50, 400)
    # gpt-4o-mini: $0.15 / Mtok input, $0.075 cached input, $0.60 output.
    assert usage.cost_usd == pytest.approx((600 * 0.15 + 400 * 0.075 + 200 * 0.60) / 1e6)


async def test_unknown_price_costs_nothing_rather_than_guessing(server: FakeOpenAIServer) -> None:
    model = LiteLLMModel("openai/my-finetune", api_base=server.base_url, api_key=SECRET)
    assert model.price is None
    response = await model.request(ModelRequest(HELLO))
    assert response.usage.input_tokens == 12
    assert response.usage.cost_usd == 0.0


async def test_structured_output_is_parsed_into_output(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(completion('{"answer": 42}'), completion("not json {"))
    good = await model.request(ModelRequest(HELLO, output_schema=ANSWER_SCHEMA))
    bad = await model.request(ModelRequest(HELLO, output_schema=ANSWER_SCHEMA))
    assert good.output == {"answer": 42}
    assert good.text == '{"answer": 42}'
    assert bad.output is None
    assert bad.text == "not json {"


async def test_tool_calls_are_parsed_in_order(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(
        completion(
            None,
            tool_calls=[("call_1", "search", {"q": "anyio"}), ("call_2", "search", {"q": "trio"})],
            finish_reason="tool_calls",
        )
    )
    response = await model.request(ModelRequest(HELLO, tools=[SEARCH]))
    assert response.text == ""
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls == (
        ToolCall(id="call_1", name="search", arguments='{"q": "anyio"}'),
        ToolCall(id="call_2", name="search", arguments='{"q": "trio"}'),
    )


async def test_a_cut_answer_reports_length(server: FakeOpenAIServer, model: LiteLLMModel) -> None:
    server.script(completion("Once upon a", finish_reason="length", completion_tokens=3))
    response = await model.request(ModelRequest(HELLO, max_output_tokens=3))
    assert (response.text, response.finish_reason) == ("Once upon a", "length")
    assert server.bodies[0]["max_tokens"] == 3


# --- errors ------------------------------------------------------------------------------------


async def test_a_500_is_sent_once_and_maps_to_provider_unavailable(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    # The default reply after the script is a success: a retry inside litellm or the OpenAI SDK
    # would turn this call into a success and the test would fail.
    server.script(server_error())
    with pytest.raises(ProviderUnavailableError) as raised:
        await model.request(ModelRequest(HELLO))
    assert len(server.requests) == 1
    assert raised.value.retryable is True
    assert raised.value.model == "openai/gpt-4o-mini"
    assert "The server had an error while processing your request." in str(raised.value)


async def test_a_429_maps_to_rate_limit_with_retry_after(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(rate_limited(retry_after=7))
    with pytest.raises(RateLimitError) as raised:
        await model.request(ModelRequest(HELLO))
    assert len(server.requests) == 1
    assert raised.value.retry_after == 7
    assert raised.value.retryable is True


async def test_a_401_maps_to_authentication_error(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(unauthorized())
    with pytest.raises(AuthenticationError) as raised:
        await model.request(ModelRequest(HELLO))
    assert len(server.requests) == 1
    assert raised.value.retryable is False
    assert "Incorrect API key provided." in str(raised.value)
    assert "API key" in str(raised.value).rpartition("—")[2]  # the remedy


async def test_context_length_exceeded_maps_to_context_window_error(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(context_length_exceeded())
    with pytest.raises(ContextWindowExceededError) as raised:
        await model.request(ModelRequest(HELLO))
    assert len(server.requests) == 1
    assert raised.value.retryable is False
    assert "maximum context length is 128000 tokens" in str(raised.value)


async def test_a_slow_answer_maps_to_model_timeout(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(completion(delay=10))
    started = time.perf_counter()
    with pytest.raises(ModelTimeoutError) as raised:
        await model.request(ModelRequest(HELLO, timeout=0.3))
    assert time.perf_counter() - started < 5
    assert raised.value.retryable is True
    assert len(server.requests) == 1


async def test_the_models_own_timeout_applies_when_the_request_sets_none(
    server: FakeOpenAIServer,
) -> None:
    model = LiteLLMModel(
        "openai/gpt-4o-mini", api_base=server.base_url, api_key=SECRET, timeout=0.3
    )
    server.script(completion(delay=10))
    with pytest.raises(ModelTimeoutError):
        await model.request(ModelRequest(HELLO))
    assert len(server.requests) == 1


async def test_cancellation_propagates_untouched(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    await model.request(ModelRequest(HELLO))  # litellm imported and warm
    server.script(completion(delay=10))
    started = time.perf_counter()
    with anyio.move_on_after(0.3) as scope:
        await model.request(ModelRequest(HELLO))
    assert scope.cancelled_caught  # not turned into a ModelError, not swallowed
    assert time.perf_counter() - started < 5


# --- streaming ---------------------------------------------------------------------------------


async def test_a_streamed_answer_reaches_on_text_piece_by_piece(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(
        completion(
            "Sodium-ion cells are cheaper.",
            chunks=["Sodium", "-ion cells", " are", " cheaper."],
            prompt_tokens=1000,
            completion_tokens=200,
            cached_tokens=400,
            finish_reason="stop",
        )
    )
    pieces: list[str] = []
    response = await model.request(ModelRequest(HELLO, on_text=pieces.append))

    assert pieces == ["Sodium", "-ion cells", " are", " cheaper."]
    assert response.text == "Sodium-ion cells are cheaper."
    assert (response.finish_reason, response.model, response.output) == (
        "stop",
        "openai/gpt-4o-mini",
        None,
    )
    assert response.tool_calls == ()
    assert response.latency > 0
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.calls) == (
        1000,
        200,
        400,
        1,
    )
    assert usage.cost_usd == pytest.approx((600 * 0.15 + 400 * 0.075 + 200 * 0.60) / 1e6)
    body = server.bodies[0]
    assert (body["stream"], body["stream_options"]) == (True, {"include_usage": True})
    assert len(server.requests) == 1


async def test_a_streamed_answer_returns_what_an_unstreamed_one_does(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    reply = completion("Once upon a", finish_reason="length", completion_tokens=3)
    server.script(reply, reply)
    pieces: list[str] = []
    streamed = await model.request(ModelRequest(HELLO, max_output_tokens=3, on_text=pieces.append))
    plain = await model.request(ModelRequest(HELLO, max_output_tokens=3))
    assert pieces == ["Once ", "upon ", "a"]
    assert streamed.finish_reason == "length"
    assert (streamed.text, streamed.usage) == (plain.text, plain.usage)
    assert [body.get("stream") for body in server.bodies] == [True, None]


async def test_a_streamed_structured_answer_is_parsed(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(
        completion('{"answer": 42}', chunks=['{"ans', 'wer": ', "4", "2}"]),
        completion("not json {", chunks=["not ", "json {"]),
    )
    pieces: list[str] = []
    good = await model.request(
        ModelRequest(HELLO, output_schema=ANSWER_SCHEMA, on_text=pieces.append)
    )
    bad = await model.request(ModelRequest(HELLO, output_schema=ANSWER_SCHEMA, on_text=print))
    assert pieces == ['{"ans', 'wer": ', "4", "2}"]
    assert (good.text, good.output) == ('{"answer": 42}', {"answer": 42})
    assert (bad.text, bad.output) == ("not json {", None)
    assert server.bodies[0]["response_format"]["json_schema"]["schema"] == ANSWER_SCHEMA


async def test_a_stream_without_provider_usage_is_still_counted_and_priced(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(completion("Short answer here.", stream_usage=False))
    response = await model.request(ModelRequest(HELLO, on_text=lambda delta: None))
    usage = response.usage
    assert usage.calls == 1
    assert usage.input_tokens > 0
    assert usage.output_tokens == count_text("Short answer here.", "openai/gpt-4o-mini")
    price = model.price
    assert price is not None
    assert usage.cost_usd == pytest.approx(price.cost(usage.input_tokens, usage.output_tokens))


async def test_an_error_in_the_middle_of_a_stream_maps_to_a_delegate_error(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(stream_error(["Hel", "lo"], message="The engine overheated."))
    pieces: list[str] = []
    with pytest.raises(ProviderUnavailableError) as raised:
        await model.request(ModelRequest(HELLO, on_text=pieces.append))
    assert pieces == ["Hel", "lo"]  # what arrived before the failure was passed on
    assert raised.value.retryable is True
    assert raised.value.model == "openai/gpt-4o-mini"
    assert "The engine overheated." in str(raised.value)
    assert len(server.requests) == 1


async def test_an_error_before_the_stream_maps_as_usual(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(rate_limited(retry_after=7), unauthorized())
    pieces: list[str] = []
    with pytest.raises(RateLimitError) as limited:
        await model.request(ModelRequest(HELLO, on_text=pieces.append))
    with pytest.raises(AuthenticationError):
        await model.request(ModelRequest(HELLO, on_text=pieces.append))
    assert limited.value.retry_after == 7
    assert pieces == []
    assert len(server.requests) == 2


async def test_the_timeout_bounds_the_whole_stream_not_each_chunk(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    await model.request(ModelRequest(HELLO))  # litellm imported and warm
    # Each chunk comes well within the timeout; all of them do not.
    server.script(completion("a b c d e f g h i j", chunk_delay=0.15))
    pieces: list[str] = []
    started = time.perf_counter()
    with pytest.raises(ModelTimeoutError) as raised:
        await model.request(ModelRequest(HELLO, timeout=0.6, on_text=pieces.append))
    assert time.perf_counter() - started < 5
    assert 1 <= len(pieces) < 10
    assert str(raised.value) == (
        "openai/gpt-4o-mini: the streamed answer did not finish within its timeout of 0.6 s; "
        "raise the request's timeout (or the model's) or lower max_output_tokens"
    )
    assert raised.value.retryable is True


async def test_a_request_with_tools_is_not_streamed(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(completion("No search needed."))
    pieces: list[str] = []
    response = await model.request(ModelRequest(HELLO, tools=[SEARCH], on_text=pieces.append))
    assert response.text == "No search needed."
    assert pieces == []
    assert "stream" not in server.bodies[0]


async def test_cancellation_in_the_middle_of_a_stream_propagates(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    await model.request(ModelRequest(HELLO))  # litellm imported and warm
    server.script(completion("a b c d e f g h", chunk_delay=0.5))
    pieces: list[str] = []
    started = time.perf_counter()
    with anyio.move_on_after(0.3) as scope:
        await model.request(ModelRequest(HELLO, on_text=pieces.append))
    assert scope.cancelled_caught
    assert pieces == ["a "]
    assert time.perf_counter() - started < 5


def test_stream_stays_reserved_as_an_extra_argument() -> None:
    with pytest.raises(ConfigError, match="stream cannot be passed"):
        LiteLLMModel("openai/gpt-4o-mini", stream=False)


class _Stream:
    """A litellm stream stand-in: yields chunks, may then raise, records whether it was closed."""

    def __init__(self, chunks: list[Any], error: Exception | None = None) -> None:
        self._chunks = chunks
        self._error = error
        self.closed = False

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        for chunk in self._chunks:
            yield chunk
        if self._error is not None:
            raise self._error

    async def aclose(self) -> None:
        self.closed = True


def _chunk(content: str | None = None, finish: str | None = None) -> Any:
    delta = SimpleNamespace(content=content, tool_calls=None)
    return SimpleNamespace(choices=[SimpleNamespace(delta=delta, finish_reason=finish)], usage=None)


class _StreamingLitellm:
    """Stands in for the litellm module: answers every call with `stream`."""

    def __init__(self, stream: _Stream) -> None:
        self.calls: list[dict[str, Any]] = []
        self.stream = stream
        self.exceptions = models_module._litellm().exceptions

    async def acompletion(self, **arguments: Any) -> Any:
        self.calls.append(arguments)
        return self.stream

    def supports_reasoning(self, model: str) -> bool:
        return False


def _streaming_model(
    monkeypatch: pytest.MonkeyPatch, stream: _Stream
) -> tuple[LiteLLMModel, _StreamingLitellm]:
    fake = _StreamingLitellm(stream)
    monkeypatch.setattr(models_module, "_litellm_module", fake)
    return LiteLLMModel("openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1"), fake


async def test_without_any_usage_chunk_delegate_counts_the_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = _Stream([_chunk("Hello"), _chunk(", world"), _chunk(None, "stop")])
    model, fake = _streaming_model(monkeypatch, stream)
    pieces: list[str] = []
    response = await model.request(ModelRequest(HELLO, on_text=pieces.append))

    assert pieces == ["Hello", ", world"]
    input_tokens = count_messages(HELLO, "openai/gpt-4o-mini")
    output_tokens = count_text("Hello, world", "openai/gpt-4o-mini")
    assert response.usage == Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=Price(0.15, 0.6, 0.075).cost(input_tokens, output_tokens),
        calls=1,
    )
    assert fake.calls[0]["stream"] is True
    assert stream.closed


async def test_a_mid_stream_timeout_maps_to_the_providers_own_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    litellm = models_module._litellm()
    timeout = litellm.Timeout(message="read timed out", model="gpt-4o-mini", llm_provider="openai")
    wrapped = litellm.exceptions.MidStreamFallbackError(
        message="read timed out",
        model="gpt-4o-mini",
        llm_provider="openai",
        original_exception=timeout,
    )
    stream = _Stream([_chunk("Hel")], error=wrapped)
    model, _ = _streaming_model(monkeypatch, stream)
    with pytest.raises(ModelTimeoutError) as raised:
        await model.request(ModelRequest(HELLO, on_text=lambda delta: None))
    assert raised.value.__cause__ is timeout
    assert stream.closed


async def test_an_exception_in_on_text_propagates_unchanged_and_closes_the_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = _Stream([_chunk("Hel"), _chunk("lo")])
    model, _ = _streaming_model(monkeypatch, stream)

    def on_text(delta: str) -> None:
        raise KeyError(delta)

    with pytest.raises(KeyError, match="Hel"):
        await model.request(ModelRequest(HELLO, on_text=on_text))
    assert stream.closed


# --- secrets -----------------------------------------------------------------------------------


async def test_the_api_key_never_reaches_logs_reprs_or_errors(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    # A provider that echoes the key back in its error message (OpenAI masks it; not all do).
    server.script(
        completion("fine"), unauthorized(f"Incorrect API key provided: {SECRET}"), server_error()
    )
    errors: list[BaseException] = []
    with capture_logs() as logs:
        await model.request(ModelRequest(HELLO))
        for _ in range(2):
            try:
                await model.request(ModelRequest(HELLO))
            except (AuthenticationError, ProviderUnavailableError) as exc:
                errors.append(exc)
        # litellm's own filter masks "api_key=..."; a bare key is masked by delegate's forwarder.
        logging.getLogger("LiteLLM").warning("retrying with key %s", SECRET)

    assert [type(error) for error in errors] == [AuthenticationError, ProviderUnavailableError]
    assert server.requests[1].headers["authorization"] == f"Bearer {SECRET}"  # it was sent
    assert SECRET not in repr(model)
    assert repr(model) == f"LiteLLMModel('openai/gpt-4o-mini', api_base={server.base_url!r})"
    for error in errors:
        shown = "".join(traceback.format_exception(error))
        assert SECRET not in shown
        assert SECRET not in repr(error)
    # The echoed key lives in litellm's exception: it is chained neither as cause nor as context.
    assert (errors[0].__cause__, errors[0].__context__) == (None, None)
    assert type(errors[1].__cause__).__name__ == "InternalServerError"
    assert "Incorrect API key provided: ***" in str(errors[0])
    assert SECRET not in repr(logs)
    assert logs == [
        {
            "logger_name": "LiteLLM",
            "event": "retrying with key ***",  # the model's key, masked whole
            "log_level": "warning",
        }
    ]


# --- the guard against real requests ---------------------------------------------------------


class _FakeLitellm:
    """Stands in for the litellm module: records calls instead of reaching any network."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def acompletion(self, **arguments: Any) -> Any:
        self.calls.append(arguments)
        message = SimpleNamespace(content="ok", tool_calls=None)
        choice = SimpleNamespace(message=message, finish_reason="stop")
        return SimpleNamespace(choices=[choice], usage=None)

    def supports_reasoning(self, model: str) -> bool:
        return False


@pytest.fixture
def fake_litellm(monkeypatch: pytest.MonkeyPatch) -> _FakeLitellm:
    fake = _FakeLitellm()
    monkeypatch.setattr(models_module, "_litellm_module", fake)
    return fake


@pytest.mark.parametrize("api_base", [None, "https://api.openai.com/v1", "http://10.0.0.7:8000"])
async def test_a_real_provider_is_blocked_while_requests_are_blocked(
    api_base: str | None, fake_litellm: _FakeLitellm
) -> None:
    model = LiteLLMModel("openai/gpt-4o-mini", api_base=api_base, api_key=SECRET)
    with pytest.raises(ModelRequestsBlocked) as raised:
        await model.request(ModelRequest(HELLO))
    assert fake_litellm.calls == []
    where = api_base or "the provider's default endpoint"
    assert str(raised.value) == (
        f"model 'openai/gpt-4o-mini': a real request to {where} was attempted while model "
        "requests are blocked; tests must use delegate.testing's FunctionModel or ScriptedModel "
        "(or a fake server on 127.0.0.1 as api_base)"
    )
    assert SECRET not in str(raised.value)


async def test_the_guard_needs_no_litellm_import(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_import() -> Any:
        raise AssertionError("litellm was imported for a blocked request")

    monkeypatch.setattr(models_module, "_litellm_module", None)
    monkeypatch.setattr(models_module, "_litellm", must_not_import)
    with pytest.raises(ModelRequestsBlocked):
        await LiteLLMModel("anthropic/claude-haiku-4-5").request(ModelRequest(HELLO))


async def test_the_guard_reads_the_flag_at_call_time(fake_litellm: _FakeLitellm) -> None:
    model = LiteLLMModel("openai/gpt-4o-mini", api_base="https://api.openai.com/v1")
    with block_model_requests(False):
        response = await model.request(ModelRequest(HELLO))
    assert response.text == "ok"
    assert [call["api_base"] for call in fake_litellm.calls] == ["https://api.openai.com/v1"]
    assert fake_litellm.calls[0]["num_retries"] == 0
    assert fake_litellm.calls[0]["drop_params"] is True
    with pytest.raises(ModelRequestsBlocked):
        await model.request(ModelRequest(HELLO))
    assert len(fake_litellm.calls) == 1


@pytest.mark.parametrize(
    ("api_base", "local"),
    [
        ("http://127.0.0.1:8000/v1", True),
        ("http://127.5.0.1/v1", True),
        ("http://localhost:11434", True),
        ("http://[::1]:8000/v1", True),
        ("http://localhost.example.com/v1", False),
        ("http://10.0.0.7/v1", False),
        ("https://api.openai.com/v1", False),
        ("not a url", False),
        ("", False),
        (None, False),
    ],
)
def test_which_api_bases_count_as_this_machine(api_base: str | None, local: bool) -> None:
    assert models_module._is_loopback(api_base) is local


# --- price and context window ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "price"),
    [
        ("openai/gpt-4o-mini", Price(0.15, 0.6, 0.075)),
        ("gpt-4o-mini", Price(0.15, 0.6, 0.075)),
        ("anthropic/claude-haiku-4-5", Price(1.0, 5.0, 0.1)),
        ("openai/o3-mini", Price(1.1, 4.4, 0.55)),
        ("openai/not-a-model", None),
        ("groq/gpt-4o-mini", None),  # the bare name is OpenAI's model, not groq's
        ("ollama/llama3", None),  # listed at $0: unknown, never free
    ],
)
def test_price_comes_from_the_local_cost_map(name: str, price: Price | None) -> None:
    assert LiteLLMModel(name).price == price


def test_context_window_comes_from_the_local_cost_map() -> None:
    assert LiteLLMModel("openai/gpt-4o-mini").context_window == 128_000
    assert LiteLLMModel("anthropic/claude-haiku-4-5").context_window == 200_000
    assert LiteLLMModel("openai/not-a-model").context_window is None


HAIKU_35_BEDROCK = "anthropic.claude-3-5-haiku-20241022-v1:0"
HAIKU_3_BEDROCK = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.mark.parametrize(
    ("name", "price", "window"),
    [
        # litellm's cost map: $0.80/$4.00 per million, $0.08 cached, 200k tokens ...
        (f"bedrock/{HAIKU_35_BEDROCK}", Price(0.8, 4.0, 0.08), 200_000),
        # ... and the same through each route litellm reads off the name
        (f"bedrock/converse/{HAIKU_35_BEDROCK}", Price(0.8, 4.0, 0.08), 200_000),
        (f"bedrock/invoke/{HAIKU_35_BEDROCK}", Price(0.8, 4.0, 0.08), 200_000),
        (f"bedrock/chat_completions/{HAIKU_35_BEDROCK}", Price(0.8, 4.0, 0.08), 200_000),
        (f"bedrock/converse/us.{HAIKU_35_BEDROCK}", Price(0.8, 4.0, 0.08), 200_000),
        # a region the map has no entry of its own for: the model's entry
        (f"bedrock/us-east-1/{HAIKU_35_BEDROCK}", Price(0.8, 4.0, 0.08), 200_000),
        (f"bedrock/converse/us-east-1/{HAIKU_35_BEDROCK}", Price(0.8, 4.0, 0.08), 200_000),
        # a region with its own entry keeps it, routed or not ($0.30/$1.50, 195,904 tokens)
        (f"bedrock/us-gov-west-1/{HAIKU_3_BEDROCK}", Price(0.3, 1.5, None), 195_904),
        (f"bedrock/converse/us-gov-west-1/{HAIKU_3_BEDROCK}", Price(0.3, 1.5, None), 195_904),
        ("openai/responses/gpt-4o-mini", Price(0.15, 0.6, 0.075), 128_000),
        # a route never makes another provider's model this one's
        ("groq/responses/gpt-4o-mini", None, None),
        ("bedrock/converse/gpt-4o-mini", None, None),
        ("bedrock/converse/not-a-model", None, None),
    ],
)
def test_routing_prefixes_are_priced_like_the_model_they_route_to(
    name: str, price: Price | None, window: int | None
) -> None:
    model = LiteLLMModel(name)
    assert (model.price, model.context_window) == (price, window)


def test_a_routed_bedrock_model_has_its_bare_ids_cost_map_entry() -> None:
    bare = _costmap.model_info(HAIKU_35_BEDROCK)
    assert bare is not None
    assert bare["litellm_provider"] == "bedrock"
    for route in ("converse", "invoke"):
        assert _costmap.model_info(f"bedrock/{route}/{HAIKU_35_BEDROCK}") == bare
    assert (bare["input_cost_per_token"], bare["output_cost_per_token"]) == (8e-07, 4e-06)


def test_model_info_returns_a_copy() -> None:
    info = _costmap.model_info("openai/gpt-4o-mini")
    assert info is not None
    assert info["litellm_provider"] == "openai"
    info["input_cost_per_token"] = 1.0
    assert LiteLLMModel("openai/gpt-4o-mini").price == Price(0.15, 0.6, 0.075)
    assert _costmap.model_info("sample_spec") is None


def test_pricing_and_resolving_do_not_import_litellm() -> None:
    code = (
        "import sys, delegate\n"
        "from delegate.agents.models import resolve_model\n"
        "model = resolve_model('openai/gpt-4o-mini')\n"
        "assert model.price is not None and model.context_window == 128000\n"
        "assert 'litellm' not in sys.modules, 'litellm imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- resolve_model -----------------------------------------------------------------------------


def test_resolve_model_turns_a_string_into_a_litellm_model() -> None:
    model = resolve_model("anthropic/claude-haiku-4-5")
    assert isinstance(model, LiteLLMModel)
    assert model.name == "anthropic/claude-haiku-4-5"


def test_resolve_model_passes_a_model_through() -> None:
    fake = FunctionModel(lambda request: "hi")
    assert resolve_model(fake) is fake


@pytest.mark.parametrize("bad", [42, None, ["openai/gpt-4o-mini"]])
def test_resolve_model_rejects_anything_else(bad: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        resolve_model(bad)
    assert str(raised.value) == (
        "model must be a litellm model string such as 'openai/gpt-4o-mini' or a delegate Model "
        f"(with name, price and async request()), got {type(bad).__name__}; pass a string, a "
        "LiteLLMModel, or a delegate.testing fake"
    )


# --- logging -----------------------------------------------------------------------------------


def test_redact_secrets_masks_credentials_and_keeps_token_counts() -> None:
    event = {
        "event": "calling with sk-abcdef123456 and Bearer abc.def-ghi",
        "api_key": "anything",
        "headers": {"Authorization": "Basic dXNlcjpwYXNz", "Accept": "json"},
        "attempts": [{"access_token": "t0k3n"}, "AIzaSyA1234567890abcdefghijk"],
        "input_tokens": 12,
        "max_tokens": 50,
        "token_count": 3,
        "secret": None,
    }
    assert _log.redact_secrets(None, "info", event) == {
        "event": "calling with sk-*** and Bearer ***",
        "api_key": "***",
        "headers": {"Authorization": "***", "Accept": "json"},
        "attempts": [{"access_token": "***"}, "AIza***"],
        "input_tokens": 12,
        "max_tokens": 50,
        "token_count": 3,
        "secret": None,
    }


def test_redact_text_masks_given_secrets_as_whole_tokens() -> None:
    assert _log.redact_text("key=hunter22!", ["hunter22"]) == "key=***!"
    assert _log.redact_text("key=xhunter22!", ["hunter22"]) == "key=xhunter22!"
    assert _log.redact_text("key=hunter2!", ["hunter2"]) == "key=hunter2!"  # under 8: kept
    assert _log.redact_text("nothing here", ["", "absent"]) == "nothing here"


def test_litellm_loggers_forward_warnings_into_structlog_only() -> None:
    _log.route_litellm_logging()
    _log.route_litellm_logging()  # idempotent
    with capture_logs() as logs:
        for name in _log.LITELLM_LOGGERS:
            logger = logging.getLogger(name)
            assert len(logger.handlers) == 1
            assert logger.propagate is False
            logger.info("routine detail")
            logger.error("failed for %s", name)
        logging.getLogger("LiteLLM").warning(
            "LoggingWorker: event loop changed; carried %d pending", 1
        )
    assert logs == [
        {"logger_name": name, "event": f"failed for {name}", "log_level": "error"}
        for name in _log.LITELLM_LOGGERS
    ]


def test_forwarding_through_stdlib_structlog_does_not_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A host that renders structlog through stdlib logging: forwarded records must land on a
    # logger that is not routed back into structlog.
    _log.route_litellm_logging()
    structlog.configure(
        processors=[structlog.stdlib.render_to_log_kwargs],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    try:
        with caplog.at_level(logging.WARNING, logger="delegate.litellm"):
            logging.getLogger("litellm").warning("provider said %s", "no")
    finally:
        structlog.reset_defaults()
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("delegate.litellm", "WARNING", "provider said no")
    ]


def test_get_logger_binds_its_name_and_values() -> None:
    with capture_logs() as logs:
        _log.get_logger("delegate.test", run_id="r1").warning("hello", task_id="t")
    assert logs == [
        {
            "logger_name": "delegate.test",
            "run_id": "r1",
            "task_id": "t",
            "event": "hello",
            "log_level": "warning",
        }
    ]


def test_configure_logging_renders_json_to_stderr_with_secrets_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    LiteLLMModel("openai/gpt-4o-mini", api_key=SECRET)  # its key is known from now on
    try:
        _log.configure_logging("WARNING", json=True)
        logger = _log.get_logger("delegate.test")
        logger.info("hidden")
        logger.warning("shown", api_key=SECRET, note=f"key {SECRET}")
    finally:
        structlog.reset_defaults()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "hidden" not in captured.err
    assert SECRET not in captured.err
    assert '"api_key": "***"' in captured.err
    assert '"note": "key ***"' in captured.err
    assert '"level": "warning"' in captured.err


def test_configure_logging_rejects_an_unknown_level() -> None:
    with pytest.raises(ConfigError) as raised:
        _log.configure_logging("LOUD")
    assert str(raised.value) == (
        "log level 'LOUD' is not a level; use DEBUG, INFO, WARNING, ERROR or CRITICAL"
    )
