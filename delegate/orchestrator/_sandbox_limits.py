"""The limits of the prompt sandbox (`delegate.orchestrator._sandbox`) and the bounded operations
that enforce them: the per-render budget of steps and characters, and the checks run before an
operator, a string method or a filter could build an over-long value or an over-large number.

The sandbox module holds the jinja2 side (environment, code generation, templates); this one
holds what every hook of it calls. Its underscore names are shared with that module only.
"""

from __future__ import annotations

import contextvars
import re
import string
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from jinja2.exceptions import (
    SecurityError,
)
from jinja2.filters import make_attrgetter
from jinja2.utils import generate_lorem_ipsum

if TYPE_CHECKING:
    from delegate.orchestrator._sandbox import PromptEnvironment

__all__ = [
    "MAX_CHARS",
    "MAX_INT_BITS",
    "MAX_ITEMS",
    "MAX_SECONDS",
    "MAX_STEPS",
    "MAX_VALUE_CHARS",
    "_BINOPS",
    "_CONSTANT_FILTERS",
    "_CONTAINERS",
    "_FILTER_CHECKS",
    "_SERIALIZE_COST",
    "_TEXT_FILTERS",
    "SandboxLimitError",
    "_Budget",
    "_add",
    "_budget",
    "_charge",
    "_check_format",
    "_check_str_method",
    "_current",
    "_is_int",
    "_lipsum",
    "_refuse",
    "_text_size",
]

MAX_STEPS = 50_000
"""Loop iterations, calls, filters and arithmetic operators one render may take."""
MAX_CHARS = 32_000_000
"""Characters (and list items) one render may build and output, in all."""
MAX_VALUE_CHARS = 8_000_000
"""The longest string one operation may build, and the longest rendered text (about 2M tokens)."""
MAX_ITEMS = 1_000_000
"""The longest list or tuple one operation may build."""
MAX_INT_BITS = 4096
"""The largest integer arithmetic may produce, in bits (about 1,200 decimal digits)."""
MAX_SECONDS = 2.0
"""A backstop: a render still running after this many seconds is stopped at its next step."""

_CHECK_CLOCK_EVERY = 256  # steps between looks at the clock
# Turning a list or dict into text (JSON, str) costs far more per character than copying a string:
# each character it makes counts this many against MAX_CHARS.
_SERIALIZE_COST = 8
# The most values `_text_size` visits in one container (a quarter of a second at worst).
_TEXT_SIZE_VISITS = 250_000
_CHECK_CLOCK_CHARS = 1_000_000  # and characters


class SandboxLimitError(SecurityError):
    """A template exceeded one of the sandbox's limits (a jinja2 error, like the sandbox's own)."""


def _refuse(message: str) -> NoReturn:
    raise SandboxLimitError(message)


def _over_total() -> NoReturn:
    _refuse(
        f"the template builds more than {MAX_CHARS:,} characters in all; loop over fewer items or "
        "use shorter values"
    )


class _Budget:
    """What one render has spent."""

    __slots__ = ("chars", "deadline", "next_clock", "next_clock_chars", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.chars = 0
        self.next_clock = _CHECK_CLOCK_EVERY
        self.next_clock_chars = _CHECK_CLOCK_CHARS
        self.deadline = time.perf_counter() + MAX_SECONDS

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps >= self.next_clock:
            if self.steps > MAX_STEPS:
                _refuse(
                    f"the template takes more than {MAX_STEPS:,} steps (loop iterations, calls, "
                    "filters and operators); loop over fewer items"
                )
            self.next_clock = self.steps + _CHECK_CLOCK_EVERY
            self.check_clock()

    def check_clock(self) -> None:
        if time.perf_counter() > self.deadline:
            _refuse(f"the template renders for more than {MAX_SECONDS:g} s; simplify it")

    def work(self, chars: int) -> None:
        """Charge `chars` characters read or written, against the render's total."""
        self.chars += chars
        if self.chars >= self.next_clock_chars:  # every million characters, and past the limit
            if self.chars > MAX_CHARS:
                _over_total()
            self.next_clock_chars = min(self.chars + _CHECK_CLOCK_CHARS, MAX_CHARS + 1)
            self.check_clock()

    def allow(self, chars: int, *, items: bool = False) -> None:
        """Refuse, before it is built, a value of `chars` characters (or list items)."""
        limit = MAX_ITEMS if items else MAX_VALUE_CHARS
        if chars > limit:
            what = "items" if items else "characters"
            _refuse(
                f"the template builds a value of {chars:,} {what}, more than the limit of {limit:,}"
            )
        if self.chars + chars > MAX_CHARS:
            _over_total()

    def produce(self, chars: int, *, items: bool = False) -> None:
        """A value of `chars` characters (or items) was built: check and charge it."""
        self.allow(chars, items=items)
        self.work(chars)


_current: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "delegate_template_budget", default=None
)


