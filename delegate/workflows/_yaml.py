"""Reading a workflow file's YAML safely, remembering where every value was written.

PyYAML's parser (libyaml's, when PyYAML has it) turns the text into events; this module composes
them into a tree of nodes, without recursion, and builds plain Python values from the nodes
itself. No PyYAML constructor ever runs, so no tag can create an object or execute anything:

- only the core tags: strings, integers, floats, booleans, null, lists and mappings (a timestamp
  is kept as the text written). Any other tag, `!!python/object/apply:...` included, is refused;
- mapping keys are the text written, so `on:` or `no:` stay strings;
- a key written twice is refused, naming both lines; `<<` merge keys work;
- aliases may expand to at most `MAX_ALIAS_NODES` nodes in all, so a "billion laughs" file is
  refused after a few thousand steps, and a recursive alias is refused;
- nesting is bounded by `MAX_DEPTH`, while composing and while expanding aliases (no
  `RecursionError`).

Every value's path (`("steps", 0, "prompt")`) maps to where its key and its value start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_BYTES",
    "MAX_DEPTH",
    "Document",
    "Mark",
    "Where",
    "YamlError",
    "decode",
    "parse",
]

MAX_BYTES = 1 << 20  # 1 MiB: far beyond any hand-written workflow
MAX_ALIAS_NODES = 10_000
MAX_DEPTH = 64

Loc: TypeAlias = tuple[str | int, ...]

_CORE = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT = f"{_CORE}str", f"{_CORE}int", f"{_CORE}float"
_BOOL, _NULL, _TIMESTAMP = f"{_CORE}bool", f"{_CORE}null", f"{_CORE}timestamp"
_SEQ, _MAP, _MERGE = f"{_CORE}seq", f"{_CORE}map", f"{_CORE}merge"
_SCALAR_TAGS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP})


@dataclass(frozen=True, slots=True)
class Mark:
    """A position in the file: 1-based line and column, as editors show them."""

    line: int
    col: int


@dataclass(frozen=True, slots=True)
class Where:
    """Where a value was written.

    Attributes:
        value: where the value starts.
        key: where its key starts (None for list items and the document itself).
        literal: the value is a `|` block scalar, whose text starts on the line after `value`,
            one line of text per line of the file.
    """

    value: Mark
    key: Mark | None = None
    literal: bool = False


class YamlError(Exception):
    """A problem that stops reading the file (syntax, encoding, an alias bomb)."""

    def __init__(self, message: str, mark: Mark) -> None:
        super().__init__(message)
        self.message, self.mark = message, mark


@dataclass(slots=True)
class Document:
    """A parsed file: its data (None when empty), the index of paths, and value problems.

    `problems` are the refused tags and repeated keys, all of them; the data around them is
    built anyway (a refused value is None, a repeated key keeps its first value).
    """

    data: Any
    index: dict[Loc, Where] = field(default_factory=dict)
    problems: list[tuple[Mark, str]] = field(default_factory=list)


def _mark(node: Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _position(text: str | bytes, offset: int) -> Mark:
    newline: Any = b"\n" if isinstance(text, bytes) else "\n"
    line_start = text.rfind(newline, 0, offset) + 1
    before = text[line_start:offset]
    width = len(before.decode("utf-8", "replace")) if isinstance(before, bytes) else len(before)
    return Mark(text.count(newline, 0, offset) + 1, width + 1)


def decode(data: bytes) -> str:
    """The text of a workflow file: UTF-8 (a leading byte order mark is dropped).

    Raises:
        YamlError: UTF-16 text, binary data (a NUL byte), or bytes that are not UTF-8.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise YamlError("the file is UTF-16 text; save it as UTF-8", Mark(1, 1))
    nul = data.find(b"\x00")
    if nul >= 0:
        raise YamlError(
            "binary data (a NUL byte): a workflow file is YAML text in UTF-8", _position(data, nul)
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded; save the file as "
            "UTF-8",
            _position(data, exc.start),
        ) from None
    return text.removeprefix("\ufeff")


# libyaml's parser when PyYAML was built with it (10x faster), else PyYAML's own. Only its events
# are used: nodes are composed below, iteratively, so deep nesting cannot exhaust the stack.
_Parser: Any = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


def _at(mark: Any) -> Mark:
    return Mark(mark.line + 1, mark.column + 1)


