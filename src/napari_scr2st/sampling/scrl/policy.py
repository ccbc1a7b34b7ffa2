"""The SCRL policy (:class:`SCRLPolicy`): weight-conditioned scoring of spots, selection in
sub-steps, the log-probabilities training needs, save/load.

The network is :mod:`.network`, the state features :mod:`.features`. Training episodes
(:func:`.environment.rollout`, :mod:`.training`) use :meth:`SCRLPolicy._sample_round` (Gumbel-top-k
with gradients), :meth:`SCRLPolicy._log_prob_round` (imitation) and :meth:`SCRLPolicy.aux_loss`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ...atomic import atomic_path
from ..measured import MeasuredSet
from ..pool import Pool, round_schedule
from ..reward import RewardWeights
from ..state import SelectionState
from ..thread_limits import single_thread
from .features import (
    AuxSample,
    PolicyFeatures,
    fit_vision_transform,
    round_features,
    static_features,
)
from .network import N_DYN, PolicyConfig, plackett_luce_log_prob, policy_net_class

__all__ = ["SCRLPolicy", "POLICY_FORMAT_VERSION", "n_substeps"]

POLICY_FORMAT_VERSION = 3  # 3: four reward terms (r_unc); 2: MLP per-term heads; 1: linear heads (all readable)


class SCRLPolicy:
    """The SCRL policy: features, weight-conditioned scoring, selection, save/load, training."""

    def __init__(self, config: PolicyConfig, *, seed: int = 0) -> None:
        import uuid

        import torch

        self.config = config
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
            torch.manual_seed(seed)
            self.net = policy_net_class()(config.n_round_features, N_DYN, config.hidden, n_w=config.n_terms,
                                          term_hidden=config.term_hidden)
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
        self.vision_transform = fit_vision_transform(V, self.config.n_vision)
        self.config.vision_dim = int(V.shape[1])
        self._vision_version += 1

    def features(self, pool: Pool, state: SelectionState, space, *, measured: MeasuredSet | None = None,
                 zp: np.ndarray | None = None, available: np.ndarray | None = None) -> PolicyFeatures:
        """Round-level and within-round features of every pool spot (no unmeasured expression).

        ``measured``: the measured set in the space (from revealed counts); ``zp``: predicted
        space coordinates of all pool spots (``None`` before a predictor can be trained). See
        :func:`~napari_scr2st.sampling.scrl.features.round_features`.
        """
        self.check_space(space)
        static = static_features(pool, self.config, self.vision_transform,
                                 ("scrl_static", self._uid, self._vision_version))
        return round_features(pool, state, space, self.config, static, self.zscale, measured=measured, zp=zp,
                              available=available)

    # ------------------------------------------------------------------ scoring and selection
    def _trunk(self, feats: PolicyFeatures):
        import torch

        key = (self._uid, self._version)  # features may be scored by several policies
        if feats._trunk is None or feats._trunk_key != key:
            with torch.no_grad():
                feats._trunk = self.net.trunk(torch.from_numpy(feats.x_round))
            feats._trunk_key = key
        return feats._trunk

    def _w(self, weights) -> np.ndarray:
        """The weights as the network takes them: ``n_terms`` numbers summing to 1. A policy
        from before ``r_unc`` (3 terms) ignores the ``r_unc`` weight."""
        n = int(self.config.n_terms)
        w = weights.as_array() if isinstance(weights, RewardWeights) else np.asarray(weights, dtype=np.float64).ravel()
        if w.shape == (3,) and n == 4:
            w = np.append(w, 0.0)
        if w.shape not in ((3,), (4,)) or (w < 0).any() or not np.isfinite(w).all():
            raise ValueError(f"weights must be {n} non-negative numbers, not all 0; got {weights}")
        w = w[:n]
        if w.sum() <= 0:
            raise ValueError("this policy was trained before the r_unc term and follows only the sc, type and sp "
                             "weights: set one of them above 0 (or retrain the policy)" if n == 3 else
                             f"weights must be {n} non-negative numbers, not all 0; got {weights}")
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
                      aux=None, aux_out: list | None = None):
        """Training: Gumbel-top-k per sub-step with gradients; returns picks, log-prob, entropy.

        With ``aux`` (a :class:`~napari_scr2st.sampling.scrl.environment.TermGains`: true term gains of
        the training section), :class:`~napari_scr2st.sampling.scrl.features.AuxSample` s for the
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
        """Auxiliary loss on recorded samples (``TermGains.sample``): MSE of the per-term
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
                        aux=None, aux_out: list | None = None,
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
        if version not in (1, 2, POLICY_FORMAT_VERSION):
            raise ValueError(f"{path}: unsupported policy format {version}")
        raw = json.loads(payload["config_json"])
        if version < 3:  # three reward terms, no r_unc feature
            raw.setdefault("n_terms", 3)
            raw.setdefault("unc_feature", False)
        cfg = PolicyConfig(**raw)
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


def _aux_substeps(n_sub: int, aux) -> set[int]:
    """Sub-steps of a round at which auxiliary samples are recorded (first, ..., last)."""
    if aux is None or n_sub <= 0:
        return set()
    m = int(min(n_sub, aux.per_round))
    return set(np.unique(np.linspace(0, n_sub - 1, m).round().astype(int)).tolist())
