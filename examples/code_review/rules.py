"""Pattern checks on a diff: what the offline reviewer "finds", so the demo's output is real.

Each rule looks at the lines a reviewer is shown (`gitdiff.ShownLine`) and reports findings whose
message quotes, in backticks, the code on the line it names. All but one report only added lines.
`unused_imports` imitates a mistake mini models make on diffs: it treats unchanged context like
new code, and it cannot see the rest of the file, so it flags an import that is used outside the
hunks — an unfounded finding, on a line the change did not touch, for the verifier to drop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence

from code_review.findings import Finding
from code_review.gitdiff import ShownLine

__all__ = ["RULES", "review_lines"]

Rule = Callable[[str, Sequence[ShownLine]], Iterator[Finding]]

_SQL = re.compile(r"""["'][^"']*\b(SELECT|INSERT|UPDATE|DELETE)\b""", re.IGNORECASE)
_CONCAT = re.compile(r"""["']\s*\+\s*(\w+)|(\w+)\s*\+\s*["']""")
_FSTRING_SQL = re.compile(r"""\bf["'][^"']*\b(SELECT|INSERT|UPDATE|DELETE)\b[^"']*\{(\w+)""", re.I)
_PAST_END = re.compile(r"range\((?:[^()]*,\s*)?len\((\w+)\)\s*\+\s*1\)|<=\s*len\((\w+)\)")
_AWAITED = re.compile(r"\bawait\s+([\w.]+)\(")
_ASYNC_DEF = re.compile(r"\basync\s+def\s+(\w+)\(")
_OPEN = re.compile(r"(?<![\w.])open\(|\.open\(")
_PRINT = re.compile(r"^\s*print\(")
_TODO = re.compile(r"#\s*(TODO|FIXME)\b.*")
_IMPORT = re.compile(r"^\s*import\s+([\w.]+)\s*$|^\s*from\s+[\w.]+\s+import\s+(\w+)\s*$")


def _added(lines: Sequence[ShownLine]) -> Iterator[tuple[int, str]]:
    for line in lines:
        if line.kind == "+" and line.number is not None:
            yield line.number, line.text


def sql_concatenation(path: str, lines: Sequence[ShownLine]) -> Iterator[Finding]:
    """A SQL statement glued together from strings and a variable: injectable."""
    for number, text in _added(lines):
        fstring = _FSTRING_SQL.search(text)
        glued = _CONCAT.search(text) if _SQL.search(text) else None
        if fstring is None and glued is None:
            continue
        name = fstring[2] if fstring else (glued[1] or glued[2]) if glued else "value"
        yield Finding(
            file=path,
            line=number,
            severity="critical",
            message=f"SQL built by string concatenation: `{text.strip()}` puts `{name}` into "
            "the statement unescaped, so a crafted value can run any SQL (SQL injection)",
            suggestion=f"pass `{name}` as a bound parameter: `WHERE ... = ?` with `({name},)`",
        )


def off_by_one(path: str, lines: Sequence[ShownLine]) -> Iterator[Finding]:
    """A loop or comparison that runs one past the end of a sequence."""
    for number, text in _added(lines):
        found = _PAST_END.search(text)
        if found is None:
            continue
        name = found[1] or found[2]
        fix = f"`range(1, len({name}))`" if found[1] else f"`< len({name})`"
        yield Finding(
            file=path,
            line=number,
            severity="major",
            message=f"off-by-one: `{found[0]}` reaches index `len({name})`, one past the end "
            f"of `{name}`, which raises IndexError on the last pass",
            suggestion=f"stop before `len({name})`: {fix}",
        )


def missing_await(path: str, lines: Sequence[ShownLine]) -> Iterator[Finding]:
    """A coroutine function called without `await`: the call does nothing."""
    coroutines: set[str] = set()
    for line in lines:
        coroutines.update(_AWAITED.findall(line.text))
        coroutines.update(_ASYNC_DEF.findall(line.text))
    for number, text in _added(lines):
        statement = text.strip()
        for name in sorted(coroutines):
            if statement.startswith((f"{name}(", f"return {name}(")):
                yield Finding(
                    file=path,
                    line=number,
                    severity="major",
                    message=f"missing await: `{statement}` creates a coroutine and drops it, "
                    f"so `{name}` never runs (it is awaited elsewhere in this file)",
                    suggestion=f"`await {statement}`",
                )


def unclosed_file(path: str, lines: Sequence[ShownLine]) -> Iterator[Finding]:
    """A file opened outside a `with` block and never closed."""
    added = list(_added(lines))
    if any(".close()" in text for _, text in added):
        return
    for number, text in added:
        if _OPEN.search(text) and not text.lstrip().startswith(("with ", "async with ")):
            yield Finding(
                file=path,
                line=number,
                severity="minor",
                message=f"file handle never closed: `{text.strip()}` opens a file outside a "
                "`with` block, so it stays open until the garbage collector runs",
                suggestion="open it in a `with` block: `with path.open() as handle:`",
            )


def debug_print(path: str, lines: Sequence[ShownLine]) -> Iterator[Finding]:
    """A `print` left in library code."""
    for number, text in _added(lines):
        if _PRINT.search(text):
            yield Finding(
                file=path,
                line=number,
                severity="minor",
                message=f"debug output left in: `{text.strip()}` writes to stdout",
                suggestion="remove it, or log at debug level with the module's logger",
            )


def todo_note(path: str, lines: Sequence[ShownLine]) -> Iterator[Finding]:
    """A TODO or FIXME added by the change."""
    for number, text in _added(lines):
        found = _TODO.search(text)
        if found:
            yield Finding(
                file=path,
                line=number,
                severity="info",
                message=f"new `{found[0]}`: work left for later",
                suggestion="open an issue for it and link it here",
            )


def unused_imports(path: str, lines: Sequence[ShownLine]) -> Iterator[Finding]:
    """Imports not used in the lines shown — context lines included, which is the mistake."""
    for line in lines:
        found = _IMPORT.match(line.text)
        if line.kind == "-" or line.number is None or found is None or "__future__" in line.text:
            continue
        name = (found[1] or found[2]).split(".")[0]
        used = re.compile(rf"\b{re.escape(name)}\b")
        if not any(used.search(other.text) for other in lines if other is not line):
            yield Finding(
                file=path,
                line=line.number,
                severity="minor",
                message=f"unused import: `{line.text.strip()}` is never used",
                suggestion=f"remove the import of `{name}`",
            )


RULES: tuple[Rule, ...] = (
    sql_concatenation,
    off_by_one,
    missing_await,
    unclosed_file,
    debug_print,
    todo_note,
    unused_imports,
)


def review_lines(path: str, lines: Sequence[ShownLine]) -> list[Finding]:
    """Every rule's findings on `lines` of `path`, in line order."""
    found = [finding for rule in RULES for finding in rule(path, lines)]
    return sorted(found, key=lambda finding: finding.line)
