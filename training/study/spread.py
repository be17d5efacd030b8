"""A study cell over its seeds, and the rule that turns a margin into a verdict.

A cell (an accuracy, a loss, a byte ratio, a rank correlation) is measured once per seed:
:class:`Spread` keeps the value of each seed, and shows it as mean ± sd (sample standard
deviation, ``ddof=1``) over its seeds. Two cells combine seed by seed (a loss is the IID minus
the skewed accuracy *of the same seed*), so what the seeds share cancels out of the spread.

The verdict rule (:func:`judge`; docs/training.md, "Findings and their spread"): a claim compares a
cell with a threshold. Its margin is the distance from the cell's mean to the threshold.

- two seeds or more: the claim **holds** (or **does not hold**) when the mean is on the claimed
  (or the other) side of the threshold by a margin larger than the sd across seeds; otherwise
  it is **inconclusive**, with the numbers;
- one seed: there is no sd, so the margin must exceed the claim's one-seed floor instead: the
  study's target for accuracy points (the smallest difference the study calls significant),
  0.1 for a byte ratio; a rank correlation has no floor and is inconclusive on one seed.

A claim made of several (every algorithm loses; SkewScout meets the target *and* is within 1.5x)
does not hold when one part does not, holds when every part holds, and is inconclusive otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import pandas as pd

__all__ = ["RATIO_FLOOR", "Spread", "Verdict", "all_of", "judge", "mean_of"]

RATIO_FLOOR = 0.1    # one seed: a byte ratio is decided when it clears its threshold by 0.1x


@dataclass(frozen=True)
class Spread:
    """One value per seed: ``values`` is ``((seed, value), ...)`` sorted by seed."""

    values: tuple[tuple[int, float], ...]

    @classmethod
    def of(cls, by_seed: Mapping[int, float]) -> Spread:
        return cls(tuple(sorted((int(s), float(v)) for s, v in by_seed.items())))

    @property
    def by_seed(self) -> dict[int, float]:
        return dict(self.values)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return math.fsum(v for _, v in self.values) / self.n if self.n else math.nan

    @property
    def sd(self) -> float:
        """Sample standard deviation over the seeds (NaN for fewer than two)."""
        if self.n < 2:
            return math.nan
        m = self.mean
        return math.sqrt(math.fsum((v - m) ** 2 for _, v in self.values) / (self.n - 1))

    def paired(self, other: Spread, op: Callable[[float, float], float]) -> Spread:
        """``op(self, other)`` seed by seed, over the seeds both have."""
        mine, theirs = self.by_seed, other.by_seed
        return Spread.of({s: op(mine[s], theirs[s]) for s in mine if s in theirs})

    def __sub__(self, other: Spread) -> Spread:
        return self.paired(other, lambda a, b: a - b)

    def map(self, fn: Callable[[float], float]) -> Spread:
        return Spread(tuple((s, fn(v)) for s, v in self.values))

    def fmt(self, digits: int = 1, sign: bool = False) -> str:
        """``mean ± sd`` (one seed: the value alone)."""
        spec = f"{'+' if sign else ''}.{digits}f"
        if self.n < 2:
            return format(self.mean, spec)
        return f"{self.mean:{spec}} ± {self.sd:.{digits}f}"


def mean_of(cells: Iterable[Spread]) -> Spread | None:
    """The mean of several cells, seed by seed over the seeds all of them have (None: none)."""
    cells = list(cells)
    if not cells:
        return None
    seeds = set.intersection(*(set(c.by_seed) for c in cells))
    if not seeds:
        return None
    return Spread.of({s: math.fsum(c.by_seed[s] for c in cells) / len(cells) for s in seeds})


class Verdict(Enum):
    HOLDS = "holds"
    FAILS = "does not hold on this data"
    INCONCLUSIVE = "inconclusive"


def judge(cell: Spread, threshold: float, *, above: bool, floor: float | None,
          digits: int = 1) -> tuple[Verdict, str]:
    """The verdict on "``cell`` > ``threshold``" (``above``) or "``cell`` <= ``threshold``",
    and the numbers behind it (module docstring: the rule)."""
    margin = cell.mean - threshold
    claimed_side = margin > 0 if above else margin <= 0
    size = abs(margin)
    if cell.n >= 2:
        spread, what = cell.sd, "sd"
    elif floor is not None:
        spread, what = floor, "the 1-seed floor"
    else:
        return Verdict.INCONCLUSIVE, (f"{cell.fmt(digits)} vs {threshold:g}, 1 seed: no spread "
                                      "to judge a rank correlation by")
    seeds = f"{cell.n} seed{'s' if cell.n != 1 else ''}"
    if size > spread:
        verdict = Verdict.HOLDS if claimed_side else Verdict.FAILS
        why = f"margin {size:.{digits}f} > {what} {spread:.{digits}f}"
    else:
        verdict = Verdict.INCONCLUSIVE
        why = f"margin {size:.{digits}f} <= {what} {spread:.{digits}f}"
    return verdict, f"{cell.fmt(digits)} vs {threshold:g} over {seeds}: {why}"


def all_of(verdicts: Iterable[Verdict]) -> Verdict:
    """A claim made of parts: fails if one fails, holds if all hold, else inconclusive."""
    verdicts = list(verdicts)
    if Verdict.FAILS in verdicts:
        return Verdict.FAILS
    if verdicts and all(v is Verdict.HOLDS for v in verdicts):
        return Verdict.HOLDS
    return Verdict.INCONCLUSIVE


@dataclass(frozen=True)
class Claim:
    finding: str
    text: str
    verdict: Verdict
    evidence: str

    @property
    def holds(self) -> bool:
        return self.verdict is Verdict.HOLDS

    def line(self) -> str:
        return f"- **{self.finding}** {self.text}: **{self.verdict.value}** ({self.evidence})"


def spread_table(cells: Mapping[tuple, Mapping[str, Spread | None]], index: Sequence[str],
                 digits: int = 1) -> pd.DataFrame:
    """A table of cells: for each column ``c`` the mean, ``c sd`` and ``c n`` (seeds), rounded;
    :func:`markdown_table` shows them as ``mean ± sd``."""
    recs = []
    for key, row in cells.items():
        rec = dict(zip(index, key, strict=True))
        for col, value in row.items():
            ok = value is not None and value.n > 0
            rec[col] = round(value.mean, digits) if ok else math.nan
            rec[f"{col} sd"] = round(value.sd, digits) if ok else math.nan
            rec[f"{col} n"] = value.n if ok else 0
        recs.append(rec)
    if not recs:
        return pd.DataFrame()
    return pd.DataFrame(recs).set_index(list(index))
