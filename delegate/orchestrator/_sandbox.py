"""The sandbox every prompt template renders in: jinja2's, with limits on work, sizes and numbers.

Templates come from users, workflow files and, through plans, from models: untrusted code. jinja2's
`ImmutableSandboxedEnvironment` keeps them away from Python's internals and from mutating data, but
not from exhausting the process: two nested `range(100000)` loops block the event loop for hours,
`{{ 'a' * 10**9 }}` allocates a gigabyte, `{{ 10**4300 }}` breaks jinja's compile-time constant
folding. `PromptEnvironment` adds, per render:

- a budget of **steps**: every loop iteration, call, filter and arithmetic operator counts one
  (`MAX_STEPS`), with a wall-clock backstop (`MAX_SECONDS`) for work no step counts;
- a budget of **characters**: every string or list an operation builds counts its length, and so
  does every piece of output (`MAX_CHARS` in all); no single value may exceed `MAX_VALUE_CHARS`
  (strings) or `MAX_ITEMS` (lists), and neither may the rendered text;
- **bounded operators**: `*`, `+`, `%` on strings and lists are refused before they build an
  over-long value, and numbers may not grow past `MAX_INT_BITS`; the filters and string methods
  that amplify (`center`, `indent`, `replace`, `join`, `format`, `wordwrap`, `batch`, `lipsum`,
  ...) are checked the same way before they run;
- **no compile-time evaluation** of anything that could be expensive: the intercepted operators
  are not constant-folded, and the optimizer is off;
- **one kind of failure**: whatever a render raises (`ZeroDivisionError`, `TypeError` from
  `'a' + 1`, a limit) comes out as a jinja2 `TemplateError` subclass, which the callers turn into
  delegate's `TemplateError` naming the task; compile errors the same way (as
  `TemplateSyntaxError`).

The budget lives in a context variable set for the duration of one `render()` (or one call of a
compiled expression), so every hook finds it without threading it through jinja's runtime.
`check_render(text)` renders a template once with placeholder values for every name, which finds
templates that fail whatever the data (`{{ 1/0 }}`, `{% include %}`, a loop over a billion
items): the planner uses it to send such instructions back for repair.
"""

from __future__ import annotations

import contextvars
import functools
import re
import string
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn

