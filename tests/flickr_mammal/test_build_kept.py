"""A build that keeps no image, or too few, fails in its summary and its exit code."""

from __future__ import annotations

import dataclasses

import pytest

from flickr_mammal.build import BuildConfig, build
from flickr_mammal.catalog import Catalog
from flickr_mammal.records import Status
from pipelines.build_dataset import main as build_main
from tests.flickr_mammal import build_fixtures as fx
from tests.flickr_mammal.fakeflickr import FakeFlickr
from tests.flickr_mammal.test_build import config


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory):
    """A build folder whose images are downloaded and cleaned (all kept: no classifier)."""
    out = tmp_path_factory.mktemp("kept")
    with FakeFlickr(fx.photos(), api_key=fx.API_KEY) as fake:
        build(config(out, fake.endpoint, stages=("search", "download", "clean")))
    return out


def _reject(out, share: float) -> int:
    """Turn ``share`` of the kept records into rejected ones (a classifier's verdict)."""
    with Catalog.open(out / "catalog.sqlite") as cat:
        kept = list(cat.records(Status.KEPT))
        chosen = kept[: round(share * len(kept))]
        cat.update(r.evolve(status=Status.REJECTED) for r in chosen)
        return len(kept) - len(chosen)


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    (dst / ".build.lock").unlink(missing_ok=True)
    return dst


def test_no_kept_image_fails_the_build(downloaded, tmp_path):
    out = _copy(downloaded, tmp_path / "none")
    assert _reject(out, 1.0) == 0
    summary = build(dataclasses.replace(config(out, "http://127.0.0.1:9/unused"),
                                        api_key="", stages=("shard",)))
    assert not summary.ok and summary.kept == 0
    assert summary.lines()[-1].startswith("FAILED: no image kept (31 cleaned, 31 rejected)")


def test_kept_fraction_under_the_minimum_exits_non_zero(downloaded, tmp_path, capsys):
    out = _copy(downloaded, tmp_path / "few")
    kept = _reject(out, 0.5)
    argv = ["--out", str(out), "--stages", "shard", "--classifier", "none", "--classes",
            ",".join(fx.CLASSES), "--per-class", "100", "--min-upload-date", str(fx.LO),
            "--max-upload-date", str(fx.HI), "--val-fraction", "0.2", "--shard-samples", "4",
            "--no-progress"]
    assert build_main([*argv, "--min-kept-fraction", "0.9"]) == 1
    printed = capsys.readouterr().out
    assert f"FAILED: kept {kept} of 31 cleaned images" in printed
    assert "under --min-kept-fraction 0.9" in printed
    assert build_main([*argv, "--min-kept-fraction", "0.4"]) == 0


def test_a_search_only_build_is_not_judged_by_what_it_kept(tmp_path):
    with FakeFlickr(fx.photos(), api_key=fx.API_KEY) as fake:
        summary = build(config(tmp_path, fake.endpoint, stages=("search",)))
    assert summary.ok and summary.kept == 0


def test_min_kept_fraction_is_validated(tmp_path):
    with pytest.raises(ValueError, match="min_kept_fraction"):
        BuildConfig(out=tmp_path, stages=("shard",), min_kept_fraction=1.5)
