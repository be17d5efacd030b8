"""Test-wide settings: never reach a model hub, keep torch to the machine's 2 cores."""

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")


# ---- shared data set-ups: the synthetic build and the geographic shards ----------------------
@pytest.fixture(scope="session")
def synthetic_build(tmp_path_factory) -> Callable[..., Path]:
    """``synthetic_build(*extra_args) -> folder``: the synthetic Flickr-Mammal
    (tests/flickr_mammal/build_fixtures.py) built by the command line against the fake Flickr,
    once per distinct extra arguments in a session. Read-only: damage a copy (``copy``)."""
    from tests.flickr_mammal import build_fixtures as fx

    builds: dict[tuple[str, ...], Path] = {}

    def get(*extra: str) -> Path:
        if extra not in builds:
            out = tmp_path_factory.mktemp("synthetic_build") / "build"
            assert fx.build_cli(out, *extra) == 0
            builds[extra] = out
        return builds[extra]

    return get


@pytest.fixture(scope="session")
def default_build(synthetic_build) -> Path:
    """The synthetic build with build_fixtures' own options (shards of 4 samples): the build
    DATASET.md's statistics show. Read-only: rerun builds into a copy."""
    return synthetic_build()


@pytest.fixture(scope="session")
def built(synthetic_build) -> Path:
    """The synthetic build in shards of 6 samples (11 shards): what the integrity checks
    damage (in a ``copy``)."""
    return synthetic_build("--shard-samples", "6")


@pytest.fixture
def copy(built, tmp_path) -> Path:
    """A private copy of ``built``, free to damage."""
    shutil.copytree(built, tmp_path / "fm")
    return tmp_path / "fm"


@pytest.fixture(scope="module")
def geo_shard_dir(tmp_path_factory) -> Path:
    """tests/flickr_mammal/geo_samples' records as train shards grouped by continent (Africa 5,
    Europe 3, Oceania 2, one unplaced): the partitions Flower's ids map to."""
    from tests.flickr_mammal.geo_samples import write_geo_shards

    return write_geo_shards(tmp_path_factory.mktemp("geo_shards"))
