"""The cases an evaluation runs: `Case` (inputs, the expected answer) and `Dataset`.

A dataset comes from a list or from a JSON Lines file, one case per line::

    {"id": "acme", "inputs": {"document": "ACME ..."}, "expected": {"total": 794.19}}

A dataset file is untrusted input: it is read bounded (size, lines, the depth of each line's
JSON), and every problem is a `DatasetError` naming the file and the line.

```
ConfigError
└── DatasetError     a dataset that cannot be used (.path .line)
```
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from delegate._json import loads_untrusted
from delegate.errors import ConfigError, JSONInputError

__all__ = ["MAX_CASES", "MAX_DATASET_BYTES", "Case", "Dataset", "DatasetError"]

MAX_DATASET_BYTES = 64 * 1024 * 1024
"""The largest dataset file read (64 MiB)."""

MAX_CASES = 100_000
"""The most cases a dataset holds."""

_MAX_LINE_CHARS = 4_000_000  # one case's JSON
_MAX_DEPTH = 64
_MAX_ID = 200


class DatasetError(ConfigError):
    """A dataset that cannot be used: a malformed line, a duplicate id, too many cases.

    Attributes:
        path: the dataset file ("" for a dataset built in code).
        line: the line of the first problem, 1-based (0 when it is not about one line).
    """

    def __init__(self, message: str, *, path: str = "", line: int = 0) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class Case(BaseModel):
    """One example to run: the inputs a configuration gets, and what a right answer is.

    Attributes:
        inputs: the run's inputs by name (a workflow's `inputs:`; a function's argument).
        expected: the right answer, or what scorers compare against (a string, a number, a
            mapping of fields...); None when the scorers need none (a JSON schema, a judge).
        id: how reports name the case; unique in a dataset (default: "case-<n>", from 1).
        metadata: anything else kept with the case (tags, a source); reported, never scored.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    inputs: dict[str, Any] = Field(default_factory=dict)
    expected: Any = None
    id: str | None = Field(default=None, min_length=1, max_length=_MAX_ID)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Dataset(Sequence[Case]):
    """Cases with unique ids, in order.

    Args:
        cases: `Case`s, or mappings with the same keys (`inputs`, `expected`, `id`,
            `metadata`).
        name: how reports name the dataset.

    Raises:
        DatasetError: a case that is not valid, a duplicate id, more than `MAX_CASES` cases,
            or no case at all.
    """

    def __init__(self, cases: Iterable[Case | Mapping[str, Any]], *, name: str = "") -> None:
        self.name = name
        self.path = ""
        self._cases = _numbered(cases, path="", lines=None)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str], *, name: str | None = None) -> Dataset:
        """Read a JSON Lines file: one case (a JSON object) per line; blank lines are skipped.

        Raises:
            DatasetError: the file cannot be read, is larger than `MAX_DATASET_BYTES`, is not
                UTF-8, or a line is not a valid case (its line number is in the message).
        """
        from delegate.workflows._files import FileProblem, read_bounded

        shown = str(path)
        try:
            data = read_bounded(path, MAX_DATASET_BYTES)
        except FileProblem as exc:
            raise DatasetError(f"cannot read the dataset {shown!r}: {exc}", path=shown) from None
        try:
            text = data.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise DatasetError(
                f"{shown}:{line}: not UTF-8 text; save the dataset as UTF-8", path=shown, line=line
            ) from None
        rows: list[Any] = []
        lines: list[int] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            if len(rows) >= MAX_CASES:
                raise DatasetError(
                    f"{shown}:{number}: more than {MAX_CASES:,} cases; split the dataset",
                    path=shown,
                    line=number,
                )
            rows.append(_parse_line(raw, shown, number))
            lines.append(number)
        dataset = cls.__new__(cls)
        dataset.name = name if name is not None else Path(shown).stem
        dataset.path = shown
        dataset._cases = _numbered(rows, path=shown, lines=lines)
        return dataset

    def __len__(self) -> int:
        return len(self._cases)

    def __getitem__(self, index: Any) -> Any:
        return self._cases[index]

    def __iter__(self) -> Iterator[Case]:
        return iter(self._cases)

    def __repr__(self) -> str:
        return f"Dataset({self.name or 'unnamed'!r}, {len(self._cases)} cases)"


def _parse_line(raw: str, path: str, number: int) -> Any:
    try:
        return loads_untrusted(
            raw, max_chars=_MAX_LINE_CHARS, max_depth=_MAX_DEPTH, what=f"{path}:{number}"
        )
    except JSONInputError as exc:
        raise DatasetError(
            f"{exc}; write one JSON object per line", path=path, line=number
        ) from None


def _numbered(
    rows: Iterable[Case | Mapping[str, Any]], *, path: str, lines: Sequence[int] | None
) -> list[Case]:
    """The cases, validated, each with an id, the ids unique."""
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        line = lines[index] if lines is not None else 0
        where = f"{path}:{line}" if path else f"case {index + 1}"
        if index >= MAX_CASES:
            raise DatasetError(f"{where}: more than {MAX_CASES:,} cases; split the dataset")
        case = _case(row, where, path, line)
        if case.id is None:
            case = case.model_copy(update={"id": f"case-{index + 1}"})
        assert case.id is not None  # set just above
        if case.id in seen:
            raise DatasetError(
                f"{where}: the id {case.id!r} is already the id of case {seen[case.id]}; give "
                "each case its own id",
                path=path,
                line=line,
            )
        seen[case.id] = index + 1
        cases.append(case)
    if not cases:
        where = f"the dataset {path!r}" if path else "the dataset"
        raise DatasetError(f"{where} holds no case; add at least one", path=path)
    return cases


def _case(row: Any, where: str, path: str, line: int) -> Case:
    if isinstance(row, Case):
        return row
    if not isinstance(row, Mapping):
        raise DatasetError(
            f'{where}: a case is a JSON object like {{"inputs": {{...}}, "expected": ...}}, '
            f"not {_kind(row)}",
            path=path,
            line=line,
        )
    try:
        return Case.model_validate(dict(row))
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors()[:5])
        raise DatasetError(f"{where}: {problems}", path=path, line=line) from None


def _problem(error: Any) -> str:
    field = ".".join(str(part) for part in error.get("loc", ())) or "the case"
    if error.get("type") == "extra_forbidden":
        return (
            f"unknown key {field!r} (a case has inputs, expected, id and metadata; put other "
            "data under metadata)"
        )
    return f"{field}: {error.get('msg', 'is not valid')}"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), "an array" if isinstance(value, list) else "a value")
