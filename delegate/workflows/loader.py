"""Loading workflow files: every problem at once, each as `file:line:col: message`.

    loaded = load_workflow("configs/market-brief.yaml")
    loaded.spec.steps, loaded.implicit_needs

Reading is bounded before parsing (`MAX_BYTES`, UTF-8 only) and parsing is safe
(`delegate.workflows._yaml`: core tags only, no duplicate keys, bounded aliases and nesting). A
YAML-level problem stops there: nothing after it can be read reliably. Otherwise the data is
validated by `WorkflowSpec` and every problem is reported: pydantic's error locations are mapped
back to the lines and columns where the values (or, for unknown keys, the keys) were written.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from delegate.errors import WorkflowError
from delegate.orchestrator.graph import TASK_ID
from delegate.workflows._checks import Issue, check_workflow, unpriced_models
from delegate.workflows._files import FileProblem, read_bounded
from delegate.workflows._yaml import MAX_BYTES, Loc, Mark, Where, YamlError, decode, parse
from delegate.workflows.problems import Problem
from delegate.workflows.spec import (
    AGENT_NAME,
    ENV_NAME,
    HEADER_NAME,
    INPUT_NAME,
    TOOL_PATH,
    WORKFLOW_NAME,
    AdaptiveVotesSpec,
    AgentSpec,
    AgentStep,
    BestOfNSpec,
    BudgetSpec,
    EndpointSpec,
    InputSpec,
    MCPServerSpec,
    MixtureOfAgentsSpec,
    PlanStep,
    SelfRefineSpec,
    StrategySpec,
    WorkflowSpec,
)

__all__ = ["LoadedWorkflow", "load_workflow", "load_workflow_text"]

_PATTERNS = {
    TASK_ID.pattern: "must be 1–200 letters, digits or `_ . : - [ ]`, starting with a letter, "
    "digit or underscore",
    WORKFLOW_NAME: "must be lowercase letters, digits, '-' or '_' (at most 100), starting with a "
    "letter or digit",
    INPUT_NAME: "must be letters, digits and '_', not starting with a digit (templates read it "
    "as inputs.<name>)",
    AGENT_NAME: "must be letters, digits, '_', '-' or '.' (at most 100)",
    TOOL_PATH: "must be an import path, package.module:function",
    ENV_NAME: "must be the name of an environment variable (letters, digits and '_', e.g. "
    "LOCAL_LLM_KEY), not the value",
    HEADER_NAME: "must be an HTTP header name, e.g. X-Org-Id",
    r"^\S+$": "must be a litellm model string without spaces, e.g. openai/gpt-4o-mini",
    r"^([A-Za-z][A-Za-z0-9+.-]*://.*|:memory:)$": "must be a database URL such as "
    "sqlite:///runs.db, or :memory:",
}
_SHOULD = re.compile(r"^(?:Input|List|String|Dictionary|Value|Tuple|Object|Set) (should)")
_KEY_NAMES = {
    "inputs": "input name",
    "agents": "agent name",
    "prices": "model name",
    "endpoints": "endpoint name",
    "mcp_servers": "MCP server name",
}
_STRATEGY_SPECS: dict[str, type[BaseModel]] = {
    "best_of_n": BestOfNSpec,
    "mixture_of_agents": MixtureOfAgentsSpec,
    "self_refine": SelfRefineSpec,
}
_VOTES_TAGS = ("count", "adaptive")  # `Votes`' tags, which pydantic puts after "votes"
_SUGGESTED_KEYS = (
    100  # unknown keys per file with a "did you mean" (each compares every allowed key)
)


@dataclass(frozen=True, slots=True)
class LoadedWorkflow:
    """A valid workflow file.

    Attributes:
        spec: the validated workflow.
        path: the file it was read from (as given), or the name given to `load_workflow_text`.
        implicit_needs: per step id, the steps its templates name that its `needs` does not
            list; they are dependencies too (`spec.needs_of(step_id)` gives all of them).
        warnings: what is allowed but probably not meant, at its place in the file: models
            with no price (`delegate validate` shows them).
    """

    spec: WorkflowSpec
    path: Path
    implicit_needs: Mapping[str, tuple[str, ...]]
    warnings: tuple[Problem, ...] = ()

    @property
    def base_dir(self) -> Path:
        """The folder tool modules are looked for in first: the file's own."""
        return self.path.parent


