"""A study's ``[dataset]`` table as a typed, validated spec that builds its own partitions
(docs/reference.md §1, §3).

:func:`dataset_spec` parses the table into :class:`DigitsSpec`, :class:`Cifar10Spec` or
:class:`FlickrMammalSpec` (unknown keys and bad values raise ValueError naming the key and the
fix), and :meth:`DatasetSpec.check_partitions` runs the study's partitioner once on a tiny label
array at load, so a bad partitioner or ``partitioner_params`` stops the study before its first run.
Each spec's :meth:`~DatasetSpec.partitions` gives a run's training partitions, validation set and
model shape; both engines call it.

What ``noniid_fraction`` means is the spec's business:

- digits / CIFAR-10 (label arrays): a partitioner with a ``noniid_fraction`` parameter
  (``label_skew``) gets it; any other partitioner (``dirichlet``, ``shards``, ...) has its own
  skew parameters in ``partitioner_params``, and its fraction is 0.0 (the IID control: the ``iid``
  partitioner, the paper's IID rule) or 1.0 (the partitioner).
- Flickr-Mammal: 1.0 = the natural geographic partitions, 0.0 = the IID control.

Optional keys left out stay out of :meth:`DatasetSpec.to_dict` (the run's identity), so run ids
of existing configs do not change when a default is given a name here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

import skewtools
from training.datasets import (
    DIGITS_IMAGE_SIZE,
    StudyDataset,
    load_cifar10,
    load_digits_dataset,
    split_partitions,
)

LABEL_SPLITS = (0.0, 1.0)   # the fractions a partitioner without a degree of skew understands


@dataclass(frozen=True)
class DatasetSpec:
    """Base of the dataset specs: a ``[dataset]`` table, validated."""

    name: ClassVar[str]
    default_partitioner: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """The table as given (``name`` first, keys left out stay out): JSON for a RunSpec."""
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in fields(self)
                                      if getattr(self, f.name) is not None}}

    def check_partitions(self, partitioner: str, params: dict[str, Any],
                         num_partitions: set[int], fractions: set[float]) -> None:
        """Raise ValueError (saying how to fix it) if these partitions cannot be built."""
        raise NotImplementedError

    def partitions(self, partitioner: str, params: dict[str, Any], num_partitions: int,
                   noniid_fraction: float, seed: int, rank: int | None = None
                   ) -> tuple[list[Any], Any, tuple[int, int, int]]:
        """Training partitions (all, or only partition ``rank``'s), the validation set and the
        model's (classes, channels, image size)."""
        raise NotImplementedError


def _positive_int(spec: str, key: str, value: Any, example: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"[dataset] {key} = {value!r} ({spec}): give a whole number >= 1, "
                         f"e.g. {key} = {example}")


def _path(spec: str, key: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"[dataset] {key} = {value!r} ({spec}): give the folder as a string, "
                         f'e.g. {key} = "data/{spec}"')


@dataclass(frozen=True)
class LabelDatasetSpec(DatasetSpec):
    """A dataset held in memory as a label array, partitioned by skewtools."""

    default_partitioner: ClassVar[str] = "label_skew"
    num_classes: ClassVar[int] = 10

    def load(self) -> StudyDataset:
        return _cached_load(self)

    def _load(self) -> StudyDataset:
        raise NotImplementedError

    def partition_indices(self, labels: np.ndarray, partitioner: str, params: dict[str, Any],
                          num_partitions: int, noniid_fraction: float, seed: int) -> list:
        """Each partition's indices into ``labels`` (skewtools, seeded)."""
        if _takes_fraction(partitioner):
            part = skewtools.partition(partitioner, labels, num_partitions=num_partitions,
                                       seed=seed, noniid_fraction=noniid_fraction, **params)
        elif noniid_fraction == 0.0:     # the IID control
            part = skewtools.partition("iid", labels, num_partitions=num_partitions, seed=seed)
        elif noniid_fraction == 1.0:
            part = skewtools.partition(partitioner, labels, num_partitions=num_partitions,
                                       seed=seed, **params)
        else:
            raise ValueError(_fraction_error(partitioner, [noniid_fraction]))
        return list(part.indices)

    def check_partitions(self, partitioner: str, params: dict[str, Any],
                         num_partitions: set[int], fractions: set[float]) -> None:
        skewtools.get_partitioner(partitioner)       # unknown: ValueError listing the known
        if not _takes_fraction(partitioner) and not fractions <= set(LABEL_SPLITS):
            raise ValueError(_fraction_error(partitioner, sorted(fractions - set(LABEL_SPLITS))))
        # 100 samples of each class: enough for any sensible partitioning of a real dataset
        labels = np.repeat(np.arange(self.num_classes), 100)
        for n in sorted(num_partitions):
            for frac in sorted(fractions):
                try:
                    self.partition_indices(labels, partitioner, params, n, frac, seed=0)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"partitioner {partitioner!r} with partitioner_params "
                                     f"{params} (num_partitions={n}, noniid_fraction={frac}, "
                                     f"tried on {len(labels)} balanced labels): {exc}; set them in "
                                     "partitioner_params") from None

    def partitions(self, partitioner: str, params: dict[str, Any], num_partitions: int,
                   noniid_fraction: float, seed: int, rank: int | None = None
                   ) -> tuple[list[Any], Any, tuple[int, int, int]]:
        data = self.load()
        indices = self.partition_indices(data.train.y.numpy(), partitioner, params,
                                         num_partitions, noniid_fraction, seed)
        indices = indices if rank is None else [indices[rank]]
        return (split_partitions(data.train, indices), data.val,
                (data.num_classes, data.in_channels, data.image_size))


