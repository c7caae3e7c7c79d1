"""A fake Anthropic Messages API on 127.0.0.1: the scripts of `FakeOpenAIServer`, Anthropic's wire.

`POST /v1/messages` is answered from the same script of `Reply`s, built with the same functions
(`completion`, `rate_limited`, `unauthorized_echo`, `over_max_tokens`, ...), and billed the same
way (`billed_usd`, `bills`; the default price is Claude Haiku 4.5's $1.00 / $5.00). Only what goes
over the wire differs::

    with FakeAnthropicServer() as server:
        server.script(rate_limited(retry_after=7), completion("hi"))
        model = LiteLLMModel(
            "anthropic/claude-haiku-4-5", api_base=server.base_url, api_key="sk-ant-test"
        )

`base_url` has no `/v1`: litellm appends `/v1/messages` to it. Another path gets a 404
`not_found_error`, so a wrong base URL shows at once.

- an answer is a `message` with `text` and `tool_use` content blocks, `stop_reason` (`end_turn`,
  `max_tokens`, `tool_use`) and `usage` (`input_tokens` without the cached ones, which are
  `cache_read_input_tokens`; `output_tokens`);
- a streamed answer (`"stream": true`) is the events `message_start`, `content_block_start`,
  `ping`, a `content_block_delta` per piece of text, `content_block_stop`, `message_delta` (the
  stop reason and `usage.output_tokens`) and `message_stop`; `stream_error(...)` ends it with an
  `error` event instead;
- an error is `{"type": "error", "error": {"type": ..., "message": ...}}`, its type from the
  status: 400 `invalid_request_error` (a context-length error says "prompt is too long", as
  Anthropic does), 401 `authentication_error`, 404 `not_found_error`, 429 `rate_limit_error`,
  500 `api_error`, 529 `overloaded_error` (`overloaded()`); the headers (`retry-after`) as
  scripted.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from _fake_openai_server import (
    Bill,
    Event,
    FakeOpenAIServer,
    RecordedRequest,
    Reply,
    _error,
    _pieces,
    _shares,
    completion,
    context_length_exceeded,
    over_max_tokens,
    rate_limited,
    server_error,
    stream_error,
    unauthorized,
    unauthorized_echo,
)

__all__ = [
    "Bill",
    "FakeAnthropicServer",
    "RecordedRequest",
    "Reply",
    "completion",
    "context_length_exceeded",
    "over_max_tokens",
    "overloaded",
    "rate_limited",
    "server_error",
    "stream_error",
    "unauthorized",
    "unauthorized_echo",
]

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def overloaded(retry_after: int | None = None) -> Reply:
    """529 `overloaded_error`, as Anthropic answers when it is over capacity."""
    headers = {} if retry_after is None else {"retry-after": str(retry_after)}
    return _error(529, "Overloaded", "overloaded_error", "overloaded", **headers)


def _error_body(reply: Reply) -> dict[str, Any]:
    error = reply.body.get("error") or {}
    message = str(error.get("message", ""))
    if error.get("code") == "context_length_exceeded":
        message = "prompt is too long: 230512 tokens > 200000 maximum"
    kind = _ERROR_TYPES.get(reply.status, "api_error" if reply.status >= 500 else None)
    return {
        "type": "error",
        "error": {"type": kind or "invalid_request_error", "message": message},
    }


def _usage(body: dict[str, Any], output_tokens: int | None = None) -> dict[str, int]:
    usage = body.get("usage") or {}
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0))
    return {
        "input_tokens": int(usage.get("prompt_tokens", 0)) - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": (
            int(usage.get("completion_tokens", 0)) if output_tokens is None else output_tokens
        ),
    }


class FakeAnthropicServer(FakeOpenAIServer):
    """An Anthropic Messages API on 127.0.0.1 that answers from a script and records requests.

    The same API as `FakeOpenAIServer` (`script`, `default`, `requests`, `bodies`, `billed_usd`,
    `billed_calls`, `billed_tokens`, `bills`, `cost`, `release`, `wait_idle`); `base_url` is
    `http://127.0.0.1:<port>`.

    Args:
        price: USD per million (input, output) tokens billed; default Claude Haiku 4.5's.
    """

    default_price: ClassVar[tuple[float, float]] = (1.00, 5.00)
    paths: ClassVar[tuple[str, ...] | None] = ("/v1/messages",)
    _thread_name: ClassVar[str] = "fake-anthropic-server"

    @property
    def base_url(self) -> str:
        """The `api_base` to give a model: `http://127.0.0.1:<port>` (litellm adds the path)."""
        return f"http://127.0.0.1:{self.port}"

    def _not_found(self, path: str) -> Reply:
        return _error(404, f"Not found: POST {path} (the API is at /v1/messages)", "", None)

    def _message(self, reply: Reply, request: RecordedRequest) -> dict[str, Any]:
        choice = reply.body["choices"][0]
        content: list[dict[str, Any]] = []
        if choice["message"].get("content"):
            content.append({"type": "text", "text": choice["message"]["content"]})
        content += [
            {
                "type": "tool_use",
                "id": call["id"],
                "name": call["function"]["name"],
                "input": json.loads(call["function"]["arguments"]),
            }
            for call in choice["message"].get("tool_calls") or ()
        ]
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": request.body.get("model", "claude-haiku-4-5"),
            "content": content,
            "stop_reason": _STOP_REASONS.get(choice["finish_reason"], choice["finish_reason"]),
            "stop_sequence": None,
            "usage": _usage(reply.body),
        }

    def _render(self, reply: Reply, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        body = self._message(reply, request) if reply.status == 200 else _error_body(reply)
        return reply.status, dict(reply.headers), json.dumps(body).encode()

    def _events(self, reply: Reply, request: RecordedRequest) -> list[Event]:
        message = self._message(reply, request)
        text = "".join(block["text"] for block in message["content"] if block["type"] == "text")
        pieces = list(reply.chunks) if reply.chunks is not None else _pieces(text)
        _, answer = self._usage(reply)
        shares = _shares(answer, len(pieces)) if pieces else []
        start = {**message, "content": [], "stop_reason": None}
        start["usage"] = _usage(reply.body, output_tokens=0)
        events = [
            Event({"type": "message_start", "message": start}, "message_start"),
            Event(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
            Event({"type": "ping"}, "ping"),
        ]
        events += [
            Event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
                "content_block_delta",
                tokens=share,
                paced=n > 0,
            )
            for n, (piece, share) in enumerate(zip(pieces, shares, strict=True))
        ]
        paced = bool(pieces)
        if reply.stream_error is not None:
            error = {"type": "api_error", "message": str(reply.stream_error.get("message", ""))}
            return [*events, Event({"type": "error", "error": error}, "error", paced=paced)]
        return [
            *events,
            Event({"type": "content_block_stop", "index": 0}, "content_block_stop", paced=paced),
            Event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                    "usage": {"output_tokens": answer},
                },
                "message_delta",
                tokens=0 if pieces else answer,
                paced=paced,
            ),
            Event({"type": "message_stop"}, "message_stop", paced=paced),
        ]
