"""The fake provider servers speak their wire formats: real `LiteLLMModel` calls against them.

Every test that can runs against both: `FakeOpenAIServer` (chat completions) and
`FakeAnthropicServer` (Messages API), answering the same scripts. Besides the answers and errors,
the servers keep the bill a provider would send, and that bill is checked exactly: completed
requests at their usage, abandoned ones at the work the server did, refused ones at nothing.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from _fake_anthropic_server import FakeAnthropicServer, overloaded
from _fake_openai_server import (
    Bill,
    FakeOpenAIServer,
    completion,
    context_length_exceeded,
    over_max_tokens,
    rate_limited,
    server_error,
    stream_error,
    unauthorized_echo,
)

from delegate.agents.models import LiteLLMModel, Message, ModelRequest, Price
from delegate.errors import (
    AuthenticationError,
    ContextWindowExceededError,
    ModelTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
)

pytestmark = pytest.mark.anyio

SECRET = "sk-fake-server-secret-0123456789"
MESSAGES: list[Message] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello?"},
]


@dataclass(frozen=True)
class Provider:
    name: str
    server: type[FakeOpenAIServer]
    model: str
    path: str
    price: Price  # litellm's cost map: what delegate counts, and the server bills by default


PROVIDERS = [
    Provider(
        "openai",
        FakeOpenAIServer,
        "openai/gpt-4o-mini",
        "/v1/chat/completions",
        Price(0.15, 0.6, 0.075),
    ),
    Provider(
        "anthropic",
        FakeAnthropicServer,
        "anthropic/claude-haiku-4-5",
        "/v1/messages",
        Price(1.0, 5.0, 0.1),
    ),
]


@pytest.fixture(params=PROVIDERS, ids=[p.name for p in PROVIDERS])
def provider(request: pytest.FixtureRequest) -> Provider:
    chosen: Provider = request.param
    return chosen


@pytest.fixture
def server(provider: Provider) -> Iterator[FakeOpenAIServer]:
    with provider.server() as fake:
        yield fake


@pytest.fixture
def model(provider: Provider, server: FakeOpenAIServer) -> LiteLLMModel:
    return LiteLLMModel(provider.model, api_base=server.base_url, api_key=SECRET)


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """A raw POST, for what litellm would hide: status, headers (lower-cased), body."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    request.add_header("x-api-key", SECRET)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, _lower(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers), error.read()


def _lower(headers: Any) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in headers.items()}


# --- answers -----------------------------------------------------------------------------------


