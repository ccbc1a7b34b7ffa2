"""The baseline samplers (behind :class:`~napari_scr2st.sampling.sampler.Sampler`); names as in
:func:`~napari_scr2st.sampling.registry.make_sampler`:

- ``random``: uniform without replacement.
- ``grid``: a regular square lattice per section (random phase from the seed); the lattice
  spacing is the largest for which at least ``n`` lattice cells contain an available spot and no
  selected one; the spot nearest each cell centre is picked (surplus cells dropped at random).
  Pooled budgets are split over sections in proportion to their available spots.
- ``kcenter``: k-center greedy / coreset (Sener & Savarese 2018) on the standardised, PCA-reduced
  vision embedding, starting from the already selected spots (a random first pick otherwise).
  Above ``max_candidates`` (50,000) available spots, the picks come from a random subset of
  ``max(max_candidates, 4 n)`` of them (each pick costs one pass over the candidates).
- ``typiclust``: TypiClust (Hacohen et al. 2022): k-means of the vision features into
  ``|selected| + n`` clusters; from the largest clusters without a selected spot, the most
  typical spot (highest inverse mean distance to its ``min(20, size // 2)`` nearest neighbours
  within the cluster).
- ``ar``: adaptive-resampling weights (seed 002) from per-dimension histograms of the
  standardised vision PCA (inverse smoothed density, max over dimensions); ``n`` spots drawn
  without replacement with probability proportional to the weights (Gumbel-top-k).
- ``greedy``: greedy maximiser of the weighted reward gain computed on PREDICTED expression of the
  candidates (a predictor trained on the measured spots; measured spots use their revealed
  expression); the spatial gain is the unclipped decrease of the normalised mean distance; the
  ``r_unc`` gain is exact (it needs no expression: :class:`~napari_scr2st.sampling.reward.VarianceGains`,
  conditioned on every selected spot, pending ones included).

This module never imports the SCRL policy (:mod:`napari_scr2st.sampling.scrl`), which builds on it.
"""

from __future__ import annotations

import numpy as np

from .pool import split_budget
from .reward import RewardWeights
from .sampler import Sampler, gumbel_top_k

__all__ = [
    "RandomSampler",
    "GridSampler",
    "KCenterSampler",
    "TypiClustSampler",
    "ARSampler",
    "GreedyRewardSampler",
    "ar_weights",
]


class RandomSampler(Sampler):
    name = "random"

    def _select(self, pool, n, state, available, rng):  # noqa: ARG002 - the Sampler._select signature
        return rng.choice(np.flatnonzero(available), size=n, replace=False)