def _takes_fraction(partitioner: str) -> bool:
    return "noniid_fraction" in inspect.signature(skewtools.get_partitioner(partitioner)).parameters


def _fraction_error(partitioner: str, bad: list[float]) -> str:
    return (f"noniid_fractions {bad}: partitioner {partitioner!r} has no degree of skew (set it "
            "in partitioner_params); use 0.0 (the IID control) or 1.0 (the partitioner), or "
            'partitioner = "label_skew" for x% non-IID')


@lru_cache(maxsize=2)
def _cached_load(spec: LabelDatasetSpec) -> StudyDataset:
    """The dataset (cached: every run of a study shares it)."""
    return spec._load()


@dataclass(frozen=True)
class DigitsSpec(LabelDatasetSpec):
    """scikit-learn's digits, embedded and offline (``training.datasets.load_digits_dataset``)."""

    name: ClassVar[str] = "digits"
    image_size: int | None = None      # DIGITS_IMAGE_SIZE when left out
    val_fraction: float | None = None  # 0.2
    split_seed: int | None = None      # 0

    def __post_init__(self) -> None:
        _positive_int("digits", "image_size", self.image_size, 8)
        vf = self.val_fraction
        if vf is not None and (isinstance(vf, bool) or not isinstance(vf, int | float)
                               or not 0 < vf < 1):
            raise ValueError(f"[dataset] val_fraction = {vf!r} (digits): give a fraction in "
                             "(0, 1), e.g. val_fraction = 0.2")
        seed = self.split_seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"[dataset] split_seed = {seed!r} (digits): give a whole number "
                             ">= 0, e.g. split_seed = 0")

    def _load(self) -> StudyDataset:
        return load_digits_dataset(image_size=self.image_size or DIGITS_IMAGE_SIZE,
                                   val_fraction=float(self.val_fraction or 0.2),
                                   seed=self.split_seed or 0)


@dataclass(frozen=True)
class Cifar10Spec(LabelDatasetSpec):
    """CIFAR-10 from a local torchvision-format folder (``root/cifar-10-batches-py``)."""

    name: ClassVar[str] = "cifar10"
    root: str = ""

    def __post_init__(self) -> None:
        _path("cifar10", "root", self.root)

    def _load(self) -> StudyDataset:
        return load_cifar10(self.root)


