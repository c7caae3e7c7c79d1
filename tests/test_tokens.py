"""Token counting: offline with no network, exact for OpenAI encodings, overhead arithmetic; the
cheap bounds around the exact count (pieces below, bytes above); when the gate counts exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from delegate import Agent, Budget, Orchestrator, TaskGraph
from delegate.agents import tokens
from delegate.agents.models import (
    Message,
    ModelRequest,
    ModelResponse,
    Price,
    ToolDefinition,
    Usage,
)
from delegate.agents.tokens import (
    Encoding,
    count_messages,
    count_pieces,
    count_pieces_messages,
    count_text,
    count_tools,
    encoding_for,
    estimate_messages,
    estimate_text,
    truncate_pieces,
    truncate_text,
)
from delegate.orchestrator import calls

pytestmark = pytest.mark.anyio

# A fixed string with accents, CJK, an emoji and code. Its counts were computed once with
# tiktoken itself (tiktoken.load.load_tiktoken_bpe on litellm's shipped BPE files, then
# tiktoken.Encoding.encode_ordinary) and cross-checked with litellm.token_counter.
TEXT = "Delegate counts tokens offline: naïve café, 日本語のテキスト, emoji 🚀, and code `x = 42`."
O200K_COUNT = 28
CL100K_COUNT = 31

FOX = "The quick brown fox jumps over the lazy dog."  # 10 tokens in cl100k and o200k alike

# Runs in a fresh interpreter: every way out to the network raises before delegate is imported,
# tiktoken's download cache points at an empty directory, and litellm must never be imported.
_OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys

    def _blocked(*args, **kwargs):
        raise OSError("network access blocked by the test")

    socket.socket.connect = _blocked
    socket.socket.connect_ex = _blocked
    socket.create_connection = _blocked
    socket.getaddrinfo = _blocked

    from delegate.agents.tokens import count_messages, count_text, encoding_for

    text = sys.argv[1]
    models = ["openai/gpt-4o-mini", "openai/gpt-4", "anthropic/claude-haiku-4-5"]
    result = {
        "counts": {m: count_text(text, m) for m in models},
        "exact": {m: encoding_for(m).exact for m in models},
        "messages": count_messages([{"role": "user", "content": text}], "openai/gpt-4o-mini"),
        "litellm_imported": "litellm" in sys.modules,
    }
    # The control: a download tiktoken would have to make really is impossible here.
    import tiktoken
    try:
        tiktoken.get_encoding("r50k_base")
    except Exception as exc:
        result["download"] = type(exc).__name__
    else:
        result["download"] = "succeeded"
    print(json.dumps(result))
    """
)


@pytest.mark.slow
def test_counting_works_offline_without_importing_litellm(tmp_path: Path) -> None:
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path), "DATA_GYM_CACHE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT, TEXT],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["counts"] == {
        "openai/gpt-4o-mini": O200K_COUNT,
        "openai/gpt-4": CL100K_COUNT,
        "anthropic/claude-haiku-4-5": CL100K_COUNT,  # cl100k_base as an estimate
    }
    assert result["exact"] == {
        "openai/gpt-4o-mini": True,
        "openai/gpt-4": True,
        "anthropic/claude-haiku-4-5": False,
    }
    assert result["messages"] == 3 + 3 + O200K_COUNT
    assert result["litellm_imported"] is False
    assert result["download"] == "ConnectionError"  # the network really was blocked
    assert list(tmp_path.iterdir()) == []  # and nothing was cached on the way


