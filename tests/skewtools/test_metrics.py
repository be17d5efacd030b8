import numpy as np
import pandas as pd
import pytest

from skewtools import Partitioning, metrics, partition

UNIFORM = np.full(4, 0.25)
HALF = np.array([0.5, 0.5, 0.0, 0.0])
OTHER_HALF = np.array([0.0, 0.0, 0.5, 0.5])


def test_identical_distributions_give_zero():
    for fn in (metrics.total_variation, metrics.js_divergence, metrics.hellinger, metrics.emd):
        assert fn(UNIFORM, UNIFORM) == pytest.approx(0.0, abs=1e-12)
    assert metrics.emd(HALF, HALF, ground="ordinal") == pytest.approx(0.0)


def test_disjoint_distributions_give_the_maximum():
    assert metrics.total_variation(HALF, OTHER_HALF) == pytest.approx(1.0)
    assert metrics.js_divergence(HALF, OTHER_HALF) == pytest.approx(1.0)
    assert metrics.hellinger(HALF, OTHER_HALF) == pytest.approx(1.0)
    assert metrics.emd(HALF, OTHER_HALF) == pytest.approx(2.0)


def test_values_by_hand_against_uniform():
    assert metrics.total_variation(HALF, UNIFORM) == pytest.approx(0.5)
    # m = (3/8, 3/8, 1/8, 1/8): JS = (log2(4/3) + (1 - log2(3/2)) / 2) / 2
    js = (np.log2(4 / 3) + (1 - np.log2(1.5)) / 2) / 2
    assert metrics.js_divergence(HALF, UNIFORM) == pytest.approx(js)
    assert metrics.hellinger(HALF, UNIFORM) == pytest.approx(np.sqrt(1 - np.sqrt(0.5)))
    assert metrics.emd(HALF, UNIFORM) == pytest.approx(1.0)
    # CDFs (.5, 1, 1) vs (.25, .5, .75): 0.25 + 0.5 + 0.25
    assert metrics.emd(HALF, UNIFORM, ground="ordinal") == pytest.approx(1.0)


def test_count_matrix_effective_classes_gini_and_pairwise():
    counts = np.array([[5, 5, 0, 0], [0, 0, 5, 5], [2, 2, 2, 2]])
    assert metrics.effective_classes(counts) == pytest.approx([2.0, 2.0, 4.0])
    pair = metrics.pairwise_js(counts)
    assert pair[0, 1] == pytest.approx(1.0) and pair[0, 0] == pytest.approx(0.0)
    assert metrics.size_gini([10, 10, 10]) == 0.0
    assert metrics.size_gini([0, 10, 10]) == pytest.approx(1 / 3)  # 40 / (2 * 9 * 20/3)
    assert metrics.size_gini([0, 0, 30]) == pytest.approx(2 / 3)  # (P-1)/P


def test_skew_score_is_linear_in_the_noniid_fraction():
    labels = np.repeat(np.arange(10), 100)
    iid = partition("label_skew", labels, num_partitions=5, noniid_fraction=0.0)
    full = partition("label_skew", labels, num_partitions=5, noniid_fraction=1.0)
    assert metrics.skew_score(metrics.count_matrix(full, labels)) == pytest.approx(0.8)
    assert metrics.skew_score(metrics.count_matrix(iid, labels)) < 0.1


def test_count_matrix_by_hand_with_dropped_samples_and_fixed_classes():
    labels = np.array([0, 1, 1, 2, 2, 2])
    p = Partitioning((np.array([0, 1]), np.array([3, 4])), ("a", "b"), "hand", num_samples=6)
    counts = metrics.count_matrix(p, labels)
    assert counts.to_numpy().tolist() == [[1, 1, 0], [0, 0, 2]]
    assert list(counts.index) == ["a", "b"]
    wide = metrics.count_matrix(p, labels, classes=range(4))
    assert wide.to_numpy().tolist() == [[1, 1, 0, 0], [0, 0, 2, 0]]
    manifest = pd.DataFrame({"y": labels})
    assert metrics.count_matrix(p, manifest, label_column="y").equals(counts)
    with pytest.raises(ValueError, match="made from 6"):
        metrics.count_matrix(p, labels[:5])
