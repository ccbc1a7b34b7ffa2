"""Adaptive resampling (AR, seed 002): sample weights from the inverse density of a latent space.

For every latent dimension ``j`` the training samples' values are histogrammed (``n_bins``
equal-width bins between the dimension's min and max), the histogram is turned into a
probability per bin and smoothed with a Gaussian kernel (``sigma`` in bins, so isolated bins
borrow mass from their neighbours and a single outlier does not get an infinite weight). A
sample's weight on dimension ``j`` is ``1 / (p_j(bin of the sample) + alpha)``; its weight is the
MAXIMUM over dimensions (a sample rare along any one axis of variation is up-weighted); weights
are normalised to sum to 1.

During SCR2Net training the latent is the image projection of the training spots, recomputed
at the start of every epoch, and the weights drive a ``WeightedRandomSampler`` (with
replacement, one epoch = as many draws as training spots). Applied once to foundation-model
embeddings the same function gives a sampling baseline.
"""

from __future__ import annotations

import numpy as np

__all__ = ["adaptive_resampling_weights"]


def adaptive_resampling_weights(
    latent,
    *,
    n_bins: int = 50,
    sigma: float = 1.0,
    alpha: float = 1e-3,
) -> np.ndarray:
    """Weights (n,) summing to 1, large for samples in sparse regions of any latent dimension."""
    z = np.asarray(latent, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"latent must be a non-empty (n, d) array, got shape {z.shape}")
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    n, d = z.shape
    lo = z.min(axis=0)
    span = z.max(axis=0) - lo
    span = np.where(span > 0, span, 1.0)
    bins = np.clip(((z - lo) / span * n_bins).astype(np.int64), 0, n_bins - 1)  # (n, d)
    flat = bins + np.arange(d)[None, :] * n_bins
    counts = np.bincount(flat.ravel(), minlength=d * n_bins).reshape(d, n_bins).astype(np.float64)
    prob = counts / n
    if sigma > 0:
        from scipy.ndimage import gaussian_filter1d

        prob = gaussian_filter1d(prob, sigma=sigma, axis=1, mode="constant")
        prob /= prob.sum(axis=1, keepdims=True)
    dens = prob[np.arange(d)[None, :], bins]  # (n, d)
    w = (1.0 / (dens + alpha)).max(axis=1)
    return w / w.sum()