def _budget() -> _Budget:
    # Outside a render (jinja folding constants at compile time, a template rendered through
    # jinja's internals) each operation gets a fresh budget: single values stay bounded.
    budget = _current.get()
    return _Budget() if budget is None else budget


# --- sizes ---------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_SCALARS = frozenset({int, float, bool, type(None)})
_SEQUENCE_TYPES = frozenset({list, tuple, set, frozenset})


def _text_size(value: Any) -> int:
    """About how many characters `value` takes as text (its str() or JSON), refusing values
    too large for one before anything converts them; visits at most 250,000 values."""
    total = 0
    seen = 0
    stack = [value]
    while stack:
        item = stack.pop()
        seen += 1
        kind = item.__class__
        if kind is str or kind is bytes:
            total += len(item) + 2
        elif kind in _SCALARS:
            total += 4
        elif kind is dict or (kind not in _SEQUENCE_TYPES and isinstance(item, Mapping)):
            total += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + len(item)
            stack.extend(item)
        else:
            total += 4
        if total > MAX_VALUE_CHARS or seen + len(stack) > _TEXT_SIZE_VISITS:
            _refuse(
                f"the template turns a value of more than {MAX_VALUE_CHARS:,} characters into "
                "text; use a part of it"
            )
    return total


def _charge(budget: _Budget, value: Any) -> None:
    """Charge what an operation built."""
    if isinstance(value, str | bytes):
        budget.produce(len(value))
    elif isinstance(value, list | tuple | dict | set | frozenset):
        budget.produce(len(value), items=True)


def _materialize(budget: _Budget, iterable: Iterable[Any]) -> list[Any]:
    if isinstance(iterable, list | tuple):  # already built (and charged when it was)
        items = list(iterable)
    else:
        items = []
        for item in iterable:
            items.append(item)
            if len(items) > MAX_ITEMS:
                budget.allow(len(items), items=True)
    budget.work(len(items))
    return items


# --- operators -----------------------------------------------------------------------------------

_SEQUENCES = (str, bytes, list, tuple)


def _int_result(left: int, right: int, bits: int) -> None:
    if bits > MAX_INT_BITS:
        _refuse(
            f"the template computes a number of about {bits:,} bits, more than the limit of "
            f"{MAX_INT_BITS:,}"
        )


def _multiply(budget: _Budget, left: Any, right: Any) -> Any:
    if isinstance(left, _SEQUENCES) and _is_int(right):
        budget.allow(len(left) * max(right, 0), items=not isinstance(left, str | bytes))
    elif isinstance(right, _SEQUENCES) and _is_int(left):
        budget.allow(len(right) * max(left, 0), items=not isinstance(right, str | bytes))
    elif _is_int(left) and _is_int(right):
        _int_result(left, right, abs(left).bit_length() + abs(right).bit_length())
    return left * right


def _power(left: Any, right: Any) -> Any:
    if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
        _int_result(left, right, abs(left).bit_length() * right)
    return left**right


def _add(budget: _Budget, left: Any, right: Any) -> Any:
    if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        budget.allow(len(left) + len(right), items=not isinstance(left, str | bytes))
    elif _is_int(left) and _is_int(right):
        _int_result(left, right, max(abs(left).bit_length(), abs(right).bit_length()) + 1)
    return left + right


