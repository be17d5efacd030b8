"""Study config hardening: every bad config stops at load with one line naming the key and the
fix (training/study/config.py, schema.py, data_specs.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.study.config import DEFAULT_CONFIG, RunSpec, load_study, study_from_dict
from training.study.data_specs import Cifar10Spec, DigitsSpec, FlickrMammalSpec, dataset_spec

EXP = {"name": "n", "kind": "noniid", "models": ["gn-lenet"], "algorithms": ["bsp", "fedavg"],
       "noniid_fractions": [0.0, 1.0]}
DOC = {"name": "tiny", "num_partitions": 2, "dataset": {"name": "digits", "image_size": 8},
       "train": {"iterations": 2}, "experiments": [EXP]}


@pytest.mark.parametrize("change, message", [
    ({"num_partiton": 3}, "unknown key.* num_partiton in the study config; known: name"),
    ({"num_partitions": "two"}, r"num_partitions = 'two': must be a whole number, e.g. "),
    ({"experiments": [1, 2]}, r"experiments\[0\] = 1: each experiment is a table"),
    ({"seeds": "12"}, r"seeds = '12': must be a list, e.g. seeds = \[0, 1\]"),
    ({"seeds": [0, "1"]}, r"seeds\[1\] = '1': seeds are whole numbers"),
    ({"seeds": []}, "list at least one seed"),
    ({"target": True}, "target = True: must be a number"),
    ({"experiments": [{k: v for k, v in EXP.items() if k != "name"}]},
     r"experiments\[0\] has no name; e.g. name = "),
    ({"experiments": [{**EXP, "model": ["gn-lenet"]}]}, "experiment 'n': unknown key.* model;"),
    ({"experiments": [{**EXP, "noniid_fractions": ["all"]}]}, "each must be a number"),
    ({"algorithms": {"fedsgd": {}}}, r"\[algorithms.fedsgd\]: unknown algorithm; known: bsp"),
    ({"grids": {"fedsgd": [1, 2]}}, r"\[grids\] fedsgd: no such algorithm with a knob"),
    ({"dataset": {"name": "digits", "image_size": 0}},
     r"\[dataset\] image_size = 0 \(digits\): give a whole number >= 1, e.g. image_size = 8"),
    ({"dataset": {"name": "digits", "imagesize": 8}},
     r"\[dataset\] digits has no key imagesize; its keys: image_size, val_fraction"),
    ({"dataset": {"name": "cifar10"}}, r"\[dataset\] cifar10 needs root = "),
    ({"dataset": {"name": "digits", "val_fraction": 1.5}}, "val_fraction = 1.5"),
    ({"dataset": "digits"}, "dataset = 'digits': must be a table"),
])
def test_a_bad_config_is_one_line_naming_the_key(change, message):
    with pytest.raises(ValueError, match=message) as info:
        study_from_dict({**DOC, **change})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("- 1\n- 2\n", "a study config is a table of keys .* got list"),
    ("", "got NoneType"),
    ("name: [unclosed\n", "is not valid YAML"),
])
def test_a_broken_yaml_file_is_one_line(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_study(path)
    assert "\n" not in str(info.value)


def test_a_broken_toml_file_is_one_line(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("name = \n")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_study(path)


def test_partitioner_params_reach_the_partitioner_and_are_checked_at_load():
    doc = {**DOC, "partitioner": "dirichlet"}
    with pytest.raises(ValueError,
                       match="partitioner 'dirichlet' .*'alpha'.*set them in partitioner_params"):
        study_from_dict(doc)             # dirichlet needs alpha: caught before any run
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['beta'\]"):
        study_from_dict({**doc, "partitioner_params": {"alpha": 0.5, "beta": 1}})
    with pytest.raises(ValueError, match=r"noniid_fractions \[0.5\]: partitioner 'dirichlet'"):
        study_from_dict({**doc, "partitioner_params": {"alpha": 0.5},
                         "experiments": [{**EXP, "noniid_fractions": [0.5]}]})
    study = study_from_dict({**doc, "partitioner_params": {"alpha": 0.5}})
    iid, skewed = [s for s in study.all_runs() if s.algorithm == "bsp"]
    assert skewed.partitioner_params == {"alpha": 0.5}
    labels = np.repeat(np.arange(10), 30)
    parts = skewed.data.partition_indices(labels, "dirichlet", {"alpha": 0.05}, 2, 1.0, seed=0)
    counts = np.array([np.bincount(labels[p], minlength=10) for p in parts])
    assert (counts.max(axis=0) >= 20).all()    # alpha 0.05: each class mostly in one (IID: ~15)
    parts = iid.data.partition_indices(labels, "dirichlet", {"alpha": 0.05}, 2, 0.0, seed=0)
    assert sorted(len(p) for p in parts) == [150, 150]   # 0.0: the IID control


def test_a_dirichlet_study_runs(tmp_path):
    from training.study.run import execute_run

    study = study_from_dict({**DOC, "partitioner": "dirichlet",
                             "partitioner_params": {"alpha": 0.5},
                             "experiments": [{**EXP, "algorithms": ["bsp"],
                                              "noniid_fractions": [1.0]}]})
    (spec,) = study.all_runs()
    row = execute_run(spec)
    assert row["iterations"] == 2 and 0.0 <= row["final_acc"] <= 1.0


def test_run_ids_without_partitioner_params_are_unchanged_and_with_them_differ():
    study = load_study(DEFAULT_CONFIG)
    spec = study.all_runs()[0]
    # the id of the first default run as it was before partitioner_params existed
    blob = json.dumps({k: v for k, v in spec.__dict__.items() if k != "partitioner_params"},
                      sort_keys=True, default=str)
    import hashlib
    assert spec.run_id == hashlib.sha1(blob.encode()).hexdigest()[:12]
    other = RunSpec(**{**spec.__dict__, "partitioner_params": {"alpha": 1.0}})
    assert other.run_id != spec.run_id
    assert RunSpec(**json.loads(json.dumps(spec.__dict__))).run_id == spec.run_id


def test_dataset_specs_are_typed_and_keep_the_table_as_given():
    spec = dataset_spec({"name": "digits", "image_size": 8})
    assert spec == DigitsSpec(image_size=8) and spec.to_dict() == {"name": "digits",
                                                                  "image_size": 8}
    assert dataset_spec({"name": "cifar10", "root": "d"}) == Cifar10Spec(root="d")
    flickr = dataset_spec({"name": "flickr_mammal", "root": "r", "val_samples": 2})
    assert isinstance(flickr, FlickrMammalSpec) and flickr.to_dict()["val_samples"] == 2
    with pytest.raises(ValueError, match="image_size = 0"):
        FlickrMammalSpec(root="r", image_size=0)


def test_flickr_studies_check_their_fractions_and_partitioner_at_load():
    flickr = {**DOC, "dataset": {"name": "flickr_mammal", "root": "r"}}
    study = study_from_dict(flickr)                   # partitioner defaults to by_attribute
    assert study.partitioner == "by_attribute"
    with pytest.raises(ValueError, match=r"noniid_fractions \[0.5\]: Flickr-Mammal"):
        study_from_dict({**flickr, "experiments": [{**EXP, "noniid_fractions": [0.5, 1.0]}]})
    with pytest.raises(ValueError, match="partitions are natural"):
        study_from_dict({**flickr, "partitioner": "label_skew"})