def test_exact_counts_in_process() -> None:
    assert count_text(TEXT, "openai/gpt-4o-mini") == O200K_COUNT
    assert count_text(TEXT, "openai/gpt-4") == CL100K_COUNT
    assert count_text(TEXT, "anthropic/claude-haiku-4-5") == CL100K_COUNT
    assert count_text(FOX, "openai/gpt-4o") == 10
    assert count_text("", "openai/gpt-4o") == 0


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("openai/gpt-4o-mini", Encoding("o200k_base", exact=True)),
        ("gpt-4o", Encoding("o200k_base", exact=True)),
        ("gpt-4o-mini-2024-07-18", Encoding("o200k_base", exact=True)),
        ("OpenAI/GPT-4o", Encoding("o200k_base", exact=True)),
        ("chatgpt-4o-latest", Encoding("o200k_base", exact=True)),
        ("openai/gpt-4.1-nano", Encoding("o200k_base", exact=True)),
        ("openai/gpt-5", Encoding("o200k_base", exact=True)),
        ("gpt-5-mini", Encoding("o200k_base", exact=True)),
        ("openai/o1-mini", Encoding("o200k_base", exact=True)),
        ("o3", Encoding("o200k_base", exact=True)),
        ("openai/o4-mini", Encoding("o200k_base", exact=True)),
        ("azure/gpt-4o", Encoding("o200k_base", exact=True)),
        ("openrouter/openai/gpt-4o", Encoding("o200k_base", exact=True)),
        ("openai/gpt-4", Encoding("cl100k_base", exact=True)),
        ("gpt-4-turbo", Encoding("cl100k_base", exact=True)),
        ("gpt-3.5-turbo", Encoding("cl100k_base", exact=True)),
        ("text-embedding-3-small", Encoding("cl100k_base", exact=True)),
        ("azure/my-deployment", Encoding("cl100k_base", exact=False)),
        ("anthropic/claude-haiku-4-5", Encoding("cl100k_base", exact=False)),
        ("bedrock/anthropic.claude-3-5-haiku-20241022-v1:0", Encoding("cl100k_base", exact=False)),
        ("gemini/gemini-2.0-flash", Encoding("cl100k_base", exact=False)),
        ("ollama/llama3", Encoding("cl100k_base", exact=False)),
        ("function", Encoding("cl100k_base", exact=False)),  # the fakes' default name
    ],
)
def test_encoding_for(model: str, encoding: Encoding) -> None:
    assert encoding_for(model) == encoding


def test_count_messages_adds_three_per_message_and_three_for_the_reply() -> None:
    model = "openai/gpt-4"
    system, user = "Be brief.", FOX
    assert (count_text(system, model), count_text(user, model)) == (3, 10)
    messages: list[Message] = [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
    ]
    assert count_messages(messages, model) == 3 + (3 + 3) + (3 + 10)
    assert count_messages([], model) == 3
    named: list[Message] = [{"role": "user", "content": user, "name": "alice"}]
    assert count_messages(named, model) == 3 + 3 + 10 + 1


def test_count_messages_counts_tool_calls_tools_and_the_output_schema() -> None:
    model = "openai/gpt-4o"
    arguments = json.dumps({"query": "fox"})
    messages: list[Message] = [
        {"role": "user", "content": FOX},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "search", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "found"},
    ]
    texts = count_text(FOX, model) + count_text("search", model) + count_text(arguments, model)
    texts += count_text("found", model)
    plain = 3 + 3 * 3 + texts
    assert count_messages(messages, model) == plain

    tool = ToolDefinition(
        "search",
        "Search the web.",
        {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    )
    tool_json = json.dumps([tool.to_openai()], separators=(",", ":"))
    assert count_tools([tool], model) == 12 + count_text(tool_json, model)
    assert count_tools([], model) == 0
    schema: dict[str, Any] = {"type": "object", "properties": {"x": {"type": "integer"}}}
    schema_tokens = count_text(json.dumps(schema, separators=(",", ":")), model)
    assert count_messages(messages, model, [tool], schema) == (
        plain + 12 + count_text(tool_json, model) + schema_tokens
    )


@pytest.mark.parametrize("model", ["openai/gpt-4", "openai/gpt-4o", "anthropic/claude-haiku-4-5"])
def test_truncate_text_keeps_exactly_the_first_tokens(model: str) -> None:
    assert truncate_text(FOX, 4, model) == "The quick brown fox"
    assert count_text(truncate_text(FOX, 4, model), model) == 4
    assert truncate_text(FOX, 10, model) is FOX  # fits: returned as is
    assert truncate_text(FOX, 100, model) is FOX
    assert truncate_text(FOX, 0, model) == ""
    cut = truncate_text(TEXT, 7, model)
    assert TEXT.startswith(cut)
    assert count_text(cut, model) <= 7


def test_short_text_cache_gives_the_same_counts_as_uncached_counting() -> None:
    short = [FOX, TEXT, "x", " " * 7, "a" * tokens._CACHED_TEXT_CHARS]
    long = [FOX * 60, "日本語" * 1000]
    assert all(len(t) <= tokens._CACHED_TEXT_CHARS for t in short)
    assert all(len(t) > tokens._CACHED_TEXT_CHARS for t in long)
    for model in ("openai/gpt-4o", "openai/gpt-4"):
        name = encoding_for(model).name
        for text in short + long:
            uncached = tokens._count(text, name)
            assert count_text(text, model) == uncached
            assert count_text(text, model) == uncached  # the second time from the cache
    before = tokens._count_short.cache_info()
    count_text(FOX, "openai/gpt-4o")
    after = tokens._count_short.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
    count_text(FOX * 60, "openai/gpt-4o")  # long texts bypass the cache
    assert tokens._count_short.cache_info() == after


def test_without_the_shipped_files_counting_falls_back_to_four_characters_per_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tokens, "_litellm_tokenizer_dir", lambda: None)
    build = tokens._tiktoken.__wrapped__  # the uncached builder: the real cache stays intact
    with capture_logs() as logs:
        assert build("o200k_base") is None
    # structlog adds the logger's name once delegate's logging is configured (by another test).
    assert [{k: v for k, v in entry.items() if k != "logger_name"} for entry in logs] == [
        {
            "event": "tokenizer_unavailable",
            "log_level": "warning",
            "encoding": "o200k_base",
            "error": "litellm is not installed, so its tokenizer files are missing",
            "fallback": "4 characters per token",
        }
    ]
    monkeypatch.setattr(tokens, "_tiktoken", lambda name: None)
    assert tokens._count("abcdefghij", "o200k_base") == 10 // 4 + 1
    assert truncate_text("abcdefghij", 2, "openai/gpt-4o") == "abcdefgh"


