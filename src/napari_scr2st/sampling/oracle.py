"""The simulated sequencing of a fully measured section: hidden counts revealed on request.

:class:`SimulatedOracle` is the only holder of the counts of unmeasured spots in a simulation;
the acquisition loop asks it to reveal a batch only after the sampler picked it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .pool import Pool
from .state import SelectionState

__all__ = ["SimulatedOracle"]


class SimulatedOracle:
    """Holds back the counts of a fully measured section (or collection) and reveals on request.

    ``reveal(state, idx)`` copies the counts (and the ``obsm_keys`` rows, e.g. an expression-derived
    embedding) of the given pool indices into ``state``. Nothing else in the package can read
    them; the pool must describe the same spots in the same order (checked by key).
    """

    def __init__(self, adata, pool: Pool | None = None, *, obsm_keys: Sequence[str] = ()) -> None:
        import scipy.sparse as sp

        X = adata.X
        self._counts = (X if sp.issparse(X) else sp.csr_matrix(np.asarray(X))).tocsr()
        self._genes = [str(g) for g in adata.var_names]
        self._obsm = {k: np.asarray(adata.obsm[k]) for k in obsm_keys}
        if pool is not None:
            ref = Pool.from_adata(adata, vision_key=None)
            if not (np.array_equal(ref.spot_ids, pool.spot_ids) and np.array_equal(ref.sections, pool.sections)):
                raise ValueError("the oracle's data and the pool describe different spots (or a different order)")
        self.n_revealed = 0

    @property
    def genes(self) -> list[str]:
        return list(self._genes)

    def reveal(self, state: SelectionState, idx: Sequence[int]) -> None:
        self.fill(state, idx)
        self.n_revealed += len(idx)

    def fill(self, state: SelectionState, idx: Sequence[int]) -> None:
        """:meth:`reveal` without counting it (a staged round counts when it is applied)."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size == 0:
            return
        state.add_counts(idx, self._counts[idx], self._genes, obsm={k: v[idx] for k, v in self._obsm.items()})
