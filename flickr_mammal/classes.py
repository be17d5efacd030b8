"""The classes a build searches: the 42 Flickr-Mammal classes by default, or any class list given
as a CSV file (docs/reference.md §1; docs/building.md, "Any class list").

A class file has a header row; ``name`` is required, the other columns are optional and hold
``;``-separated lists:

    name        the class name (its label id is its row's position, from 0)
    search      the text sent to Flickr's search and matched in metadata dumps (default: name)
    synonyms    more texts that name the class in a dump (``sealion;sea-lion``)
    exclude     phrases whose occurrences do not count for the class (``sea lion`` for ``lion``)
    imagenet    ImageNet-1k indices that count as the class when cleaning with a classifier

The shipped file ``classes_mammals.csv`` holds the 42 mammals in alphabetical order (so the label
ids are that order and never change once published; a test guards it). A file with duplicate or
empty names, a text that is another class's text, or an unknown column raises
:class:`ClassesFileError`, one line naming the row.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Final

COLUMNS: Final = ("name", "search", "synonyms", "exclude", "imagenet")
DEFAULT_FILE: Final = "classes_mammals.csv"
_WORDS: Final = re.compile(r"[^\W_]+")


class ClassesFileError(ValueError):
    """A class file that cannot be used (one line: which row, what is wrong)."""


def text_key(text: str) -> str:
    """How the dump matcher sees a text: its words, lower-cased, written together ("Sea-Lion"
    and "sealion" are the same text)."""
    return "".join(_WORDS.findall(text.lower()))


@dataclass(frozen=True)
class MammalClass:
    """One class: its name, label id, ImageNet indices and the texts that name it."""

    name: str
    label: int
    imagenet_indices: tuple[int, ...] = ()
    search: str = ""                 # "" = the name
    synonyms: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @property
    def search_text(self) -> str:
        """The text sent to Flickr's search (``text=``)."""
        return self.search or self.name

    @property
    def texts(self) -> tuple[str, ...]:
        """Every text that names the class in a dump: the search text, then the synonyms."""
        return (self.search_text, *self.synonyms)


@dataclass(frozen=True)
class ClassList:
    """An ordered list of classes (position = label id) read from a class file."""

    classes: tuple[MammalClass, ...]
    source: str = DEFAULT_FILE

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def __len__(self) -> int:
        return len(self.classes)

    def get(self, name: str) -> MammalClass:
        """Look a class up by name (case-insensitive); unknown names list the known ones."""
        key = " ".join(name.lower().split())
        for c in self.classes:
            if c.name == key:
                return c
        raise KeyError(f"unknown class {name!r} in {self.source}; known classes: "
                       f"{', '.join(self.names)}")

    def parse(self, spec: str | None) -> tuple[MammalClass, ...]:
        """A comma-separated class list (``None`` or ``"all"`` = every class), in label order."""
        if spec is None or spec.strip().lower() in ("", "all"):
            return self.classes
        chosen = {self.get(part).label for part in spec.split(",") if part.strip()}
        return tuple(self.classes[i] for i in sorted(chosen))


def _list(row: dict[str, str], column: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in (row.get(column) or "").split(";") if part.strip())


def _row_class(row: dict[str, str], label: int, where: str) -> MammalClass:
    name = " ".join((row.get("name") or "").lower().split())
    if not name:
        raise ClassesFileError(f"{where}: empty class name; every row needs a name")
    try:
        indices = tuple(int(i) for i in _list(row, "imagenet"))
    except ValueError:
        raise ClassesFileError(f"{where} ({name}): imagenet must be ;-separated integers "
                               f"0..999, got {row.get('imagenet')!r}") from None
    if any(not 0 <= i < 1000 for i in indices):
        raise ClassesFileError(f"{where} ({name}): imagenet indices must be in 0..999")
    item = MammalClass(name, label, indices, (row.get("search") or "").strip(),
                       _list(row, "synonyms"), _list(row, "exclude"))
    for text in (*item.texts, *item.exclude):
        if not text_key(text):
            raise ClassesFileError(f"{where} ({name}): the text {text!r} has no letter or digit")
    if {text_key(t) for t in item.exclude} & {text_key(t) for t in item.texts}:
        raise ClassesFileError(f"{where} ({name}): a text is both searched and excluded")
    return item


