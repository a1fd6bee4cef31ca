"""How to rank units, kept apart from what to prune with the ranking.

Scores are higher for units worth keeping. `keep_top` turns any score into a mask of an
exact size; the Erdos-Renyi rules draw masks whose size is random.
"""

from __future__ import annotations

import math

import torch


def filter_l1_norm(weight: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output filter of a conv weight (out, in, kh, kw) -> (out,)."""
    return weight.detach().abs().flatten(1).sum(dim=1)


def weight_magnitude(weight: torch.Tensor) -> torch.Tensor:
    """|w| of each weight: the smallest positive and largest negative weights rank lowest."""
    return weight.detach().abs()


def random_scores(shape: torch.Size | tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Uniform random scores: every unit has the same chance to be kept."""
    return torch.rand(shape, generator=generator)


def keep_top(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Boolean mask of `scores`' shape keeping exactly the `n_keep` highest scores.

    Ties at the threshold are broken by position (the earlier unit wins), so the mask is
    reproducible. Linear time (a k-th value selection, no sort): this runs on every
    layer after every epoch for the prune-and-regrow methods.
    """
    flat = scores.detach().flatten()
    n = flat.numel()
    if n_keep <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if n_keep >= n:
        return torch.ones_like(scores, dtype=torch.bool)
    threshold = torch.kthvalue(flat, n - n_keep + 1).values
    above = flat > threshold
    ties = flat == threshold
    still_needed = n_keep - int(above.sum())
    mask = above | (ties & (ties.cumsum(0) <= still_needed))
    return mask.view(scores.shape)


def keep_top_spread(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Like `keep_top` over a (rows, columns) score matrix, with the budget spread over
    the rows: each row first keeps its own best `n_keep // rows` (among its scores above
    -inf, ties to the earlier column), then the rest of the budget goes to the highest
    scores left anywhere. An output layer's rows are its classes: a score over the whole
    layer can leave a class without a weight (SNIP did, on NEU steel defects, for four
    of six classes), so that class can never be predicted."""
    rows, columns = scores.shape
    share = min(n_keep // rows, columns)
    keep = torch.zeros_like(scores, dtype=torch.bool)
    if share > 0:
        order = torch.sort(scores.detach(), dim=1, descending=True, stable=True).indices
        best = order[:, :share]
        keep.scatter_(1, best, scores.detach().gather(1, best) > -float("inf"))
    rest = n_keep - int(keep.sum())
    if rest > 0:
        keep |= keep_top(scores.detach().masked_fill(keep, -float("inf")), rest) & ~keep
    return keep


def units_to_keep(units: int, sparsity: float) -> int:
    """Units left when `sparsity` of them is removed; a layer always keeps at least one."""
    return min(units, max(1, units - int(round(sparsity * units))))


def erdos_renyi_mask(
    shape: torch.Size | tuple[int, ...], density: float, generator: torch.Generator
) -> torch.Tensor:
    """Keep each unit independently with probability `density` (Mocanu et al. 2018).

    The number kept is Binomial(n, density), not exact. A layer never ends up empty: if
    no unit was drawn, the one with the highest draw is kept.
    """
    draws = torch.rand(shape, generator=generator)
    mask = draws < density
    if not mask.any():
        mask = keep_top(draws, 1)
    return mask


def erk_densities(shapes: list[tuple[int, ...]], density: float) -> list[float]:
    """Erdos-Renyi-Kernel layer densities (Evci et al. 2020) for an overall `density`.

    A layer's density is proportional to sum(shape) / prod(shape), scaled so that the
    kept parameters add up to `density` of all of them; layers whose density would exceed
    1 are kept dense and the rest rescaled, as in RigL.
    """
    numels = [math.prod(s) for s in shapes]
    raw = [sum(s) / math.prod(s) for s in shapes]
    dense: set[int] = set()
    while True:
        budget = density * sum(numels) - sum(numels[i] for i in dense)
        scaled_total = sum(raw[i] * numels[i] for i in range(len(shapes)) if i not in dense)
        if scaled_total <= 0:
            return [1.0 if i in dense else 0.0 for i in range(len(shapes))]
        eps = budget / scaled_total
        over = [i for i in range(len(shapes)) if i not in dense and eps * raw[i] > 1]
        if not over:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]
        dense.update(over)
