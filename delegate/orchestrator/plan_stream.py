"""Tasks out of a plan while it is still being written: `PlanStream`.

The planner streams its answer, a JSON object `{"tasks": [{...}, {...}], "synthesis_note": "..."}`.
A worker can start on a task as soon as that task's object is complete, long before the plan is
(LLMCompiler's idea). `PlanStream.feed(delta)` takes the text as it arrives and returns the task
objects the delta completed::

    stream = PlanStream()
    request = ModelRequest(messages, on_text=lambda delta: start(stream.feed(delta)))

It is a small scanner, not a JSON parser: it follows nesting and string/escape state one delta at a
time (never re-reading earlier text) and hands each finished task's text to `loads_untrusted`
(bounded in size and depth, as every JSON a model writes is). Regular expressions skip over strings
and plain text in C, so the Python loop runs about once per delta and once per bracket: a 20-task
plan of 6 KB fed in 16-character deltas takes about 0.35 ms in all.
Only the objects that are direct elements of the top-level object's `"tasks"` array are tasks.
Text before the first `{` (a ```json fence, a sentence) and after the object closes is ignored.
Validating a task against the plan schema is the caller's business.
"""

from __future__ import annotations

import re
from typing import Any

from delegate._json import loads_untrusted
from delegate.errors import JSONInputError

__all__ = ["PlanStream"]

# The rest of a string: plain characters and complete escapes. It stops at the closing quote, at
# a backslash whose escaped character has not arrived yet, or at the end of the delta.
_STRING_BODY = r'(?:[^"\\]++|\\.)*+'
_STRING_REST = re.compile(_STRING_BODY, re.DOTALL)
# Inside a task (or any value that is not the tasks array): everything up to the next bracket,
# complete strings included, so braces and brackets in strings are never taken for structure;
# then a string that does not end in this delta, if there is one ("open").
_SKIP_BODY = rf'(?:[^"{{}}\[\]]++|"{_STRING_BODY}")*+(?P<open>"{_STRING_BODY})?'
_SKIP = re.compile(_SKIP_BODY, re.DOTALL)
# The same, for a delta that begins inside a string: its rest, and if it ends ("closed"), a skip.
_RESUME = re.compile(rf'{_STRING_BODY}(?P<closed>"{_SKIP_BODY})?', re.DOTALL)
# Between the top-level object's members or the tasks array's elements.
_SEPARATORS = re.compile(r"[\s,:]*+")
# A bare value (number, true, false, null) where a member or element is expected.
_SCALAR = re.compile(r'[^\s,:"{}\[\]]++')

# Where a task's id can be read from a task that is not valid JSON, for the error message.
_ID = re.compile(r'"id"\s*:\s*"([^"\\]*)"')

_OPENER = {"}": "{", "]": "["}
_OPENING = frozenset('"{[')
_TASK_DEPTH = 2  # the top-level object, then the tasks array


