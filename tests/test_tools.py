"""Tools: typed callables → JSON Schema function specs, and how calls come back to the model."""

from __future__ import annotations

import datetime
import functools
import json
import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal

import anyio
import pytest
import structlog
from pydantic import BaseModel, Field

from delegate.agents.models import ToolDefinition
from delegate.agents.tools import Tool, tool
from delegate.errors import ConfigError

pytestmark = pytest.mark.anyio


class Address(BaseModel):
    """A postal address."""

    street: str
    city: str


class Person(BaseModel):
    name: str
    age: int


# --- schemas ---


def test_simple_function_schema() -> None:
    def search(query: str, limit: int = 5) -> list[str]:
        """Search the web
        for pages.

        Longer explanation that the model does not need.

        Args:
            query: what to look for.
            limit (int): how many results to return,
                at most 20.

        Returns:
            The URLs found.
        """
        return []

    search_tool = Tool(search)
    assert search_tool.name == "search"
    assert search_tool.description == "Search the web for pages."
    assert search_tool.definition == ToolDefinition(
        name="search",
        description="Search the web for pages.",
        parameters={
            "additionalProperties": False,
            "properties": {
                "query": {"description": "what to look for.", "type": "string"},
                "limit": {
                    "default": 5,
                    "description": "how many results to return, at most 20.",
                    "type": "integer",
                },
            },
            "required": ["query"],
            "type": "object",
        },
    )
    assert search_tool.definition.to_openai()["function"]["name"] == "search"


