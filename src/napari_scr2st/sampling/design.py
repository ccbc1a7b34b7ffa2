"""Model-based batch designs (behind :class:`~napari_scr2st.sampling.sampler.Sampler`); names as in
:func:`~napari_scr2st.sampling.registry.make_sampler`. All three need the vision embedding and
read no expression except the counts of MEASURED spots (``state.measured_view()``).

- ``uncertainty``: model uncertainty of the ridge surrogate (the package's expression predictor,
  :func:`~napari_scr2st.sampling.surrogate.design_matrix`: vision PCA + section-normalised
  coordinates). An ensemble of ``n_members`` ridges is fitted on bootstrap resamples of the
  measured spots (the penalty chosen once by leave-one-out ``RidgeCV`` on all of them); the
  targets are the ``n_genes`` highest-variance genes of the measured spots (log1p-normalised,
  z-scored so every gene counts equally). A candidate's score is the ensemble's predictive
  variance averaged over those genes (Efron & Tibshirani 1993, the bootstrap; query by
  committee for regression, Burbidge, Rowland & King 2007). The design keeps the coordinates
  and the first ``min(n_components, n_measured // 4)`` vision PCs: a linear model with more
  features than its training spots support fits them exactly, and its bootstrap spread then
  vanishes off the span of the measured spots, where it should be largest. A bootstrap
  ensemble of a closed-form ridge is deterministic for a seed, needs no torch and takes
  milliseconds, where MC-dropout would train an MLP every round on a handful of spots.
  Batch-aware: after each pick, every candidate's score is multiplied by
  ``1 - k(candidate, pick)`` with the :class:`VisionSpaceKernel`, so a batch does not pile up
  in one region. With fewer than ``min_measured`` (5) measured spots, or none of their genes
  varying, there is no model: the sampler returns the ``kcenter`` sampler's picks and
  ``last_scores`` is None.
- ``gp``: Gaussian-process design (Krause, Singh & Guestrin 2008, "Near-optimal sensor
  placements in Gaussian processes") with the :class:`VisionSpaceKernel`: greedy maximisation of
  the posterior variance given every selected spot (pending or measured) and the spots already
  picked in the batch (the variance criterion; the mutual-information criterion of the paper is
  not implemented). The posterior of the selected spots is one Cholesky factorisation; each
  pick is a rank-one update of the candidates' variances (incremental Cholesky), so a batch of
  ``n`` costs O(n * (s + n) * m) for ``s`` conditioning spots and ``m`` candidates. Above
  ``max_candidates`` the candidates are a random subset (drawn once per batch, from the round's
  random stream); above ``max_conditioning`` selected spots the posterior conditions on a random
  subset of them, which over-estimates the variance (conditioning on less never lowers it).
  No pool x pool matrix is formed.
- ``lcmd``: LCMD, largest-cluster maximum distance (Holzmueller, Zaverkin, Kaestner &
  Steinwart 2023, "A framework and benchmark for deep batch active learning for regression",
  JMLR 24) in the :func:`joint_features` space (vision PCA and section-normalised coordinates,
  weighted equally). Every available spot belongs to its nearest centre (the selected spots and
  the picks so far, within its section); the next pick is, in the cluster with the largest sum
  of squared distances to its centre, the spot farthest from that centre. A section without a
  selected spot is one cluster around its mean until its first pick. Above ``max_points``
  available spots the clusters are built on a random subset of them.

The shared kernel, :class:`VisionSpaceKernel`: ``k(i, j) = exp(-|v_i - v_j|^2 / (2 l_v^2)) *
exp(-|x_i - x_j|^2 / (2 (c p_s)^2))`` for spots of the same section ``s`` and 0 across
sections, with ``v`` the standardised vision PCA, ``l_v`` the median pairwise distance of ``v``
(median heuristic, on at most 1,000 spots), ``x`` the pixel coordinates, ``p_s`` the spot pitch
of the section (median nearest-neighbour distance) and ``c`` = ``spatial_scale`` pitches (3).

This module never imports the SCRL policy (:mod:`napari_scr2st.sampling.scrl`).
"""

from __future__ import annotations

import numpy as np

from ..data.expression import TARGET_SUM
from .baselines import KCenterSampler, _sqdist
from .sampler import Sampler
from .surrogate import _ALPHAS, design_matrix
from .thread_limits import single_thread

__all__ = [
    "UncertaintySampler",
    "GPVarianceSampler",
    "LCMDSampler",
    "VisionSpaceKernel",
    "vision_space_kernel",
    "joint_features",
]


