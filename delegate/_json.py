"""JSON from outside — a model's answer, tool arguments, a plan, a run input — parsed with limits.

`json.loads` recurses once per nesting level, so `"[" * 100_000` raises `RecursionError`, which
handlers written for `ValueError` miss; and a value nested a thousand levels deep breaks the
recursive code that handles it later (validation, serialization, redaction). `loads_untrusted`
refuses text over a size limit, then anything nested deeper than a depth limit, before
`json.loads` runs, and raises `JSONInputError` (a `ValueError`) for all three problems.

The depth check costs little for ordinary JSON: when the text has fewer brackets than the depth
limit it cannot nest deeper, and otherwise the check runs in C, one pass per level.
"""

from __future__ import annotations

import json
import re
from typing import Any

from delegate.errors import JSONInputError, JSONProblem

__all__ = ["MAX_JSON_CHARS", "MAX_JSON_DEPTH", "loads_untrusted"]

MAX_JSON_CHARS = 16_000_000
"""The longest JSON text accepted by default, in characters."""

MAX_JSON_DEPTH = 100
"""The deepest nesting of arrays and objects accepted by default."""

# A string, closed or running to the end of the text: brackets inside strings are not nesting.
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_PARENS = str.maketrans("[{]}", "(())")


def _too_deep(text: str, max_depth: int) -> bool:
    """Whether arrays and objects in `text` nest more than `max_depth` levels deep.

    Each pass deletes the innermost `()` pairs, so a structure nested k levels deep is gone after
    k passes: it nests deeper than `max_depth` if a pair is left after `max_depth` passes. Every
    step runs in C; ordinary JSON (few brackets, or shallow) costs a pass or two.
    """
    if text.count("[") + text.count("{") <= max_depth:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).translate(_PARENS)
    # Brackets left open still nest (json.loads recurses into them): close them at the end.
    brackets += ")" * brackets.count("(")
    for _ in range(max_depth):
        shorter = brackets.replace("()", "")
        if len(shorter) == len(brackets):
            return False
        brackets = shorter
    return "()" in brackets


def loads_untrusted(
    text: str | bytes,
    *,
    max_chars: int = MAX_JSON_CHARS,
    max_depth: int = MAX_JSON_DEPTH,
    what: str = "the JSON",
) -> Any:
    """Parse JSON that may be hostile: bounded in size and depth, with one error type.

    Args:
        text: the JSON text (bytes are decoded as UTF-8).
        max_chars: the most characters accepted.
        max_depth: the deepest nesting of arrays and objects accepted.
        what: how messages name the text ("the arguments", "input 'x'").

    Raises:
        JSONInputError: the text is too long, nests too deeply or is not JSON.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _error(what, f"not UTF-8 text ({exc})", "syntax") from None
    if len(text) > max_chars:
        raise _error(
            what, f"{len(text):,} characters long, more than the limit of {max_chars:,}", "size"
        )
    if _too_deep(text, max_depth):
        raise _error(what, f"nested more than {max_depth} levels deep", "depth")
    try:
        return json.loads(text)
    except RecursionError:  # (a max_depth above the interpreter's recursion limit)
        raise _error(what, "nested too deeply to parse", "depth") from None
    except ValueError as exc:
        raise _error(what, f"not valid JSON ({exc})", "syntax") from None


_REMEDY: dict[JSONProblem, str] = {"syntax": "", "size": "; send less", "depth": "; flatten it"}


def _error(what: str, detail: str, reason: JSONProblem) -> JSONInputError:
    return JSONInputError(f"{what} is {detail}{_REMEDY[reason]}", reason=reason, detail=detail)