class _Composer:
    """Composes parser events into one document's node tree, like PyYAML's `Composer`."""

    def __init__(self, text: str, parser: Any) -> None:
        self._parser = parser(text)
        self._resolver: Any = yaml.resolver.Resolver()  # untyped in the stubs
        self._anchors: dict[str, Node] = {}

    def compose(self) -> Node | None:
        try:
            parser = self._parser
            parser.get_event()  # stream start
            if parser.check_event(yaml.StreamEndEvent):
                return None
            parser.get_event()  # document start
            root = self._document()
            parser.get_event()  # document end
            if not parser.check_event(yaml.StreamEndEvent):
                raise YamlError(
                    "the file holds more than one YAML document; keep one workflow per file "
                    "(no second '---')",
                    _at(parser.peek_event().start_mark),
                )
            return root
        finally:
            self._parser.dispose()

    def _document(self) -> Node:
        parser = self._parser
        stack: list[Node] = []  # the open collections
        keys: list[Node | None] = []  # per open collection: a mapping's key awaiting its value
        while True:
            event = parser.get_event()
            if isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
                node = stack.pop()
                keys.pop()
                node.end_mark = event.end_mark
            else:
                node = self._node(event, len(stack))
                if isinstance(event, yaml.CollectionStartEvent):
                    stack.append(node)
                    keys.append(None)
                    continue
            if not stack:
                return node
            if isinstance(stack[-1], SequenceNode):
                stack[-1].value.append(node)
            elif keys[-1] is None:
                keys[-1] = node
            else:
                stack[-1].value.append((keys[-1], node))
                keys[-1] = None

    def _node(self, event: Any, depth: int) -> Node:
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in self._anchors:
                raise YamlError(
                    f"the alias *{event.anchor} has no anchor &{event.anchor} before it",
                    _at(event.start_mark),
                )
            return self._anchors[event.anchor]
        if depth >= MAX_DEPTH:
            raise YamlError(
                f"the data nests more than {MAX_DEPTH} levels deep; flatten it",
                _at(event.start_mark),
            )
        node: Node
        tag = event.tag
        start: Any = event.start_mark  # libyaml's marks have the fields of PyYAML's
        if isinstance(event, yaml.ScalarEvent):
            if tag is None or tag == "!":
                tag = self._resolver.resolve(ScalarNode, event.value, event.implicit)
            end: Any = event.end_mark
            node = ScalarNode(tag, event.value, start, end, event.style)
        else:
            kind = SequenceNode if isinstance(event, yaml.SequenceStartEvent) else MappingNode
            if tag is None or tag == "!":
                tag = self._resolver.resolve(kind, None, event.implicit)
            node = kind(tag, [], start, None, event.flow_style)
        if event.anchor is not None:
            self._anchors[event.anchor] = node
        return node


_HINTS = (
    ("\\t", "YAML indents with spaces, not tabs: replace the tabs with spaces"),
    ("tab character", "YAML indents with spaces, not tabs: replace the tabs with spaces"),
    ("expected <block end>", "check the indentation: keys of one mapping start in one column"),
    ("did not find expected", "check the indentation: keys of one mapping start in one column"),
    (
        "mapping values are not allowed",
        "check the indentation, or quote a value that contains ': '",
    ),
    ("could not find expected ':'", "check the indentation, or quote the value"),
)


def _syntax_error(exc: yaml.MarkedYAMLError, text: str) -> YamlError:
    mark = exc.problem_mark or exc.context_mark
    where = Mark(mark.line + 1, mark.column + 1) if mark is not None else Mark(1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    message = f"invalid YAML: {problem}"
    context_line = exc.context_mark.line + 1 if exc.context_mark is not None else where.line
    if exc.context and exc.problem and context_line != where.line:
        message += f" ({exc.context}, line {context_line})"
    hint = next((hint for needle, hint in _HINTS if needle in message), None)
    lines = text.splitlines()
    if hint is None and where.line <= len(lines) and "\t" in lines[where.line - 1]:
        hint = _HINTS[0][1]
    return YamlError(f"{message}; {hint}" if hint else message, where)


def _compose(text: str) -> Node | None:
    """The document's node tree, composed from libyaml's events, or PyYAML's own when libyaml
    refuses the file: the problem PyYAML's parser meets first is the one reported.

    libyaml has limits of its own, met in its scanner's look-ahead before any event reaches our
    checks: since 0.2.6 it refuses data nested 1,000 levels deep in its own words. PyYAML's parser
    has no such limit, so on a refused file it runs into `MAX_DEPTH` (or the same syntax error)
    and the file gets one error whichever parser PyYAML was built with. Only refused files pay
    for the second, slower parse.
    """
    try:
        return _Composer(text, _Parser).compose()
    except yaml.MarkedYAMLError as exc:
        if _Parser is yaml.SafeLoader:
            raise
        refused = exc
    _Composer(text, yaml.SafeLoader).compose()
    raise refused  # the parsers disagree: libyaml's is the only word on it


def parse(text: str) -> Document:
    """Parse one YAML document into plain values and an index of where each was written.

    Raises:
        YamlError: invalid YAML, a character YAML refuses, more than one document, an alias bomb,
            a recursive alias, or nesting deeper than `MAX_DEPTH` — the first one met.
    """
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, text) from None
    except yaml.reader.ReaderError as exc:
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise YamlError(
            f"the character U+{code:04X} is not allowed in a YAML file ({exc.reason}); remove it",
            _position(text, exc.position),
        ) from None
    if node is None:
        return Document(None)
    builder = _Builder()
    data = builder.build(node, (), None, 0, False)
    return Document(data, builder.index, builder.problems)


def _show_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


