import json

import numpy as np
import pandas as pd
import pytest

from pipelines.skew_report import main, parse_param
from skewtools import Partitioning, partition


def test_parse_param_reads_json_values():
    assert parse_param("num_partitions=5") == ("num_partitions", 5)
    assert parse_param('inner_params={"alpha": 0.5}') == ("inner_params", {"alpha": 0.5})
    assert parse_param("attribute=continent") == ("attribute", "continent")


def test_npy_labels_end_to_end(tmp_path, capsys):
    labels = np.repeat(np.arange(10), 20)
    np.save(tmp_path / "y.npy", labels)
    out = tmp_path / "report"
    argv = [str(tmp_path / "y.npy"), "--scheme", "label_skew", "--param", "num_partitions=5",
            "--param", "noniid_fraction=1.0", "--param", "seed=3", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "skew_score" in printed and "classes_present" in printed
    table = pd.read_csv(out / "partitions.csv")
    assert table["classes_present"].tolist() == [2] * 5
    assert json.loads((out / "summary.json").read_text())["skew_score"] == pytest.approx(0.8)
    saved = Partitioning.load(out / "partitioning.json")
    assert saved == partition("label_skew", labels, num_partitions=5, noniid_fraction=1.0, seed=3)
    for png in ("heatmap.png", "stacked_bars.png"):
        assert (out / png).stat().st_size > 1000


def test_manifest_by_attribute_with_flickr_class_names(tmp_path):
    rng = np.random.default_rng(0)
    manifest = pd.DataFrame(
        {
            "key": [f"fm{i}" for i in range(300)],
            "label": rng.integers(0, 42, 300),
            "continent": rng.choice(["Africa", "Asia", "Europe"], 300),
        }
    )
    manifest.to_parquet(tmp_path / "manifest.parquet")
    out = tmp_path / "r"
    argv = [str(tmp_path / "manifest.parquet"), "--scheme", "by_attribute",
            "--param", "attribute=continent", "--class-names", "flickr_mammal",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    counts = pd.read_csv(out / "counts.csv", index_col=0)
    assert sorted(counts.index) == ["Africa", "Asia", "Europe"]
    assert counts.to_numpy().sum() == 300


def test_bad_input_returns_an_error_code(tmp_path, capsys):
    np.save(tmp_path / "y.npy", np.arange(4))
    argv = [str(tmp_path / "y.npy"), "--scheme", "nope", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "known:" in capsys.readouterr().err
    # The name is checked before any data is read (no Arrow thread pool to tear down).
    argv[0] = str(tmp_path / "never-read.parquet")
    assert main(argv) == 2
    assert "unknown partitioner 'nope'" in capsys.readouterr().err


def test_unknown_scheme_is_one_line_and_exit_2_every_time(tmp_path):
    """Once in ~20 runs this aborted (exit 134) in Arrow's thread-pool teardown after the
    manifest had been read: the name is now checked before any data is read."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    manifest = tmp_path / "manifest.parquet"
    pd.DataFrame({"key": [f"k{i}" for i in range(40)], "label": np.arange(40) % 4}).to_parquet(
        manifest)
    for _ in range(10):
        run = subprocess.run(
            [sys.executable, "-m", "pipelines.skew_report", str(manifest), "--scheme", "nope",
             "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120, cwd=repo,
            env=env)
        assert run.returncode == 2, run.stderr
        assert run.stderr.count("\n") == 1 and "unknown partitioner 'nope'" in run.stderr
    assert not (tmp_path / "r").exists()
