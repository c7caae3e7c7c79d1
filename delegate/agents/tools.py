"""Tools: typed Python callables that a model may call.

`Tool(fn)` reads `fn`'s signature and type hints, builds a pydantic model of its parameters, and
offers the model that model's JSON Schema as a function definition. The name is the function's
name, the description is the docstring's first paragraph, and each parameter's description comes
from the docstring (Google `Args:`, NumPy `Parameters` or reST `:param x:`, told apart by
`docstring_parser`) or from `Annotated[..., Field(description=...)]`::

    from delegate import tool

    @tool
    async def search(query: str, limit: int = 5) -> list[str]:
        \"\"\"Search the web.

        Args:
            query: what to look for.
            limit: how many results to return.
        \"\"\"

`await search.call('{"query": "anyio"}')` validates the arguments and runs the function. Whatever
goes wrong on the model's side — bad JSON, arguments that do not validate, an exception inside the
tool — comes back as an `"Error: ..."` string the model can read and recover from; only a mistake in
the tool's definition (raised at construction, as `ConfigError`) and cancellation propagate.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import sys
import types
import typing
import warnings
from collections.abc import Callable, Mapping
from typing import Any, overload

import anyio.to_thread
import pydantic
import pydantic_core
from pydantic.fields import FieldInfo

from delegate._json import loads_untrusted
from delegate._log import get_logger
from delegate.agents.models import ToolDefinition
from delegate.errors import ConfigError, JSONInputError

__all__ = ["Tool", "tool"]

log = get_logger("delegate.tools")

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Google-style sections that docstring_parser's Google parser does not know by these names.
_KEYWORD_SECTIONS = ("Keyword Args", "Keyword Arguments")
_KEYWORD_HEADER = re.compile(r"^[ \t]*Keyword Arg(?:s|uments)[ \t]*:[ \t]*$", re.MULTILINE)
_JSON_FRIENDLY = "str, int, float, bool, list[...], dict[str, ...], Literal[...] or a BaseModel"


class Tool:
    """A Python callable (sync or async) that a model may call.

    Args:
        fn: the function. Every parameter needs a type annotation; `*args` and `**kwargs` are not
            allowed. Sync functions run in a worker thread, so they may block.
        name: the name the model sees; defaults to `fn.__name__`. Letters, digits, `_` and `-`,
            at most 64 characters.
        description: what the tool does, for the model; defaults to the first paragraph of
            `fn`'s docstring.
        requires_approval: a human must approve each call before it runs. In an orchestrator
            run the task pauses, the run ends "waiting" with the call in `RunResult.pending`,
            and `Orchestrator.resume(run_id, decisions=...)` continues it (or
            `Orchestrator(approve_tool=...)` decides inline); see `delegate.agents.approval`.

    Raises:
        ConfigError: `fn` is not callable, a parameter has no annotation or a type that has no
            JSON Schema, or the name is not valid.
    """

    __slots__ = (
        "_args_model",
        "_is_async",
        "_positional",
        "definition",
        "description",
        "fn",
        "name",
        "requires_approval",
    )

    fn: Callable[..., Any]
    name: str
    description: str
    definition: ToolDefinition
    requires_approval: bool

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        requires_approval: bool = False,
    ) -> None:
        if isinstance(fn, Tool):
            raise ConfigError(f"tool {fn.name!r} is already a Tool; pass it as it is")
        if not callable(fn):
            raise ConfigError(
                f"a tool must be a function, got {type(fn).__name__} {fn!r}; pass a def or async "
                "def with typed parameters"
            )
        self.fn = fn
        self.name = _tool_name(fn, name)
        if not isinstance(requires_approval, bool):
            raise ConfigError(
                f"tool {self.name!r}: requires_approval must be True or False, got "
                f"{requires_approval!r}"
            )
        self.requires_approval = requires_approval
        documented = fn.func if isinstance(fn, functools.partial) else fn
        summary, arg_docs = _parse_docstring(inspect.getdoc(documented) or "")
        self.description = summary if description is None else description
        parameters = _parameters(fn, self.name)
        hints = _type_hints(fn, self.name)
        self._positional = tuple(
            p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_ONLY
        )
        self._args_model = _arguments_model(self.name, parameters, hints, arg_docs)
        self._is_async = _is_async(fn)
        self.definition = ToolDefinition(
            name=self.name,
            description=self.description,
            parameters=_json_schema(self._args_model, self.name, parameters, hints),
        )

    def __repr__(self) -> str:
        if self.requires_approval:
            return f"Tool(name={self.name!r}, requires_approval=True)"
        return f"Tool(name={self.name!r})"

    async def call(self, arguments: str) -> str:
        """Run the tool with the JSON `arguments` the model wrote, and return what the model reads.

        Never raises for the model's mistakes or the tool's own failures: invalid JSON (or JSON
        too large or too deeply nested, see `delegate._json`), arguments that do not validate,
        and exceptions raised by the tool come back as an `"Error: ..."` string. A result that is
        not a `str` is serialized to JSON. Cancellation propagates.
        """
        raw = arguments_object(self.name, arguments)
        if isinstance(raw, str):
            return raw
        try:
            validated = self._args_model.model_validate(raw)
        except pydantic.ValidationError as exc:
            return (
                f"Error: arguments for tool {self.name!r} did not validate: "
                f"{validation_summary(exc)}"
            )
        values = {field: getattr(validated, field) for field in type(validated).model_fields}
        args = [values.pop(field) for field in self._positional]
        try:
            result = await self._invoke(args, values)
        except Exception as exc:
            # The model sent the call, so the model gets the failure and may try another way.
            log.warning(
                "tool_failed", tool=self.name, error_type=type(exc).__name__, error=str(exc)
            )
            return f"Error: {type(exc).__name__}: {exc}"
        return _serialize(result)

    async def _invoke(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if self._is_async:
            return await self.fn(*args, **kwargs)
        result = await anyio.to_thread.run_sync(functools.partial(self.fn, *args, **kwargs))
        if inspect.isawaitable(result):
            # A sync callable that hands back an awaitable (e.g. a lambda around a coroutine).
            return await result
        return result


@overload
def tool(
    fn: Callable[..., Any],
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
) -> Tool: ...


@overload
def tool(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function into a `Tool`; use bare (`@tool`) or with arguments (`@tool(name="x")`).

    Args:
        fn: the function, when used bare.
        name: the name the model sees; defaults to the function's name.
        description: what the tool does; defaults to the docstring's first paragraph.
        requires_approval: a human approves each call before it runs (see `Tool`).
    """
    if fn is not None:
        return Tool(fn, name=name, description=description, requires_approval=requires_approval)

    def decorate(function: Callable[..., Any]) -> Tool:
        return Tool(
            function, name=name, description=description, requires_approval=requires_approval
        )

    return decorate