class GridSampler(Sampler):
    """Regular lattice subsampling per section (see module docstring)."""

    name = "grid"

    def _select(self, pool, n, state, available, rng):
        names = [s for s in pool.section_names if available[pool.sections == s].any()]
        sizes = [int(available[pool.sections == s].sum()) for s in names]
        alloc = split_budget(n, sizes)
        picks = []
        for s, k in zip(names, alloc, strict=False):
            if k > 0:
                m = pool.sections == s
                picks.append(self._grid_section(pool.coords, np.flatnonzero(m & available),
                                                np.flatnonzero(m & state.selected & ~pool.excluded), int(k), rng))
        return np.concatenate(picks) if picks else np.zeros(0, np.int64)

    @staticmethod
    def _grid_section(coords, avail_idx, sel_idx, k, rng):
        xy = coords[avail_idx]
        sxy = coords[sel_idx]
        lo = np.minimum(xy.min(axis=0), sxy.min(axis=0)) if len(sxy) else xy.min(axis=0)
        phase = rng.uniform(0, 1, size=2)

        def cells(h):
            ca = np.floor((xy - lo) / h + phase).astype(np.int64)
            occ = {tuple(c) for c in np.floor((sxy - lo) / h + phase).astype(np.int64)} if len(sxy) else set()
            keys = ca[:, 0] * 1_000_003 + ca[:, 1]
            okeys = {c[0] * 1_000_003 + c[1] for c in occ}
            free = ~np.isin(keys, list(okeys)) if okeys else np.ones(len(keys), bool)
            return ca, keys, free

        def count(h):
            _, keys, free = cells(h)
            return len(np.unique(keys[free]))

        if len(xy) > 1:
            from scipy.spatial import cKDTree

            d, _ = cKDTree(xy).query(xy, k=2)
            h_lo = max(float(d[:, 1].min()) / 4, 1e-6)
        else:
            h_lo = 1.0
        allxy = np.vstack([xy, sxy]) if len(sxy) else xy
        h_hi = 2.0 * (float(np.ptp(allxy, axis=0).max()) + h_lo)
        if count(h_lo) < k:  # cannot happen unless selected spots share cells at any scale: fall back
            h_lo = 1e-9
        for _ in range(40):  # largest spacing with >= k free occupied cells
            mid = np.sqrt(h_lo * h_hi)
            if count(mid) >= k:
                h_lo = mid
            else:
                h_hi = mid
            if h_hi / h_lo < 1.001:
                break
        ca, keys, free = cells(h_lo)
        centres = (ca + 0.5 - phase) * h_lo + lo
        dist = ((xy - centres) ** 2).sum(axis=1)
        fk = keys[free]
        fidx = np.flatnonzero(free)
        order = np.lexsort((dist[fidx], fk))
        first = np.ones(len(order), bool)
        first[1:] = fk[order][1:] != fk[order][:-1]
        chosen = fidx[order[first]]  # one spot per free cell: the one nearest the cell centre
        if len(chosen) > k:
            chosen = rng.choice(chosen, size=k, replace=False)
        elif len(chosen) < k:  # pragma: no cover - guarded by the search; fill randomly
            rest = np.setdiff1d(np.arange(len(xy)), chosen)
            chosen = np.concatenate([chosen, rng.choice(rest, size=k - len(chosen), replace=False)])
        # order: raster order of the lattice (stable, readable)
        chosen = chosen[np.lexsort((xy[chosen, 0], xy[chosen, 1]))]
        return avail_idx[chosen]


class KCenterSampler(Sampler):
    """k-center greedy (coreset) on standardised vision PCA features."""

    name = "kcenter"
    needs_vision = True

    def __init__(self, *, seed: int = 0, n_components: int = 32, max_candidates: int = 50_000) -> None:
        super().__init__(seed=seed)
        self.n_components = n_components
        self.max_candidates = max_candidates

    def _select(self, pool, n, state, available, rng):
        X = pool.vision_features(self.n_components)
        centres = np.flatnonzero(state.selected & ~pool.excluded)
        cand = np.flatnonzero(available)
        if len(cand) > max(self.max_candidates, 4 * n):  # Visium HD: a random candidate subset
            cand = np.sort(rng.choice(cand, max(self.max_candidates, 4 * n), replace=False))
        Xc = X[cand]
        if len(centres):
            mind = np.full(len(cand), np.inf)
            for s in range(0, len(centres), 2048):
                mind = np.minimum(mind, _sqdist(Xc, X[centres[s:s + 2048]]).min(axis=1))
        else:
            mind = np.full(len(cand), np.inf)
        picks, scores = [], []
        taken = np.zeros(len(cand), bool)
        for _ in range(n):
            if np.isinf(mind[~taken]).all():
                j = rng.choice(np.flatnonzero(~taken))
            else:
                m = np.where(taken, -1.0, mind)
                j = int(np.argmax(m))
            picks.append(cand[j])
            scores.append(float(np.sqrt(mind[j])) if np.isfinite(mind[j]) else np.nan)
            taken[j] = True
            mind = np.minimum(mind, ((Xc - Xc[j]) ** 2).sum(axis=1))
        self.last_scores = np.array(scores)
        return np.array(picks)