class VisionSpaceKernel:
    """The vision-times-space RBF kernel of the module docstring, over one pool's spots.

    ``kernel(a, b)`` is the ``(len(a), len(b))`` matrix for pool indices ``a`` and ``b``;
    ``k(i, i) = 1``. Lengthscales are fitted on the non-excluded spots (no expression).
    """

    def __init__(self, pool, *, n_components: int = 32, spatial_scale: float = 3.0, max_fit: int = 1000) -> None:
        from scipy.spatial import cKDTree
        from scipy.spatial.distance import pdist

        V = pool.vision_features(n_components).astype(np.float64)
        inpool = np.flatnonzero(~pool.excluded)
        if len(inpool) < 2:
            inpool = np.arange(pool.n)
        fit = inpool if len(inpool) <= max_fit else np.sort(np.random.default_rng(0).choice(inpool, max_fit, replace=False))
        med = float(np.median(pdist(V[fit]))) if len(fit) > 1 else 0.0
        self.vision_lengthscale = med if med > 1e-12 else 1.0
        xy = np.zeros((pool.n, 2))
        self.pitch: dict[str, float] = {}
        names = pool.section_names
        self._sec = np.searchsorted(np.array(sorted(names)), pool.sections)
        for s in names:
            m = pool.sections == s
            ref = m & ~pool.excluded
            pts = pool.coords[ref if ref.sum() >= 2 else m]
            pitch = float(np.median(cKDTree(pts).query(pts, k=2)[0][:, 1])) if len(pts) > 1 else 1.0
            self.pitch[s] = pitch if pitch > 1e-12 else 1.0
            xy[m] = pool.coords[m] / (spatial_scale * self.pitch[s])
        self._z = np.hstack([V / self.vision_lengthscale, xy])  # k = exp(-|z_i - z_j|^2 / 2) within a section

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        K = np.exp(-0.5 * _sqdist(self._z[a], self._z[b]))
        K[self._sec[a][:, None] != self._sec[b][None, :]] = 0.0
        return K

    def columns(self, a: np.ndarray):
        """``column(j)``: the vector ``k(a, a[j])`` (features of ``a`` gathered once, for greedy loops)."""
        a = np.asarray(a, dtype=np.int64)
        z, sec = self._z[a], self._sec[a]

        def column(j: int) -> np.ndarray:
            return np.exp(-0.5 * ((z - z[j]) ** 2).sum(axis=1)) * (sec == sec[j])

        return column


def vision_space_kernel(pool, *, n_components: int = 32, spatial_scale: float = 3.0) -> VisionSpaceKernel:
    """The pool's :class:`VisionSpaceKernel` (cached on the pool; exclusions reset the cache)."""
    key = f"vision_space_kernel_{n_components}_{spatial_scale}"
    if key not in pool._cache:
        pool._cache[key] = VisionSpaceKernel(pool, n_components=n_components, spatial_scale=spatial_scale)
    return pool._cache[key]


def joint_features(pool, n_components: int = 32, spatial_weight: float = 1.0) -> np.ndarray:
    """Vision PCA and coordinates as one feature matrix (cached on the pool).

    The standardised vision PCA is scaled to total variance 1 and each section's coordinates are
    centred and scaled to an RMS radius of 1 (statistics of the non-excluded spots), then
    multiplied by ``spatial_weight``: vision and space weigh equally by default.
    """
    key = f"joint_features_{n_components}_{spatial_weight}"
    if key in pool._cache:
        return pool._cache[key]
    inpool = ~pool.excluded if (~pool.excluded).sum() >= 2 else np.ones(pool.n, bool)
    V = pool.vision_features(n_components).astype(np.float64)
    V = V / (np.sqrt(V[inpool].var(axis=0).sum()) or 1.0)
    xy = np.zeros((pool.n, 2))
    for s in pool.section_names:
        m = pool.sections == s
        ref = pool.coords[m & inpool] if (m & inpool).any() else pool.coords[m]
        mu = ref.mean(axis=0)
        r = float(np.sqrt(((ref - mu) ** 2).sum(axis=1).mean())) or 1.0
        xy[m] = (pool.coords[m] - mu) / r
    F = np.hstack([V, spatial_weight * xy])
    pool._cache[key] = F
    return F


class _DesignSampler(Sampler):
    """Runs ``_pick`` with single-threaded BLAS: its matrices are small and its greedy loops are
    many tiny vector operations, which thread pools slow down on a busy machine."""

    needs_vision = True

    def _select(self, pool, n, state, available, rng):
        with single_thread(torch_too=False):
            return self._pick(pool, n, state, available, rng)

    def _pick(self, pool, n, state, available, rng):
        raise NotImplementedError


