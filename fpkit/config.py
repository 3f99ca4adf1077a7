"""Typed configuration: one schema system for every TOML file and configuration dict in fpkit.

A configuration is described by a :class:`Schema` (a strict pydantic model): every key has a type, a
default and a description (the meaning, with units). :func:`parse` checks a plain dict against a schema and
raises one :class:`~fpkit.errors.ConfigError` listing every problem, one line each, by dotted key path::

    train.batch_size: expected an integer >= 1, got 8.7
    model.bias: expected true or false, got 'false'
    train.foo: unknown key; valid keys: optimizer, lr, ...

Types are strict: a number is never accepted from a string or a bool, a bool never from a string or a
number (a float key does accept an integer); non-finite numbers (nan, inf) are refused. Sections are nested
schemas; a section whose keys depend on its ``kind`` is a union of schemas tagged by ``kind``.

Schemas are registered by name (``register_schema``) so that ``fpkit config show NAME`` prints their
defaults as TOML and ``docs/config.md`` is generated from them (``python -m fpkit.config --docs``).
fpkit's own: ``problem`` (``fpkit solve``, in fpkit.problem) and ``ensemble`` (``fpkit train``, in
fpkit.ensemble; its sections ``ModelSchema``, ``DataSchema``, ``TrainSchema`` are importable from here).
"""

from __future__ import annotations

import importlib
import json
import sys
import tomllib
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, PydanticUndefined

from .errors import ConfigError

# modules that define fpkit's own schemas (imported when a schema is looked up by name)
_PROVIDERS = ("fpkit.problem", "fpkit.ensemble")
# names defined elsewhere but importable from here (PEP 562), resolved on first use to avoid import cycles
_ELSEWHERE = {
    "ModelSchema": "fpkit.ensemble",
    "TrainSchema": "fpkit.ensemble",
    "EnsembleSchema": "fpkit.ensemble",
    "DataSchema": "fpkit.data",
    "ProblemSchema": "fpkit.problem",
    "problem_from_config": "fpkit.problem",
    "expression": "fpkit.problem",
    "cli_solve": "fpkit.problem",
}

SCHEMAS: dict[str, type] = {}


class Schema(BaseModel):
    """Base class of every configuration schema: strict types, unknown keys refused, finite numbers only.

    Define keys as annotated fields with ``Field(default, description="meaning, with units")``; nested
    sections as fields whose type is another Schema (with ``default_factory``).
    """

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def register_schema(name: str, cls) -> None:
    """Make ``cls`` (a Schema) known by ``name`` to ``fpkit config show`` and the generated docs."""
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise ConfigError(f"`cls` for schema {name!r} must be a Schema subclass, got {cls!r}")
    if SCHEMAS.get(name, cls) is not cls:
        raise ConfigError(f"a different schema is already registered as {name!r}")
    SCHEMAS[name] = cls


def schemas() -> dict[str, type]:
    """All registered schemas by name (fpkit's own included), and the configuration of every installed
    experiment under the experiment's name (``fpkit.experiments``)."""
    from .experiments import experiment_schemas

    for module in _PROVIDERS:
        importlib.import_module(module)
    return dict(sorted({**SCHEMAS, **experiment_schemas()}.items()))


def invalid(key: str, message: str) -> PydanticCustomError:
    """An error for a schema's validator to raise: ``key`` (relative to the schema) breaks ``message``."""
    return PydanticCustomError("fpkit_invalid", "{message}", {"key": key, "message": message})


# --------------------------------------------------------------------------------------------- parsing
def parse(schema_cls, data: dict | None, where: str = ""):
    """Check ``data`` against ``schema_cls`` and return the schema instance (defaults filled in).

    ``schema_cls`` is a Schema subclass or a tagged union of them (e.g. ``DataSchema``); ``where`` is the
    key path of ``data`` inside a larger configuration (``"data"``), used in messages. numpy scalars and
    arrays are taken as the Python numbers and lists they hold. ``.model_dump()`` of the result is the
    plain nested dict of resolved values.

    Raises
    ------
    ConfigError
        One line per problem: ``key.path: expected ..., got ...``.
    """
    data = {} if data is None else plain(data)
    try:
        if isinstance(schema_cls, type) and issubclass(schema_cls, BaseModel):
            return schema_cls.model_validate(data)
        return _adapter(schema_cls).validate_python(data)
    except ValidationError as exc:
        raise ConfigError(_describe(schema_cls, data, exc, where)) from None


