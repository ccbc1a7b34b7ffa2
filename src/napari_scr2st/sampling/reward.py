"""The reward of a MEASURED set (METHOD section 3): four terms in [0, 1], higher is better.

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

- ``r_unc`` (expected-error reduction, docs/method.md section 4.1): the reduction of a Gaussian
  process's posterior variance over the UNSEQUENCED spots, per section
  ``1 - sum_{p in P_s \\ S} var(p | S) / sum_{p in P_s} k(p, p)`` (:class:`VarianceIndex`;
  the kernel, from vision and coordinates only, is chosen by the caller:
  :func:`napari_scr2st.sampling.measured.variance_index`). Sections weighted by ``|P_s|``.

The weighted total is ``R = w_sc r_sc + w_type r_type + w_sp r_sp + w_unc r_unc``
(:class:`RewardWeights`; not renormalised, so it is in ``[0, sum of the weights]``; the paper's
weights 20, 5, 0.05 were for unnormalised terms, with these normalised terms start near equal
weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import DEFAULT_UNC_WEIGHT

__all__ = [
    "TERM_NAMES",
    "DEFAULT_UNC_WEIGHT",
    "RewardWeights",
    "RewardTerms",
    "SpatialIndex",
    "manifold_coverage",
    "celltype_entropy",
    "spatial_coverage",
    "VarianceIndex",
    "VarianceGains",
    "variance_reduction",
    "compute_reward",
]


#: the reward terms, in the order of :meth:`RewardWeights.as_array` and :meth:`RewardTerms.as_array`
TERM_NAMES = ("sc", "type", "sp", "unc")


@dataclass(frozen=True)
class RewardWeights:
    """User-tunable weights of the four terms (non-negative, not all zero)."""

    sc: float = 1.0
    type: float = 1.0
    sp: float = 1.0
    unc: float = DEFAULT_UNC_WEIGHT

    def __post_init__(self) -> None:
        w = self.as_array()
        if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"reward weights must be finite, >= 0 and not all 0, got {self}")

    def as_array(self) -> np.ndarray:
        return np.array([self.sc, self.type, self.sp, self.unc], dtype=np.float64)

    def normalized(self) -> np.ndarray:
        """Weights divided by their sum (what the policy is conditioned on)."""
        w = self.as_array()
        return w / w.sum()

    @classmethod
    def parse(cls, text: str | Sequence[float] | RewardWeights | None) -> RewardWeights:
        """From ``"1,1,0.5,1"`` (sc,type,sp,unc), a 4-sequence, or an instance (``None`` ->
        the defaults). Three numbers are ``sc,type,sp`` with ``unc`` = 0 (what they meant before
        the ``r_unc`` term existed)."""
        if text is None:
            return cls()
        if isinstance(text, RewardWeights):
            return text
        if isinstance(text, str):
            parts = [p for p in text.replace(";", ",").split(",") if p.strip()]
            try:
                vals = [float(p) for p in parts]
            except ValueError as e:
                raise ValueError(f"reward weights must be four numbers 'sc,type,sp,unc', got {text!r}") from e
        else:
            vals = [float(v) for v in text]
        if len(vals) == 3:
            vals.append(0.0)
        if len(vals) != 4:
            raise ValueError(f"reward weights must be four numbers 'sc,type,sp,unc' (or three: 'sc,type,sp'), "
                             f"got {text!r}")
        return cls(*vals)

    def __str__(self) -> str:
        return f"sc={self.sc:g}, type={self.type:g}, sp={self.sp:g}, unc={self.unc:g}"


@dataclass(frozen=True)
class RewardTerms:
    """The four reward terms of a measured set (``unc`` is 0 where it was not computed)."""

    sc: float
    type: float
    sp: float
    unc: float = 0.0

    def as_array(self) -> np.ndarray:
        return np.array([self.sc, self.type, self.sp, self.unc], dtype=np.float64)

    def total(self, weights: RewardWeights | None = None) -> float:
        w = (weights or RewardWeights()).as_array()
        return float(w @ self.as_array())

    def as_dict(self, weights: RewardWeights | None = None) -> dict[str, float]:
        d = {"r_sc": self.sc, "r_type": self.type, "r_sp": self.sp, "r_unc": self.unc}
        if weights is not None:
            d["total"] = self.total(weights)
        return d

    @classmethod
    def zero(cls) -> RewardTerms:
        return cls(0.0, 0.0, 0.0, 0.0)


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


class VarianceIndex:
    """Per-section Gaussian-process geometry for :func:`variance_reduction` (``r_unc``).

    ``kernel(a, b)``: the prior covariance matrix of pool indices ``a`` and ``b`` (computed from
    inputs only: vision embedding and coordinates); ``kernel.diag(a)`` the prior variances
    (1 when the kernel has no ``diag``). The kernel is taken as zero across sections, so the
    posterior is computed section by section. ``noise``: observation noise variance (relative
    to the prior variance). Each section's variance is summed over its pool spots, or over at
    most ``max_anchors`` of them drawn once (seeded); the posterior conditions on at most
    ``max_conditioning`` selected spots of a section (a random subset above that, which
    over-estimates the remaining variance).
    """

    def __init__(self, kernel, sections: np.ndarray, in_pool: np.ndarray | None = None, *, noise: float = 0.1,
                 max_anchors: int = 2048, max_conditioning: int = 2000, seed: int = 0) -> None:
        if not noise > 0:
            raise ValueError(f"the noise variance must be > 0, got {noise}")
        self.kernel = kernel
        self.noise = float(noise)
        self.max_conditioning = int(max_conditioning)
        self.sections = np.asarray(sections).astype(str)
        n = len(self.sections)
        self.in_pool = np.ones(n, dtype=bool) if in_pool is None else np.asarray(in_pool, dtype=bool)
        rng = np.random.default_rng(seed)
        self.names: list[str] = []
        self.members: list[np.ndarray] = []
        self.anchors: list[np.ndarray] = []
        self.prior: list[np.ndarray] = []
        self.sec_id = np.full(n, -1, dtype=np.int64)
        for name in dict.fromkeys(self.sections[self.in_pool]):
            idx = np.flatnonzero((self.sections == name) & self.in_pool)
            anc = idx if len(idx) <= max_anchors else np.sort(rng.choice(idx, max_anchors, replace=False))
            self.names.append(name)
            self.members.append(idx)
            self.anchors.append(anc)
            self.prior.append(self._diag(anc))
            self.sec_id[idx] = len(self.names) - 1
        total = sum(len(m) for m in self.members)
        self.section_weights = np.array([len(m) / total for m in self.members]) if total else np.zeros(0)

    def _diag(self, a: np.ndarray) -> np.ndarray:
        d = getattr(self.kernel, "diag", None)
        return np.asarray(d(a), dtype=np.float64) if d is not None else np.ones(len(a))

    def _conditioning(self, selected: np.ndarray, i: int) -> np.ndarray:
        sel = np.asarray(selected, dtype=np.int64)
        sel = np.unique(sel[self.sec_id[sel] == i]) if sel.size else sel
        if len(sel) > self.max_conditioning:
            sel = np.sort(np.random.default_rng(len(sel)).choice(sel, self.max_conditioning, replace=False))
        return sel

    def _factor(self, sel: np.ndarray):
        """Cholesky factor of ``K(S, S) + noise I``."""
        from ._linalg import cholesky_lower

        return cholesky_lower(self.kernel(sel, sel) + self.noise * np.eye(len(sel)))

    def section_value(self, selected: np.ndarray, i: int) -> float:
        """``1 - sum_{a not in S} var(a | S) / sum_a k(a, a)`` over the section's anchors."""
        from ._linalg import solve_lower

        sel = self._conditioning(selected, i)
        if len(sel) == 0:
            return 0.0
        anc, prior = self.anchors[i], self.prior[i]
        tot = float(prior.sum())
        if tot <= 0:
            return 1.0
        W = solve_lower(self._factor(sel), self.kernel(sel, anc))
        var = np.maximum(prior - (W**2).sum(axis=0), 0.0)
        var[np.isin(anc, sel)] = 0.0  # a sequenced spot's expression is known
        return float(np.clip(1.0 - var.sum() / tot, 0.0, 1.0))

    def value(self, selected: np.ndarray) -> float:
        """``r_unc`` of a selection: sections averaged weighted by their number of pool spots."""
        sel = np.asarray(selected, dtype=np.int64)
        if sel.size == 0:
            return 0.0
        return float(sum(w * self.section_value(sel, i) for i, w in enumerate(self.section_weights)))

    def gains(self, selected: np.ndarray, candidates: np.ndarray, *, chunk: int = 1024) -> np.ndarray:
        """The exact gain of ``r_unc`` for adding each candidate ALONE to ``selected``.

        For a candidate ``c`` of section ``s`` (weight ``w_s``, anchors ``A``, prior total ``T``):
        ``w_s / T * (var(c | S) [c in A] + sum_{a in A, a not in S, a != c} cov(a, c | S)^2 /
        (var(c | S) + noise))``; 0 for a selected or out-of-pool candidate.
        """
        from ._linalg import solve_lower

        cand = np.asarray(candidates, dtype=np.int64)
        out = np.zeros(len(cand))
        sel_all = np.asarray(selected, dtype=np.int64)
        for i in np.unique(self.sec_id[cand]) if cand.size else []:
            if i < 0:
                continue
            rows = np.flatnonzero(self.sec_id[cand] == i)
            anc, prior = self.anchors[i], self.prior[i]
            tot = float(prior.sum())
            if tot <= 0:
                continue
            sel = self._conditioning(sel_all, i)
            open_anchor = ~np.isin(anc, sel)
            L = self._factor(sel) if len(sel) else None
            Wa = solve_lower(L, self.kernel(sel, anc)) if L is not None else None
            for start in range(0, len(rows), chunk):
                r = rows[start:start + chunk]
                c = cand[r]
                cov = self.kernel(anc, c)  # (|A|, m)
                var_c = self._diag(c)
                if L is not None:
                    Wc = solve_lower(L, self.kernel(sel, c))
                    cov = cov - Wa.T @ Wc
                    var_c = var_c - (Wc**2).sum(axis=0)
                var_c = np.maximum(var_c, 0.0)
                same = anc[:, None] == c[None, :]
                cov = np.where(same | ~open_anchor[:, None], 0.0, cov)
                g = (cov**2).sum(axis=0) / (var_c + self.noise) + var_c * same.any(axis=0)
                g[np.isin(c, sel)] = 0.0
                out[r] = self.section_weights[i] * g / tot
        return out


