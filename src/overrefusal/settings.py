"""Typed config sections, TRL-style: one dataclass field per key, its help and bounds in the field's metadata.

A section's dataclass is the one home of its keys. :func:`setting` declares a key; :class:`Settings` checks
every declared bound when an instance is made and builds one from a config dict (``from_params``, unknown keys
refused); :func:`properties` writes the JSON-schema properties that config validation uses
(``overrefusal.config.load_schema``), so the schema and the dataclass cannot disagree.

Bounds on a list or tuple field apply to each of its items. Null is allowed where the annotation is Optional.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, field, fields, is_dataclass
from typing import Any, ClassVar, Self, get_args, get_origin

BOUNDS: dict[str, str] = {"minimum": ">=", "exclusive_minimum": ">", "maximum": "<=", "exclusive_maximum": "<"}
JSON_BOUNDS: dict[str, str] = {"minimum": "minimum", "exclusive_minimum": "exclusiveMinimum",
                               "maximum": "maximum", "exclusive_maximum": "exclusiveMaximum"}
JSON_TYPES: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string"}


def setting(help: str, default: Any = MISSING, *,  # noqa: A002 - the metadata key TRL's parser reads
            minimum: float | None = None, exclusive_minimum: float | None = None, maximum: float | None = None,
            exclusive_maximum: float | None = None, choices: tuple[Any, ...] | None = None,
            min_length: int | None = None, schema: dict[str, Any] | None = None) -> Any:
    """A dataclass field whose metadata carries its help and bounds. ``schema`` replaces the JSON schema the
    annotation would give, for what an annotation cannot say (one fixed string or a list); it is checked
    with jsonschema."""
    meta = {"help": help, "minimum": minimum, "exclusive_minimum": exclusive_minimum, "maximum": maximum,
            "exclusive_maximum": exclusive_maximum, "choices": choices, "min_length": min_length, "schema": schema}
    return field(default=default, metadata={k: v for k, v in meta.items() if v is not None})


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _split(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None is allowed)."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(get_args(annotation))
    return annotation, False


def _json_type(annotation: Any) -> dict[str, Any]:
    if annotation in JSON_TYPES:
        return {"type": JSON_TYPES[annotation]}
    if is_dataclass(annotation):
        return {"type": "object", "additionalProperties": False, "required": [f.name for f in fields(annotation)],
                "properties": properties(annotation)}
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (list, tuple):
        fixed = origin is tuple and Ellipsis not in args
        out = {"type": "array", "items": _json_type(args[0])}
        return {**out, "minItems": len(args), "maxItems": len(args)} if fixed else out
    raise TypeError(f"no JSON-schema type for annotation {annotation!r}; give setting(schema=...)")


def _property(f: Field, annotation: Any) -> dict[str, Any]:
    meta = f.metadata
    if "schema" in meta:
        return {**meta["schema"], "description": meta["help"]}
    inner, nullable = _split(annotation)
    prop = _json_type(inner)
    target = prop["items"] if prop["type"] == "array" else prop  # bounds on a list bind its items
    target.update({JSON_BOUNDS[k]: meta[k] for k in JSON_BOUNDS if k in meta})
    if "choices" in meta:
        target["enum"] = list(meta["choices"])
    if "min_length" in meta:
        prop["minItems" if prop["type"] == "array" else "minLength"] = meta["min_length"]
    if nullable:
        prop["type"] = [prop["type"], "null"]
        if "enum" in prop:
            prop["enum"].append(None)
    return {**prop, "description": meta["help"]}


def properties(cls: type) -> dict[str, dict[str, Any]]:
    """The JSON-schema ``properties`` of a settings dataclass: type, bounds, enum and description per field."""
    hints = _hints(cls)
    return {f.name: _property(f, hints[f.name]) for f in fields(cls)}


def _is(value: Any, annotation: Any) -> bool:
    if annotation is bool:
        return isinstance(value, bool)
    if annotation in (int, float):  # YAML writes 64 for a float setting
        return isinstance(value, int if annotation is int else (int, float)) and not isinstance(value, bool)
    if annotation is str or is_dataclass(annotation):
        return isinstance(value, annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        if origin is tuple and Ellipsis not in args and len(value) != len(args):
            return False
        return all(_is(v, args[0]) for v in value)
    return False


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) in (list, tuple):
        args = get_args(annotation)
        n = f"{len(args)} " if get_origin(annotation) is tuple and Ellipsis not in args else ""
        return f"a list of {n}{JSON_TYPES.get(args[0], 'value')}s"
    name = JSON_TYPES.get(annotation, getattr(annotation, "__name__", str(annotation)))
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _bound_problem(value: Any, meta: Mapping[str, Any]) -> str | None:
    ok = {"minimum": lambda b: value >= b, "exclusive_minimum": lambda b: value > b,
          "maximum": lambda b: value <= b, "exclusive_maximum": lambda b: value < b}
    if any(not ok[k](meta[k]) for k in BOUNDS if k in meta):
        allowed = " and ".join(f"{BOUNDS[k]} {meta[k]}" for k in BOUNDS if k in meta)
        return f"{value!r} is out of range (allowed {allowed})"
    if "choices" in meta and value not in meta["choices"]:
        return f"{value!r} is not allowed; valid values: {', '.join(map(str, meta['choices']))}"
    return None


def problems(obj: Any) -> list[str]:
    """What is wrong with each field of a settings dataclass instance, as ``section.key: ...``; a nested
    settings field given as a dict is built (and checked) in place."""
    out = []
    hints = _hints(type(obj))
    for f in fields(obj):
        where, value, meta = f"{obj.SECTION}.{f.name}", getattr(obj, f.name), f.metadata
        inner, nullable = _split(hints[f.name])
        if "schema" in meta:
            from jsonschema import Draft202012Validator

            errs = [e.message for e in Draft202012Validator(meta["schema"]).iter_errors(value)]
            out += [f"{where}: {value!r} does not match {meta['schema']} ({'; '.join(errs)})"] if errs else []
            continue
        if value is None:
            out += [] if nullable else [f"{where}: null is not allowed"]
            continue
        if is_dataclass(inner) and isinstance(value, Mapping):
            try:
                object.__setattr__(obj, f.name, inner.from_params(value))
            except ValueError as exc:
                out.append(str(exc))
            continue
        if not _is(value, inner):
            out.append(f"{where}: {value!r} is not {_type_name(inner)}")
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        out += [f"{where}: {p}" for p in filter(None, (_bound_problem(v, meta) for v in items))]
        if "min_length" in meta and len(value) < meta["min_length"]:
            out.append(f"{where}: {value!r} is too short (at least {meta['min_length']})")
    return out


class Settings:
    """Base of a settings dataclass: ``SECTION`` names its config section, ``CONSUMED_ELSEWHERE`` the keys the
    section holds that are not settings of this stage (read by the workflow instead) and ``from_params`` skips."""

    SECTION: ClassVar[str]
    CONSUMED_ELSEWHERE: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        bad = problems(self)
        if bad:
            raise ValueError("; ".join(bad))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        """An instance from a config dict; an unknown key is an error, not a silently ignored setting."""
        names = [f.name for f in fields(cls)]
        allowed = ", ".join(sorted([*names, *cls.CONSUMED_ELSEWHERE]))
        unknown = sorted(set(params) - set(names) - cls.CONSUMED_ELSEWHERE)
        if unknown:
            raise ValueError(f"{cls.SECTION}: unknown key(s) {', '.join(unknown)}; allowed: {allowed}")
        missing = [f.name for f in fields(cls)
                   if f.name not in params and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ValueError(f"{cls.SECTION}: missing key(s) {', '.join(missing)}")
        return cls(**{k: v for k, v in params.items() if k in names})
