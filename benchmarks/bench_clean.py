"""Cleaning throughput (images/s) of flickr_mammal.clean, against the model-only limit.

    python benchmarks/bench_clean.py [--images 96] [--threads 1] [--workers 0] [--pnasnet]

End-to-end = ``clean_records`` on JPEG files (decode + resize + crop + forward + judge). The
limit, in the same run, is the bare forward pass on already-preprocessed tensors of the same
batch size: the ratio says how much the data path costs on top of the network. The default
classifier is the offline ``efficientnet_lite0_pypi``; ``--pnasnet`` also times the paper's
PNASNet-5-Large architecture (random weights: speed only, never used to clean).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from skimage import data as skdata

from flickr_mammal.classifiers import load_classifier
from flickr_mammal.clean import CleanConfig, Cleaner, clean_records
from flickr_mammal.records import PhotoRecord, Status


def make_images(folder: Path, n: int, seed: int = 0) -> list[PhotoRecord]:
    """``n`` 300 px JPEG crops of scikit-image photos, as download would store them."""
    rng = np.random.default_rng(seed)
    sources = [skdata.chelsea(), skdata.astronaut(), skdata.coffee()]
    records = []
    for i in range(n):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        y, x = rng.integers(0, h // 4), rng.integers(0, w // 4)
        crop = Image.fromarray(src[y:y + 3 * h // 4, x:x + 3 * w // 4])
        crop.thumbnail((300, 300))
        crop.save(folder / f"{i}.jpg", quality=90)
        records.append(PhotoRecord(str(i), "o", "cat", 6, 0.0, 0.0, status=Status.DOWNLOADED))
    return records


def time_clean(cleaner: Cleaner, records: list[PhotoRecord], folder: Path) -> float:
    list(clean_records(records[: cleaner.config.batch_size], lambda p: folder / f"{p}.jpg",
                       cleaner))  # warm-up
    start = time.perf_counter()
    out = list(clean_records(records, lambda p: folder / f"{p}.jpg", cleaner))
    assert len(out) == len(records)
    return len(records) / (time.perf_counter() - start)


@torch.inference_mode()
def time_forward(model: torch.nn.Module, shape: tuple[int, ...], n: int, batch: int) -> float:
    x = torch.randn(batch, *shape)
    model(x)  # warm-up
    start = time.perf_counter()
    for _ in range(max(1, n // batch)):
        model(x)
    return max(1, n // batch) * batch / (time.perf_counter() - start)


def bench(name: str, model: torch.nn.Module, records, folder, args, batch: int) -> None:
    config = CleanConfig(name, device="cpu", batch_size=batch, num_workers=args.workers)
    cleaner = Cleaner(model, config)
    e2e = time_clean(cleaner, records, folder)
    limit = time_forward(cleaner.model, cleaner.input_shape, len(records), batch)
    print(f"{name:24s} input {cleaner.input_shape[1]}px  end-to-end {e2e:7.1f} img/s  "
          f"forward-only limit {limit:7.1f} img/s  ratio {e2e / limit:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--pnasnet", action="store_true", help="also time pnasnet5large (slow)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU, torch {torch.__version__}, {args.threads} thread(s), "
          f"{args.workers} loader worker(s), batch {args.batch_size}, {args.images} images")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        records = make_images(folder, args.images)
        bench("efficientnet_lite0_pypi", load_classifier("efficientnet_lite0_pypi"), records,
              folder, args, args.batch_size)
        if args.pnasnet:
            # Random weights: this times the architecture only; it never cleans anything.
            model = timm.create_model("pnasnet5large", pretrained=False).eval()
            bench("pnasnet5large", model, records[:8], folder, args, batch=4)


if __name__ == "__main__":
    main()
