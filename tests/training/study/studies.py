"""Tiny study configs shared by the study tests and tests/pipelines/test_run_study.py: dicts on
one digits base, written as the TOML a user writes (tomli_w), so no test repeats a TOML text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomli_w

TINY_DIGITS: dict[str, Any] = {"name": "tiny", "num_partitions": 2,
                               "dataset": {"name": "digits", "image_size": 8}}


def experiment(name: str, kind: str, algorithms: Sequence[str], fractions: Sequence[float],
               models: Sequence[str] = ("gn-lenet",)) -> dict[str, Any]:
    """One ``[[experiments]]`` table."""
    return {"name": name, "kind": kind, "models": list(models), "algorithms": list(algorithms),
            "noniid_fractions": list(fractions)}


def study_doc(*experiments: dict[str, Any], base: dict[str, Any] = TINY_DIGITS,
          **keys: Any) -> dict[str, Any]:
    """A study config: ``base`` with ``keys`` (top-level keys and tables) and ``experiments``."""
    return {**base, **keys, "experiments": list(experiments)}


def changed(doc: dict[str, Any], table: str, **keys: Any) -> dict[str, Any]:
    """``doc`` with ``keys`` set in its ``[table]``."""
    return {**doc, table: {**doc.get(table, {}), **keys}}


def toml_text(doc: dict[str, Any]) -> str:
    return tomli_w.dumps(doc)


def write_toml(path: Path, doc: dict[str, Any]) -> Path:
    """``doc`` as a TOML study config at ``path``."""
    path.write_text(toml_text(doc), encoding="utf-8")
    return path


def fake_row(spec: Any, acc: float, bytes_per_iteration: float = 1.0,
             acc_at_half: float | None = None) -> dict[str, Any]:
    """A valid result row of run ``spec`` (the fields the report reads) with these numbers
    (``acc_at_half``: half of ``acc`` unless given)."""
    return {"run_id": spec.run_id, "mode": spec.mode, "model": spec.model,
            "algorithm": spec.algorithm, "knob": spec.knob, "noniid_fraction": spec.noniid_fraction,
            "seed": spec.seed, "final_acc": acc, "bytes_per_iteration": bytes_per_iteration,
            "bsp_bytes_per_iteration": 100.0, "curve": [[10, acc]],
            "acc_at_half": acc / 2 if acc_at_half is None else acc_at_half}


def fake_rows(study: Any, outcome: Any) -> dict[str, dict[str, Any]]:
    """Hand-made rows of every run of ``study``: ``outcome(spec) -> (final_acc, bytes per
    iteration)``, the same accuracy all along the run."""
    rows = {}
    for spec in study.all_runs():
        acc, b = outcome(spec)
        rows[spec.run_id] = fake_row(spec, acc, b, acc_at_half=acc)
    return rows
