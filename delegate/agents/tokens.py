"""Token counting that works offline and never imports litellm.

Plain tiktoken downloads its BPE files on first use and hangs with no network. litellm ships the
cl100k_base, o200k_base and p50k_base files inside its package (named by the sha1 of their download
URL), so we build tiktoken's encodings from those files: tiktoken's own constructors run, only the
download is replaced by a read of the shipped file. litellm is located with `find_spec`, which does
not import it.

OpenAI's gpt-4o/4.1/5 and o-series models use o200k_base and count exactly; gpt-4/3.5 use
cl100k_base. Every other model (Claude, Gemini, local ones) is counted with cl100k_base as an
*estimate* — `encoding_for(model).exact` says which.

Long texts are counted in chunks of at most 64K characters: tiktoken's pre-tokenizer overflows its
stack on a run of a million spaces (a Rust panic, which Python sees as a `BaseException` that no
handler catches), and long pieces are slow to merge. A chunk ends just before a space that follows
another character, where both encodings' pre-tokenizers start a new piece anyway, so the count is
exact; only a chunk without such a space (a run of whitespace, one enormous word) is cut where it
is, which may miscount a token or two at the cut. A text too long to fit the model's context
window whatever its tokens (more characters than the window times the longest token) is not
tokenized at all: its count is a lower bound, already larger than the window.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import json
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from unittest import mock

from delegate._log import get_logger
from delegate.agents.models import Message, ToolDefinition

__all__ = [
    "Encoding",
    "count_messages",
    "count_text",
    "count_tools",
    "encoding_for",
    "truncate_text",
]

log = get_logger("delegate.tokens")

# OpenAI's accounting for chat messages: a few tokens of framing per message and for the reply.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMING = 3
_TOOLS_OVERHEAD = 12

_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")
_CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada")


class _Tiktoken(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...

    def decode(self, tokens: list[int]) -> str: ...


@dataclass(frozen=True, slots=True)
class Encoding:
    """Which tokenizer counts a model's tokens, and whether the count is exact or an estimate."""

    name: str
    exact: bool


def _bare_model_name(model: str) -> str:
    # "openai/gpt-4o-mini" -> "gpt-4o-mini"; "azure/my-deployment" stays an estimate.
    return model.rsplit("/", 1)[-1].lower()


@functools.lru_cache(maxsize=512)
def encoding_for(model: str) -> Encoding:
    """The encoding used to count `model`'s tokens.

    Args:
        model: a litellm model string such as "openai/gpt-4o-mini" or "anthropic/claude-haiku-4-5".
    """
    provider = model.split("/", 1)[0].lower() if "/" in model else "openai"
    bare = _bare_model_name(model)
    if provider in ("openai", "azure", "openrouter") or "/" not in model:
        if bare.startswith(_O200K_PREFIXES):
            return Encoding("o200k_base", exact=True)
        if bare.startswith(_CL100K_PREFIXES):
            return Encoding("cl100k_base", exact=True)
    return Encoding("cl100k_base", exact=False)


def _litellm_tokenizer_dir() -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"