def _check_distinct(classes: list[MammalClass], source: str) -> None:
    names: dict[str, int] = {}
    owner: dict[str, str] = {}  # text key -> the class it names
    for c in classes:
        if c.name in names:
            raise ClassesFileError(f"{source}: {c.name!r} and {c.name!r}: duplicate class name "
                                   f"(rows {names[c.name] + 1} and {c.label + 1})")
        names[c.name] = c.label
        for text in dict.fromkeys(text_key(t) for t in (c.name, *c.texts)):
            other = owner.setdefault(text, c.name)
            if other != c.name:
                raise ClassesFileError(f"{source}: {c.name!r} and {other!r}: a text of both "
                                       f"classes ({text!r}); each text may name one class only")


def read_classes(path: str | Path, *, source: str | None = None) -> ClassList:
    """Read and check a class file (see the module docstring)."""
    path = Path(path)
    source = source or str(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip().lower() for h in reader.fieldnames or ()]
            if "name" not in header:
                raise ClassesFileError(f"{source}: no 'name' column in the header row "
                                       f"{header}; the columns are {', '.join(COLUMNS)}")
            unknown = [h for h in header if h not in COLUMNS]
            if unknown:
                raise ClassesFileError(f"{source}: unknown column(s) {unknown}; the columns "
                                       f"are {', '.join(COLUMNS)}")
            reader.fieldnames = header
            classes: list[MammalClass] = []
            for row in reader:
                if None in row:  # csv's key for the fields past the header's
                    raise ClassesFileError(f"{source} line {reader.line_num}: more fields "
                                           f"than the header's {len(header)}")
                if any((value or "").strip() for value in row.values()):  # blank lines pass
                    classes.append(_row_class(row, len(classes),
                                              f"{source} line {reader.line_num}"))
    except OSError as exc:
        raise ClassesFileError(f"cannot read class file {source}: {exc.strerror or exc}") \
            from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ClassesFileError(f"{source} is not a UTF-8 CSV file ({exc})") from None
    if not classes:
        raise ClassesFileError(f"{source} lists no class: add rows under the header")
    _check_distinct(classes, source)
    return ClassList(tuple(classes), source)


@cache
def default_classes() -> ClassList:
    """The shipped 42 mammals."""
    with resources.as_file(resources.files("flickr_mammal") / DEFAULT_FILE) as path:
        return read_classes(path, source=DEFAULT_FILE)


def load_classes(path: str | Path | None) -> ClassList:
    """The class file at ``path``, or the shipped mammals for ``None``."""
    return default_classes() if path is None else read_classes(path)


CLASSES: tuple[MammalClass, ...] = default_classes().classes
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
NUM_CLASSES = len(CLASSES)


def get_class(name: str) -> MammalClass:
    """Look a mammal class up by name (case-insensitive); unknown names list the known ones."""
    key = name.strip().lower()
    try:
        return default_classes().get(key)
    except KeyError:
        raise KeyError(f"unknown mammal class {name!r}; known classes: "
                       f"{', '.join(CLASS_NAMES)}") from None


def parse_classes(spec: str | None) -> tuple[MammalClass, ...]:
    """Parse a comma-separated class list (``None`` or ``"all"`` = all 42), in label order."""
    if spec is None or spec.strip().lower() in ("", "all"):
        return CLASSES
    chosen = {get_class(part).label for part in spec.split(",") if part.strip()}
    return tuple(CLASSES[i] for i in sorted(chosen))
