"""The shape of a study config (keys and their types), checked before anything is built.

A config file is plain data (TOML or YAML): a value of the wrong type would otherwise surface
hours later, or silently (``seeds = "12"`` iterated as seeds 1 and 2). Every error names the key
and shows how to write it; ``pipelines.run_study`` prints it on one line and exits 2.

The keys and their types are read from the dataclasses the tables build (:func:`key_table`:
``StudyConfig`` for the top level, ``Experiment`` for each ``[[experiments]]``), so a field added
there is a key of the config file with no change here; a field's ``metadata["example"]``
(:func:`example`) shows how to write it where its default cannot.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, NamedTuple

from training.algorithms import list_algorithms


class Key(NamedTuple):
    """One key of a config table: its type in the file, the type of each item of a list (None:
    not a list), how to write it, and whether the table must have it."""

    kind: type
    item: type | None
    example: str
    required: bool


def example(text: str, **field_args: Any) -> Any:
    """A dataclass field (``dataclasses.field(**field_args)``) whose config key is shown as
    ``text`` in errors: for tables, lists and fields without a default to show."""
    return dataclasses.field(metadata={"example": text}, **field_args)


def _config_type(hint: Any) -> type:
    """The type a config file writes a field of type ``hint`` as: a scalar, a list (tuples), or
    a table (dicts and the objects built from one, e.g. a DatasetSpec)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return _config_type(args[0])
    if hint in (str, int, float, bool):
        return typing.cast(type, hint)
    if typing.get_origin(hint) in (tuple, list):
        return list
    return dict


def _literal(value: Any) -> str:
    """``value`` as a config file writes it (TOML)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return f"[{', '.join(map(_literal, value))}]"
    return repr(value)


def _example(spec: dataclasses.Field[Any], kind: type) -> str:
    if "example" in spec.metadata:
        return str(spec.metadata["example"])
    if kind is dict:
        return f"[{spec.name}] key = value"
    if spec.default is not dataclasses.MISSING and spec.default is not None:
        return f"{spec.name} = {_literal(spec.default)}"
    return f"{spec.name} = ..."


def key_table(owner: type) -> dict[str, Key]:
    """The config keys of a dataclass's fields, in field order: each field's type as a config
    file writes it (:func:`_config_type`), how to write it, and whether it is required."""
    hints = typing.get_type_hints(owner)
    out: dict[str, Key] = {}
    for spec in dataclasses.fields(owner):
        kind = _config_type(hints[spec.name])
        item_args = typing.get_args(hints[spec.name])
        item = (_config_type(item_args[0]) if kind is list and item_args else None)
        required = (spec.default is dataclasses.MISSING
                    and spec.default_factory is dataclasses.MISSING)
        out[spec.name] = Key(kind, item, _example(spec, kind), required)
    return out


_TYPE_WORDS = {str: "a string", int: "a whole number", float: "a number", dict: "a table",
               list: "a list", bool: "true or false"}


def is_type(value: Any, kind: type) -> bool:
    """``isinstance`` as a config means it: a bool is no number, an int is a float."""
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def check_type(key: str, value: Any, kind: type, how: str) -> None:
    """Raise ValueError naming ``key`` and showing ``how`` to write it unless ``value`` is a
    ``kind`` (:func:`is_type`)."""
    if not is_type(value, kind):
        raise ValueError(f"{key} = {value!r}: must be {_TYPE_WORDS[kind]}, e.g. {how}")


def check_key(keys: Mapping[str, Key], key: str, value: Any) -> None:
    """:func:`check_type` for ``key`` of a table whose keys are ``keys``."""
    check_type(key, value, keys[key].kind, keys[key].example)


def parse_top_level(doc: Any, keys: Mapping[str, Key]) -> dict[str, Any]:
    """A copy of ``doc`` whose keys are known (``keys``: the study's, ``key_table(StudyConfig)``)
    and whose values have the right types."""
    if not isinstance(doc, dict):
        raise ValueError(f"a study config is a table of keys ({', '.join(keys)}), got "
                         f"{type(doc).__name__}")
    unknown = sorted(set(doc) - set(keys))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(str, unknown))} in the study config; "
                         f"known: {', '.join(keys)}")
    for key, value in doc.items():
        check_key(keys, key, value)
    for i, seed in enumerate(doc.get("seeds", [])):
        if not is_type(seed, int) or seed < 0:
            raise ValueError(f"seeds[{i}] = {seed!r}: seeds are whole numbers >= 0, e.g. "
                             f"{keys['seeds'].example}")
    if "seeds" in doc and (not doc["seeds"] or len(set(doc["seeds"])) != len(doc["seeds"])):
        raise ValueError(f"seeds = {doc['seeds']!r}: list at least one seed, each once")
    known = list_algorithms()
    for name, params in doc.get("algorithms", {}).items():
        if name not in known:
            raise ValueError(f"[algorithms.{name}]: unknown algorithm; known: {', '.join(known)}")
        check_type(f"[algorithms.{name}]", params, dict, f"[algorithms.{name}] key = value")
    for name, grid in doc.get("grids", {}).items():
        if not isinstance(grid, list) or not all(is_type(v, float) for v in grid):
            raise ValueError(f"[grids] {name} = {grid!r}: must be a list of numbers, e.g. "
                             f"{name} = [5, 50]")
    return dict(doc)


def parse_experiment(doc: Any, index: int, keys: Mapping[str, Key]) -> dict[str, Any]:
    """The keyword arguments of ``Experiment`` for ``[[experiments]]`` number ``index``
    (``keys``: an experiment's, ``key_table(Experiment)``)."""
    where = f"experiments[{index}]"
    if not isinstance(doc, dict):
        raise ValueError(f"{where} = {doc!r}: each experiment is a table, e.g. [[experiments]] "
                         'name = "noniid" kind = "noniid" ...')
    name = doc.get("name")
    if name is not None:
        where = f"experiment {name!r}"
    unknown = sorted(set(doc) - set(keys))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; known: "
                         f"{', '.join(keys)}")
    missing = [k for k, spec in keys.items() if spec.required and k not in doc]
    if missing:
        raise ValueError(f"{where} has no {', '.join(missing)}; e.g. {keys[missing[0]].example}")
    out: dict[str, Any] = {}
    for key, spec in keys.items():
        if key not in doc:
            continue
        value = doc[key]
        if spec.item is None:
            check_type(f"{where}: {key}", value, spec.kind, spec.example)
            out[key] = value
            continue
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: {key} must be a list, e.g. {key} = [{value}]")
        bad = [v for v in value if not is_type(v, spec.item)]
        if bad:
            raise ValueError(f"{where}: {key} = {value!r}: each must be "
                             f"{_TYPE_WORDS[spec.item]}, e.g. {spec.example}")
        out[key] = tuple(float(v) if spec.item is float else v for v in value)
    return out
