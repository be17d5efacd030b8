"""Flickr-Mammal: build the geo-tagged mammal dataset and read it as geographic partitions."""

from __future__ import annotations

from typing import Any

__all__ = ["load_partitions"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing a light stage module does not pull in torch and webdataset.
    if name == "load_partitions":
        from flickr_mammal.reader import load_partitions

        return load_partitions
    raise AttributeError(f"module 'flickr_mammal' has no attribute {name!r}")
