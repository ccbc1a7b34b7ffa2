"""Simulated episodes for training and evaluating the SCRL policy.

:class:`PolicyEnv` is a fully measured section (pool, :class:`~napari_scr2st.sampling.oracle.SimulatedOracle`
with its hidden counts, reference space, reward evaluator); :class:`TermGains` computes the TRUE
marginal gain of each reward term there (targets of the auxiliary loss, never a policy input);
:func:`rollout` plays one episode of a policy on an environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..measured import RewardEvaluator
from ..oracle import SimulatedOracle
from ..pool import Pool, round_schedule
from ..reward import RewardWeights
from ..state import SelectionState
from ..surrogate import SpacePredictor
from .features import AuxSample
from .policy import SCRLPolicy

__all__ = ["PolicyEnv", "TermGains", "rollout", "reward_weights"]


def reward_weights(w) -> RewardWeights:
    """``RewardWeights`` of a policy's weight vector (3 numbers: ``r_unc`` weighs 0)."""
    vals = [float(v) for v in np.asarray(w).ravel()]
    return RewardWeights(*(vals + [0.0] * (4 - len(vals))))


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
    ``max_anchors`` random spots of the section); ``r_unc`` (with ``n_terms`` = 4): the exact gain
    (:meth:`~napari_scr2st.sampling.reward.VarianceIndex.gains`; it needs no expression).
    Selected-but-unrevealed spots count with their true cluster/type (they will be revealed at
    the end of the round).
    """

    def __init__(self, env: PolicyEnv, state: SelectionState, *, n_candidates: int = 128,
                 max_anchors: int = 512, target_std: float = 2.0, per_round: int = 3, n_terms: int = 4) -> None:
        self.per_round = int(per_round)
        self.n_terms = int(n_terms)
        self.pool = env.pool
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
        self.selected = np.zeros(0, dtype=np.int64)
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
        self.selected = np.concatenate([self.selected, picks])
        self.covered[self.cl[picks]] = True
        np.add.at(self.tcount, self.ty[picks], 1.0)
        for i in np.unique(self.sec_id[picks]):
            mem = self.members[i]
            d, _ = cKDTree(self.coords[picks[self.sec_id[picks] == i]]).query(self.coords[mem], k=1)
            self.dmin[mem] = np.minimum(self.dmin[mem], d)

    def sample(self, x_round: np.ndarray, x_dyn: np.ndarray, avail: np.ndarray,
               rng: np.random.Generator) -> AuxSample | None:
        """An :class:`AuxSample` of at most ``n_candidates`` random available spots: their gains,
        centred and divided by ONE scale shared by the terms (the RMS of their spreads), so
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
        """(len(cand), n_terms) marginal gains (sc, type, sp[, unc]) of each candidate alone."""
        cand = np.asarray(cand, dtype=np.int64)
        g = np.zeros((len(cand), self.n_terms))
        if self.n_terms > 3:
            from ..measured import variance_index

            g[:, 3] = variance_index(self.pool).gains(self.selected, cand)
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


def rollout(policy: SCRLPolicy, env: PolicyEnv, weights, budget: int, rounds: int, *,
            rng: np.random.Generator, train: bool, predictor=None, min_train: int = 5, temperature: float = 0.0,
            aux: list | None = None):
    """One simulated episode on ``env``; returns (gains per round, log-probs, entropies, final
    terms, final state). ``train``: Gumbel-top-k sampling with gradients; else deployment
    selection (top-k, or sampling with ``temperature``). ``aux`` (a list, with ``train``):
    :class:`~napari_scr2st.sampling.scrl.features.AuxSample` s of the true term gains are appended to it (a few per round)."""
    space = env.space
    w = policy._w(weights)
    W = reward_weights(w)
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
            tg = TermGains(env, state, n_terms=policy.config.n_terms) if aux is not None else None
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
