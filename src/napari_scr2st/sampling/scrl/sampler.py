"""The SCRL policy behind the common sampler interface (:class:`SCRLSampler`)."""

from __future__ import annotations

import numpy as np

from ..measured import MeasuredEmbedder
from ..pool import Pool
from ..reward import RewardWeights
from ..sampler import Sampler
from ..state import SelectionState
from ..surrogate import SpacePredictor
from .features import PolicyFeatures
from .policy import SCRLPolicy

__all__ = ["SCRLSampler"]


class SCRLSampler(Sampler):
    """The SCRL policy behind the common sampler interface (deployment: top-k by default)."""

    name = "scrl"

    def __init__(self, policy: SCRLPolicy, space, weights=None, *, predictor=None, seed: int = 0,
                 temperature: float = 0.0, min_train: int = 5, embedder: MeasuredEmbedder | None = None) -> None:
        super().__init__(seed=seed)
        policy.check_space(space)
        self.policy = policy
        self.space = space
        self.weights = RewardWeights.parse(weights)
        self.temperature = temperature
        self.space_predictor = SpacePredictor(space, predictor, min_train=min_train)
        self.embedder = embedder or MeasuredEmbedder(space)
        self.last_features: PolicyFeatures | None = None
        self._features_key = None

    def features(self, pool: Pool, state: SelectionState, available: np.ndarray | None = None) -> PolicyFeatures:
        m = self.embedder(state)
        zp = self.space_predictor(pool, state, m.index, m.z)
        return self.policy.features(pool, state, self.space, measured=m, zp=zp, available=available)

    def _select(self, pool, n, state, available, rng):
        # the features depend on the state, not on the weights: a weight change (a slider move)
        # reuses them and only the weight-conditioned head runs
        import hashlib

        key = (id(pool), state.fingerprint(), hashlib.blake2b(np.packbits(available).tobytes()).hexdigest(),
               id(self.policy), getattr(self.policy, "_version", 0), getattr(self.policy, "_vision_version", 0))
        if key != self._features_key or self.last_features is None:
            self.last_features = self.features(pool, state, available)
            self._features_key = key
        feats = self.last_features
        idx = self.policy.select(feats, self.weights, n, available=available, temperature=self.temperature, rng=rng)
        self.last_scores = self.policy.last_scores
        return idx
