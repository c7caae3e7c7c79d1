"""How an answer is scored: `Score`, the `Scorer` protocol, and the scorers delegate ships.

A scorer is any callable `(case, output) -> Score | bool | float` (or an awaitable of one) with
a `name`: a bool is pass or fail, a number a score in [0, 1] that passes at 0.5 or more. A case
passes when every scorer passes it; its score is the mean of theirs.

- `exact()`: the output equals `case.expected` (text compared without surrounding spaces,
  structured answers as JSON);
- `contains()`: the output's text holds `case.expected` (a string, or each of a list);
- `regex(pattern)`: the pattern is found in the output's text (bounded: a pattern of at most
  1,000 characters, matched with a time limit, over at most the first 100,000 characters);
- `json_schema(schema)`: the output validates against a JSON Schema;
- `field_equals(name, tolerance=)`: one field of a structured output equals the case's
  expected value for it, numbers within an absolute tolerance (an invoice's total);
- `judge(agent)`: an LLM judge reads the inputs, the expected answer and the output, and says
  whether it passes and how good it is; its calls are held to the evaluation's budget.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from delegate.errors import ConfigError
from delegate.evals.dataset import Case

if TYPE_CHECKING:
    from delegate.agents.agent import Agent

__all__ = [
    "MAX_PATTERN_CHARS",
    "MAX_SCORED_CHARS",
    "JudgeGrade",
    "Score",
    "Scorer",
    "contains",
    "exact",
    "field_equals",
    "json_schema",
    "judge",
    "regex",
    "scorer_name",
]

MAX_PATTERN_CHARS = 1_000
"""The longest pattern `regex()` accepts."""

MAX_SCORED_CHARS = 100_000
"""Text scorers read at most this many characters of an output."""

_REGEX_SECONDS = 0.25  # a pattern that backtracks for longer fails the case, it does not hang
_MAX_SCHEMA_BYTES = 1 << 20
_REASON_CHARS = 500


class Score(BaseModel):
    """One scorer's verdict on one output.

    Attributes:
        passed: whether the output passes.
        value: how good it is, in [0, 1].
        reason: why, in a sentence (shown for failures).
    """

    model_config = ConfigDict(frozen=True)

    passed: bool
    value: float = Field(ge=0.0, le=1.0)
    reason: str = ""

    @classmethod
    def of(cls, result: Score | bool | float, scorer: str) -> Score:
        """A scorer's return value as a `Score`: a bool passes or fails with value 1 or 0; a
        number in [0, 1] is the value, passing at 0.5 or more.

        Raises:
            ConfigError: anything else (naming the scorer).
        """
        if isinstance(result, Score):
            return result
        if isinstance(result, bool):
            return cls(passed=result, value=1.0 if result else 0.0)
        if isinstance(result, int | float) and math.isfinite(result) and 0 <= result <= 1:
            return cls(passed=result >= 0.5, value=float(result))
        raise ConfigError(
            f"scorer {scorer!r} returned {result!r}; a scorer returns a Score, a bool, or a "
            "number in [0, 1]"
        )


@runtime_checkable
class Scorer(Protocol):
    """What scores an output: called with the case and the configuration's output."""

    @property
    def name(self) -> str:
        """How reports name the scorer."""
        ...

    def __call__(self, case: Case, output: Any) -> Score | bool | float | Awaitable[Any]:
        """The verdict on `output` (or an awaitable of it)."""
        ...


def scorer_name(scorer: Scorer | Callable[..., Any]) -> str:
    """The scorer's `name`, else its function's name."""
    name = getattr(scorer, "name", None)
    if isinstance(name, str) and name:
        return name
    return str(getattr(scorer, "__name__", type(scorer).__name__))


# -- what an output looks like to a scorer ------------------------------------------------------