_START = Mark(1, 1)


def _fail(file: str, message: str, mark: Mark = _START) -> WorkflowError:
    return WorkflowError([Problem(file, mark.line, mark.col, message)])


def _too_big(file: str, size: int) -> WorkflowError:
    return _fail(
        file,
        f"the file has {size:,} bytes; workflow files are limited to {MAX_BYTES:,} bytes "
        f"({MAX_BYTES // (1 << 20)} MiB)",
    )


def load_workflow(path: str | os.PathLike[str]) -> LoadedWorkflow:
    """Read, parse and validate a workflow file.

    Args:
        path: the YAML file. Tool modules are looked for in its folder first.

    Raises:
        WorkflowError: the file cannot be read, or has problems; `.problems` lists every one.
    """
    file = Path(path)
    name = str(path)
    try:
        # A regular file only (a FIFO would wait for a writer forever, a device never ends),
        # its size checked before a byte is read.
        data = read_bounded(file, MAX_BYTES)
    except FileProblem as exc:
        if exc.size is not None:
            raise _too_big(name, exc.size) from None
        raise _fail(name, f"cannot read the file: {exc}") from None
    try:
        text = decode(data)
    except YamlError as exc:
        raise _fail(name, exc.message, exc.mark) from None
    return _load(text, name, file.parent)


def load_workflow_text(text: str, filename: str = "<workflow>") -> LoadedWorkflow:
    """Parse and validate a workflow given as text.

    Args:
        text: the YAML.
        filename: how problems name the file; tool modules are looked for in its folder first.

    Raises:
        WorkflowError: the text has problems; `.problems` lists every one.
    """
    if len(text) > MAX_BYTES // 4 and len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise _too_big(filename, len(text.encode("utf-8", "surrogatepass")))
    return _load(text.removeprefix("\ufeff"), filename, Path(filename).parent)


def _load(text: str, file: str, base_dir: Path) -> LoadedWorkflow:
    try:
        document = parse(text)
    except YamlError as exc:
        raise _fail(file, exc.message, exc.mark) from None
    if document.problems:
        raise WorkflowError(
            Problem(file, mark.line, mark.col, message)
            for mark, message in sorted(document.problems, key=lambda p: (p[0].line, p[0].col))
        )
    data = document.data
    if data is None:
        raise _fail(
            file,
            "the file is empty: a workflow is a mapping with name:, agents: and steps: (or "
            "planner:, workers: and goal:)",
        )
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single value ({data!r:.40})"
        raise _fail(
            file,
            f"a workflow is a mapping (name:, agents:, steps: ...), not {kind}",
            document.index[()].value,
        )
    try:
        spec = WorkflowSpec.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        locator = _Locator(file, text, document.index, data)
        errors = _without_misspelled(exc.errors(), locator)
        problems = [locator.from_error(error) for error in errors]
        if not any(error["type"] == "workflow" for error in errors):
            # The rules across fields run only once every field is valid: run them on the raw
            # data, so this report is complete too.
            report = check_workflow(data, base_dir=base_dir)
            problems += [locator.from_issue(issue) for issue in report.issues]
        raise WorkflowError(_ordered(problems)) from None
    locator = _Locator(file, text, document.index, data)
    warnings = tuple(
        locator.from_issue(issue) for issue in unpriced_models(data, base_dir=base_dir)
    )
    return LoadedWorkflow(spec, Path(file), spec.implicit_needs, warnings)


def _without_misspelled(errors: list[ErrorDetails], locator: _Locator) -> list[ErrorDetails]:
    """Drop "missing key 'prompt'" where an unknown key 'promt' already says "did you mean"."""
    meant = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            loc = locator.untagged(tuple(error["loc"]))
            suggestion = locator.suggestion(loc)
            if suggestion:
                meant.add((*loc[:-1], suggestion))
    return [
        error
        for error in errors
        if not (error["type"] == "missing" and locator.untagged(tuple(error["loc"])) in meant)
    ]


def _ordered(problems: Iterable[Problem]) -> list[Problem]:
    """In file order; problems at one place keep the order they were found in."""
    unique = {(p.line, p.col, p.message): p for p in problems}
    return sorted(unique.values(), key=lambda p: (p.line, p.col))


