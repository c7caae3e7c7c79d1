"""Static checks of a workflow's templates: every name they use is known before anything runs.

Templates are parsed with the prompt environment of `delegate.orchestrator.graph` (sandboxed,
strict undefined names) and their syntax tree is walked. What a template may name:

- `inputs.<name>`: a declared input;
- `steps.<id>.output...`: the output of a step listed earlier, or of one in the step's `needs`
  (every step a template names becomes a dependency of the template's step);
- `item` and `loop` (`loop.index`, `loop.index0`, `loop.first`, `loop.last`, `loop.length`): in
  the prompt of a step with `foreach` only;
- names the template defines itself (`{% set %}`, `{% for %}`) and jinja's globals (`range`,
  `dict`, `namespace`, ...).

Anything else (`steps.nope`, `inputs.typo`, `{{ secret }}`) is a finding, with a suggestion when
a close name exists. Attribute names starting with `_` (`''.__class__`) are findings too, and the
sandbox refuses them again when the template renders.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, meta, nodes

from delegate.orchestrator.graph import PROMPT_ENV

__all__ = [
    "Finding",
    "Scope",
    "StepInfo",
    "TemplateReport",
    "check_expression",
    "check_template",
    "expression_of",
]

_FETCHED = frozenset({"inputs", "steps"})  # names a template may not assign to
_ATTRIBUTE_FILTERS = frozenset(
    {"attr", "map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique", "min", "max"}
)
_EXTERNAL = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What a template can know about a step it names.

    Attributes:
        id: the step's id.
        position: its index in `steps`.
        kind: "agent" or "plan" (a plan step's output is the text of its synthesis).
        foreach: the step fans out, so its output is a list of outputs, one per item.
        schema: its output JSON Schema (None: its output is text).
    """

    id: str
    position: int
    kind: str = "agent"
    foreach: bool = False
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Scope:
    """What one template may name.

    Attributes:
        inputs: the declared inputs, each with its declared type (None when unknown); None
            when the declarations are malformed, so input names are not checked.
        steps: every step of the workflow by id (empty in planner mode).
        owner: the step the template belongs to (None for the top-level goal).
        needs: the owner's explicit `needs`.
        item: `item` and `loop` are defined (the prompt of a step with `foreach`).
    """

    inputs: Mapping[str, str | None] | None
    steps: Mapping[str, StepInfo]
    owner: StepInfo | None = None
    needs: frozenset[str] = frozenset()
    item: bool = False


@dataclass(frozen=True, slots=True)
class Finding:
    """A problem in a template, at a 1-based line of the template's text."""

    message: str
    line: int = 1


@dataclass(slots=True)
class TemplateReport:
    """What checking a template found: problems, and the steps it names (its dependencies)."""

    findings: list[Finding] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)


def expression_of(text: str) -> str:
    """The expression inside a `when`/`foreach` value, for `PROMPT_ENV.compile_expression`.

    `"{{ inputs.depth == 'deep' }}"` gives `"inputs.depth == 'deep'"` (whitespace control
    dashes, `{{-` and `-}}`, are dropped).
    """
    inner = text.strip().removeprefix("{{").removesuffix("}}")
    return inner.removeprefix("-").removesuffix("-").strip()


def _show(name: str, path: list[str | int | None]) -> str:
    shown = name
    for element in path:
        if isinstance(element, str) and element.isidentifier():
            shown += f".{element}"
        else:
            shown += "[…]" if element is None else f"[{element!r}]"
    return shown


def _suggest(name: object, options: Mapping[str, str]) -> str:
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean {options[close[0]]}?)" if close else ""


def _chain(node: nodes.Expr) -> tuple[nodes.Expr, list[str | int | None], list[nodes.Node]]:
    """`a.b['c'][x]` as (Name a, ['b', 'c', None], [x]): None marks a computed key."""
    path: list[str | int | None] = []
    computed: list[nodes.Node] = []
    while True:
        if isinstance(node, nodes.Getattr):
            path.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem):
            arg = node.arg
            value = arg.value if isinstance(arg, nodes.Const) else None
            if isinstance(value, str | int) and not isinstance(value, bool):
                path.append(value)
            else:
                path.append(None)
                computed.append(arg)
            node = node.node
        else:
            path.reverse()
            return node, path, computed