from jinja2 import ChainableUndefined, nodes, pass_environment
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import Template, TemplateExpression
from jinja2.exceptions import (
    SecurityError,
    TemplateError,
    TemplateRuntimeError,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg, generate_lorem_ipsum, missing

__all__ = [
    "MAX_CHARS",
    "MAX_INT_BITS",
    "MAX_ITEMS",
    "MAX_SECONDS",
    "MAX_STEPS",
    "MAX_VALUE_CHARS",
    "PromptEnvironment",
    "SandboxLimitError",
    "check_render",
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


def _bounded_filter(
    environment: PromptEnvironment, name: str, fn: Callable[..., Any]
) -> Callable[..., Any]:
    passed = 1 if _PassArg.from_obj(fn) is not None else 0
    text = name in _TEXT_FILTERS
    constant = name in _CONSTANT_FILTERS
    check = _FILTER_CHECKS.get(name)

    @functools.wraps(fn)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        value = args[passed] if len(args) > passed else None
        if value.__class__ is _Probe:
            return value  # (check_render) any filter of an unknown value is an unknown value
        budget = _budget()
        budget.steps += 1  # (budget.step(), inlined: filters run in loops)
        if budget.steps >= budget.next_clock:
            budget.step(0)
        if not constant:
            if value.__class__ is str or isinstance(value, str | bytes):
                budget.work(len(value))
            elif isinstance(value, _CONTAINERS):
                budget.work(_text_size(value) * _SERIALIZE_COST if text else len(value))
        if check is not None:
            rest = list(args[passed:])
            check(budget, environment, rest, kwargs)
            args = (*args[:passed], *rest)
        result = fn(*args, **kwargs)
        if result.__class__ is str:  # (_charge(), inlined for the common case)
            if len(result) > MAX_VALUE_CHARS:
                budget.allow(len(result))
            budget.work(len(result))
        else:
            _charge(budget, result)
        return result

    return bounded


@pass_environment
def _bounded_sum(
    environment: PromptEnvironment,
    iterable: Iterable[Any],
    attribute: str | int | None = None,
    start: Any = 0,
) -> Any:
    """jinja's `sum` filter, each addition bounded like `+` (it also adds lists)."""
    budget = _budget()
    total = start
    if attribute is not None:
        getter = make_attrgetter(environment, attribute)
        iterable = (getter(item) for item in iterable)
    for item in iterable:
        budget.step()
        total = _add(budget, total, item)
        _charge(budget, total)
    return total


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    for value in (n, min, max):
        if not _is_int(value) or not 0 <= value <= 1000:
            _refuse("lipsum() takes counts from 0 to 1000")
    _budget().allow(n * max * 12)
    return str(generate_lorem_ipsum(n, html, min, max))


# --- the environment -----------------------------------------------------------------------------


def _is_bounded(node: nodes.Node) -> bool:
    return (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.EnvironmentAttribute)
        and node.node.name == "sandbox_iterate"
    )


class _CodeGenerator(CodeGenerator):
    """jinja's code generator, with loops, `~` and buffered output counted against the budget."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # The iterable becomes `environment.sandbox_iterate(iterable)`, one step per item.
        # (jinja allows no new node types, so the wrapper is a call of an environment method.)
        if not _is_bounded(node.iter):
            lineno = node.iter.lineno
            iterate = nodes.EnvironmentAttribute("sandbox_iterate", lineno=lineno)
            node.iter = nodes.Call(iterate, [node.iter], [], None, None, lineno=lineno)
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile or frame.eval_ctx.autoescape:
            super().visit_Concat(node, frame)
            return
        self.write("environment.sandbox_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        # Values printed are charged by finalize; the template's literal text is charged here
        # (a loop may print it a hundred thousand times).
        size = sum(len(n.data) for n in node.nodes if isinstance(n, nodes.TemplateData))
        if size:
            self.writeline(f"environment.sandbox_work({size})")
        super().visit_Output(node, frame)


class _PromptTemplate(Template):
    """A template whose render is bounded, and fails only with jinja2's errors."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        token = _current.set(_Budget())
        try:
            context = self.new_context(dict(*args, **kwargs))
            # Every piece was charged as it was made, so the whole is at most MAX_CHARS.
            text = "".join(self.root_render_func(context))
            if len(text) > MAX_VALUE_CHARS:
                _refuse(
                    f"the rendered text is {len(text):,} characters long, more than the limit of "
                    f"{MAX_VALUE_CHARS:,}; use shorter values or fewer of them"
                )
            return text
        except TemplateError:
            raise
        except Exception as exc:  # it is untrusted code: anything it raises is its failure
            raise _runtime_error(exc) from None
        finally:
            _current.reset(token)

    def generate(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        yield self.render(*args, **kwargs)


class _PromptExpression(TemplateExpression):
    """A compiled expression (`when:`, `foreach:`), bounded like a render. What it raises is
    left as it is: its caller reports any exception as the expression's failure."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        token = _current.set(_Budget())
        try:
            return super().__call__(*args, **kwargs)
        finally:
            _current.reset(token)


def _runtime_error(exc: Exception) -> TemplateRuntimeError:
    if isinstance(exc, RecursionError):
        return TemplateRuntimeError("the template recurses too deeply; simplify it")
    if isinstance(exc, MemoryError):
        return TemplateRuntimeError("the template ran out of memory; use smaller values")
    return TemplateRuntimeError(f"{type(exc).__name__}: {exc}")


class PromptEnvironment(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox with the limits of this module (see its docstring)."""

    intercepted_binops = frozenset(_BINOPS)
    code_generator_class = _CodeGenerator
    template_class = _PromptTemplate

    def __init__(self, **options: Any) -> None:
        options.setdefault("optimized", False)
        finalize = options.pop("finalize", None)
        super().__init__(**options)
        self.finalize = self._bounded_finalize(finalize)
        self.filters = {name: _bounded_filter(self, name, fn) for name, fn in self.filters.items()}
        self.filters["sum"] = _bounded_filter(self, "sum", _bounded_sum)
        self.globals["lipsum"] = _lipsum

    @staticmethod
    def _bounded_finalize(finalize: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
        def bounded(value: Any) -> Any:
            budget = _current.get()
            if budget is None:
                budget = _Budget()
            container = value.__class__ is not str and isinstance(value, _CONTAINERS)
            if container:
                budget.allow(_text_size(value))
            if finalize is not None:
                value = finalize(value)
            if value.__class__ is not str:
                return value  # no finalize, or one that made no text: jinja's str() follows
            if container:
                budget.allow(len(value))
                budget.work(len(value) * (_SERIALIZE_COST - 1))
            # Inlined `budget.work(len(value))`: it runs for every value a template prints.
            budget.chars += len(value)
            if budget.chars >= budget.next_clock_chars:
                budget.work(0)
            return value

        return bounded

    # -- hooks called by compiled templates --------------------------------------------------

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.step()
        result = _BINOPS[operator](budget, left, right)
        _charge(budget, result)
        return result

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.step()
        if isinstance(obj, LoopContext) and args:  # a recursive loop's next level
            args = (self.sandbox_iterate(args[0]), *args[1:])
        elif isinstance(obj, types.BuiltinMethodType):
            owner = getattr(obj, "__self__", None)
            if isinstance(owner, str | bytes):
                args = _check_str_method(budget, obj, args)
            elif _is_int(owner) and obj.__name__ == "to_bytes" and args and _is_int(args[0]):
                budget.allow(args[0])
        result = super().call(context, obj, *args, **kwargs)
        _charge(budget, result)
        return result

    def getitem(self, obj: Any, argument: Any) -> Any:
        result = super().getitem(obj, argument)
        if isinstance(argument, slice):
            _charge(_budget(), result)
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template, is_map = value.__self__, value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            budget = _budget()
            mapping = args[0] if is_map and args else kwargs
            _check_format(budget, template, () if is_map else args, mapping)
            return wrapped(*args, **kwargs)

        return bounded

    def sandbox_iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """The items of a loop, one step each."""
        budget = _budget()
        for item in iterable:
            budget.step()
            yield item

    def sandbox_concat(self, values: tuple[Any, ...]) -> str:
        """`a ~ b`, bounded."""
        budget = _budget()
        budget.step()
        parts = []
        for value in values:
            if not isinstance(value, str):
                if isinstance(value, _CONTAINERS):
                    budget.allow(_text_size(value))
                    value = str(value)
                    budget.work(len(value) * _SERIALIZE_COST)
                value = str(value)
            parts.append(value)
        budget.allow(sum(map(len, parts)))
        result = "".join(parts)
        budget.work(len(result))
        return result

    def sandbox_work(self, chars: int) -> None:
        """Literal text written into a buffer."""
        _budget().work(chars)

    # -- compiling ----------------------------------------------------------------------------

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        try:
            return super()._parse(source, name, filename)
        except (ValueError, OverflowError, MemoryError) as exc:  # e.g. a 5,000-digit literal
            raise TemplateSyntaxError(f"{type(exc).__name__}: {exc}", 1, name, filename) from None

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        try:
            return super()._generate(source, name, filename, defer_init)
        except (ValueError, OverflowError, MemoryError, RecursionError) as exc:
            raise _compile_error(exc, name, filename) from None

    def _compile(self, source: str, filename: str) -> types.CodeType:
        try:
            return super()._compile(source, filename)
        except (ValueError, OverflowError, MemoryError, RecursionError, SyntaxError) as exc:
            raise _compile_error(exc, None, filename) from None

    def compile_expression(self, source: str, undefined_to_none: bool = True) -> TemplateExpression:
        expression = super().compile_expression(source, undefined_to_none)
        return _PromptExpression(expression._template, undefined_to_none)

    def get_template(self, *args: Any, **kwargs: Any) -> NoReturn:
        _stand_alone()

    def select_template(self, *args: Any, **kwargs: Any) -> NoReturn:
        _stand_alone()

    def get_or_select_template(self, *args: Any, **kwargs: Any) -> NoReturn:
        _stand_alone()


def _stand_alone() -> NoReturn:
    raise SecurityError(
        "prompt templates stand alone: {% include %}, {% import %} and {% extends %} are not "
        "available"
    )


def _compile_error(exc: BaseException, name: str | None, filename: str | None) -> Exception:
    if isinstance(exc, RecursionError | SyntaxError | MemoryError):
        message = "the template nests too deeply to compile; simplify it"
    else:
        message = f"{type(exc).__name__}: {exc}"
    return TemplateSyntaxError(message, 1, name, filename)


# --- a render with placeholder values --------------------------------------------------------


class _Probe(ChainableUndefined):
    """A placeholder for every name in `check_render`: any attribute, item, call, operator or
    filter of it is itself; it prints as nothing, iterates as nothing and compares false."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: type[TemplateRuntimeError] = UndefinedError,
    ) -> None:
        if exc is SecurityError:  # the sandbox refusing an attribute: a real failure
            raise SecurityError(hint)
        super().__init__(hint, obj, name, exc)

    def _same(self, *args: Any, **kwargs: Any) -> _Probe:
        return self

    def _false(self, other: Any) -> bool:
        return False

    def __int__(self) -> int:  # type: ignore[override]
        return 0

    def __index__(self) -> int:
        return 0

    def __float__(self) -> float:  # type: ignore[override]
        return 0.0

    def __round__(self, digits: int | None = None) -> int:
        return 0

    def __format__(self, spec: str) -> str:
        return ""

    def __contains__(self, item: Any) -> bool:
        return False

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _same  # type: ignore[assignment]
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _same  # type: ignore[assignment]
    __mod__ = __rmod__ = __pow__ = __rpow__ = __pos__ = __neg__ = _same  # type: ignore[assignment]
    __abs__ = __call__ = __getitem__ = _same  # type: ignore[assignment]
    __lt__ = __le__ = __gt__ = __ge__ = _false  # type: ignore[assignment]


@functools.cache
def _probing(environment: PromptEnvironment) -> PromptEnvironment:
    return environment.overlay(undefined=_Probe)


def check_render(environment: PromptEnvironment, text: str) -> str | None:
    """Why `text` fails to render whatever its names hold, or None when it may render.

    The template is rendered once with a placeholder for every name (inputs, dependency
    outputs): it fails here only through what it does itself (`{{ 1/0 }}`, `{% include %}`, a
    limit of the sandbox). A template that does not compile is reported too.
    """
    try:
        template = _probing(environment).from_string(text)
        template.render()
    except TemplateSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    except (TemplateError, RecursionError) as exc:
        return str(exc) or type(exc).__name__
    return None
