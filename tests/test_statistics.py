"""What a comparison over seeds may claim: intervals within the metric's range, tests
corrected over the report's family (Holm), equivalence within a margin (two one-sided
tests), checked against scipy's own tests and values worked out by hand."""

from __future__ import annotations

import pandas as pd
import pytest
from scipy import stats

from sparsebench.report.foundations import foundations
from sparsebench.report.spread import (
    difference_p,
    equivalence_p,
    holm,
    paired_difference,
    spread_of,
    verdict_text,
    verdicts,
)


def test_an_interval_stays_within_the_metrics_range():
    """The published dense NEU VGG16 cell: mean 0.864, t interval [0.677, 1.051]; an
    accuracy cannot pass 1."""
    spread = spread_of(pd.Series([0.778, 0.897, 0.917]))
    assert spread.mean == pytest.approx(0.864, abs=5e-4)
    assert spread.low == pytest.approx(0.677, abs=1e-3)
    assert spread.high == 1.0
    unbounded = spread_of(pd.Series([0.778, 0.897, 0.917]), bounds=None)
    assert unbounded.high == pytest.approx(1.051, abs=1e-3)


def test_holm_by_hand():
    # sorted 0.005 x4, 0.01 x3, 0.03 x2, 0.04 x1 -> 0.02, 0.03, 0.06, max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_the_paired_test_is_scipys():
    first = pd.Series([0.93, 0.91, 0.95], index=[0, 1, 2])
    second = pd.Series([0.90, 0.90, 0.91], index=[0, 1, 2])
    difference = paired_difference(first, second)
    assert difference_p(difference) == pytest.approx(stats.ttest_rel(first, second).pvalue)


def test_equivalence_is_two_one_sided_tests():
    values = pd.Series([-0.002, 0.001, 0.0])
    difference = spread_of(values, bounds=(-1, 1))
    upper = stats.ttest_1samp(values - 0.01, 0.0, alternative="less").pvalue
    lower = stats.ttest_1samp(values + 0.01, 0.0, alternative="greater").pvalue
    assert equivalence_p(difference, 0.01) == pytest.approx(max(upper, lower))
    assert equivalence_p(difference, 0.01) < 0.05
    # the same spread around a difference of 1.5 points is not within one point
    assert equivalence_p(spread_of(values - 0.015, bounds=(-1, 1)), 0.01) > 0.5


def _difference(*values: float):
    return spread_of(pd.Series(values), bounds=(-1, 1))


def test_one_better_result_among_many_does_not_survive_the_correction():
    """The published tiles ResNet18 SET linear-only cell: +0.030 with a paired sd of
    0.007 over three seeds (p about 0.02), one of 96 comparisons against dense."""
    lucky = _difference(0.023, 0.037, 0.030)
    assert 0.01 < difference_p(lucky) < 0.03
    assert verdicts([lucky])[0] == "better"  # alone, it would be
    noise = [_difference(0.05, -0.04, 0.01 + 0.001 * k) for k in range(95)]
    assert verdicts([lucky, *noise])[0] == "not resolved"


def test_verdicts_and_how_they_read():
    same = _difference(0.001, -0.001, 0.0005, 0.0)
    worse = _difference(-0.20, -0.22, -0.21)
    unresolved = _difference(-0.10, 0.05, 0.02)
    found = verdicts([same, worse, unresolved, _difference(0.4), None])
    assert found == ["equivalent", "worse", "not resolved", "one seed", "one seed"]
    assert verdict_text("equivalent", 0.01) == "equivalent within 1 point(s)"
    assert verdict_text("not resolved") == "not resolved: more seeds needed"


def test_seeds_at_the_same_value_are_exact():
    """Every seed at chance in both (sd 0): the difference is exactly zero, within any
    margin; a constant difference of 0.2 is exactly not."""
    assert verdicts([_difference(0.0, 0.0, 0.0)]) == ["equivalent"]
    assert verdicts([_difference(-0.2, -0.2, -0.2)]) == ["worse"]


def _dense(accuracies, majority, tested, best_epochs, last_epoch=9):
    runs = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(len(accuracies))],
            "seed": list(range(len(accuracies))),
            "test_accuracy": accuracies,
            "test_majority_share": [majority] * len(accuracies),
            "test_confusion": [[[tested // 2, 0], [0, tested - tested // 2]]] * len(accuracies),
        }
    )
    rows = []
    for run, best in zip(runs.run_id, best_epochs, strict=True):
        for epoch in range(last_epoch + 1):
            rows.append(
                {"run_id": run, "epoch": epoch, "val_accuracy": 0.9 if epoch == best else 0.5}
            )
    return runs, pd.DataFrame(rows)


def test_a_recommendation_says_what_it_rests_on():
    """The new user's case: one seed of dense at 0.5625 on 48 test images, best at its
    last epoch, against a largest class of 0.52."""
    runs, epochs = _dense([0.5625], majority=0.52, tested=48, best_epochs=[9])
    said = foundations(runs, epochs, "test_accuracy", margin=0.01).split("; ")
    assert said == [
        "one dense seed: nothing is tested",
        "dense is near chance (0.562, its largest class 0.520)",
        "dense was still improving at its last epochs (1 of 1 seed(s)): train longer",
        "one test image moves accuracy by 2.1 points (48 test images), more than the margin",
    ]
    runs, epochs = _dense([0.97, 0.98, 0.975], majority=0.2, tested=360, best_epochs=[5, 6, 4])
    assert foundations(runs, epochs, "test_accuracy", margin=0.01) == "sound"
