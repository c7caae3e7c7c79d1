"""The model-call cache: the same request to the same model is answered from the store.

`CachedModel(model, store)` wraps any `Model`. A request is identified by a sha256 of the
canonical JSON of what decides the answer — the model's name, the messages, the output schema
and its name, the tools' definitions, `max_output_tokens`, `reasoning_effort`, `temperature` and
the request's `sample` (which draw it is, when votes ask several answers) — not `timeout` or
`on_text`. A hit returns the stored response without calling the model, marked
`cached=True`, with zero usage: it cost nothing and made no call; a streaming request
(`on_text` set) gets the whole stored text as one piece. A miss calls the model with the request
as it is (so it streams if the model can) and stores the response as JSON (never pickle)::

    model = CachedModel(LiteLLMModel("openai/gpt-4o-mini"), Store.open())
    first = await model.request(req)    # a real call
    again = await model.request(req)    # again.cached is True, again.usage.cost_usd == 0.0

Identical requests in flight at once make one call: the others wait for it and read its answer.

It is a routing `WrapperModel` (`delegate.agents.wrappers`): in an orchestrator run
(`Orchestrator(cache=True)` puts every agent's model behind one) it sits outside the budget gate,
so a hit reserves nothing and is counted as a cache hit, not a call, while a miss passes the gate
like any request.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.to_thread
import pydantic

from delegate._log import get_logger
from delegate.agents.models import Model, ModelRequest, ModelResponse, ToolCall, Usage
from delegate.agents.wrappers import WrapperModel, report_hit
from delegate.memory.store import CorruptRecordError, Store, StoreError

__all__ = ["CachedModel", "cache_key", "response_from_json", "response_to_json"]

log = get_logger("delegate.cache")

_FORMAT = 1  # bump when the stored layout changes; older entries then stop matching


class CachedModel(WrapperModel):
    """A `Model` that answers repeated requests from the store's call cache.

    Args:
        model: the model to call on a miss (a `Model` or a litellm model string).
        store: where responses are kept.

    Attributes the wrapped model has and this wrapper does not (`context_window`,
    `expected_latency`, ...) are read from the wrapped model.
    """

    routes = True  # a hit sends nothing: outside the budget gate, each miss passes it

    def __init__(self, model: str | Model, store: Store) -> None:
        super().__init__(model)
        self.store = store
        self._inflight: dict[str, _Flight] = {}

    def __getattr__(self, name: str) -> Any:
        if name == "store":  # not set yet (while unpickling, say): not the wrapped model's
            raise AttributeError(name)
        return super().__getattr__(name)

    async def request(self, request: ModelRequest) -> ModelResponse:
        """The stored answer to `request`, else the wrapped model's answer (then stored).

        On a hit, `request.on_text` (when set) is called once with the whole stored text; on a
        miss the wrapped model gets the request unchanged and streams as it can.
        """
        started = time.perf_counter()
        try:
            key = cache_key(_identity(self.wrapped), request)
        except (TypeError, ValueError) as exc:
            # A request that has no canonical JSON cannot be matched safely: always call.
            log.warning("cache_unkeyable_request", model=self.name, error=str(exc))
            return await self.send(self.wrapped, request)
        flight = self._inflight.setdefault(key, _Flight())
        flight.waiters += 1
        try:
            async with flight.lock:
                hit = await self._lookup(key, started)
                if hit is not None:
                    if request.on_text is not None and hit.text:
                        request.on_text(hit.text)
                    report_hit(hit)
                    return hit
                response = await self.send(self.wrapped, request)
                await self._save(key, response)
                return response
        finally:
            flight.waiters -= 1
            if flight.waiters == 0:
                del self._inflight[key]

    async def _lookup(self, key: str, started: float) -> ModelResponse | None:
        try:
            stored = await anyio.to_thread.run_sync(self.store.get_cached, key)
        except CorruptRecordError as exc:
            log.warning("cache_entry_corrupt", model=self.name, key=key, error=str(exc))
            return None
        if stored is None:
            log.debug("cache_miss", model=self.name, key=key)
            return None
        try:
            response = response_from_json(stored)
        except CorruptRecordError as exc:
            log.warning("cache_entry_corrupt", model=self.name, key=key, error=str(exc))
            return None
        log.debug("cache_hit", model=self.name, key=key)
        return ModelResponse(
            text=response.text,
            output=response.output,
            tool_calls=response.tool_calls,
            usage=Usage(),
            latency=time.perf_counter() - started,
            finish_reason=response.finish_reason,
            model=response.model,
            cached=True,
        )

    async def _save(self, key: str, response: ModelResponse) -> None:
        try:
            payload = response_to_json(response)
            await anyio.to_thread.run_sync(
                lambda: self.store.put_cached(key, self.wrapped.name, payload)
            )
        except (StoreError, TypeError, ValueError) as exc:
            # The answer was paid for and is good; failing to keep a copy must not lose it.
            log.warning("cache_write_failed", model=self.name, key=key, error=str(exc))


@dataclass(slots=True)
class _Flight:
    """Callers of one key: the first to hold the lock calls, the rest then read its answer."""

    lock: anyio.Lock = field(default_factory=anyio.Lock)
    waiters: int = 0


def _identity(model: Model) -> str:
    """What names the server that answers: the model's name, and its base URL when it has one
    (two local servers may serve the same model name, and must not share answers)."""
    base = getattr(model, "api_base", None)
    return model.name if not isinstance(base, str) or not base else f"{model.name} @ {base}"


def cache_key(model: str, request: ModelRequest) -> str:
    """The sha256 (hex) of the canonical JSON of what decides `model`'s answer to `request`.

    `timeout` and `on_text` change how the answer is received, not what it is: they are left out.

    Raises:
        TypeError, ValueError: the request holds something JSON cannot represent.
    """
    payload = {
        "format": _FORMAT,
        "model": model,
        "messages": [dict(message) for message in request.messages],
        "output_schema": request.output_schema,
        "output_name": request.output_name if request.output_schema is not None else None,
        "tools": [
            {"name": t.name, "description": t.description, "parameters": t.parameters}
            for t in request.tools
        ],
        "max_output_tokens": request.max_output_tokens,
        "reasoning_effort": request.reasoning_effort,
        "temperature": request.temperature,
    }
    if request.sample is not None:  # another draw of the same request: its own answer
        payload["sample"] = request.sample
    canonical = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def response_to_json(response: ModelResponse) -> dict[str, Any]:
    """`response` as plain JSON data; `response_from_json` rebuilds it exactly."""
    return {
        "format": _FORMAT,
        "text": response.text,
        "output": response.output,
        "tool_calls": [
            {"id": call.id, "name": call.name, "arguments": call.arguments}
            for call in response.tool_calls
        ],
        "usage": response.usage.to_dict(),
        "latency": response.latency,
        "finish_reason": response.finish_reason,
        "model": response.model,
        "cached": response.cached,
    }


def response_from_json(data: Mapping[str, Any]) -> ModelResponse:
    """The `ModelResponse` that `response_to_json` turned into `data`.

    Raises:
        CorruptRecordError: `data` is not a stored response (wrong shape or types).
    """
    try:
        stored = _StoredResponse.model_validate(data)
    except pydantic.ValidationError as exc:
        raise CorruptRecordError(
            f"cached model response does not have the stored layout: {_errors(exc)}; the entry "
            "is ignored and the model is called again"
        ) from exc
    return ModelResponse(
        text=stored.text,
        output=stored.output,
        tool_calls=tuple(ToolCall(c.id, c.name, c.arguments) for c in stored.tool_calls),
        usage=Usage(**stored.usage.model_dump()),
        latency=stored.latency,
        finish_reason=stored.finish_reason,
        model=stored.model,
        cached=stored.cached,
    )


def _errors(exc: pydantic.ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True, extra="forbid", frozen=True)


class _StoredToolCall(_Strict):
    id: str
    name: str
    arguments: str


class _StoredUsage(_Strict):
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cached_tokens: int
    cost_usd: float
    calls: int
    unconfirmed_usd: float = 0.0


class _StoredResponse(_Strict):
    format: Literal[1]
    text: str
    output: Any
    tool_calls: list[_StoredToolCall]
    usage: _StoredUsage
    latency: float
    finish_reason: str
    model: str
    cached: bool
