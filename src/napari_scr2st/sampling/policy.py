"""SCRL: a per-spot scoring policy conditioned on the reward weights (METHOD section 4).

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
  "has a prediction", round index / number of rounds and the fraction of the budget used;
- within-round features (input of the small head, updated after each sub-step): distance to the
  nearest selected spot, "predicted cluster not yet covered", share of the predicted type among
  measured + picked spots.

Architecture: ``h = trunk(x_round)`` (MLP, cached per round); the weight vector ``w`` (normalised
to sum 1) enters LATE: ``u = relu(h * (1 + gamma(w)) + beta(w) + A x_dyn)`` (FiLM) and
``score = v . u + sum_j w_j q_j([h, x_dyn])`` (per-term value heads, a small MLP). Moving the
weight sliders re-runs only the head: one forward pass of a few thousand flops per spot.

A round of ``k`` picks is made in ``substeps`` sub-batches; after each the within-round features
are updated. Training samples each sub-batch by Gumbel-top-k (Plackett-Luce without
replacement); the exact log-probability of the ordered picks is
:func:`plackett_luce_log_prob`. Deployment takes the top-k (or samples with a temperature).

Training (:func:`iter_train_policy`): REINFORCE on simulated episodes of fully measured sections.
Each episode draws weights from a Dirichlet, a budget and G rollouts of the same section and
weights; the reward of a round is the gain of the weighted cumulative reward computed from
REVEALED expression; the advantage of a round is its reward-to-go minus the group mean at that
round, normalised; loss = -sum(advantage * log-prob) - entropy_coef * entropy.

Weights are drawn per episode as a simplex corner (one term only; probability 0.25) or from
Dirichlet(0.5), so the extremes a user can set with the sliders are trained. An auxiliary
supervised loss trains each per-term head ``q_j`` to predict the TRUE marginal gain of term ``j``
of a spot (:class:`TermGains`: computed in simulation from the training section's revealed
expression; a training target only, the policy's inputs are unchanged). Without it, a few dozen
REINFORCE episodes (the napari "Pre-train" button) learned a score that ignored the weights
(selections at (1,0,0), (0,1,0), (0,0,1) overlapped by Jaccard 0.9) and clustered in space
(r_sp 0.82 vs 0.93 for random picks); with it the weight path is trained from the first episode
(``benchmarks/bench_policy_weights.py``, docs/benchmarks.md).
"""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._engine import CancelToken, Progress
from .._utils import atomic_path
from ._threads import single_thread
from .measured import MeasuredEmbedder, MeasuredSet, RewardEvaluator
from .pool import Pool, round_schedule
from .reward import RewardWeights
from .samplers import Sampler
from .state import SelectionState

__all__ = [
    "PolicyConfig",
    "PolicyFeatures",
    "SCRLPolicy",
    "SCRLSampler",
    "PolicyEnv",
    "plackett_luce_log_prob",
    "TermGains",
    "sample_weights",
    "iter_train_policy",
    "train_policy",
]

POLICY_FORMAT_VERSION = 2  # 2: per-term heads are small MLPs (1: linear; still readable)
N_DYN = 3


@dataclass
class PolicyConfig:
    """Architecture and feature sizes; ``celltypes``/``space_dims``/``reference`` tie a policy to
    the reference it was trained with (checked at deployment)."""

    n_types: int
    celltypes: list[str]
    space_dims: int
    n_clusters: int
    reference: str = ""
    n_vision: int = 8
    n_z: int = 8
    hidden: int = 64
    substeps: int = 4
    substep_evals: int = 25_000
    knn: int = 10
    vision_dim: int | None = None
    term_hidden: int = 32  # hidden units of the per-term value heads (0: linear heads, format-1 files)

    @property
    def n_round_features(self) -> int:
        return self.n_vision + 1 + 3 + 3 + 1 + self.n_z + self.n_types + 1 + 2

    def round_feature_names(self) -> list[str]:
        return ([f"vision_{i}" for i in range(self.n_vision)] + ["typicality", "x", "y", "radius",
                "dist_selected", "density_selected", "section_empty", "vision_novelty"]
                + [f"z_{i}" for i in range(self.n_z)] + [f"p_{t}" for t in self.celltypes]
                + ["has_prediction", "round_fraction", "budget_used"])


def plackett_luce_log_prob(scores, picks, available=None):
    """Exact log-probability of the ORDERED ``picks`` under Plackett-Luce with logits ``scores``.

    ``log p = sum_j [s_{i_j} - log(sum_{l >= j} e^{s_{i_l}} + sum_{u in rest} e^{s_u})]`` where
    ``rest`` are the available items never picked. Torch tensors in, a scalar tensor out
    (differentiable); equals the probability that Gumbel-top-k returns this sequence.
    """
    import torch

    s = scores if available is None else scores.masked_fill(~available, float("-inf"))
    picks = torch.as_tensor(picks, dtype=torch.long, device=s.device)
    picked = s[picks]
    rest = torch.ones_like(s, dtype=torch.bool) if available is None else available.clone()
    rest[picks] = False
    lse_rest = torch.logsumexp(s[rest], 0) if bool(rest.any()) else s.new_tensor(float("-inf"))
    tail = torch.logcumsumexp(picked.flip(0), 0).flip(0)
    denom = torch.logaddexp(tail, lse_rest)
    return (picked - denom).sum()


# ------------------------------------------------------------------------------------ features


