"""Cleaning: keep a downloaded photo when an ImageNet classifier agrees it shows its mammal.

docs/reference.md §1: the paper cleaned its Flickr candidates with a pretrained ImageNet classifier
(PNASNet-5-Large); the exact rule is **unknown**. Our rule (**decision**): a photo of class c is
KEPT when any of c's ImageNet-1k indices (classes.py) is among the classifier's top-k
predictions (k = 5 by default), else REJECTED. Each record stores ``clean_score`` (probability
mass on c's indices) and ``clean_rank`` (best rank of any of c's indices, 0 = top-1), so users
can re-filter more strictly (e.g. ``clean_rank == 0`` or ``clean_score > 0.5``) without
re-running the classifier. Unreadable images become CLEAN_FAILED.

Inference (GPU-minded, tested on CPU): one DataLoader per :class:`Cleaner` whose workers persist
across chunks (a sampler in the main process hands each chunk's paths to the same workers);
the decision (score, rank, top-1, margin) is computed on the device and copied to the host once
per chunk, never per batch. On CUDA the model runs channels_last under bf16 autocast; since a
decision must not depend on the device or precision, photos whose decision is within
``recheck_margin`` logits of flipping (the class's best logit near the k-th / (k+1)-th largest)
are scored again in fp32, and that result is the one kept. ``parallel.clean_on_devices``
runs one process per visible GPU over disjoint chunks of records.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform, resolve_data_config
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from flickr_mammal._util import batched
from flickr_mammal.classes import CLASSES, get_class
from flickr_mammal.clean.classifiers import load_classifier
from flickr_mammal.clean.config import (  # noqa: F401 - re-exported: clean's public API
    DEVICES,
    NO_CLASSIFIER,
    PRECISIONS,
    CleanConfig,
    keep_all,
)
from flickr_mammal.records import PhotoRecord, Status

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available; use --device cpu or auto")
    return torch.device(device)


class _Images(Dataset):
    """A path -> (tensor, error, worker pid); an unreadable file gives zeros and its error.

    Keyed by path (the sampler yields paths), so persistent workers serve every chunk.
    """

    def __init__(self, transform, shape: tuple[int, ...]) -> None:
        self.transform, self.shape = transform, shape

    def __getitem__(self, path: str) -> tuple[torch.Tensor, str, int]:
        try:
            with Image.open(path) as im:
                return self.transform(im.convert("RGB")), "", os.getpid()
        except Exception as exc:  # any decode failure is data, not a crash
            return (torch.zeros(self.shape), f"unreadable image: {type(exc).__name__}: {exc}",
                    os.getpid())


class _Paths(Sampler[str]):
    """The current chunk's paths; iterated in the main process each time the loader starts."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


@cache
def _imagenet_info() -> ImageNetInfo:
    return ImageNetInfo()


@cache
def _class_indices(class_name: str) -> torch.Tensor:
    """A class's ImageNet indices as an index tensor (built once per class, not per photo)."""
    return torch.tensor(get_class(class_name).imagenet_indices)


_CLASS_ROW = {c.name: i for i, c in enumerate(CLASSES)}


def _class_masks() -> torch.Tensor:
    """``(num classes, 1000)`` bool: each class's ImageNet indices."""
    masks = torch.zeros(len(CLASSES), 1000, dtype=torch.bool)
    for i, c in enumerate(CLASSES):
        masks[i, list(c.imagenet_indices)] = True
    return masks


@dataclass(frozen=True)
class _Decision:
    score: float
    rank: int
    top1: int
    margin: float  # logits between the class's best and the top-k boundary


