"""The expected-error term r_unc: values on hand-checkable cases, its exact gains, and that it,
the SCRL features built on it and the selections that use it never read unsequenced expression."""

import numpy as np
import pytest

from napari_scr2st.sampling import (
    Pool,
    SelectionRequest,
    SelectionState,
    SimulatedOracle,
    make_sampler,
    run_acquisition,
)
from napari_scr2st.sampling.measured import RewardEvaluator, UncertaintyKernel, variance_index
from napari_scr2st.sampling.reward import (
    RewardWeights,
    VarianceGains,
    VarianceIndex,
    variance_reduction,
)


class _Fixed:
    """A kernel given as a matrix (prior variance 1 on the diagonal)."""

    def __init__(self, K):
        self.K = np.asarray(K, dtype=float)

    def __call__(self, a, b):
        return self.K[np.ix_(np.asarray(a, int), np.asarray(b, int))]


def test_two_spots_by_hand():
    # k(0, 1) = 0.5, noise 1: measuring spot 0 leaves var(1) = 1 - 0.25 / 2 = 0.875 of a total of 2
    idx = VarianceIndex(_Fixed([[1, 0.5], [0.5, 1]]), np.array(["s", "s"]), noise=1.0)
    assert variance_reduction(idx, np.array([], int)) == 0.0
    assert variance_reduction(idx, np.array([0])) == pytest.approx(1 - 0.875 / 2)
    assert variance_reduction(idx, np.array([True, True])) == pytest.approx(1.0)
    # the gain of spot 1 given spot 0: its own remaining variance 0.875 over the total 2
    assert idx.gains(np.array([0]), np.array([1]))[0] == pytest.approx(0.875 / 2)


def test_sections_are_independent_and_weighted_by_size():
    # spots 0, 1 in section a (uncorrelated), spot 2 alone in section b
    idx = VarianceIndex(_Fixed(np.eye(3)), np.array(["a", "a", "b"]), noise=1.0)
    assert variance_reduction(idx, np.array([2])) == pytest.approx(1 / 3)  # section b complete, a untouched
    assert variance_reduction(idx, np.array([0])) == pytest.approx(2 / 3 * 0.5)
    assert variance_reduction(idx, np.array([0, 2])) == pytest.approx(2 / 3 * 0.5 + 1 / 3)


def test_monotone_bounded_and_gains_are_exact(small):
    a, _ = small
    pool = Pool.from_adata(a)
    index = variance_index(pool)
    rng = np.random.default_rng(0)
    order = rng.permutation(pool.n)
    vals = [index.value(order[:k]) for k in (0, 5, 20, 60, 150, pool.n)]
    assert vals[0] == 0.0 and vals[-1] == pytest.approx(1.0)
    assert all(0.0 <= v <= 1.0 for v in vals)
    assert np.all(np.diff(vals) > 0), vals
    sel, cand = order[:20], order[20:30]
    g = index.gains(sel, cand)
    brute = [index.value(np.r_[sel, c]) - index.value(sel) for c in cand]
    np.testing.assert_allclose(g, brute, atol=1e-12)
    tr = VarianceGains(index, sel, cand)
    tr.add(4)
    np.testing.assert_allclose(tr.gains(), index.gains(np.r_[sel, cand[4]], cand), atol=1e-12)
    assert tr.gains()[4] == 0.0


def test_kernel_reads_no_expression_and_is_a_covariance(small):
    a, _ = small
    pool = Pool.from_adata(a)
    kern = UncertaintyKernel(pool)
    idx = np.arange(0, pool.n, 5)
    K = kern(idx, idx)
    assert np.allclose(K, K.T) and np.linalg.eigvalsh(K).min() > -1e-8
    np.testing.assert_allclose(np.diag(K), kern.diag(idx))
    b = a.copy()
    b.X = b.X * 0  # no counts at all: the same kernel
    np.testing.assert_allclose(UncertaintyKernel(Pool.from_adata(b))(idx, idx), K)


def test_evaluator_has_the_unc_term_and_weights_default(small):
    a, space = small
    pool = Pool.from_adata(a)
    st = SelectionState.for_pool(pool)
    idx = np.arange(0, pool.n, 9)
    st.mark_selected(idx)
    SimulatedOracle(a, pool).reveal(st, idx)
    t = RewardEvaluator(space, pool).terms(st)
    assert t.unc == pytest.approx(variance_index(pool).value(idx)) and 0 < t.unc < 1
    w = RewardWeights()
    assert t.total(w) == pytest.approx(w.sc * t.sc + w.type * t.type + w.sp * t.sp + w.unc * t.unc)


def test_greedy_on_unc_only_spreads_and_beats_random(small):
    a, space = small
    req = SelectionRequest(budget=30, rounds=1, seed=0)
    vals = {}
    for name, w in (("greedy", (0, 0, 0, 1)), ("random", None)):
        pool = Pool.from_adata(a)
        res = run_acquisition(pool, make_sampler(name, seed=0, space=space, weights=w), req,
                              oracle=SimulatedOracle(a, pool))
        vals[name] = variance_index(pool).value(np.flatnonzero(res.state.selected))
    assert vals["greedy"] > vals["random"] + 0.02, vals


# ------------------------------------------------------------------------------ old policy files


def test_a_policy_from_before_r_unc_still_loads_and_selects(small, tmp_path):
    import json

    import torch

    from napari_scr2st.sampling.scrl import PolicyConfig, SCRLPolicy, SCRLSampler

    a, space = small
    pol = SCRLPolicy.for_space(space, seed=0, n_terms=3, unc_feature=False)
    path = pol.save(tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    cfg = json.loads(payload["config_json"])
    del cfg["n_terms"], cfg["unc_feature"]  # what a format-2 file holds
    payload["config_json"], payload["format_version"] = json.dumps(cfg), 2
    torch.save(payload, path)
    old = SCRLPolicy.load(path)
    assert old.config.n_terms == 3 and not old.config.unc_feature
    assert old.config.n_round_features == PolicyConfig(**{**cfg, "n_terms": 4}).n_round_features - 1
    pool = Pool.from_adata(a)
    res = run_acquisition(pool, SCRLSampler(old, space, weights=RewardWeights()), SelectionRequest(budget=20, seed=0),
                          oracle=SimulatedOracle(a, pool))
    assert res.state.n_selected == 20
    with pytest.raises(ValueError, match="before the r_unc term"):
        old._w((0, 0, 0, 1))