class _Builder:
    """Builds plain values from the node tree, counting alias expansions."""

    def __init__(self) -> None:
        self._constructor = yaml.constructor.SafeConstructor()
        self.index: dict[Loc, Where] = {}
        self.problems: list[tuple[Mark, str]] = []
        self._seen: set[int] = set()
        self._open: set[int] = set()
        self._expanded = 0
        self._alias_use = Mark(1, 1)  # where the alias being expanded is used

    def build(self, node: Node, loc: Loc, key: Mark | None, depth: int, aliased: bool) -> Any:
        if depth > MAX_DEPTH:
            raise YamlError(
                f"aliases nest the data more than {MAX_DEPTH} levels deep; flatten it", _mark(node)
            )
        if id(node) in self._open:
            raise YamlError(
                "a recursive alias: the alias stands for a value that contains the alias itself",
                _mark(node),
            )
        # A node met a second time is reached through an alias: count everything built from it.
        if not aliased and id(node) in self._seen:
            aliased = True
            self._alias_use = key or (self.index[loc[:-1]].value if loc else _mark(node))
        self._seen.add(id(node))
        if aliased:
            self._expanded += 1
            if self._expanded > MAX_ALIAS_NODES:
                raise YamlError(
                    f"aliases expand to more than {MAX_ALIAS_NODES:,} values (a 'billion laughs' "
                    "file?); write the data out instead of repeating aliases",
                    self._alias_use,
                )
        literal = isinstance(node, ScalarNode) and node.style == "|"
        self.index[loc] = Where(_mark(node), key, literal)
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode) and self._tag_ok(node, _SEQ):
                return [
                    self.build(item, (*loc, n), None, depth + 1, aliased)
                    for n, item in enumerate(node.value)
                ]
            if isinstance(node, MappingNode) and self._tag_ok(node, _MAP):
                return self._mapping(node, loc, depth, aliased)
            return None
        finally:
            self._open.discard(id(node))

    def _tag_ok(self, node: Node, expected: str) -> bool:
        if node.tag == expected:
            return True
        self.problems.append(
            (
                _mark(node),
                f"the tag {_show_tag(node.tag)} is not allowed: workflow files hold plain YAML "
                "(text, numbers, booleans, null, lists and mappings); remove the tag",
            )
        )
        return False

    def _scalar(self, node: ScalarNode) -> Any:
        tag = node.tag
        if tag not in _SCALAR_TAGS:
            self._tag_ok(node, _STR)
            return None
        if tag in (_STR, _TIMESTAMP):
            return node.value
        try:
            if tag == _INT:
                return self._constructor.construct_yaml_int(node)
            if tag == _FLOAT:
                return self._constructor.construct_yaml_float(node)
            if tag == _BOOL:
                return self._constructor.construct_yaml_bool(node)
        except (ValueError, KeyError, IndexError):
            self.problems.append(
                (_mark(node), f"{node.value!r} is not a valid {_show_tag(tag)}; fix the value")
            )
        return None

    def _key(self, node: Node) -> str | None:
        if isinstance(node, ScalarNode):
            if node.tag not in _SCALAR_TAGS:
                self._tag_ok(node, _STR)
                return None
            return str(node.value)
        what = "a mapping" if isinstance(node, MappingNode) else "a list"
        hint = (
            "; a template written without quotes reads as a mapping: quote it, "
            'prompt: "{{ inputs.topic }}"'
            if isinstance(node, MappingNode)
            else ""
        )
        self.problems.append((_mark(node), f"{what} cannot be a key{hint}"))
        return None

    def _mapping(self, node: MappingNode, loc: Loc, depth: int, aliased: bool) -> dict[str, Any]:
        # Merged keys first: explicit keys win, and overwrite the merged ones' index entries.
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged = {**self._merge(value_node, loc, depth, aliased), **merged}
        explicit: dict[str, Any] = {}
        first: dict[str, Mark] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self._key(key_node)
            if key is None:
                continue
            if key in first:
                self.problems.append(
                    (
                        _mark(key_node),
                        f"duplicate key {key!r}: it is also on line {first[key].line}; "
                        "keep one of them",
                    )
                )
                continue
            first[key] = _mark(key_node)
            explicit[key] = self.build(value_node, (*loc, key), _mark(key_node), depth + 1, aliased)
        return {**merged, **explicit}

    def _merge(self, node: Node, loc: Loc, depth: int, aliased: bool) -> dict[str, Any]:
        """The keys a `<<` merge brings in: earlier mappings of a list win over later ones."""
        sources = node.value if isinstance(node, SequenceNode) else [node]
        own = self.index[loc]
        result: dict[str, Any] = {}
        for source in sources:
            if not isinstance(source, MappingNode):
                self.problems.append(
                    (_mark(source), "'<<' merges a mapping or a list of mappings; fix its value")
                )
                continue
            # Built at this mapping's own path, so merged keys are indexed where they land.
            value = self.build(source, loc, None, depth + 1, aliased)
            for key, item in (value or {}).items():
                result.setdefault(key, item)
        self.index[loc] = own
        return result