class Cleaner:
    """A loaded classifier plus its preprocessing and persistent loader; scores images."""

    def __init__(self, model: nn.Module, config: CleanConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        data_cfg = resolve_data_config({}, model=model)
        self.transform = create_transform(**data_cfg)
        self.input_shape = tuple(data_cfg["input_size"])
        self.model = model.to(self.device).eval()
        cuda = self.device.type == "cuda"
        if cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        precision = config.precision if config.precision != "auto" else (
            "bf16" if cuda else "fp32")
        self.bf16 = precision == "bf16"
        self._masks = _class_masks().to(self.device)
        self._paths = _Paths()
        self._loader = DataLoader(
            _Images(self.transform, self.input_shape), batch_size=config.batch_size,
            sampler=self._paths, num_workers=config.num_workers, pin_memory=cuda,
            persistent_workers=config.num_workers > 0,
        )
        self.worker_pids: set[int] = set()  # processes that decoded images (persistence check)
        self.rechecked = 0                   # decisions redone in fp32

    @classmethod
    def load(cls, config: CleanConfig) -> Cleaner:
        """Load the configured classifier (raises ClassifierUnavailable without weights)."""
        return cls(load_classifier(config.classifier, config.weights), config)

    def _batches(self, paths: list[Path]) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """Device tensors and errors of ``paths``, in order, from the persistent workers."""
        self._paths.paths = [str(p) for p in paths]
        for images, errors, pids in self._loader:
            self.worker_pids.update(pids.tolist())
            images = images.to(self.device, non_blocking=True)
            if self.device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, list(errors)

    def _logits(self, images: torch.Tensor, bf16: bool) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            return self.model(images).float()

    @torch.inference_mode()
    def predict(self, paths: list[Path]) -> tuple[torch.Tensor, list[str]]:
        """Softmax probabilities ``(len(paths), 1000)`` (float32, CPU) and per-image errors."""
        probs, errors = [], []
        for images, errs in self._batches(paths):
            probs.append(self._logits(images, self.bf16).softmax(dim=-1))
            errors.extend(errs)
        return torch.cat(probs).cpu(), errors

    @torch.inference_mode()
    def decide(self, paths: list[Path],
               class_names: list[str]) -> tuple[list[_Decision], list[str]]:
        """Each image's decision for its class; one host copy per call (not per batch)."""
        rows = torch.tensor([_CLASS_ROW[name] for name in class_names])
        table, errors = self._run(paths, rows, self.bf16)
        table = table.cpu()  # (n, 4): score, rank, top1, margin
        if self.bf16 and self.config.recheck_margin > 0:
            close = [i for i, (m, err) in enumerate(zip(table[:, 3].tolist(), errors,
                                                        strict=True))
                     if not err and m < self.config.recheck_margin]
            if close:  # near the top-k boundary: bf16 rounding could flip it, fp32 decides
                self.rechecked += len(close)
                fixed, _ = self._run([paths[i] for i in close], rows[close], False)
                table[close] = fixed.cpu()
        return [_Decision(s, int(r), int(t), m) for s, r, t, m in table.tolist()], errors

    def _run(self, paths: list[Path], rows: torch.Tensor,
             bf16: bool) -> tuple[torch.Tensor, list[str]]:
        parts, errors = [], []
        for images, errs in self._batches(paths):
            batch_rows = rows[len(errors):len(errors) + len(errs)]
            parts.append(self._decide(self._logits(images, bf16),
                                      batch_rows.to(self.device, non_blocking=True)))
            errors.extend(errs)
        return torch.cat(parts), errors

    def _decide(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Score, rank, top-1 and margin per image, on the device (no host sync)."""
        k = self.config.top_k
        masks = self._masks[rows]
        score = (logits.softmax(dim=-1) * masks).sum(dim=1)
        best = logits.masked_fill(~masks, -math.inf).amax(dim=1)
        rank = (logits > best[:, None]).sum(dim=1)
        top = logits.topk(min(k + 1, logits.shape[1]), dim=1).values
        if k < logits.shape[1]:
            margin = torch.where(rank < k, best - top[:, k], top[:, k - 1] - best)
        else:
            margin = torch.full_like(best, math.inf)
        return torch.stack([score, rank.float(), logits.argmax(dim=1).float(), margin], dim=1)

    def judge(self, record: PhotoRecord, probs: torch.Tensor, error: str) -> PhotoRecord:
        """One record's outcome from its image's probabilities (see :meth:`decide`)."""
        if error:
            return record.evolve(status=Status.CLEAN_FAILED, error=error)
        class_probs = probs[_class_indices(record.class_name)]
        rank = int((probs > class_probs.max()).sum())
        return self.outcome(record, _Decision(float(class_probs.sum()), rank,
                                              int(probs.argmax()), math.nan), "")

    def outcome(self, record: PhotoRecord, d: _Decision, error: str) -> PhotoRecord:
        if error:
            return record.evolve(status=Status.CLEAN_FAILED, error=error)
        if d.rank < self.config.top_k:
            return record.evolve(status=Status.KEPT, error="", clean_score=d.score,
                                 clean_rank=d.rank)
        top1 = _imagenet_info().index_to_description(d.top1)
        return record.evolve(
            status=Status.REJECTED, clean_score=d.score, clean_rank=d.rank,
            error=f"rejected: best {record.class_name} index ranks {d.rank + 1}, "
                  f"top-1 is {top1!r}",
        )


def clean_records(records: Iterable[PhotoRecord], image_path: Callable[[str], Path],
                  cleaner: Cleaner, *, chunk_size: int | None = None) -> Iterator[PhotoRecord]:
    """Score each record's image (``image_path(photo_id)``) and yield it KEPT/REJECTED/FAILED.

    Records are taken in chunks (the loader's workers persist across them), so the input may
    be a lazy stream.
    """
    chunk_size = chunk_size or cleaner.config.batch_size * 16
    for chunk in batched(records, chunk_size):
        decisions, errors = cleaner.decide([Path(image_path(r.photo_id)) for r in chunk],
                                           [r.class_name for r in chunk])
        for record, d, err in zip(chunk, decisions, errors, strict=True):
            yield cleaner.outcome(record, d, err)

