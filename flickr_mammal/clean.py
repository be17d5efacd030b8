"""Cleaning: keep a downloaded photo when an ImageNet classifier agrees it shows its mammal.

docs/reference.md §1: the paper cleaned its Flickr candidates with a pretrained ImageNet classifier
(PNASNet-5-Large); the exact rule is **unknown**. Our rule (**decision**): a photo of class c is
KEPT when any of c's ImageNet-1k indices (classes.py) is among the classifier's top-k
predictions (k = 5 by default), else REJECTED. Each record stores ``clean_score`` (probability
mass on c's indices) and ``clean_rank`` (best rank of any of c's indices, 0 = top-1), so users
can re-filter more strictly (e.g. ``clean_rank == 0`` or ``clean_score > 0.5``) without
re-running the classifier. Unreadable images become CLEAN_FAILED.

Inference is batched through a torch DataLoader (workers decode and preprocess with the model's
own pretrained config); on CUDA the model runs channels_last under bf16 autocast.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform, resolve_data_config
from torch import nn
from torch.utils.data import DataLoader, Dataset

from flickr_mammal._util import batched
from flickr_mammal.classes import get_class
from flickr_mammal.classifiers import load_classifier
from flickr_mammal.clean_config import (  # noqa: F401 - re-exported: clean's public API
    DEVICES,
    NO_CLASSIFIER,
    CleanConfig,
    keep_all,
)
from flickr_mammal.records import PhotoRecord, Status

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available; use --device cpu or auto")
    return torch.device(device)


class _Images(Dataset):
    """Image files -> (tensor, error); an unreadable file gives a zero tensor and its error."""

    def __init__(self, paths: list[Path], transform, shape: tuple[int, ...]) -> None:
        self.paths, self.transform, self.shape = paths, transform, shape

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        try:
            with Image.open(self.paths[i]) as im:
                return self.transform(im.convert("RGB")), ""
        except Exception as exc:  # any decode failure is data, not a crash
            return torch.zeros(self.shape), f"unreadable image: {type(exc).__name__}: {exc}"


@cache
def _imagenet_info() -> ImageNetInfo:
    return ImageNetInfo()


@cache
def _class_indices(class_name: str) -> torch.Tensor:
    """A class's ImageNet indices as an index tensor (built once per class, not per photo)."""
    return torch.tensor(get_class(class_name).imagenet_indices)


class Cleaner:
    """A loaded classifier plus its preprocessing; scores records' images."""

    def __init__(self, model: nn.Module, config: CleanConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        data_cfg = resolve_data_config({}, model=model)
        self.transform = create_transform(**data_cfg)
        self.input_shape = tuple(data_cfg["input_size"])
        self.model = model.to(self.device).eval()
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)

    @classmethod
    def load(cls, config: CleanConfig) -> Cleaner:
        """Load the configured classifier (raises ClassifierUnavailable without weights)."""
        return cls(load_classifier(config.classifier, config.weights), config)

    @torch.inference_mode()
    def predict(self, paths: list[Path]) -> tuple[torch.Tensor, list[str]]:
        """Softmax probabilities ``(len(paths), 1000)`` (float32, CPU) and per-image errors."""
        cuda = self.device.type == "cuda"
        loader = DataLoader(
            _Images(paths, self.transform, self.input_shape), batch_size=self.config.batch_size,
            num_workers=self.config.num_workers, pin_memory=cuda,
        )
        probs, errors = [], []
        for images, errs in loader:
            images = images.to(self.device, non_blocking=True)
            if cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = self.model(images)
            probs.append(logits.float().softmax(dim=-1).cpu())
            errors.extend(errs)
        return torch.cat(probs), errors

    def judge(self, record: PhotoRecord, probs: torch.Tensor, error: str) -> PhotoRecord:
        """One record's outcome from its image's probabilities."""
        if error:
            return record.evolve(status=Status.CLEAN_FAILED, error=error)
        class_probs = probs[_class_indices(record.class_name)]
        score = float(class_probs.sum())
        rank = int((probs > class_probs.max()).sum())
        if rank < self.config.top_k:
            return record.evolve(status=Status.KEPT, error="", clean_score=score,
                                 clean_rank=rank)
        top1 = _imagenet_info().index_to_description(int(probs.argmax()))
        return record.evolve(
            status=Status.REJECTED, clean_score=score, clean_rank=rank,
            error=f"rejected: best {record.class_name} index ranks {rank + 1}, "
                  f"top-1 is {top1!r}",
        )


def clean_records(records: Iterable[PhotoRecord], image_path, cleaner: Cleaner,
                  *, chunk_size: int | None = None) -> Iterator[PhotoRecord]:
    """Score each record's image (``image_path(photo_id)``) and yield it KEPT/REJECTED/FAILED.

    Records are taken in chunks (one DataLoader each), so the input may be a lazy stream.
    """
    chunk_size = chunk_size or cleaner.config.batch_size * 16
    for chunk in batched(records, chunk_size):
        probs, errors = cleaner.predict([Path(image_path(r.photo_id)) for r in chunk])
        for record, p, err in zip(chunk, probs, errors, strict=True):
            yield cleaner.judge(record, p, err)
