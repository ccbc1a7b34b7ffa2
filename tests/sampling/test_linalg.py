"""sampling._linalg: the GIL-releasing Cholesky and the blocked triangular solve give SciPy's results."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import cholesky, solve_triangular

from napari_scr2st.sampling._linalg import cholesky_lower, solve_lower


def _spd(n: int, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(n, n))
    return a @ a.T + n * np.eye(n)


def test_cholesky_lower_matches_scipy_and_reconstructs():
    a = _spd(60)
    L = cholesky_lower(a)
    np.testing.assert_allclose(L, cholesky(a, lower=True), rtol=1e-10, atol=1e-12)
    assert np.allclose(np.triu(L, 1), 0.0)
    np.testing.assert_allclose(L @ L.T, a, rtol=1e-10)


def test_cholesky_lower_refuses_a_matrix_that_is_not_positive_definite():
    with pytest.raises(np.linalg.LinAlgError):
        cholesky_lower(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="infs or NaNs"):
        cholesky_lower(np.array([[1.0, np.nan], [np.nan, 1.0]]))


@pytest.mark.parametrize("block_flops", [1.0, 5e4, 1e12])  # 8-column blocks, a few blocks, one call
def test_solve_lower_in_blocks_equals_one_solve(block_flops):
    L = cholesky_lower(_spd(50, 1))
    b = np.random.default_rng(2).normal(size=(50, 203))  # not a multiple of any block width
    x = solve_lower(L, b, block_flops=block_flops)
    assert x.shape == b.shape
    np.testing.assert_allclose(x, solve_triangular(L, b, lower=True), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(L @ x, b, rtol=1e-9, atol=1e-9)


def test_solve_lower_vector_and_empty():
    L = cholesky_lower(_spd(5, 3))
    v = np.arange(5.0)
    np.testing.assert_allclose(L @ solve_lower(L, v), v, atol=1e-12)
    assert solve_lower(np.zeros((0, 0)), np.zeros((0, 4))).shape == (0, 4)