class _Walker:
    """Walks one template's syntax tree, recording findings and the steps it names."""

    def __init__(self, scope: Scope, what: str, free: set[str]) -> None:
        self.scope, self.what, self.free = scope, what, free
        self.report = TemplateReport()

    def find(self, message: str, line: int) -> None:
        self.report.findings.append(Finding(f"{self.what} {message}", line))

    def visit(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Getattr | nodes.Getitem):
            base, path, computed = _chain(node)
            self._private(path, node.lineno)
            if isinstance(base, nodes.Name) and base.ctx == "load":
                self.name(base.name, path, node.lineno)
            else:
                self.visit(base)
            for child in computed:
                self.visit(child)
            return
        if isinstance(node, nodes.Name):
            if node.ctx == "load":
                self.name(node.name, [], node.lineno)
            elif node.name in _FETCHED:
                self.find(
                    f"assigns to {node.name!r}, a name templates read from; rename it", node.lineno
                )
            return
        if isinstance(node, _EXTERNAL):
            self.find("includes or imports another template; templates stand alone", node.lineno)
            return
        if isinstance(node, nodes.Filter):
            self._filter(node)
        for child in node.iter_child_nodes():
            self.visit(child)

    def _private(self, path: list[str | int | None], line: int) -> None:
        for element in path:
            if isinstance(element, str) and element.startswith("_"):
                self.find(
                    f"reaches for {element!r}: names starting with '_' are internal and not "
                    "available to templates",
                    line,
                )
                return

    def _filter(self, node: nodes.Filter) -> None:
        if node.name not in _ATTRIBUTE_FILTERS:
            return
        values = [arg for arg in node.args[:1] if node.name == "attr"]
        values += [kw.value for kw in node.kwargs if kw.key == "attribute"]
        for value in values:
            if isinstance(value, nodes.Const) and str(value.value).startswith("_"):
                self._private([str(value.value)], node.lineno)

    def name(self, name: str, path: list[str | int | None], line: int) -> None:
        if name == "inputs":
            self._input(path, line)
        elif name == "steps":
            self._step(path, line)
        elif name not in self.free or name in PROMPT_ENV.globals:
            return  # defined by the template itself, or one of jinja's globals
        elif name in ("item", "loop"):
            if not self.scope.item:
                self.find(
                    f"uses {name}, which is only defined in the prompt of a step with foreach",
                    line,
                )
        else:
            options = {n: f"inputs.{n}" for n in self.scope.inputs or ()}
            options.update({s: f"steps.{s}.output" for s in self.scope.steps})
            if self.scope.item:
                options.update(item="item", loop="loop")
            allowed = "inputs.<name>, steps.<id>.output" if self.scope.steps else "inputs.<name>"
            self.find(
                f"uses {{{{ {name} }}}}, which is not defined{_suggest(name, options)}; "
                f"templates can use {allowed}" + (", item and loop" if self.scope.item else ""),
                line,
            )

    def _input(self, path: list[str | int | None], line: int) -> None:
        inputs = self.scope.inputs
        if inputs is None or not path or path[0] is None or path[0] in inputs:
            return
        options = {n: f"inputs.{n}" for n in inputs}
        self.find(
            f"uses {_show('inputs', path[:1])}, which is not a declared input"
            f"{_suggest(path[0], options)}; declare it under inputs:",
            line,
        )

    def _step(self, path: list[str | int | None], line: int) -> None:
        scope, owner = self.scope, self.scope.owner
        if owner is None:
            self.find("uses steps, but a planner-mode workflow has no steps", line)
            return
        if not path or path[0] is None:
            self.find(
                "uses steps without naming a step; write steps.<id>.output (or "
                "steps['<id>'].output), so the dependency is known",
                line,
            )
            return
        step_id = path[0]
        info = scope.steps.get(step_id) if isinstance(step_id, str) else None
        if info is None:
            options = {s: f"steps.{s}" for s in scope.steps}
            self.find(
                f"uses {_show('steps', path[:1])}, which is not a step of this workflow"
                f"{_suggest(step_id, options)}",
                line,
            )
            return
        if info.id == owner.id:
            self.find(f"uses its own step's output ({_show('steps', path[:2])})", line)
            return
        if info.position > owner.position and info.id not in scope.needs:
            self.find(
                f"uses {_show('steps', path[:1])}, which is listed after step {owner.id!r}; "
                f"move step {info.id!r} above it",
                line,
            )
            return
        if info.id not in self.report.steps:
            self.report.steps.append(info.id)
        if len(path) < 2 or path[1] != "output":
            self.find(
                f"uses {_show('steps', path[:2])}; a step's output is "
                f"{_show('steps', [info.id, 'output'])}",
                line,
            )
        elif len(path) > 2:
            self._field(info, path, line)

    def _field(self, info: StepInfo, path: list[str | int | None], line: int) -> None:
        key, shown = path[2], _show("steps", path[:3])
        if not isinstance(key, str):
            return
        if info.kind == "plan":
            self.find(
                f"uses {shown}, but step {info.id!r} is a plan step: its output is text", line
            )
        elif info.foreach:
            self.find(
                f"uses {shown}, but step {info.id!r} has foreach, so its output is a list (one "
                f"output per item): loop over it, or index it ({_show('steps', path[:2])}[0])",
                line,
            )
        elif info.schema is None:
            self.find(
                f"uses {shown}, but step {info.id!r} has no output schema, so its output is "
                f"text; give it output: with a property {key!r}",
                line,
            )
        else:
            properties = info.schema.get("properties")
            if isinstance(properties, Mapping) and key not in properties:
                options = {p: repr(p) for p in properties}
                self.find(
                    f"uses {shown}, but the output schema of step {info.id!r} has no property "
                    f"{key!r}{_suggest(key, options)}",
                    line,
                )