# --- cheaper counts: the pieces (a lower bound) and the bytes (an upper bound) -------------------

SAMPLES = [
    TEXT,
    FOX,
    "Summarise the report.",
    "orchestration of multiple agents",
    "don't STOP 12345 x_y /path/to\r\n\n  ",
    " " * 300,
    "\t\x0b\x0c\x1c\x85\xa0 mixed\u2003space",
    "CamelCaseWords and ALLCAPS, naïve Ünïcode",
    "emoji 🚀🚀 and 日本語のテキスト",
    "lone surrogate \ud800 in text",
]


@pytest.mark.parametrize("model", ["openai/gpt-4o", "openai/gpt-4", "anthropic/claude-haiku-4-5"])
def test_pieces_bound_the_exact_count_from_below_and_bytes_from_above(model: str) -> None:
    for text in [*SAMPLES, FOX * 5000]:
        pieces, exact, bound = (
            count_pieces(text, model),
            count_text(text, model),
            estimate_text(text),
        )
        assert pieces <= exact <= bound, text[:40]
    messages: list[Message] = [
        {"role": "system", "content": TEXT},
        {"role": "user", "content": FOX, "name": "alice"},
    ]
    assert (
        count_pieces_messages(messages, model)
        <= count_messages(messages, model)
        <= estimate_messages(messages)
    )
    assert count_pieces(FOX, model) == count_text(FOX, model) == 10  # common words: exact


@pytest.mark.parametrize("encoding", ["o200k_base", "cl100k_base"])
def test_pieces_are_the_encodings_own_split(encoding: str) -> None:
    # The patterns are copied from tiktoken (and, for ASCII text, rewritten for Python's `re`):
    # they must split exactly as tiktoken's own pattern does.
    import random

    import regex  # type: ignore[import-untyped]

    encoder = tokens._tiktoken(encoding)
    assert encoder is not None
    split = regex.compile(encoder._pat_str)  # type: ignore[attr-defined]
    model = "openai/gpt-4o" if encoding == "o200k_base" else "openai/gpt-4"
    rng = random.Random(20240601)
    alphabet = [chr(i) for i in range(128)] + list("éüÜ日本🚀\u0301\u200b\xa0\u2003's  ll") * 4
    texts = [*SAMPLES, *("".join(rng.choices(alphabet, k=rng.randint(1, 40))) for _ in range(3000))]
    for text in texts:
        assert count_pieces(text, model) == len(split.findall(text)), repr(text)


def test_pieces_of_a_long_text_are_counted_chunk_by_chunk_and_truncated_at_a_piece() -> None:
    model = "openai/gpt-4o"
    words = " ".join(["word"] * 100_000)
    assert count_pieces(words, model) == 100_000
    assert count_pieces(" " * 1_000_000, model) == 16  # a whitespace run: one piece a chunk
    assert truncate_pieces(words, 3, model) == "word word word"
    assert truncate_pieces(FOX, 4, model) == "The quick brown fox"
    assert truncate_pieces(FOX, 10, model) == FOX
    assert truncate_pieces(FOX, 0, model) == ""
    assert count_pieces(truncate_pieces(words, 70_000, model), model) == 70_000


def test_estimates_need_no_tokenizer_and_count_utf8_bytes() -> None:
    assert estimate_text("") == 0
    assert estimate_text(FOX) == len(FOX)
    assert estimate_text("日本") == 6
    assert estimate_text("\ud800") == 3  # a lone surrogate does not raise
    tool = ToolDefinition("search", "Search.", {"type": "object", "properties": {}})
    schema: dict[str, Any] = {"type": "object"}
    messages: list[Message] = [{"role": "user", "content": FOX}]
    tool_json = json.dumps([tool.to_openai()], separators=(",", ":"))
    assert estimate_messages(messages, [tool], schema) == (
        3 + 3 + len(FOX) + 12 + len(tool_json) + len(json.dumps(schema, separators=(",", ":")))
    )


