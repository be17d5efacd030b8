"""Fake data for gpu_check (nothing can be downloaded there) and the cleaning-stage timing."""

from __future__ import annotations

import io
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

CONTINENTS = ("Africa", "Americas", "Asia", "Europe", "Oceania")


def write_fake_cifar(root: Path, per_batch: int) -> str:
    """A ``cifar-10-batches-py`` folder of random images in torchvision's pickle format."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, per_batch).tolist()}
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle)
    return str(root)


def _jpeg(rng: np.random.Generator, size: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
        buf, format="JPEG", quality=85)
    return buf.getvalue()


def write_fake_flickr(root: Path, per_continent: int) -> str:
    """Flickr-Mammal shards (the dataset's own writer) of random JPEGs: ``per_continent`` train
    photos on each of 5 continents, and as many val photos in all, in shards of 16."""
    from flickr_mammal.records import PhotoRecord, Status
    from flickr_mammal.shards import write_shards

    rng = np.random.default_rng(0)
    records, images = [], {}
    for i in range(per_continent * 6):
        continent = CONTINENTS[i % 5]
        record = PhotoRecord(photo_id=str(10_000 + i), owner="owner", class_name=f"class{i % 42}",
                             label=i % 42, latitude=1.0, longitude=2.0, status=Status.KEPT,
                             country_code="KE", country="Kenya", subcontinent="Eastern Africa",
                             continent=continent, geo_status="ok",
                             split="val" if i >= per_continent * 5 else "train")
        records.append(record)
        images[record.photo_id] = _jpeg(rng)
    for split in ("train", "val"):
        write_shards(records, lambda r: images[r.photo_id], root, split=split,
                     group_by="continent", max_samples=16, progress=False)
    return str(root)


def clean_speed(device: str, quick: bool) -> list[dict[str, Any]]:
    """Images/s of the cleaning stage's forward pass (flickr_mammal.clean's preprocessing, bf16
    autocast and channels-last on CUDA as the Cleaner runs it) and the share of images whose
    top-5 classes under bf16 equal float32's (random weights: a numerical check, not accuracy).
    """
    import timm

    from flickr_mammal.clean.stage import CleanConfig, Cleaner

    names = ["efficientnet_lite0"] if quick else ["efficientnet_lite0", "pnasnet5large"]
    n, batch = (4, 2) if quick else (256, 32)
    rows = []
    for name in names:
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False)
        cleaner = Cleaner(model, CleanConfig(device=device, batch_size=batch, num_workers=0))
        x = torch.randn(batch, *cleaner.input_shape, device=cleaner.device)
        if cleaner.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        rows.append({"model": name, "input": list(cleaner.input_shape), "batch": batch,
                     **_forward_rate(cleaner, x, n), **_bf16_agreement(cleaner, x)})
        print(f"  {name:<20}{rows[-1]['images_per_s']:>9.1f} img/s  top-5 bf16 == fp32 on "
              f"{rows[-1]['top5_agreement_pct']:.1f}% of images", flush=True)
    return rows


@torch.inference_mode()
def _forward_rate(cleaner: Any, x: torch.Tensor, n: int) -> dict[str, Any]:
    cuda = cleaner.device.type == "cuda"

    def forward() -> torch.Tensor:
        with torch.autocast(cleaner.device.type, dtype=torch.bfloat16, enabled=cuda):
            return cleaner.model(x)

    forward()   # warm-up (cuDNN autotune, allocator)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    batches = max(1, n // len(x))
    for _ in range(batches):
        out = forward()
    if cuda:
        torch.cuda.synchronize()
    rate = batches * len(x) / (time.perf_counter() - start)
    return {"images_per_s": rate, "ok": bool(torch.isfinite(out.float()).all())}


@torch.inference_mode()
def _bf16_agreement(cleaner: Any, x: torch.Tensor, k: int = 5) -> dict[str, float]:
    fp32 = cleaner.model(x).float()
    with torch.autocast(cleaner.device.type, dtype=torch.bfloat16):
        bf16 = cleaner.model(x).float()
    same = [set(a.tolist()) == set(b.tolist())
            for a, b in zip(fp32.topk(k).indices, bf16.topk(k).indices, strict=True)]
    top1 = (fp32.argmax(1) == bf16.argmax(1)).float().mean()
    return {"top5_agreement_pct": 100.0 * sum(same) / len(same),
            "top1_agreement_pct": 100.0 * float(top1)}
