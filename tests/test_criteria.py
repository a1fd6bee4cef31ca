import math

import pytest
import torch

from sparsebench.sparsity import criteria


def test_filter_l1_norm_by_hand():
    weight = torch.tensor(
        [
            [[[1.0, -2.0], [0.5, 0.0]]],
            [[[-0.1, 0.1], [0.1, -0.1]]],
            [[[3.0, 0.0], [0.0, -1.0]]],
        ]
    )
    assert criteria.filter_l1_norm(weight).tolist() == pytest.approx([3.5, 0.4, 4.0])


def test_keep_top_keeps_exact_count_and_breaks_ties_by_position():
    scores = torch.tensor([0.5, 0.9, 0.5, 0.1, 0.5])
    assert criteria.keep_top(scores, 2).tolist() == [True, True, False, False, False]
    assert criteria.keep_top(scores, 0).sum() == 0
    assert criteria.keep_top(scores, 5).all()


def test_units_to_keep_rounds_and_never_empties_a_layer():
    assert criteria.units_to_keep(10, 0.5) == 5
    assert criteria.units_to_keep(10, 0.8) == 2
    assert criteria.units_to_keep(16, 0.8) == 3  # round(12.8) = 13 removed
    assert criteria.units_to_keep(1, 0.8) == 1
    assert criteria.units_to_keep(4, 0.0) == 4


def test_erdos_renyi_density_is_within_a_binomial_bound():
    generator = torch.Generator().manual_seed(7)
    n, density = 200_000, 0.3
    kept = int(criteria.erdos_renyi_mask((n,), density, generator).sum())
    sigma = math.sqrt(n * density * (1 - density))
    assert abs(kept - n * density) < 5 * sigma
    # Independent draws: the two halves of the mask are not copies of each other.
    mask = criteria.erdos_renyi_mask((2, 1000), 0.5, generator)
    assert not torch.equal(mask[0], mask[1])


def test_erdos_renyi_never_empties_a_layer():
    generator = torch.Generator().manual_seed(0)
    assert criteria.erdos_renyi_mask((3,), 1e-9, generator).sum() == 1


def test_erk_densities_meet_the_budget_and_favour_small_layers():
    shapes = [(16, 3, 3, 3), (32, 16, 3, 3), (64, 32, 3, 3)]
    densities = criteria.erk_densities(shapes, 0.5)
    numels = [math.prod(s) for s in shapes]
    kept = sum(d * n for d, n in zip(densities, numels, strict=True))
    assert kept == pytest.approx(0.5 * sum(numels))
    raw = [sum(s) / math.prod(s) for s in shapes]
    # Not capped: proportional to ERK's sum(shape)/prod(shape).
    assert densities[1] / densities[2] == pytest.approx(raw[1] / raw[2])
    assert densities[0] == 1.0  # the first layer would exceed 1 and is kept dense
    assert densities[0] > densities[1] > densities[2]
