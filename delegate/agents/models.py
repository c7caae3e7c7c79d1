"""The one way to reach a model.

A `Model` takes a `ModelRequest` and returns a `ModelResponse`. `LiteLLMModel` is the only real
backend (every provider litellm knows); `delegate.testing` has fakes with the same behaviour for
tests. Cross-cutting concerns (budgets, limits, caching) wrap a `Model`; they never branch inside
one.
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import os
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, Protocol, TypedDict, runtime_checkable

import anyio
import anyio.to_thread

from delegate import _log, _secrets
from delegate.agents import _costmap
from delegate.agents.endpoints import (
    Endpoint,
    check_model_endpoint,
    connection_error,
    model_price,
)
from delegate.errors import (
    ConfigError,
    ModelError,
    ModelRequestsBlocked,
    ModelTimeoutError,
    from_litellm,
)

__all__ = [
    "LiteLLMModel",
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "Price",
    "ReasoningEffort",
    "ToolCall",
    "ToolDefinition",
    "Usage",
    "resolve_model",
]

log = _log.get_logger("delegate.models")

ALLOW_MODEL_REQUESTS = True
"""When False, `LiteLLMModel` refuses to call any provider not on this machine.

Set through `delegate.testing.block_model_requests()`; delegate's own test suite blocks for every
test, so no test can reach (or pay) a real provider.
"""

ReasoningEffort = Literal["minimal", "low", "medium", "high"]


class Message(TypedDict):
    """One chat message, OpenAI style: `{"role": "user", "content": "..."}`.

    Assistant messages that call tools carry `tool_calls`; tool results carry `tool_call_id`.
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: NotRequired[list[dict[str, Any]]]
    tool_call_id: NotRequired[str]
    name: NotRequired[str]


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A function the model may call: its name, what it does, and a JSON Schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI `tools=[...]` entry for this tool."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asked for. `arguments` is the raw JSON text the model wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and money spent by one or more model calls.

    `output_tokens` includes `reasoning_tokens` (providers bill reasoning as output);
    `cached_tokens` is the part of `input_tokens` the provider served from its prompt cache.

    `calls` counts requests sent, whatever came back (a 429 or a timeout is a call).
    `unconfirmed_usd` is the part of `cost_usd` that is delegate's estimate, not the provider's
    report: a request that may have reached the provider and then failed (a timeout, a
    cancellation, a dropped connection, a 5xx, an error mid-stream) is charged at what it
    reserved — its prompt plus its whole output allowance — since the provider may bill it.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0
    unconfirmed_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        if self is _NO_USAGE or (not self.calls and self == _NO_USAGE):
            # Most sums start from nothing (a task's usage, an agent run's): its first call's
            # usage is the sum, and a frozen one can be shared instead of copied. (Identity
            # first: the shared zero itself is the usual start, and `==` builds two tuples.)
            return other
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.cached_tokens + other.cached_tokens,
            self.cost_usd + other.cost_usd,
            self.calls + other.calls,
            self.unconfirmed_usd + other.unconfirmed_usd,
        )

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, int | float]:
        """As JSON data (what the store and the call cache keep)."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_usd": self.cost_usd,
            "calls": self.calls,
            "unconfirmed_usd": self.unconfirmed_usd,
        }


_NO_USAGE = Usage()


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. `cached_input_per_mtok` defaults to the full input price."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        """The cost in USD of a call with these token counts."""
        cached_price = (
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else self.cached_input_per_mtok
        )
        uncached = max(input_tokens - cached_tokens, 0)
        return (
            uncached * self.input_per_mtok
            + cached_tokens * cached_price
            + output_tokens * self.output_per_mtok
        ) / 1_000_000


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """Everything one model call needs.

    Attributes:
        messages: the conversation, OpenAI style.
        output_schema: a JSON Schema the answer must follow (structured output), or None for text.
        output_name: a short name for the schema (providers ask for one).
        tools: functions the model may call.
        max_output_tokens: a hard cap on the answer, reasoning included; None leaves the
            provider's default.
        reasoning_effort: for reasoning models that accept it; never sent to others.
        timeout: seconds before the call is abandoned with `ModelTimeoutError`.
        temperature: sampling temperature, when the model accepts one.
        on_text: called with each piece of the answer's text as it arrives, when the model can
            stream (see `Model`); not part of the request's identity (equality, the call cache).
        input_tokens: the prompt's tokens as the budget gate counted them before the call (None:
            not counted); rate limits use it instead of counting again. Not part of the
            request's identity.
        sample: which draw this is among identical requests asked for several answers (votes):
            part of the request's identity, so the call cache keeps one answer per draw, and
            never sent to the provider. None: the first (or only) draw.
    """

    messages: Sequence[Message]
    output_schema: dict[str, Any] | None = None
    output_name: str = "output"
    tools: Sequence[ToolDefinition] = ()
    max_output_tokens: int | None = None
    reasoning_effort: ReasoningEffort | None = None
    timeout: float | None = None
    temperature: float | None = None
    on_text: Callable[[str], None] | None = field(default=None, compare=False, repr=False)
    """Receives the answer's text piece by piece while it streams (None: no streaming).

    A model that can stream calls `on_text(delta)` with each piece of the answer's text as it
    arrives, in order, before `request()` returns the whole `ModelResponse`, whose `.text` is the
    concatenation of the pieces. A model that cannot stream ignores it: the caller then gets the
    text only at the end. It must not block (it runs on the event loop); an exception it raises
    ends the call and propagates unchanged. A call that fails after some pieces raises as usual:
    the pieces already passed on are not taken back, and a retry streams its answer from the
    start to the same `on_text`.
    """
    input_tokens: int | None = field(default=None, compare=False, repr=False)
    sample: int | None = None


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """What a model answered.

    Attributes:
        text: the answer's text ("" when the model only called tools).
        output: the parsed JSON of a structured answer (None for text or when it did not parse).
        tool_calls: calls the model asked for, in order.
        usage: tokens and cost of this one call.
        latency: seconds from sending the request to the full answer.
        finish_reason: "stop", "length" (hit `max_output_tokens`), "tool_calls", ...
        model: the model that answered.
        cached: True when served from delegate's call cache without a call.
    """

    text: str = ""
    output: Any = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    latency: float = 0.0
    finish_reason: str = "stop"
    model: str = ""
    cached: bool = False


@runtime_checkable
class Model(Protocol):
    """Anything that answers a `ModelRequest`.

    `name` identifies the model in usage reports ("openai/gpt-4o-mini"); `price` is its price, or
    None when unknown (an unknown price is never taken as free).

    Streaming: when `request.on_text` is set, a model that can stream calls `on_text(delta)` with
    each piece of the answer's text as it arrives, in order, before `request()` returns the whole
    `ModelResponse` (whose `.text` equals the concatenation of the pieces); a model that cannot
    stream ignores it, and the caller then gets the text only at the end. Either way `request()`
    returns the same response.
    """

    @property
    def name(self) -> str: ...

    @property
    def price(self) -> Price | None: ...

    async def request(self, request: ModelRequest) -> ModelResponse: ...


# --- the real backend ------------------------------------------------------------------------

# Arguments LiteLLMModel sets itself; passing them as extra litellm kwargs would change how
# delegate works (retries belong to the scheduler, a request streams when it sets on_text).
_RESERVED_KWARGS = frozenset(
    {
        "api_base",
        "api_key",
        "max_tokens",
        "messages",
        "model",
        "num_retries",
        "reasoning_effort",
        "response_format",
        "stream",
        "temperature",
        "timeout",
        "tools",
    }
)

_WARM_UP_MODULES = ("litellm.main", "openai.resources.chat.completions")

_litellm_module: Any = None


def _litellm() -> Any:
    """Import litellm once, configured for delegate: offline cost maps, quiet, params dropped."""
    global _litellm_module
    if _litellm_module is None:
        # Without these, litellm downloads its cost map at import and Anthropic's beta-header
        # table on the first Anthropic call; the user's own setting wins.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
        import litellm

        litellm.suppress_debug_info = True
        litellm.drop_params = True
        _log.route_litellm_logging()
        # litellm imports its completion code and the OpenAI SDK's types on the first call
        # (about a second); do it here, off the event loop, so that call is not slowed.
        for name in _WARM_UP_MODULES:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        _litellm_module = litellm
    return _litellm_module


def _is_loopback(api_base: str | None) -> bool:
    if not api_base:
        return False
    host = urllib.parse.urlsplit(api_base).hostname
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _supports_reasoning(litellm: Any, model: str) -> bool:
    try:
        return bool(litellm.supports_reasoning(model=model))
    except Exception:  # an unmapped model: litellm cannot say, so do not send the parameter
        return False


def _field(obj: Any, name: str) -> Any:
    """`obj.name` or `obj[name]`: litellm returns pydantic objects that sometimes hold dicts."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _int_field(obj: Any, name: str) -> int:
    value = _field(obj, name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class LiteLLMModel:
    """A model reached through litellm: OpenAI, Anthropic, Gemini, Ollama, vLLM, ...

    litellm is imported on the first request, not before. Each request is sent exactly once
    (`num_retries=0`: delegate's scheduler owns retries), with parameters the model does not accept
    dropped, and every litellm error mapped onto `delegate.errors`.

    A request with `on_text` set and no tools is streamed: `on_text` receives each piece of the
    text as it arrives, and the response is the one an unstreamed call returns (usage from the
    provider's final usage chunk, or counted by delegate when none arrives; structured output
    parsed from the text). A streamed call's `timeout` bounds the whole answer, not only the wait
    for each chunk. Requests with tools are never streamed (tool-call deltas are not assembled):
    their text arrives only at the end.

    Args:
        model: a litellm model string, e.g. "openai/gpt-4o-mini" or "anthropic/claude-haiku-4-5".
        endpoint: the server to send to, with its key, headers and price read as it says (see
            `Endpoint`); instead of `api_base` and `api_key`.
        api_base: the provider's base URL, for proxies and self-hosted servers.
        api_key: the key to send; by default litellm reads the provider's environment variable.
        price: USD per million (input, output) tokens, a `Price` or a pair: the model's price,
            before the endpoint's and litellm's (an unknown price is never taken as free).
            Never shown in reprs, logs, errors, events, stored runs or CLI output; neither is
            the environment's key, nor the values of auth-like `extra_headers` or credentials
            in `api_base` (values of at least 8 characters: see `delegate._secrets`).
        timeout: seconds before a call is abandoned, unless the request sets its own.
        **litellm_kwargs: more arguments for `litellm.acompletion` (`extra_headers`, `seed`,
            `api_version`, ...).

    Example::

        model = LiteLLMModel("openai/gpt-4o-mini", timeout=30)
        answer = await model.request(ModelRequest([{"role": "user", "content": "Hi"}]))

        local = Endpoint("http://127.0.0.1:11434", price=(0, 0))  # Ollama, keyless
        llama = LiteLLMModel("ollama_chat/llama3.2", endpoint=local)
    """

    def __init__(
        self,
        model: str,
        *,
        endpoint: Endpoint | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        price: Price | tuple[float, float] | None = None,
        timeout: float | None = None,
        **litellm_kwargs: Any,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(
                f"model name {model!r} is not a litellm model string; pass one such as "
                "'openai/gpt-4o-mini'"
            )
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"model {model!r}: timeout must be > 0 seconds, got {timeout}")
        reserved = sorted(_RESERVED_KWARGS.intersection(litellm_kwargs))
        if reserved:
            raise ConfigError(
                f"model {model!r}: {', '.join(reserved)} cannot be passed as extra litellm "
                "arguments; use LiteLLMModel's own parameters or the ModelRequest's fields "
                "(retries belong to delegate's scheduler)"
            )
        check_model_endpoint(model, endpoint, api_base=api_base, api_key=api_key, **litellm_kwargs)
        self._name = model
        self._endpoint = endpoint
        self._api_base = endpoint.base_url if endpoint is not None else api_base
        self._api_key = api_key
        self._price = model_price(model, price)
        self._timeout = timeout
        self._kwargs = litellm_kwargs
        # Masked from every message, log, event, stored row and CLI line from now on.
        _secrets.register(api_key)
        _secrets.register_url(api_base)
        _secrets.register_kwargs(litellm_kwargs)

    @property
    def name(self) -> str:
        """The litellm model string, e.g. "openai/gpt-4o-mini"."""
        return self._name

    @property
    def has_api_key(self) -> bool:
        """True when it was given its key (`api_key=`), so the environment's is not needed."""
        return bool(self._api_key)

    @property
    def endpoint(self) -> Endpoint | None:
        """The endpoint it sends to, when built with one."""
        return self._endpoint

    @property
    def api_base(self) -> str | None:
        """The provider base URL this model sends to, or None for the provider's default."""
        return self._api_base

    @property
    def timeout(self) -> float | None:
        """The default per-call timeout in seconds (None: litellm's default)."""
        return self._timeout

    @property
    def price(self) -> Price | None:
        """USD per million tokens: its own `price=`, else its endpoint's, else litellm's cost
        map's; None when unknown (never free)."""
        if self._price is not None:
            return self._price
        if self._endpoint is not None and self._endpoint.price is not None:
            return self._endpoint.price
        return _costmap.price_for(self._name)

    @property
    def context_window(self) -> int | None:
        """The most input tokens the model accepts, from litellm's cost map (None: unknown)."""
        return _costmap.context_window_for(self._name)

    def __repr__(self) -> str:
        if self._endpoint is not None:
            return f"LiteLLMModel({self._name!r}, endpoint={self._endpoint!r})"
        api_base = None if self._api_base is None else _secrets.redact(self._api_base)
        return f"LiteLLMModel({self._name!r}, api_base={api_base!r})"

    def _arguments(self, litellm: Any, request: ModelRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            **self._kwargs,
            "model": self._name,
            "messages": [dict(message) for message in request.messages],
            "num_retries": 0,
            "drop_params": True,
        }
        if request.max_output_tokens is not None:
            arguments["max_tokens"] = request.max_output_tokens
        timeout = request.timeout if request.timeout is not None else self._timeout
        if timeout is not None:
            arguments["timeout"] = timeout
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        if request.tools:
            arguments["tools"] = [tool.to_openai() for tool in request.tools]
        if request.output_schema is not None:
            arguments["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.output_name,
                    "schema": request.output_schema,
                    "strict": False,
                },
            }
        if request.reasoning_effort is not None and _supports_reasoning(litellm, self._name):
            arguments["reasoning_effort"] = request.reasoning_effort
        if self._endpoint is not None:
            # Read now, from the environment: a missing variable is a ConfigError, not sent.
            sent = self._endpoint.arguments()
            headers = sent.pop("extra_headers", None)
            if headers:
                arguments["extra_headers"] = {**(arguments.get("extra_headers") or {}), **headers}
            arguments.update(sent)
            return arguments
        if self._api_base is not None:
            arguments["api_base"] = self._api_base
        if self._api_key is not None:
            arguments["api_key"] = self._api_key
        return arguments

    def _check_allowed(self) -> None:
        if not ALLOW_MODEL_REQUESTS and not _is_loopback(self._api_base):
            where = _secrets.redact(self._api_base or "the provider's default endpoint")
            raise ModelRequestsBlocked(
                f"model {self._name!r}: a real request to {where} was attempted while model "
                "requests are blocked; tests must use delegate.testing's FunctionModel or "
                "ScriptedModel (or a fake server on 127.0.0.1 as api_base)"
            )

    def _error(self, exc: Exception) -> ModelError:
        # The model boundary: every key delegate knows (this model's, registered when it was
        # built, and the provider's in the environment) is masked from the message, and a
        # cause that holds one, echoed by the provider, is not chained (`from_litellm`). A
        # failure to connect says which URL and what to check, not litellm's text.
        unreachable = connection_error(exc, model=self._name, base_url=self._api_base)
        return unreachable if unreachable is not None else from_litellm(exc, model=self._name)

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send `request` to the model once and return its answer.

        When `request.on_text` is set and the request has no tools, the answer is streamed and
        `on_text` gets each piece of its text as it arrives (see `Model`).

        Raises:
            ModelRequestsBlocked: requests are blocked (tests) and the endpoint is not local.
            ModelError: the call failed, before or during the stream; a `TransientModelError`
                (rate limit, timeout, provider unavailable) is worth retrying, a
                `PermanentModelError` is not.
        """
        self._check_allowed()
        litellm = _litellm_module
        if litellm is None:
            # The first import takes seconds: keep the event loop running meanwhile.
            litellm = await anyio.to_thread.run_sync(_litellm)
        arguments = self._arguments(litellm, request)
        if request.on_text is not None and not request.tools:
            return await self._streamed(litellm, arguments, request, request.on_text)
        started = time.perf_counter()
        raw = await self._send(litellm, arguments)
        return self._response(raw, request, time.perf_counter() - started)

    async def _send(self, litellm: Any, arguments: dict[str, Any]) -> Any:
        try:
            return await litellm.acompletion(**arguments)
        except Exception as exc:
            error = self._error(exc)
        # Raised outside the except block, so litellm's exception is chained only as the
        # explicit cause (and not at all when it holds the key).
        raise error from error.__cause__

    async def _streamed(
        self,
        litellm: Any,
        arguments: dict[str, Any],
        request: ModelRequest,
        on_text: Callable[[str], None],
    ) -> ModelResponse:
        timeout: float | None = arguments.get("timeout")
        arguments = {**arguments, "stream": True, "stream_options": {"include_usage": True}}
        started = time.perf_counter()
        # litellm's timeout bounds each wait for a chunk; this bounds the whole answer, as an
        # unstreamed call's timeout does.
        with anyio.move_on_after(timeout):
            stream = await self._send(litellm, arguments)
            try:
                return await self._receive(litellm, stream, request, on_text, started)
            finally:
                await _close(stream)
        raise ModelTimeoutError(
            f"{self._name}: the streamed answer did not finish within its timeout of "
            f"{timeout:g} s; raise the request's timeout (or the model's) or lower "
            "max_output_tokens",
            model=self._name,
        )

    async def _receive(
        self,
        litellm: Any,
        stream: Any,
        request: ModelRequest,
        on_text: Callable[[str], None],
        started: float,
    ) -> ModelResponse:
        pieces: list[str] = []
        finish: str | None = None
        usage: Usage | None = None
        cap = _OutputCap(request.max_output_tokens, self._name)
        chunks: AsyncIterator[Any] = aiter(stream)
        while (chunk := await self._next_chunk(litellm, chunks)) is not None:
            if _field(chunk, "usage") is not None:
                usage = self._usage(chunk)
            choices = _field(chunk, "choices") or []
            if not choices:
                continue
            finish = _field(choices[0], "finish_reason") or finish
            delta = _field(_field(choices[0], "delta"), "content")
            if isinstance(delta, str) and delta:
                delta = cap.take(delta, pieces)
                if delta:
                    pieces.append(delta)
                    on_text(delta)
                if cap.reached:
                    # The provider ignores max_tokens (a local server, a proxy): stop reading,
                    # so the call costs no more than it reserved.
                    finish = "length"
                    log.warning(
                        "output_cap_ignored",
                        model=self._name,
                        max_output_tokens=request.max_output_tokens,
                    )
                    break
        text = "".join(pieces)
        if cap.reached:
            # Usage the provider reports after the cut is not received: count the allowance.
            usage = self._counted_usage(request, text, output_tokens=cap.limit)
        elif usage is None or usage.total_tokens == 0:
            usage = self._counted_usage(request, text)
        return ModelResponse(
            text=text,
            output=_structured(request, text),
            usage=usage,
            latency=time.perf_counter() - started,
            finish_reason=str(finish or "stop"),
            model=self._name,
        )

    async def _next_chunk(self, litellm: Any, chunks: AsyncIterator[Any]) -> Any:
        """The next chunk of the stream, or None at its end; errors mapped like `_send`'s."""
        try:
            return await anext(chunks)
        except StopAsyncIteration:
            return None
        except Exception as exc:
            # litellm wraps what broke mid-stream (a timeout, a server error event) so that its
            # router can fall back; the provider's own error says more (e.g. a timeout).
            wrapper = getattr(getattr(litellm, "exceptions", None), "MidStreamFallbackError", ())
            original = getattr(exc, "original_exception", None)
            if isinstance(exc, wrapper) and isinstance(original, Exception):
                exc = original
            error = self._error(exc)
        raise error from error.__cause__

    def _counted_usage(
        self, request: ModelRequest, text: str, output_tokens: int | None = None
    ) -> Usage:
        """Usage counted by delegate, for a stream that ended without the provider's usage."""
        from delegate.agents.tokens import count_messages, count_text

        input_tokens = count_messages(
            request.messages, self._name, request.tools, request.output_schema
        )
        if output_tokens is None:
            output_tokens = count_text(text, self._name)
        price = self.price
        return Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=0.0 if price is None else price.cost(input_tokens, output_tokens),
            calls=1,
        )

    def _usage(self, raw: Any) -> Usage:
        usage = _field(raw, "usage")
        input_tokens = _int_field(usage, "prompt_tokens")
        output_tokens = _int_field(usage, "completion_tokens")
        cached_tokens = _int_field(_field(usage, "prompt_tokens_details"), "cached_tokens")
        price = self.price
        cost = 0.0 if price is None else price.cost(input_tokens, output_tokens, cached_tokens)
        return Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            reasoning_tokens=_int_field(
                _field(usage, "completion_tokens_details"), "reasoning_tokens"
            ),
            cached_tokens=cached_tokens,
            cost_usd=cost,
            calls=1,
        )

    def _response(self, raw: Any, request: ModelRequest, latency: float) -> ModelResponse:
        choices = _field(raw, "choices") or []
        choice = choices[0] if choices else None
        message = _field(choice, "message")
        text = _field(message, "content") or ""
        tool_calls = tuple(
            ToolCall(
                id=str(_field(call, "id") or ""),
                name=str(_field(_field(call, "function"), "name") or ""),
                arguments=str(_field(_field(call, "function"), "arguments") or "{}"),
            )
            for call in _field(message, "tool_calls") or ()
        )
        return ModelResponse(
            text=text,
            output=_structured(request, text),
            tool_calls=tool_calls,
            usage=self._usage(raw),
            latency=latency,
            finish_reason=str(_field(choice, "finish_reason") or "stop"),
            model=self._name,
        )