_SUMMARY_ERRORS = 20  # a hostile answer can fail validation a million times; list this many


def arguments_object(tool: str, arguments: str) -> dict[str, Any] | str:
    """The JSON object of a tool call's `arguments` (untrusted: bounded, see `delegate._json`), or
    the `"Error: ..."` the model reads when they are not one."""
    try:
        raw = loads_untrusted(arguments) if arguments.strip() else {}
    except JSONInputError as exc:
        return (
            f"Error: arguments for tool {tool!r} are {exc.detail}; send a JSON object with the "
            "tool's parameters"
        )
    if not isinstance(raw, dict):
        return f"Error: arguments for tool {tool!r} must be a JSON object, got {type(raw).__name__}"
    return raw


def validation_summary(exc: pydantic.ValidationError) -> str:
    """A compact, model-readable list of what failed: `field.sub: message; other: message`
    (the first 20 failures, then how many more)."""
    parts = []
    for error in exc.errors(include_url=False)[:_SUMMARY_ERRORS]:
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        parts.append(f"{location[:200]}: {error['msg']}")
    if exc.error_count() > _SUMMARY_ERRORS:
        parts.append(f"and {exc.error_count() - _SUMMARY_ERRORS} more")
    return "; ".join(parts)


def _tool_name(fn: Callable[..., Any], name: str | None) -> str:
    if name is None:
        name = getattr(fn, "__name__", None)
        if not isinstance(name, str):
            raise ConfigError(
                f"tool {fn!r} has no __name__ to use as its name; pass one: Tool(fn, name='...')"
            )
    if not _TOOL_NAME.match(name):
        raise ConfigError(
            f"tool name {name!r} is not valid: use 1-64 letters, digits, '_' or '-' "
            "(pass name='...' to choose another)"
        )
    return name


