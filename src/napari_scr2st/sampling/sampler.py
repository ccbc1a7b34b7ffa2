"""The sampler interface: ``Sampler.select(pool, n, state) -> pool indices``, and Gumbel-top-k.

Every sampler sees a :class:`~napari_scr2st.sampling.pool.Pool` (ids, sections, coordinates,
vision embedding, exclusions: NO expression) and a
:class:`~napari_scr2st.sampling.state.SelectionState` (what is selected; counts of REVEALED spots
only). The base class enforces the rules for all of them: picks are unique, never already
selected (no re-picks), never excluded, within ``candidates`` if given, exactly ``n`` of them;
asking for more than the available spots is a ValueError with the numbers.
"""

from __future__ import annotations

import numpy as np

from .pool import Pool

__all__ = ["Sampler", "gumbel_top_k"]


def gumbel_top_k(log_weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sample ``k`` indices without replacement, P proportional to exp(log_weights) (Plackett-Luce)."""
    g = rng.gumbel(size=len(log_weights))
    key = np.asarray(log_weights, dtype=np.float64) + g
    if k >= len(key):
        return np.argsort(-key, kind="stable")
    part = np.argpartition(-key, k - 1)[:k]
    return part[np.argsort(-key[part], kind="stable")]


class Sampler:
    """Base class: validation and bookkeeping; subclasses implement ``_select``."""

    name = "base"
    needs_vision = False

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = int(seed)
        self.last_scores: np.ndarray | None = None

    def select(self, pool: Pool, n: int, state, *, candidates: np.ndarray | None = None,
               rng: np.random.Generator | None = None) -> np.ndarray:
        """Pick ``n`` new spots (pool indices, in pick order). See the module docstring for the rules."""
        state.check_pool(pool)
        n = int(n)
        if n < 0:
            raise ValueError(f"{self.name}: cannot pick a negative number of spots ({n})")
        available = pool.available_mask(state)
        if candidates is not None:
            cand = np.asarray(candidates)
            if cand.dtype != bool:
                m = np.zeros(pool.n, dtype=bool)
                m[cand.astype(np.int64)] = True
                cand = m
            available &= cand
        n_av = int(available.sum())
        if n > n_av:
            raise ValueError(
                f"{self.name}: asked for {n} spots but only {n_av} are available "
                f"(pool {pool.n}, excluded {int(pool.excluded.sum())}, already selected {state.n_selected}"
                f"{', restricted to candidates' if candidates is not None else ''})"
            )
        self.last_scores = None
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if self.needs_vision and pool.vision is None:
            raise ValueError(f"sampler '{self.name}' needs a vision embedding (obsm['X_vision']); the pool has none")
        rng = rng if rng is not None else np.random.default_rng([self.seed, int(state.current_round)])
        idx = np.asarray(self._select(pool, n, state, available, rng), dtype=np.int64).ravel()
        # the rules, enforced for every sampler (a violation is a bug in the sampler)
        if len(idx) != n or len(np.unique(idx)) != n or not available[idx].all():
            raise RuntimeError(f"sampler '{self.name}' broke the selection rules (got {len(idx)} picks for n={n})")
        if self.last_scores is not None and len(self.last_scores) != n:
            self.last_scores = None
        return idx

    def _select(self, pool: Pool, n: int, state, available: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed})"