def test_optional_literal_list_and_annotated_schema() -> None:
    def book(
        city: Literal["paris", "rome"],
        nights: Annotated[int, Field(description="number of nights", ge=1)],
        guests: list[str],
        note: str | None = None,
        budget: float | None = 100.0,
    ) -> str:
        """Book a hotel.

        Args:
            city: where to stay.
            nights: overridden by the Annotated description.
        """
        return ""

    parameters = Tool(book).definition.parameters
    assert parameters == {
        "additionalProperties": False,
        "properties": {
            "city": {"description": "where to stay.", "enum": ["paris", "rome"], "type": "string"},
            "nights": {"description": "number of nights", "minimum": 1, "type": "integer"},
            "guests": {"items": {"type": "string"}, "type": "array"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "budget": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": 100.0},
        },
        "required": ["city", "nights", "guests"],
        "type": "object",
    }


def test_nested_model_schema_keeps_defs_and_user_titles() -> None:
    class Query(BaseModel):
        title: str = Field(description="a field that happens to be called title")

    def send(to: Address, people: list[Person], query: Query) -> str:
        """Send a letter."""
        return ""

    parameters = Tool(send).definition.parameters
    assert parameters["properties"] == {
        "to": {"$ref": "#/$defs/Address"},
        "people": {"items": {"$ref": "#/$defs/Person"}, "type": "array"},
        "query": {"$ref": "#/$defs/Query"},
    }
    assert parameters["$defs"]["Address"] == {
        "description": "A postal address.",
        "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        "required": ["street", "city"],
        "type": "object",
    }
    # pydantic's generated titles go; a property the user named "title" stays.
    assert parameters["$defs"]["Query"] == {
        "properties": {
            "title": {"description": "a field that happens to be called title", "type": "string"}
        },
        "required": ["title"],
        "type": "object",
    }
    assert parameters["$defs"]["Person"] == {
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "type": "object",
    }


def test_explicit_name_and_description_win() -> None:
    def f(x: int) -> int:
        """Docstring summary."""
        return x

    custom = Tool(f, name="double-it", description="Doubles a number.")
    assert (custom.name, custom.description) == ("double-it", "Doubles a number.")
    assert custom.definition.name == "double-it"
    assert repr(custom) == "Tool(name='double-it')"


def test_no_docstring_gives_empty_description() -> None:
    def ping() -> str:
        return "pong"

    ping_tool = Tool(ping)
    assert ping_tool.description == ""
    assert ping_tool.definition.parameters == {
        "additionalProperties": False,
        "properties": {},
        "type": "object",
    }


def _descriptions(fn: Callable[..., Any]) -> tuple[str, dict[str, str | None]]:
    """A tool's description and each parameter's, as the model sees them."""
    made = Tool(fn)
    properties = made.definition.parameters["properties"]
    return made.description, {name: spec.get("description") for name, spec in properties.items()}


def test_numpy_docstring_describes_the_parameters() -> None:
    def search(query: str, limit: int = 5) -> list[str]:
        """Search the web
        for pages.

        Parameters
        ----------
        query : str
            what to look for.
        limit : int, optional
            how many results to return,
            at most 20.

        Returns
        -------
        list[str]
            The URLs found.
        """
        return []

    assert _descriptions(search) == (
        "Search the web for pages.",
        {"query": "what to look for.", "limit": "how many results to return, at most 20."},
    )


def test_rest_docstring_describes_the_parameters() -> None:
    def search(query: str, limit: int = 5, lang: str = "en") -> list[str]:
        """Search the web.
        :param query: what to look for.
        :param int limit: how many results to return,
            at most 20.
        :returns: the URLs found.
        """
        return []

    # The `:param` lines are not part of the summary even without a blank line before them.
    assert _descriptions(search) == (
        "Search the web.",
        {
            "query": "what to look for.",
            "limit": "how many results to return, at most 20.",
            "lang": None,
        },
    )


def test_google_docstring_sections_other_than_args_describe_no_parameter() -> None:
    def book(city: str, *, nights: int = 1, note: str = "") -> str:
        """Book a hotel.

        Attributes:
            city: an attribute is not a parameter, so this is not used.

        Args:
            city: where to stay.

        Keyword Args:
            nights: how many nights.

        Raises:
            note: not a parameter either.
        """
        return ""

    assert _descriptions(book) == (
        "Book a hotel.",
        {"city": "where to stay.", "nights": "how many nights.", "note": None},
    )


def test_a_docstring_no_style_reads_still_gives_its_first_paragraph() -> None:
    def book(city: str) -> str:
        """Book a hotel
        in a city.

        Keyword Args:
            city where to stay (no colon: not a Google entry).
        """
        return ""

    assert _descriptions(book) == ("Book a hotel in a city.", {"city": None})


def test_decorator_bare_and_with_arguments() -> None:
    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return key

    @tool(name="fetch_page", description="Fetch one page.")
    async def fetch(url: str) -> str:
        return url

    assert isinstance(lookup, Tool)
    assert (lookup.name, lookup.description) == ("lookup", "Look a key up.")
    assert isinstance(fetch, Tool)
    assert (fetch.name, fetch.description) == ("fetch_page", "Fetch one page.")


def test_callable_instance_and_partial() -> None:
    class Counter:
        """Count words."""

        def __call__(self, text: str) -> int:
            return len(text.split())

    def scale(x: float, factor: float) -> float:
        """Scale a number."""
        return x * factor

    counter = Tool(Counter(), name="count_words")
    assert counter.description == "Count words."
    assert list(counter.definition.parameters["properties"]) == ["text"]
    double = Tool(functools.partial(scale, factor=2.0), name="double")
    assert double.description == "Scale a number."
    assert double.definition.parameters["properties"]["factor"]["default"] == 2.0


# --- bad definitions ---


def _untyped(q):  # type: ignore[no-untyped-def]
    return q


def _star_args(*words: str) -> str:
    return " ".join(words)


def _star_kwargs(**options: str) -> str:
    return ""


def _private(_hidden: int) -> int:
    return _hidden


def _unschemable(callback: Callable[[int], int]) -> int:
    return callback(1)


def _forward(x: DoesNotExist) -> int:  # type: ignore[name-defined]  # noqa: F821
    return 0


@pytest.mark.parametrize(
    ("target", "kwargs", "message"),
    [
        (
            _untyped,
            {},
            "tool '_untyped' parameter 'q' has no type annotation; annotate it, e.g. q: str",
        ),
        (
            _star_args,
            {},
            "tool '_star_args' parameter '*words': *args cannot be described to a model; "
            "replace it with named, typed parameters",
        ),
        (
            _star_kwargs,
            {},
            "tool '_star_kwargs' parameter '**options': **kwargs cannot be described to a model; "
            "replace it with named, typed parameters",
        ),
        (
            _private,
            {},
            "tool '_private' parameter '_hidden': names starting with '_' cannot be tool "
            "parameters; rename it",
        ),
        (
            42,
            {},
            "a tool must be a function, got int 42; pass a def or async def with typed parameters",
        ),
        (
            lambda x: x,
            {},
            "tool name '<lambda>' is not valid: use 1-64 letters, digits, '_' or '-' "
            "(pass name='...' to choose another)",
        ),
        (
            _star_args,
            {"name": "has space"},
            "tool name 'has space' is not valid",
        ),
        (
            functools.partial(_star_args),
            {},
            "has no __name__ to use as its name; pass one: Tool(fn, name='...')",
        ),
        (
            _forward,
            {},
            "tool '_forward': its type hints cannot be resolved (NameError: name 'DoesNotExist' "
            "is not defined); import the types it names at module level",
        ),
    ],
)
def test_bad_definitions_raise_config_error(
    target: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Tool(target, **kwargs)
    assert message in str(caught.value)


def test_type_without_json_schema_names_the_parameter() -> None:
    with pytest.raises(ConfigError) as caught:
        Tool(_unschemable)
    text = str(caught.value)
    assert text.startswith("tool '_unschemable': parameter 'callback' of type ")
    assert "use JSON-friendly types: str, int, float, bool" in text


def test_tool_of_a_tool_is_refused() -> None:
    @tool
    def once(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match="tool 'once' is already a Tool; pass it as it is"):
        Tool(once)  # type: ignore[arg-type]


# --- calls ---


async def test_sync_tool_runs_in_a_worker_thread() -> None:
    seen: list[int] = []

    def add(a: int, b: int = 1) -> int:
        seen.append(threading.get_ident())
        return a + b

    add_tool = Tool(add)
    assert await add_tool.call('{"a": 2, "b": 3}') == "5"
    assert await add_tool.call('{"a": 2}') == "3"
    assert len(seen) == 2
    assert threading.get_ident() not in seen


async def test_async_tool_runs_on_the_event_loop() -> None:
    seen: list[int] = []

    async def shout(text: str) -> str:
        seen.append(threading.get_ident())
        await anyio.lowlevel.checkpoint()
        return text.upper()

    assert await Tool(shout).call('{"text": "hi"}') == "HI"
    assert seen == [threading.get_ident()]


async def test_arguments_are_validated_into_python_values() -> None:
    received: list[Any] = []

    def register(person: Person, tags: list[str], when: datetime.date) -> str:
        received.extend([person, tags, when])
        return "ok"

    args = '{"person": {"name": "Ada", "age": "36"}, "tags": ["x"], "when": "2024-05-01"}'
    assert await Tool(register).call(args) == "ok"
    assert received == [Person(name="Ada", age=36), ["x"], datetime.date(2024, 5, 1)]


async def test_positional_only_parameters_are_passed_positionally() -> None:
    def power(base: int, /, exponent: int) -> int:
        return int(base**exponent)

    assert await Tool(power).call('{"base": 2, "exponent": 10}') == "1024"


async def test_empty_arguments_mean_no_arguments() -> None:
    def now() -> str:
        return "noon"

    assert await Tool(now).call("") == "noon"
    assert await Tool(now).call("{}") == "noon"


async def test_invalid_json_returns_an_error_string() -> None:
    def echo(text: str) -> str:
        return text

    result = await Tool(echo).call('{"text": ')
    assert result.startswith("Error: arguments for tool 'echo' are not valid JSON (Expecting value")
    assert result.endswith("send a JSON object with the tool's parameters")


async def test_non_object_json_returns_an_error_string() -> None:
    def echo(text: str) -> str:
        return text

    assert (
        await Tool(echo).call('["hello"]')
        == "Error: arguments for tool 'echo' must be a JSON object, got list"
    )


async def test_validation_failure_returns_an_error_string() -> None:
    calls: list[int] = []

    def add(a: int, b: int) -> int:
        calls.append(1)
        return a + b

    result = await Tool(add).call('{"a": "two", "c": 3}')
    assert result == (
        "Error: arguments for tool 'add' did not validate: a: Input should be a valid integer, "
        "unable to parse string as an integer; b: Field required; c: Extra inputs are not "
        "permitted"
    )
    assert calls == []


async def test_tool_exception_returns_an_error_string_and_is_logged() -> None:
    def explode(x: int) -> int:
        raise ValueError(f"cannot handle {x}")

    async def explode_async(x: int) -> int:
        raise KeyError("missing")

    with structlog.testing.capture_logs() as logs:
        assert await Tool(explode).call('{"x": 7}') == "Error: ValueError: cannot handle 7"
        assert await Tool(explode_async).call('{"x": 7}') == "Error: KeyError: 'missing'"
    assert [(entry["event"], entry["tool"], entry["error_type"]) for entry in logs] == [
        ("tool_failed", "explode", "ValueError"),
        ("tool_failed", "explode_async", "KeyError"),
    ]


async def test_results_are_serialized_to_json() -> None:
    def model_result() -> Person:
        return Person(name="Ada", age=36)

    def dict_result() -> dict[str, Any]:
        return {"when": datetime.date(2024, 5, 1), "people": [Person(name="Bo", age=2)], "n": 1}

    def none_result() -> None:
        return None

    def text_result() -> str:
        return "plain text"

    assert await Tool(model_result).call("{}") == '{"name":"Ada","age":36}'
    assert json.loads(await Tool(dict_result).call("{}")) == {
        "when": "2024-05-01",
        "people": [{"name": "Bo", "age": 2}],
        "n": 1,
    }
    assert await Tool(none_result).call("{}") == "null"
    assert await Tool(text_result).call("{}") == "plain text"


async def test_cancellation_propagates_out_of_a_tool() -> None:
    started = anyio.Event()
    cancelled: list[bool] = []
    results: list[str] = []

    async def hang() -> str:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise
        return "never"

    hang_tool = Tool(hang)

    async def run() -> None:
        results.append(await hang_tool.call("{}"))

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await started.wait()
        group.cancel_scope.cancel()
    assert cancelled == [True]
    assert results == []  # not swallowed into an "Error: ..." string