def _subtract(left: Any, right: Any) -> Any:
    if _is_int(left) and _is_int(right):
        _int_result(left, right, max(abs(left).bit_length(), abs(right).bit_length()) + 1)
    return left - right


# A printf-style conversion: its width and precision ("*" takes them from the arguments).
_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _arguments_size(values: Iterable[Any]) -> int:
    return max((_text_size(value) for value in values), default=0)


def _check_width(text: str | None) -> None:
    if text is None:
        return
    if text == "*":
        _refuse("the template formats with a '*' width or precision; write the number")
    if len(text) > 7 or int(text) > MAX_VALUE_CHARS:
        _refuse(
            f"the template formats with a width or precision of {text}, more than "
            f"{MAX_VALUE_CHARS:,}"
        )


def _check_percent(budget: _Budget, template: str, values: Any) -> None:
    """`template % values` with bounded widths and a bounded result."""
    conversions = 0
    for match in _PERCENT.finditer(template):
        conversions += 1
        _check_width(match.group(1))
        _check_width(match.group(2))
    if isinstance(values, Mapping):
        largest = _arguments_size(values.values())
    elif isinstance(values, tuple):
        largest = _arguments_size(values)
    else:
        largest = _text_size(values)
    budget.allow(len(template) + conversions * largest)


def _modulo(budget: _Budget, left: Any, right: Any) -> Any:
    if isinstance(left, str):
        _check_percent(budget, left, right)
    return left % right


_BINOPS: dict[str, Callable[[_Budget, Any, Any], Any]] = {
    "*": _multiply,
    "**": lambda budget, left, right: _power(left, right),
    "+": _add,
    "-": lambda budget, left, right: _subtract(left, right),
    "%": _modulo,
    "/": lambda budget, left, right: left / right,
    "//": lambda budget, left, right: left // right,
}


# --- string methods and filters that amplify -----------------------------------------------------


def _check_format(budget: _Budget, template: str, args: tuple[Any, ...], kwargs: Any) -> None:
    """`template.format(*args, **kwargs)` with bounded widths and a bounded result."""
    fields = 0
    for _, name, spec, _ in string.Formatter().parse(template):
        if name is None:
            continue
        fields += 1
        if spec and "{" in spec:
            _refuse("the template nests a replacement field in a format spec; write the number")
        for number in re.findall(r"\d+", spec or ""):
            _check_width(number)
    values = [*args, *(kwargs.values() if isinstance(kwargs, Mapping) else ())]
    budget.allow(len(template) + fields * _arguments_size(values))


def _check_replace(budget: _Budget, text: Any, old: Any, new: Any, count: Any) -> None:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    if len(new) <= len(old):
        return
    found = len(text) + 1 if not old else text.count(old)
    if _is_int(count) and count >= 0:
        found = min(found, count)
    budget.allow(len(text) + found * (len(new) - len(old)))


def _check_width_arg(budget: _Budget, text: Any, width: Any) -> None:
    if _is_int(width):
        budget.allow(max(width, len(text) if isinstance(text, str | bytes) else 0))


