"""Step output schemas: the JSON Schema a step's `output:` may be, and the pydantic model for it.

A step with `output:` answers with a JSON object that validates against the schema (structured
output). The schema must be a valid JSON Schema (checked against its metaschema with
`jsonschema`) with `type: object` at the top, and use only the keywords an answer's model is
built from:

    type (one or a list), properties, required, additionalProperties (true/false), items, enum,
    description, title, default, examples, format, minLength, maxLength, pattern, minimum,
    maximum, exclusiveMinimum, exclusiveMaximum, minItems, maxItems

`output_model(schema)` builds the pydantic model an `Agent` takes as `output_type`; every schema
`schema_problems` accepts builds.
"""

from __future__ import annotations

import keyword
import re
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeAlias

import pydantic
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SUPPORTED_KEYWORDS", "output_model", "schema_problems"]

SUPPORTED_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "description",
        "title",
        "default",
        "examples",
        "format",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
    }
)
_CONSTRAINTS = {
    "minLength": "min_length",
    "maxLength": "max_length",
    "minItems": "min_length",
    "maxItems": "max_length",
    "pattern": "pattern",
    "minimum": "ge",
    "maximum": "le",
    "exclusiveMinimum": "gt",
    "exclusiveMaximum": "lt",
}
_SCALARS: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool}

Loc: TypeAlias = tuple[str | int, ...]


def schema_problems(schema: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Every reason `schema` cannot be a step's output schema, each with its path in the schema.

    Args:
        schema: the value of a step's `output:`.

    Returns:
        (path inside the schema, message) pairs; empty when the schema is usable.
    """
    import jsonschema

    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    invalid = [
        (tuple(error.absolute_path), f"output is not a valid JSON Schema: {error.message}")
        for error in validator(validator.META_SCHEMA).iter_errors(schema)
    ]
    if invalid:
        return invalid
    problems: list[tuple[Loc, str]] = []
    if schema.get("type") != "object":
        problems.append(
            (
                ("type",) if "type" in schema else (),
                "output must be a JSON Schema with type: object at the top (the answer is a JSON "
                "object); put a list or a value in a property",
            )
        )
    _check_subset(schema, (), problems)
    if not problems:
        try:
            output_model(schema).model_json_schema()
        except (
            pydantic.PydanticUserError,
            pydantic_core.SchemaError,
            TypeError,
            ValueError,
            re.error,
        ) as exc:
            reason = str(exc).strip().splitlines()[-1].strip()
            problems.append(((), f"output schema cannot be turned into a model: {reason}"))
    return problems


def _check_subset(schema: Mapping[str, Any], loc: Loc, problems: list[tuple[Loc, str]]) -> None:
    problems.extend(
        (
            (*loc, key),
            f"output schema keyword {key!r} is not supported; use "
            f"{', '.join(sorted(SUPPORTED_KEYWORDS))}",
        )
        for key in schema
        if key not in SUPPORTED_KEYWORDS and not (key == "$schema" and not loc)
    )
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for name, sub in properties.items():
            if isinstance(sub, Mapping):
                _check_subset(sub, (*loc, "properties", name), problems)
            elif sub is False:
                problems.append(
                    (
                        (*loc, "properties", name),
                        f"property {name!r} has the schema false, which "
                        "no value matches; remove the property",
                    )
                )
        problems.extend(
            (
                (*loc, "required"),
                f"output schema requires {name!r}, which is not in its properties; add it to "
                "properties or drop it from required",
            )
            for name in schema.get("required") or ()
            if name not in properties
        )
    items = schema.get("items")
    if isinstance(items, Mapping):
        _check_subset(items, (*loc, "items"), problems)
    elif items is False or (items is not None and not isinstance(items, bool)):
        problems.append(((*loc, "items"), "output schema items must be one schema (a mapping)"))
    _check_values(schema, loc, problems)


def _check_values(schema: Mapping[str, Any], loc: Loc, problems: list[tuple[Loc, str]]) -> None:
    if isinstance(schema.get("additionalProperties"), Mapping):
        problems.append(
            ((*loc, "additionalProperties"), "additionalProperties must be true or false here")
        )
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(
                ((*loc, "pattern"), f"pattern is not a valid regular expression: {exc}")
            )
    enum = schema.get("enum")
    if isinstance(enum, list) and any(isinstance(value, dict | list) for value in enum):
        problems.append(
            ((*loc, "enum"), "enum values must be text, numbers, booleans or null here")
        )


def _identifier(text: str) -> str:
    cleaned = re.sub(r"\W", "_", text)
    return cleaned if cleaned[:1].isalpha() else f"M{cleaned}"


def _plain_field_name(name: str) -> bool:
    return (
        name.isidentifier()
        and not keyword.iskeyword(name)
        and not name.startswith(("_", "model_"))
        and not hasattr(BaseModel, name)
    )


def _annotation(schema: Mapping[str, Any] | bool, name: str) -> Any:
    """The type annotation, with its constraints, for one (sub)schema (`true`: any value)."""
    if not isinstance(schema, Mapping):
        return Any
    base: Any
    if isinstance(schema.get("enum"), list):
        base = Literal.__getitem__(tuple(schema["enum"]))
    else:
        kinds = schema.get("type")
        options = [kinds] if isinstance(kinds, str) else list(kinds or [])
        types = [_one_type(kind, schema, name) for kind in options]
        base = typing.Union.__getitem__(tuple(types)) if len(types) > 1 else (types or [Any])[0]
    constraints = {_CONSTRAINTS[key]: value for key, value in schema.items() if key in _CONSTRAINTS}
    description = schema.get("description")
    if constraints or isinstance(description, str):
        return Annotated[base, Field(description=description, **constraints)]
    return base


def _one_type(kind: str, schema: Mapping[str, Any], name: str) -> Any:
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "null":
        return type(None)
    if kind == "array":
        items = schema.get("items")
        item = _annotation(items, f"{name}Item") if isinstance(items, Mapping) else Any
        return list.__class_getitem__(item)
    if isinstance(schema.get("properties"), Mapping):
        return output_model(schema, name)
    return dict[str, Any]


def output_model(schema: Mapping[str, Any], name: str = "Output") -> type[BaseModel]:
    """The pydantic model of an object schema (accepted by `schema_problems`).

    Properties keep their names; one that is not a usable Python name (`"first-name"`, `"json"`)
    becomes an aliased field, so the model still reads and writes the schema's names. A property
    not in `required` is optional (None, or the schema's `default`).

    Args:
        schema: a JSON Schema with `type: object`.
        name: the model's class name.
    """
    properties: Mapping[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    fields: dict[str, Any] = {}
    for n, (prop, sub) in enumerate(properties.items()):
        annotation = _annotation(sub, f"{_identifier(name)}_{_identifier(prop)}")
        alias = None if _plain_field_name(prop) else prop
        if prop in required:
            default: Any = ...
        else:
            annotation = annotation | None
            default = sub.get("default") if isinstance(sub, Mapping) else None
        fields[f"field_{n}" if alias else prop] = (annotation, Field(default, alias=alias))
    extra: Literal["forbid", "allow"] = (
        "forbid" if schema.get("additionalProperties") is False else "allow"
    )
    model: type[BaseModel] = pydantic.create_model(
        _identifier(name),
        # JSON Schema patterns are closer to Python regexes than to Rust's (look-arounds).
        __config__=ConfigDict(extra=extra, populate_by_name=True, regex_engine="python-re"),
        __doc__=schema.get("description") if isinstance(schema.get("description"), str) else None,
        **fields,
    )
    return model
