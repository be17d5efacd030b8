"""Cleaning throughput (images/s per device) of flickr_mammal.clean, against two limits.

    python benchmarks/bench_clean.py [--images 96] [--threads 1] [--workers 0] [--pnasnet]
        [--device cpu|cuda|cuda:N] [--precision auto|fp32|bf16]

End-to-end = ``clean_records`` on JPEG files (decode + resize + crop + forward + judge, bf16
rechecks included). Two limits measured in the same run: the bare forward pass on
already-preprocessed tensors of the same batch size, and the decode limit (decode + resize +
crop + normalise alone, in this process, times the loader's worker count, at least 1): on a
GPU the ratio to the decode limit is the one that matters (the model is rarely the
bottleneck). The default classifier is the offline ``efficientnet_lite0_pypi``; ``--pnasnet``
also times the paper's PNASNet-5-Large architecture (random weights: speed only, never
used to clean).
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

from flickr_mammal.clean.classifiers import load_classifier
from flickr_mammal.clean.stage import CleanConfig, Cleaner, clean_records
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
def time_forward(model: torch.nn.Module, shape: tuple[int, ...], n: int, batch: int,
                 device: torch.device) -> float:
    x = torch.randn(batch, *shape, device=device)
    model(x)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(max(1, n // batch)):
        model(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return max(1, n // batch) * batch / (time.perf_counter() - start)


def time_decode(cleaner: Cleaner, records: list[PhotoRecord], folder: Path) -> float:
    """Images/s of decode + preprocessing alone in one process (the loader's per-worker work)."""
    start = time.perf_counter()
    for r in records:
        with Image.open(folder / f"{r.photo_id}.jpg") as im:
            cleaner.transform(im.convert("RGB"))
    return len(records) / (time.perf_counter() - start)


def bench(name: str, model: torch.nn.Module, records, folder, args, batch: int) -> None:
    config = CleanConfig(name, device=args.device, batch_size=batch, num_workers=args.workers,
                         precision=args.precision)
    cleaner = Cleaner(model, config)
    e2e = time_clean(cleaner, records, folder)
    limit = time_forward(cleaner.model, cleaner.input_shape, len(records), batch,
                         cleaner.device)
    decode = time_decode(cleaner, records, folder) * max(1, args.workers)
    print(f"{name:24s} {cleaner.device} {'bf16' if cleaner.bf16 else 'fp32'} input "
          f"{cleaner.input_shape[1]}px  end-to-end {e2e:7.1f} img/s per device  forward-only "
          f"{limit:7.1f} img/s (ratio {e2e / limit:.2f})  decode limit {decode:7.1f} img/s "
          f"(fraction {e2e / decode:.2f})  rechecked {cleaner.rechecked}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--pnasnet", action="store_true", help="also time pnasnet5large (slow)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.device}, torch {torch.__version__}, {args.threads} thread(s), "
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
