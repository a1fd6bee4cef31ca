"""How far a result over seeds can be trusted: its mean with the standard deviation and
a 95% interval, and what a comparison of two configurations may claim.

Intervals use Student's t with n - 1 degrees of freedom: with the three to five seeds a
CPU sweep affords, the normal approximation would make them about half as wide as they
are. A metric bounded to [0, 1] keeps its interval there (the t interval is cut at the
bounds, and says so by reaching them). Two configurations are compared over the seeds
both ran (paired: seed s of one against seed s of the other, which share their data
split and initial draw), so the spread that seeds share cancels.

A report makes many comparisons at once: each is tested (a paired t test of "no
difference", and two one-sided tests of "no difference larger than the margin",
Schuirmann 1987) and the p values of each kind are corrected over the report's family
with Holm's step-down method (Holm 1979). The verdicts:

- `equivalent`: the difference is shown to lie within the margin (both one-sided tests
  reject after correction): the only verdict that says "costs nothing";
- `better` or `worse`: the difference is shown to be other than zero, after correction;
- `not resolved`: neither; more seeds would be needed (an interval that holds zero is
  not a sign that the two are equal);
- `one seed`: no spread to test with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
MARGIN = 0.01  # one point: the default margin of equivalence

Verdict = Literal["equivalent", "better", "worse", "not resolved", "one seed"]


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


def spread_of(values: pd.Series, bounds: tuple[float, float] | None = (0.0, 1.0)) -> Spread | None:
    """The spread of the values that are not missing (None when none is left), its
    interval kept within `bounds` (a metric's range; None for an unbounded quantity)."""
    values = values.dropna().astype(float)
    n = len(values)
    if n == 0:
        return None
    mean = float(values.mean())
    if n == 1:
        return Spread(mean, 1)
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1)) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Spread(mean, n, sd, low, high)


def paired_difference(first: pd.Series, second: pd.Series) -> Spread | None:
    """`first - second` over the seeds both hold (each indexed by seed)."""
    shared = first.dropna().index.intersection(second.dropna().index)
    if shared.empty:
        return None
    return spread_of(first[shared] - second[shared], bounds=(-1.0, 1.0))


def difference_p(difference: Spread) -> float:
    """Two-sided p of a paired t test that the mean difference is zero. A difference
    the same at every seed (sd 0) is exact: p 0, or 1 where it is zero."""
    assert difference.sd is not None
    if difference.sd == 0:
        return 1.0 if difference.mean == 0 else 0.0
    t = difference.mean / (difference.sd / math.sqrt(difference.n))
    return float(2 * stats.t.sf(abs(t), difference.n - 1))


def equivalence_p(difference: Spread, margin: float) -> float:
    """p of the two one-sided t tests (TOST) that the mean difference lies within
    (-margin, margin): the larger of the two."""
    assert difference.sd is not None
    if difference.sd == 0:
        return 0.0 if abs(difference.mean) < margin else 1.0
    scale = difference.sd / math.sqrt(difference.n)
    above = stats.t.sf((difference.mean + margin) / scale, difference.n - 1)
    below = stats.t.cdf((difference.mean - margin) / scale, difference.n - 1)
    return float(max(above, below))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p values (same order, each at most 1)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def verdicts(differences: list[Spread | None], margin: float = MARGIN) -> list[Verdict]:
    """The verdict on each paired difference of a report's family (see the module)."""
    tested = [i for i, d in enumerate(differences) if d is not None and d.sd is not None]
    different = holm([difference_p(differences[i]) for i in tested])  # type: ignore[arg-type]
    equal = holm([equivalence_p(differences[i], margin) for i in tested])  # type: ignore[arg-type]
    found: list[Verdict] = ["one seed"] * len(differences)
    for index, p_different, p_equal in zip(tested, different, equal, strict=True):
        mean = differences[index].mean  # type: ignore[union-attr]
        if p_equal < ALPHA:
            found[index] = "equivalent"
        elif p_different < ALPHA:
            found[index] = "better" if mean > 0 else "worse"
        else:
            found[index] = "not resolved"
    return found


def verdict_text(verdict: Verdict, margin: float = MARGIN) -> str:
    """The verdict as the report says it."""
    return {
        "equivalent": f"equivalent within {margin * 100:g} point(s)",
        "better": "better",
        "worse": "worse",
        "not resolved": "not resolved: more seeds needed",
        "one seed": "one seed: not tested",
    }[verdict]


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