def _path(loc: Sequence[str | int]) -> str:
    shown = ""
    for n, element in enumerate(loc):
        if isinstance(element, int):
            shown += f"[{element}]"
        elif element.isidentifier() and (n == 0 or loc[n - 1] != "prices"):
            shown += f".{element}" if shown else element
        else:
            shown += f"[{element!r}]"
    return shown


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Locator:
    """Turns validation errors and issues into problems at the right line and column."""

    def __init__(self, file: str, text: str, index: Mapping[Loc, Where], data: Mapping[str, Any]):
        self.file, self.index, self.data = file, index, data
        self.lines = text.splitlines()
        # Each unknown key's suggestion, computed once: a file of thousands of unknown keys
        # stays linear (the first `_SUGGESTED_KEYS` get one; the rest list the allowed keys).
        self._suggested: dict[Loc, str | None] = {}

    def where(self, loc: Loc) -> tuple[Loc, Where]:
        """The deepest path of `loc` that was written in the file, and where."""
        found: Loc = ()
        for element in loc:
            if (*found, element) in self.index:
                found = (*found, element)
        return found, self.index[found]

    def problem(self, loc: Loc, message: str, *, key: bool = False, line: int = 0) -> Problem:
        found, where = self.where(loc)
        mark = where.key if key and where.key is not None and found == loc else where.value
        if where.literal and found == loc and line > 0:
            row = mark.line + line  # a `|` block's text starts on the next line
            if row <= len(self.lines):
                text = self.lines[row - 1]
                mark = Mark(row, len(text) - len(text.lstrip()) + 1)
        return Problem(self.file, mark.line, mark.col, " ".join(message.split()))

    def from_issue(self, issue: Issue) -> Problem:
        return self.problem(issue.loc, issue.message, key=issue.key, line=issue.line)

    def from_error(self, error: ErrorDetails) -> Problem:
        kind = error["type"]
        loc = tuple(error["loc"])
        if kind == "workflow":
            ctx = error.get("ctx") or {}
            return self.problem(
                loc, str(ctx["message"]), key=bool(ctx.get("key")), line=int(ctx.get("line", 0))
            )
        loc = self.untagged(loc)
        if kind == "extra_forbidden":
            return self.problem(loc, self._unknown_key(loc), key=True)
        if kind == "missing" and isinstance(loc[-1], int):
            return self.problem(
                loc[:-1], f"{self._place(loc[:-1])} has too few items: #{loc[-1] + 1} is missing"
            )
        if kind == "missing":
            return self.problem(
                loc[:-1], f"{self._place(loc[:-1])} is missing the required key {loc[-1]!r}"
            )
        if kind == "step_kind":
            kind_value = _mapping(self._value(loc)).get("kind")
            return self.problem(
                (*loc, "kind"),
                f"{self._place(loc)}: kind must be 'agent' or 'plan', got {_short(kind_value)}",
            )
        if loc and loc[-1] == "[key]":
            return self.problem(loc[:-1], self._bad_key(loc, error), key=True)
        return self.problem(loc, self._invalid(loc, error))

    def untagged(self, loc: Loc) -> Loc:
        # pydantic puts the tag of the step's kind ("agent", "plan") after the step's index,
        # and the tag of a `votes:` value's form after "votes".
        tagged = len(loc) > 2 and loc[0] == "steps" and isinstance(loc[1], int)
        loc = (*loc[:2], *loc[3:]) if tagged and loc[2] in ("agent", "plan") else loc
        if len(loc) > 3 and loc[2] == "votes" and loc[3] in _VOTES_TAGS:
            loc = (*loc[:3], *loc[4:])
        return loc

    def _value(self, loc: Loc) -> Any:
        value: Any = self.data
        for element in loc:
            listed = isinstance(value, list) and isinstance(element, int) and element < len(value)
            if not (listed or (isinstance(value, Mapping) and element in value)):
                return None
            value = value[element]
        return value

    def _context(self, loc: Loc) -> tuple[str, Loc]:
        """Who `loc` belongs to ("step 'dig'", "agent 'scout'") and the path inside it."""
        if len(loc) >= 2 and loc[0] == "inputs":
            return f"input {loc[1]!r}", loc[2:]
        if len(loc) >= 2 and loc[0] == "agents":
            return f"agent {loc[1]!r}", loc[2:]
        if len(loc) >= 2 and loc[0] == "endpoints":
            return f"endpoint {loc[1]!r}", loc[2:]
        if len(loc) >= 2 and loc[0] == "mcp_servers":
            return f"MCP server {loc[1]!r}", loc[2:]
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            step_id = _mapping(self._value(loc[:2])).get("id")
            if isinstance(step_id, str) and step_id:
                return f"step {step_id!r}", loc[2:]
            return f"step #{loc[1] + 1}", loc[2:]
        return "the workflow", loc

    def _place(self, loc: Loc) -> str:
        owner, inner = self._context(loc)
        return f"{_path(inner)} of {owner}" if inner else owner

    def _model(self, loc: Loc) -> type[BaseModel] | None:
        """The model whose keys the mapping at `loc` has."""
        if loc and loc[-1] == "budget":
            return BudgetSpec
        if not loc:
            return WorkflowSpec
        if len(loc) == 3 and loc[2] in ("votes", "strategy"):  # (of a step or an agent)
            return AdaptiveVotesSpec if loc[2] == "votes" else StrategySpec
        if len(loc) == 4 and loc[2] == "strategy":
            return _STRATEGY_SPECS.get(str(loc[3]))
        if len(loc) == 2:
            if loc[0] == "steps":
                plan = _mapping(self._value(loc)).get("kind") == "plan"
                return PlanStep if plan else AgentStep
            models: dict[str, type[BaseModel]] = {
                "inputs": InputSpec,
                "agents": AgentSpec,
                "endpoints": EndpointSpec,
                "mcp_servers": MCPServerSpec,
            }
            return models.get(str(loc[0]))
        return None

    def suggestion(self, loc: Loc) -> str | None:
        """The allowed key closest to the unknown key at `loc`, if one is close (None past the
        first `_SUGGESTED_KEYS` unknown keys)."""
        if loc in self._suggested:
            return self._suggested[loc]
        close: list[str] = []
        if len(self._suggested) < _SUGGESTED_KEYS:
            model = self._model(loc[:-1])
            allowed = list(model.model_fields) if model else []
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        self._suggested[loc] = close[0] if close else None
        return self._suggested[loc]

    def _unknown_key(self, loc: Loc) -> str:
        message = f"unknown key {str(loc[-1])!r} in {self._place(loc[:-1])}"
        suggestion = self.suggestion(loc)
        if suggestion:
            return f"{message}; did you mean {suggestion!r}?"
        model = self._model(loc[:-1])
        return f"{message}; allowed keys: {', '.join(model.model_fields)}" if model else message

    def _bad_key(self, loc: Loc, error: ErrorDetails) -> str:
        what = _KEY_NAMES.get(str(loc[0]), "key")
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        reason = _PATTERNS.get(pattern, error["msg"])
        return f"{what} {_short(error['input'])} {reason}"

    def _invalid(self, loc: Loc, error: ErrorDetails) -> str:
        owner, inner = self._context(loc)
        prefix = "" if owner == "the workflow" else f"{owner}: "
        field = _path(inner)
        message = error["msg"]
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        if error["type"] == "string_pattern_mismatch" and pattern == ENV_NAME:
            # Not echoed: what was written in place of a variable's name may be the key itself.
            return f"{prefix}{field} {_PATTERNS[pattern]}"
        if error["type"] == "string_pattern_mismatch" and pattern in _PATTERNS:
            return f"{prefix}{field} {_short(error['input'])} {_PATTERNS[pattern]}"
        should = _SHOULD.match(message)
        if error["type"] in ("model_type", "dict_type"):
            message = "should be a mapping (key: value, ...)"
        elif should:
            message = message[should.start(1) :].replace(" after validation", "")
        if message.startswith("should"):
            scalar = isinstance(error["input"], str | int | float | bool) or error["input"] is None
            if scalar and ", got" not in message:
                message += f", got {_short(error['input'])}"
            return f"{prefix}{field} {message}" if field else f"{owner} {message}"
        message = message.removeprefix("Value error, ")
        if field:
            return f"{prefix}{field}: {message}"
        return f"{owner}: {message}" if prefix else message


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
