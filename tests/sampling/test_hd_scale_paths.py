"""The Visium HD paths of the samplers: greedy's kd-tree spatial gain, k-center's candidate cap."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from napari_scr2st.sampling import GreedyRewardSampler, KCenterSampler, Pool, SelectionState
from napari_scr2st.sampling.baselines import _dense_reduction, _local_reduction


def test_local_reduction_is_the_dense_mean_of_positive_reductions():
    rng = np.random.default_rng(0)
    anchors = rng.uniform(0, 100, (400, 2))
    cand = np.vstack([anchors[:7], rng.uniform(0, 100, (60, 2))])  # some candidates are anchors
    dmin = rng.uniform(0, 15, 400)
    dense = np.maximum(dmin[:, None] - cdist(anchors, cand), 0.0).mean(axis=0)
    got = _local_reduction(cKDTree(anchors), cand, dmin)
    np.testing.assert_allclose(got, dense, rtol=1e-12, atol=1e-15)
    assert got[:7].min() > 0  # a candidate on an anchor reduces that anchor's whole distance


def test_dense_reduction_in_blocks_is_the_mean_of_positive_reductions():
    rng = np.random.default_rng(1)
    anchors = rng.uniform(0, 100, (700, 2))  # not a multiple of the block size
    cand = np.vstack([anchors[:5], rng.uniform(0, 100, (90, 2))])
    dmin = rng.uniform(0, 30, 700)
    dense = np.maximum(dmin[:, None] - cdist(anchors, cand), 0.0).mean(axis=0)
    for rows in (1, 64, 256, 1000):
        np.testing.assert_allclose(_dense_reduction(anchors, cand, dmin, rows=rows), dense, rtol=1e-12, atol=1e-15)
    assert _dense_reduction(anchors, cand, dmin)[:5].min() >= dmin[:5].min() / 700


def _pool_state(small):
    adata, _ = small
    pool = Pool.from_adata(adata)
    return pool, SelectionState.for_pool(pool)


def test_greedy_kdtree_path_matches_the_dense_path(small):
    adata, space = small
    pool, state = _pool_state(small)
    first = GreedyRewardSampler(space, weights=(0, 0, 1), seed=1).select(pool, 10, state)
    state.mark_selected(first, round=0, source="greedy")
    picks = {}
    for above in (10**9, 0):  # dense everywhere / kd-tree whenever the anchors are close
        smp = GreedyRewardSampler(space, weights=(0, 0, 1), seed=1, sparse_above=above)
        picks[above] = (smp.select(pool, 40, state, rng=np.random.default_rng(3)), smp.last_scores)
    dense, sparse = picks[10**9], picks[0]
    assert len(set(sparse[0])) == 40 and not state.selected[sparse[0]].any()
    # the same gains up to the rounding of the dense distance matrix: the same first picks
    k = int(np.argmax(dense[0] != sparse[0])) if (dense[0] != sparse[0]).any() else 40
    assert k >= 10
    np.testing.assert_allclose(sparse[1][:k], dense[1][:k], rtol=1e-6)
    assert len(set(dense[0]) & set(sparse[0])) >= 30


def test_kcenter_candidate_cap_only_above_the_limit(small):
    pool, state = _pool_state(small)
    base = KCenterSampler(seed=0).select(pool, 20, state)
    same = KCenterSampler(seed=0, max_candidates=pool.n).select(pool, 20, state)
    np.testing.assert_array_equal(base, same)  # below the cap: unchanged
    capped = KCenterSampler(seed=0, max_candidates=100)
    got = capped.select(pool, 20, state)
    assert len(np.unique(got)) == 20 and pool.available_mask(state)[got].all()
    assert np.all(np.isfinite(capped.last_scores[1:]))
