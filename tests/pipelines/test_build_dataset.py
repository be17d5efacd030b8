"""``python -m pipelines.build_dataset``: options, exit codes, summary, no key in any output."""

from __future__ import annotations

from pathlib import Path

import pytest

from flickr_mammal.build import DEFAULT_LICENSES, STAGES
from pipelines.build_dataset import config_from_args, main, parser
from tests.flickr_mammal import build_fixtures as fx
from tests.flickr_mammal.fakeflickr import FakeFlickr


def test_small_build_prints_a_summary_and_never_the_key(tmp_path, capsys):
    with FakeFlickr(fx.photos(), api_key=fx.API_KEY) as fake:
        code = main(fx.build_args(tmp_path, fake.endpoint, "--log-level", "DEBUG"))
    out, err = capsys.readouterr()
    assert code == 0
    assert f"kept images: {fx.EXPECTED['kept']}" in out
    assert (tmp_path / "manifest.parquet").is_file()
    assert fx.API_KEY not in out + err


def test_missing_key_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FLICKR_API_KEY", raising=False)
    assert main(["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FLICKR_API_KEY" in err
    assert not (tmp_path / "o").exists()


def test_rejected_key_is_exit_2_before_any_work(tmp_path, capsys):
    with FakeFlickr(fx.photos(), api_key="another-key") as fake:
        code = main(fx.build_args(tmp_path / "o", fake.endpoint))
        assert fake.search_log == []
    err = capsys.readouterr().err
    assert code == 2 and "rejected the API key" in err and fx.API_KEY not in err
    assert not (tmp_path / "o").exists()


def test_key_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FLICKR_API_KEY", "from-env")
    args = parser().parse_args(["--out", str(tmp_path)])
    assert config_from_args(args).api_key == "from-env"


def test_offline_pnasnet_without_weights_is_exit_2(tmp_path, capsys):
    code = main(["--out", str(tmp_path / "o"), "--stages", "clean", "--classifier",
                 "pnasnet5large", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "--classifier-weights" in err and "efficientnet_lite0_pypi" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("bad", [
    ["--classes", "cat,unicorn"], ["--stages", "search,fetch"], ["--top-k", "0"],
    ["--val-fraction", "1.5"], ["--classifier", "no-such-net"], ["--download-processes", "0"],
])
def test_bad_options_are_exit_2(tmp_path, capsys, bad):
    assert main(["--out", str(tmp_path), "--api-key", "k", *bad]) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.parametrize("bad", [
    ["--max-upload-date", "99999999999999999999"], ["--min-upload-date", "99999999999999999999"],
    ["--max-upload-date", "2020-13-01"], ["--flickr-endpoint", "notaurl"],
    ["--flickr-endpoint", "file:///etc/passwd"], ["--flickr-endpoint", "http://h:99999999/"],
    ["--image-hosts", "http://cdn.example.org/"],
])
def test_bad_dates_endpoints_and_hosts_are_one_line_exit_2(tmp_path, capsys, bad):
    assert main(["--out", str(tmp_path / "o"), "--api-key", "longer-key", *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad[0]}") or "image_hosts" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_defaults_follow_the_contract(tmp_path):
    config = config_from_args(parser().parse_args(["--out", str(tmp_path), "--api-key", "k"]))
    assert len(config.classes) == 42 and config.per_class == 40_000
    assert config.licenses == DEFAULT_LICENSES == tuple(range(1, 11))
    assert config.stages == STAGES and config.clean.classifier == "pnasnet5large"
    assert config.download.max_side == 300 and config.rate_limit == 3600
    assert config.clean.top_k == 5 and config.group_by == "continent"
    assert config.coord_decimals == 2 and config.val_fraction == 0.05
    assert (config.download.workers, config.download.processes) == (32, 2)
    more = ["--out", str(tmp_path), "--api-key", "k", "--download-processes", "3", "--workers", "8"]
    download = config_from_args(parser().parse_args(more)).download
    assert (download.workers, download.processes) == (8, 3)


def _one_line_error(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_out_that_is_a_file_or_under_a_file_is_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for out, says in ((afile, "is a file"), (afile / "sub" / "out", "under the file")):
        code = main(["--out", str(out), "--stages", "shard", "--classifier", "none"])
        _one_line_error(capsys, code, says, str(afile))


def test_unwritable_out_is_one_line(tmp_path, capsys):
    import os

    if os.geteuid() == 0:  # root writes anywhere but on a read-only file system
        target = Path("/sys/noniid-quagmire-out")
        if not target.parent.is_dir() or os.access(target.parent, os.W_OK) and _can_mkdir(target):
            pytest.skip("no unwritable folder to try as root")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "out"
    code = main(["--out", str(target), "--stages", "shard", "--classifier", "none"])
    _one_line_error(capsys, code, str(target), "writable")


def _can_mkdir(path: Path) -> bool:
    try:
        path.mkdir()
    except OSError:
        return False
    path.rmdir()
    return True


def test_min_upload_date_after_the_default_max_is_one_line(tmp_path, capsys):
    code = main(["--out", str(tmp_path / "o"), "--api-key", "k", "--min-upload-date",
                 "2999-01-01"])
    _one_line_error(capsys, code, "--min-upload-date 2999-01-01", "after today")


@pytest.mark.parametrize("classes", ["", ",,,", " , "])
def test_empty_class_list_is_one_line(tmp_path, capsys, classes):
    code = main(["--out", str(tmp_path / "o"), "--api-key", "k", "--classes", classes])
    _one_line_error(capsys, code, "--classes", "names no class")
    assert not (tmp_path / "o").exists()


def test_corrupt_catalog_is_one_line_naming_the_file(tmp_path, capsys):
    (tmp_path / "catalog.sqlite").write_bytes(b"this is not SQLite " * 100)
    code = main(["--out", str(tmp_path), "--stages", "shard", "--classifier", "none"])
    _one_line_error(capsys, code, str(tmp_path / "catalog.sqlite"), "move it away")


@pytest.mark.parametrize("classifier", ["efficientnet_lite0_pypi", "resnet18", "pnasnet5large"])
@pytest.mark.parametrize("weights", ["missing", "garbage", "other_checkpoint"])
def test_bad_classifier_weights_are_one_line_for_every_classifier(tmp_path, capsys, classifier,
                                                                 weights):
    import torch

    path = tmp_path / f"{weights}.pt"
    if weights == "garbage":
        path.write_bytes(b"\x00 not a checkpoint " * 50)
    elif weights == "other_checkpoint":
        torch.save({"layer.weight": torch.zeros(3, 3)}, path)
    if classifier == "pnasnet5large" and weights != "missing":
        pytest.skip("pnasnet5large is large: its missing file is enough, the others share code")
    code = main(["--out", str(tmp_path / "o"), "--stages", "clean", "--classifier", classifier,
                 "--classifier-weights", str(path), "--device", "cpu"])
    _one_line_error(capsys, code, str(path), "--classifier-weights")
    assert not (tmp_path / "o").exists()


def test_every_cli_default_is_its_dataclass_default(tmp_path):
    """Parsing no option gives the config the dataclasses give (defaults live there only)."""
    from flickr_mammal.build import BuildConfig
    from flickr_mammal.dump.read import MetadataConfig
    from pipelines._cli import field_default
    from pipelines.build_dataset import OPTIONS

    args = parser().parse_args(["--out", str(tmp_path), "--api-key", "k"])
    assert config_from_args(args) == BuildConfig(out=tmp_path, api_key="k")
    for option in OPTIONS:  # each option, parsed default read back, is its field's default
        assert option.value(args) == field_default(option.owner, option.field), option.flag
    from tests.flickr_mammal import dump_fixtures

    dump = dump_fixtures.write_parquet(dump_fixtures.RULE_ROWS, tmp_path / "dump.parquet")
    args = parser().parse_args(["--out", str(tmp_path), "--metadata", str(dump)])
    assert config_from_args(args).metadata == MetadataConfig(str(dump))


def test_a_dataclass_default_changed_changes_the_cli(monkeypatch):
    import dataclasses

    from flickr_mammal.build import BuildConfig
    from flickr_mammal.download import DownloadConfig

    fields = {f.name: f for f in dataclasses.fields(BuildConfig)}
    monkeypatch.setattr(fields["per_class"], "default", 123)
    monkeypatch.setattr(fields["download"], "default_factory", lambda: DownloadConfig(workers=7))
    args = parser().parse_args(["--out", "x", "--api-key", "k"])
    assert (args.per_class, args.workers) == (123, 7)
    help_text = " ".join(parser().format_help().split())
    assert "candidates searched per class (default: 123)" in help_text


def test_image_side_is_the_stored_side_and_image_size_its_old_name(tmp_path, caplog):
    import logging

    args = parser().parse_args(["--out", str(tmp_path), "--api-key", "k", "--image-side", "64"])
    assert config_from_args(args).download.max_side == 64
    with caplog.at_level(logging.WARNING, logger="pipelines._cli"):
        args = parser().parse_args(["--out", str(tmp_path), "--api-key", "k", "--image-size", "48"])
    assert config_from_args(args).download.max_side == 48
    assert caplog.messages == ["--image-size is deprecated: use --image-side"]
    help_text = " ".join(parser().format_help().split())
    assert "--image-size" not in help_text
    assert "--image-side IMAGE_SIDE longest side (px) of the images the build stores" in help_text
