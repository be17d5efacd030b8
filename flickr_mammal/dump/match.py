"""Which mammal classes a metadata-dump row names, and which Flickr licence id it carries.

Match rule (the offline stand-in for ``flickr.photos.search(text=...)``, docs/reference.md §2):
a row matches class c when c's search text occurs, case-insensitively, as a whole word or phrase in
its title, description or user tags. Words of a phrase may be separated by any run of
non-alphanumeric characters (``sea lion``, ``sea-lion``, ``Sea+Lion``), or be written together
(``sealion``, Flickr's normalised tag form). "Whole" means no letter or digit right before or
after: ``lion`` does not match ``lions`` or ``lioness``; ``cat`` does not match ``location``.
The comma between tags is a separator like a space. YFCC100M text is URL-encoded (``+`` for a
space, ``%XX`` escapes); it is decoded before matching.

One refinement over independent per-class searches: an occurrence of a class text inside an
occurrence of a longer class text counts for the longer one only (``sea lion`` names sea lion,
not lion), since matches are taken leftmost-longest without overlap. Among the 42 classes this
only concerns lion / sea lion; a row that also names ``lion`` on its own still names both. A
class's synonyms name it like its search text; its ``exclude`` phrases take part in the same
scan and name nothing (``sea lion`` excluded from ``lion``: even without a sea lion class).

Speed: a vectorised RE2 prefilter (pyarrow.compute), one pass over the row's text columns
joined, keeps the rows where any class text occurs with loose word boundaries (a superset of
the exact rule on encoded or plain text); the per-column prefilter, then the exact rule in
Python, run on those few rows only. Formats whose parsing costs more than that pass (JSON lines,
SQLite) run its raw-text variant (:meth:`ClassMatcher.raw_hits`) before parsing anything, and
parse only the rows it keeps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache, partial
from urllib.parse import unquote_plus

import numpy as np

from flickr_mammal.classes import MammalClass
from flickr_mammal.dump.formats.lines import RawText
from flickr_mammal.dump.linescan import line_scanner

# Flickr licence ids (flickr.photos.licenses.getInfo) by licence name; YFCC100M holds ids 1-6.
LICENSE_IDS: dict[str, int] = {
    "All Rights Reserved": 0,
    "Attribution-NonCommercial-ShareAlike License": 1,
    "Attribution-NonCommercial License": 2,
    "Attribution-NonCommercial-NoDerivs License": 3,
    "Attribution License": 4,
    "Attribution-ShareAlike License": 5,
    "Attribution-NoDerivs License": 6,
    "No known copyright restrictions": 7,
    "United States Government Work": 8,
    "Public Domain Dedication (CC0)": 9,
    "Public Domain Mark": 10,
}
_BY_NAME = {name.lower(): i for name, i in LICENSE_IDS.items()}
# The same ids by the Creative Commons code in a licence URL (.../licenses/by-nc-sa/2.0/).
_CC_CODES = {"by-nc-sa": 1, "by-nc": 2, "by-nc-nd": 3, "by": 4, "by-sa": 5, "by-nd": 6}
_CC_URL = re.compile(r"creativecommons\.org/(?:licenses/([a-z-]+)|publicdomain/(zero|mark))/")


def license_id(value: object) -> int:
    """A licence name, URL, or id (int or digits) as a Flickr licence id; -1 when unknown."""
    if isinstance(value, bool) or value is None:
        return -1
    if isinstance(value, int):
        return value
    return _license_text(str(value))


@lru_cache(maxsize=4096)  # a dump holds a handful of distinct licence texts
def _license_text(value: str) -> int:
    text = unquote_plus(value).strip()
    if text.isdigit():
        return int(text)
    if text.lower() in _BY_NAME:
        return _BY_NAME[text.lower()]
    found = _CC_URL.search(text.lower())
    if found:
        code, public = found.groups()
        return {"zero": 9, "mark": 10}[public] if public else _CC_CODES.get(code, -1)
    return -1


_WORD = re.compile(r"[^\W_]+")


def _phrase(text: str, sep: str) -> str:
    words = [re.escape(w) for w in _WORD.findall(text.lower())]
    joined = sep.join(words)
    return joined if len(words) == 1 else f"{joined}|{''.join(words)}"


class ClassMatcher:
    """Finds the classes a row's texts name (see the module docstring for the rule)."""

    def __init__(self, classes: Sequence[MammalClass], *, url_encoded: bool) -> None:
        if not classes:
            raise ValueError("ClassMatcher needs at least one class")
        self.classes = tuple(classes)
        self._order = {c.name: k for k, c in enumerate(self.classes)}
        self.url_encoded = url_encoded
        # Exact rule on words (maximal runs of letters and digits, lower-cased): a class is a
        # run of consecutive words, or one word spelling its words together. Longest first,
        # so at one position the longer phrase wins (sea lion before lion).
        # first word -> (phrase words, class name), longest phrase first
        # An exclude phrase (name None) is scanned like a class text and names nothing.
        self._starts: dict[str, list[tuple[tuple[str, ...], str | None]]] = {}
        for c in self.classes:
            named = [(t, c.name) for t in c.texts] + [(t, None) for t in c.exclude]
            for text, name in named:
                words = tuple(_WORD.findall(text.lower()))
                for phrase in {words, ("".join(words),)}:
                    self._starts.setdefault(phrase[0], []).append((phrase, name))
        for options in self._starts.values():
            options.sort(key=lambda o: (-len(o[0]), o[1] is None))
        ordered = sorted({t for c in self.classes for t in c.texts}, key=lambda t: (-len(t), t))
        # RE2 superset of the exact rule: an escape (%XX) or any non-ASCII-alphanumeric
        # character counts as a boundary or separator, so encoded and plain text both pass.
        loose = r"(?:[^a-z0-9]|%[0-9a-f]{2})"
        alts = "|".join(_phrase(t, loose + "+") for t in ordered)
        self.prefilter_pattern = f"(?i)(?:^|{loose})(?:{alts})(?:$|[^a-z0-9])"
        # The same on raw bytes holding the texts (a JSON line, a SQLite row's texts joined):
        # a JSON escape also counts as a boundary or separator (``\n``, ``\"``, ``\u00e9``
        # decode to characters that are one); a line with an escape that may decode to a
        # letter of a class text (an ASCII letter or digit, which no JSON writer escapes; the
        # Kelvin sign and long s, which (?i) folds to k and s; any character, when a class
        # text is not ASCII) passes whatever it says.
        raw_loose = r"(?:[^a-z0-9]|%[0-9a-f]{2}|\\u[0-9a-f]{4}|\\[^u])"
        raw_alts = "|".join(_phrase(t, raw_loose + "+") for t in ordered)
        spelled = [t for c in self.classes for t in (*c.texts, *c.exclude)]
        escaped = (r"\\u[0-9a-f]{4}" if any(not t.isascii() for t in spelled)
                   else r"\\u(?:00[3-7][0-9a-f]|017f|212a)")
        self.raw_pattern = (f"(?i)(?:(?:^|{raw_loose})(?:{raw_alts})(?:$|[^a-z0-9])"
                            f"|{escaped})")

    def prefilter_hits(self, columns: Sequence[object]) -> np.ndarray:
        """Indices of the rows where some text column (pyarrow string arrays) may match.

        One regex pass over the columns joined by a tab instead of one pass per column (the
        texts are read once, and RE2's per-row start-up is paid once): a tab is a boundary
        like any separator, so each row that a single column's prefilter keeps is kept. A
        phrase split across two columns is a false hit, dropped by :meth:`prefilter` of the
        few rows kept here."""
        import pyarrow.compute as pc

        joined = columns[0] if len(columns) == 1 else pc.binary_join_element_wise(
            *columns, "\t", null_handling="replace", null_replacement="")
        mask = pc.match_substring_regex(joined, self.prefilter_pattern)
        return pc.indices_nonzero(mask).to_numpy(zero_copy_only=False)

    def raw_hits(self, values: object) -> np.ndarray:
        """Indices of the raw texts (a pyarrow string array: JSON lines, or a row's text
        cells joined by a separator that is no letter or digit) that may name a class: a
        superset of the rows :meth:`prefilter_hits` keeps once the texts are parsed, so the
        other rows need no parsing at all."""
        import pyarrow.compute as pc

        mask = pc.match_substring_regex(values, self.raw_pattern)
        return pc.indices_nonzero(mask).to_numpy(zero_copy_only=False).astype(np.int64)

    def raw_filter(self) -> RawText:
        """:meth:`raw_hits`, with a whole-chunk scanner of the same pattern where Hyperscan can
        stand in for RE2 (:mod:`~flickr_mammal.dump.linescan`)."""
        ascii_texts = all(t.isascii() for c in self.classes for t in (*c.texts, *c.exclude))
        return RawText(self.raw_hits, partial(line_scanner, self.raw_pattern, ascii_texts))

    def prefilter(self, columns: Sequence[object]) -> list[np.ndarray]:
        """Per text column (pyarrow string arrays), a boolean mask of the rows that may match."""
        import pyarrow.compute as pc

        return [pc.fill_null(pc.match_substring_regex(column, self.prefilter_pattern), False)
                .to_numpy(zero_copy_only=False) for column in columns]

    def decode(self, text: str | None) -> str:
        if not text:
            return ""
        return unquote_plus(text) if self.url_encoded else text

    def match(self, *texts: str | None) -> tuple[str, ...]:
        """Class names (label order) named in any of ``texts`` (raw, as in the dump)."""
        found: set[str] = set()
        for text in texts:
            words = _WORD.findall(self.decode(text).lower())
            i = 0
            while i < len(words):  # leftmost, longest, no overlap
                step = 1
                for phrase, name in self._starts.get(words[i], ()):
                    if tuple(words[i:i + len(phrase)]) == phrase:
                        if name is not None:
                            found.add(name)
                        step = len(phrase)
                        break
                i += step
        return tuple(sorted(found, key=self._order.__getitem__))
