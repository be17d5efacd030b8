"""The 42 Flickr-Mammal classes and the ImageNet-1k indices that count as each (docs/reference.md
§1).

Label ids are the alphabetical order of the class names, 0..41, and never change once published:
the table below is kept sorted and a test guards the order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MammalClass:
    """One class: its name (also the default Flickr search text), label id and ImageNet indices."""

    name: str
    label: int
    imagenet_indices: tuple[int, ...]

    @property
    def search_text(self) -> str:
        return self.name


def _r(lo: int, hi: int) -> tuple[int, ...]:
    return tuple(range(lo, hi + 1))


# name -> ImageNet-1k indices (inclusive ranges written out); alphabetical, so the position is
# the label.
_TABLE: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("alpaca", (355,)),
    ("antelope", _r(351, 353)),
    ("armadillo", (363,)),
    ("bison", (347,)),
    ("brown bear", (294,)),
    ("camel", (354,)),
    ("cat", _r(281, 285)),
    ("cattle", (345,)),
    ("cheetah", (293,)),
    ("chimpanzee", (367,)),
    ("dog", _r(151, 268)),
    ("elephant", (101, 385, 386)),
    ("fox", _r(277, 280)),
    ("giant panda", (388,)),
    ("goat", (350,)),
    ("gorilla", (366,)),
    ("hamster", (333,)),
    ("hippopotamus", (344,)),
    ("horse", (339,)),
    ("jaguar", (290,)),
    ("kangaroo", (104,)),
    ("koala", (105,)),
    ("leopard", (288,)),
    ("lion", (291,)),
    ("lynx", (287,)),
    ("meerkat", (299,)),
    ("monkey", _r(370, 382)),
    ("orangutan", (365,)),
    ("otter", (360,)),
    ("pig", _r(341, 343)),
    ("polar bear", (296,)),
    ("porcupine", (334,)),
    ("rabbit", _r(330, 332)),
    ("red panda", (387,)),
    ("sea lion", (150,)),
    ("sheep", (348, 349)),
    ("skunk", (361,)),
    ("squirrel", (335,)),
    ("tiger", (292,)),
    ("whale", (147, 148)),
    ("wolf", _r(269, 271)),
    ("zebra", (340,)),
)

CLASSES: tuple[MammalClass, ...] = tuple(
    MammalClass(name, label, idx) for label, (name, idx) in enumerate(_TABLE)
)
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
NUM_CLASSES = len(CLASSES)
_BY_NAME = {c.name: c for c in CLASSES}


def get_class(name: str) -> MammalClass:
    """Look a class up by name (case-insensitive); unknown names list the known ones."""
    key = name.strip().lower()
    if key not in _BY_NAME:
        raise KeyError(f"unknown mammal class {name!r}; known classes: {', '.join(CLASS_NAMES)}")
    return _BY_NAME[key]


def parse_classes(spec: str | None) -> tuple[MammalClass, ...]:
    """Parse a comma-separated class list (``None`` or ``"all"`` = all 42), in label order."""
    if spec is None or spec.strip().lower() in ("", "all"):
        return CLASSES
    chosen = {get_class(part).label for part in spec.split(",") if part.strip()}
    return tuple(CLASSES[i] for i in sorted(chosen))
