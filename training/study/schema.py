"""The shape of a study config (keys and their types), checked before anything is built.

A config file is plain data (TOML or YAML): a value of the wrong type would otherwise surface
hours later, or silently (``seeds = "12"`` iterated as seeds 1 and 2). Every error names the key
and shows how to write it; ``pipelines.run_study`` prints it on one line and exits 2.
"""

from __future__ import annotations

from typing import Any

from training.algorithms import list_algorithms

# key -> (type, example): the study's top-level keys
TOP_LEVEL: dict[str, tuple[type, str]] = {
    "name": (str, 'name = "my_study"'),
    "dataset": (dict, '[dataset] name = "digits"'),
    "experiments": (list, "[[experiments]] name = ..."),
    "num_partitions": (int, "num_partitions = 5"),
    "partitioner": (str, 'partitioner = "label_skew"'),
    "partitioner_params": (dict, "[partitioner_params] alpha = 0.5"),
    "seeds": (list, "seeds = [0, 1]"),
    "train": (dict, "[train] iterations = 300"),
    "algorithms": (dict, "[algorithms.fedavg] iter_local = 50"),
    "grids": (dict, "[grids] fedavg = [5, 50]"),
    "target": (float, "target = 0.03"),
    "skewscout": (dict, "[skewscout] travel_interval = 20"),
    "engine": (str, 'engine = "simulation"'),
    "threads": (int, "threads = 1"),
    "executor": (dict, '[executor] kind = "local"'),
    "strict": (bool, "strict = true"),
}
# an experiment's keys (all lists but name and kind); num_partitions is optional
EXPERIMENT: dict[str, tuple[type, str]] = {
    "name": (str, 'name = "noniid"'),
    "kind": (str, 'kind = "noniid"'),
    "models": (str, 'models = ["gn-lenet"]'),
    "algorithms": (str, 'algorithms = ["bsp", "fedavg"]'),
    "noniid_fractions": (float, "noniid_fractions = [0.0, 1.0]"),
    "num_partitions": (int, "num_partitions = [5]"),
}
_TYPE_WORDS = {str: "a string", int: "a whole number", float: "a number", dict: "a table",
               list: "a list", bool: "true or false"}


def is_type(value: Any, kind: type) -> bool:
    """``isinstance`` as a config means it: a bool is no number, an int is a float."""
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def check_type(key: str, value: Any, kind: type, example: str) -> None:
    if not is_type(value, kind):
        raise ValueError(f"{key} = {value!r}: must be {_TYPE_WORDS[kind]}, e.g. {example}")


def parse_top_level(doc: Any) -> dict[str, Any]:
    """A copy of ``doc`` whose keys are known and whose values have the right types."""
    if not isinstance(doc, dict):
        raise ValueError(f"a study config is a table of keys ({', '.join(TOP_LEVEL)}), got "
                         f"{type(doc).__name__}")
    unknown = sorted(set(doc) - set(TOP_LEVEL))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(str, unknown))} in the study config; "
                         f"known: {', '.join(TOP_LEVEL)}")
    for key, value in doc.items():
        check_type(key, value, *TOP_LEVEL[key])
    for i, seed in enumerate(doc.get("seeds", [])):
        if not is_type(seed, int) or seed < 0:
            raise ValueError(f"seeds[{i}] = {seed!r}: seeds are whole numbers >= 0, e.g. "
                             "seeds = [0, 1]")
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


def parse_experiment(doc: Any, index: int) -> dict[str, Any]:
    """The keyword arguments of ``Experiment`` for ``[[experiments]]`` number ``index``."""
    where = f"experiments[{index}]"
    if not isinstance(doc, dict):
        raise ValueError(f"{where} = {doc!r}: each experiment is a table, e.g. [[experiments]] "
                         'name = "noniid" kind = "noniid" ...')
    name = doc.get("name")
    if name is not None:
        where = f"experiment {name!r}"
    unknown = sorted(set(doc) - set(EXPERIMENT))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; known: "
                         f"{', '.join(EXPERIMENT)}")
    missing = [k for k in EXPERIMENT if k != "num_partitions" and k not in doc]
    if missing:
        raise ValueError(f"{where} has no {', '.join(missing)}; e.g. "
                         f"{EXPERIMENT[missing[0]][1]}")
    out: dict[str, Any] = {}
    for key, (kind, example) in EXPERIMENT.items():
        if key not in doc:
            continue
        value = doc[key]
        if key in ("name", "kind"):
            check_type(f"{where}: {key}", value, kind, example)
            out[key] = value
            continue
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: {key} must be a list, e.g. {key} = [{value}]")
        bad = [v for v in value if not is_type(v, kind)]
        if bad:
            raise ValueError(f"{where}: {key} = {value!r}: each must be {_TYPE_WORDS[kind]}, "
                             f"e.g. {example}")
        out[key] = tuple(float(v) if kind is float else v for v in value)
    return out
