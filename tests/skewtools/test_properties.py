"""Properties every scheme keeps: coverage, disjointness, determinism, row-order independence."""

import numpy as np
import pandas as pd
import pytest

import skewtools
from skewtools import Partitioning, partition

SCHEMES = {
    "iid": {"num_partitions": 4},
    "label_skew": {"num_partitions": 4, "noniid_fraction": 0.6},
    "dirichlet": {"num_partitions": 4, "alpha": 0.3},
    "classes_per_partition": {"num_partitions": 4, "num_classes_per_partition": 2},
    "shards": {"num_partitions": 4, "shards_per_partition": 3},
    "quantity_skew": {"num_partitions": 4, "alpha": 1.0},
    "by_attribute": {"attribute": "continent", "min_size": 30},
    "mixed": {
        "attribute": "continent",
        "inner": "dirichlet",
        "inner_params": {"num_partitions": 2, "alpha": 1.0, "min_partition_size": 1},
    },
}
DROPS = {"classes_per_partition", "by_attribute", "mixed"}


def _manifest(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    return pd.DataFrame(
        {
            "key": [f"fm{i:04d}" for i in rng.permutation(n)],
            "label": rng.integers(0, 7, n),
            "continent": rng.choice(["Africa", "Asia", "Europe", None], n, p=[0.1, 0.3, 0.5, 0.1]),
        }
    )


def test_every_registered_scheme_is_covered_here():
    assert set(skewtools.list_partitioners()) == set(SCHEMES)


@pytest.mark.parametrize("name", sorted(SCHEMES))
@pytest.mark.parametrize("seed", [0, 1])
def test_coverage_determinism_and_row_order(name, seed):
    df = _manifest()
    params = dict(SCHEMES[name])
    if name != "by_attribute":
        params["seed"] = seed
    p = partition(name, df, **params)
    # Partitioning itself rejects overlaps and out-of-range indices; check coverage here.
    assert int(p.sizes.sum()) + p.dropped == len(df)
    if name not in DROPS:
        assert p.dropped == 0
    assert partition(name, df, **params) == p
    assert partition(p.scheme, df, **p.params) == p
    shuffled = df.sample(frac=1.0, random_state=seed + 5)
    q = partition(name, shuffled, **params)
    assert q.names == p.names
    for a, b in zip(p.indices, q.indices, strict=True):
        assert set(df["key"].to_numpy()[a]) == set(shuffled["key"].to_numpy()[b])


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_round_trips_through_a_file(tmp_path, name):
    p = partition(name, _manifest(), **SCHEMES[name])
    for suffix in (".json", ".parquet"):
        p.save(tmp_path / f"p{suffix}")
        assert Partitioning.load(tmp_path / f"p{suffix}") == p