def _parameters(fn: Callable[..., Any], name: str) -> list[inspect.Parameter]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"tool {name!r}: cannot read its signature ({exc}); wrap it in a def with typed "
            "parameters"
        ) from exc
    parameters = list(signature.parameters.values())
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            raise ConfigError(
                f"tool {name!r} parameter '*{parameter.name}': *args cannot be described to a "
                "model; replace it with named, typed parameters"
            )
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            raise ConfigError(
                f"tool {name!r} parameter '**{parameter.name}': **kwargs cannot be described to a "
                "model; replace it with named, typed parameters"
            )
        if parameter.name.startswith("_"):
            raise ConfigError(
                f"tool {name!r} parameter {parameter.name!r}: names starting with '_' cannot be "
                "tool parameters; rename it"
            )
    return parameters


def _type_hints(fn: Callable[..., Any], name: str) -> dict[str, Any]:
    target: Any = fn
    if isinstance(fn, functools.partial):
        target = fn.func
    elif not (inspect.isroutine(fn) or inspect.isclass(fn)):
        target = type(fn).__call__  # a callable instance: its __call__ carries the hints
    try:
        try:
            return typing.get_type_hints(target, include_extras=True)
        except NameError:
            # `from __future__ import annotations` with a type defined inside a function: look
            # it up where the user built the tool, as pydantic does for models.
            return typing.get_type_hints(target, localns=_user_locals(), include_extras=True)
    except Exception as exc:  # NameError for forward references, TypeError for odd annotations
        raise ConfigError(
            f"tool {name!r}: its type hints cannot be resolved ({type(exc).__name__}: {exc}); "
            "import the types it names at module level"
        ) from exc


