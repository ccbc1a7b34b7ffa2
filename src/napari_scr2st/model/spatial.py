"""Within-slide prediction: what the measured neighbours of an unmeasured spot add.

When part of a slide is sequenced, an unmeasured spot has measured neighbours on the SAME
section, and expression is spatially smooth. Two pieces use that:

- :func:`kernel_interpolation`: the spatial baseline: a Gaussian-kernel weighted mean of the
  measured spots of the same section (Nadaraya-Watson), falling back to the section mean where
  no measured spot is near.
- :class:`SpatialResidual`: a kriging-like correction on top of any regression ``f`` (SCR2Net,
  ridge): ``y_hat(i) = f(i) + sum_j w_ij r_j / (lam + sum_j w_ij)`` with ``r_j = y_j - f_oof(j)``
  the OUT-OF-FOLD residuals of the measured spots ``j`` of the same section and
  ``w_ij = exp(-d_ij^2 / 2h^2)``. The bandwidth ``h`` (in spot pitches) and the shrinkage ``lam``
  are chosen by leave-one-out error over the measured spots; with no measured neighbour the
  correction vanishes and ``f`` is returned unchanged (cross-slide prediction keeps working).

Nothing here reads the expression of an unmeasured spot: ``y`` and ``r`` are given for measured
spots only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["spot_pitch", "kernel_interpolation", "SpatialResidual"]

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


def kernel_interpolation(coords: np.ndarray, sections, measured: np.ndarray, y_measured: np.ndarray, *,
                         bandwidth: float = 1.0, pitch: float | None = None) -> np.ndarray:
    """Nadaraya-Watson interpolation of measured expression to every spot, per section.

    ``measured``: boolean mask (n,); ``y_measured``: (n_measured, G) values of those spots in
    mask order. ``bandwidth`` in spot pitches. Spots with no measured spot within 3 bandwidths
    get the section's measured mean (the overall mean where a section has none). Measured spots
    get their leave-one-out interpolation, so the output is an honest estimate everywhere.
    """
    xy = np.asarray(coords, dtype=np.float64)[:, :2]
    n = len(xy)
    secs = _sections(sections, n)
    measured = np.asarray(measured, dtype=bool)
    Y = np.asarray(y_measured, dtype=np.float64)
    out = np.empty((n, Y.shape[1]), dtype=np.float64)
    m_idx = np.flatnonzero(measured)
    overall = Y.mean(axis=0) if len(Y) else np.zeros(Y.shape[1])
    for s in np.unique(secs):
        rows = np.flatnonzero(secs == s)
        ms = np.isin(m_idx, rows)
        cols = m_idx[ms]
        if cols.size == 0:
            out[rows] = overall
            continue
        h = bandwidth * (pitch or spot_pitch(xy[rows]))
        Ym = Y[ms]
        W = _weights(xy[rows], xy[cols], h, rows, cols)  # measured spots: leave-one-out
        mass = np.asarray(W.sum(axis=1)).ravel()
        est = np.asarray(W @ Ym) / np.where(mass > 0, mass, 1.0)[:, None]
        est[mass <= 1e-12] = Ym.mean(axis=0)
        out[rows] = est
    return out.astype(np.float32)


@dataclass
class SpatialResidual:
    """The kriging-like residual correction (see the module docstring).

    ``fit`` chooses ``bandwidth`` (pitches) and ``shrinkage`` by leave-one-out over the measured
    spots; ``correct`` applies them. Per section; measured spots of other sections never count.
    """

    bandwidth: float = 1.5
    shrinkage: float = 1.0
    pitch: float | None = None
    loo_mse: float = float("nan")
    base_loo_mse: float = float("nan")

    def _correction(self, coords, secs, measured, resid, h_pitch, lam, *, measured_only: bool) -> np.ndarray:
        xy = np.asarray(coords, dtype=np.float64)[:, :2]
        n = len(xy)
        out = np.zeros((n, resid.shape[1]))
        m_idx = np.flatnonzero(measured)
        for s in np.unique(secs):
            rows = np.flatnonzero(secs == s) if not measured_only else np.intersect1d(np.flatnonzero(secs == s), m_idx)
            ms = secs[m_idx] == s
            cols = m_idx[ms]
            if cols.size == 0 or rows.size == 0:
                continue
            h = h_pitch * (self.pitch or spot_pitch(xy[secs == s]))
            W = _weights(xy[rows], xy[cols], h, rows, cols)
            mass = np.asarray(W.sum(axis=1)).ravel()
            out[rows] = np.asarray(W @ resid[ms]) / (lam + mass)[:, None]
        return out

    def fit(self, coords, sections, measured, y_measured, f_oof_measured) -> SpatialResidual:
        """Choose bandwidth and shrinkage from the measured spots' out-of-fold residuals."""
        measured = np.asarray(measured, dtype=bool)
        secs = _sections(sections, len(measured))
        y = np.asarray(y_measured, dtype=np.float64)
        f = np.asarray(f_oof_measured, dtype=np.float64)
        resid = y - f
        self.pitch = self.pitch or spot_pitch(np.asarray(coords)[measured] if measured.sum() > 2 else coords)
        self.base_loo_mse = float(np.mean(resid**2)) if resid.size else float("nan")
        best = (self.base_loo_mse, self.bandwidth, np.inf)  # lam = inf: no correction
        m_idx = np.flatnonzero(measured)
        for h in BANDWIDTHS:
            for lam in SHRINKAGE:
                corr = self._correction(coords, secs, measured, resid, h, lam, measured_only=True)[m_idx]
                mse = float(np.mean((resid - corr) ** 2))
                if mse < best[0] - 1e-12:
                    best = (mse, h, lam)
        self.loo_mse, self.bandwidth, self.shrinkage = best
        return self

    def correct(self, coords, sections, measured, y_measured, f_oof_measured, f_all) -> np.ndarray:
        """``f_all`` (n, G) corrected with the measured spots' residuals (measured spots keep
        their leave-one-out correction, so they are honest estimates too)."""
        measured = np.asarray(measured, dtype=bool)
        f_all = np.asarray(f_all, dtype=np.float64)
        if not np.isfinite(self.shrinkage):
            return f_all.astype(np.float32)
        secs = _sections(sections, len(measured))
        resid = np.asarray(y_measured, dtype=np.float64) - np.asarray(f_oof_measured, dtype=np.float64)
        corr = self._correction(coords, secs, measured, resid, self.bandwidth, self.shrinkage, measured_only=False)
        return (f_all + corr).astype(np.float32)
