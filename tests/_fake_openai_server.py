"""A tiny OpenAI-compatible chat-completions server on 127.0.0.1, for wire-level tests.

Standard library only: a `ThreadingHTTPServer` on a free port in a background thread. It records
every request (path, headers, JSON body) and answers each with the next scripted `Reply`, or with
`default` once the script is used up::

    with FakeOpenAIServer() as server:
        server.script(rate_limited(retry_after=7), completion("hi"))
        model = LiteLLMModel("openai/gpt-4o-mini", api_base=server.base_url, api_key="sk-test")

A request with `"stream": true` gets a successful completion as server-sent events, the way OpenAI
streams it: a role chunk, one chunk per piece of the text (`completion(chunks=...)`), a chunk with
the finish reason, a usage chunk when the request asks for it (`stream_options.include_usage`),
then `data: [DONE]`. `stream_error(...)` sends a few pieces and then an error event instead of the
finish.

Because it listens on a loopback address, `LiteLLMModel` may reach it while the test suite blocks
real model requests.
"""

from __future__ import annotations

import json
import re
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
    "stream_error",
    "unauthorized",
]


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, JSON body, headers, and seconds to wait before answering.

    For a streamed request (`"stream": true`) a 200 reply is sent as server-sent events instead:
    the text in `chunks` (None: split at word boundaries), with `chunk_delay` seconds between
    them, and a usage chunk when the request asks for one and `stream_usage` is True; a
    `stream_error` body is sent after the chunks in place of the finish, usage and `[DONE]`
    events.
    """

    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunks: tuple[str, ...] | None = None
    chunk_delay: float = 0.0
    stream_error: dict[str, Any] | None = None
    stream_usage: bool = True


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
    chunks: Sequence[str] | None = None,
    chunk_delay: float = 0.0,
    stream_usage: bool = True,
) -> Reply:
    """A successful chat completion.

    Args:
        text: the assistant's content (None when it only calls tools).
        tool_calls: `(id, name, arguments)` triples.
        delay: seconds the server waits before answering (for timeouts).
        chunks: when the request streams, the pieces the text is sent in (they must join to
            `text`); None splits it at word boundaries.
        chunk_delay: when the request streams, seconds between pieces.
        stream_usage: False sends no usage chunk even when the request asks for one (as some
            OpenAI-compatible servers do).
    """
    if chunks is not None and "".join(chunks) != (text or ""):
        raise ValueError(f"chunks {list(chunks)!r} do not join to the text {text!r}")
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
    return Reply(
        body=body,
        delay=delay,
        chunks=None if chunks is None else tuple(chunks),
        chunk_delay=chunk_delay,
        stream_usage=stream_usage,
    )


def stream_error(
    chunks: Sequence[str] = ("Hel", "lo"),
    message: str = "The server had an error while processing your request.",
) -> Reply:
    """A streamed answer that sends `chunks` and then fails with an error event, as OpenAI does
    when something breaks after the first bytes (the HTTP status is already 200 by then)."""
    streamed = completion("".join(chunks), chunks=chunks)
    error = {"message": message, "type": "server_error", "param": None, "code": None}
    return Reply(body=streamed.body, chunks=streamed.chunks, stream_error=error)


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


def _pieces(text: str) -> list[str]:
    """`text` split the way providers tend to stream it: a word and the spaces after it."""
    return re.findall(r"\s*\S+\s*|\s+", text) if text else []


def _sse_events(reply: Reply, include_usage: bool) -> list[dict[str, Any]]:
    """The chunks of a streamed `reply`: role, text pieces, finish reason, usage (if asked)."""
    body = reply.body
    choice = body["choices"][0]
    text = choice["message"]["content"] or ""
    base = {key: body[key] for key in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    events = [chunk({"role": "assistant", "content": ""})]
    pieces = list(reply.chunks) if reply.chunks is not None else _pieces(text)
    events.extend(chunk({"content": piece}) for piece in pieces)
    if reply.stream_error is not None:
        return [*events, {"error": reply.stream_error}]
    events.append(chunk({}, choice["finish_reason"]))
    if include_usage and reply.stream_usage:
        events.append({**base, "choices": [], "usage": body["usage"]})
    return events


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
        if body.get("stream") is True and reply.status == 200:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(reply, include_usage)
            return
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

    def _stream(self, reply: Reply, include_usage: bool) -> None:
        # HTTP/1.0 without Content-Length: the body ends when the connection closes.
        events = _sse_events(reply, include_usage)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            for index, event in enumerate(events):
                if index > 1 and reply.chunk_delay > 0:  # after the role chunk and first piece
                    self.server.fake._released.wait(reply.chunk_delay)
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
            if reply.stream_error is None:
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading (a cancellation test)

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
