import pandas as pd
import pytest

from skewtools import partition

MANIFEST = pd.DataFrame(
    {
        "continent": ["Europe"] * 5 + ["Asia"] * 3 + ["Africa", None, "Oceania"],
        "label": range(11),
    }
)


def _groups(p):
    values = MANIFEST["continent"].to_numpy()
    return {n: values[ix].tolist() for n, ix in zip(p.names, p.indices, strict=True)}


def test_one_partition_per_value_largest_first_missing_dropped():
    p = partition("by_attribute", MANIFEST, attribute="continent")
    assert p.names == ("Europe", "Asia", "Africa", "Oceania")  # ties by name
    assert p.sizes.tolist() == [5, 3, 1, 1]
    assert p.dropped == 1


def test_small_groups_merge_into_other_or_are_dropped():
    merged = partition("by_attribute", MANIFEST, attribute="continent", min_size=2)
    assert merged.names == ("Europe", "Asia", "other")
    assert sorted(_groups(merged)["other"]) == ["Africa", "Oceania"]
    dropped = partition("by_attribute", MANIFEST, attribute="continent", min_size=2, small="drop")
    assert dropped.names == ("Europe", "Asia")
    assert dropped.dropped == 3


def test_top_n_and_missing_group():
    p = partition("by_attribute", MANIFEST, attribute="continent", top_n=1, missing="group")
    assert p.names == ("Europe", "other")
    assert p.sizes.tolist() == [5, 6]
    q = partition("by_attribute", MANIFEST, attribute="continent", missing="group")
    assert "(missing)" in q.names and q.dropped == 0


def test_plain_labels_have_no_columns():
    with pytest.raises(ValueError, match="manifest DataFrame"):
        partition("by_attribute", [0, 1], attribute="continent")
    with pytest.raises(ValueError, match="no column 'country'"):
        partition("by_attribute", MANIFEST, attribute="country")


def test_missing_values_count_as_missing():
    p = partition("by_attribute", MANIFEST, attribute="continent", missing_values=["Oceania"])
    assert p.names == ("Europe", "Asia", "Africa")
    assert p.dropped == 2
