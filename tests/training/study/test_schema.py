"""A study config's keys, types and examples come from the dataclasses (training/study/schema.py):
a field added to StudyConfig or Experiment is a key of the file with no other change."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pytest

from training.study.config import EXPERIMENT_KEYS, TOP_LEVEL, Experiment, StudyConfig
from training.study.schema import Key, example, key_table, parse_experiment, parse_top_level


def test_the_keys_are_the_fields_in_their_order():
    assert list(TOP_LEVEL) == [f.name for f in fields(StudyConfig)]
    assert list(EXPERIMENT_KEYS) == [f.name for f in fields(Experiment)]
    assert TOP_LEVEL["seeds"] == Key(list, int, "seeds = [0, 1]", False)
    assert TOP_LEVEL["dataset"].kind is dict and TOP_LEVEL["threads"].kind is int
    assert TOP_LEVEL["target"].example == "target = 0.03"            # from the default
    assert [k for k, v in EXPERIMENT_KEYS.items() if v.required] == [
        "name", "kind", "models", "algorithms", "noniid_fractions"]
    assert EXPERIMENT_KEYS["noniid_fractions"].item is float


def test_a_field_added_to_the_study_is_a_checked_key():
    @dataclass(frozen=True)
    class Wider(StudyConfig):
        patience: int = 3
        tags: tuple[str, ...] = example('tags = ["a"]', default=())

    keys = key_table(Wider)
    assert keys["patience"] == Key(int, None, "patience = 3", False)
    assert parse_top_level({"patience": 4, "tags": ["b"]}, keys) == {"patience": 4, "tags": ["b"]}
    with pytest.raises(ValueError, match="patience = 'x': must be a whole number, e.g. "
                                         "patience = 3"):
        parse_top_level({"patience": "x"}, keys)
    with pytest.raises(ValueError, match="unknown key.* patience in the study config"):
        parse_top_level({"patience": 4}, TOP_LEVEL)


def test_a_field_added_to_an_experiment_is_a_checked_key():
    @dataclass(frozen=True)
    class Wider(Experiment):
        seeds: tuple[int, ...] = example("seeds = [0]", default=())

    doc = {"name": "n", "kind": "noniid", "models": ["gn-lenet"], "algorithms": ["bsp"],
           "noniid_fractions": [1]}
    assert parse_experiment({**doc, "seeds": [1, 2]}, 0, key_table(Wider))["seeds"] == (1, 2)
    with pytest.raises(ValueError, match=r"seeds = \['1'\]: each must be a whole number, e.g. "
                                         r"seeds = \[0\]"):
        parse_experiment({**doc, "seeds": ["1"]}, 0, key_table(Wider))
