"""Values that validate against a JSON Schema, for simulated structured answers.

`generate(schema, rng, topic=..., sentence=...)` returns a JSON-compatible value that validates
against `schema`. `SimulatedModel` uses it for requests with an `output_schema`; it lives here so
that `simulate.py` keeps to the models themselves.

What it understands: objects (`properties`, `required`, `additionalProperties`, `propertyNames`,
`min/maxProperties`), arrays (`items`, `prefixItems`, draft-4 tuples, `min/maxItems`,
`uniqueItems`), strings (`format`, `pattern`, `min/maxLength`), numbers and integers (inclusive
and exclusive bounds in drafts 4 and 6+, `multipleOf`), `const`, `enum`, local `$ref`s, `allOf`
(merged into one schema), and `anyOf`/`oneOf` (a branch is picked and the value checked against
it with a small validator that knows the same keywords).

Deterministic: all randomness comes from the `rng` passed in, drawn in a fixed order, so a
seeded generator gives the same value every time. Booleans are always true (the happy path:
a simulated judge passes, a goal check finds the goal met). Recursive schemas end: below depth
5 optional parts are left out, and at depth 40 a schema that requires itself forever gets null.
A `pattern` too complex for the small regex generator here gets a fixed string that matches it
when one of a few does.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
import uuid
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["generate"]


def generate(
    schema: Mapping[str, Any],
    rng: random.Random,
    *,
    topic: str,
    sentence: Callable[[random.Random], str],
) -> Any:
    """A JSON-compatible value that validates against `schema`.

    Args:
        schema: a JSON Schema; its local `$ref`s resolve against it.
        rng: the only source of randomness, so a seeded generator gives a repeatable value.
        topic: quoted in the first free-text string, so answers to different prompts differ.
        sentence: filler text for free-text strings, drawn from `rng`.

    Returns:
        A dict, list, str, int, float, bool or None, ready for `json.dumps`.
    """
    return _SchemaFaker(schema, rng, topic, sentence).value(schema)


_MAX_DEPTH = 5  # below this, optional parts are left out, so recursive schemas end
_GIVE_UP_DEPTH = 40  # a schema that requires itself forever gets null here
_MERGE_MAX = frozenset({"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"})
_MERGE_MIN = frozenset({"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"})
_SAFE_STRINGS = ("simulated", "a", "A", "0", "x_1", "example")
_ALPHABET = string.ascii_lowercase + string.ascii_uppercase + string.digits + "_-. @:/"


def _date(rng: random.Random) -> str:
    return f"{rng.randint(2020, 2026):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _time(rng: random.Random) -> str:
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"


_FORMATS: dict[str, Callable[[random.Random, int], str]] = {
    "date": lambda rng, n: _date(rng),
    "date-time": lambda rng, n: f"{_date(rng)}T{_time(rng)}Z",
    "time": lambda rng, n: _time(rng),
    "duration": lambda rng, n: f"P{rng.randint(1, 30)}D",
    "email": lambda rng, n: f"user{n}@example.com",
    "idn-email": lambda rng, n: f"user{n}@example.com",
    "uri": lambda rng, n: f"https://example.com/simulated/{n}",
    "url": lambda rng, n: f"https://example.com/simulated/{n}",
    "iri": lambda rng, n: f"https://example.com/simulated/{n}",
    "uri-reference": lambda rng, n: f"/simulated/{n}",
    "hostname": lambda rng, n: f"host{n}.example.com",
    "ipv4": lambda rng, n: f"192.0.2.{n % 254 + 1}",
    "ipv6": lambda rng, n: f"2001:db8::{n:x}",
    "uuid": lambda rng, n: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    "path": lambda rng, n: f"data/simulated_{n}.txt",
    "regex": lambda rng, n: "^[a-z]+$",
    "byte": lambda rng, n: "c2ltdWxhdGVk",
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _limits(schema: Mapping[str, Any]) -> tuple[float | None, bool, float | None, bool]:
    """(low, low is exclusive, high, high is exclusive), for drafts 4 and 6+ alike."""
    bounds: list[tuple[float | None, bool]] = []
    for inclusive, exclusive, better in (
        ("minimum", "exclusiveMinimum", max),
        ("maximum", "exclusiveMaximum", min),
    ):
        bound, strict = _number(schema.get(inclusive)), False
        flag = schema.get(exclusive)
        if flag is True:  # draft 4: a flag on the inclusive bound
            strict = bound is not None
        elif (value := _number(flag)) is not None and (
            bound is None or better(value, bound) == value
        ):
            bound, strict = value, True
        bounds.append((bound, strict))
    return bounds[0][0], bounds[0][1], bounds[1][0], bounds[1][1]


def _some(ks: range, rng: random.Random) -> list[int]:
    """Up to 100 of `ks`, starting at a random one (a range may be huge)."""
    start = rng.randrange(len(ks)) if len(ks) else 0
    return [*ks[start : start + 50], *ks[:50]]


def _multiple_ok(value: float, step: float) -> bool:
    quotient = value / step
    return abs(quotient - round(quotient)) < 1e-9


class _RegexText:
    """A string matching a simple regular expression (classes, groups, alternation, repeats).

    Anything else (lookarounds, back-references) raises ValueError: the caller falls back.
    """

    def __init__(self, pattern: str, rng: random.Random) -> None:
        self.pattern, self.at, self.rng = pattern, 0, rng

    def text(self) -> str:
        result = self._alternation()
        if self.at != len(self.pattern):
            raise ValueError("unbalanced parenthesis")
        return result

    def _alternation(self) -> str:
        options = [self._sequence()]
        while self.pattern.startswith("|", self.at):
            self.at += 1
            options.append(self._sequence())
        return options[0]

    def _sequence(self) -> str:
        out: list[str] = []
        while self.at < len(self.pattern) and self.pattern[self.at] not in "|)":
            atom = self._atom()
            out.append(atom * self._repeats())
        return "".join(out)

    def _atom(self) -> str:
        p, char = self.pattern, self.pattern[self.at]
        self.at += 1
        if char in "^$":
            return ""
        if char == ".":
            return "a"
        if char == "(":
            return self._group()
        if char == "[":
            return self._char_class()
        if char == "\\":
            escaped = p[self.at : self.at + 1]
            self.at += 1
            if escaped.isdigit() or not escaped:
                raise ValueError("back-references are not supported")
            if escaped in "bBAzZ":
                return ""
            return self._pick("\\" + escaped) if escaped in "dDwWsS" else escaped
        if char in "*+?{":
            raise ValueError("nothing to repeat")
        return char

    def _group(self) -> str:
        p = self.pattern
        if p.startswith("?:", self.at):
            self.at += 2
        elif p.startswith("?", self.at):
            raise ValueError("group extensions are not supported")
        inner = self._alternation()
        if not p.startswith(")", self.at):
            raise ValueError("unbalanced parenthesis")
        self.at += 1
        return inner

    def _char_class(self) -> str:
        p = self.pattern
        end = self.at + (p[self.at : self.at + 1] == "^")
        end += p[end : end + 1] == "]"
        while end < len(p) and p[end] != "]":
            end += 2 if p[end] == "\\" else 1
        found = self._pick(p[self.at - 1 : end + 1])
        self.at = end + 1
        return found

    def _pick(self, char_class: str) -> str:
        matches = [c for c in _ALPHABET if re.fullmatch(char_class, c)]
        if not matches:
            raise ValueError(f"no simple character matches {char_class}")
        return self.rng.choice(matches[:8])

    def _repeats(self) -> int:
        p = self.pattern
        char = p[self.at : self.at + 1]
        count = 1
        if char in ("*", "+", "?"):
            self.at += 1
            count = {"*": 1, "+": self.rng.randint(1, 3), "?": 1}[char]
        elif char == "{" and (found := re.match(r"\{(\d+)(,(\d*))?\}", p[self.at :])):
            self.at += found.end()
            low = int(found.group(1))
            high = low if found.group(2) is None else int(found.group(3) or low + 2)
            count = self.rng.randint(low, max(low, high))
        if p.startswith("?", self.at) and char in ("*", "+", "?", "{"):
            self.at += 1  # a lazy quantifier matches the same strings
        return count


def _from_pattern(pattern: str, rng: random.Random) -> str:
    """A string matching `pattern` (search semantics, as JSON Schema), or a fixed safe one."""
    try:
        candidate = _RegexText(pattern, rng).text()
        if re.search(pattern, candidate):
            return candidate
        return next(s for s in _SAFE_STRINGS if re.search(pattern, s))
    except (ValueError, re.error, StopIteration):
        return _SAFE_STRINGS[0]


class _SchemaFaker:
    """Values that validate against a JSON Schema; `$ref`s resolve against `root`."""

    def __init__(
        self,
        root: Mapping[str, Any],
        rng: random.Random,
        topic: str,
        sentence: Callable[[random.Random], str],
    ) -> None:
        self.root, self.rng, self.topic, self.sentence = root, rng, topic, sentence
        self.strings = 0

    def value(self, schema: Any, depth: int = 0, name: str = "") -> Any:
        """A value valid for `schema`; `name` is the property it is for (words for strings)."""
        if depth > _GIVE_UP_DEPTH or schema is False:
            return None
        if not isinstance(schema, dict):
            return self.make_string({}, depth, name)
        schema = self.resolve(schema)
        if "allOf" in schema:
            return self.value(self.merge(schema), depth, name)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            declared = schema.get("type")
            options = [v for v in schema["enum"] if declared is None or _type_fits(v, declared)]
            return self.rng.choice(options or schema["enum"])
        for key in ("oneOf", "anyOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return self.choose(schema, key, depth, name)
        kind = self.kind(schema, depth)
        return _KINDS[kind if kind in _KINDS else "string"](self, schema, depth, name)

    # - schema plumbing -

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """`schema` with its `$ref` (local JSON pointers) replaced by the target, siblings kept."""
        for _ in range(32):
            ref = schema.get("$ref")
            if not isinstance(ref, str):
                break
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**self.pointer(ref), **rest}
        return schema

    def pointer(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#"):
            return {}  # a remote reference: anything goes
        node: Any = self.root
        for part in filter(None, ref[1:].split("/")):
            key = part.replace("~1", "/").replace("~0", "~")
            node = node.get(key) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else {}

    def merge(self, schema: dict[str, Any]) -> dict[str, Any]:
        """One schema equivalent to `schema` and its `allOf` parts (for the keywords used here)."""
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema.get("allOf", ()):
            part = self.resolve(part) if isinstance(part, dict) else {}
            if "allOf" in part:
                part = self.merge(part)
            for key, value in part.items():
                merged[key] = self._merged(key, merged, value)
        return merged

    @staticmethod
    def _merged(key: str, merged: Mapping[str, Any], value: Any) -> Any:
        if key not in merged:
            return value
        old = merged[key]
        if key == "properties" and isinstance(old, dict) and isinstance(value, dict):
            both = {**old, **value}
            for name in old.keys() & value.keys():
                both[name] = {"allOf": [old[name], value[name]]}
            return both
        if key == "required" and isinstance(old, list) and isinstance(value, list):
            return list(dict.fromkeys([*old, *value]))
        if _number(old) is not None and _number(value) is not None:
            if key in _MERGE_MAX:
                return max(old, value)
            if key in _MERGE_MIN:
                return min(old, value)
        return old

    def kind(self, schema: Mapping[str, Any], depth: int) -> str:
        declared = schema.get("type")
        if isinstance(declared, list):
            options = [t for t in declared if t != "null"]
            if not options or (depth >= _MAX_DEPTH and "null" in declared):
                return "null"
            return str(options[0])
        if isinstance(declared, str):
            return declared
        if {"properties", "required", "additionalProperties"} & schema.keys():
            return "object"
        if {"items", "prefixItems", "minItems", "maxItems"} & schema.keys():
            return "array"
        if {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} & schema.keys():
            return "number"
        return "string"

    def choose(self, schema: dict[str, Any], key: str, depth: int, name: str) -> Any:
        """The value of the first `anyOf`/`oneOf` branch that works (for `oneOf`: that no other
        branch also accepts); deep down, branches that end the recursion come first."""
        branches = [b for b in schema[key] if b is not False]
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        order = list(range(len(branches)))
        if depth >= _MAX_DEPTH:
            order.sort(key=lambda i: self._nesting(branches[i]))
        tries = [i for _ in range(3) for i in order]  # a random value may fit two branches
        first: Any = None
        for n, i in enumerate(tries):
            branch = branches[i]
            value = self.value({"allOf": [rest, branch]}, depth, name)
            if n == 0:
                first = value
            others = [b for j, b in enumerate(branches) if j != i]
            if self.fits(value, branch) and (
                key == "anyOf" or not any(self.fits(value, other) for other in others)
            ):
                return value
        return first

    def _nesting(self, branch: Any) -> int:
        resolved = self.resolve(branch) if isinstance(branch, dict) else {}
        kind = self.kind(resolved, 0) if resolved else "string"
        return {"null": 0, "object": 2, "array": 2}.get(kind, 1)

    # - generators, one per JSON type -

    def make_object(self, schema: dict[str, Any], depth: int, name: str) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        required = [k for k in schema.get("required", ()) if isinstance(k, str)]
        extra = schema.get("additionalProperties", True)
        extra_schema = extra if isinstance(extra, dict) else {}
        deep = depth >= _MAX_DEPTH
        out: dict[str, Any] = {}
        for key, sub in properties.items():
            if key in required or (not deep and self.rng.random() < 0.6):
                out[key] = self.value(sub, depth + 1, key)
        for key in required:
            if key not in out:
                out[key] = self.value(extra_schema, depth + 1, key)
        wanted = int(schema.get("minProperties", 0))
        if not properties and isinstance(extra, dict) and not deep:
            wanted = max(wanted, 2)  # a map: show a couple of entries
        for key, sub in properties.items():
            if len(out) >= wanted:
                break
            out.setdefault(key, self.value(sub, depth + 1, key))
        names = schema.get("propertyNames")
        for n in range(wanted * 4):
            if len(out) >= wanted or extra is False:
                break
            key = str(self.value(names, depth + 1, "key")) if names else f"key_{n + 1}"
            if key not in out:
                out[key] = self.value(extra_schema, depth + 1, key)
        most = schema.get("maxProperties")
        optional = [k for k in reversed(out) if k not in required]
        while isinstance(most, int) and len(out) > most and optional:
            del out[optional.pop(0)]
        return out

    def make_array(self, schema: dict[str, Any], depth: int, name: str) -> list[Any]:
        items, prefix = schema.get("items", True), schema.get("prefixItems") or []
        if isinstance(items, list):  # draft 4 tuples
            items, prefix = schema.get("additionalItems", True), items
        low, high = int(schema.get("minItems", 0)), schema.get("maxItems")
        if prefix:
            wanted = max(low, len(prefix) if items is False or "items" not in schema else 3)
        else:
            wanted = low if depth >= _MAX_DEPTH else max(low, 3)
        if items is False:
            wanted = min(wanted, len(prefix))
        if isinstance(high, int):
            wanted = min(wanted, high)
        element = name[:-1] if name.endswith("s") else name
        values: list[Any] = []
        seen: set[str] = set()
        for _ in range(wanted * 8):
            if len(values) >= wanted:
                break
            i = len(values)
            sub = prefix[i] if i < len(prefix) else items if isinstance(items, dict) else {}
            value = self.value(sub, depth + 1, element)
            if schema.get("uniqueItems"):
                key = json.dumps(value, sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
            values.append(value)
        return values

    def make_string(self, schema: dict[str, Any], depth: int, name: str) -> str:
        self.strings += 1
        form, pattern = schema.get("format"), schema.get("pattern")
        if isinstance(form, str) and form in _FORMATS:
            return _FORMATS[form](self.rng, self.strings)
        if isinstance(pattern, str):
            return _from_pattern(pattern, self.rng)
        label = name.replace("_", " ").strip() or "item"
        text = f"{label} {self.strings}: {self.sentence(self.rng).lower()}"
        if self.strings == 1:
            text += f' ("{self.topic}")'
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        while len(text) < low:
            text += " and more detail"
        return text[:high] if isinstance(high, int) else text

    def make_integer(self, schema: dict[str, Any], depth: int, name: str) -> int:
        low, low_strict, high, high_strict = _limits(schema)
        lo = None if low is None else math.floor(low) + 1 if low_strict else math.ceil(low)
        hi = None if high is None else math.ceil(high) - 1 if high_strict else math.floor(high)
        if lo is None:
            lo = 0 if hi is None or hi >= 0 else hi - 100
        if hi is None:
            hi = lo + 100
        step = _number(schema.get("multipleOf"))
        if step is not None and step > 0:
            ks = range(math.ceil(lo / step), math.floor(hi / step) + 1)
            for k in _some(ks, self.rng):
                if (k * step).is_integer():
                    return int(k * step)
        return self.rng.randint(lo, max(lo, hi))

    def make_number(self, schema: dict[str, Any], depth: int, name: str) -> float:
        low, low_strict, high, high_strict = _limits(schema)
        if low is None:
            low = 0.0 if high is None or high >= 0 else high - 100
        if high is None:
            high = low + 100

        def inside(value: float) -> bool:
            above = value > low if low_strict else value >= low
            return above and (value < high if high_strict else value <= high)

        step = _number(schema.get("multipleOf"))
        if step is not None and step > 0:
            ks = range(math.ceil(low / step), math.floor(high / step) + 1)
            for k in _some(ks, self.rng):
                value = round(k * step, 10)
                if inside(value) and _multiple_ok(value, step) and (value / step).is_integer():
                    return value
        value = round(self.rng.uniform(low, high), 2)
        return value if inside(value) else (low + high) / 2

    def make_boolean(self, schema: dict[str, Any], depth: int, name: str) -> bool:
        return True  # the happy path: a judge passes the answer, a goal check finds it met

    def make_null(self, schema: dict[str, Any], depth: int, name: str) -> None:
        return None

    # - a small validator, to tell which anyOf/oneOf branch a value fits -

    def fits(self, value: Any, schema: Any, depth: int = 0) -> bool:
        """Whether `value` validates against `schema` (the keywords generated here)."""
        if not isinstance(schema, dict) or depth > _GIVE_UP_DEPTH:
            return schema is not False
        schema = self.resolve(schema)
        if ("const" in schema and value != schema["const"]) or (
            "enum" in schema and value not in schema["enum"]
        ):
            return False
        if "type" in schema and not _type_fits(value, schema["type"]):
            return False
        if not all(self.fits(value, s, depth + 1) for s in schema.get("allOf", ())):
            return False
        if "anyOf" in schema and not any(self.fits(value, s, depth + 1) for s in schema["anyOf"]):
            return False
        one = schema.get("oneOf")
        if one is not None and sum(self.fits(value, s, depth + 1) for s in one) != 1:
            return False
        if isinstance(value, dict):
            return self._object_fits(value, schema, depth)
        if isinstance(value, list):
            return self._array_fits(value, schema, depth)
        return _scalar_fits(value, schema)

    def _object_fits(self, value: dict[str, Any], schema: dict[str, Any], depth: int) -> bool:
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties", True)
        if any(key not in value for key in schema.get("required", ())):
            return False
        return all(
            self.fits(item, properties.get(key, extra), depth + 1) for key, item in value.items()
        )

    def _array_fits(self, value: list[Any], schema: dict[str, Any], depth: int) -> bool:
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 1e18):
            return False
        prefix = schema.get("prefixItems") or []
        items = schema.get("items", True)
        return all(
            self.fits(item, prefix[i] if i < len(prefix) else items, depth + 1)
            for i, item in enumerate(value)
        )


_KINDS: dict[str, Callable[[_SchemaFaker, dict[str, Any], int, str], Any]] = {
    "object": _SchemaFaker.make_object,
    "array": _SchemaFaker.make_array,
    "string": _SchemaFaker.make_string,
    "integer": _SchemaFaker.make_integer,
    "number": _SchemaFaker.make_number,
    "boolean": _SchemaFaker.make_boolean,
    "null": _SchemaFaker.make_null,
}

_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (
        isinstance(v, int | float) and not isinstance(v, bool) and float(v).is_integer()
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _type_fits(value: Any, declared: Any) -> bool:
    names = declared if isinstance(declared, list) else [declared]
    return any(_TYPE_CHECKS.get(str(name), lambda v: True)(value) for name in names)


def _scalar_fits(value: Any, schema: Mapping[str, Any]) -> bool:
    if isinstance(value, str):
        pattern = schema.get("pattern")
        try:
            matches = not isinstance(pattern, str) or re.search(pattern, value) is not None
        except re.error:
            matches = True
        return (
            matches
            and len(value) >= schema.get("minLength", 0)
            and len(value) <= schema.get("maxLength", len(value))
        )
    number = _number(value)
    if number is None:
        return True
    low, low_strict, high, high_strict = _limits(schema)
    step = _number(schema.get("multipleOf"))
    return (
        (low is None or (number > low if low_strict else number >= low))
        and (high is None or (number < high if high_strict else number <= high))
        and (step is None or step <= 0 or _multiple_ok(number, step))
    )
