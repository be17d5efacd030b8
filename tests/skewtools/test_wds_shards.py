"""The shard loader against shards written here with tarfile (no dependency on the builder)."""

import io
import tarfile

import numpy as np
import pandas as pd
import pytest

from skewtools import partition
from skewtools.loaders import partition_webdataset, plan_partition


def _write_shard(path, samples):
    with tarfile.open(path, "w") as tar:
        for key, label in samples:
            for ext, payload in (("cls", str(label).encode()), ("json", b"{}")):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


@pytest.fixture()
def shard_index(tmp_path):
    # 3 shards x 4 samples; labels 0..3 repeat, so every shard mixes classes.
    rows = []
    for s in range(3):
        samples = [(f"fm{s}{i}", (s * 4 + i) % 4) for i in range(4)]
        _write_shard(tmp_path / f"train-{s:06d}.tar", samples)
        rows += [{"key": k, "shard": f"train-{s:06d}.tar", "label": y} for k, y in samples]
    return pd.DataFrame(rows), tmp_path


def test_yields_exactly_the_partitions_keys(shard_index):
    index, shards_dir = shard_index
    p = partition("label_skew", index, num_partitions=2, noniid_fraction=1.0)
    for pid in range(2):
        ds = partition_webdataset(index, p, pid, shards_dir)
        got = sorted(s["__key__"] for s in ds)
        assert got == sorted(index["key"].to_numpy()[p.indices[pid]])
        assert {int(s["cls"]) % 2 for s in partition_webdataset(index, p, pid, shards_dir)} == {pid}


def test_reads_only_the_shards_holding_the_partition(shard_index):
    index, shards_dir = shard_index
    p = partition(
        "by_attribute", index.assign(part=np.repeat(["a", "b", "c"], 4)), attribute="part"
    )
    plan = plan_partition(index, p, "b", shards_dir)
    assert plan.urls == (str(shards_dir / "train-000001.tar"),)
    assert len(plan) == 4
    (shards_dir / "train-000000.tar").unlink()  # would fail if it were opened
    assert len(list(partition_webdataset(index, p, "b", shards_dir))) == 4


def test_misaligned_index_is_an_error(shard_index):
    index, shards_dir = shard_index
    p = partition("iid", index, num_partitions=2)
    with pytest.raises(ValueError, match="same manifest rows"):
        plan_partition(index.iloc[:5], p, 0, shards_dir)