class VarianceGains:
    """The gains of ``r_unc`` (:meth:`VarianceIndex.gains`) of a fixed set of ``candidates``,
    kept exact while spots are added one at a time (a rank-one update of the posterior
    covariance between the section's anchors and candidates and the candidates; for greedy
    selection)."""

    def __init__(self, index: VarianceIndex, selected: np.ndarray, candidates: np.ndarray) -> None:
        from ._linalg import solve_lower

        self.index = index
        self.candidates = np.asarray(candidates, dtype=np.int64)
        self._blocks = []
        self._where = np.full(len(self.candidates), -1, dtype=np.int64)
        sel_all = np.asarray(selected, dtype=np.int64)
        for i in np.unique(index.sec_id[self.candidates]) if self.candidates.size else []:
            if i < 0:
                continue
            cpos = np.flatnonzero(index.sec_id[self.candidates] == i)
            c = self.candidates[cpos]
            anc = index.anchors[i]
            U = np.union1d(anc, c)
            sel = index._conditioning(sel_all, i)
            C = index.kernel(U, c)
            if len(sel):
                L = index._factor(sel)
                C = C - solve_lower(L, index.kernel(sel, U)).T @ solve_lower(L, index.kernel(sel, c))
            row_of_c = np.searchsorted(U, c)
            tot = float(index.prior[i].sum())
            self._blocks.append({"cpos": cpos, "U": U, "C": C, "row_of_c": row_of_c,
                                 "open": np.isin(U, anc) & ~np.isin(U, sel), "scale": index.section_weights[i] / tot
                                 if tot > 0 else 0.0, "taken": np.isin(c, sel)})
            self._where[cpos] = len(self._blocks) - 1

    def gains(self) -> np.ndarray:
        """Current gain of every candidate (0 for one already added)."""
        out = np.zeros(len(self.candidates))
        noise = self.index.noise
        for b in self._blocks:
            C, rc = b["C"], b["row_of_c"]
            var_c = np.maximum(C[rc, np.arange(len(rc))], 0.0)
            own = np.zeros_like(C, dtype=bool)
            own[rc, np.arange(len(rc))] = True
            cov2 = np.where(b["open"][:, None] & ~own, C**2, 0.0).sum(axis=0)
            g = cov2 / (var_c + noise) + var_c * b["open"][rc]
            g[b["taken"]] = 0.0
            out[b["cpos"]] = b["scale"] * g
        return out

    def add(self, position: int) -> None:
        """Add the candidate at ``position`` (of ``candidates``) to the selection."""
        k = self._where[int(position)]
        if k < 0:
            return
        b = self._blocks[k]
        j = int(np.flatnonzero(b["cpos"] == position)[0])
        C, rj = b["C"], b["row_of_c"][j]
        var_j = max(float(C[rj, j]), 0.0)
        b["C"] = C - np.outer(C[:, j], C[b["row_of_c"], j]) / (var_j + self.index.noise)
        b["open"][rj] = False
        b["taken"][j] = True


def variance_reduction(index: VarianceIndex, selected: np.ndarray) -> float:
    """``r_unc``, the reduction of the predictor's posterior variance over the UNSEQUENCED spots
    (see :class:`VarianceIndex`): per section ``1 - sum_{p not in S} var(p | S) / sum_p k(p, p)``
    for a Gaussian process with the index's kernel; 0 for an empty selection, 1 when every spot
    is selected, never decreasing when a spot is added. Uses no expression: the posterior
    variance of a GP depends on where the observations are, not on their values."""
    sel = np.asarray(selected)
    if sel.dtype == bool:
        sel = np.flatnonzero(sel)
    return index.value(sel.astype(np.int64))
