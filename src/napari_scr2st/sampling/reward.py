"""The reward of a MEASURED set (METHOD section 3): three terms in [0, 1], higher is better.

All terms are computed on the CUMULATIVE measured set ``S`` (never on the last batch alone);
the reward of a round is the gain of the weighted total over the previous round.

- ``r_sc`` (manifold coverage): the fraction of the reference's k-means clusters that hold the
  nearest centroid of at least one spot of ``S`` (hard coverage; no soft variant is used).
- ``r_type`` (cell-type diversity): Shannon entropy of the cell types of the spots of ``S``
  (hard labels from kNN label transfer; or the mean of their type proportions when proportions
  are given) divided by ``log(T)``, ``T`` = number of cell types in the REFERENCE, so 1 means all
  reference types equally represented. With ``T <= 1`` the term is 0.
- ``r_sp`` (spatial coverage), computed WITHIN each section ``s``: with ``P_s`` the pool spots of
  the section (excluded spots are not part of the pool) and ``S_s`` the measured ones,
  ``r_s = clip(1 - mean_{p in P_s} min_{q in S_s} ||p - q|| / norm_s, 0, 1)`` where ``norm_s`` is
  that mean distance for a single CENTRAL spot (the pool spot nearest to the section's coordinate
  centroid). ``r_s = 0`` when ``S_s`` is empty; a section with one pool spot has ``norm_s = 0``
  and ``r_s = 1`` when its spot is measured. Sections are averaged weighted by ``|P_s|``.

The weighted total is ``R = w_sc r_sc + w_type r_type + w_sp r_sp`` (:class:`RewardWeights`;
not renormalised, so it is in ``[0, w_sc + w_type + w_sp]``; the paper's weights 20, 5, 0.05
were for unnormalised terms, with these normalised terms start near equal weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "RewardWeights",
    "RewardTerms",
    "SpatialIndex",
    "manifold_coverage",
    "celltype_entropy",
    "spatial_coverage",
    "compute_reward",
]


@dataclass(frozen=True)
class RewardWeights:
    """User-tunable weights of the three terms (non-negative, not all zero)."""

    sc: float = 1.0
    type: float = 1.0
    sp: float = 1.0

    def __post_init__(self) -> None:
        w = self.as_array()
        if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"reward weights must be finite, >= 0 and not all 0, got sc={self.sc}, type={self.type}, sp={self.sp}")

    def as_array(self) -> np.ndarray:
        return np.array([self.sc, self.type, self.sp], dtype=np.float64)

    def normalized(self) -> np.ndarray:
        """Weights divided by their sum (what the policy is conditioned on)."""
        w = self.as_array()
        return w / w.sum()

    @classmethod
    def parse(cls, text: str | Sequence[float] | RewardWeights | None) -> RewardWeights:
        """From ``"1,1,0.5"``, a 3-sequence, or an instance (``None`` -> equal weights)."""
        if text is None:
            return cls()
        if isinstance(text, RewardWeights):
            return text
        if isinstance(text, str):
            parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
            try:
                vals = [float(p) for p in parts]
            except ValueError as e:
                raise ValueError(f"reward weights must be three numbers 'sc,type,sp', got {text!r}") from e
        else:
            vals = [float(v) for v in text]
        if len(vals) != 3:
            raise ValueError(f"reward weights must be three numbers 'sc,type,sp', got {text!r}")
        return cls(*vals)

    def __str__(self) -> str:
        return f"sc={self.sc:g}, type={self.type:g}, sp={self.sp:g}"


@dataclass(frozen=True)
class RewardTerms:
    """The three reward terms of a measured set."""

    sc: float
    type: float
    sp: float

    def as_array(self) -> np.ndarray:
        return np.array([self.sc, self.type, self.sp], dtype=np.float64)

    def total(self, weights: RewardWeights | None = None) -> float:
        w = (weights or RewardWeights()).as_array()
        return float(w @ self.as_array())

    def as_dict(self, weights: RewardWeights | None = None) -> dict[str, float]:
        d = {"r_sc": self.sc, "r_type": self.type, "r_sp": self.sp}
        if weights is not None:
            d["total"] = self.total(weights)
        return d

    @classmethod
    def zero(cls) -> RewardTerms:
        return cls(0.0, 0.0, 0.0)


# ----------------------------------------------------------------------------------- terms


def manifold_coverage(nearest_clusters: np.ndarray, n_clusters: int) -> float:
    """Fraction of ``n_clusters`` reference clusters that are the nearest of >= 1 measured spot."""
    if n_clusters <= 0:
        raise ValueError("n_clusters must be positive")
    c = np.asarray(nearest_clusters, dtype=np.int64).ravel()
    if c.size == 0:
        return 0.0
    if c.min() < 0 or c.max() >= n_clusters:
        raise ValueError(f"cluster indices must be in [0, {n_clusters}), got [{c.min()}, {c.max()}]")
    return float(np.unique(c).size / n_clusters)


def celltype_entropy(types: np.ndarray, n_types: int) -> float:
    """Normalised Shannon entropy of cell types.

    ``types``: integer codes (n,) in ``[0, n_types)`` (hard labels) or proportions (n, n_types)
    (their column means are the type distribution). Divided by ``log(n_types)``.
    """
    if n_types <= 1:
        return 0.0
    t = np.asarray(types)
    if t.size == 0:
        return 0.0
    if t.ndim == 2:
        if t.shape[1] != n_types:
            raise ValueError(f"proportions must have {n_types} columns, got {t.shape[1]}")
        p = np.clip(t.astype(np.float64), 0, None).sum(axis=0)
    else:
        t = t.astype(np.int64).ravel()
        if t.min() < 0 or t.max() >= n_types:
            raise ValueError(f"type codes must be in [0, {n_types}), got [{t.min()}, {t.max()}]")
        p = np.bincount(t, minlength=n_types).astype(np.float64)
    s = p.sum()
    if s <= 0:
        return 0.0
    p = p[p > 0] / s
    return float(np.clip(-(p * np.log(p)).sum() / np.log(n_types), 0.0, 1.0))


class SpatialIndex:
    """Per-section geometry of a pool for :func:`spatial_coverage` (computed once).

    ``coords`` (n, 2) pixels, ``sections`` (n,), ``in_pool`` (n,) bool (False = excluded; such
    spots are not covered and are never counted).
    """

    def __init__(self, coords: np.ndarray, sections: np.ndarray, in_pool: np.ndarray | None = None) -> None:
        self.coords = np.asarray(coords, dtype=np.float64)[:, :2]
        self.sections = np.asarray(sections).astype(str)
        n = len(self.coords)
        self.in_pool = np.ones(n, dtype=bool) if in_pool is None else np.asarray(in_pool, dtype=bool)
        self.names: list[str] = []
        self.members: list[np.ndarray] = []  # pool indices per section
        self.norms: list[float] = []
        self.centres: list[int] = []
        for name in dict.fromkeys(self.sections[self.in_pool]):
            idx = np.flatnonzero((self.sections == name) & self.in_pool)
            xy = self.coords[idx]
            centre = idx[np.argmin(((xy - xy.mean(axis=0)) ** 2).sum(axis=1))]
            norm = float(np.sqrt(((xy - self.coords[centre]) ** 2).sum(axis=1)).mean())
            self.names.append(name)
            self.members.append(idx)
            self.norms.append(norm)
            self.centres.append(int(centre))
        total = sum(len(m) for m in self.members)
        self.section_weights = np.array([len(m) / total for m in self.members]) if total else np.zeros(0)
        self.section_of = {name: i for i, name in enumerate(self.names)}

    def min_dist(self, selected: np.ndarray, section_idx: int) -> np.ndarray:
        """Distance of each pool spot of a section to its nearest selected spot of that section."""
        members = self.members[section_idx]
        sel = np.asarray(selected, dtype=np.int64)
        sel = sel[np.isin(sel, members)]
        if sel.size == 0:
            return np.full(len(members), np.inf)
        from scipy.spatial import cKDTree

        d, _ = cKDTree(self.coords[sel]).query(self.coords[members], k=1)
        return np.asarray(d, dtype=np.float64)

    def section_score(self, mean_dist: float, section_idx: int) -> float:
        """``clip(1 - mean_dist / norm, 0, 1)`` with the section's normaliser."""
        if not np.isfinite(mean_dist):
            return 0.0
        norm = self.norms[section_idx]
        if norm <= 0:
            return 1.0
        return float(np.clip(1.0 - mean_dist / norm, 0.0, 1.0))