def _user_locals() -> dict[str, Any]:
    """The local variables of the innermost frame outside delegate: where the user's code runs."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != "delegate" and not module.startswith("delegate."):
            return dict(frame.f_locals)
        frame = frame.f_back
    return {}


def _field(parameter: inspect.Parameter, hint: Any, doc: str | None) -> tuple[Any, Any]:
    default = ... if parameter.default is inspect.Parameter.empty else parameter.default
    if doc and not _has_description(hint):
        return hint, pydantic.Field(default, description=doc)
    return hint, default


def _has_description(hint: Any) -> bool:
    if typing.get_origin(hint) is not typing.Annotated:
        return False
    return any(isinstance(meta, FieldInfo) and meta.description for meta in hint.__metadata__)


def _arguments_model(
    name: str,
    parameters: list[inspect.Parameter],
    hints: Mapping[str, Any],
    arg_docs: Mapping[str, str],
) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {}
    for parameter in parameters:
        if parameter.name not in hints:
            raise ConfigError(
                f"tool {name!r} parameter {parameter.name!r} has no type annotation; annotate it, "
                f"e.g. {parameter.name}: str"
            )
        fields[parameter.name] = _field(
            parameter, hints[parameter.name], arg_docs.get(parameter.name)
        )
    config = pydantic.ConfigDict(extra="forbid", protected_namespaces=())
    try:
        with warnings.catch_warnings():
            # A parameter named like a BaseModel method ("json", "copy") is fine for a tool.
            warnings.filterwarnings("ignore", message="Field name .* shadows", category=UserWarning)
            return pydantic.create_model(f"{name}_arguments", __config__=config, **fields)
    except (pydantic.PydanticUserError, TypeError, ValueError, NameError) as exc:
        raise ConfigError(
            f"tool {name!r}: {_culprit(parameters, hints)}cannot be turned into a schema "
            f"({exc}); use JSON-friendly types: {_JSON_FRIENDLY}"
        ) from exc


def _json_schema(
    model: type[pydantic.BaseModel],
    name: str,
    parameters: list[inspect.Parameter],
    hints: Mapping[str, Any],
) -> dict[str, Any]:
    try:
        schema = model.model_json_schema()
    except (pydantic.PydanticUserError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"tool {name!r}: {_culprit(parameters, hints)}has no JSON Schema ({exc}); use "
            f"JSON-friendly types: {_JSON_FRIENDLY}"
        ) from exc
    cleaned: dict[str, Any] = _strip_titles(schema)
    return cleaned


def _culprit(parameters: list[inspect.Parameter], hints: Mapping[str, Any]) -> str:
    """`parameter 'x' ` for the first parameter whose type has no JSON Schema, else ``."""
    for parameter in parameters:
        try:
            pydantic.TypeAdapter(hints[parameter.name]).json_schema()
        except Exception:  # whatever pydantic raises, this parameter is the one to name
            return f"parameter {parameter.name!r} of type {hints[parameter.name]!r} "
    return ""


# Keys whose values are data, not schemas: a "title" inside them is the user's, not pydantic's.
_DATA_KEYS = frozenset({"default", "const", "enum", "examples"})
# Keys whose values map names to schemas: their keys may legitimately be "title".
_NAMED_SCHEMA_KEYS = frozenset({"properties", "$defs", "definitions", "patternProperties"})


def _strip_titles(node: Any, *, names: bool = False) -> Any:
    """Drop pydantic's generated `title`s; they cost tokens and tell the model nothing."""
    if isinstance(node, list):
        return [_strip_titles(item) for item in node]
    if not isinstance(node, dict):
        return node
    cleaned: dict[str, Any] = {}
    for key, value in node.items():
        if names:
            cleaned[key] = _strip_titles(value)
        elif key == "title" and isinstance(value, str):
            continue
        elif key in _DATA_KEYS:
            cleaned[key] = value
        else:
            cleaned[key] = _strip_titles(value, names=key in _NAMED_SCHEMA_KEYS)
    return cleaned


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    if isinstance(fn, functools.partial):
        return _is_async(fn.func)
    # A callable instance is async when its class's __call__ is.
    return not inspect.isroutine(fn) and inspect.iscoroutinefunction(type(fn).__call__)


def _serialize(result: Any) -> str:
    if isinstance(result, str):
        return result
    if isinstance(result, pydantic.BaseModel):
        return result.model_dump_json()
    try:
        return json.dumps(result, default=_json_default)
    except (TypeError, ValueError):  # e.g. circular references: the text is still useful
        return str(result)
    except RecursionError:
        return f"Error: the tool returned a {type(result).__name__} nested too deeply to show"


def _json_default(value: Any) -> Any:
    # pydantic models, dataclasses, datetimes, sets...; anything else as its str().
    return pydantic_core.to_jsonable_python(value, fallback=str)


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph (on one line) and each parameter's description (on one line), from a
    Google, NumPy, reST or Epydoc docstring."""
    # Imported here, not at the top: the first tool pays its few milliseconds, `import delegate`
    # does not.
    import docstring_parser
    from docstring_parser import google

    try:
        if _KEYWORD_HEADER.search(doc):
            sections = [
                *google.DEFAULT_SECTIONS,
                *(
                    google.Section(t, "param", google.SectionType.MULTIPLE)
                    for t in _KEYWORD_SECTIONS
                ),
            ]
            parsed = google.GoogleParser(sections).parse(doc)
        else:
            parsed = docstring_parser.parse(doc)  # the style that finds the most sections
    except docstring_parser.ParseError:
        # Not a docstring in any style it knows: its first paragraph still describes the tool.
        return _one_line(doc.split("\n\n", 1)[0]), {}
    summary = parsed.short_description or ""
    if parsed.long_description and not parsed.blank_after_short_description:
        # The short description is the first line; the paragraph may go on below it.
        summary += " " + parsed.long_description.split("\n\n", 1)[0]
    descriptions = {
        param.arg_name.lstrip("*"): _one_line(param.description)
        for param in parsed.params
        if param.args[0] != "attribute" and param.description
    }
    return _one_line(summary), descriptions


def _one_line(text: str) -> str:
    return " ".join(text.split())
