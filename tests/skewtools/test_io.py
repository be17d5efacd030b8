"""skewtools/_io.py: atomic writes that leave no temp file and obey the umask."""

import os
import stat

import pytest

from skewtools._io import atomic_write_bytes, atomic_write_text, atomic_write_with


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
