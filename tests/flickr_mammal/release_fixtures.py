"""A synthetic authors' release in the real layout (flickr_mammal/release/layout.py), offline.

``geo_animal/images/<class folder>/<subfolder>/<photo id>_<secret>.jpg`` holds real photos
(scikit-image's and scikit-learn's samples, cropped and shrunk so every file differs) and
``geo_animal/{5,13}parts_{skewed,shuffled}/{train,val}.txt.<k>`` the Caffe lists. Per scheme,
every 5th photo of a class is on the val side; the skewed schemes put each class in few parts,
the shuffled ones deal photos round robin. Lists name photos in several ways the authors'
machines could have written them (relative to images/, to the release, absolute).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata
from sklearn.datasets import load_sample_image

FOLDERS = ("cat", "dog", "sea_lion", "zebra")   # class folders (sea_lion: the folder form)
SCHEMES = ("5parts_skewed", "5parts_shuffled", "13parts_skewed", "13parts_shuffled")


@cache
def _sources() -> tuple[np.ndarray, ...]:
    return (skdata.chelsea(), skdata.astronaut(), skdata.coffee(),
            load_sample_image("china.jpg"), load_sample_image("flower.jpg"))


def photo(i: int, size: int = 48) -> bytes:
    """A small real JPEG, different for every ``i``."""
    sources = _sources()
    src = sources[i % len(sources)]
    y, x = (i * 7) % (src.shape[0] - 200), (i * 13) % (src.shape[1] - 200)
    im = Image.fromarray(src[y:y + 200, x:x + 200]).resize((size, size * 3 // 4))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def images(per_class: int) -> list[tuple[str, str, int]]:
    """(path below images/, class folder, paper label) of every photo."""
    out = []
    for label, folder in enumerate(FOLDERS):
        for j in range(per_class):
            pid = 10_000_000 + label * 100_000 + j
            out.append((f"{folder}/{'ab'[j % 2]}/{pid}_5192fe3be9.jpg", folder, label))
    return out


def lists(photos: list[tuple[str, str, int]]) -> dict[str, bytes]:
    """List file name (below geo_animal/) -> its bytes."""
    files: dict[str, list[str]] = {}
    styles: dict[str, Callable[[str], str]] = {
        "5parts_skewed": lambda p: p,
        "5parts_shuffled": lambda p: f"images/{p}",
        "13parts_skewed": lambda p: f"/home/authors/data/geo_animal/images/{p}",
        "13parts_shuffled": lambda p: p,
    }
    for scheme in SCHEMES:
        n = int(scheme.split("parts")[0])
        for i, (path, _, label) in enumerate(photos):
            j = int(path.split("/")[-1].split("_")[0]) % 100_000  # the photo's number in class
            k = (label * 3 + j % 2) % n if scheme.endswith("skewed") else i % n
            side = "val" if j % 5 == 4 else "train"
            files.setdefault(f"{scheme}/{side}.txt.{k}", []).append(
                f"{styles[scheme](path)} {label}")
        for k in range(n):  # every part has both files, even an empty val list
            for side in ("train", "val"):
                files.setdefault(f"{scheme}/{side}.txt.{k}", [])
    return {name: "".join(line + "\n" for line in rows).encode() for name, rows in files.items()}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_release(path: Path, per_class: int = 10, *, lists_first: bool = False,
                  extra: dict[str, bytes] | None = None, skip: tuple[str, ...] = (),
                  photo_bytes: Callable[[int], bytes] = photo) -> Path:
    """A gzipped tar at ``path``; ``extra`` adds members (name -> bytes), ``skip`` leaves
    members out (by name below geo_animal/)."""
    photos = images(per_class)
    members = [(f"images/{p}", (lambda i=i: photo_bytes(i))) for i, (p, _, _) in
               enumerate(photos)]
    listed = [(name, (lambda d=data: d)) for name, data in sorted(lists(photos).items())]
    order = listed + members if lists_first else members + listed
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        _add(tar, "geo_animal/README.txt", b"Flickr-Mammal (synthetic)\n")
        for name, data in order:
            if name not in skip:
                _add(tar, f"geo_animal/{name}", data())
        for name, data in (extra or {}).items():
            _add(tar, name, data)
    return path
