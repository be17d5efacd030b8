import json

import numpy as np
import pytest

from skewtools import metrics, partition
from skewtools.report import format_report, skew_report, write_report


def _report():
    labels = np.repeat(np.arange(4), 5)
    p = partition("label_skew", labels, num_partitions=2, noniid_fraction=1.0)
    return skew_report(metrics.count_matrix(p, labels))


def test_table_and_summary_by_hand():
    r = _report()  # partition 0: classes 0, 2; partition 1: classes 1, 3
    assert r.table["size"].tolist() == [10, 10]
    assert r.table["classes_present"].tolist() == [2, 2]
    assert r.table["tv"].tolist() == pytest.approx([0.5, 0.5])
    assert r.pairwise_js.iloc[0, 1] == pytest.approx(1.0)
    assert r.summary["skew_score"] == pytest.approx(0.5)
    assert r.summary["size_gini"] == 0.0
    assert "skew_score" in format_report(r)


def test_write_report_files(tmp_path):
    paths = write_report(_report(), tmp_path, class_names=["a", "b", "c", "d"])
    for path in paths.values():
        assert path.stat().st_size > 0
    assert json.loads(paths["summary"].read_text())["num_partitions"] == 2
    assert paths["heatmap"].read_bytes()[:4] == b"\x89PNG"


def test_class_names_must_cover_the_classes(tmp_path):
    with pytest.raises(ValueError, match="class_names"):
        write_report(_report(), tmp_path, class_names=["a"])
