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

Exact counts are loaded lazily: the BPE tables take 73 MB (o200k_base) and 33 MB (cl100k_base) of
memory and a fraction of a second to build, and most counts change no decision. Three counts,
from cheapest to exact, each never above the next:

- `count_pieces` / `count_pieces_messages`: one token per piece of the encoding's pre-tokenizer
  split (the regular expression tiktoken applies before BPE). Every piece is at least one token,
  so it never exceeds the exact count, and equals it for text of common words. No BPE table is
  loaded; the fakes in `delegate.testing` bill their usage with it.
- `count_text` / `count_messages`: exact (for OpenAI models; an estimate for others).
- `estimate_text` / `estimate_messages`: an upper bound on both, without any tokenizer: the text's
  UTF-8 bytes (no token is shorter than a byte). The budget gate reserves it when the call fits
  with room to spare, and counts exactly only when the difference could decide something.

A model may count its own requests (`CountsTokens`): the gate then uses that count, as the model
bills it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from delegate._log import get_logger
from delegate.agents.models import Message, ToolDefinition

if TYPE_CHECKING:
    from delegate.agents.models import ModelRequest

__all__ = [
    "CountsTokens",
    "Encoding",
    "count_messages",
    "count_pieces",
    "count_pieces_messages",
    "count_text",
    "count_tools",
    "encoding_for",
    "estimate_messages",
    "estimate_text",
    "truncate_pieces",
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
    from unittest import mock  # (only here: importing it costs ~30 ms)

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
    return _tools_tokens(tools, functools.partial(count_text, model=model))


def _tools_tokens(tools: Sequence[ToolDefinition], count: Callable[[str], int]) -> int:
    if not tools:
        return 0
    return _TOOLS_OVERHEAD + count(
        json.dumps([tool.to_openai() for tool in tools], separators=(",", ":"))
    )


def _request_tokens(
    messages: Sequence[Message],
    tools: Sequence[ToolDefinition],
    output_schema: dict[str, Any] | None,
    count: Callable[[str], int],
) -> int:
    """A chat request's input tokens with `count` as the text counter: texts plus framing."""
    total = _REPLY_PRIMING
    for message in messages:
        total += _TOKENS_PER_MESSAGE + count(message["content"])
        for call in message.get("tool_calls", ()):
            function = call.get("function", {})
            total += count(str(function.get("name", ""))) + count(
                str(function.get("arguments", ""))
            )
        if "name" in message:
            total += _TOKENS_PER_NAME
    total += _tools_tokens(tools, count)
    if output_schema is not None:
        total += count(json.dumps(output_schema, separators=(",", ":")))
    return total


def count_messages(
    messages: Sequence[Message],
    model: str,
    tools: Sequence[ToolDefinition] = (),
    output_schema: dict[str, Any] | None = None,
) -> int:
    """Input tokens of a chat request: texts plus framing, tool schemas and the output schema."""
    return _request_tokens(
        messages, tools, output_schema, functools.partial(count_text, model=model)
    )


# --- the upper bound: no tokenizer ------------------------------------------------------------


def estimate_text(text: str) -> int:
    """An upper bound on `count_text(text, model)` for every model, without a tokenizer.

    It is the text's UTF-8 length in bytes: every token of a byte-level BPE stands for at least
    one byte of the text. About four times the exact count for English prose.
    """
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def estimate_messages(
    messages: Sequence[Message],
    tools: Sequence[ToolDefinition] = (),
    output_schema: dict[str, Any] | None = None,
) -> int:
    """An upper bound on `count_messages(...)` for every model, without a tokenizer: the same
    framing, each text at `estimate_text`."""
    return _request_tokens(messages, tools, output_schema, estimate_text)


# --- the lower bound: the pre-tokenizer's pieces -----------------------------------------------

# tiktoken's split patterns (tiktoken_ext/openai_public.py), applied before BPE merges pieces.
_CL100K_PIECES = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PIECES = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


# The same patterns for ASCII text, in Python's own `re`, which matches them three times faster
# (tested equal on random ASCII): \p{L} is [A-Za-z] there, \p{Lu} [A-Z], \p{Ll} [a-z], \p{N}
# [0-9], and no ASCII character is a mark (\p{M}) or in \p{Lt}, \p{Lm} or \p{Lo}.
_ASCII_CASES = "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
_CL100K_ASCII = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\nA-Za-z0-9]?+[A-Za-z]++|[0-9]{1,3}+| ?[^\sA-Za-z0-9]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_ASCII = "|".join(
    [
        r"""[^\r\nA-Za-z0-9]?[A-Z]*[a-z]+""" + _ASCII_CASES,
        r"""[^\r\nA-Za-z0-9]?[A-Z]+[a-z]*""" + _ASCII_CASES,
        r"""[0-9]{1,3}""",
        r""" ?[^\sA-Za-z0-9]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


class _Pattern(Protocol):
    def finditer(self, text: str) -> Iterator[Any]: ...

    def findall(self, text: str) -> list[Any]: ...


@functools.cache
def _pieces_pattern(encoding: str, ascii: bool) -> _Pattern:
    if ascii:
        return re.compile(_O200K_ASCII if encoding == "o200k_base" else _CL100K_ASCII, re.ASCII)
    # `regex` (tiktoken's own dependency) understands \p{...} classes, as tiktoken's Rust
    # regex engine does; Python's `re` does not. Imported here: most texts are ASCII.
    import regex  # type: ignore[import-untyped]

    pattern: _Pattern = regex.compile(_O200K_PIECES if encoding == "o200k_base" else _CL100K_PIECES)
    return pattern


def _piece_ends(text: str, encoding: str) -> Iterator[int]:
    """Where each piece of `text` ends, chunk by chunk (chunks are cut where pieces end)."""
    offset = 0
    for chunk in _chunks(text):
        for match in _pieces_pattern(encoding, chunk.isascii()).finditer(chunk):
            yield offset + match.end()
        offset += len(chunk)


def _count_pieces(text: str, encoding: str) -> int:
    if len(text) <= _CHUNK_CHARS:
        return len(_pieces_pattern(encoding, text.isascii()).findall(text))
    return sum(1 for _ in _piece_ends(text, encoding))


_count_pieces_short = functools.lru_cache(maxsize=8192)(_count_pieces)


def count_pieces(text: str, model: str) -> int:
    """Pieces of `text` in the split `model`'s encoding makes before BPE: a lower bound on
    `count_text(text, model)`, equal to it for text of common words, without a BPE table.

    Deterministic and cheap (a regular expression): the fakes in `delegate.testing` bill with it.
    """
    if not text:
        return 0
    name = encoding_for(model).name
    if len(text) <= _CACHED_TEXT_CHARS:
        return _count_pieces_short(text, name)
    return _count_pieces(text, name)


def count_pieces_messages(
    messages: Sequence[Message],
    model: str,
    tools: Sequence[ToolDefinition] = (),
    output_schema: dict[str, Any] | None = None,
) -> int:
    """`count_messages` with each text at `count_pieces`: a lower bound on it."""
    return _request_tokens(
        messages, tools, output_schema, functools.partial(count_pieces, model=model)
    )


def truncate_pieces(text: str, max_pieces: int, model: str) -> str:
    """The first `max_pieces` pieces of `text` (see `count_pieces`): an answer cut at a limit."""
    if max_pieces <= 0:
        return ""
    name = encoding_for(model).name
    for seen, end in enumerate(_piece_ends(text, name), start=1):
        if seen == max_pieces:
            return text[:end]
    return text


class CountsTokens(Protocol):
    """A `Model` that counts a request's input tokens itself, the way it bills them.

    The budget gate uses this count instead of a tokenizer's, so a reservation and the usage the
    model reports agree exactly (the fakes in `delegate.testing` count this way). A wrapper
    model should pass the call on to the model it wraps.
    """

    def count_tokens(self, request: ModelRequest) -> int:
        """Input tokens of `request`, as this model will report them."""
        ...
