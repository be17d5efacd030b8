"""The cleaning stage's options and its no-classifier path, free of torch and timm.

clean.py holds the classifier path (torch); this module is what a build that does not clean
with a classifier (``--classifier none``, or a search/download-only run) needs, so starting
one does not import torch (seconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from flickr_mammal.clean.classifiers import DEFAULT_CLASSIFIER, get_spec
from flickr_mammal.records import PhotoRecord, Status

NO_CLASSIFIER = "none"
DEVICES = ("auto", "cpu", "cuda")  # or "cuda:N"
PRECISIONS = ("auto", "fp32", "bf16")  # auto: bf16 on CUDA, fp32 on CPU


@dataclass(frozen=True)
class CleanConfig:
    """How to clean: which classifier, the top-k rule, and how to run inference."""

    classifier: str = DEFAULT_CLASSIFIER
    weights: str | None = None       # checkpoint file; None = the classifier's own weights
    top_k: int = 5
    device: str = "auto"
    batch_size: int = 32
    num_workers: int = 2             # DataLoader workers decoding images (persistent)
    precision: str = "auto"
    recheck_margin: float = 1.0      # bf16: decisions this close (in logits) are redone in fp32
    multi_gpu: bool = True           # CUDA: one process per visible GPU (clean/parallel.py)

    def __post_init__(self) -> None:
        if self.classifier != NO_CLASSIFIER:
            get_spec(self.classifier)  # raises listing the known names
        if not 1 <= self.top_k <= 1000:
            raise ValueError(f"top_k={self.top_k}: use a value between 1 and 1000 (paper: 5)")
        if self.device not in DEVICES and not (self.device.startswith("cuda:")
                                               and self.device[5:].isdigit()):
            raise ValueError(f"device={self.device!r}: use one of {', '.join(DEVICES)} or cuda:N")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if not self.recheck_margin >= 0:
            raise ValueError(f"recheck_margin={self.recheck_margin}: use a margin >= 0 logits")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: use a positive batch size")
        if self.num_workers < 0:
            raise ValueError(f"num_workers={self.num_workers}: use 0 (main process) or more")

    @property
    def enabled(self) -> bool:
        return self.classifier != NO_CLASSIFIER


def keep_all(records: Iterable[PhotoRecord]) -> Iterator[PhotoRecord]:
    """``--classifier none``: every downloaded image is KEPT, with no score."""
    for record in records:
        yield record.evolve(status=Status.KEPT, error="", clean_score=float("nan"),
                            clean_rank=-1)