def _plain(value: Any) -> Any:
    """`value` as JSON-like data: a pydantic model dumped, anything else as it is."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _text(value: Any) -> str:
    """The output as text: a string as it is, anything else as compact JSON; bounded."""
    value = _plain(value)
    if not isinstance(value, str):
        try:
            value = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            value = str(value)
    return str(value)[:MAX_SCORED_CHARS]


def _short(value: Any, limit: int = 80) -> str:
    shown = repr(_plain(value))
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


class _Named:
    """A scorer with a name and a repr that says how it was made."""

    name: str

    def __repr__(self) -> str:
        return f"<scorer {self.name}>"


# -- exact, contains ----------------------------------------------------------------------------


class _Exact(_Named):
    def __init__(self, case_sensitive: bool) -> None:
        self.case_sensitive = case_sensitive
        self.name = "exact" if case_sensitive else "exact(ignore case)"

    def __call__(self, case: Case, output: Any) -> Score:
        got, want = _plain(output), _plain(case.expected)
        if isinstance(got, str) and isinstance(want, str):
            got, want = got.strip(), want.strip()
            if not self.case_sensitive:
                got, want = got.casefold(), want.casefold()
        if got == want:
            return Score(passed=True, value=1.0)
        return Score(passed=False, value=0.0, reason=f"expected {_short(want)}, got {_short(got)}")


def exact(*, case_sensitive: bool = True) -> Scorer:
    """Passes when the output equals `case.expected`: text without surrounding spaces (and
    ignoring case unless `case_sensitive`), a structured output as its JSON data."""
    return _Exact(case_sensitive)


class _Contains(_Named):
    def __init__(self, case_sensitive: bool) -> None:
        self.case_sensitive = case_sensitive
        self.name = "contains" if case_sensitive else "contains(ignore case)"

    def __call__(self, case: Case, output: Any) -> Score:
        wanted = case.expected if isinstance(case.expected, list) else [case.expected]
        if not wanted or not all(isinstance(item, str) for item in wanted):
            raise ConfigError(
                f"case {case.id!r}: the contains scorer needs `expected` to be a string or a "
                f"list of strings, got {_short(case.expected)}"
            )
        text = _text(output)
        if not self.case_sensitive:
            text = text.casefold()
        missing = [
            item
            for item in wanted
            if (item if self.case_sensitive else item.casefold()) not in text
        ]
        value = (len(wanted) - len(missing)) / len(wanted)
        if not missing:
            return Score(passed=True, value=1.0)
        shown = ", ".join(_short(item, 40) for item in missing[:3])
        return Score(passed=False, value=value, reason=f"missing {shown}")


def contains(*, case_sensitive: bool = False) -> Scorer:
    """Passes when the output's text holds `case.expected` (a string), or each string of it (a
    list: the value is the share found). Case is ignored unless `case_sensitive`."""
    return _Contains(case_sensitive)


# -- regex --------------------------------------------------------------------------------------


class _Regex(_Named):
    def __init__(self, pattern: str, compiled: Any) -> None:
        self.pattern = pattern
        self.compiled = compiled
        self.name = f"regex:{pattern}" if len(pattern) <= 40 else f"regex:{pattern[:39]}…"

    def __call__(self, case: Case, output: Any) -> Score:
        try:
            found = self.compiled.search(_text(output), timeout=_REGEX_SECONDS)
        except TimeoutError:
            return Score(
                passed=False,
                value=0.0,
                reason=f"the pattern took more than {_REGEX_SECONDS:g} s on this output "
                "(catastrophic backtracking?); simplify it",
            )
        if found is not None:
            return Score(passed=True, value=1.0)
        return Score(passed=False, value=0.0, reason=f"no match for {self.pattern!r}")


def regex(pattern: str) -> Scorer:
    """Passes when `pattern` (Python `re` syntax, via the `regex` package) is found in the
    output's text. A pattern is bounded: at most `MAX_PATTERN_CHARS` characters, and a match
    that takes longer than a quarter of a second fails the case instead of hanging the run.

    Raises:
        ConfigError: the pattern is empty, too long or does not compile.
    """
    import regex as _re  # type: ignore[import-untyped]  # the regex package ships no types

    if not isinstance(pattern, str) or not pattern:
        raise ConfigError("regex scorer: give a non-empty pattern, e.g. regex:'total: \\d+'")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ConfigError(
            f"regex scorer: the pattern is {len(pattern):,} characters long, more than "
            f"{MAX_PATTERN_CHARS:,}; shorten it"
        )
    try:
        compiled = _re.compile(pattern, _re.VERSION0)
    except _re.error as exc:
        raise ConfigError(
            f"regex scorer: the pattern {pattern!r} does not compile: {exc}"
        ) from None
    return _Regex(pattern, compiled)


# -- JSON schema --------------------------------------------------------------------------------


class _Schema(_Named):
    def __init__(self, validator: Any, name: str) -> None:
        self.validator = validator
        self.name = name

    def __call__(self, case: Case, output: Any) -> Score:
        value = _plain(output)
        if isinstance(value, str):
            from delegate._json import loads_untrusted
            from delegate.errors import JSONInputError

            try:
                value = loads_untrusted(value[:MAX_SCORED_CHARS], what="the output")
            except JSONInputError as exc:
                return Score(passed=False, value=0.0, reason=str(exc)[:_REASON_CHARS])
        error = next(iter(self.validator.iter_errors(value)), None)
        if error is None:
            return Score(passed=True, value=1.0)
        where = "/".join(str(part) for part in error.absolute_path) or "the output"
        return Score(passed=False, value=0.0, reason=f"{where}: {error.message}"[:_REASON_CHARS])


def json_schema(schema: Mapping[str, Any] | str | os.PathLike[str]) -> Scorer:
    """Passes when the output (a structured output, or text holding JSON) validates against
    `schema`: a JSON Schema, or the path of a JSON file holding one.

    Raises:
        ConfigError: the file cannot be read or is not JSON, or the schema is not valid.
    """
    import jsonschema

    name = "json_schema"
    if isinstance(schema, str | os.PathLike):
        name = f"json_schema:{Path(schema).name}"
        schema = _read_schema(Path(schema))
    if not isinstance(schema, Mapping):
        raise ConfigError(f"json_schema scorer: a schema is a JSON object, got {_short(schema)}")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"json_schema scorer: the schema is not valid: {exc.message}") from None
    return _Schema(cls(dict(schema)), name)


def _read_schema(path: Path) -> Any:
    from delegate._json import loads_untrusted
    from delegate.errors import JSONInputError
    from delegate.workflows._files import FileProblem, read_bounded

    try:
        data = read_bounded(path, _MAX_SCHEMA_BYTES)
    except FileProblem as exc:
        raise ConfigError(f"json_schema scorer: cannot read {str(path)!r}: {exc}") from None
    try:
        return loads_untrusted(data, what=f"the schema {str(path)!r}")
    except JSONInputError as exc:
        raise ConfigError(f"json_schema scorer: {exc}") from None


# -- one field ----------------------------------------------------------------------------------


class _Field(_Named):
    def __init__(self, path: tuple[str, ...], tolerance: float) -> None:
        self.path = path
        self.tolerance = tolerance
        dotted = ".".join(path)
        self.name = f"field:{dotted}" + (f"~{tolerance:g}" if tolerance else "")

    def __call__(self, case: Case, output: Any) -> Score:
        dotted = ".".join(self.path)
        expected = _plain(case.expected)
        found, want = _lookup(expected, self.path)
        if not found:
            raise ConfigError(
                f"case {case.id!r}: `expected` has no field {dotted!r} for the scorer "
                f"{self.name!r}; give it as expected: {{{dotted!r}: ...}}"
            )
        present, got = _lookup(_plain(output), self.path)
        if not present:
            return Score(passed=False, value=0.0, reason=f"the output has no field {dotted!r}")
        if _same(got, want, self.tolerance):
            return Score(passed=True, value=1.0)
        return Score(
            passed=False, value=0.0, reason=f"{dotted}: expected {_short(want)}, got {_short(got)}"
        )


def _lookup(value: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _same(got: Any, want: Any, tolerance: float) -> bool:
    numbers = (int, float)
    if isinstance(want, numbers) and not isinstance(want, bool):
        if isinstance(got, str):
            try:
                got = float(got.replace(",", ""))
            except ValueError:
                return False
        if isinstance(got, numbers) and not isinstance(got, bool):
            if not (math.isfinite(got) and math.isfinite(want)):
                return False
            # As written, not as binary floats: 794.18 is one cent from 794.19, not 0.0100000001.
            difference = abs(Decimal(repr(got)) - Decimal(repr(want)))
            return difference <= Decimal(repr(tolerance))
        return False
    if isinstance(want, str) and isinstance(got, str):
        return got.strip() == want.strip()
    return bool(got == want)


def field_equals(name: str, *, tolerance: float = 0.0) -> Scorer:
    """Passes when the output's field `name` (dotted for nested fields: "totals.net") equals
    `case.expected[name]`: numbers within `tolerance` (absolute, compared as written: 794.18
    is within 0.01 of 794.19; a number written as text is read), text without surrounding
    spaces, anything else exactly.

    Raises:
        ConfigError: an empty name, or a negative or non-finite tolerance.
    """
    path = tuple(part for part in str(name).split("."))
    if not name or any(not part for part in path):
        raise ConfigError(f"field scorer: {name!r} is not a field name; e.g. field:total~0.01")
    if not (isinstance(tolerance, int | float) and math.isfinite(tolerance) and tolerance >= 0):
        raise ConfigError(f"field scorer: the tolerance must be a number ≥ 0, got {tolerance!r}")
    return _Field(path, float(tolerance))


# -- LLM judge ----------------------------------------------------------------------------------


class JudgeGrade(BaseModel):
    """What a judge scorer's agent answers.

    Attributes:
        passed: whether the output answers the case well enough.
        score: how good it is, from 0 (useless) to 10 (perfect).
        reason: why, in a sentence or two.
    """

    passed: bool
    score: float = Field(ge=0, le=10)
    reason: str


_JUDGE_PROMPT = """\
Grade an answer. Pass it only when it does what the inputs ask{criteria_hint}; score it from 0 \
(useless) to 10 (perfect).
{criteria}
<inputs>
{inputs}
</inputs>
{expected}<answer>
{answer}
</answer>"""

_JUDGE_TEXT_CHARS = 20_000


class _Judge(_Named):
    def __init__(self, agent: Agent[Any], criteria: str) -> None:
        self.agent = agent
        self.criteria = criteria
        self.name = f"judge:{agent.name}"

    def prompt(self, case: Case, output: Any) -> str:
        expected = ""
        if case.expected is not None:
            expected = f"<expected>\n{_text(case.expected)[:_JUDGE_TEXT_CHARS]}\n</expected>\n"
        return _JUDGE_PROMPT.format(
            criteria_hint=" and meets the criteria" if self.criteria else "",
            criteria=f"Criteria: {self.criteria}\n" if self.criteria else "",
            inputs=_text(case.inputs)[:_JUDGE_TEXT_CHARS],
            expected=expected,
            answer=_text(output)[:_JUDGE_TEXT_CHARS],
        )

    async def __call__(self, case: Case, output: Any) -> Score:
        from delegate.agents.agent import with_output_type
        from delegate.evals._budget import eval_caller

        grader = with_output_type(self.agent, JudgeGrade)
        result = await grader.run(self.prompt(case, output), caller=eval_caller())
        grade: JudgeGrade = result.output
        return Score(
            passed=grade.passed, value=grade.score / 10, reason=grade.reason[:_REASON_CHARS]
        )


def judge(agent: Agent[Any], *, criteria: str = "") -> Scorer:
    """An LLM judge: `agent` reads the case's inputs, its expected answer (when there is one)
    and the output, and answers a `JudgeGrade` (passed, a score from 0 to 10, a reason). Its
    calls are held to the evaluation's budget and counted in the configuration's cost.

    Args:
        agent: the judge (any model; a cheap one is usually enough).
        criteria: what a good answer does, added to the judge's prompt.
    """
    from delegate.agents.agent import Agent

    if not isinstance(agent, Agent):
        raise ConfigError(f"judge scorer: give a delegate.Agent, got {type(agent).__name__}")
    return _Judge(agent, criteria)
