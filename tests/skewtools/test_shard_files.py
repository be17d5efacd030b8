"""skewtools/loaders/shard_files.py: shard names stay in their folder; tars open uncompressed."""

import gzip
import io
import tarfile

import pytest

from skewtools.loaders.shard_files import ShardPathError, shard_path, shard_samples


def _tar_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("a.cls", b"1"), ("a.json", b"{}"), ("b.cls", b"2")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_plain_names_inside_the_folder_are_read(tmp_path):
    (tmp_path / "train-000000.tar").write_bytes(_tar_bytes())
    path = shard_path(tmp_path, "train-000000.tar")
    ends = []
    samples = list(shard_samples([path], on_shard_end=lambda url, n: ends.append(n)))
    assert [s["__key__"] for s in samples] == ["a", "b"] and samples[0]["cls"] == b"1"
    assert ends == [2]


@pytest.mark.parametrize("name", ["../x.tar", "/etc/passwd.tar", "a/b.tar", "x.tar.gz",
                                  "{0..9}.tar", "pipe:cat x.tar", ".."])
def test_names_that_are_not_plain_file_names_are_refused(tmp_path, name):
    with pytest.raises(ShardPathError, match="not a plain shard file name"):
        shard_path(tmp_path, name)


def test_symlinks_out_of_the_folder_and_non_files_are_refused(tmp_path):
    folder, other = tmp_path / "shards", tmp_path / "other"
    folder.mkdir()
    other.mkdir()
    (other / "x.tar").write_bytes(_tar_bytes())
    (folder / "out.tar").symlink_to(other / "x.tar")
    (folder / "zero.tar").symlink_to("/dev/zero")
    (folder / "dir.tar").mkdir()
    (folder / "in.tar").symlink_to(folder / "real.tar")
    (folder / "real.tar").write_bytes(_tar_bytes())
    with pytest.raises(ShardPathError, match="leads outside"):
        shard_path(folder, "out.tar")
    with pytest.raises(ShardPathError, match="leads outside"):
        shard_path(folder, "zero.tar")
    with pytest.raises(ShardPathError, match="not a regular file"):
        shard_path(folder, "dir.tar")
    with pytest.raises(ShardPathError, match="missing"):
        shard_path(folder, "none.tar")
    assert shard_path(folder, "in.tar") == (folder / "real.tar").resolve()


def test_a_compressed_tar_is_not_decompressed(tmp_path):
    (tmp_path / "z.tar").write_bytes(gzip.compress(_tar_bytes()))
    with pytest.raises(ShardPathError, match="z.tar"):
        list(shard_samples([shard_path(tmp_path, "z.tar")]))
