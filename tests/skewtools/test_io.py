"""skewtools/io.py: atomic writes that leave no temp file and obey the umask."""

import fnmatch
import os
import stat
import subprocess
import sys

import pytest

from skewtools import io as atomic_io
from skewtools.io import (
    TEMP_GLOB,
    AtomicFile,
    atomic_write_bytes,
    atomic_write_text,
    atomic_write_with,
    remove_temp_files,
    temp_path,
)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_file_gets_the_umask_permissions_not_0600(tmp_path, umask_022):
    path = tmp_path / "r.json"
    atomic_write_text(path, "[1]")
    assert path.read_text() == "[1]"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    atomic_write_bytes(path, b"[2]")            # replaced, not appended
    assert path.read_bytes() == b"[2]" and os.listdir(tmp_path) == ["r.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("old")

    def half_then_crash(tmp):
        tmp.write_text("ne")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_with(path, half_then_crash)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["results.csv"]


def test_the_temp_file_is_beside_the_target_hidden_and_unique(tmp_path):
    path = tmp_path / "stats.json"
    path.write_text("old")
    seen = []
    for text in ("a", "b"):
        atomic_write_with(path, lambda tmp, t=text: (seen.append(tmp), tmp.write_text(t)))
    assert all(p.parent == tmp_path and p.name.startswith(".stats.json.") for p in seen)
    assert all(p.suffix == ".tmp" for p in seen) and seen[0] != seen[1]
    assert path.read_text() == "b" and os.listdir(tmp_path) == ["stats.json"]


def test_parents_creates_the_missing_folder_only_when_asked(tmp_path):
    path = tmp_path / "images" / "07" / "1007.jpg"
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(path, b"jpeg")
    atomic_write_bytes(path, b"jpeg", parents=True)
    assert path.read_bytes() == b"jpeg" and os.listdir(path.parent) == ["1007.jpg"]


def test_atomic_file_commits_whole_or_leaves_the_old_file(tmp_path, umask_022):
    path = tmp_path / "train-000000.tar"
    with AtomicFile(path) as f:
        f.write(b"first ")
        assert not path.exists()            # nothing under the final name until commit
        f.write(b"shard")
    assert path.read_bytes() == b"first shard"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with pytest.raises(RuntimeError), AtomicFile(path) as f:
        f.write(b"half a sh")
        raise RuntimeError("killed")
    assert path.read_bytes() == b"first shard" and os.listdir(tmp_path) == [path.name]
    f = AtomicFile(path)
    f.write(b"dropped")
    f.abort()
    assert path.read_bytes() == b"first shard" and os.listdir(tmp_path) == [path.name]


@pytest.mark.parametrize("fsync", [False, True])
def test_fsync_syncs_the_data_before_the_rename(tmp_path, monkeypatch, fsync):
    path = tmp_path / "x.bin"
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic_io.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(atomic_io.os, "replace", lambda a, b: (events.append("replace"),
                                                          real_replace(a, b)))
    with AtomicFile(path, fsync=fsync) as f:
        f.write(b"data")
    atomic_write_with(path, lambda tmp: tmp.write_bytes(b"more"), fsync=fsync)
    assert events == (["fsync", "replace"] * 2 if fsync else ["replace"] * 2)
    assert path.read_bytes() == b"more"


def test_importing_the_helper_stays_light():
    """flickr_mammal's stages import it: it must not pull in scipy/pandas via skewtools."""
    code = ("import sys, skewtools.io; "
            "sys.exit(any(m in sys.modules for m in ('scipy', 'pandas', 'torch')))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_temp_files_match_the_glob_and_the_sweep_removes_only_them(tmp_path):
    kept = tmp_path / "a" / "1.jpg"
    left = AtomicFile(kept, parents=True)  # a writer that never commits: killed mid-write
    left.write(b"half")
    left.file.close()
    assert fnmatch.fnmatch(left.tmp.name, TEMP_GLOB) and left.tmp.exists()
    atomic_write_bytes(kept, b"whole")
    assert fnmatch.fnmatch(temp_path(kept).name, TEMP_GLOB)
    assert remove_temp_files(tmp_path) == 0  # depth 0: the top folder only
    assert remove_temp_files(tmp_path, depth=1) == 1
    assert not left.tmp.exists() and kept.read_bytes() == b"whole"
    assert os.listdir(kept.parent) == ["1.jpg"]
    with pytest.raises(ValueError, match="depth must be >= 0"):
        remove_temp_files(tmp_path, depth=-1)
