"""Running a shipped (GPU-sized) study config briefly on CPU: one run of each kind."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from training.study.config import DEFAULT_CONFIG, load_study
from training.study.run import execute_run


def run_every_kind(name: str, dataset: dict[str, Any], train: dict[str, Any]) -> int:
    """One run of each model x algorithm x mode of ``pipelines/configs/{name}.toml``, for 2
    iterations on CPU with ``dataset``/``train`` overrides; SkewScout travels at once (the
    configs' interval is 500). Returns how many kinds ran; each row is checked."""
    kinds = {}
    for spec in load_study(DEFAULT_CONFIG.parent / f"{name}.toml").all_runs():
        kinds.setdefault((spec.model, spec.algorithm, spec.mode), spec)
    for spec in kinds.values():
        small = replace(spec, dataset={**spec.dataset, **dataset},
                        train={**spec.train, "iterations": 2, "eval_every": 2, "device": "cpu",
                               **train})
        if spec.skewscout is not None:
            small = replace(small, skewscout={**spec.skewscout, "travel_interval": 1,
                                              "max_travel_interval": None})
        row = execute_run(small)
        assert row["iterations"] == 2 and 0.0 <= row["final_acc"] <= 1.0, spec
        assert bool(row["estimates"]) == (spec.skewscout is not None), spec   # models traveled
    return len(kinds)
