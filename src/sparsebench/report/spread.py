"""How far a result over seeds can be trusted: its mean with the standard deviation and
a 95% interval, and whether two configurations differ by more than their seeds do.

Intervals use Student's t with n - 1 degrees of freedom: with the three to five seeds a
CPU sweep affords, the normal approximation would make them about half as wide as they
are. Two configurations are compared over the seeds both ran (a paired comparison: seed
s of one against seed s of the other, which share their data split and initial draw),
so the spread that seeds share cancels; with fewer than two shared seeds there is no
spread to judge by, and the comparison says so instead of ranking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import pandas as pd
from scipy import stats

CONFIDENCE = 0.95

Verdict = Literal["better", "worse", "within noise", "one seed"]


@dataclass(frozen=True)
class Spread:
    """Mean of n values, their sample standard deviation and the 95% interval of the
    mean (both None for one value)."""

    mean: float
    n: int
    sd: float | None = None
    low: float | None = None
    high: float | None = None

    def cell(self, places: int = 3) -> str:
        """`0.942 ± 0.004 (3)`; one value: `0.942 (1)`."""
        if self.sd is None:
            return f"{self.mean:.{places}f} (1)"
        return f"{self.mean:.{places}f} ± {self.sd:.{places}f} ({self.n})"

    def interval(self, places: int = 3) -> str:
        """`[0.932, 0.952]`; one value has none."""
        if self.low is None or self.high is None:
            return "one seed"
        return f"[{self.low:.{places}f}, {self.high:.{places}f}]"


def spread_of(values: pd.Series) -> Spread | None:
    """The spread of the values that are not missing; None when none is left."""
    values = values.dropna().astype(float)
    n = len(values)
    if n == 0:
        return None
    mean = float(values.mean())
    if n == 1:
        return Spread(mean, 1)
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1)) * sd / math.sqrt(n)
    return Spread(mean, n, sd, mean - half, mean + half)


def paired_difference(first: pd.Series, second: pd.Series) -> Spread | None:
    """`first - second` over the seeds both hold (each indexed by seed)."""
    shared = first.dropna().index.intersection(second.dropna().index)
    if shared.empty:
        return None
    return spread_of(first[shared] - second[shared])


def verdict(difference: Spread | None) -> Verdict:
    """`better` or `worse` when the 95% interval of the paired difference excludes zero;
    `within noise` when it holds zero; `one seed` when there is no interval."""
    if difference is None or difference.low is None or difference.high is None:
        return "one seed"
    if difference.low > 0:
        return "better"
    if difference.high < 0:
        return "worse"
    return "within noise"


def signed(value: float, places: int = 3) -> str:
    return f"{value:+.{places}f}"


def difference_text(difference: Spread, places: int = 3) -> str:
    """`-0.012 [-0.030, +0.006] (3 seeds)`."""
    if difference.low is None or difference.high is None:
        return f"{signed(difference.mean, places)} (one seed)"
    return (
        f"{signed(difference.mean, places)} [{signed(difference.low, places)}, "
        f"{signed(difference.high, places)}] ({difference.n} seeds)"
    )