def _load_shipped_bpe(blobpath: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """Stand-in for `tiktoken.load.load_tiktoken_bpe` that reads litellm's copy of the file."""
    directory = _litellm_tokenizer_dir()
    if directory is None:
        raise FileNotFoundError("litellm is not installed, so its tokenizer files are missing")
    path = directory / hashlib.sha1(blobpath.encode()).hexdigest()
    data = path.read_bytes()
    if expected_hash and hashlib.sha256(data).hexdigest() != expected_hash:
        raise ValueError(f"tokenizer file {path} does not match its expected hash")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


_build_lock = threading.Lock()


@functools.cache
def _tiktoken(name: str) -> _Tiktoken | None:
    """Build a tiktoken encoding from the shipped file; None if that is impossible offline."""
    import tiktoken
    from tiktoken_ext import openai_public

    constructor = getattr(openai_public, name)
    with _build_lock:
        try:
            with mock.patch.object(openai_public, "load_tiktoken_bpe", _load_shipped_bpe):
                params: dict[str, Any] = constructor()
        except (OSError, ValueError) as exc:
            log.warning(
                "tokenizer_unavailable",
                encoding=name,
                error=str(exc),
                fallback="4 characters per token",
            )
            return None
    encoding: _Tiktoken = tiktoken.Encoding(**params)
    return encoding


def count_text(text: str, model: str) -> int:
    """Tokens in `text` for `model` (exact for OpenAI models, an estimate for others).

    A text longer than the model's context window could hold (more characters than the window
    times the longest token, 128 characters) is not tokenized: the count returned is a lower
    bound, and already more than the window.
    """
    if not text:
        return 0
    name = encoding_for(model).name
    if len(text) <= _CACHED_TEXT_CHARS:
        return _count_short(text, name)
    bound = _beyond_window(len(text), model)
    if bound is not None:
        return bound
    return sum(_count(chunk, name) for chunk in _chunks(text))


# Instructions, tool schemas and short answers repeat across the calls of a run: a small cache of
# short texts turns their counts into a dict look-up. Long texts are rarely repeated; not cached.
_CACHED_TEXT_CHARS = 2048
# Longer texts are encoded a chunk at a time (see the module docstring).
_CHUNK_CHARS = 65_536
# A chunk ends before a space that follows a non-space: a piece boundary in both encodings.
_CHUNK_END = re.compile(r"(?<=\S) ")
# No token of cl100k_base or o200k_base is longer than this many bytes (so characters).
_LONGEST_TOKEN_CHARS = 128


def _chunks(text: str) -> Iterable[str]:
    """`text` in pieces of at most `_CHUNK_CHARS`, cut where the count does not change."""
    start, end = 0, len(text)
    while end - start > _CHUNK_CHARS:
        limit = start + _CHUNK_CHARS
        cut = limit
        # The last boundary near the window's end; failing that, in its second half.
        for margin in (1024, _CHUNK_CHARS // 2):
            for match in _CHUNK_END.finditer(text, limit - margin, limit):
                cut = match.start()
            if cut < limit:
                break
        yield text[start:cut]
        start = cut
    yield text[start:]


def _beyond_window(chars: int, model: str) -> int | None:
    """A lower bound on the tokens of a text of `chars` characters when it surely does not fit
    `model`'s context window; None when it might."""
    from delegate.agents import _costmap

    window = _costmap.context_window_for(model)
    if window is None or chars <= window * _LONGEST_TOKEN_CHARS:
        return None
    return -(-chars // _LONGEST_TOKEN_CHARS)


def _count(text: str, encoding: str) -> int:
    encoder = _tiktoken(encoding)
    if encoder is None:
        return len(text) // 4 + 1
    return len(encoder.encode_ordinary(text))


_count_short = functools.lru_cache(maxsize=8192)(_count)


def truncate_text(text: str, max_tokens: int, model: str) -> str:
    """The first `max_tokens` tokens of `text`, as a provider cuts an answer at its limit."""
    encoder = _tiktoken(encoding_for(model).name)
    if encoder is None:
        return text[: max_tokens * 4]
    kept: list[str] = []
    left = max_tokens
    for chunk in _chunks(text):  # encoded only as far as the cut
        tokens = encoder.encode_ordinary(chunk)
        if len(tokens) > left:
            kept.append(encoder.decode(tokens[:left]))
            return "".join(kept)
        kept.append(chunk)
        left -= len(tokens)
    return text


def count_tools(tools: Sequence[ToolDefinition], model: str) -> int:
    """Tokens the tool schemas add to a request (their JSON, as providers inline it)."""
    if not tools:
        return 0
    text = json.dumps([tool.to_openai() for tool in tools], separators=(",", ":"))
    return _TOOLS_OVERHEAD + count_text(text, model)


def _message_texts(message: Message) -> Iterable[str]:
    yield message["content"]
    for call in message.get("tool_calls", ()):
        function = call.get("function", {})
        yield str(function.get("name", ""))
        yield str(function.get("arguments", ""))


def count_messages(
    messages: Sequence[Message],
    model: str,
    tools: Sequence[ToolDefinition] = (),
    output_schema: dict[str, Any] | None = None,
) -> int:
    """Input tokens of a chat request: texts plus framing, tool schemas and the output schema."""
    total = _REPLY_PRIMING
    for message in messages:
        total += _TOKENS_PER_MESSAGE
        for text in _message_texts(message):
            total += count_text(text, model)
        if "name" in message:
            total += _TOKENS_PER_NAME
    total += count_tools(tools, model)
    if output_schema is not None:
        total += count_text(json.dumps(output_schema, separators=(",", ":")), model)
    return total
