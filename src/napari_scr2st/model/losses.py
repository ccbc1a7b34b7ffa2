"""Loss terms of SCR2Net (torch): contrastive alignment, weighted soft-label MSE, energy distance."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["clip_loss", "weighted_soft_mse", "energy_distance"]


def clip_loss(z_img: torch.Tensor, z_gene: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): row i of each L2-normalised projection is the positive pair.

    ``logit_scale`` is the (already exponentiated) inverse temperature. The loss is the mean of
    the image->gene and gene->image cross-entropies over the batch.
    """
    logits = logit_scale * z_img @ z_gene.t()
    labels = torch.arange(z_img.shape[0], device=z_img.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def weighted_soft_mse(pred: torch.Tensor, soft: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """Per-SAMPLE confidence-weighted MSE: ``mean_i conf_i * mean_g (pred_ig - soft_ig)^2``."""
    per_sample = ((pred - soft) ** 2).mean(dim=1)
    return (conf * per_sample).mean()


def energy_distance(x: torch.Tensor, y: torch.Tensor, *, unbiased: bool = True) -> torch.Tensor:
    """Energy distance between two SETS of vectors (rows), Euclidean metric.

    ``E = 2 E|X - Y| - E|X - X'| - E|Y - Y'|``. The cross term is always the mean over all
    pairs. With ``unbiased`` (default) the within-set terms are U-statistics: the mean over
    pairs ``i != j`` (diagonal excluded, divided by ``n (n - 1)``); otherwise V-statistics
    (diagonal zeros included, divided by ``n^2``), which is >= 0 always. The U-statistic version
    is unbiased for the population value (0 iff the distributions are equal) and may be
    slightly negative on finite samples.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must be (n, d) and (m, d), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    x = x.float()
    y = y.float()
    n, m = x.shape[0], y.shape[0]
    dxy = _pdist(x, y).mean()
    dxx = _pdist(x, x)
    dyy = _pdist(y, y)
    if unbiased:
        if n < 2 or m < 2:
            raise ValueError("the unbiased energy distance needs at least 2 samples per set")
        exx = dxx.sum() / (n * (n - 1))
        eyy = dyy.sum() / (m * (m - 1))
    else:
        exx = dxx.mean()
        eyy = dyy.mean()
    return 2.0 * dxy - exx - eyy


def _pdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances from explicit differences (exact 0 on a set's diagonal).

    The ``|a|^2 + |b|^2 - 2 a.b`` expansion loses the zeros to rounding in float32 (and
    ``sqrt`` turns 1e-7 into 3e-4), so the differences are formed directly; batches are small.
    ``sqrt(d^2 + 1e-12) - 1e-6`` keeps the gradient finite at 0.
    """
    d2 = (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)
    return torch.sqrt(d2 + 1e-12) - 1e-6
