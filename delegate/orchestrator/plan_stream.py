"""Tasks out of a plan while it is still being written: `PlanStream`.

The planner streams its answer, a JSON object `{"tasks": [{...}, {...}], "synthesis_note": "..."}`.
A worker can start on a task as soon as that task's object is complete, long before the plan is
(LLMCompiler's idea). `PlanStream.feed(delta)` takes the text as it arrives and returns the task
objects the delta completed::

    stream = PlanStream()
    request = ModelRequest(messages, on_text=lambda delta: start(stream.feed(delta)))

The JSON is read by pydantic_core's partial parser, `from_json(text, allow_partial=True)` (what
pydantic-ai reads streamed structured output with): it returns what a cut-off text holds so far,
dropping a string that has not ended. Its last value may still be unfinished, though: `{"id": "a",
"n": 1` parses as if `1` were the whole number and the object were closed. So a task is taken only
when the parser shows that the array has moved past it. At a `}` that may close a task, the text
up to it is parsed once more with `,1]` after it: if the tasks array then ends in that `1`, the `}`
closed an element of the array, which is complete (an unfinished object, string or number cannot
take `,1` as its next element). Each task therefore comes out with the delta holding its closing
brace, and a string or number cut off mid-way never makes a task.

Work stays bounded on hostile streams: after each task the text before it is replaced by a
placeholder (`[0`), so a parse reads only the task being written; a `}` is a place to look only
when what follows it can begin the next element (`, {`, `]`) or has not arrived yet; and all
parsing together reads at most 16 characters per character fed, beyond a first 1,000,000. A place
that would exceed that is skipped (one whose follower is unknown already at half of it), and the
next place where a task likely ends catches up, so a task may then come out late, or only with the
whole plan. A 200-task plan of 98 KB in 16-character deltas costs about 25 ms of CPU, 1 MB of
hostile text at most about 0.75 s.

Only the elements of the top-level object's `"tasks"` array are tasks. Text before the first
`{` (a ```json fence, a sentence) and after the array closes is ignored. An element that is not
an object is skipped and `errors` says why; at an element that is not valid JSON (or nests too
deeply) the stream stops taking tasks: the whole plan will not parse either, and the planner
asks for a repaired one. (Where a `,` is missing the partial parser takes the text as ending
there: no task after it comes out, and no error is reported.) Validating a task against the
plan schema is the caller's business.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic_core import from_json

from delegate._json import MAX_JSON_CHARS, loads_untrusted
from delegate.errors import JSONInputError

__all__ = ["PlanStream"]

# Where a task may have just closed: a `}` followed by `]` or by `,` and `{` ("likely"), or by
# the end of the delta ("maybe": what follows is not known yet). A `}` followed by `}` or by
# `, "` closes an object nested in a task; a task followed by an element that is not an object
# comes out at the next place. Before the tasks array is found, also where it seems to open.
# All are hints: the parser decides.
_WS = r"[ \t\n\r]*+"
_PLACES = re.compile(
    rf'(?P<likely>\}}(?={_WS}(?:\]|,{_WS}\{{))|"tasks"{_WS}:{_WS}\[)|\}}(?={_WS}(?:,{_WS})?\Z)'
)
# How far back in the text before a delta a place may be found (the whitespace between a task's
# `},` and the next `{` in indented JSON).
_RECENT = 64
_NEXT_BEGINS = re.compile(r"[ \t\n\r,]*+[{\]]")
# What comes next if the text so far ends where an element of the tasks array could follow.
_AFTER_ELEMENT = ",1]"
_AFTER_OPENING = "1]"
# Stand-ins for the text before the current element: the tasks array just opened, or one element
# (a placeholder, not handed out again) already read.
_OPENED = "["
_READ_ONE = "[0"
_ARRAY_CLOSED = re.compile(r"[ \t\n\r,]*+\]")
_SEPARATORS = " \t\n\r,"

# Parsing reads at most this many characters per character fed, beyond a first allowance, and
# each parse counts as this many more: hostile text (a task full of `}` in strings, thousands of
# nested objects) cannot make feeding quadratic.
_WORK_PER_CHAR = 16
_FREE_WORK = 1_000_000
_WORK_PER_PARSE = 64

# Where a task's id can be read from a task that is not valid JSON, for the error message.
_ID = re.compile(r'"id"\s*:\s*"([^"\\]*)"')


class PlanStream:
    """Feeds on a streamed JSON plan `{"tasks": [{...}, {...}], "synthesis_note": "..."}`;
    yields each task object the moment it is complete.

    A task is complete when its closing `}` has arrived; the next task need not have started.
    Members may come in any order (`synthesis_note` before or after `tasks`), deltas may split
    the text anywhere (inside a string, an escape, a `\\uXXXX` or a number), and strings may hold
    braces, brackets, quotes and escapes. An element of `tasks` that is not an object is skipped;
    one that is not valid JSON ends the streaming of tasks. `errors` says what was skipped.

    Attributes:
        errors: one message per skipped element of `tasks`, in order.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._parts: list[str] = []
        self._text: str | None = ""
        self._started = False  # a `{` has arrived: the plan's text begins there
        self._done = False  # the tasks array has closed, or streaming stopped at a broken element
        # What stands for the text before the region: None before the tasks array is found
        # (the region is then the whole plan so far), else `_OPENED` or `_READ_ONE`.
        self._head: str | None = None
        self._region: list[str] = []  # the text since the last element read (or the plan's start)
        self._region_size = 0
        self._parsed_to = 0  # the end of the region's text that the last parse read
        self._recent = ""  # the region's last characters, up to _RECENT of them
        self._elements = 0  # elements of "tasks" read so far
        self._allowance = _FREE_WORK  # characters parsing may read so far
        self._spent = 0

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
        self._allowance += _WORK_PER_CHAR * len(delta)
        found: list[dict[str, Any]] = []
        if self._done:
            return found
        if not self._started:
            opening = delta.find("{")
            if opening < 0:
                return found
            self._started = True
            delta = delta[opening:]
        # Places are looked for in the delta and, when it begins with `, {` or `]`, in the end
        # of the text before it that no parse has read: a `}` skipped there is now likely a
        # task's end.
        tail = self._recent
        recent = tail if _NEXT_BEGINS.match(delta) else ""
        recent = recent[max(0, len(recent) - (self._region_size - self._parsed_to)) :]
        offset = self._region_size - len(recent)  # where `recent + delta` begins in the region
        self._region.append(delta)
        self._region_size += len(delta)
        for place in _PLACES.finditer(recent + delta):
            likely = place.group("likely") is not None
            end = offset + place.end()
            opened = place.group()[-1] == "["
            if (place.end() <= len(recent) and not likely) or (opened and self._head is not None):
                continue  # a place looked at already, or a "tasks" array inside a task
            head = self._head or ""
            # A place that only may be a task's end is worth a parse while work is plentiful;
            # when it is not, the likely ones (the next task begins) catch up.
            if not self._afford(len(head) + end if likely else 2 * (len(head) + end)):
                break  # nor can a later place, which would parse more
            self._parsed_to = end
            elements = self._read(head + self._joined()[:end], opened=opened)
            if self._done:
                return found
            if elements is not None:
                self._take(elements, found)
                self._head = _OPENED if opened else _READ_ONE
                self._region = [self._joined()[end:]]
                self._region_size -= end
                self._parsed_to, offset = 0, offset - end
        read_one = offset < 0  # the region now begins after an element read in this delta
        self._recent = self._joined()[-_RECENT:] if read_one else (tail + delta)[-_RECENT:]
        return found

    def _joined(self) -> str:
        """The region's text."""
        if len(self._region) != 1:
            self._region = ["".join(self._region)]
        return self._region[0]

    def _afford(self, size: int) -> bool:
        """Whether two parses of `size` characters fit in the work allowed so far."""
        return self._spent + 2 * (size + len(_AFTER_ELEMENT) + _WORK_PER_PARSE) <= self._allowance

    def _parse(self, text: str) -> Any:
        self._spent += len(text) + _WORK_PER_PARSE
        return from_json(text, allow_partial=True)

    def _read(self, text: str, *, opened: bool) -> list[Any] | None:
        """The elements of the tasks array in `text` (the placeholder left out) when `text` ends
        where the next element could begin: just after `[` (`opened`) or an element. Else None."""
        head = self._head
        if head is not None and _ARRAY_CLOSED.match(text, len(head)):
            self._done = True  # the array has closed: the rest of the answer holds no task
            return None
        if len(text) > MAX_JSON_CHARS:
            self._stop(text, None)
            return None
        try:
            probed = self._tasks(self._parse(text + (_AFTER_OPENING if opened else _AFTER_ELEMENT)))
        except ValueError:
            # The probe does not parse where it cannot follow (after a nested object's `}`),
            # but the text itself may be broken: then no later task can be read either.
            try:
                self._parse(text)
            except ValueError as exc:
                self._stop(text, exc)
            return None
        if not probed or probed[-1] != 1:
            return None
        elements = self._tasks(self._parse(text))
        # The probe's `1` is an element of its own only if it made the array one longer.
        if elements is None or len(probed) != len(elements) + 1:
            return None
        return elements[1:] if head == _READ_ONE else elements

    def _tasks(self, value: Any) -> list[Any] | None:
        """The tasks array in a parsed text: the text itself once inside it, else the top-level
        object's `"tasks"`."""
        if self._head is not None:
            return value if isinstance(value, list) else None
        tasks = value.get("tasks") if isinstance(value, dict) else None
        return tasks if isinstance(tasks, list) else None

    def _take(self, elements: list[Any], found: list[dict[str, Any]]) -> None:
        for element in elements:
            self._elements += 1
            if isinstance(element, dict):
                found.append(element)
                continue
            kind = (
                "a string"
                if isinstance(element, str)
                else "an array"
                if isinstance(element, list)
                else "a bare value"
            )
            self.errors.append(
                f"tasks[{self._elements - 1}] is {kind}, not a task object; it was skipped"
            )

    def _stop(self, text: str, exc: ValueError | None) -> None:
        """The text is not JSON (or too long or deep): say why, and take no more tasks."""
        self._done = True
        raw = text if self._head is None else text[len(self._head) :].lstrip(_SEPARATORS)
        try:
            # The project's own reader names the problem as everywhere else (depth, size,
            # syntax), with a position in the element rather than in the stand-in text.
            loads_untrusted(raw)
            detail = f"not valid JSON ({exc})"  # pydantic_core is stricter (a lone surrogate)
        except JSONInputError as error:
            detail = error.detail
        if self._head is None:
            self.errors.append(f"the plan is {detail}; no task is taken from the stream")
            return
        named = _ID.search(raw)
        which = f" (id {_excerpt(named.group(1))!r})" if named else ""
        self.errors.append(
            f"tasks[{self._elements}]{which} is {detail}; it was skipped: {_excerpt(raw)} "
            "(and no task after it is taken from the stream)"
        )


def _excerpt(raw: str, limit: int = 80) -> str:
    return raw if len(raw) <= limit else f"{raw[: limit - 1]}…"
