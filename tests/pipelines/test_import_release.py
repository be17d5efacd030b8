"""``python -m pipelines.import_release``: dry run, one-line errors, and kill -9 / resume."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from flickr_mammal.manifest import read_manifest
from flickr_mammal.shards import read_index
from pipelines.import_release import main
from tests.flickr_mammal import release_fixtures as rf

REPO = Path(__file__).resolve().parents[2]
ARGS = ("--workers", "1", "--commit-every", "4", "--shard-samples", "16", "--no-progress")
# The import run by a child process, each photo slowed down so kill -9 lands mid-import.
SLOW_CHILD = """
import sys, time
import flickr_mammal.release.importer as importer
real = importer.process_image
importer.process_image = lambda *a, **k: (time.sleep(0.03), real(*a, **k))[1]
from pipelines.import_release import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return rf.write_release(tmp_path_factory.mktemp("rel") / "geo_animal.tar.gz", per_class=40)


def test_dry_run_prints_the_layout_and_writes_nothing(archive, tmp_path, capsys):
    assert main([str(archive), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "160 images in 4 classes (cat 40, dog 40, sea lion 40, zebra 40)" in printed
    assert "5parts_skewed: parts holding images [0, 1, 2, 3, 4]" in printed
    assert not (tmp_path / "out").exists()


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "missing.tar.gz"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a file" in capsys.readouterr().err
    bad = rf.write_release(tmp_path / "bad.tar.gz", 3, skip=("5parts_shuffled/val.txt.4",
                                                             "5parts_shuffled/train.txt.4"))
    assert main([str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "not 5" in err
    assert not (tmp_path / "o").exists()
    assert main([str(bad)]) == 2 and "--out" in capsys.readouterr().err


def _committed(catalog: Path) -> int:
    if not catalog.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM records").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_kill_9_then_rerun_equals_an_uninterrupted_import(archive, tmp_path, capsys):
    assert main([str(archive), "--out", str(tmp_path / "ref"), *ARGS]) == 0
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", SLOW_CHILD, str(archive), "--out", str(out),
                              *ARGS], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _committed(out / "catalog.sqlite") < 20 and time.monotonic() < deadline:
            assert child.poll() is None, "the import ended before it could be killed"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    done = _committed(out / "catalog.sqlite")
    assert 20 <= done < 160 and not (out / "manifest.parquet").exists()
    capsys.readouterr()
    assert main([str(archive), "--out", str(out), *ARGS]) == 0
    assert f"imported {160 - done} of 160 images" in capsys.readouterr().out
    pd.testing.assert_frame_equal(read_manifest(out), read_manifest(tmp_path / "ref"))
    pd.testing.assert_frame_equal(read_index(out / "shards"), read_index(tmp_path / "ref" /
                                                                         "shards"))
    for shard in sorted((tmp_path / "ref" / "shards").glob("*.tar")):
        assert (out / "shards" / shard.name).read_bytes() == shard.read_bytes()


def test_image_side_is_the_stored_side_and_image_size_its_old_name(caplog):
    import logging

    from pipelines.import_release import parser

    assert parser().parse_args(["a.tar", "--image-side", "64"]).image_side == 64
    with caplog.at_level(logging.WARNING, logger="pipelines._cli"):
        assert parser().parse_args(["a.tar", "--image-size", "48"]).image_side == 48
    assert caplog.messages == ["--image-size is deprecated: use --image-side"]
    assert "--image-size" not in parser().format_help()