def spatial_coverage(
    coords: np.ndarray | SpatialIndex,
    sections: np.ndarray | None = None,
    selected: np.ndarray | None = None,
    *,
    in_pool: np.ndarray | None = None,
    per_section: bool = False,
) -> float | tuple[float, dict[str, float]]:
    """``r_sp`` (see module docstring). ``selected``: pool indices (or a boolean mask).

    With ``per_section`` also returns ``{section: r_s}``.
    """
    index = coords if isinstance(coords, SpatialIndex) else SpatialIndex(coords, sections, in_pool)
    sel = np.asarray(selected if selected is not None else [], )
    if sel.dtype == bool:
        sel = np.flatnonzero(sel)
    sel = sel.astype(np.int64)
    sel = sel[index.in_pool[sel]] if sel.size else sel
    scores = {}
    total = 0.0
    for i, name in enumerate(index.names):
        md = index.min_dist(sel, i)
        r = index.section_score(float(md.mean()) if np.isfinite(md).all() else np.inf, i)
        scores[name] = r
        total += index.section_weights[i] * r
    return (float(total), scores) if per_section else float(total)


def compute_reward(
    *,
    nearest_clusters: np.ndarray,
    n_clusters: int,
    types: np.ndarray,
    n_types: int,
    spatial: SpatialIndex,
    selected: np.ndarray,
) -> RewardTerms:
    """All three terms of a measured set (``selected``: pool indices; the other arrays are
    per measured spot, aligned with ``selected``)."""
    return RewardTerms(
        sc=manifold_coverage(nearest_clusters, n_clusters),
        type=celltype_entropy(types, n_types),
        sp=float(spatial_coverage(spatial, selected=selected)),
    )
