"""The measured set in the reference space, and the reward of a selection state.

:class:`MeasuredEmbedder` embeds REVEALED spots (from ``state.measured_view()``: counts of
sequenced spots only) into the reference space, with their nearest cluster and transferred cell
type, caching per spot (keyed by the spot's count version, so overwritten imports re-embed).
Use one embedder per data source (one section's oracle or one real acquisition).

:class:`RewardEvaluator` computes the :class:`~napari_scr2st.sampling.reward.RewardTerms` of a
state's measured set (cumulative, METHOD section 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .reward import (
    RewardTerms,
    RewardWeights,
    celltype_entropy,
    manifold_coverage,
    spatial_coverage,
)

__all__ = ["MeasuredSet", "MeasuredEmbedder", "RewardEvaluator"]


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
        )

    def total(self, state) -> float:
        return self.terms(state).total(self.weights)
