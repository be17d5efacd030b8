"""Flickr-Mammal for studies: partitions come through ``flickr_batch_sources`` (fake shards)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import flickr_mammal
from tests.training.study.studies import changed, experiment, study_doc, write_toml
from training.datasets import materialize
from training.study.data_specs import FlickrMammalSpec
from training.study.flickr import flickr_batch_sources, flickr_partitions

GEO = {"Africa": [7, 7, 7], "Americas": [1, 1], "Europe": [2, 2, 2, 2]}


@pytest.fixture
def fake_shards(monkeypatch):
    """``load_partitions`` over labels (images are the label as a 1-pixel tensor); logs calls."""
    calls = []

    def fake_load_partitions(root, by, split, transform, **options):
        calls.append({"root": root, "by": by, "split": split, **options})
        assert transform is not None            # the study's resize/crop/normalise
        groups = GEO if by is not None else {"all": [y for ys in GEO.values() for y in ys]}
        if options.get("deal"):
            every = groups["all"]
            groups = {f"iid-{i}": every[i::options["deal"]] for i in range(options["deal"])}
        if split == "val":
            groups = {"all": [5, 6, 7]}
        return {name: [(torch.full((1,), float(y)), y) for y in ys]
                for name, ys in groups.items()}

    monkeypatch.setattr(flickr_mammal, "load_partitions", fake_load_partitions, raising=False)
    return calls


def labels(source, batch_size: int) -> list[int]:
    return next(source.batches(batch_size, np.random.default_rng(0)))[1].tolist()


def test_geographic_partitions_are_the_first_n_in_name_order(fake_shards):
    dataset = FlickrMammalSpec(root="shards", val_samples=2)
    train, val = flickr_partitions(dataset, num_partitions=2, noniid_fraction=1.0, seed=3)
    assert [labels(s, 2) for s in train] == [[7, 7], [1, 1]]        # Africa, Americas
    assert val.y.tolist() == [5, 6]                                   # val_samples=2
    assert fake_shards[0] == {"root": "shards", "by": "continent", "split": "train",
                              "shuffle_buffer": 1000, "seed": 3}
    # the val set: a fixed uniform sample of the split, chosen by the reader from the index
    assert fake_shards[1] == {"root": "shards", "by": None, "split": "val", "max_samples": 2,
                              "seed": 0}
    with pytest.raises(ValueError, match="3 geographic partitions .* lower it"):
        flickr_partitions(dataset, num_partitions=4, noniid_fraction=1.0, seed=3)


def test_iid_control_asks_the_reader_to_deal_n_partitions(fake_shards):
    train, _ = flickr_partitions(FlickrMammalSpec(root="r", partition_by="country"), 3, 0.0,
                                 seed=1)
    assert len(train) == 3
    assert fake_shards[0] == {"root": "r", "by": None, "split": "train", "deal": 3,
                              "shuffle_buffer": 1000, "seed": 1}


def test_other_fractions_are_refused(fake_shards):
    with pytest.raises(ValueError, match="use 1.0 .* or 0.0"):
        flickr_partitions(FlickrMammalSpec(root="r"), 2, 0.5, seed=0)


FLICKR_STUDY = study_doc(
    experiment("geo", "noniid", ["bsp", "fedavg"], [0.0, 1.0], models=["lenet"]),
    experiment("scout", "skewscout", ["fedavg"], [1.0], models=["lenet"]),
    base={"name": "flickr_tiny", "num_partitions": 2}, partitioner="by_attribute",
    target=0.05, threads=1,
    dataset={"name": "flickr_mammal", "root": "(the test's shards)", "partition_by": "continent",
             "image_size": 16, "val_samples": 4},
    train={"iterations": 4, "batch_size": 4, "eval_every": 2}, grids={"fedavg": [1, 2]},
    skewscout={"travel_interval": 1, "sample_size": 4},
)


def write_geo_shards(root) -> None:
    """Shards by the dataset's own writer: train Africa 4 photos, Europe 2; val 4 photos."""
    from tests.flickr_mammal import geo_samples

    geo_samples.write_geo_shards(root, val=("1002", "1006", "1009", "1010"))


def run_flickr_study(tmp_path, engine: str, experiments: list[dict] | None = None) -> list[dict]:
    import json

    from pipelines.run_study import main

    doc = {**changed(FLICKR_STUDY, "dataset", root=str(tmp_path / "shards")), "engine": engine}
    if experiments is not None:
        doc["experiments"] = experiments
    cfg = write_toml(tmp_path / f"{engine}.toml", doc)
    assert main([str(cfg), "--out", str(tmp_path / engine), "--no-progress"]) == 0
    return json.loads((tmp_path / engine / "results.json").read_text())


