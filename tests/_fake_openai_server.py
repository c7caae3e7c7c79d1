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

The server also keeps the bill a real provider would send (`billed_usd`, `bills`), independently
of what the client counts: a completed answer is billed its usage at `price`; an answer the client
abandoned (a timeout, a cancelled stream) is billed the work the server did — the prompt and every
completion token it generated (all of them for an unstreamed answer, which is generated before
the first byte is sent; the pieces generated before the client went away for a stream); an error
reply (429, 401, 400, 5xx) is billed nothing.

The replies are written in OpenAI's shapes; `_fake_anthropic_server.FakeAnthropicServer` answers
the same scripts in Anthropic's Messages format, so one test can run against both.

Because it listens on a loopback address, `LiteLLMModel` may reach it while the test suite blocks
real model requests.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal

__all__ = [
    "Bill",
    "FakeOpenAIServer",
    "RecordedRequest",
    "Reply",
    "completion",
    "context_length_exceeded",
    "over_max_tokens",
    "rate_limited",
    "server_error",
    "stream_error",
    "unauthorized",
    "unauthorized_echo",
]

Outcome = Literal["refused", "answering", "answered", "abandoned", "failed"]

# The seconds between two looks at whether the client is still there, while a reply waits.
_POLL = 0.02


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, JSON body, headers, and seconds to wait before answering.

    For a streamed request (`"stream": true`) a 200 reply is sent as server-sent events instead:
    the text in `chunks` (None: split at word boundaries), with `chunk_delay` seconds between
    them, and a usage chunk when the request asks for one and `stream_usage` is True; a
    `stream_error` body is sent after the chunks in place of the finish, usage and `[DONE]`
    events.

    `echo_key`: the text `{key}` in the error message is replaced by the API key the request
    carried. `overshoot`: the answer is made when the request arrives, `overshoot` tokens longer
    than the request's `max_tokens` (see `over_max_tokens`).
    """

    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunks: tuple[str, ...] | None = None
    chunk_delay: float = 0.0
    stream_error: dict[str, Any] | None = None
    stream_usage: bool = True
    echo_key: bool = False
    overshoot: int | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class Bill:
    """What the provider bills for one request it received.

    Attributes:
        status: the HTTP status it answered (or was about to answer) with.
        input_tokens: prompt tokens billed (all of the prompt, once the request is served).
        output_tokens: completion tokens billed: the ones generated so far.
        outcome: "refused" (an error status: nothing billed), "answering" (still at work),
            "answered" (the whole answer was sent), "abandoned" (the client went away first),
            "failed" (a stream that ended with an error event).
    """

    status: int
    input_tokens: int
    output_tokens: int
    outcome: Outcome


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
        delay: seconds the server waits before answering (for timeouts). The answer is generated
            and billed when the request arrives, whether or not the client waits for it.
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


def over_max_tokens(
    overshoot: int = 100,
    *,
    prompt_tokens: int = 12,
    delay: float = 0.0,
    chunk_delay: float = 0.0,
) -> Reply:
    """An answer from a server that ignores `max_tokens`: `overshoot` tokens longer than the
    request's `max_tokens` (or `max_completion_tokens`; `overshoot` tokens when it sets none),
    one word a token ("w1 w2 w3 ..."), streamed a word a chunk, its usage the real count."""
    if overshoot < 1:
        raise ValueError(f"overshoot must be at least 1 token, got {overshoot}")
    answer = completion("", prompt_tokens=prompt_tokens, completion_tokens=0, delay=delay)
    return replace(answer, chunk_delay=chunk_delay, overshoot=overshoot)


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


def server_error(status: int = 500) -> Reply:
    """A server error (500 by default), as OpenAI sends it when it fails internally."""
    return _error(
        status, "The server had an error while processing your request.", "server_error", None
    )


def unauthorized(message: str = "Incorrect API key provided.") -> Reply:
    """401 invalid API key."""
    return _error(401, message, "invalid_request_error", "invalid_api_key")


def unauthorized_echo(message: str = "Incorrect API key provided: {key}.") -> Reply:
    """401 whose message repeats the API key the request carried (its `Authorization: Bearer`
    or `x-api-key` header) in place of `{key}`, as providers do with part of it: for tests that
    a key never leaks through an error."""
    return replace(unauthorized(message), echo_key=True)


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


def _shares(total: int, parts: int) -> list[int]:
    """`total` tokens spread over `parts` pieces, in whole tokens that add up to `total`."""
    return [total * (n + 1) // parts - total * n // parts for n in range(parts)]


def _key(headers: dict[str, str]) -> str:
    """The API key a request carried."""
    bearer = headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        return bearer[len("bearer ") :]
    return headers.get("x-api-key") or headers.get("api-key") or bearer


@dataclass(frozen=True)
class Event:
    """One server-sent event of a streamed answer.

    Attributes:
        data: the JSON payload, or raw text (`[DONE]`).
        name: the `event:` line (Anthropic's events have one, OpenAI's none).
        tokens: completion tokens generated for this event, billed before it is sent.
        paced: `chunk_delay` is waited before this event (every event after the first piece of
            text).
    """

    data: dict[str, Any] | str
    name: str | None = None
    tokens: int = 0
    paced: bool = False

    def encode(self) -> bytes:
        data = self.data if isinstance(self.data, str) else json.dumps(self.data)
        head = f"event: {self.name}\n" if self.name else ""
        return f"{head}data: {data}\n\n".encode()


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
        request = RecordedRequest("POST", self.path, headers, body)
        reply, bill = fake._receive(request)
        try:
            self._answer(fake, request, reply, bill)
        finally:
            fake._done(bill)

    def _answer(
        self, fake: FakeOpenAIServer, request: RecordedRequest, reply: Reply, bill: _Bill
    ) -> None:
        if not self._wait(reply.delay):
            fake._settle(bill, "abandoned")
            return
        if request.body.get("stream") is True and reply.status == 200:
            self._stream(fake, fake._events(reply, request), reply, bill)
            return
        status, headers, payload = fake._render(reply, request)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            fake._settle(bill, "abandoned")  # the client gave up (a timeout test)
            return
        fake._settle(bill, "answered" if status == 200 else "refused")

    def _stream(
        self, fake: FakeOpenAIServer, events: list[Event], reply: Reply, bill: _Bill
    ) -> None:
        # HTTP/1.0 without Content-Length: the body ends when the connection closes.
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            for event in events:
                if (event.paced and not self._wait(reply.chunk_delay)) or self._client_gone():
                    fake._settle(bill, "abandoned")  # a provider stops generating
                    return
                fake._generated(bill, event.tokens)
                self.wfile.write(event.encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            fake._settle(bill, "abandoned")  # the client stopped reading (a cancellation test)
            return
        fake._settle(bill, "answered" if reply.stream_error is None else "failed")

    def _wait(self, seconds: float) -> bool:
        """Wait `seconds` (less once the server is released); False if the client went away."""
        deadline = time.monotonic() + seconds
        released = self.server.fake._released
        while (left := deadline - time.monotonic()) > 0 and not released.is_set():
            if self._client_gone():
                return False
            released.wait(min(left, _POLL))
        return True

    def _client_gone(self) -> bool:
        """Whether the client closed its side of the connection (it abandoned the request)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAIServer


