import numpy as np
import pandas as pd
import pytest

import skewtools
from skewtools import partition


def test_lists_registered_schemes():
    assert {"iid", "label_skew"} <= set(skewtools.list_partitioners())


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="known: .*label_skew"):
        partition("no_such_scheme", [0, 1])


def test_unknown_and_missing_parameters_are_explained():
    with pytest.raises(TypeError, match="unknown parameter.*alpha"):
        partition("iid", [0, 1], num_partitions=2, alpha=0.1)
    with pytest.raises(TypeError, match="num_partitions"):
        partition("label_skew", [0, 1], noniid_fraction=0.5)


def test_recorded_params_re_create_the_partitioning():
    labels = np.repeat(np.arange(6), 9)
    p = partition("label_skew", labels, num_partitions=3, noniid_fraction=0.4, seed=5)
    assert partition(p.scheme, labels, **p.params) == p


def _manifest(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"key": [f"fm{i:03d}" for i in range(n)], "cls": rng.integers(0, 5, n)})


def test_manifest_rows_in_any_order_give_the_same_keys_per_partition():
    df = _manifest()
    shuffled = df.sample(frac=1.0, random_state=1)
    a = partition("label_skew", df, label_column="cls", num_partitions=3, noniid_fraction=0.5)
    b = partition("label_skew", shuffled, label_column="cls", num_partitions=3, noniid_fraction=0.5)
    keys_a = [set(df["key"].to_numpy()[ix]) for ix in a.indices]
    keys_b = [set(shuffled["key"].to_numpy()[ix]) for ix in b.indices]
    assert keys_a == keys_b
    assert a.params["label_column"] == "cls"


def test_manifest_without_label_column_says_which_option_to_pass():
    with pytest.raises(ValueError, match="label_column"):
        partition("label_skew", _manifest(), num_partitions=2, noniid_fraction=1.0)


def test_string_key_hash_is_stable_and_separates_keys():
    from skewtools.partitioners.registry import hash_strings

    keys = np.array(["fm1", "fm10", "fm01", "ñandú", ""])
    h = hash_strings(keys)
    assert len(set(h.tolist())) == 5
    assert np.array_equal(hash_strings(keys[::-1]), h[::-1])  # a pure function of each key
    assert np.array_equal(hash_strings(keys.astype("<U12"))[:3], h[:3])  # width does not matter


def test_order_by_none_keeps_row_positions():
    df = _manifest(6)
    p = partition("iid", df, num_partitions=2, method="round_robin", order_by=None)
    assert p.indices[0].tolist() == [0, 2, 4]