@dataclass(frozen=True, slots=True)
class _Parsed:
    tree: nodes.Template
    free: set[str]  # the names the template does not define itself
    failure: Finding | None = None  # why jinja's compiler refused it, past parsing


def _parse(text: str, what: str) -> _Parsed | Finding:
    """The syntax tree and its undefined names, or why the template is invalid.

    Finding the undefined names runs jinja's code generator, which also refuses unknown filters
    and tests, as compiling the template would (without the cost of compiling it).
    """
    try:
        tree = PROMPT_ENV.parse(text)
    except TemplateSyntaxError as exc:
        return Finding(f"{what} is not a valid template: {exc.message}", exc.lineno)
    except RecursionError:
        return Finding(f"{what} nests too deeply to be a template; simplify it")
    try:
        return _Parsed(tree, set(meta.find_undeclared_variables(tree)))
    except TemplateSyntaxError as exc:
        return Finding(f"{what} is not a valid template: {exc.message}", exc.lineno)
    except TemplateError as exc:
        # The code generator folds constant parts, and one failed ({{ ''.__x }}): take every
        # name as undefined, so the walk can say why.
        names = {name.name for name in tree.find_all(nodes.Name) if name.ctx == "load"}
        return _Parsed(tree, names, Finding(f"{what} cannot be rendered: {exc}"))
    except RecursionError:
        return Finding(f"{what} nests too deeply to be a template; simplify it")


def _walk(tree: nodes.Node, free: set[str], scope: Scope, what: str) -> TemplateReport:
    walker = _Walker(scope, what, free)
    try:
        walker.visit(tree)
    except RecursionError:
        walker.find("nests too deeply to be checked; simplify it", 1)
    return walker.report


def check_template(text: str, scope: Scope, *, what: str) -> TemplateReport:
    """Check a prompt or goal template.

    Args:
        text: the template.
        scope: what it may name.
        what: how findings name it ("prompt", "goal").
    """
    if "{" not in text:
        return TemplateReport()
    parsed = _parse(text, what)
    if isinstance(parsed, Finding):
        return TemplateReport([parsed])
    report = _walk(parsed.tree, parsed.free, scope, what)
    if parsed.failure is not None and not report.findings:
        report.findings.append(parsed.failure)
    return report


def _single_expression(tree: nodes.Template) -> nodes.Expr | None:
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts = [
        part
        for part in tree.body[0].nodes
        if not (isinstance(part, nodes.TemplateData) and not part.data.strip())
    ]
    if len(parts) != 1 or isinstance(parts[0], nodes.TemplateData):
        return None
    return parts[0]


def check_expression(
    text: str, scope: Scope, *, what: str, example: str, wants_list: bool = False
) -> TemplateReport:
    """Check a `when` or `foreach` value: one jinja2 expression in `{{ }}`.

    Args:
        text: the value.
        scope: what it may name (`item` and `loop` never).
        what: how findings name it ("when", "foreach").
        example: a correct value, quoted in the finding when the form is wrong.
        wants_list: the value must be a list (foreach): an input or step output known not to be
            one is a finding.
    """
    parsed = _parse(text, what)
    if isinstance(parsed, Finding):
        return TemplateReport([parsed])
    expression = _single_expression(parsed.tree)
    if expression is None:
        return TemplateReport(
            [Finding(f"{what} must be one jinja2 expression in {{{{ }}}}, e.g. {example}")]
        )
    report = _walk(expression, parsed.free, scope, what)
    if parsed.failure is not None and not report.findings:
        report.findings.append(parsed.failure)
    if wants_list and not report.findings:
        problem = _not_a_list(expression, scope)
        if problem:
            report.findings.append(Finding(f"{what} needs a list, but {problem}", 1))
    return report


def _not_a_list(expression: nodes.Expr, scope: Scope) -> str | None:
    """Why `expression` is known not to give a list, or None when it may."""
    base, path, _ = _chain(expression)
    if not isinstance(base, nodes.Name):
        return None
    if base.name == "inputs" and len(path) == 1 and isinstance(path[0], str):
        kind = (scope.inputs or {}).get(path[0])
        return f"input {path[0]!r} is of type {kind}" if kind not in (None, "array") else None
    if base.name != "steps" or len(path) < 2 or not isinstance(path[0], str):
        return None
    info = scope.steps.get(path[0])
    if info is None or info.foreach:
        return None
    shown = _show("steps", path)
    if info.kind == "plan" or info.schema is None:
        return f"{shown} is text"
    if len(path) == 2:
        return f"{shown} is an object; name its list property, {shown}.<property>"
    properties = info.schema.get("properties")
    prop = properties.get(path[2]) if isinstance(properties, Mapping) else None
    kind = prop.get("type") if isinstance(prop, Mapping) and len(path) == 3 else None
    if isinstance(kind, str) and kind != "array":
        return f"{shown} is of type {kind} in the output schema of step {info.id!r}"
    return None