@lru_cache(maxsize=None)
def _adapter(tp) -> TypeAdapter:
    return TypeAdapter(tp, config=Schema.model_config)


def plain(value):
    """A deep copy of a configuration as plain Python data: tuples and numpy arrays become lists, numpy
    scalars the numbers they hold (common in Python callers; they are not different values), schema
    instances their dicts. Everything else is kept, for the schema to judge."""
    if isinstance(value, BaseModel):
        return plain(value.model_dump())
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def merge(base: dict, override: dict | None) -> dict:
    """A copy of ``base`` with ``override`` merged in, recursively for nested dicts (no key checks: the
    schema that parses the result does them). A table whose ``kind`` differs from the base table's replaces
    it: its keys belong to another kind (a mixture data set has no spectrum)."""
    out = plain(base)
    for key, value in (override or {}).items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and value.get("kind", old.get("kind")) == old.get("kind"):
            out[key] = merge(old, value)
        else:
            out[key] = plain(value)
    return out


def _unwrap(tp):
    """(type without Annotated, metadata list)."""
    meta: list = []
    while typing.get_origin(tp) is typing.Annotated:
        tp, *extra = typing.get_args(tp)
        meta.extend(extra)
    flat = []
    for m in meta:  # Field(ge=1) inside Annotated arrives as a FieldInfo holding the constraints
        flat.extend(m.metadata if isinstance(m, FieldInfo) else [m])
    return tp, flat


def _is_model(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _union_args(tp) -> tuple:
    return typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else ()


def tagged_members(tp) -> dict:
    """{kind: schema} of a union of schemas tagged by ``kind`` (empty if ``tp`` is not one)."""
    tp, _ = _unwrap(tp)
    out = {}
    for member in _union_args(tp):
        cls, meta = _unwrap(member)
        if _is_model(cls):
            tags = [m.tag for m in meta if hasattr(m, "tag")]
            tags = tags or list(typing.get_args(_unwrap(cls.model_fields["kind"].annotation)[0]))
            out.update({t: cls for t in tags})
    return out


def _resolve(schema, loc: tuple):
    """Follow an error location through the schema: (key path, field info or None, schema owning the last
    key, remaining location) — union tags are skipped, they are not keys."""
    path, info, owner, cur, i = [], None, None, schema, 0
    while i < len(loc):
        tp, _ = _unwrap(cur)
        members = tagged_members(tp)
        if members and loc[i] in members:
            cur = members[loc[i]]
            i += 1
            continue
        if _is_model(tp) and isinstance(loc[i], str):
            owner = tp
            path.append(loc[i])
            info = tp.model_fields.get(loc[i])
            i += 1
            if info is None:
                break
            cur = typing.Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
            continue
        break
    return path, info, owner, loc[i:]


def _lookup(data, path):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return PydanticUndefined
        data = data[key]
    return data


def show_value(value) -> str:
    """A value as written in TOML (strings quoted, true/false)."""
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value) if isinstance(value, bool) else repr(value)


def _describe(schema, data, exc: ValidationError, where: str) -> str:
    lines: dict[str, str] = {}
    for err in exc.errors():
        path, info, owner, _ = _resolve(schema, err["loc"])
        kind, ctx = err["type"], err.get("ctx", {})
        if kind == "fpkit_invalid" and ctx.get("key"):
            path = [*path, ctx["key"]]
        name = ".".join([where] * bool(where) + [str(p) for p in path]) or "configuration"
        if name in lines:
            continue
        got = _lookup(data, path)
        got = show_value(err["input"] if got is PydanticUndefined else got)
        if kind == "extra_forbidden":
            text = f"unknown key; valid keys: {', '.join(owner.model_fields)}"
        elif kind == "missing":
            text = f"required key is missing (expected {expectation(info)})"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            tags = ", ".join(map(repr, tagged_members(info.annotation if info else schema)))
            tag = _lookup(data, [*path, "kind"])
            name, got = f"{name}.kind", show_value(None if tag is PydanticUndefined else tag)
            text = f"expected one of {tags}, got {got}"
        elif kind == "fpkit_invalid":
            text = ctx["message"]
        elif kind == "value_error":
            text = f"{ctx['error']}, got {got}"
        elif kind == "finite_number":
            text = f"expected a finite number, got {got}"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            text = f"expected a table of keys, got {got}"
        else:
            text = f"expected {expectation(info)}, got {got}"
        lines[name] = f"{name}: {text}"
    return "\n".join(lines.values())


