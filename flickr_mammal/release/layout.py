"""The layout of the authors' release archive, read from one streaming pass over the tar.

docs/reference.md §1 (the paper's 5- and 13-part partitions). What the authors' scripts show:

    geo_animal/images/<class>/<subfolder>/<file>               the photos
    geo_animal/{5parts,13parts}_{shuffled,skewed}/{train,val}.txt.<k>
                                                               Caffe lists: "relative/path label"

A gzipped tar cannot seek, and ``tar czf`` stores members in directory order, so the list files
may come before or after the images. This pass reads only the list files' bytes (small) and the
image members' names (their data is skipped, though it is still decompressed): the whole layout
is known, and checked, before anything is written. The import is a second streaming pass
(:mod:`.importer`). Anything that differs from the description above raises
:class:`ReleaseLayoutError`, one line saying what was found and what was expected.
"""

from __future__ import annotations

import re
import tarfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from flickr_mammal.classes import ClassList, default_classes

ROOT: Final = "geo_animal"
IMAGES: Final = "images"
SCHEMES: Final = ("5parts_skewed", "5parts_shuffled", "13parts_skewed", "13parts_shuffled")
SIDES: Final = ("train", "val")
EXPECTED: Final = (f"{ROOT}/{IMAGES}/<class>/<subfolder>/<file> and "
                   f"{ROOT}/{{5parts,13parts}}_{{shuffled,skewed}}/{{train,val}}.txt.<k>")
_LIST_NAME: Final = re.compile(r"(train|val)\.txt\.([0-9]+)")
_PHOTO_ID: Final = re.compile(r"([0-9]{1,20})(?![0-9])")  # Flickr's own file names start with it
_MAX_LIST_BYTES: Final = 256 << 20  # a list names each photo once: far below this


class ReleaseLayoutError(ValueError):
    """The archive is not laid out as the authors' release (one line: found vs expected)."""


def num_parts(scheme: str) -> int:
    return int(scheme.split("parts", 1)[0])


@dataclass(frozen=True)
class ReleaseImage:
    """One photo of the release: where it is and what its path tells."""

    path: str          # relative to geo_animal/images/: "<class folder>/<subfolder>/<file>"
    class_name: str
    photo_id: str


@dataclass
class ReleaseLayout:
    """What the archive holds. ``parts[scheme][path] = (side, k)``; ``paper_labels`` maps our
    class names to the list files' label ids (the authors' network outputs)."""

    archive: Path
    images: dict[str, ReleaseImage] = field(default_factory=dict)
    parts: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)
    paper_labels: dict[str, int] = field(default_factory=dict)
    list_files: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    lists_first: bool = True         # every list file came before the first image
    duplicate_ids: dict[str, list[str]] = field(default_factory=dict)  # photo id -> paths

    def describe(self) -> list[str]:
        """The layout in a few lines (``--dry-run``)."""
        per_class = Counter(i.class_name for i in self.images.values())
        lines = [f"{self.archive}: {len(self.images)} images in {len(per_class)} classes "
                 f"({', '.join(f'{c} {n}' for c, n in sorted(per_class.items()))})"]
        for scheme in SCHEMES:
            found = self.parts.get(scheme)
            if found is None:
                lines.append(f"  {scheme}: no list files (its columns stay null)")
                continue
            sides = Counter(side for side, _ in found.values())
            ks = sorted({k for _, k in found.values()})
            lines.append(f"  {scheme}: parts holding images {ks}, " + ", ".join(
                f"{side} {sides.get(side, 0)}" for side in SIDES) + " images listed")
        lines.append(f"  list labels: {len(self.paper_labels)} classes; list files "
                     + ("before" if self.lists_first else "after")
                     + " the first image in the stream")
        if self.duplicate_ids:
            lines.append(f"  {len(self.duplicate_ids)} photo ids appear under several paths: "
                         "the first in the archive is imported")
        if self.ignored:
            lines.append(f"  ignored: {len(self.ignored)} other members, e.g. "
                         + ", ".join(self.ignored[:3]))
        return lines


def _fail(found: str) -> ReleaseLayoutError:
    return ReleaseLayoutError(f"{found}; expected {EXPECTED}")


def _examples(items: list[str], limit: int = 3) -> str:
    return ", ".join(items[:limit]) + (f" (+{len(items) - limit} more)" if len(items) > limit
                                       else "")


def stream_members(archive: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo, str]]:
    """(tar, member, name below geo_animal/) of each regular file, in stream order."""
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if member.isdir():
                    continue
                if not name.startswith(f"{ROOT}/"):
                    raise _fail(f"{archive} holds {name!r} outside {ROOT}/")
                if not member.isfile():
                    raise _fail(f"{archive} holds {name!r}, a link or special file")
                yield tar, member, name[len(ROOT) + 1:]
    except (tarfile.TarError, EOFError, OSError) as exc:  # gzip.BadGzipFile is an OSError
        raise ReleaseLayoutError(f"{archive} is not a readable tar archive ({exc}); expected "
                                 "the release's geo_animal.tar.gz") from exc