def _argument(args: list[Any], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _check_str_method(budget: _Budget, method: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Refuse a call of a str/bytes method that would build an over-long value; the arguments to
    call it with (`join` gets its items as a list)."""
    text, name = method.__self__, method.__name__
    if name in ("center", "ljust", "rjust", "zfill"):
        _check_width_arg(budget, text, args[0] if args else None)
    elif name == "expandtabs":
        size = args[0] if args else 8
        if _is_int(size):
            tabs = text.count("\t" if isinstance(text, str) else b"\t")
            budget.allow(len(text) + tabs * max(size, 0))
    elif name == "replace" and len(args) >= 2:
        _check_replace(budget, text, args[0], args[1], args[2] if len(args) > 2 else -1)
    elif name == "join" and args:
        items = _materialize(budget, args[0])
        sizes = sum(len(item) for item in items if isinstance(item, str | bytes))
        budget.allow(sizes + len(text) * max(len(items) - 1, 0))
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max(
            (len(value) for value in args[0].values() if isinstance(value, str)), default=1
        )
        budget.allow(len(text) * max(longest, 1))
    return args


# Checks of the filters that can build a value much larger than their input, run before them:
# each gets the budget, the environment, the filter's arguments (the filtered value first; a
# check may replace them) and its keyword arguments.
_FilterCheck = Callable[["_Budget", "PromptEnvironment", list[Any], dict[str, Any]], None]


def _check_center(budget: _Budget, env: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    _check_width_arg(budget, str(args[0]), _argument(args, kwargs, 1, "width"))


def _check_indent(budget: _Budget, env: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    text = str(args[0])
    width = _argument(args, kwargs, 1, "width")
    width = 4 if width is None else width
    size = len(width) if isinstance(width, str) else width if _is_int(width) else 0
    budget.allow(len(text) + (text.count("\n") + 1) * max(size, 0))


def _check_format_filter(
    budget: _Budget, env: Any, args: list[Any], kwargs: dict[str, Any]
) -> None:
    _check_percent(budget, str(args[0]), kwargs if kwargs else tuple(args[1:]))


def _check_replace_filter(
    budget: _Budget, env: Any, args: list[Any], kwargs: dict[str, Any]
) -> None:
    old, new = _argument(args, kwargs, 1, "old"), _argument(args, kwargs, 2, "new")
    _check_replace(budget, str(args[0]), old, new, _argument(args, kwargs, 3, "count"))


def _check_count(name: str) -> _FilterCheck:
    def check(budget: _Budget, env: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
        count = _argument(args, kwargs, 1, name)
        if _is_int(count):
            budget.allow(count, items=True)

    return check


def _check_wordwrap(
    budget: _Budget, env: PromptEnvironment, args: list[Any], kwargs: dict[str, Any]
) -> None:
    text = str(args[0])
    width = _argument(args, kwargs, 1, "width") or 79
    wrap = _argument(args, kwargs, 3, "wrapstring") or env.newline_sequence
    if _is_int(width) and isinstance(wrap, str):
        lines = len(text) // max(width, 1) + text.count("\n") + 1
        budget.allow(len(text) + lines * len(wrap))


def _check_join(
    budget: _Budget, env: PromptEnvironment, args: list[Any], kwargs: dict[str, Any]
) -> None:
    # The items are read once here (a generator could not be read again) and passed on as a
    # list; an attribute is looked up here too, so what is measured is what is joined.
    items = _materialize(budget, args[0] if args[0] is not None else ())
    attribute = _argument(args, kwargs, 2, "attribute")
    if attribute is not None:
        getter = make_attrgetter(env, attribute)
        items = [getter(item) for item in items]
        kwargs.pop("attribute", None)
        del args[2:]
    separator = str(_argument(args, kwargs, 1, "d") or "")
    size = sum(len(item) if item.__class__ is str else _text_size(item) for item in items)
    budget.allow(size + len(separator) * max(len(items) - 1, 0))
    args[0] = items


_FILTER_CHECKS: dict[str, _FilterCheck] = {
    "batch": _check_count("linecount"),
    "center": _check_center,
    "format": _check_format_filter,
    "indent": _check_indent,
    "join": _check_join,
    "replace": _check_replace_filter,
    "slice": _check_count("slices"),
    "wordwrap": _check_wordwrap,
}

# Filters that turn their value into text (so a list becomes its str or JSON), and filters that
# cost the same whatever their value's size.
_TEXT_FILTERS = frozenset(
    {
        "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower",
        "pprint", "replace", "safe", "string", "striptags", "title", "tojson", "trim",
        "truncate", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr",
    }
)  # fmt: skip
_CONSTANT_FILTERS = frozenset({"count", "d", "default", "first", "length"})
_CONTAINERS = (list, tuple, dict, set, frozenset)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    for value in (n, min, max):
        if not _is_int(value) or not 0 <= value <= 1000:
            _refuse("lipsum() takes counts from 0 to 1000")
    _budget().allow(n * max * 12)
    return str(generate_lorem_ipsum(n, html, min, max))


# --- the environment -----------------------------------------------------------------------------