class UncertaintySampler(_DesignSampler):
    """Bootstrap-ridge predictive variance with a batch-aware discount (see module docstring).

    ``batch_aware=False`` drops the discount (the top ``n`` variances).
    """

    name = "uncertainty"

    def __init__(self, *, seed: int = 0, n_members: int = 10, n_genes: int = 50, min_measured: int = 5,
                 n_components: int = 32, spatial_scale: float = 3.0, max_candidates: int = 8192,
                 batch_aware: bool = True) -> None:
        super().__init__(seed=seed)
        self.n_members, self.n_genes, self.min_measured = n_members, n_genes, min_measured
        self.n_components, self.spatial_scale = n_components, spatial_scale
        self.max_candidates = max_candidates
        self.batch_aware = batch_aware

    def _pick(self, pool, n, state, available, rng):
        from sklearn.linear_model import Ridge, RidgeCV

        view = state.measured_view()
        Y = _top_variance_targets(view.counts, self.n_genes) if len(view) >= self.min_measured else None
        if Y is None:  # no model yet: k-center on the vision features
            picks = KCenterSampler(seed=self.seed, n_components=self.n_components)._select(pool, n, state, available, rng)
            self.last_scores = None
            return picks
        key = f"design_{self.n_components}"  # the same design (and cache entry) as SpacePredictor
        if key not in pool._cache:
            pool._cache[key] = design_matrix(pool.vision, pool.coords, pool.sections, n_components=self.n_components)
        X = pool._cache[key]
        X = X[:, : 2 + max(1, len(view) // 4)]  # coordinates + as many vision PCs as the data supports
        Xm = X[view.index]
        alpha = float(RidgeCV(alphas=_ALPHAS).fit(Xm, Y).alpha_)
        cand = _subset(np.flatnonzero(available), self.max_candidates, n, rng)
        Xc = X[cand]
        preds = np.empty((self.n_members, len(cand), Y.shape[1]))
        for b in range(self.n_members):
            w = rng.multinomial(len(Xm), np.full(len(Xm), 1.0 / len(Xm))).astype(np.float64)
            preds[b] = Ridge(alpha=alpha).fit(Xm, Y, sample_weight=w).predict(Xc)
        var = preds.var(axis=0).mean(axis=1)
        column = None
        if self.batch_aware:
            column = vision_space_kernel(pool, n_components=self.n_components, spatial_scale=self.spatial_scale).columns(cand)
        discount = np.ones(len(cand))
        taken = np.zeros(len(cand), bool)
        tie = 1e-12 * rng.random(len(cand))  # random tie-break
        picks, scores = [], []
        for _ in range(n):
            j = int(np.argmax(np.where(taken, -np.inf, var * discount + tie)))
            picks.append(cand[j])
            scores.append(float(var[j] * discount[j]))
            taken[j] = True
            if column is not None:
                discount *= 1.0 - column(j)
        self.last_scores = np.array(scores)
        return np.array(picks)


class GPVarianceSampler(_DesignSampler):
    """Greedy GP posterior-variance design on the vision-space kernel (see module docstring).

    ``noise``: observation noise variance relative to the prior variance 1.
    """

    name = "gp"

    def __init__(self, *, seed: int = 0, n_components: int = 32, spatial_scale: float = 3.0, noise: float = 0.05,
                 max_candidates: int = 2048, max_conditioning: int = 2000) -> None:
        super().__init__(seed=seed)
        if not noise > 0:
            raise ValueError(f"gp: the noise variance must be > 0, got {noise}")
        self.n_components, self.spatial_scale, self.noise = n_components, spatial_scale, float(noise)
        self.max_candidates, self.max_conditioning = max_candidates, max_conditioning

    def _pick(self, pool, n, state, available, rng):
        from ._linalg import cholesky_lower, solve_lower

        kern = vision_space_kernel(pool, n_components=self.n_components, spatial_scale=self.spatial_scale)
        cand = _subset(np.flatnonzero(available), self.max_candidates, n, rng)
        cond = np.flatnonzero(state.selected)
        if len(cond) > self.max_conditioning:
            cond = np.sort(rng.choice(cond, self.max_conditioning, replace=False))
        m, s = len(cand), len(cond)
        # W[r] = row r of L^-1 K_(conditioning + picks), over the candidates (incremental Cholesky)
        W = np.zeros((s + n, m))
        if s:
            L = cholesky_lower(kern(cond, cond) + self.noise * np.eye(s))
            W[:s] = solve_lower(L, kern(cond, cand))
        var = 1.0 - (W[:s] ** 2).sum(axis=0)  # prior variance k(x, x) = 1
        column = kern.columns(cand)
        taken = np.zeros(m, bool)
        tie = 1e-12 * rng.random(m)  # random tie-break (all prior variances are equal)
        picks, scores = [], []
        for t in range(n):
            j = int(np.argmax(np.where(taken, -np.inf, var + tie)))
            picks.append(cand[j])
            scores.append(float(var[j]))
            r = s + t
            W[r] = (column(j) - W[:r].T @ W[:r, j]) / np.sqrt(max(var[j], 0.0) + self.noise)
            var = np.maximum(var - W[r] ** 2, 0.0)
            taken[j] = True
        self.last_scores = np.array(scores)
        return np.array(picks)


class LCMDSampler(_DesignSampler):
    """Largest-cluster maximum distance in :func:`joint_features` (see module docstring)."""

    name = "lcmd"

    def __init__(self, *, seed: int = 0, n_components: int = 32, spatial_weight: float = 1.0,
                 max_points: int = 10_000) -> None:
        super().__init__(seed=seed)
        self.n_components, self.spatial_weight, self.max_points = n_components, spatial_weight, max_points

    def _pick(self, pool, n, state, available, rng):
        F = joint_features(pool, self.n_components, self.spatial_weight)
        U = _subset(np.flatnonzero(available), self.max_points, n, rng)
        Fu = F[U]
        centres = np.flatnonzero(state.selected)
        names = list(dict.fromkeys(pool.sections[U]))
        n_real = len(centres) + n  # cluster ids: centres, then the batch's picks, then one per section mean
        dmin = np.zeros(len(U))
        assign = np.zeros(len(U), dtype=np.int64)
        members, virtual = [], []
        for i, s in enumerate(names):
            mu = np.flatnonzero(pool.sections[U] == s)
            cs = np.flatnonzero(pool.sections[centres] == s)
            members.append(mu)
            virtual.append(len(cs) == 0)
            if len(cs) == 0:
                dmin[mu] = ((Fu[mu] - Fu[mu].mean(axis=0)) ** 2).sum(axis=1)
                assign[mu] = n_real + i
                continue
            for a in range(0, len(mu), 2048):
                D = _sqdist(Fu[mu[a:a + 2048]], F[centres[cs]])
                k = D.argmin(axis=1)
                dmin[mu[a:a + 2048]] = D[np.arange(len(k)), k]
                assign[mu[a:a + 2048]] = cs[k]
        sec_of = np.empty(len(U), dtype=np.int64)
        for i, mu in enumerate(members):
            sec_of[mu] = i
        taken = np.zeros(len(U), bool)
        picks, scores = [], []
        for t in range(n):
            ssd = np.bincount(assign, weights=dmin, minlength=n_real + len(names))
            if ssd.max() > 0:
                c = int(np.argmax(ssd))
                mem = np.flatnonzero((assign == c) & ~taken)
                j = int(mem[np.argmax(dmin[mem])])
            else:  # every remaining spot coincides with a centre
                j = int(rng.choice(np.flatnonzero(~taken)))
            picks.append(U[j])
            scores.append(float(np.sqrt(dmin[j])))
            taken[j] = True
            i = sec_of[j]
            mu = members[i]
            d = ((Fu[mu] - Fu[j]) ** 2).sum(axis=1)
            closer = np.ones(len(mu), bool) if virtual[i] else d < dmin[mu]
            virtual[i] = False
            dmin[mu[closer]] = d[closer]
            assign[mu[closer]] = len(centres) + t
            dmin[j], assign[j] = 0.0, len(centres) + t
        self.last_scores = np.array(scores)
        return np.array(picks)


# ------------------------------------------------------------------------------------- helpers


def _subset(cand: np.ndarray, limit: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``cand`` itself, or a sorted random subset of ``max(limit, n)`` of it when larger."""
    size = max(int(limit), int(n))
    if len(cand) <= size:
        return cand
    return np.sort(rng.choice(cand, size, replace=False))


def _top_variance_targets(counts, n_genes: int) -> np.ndarray | None:
    """z-scored log1p-normalised expression of the ``n_genes`` highest-variance genes of the
    measured rows; None when no gene varies."""
    import scipy.sparse as sp

    X = sp.csr_matrix(counts, dtype=np.float64)
    totals = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(TARGET_SUM, totals, out=np.zeros_like(totals), where=totals > 0)
    X = sp.csr_matrix(sp.diags(scale) @ X)
    X.data = np.log1p(X.data)
    mean = np.asarray(X.mean(axis=0)).ravel()
    var = np.asarray(X.multiply(X).mean(axis=0)).ravel() - mean**2
    top = np.argsort(-var, kind="stable")[:n_genes]
    top = top[var[top] > 1e-12]
    if len(top) == 0:
        return None
    Y = X[:, top].toarray()
    return (Y - Y.mean(axis=0)) / Y.std(axis=0)