class _OutputCap:
    """Counts a streamed answer's tokens against its `max_output_tokens`, piece by piece.

    Each piece is counted on its own (a few microseconds for a provider's small pieces); the sum
    can only overcount a little at piece boundaries, so the cut never comes late.
    """

    __slots__ = ("counted", "limit", "model", "reached")

    def __init__(self, limit: int | None, model: str) -> None:
        self.limit = limit
        self.model = model
        self.counted = 0
        self.reached = False

    def take(self, piece: str, before: list[str]) -> str:
        """The part of `piece` that fits the cap (all of it without one); `before` is the text
        taken so far."""
        if self.limit is None:
            return piece
        from delegate.agents.tokens import count_text, truncate_text

        tokens = count_text(piece, self.model)
        if self.counted + tokens <= self.limit:
            self.counted += tokens
            return piece
        # Past the cap by the pieces' sum: count the whole answer once, exactly, to be sure.
        done = "".join(before)
        whole = count_text(done + piece, self.model)
        if whole <= self.limit:
            self.counted = whole
            return piece
        self.reached = True
        taken = truncate_text(done + piece, self.limit, self.model)
        self.counted = self.limit
        return taken[len(done) :] if taken.startswith(done) else ""


def _structured(request: ModelRequest, text: str) -> Any:
    """The parsed JSON of a structured answer; None for a text request or text that is not JSON
    (or is too large or too deeply nested: the agent's validation then says why)."""
    if request.output_schema is None or not text:
        return None
    from delegate._json import loads_untrusted

    try:
        return loads_untrusted(text)
    except ValueError:
        return None


async def _close(stream: Any) -> None:
    """Close a litellm stream, so its connection is released also when reading stopped early."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        with anyio.CancelScope(shield=True):
            await close()


def resolve_model(model: str | Model) -> Model:
    """The `Model` for `model`: a litellm model string becomes a `LiteLLMModel`.

    Args:
        model: a litellm model string such as "openai/gpt-4o-mini", or any `Model`.

    Raises:
        ConfigError: `model` is neither.
    """
    if isinstance(model, str):
        return LiteLLMModel(model)
    if isinstance(model, Model):
        return model
    raise ConfigError(
        f"model must be a litellm model string such as 'openai/gpt-4o-mini' or a "
        f"delegate Model (with name, price and async request()), got {type(model).__name__}; "
        "pass a string, a LiteLLMModel, or a delegate.testing fake"
    )