class TypiClustSampler(Sampler):
    """TypiClust on standardised vision PCA features (see module docstring)."""

    name = "typiclust"
    needs_vision = True

    def __init__(self, *, seed: int = 0, n_components: int = 32, k_nn: int = 20) -> None:
        super().__init__(seed=seed)
        self.n_components = n_components
        self.k_nn = k_nn

    def _select(self, pool, n, state, available, rng):
        X = pool.vision_features(self.n_components)
        universe = np.flatnonzero(available | (state.selected & ~pool.excluded))
        n_sel = int((state.selected & ~pool.excluded).sum())
        k = int(min(n_sel + n, len(universe)))
        lab = _kmeans_labels(X[universe], k, seed=int(rng.integers(2**31 - 1)))
        covered = np.zeros(k, bool)
        covered[np.unique(lab[state.selected[universe]])] = True
        sizes = np.bincount(lab, minlength=k)
        typ = np.zeros(len(universe))
        for c in range(k):
            members = np.flatnonzero(lab == c)
            typ[members] = _typicality(X[universe[members]], min(self.k_nn, max(1, len(members) // 2)))
        avail_u = available[universe]
        order = sorted(np.flatnonzero(~covered), key=lambda c: (-sizes[c], rng.random()))
        picks, scores = [], []
        for c in order:
            if len(picks) == n:
                break
            mem = np.flatnonzero((lab == c) & avail_u)
            if len(mem) == 0:
                continue
            j = mem[np.argmax(typ[mem])]
            picks.append(j)
            scores.append(typ[j])
        if len(picks) < n:  # fill: most typical remaining spots of the least covered clusters
            taken = np.zeros(len(universe), bool)
            taken[picks] = True
            n_cov = np.bincount(lab[state.selected[universe] | taken], minlength=k)
            rest = np.flatnonzero(avail_u & ~taken)
            rest = rest[np.lexsort((-typ[rest], n_cov[lab[rest]]))][: n - len(picks)]
            picks += list(rest)
            scores += list(typ[rest])
        self.last_scores = np.array(scores)
        return universe[np.array(picks, dtype=np.int64)]


def ar_weights(Z: np.ndarray, *, n_bins: int = 50, sigma: float = 1.0, alpha: float = 1e-3) -> np.ndarray:
    """Adaptive-resampling weights (seed 002); the one implementation lives in
    :func:`napari_scr2st.model.resampling.adaptive_resampling_weights` (SCR2Net uses it per epoch)."""
    from ..model.resampling import adaptive_resampling_weights

    return adaptive_resampling_weights(Z, n_bins=n_bins, sigma=sigma, alpha=alpha)


class ARSampler(Sampler):
    """Adaptive-resampling weights on the vision PCA, sampled without replacement."""

    name = "ar"
    needs_vision = True

    def __init__(self, *, seed: int = 0, n_components: int = 16, n_bins: int = 50, sigma: float = 1.0) -> None:
        super().__init__(seed=seed)
        self.n_components, self.n_bins, self.sigma = n_components, n_bins, sigma

    def _select(self, pool, n, state, available, rng):  # noqa: ARG002 - the Sampler._select signature
        X = pool.vision_features(self.n_components)
        inpool = np.flatnonzero(~pool.excluded)
        w = np.zeros(pool.n)
        w[inpool] = ar_weights(X[inpool], n_bins=self.n_bins, sigma=self.sigma)
        cand = np.flatnonzero(available)
        order = gumbel_top_k(np.log(w[cand] + 1e-300), n, rng)
        self.last_scores = w[cand[order]]
        return cand[order]


class GreedyRewardSampler(Sampler):
    """Greedy maximiser of the reward gain on predicted expression (see module docstring).

    ``space``: a :class:`~napari_scr2st.reference.ReferenceSpace`; ``predictor``: optional
    ``ExpressionPredictor`` (default: ridge on vision + coordinates, see
    :class:`~napari_scr2st.sampling.surrogate.SpacePredictor`). Until ``min_train`` spots are
    measured there is no prediction and only the spatial gain counts. Candidates and spatial
    anchors are subsampled above ``max_candidates``/``max_anchors`` (stochastic greedy). In a
    section of more than ``sparse_above`` spots (Visium HD), once every anchor is within a
    quarter of the section's normaliser of a selected spot, the spatial gain sums only the
    anchor-candidate pairs closer than the anchor's distance to the selection (a kd-tree query;
    the same gain up to rounding, instead of the dense anchors x candidates matrix per pick).
    """

    name = "greedy"

    def __init__(self, space, weights: RewardWeights | None = None, *, predictor=None, seed: int = 0,
                 min_train: int = 5, max_candidates: int = 1024, max_anchors: int = 2048, embedder=None,
                 sparse_above: int = 20_000) -> None:
        super().__init__(seed=seed)
        from .measured import MeasuredEmbedder
        from .surrogate import SpacePredictor

        self.space = space
        self.weights = RewardWeights.parse(weights)
        self.space_predictor = SpacePredictor(space, predictor, min_train=min_train)
        self.embedder = embedder or MeasuredEmbedder(space)
        self.max_candidates = max_candidates
        self.max_anchors = max_anchors
        self.sparse_above = sparse_above

    def _select(self, pool, n, state, available, rng):
        sp_ = self.space
        K, T = sp_.n_clusters, sp_.n_types
        w = self.weights.as_array()
        m = self.embedder(state)
        zp = self.space_predictor(pool, state, m.index, m.z)
        covered = np.zeros(K, bool)
        covered[m.cluster] = True
        tcount = np.bincount(m.codes, minlength=T).astype(np.float64)
        pc = pt = None
        if zp is not None:
            pc = sp_.nearest_cluster(zp)
            pt = sp_.transfer_labels(zp).codes
            pend = np.flatnonzero(state.selected & ~state.measured)  # selected, not yet revealed
            covered[pc[pend]] = True
            tcount += np.bincount(pt[pend], minlength=T)
        index = pool.spatial_index()
        sec_id = np.full(pool.n, -1)
        for i, members in enumerate(index.members):
            sec_id[members] = i
        anchors = []
        for members in index.members:
            a = members if len(members) <= self.max_anchors else np.sort(rng.choice(members, self.max_anchors, replace=False))
            anchors.append(a)
        dmin = np.full(pool.n, np.inf)
        sel_all = np.flatnonzero(state.selected & ~pool.excluded)
        for i in range(len(index.members)):
            d = index.min_dist(sel_all, i)
            if np.isinf(d).all():
                d = np.full(len(d), 2.0 * max(index.norms[i], 1e-12))  # empty section: surrogate
            dmin[index.members[i]] = d
        dmin_a = [dmin[a] for a in anchors]
        trees = [_anchor_tree(pool.coords[a]) if len(index.members[i]) > self.sparse_above else None
                 for i, a in enumerate(anchors)]
        secw = index.section_weights
        norms = np.maximum(np.array(index.norms), 1e-12)
        avail = available.copy()
        picks, scores = [], []
        unc = None
        if len(w) > 3 and w[3] > 0:
            from .measured import variance_index
            from .reward import VarianceGains

            vindex = variance_index(pool)
            universe = np.flatnonzero(avail)
            size = max(self.max_candidates, n)
            if len(universe) > size:
                universe = np.sort(rng.choice(universe, size, replace=False))
            unc = VarianceGains(vindex, sel_all, universe)
            upos = np.full(pool.n, -1, dtype=np.int64)
            upos[universe] = np.arange(len(universe))
            avail &= upos >= 0  # the r_unc gains are tracked on one candidate subset per call

        def ent(c):
            s = c.sum(axis=-1, keepdims=True)
            p = np.where(c > 0, c / np.maximum(s, 1e-12), 1.0)
            return -(np.where(c > 0, p * np.log(p), 0.0)).sum(axis=-1) / np.log(T) if T > 1 else np.zeros(c.shape[:-1])

        for _ in range(n):
            cand = np.flatnonzero(avail)
            if len(cand) > self.max_candidates:
                cand = np.sort(rng.choice(cand, self.max_candidates, replace=False))
            gain = np.zeros(len(cand))
            if zp is not None:
                gain += w[0] * (~covered[pc[cand]]) / K
                h0 = ent(tcount[None, :])[0]
                hnew = ent(tcount[None, :] + np.eye(T))  # entropy after adding one spot of each type
                gain += w[1] * (hnew - h0)[pt[cand]]
            if w[2] > 0:
                for i in np.unique(sec_id[cand]):
                    ci = cand[sec_id[cand] == i]
                    a = anchors[i]
                    da = dmin_a[i]
                    if len(index.members[i]) > self.sparse_above and da.max() < 0.25 * norms[i]:
                        red = _local_reduction(trees[i], pool.coords[ci], da)
                    else:
                        red = _dense_reduction(pool.coords[a], pool.coords[ci], da)
                    gain[sec_id[cand] == i] += w[2] * secw[i] * red / norms[i]
            if unc is not None:
                gain += w[3] * unc.gains()[upos[cand]]
            gain = gain + 1e-12 * rng.random(len(gain))  # random tie-break
            j = int(np.argmax(gain))
            s = cand[j]
            picks.append(s)
            scores.append(float(gain[j]))
            avail[s] = False
            if unc is not None:
                unc.add(upos[s])
            if zp is not None:
                covered[pc[s]] = True
                tcount[pt[s]] += 1
            i = sec_id[s]
            a = anchors[i]  # only the anchors' distances are read
            dmin_a[i] = np.minimum(dmin_a[i], np.sqrt(((pool.coords[a] - pool.coords[s]) ** 2).sum(axis=1)))
        self.last_scores = np.array(scores)
        return np.array(picks)


# ------------------------------------------------------------------------------------- helpers


def _anchor_tree(xy: np.ndarray):
    from scipy.spatial import cKDTree

    return cKDTree(xy)


def _local_reduction(tree, cxy: np.ndarray, dmin: np.ndarray) -> np.ndarray:
    """``mean_a max(dmin[a] - |a - c|, 0)`` per candidate ``c`` (rows of ``cxy``) over the
    anchors of ``tree``, from the pairs closer than ``max(dmin)`` only (the others add 0)."""
    from scipy.spatial import cKDTree

    pairs = tree.sparse_distance_matrix(cKDTree(cxy), float(dmin.max()), output_type="ndarray")
    contrib = np.maximum(dmin[pairs["i"]] - pairs["v"], 0.0)
    return np.bincount(pairs["j"], weights=contrib, minlength=len(cxy)) / len(dmin)


def _dense_reduction(axy: np.ndarray, cxy: np.ndarray, dmin: np.ndarray, *, rows: int = 256) -> np.ndarray:
    """``mean_a max(dmin[a] - |a - c|, 0)`` per candidate ``c`` over all anchors ``a`` (rows of
    ``axy``): scipy's ``cdist`` on blocks of ``rows`` anchors, then in place (no temporaries of
    the full matrix's size; the greedy sampler's per-pick cost on large sections)."""
    from scipy.spatial.distance import cdist

    axy = np.asarray(axy, dtype=np.float64)
    cxy = np.asarray(cxy, dtype=np.float64)
    out = np.zeros(len(cxy))
    for s in range(0, len(axy), rows):
        D = cdist(axy[s:s + rows], cxy)
        np.subtract(dmin[s:s + rows, None], D, out=D)
        np.maximum(D, 0.0, out=D)
        out += D.sum(axis=0)
    return out / max(len(axy), 1)


def _sqdist(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    d = (A**2).sum(1)[:, None] + (B**2).sum(1)[None, :] - 2.0 * A @ B.T
    return np.maximum(d, 0.0)


def _kmeans_labels(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if k >= len(X):
        return np.arange(len(X))
    if len(X) > 10_000:
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=1, batch_size=4096)
    else:
        km = KMeans(n_clusters=k, random_state=seed, n_init=1)
    return km.fit_predict(X)


def _typicality(X: np.ndarray, k: int) -> np.ndarray:
    """Inverse mean distance to the ``k`` nearest neighbours (within ``X``)."""
    if len(X) == 1:
        return np.ones(1)
    from sklearn.neighbors import NearestNeighbors

    k = int(min(k, len(X) - 1))
    d, _ = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    return 1.0 / (d[:, 1:].mean(axis=1) + 1e-8)