@dataclass
class _Bill:
    status: int
    input_tokens: int = 0
    output_tokens: int = 0
    outcome: Outcome = "answering"


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1 that answers from a script and records requests.

    Args:
        price: what the provider bills, USD per million (input, output) tokens; cached input
            tokens are billed as input. Default: gpt-4o-mini's $0.15 / $0.60.

    Attributes:
        default: the reply once the script is used up (a plain completion unless changed).
        requests: every request received, in order.
        price: the (input, output) USD per million tokens billed.
    """

    default_price: ClassVar[tuple[float, float]] = (0.15, 0.60)
    #: Paths answered; any other gets a 404 (None: every path, as an OpenAI-compatible proxy).
    paths: ClassVar[tuple[str, ...] | None] = None
    _thread_name: ClassVar[str] = "fake-openai-server"

    def __init__(self, *, price: tuple[float, float] | None = None) -> None:
        self.default: Reply = completion()
        self.requests: list[RecordedRequest] = []
        self.price: tuple[float, float] = self.default_price if price is None else price
        self._script: deque[Reply] = deque()
        self._bills: list[_Bill] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        self._released = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=self._thread_name, daemon=True
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

    # --- billing -------------------------------------------------------------------------------

    @property
    def bills(self) -> list[Bill]:
        """One bill per request received, in order; final once `wait_idle()` (or `await
        idle()`) has returned, since the client may have its answer before the server is done."""
        with self._lock:
            return [Bill(b.status, b.input_tokens, b.output_tokens, b.outcome) for b in self._bills]

    @property
    def billed_calls(self) -> int:
        """The requests that reached the server, whatever it answered."""
        with self._lock:
            return len(self._bills)

    @property
    def billed_tokens(self) -> tuple[int, int]:
        """The (input, output) tokens billed so far, over all requests."""
        with self._lock:
            return (
                sum(bill.input_tokens for bill in self._bills),
                sum(bill.output_tokens for bill in self._bills),
            )

    @property
    def billed_usd(self) -> float:
        """What the provider bills for every request so far: `cost(*billed_tokens)`."""
        return self.cost(*self.billed_tokens)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for the tokens at `price`, computed as `billed_usd` is (to compare exactly)."""
        per_input, per_output = self.price
        return (input_tokens * per_input + output_tokens * per_output) / 1_000_000

    # --- scripting -----------------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with `replies`, in order, then with `default`."""
        with self._lock:
            self._script.extend(replies)

    def release(self) -> None:
        """End every wait (`delay`, `chunk_delay`) now: the replies are sent at once."""
        self._released.set()

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until every request received has been answered or abandoned (then `bills` are
        final). This blocks: from async code, `await server.idle()`, so that the client can close
        the connections it abandoned meanwhile.

        Raises:
            TimeoutError: some request is still being served after `timeout` seconds.
        """
        with self._idle:
            if not self._idle.wait_for(lambda: self._busy == 0, timeout):
                raise TimeoutError(f"{self._busy} request(s) still being served")

    async def idle(self, within: float = 5.0) -> None:
        """`wait_idle` for async tests: waits in a worker thread, the event loop keeps running."""
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.wait_idle, within)

    def _receive(self, request: RecordedRequest) -> tuple[Reply, _Bill]:
        """Record `request`, pick its reply and open its bill (the whole answer's tokens for an
        unstreamed one, generated before it is sent; the prompt's for a stream)."""
        with self._lock:
            self.requests.append(request)
            reply = self._script.popleft() if self._script else self.default
            reply = self._made_for(reply, request)
            bill = _Bill(reply.status)
            if reply.status == 200:
                prompt, answer = self._usage(reply)
                streamed = request.body.get("stream") is True
                bill.input_tokens = prompt
                bill.output_tokens = 0 if streamed else answer
            else:
                bill.outcome = "refused"
            self._bills.append(bill)
            self._busy += 1
            return reply, bill

    def _made_for(self, reply: Reply, request: RecordedRequest) -> Reply:
        """`reply` as sent for `request`: its path known, the key echoed, the overshoot made."""
        if self.paths is not None and request.path.partition("?")[0] not in self.paths:
            return self._not_found(request.path)
        if reply.echo_key:
            error = dict(reply.body.get("error") or {})
            error["message"] = str(error.get("message", "")).replace("{key}", _key(request.headers))
            return replace(reply, body={**reply.body, "error": error}, echo_key=False)
        if reply.overshoot is not None:
            limit = request.body.get("max_tokens") or request.body.get("max_completion_tokens")
            words = (limit if isinstance(limit, int) else 0) + reply.overshoot
            text = " ".join(f"w{n}" for n in range(1, words + 1))
            usage = reply.body.get("usage") or {}
            made = completion(
                text,
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=words,
                model=str(reply.body.get("model", "")),
            )
            return replace(reply, body=made.body, overshoot=None)
        return reply

    def _not_found(self, path: str) -> Reply:
        return _error(404, f"Unknown request URL: POST {path}.", "invalid_request_error", None)

    @staticmethod
    def _usage(reply: Reply) -> tuple[int, int]:
        usage = reply.body.get("usage") or {}
        return int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))

    def _generated(self, bill: _Bill, tokens: int) -> None:
        with self._lock:
            bill.output_tokens += tokens

    def _settle(self, bill: _Bill, outcome: Outcome) -> None:
        with self._lock:
            bill.outcome = outcome

    def _done(self, bill: _Bill) -> None:
        with self._lock:
            if bill.outcome == "answering":
                bill.outcome = "abandoned"
            self._busy -= 1
            self._idle.notify_all()

    # --- the wire format -----------------------------------------------------------------------

    def _render(self, reply: Reply, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and JSON body of an unstreamed answer."""
        return reply.status, dict(reply.headers), json.dumps(reply.body).encode()

    def _events(self, reply: Reply, request: RecordedRequest) -> list[Event]:
        """The chunks of a streamed answer: role, text pieces, finish reason, usage (if asked)."""
        body = reply.body
        include_usage = bool((request.body.get("stream_options") or {}).get("include_usage"))
        choice = body["choices"][0]
        text = choice["message"]["content"] or ""
        base = {key: body[key] for key in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }

        pieces = list(reply.chunks) if reply.chunks is not None else _pieces(text)
        _, answer = self._usage(reply)
        shares = _shares(answer, len(pieces)) if pieces else []
        events = [Event(chunk({"role": "assistant", "content": ""}))]
        events += [
            Event(chunk({"content": piece}), tokens=share, paced=n > 0)
            for n, (piece, share) in enumerate(zip(pieces, shares, strict=True))
        ]
        paced = bool(pieces)
        if reply.stream_error is not None:
            return [*events, Event({"error": reply.stream_error}, paced=paced)]
        rest = 0 if pieces else answer  # tool calls only: generated with the finish
        events.append(Event(chunk({}, choice["finish_reason"]), tokens=rest, paced=paced))
        if include_usage and reply.stream_usage:
            events.append(Event({**base, "choices": [], "usage": body["usage"]}, paced=paced))
        return [*events, Event("[DONE]")]

    # --- life cycle ----------------------------------------------------------------------------

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