@dataclass(frozen=True)
class FlickrMammalSpec(DatasetSpec):
    """Flickr-Mammal streamed from its shards (``training.study.flickr``)."""

    name: ClassVar[str] = "flickr_mammal"
    default_partitioner: ClassVar[str] = "by_attribute"
    # the defaults of the keys left out (kept out of to_dict: run ids do not change)
    DEFAULT_PARTITION_BY: ClassVar[str] = "continent"
    DEFAULT_IMAGE_SIZE: ClassVar[int] = 224
    DEFAULT_VAL_SAMPLES: ClassVar[int] = 5000
    root: str = ""
    partition_by: str | None = None    # DEFAULT_PARTITION_BY when left out
    image_size: int | None = None      # the crop's side; DEFAULT_IMAGE_SIZE
    val_samples: int | None = None     # DEFAULT_VAL_SAMPLES
    num_workers: int | None = None     # DataLoader workers decoding each partition's JPEGs (0)

    @property
    def partition_column(self) -> str:
        return self.partition_by or self.DEFAULT_PARTITION_BY

    @property
    def crop(self) -> int:
        return self.image_size or self.DEFAULT_IMAGE_SIZE

    @property
    def val_limit(self) -> int:
        return self.val_samples or self.DEFAULT_VAL_SAMPLES

    @property
    def workers(self) -> int:
        return self.num_workers or 0

    def __post_init__(self) -> None:
        _path("flickr_mammal", "root", self.root)
        if self.num_workers is not None and (isinstance(self.num_workers, bool)
                                             or not isinstance(self.num_workers, int)
                                             or self.num_workers < 0):
            raise ValueError(f"[dataset] num_workers = {self.num_workers!r} (flickr_mammal): use "
                             "0 (decode in the training thread) or more worker processes")
        if self.partition_by is not None and (not isinstance(self.partition_by, str)
                                              or not self.partition_by):
            raise ValueError(f"[dataset] partition_by = {self.partition_by!r} (flickr_mammal): "
                             'name a manifest column, e.g. partition_by = "continent"')
        _positive_int("flickr_mammal", "image_size", self.image_size, 224)
        _positive_int("flickr_mammal", "val_samples", self.val_samples, 5000)

    def check_partitions(self, partitioner: str, params: dict[str, Any],
                         num_partitions: set[int], fractions: set[float]) -> None:
        if partitioner != "by_attribute" or params:
            raise ValueError(f"partitioner = {partitioner!r} with partitioner_params {params}: "
                             "Flickr-Mammal's partitions are natural ([dataset] partition_by); "
                             'set partitioner = "by_attribute" and no partitioner_params')
        if not fractions <= set(LABEL_SPLITS):
            raise ValueError(f"noniid_fractions {sorted(fractions - set(LABEL_SPLITS))}: "
                             "Flickr-Mammal's partitions are natural; use 1.0 (geographic) or "
                             "0.0 (IID control)")

    def partitions(self, partitioner: str, params: dict[str, Any], num_partitions: int,
                   noniid_fraction: float, seed: int, rank: int | None = None
                   ) -> tuple[list[Any], Any, tuple[int, int, int]]:
        from flickr_mammal.shard_index import class_names, open_split
        from training.study.flickr import flickr_partitions

        # streamed from shards, opened lazily: building every partition's source is cheap
        train, val = flickr_partitions(self, num_partitions, noniid_fraction, seed)
        # the build's own class list (42 mammals, or whatever --classes-file gave it)
        shape = (len(class_names(open_split(self.root, "train")[0])), 3, self.crop)
        return (train if rank is None else [train[rank]]), val, shape


SPECS: dict[str, type[DatasetSpec]] = {s.name: s for s in (DigitsSpec, Cifar10Spec,
                                                            FlickrMammalSpec)}


def dataset_spec(table: Any) -> DatasetSpec:
    """Parse a ``[dataset]`` table (a dict with ``name``) into its typed spec."""
    if not isinstance(table, dict):
        raise ValueError(f"[dataset] must be a table, got {table!r}; e.g. [dataset] "
                         'name = "digits"')
    name = table.get("name")
    if name not in SPECS:
        raise ValueError(f"dataset.name={name!r}; choose one of {', '.join(SPECS)}")
    cls = SPECS[name]
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(table) - {"name", *known})
    if unknown:
        raise ValueError(f"[dataset] {name} has no key {', '.join(unknown)}; its keys: "
                         f"{', '.join(known)}")
    if "root" in known and "root" not in table:
        raise ValueError(f"[dataset] {name} needs root = \"...\" (the dataset's folder)")
    return cls(**{k: v for k, v in table.items() if k != "name"})
