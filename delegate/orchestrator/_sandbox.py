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

import functools
import types
from collections.abc import Callable, Iterable, Iterator
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
from jinja2.utils import _PassArg, missing

from delegate.orchestrator._sandbox_limits import (
    _BINOPS,
    _CONSTANT_FILTERS,
    _CONTAINERS,
    _FILTER_CHECKS,
    _SERIALIZE_COST,
    _TEXT_FILTERS,
    MAX_CHARS,
    MAX_INT_BITS,
    MAX_ITEMS,
    MAX_SECONDS,
    MAX_STEPS,
    MAX_VALUE_CHARS,
    SandboxLimitError,
    _add,
    _Budget,
    _budget,
    _charge,
    _check_format,
    _check_str_method,
    _current,
    _is_int,
    _lipsum,
    _refuse,
    _text_size,
)

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
