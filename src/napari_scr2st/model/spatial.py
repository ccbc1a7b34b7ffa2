"""Within-slide prediction: what the measured neighbours of an unmeasured spot add.

When part of a slide is sequenced, an unmeasured spot has measured neighbours on the SAME
section, and expression is spatially smooth. Two pieces use that:

- :class:`SpatialResidual`: a kriging-like correction on top of any regression ``f`` (SCR2Net,
  ridge): ``y_hat(i) = f(i) + sum_j w_ij r_j / (lam + sum_j w_ij)`` with ``r_j = y_j - f_oof(j)``
  the OUT-OF-FOLD residuals of the measured spots ``j`` of the same section and
  ``w_ij = exp(-d_ij^2 / 2h^2)``. The bandwidth ``h`` (in spot pitches) and the shrinkage ``lam``
  are chosen by leave-one-out error over the measured spots; with no measured neighbour the
  correction vanishes and ``f`` is returned unchanged (cross-slide prediction keeps working).
  Over a constant ``f`` (the mean of the measured spots) it is the spatial kernel interpolation
  baseline (Nadaraya-Watson with shrinkage to the mean).

Nothing here reads the expression of an unmeasured spot: ``y`` and ``r`` are given for measured
spots only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["spot_pitch", "SpatialResidual"]

#: bandwidths tried, in spot pitches (centre-to-centre distance of neighbouring spots)
BANDWIDTHS = (0.75, 1.0, 1.5, 2.0, 3.0)
#: shrinkage pseudo-weights tried (weight of the regression relative to one neighbour at d = 0)
SHRINKAGE = (0.1, 0.3, 1.0, 3.0)


def spot_pitch(coords: np.ndarray) -> float:
    """Median nearest-neighbour distance of the spots (the lattice pitch, in coordinate units)."""
    from scipy.spatial import cKDTree

    xy = np.asarray(coords, dtype=np.float64)[:, :2]
    if len(xy) < 2:
        return 1.0
    d, _ = cKDTree(xy).query(xy, k=2)
    p = float(np.median(d[:, 1]))
    return p if p > 0 else 1.0


def _weights(xy_q: np.ndarray, xy_m: np.ndarray, h: float, q_ids: np.ndarray, m_ids: np.ndarray):
    """Sparse Gaussian weights (rows: queries, cols: measured) within 3h, without self-pairs
    (a query never sees itself: ``q_ids[row] == m_ids[col]`` pairs are dropped)."""
    import scipy.sparse as sp
    from scipy.spatial import cKDTree

    D = cKDTree(xy_q).sparse_distance_matrix(cKDTree(xy_m), 3.0 * h, output_type="coo_matrix")
    keep = q_ids[D.row] != m_ids[D.col]
    w = np.exp(-(D.data[keep] ** 2) / (2.0 * h * h))
    return sp.csr_matrix((w, (D.row[keep], D.col[keep])), shape=(len(xy_q), len(xy_m)))


def _sections(sections, n: int) -> np.ndarray:
    return np.full(n, "", dtype=object) if sections is None else np.asarray(sections).astype(str)


@dataclass
class SpatialResidual:
    """The kriging-like residual correction (see the module docstring).

    :meth:`fit` chooses ``bandwidth`` (in spot pitches) and ``shrinkage`` by leave-one-out over
    the measured spots' residuals; :meth:`correction` gives the additive correction of any
    query spots. Per section: measured spots of other sections never count, and a spot never
    counts for itself (matched by id).
    """

    bandwidth: float = 1.5
    shrinkage: float = float("inf")  # inf: no correction (what fit keeps when nothing helps)
    pitch: float | None = None  # the lattice pitch; give it (spot_pitch of ALL spots of the section)
    loo_mse: float = float("nan")
    base_loo_mse: float = float("nan")

    def _corr(self, xy_q, secs_q, ids_q, xy_m, secs_m, ids_m, resid, h_pitch, lam) -> np.ndarray:
        out = np.zeros((len(xy_q), resid.shape[1]))
        if not np.isfinite(lam):
            return out
        h = h_pitch * float(self.pitch or 1.0)
        for s in np.unique(secs_q):
            rows = np.flatnonzero(secs_q == s)
            cols = np.flatnonzero(secs_m == s)
            if cols.size == 0:
                continue
            W = _weights(xy_q[rows], xy_m[cols], h, ids_q[rows], ids_m[cols])
            mass = np.asarray(W.sum(axis=1)).ravel()
            den = (lam + mass)[:, None]
            num = np.asarray(W @ resid[cols])
            out[rows] = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        return out

    def fit(self, xy_m, secs_m, ids_m, resid_m) -> SpatialResidual:
        """Choose bandwidth and shrinkage from the measured spots' out-of-fold residuals
        ``resid_m`` (n_measured, G) = measured - predicted without that spot."""
        xy_m = np.asarray(xy_m, dtype=np.float64)[:, :2]
        secs_m = _sections(secs_m, len(xy_m))
        ids_m = np.asarray(ids_m).astype(str)
        resid = np.asarray(resid_m, dtype=np.float64)
        if self.pitch is None:  # measured spots are sparser than the lattice: an upper bound only
            self.pitch = spot_pitch(xy_m)
        self.base_loo_mse = float(np.mean(resid**2)) if resid.size else float("nan")
        best = (self.base_loo_mse, self.bandwidth, float("inf"))
        for h in BANDWIDTHS:
            for lam in SHRINKAGE:
                corr = self._corr(xy_m, secs_m, ids_m, xy_m, secs_m, ids_m, resid, h, lam)
                mse = float(np.mean((resid - corr) ** 2))
                if mse < best[0] - 1e-12:
                    best = (mse, h, lam)
        self.loo_mse, self.bandwidth, self.shrinkage = best
        return self

    def correction(self, xy_q, secs_q, ids_q, xy_m, secs_m, ids_m, resid_m) -> np.ndarray:
        """The additive correction (n_query, G) of the query spots from the measured residuals."""
        return self._corr(np.asarray(xy_q, dtype=np.float64)[:, :2], _sections(secs_q, len(xy_q)),
                          np.asarray(ids_q).astype(str), np.asarray(xy_m, dtype=np.float64)[:, :2],
                          _sections(secs_m, len(xy_m)), np.asarray(ids_m).astype(str),
                          np.asarray(resid_m, dtype=np.float64), self.bandwidth, self.shrinkage).astype(np.float32)