class PlanStream:
    """Feeds on a streamed JSON plan `{"tasks": [{...}, {...}], "synthesis_note": "..."}`;
    yields each task object the moment it is complete.

    A task is complete when its closing `}` has arrived; the next task need not have started.
    Members may come in any order (`synthesis_note` before or after `tasks`), deltas may split
    the text anywhere (inside a string, an escape or a `\\uXXXX`), and strings may hold braces,
    brackets, quotes and escapes. An element of `tasks` that is not valid JSON or not an object
    is skipped, and `errors` says why.

    Attributes:
        errors: one message per skipped element of `tasks`, in order.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._parts: list[str] = []
        self._text: str | None = ""
        self._stack: list[str] = []  # open brackets, the top-level object first
        self._finished = False  # the top-level object has closed
        self._in_string = False
        self._escape = False  # a backslash in a string whose escaped character is still due
        self._in_scalar = False  # a bare value in the top object or the tasks array is ongoing
        self._in_tasks = False  # the array at depth 2 is the top-level "tasks"
        self._elements = 0  # elements of "tasks" started so far
        self._last_string = ""  # the raw text of the last string in the top-level object
        self._capture: list[str] | None = None  # pieces of the task or top-level string so far

    @property
    def text(self) -> str:
        """Everything fed so far."""
        if self._text is None:
            self._text = "".join(self._parts)
            self._parts = [self._text]
        return self._text

    def feed(self, delta: str) -> list[dict[str, Any]]:
        """Take the next piece of the answer's text.

        Returns:
            The task objects this piece completed, in order (each task is returned once).
        """
        self._parts.append(delta)
        self._text = None
        found: list[dict[str, Any]] = []
        # Where the current capture starts within this delta (0: it began in an earlier one).
        start = 0
        index, end = 0, len(delta)
        while index < end and not self._finished:
            depth = len(self._stack)
            if depth > _TASK_DEPTH or (depth == _TASK_DEPTH and not self._in_tasks):
                # Inside a task: most deltas end here, after one regular expression.
                index = self._skip(delta, index)
                if index < end:
                    index, start = self._structure(delta, index, start, found)
            elif self._in_string:
                index = self._string(delta, index, start)
            elif depth:
                index, start = self._structure(delta, index, start, found)
            else:
                index = delta.find("{", index)
                if index < 0:
                    break
                self._stack.append("{")
                index += 1
        if self._capture is not None:
            self._capture.append(delta[start:])
        return found

    def _skip(self, delta: str, index: int) -> int:
        """Read on past strings and plain text, to the next bracket or the end of `delta`."""
        if self._in_string:
            if self._escape:
                self._escape = False
                index += 1
            match = _RESUME.match(delta, index)
            still_open = match.start("closed") < 0  # type: ignore[union-attr]
        else:
            match = _SKIP.match(delta, index)
            still_open = False
        index = match.end()  # type: ignore[union-attr]
        self._in_string = still_open or match.start("open") >= 0  # type: ignore[union-attr]
        if self._in_string and index < len(delta):  # a last backslash: its character is due
            self._escape = True
            index += 1
        return index

    def _string(self, delta: str, index: int, start: int) -> int:
        """Read on inside a string; the index after what was read."""
        if self._escape:
            self._escape = False
            index += 1
        index = _STRING_REST.match(delta, index).end()  # type: ignore[union-attr]
        if index == len(delta):
            return index
        if delta[index] == "\\":  # the last character: its escaped character comes next
            self._escape = True
            return index + 1
        self._in_string = False
        index += 1
        if len(self._stack) == 1 and self._capture is not None:
            self._last_string = self._take(self._capture, delta, start, index)
        return index

    def _structure(
        self, delta: str, index: int, start: int, found: list[dict[str, Any]]
    ) -> tuple[int, int]:
        """Read on outside strings, up to and including one bracket, string start or bare
        value; the index after it and where the capture starts."""
        depth = len(self._stack)
        top_level = depth == 1 or (depth == _TASK_DEPTH and self._in_tasks)
        if top_level:
            skipped = _SEPARATORS.match(delta, index).end()  # type: ignore[union-attr]
            if skipped > index:
                self._in_scalar = False
            index = skipped
        if index == len(delta):
            return index, start
        char = delta[index]
        if char in "}]":
            self._close(char, delta, index, start, found)
        elif char in _OPENING:
            self._in_scalar = False
            if self._open(char, depth, in_tasks=top_level and depth == _TASK_DEPTH):
                start = index
        else:  # a bare value where a member or element is expected
            if depth == _TASK_DEPTH and not self._in_scalar:
                self._skip_element("a bare value")
            self._in_scalar = True
            return _SCALAR.match(delta, index).end(), start  # type: ignore[union-attr]
        return index + 1, start

    def _open(self, char: str, depth: int, *, in_tasks: bool) -> bool:
        """A string, object or array begins; True when a capture begins with it."""
        capture = False
        if char == '"':
            self._in_string = True
            capture = depth == 1  # a member name of the top-level object, or its value
            if in_tasks:
                self._skip_element("a string")
        else:
            if in_tasks and char == "{":
                self._elements += 1
                capture = True
            elif in_tasks:
                self._skip_element("an array")
            elif depth == 1 and char == "[":
                self._in_tasks = _decoded(self._last_string) == "tasks"
            self._stack.append(char)
        if capture:
            self._capture = []
        return capture

    def _close(
        self, char: str, delta: str, index: int, start: int, found: list[dict[str, Any]]
    ) -> None:
        """A closing bracket: it closes the innermost matching opener (a stray one is ignored)."""
        stack = self._stack
        opener = _OPENER[char]
        at = len(stack) - 1
        while at >= 0 and stack[at] != opener:
            at -= 1
        if at < 0:
            return
        del stack[at:]
        depth = len(stack)
        if self._capture is not None and depth <= _TASK_DEPTH:
            self._task(self._take(self._capture, delta, start, index + 1), found)
        if depth < _TASK_DEPTH:
            self._in_tasks = False
        self._finished = depth == 0

    def _take(self, capture: list[str], delta: str, start: int, end: int) -> str:
        """End the capture just before `delta[end]`: all its text."""
        capture.append(delta[start:end])
        self._capture = None
        return "".join(capture)

    def _task(self, raw: str, found: list[dict[str, Any]]) -> None:
        try:
            task = loads_untrusted(raw)
        except JSONInputError as exc:
            named = _ID.search(raw)
            which = f" (id {_excerpt(named.group(1))!r})" if named else ""
            self.errors.append(
                f"tasks[{self._elements - 1}]{which} is {exc.detail}; it was skipped: "
                f"{_excerpt(raw)}"
            )
            return
        found.append(task)

    def _skip_element(self, kind: str) -> None:
        self._elements += 1
        self.errors.append(
            f"tasks[{self._elements - 1}] is {kind}, not a task object; it was skipped"
        )


def _decoded(raw: str) -> str | None:
    try:
        value = loads_untrusted(raw)
    except JSONInputError:
        return None
    return value if isinstance(value, str) else None


def _excerpt(raw: str, limit: int = 80) -> str:
    return raw if len(raw) <= limit else f"{raw[: limit - 1]}…"