# ---------------------------------------------------------------------------------------- descriptions
_NOUNS = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans"),
          str: ("a string", "strings")}  # fmt: skip
_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def expectation(info_or_type, plural: bool = False) -> str:
    """What a key accepts, in words: ``an integer >= 1``, ``one of 'sgd', 'gd'``, ``a list of numbers``."""
    if isinstance(info_or_type, FieldInfo):
        tp = typing.Annotated[(info_or_type.annotation, *info_or_type.metadata)] if info_or_type.metadata \
            else info_or_type.annotation  # fmt: skip
    else:
        tp = info_or_type
    if tp is None:
        return "a valid value"
    tp, meta = _unwrap(tp)
    bounds = " and ".join(f"{op} {getattr(m, attr)}" for m in meta for attr, op in _BOUNDS
                          if getattr(m, attr, None) is not None)  # fmt: skip
    if members := tagged_members(tp):
        return f"a table with kind one of {', '.join(map(repr, members))}"
    if args := _union_args(tp):  # constraints on the whole union apply to each member
        parts = [expectation(typing.Annotated[(a, *meta)] if meta else a, plural)
                 for a in args if a is not type(None)]  # fmt: skip
        return " or ".join(parts)
    origin = typing.get_origin(tp)
    if origin is Literal:
        values = ", ".join(show_value(v) for v in typing.get_args(tp))
        if len(typing.get_args(tp)) == 1:
            return values
        return f"values among {values}" if plural else f"one of {values}"
    if origin is list:
        (item,) = typing.get_args(tp)
        length = [getattr(m, "min_length", None) for m in meta]
        at_least = next((n for n in length if n), None)
        text = f"a list of {expectation(item, plural=True)}"
        return text + (f" (at least {at_least})" if at_least else "")
    if _is_model(tp):
        return "tables" if plural else "a table"
    noun = _NOUNS.get(tp, (getattr(tp, "__name__", str(tp)),) * 2)[plural]
    return f"{noun} {bounds}" if bounds else noun


def fields(schema, prefix: str = ""):
    """Every key of a schema, recursively: (dotted path, FieldInfo, kind tag or None) — the keys of a
    tagged union appear once per kind."""
    for name, info in schema.model_fields.items():
        path = f"{prefix}{name}"
        tp, _ = _unwrap(info.annotation)
        if members := tagged_members(tp):
            for tag, cls in members.items():
                for sub, subinfo, _ in fields(cls, f"{path}."):
                    yield sub, subinfo, tag
        elif _is_model(tp):
            yield from fields(tp, f"{path}.")
        else:
            yield path, info, None


def defaults(schema_cls) -> dict:
    """The default configuration of a schema as a nested dict; a required key appears as None."""
    out = {}
    for name, info in schema_cls.model_fields.items():
        tp, _ = _unwrap(info.annotation)
        if info.is_required():
            out[name] = defaults(tp) if _is_model(tp) else None
        else:
            value = info.get_default(call_default_factory=True)
            out[name] = value.model_dump() if isinstance(value, BaseModel) else value
    return out


