"""A tiny OpenAI-compatible chat-completions server on 127.0.0.1, for wire-level tests.

Standard library only: a `ThreadingHTTPServer` on a free port in a background thread. It records
every request (path, headers, JSON body) and answers each with the next scripted `Reply`, or with
`default` once the script is used up::

    with FakeOpenAIServer() as server:
        server.script(rate_limited(retry_after=7), completion("hi"))
        model = LiteLLMModel("openai/gpt-4o-mini", api_base=server.base_url, api_key="sk-test")

Because it listens on a loopback address, `LiteLLMModel` may reach it while the test suite blocks
real model requests.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "FakeOpenAIServer",
    "RecordedRequest",
    "Reply",
    "completion",
    "context_length_exceeded",
    "rate_limited",
    "server_error",
    "unauthorized",
]


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, JSON body, headers, and seconds to wait before answering."""

    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def completion(
    text: str | None = "Hello!",
    *,
    prompt_tokens: int = 12,
    completion_tokens: int = 5,
    reasoning_tokens: int = 0,
    cached_tokens: int = 0,
    finish_reason: str = "stop",
    tool_calls: Sequence[tuple[str, str, dict[str, Any]]] = (),
    model: str = "gpt-4o-mini-2024-07-18",
    delay: float = 0.0,
) -> Reply:
    """A successful chat completion.

    Args:
        text: the assistant's content (None when it only calls tools).
        tool_calls: `(id, name, arguments)` triples.
        delay: seconds the server waits before answering (for timeouts).
    """
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            for call_id, name, arguments in tool_calls
        ]
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
    }
    return Reply(body=body, delay=delay)


def _error(status: int, message: str, type_: str, code: str | None, **headers: str) -> Reply:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return Reply(status=status, body=body, headers=headers)


def rate_limited(retry_after: int = 7) -> Reply:
    """429 with a `Retry-After` header, as OpenAI sends it."""
    return _error(
        429,
        "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3.",
        "requests",
        "rate_limit_exceeded",
        **{"Retry-After": str(retry_after)},
    )


def server_error() -> Reply:
    """500, as OpenAI sends it when it fails internally."""
    return _error(
        500, "The server had an error while processing your request.", "server_error", None
    )


def unauthorized(message: str = "Incorrect API key provided.") -> Reply:
    """401 invalid API key."""
    return _error(401, message, "invalid_request_error", "invalid_api_key")


def context_length_exceeded() -> Reply:
    """400 with OpenAI's `context_length_exceeded` error."""
    return _error(
        400,
        "This model's maximum context length is 128000 tokens. However, your messages resulted "
        "in 130512 tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        "context_length_exceeded",
    )


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        fake = self.server.fake
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = fake._record(RecordedRequest("POST", self.path, headers, body))
        if reply.delay > 0:
            fake._released.wait(reply.delay)
        payload = json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to answer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAIServer


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1 that answers from a script and records requests.

    Attributes:
        default: the reply once the script is used up (a plain completion unless changed).
        requests: every request received, in order.
    """

    def __init__(self) -> None:
        self.default: Reply = completion()
        self.requests: list[RecordedRequest] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-openai-server", daemon=True
        )

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """The `api_base` to give a model: `http://127.0.0.1:<port>/v1`."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the requests received, in order."""
        with self._lock:
            return [request.body for request in self.requests]

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with `replies`, in order, then with `default`."""
        with self._lock:
            self._script.extend(replies)

    def _record(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            return self._script.popleft() if self._script else self.default

    def start(self) -> FakeOpenAIServer:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Release delayed replies, stop serving and free the port."""
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