_FAKES_RUN = textwrap.dedent(
    """
    import json, sys
    from delegate import Agent, Orchestrator, TaskGraph
    from delegate.testing import FunctionModel

    graph = TaskGraph()
    agent = Agent("w", FunctionModel(lambda request: "done", name="gpt-4o-mini"))
    first = graph.add("a", agent=agent, prompt="Summarise the report.")
    graph.add("b", agent=agent, prompt="Then check it.", deps=[first])
    result = Orchestrator(memory=None).execute_sync(graph)
    print(json.dumps({
        "status": result.status,
        "usage": [result.tasks[t].usage.input_tokens for t in "ab"],
        "tiktoken": "tiktoken" in sys.modules,
    }))
    """
)


@pytest.mark.slow
def test_a_run_on_the_fakes_loads_no_tokenizer() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FAKES_RUN], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "succeeded"
    assert result["tiktoken"] is False  # 73 MB of BPE tables never loaded
    prompt: list[Message] = [{"role": "user", "content": "Summarise the report."}]
    assert result["usage"][0] == count_pieces_messages(prompt, "gpt-4o-mini") == 3 + 3 + 4


# --- when the budget gate counts exactly -------------------------------------------------------


class _Provider:
    """A model with no count of its own (as LiteLLMModel): the gate counts for it."""

    def __init__(self, context_window: int | None = None) -> None:
        self.name = "openai/gpt-4o-mini"
        self.price = Price(1.0, 4.0)
        self.context_window = context_window
        self.requests: list[ModelRequest] = []

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        tokens = count_messages(request.messages, self.name)  # as the provider bills it
        return ModelResponse(text="ok", usage=Usage(input_tokens=tokens, output_tokens=1, calls=1))


class _CountsItself(_Provider):
    def count_tokens(self, request: ModelRequest) -> int:
        return 7


@pytest.fixture
def exact_counts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The gate's exact counts (each one's result), as they are made."""
    made: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> int:
        made.append(count_messages(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(calls, "count_messages", counting)
    return made


async def _one_call(model: _Provider, budget: Budget, prompt: str = FOX) -> str:
    graph = TaskGraph()
    graph.add(
        "t", agent=Agent("w", model, max_output_tokens=100, min_output_tokens=10), prompt=prompt
    )
    result = await Orchestrator(memory=None).execute(graph, budget=budget)
    return result.tasks["t"].status


async def test_with_room_to_spare_the_gate_reserves_the_bound_and_never_tokenizes(
    exact_counts: list[int],
) -> None:
    model = _Provider()
    with capture_logs() as logs:
        assert await _one_call(model, Budget(usd=1.0, tokens=100_000)) == "succeeded"
    assert exact_counts == []
    [request] = model.requests
    assert request.max_output_tokens == 100  # what it would have been allowed anyway
    assert request.input_tokens is None  # a bound is not passed on as a count
    assert [entry for entry in logs if entry["event"] == "budget_overshoot"] == []


async def test_near_a_limit_the_gate_counts_exactly(exact_counts: list[int]) -> None:
    model = _Provider()
    messages: list[Message] = [{"role": "user", "content": FOX}]
    exact, bound = count_messages(messages, model.name), estimate_messages(messages)
    assert exact < bound
    # 50 output tokens left after the exact count: with the bound there would be none.
    assert await _one_call(model, Budget(tokens=exact + 50)) == "succeeded"
    assert exact_counts == [exact]
    [request] = model.requests
    assert (request.input_tokens, request.max_output_tokens) == (exact, 50)


async def test_near_the_context_window_the_gate_counts_exactly(exact_counts: list[int]) -> None:
    messages: list[Message] = [{"role": "user", "content": FOX}]
    exact, bound = count_messages(messages, "openai/gpt-4o-mini"), estimate_messages(messages)
    model = _Provider(context_window=(exact + bound) // 2)  # the bound would not fit it
    assert await _one_call(model, Budget(usd=1.0)) == "succeeded"
    assert exact_counts == [exact]


async def test_a_model_that_counts_its_own_requests_is_taken_at_its_word(
    exact_counts: list[int],
) -> None:
    model = _CountsItself()
    assert await _one_call(model, Budget(tokens=7 + 20)) == "succeeded"
    assert exact_counts == []
    [request] = model.requests
    assert (request.input_tokens, request.max_output_tokens) == (7, 20)