@dataclass
class PolicyFeatures:
    """Features of one round (see module docstring) and what the within-round update needs."""

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


_NET_CLASS = None


def _net_class():
    """The torch module (defined lazily so importing this file does not import torch)."""
    global _NET_CLASS
    if _NET_CLASS is not None:
        return _NET_CLASS
    import torch
    from torch import nn

    class PolicyNet(nn.Module):
        def __init__(self, n_in: int, n_dyn: int, hidden: int, n_w: int = 3, term_hidden: int = 0) -> None:
            super().__init__()
            self.trunk = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
            self.film = nn.Linear(n_w, 2 * hidden)
            self.dyn = nn.Linear(n_dyn, hidden, bias=False)
            self.out = nn.Linear(hidden, 1)
            if term_hidden > 0:
                self.terms = nn.Sequential(nn.Linear(hidden + n_dyn, term_hidden), nn.ReLU(),
                                           nn.Linear(term_hidden, n_w))
                last = self.terms[-1]
            else:
                self.terms = last = nn.Linear(hidden + n_dyn, n_w)
            for m in (self.out, last):  # start near a uniform policy
                nn.init.normal_(m.weight, std=1e-3)
                nn.init.zeros_(m.bias)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

        def q(self, h: torch.Tensor, x_dyn: torch.Tensor) -> torch.Tensor:
            """Per-term values (n, 3): trained to predict each reward term's marginal gain."""
            return self.terms(torch.cat([h, x_dyn], dim=-1))

        def head(self, h: torch.Tensor, x_dyn: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            gamma, beta = self.film(w).chunk(2, dim=-1)
            u = torch.relu(h * (1.0 + gamma) + beta + self.dyn(x_dyn))
            return self.out(u).squeeze(-1) + (self.q(h, x_dyn) * w).sum(-1)

    _NET_CLASS = PolicyNet
    return PolicyNet


class SCRLPolicy:
    """The SCRL policy: features, weight-conditioned scoring, selection, save/load, training."""

    def __init__(self, config: PolicyConfig, *, seed: int = 0) -> None:
        import uuid

        import torch

        self.config = config
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
            torch.manual_seed(seed)
            self.net = _net_class()(config.n_round_features, N_DYN, config.hidden, term_hidden=config.term_hidden)
        self.net.eval()
        self.vision_transform: dict[str, np.ndarray] | None = None
        self.zscale: np.ndarray | None = None
        self.history: list[dict[str, float]] = []
        self.last_scores: np.ndarray | None = None
        self._version = 0  # bumped when the parameters change (invalidates cached trunk outputs)
        self._uid = uuid.uuid4().hex
        self._vision_version = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_space(cls, space, *, seed: int = 0, **kwargs) -> SCRLPolicy:
        cfg = PolicyConfig(n_types=space.n_types, celltypes=list(space.celltypes), space_dims=space.n_dims,
                           n_clusters=space.n_clusters, reference=str(space.meta.get("reference", "")), **kwargs)
        cfg.n_z = int(min(cfg.n_z, space.n_dims))
        pol = cls(cfg, seed=seed)
        pol.zscale = np.maximum(space.ref_embedding[:, : cfg.n_z].std(axis=0), 1e-6).astype(np.float32)
        return pol

    def check_space(self, space) -> None:
        c = self.config
        if list(space.celltypes) != list(c.celltypes) or space.n_dims < c.n_z:
            raise ValueError(
                f"this policy was trained with reference '{c.reference}' ({c.n_types} cell types: {c.celltypes}, "
                f"{c.space_dims} dims); the given reference space has {space.n_types} types {space.celltypes} and "
                f"{space.n_dims} dims. Use the same reference (or retrain the policy)."
            )

    def fit_vision(self, visions: Sequence[np.ndarray]) -> None:
        """Fit the vision standardisation + PCA on the training sections' embeddings."""
        V = np.concatenate([np.asarray(v, dtype=np.float64) for v in visions], axis=0)
        self.vision_transform = _fit_vision(V, self.config.n_vision)
        self.config.vision_dim = int(V.shape[1])
        self._vision_version += 1

    # ------------------------------------------------------------------ features
    def _static(self, pool: Pool) -> dict[str, Any]:
        key = ("scrl_static", self._uid, self._vision_version)
        if key in pool._cache:
            return pool._cache[key]
        from scipy.spatial import cKDTree

        c = self.config
        n = pool.n
        xv = np.zeros((n, c.n_vision), dtype=np.float32)
        if pool.vision is not None:
            vt = self.vision_transform
            if vt is None:
                vt = _fit_vision(pool.vision[~pool.excluded].astype(np.float64), c.n_vision)
            elif c.vision_dim is not None and pool.vision.shape[1] != c.vision_dim:
                raise ValueError(f"the policy was trained on {c.vision_dim}-d vision embeddings; this pool has "
                                 f"{pool.vision.shape[1]}-d (use the same vision encoder)")
            xv = _apply_vision(vt, pool.vision)
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
        pool._cache[key] = out
        return out

    def features(self, pool: Pool, state: SelectionState, space, *, measured: MeasuredSet | None = None,
                 zp: np.ndarray | None = None, available: np.ndarray | None = None) -> PolicyFeatures:
        """Round-level and within-round features of every pool spot (no unmeasured expression).

        ``measured``: the measured set in the space (from revealed counts); ``zp``: predicted
        space coordinates of all pool spots (``None`` before a predictor can be trained).
        """
        from scipy.spatial import cKDTree

        self.check_space(space)
        c = self.config
        st = self._static(pool)
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
            z = (zp[:, : c.n_z] / self.zscale).astype(np.float32)
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
        x_round = np.concatenate([
            st["xv"], st["typ"][:, None], st["xy"], dist_feat[:, None], np.log1p(dens)[:, None], empty[:, None],
            nov[:, None], np.clip(z, -5, 5), props, np.tile(rf, (n, 1)),
        ], axis=1).astype(np.float32)
        avail = pool.available_mask(state) if available is None else np.asarray(available, dtype=bool)
        x_dyn = PolicyFeatures.dyn_from(dmin, norms, np.maximum(sec_id, 0), pc, pt, covered, tcount)
        return PolicyFeatures(x_round=x_round, x_dyn=x_dyn, available=avail, coords=pool.coords, sec_id=sec_id,
                              members=members, norms=norms, dmin=dmin, pc=pc, pt=pt, covered=covered, tcount=tcount)

    # ------------------------------------------------------------------ scoring and selection
    def _trunk(self, feats: PolicyFeatures):
        import torch

        key = (self._uid, self._version)  # features may be scored by several policies
        if feats._trunk is None or feats._trunk_key != key:
            with torch.no_grad():
                feats._trunk = self.net.trunk(torch.from_numpy(feats.x_round))
            feats._trunk_key = key
        return feats._trunk

    @staticmethod
    def _w(weights) -> np.ndarray:
        if isinstance(weights, RewardWeights):
            return weights.normalized().astype(np.float32)
        w = np.asarray(weights, dtype=np.float64).ravel()
        if w.shape != (3,) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be 3 non-negative numbers, not all 0; got {weights}")
        return (w / w.sum()).astype(np.float32)

    def scores(self, feats: PolicyFeatures, weights) -> np.ndarray:
        """Scores of every spot at the start of the round (one head pass on cached trunk output)."""
        import torch

        with single_thread(blas=False):
            h = self._trunk(feats)
            with torch.no_grad():
                s = self.net.head(h, torch.from_numpy(feats.x_dyn), torch.from_numpy(self._w(weights)))
        return s.numpy()

    def select(self, feats: PolicyFeatures, weights, k: int, *, available: np.ndarray | None = None,
               temperature: float = 0.0, rng: np.random.Generator | None = None,
               substeps: int | None = None) -> np.ndarray:
        """Pick ``k`` spots for these features and weights (top-k; Gumbel-top-k if ``temperature``).

        Only the weight-conditioned head runs (the trunk output is cached on ``feats``), once per
        sub-step; ``feats`` is not modified, so moving the weights and calling again is cheap.
        """
        import torch

        avail = (feats.available if available is None else np.asarray(available, dtype=bool)).copy()
        k = int(k)
        if k > int(avail.sum()):
            raise ValueError(f"asked for {k} spots but only {int(avail.sum())} are available")
        if k <= 0:
            return np.zeros(0, dtype=np.int64)
        with single_thread(blas=False):  # tiny tensors: threads only add contention
            h = self._trunk(feats)
            w = torch.from_numpy(self._w(weights))
            dmin, covered, tcount, x_dyn = feats.dyn_state()
            picks: list[np.ndarray] = []
            scores_out = []
            n_sub = substeps or n_substeps(self.config, feats.n, k)
            for ks in _substep_sizes(k, n_sub):
                with torch.no_grad():
                    s = self.net.head(h, torch.from_numpy(x_dyn), w).numpy().astype(np.float64)
                s = np.where(avail, s, -np.inf)
                if temperature and temperature > 0:
                    rng = rng or np.random.default_rng()
                    key = s / temperature + rng.gumbel(size=len(s))
                else:
                    key = s
                part = np.argpartition(-key, ks - 1)[:ks]
                p = part[np.argsort(-key[part], kind="stable")]
                picks.append(p)
                scores_out.append(s[p])
                avail[p] = False
                x_dyn = feats.apply_picks(p, dmin, covered, tcount)
        self.last_scores = np.concatenate(scores_out)
        return np.concatenate(picks)

    def _sample_round(self, feats: PolicyFeatures, w: np.ndarray, k: int, rng: np.random.Generator,
                      aux: TermGains | None = None, aux_out: list | None = None):
        """Training: Gumbel-top-k per sub-step with gradients; returns picks, log-prob, entropy.

        With ``aux`` (true term gains of the training section), :class:`AuxSample` s for the
        auxiliary loss of the per-term heads are recorded at a few sub-steps into ``aux_out``."""
        import torch

        h = self.net.trunk(torch.from_numpy(feats.x_round))
        wt = torch.from_numpy(self._w(w))
        avail = feats.available.copy()
        dmin, covered, tcount, x_dyn = feats.dyn_state()
        logp = h.new_zeros(())
        ent = []
        picks = []
        sizes = _substep_sizes(k, n_substeps(self.config, feats.n, k))
        aux_at = _aux_substeps(len(sizes), aux)
        for j, ks in enumerate(sizes):
            s = self.net.head(h, torch.from_numpy(x_dyn), wt)
            if aux is not None and aux_out is not None and j in aux_at:
                a = aux.sample(feats.x_round, x_dyn, avail, rng)
                if a is not None:
                    aux_out.append(a)
            av = torch.from_numpy(avail.copy())  # a copy: avail changes below, autograd keeps av
            key = s.detach().numpy().astype(np.float64) + rng.gumbel(size=len(avail))
            key[~avail] = -np.inf
            part = np.argpartition(-key, ks - 1)[:ks]
            p = part[np.argsort(-key[part], kind="stable")]
            logp = logp + plackett_luce_log_prob(s, torch.from_numpy(p), av)
            logits = s[av]
            pr = torch.softmax(logits, 0)
            ent.append(-(pr * torch.log_softmax(logits, 0)).sum() / np.log(max(int(avail.sum()), 2)))
            picks.append(p)
            avail[p] = False
            x_dyn = feats.apply_picks(p, dmin, covered, tcount)
            if aux is not None:
                aux.add(p)
        return np.concatenate(picks), logp, torch.stack(ent).mean()

    def aux_loss(self, samples: Sequence[AuxSample]):
        """Auxiliary loss on recorded samples (:meth:`TermGains.sample`): MSE of the per-term
        heads ``q_j`` against the scaled TRUE marginal gain of term ``j``, both centred per sample
        (a constant shift of a term's values changes no selection)."""
        import torch

        xr = torch.from_numpy(np.concatenate([a.x_round for a in samples]))
        xd = torch.from_numpy(np.concatenate([a.x_dyn for a in samples]))
        q = self.net.q(self.net.trunk(xr), xd)
        loss, start = q.new_zeros(()), 0
        for a in samples:
            qa = q[start:start + len(a.target)]
            start += len(a.target)
            loss = loss + ((qa - qa.mean(dim=0, keepdim=True) - torch.from_numpy(a.target)) ** 2).mean()
        return loss / max(len(samples), 1)

    def _log_prob_round(self, feats: PolicyFeatures, w: np.ndarray, picks: np.ndarray,
                        aux: TermGains | None = None, aux_out: list | None = None,
                        rng: np.random.Generator | None = None):
        """Log-probability (with gradients) of the ORDERED ``picks`` of a round under the policy,
        with the same sub-step structure as selection (imitation learning); ``aux`` as in
        :meth:`_sample_round`."""
        import torch

        picks = np.asarray(picks, dtype=np.int64)
        h = self.net.trunk(torch.from_numpy(feats.x_round))
        wt = torch.from_numpy(self._w(w))
        avail = feats.available.copy()
        dmin, covered, tcount, x_dyn = feats.dyn_state()
        logp = h.new_zeros(())
        start = 0
        sizes = _substep_sizes(len(picks), n_substeps(self.config, feats.n, len(picks)))
        aux_at = _aux_substeps(len(sizes), aux)
        for j, ks in enumerate(sizes):
            p = picks[start:start + ks]
            start += ks
            s = self.net.head(h, torch.from_numpy(x_dyn), wt)
            if aux is not None and aux_out is not None and j in aux_at:
                a = aux.sample(feats.x_round, x_dyn, avail, rng or np.random.default_rng())
                if a is not None:
                    aux_out.append(a)
            logp = logp + plackett_luce_log_prob(s, torch.from_numpy(p), torch.from_numpy(avail.copy()))
            avail[p] = False
            x_dyn = feats.apply_picks(p, dmin, covered, tcount)
            if aux is not None:
                aux.add(p)
        return logp

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """``path`` (.pt): torch state dict + JSON config + vision transform, written atomically;
        a readable ``<path>.json`` sidecar with the config and training history."""
        import torch

        path = Path(path)
        payload = {
            "format_version": POLICY_FORMAT_VERSION,
            "config_json": json.dumps(asdict(self.config)),
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "zscale": torch.from_numpy(np.asarray(self.zscale, dtype=np.float32)) if self.zscale is not None else None,
            "vision": {k: torch.from_numpy(np.asarray(v)) for k, v in self.vision_transform.items()} if self.vision_transform else None,
            "history_json": json.dumps(self.history),
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        side = path.with_name(path.name + ".json")
        with atomic_path(side) as tmp:
            tmp.write_text(json.dumps({"config": asdict(self.config), "history": self.history[-200:]}, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> SCRLPolicy:
        import torch

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"policy file not found: {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"cannot read policy {path}: {e}") from e
        version = payload.get("format_version")
        if version not in (1, POLICY_FORMAT_VERSION):
            raise ValueError(f"{path}: unsupported policy format {version}")
        cfg = PolicyConfig(**json.loads(payload["config_json"]))
        if version == 1:  # linear per-term heads
            cfg.term_hidden = 0
        pol = cls(cfg)
        pol.net.load_state_dict(payload["state_dict"])
        pol.zscale = payload["zscale"].numpy() if payload["zscale"] is not None else None
        pol.vision_transform = {k: v.numpy() for k, v in payload["vision"].items()} if payload["vision"] else None
        pol.history = json.loads(payload["history_json"])
        pol._version += 1
        pol._vision_version += 1
        return pol


def _substep_sizes(k: int, substeps: int) -> list[int]:
    s = int(max(1, min(substeps, k)))
    return [x for x in round_schedule(k, s) if x > 0]


def n_substeps(config: PolicyConfig, n_spots: int, k: int) -> int:
    """Sub-steps of a round of ``k`` picks among ``n_spots``: at least ``config.substeps``, more
    on small pools (up to one pick per sub-step) while ``sub-steps x n_spots`` stays within
    ``config.substep_evals`` head evaluations (keeps live re-selection fast on large sections)."""
    return int(max(1, min(k, max(config.substeps, config.substep_evals // max(n_spots, 1)))))


def _fit_vision(V: np.ndarray, n_comp: int) -> dict[str, np.ndarray]:
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


def _apply_vision(vt: dict[str, np.ndarray], V: np.ndarray) -> np.ndarray:
    X = (np.asarray(V, dtype=np.float32) - vt["mean"]) / vt["std"] - vt["center"]
    return np.clip((X @ vt["components"].T) / vt["scale"], -5, 5).astype(np.float32)


# ------------------------------------------------------------------------------------ sampler


class SCRLSampler(Sampler):
    """The SCRL policy behind the common sampler interface (deployment: top-k by default)."""

    name = "scrl"

    def __init__(self, policy: SCRLPolicy, space, weights=None, *, predictor=None, seed: int = 0,
                 temperature: float = 0.0, min_train: int = 5, embedder: MeasuredEmbedder | None = None) -> None:
        super().__init__(seed=seed)
        from .predictors import SpacePredictor

        policy.check_space(space)
        self.policy = policy
        self.space = space
        self.weights = RewardWeights.parse(weights)
        self.temperature = temperature
        self.space_predictor = SpacePredictor(space, predictor, min_train=min_train)
        self.embedder = embedder or MeasuredEmbedder(space)
        self.last_features: PolicyFeatures | None = None

    def features(self, pool: Pool, state: SelectionState, available: np.ndarray | None = None) -> PolicyFeatures:
        m = self.embedder(state)
        zp = self.space_predictor(pool, state, m.index, m.z)
        return self.policy.features(pool, state, self.space, measured=m, zp=zp, available=available)

    def _select(self, pool, n, state, available, rng):
        feats = self.features(pool, state, available)
        self.last_features = feats
        idx = self.policy.select(feats, self.weights, n, available=available, temperature=self.temperature, rng=rng)
        self.last_scores = self.policy.last_scores
        return idx


# ------------------------------------------------------------------------------------ training


@dataclass
class PolicyEnv:
    """A fully measured section for simulated episodes: pool, oracle (hidden counts), its
    reference space and reward evaluator (one per section; the evaluator caches embeddings of
    revealed spots, valid because a section's counts never change)."""

    name: str
    pool: Pool
    oracle: Any
    space: Any
    evaluator: RewardEvaluator
    _truth: Any = field(default=None, repr=False)

    def truth(self) -> tuple[np.ndarray, np.ndarray]:
        """Nearest reference cluster and transferred cell type of EVERY pool spot, from the
        revealed counts (-1 for excluded spots). Simulation only: the targets of the auxiliary
        term-gain loss (:class:`TermGains`); never a policy input."""
        if self._truth is None:
            idx = np.flatnonzero(~self.pool.excluded)
            st = SelectionState.for_pool(self.pool)
            st.mark_selected(idx)
            self.oracle.reveal(st, idx)
            m = self.evaluator.measured(st)
            cl = np.full(self.pool.n, -1, dtype=np.int64)
            ty = np.full(self.pool.n, -1, dtype=np.int64)
            cl[m.index], ty[m.index] = m.cluster, m.codes
            self._truth = (cl, ty)
        return self._truth

    @classmethod
    def from_adata(cls, adata, space, *, name: str | None = None, vision_key: str = "X_vision") -> PolicyEnv:
        from .loop import SimulatedOracle

        pool = Pool.from_adata(adata, vision_key=vision_key, require_vision=True)
        oracle = SimulatedOracle(adata, pool, obsm_keys=[space.embedding_key] if space.embedding_key else ())
        return cls(name or "+".join(pool.section_names), pool, oracle, space, RewardEvaluator(space, pool))


class TermGains:
    """The TRUE marginal gain of each reward term for adding one spot to a training episode's
    selected set (simulation on a fully measured section: the revealed cluster and cell type of
    every spot, :meth:`PolicyEnv.truth`; the spatial term needs no expression). Targets of the
    auxiliary loss that trains the per-term heads ``q_j`` (:meth:`SCRLPolicy.aux_loss`); the
    policy's inputs stay vision, location and predictions.

    Gains, as in :mod:`~napari_scr2st.sampling.reward`: ``r_sc``: 1/K if the spot's cluster is not
    yet covered; ``r_type``: change of the normalised type entropy; ``r_sp``: change of the
    section's clipped ``1 - mean distance / norm`` times the section's weight (mean over at most
    ``max_anchors`` random spots of the section). Selected-but-unrevealed spots count with their
    true cluster/type (they will be revealed at the end of the round).
    """

    def __init__(self, env: PolicyEnv, state: SelectionState, *, n_candidates: int = 128,
                 max_anchors: int = 512, target_std: float = 2.0, per_round: int = 3) -> None:
        self.per_round = int(per_round)
        self.cl, self.ty = env.truth()
        pool = env.pool
        self.coords = pool.coords
        self.K, self.T = int(env.space.n_clusters), int(env.space.n_types)
        self.n_candidates, self.max_anchors, self.target_std = int(n_candidates), int(max_anchors), float(target_std)
        index = pool.spatial_index()
        self.members = index.members
        self.norms = np.array(index.norms, dtype=np.float64)
        self.secw = np.asarray(index.section_weights, dtype=np.float64)
        self.sec_id = np.full(pool.n, -1, dtype=np.int64)
        for i, mem in enumerate(self.members):
            self.sec_id[mem] = i
        sel = np.flatnonzero(state.selected & ~pool.excluded)
        self.covered = np.zeros(self.K, dtype=bool)
        self.tcount = np.zeros(self.T, dtype=np.float64)
        self.dmin = np.full(pool.n, np.inf)
        self.add(sel)

    def add(self, picks) -> None:
        from scipy.spatial import cKDTree

        picks = np.asarray(picks, dtype=np.int64)
        picks = picks[self.sec_id[picks] >= 0]
        if picks.size == 0:
            return
        self.covered[self.cl[picks]] = True
        np.add.at(self.tcount, self.ty[picks], 1.0)
        for i in np.unique(self.sec_id[picks]):
            mem = self.members[i]
            d, _ = cKDTree(self.coords[picks[self.sec_id[picks] == i]]).query(self.coords[mem], k=1)
            self.dmin[mem] = np.minimum(self.dmin[mem], d)

    def sample(self, x_round: np.ndarray, x_dyn: np.ndarray, avail: np.ndarray,
               rng: np.random.Generator) -> AuxSample | None:
        """An :class:`AuxSample` of at most ``n_candidates`` random available spots: their gains,
        centred and divided by ONE scale shared by the three terms (the RMS of their spreads), so
        ``sum_j w_j q_j`` ranks spots like the weighted reward gain; times ``target_std``."""
        cand = np.flatnonzero(avail)
        if len(cand) < 2:
            return None
        if len(cand) > self.n_candidates:
            cand = np.sort(rng.choice(cand, self.n_candidates, replace=False))
        g = self.gains(cand, rng)
        scale = float(np.sqrt(g.var(axis=0).mean()))
        if not np.isfinite(scale) or scale <= 1e-12:
            return None
        t = self.target_std * (g - g.mean(axis=0)) / scale
        return AuxSample(x_round[cand].copy(), x_dyn[cand].copy(), t.astype(np.float32))

    def _entropy(self, c: np.ndarray) -> np.ndarray:
        tot = c.sum(axis=-1, keepdims=True)
        p = np.where(c > 0, c / np.maximum(tot, 1e-12), 1.0)
        return -(np.where(c > 0, p * np.log(p), 0.0)).sum(axis=-1) / np.log(self.T)

    def gains(self, cand: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(len(cand), 3) marginal gains (sc, type, sp) of each candidate alone."""
        cand = np.asarray(cand, dtype=np.int64)
        g = np.zeros((len(cand), 3))
        g[:, 0] = (~self.covered[self.cl[cand]]) / self.K
        if self.T > 1:
            hnew = self._entropy(self.tcount[None, :] + np.eye(self.T))
            g[:, 1] = (hnew - self._entropy(self.tcount[None, :])[0])[self.ty[cand]]
        for i in np.unique(self.sec_id[cand]):
            ci = np.flatnonzero(self.sec_id[cand] == i)
            mem = self.members[i]
            norm = self.norms[i]
            cur = self.dmin[mem]
            empty = not np.isfinite(cur).any()
            if norm <= 0:
                g[ci, 2] = self.secw[i] * float(empty)
                continue
            a = np.arange(len(mem)) if len(mem) <= self.max_anchors else rng.choice(len(mem), self.max_anchors, replace=False)
            D = np.sqrt(((self.coords[mem[a]][:, None, :] - self.coords[cand[ci]][None, :, :]) ** 2).sum(-1))
            before = 0.0 if empty else float(np.clip(1.0 - cur[a].mean() / norm, 0.0, 1.0))
            after_mean = D.mean(axis=0) if empty else np.minimum(cur[a][:, None], D).mean(axis=0)
            g[ci, 2] = self.secw[i] * (np.clip(1.0 - after_mean / norm, 0.0, 1.0) - before)
        return g


@dataclass
class AuxSample:
    """Features of some available spots at one training sub-step and the scaled true marginal gain
    of each reward term (the auxiliary loss's targets, see :meth:`TermGains.sample`)."""

    x_round: np.ndarray  # (m, F) float32
    x_dyn: np.ndarray  # (m, N_DYN) float32
    target: np.ndarray  # (m, 3) float32, centred


def _aux_substeps(n_sub: int, aux: TermGains | None) -> set[int]:
    """Sub-steps of a round at which auxiliary samples are recorded (first, ..., last)."""
    if aux is None or n_sub <= 0:
        return set()
    m = int(min(n_sub, aux.per_round))
    return set(np.unique(np.linspace(0, n_sub - 1, m).round().astype(int)).tolist())


def sample_weights(rng: np.random.Generator, alpha: float = 0.5, corner_prob: float = 0.25) -> np.ndarray:
    """Training weights of one episode: with probability ``corner_prob`` a corner of the simplex
    (one term only), else Dirichlet(``alpha``) (``alpha`` < 1 favours lopsided vectors, so the
    policy sees the extremes a user can set with the sliders)."""
    if corner_prob > 0 and rng.random() < corner_prob:
        return np.eye(3)[int(rng.integers(3))]
    return rng.dirichlet(np.full(3, float(alpha)))


def rollout(policy: SCRLPolicy, env: PolicyEnv, weights, budget: int, rounds: int, *,
            rng: np.random.Generator, train: bool, predictor=None, min_train: int = 5, temperature: float = 0.0,
            aux: list | None = None):
    """One simulated episode on ``env``; returns (gains per round, log-probs, entropies, final
    terms, final state). ``train``: Gumbel-top-k sampling with gradients; else deployment
    selection (top-k, or sampling with ``temperature``). ``aux`` (a list, with ``train``):
    :class:`AuxSample` s of the true term gains are appended to it (a few per round)."""
    from .predictors import SpacePredictor

    space = env.space
    w = policy._w(weights)
    W = RewardWeights(*map(float, w))
    pool = env.pool
    state = SelectionState.for_pool(pool)
    state.budget, state.n_rounds = int(budget), int(rounds)
    spred = SpacePredictor(space, predictor, min_train=min_train)
    prev, gains, logps, ents = 0.0, [], [], []
    terms = None
    for t, k in enumerate(round_schedule(budget, rounds)):
        state.current_round = t
        m = env.evaluator.measured(state)
        zp = spred(pool, state, m.index, m.z)
        feats = policy.features(pool, state, space, measured=m, zp=zp)
        if train:
            tg = TermGains(env, state) if aux is not None else None
            picks, lp, en = policy._sample_round(feats, w, k, rng, aux=tg, aux_out=aux)
            logps.append(lp)
            ents.append(en)
        else:
            picks = policy.select(feats, w, k, temperature=temperature, rng=rng)
        state.mark_selected(picks, source="scrl")
        env.oracle.reveal(state, picks)
        terms = env.evaluator.terms(state)
        tot = terms.total(W)
        gains.append(tot - prev)
        prev = tot
    return np.array(gains), logps, ents, terms, state


def iter_train_policy(
    policy: SCRLPolicy,
    envs: Sequence[PolicyEnv],
    space=None,
    *,
    episodes: int = 100,
    group_size: int = 4,
    rounds: int = 4,
    budget_range: tuple[float, float] = (0.08, 0.3),
    lr: float = 3e-3,
    entropy_coef: float = 0.01,
    dirichlet_alpha: float = 0.5,
    corner_prob: float = 0.25,
    aux_coef: float = 1.0,
    aux_steps: int = 32,
    aux_lr: float = 3e-3,
    aux_buffer: int = 256,
    fixed_weights: RewardWeights | None = None,
    seed: int = 0,
    predictor=None,
    imitation_episodes: int = 0,
    imitation_lr: float = 1e-2,
    token: CancelToken | None = None,
) -> Generator[Progress, None, list[dict[str, float]]]:
    """REINFORCE with a group baseline on simulated episodes (see module docstring).

    Each env carries its own reference space (``space``, if given, is only checked against the
    policy). Episodes cycle through ``envs``; yields one Progress per episode and returns the
    per-episode records (also appended to ``policy.history``).

    ``imitation_episodes`` > 0 first warm-starts the policy by behaviour cloning of the greedy
    reward maximiser (:class:`~napari_scr2st.sampling.samplers.GreedyRewardSampler`, which uses
    the same information as the policy: predictions from measured spots, never hidden
    expression), under the episode's sampled weights: the loss is minus the exact Plackett-Luce
    log-likelihood of the teacher's ordered picks. REINFORCE then fine-tunes on the true
    (revealed) reward. Plain REINFORCE from scratch learns slowly on small sections (see
    docs/benchmarks.md).

    Weights of an episode: :func:`sample_weights` (a simplex corner with probability
    ``corner_prob``, else Dirichlet(``dirichlet_alpha``)).

    Auxiliary term-gain loss (``aux_coef`` > 0, both phases): at a few sub-steps of every round
    the TRUE marginal gain of each reward term is computed for some available spots from the
    training section's revealed data (:class:`TermGains`; a training target, never an input) and
    kept in a buffer of the last ``aux_buffer`` samples; after each episode's policy update,
    ``aux_steps`` Adam steps (``aux_lr``) regress the per-term heads ``q_j`` onto them
    (:meth:`SCRLPolicy.aux_loss`). The score is ``FiLM part + sum_j w_j q_j``, so this gives the
    weights a trained, correctly signed path from the first episodes on; without it a few dozen
    REINFORCE episodes learn a weight-blind score (docs/benchmarks.md, weight sensitivity).
    ``aux_coef=0, corner_prob=0, dirichlet_alpha=1`` is the earlier plain recipe.
    """
    import torch

    if not envs:
        raise ValueError("no training sections")
    for sp_ in ([space] if space is not None else []) + [e.space for e in envs]:
        policy.check_space(sp_)
    if policy.vision_transform is None:
        policy.fit_vision([e.pool.vision for e in envs if e.pool.vision is not None])
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt_im = torch.optim.Adam(policy.net.parameters(), lr=imitation_lr, foreach=False)
    opt = torch.optim.Adam(policy.net.parameters(), lr=lr, foreach=False)
    aux_params = list(policy.net.trunk.parameters()) + list(policy.net.terms.parameters())
    opt_aux = torch.optim.Adam(aux_params, lr=aux_lr, foreach=False)
    use_aux = aux_coef > 0 and aux_steps > 0
    buffer: list[AuxSample] = []
    policy.net.train()
    hist: list[dict[str, float]] = []
    threads = single_thread()
    threads.__enter__()
    total_steps = imitation_episodes + episodes

    def aux_update(new: list[AuxSample]) -> float:
        """Add ``new`` to the buffer and take ``aux_steps`` steps on random mini-batches of it."""
        if not use_aux:
            return float("nan")
        buffer.extend(new)
        del buffer[:-aux_buffer]
        if not buffer:
            return float("nan")
        losses = []
        for _ in range(aux_steps):
            pick = rng.choice(len(buffer), size=min(8, len(buffer)), replace=False)
            la = aux_coef * policy.aux_loss([buffer[i] for i in pick])
            opt_aux.zero_grad()
            la.backward()
            torch.nn.utils.clip_grad_norm_(aux_params, 1.0)
            opt_aux.step()
            losses.append(float(la.detach()))
        policy._version += 1
        return float(np.mean(losses))

    try:
        for ep in range(imitation_episodes):
            if token is not None:
                token.raise_if_cancelled()
            env = envs[ep % len(envs)]
            w = fixed_weights.normalized() if fixed_weights is not None else sample_weights(rng, dirichlet_alpha, corner_prob)
            budget = int(max(rounds, round(rng.uniform(*budget_range) * env.pool.n_in_pool)))
            samples: list[AuxSample] | None = [] if use_aux else None
            loss, final = _imitation_episode(policy, env, w, budget, rounds, rng, predictor, aux_out=samples)
            opt_im.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.net.parameters(), 1.0)
            opt_im.step()
            policy._version += 1
            aux_l = aux_update(samples or [])
            rec = {"episode": float(len(policy.history) + 1), "phase": "imitation", "return": final,
                   "loss": float(loss.detach()), "aux": aux_l, "budget": float(budget)}
            policy.history.append(rec)
            hist.append(rec)
            yield Progress(step=ep + 1, total=total_steps, message=f"imitation {env.name}",
                           metrics={"teacher_return": final, "nll": rec["loss"]})
        for ep in range(episodes):
            if token is not None:
                token.raise_if_cancelled()
            env = envs[ep % len(envs)]
            w = fixed_weights.normalized() if fixed_weights is not None else sample_weights(rng, dirichlet_alpha, corner_prob)
            frac = rng.uniform(*budget_range)
            budget = int(max(rounds, round(frac * env.pool.n_in_pool)))
            G, LP, EN, finals = [], [], [], []
            samples = [] if use_aux else None
            for _ in range(group_size):
                gains, lps, ens, terms, _ = rollout(policy, env, w, budget, rounds, rng=rng, train=True,
                                                    predictor=predictor, aux=samples)
                G.append(np.cumsum(gains[::-1])[::-1])  # reward-to-go per round
                LP.append(torch.stack(lps))
                EN.append(torch.stack(ens))
                finals.append(terms.total(RewardWeights(*map(float, w))))
            G = np.stack(G)  # (group, rounds)
            adv = G - G.mean(axis=0, keepdims=True)
            adv = adv / (adv.std() + 1e-8)
            adv_t = torch.from_numpy(adv.astype(np.float32))
            logp = torch.stack(LP)
            ent = torch.stack(EN).mean()
            loss = -(adv_t * logp).sum(dim=1).mean() - entropy_coef * ent
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.net.parameters(), 1.0)
            opt.step()
            policy._version += 1
            aux_l = aux_update(samples or [])
            rec = {"episode": float(len(policy.history) + 1), "phase": "reinforce", "return": float(np.mean(finals)),
                   "loss": float(loss.detach()), "entropy": float(ent.detach()), "aux": aux_l,
                   "budget": float(budget), "w_sc": float(w[0]), "w_type": float(w[1]), "w_sp": float(w[2])}
            policy.history.append(rec)
            hist.append(rec)
            yield Progress(step=imitation_episodes + ep + 1, total=total_steps, message=env.name,
                           metrics={"return": rec["return"], "loss": rec["loss"]})
    finally:
        policy.net.eval()
        threads.__exit__(None, None, None)
    return hist


def _imitation_episode(policy: SCRLPolicy, env: PolicyEnv, w: np.ndarray, budget: int, rounds: int,
                       rng: np.random.Generator, predictor=None, aux_out: list | None = None):
    """One episode following the greedy teacher; returns (mean NLL per pick, teacher's return);
    with ``aux_out`` (a list) also records :class:`AuxSample` s of the true term gains."""
    from .predictors import SpacePredictor
    from .samplers import GreedyRewardSampler

    W = RewardWeights(*map(float, w))
    teacher = GreedyRewardSampler(env.space, W, predictor=predictor, embedder=env.evaluator.embedder,
                                  seed=int(rng.integers(2**31 - 1)))
    spred = SpacePredictor(env.space, predictor)
    state = SelectionState.for_pool(env.pool)
    state.budget, state.n_rounds = int(budget), int(rounds)
    nll = []
    for t, k in enumerate(round_schedule(budget, rounds)):
        state.current_round = t
        m = env.evaluator.measured(state)
        zp = spred(env.pool, state, m.index, m.z)
        feats = policy.features(env.pool, state, env.space, measured=m, zp=zp)
        picks = teacher.select(env.pool, k, state, rng=rng)
        tg = TermGains(env, state) if aux_out is not None else None
        nll.append(-policy._log_prob_round(feats, w, picks, aux=tg, aux_out=aux_out, rng=rng) / max(k, 1))
        state.mark_selected(picks, source="greedy")
        env.oracle.reveal(state, picks)
    import torch

    return torch.stack(nll).mean(), env.evaluator.terms(state).total(W)


def train_policy(*args, **kwargs) -> list[dict[str, float]]:
    """:func:`iter_train_policy` driven to completion without a progress bar."""
    from .._engine import drive

    return drive(iter_train_policy(*args, **kwargs), use_tqdm=False)