def _image(relative: str, classes: ClassList) -> ReleaseImage | str:
    """The image at ``images/<relative>``, or why its path does not fit."""
    parts = relative.split("/")
    if len(parts) != 3 or not all(parts):
        return "depth"
    folder, _, file = parts
    try:
        class_name = classes.get(re.sub(r"[_-]+", " ", folder)).name
    except KeyError:
        return "class"
    found = _PHOTO_ID.match(file)
    if found is None:
        return "id"
    return ReleaseImage(relative, class_name, found.group(1))


def _list_path(text: str) -> str:
    """A list file's path relative to images/ (lists may name it from images/, from the
    release root, or as an absolute path on the authors' machine)."""
    marker = f"{IMAGES}/"
    at = text.rfind(f"/{marker}")
    if at >= 0:
        return text[at + len(marker) + 1:]
    return text.removeprefix(marker)


def _read_list(name: str, data: bytes) -> list[tuple[str, int]]:
    rows = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.rsplit(None, 1)
        if len(fields) != 2 or not fields[1].isdigit():
            raise _fail(f"{ROOT}/{name} line {number} reads {line[:80]!r}, not 'path label'")
        rows.append((_list_path(fields[0].strip()), int(fields[1])))
    return rows


def read_layout(archive: str | Path, classes: ClassList | None = None) -> ReleaseLayout:
    """One streaming pass: every image's name and every list file's rows, checked."""
    archive = Path(archive)
    classes = classes or default_classes()
    layout = ReleaseLayout(archive)
    bad: dict[str, list[str]] = defaultdict(list)
    lists: dict[str, list[tuple[str, int]]] = {}
    seen_image = False
    for tar, member, name in stream_members(archive):
        head, _, rest = name.partition("/")
        if head == IMAGES:
            if rest.rsplit("/", 1)[-1].startswith("."):  # .DS_Store and the like
                layout.ignored.append(name)
                continue
            image = _image(rest, classes)
            if isinstance(image, str):
                bad[image].append(name)
                continue
            seen_image = True
            layout.images[rest] = image
        elif head in SCHEMES and rest and "/" not in rest:
            if not _LIST_NAME.fullmatch(rest) or member.size > _MAX_LIST_BYTES:
                bad["list"].append(name)
                continue
            handle = tar.extractfile(member)
            lists[name] = _read_list(name, handle.read() if handle else b"")
            layout.lists_first = layout.lists_first and not seen_image
        else:
            layout.ignored.append(name)
    _check_images(layout, bad, classes)
    _assign_parts(layout, lists)
    return layout


def _check_images(layout: ReleaseLayout, bad: dict[str, list[str]], classes: ClassList) -> None:
    why = {"depth": f"files not at {IMAGES}/<class>/<subfolder>/<file>",
           "class": f"class folders that are none of the {len(classes)} classes",
           "id": "file names that do not start with a Flickr photo id",
           "list": "files in the list folders not named {train,val}.txt.<k>"}
    for reason, names in bad.items():
        raise _fail(f"{layout.archive} holds {len(names)} {why[reason]}: {_examples(names)}")
    if not layout.images:
        raise _fail(f"{layout.archive} holds no image under {ROOT}/{IMAGES}/")
    by_id: dict[str, list[str]] = defaultdict(list)
    for image in layout.images.values():
        by_id[image.photo_id].append(image.path)
    layout.duplicate_ids = {pid: paths for pid, paths in by_id.items() if len(paths) > 1}


def _assign_parts(layout: ReleaseLayout, lists: dict[str, list[tuple[str, int]]]) -> None:
    if not lists:
        raise _fail(f"{layout.archive} holds no list files")
    label_classes: dict[int, set[str]] = defaultdict(set)
    files_of: dict[str, set[int]] = defaultdict(set)  # scheme -> k of its list files
    for name in sorted(lists):
        scheme, file = name.split("/")
        side, k = _LIST_NAME.fullmatch(file).groups()  # type: ignore[union-attr]
        parts = layout.parts.setdefault(scheme, {})
        files_of[scheme].add(int(k))
        layout.list_files.append(f"{ROOT}/{name}")
        missing = [p for p, _ in lists[name] if p not in layout.images]
        if missing:
            raise _fail(f"{ROOT}/{name} lists {len(missing)} images the archive lacks: "
                        f"{_examples(missing)}")
        for path, label in lists[name]:
            if path in parts and parts[path] != (side, int(k)):
                raise _fail(f"{path} is in two parts of {scheme} ({parts[path]} and "
                            f"{(side, int(k))})")
            parts[path] = (side, int(k))
            label_classes[label].add(layout.images[path].class_name)
    for scheme, found in files_of.items():
        ks = sorted(found)
        if len(ks) != num_parts(scheme):
            raise _fail(f"{ROOT}/{scheme} has parts {ks}, not {num_parts(scheme)}")
    mixed = {label: sorted(c) for label, c in label_classes.items() if len(c) > 1}
    if mixed:
        label, names = next(iter(sorted(mixed.items())))
        raise _fail(f"list label {label} names images of several classes ({', '.join(names)})")
    labels_of: dict[str, list[int]] = defaultdict(list)
    for label, names in sorted(label_classes.items()):
        labels_of[next(iter(names))].append(label)
    several = {c: labels for c, labels in labels_of.items() if len(labels) > 1}
    if several:
        name, labels = next(iter(sorted(several.items())))
        raise _fail(f"class {name} has several list labels {labels}")
    layout.paper_labels = {name: labels[0] for name, labels in sorted(labels_of.items())}
