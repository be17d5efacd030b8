"""Flickr-Mammal for studies (docs/reference.md §1, §3): geographic partitions streamed from shards.

``noniid_fraction = 1.0`` gives the natural partitions (``dataset.partition_by``: continent by
default; the first ``num_partitions`` in name order); ``0.0`` gives the IID control: the same
training samples dealt round-robin into N partitions in a seeded hash order (each partition reads
only its own samples), the paper's IID rule. Other fractions have no meaning for natural
partitions and are refused. The validation set is a
uniform sample of ``val_samples`` images of the "val" split (fixed: the same for every run),
held in memory. Images: resize, centre crop to ``image_size`` (224 by default), ImageNet
normalisation. Every stream comes from :func:`flickr_batch_sources`; ``num_workers`` (a dataset
option, default 0) decodes each partition's JPEGs in that many DataLoader worker processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from training.datasets import IterableBatchSource, PartitionData, materialize
from training.study.flickr_loader import PersistentBatchSource  # one loader per partition


def flickr_batch_sources(root: str | Path, by: str | None = "continent", split: str = "train",
                         transform: Any = None, num_workers: int = 0,
                         **options: Any) -> dict[str, IterableBatchSource]:
    """Flickr-Mammal's geographic partitions as batch sources, name -> source (name order).

    ``options`` go to :func:`flickr_mammal.load_partitions` (``shuffle_buffer``, ``seed``,
    ``min_size``, ...); ``by=None`` gives one partition, "all". ``num_workers``: DataLoader
    worker processes per partition that decode and transform its JPEGs (0: in this thread);
    workers divide a partition's shards, so more workers than shards sit idle.
    """
    from flickr_mammal import load_partitions  # optional: only Flickr studies need the shards

    parts: Mapping[str, Iterable] = load_partitions(root, by=by, split=split, transform=transform,
                                                    **options)
    return {name: PersistentBatchSource(dataset, num_workers) for name, dataset in parts.items()}


def _transform(image_size: int) -> Any:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(int(image_size * 256 / 224)), transforms.CenterCrop(image_size),
        transforms.ToTensor(), transforms.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)])



class FlickrSource(Protocol):
    """What the study reads of its ``[dataset]`` spec (training.study.data_specs.FlickrMammalSpec,
    defaults resolved there)."""

    root: str
    partition_column: str
    crop: int
    workers: int
    val_limit: int

def flickr_partitions(spec: FlickrSource, num_partitions: int, noniid_fraction: float,
                      seed: int) -> tuple[list[IterableBatchSource], PartitionData]:
    """Training batch sources (one per partition) and the in-memory validation set of the
    study's ``[dataset]`` (its typed spec, defaults resolved there)."""
    tf = _transform(spec.crop)
    common = {"split": "train", "transform": tf, "shuffle_buffer": 1000, "seed": seed,
              "num_workers": spec.workers}
    if noniid_fraction == 1.0:
        parts = flickr_batch_sources(spec.root, by=spec.partition_column, **common)
        names = list(parts)[:num_partitions]
        if len(names) < num_partitions:
            raise ValueError(f"{len(names)} geographic partitions ({names}) but "
                             f"num_partitions={num_partitions}; lower it")
        train = [parts[n] for n in names]
    elif noniid_fraction == 0.0:     # the same samples dealt into IID partitions
        train = list(flickr_batch_sources(spec.root, by=None, deal=num_partitions,
                                          **common).values())
    else:
        raise ValueError(f"noniid_fraction={noniid_fraction}: Flickr-Mammal's partitions are "
                         "natural; use 1.0 (geographic) or 0.0 (IID control)")
    # A uniform sample of the val split (the same for every run), not its first shards' images,
    # which would be one continent's.
    limit = spec.val_limit
    val_all = flickr_batch_sources(spec.root, by=None, split="val", transform=tf,
                                   max_samples=limit, seed=0)["all"].samples
    val = materialize(val_all, limit=limit)
    return train, val