async def test_a_plain_answer_comes_back_with_its_usage(
    provider: Provider, server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    assert model.price == provider.price
    server.script(completion("Hello there, friend!", prompt_tokens=20, completion_tokens=7))
    response = await model.request(ModelRequest(MESSAGES, max_output_tokens=50))

    assert (response.text, response.finish_reason) == ("Hello there, friend!", "stop")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (20, 7)
    assert response.usage.cost_usd == pytest.approx(provider.price.cost(20, 7))
    [sent] = server.requests
    assert sent.path == provider.path
    assert sent.body["max_tokens"] == 50
    if provider.name == "anthropic":
        assert sent.headers["x-api-key"] == SECRET
        assert sent.body["model"] == "claude-haiku-4-5"
        assert sent.body["system"] == [{"type": "text", "text": "Be brief."}]
        assert sent.body["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "Hello?"}]}
        ]
    else:
        assert sent.headers["authorization"] == f"Bearer {SECRET}"
        assert sent.body["messages"] == MESSAGES
    await server.idle()  # the client may have read the answer before the server is done
    assert server.bills == [Bill(200, 20, 7, "answered")]


async def test_a_streamed_answer_arrives_in_its_pieces(
    provider: Provider, server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(completion("Hello there, friend!", prompt_tokens=20, completion_tokens=7))
    pieces: list[str] = []
    response = await model.request(ModelRequest(MESSAGES, on_text=pieces.append))

    assert pieces == ["Hello ", "there, ", "friend!"]
    assert (response.text, response.finish_reason) == ("Hello there, friend!", "stop")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (20, 7)
    assert server.bodies[0]["stream"] is True
    await server.idle()
    assert server.bills == [Bill(200, 20, 7, "answered")]


async def test_tool_calls_come_back(server: FakeOpenAIServer, model: LiteLLMModel) -> None:
    from delegate.agents.models import ToolCall, ToolDefinition

    search = ToolDefinition("search", "Search the web.", {"type": "object", "properties": {}})
    server.script(
        completion(
            None, tool_calls=[("call_1", "search", {"q": "anyio"})], finish_reason="tool_calls"
        )
    )
    response = await model.request(ModelRequest(MESSAGES, tools=[search]))
    assert response.tool_calls == (ToolCall("call_1", "search", '{"q": "anyio"}'),)
    assert response.finish_reason == "tool_calls"


async def test_a_server_that_ignores_max_tokens_bills_what_it_generated(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(over_max_tokens(25, prompt_tokens=9), over_max_tokens(5, prompt_tokens=9))
    response = await model.request(ModelRequest(MESSAGES, max_output_tokens=10))
    assert response.text == " ".join(f"w{n}" for n in range(1, 36))
    assert response.usage.output_tokens == 35  # the real count, past the 10 asked for
    await server.idle()
    assert server.bills == [Bill(200, 9, 35, "answered")]

    # Streamed, 15 words are sent; the client may stop reading at its cap, the server has
    # generated (and bills) every word it sent before it noticed.
    pieces: list[str] = []
    await model.request(ModelRequest(MESSAGES, max_output_tokens=10, on_text=pieces.append))
    await server.idle()
    bill = server.bills[1]
    assert bill.input_tokens == 9
    assert len(pieces) <= bill.output_tokens <= 15
    assert "".join(pieces) == " ".join(f"w{n}" for n in range(1, 16))[: len("".join(pieces))]


async def test_a_stream_past_max_tokens_on_the_wire(provider: Provider) -> None:
    with provider.server() as server:
        server.script(over_max_tokens(5))
        body = {"stream": True, "max_tokens": 10, "stream_options": {"include_usage": True}}
        status, _, raw = post(server.base_url.removesuffix("/v1") + provider.path, body)
        assert status == 200
        text = raw.decode()
        assert [f"w{n}" in text for n in (15, 16)] == [True, False]
        assert ('"completion_tokens": 15' in text) or ('"output_tokens": 15' in text)
        server.wait_idle()
        assert server.bills == [Bill(200, 12, 15, "answered")]


# --- errors ------------------------------------------------------------------------------------


async def test_a_429_maps_to_rate_limit_with_retry_after(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(rate_limited(retry_after=7))
    with pytest.raises(RateLimitError) as raised:
        await model.request(ModelRequest(MESSAGES))
    assert raised.value.retry_after == 7
    assert server.billed_calls == 1
    assert server.bills == [Bill(429, 0, 0, "refused")]


@pytest.mark.parametrize("reply", [server_error(), server_error(503), overloaded()])
async def test_server_errors_map_to_provider_unavailable(
    server: FakeOpenAIServer, model: LiteLLMModel, reply: Any
) -> None:
    server.script(reply)
    with pytest.raises(ProviderUnavailableError):
        await model.request(ModelRequest(MESSAGES))
    assert len(server.requests) == 1  # nothing retried below delegate
    assert server.billed_usd == 0


async def test_a_context_length_error_maps_to_context_window_exceeded(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(context_length_exceeded())
    with pytest.raises(ContextWindowExceededError):
        await model.request(ModelRequest(MESSAGES))
    assert server.billed_usd == 0


async def test_an_error_mid_stream_fails_the_call_and_bills_what_was_generated(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(stream_error(["Hel", "lo"], message="The engine overheated."))
    pieces: list[str] = []
    with pytest.raises(ProviderUnavailableError, match="The engine overheated"):
        await model.request(ModelRequest(MESSAGES, on_text=pieces.append))
    assert pieces == ["Hel", "lo"]
    await server.idle()
    assert server.bills == [Bill(200, 12, 5, "failed")]


async def test_a_401_echoes_the_key_it_received(
    provider: Provider, server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    # On the wire: the key is in the provider's message ...
    server.script(unauthorized_echo())
    status, _, raw = post(server.base_url.removesuffix("/v1") + provider.path, {"model": "m"})
    assert status == 401
    assert SECRET in json.loads(raw)["error"]["message"]
    # ... and delegate's error, with the same answer, does not carry it.
    server.script(unauthorized_echo())
    with pytest.raises(AuthenticationError) as raised:
        await model.request(ModelRequest(MESSAGES))
    assert SECRET not in str(raised.value)
    assert server.billed_usd == 0


# --- the wire formats, as sent -----------------------------------------------------------------


def test_anthropic_errors_and_events_have_anthropics_shapes() -> None:
    with FakeAnthropicServer() as server:
        server.script(rate_limited(retry_after=3), overloaded(), completion("One two"))
        status, headers, raw = post(f"{server.base_url}/v1/messages", {"max_tokens": 5})
        assert (status, headers["retry-after"]) == (429, "3")
        assert json.loads(raw)["type"] == "error"
        assert json.loads(raw)["error"]["type"] == "rate_limit_error"
        status, _, raw = post(f"{server.base_url}/v1/messages", {"max_tokens": 5})
        assert (status, json.loads(raw)["error"]["type"]) == (529, "overloaded_error")

        status, headers, raw = post(f"{server.base_url}/v1/messages", {"stream": True})
        assert (status, headers["content-type"]) == (200, "text/event-stream")
        events = [block.split("\n") for block in raw.decode().strip().split("\n\n")]
        names = [lines[0].removeprefix("event: ") for lines in events]
        assert names == [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
        data = [json.loads(lines[1].removeprefix("data: ")) for lines in events]
        assert [d["type"] for d in data] == names
        assert [d["delta"]["text"] for d in data[3:5]] == ["One ", "two"]
        assert data[6]["usage"] == {"output_tokens": 5}
        assert data[6]["delta"]["stop_reason"] == "end_turn"

        # litellm appends /v1/messages to api_base: a base URL ending in /v1 is a mistake.
        status, _, raw = post(f"{server.base_url}/v1/v1/messages", {})
        assert (status, json.loads(raw)["error"]["type"]) == (404, "not_found_error")
        assert server.bills[-1] == Bill(404, 0, 0, "refused")


def test_openai_streams_end_with_done() -> None:
    with FakeOpenAIServer() as server:
        status, _, raw = post(
            f"{server.base_url}/chat/completions",
            {"stream": True, "stream_options": {"include_usage": True}},
        )
        assert status == 200
        events = [line.removeprefix("data: ") for line in raw.decode().split("\n\n") if line]
        assert events[-1] == "[DONE]"
        assert json.loads(events[-2])["usage"]["completion_tokens"] == 5


# --- the bill ----------------------------------------------------------------------------------


async def test_the_bill_counts_completed_requests_at_their_usage_and_errors_at_nothing(
    provider: Provider, server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(
        completion("a", prompt_tokens=100, completion_tokens=40),
        rate_limited(),
        unauthorized_echo(),
        context_length_exceeded(),
        server_error(),
        completion("b", prompt_tokens=1_000, completion_tokens=300),
    )
    counted = 0.0
    for _ in range(6):
        try:
            counted += (await model.request(ModelRequest(MESSAGES))).usage.cost_usd
        except (RateLimitError, AuthenticationError, ContextWindowExceededError):
            pass
        except ProviderUnavailableError:
            pass
    assert server.billed_calls == 6
    assert server.billed_tokens == (1_100, 340)
    assert server.billed_usd == server.cost(1_100, 340)
    per_input, per_output = server.price
    assert (per_input, per_output) == (
        provider.price.input_per_mtok,
        provider.price.output_per_mtok,
    )
    assert server.billed_usd == pytest.approx((1_100 * per_input + 340 * per_output) / 1e6)
    assert counted == pytest.approx(server.billed_usd)  # what delegate counted, at the same prices


async def test_an_unstreamed_answer_the_client_gave_up_on_is_billed_in_full(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.script(completion("Too late.", prompt_tokens=20, completion_tokens=7, delay=30))
    with pytest.raises(ModelTimeoutError):
        await model.request(ModelRequest(MESSAGES, timeout=0.3))
    # Received and generated before any byte is sent: billed though never delivered.
    assert server.billed_calls == 1
    assert server.billed_tokens == (20, 7)
    await server.idle()
    assert server.bills == [Bill(200, 20, 7, "abandoned")]
    assert server.billed_usd == server.cost(20, 7)


async def test_a_stream_the_client_gave_up_on_is_billed_what_was_generated(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    # One token a word, a word a second: the client gives up after 1.5 s, the server stops
    # generating when it notices, before the next word.
    server.script(completion("a b c d e f", prompt_tokens=20, completion_tokens=6, chunk_delay=1.0))
    pieces: list[str] = []
    with pytest.raises(ModelTimeoutError):
        await model.request(ModelRequest(MESSAGES, timeout=1.5, on_text=pieces.append))
    await server.idle()
    [bill] = server.bills
    assert bill.outcome == "abandoned"
    assert 1 <= len(pieces) < 6
    assert (bill.input_tokens, bill.output_tokens) == (20, len(pieces))
    assert server.billed_usd == server.cost(20, len(pieces))


async def test_the_bill_is_exact_under_concurrent_requests(
    server: FakeOpenAIServer, model: LiteLLMModel
) -> None:
    server.default = completion("ok", prompt_tokens=10, completion_tokens=3)
    server.script(*[rate_limited()] * 4)

    async def call() -> None:
        with contextlib.suppress(RateLimitError):
            await model.request(ModelRequest(MESSAGES))

    async with anyio.create_task_group() as group:
        for _ in range(16):
            group.start_soon(call)
    await server.idle()
    assert server.billed_calls == 16
    assert server.billed_tokens == (12 * 10, 12 * 3)
    assert sorted(bill.outcome for bill in server.bills).count("refused") == 4


def test_a_price_of_ones_own() -> None:
    with FakeAnthropicServer(price=(3.0, 15.0)) as server:
        assert server.price == (3.0, 15.0)
        assert server.cost(1_000_000, 2_000_000) == 33.0
        assert server.billed_usd == 0
    assert FakeOpenAIServer.default_price == (0.15, 0.60)
