"""Dense linear algebra that lets the GUI thread run while a worker computes.

SciPy's LAPACK wrappers (``scipy.linalg.cholesky``, ``solve_triangular``) hold the GIL for the
whole call, so one factorisation of a 1,500-spot conditioning set in a worker (a re-selection,
the reward's terms) froze the napari UI thread for 30-140 ms here. NumPy's ``linalg`` releases
the GIL, and a triangular solve split into column blocks gives it back between blocks; the
results are the same LAPACK/BLAS computations.
"""

from __future__ import annotations

import numpy as np

#: floating-point work of one triangular-solve block (about 5-10 ms on one core here)
BLOCK_FLOPS = 2e8


def cholesky_lower(a: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a symmetric positive-definite ``a`` (``numpy.linalg.LinAlgError``
    if it is not; ``ValueError`` if it holds a NaN or an infinity, as SciPy's), computed without
    holding the GIL."""
    a = np.asarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError("cholesky: the kernel matrix contains infs or NaNs")
    return np.linalg.cholesky(a)


def solve_lower(L: np.ndarray, b: np.ndarray, *, block_flops: float = BLOCK_FLOPS) -> np.ndarray:
    """``L^-1 b`` for a lower-triangular ``L`` (``scipy.linalg.solve_triangular(L, b,
    lower=True)``), in column blocks of about ``block_flops`` each so that no single call holds
    the GIL for long."""
    from scipy.linalg import solve_triangular

    b = np.asarray(b, dtype=np.float64)
    n = L.shape[0]
    step = max(8, int(block_flops // max(n * n, 1)))
    if b.ndim == 1 or n == 0 or b.shape[1] <= step:
        return solve_triangular(L, b, lower=True)
    out = np.empty_like(b)
    for j in range(0, b.shape[1], step):
        out[:, j:j + step] = solve_triangular(L, b[:, j:j + step], lower=True)
    return out
