"""The measured set in the reference space, and the reward of a selection state.

:class:`MeasuredEmbedder` embeds REVEALED spots (from ``state.measured_view()``: counts of
sequenced spots only) into the reference space, with their nearest cluster and transferred cell
type, caching per spot (keyed by the spot's count version, so overwritten imports re-embed).
Use one embedder per data source (one section's oracle or one real acquisition).

:class:`RewardEvaluator` computes the :class:`~napari_scr2st.sampling.reward.RewardTerms` of a
state's measured set (cumulative, METHOD section 3).

:func:`variance_index` is the pool's Gaussian-process geometry of the ``r_unc`` term (from the
vision embedding and the coordinates only; cached on the pool).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .reward import (
    RewardTerms,
    RewardWeights,
    VarianceIndex,
    celltype_entropy,
    manifold_coverage,
    spatial_coverage,
)

__all__ = ["MeasuredSet", "MeasuredEmbedder", "RewardEvaluator", "UncertaintyKernel", "variance_index"]

#: observation noise of the ``r_unc`` Gaussian process (relative to the prior variance 1)
UNC_NOISE = 1.0


class UncertaintyKernel:
    """The prior covariance of ``r_unc``: ``(k_hist + k_space) / 2`` within a section, 0 across.

    ``k_hist(i, j) = x_i . x_j``: a linear kernel (Bayesian ridge regression) on the ridge
    surrogate's design (:func:`~napari_scr2st.sampling.surrogate.design_matrix`: standardised
    vision PCA and section-normalised coordinates), scaled to mean prior variance 1 over the
    pool; ``k_space(i, j) = exp(-|p_i - p_j|^2 / (2 (3 pitch)^2))`` on the pixel coordinates.
    A histology regression plus a spatially smooth residual: the structure of SCR2Net with its
    within-slide correction. Without a vision embedding only ``k_space`` is used.
    """

    def __init__(self, pool, *, n_components: int = 32, spatial_scale: float = 3.0) -> None:
        from scipy.spatial import cKDTree

        from .surrogate import design_matrix

        inpool = ~pool.excluded if (~pool.excluded).sum() >= 2 else np.ones(pool.n, bool)
        self._sec = np.unique(pool.sections, return_inverse=True)[1]
        xy = np.zeros((pool.n, 2))
        for s in pool.section_names:
            m = pool.sections == s
            pts = pool.coords[m & inpool] if (m & inpool).sum() >= 2 else pool.coords[m]
            pitch = float(np.median(cKDTree(pts).query(pts, k=2)[0][:, 1])) if len(pts) > 1 else 1.0
            xy[m] = pool.coords[m] / (spatial_scale * (pitch if pitch > 1e-12 else 1.0))
        self._xy = xy
        self._x = None
        if pool.vision is not None:
            X = design_matrix(pool.vision, pool.coords, pool.sections, n_components=n_components)
            X = X - X[inpool].mean(axis=0)
            scale = float(np.sqrt((X[inpool] ** 2).sum(axis=1).mean())) or 1.0
            self._x = X / scale

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        A, B = self._xy[a], self._xy[b]
        d2 = np.maximum((A**2).sum(1)[:, None] + (B**2).sum(1)[None, :] - 2.0 * A @ B.T, 0.0)
        K = np.exp(-0.5 * d2)
        if self._x is not None:
            K = 0.5 * (K + self._x[a] @ self._x[b].T)
        K[self._sec[a][:, None] != self._sec[b][None, :]] = 0.0
        return K

    def diag(self, a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.int64)
        if self._x is None:
            return np.ones(len(a))
        return 0.5 * (1.0 + (self._x[a] ** 2).sum(axis=1))


def variance_index(pool, *, noise: float = UNC_NOISE) -> VarianceIndex:
    """The pool's :class:`~napari_scr2st.sampling.reward.VarianceIndex` with the
    :class:`UncertaintyKernel` (cached on the pool; exclusions reset the cache). Reads the vision
    embedding and the coordinates only."""
    key = f"variance_index_{noise}"
    if key not in pool._cache:
        pool._cache[key] = VarianceIndex(UncertaintyKernel(pool), pool.sections, ~pool.excluded, noise=noise)
    return pool._cache[key]


@dataclass
class MeasuredSet:
    """Measured spots: pool ``index``, space coordinates ``z``, ``cluster``, type ``codes``, ``props``."""

    index: np.ndarray
    z: np.ndarray
    cluster: np.ndarray
    codes: np.ndarray
    props: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


class MeasuredEmbedder:
    """Embeds the measured spots of a state into ``space`` (cached per spot)."""

    def __init__(self, space) -> None:
        self.space = space
        self._cache: dict[tuple[int, int], tuple[np.ndarray, int, int, np.ndarray]] = {}

    def __call__(self, state) -> MeasuredSet:
        view = state.measured_view()
        sp_ = self.space
        d = sp_.n_dims
        if len(view) == 0:
            return MeasuredSet(view.index, np.zeros((0, d), np.float32), np.zeros(0, np.int64),
                               np.zeros(0, np.int64), np.zeros((0, sp_.n_types), np.float32))
        versions = view.versions if view.versions is not None else np.zeros(len(view), np.int64)
        keys = [(int(i), int(v)) for i, v in zip(view.index, versions, strict=False)]
        todo = np.array([k not in self._cache for k in keys])
        if todo.any():
            rows = np.flatnonzero(todo)
            if sp_.is_gene_space:
                Z = sp_.embed_counts(view.counts[rows], view.genes)
            else:
                key = sp_.embedding_key
                if key not in view.obsm:
                    raise ValueError(
                        f"the reference space uses obsm['{key}'] but the measured spots did not bring it "
                        "(reveal/import it together with the counts)"
                    )
                Z = np.asarray(view.obsm[key][rows], dtype=np.float32)
            cl = sp_.nearest_cluster(Z)
            lt = sp_.transfer_labels(Z)
            for j, r in enumerate(rows):
                self._cache[keys[r]] = (Z[j], int(cl[j]), int(lt.codes[j]), lt.proportions[j])
        vals = [self._cache[k] for k in keys]
        return MeasuredSet(
            index=view.index,
            z=np.stack([v[0] for v in vals]).astype(np.float32),
            cluster=np.array([v[1] for v in vals], dtype=np.int64),
            codes=np.array([v[2] for v in vals], dtype=np.int64),
            props=np.stack([v[3] for v in vals]).astype(np.float32),
        )


class RewardEvaluator:
    """Reward terms of a state's measured set over a pool (``type_mode``: 'labels' or 'proportions')."""

    def __init__(self, space, pool, weights: RewardWeights | None = None, *, type_mode: str = "labels",
                 embedder: MeasuredEmbedder | None = None) -> None:
        if type_mode not in ("labels", "proportions"):
            raise ValueError("type_mode must be 'labels' or 'proportions'")
        self.space = space
        self.pool = pool
        self.weights = weights or RewardWeights()
        self.type_mode = type_mode
        self.embedder = embedder or MeasuredEmbedder(space)

    def measured(self, state) -> MeasuredSet:
        return self.embedder(state)

    def terms(self, state, measured: MeasuredSet | None = None) -> RewardTerms:
        m = measured if measured is not None else self.embedder(state)
        if len(m) == 0:
            return RewardTerms.zero()
        types = m.codes if self.type_mode == "labels" else m.props
        return RewardTerms(
            sc=manifold_coverage(m.cluster, self.space.n_clusters),
            type=celltype_entropy(types, self.space.n_types),
            sp=float(spatial_coverage(self.pool.spatial_index(), selected=m.index)),
            unc=variance_index(self.pool).value(m.index),
        )

    def total(self, state) -> float:
        return self.terms(state).total(self.weights)
