"""geo_partitions: Flower's integer partition ids map to sorted partition names."""

from __future__ import annotations

import logging

import pytest

from flickr_mammal.flower import continent_partitions, geo_partitions
from flickr_mammal.reader import load_partitions


def test_ids_follow_sorted_names_and_are_logged(geo_shard_dir, caplog):
    with caplog.at_level(logging.INFO, logger="flickr_mammal.flower"):
        fp = continent_partitions(geo_shard_dir)
    assert fp.names == {0: "Africa", 1: "Europe", 2: "Oceania"}
    assert fp.num_partitions == 3
    assert "0=Africa (5), 1=Europe (3), 2=Oceania (2)" in caplog.text
    expected = load_partitions(geo_shard_dir, by="continent")
    for pid, name in fp.names.items():
        assert fp.load_partition(pid).keys == expected[name].keys
    with pytest.raises(KeyError, match="num_supernodes=3"):
        fp.load_partition(3)


def test_other_sorts_with_the_names(geo_shard_dir):
    fp = geo_partitions(geo_shard_dir, by="country", min_size=2)
    # Australia, France, Kenya, South Africa have 2; the rest merge into "other".
    assert fp.names == {0: "Australia", 1: "France", 2: "Kenya", 3: "South Africa", 4: "other"}
    assert len(fp.load_partition(4)) == 2
