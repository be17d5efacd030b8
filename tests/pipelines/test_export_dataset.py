"""pipelines.export_dataset --format hf-parquet: the Hub's layout, loadable offline."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from tests.flickr_mammal.geo_samples import write_geo_shards

datasets = pytest.importorskip("datasets")

from flickr_mammal.export import ExportConfig, export_hf_parquet  # noqa: E402
from pipelines.export_dataset import main  # noqa: E402


def test_cli_writes_hub_layout_and_card(default_build, tmp_path, capsys):
    out = tmp_path / "hub"
    assert main([str(default_build), str(out), "--format", "hf-parquet"]) == 0
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "train-00000-of-00001.parquet", "validation-00000-of-00001.parquet"]
    assert "train: 24 rows in 1 files" in capsys.readouterr().out   # 1 unplaced a split
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["configs"][0]["data_files"] == [
        {"split": "train", "path": "data/train-*"},
        {"split": "validation", "path": "data/validation-*"}]
    assert {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]} == \
        {"train": 24, "validation": 5}
    assert header["license"] == "other" and header["license_name"] == "flickr-per-image-licenses"
    assert header["size_categories"] == ["n<1K"]
    assert header["task_categories"] == ["image-classification"]
    assert "## Licences" in card and "| licence id | licence | images |" in card
    assert "## 5. Geocoding scheme" in card                          # DATASET.md's sections
    assert "### Statistics of this export's build" in card          # from this build
    assert "| geocode: unplaced (antarctica 1, null_island 1) | 2 |" in card
    assert "synthetic build" not in card and "NOT real data" not in card
    assert "python -m" not in card and "How to rebuild" not in card   # no repository commands
    assert "FederatedDataset(dataset=" in card

    local = datasets.load_dataset(str(out))                          # the folder, as on the Hub
    assert local["train"].num_rows == 24 and local["validation"].num_rows == 5
    assert set(local["train"]["license_name"]) <= {"", "CC BY-NC-SA 2.0", "CC BY-NC 2.0",
                                                   "CC BY-NC-ND 2.0", "CC BY 2.0",
                                                   "CC BY-SA 2.0", "CC BY-ND 2.0",
                                                   "No known copyright restrictions",
                                                   "United States Government Work",
                                                   "CC0 1.0", "Public Domain Mark 1.0"}
    assert local["train"].features["label"].names[6] == "cat"
    image = local["train"][0]["image"]
    assert image.size[0] > 0                                          # bytes embedded
    files = {"train": str(out / "data" / "train-*.parquet")}
    plain = datasets.load_dataset("parquet", data_files=files, split="train")
    assert sorted(plain["key"]) == sorted(local["train"]["key"])
    assert set(plain["continent"]) <= {"Africa", "Americas", "Asia", "Europe", "Oceania"}


def test_shards_split_by_size_and_keep_every_row(tmp_path):
    shards = tmp_path / "shards"
    write_geo_shards(shards, group_by=None)
    result = export_hf_parquet(ExportConfig(root=shards, out=tmp_path / "hub",
                                            max_shard_bytes=3000, datasheet=None))
    names = result["files"]["train"]
    assert len(names) > 1 and names[0].endswith(f"-of-{len(names):05d}.parquet")
    rows = sum(pq.read_metadata(tmp_path / "hub" / "data" / n).num_rows for n in names)
    assert rows == result["rows"]["train"] == 10                    # 11 minus the unplaced one


def test_federated_dataset_reads_the_export(default_build, tmp_path):
    """docs/ecosystem.md's example: flwr-datasets' FederatedDataset over the exported folder."""
    flwr = pytest.importorskip("flwr_datasets")
    from flwr_datasets.partitioner import NaturalIdPartitioner

    out = tmp_path / "hub"
    assert main([str(default_build), str(out)]) == 0
    fds = flwr.FederatedDataset(dataset=str(out), partitioners={
        "train": NaturalIdPartitioner(partition_by="continent")})
    sizes = [len(fds.load_partition(i)) for i in range(fds.partitioners["train"].num_partitions)]
    assert sum(sizes) == 24 and len(sizes) == 5
    assert fds.load_split("validation").num_rows == 5


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "x").write_text("")
    assert main([str(tmp_path), str(tmp_path / "hub")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def _tamper(root, how: str) -> None:
    index_path = root / "shards" / "shards.parquet"
    index = pd.read_parquet(index_path)
    row = index[(index["split"] == "train") & (index["continent"] != "unknown")].index[0]
    if how == "lost_row":
        index = index.drop(index=row)
    elif how == "planted":
        index.loc[row, "shard"] = "../../planted.tar"
    else:
        index.loc[row, how] = {"label": (int(index.loc[row, "label"]) + 1) % 42, "split": "val",
                               "continent": "Oceania" if index.loc[row, "continent"] != "Oceania"
                               else "Asia", "subcontinent": "Melanesia"}[how]
    index.to_parquet(index_path)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["label", "split", "continent", "subcontinent", "lost_row",
                                 "planted"])
def test_export_exits_non_zero_on_a_tampered_build(copy, tmp_path, capsys, how):
    _tamper(copy, how)
    assert main([str(copy), str(tmp_path / "hub")]) == 2
    last = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("error: ") and ("sample fm" in last or "shard" in last)
    assert "Traceback" not in last


def test_to_hf_dataset_refuses_a_build_that_lost_a_row(copy, tmp_path):
    from flickr_mammal.hf import to_hf_dataset
    from flickr_mammal.integrity import DatasetIntegrityError

    _tamper(copy, "lost_row")
    with pytest.raises(DatasetIntegrityError, match="samples of split train, the manifest"):
        to_hf_dataset(copy, "train", cache_dir=tmp_path / "cache")
    with pytest.raises(DatasetIntegrityError, match="index row is missing"):
        to_hf_dataset(copy / "shards", "train", cache_dir=tmp_path / "cache")


@pytest.mark.timeout(300)
def test_sigterm_removes_the_temp_folder(default_build, tmp_path):
    """An export stopped by SIGTERM leaves no fm-export-* folder behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": os.getcwd()}
    # A datasheet that blocks the card step is not needed: stop as soon as the cache exists.
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.export_dataset", str(default_build),
                             str(tmp_path / "hub")], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not any(temp.glob("fm-export-*")) and proc.poll() is None:
        assert time.monotonic() < deadline, "the export never created its temp folder"
        time.sleep(0.01)
    assert proc.poll() is None, "the export ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) != 0
    assert not list(temp.glob("fm-export-*"))
