"""shard_index.class_names: a build's class names in label order, from its index rows."""

from __future__ import annotations

import pandas as pd
import pytest

from flickr_mammal.classes import CLASS_NAMES
from flickr_mammal.integrity import DatasetIntegrityError
from flickr_mammal.shard_index import class_names


def _index(pairs: list[tuple[int, str]]) -> pd.DataFrame:
    return pd.DataFrame({"key": [f"fm{i}" for i in range(len(pairs))],
                         "shard": "train-000000.tar", "label": [p[0] for p in pairs],
                         "class_name": [p[1] for p in pairs]})


def test_mammal_rows_give_all_42_names_held_or_not() -> None:
    assert class_names(_index([(7, CLASS_NAMES[7]), (41, CLASS_NAMES[41])])) == CLASS_NAMES


def test_other_classes_give_their_own_names_and_a_placeholder_for_a_label_with_no_row() -> None:
    assert class_names(_index([(0, "robin"), (2, "crow"), (0, "robin")])) == \
        ("robin", "label_1", "crow")
    assert class_names(_index([(0, "cat")])) == ("cat",)  # a mammal under another label


def test_an_index_without_names_keeps_the_label_ids() -> None:
    assert class_names(_index([(3, "x")]).drop(columns="class_name")) == CLASS_NAMES
    assert class_names(_index([(50, "x")]).drop(columns="class_name"))[50] == "label_50"


@pytest.mark.parametrize("pairs", [
    [(0, "robin"), (0, "robin"), (0, "crow")],      # one label, two names
    [(0, "robin"), (0, "robin"), (1, "robin")],     # one name, two labels
])
def test_rows_that_disagree_name_the_odd_sample(pairs) -> None:
    with pytest.raises(DatasetIntegrityError, match=r"sample fm2 in shard train-000000\.tar"):
        class_names(_index(pairs))
