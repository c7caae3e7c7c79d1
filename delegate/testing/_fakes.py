"""Fake models for tests: deterministic, offline, and as strict as a real provider.

`FunctionModel(fn)` answers with whatever `fn(request)` returns; `ScriptedModel([...])` answers from
a list in order. Both count tokens deterministically without loading a tokenizer (one per
piece of the tokenizer's pre-split: `count_tokens`), honour
`max_output_tokens` the way a provider does (the answer is cut and `finish_reason` is "length"),
price their usage, and can raise the same errors a real provider raises::

    from delegate import Agent, Orchestrator, TaskGraph
    from delegate.errors import RateLimitError
    from delegate.testing import FunctionModel, ScriptedModel

    flaky = ScriptedModel([RateLimitError("slow down", retry_after=0.01), "ok"])
    echo = FunctionModel(lambda request: request.messages[-1]["content"].upper())

Both stream like a provider when the request sets `on_text`: after `latency` seconds the text
arrives in pieces of `chunk_size` characters, `chunk_delay` seconds apart. An unstreamed call of
the same answer takes the same time, so streaming changes when the text is seen, not how long the
call takes::

    planner = ScriptedModel([plan_json], latency=0.5, chunk_size=16, chunk_delay=0.01)
    await planner.request(ModelRequest(messages, on_text=plan_stream.feed))

`block_model_requests()` makes any real provider call fail with `ModelRequestsBlocked`; delegate's
own test suite turns it on for every test.
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import json
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeAlias

import anyio

from delegate._json import loads_untrusted
from delegate.agents import models as _models
from delegate.agents.models import ModelRequest, ModelResponse, Price, ToolCall, Usage
from delegate.agents.tokens import count_pieces, count_pieces_messages, truncate_pieces
from delegate.errors import ConfigError

__all__ = [
    "Answer",
    "FunctionModel",
    "ScriptedModel",
    "block_model_requests",
    "tool_call",
]

Answer: TypeAlias = str | dict[str, Any] | ModelResponse
"""What a fake may answer: raw text, a dict (sent as JSON), or a whole `ModelResponse`."""

Latency: TypeAlias = float | Callable[[ModelRequest], float]

_NO_USAGE = Usage()
"""The usage of an answer that does not state its own: the fake bills it."""

_CHARS_PER_TOKEN = 4
"""Characters per token assumed by `expected_latency` to size an answer (OpenAI's rule of thumb)."""


def tool_call(name: str, /, **arguments: Any) -> ModelResponse:
    """A response in which the model asks to call tool `name` with `arguments`."""
    payload = json.dumps(arguments, sort_keys=True)
    call = ToolCall(
        id=f"call_{zlib.crc32(f'{name}:{payload}'.encode()):08x}", name=name, arguments=payload
    )
    return ModelResponse(tool_calls=(call,), finish_reason="tool_calls")


@contextlib.contextmanager
def block_model_requests(blocked: bool = True) -> Iterator[None]:
    """Within this block, any call through `LiteLLMModel` to a real provider raises.

    Calls to a server on this machine (an `api_base` on 127.0.0.1/localhost) are still allowed,
    so wire-level tests can run against a local fake server.
    """
    previous = _models.ALLOW_MODEL_REQUESTS
    _models.ALLOW_MODEL_REQUESTS = not blocked
    try:
        yield
    finally:
        _models.ALLOW_MODEL_REQUESTS = previous


class _FakeModel(abc.ABC):
    """What FunctionModel and ScriptedModel share: timing, streaming, truncation, token counts,
    price."""

    def __init__(
        self,
        *,
        latency: Latency,
        input_price: float,
        output_price: float,
        name: str,
        chunk_size: int,
        chunk_delay: float,
    ) -> None:
        if isinstance(latency, int | float) and latency < 0:
            raise ConfigError(f"latency must be ≥ 0 seconds, got {latency}")
        if input_price < 0 or output_price < 0:
            raise ConfigError(
                f"prices must be ≥ 0 USD per million tokens, got {input_price}/{output_price}"
            )
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError(
                f"chunk_size must be a whole number of characters ≥ 1, got {chunk_size!r}"
            )
        if chunk_delay < 0:
            raise ConfigError(f"chunk_delay must be ≥ 0 seconds, got {chunk_delay}")
        self._name = name
        self._latency = latency
        self._price = Price(input_price, output_price)
        self._chunk_size = chunk_size
        self._chunk_delay = chunk_delay
        self.requests: list[ModelRequest] = []
        """Every request this model received, in order."""

    @property
    def name(self) -> str:
        """The model's name in usage reports."""
        return self._name

    @property
    def price(self) -> Price:
        """USD per million input/output tokens."""
        return self._price

    def expected_latency(self, request: ModelRequest) -> float:
        """The seconds a call takes (used by `Orchestrator.estimate`).

        That is `latency` plus the time its text takes to arrive in chunks. The answer is not
        known before it is given, so its length is taken as `max_output_tokens` at 4 characters
        a token (OpenAI's rule of thumb): the longest answer the request allows, as the estimate
        takes the output allowance for the output tokens. A request without `max_output_tokens`
        gets `latency` alone, and so does every request while `chunk_delay` is 0 (the default).
        """
        first = self._first_chunk_latency(request)
        if request.max_output_tokens is None:
            return first
        return first + self._chunk_time(request.max_output_tokens * _CHARS_PER_TOKEN)

    def _first_chunk_latency(self, request: ModelRequest) -> float:
        return self._latency(request) if callable(self._latency) else self._latency

    def _chunk_time(self, characters: int) -> float:
        """The seconds after the first chunk until the last one, for this much text."""
        chunks = -(-characters // self._chunk_size)
        return max(chunks - 1, 0) * self._chunk_delay

    def count_tokens(self, request: ModelRequest) -> int:
        """Input tokens of `request`, as this fake bills them: one per piece of the tokenizer's
        pre-split (`delegate.agents.tokens.count_pieces_messages`), deterministic, and no BPE
        table loaded. That is the exact count for text of common words and never more; a budget
        gate reserves by this count, so reservations and usage agree to the token."""
        return count_pieces_messages(
            request.messages, self._name, request.tools, request.output_schema
        )

    @property
    def calls(self) -> int:
        """How many requests this model received."""
        return len(self.requests)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r}, calls={self.calls})"

    @abc.abstractmethod
    async def _answer(self, request: ModelRequest) -> Answer:
        """The answer to `request`, before truncation and accounting."""

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Answer `request` like a provider would.

        The answer is cut at `max_output_tokens` first, so a streamed text equals the returned
        one. Answers with tool calls are not streamed (they arrive whole, after the same time).
        """
        started = time.perf_counter()
        self.requests.append(request)
        delay = self._first_chunk_latency(request)
        # When the first chunk is due; only a chunk_delay schedules anything from it, so a call
        # without one does not read the clock.
        first = anyio.current_time() + delay if self._chunk_delay > 0 else 0.0
        if delay > 0:
            await anyio.sleep(delay)
        answer = await self._answer(request)
        fields = self._finish(request, answer)
        if request.on_text is not None or self._chunk_delay > 0:  # else nothing to stream or wait
            await self._deliver(request, fields["text"], fields["tool_calls"], first)
        # Built once, when its latency is known.
        return ModelResponse(**fields, latency=time.perf_counter() - started, model=self._name)

    async def _deliver(
        self, request: ModelRequest, text: str, tool_calls: tuple[ToolCall, ...], first: float
    ) -> None:
        """Stream the text to `on_text` chunk by chunk, or wait as long as that would take.

        Chunks are due on a fixed schedule from `first` (as a network stream arrives), so the
        time spent handling one chunk does not delay the next.
        """
        size = self._chunk_size
        if request.on_text is None or tool_calls:
            rest = self._chunk_time(len(text))
            if rest > 0:
                await anyio.sleep_until(first + rest)
            return
        for index, start in enumerate(range(0, len(text), size)):
            if index and self._chunk_delay > 0:
                await anyio.sleep_until(first + index * self._chunk_delay)
            request.on_text(text[start : start + size])

    def _finish(self, request: ModelRequest, answer: Answer) -> dict[str, Any]:
        """The response's fields but its latency and model: the answer cut at the request's
        limit, parsed when structured, and priced."""
        output: Any = None
        tool_calls: tuple[ToolCall, ...] = ()
        usage = _NO_USAGE
        finish = "stop"
        if isinstance(answer, ModelResponse):
            text, output, tool_calls = answer.text, answer.output, answer.tool_calls
            usage, finish = answer.usage, answer.finish_reason
        elif isinstance(answer, dict):
            text = json.dumps(answer)
        elif isinstance(answer, str):
            text = answer
        else:
            raise ConfigError(
                f"fake model {self._name!r} answered a {type(answer).__name__}; answer a str, a "
                "dict, a ModelResponse, or raise a delegate.errors.ModelError"
            )
        output_tokens = count_pieces(text, self._name) + sum(
            count_pieces(call.name, self._name) + count_pieces(call.arguments, self._name)
            for call in tool_calls
        )
        limit = request.max_output_tokens
        if limit is not None and output_tokens > limit:
            text, output_tokens, finish = truncate_pieces(text, limit, self._name), limit, "length"
        if request.output_schema is not None and output is None and finish != "length":
            with contextlib.suppress(ValueError):  # (JSONInputError is a ValueError)
                output = loads_untrusted(text)
        if usage is _NO_USAGE or usage == _NO_USAGE:  # (identity first: `==` builds tuples)
            input_tokens = self.count_tokens(request)
            usage = Usage(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_usd=self._price.cost(input_tokens, output_tokens),
                calls=1,
            )
        return {
            "text": text,
            "output": output,
            "tool_calls": tool_calls if finish != "length" else (),
            "usage": usage,
            "finish_reason": finish,
        }


class FunctionModel(_FakeModel):
    """A model whose answers come from a Python function.

    Args:
        fn: called with each `ModelRequest`; sync or async. Returns a `str` (raw text; for a
            structured call it must parse as JSON), a `dict` (sent as JSON), or a `ModelResponse`
            (e.g. `tool_call(...)`), or raises one of `delegate.errors`' model errors.
        latency: seconds before the answer (its first chunk) arrives, or a function of the
            request giving them.
        input_price: USD per million input tokens.
        output_price: USD per million output tokens.
        name: the model's name in usage reports.
        chunk_size: characters per chunk of a streamed text.
        chunk_delay: seconds between chunks; an unstreamed call waits as long in total
            (`latency + (chunks - 1) * chunk_delay`).

    Raises:
        ConfigError: a negative latency, price or chunk_delay, or a chunk_size below 1.
    """

    def __init__(
        self,
        fn: Callable[[ModelRequest], Answer | Awaitable[Answer]],
        *,
        latency: Latency = 0.0,
        input_price: float = 0.0,
        output_price: float = 0.0,
        name: str = "function",
        chunk_size: int = 16,
        chunk_delay: float = 0.0,
    ) -> None:
        super().__init__(
            latency=latency,
            input_price=input_price,
            output_price=output_price,
            name=name,
            chunk_size=chunk_size,
            chunk_delay=chunk_delay,
        )
        self._fn = fn

    async def _answer(self, request: ModelRequest) -> Answer:
        result = self._fn(request)
        if inspect.isawaitable(result):
            return await result
        return result


class ScriptedModel(_FakeModel):
    """A model that answers from a list, in order.

    Args:
        answers: each a `str`, a `dict`, a `ModelResponse`, or an exception to raise for that call.
        latency, input_price, output_price, name, chunk_size, chunk_delay: as for
            `FunctionModel`.

    Raises:
        ConfigError: as for `FunctionModel`.
    """

    def __init__(
        self,
        answers: Sequence[Answer | BaseException],
        *,
        latency: Latency = 0.0,
        input_price: float = 0.0,
        output_price: float = 0.0,
        name: str = "scripted",
        chunk_size: int = 16,
        chunk_delay: float = 0.0,
    ) -> None:
        super().__init__(
            latency=latency,
            input_price=input_price,
            output_price=output_price,
            name=name,
            chunk_size=chunk_size,
            chunk_delay=chunk_delay,
        )
        self._answers = list(answers)
        self._next = 0

    @property
    def remaining(self) -> int:
        """Answers not yet given."""
        return len(self._answers) - self._next

    async def _answer(self, request: ModelRequest) -> Answer:
        if self._next >= len(self._answers):
            raise ConfigError(
                f"ScriptedModel {self.name!r} ran out of answers after {len(self._answers)} calls; "
                "give it more answers or use FunctionModel"
            )
        answer = self._answers[self._next]
        self._next += 1
        if isinstance(answer, BaseException):
            raise answer
        return answer