# ------------------------------------------------------------------------------------------------ TOML
def load_toml(path) -> dict:
    """Read a TOML file, with a ConfigError naming the file on any problem."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except OSError as exc:  # a folder, no permission, an I/O error
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror or exc}") from None


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def to_toml(config: dict, comments: dict | None = None, _section: str = "") -> str:
    """A nested dict as TOML: tables for nested dicts; keys whose value is None are written as comments
    (TOML has no null: leaving a key out means None). ``comments`` maps dotted keys to end-of-line notes."""
    comments = comments or {}
    lines, tables = [], []
    for key, value in config.items():
        path = f"{_section}{key}"
        if isinstance(value, dict) and value and all(not isinstance(k, int) for k in value):
            tables.append((path, value))
            continue
        note = f"  # {comments[path]}" if path in comments else ""
        lines.append(f"# {key} ={note}" if value is None else f"{key} = {_toml_value(value)}{note}")
    for path, value in tables:
        body = to_toml(value, comments, f"{path}.")
        lines.append(f"\n[{path}]\n{body}" if not body.startswith("\n") else f"\n[{path}]{body}")
    return "\n".join(lines).lstrip("\n") if not _section else "\n".join(lines)


def show(name: str) -> str:
    """The defaults of the schema registered as ``name``, as commented TOML."""
    known = schemas()
    if name not in known:
        raise ConfigError(f"unknown schema {name!r}; valid names: {', '.join(known)}")
    cls = known[name]
    config = defaults(cls)
    notes = {}  # keys without a value: say why (required, or what leaving them out means)
    for path, info, tag in fields(cls):
        keys = path.split(".")
        if tag in (None, _lookup(config, [*keys[:-1], "kind"])) and _lookup(config, keys) is None:
            notes[path] = f"required: {expectation(info)}" if info.is_required() else info.description
    body = to_toml(config, notes)
    return f"# fpkit {name} configuration: the defaults (docs/config.md explains every key)\n{body}\n"


# ------------------------------------------------------------------------------------------------ docs
def _default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(table)"
    return "unset" if value is None else f"`{_toml_value(value)}`"


def docs() -> str:
    """Markdown reference of every registered schema (the text of docs/config.md)."""
    out = ["# Configuration reference", "",
           "Generated from the schemas by `python -m fpkit.config --docs`; do not edit by hand. "
           "Print a schema's defaults as TOML with `fpkit config show NAME`.", "",
           "Types are strict: numbers are never read from strings or booleans, booleans never from strings "
           "or numbers (a number key accepts an integer); nan and inf are refused. An unknown key is an "
           "error. \"unset\" means the key is left out (TOML has no null) and the description says what "
           "that means.", ""]  # fmt: skip
    for name, cls in schemas().items():
        out += [f"## `{name}`", "", _summary(cls), ""]
        out += _tables(cls, "")
    return "\n".join(out).rstrip() + "\n"


def _summary(cls) -> str:
    """The first paragraph of a schema's docstring on one line."""
    return " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())


def _tables(cls, prefix: str, title: str | None = None) -> list[str]:
    rows, subs = [], []
    for name, info in cls.model_fields.items():
        tp, _ = _unwrap(info.annotation)
        path = f"{prefix}{name}"
        if members := tagged_members(tp):
            default = info.get_default(call_default_factory=True)
            for tag, sub in members.items():
                note = " (the default)" if getattr(default, "kind", None) == tag else ""
                subs += _tables(sub, f"{path}.", f"`[{path}]` with `kind = \"{tag}\"`{note}")
        elif _is_model(tp):
            subs += _tables(tp, f"{path}.", f"`[{path}]`")
        else:
            meaning = (info.description or "").replace("|", "\\|").replace("\n", " ")
            kind = expectation(info).replace("|", "\\|")
            rows.append(f"| `{name}` | {kind} | {_default_text(info)} | {meaning} |")
    out = []
    if rows:
        if title:
            out += [f"### {title}", ""]
            if cls.__doc__ and cls.__doc__ is not Schema.__doc__:
                out += [_summary(cls), ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    return out + subs


def cli_config(args) -> int:
    """``fpkit config list`` / ``fpkit config show NAME``."""
    if args.action == "list":
        for name, cls in schemas().items():
            print(f"{name}: {_summary(cls)}")
        return 0
    if not args.name:
        raise ConfigError("`fpkit config show` needs a schema NAME; see `fpkit config list`")
    print(show(args.name), end="")
    return 0


def __getattr__(name: str):
    if name in _ELSEWHERE:
        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module 'fpkit.config' has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    """``python -m fpkit.config --docs [-o docs/config.md]``: write the configuration reference."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m fpkit.config", description=main.__doc__)
    p.add_argument("--docs", action="store_true", help="print (or write) the Markdown reference")
    p.add_argument("-o", "--output", help="file to write instead of printing")
    args = p.parse_args(argv)
    if not args.docs:
        p.error("nothing to do: pass --docs")
    text = docs()
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # run the imported module's main: schemas register with fpkit.config, not __main__
    from fpkit.config import main as _main

    sys.exit(_main())