def test_a_flickr_mammal_study_trains_on_real_shards(tmp_path):
    # read back by the study runner: geographic partitions, the IID control, SkewScout sampling
    # streams shorter than its sample size
    write_geo_shards(tmp_path / "shards")
    rows = run_flickr_study(tmp_path, "simulation")
    assert {(r["mode"], r["algorithm"], r["noniid_fraction"]) for r in rows} == {
        ("fixed", "bsp", 0.0), ("fixed", "bsp", 1.0), ("fixed", "fedavg", 0.0),
        ("fixed", "fedavg", 1.0), ("skewscout", "fedavg", 1.0)}
    assert len(rows) == 7 and all(r["iterations"] == 4 for r in rows)
    scout = next(r for r in rows if r["mode"] == "skewscout")
    assert scout["travel_bytes"] > 0 and scout["estimates"]
    assert all(0.0 <= r["final_acc"] <= 1.0 for r in rows)


@pytest.mark.slow
def test_a_flickr_mammal_study_under_torchrun_matches_the_simulation(tmp_path):
    # each process opens only its own continent's stream; SkewScout's models travel between them
    write_geo_shards(tmp_path / "shards")
    scout_only = FLICKR_STUDY["experiments"][1:]
    rows = {engine: sorted((r["mode"], r["algorithm"], r["knob"] or 0, r["final_acc"],
                            r["bytes_per_iteration"], str(r["estimates"]))
                           for r in run_flickr_study(tmp_path, engine, scout_only))
            for engine in ("simulation", "distributed")}
    assert len(rows["distributed"]) == 4            # BSP, FedAvg 1 and 2, SkewScout
    for sim, dist in zip(rows["simulation"], rows["distributed"], strict=True):
        assert sim[:3] == dist[:3] and sim[4:] == dist[4:]
        assert sim[3] == pytest.approx(dist[3], abs=1e-6)


@pytest.mark.slow
def test_the_shipped_flickr_mammal_config_runs(tmp_path):
    # every model x algorithm x mode of flickr_mammal_continents.toml (torchvision GoogLeNet,
    # BN/GN timm ResNet-18), 2 iterations on CPU at 32 px over shards of 5 continents
    from flickr_mammal.shards import write_shards
    from tests.flickr_mammal.geo_samples import geo_records, read_image
    from tests.training.study.shipped_configs import run_every_kind

    continents = ("Africa", "Americas", "Asia", "Europe", "Oceania")
    records = [r.evolve(photo_id=str(2000 + i), continent=continents[i % 5], geo_status="ok",
                        split="val" if i >= 12 else "train")
               for i, r in enumerate(geo_records() * 2)]
    for split in ("train", "val"):
        write_shards(records, read_image, tmp_path, split=split, group_by="continent")
    assert run_every_kind("flickr_mammal_continents", {"root": str(tmp_path), "image_size": 32},
                          {"batch_size": 10, "eval_batch_size": 10}) == 15


def test_flickr_partitions_become_batch_sources(monkeypatch):
    calls = {}

    def fake_load_partitions(root, by, split, transform):
        calls.update(root=root, by=by, split=split)
        return {"Africa": [(torch.zeros(3, 4, 4), 7)] * 3, "Europe": [(torch.ones(3, 4, 4), 2)]}

    monkeypatch.setattr(flickr_mammal, "load_partitions", fake_load_partitions, raising=False)
    sources = flickr_batch_sources("shards", by="subcontinent")
    assert calls == {"root": "shards", "by": "subcontinent", "split": "train"}
    x, y = next(sources["Africa"].batches(2, np.random.default_rng(0)))
    assert x.shape == (2, 3, 4, 4) and y.tolist() == [7, 7]
    val = materialize(sources["Africa"].samples, limit=2)
    assert len(val) == 2


def write_many_shards(root, n_copies: int = 3) -> int:
    """One split of ``10 * n_copies`` photos in shards of 3 (several shards for workers)."""
    from flickr_mammal.shards import write_shards
    from tests.flickr_mammal.geo_samples import geo_records, read_image

    records = [r.evolve(photo_id=str(3000 + i), split="train")
               for i, r in enumerate(geo_records() * n_copies) if r.continent != "unknown"]
    write_shards(records, read_image, root, split="train", max_samples=3, progress=False)
    return len(records)


def fingerprints(source, batch_size: int, n_batches: int) -> list[tuple[int, float]]:
    it = source.batches(batch_size, np.random.default_rng(0))
    out = []
    for _ in range(n_batches):
        x, y = next(it)
        out += [(int(label), round(float(image.sum()), 3)) for image, label in zip(x, y,
                                                                                   strict=True)]
    return out


def test_workers_give_the_same_samples_and_each_pass_a_new_order(tmp_path):
    from training.study.flickr import _transform

    write_many_shards(tmp_path)

    def source(workers: int):
        return flickr_batch_sources(tmp_path, by=None, transform=_transform(16),
                                    shuffle_buffer=8, seed=1, num_workers=workers)["all"]

    plain = source(0)
    total = len(plain.samples)
    assert total >= 20 and len(plain.samples.shards) >= 4
    batch = next(b for b in (5, 4, 3, 2) if total % b == 0)   # a pass of full batches
    per_pass = total // batch
    two_passes = fingerprints(plain, batch, 2 * per_pass)
    first, second = two_passes[:total], two_passes[total:]
    assert sorted(first) == sorted(second) and first != second   # same photos, new order
    with_workers = fingerprints(source(2), batch, per_pass)
    assert sorted(with_workers) == sorted(first)
