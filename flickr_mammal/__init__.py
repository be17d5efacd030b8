"""Flickr-Mammal: build the geo-tagged mammal dataset and read it as geographic partitions."""

from __future__ import annotations

from typing import Any

__all__ = ["load_partitions", "read_manifest", "to_hf_dataset"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing a light stage module does not pull in torch and webdataset.
    if name == "load_partitions":
        from flickr_mammal.reader import load_partitions

        return load_partitions
    if name == "to_hf_dataset":     # needs the optional extra "hf" only when called
        from flickr_mammal.hf import to_hf_dataset

        return to_hf_dataset
    if name == "read_manifest":
        from flickr_mammal.manifest import read_manifest

        return read_manifest
    raise AttributeError(f"module 'flickr_mammal' has no attribute {name!r}")
