import numpy as np
import pandas as pd
import pytest

from skewtools import partition


def _manifest() -> pd.DataFrame:
    n = 120
    return pd.DataFrame(
        {
            "key": [f"fm{i}" for i in range(n)],
            "label": np.arange(n) % 4,
            "continent": np.where(np.arange(n) < 80, "Europe", "Asia"),
        }
    )


def test_label_skew_inside_each_continent():
    df = _manifest()
    p = partition(
        "mixed", df, attribute="continent", inner="label_skew",
        inner_params={"num_partitions": 2, "noniid_fraction": 1.0}, seed=1,
    )  # fmt: skip
    assert p.names == ("Europe/0", "Europe/1", "Asia/0", "Asia/1")
    assert p.sizes.tolist() == [40, 40, 20, 20]
    for name, ix in zip(p.names, p.indices, strict=True):
        assert set(df["continent"].to_numpy()[ix]) == {name.split("/")[0]}
        assert set(df["label"].to_numpy()[ix] % 2) == {int(name.split("/")[1])}


def test_groups_get_different_seeds_and_the_whole_is_deterministic():
    df = _manifest()
    kw = {"attribute": "continent", "inner": "iid", "inner_params": {"num_partitions": 2}}
    a = partition("mixed", df, seed=3, **kw)
    assert a == partition("mixed", df, seed=3, **kw)
    assert a != partition("mixed", df, seed=4, **kw)


def test_seed_belongs_to_mixed():
    with pytest.raises(ValueError, match="seed"):
        partition(
            "mixed", _manifest(), attribute="continent", inner="iid",
            inner_params={"num_partitions": 2, "seed": 1},
        )  # fmt: skip
