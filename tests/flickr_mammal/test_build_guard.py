"""A build folder holds one kind of data: reruns with other data options are refused."""

from __future__ import annotations

import json
import shutil
import sqlite3
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from pipelines.build_dataset import main
from tests.flickr_mammal import build_fixtures as fx
from tests.flickr_mammal.fakeflickr import FakeFlickr


def _config(out) -> dict:
    with sqlite3.connect(out / "catalog.sqlite") as conn:
        return json.loads(conn.execute("SELECT value FROM meta WHERE key='config'").fetchone()[0])


@pytest.fixture(scope="module")
def fake():
    with FakeFlickr(fx.photos(), api_key=fx.API_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def guarded(synthetic_build, tmp_path_factory) -> Path:
    """A private copy of the synthetic build (default options) that the reruns below build
    into; the shared build itself stays read-only."""
    out = tmp_path_factory.mktemp("guarded") / "build"
    shutil.copytree(synthetic_build(), out)
    return out


def _rerun(out, fake, capsys, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(fx.build_args(out, fake.endpoint, *extra))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("extra", "named"), [
    (["--image-size", "64"], ["--image-side 300 (now 64)"]),
    (["--classes", "cat", "--licenses", "4"],
     ["--classes cat,dog,zebra (now cat)", "--licenses 1,2,3,4,5,6,7,8,9,10 (now 4)"]),
    (["--min-upload-date", "2005-01-01"], ["--min-upload-date"]),
    (["--classifier", "efficientnet_lite0_pypi", "--stages", "shard"],
     ["--classifier none (now efficientnet_lite0_pypi)"]),
])
def test_other_data_options_are_refused_and_nothing_changes(guarded, fake, capsys, extra, named):
    before = {p.name: p.read_bytes() for p in (guarded / "shards").iterdir()}
    manifest, config = (guarded / "manifest.parquet").read_bytes(), _config(guarded)
    code, err = _rerun(guarded, fake, capsys, *extra)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for text in named:
        assert text in err, err
    assert "new --out folder" in err
    assert _config(guarded) == config  # the recorded config is not rewritten
    assert (guarded / "manifest.parquet").read_bytes() == manifest
    assert {p.name: p.read_bytes() for p in (guarded / "shards").iterdir()} == before


@pytest.mark.parametrize("extra", [
    ["--workers", "2", "--download-processes", "1"], ["--rate-limit", "99"],
    ["--stages", "geocode,shard", "--device", "cpu", "--batch-size", "4", "--clean-workers", "0"],
    ["--per-class", "100"], ["--commit-every", "7"],
])
def test_options_that_change_no_data_are_accepted(guarded, fake, capsys, extra):
    code, err = _rerun(guarded, fake, capsys, *extra)
    assert code == 0, err


def test_shard_options_reshard_when_the_shard_stage_runs(synthetic_build, fake, capsys,
                                                         tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(synthetic_build(), out)
    code, err = _rerun(out, fake, capsys, "--shard-samples", "8", "--stages", "geocode")
    assert code == 2 and "--shard-samples 4 (now 8)" in err and "add shard to --stages" in err
    code, err = _rerun(out, fake, capsys, "--shard-samples", "8", "--coord-decimals", "1")
    assert code == 0, err
    index = pd.read_parquet(out / "shards" / "shards.parquet")
    assert index.groupby("shard").size().max() == 8   # all re-sharded, nothing of the old layout
    assert len(index) == len(pd.read_parquet(synthetic_build() / "shards" / "shards.parquet"))
    assert index["key"].is_unique
    assert {p.name for p in (out / "shards").glob("*.tar")} == set(index["shard"])
    # ... and now these are the recorded shard options: a shard-less rerun with them is fine.
    code, err = _rerun(out, fake, capsys, "--shard-samples", "8", "--coord-decimals", "1",
                       "--stages", "geocode")
    assert code == 0, err


def test_a_dump_search_into_an_api_built_folder_is_refused(guarded, fake, capsys, tmp_path):
    from tests.flickr_mammal import dump_fixtures as d

    dump = d.write_tsv([d.row(900 + i, "cat") for i in range(30)], tmp_path / "dump.tsv")
    with sqlite3.connect(guarded / "catalog.sqlite") as conn:
        before = conn.execute("SELECT count(*) FROM records").fetchone()[0]
    code, err = _rerun(guarded, fake, capsys, "--metadata", str(dump))
    assert code == 2 and err.count("\n") == 1, err
    assert f"--metadata none (the Flickr API) (now {dump})" in err
    with sqlite3.connect(guarded / "catalog.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == before


def test_the_class_file_counts_by_its_content_not_its_path(guarded, fake, capsys, tmp_path):
    shipped = tmp_path / "mammals.csv"   # the shipped file's bytes under another name: the same
    shipped.write_bytes((resources.files("flickr_mammal") / "classes_mammals.csv").read_bytes())
    code, err = _rerun(guarded, fake, capsys, "--classes-file", str(shipped))
    assert code == 0, err
    # The same class names, one more synonym: other data (another scan, other matches).
    kitty = tmp_path / "kitty.csv"
    kitty.write_text("name,synonyms\ncat,kitty\ndog,\nzebra,\n", encoding="utf-8")
    config = _config(guarded)
    code, err = _rerun(guarded, fake, capsys, "--classes-file", str(kitty))
    assert code == 2 and err.count("\n") == 1, err
    assert f"--classes-file {shipped} (sha256 " in err and f"(now {kitty} (sha256 " in err, err
    assert _config(guarded) == config
