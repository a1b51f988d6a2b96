"""Does the sampler's uncertainty map mean anything? Rank correlation and sparsification against the error.

Inputs are B×1×H×W (or B×H×W) maps: `uncertainty` (e.g. the per-pixel spread of the sampled
estimates) and `error` (e.g. the mean over bands of |pred − hr|). Both must be finite.

* `spearman`: per-image Spearman rank correlation, average ranks for ties; higher is better.
* `sparsification`: remove the fraction f of pixels the uncertainty ranks highest, mean error of
  the rest over the mean error of all; the oracle removes by the true error (Ilg et al. 2018,
  "Uncertainty estimates and multi-hypotheses networks for optical flow").
* `ause`: area between the two curves; 0 = the uncertainty orders pixels exactly like the error.
The report draws the mean curves with `reports.figures.plot_sparsification`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


def _flat(maps: torch.Tensor) -> torch.Tensor:
    return maps.detach().double().flatten(1)


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..N of each row, tied values sharing the mean of their ranks (as scipy's rankdata)."""
    ranks = torch.empty_like(values)
    for row, x in enumerate(values):
        _, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
        last = counts.cumsum(0).to(values.dtype)
        ranks[row] = (last - (counts - 1) / 2)[inverse]
    return ranks


def spearman(uncertainty: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
    """Per-image Spearman correlation between uncertainty and error pixels (B tensor, in [−1, 1]).

    The Pearson correlation of average ranks. A constant map has no ranking: NaN, which the
    aggregator drops (a correlation of 0 would claim "uninformative", which is not measured).
    """
    u, e = _average_ranks(_flat(uncertainty)), _average_ranks(_flat(error))
    u, e = u - u.mean(1, keepdim=True), e - e.mean(1, keepdim=True)
    scale = (u.square().sum(1) * e.square().sum(1)).sqrt()
    rho = (u * e).sum(1) / scale
    return torch.where(scale > 0, rho, torch.full_like(rho, float("nan"))).float()


def ranks_anything(uncertainty: torch.Tensor) -> torch.Tensor:
    """B bools: False where the map is constant (one branch has no spread), which orders no pixel."""
    return _flat(uncertainty).std(1) > 0


class Sparsification(NamedTuple):
    fractions: torch.Tensor  # steps: the removed fraction f = 0, 1/steps, ..., (steps − 1)/steps
    curve: torch.Tensor  # B×steps: mean error of the kept pixels / mean error of all, removing by uncertainty
    oracle: torch.Tensor  # B×steps: the same, removing by the true error (the best any ranking can do)


def _remaining_mean(error: torch.Tensor, order_by: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """Mean error after dropping the `removed[i]` pixels of highest `order_by`, per row (B×steps).

    Pixels tied in `order_by` have no order among them, so each tie group's errors are replaced by
    their mean: the result is the expectation over random tie-breaking (a constant map gives a flat
    curve, not one that depends on the sort).
    """
    order = order_by.argsort(dim=1, descending=True, stable=True)
    keys, errors = order_by.gather(1, order), error.gather(1, order)
    for row in range(errors.shape[0]):
        _, group, counts = torch.unique_consecutive(keys[row], return_inverse=True, return_counts=True)
        sums = torch.zeros(len(counts), dtype=errors.dtype, device=errors.device).index_add_(0, group, errors[row])
        errors[row] = (sums / counts)[group]
    suffix = errors.flip(1).cumsum(1).flip(1)  # suffix[k] = sum of the errors kept after removing k
    pixels = errors.shape[1]
    kept_sum = suffix[:, removed.clamp_max(pixels - 1)]
    return kept_sum / (pixels - removed).to(errors.dtype)


def sparsification(uncertainty: torch.Tensor, error: torch.Tensor, steps: int = 20) -> Sparsification:
    """Per-image sparsification and oracle curves at f = i/steps, normalised by the mean error at f = 0.

    An image with zero error everywhere has no curve (0/0): NaN.
    """
    u, e = _flat(uncertainty), _flat(error)
    fractions = torch.arange(steps, dtype=torch.float64) / steps
    removed = (fractions * e.shape[1]).floor().long().to(e.device)
    base = e.mean(1, keepdim=True)
    curve = _remaining_mean(e, u, removed) / base
    oracle = _remaining_mean(e, e, removed) / base
    return Sparsification(fractions.float(), curve.float(), oracle.float())


def ause(uncertainty: torch.Tensor, error: torch.Tensor, steps: int = 20) -> torch.Tensor:
    """Area under the sparsification error: trapezoid of (curve − oracle) over f in [0, 1), per image.

    0 for an uncertainty that ranks pixels like the error; about 0.45 for a random one on
    uniformly distributed errors (flat curve vs oracle 1 − f). Lower is better.
    """
    fractions, curve, oracle = sparsification(uncertainty, error, steps)
    return torch.trapezoid(curve - oracle, fractions.to(curve.device), dim=1)
