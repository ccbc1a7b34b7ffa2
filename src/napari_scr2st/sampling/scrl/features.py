"""The SCRL policy's state features.

State features of every spot (built only from the pool, i.e. vision and location, the
selection state, and PREDICTIONS of a predictor trained on the measured spots; never from the
expression of an unmeasured spot):

- round-level features (input of the trunk, computed once per round and cached):
  the vision embedding reduced by a PCA stored in the policy (fitted on the training sections,
  so its axes mean the same on a new section), vision typicality (rank of the inverse mean kNN
  distance), section-normalised coordinates and radius, distance to the nearest selected spot of
  the same section (normalised by the section's spatial-reward normaliser), a Gaussian density
  of selected spots, "section has no selected spot", vision novelty (distance to the nearest
  selected spot in vision space), the predicted reference-space coordinates (first ``n_z``
  components, scaled by the reference's spread), the predicted cell-type proportions (kNN votes),
  "has a prediction", round index / number of rounds and the fraction of the budget used, and
  (``PolicyConfig.unc_feature``) the gain of the ``r_unc`` term for adding the spot to the
  selected set (:meth:`~napari_scr2st.sampling.reward.VarianceIndex.gains`: vision and
  coordinates only, pending spots included), as ``log1p(gain * pool size)``;
- within-round features (input of the small head, updated after each sub-step): distance to the
  nearest selected spot, "predicted cluster not yet covered", share of the predicted type among
  measured + picked spots.

:func:`static_features` (cached per pool) and :func:`round_features` build them;
:class:`PolicyFeatures` holds them with the within-round update; :class:`AuxSample` is a training
sample of features with the true term gains (targets of the auxiliary loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..measured import MeasuredSet
from ..pool import Pool
from ..state import SelectionState
from .network import N_DYN, PolicyConfig

__all__ = ["PolicyFeatures", "AuxSample", "static_features", "round_features", "fit_vision_transform",
           "apply_vision_transform", "unc_gain_feature"]


@dataclass
class PolicyFeatures:
    """Features of one round (see the module docstring) and what the within-round update needs."""

    x_round: np.ndarray  # (n, F) float32
    x_dyn: np.ndarray  # (n, N_DYN) float32
    available: np.ndarray  # (n,) bool
    coords: np.ndarray
    sec_id: np.ndarray
    members: list[np.ndarray]
    norms: np.ndarray
    dmin: np.ndarray  # pixels to the nearest selected spot of the same section (inf: none)
    pc: np.ndarray  # predicted nearest cluster (-1: no prediction)
    pt: np.ndarray  # predicted type code (-1: no prediction)
    covered: np.ndarray  # (K,) clusters covered by measured + pending spots
    tcount: np.ndarray  # (T,) type counts of measured + pending spots
    _trunk: Any = field(default=None, repr=False)
    _trunk_key: tuple = ()

    @property
    def n(self) -> int:
        return len(self.x_round)

    def dyn_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.dmin.copy(), self.covered.copy(), self.tcount.copy(), self.x_dyn.copy()

    @staticmethod
    def dyn_from(dmin, norms, sec_id, pc, pt, covered, tcount) -> np.ndarray:
        x = np.zeros((len(dmin), N_DYN), dtype=np.float32)
        x[:, 0] = np.where(np.isfinite(dmin), np.minimum(dmin / np.maximum(norms[sec_id], 1e-12), 2.0), 2.0)
        has = pc >= 0
        if has.any():
            x[has, 1] = (~covered[pc[has]]).astype(np.float32)
            tot = max(float(tcount.sum()), 1.0)
            x[has, 2] = tcount[pt[has]] / tot
        return x

    def apply_picks(self, picks: np.ndarray, dmin, covered, tcount) -> np.ndarray:
        """Update (in place) the within-round state after ``picks``; return the new x_dyn."""
        from scipy.spatial import cKDTree

        picks = np.asarray(picks, dtype=np.int64)
        for i in np.unique(self.sec_id[picks]):
            if i < 0:
                continue
            mem = self.members[i]
            p = picks[self.sec_id[picks] == i]
            d, _ = cKDTree(self.coords[p]).query(self.coords[mem], k=1)
            dmin[mem] = np.minimum(dmin[mem], d)
        ok = self.pc[picks] >= 0
        covered[self.pc[picks[ok]]] = True
        np.add.at(tcount, self.pt[picks[ok]], 1.0)
        return self.dyn_from(dmin, self.norms, np.maximum(self.sec_id, 0), self.pc, self.pt, covered, tcount)


@dataclass
class AuxSample:
    """Features of some available spots at one training sub-step and the scaled true marginal gain
    of each reward term (the auxiliary loss's targets, see
    :meth:`~napari_scr2st.sampling.scrl.environment.TermGains.sample`)."""

    x_round: np.ndarray  # (m, F) float32
    x_dyn: np.ndarray  # (m, N_DYN) float32
    target: np.ndarray  # (m, n_terms) float32, centred


def static_features(pool: Pool, config: PolicyConfig, vision_transform: dict[str, np.ndarray] | None,
                    cache_key: tuple) -> dict[str, Any]:
    """The round-independent features of every pool spot (vision PCA, typicality, normalised
    coordinates, section ids and spacing), cached in the pool under ``cache_key``.

    Without a ``vision_transform`` (a policy not trained yet) the vision PCA is fitted on this pool.
    """
    if cache_key in pool._cache:
        return pool._cache[cache_key]
    from scipy.spatial import cKDTree

    c = config
    n = pool.n
    xv = np.zeros((n, c.n_vision), dtype=np.float32)
    if pool.vision is not None:
        vt = vision_transform
        if vt is None:
            vt = fit_vision_transform(pool.vision[~pool.excluded].astype(np.float64), c.n_vision)
        elif c.vision_dim is not None and pool.vision.shape[1] != c.vision_dim:
            raise ValueError(f"the policy was trained on {c.vision_dim}-d vision embeddings; this pool has "
                             f"{pool.vision.shape[1]}-d (use the same vision encoder)")
        xv = apply_vision_transform(vt, pool.vision)
    inpool = ~pool.excluded
    typ = np.zeros(n, dtype=np.float32)
    nov_norm = 1.0
    if pool.vision is not None and inpool.sum() > 2:
        ip = np.flatnonzero(inpool)
        k = int(min(c.knn, len(ip) - 1))
        d, _ = cKDTree(xv[ip]).query(xv[ip], k=k + 1)
        inv = 1.0 / (d[:, 1:].mean(axis=1) + 1e-8)
        typ[ip] = (np.argsort(np.argsort(inv)) / max(len(ip) - 1, 1)).astype(np.float32)
        nov_norm = float(np.median(d[:, 1])) or 1.0
    index = pool.spatial_index()
    sec_id = np.full(n, -1, dtype=np.int64)
    xy = np.zeros((n, 3), dtype=np.float32)
    spacing = np.ones(len(index.members))
    for i, mem in enumerate(index.members):
        sec_id[mem] = i
        cxy = pool.coords[mem] - pool.coords[mem].mean(axis=0)
        r = np.sqrt((cxy**2).sum(axis=1).mean()) or 1.0
        xy[mem, :2] = cxy / r
        xy[mem, 2] = np.sqrt((xy[mem, :2] ** 2).sum(axis=1))
        if len(mem) > 1:
            dd, _ = cKDTree(pool.coords[mem]).query(pool.coords[mem], k=2)
            spacing[i] = float(np.median(dd[:, 1])) or 1.0
    out = dict(xv=xv, typ=typ, xy=xy, sec_id=sec_id, members=index.members,
               norms=np.maximum(np.array(index.norms, dtype=np.float64), 1e-12), spacing=spacing, nov_norm=nov_norm)
    pool._cache[cache_key] = out
    return out


def round_features(pool: Pool, state: SelectionState, space, config: PolicyConfig, static: dict[str, Any],
                   zscale: np.ndarray | None, *, measured: MeasuredSet | None = None, zp: np.ndarray | None = None,
                   available: np.ndarray | None = None) -> PolicyFeatures:
    """Round-level and within-round features of every pool spot (no unmeasured expression).

    ``measured``: the measured set in the space (from revealed counts); ``zp``: predicted
    space coordinates of all pool spots (``None`` before a predictor can be trained); ``static``:
    :func:`static_features` of the pool; ``zscale``: the reference's spread of the first ``n_z``
    space components (divides ``zp``).
    """
    from scipy.spatial import cKDTree

    c = config
    st = static
    n = pool.n
    sec_id, members, norms, spacing = st["sec_id"], st["members"], st["norms"], st["spacing"]
    sel = state.selected & ~pool.excluded
    dmin = np.full(n, np.inf)
    dens = np.zeros(n, dtype=np.float32)
    empty = np.ones(n, dtype=np.float32)
    for i, mem in enumerate(members):
        s = mem[sel[mem]]
        if len(s) == 0:
            continue
        h = 2.0 * spacing[i]
        kq = int(min(16, len(s)))
        d, _ = cKDTree(pool.coords[s]).query(pool.coords[mem], k=kq, distance_upper_bound=3 * h)
        d = np.asarray(d).reshape(len(mem), kq)
        dmin[mem] = d[:, 0]
        dens[mem] = np.where(np.isfinite(d), np.exp(-(d**2) / (2 * h * h)), 0.0).sum(axis=1)
        far = ~np.isfinite(dmin[mem])
        if far.any():
            d1, _ = cKDTree(pool.coords[s]).query(pool.coords[mem[far]], k=1)
            dmin[mem[far]] = d1
        empty[mem] = 0.0
    valid = sec_id >= 0
    dist_feat = np.full(n, 2.0, dtype=np.float32)
    dist_feat[valid] = np.where(np.isfinite(dmin[valid]), np.minimum(dmin[valid] / norms[sec_id[valid]], 2.0), 2.0)
    nov = np.full(n, 3.0, dtype=np.float32)
    if pool.vision is not None and sel.any():
        d, _ = cKDTree(st["xv"][sel]).query(st["xv"], k=1)
        nov = np.minimum(d / st["nov_norm"], 3.0).astype(np.float32)
    K, T = space.n_clusters, space.n_types
    z = np.zeros((n, c.n_z), dtype=np.float32)
    props = np.zeros((n, T), dtype=np.float32)
    pc = np.full(n, -1, dtype=np.int64)
    pt = np.full(n, -1, dtype=np.int64)
    covered = np.zeros(K, dtype=bool)
    tcount = np.zeros(T, dtype=np.float64)
    if measured is not None and len(measured):
        covered[measured.cluster] = True
        tcount += np.bincount(measured.codes, minlength=T)
    has_pred = 0.0
    if zp is not None:
        has_pred = 1.0
        z = (zp[:, : c.n_z] / zscale).astype(np.float32)
        lt = space.transfer_labels(zp)
        props = lt.proportions.astype(np.float32)
        pt = lt.codes.astype(np.int64)
        pc = space.nearest_cluster(zp)
        pend = np.flatnonzero(state.selected & ~state.measured)
        covered[pc[pend]] = True
        tcount += np.bincount(pt[pend], minlength=T)
    R = max(int(state.n_rounds or 1), 1)
    budget = max(int(state.budget or max(state.n_selected, 1)), 1)
    rf = np.array([has_pred, state.current_round / R, min(state.n_selected / budget, 1.0)], dtype=np.float32)
    parts = [st["xv"], st["typ"][:, None], st["xy"], dist_feat[:, None], np.log1p(dens)[:, None], empty[:, None],
             nov[:, None], np.clip(z, -5, 5), props, np.tile(rf, (n, 1))]
    if c.unc_feature:
        parts.append(unc_gain_feature(pool, state)[:, None])
    x_round = np.concatenate(parts, axis=1).astype(np.float32)
    avail = pool.available_mask(state) if available is None else np.asarray(available, dtype=bool)
    x_dyn = PolicyFeatures.dyn_from(dmin, norms, np.maximum(sec_id, 0), pc, pt, covered, tcount)
    return PolicyFeatures(x_round=x_round, x_dyn=x_dyn, available=avail, coords=pool.coords, sec_id=sec_id,
                          members=members, norms=norms, dmin=dmin, pc=pc, pt=pt, covered=covered, tcount=tcount)


def unc_gain_feature(pool: Pool, state: SelectionState) -> np.ndarray:
    """``log1p(gain * n_in_pool)`` of the ``r_unc`` gain of every pool spot given the selected
    spots (0 for selected or excluded spots). Reads the vision embedding and coordinates only."""
    from ..measured import variance_index

    out = np.zeros(pool.n, dtype=np.float32)
    cand = np.flatnonzero(~pool.excluded & ~state.selected)
    if len(cand):
        g = variance_index(pool).gains(np.flatnonzero(state.selected & ~pool.excluded), cand)
        out[cand] = np.log1p(np.maximum(g, 0.0) * pool.n_in_pool)
    return out


def fit_vision_transform(V: np.ndarray, n_comp: int) -> dict[str, np.ndarray]:
    """Standardisation + PCA (``n_comp`` components, zero-padded) of the vision embeddings ``V``."""
    from sklearn.decomposition import PCA

    mu = V.mean(axis=0)
    sd = V.std(axis=0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    k = int(min(n_comp, V.shape[1], max(1, len(V) - 1)))
    pca = PCA(n_components=k, random_state=0).fit((V - mu) / sd)
    comps = np.zeros((n_comp, V.shape[1]))
    comps[:k] = pca.components_
    scale = np.ones(n_comp)
    scale[:k] = np.sqrt(np.maximum(pca.explained_variance_, 1e-8))
    return {"mean": mu.astype(np.float32), "std": sd.astype(np.float32), "components": comps.astype(np.float32),
            "scale": scale.astype(np.float32), "center": pca.mean_.astype(np.float32)}


def apply_vision_transform(vt: dict[str, np.ndarray], V: np.ndarray) -> np.ndarray:
    """The policy's vision features of ``V``: standardised, projected, scaled, clipped to +-5."""
    X = (np.asarray(V, dtype=np.float32) - vt["mean"]) / vt["std"] - vt["center"]
    return np.clip((X @ vt["components"].T) / vt["scale"], -5, 5).astype(np.float32)
