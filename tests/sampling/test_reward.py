"""Reward terms on tiny examples with hand-computed values (METHOD section 3)."""

import numpy as np
import pytest

from napari_scr2st.sampling.reward import (
    RewardTerms,
    RewardWeights,
    SpatialIndex,
    celltype_entropy,
    manifold_coverage,
    spatial_coverage,
)

# section A: three spots on a line, centre (1, 0), normaliser (1 + 0 + 1) / 3 = 2/3
# section B: two spots (1, 0) and (1, 4) - the SAME coordinate frame as A, on purpose: distances
# must never cross sections. Centroid (1, 2) is equidistant: the first spot is the centre, norm 2.
COORDS = np.array([[0, 0], [1, 0], [2, 0], [1, 0], [1, 4]], dtype=float)
SECTIONS = np.array(["A", "A", "A", "B", "B"])


def test_spatial_hand_computed():
    # A selects its two ends: min distances (0, 1, 0) -> mean 1/3 -> 1 - (1/3)/(2/3) = 0.5
    # B selects both: r_B = 1; weighted by spot counts: (3 * 0.5 + 2 * 1) / 5 = 0.7
    total, per = spatial_coverage(COORDS, SECTIONS, [0, 2, 3, 4], per_section=True)
    assert per == pytest.approx({"A": 0.5, "B": 1.0})
    assert total == pytest.approx(0.7)


def test_spatial_single_far_spot_clips_to_zero_and_empty_section_is_zero():
    # A selects (0, 0): distances (0, 1, 2), mean 1 > norm 2/3 -> clip to 0; B has nothing -> 0
    assert spatial_coverage(COORDS, SECTIONS, [0]) == pytest.approx(0.0)
    # the central spot alone: mean distance == normaliser -> exactly 0
    assert spatial_coverage(COORDS, SECTIONS, [1]) == pytest.approx(0.0)
    assert spatial_coverage(COORDS, SECTIONS, []) == 0.0


def test_spatial_never_crosses_sections():
    # B's spot (1, 0) sits on A's centre spot; A must stay uncovered
    total, per = spatial_coverage(COORDS, SECTIONS, [3], per_section=True)
    assert per["A"] == 0.0
    # B: selected (1,0): distances (0, 4) -> mean 2 == norm -> 0
    assert per["B"] == pytest.approx(0.0)
    total, per = spatial_coverage(COORDS, SECTIONS, [0, 2, 3], per_section=True)
    assert per["A"] == pytest.approx(0.5) and per["B"] == pytest.approx(0.0)
    assert total == pytest.approx(3 * 0.5 / 5)


def test_spatial_excluded_spots_are_not_in_the_pool():
    coords = np.vstack([COORDS, [[100.0, 0.0]]])
    sections = np.append(SECTIONS, "A")
    in_pool = np.array([True] * 5 + [False])
    idx = SpatialIndex(coords, sections, in_pool)
    assert spatial_coverage(idx, selected=[0, 2, 3, 4]) == pytest.approx(0.7)
    # an excluded spot passed as "selected" is ignored
    assert spatial_coverage(idx, selected=[0, 2, 3, 4, 5]) == pytest.approx(0.7)


def test_spatial_single_spot_section():
    assert spatial_coverage(np.array([[5.0, 5.0]]), np.array(["S"]), [0]) == pytest.approx(1.0)


def test_manifold_coverage_hand_computed():
    assert manifold_coverage([0, 0, 2], 4) == pytest.approx(0.5)
    assert manifold_coverage([], 4) == 0.0
    assert manifold_coverage([0, 1, 2, 3, 3], 4) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        manifold_coverage([4], 4)


def test_celltype_entropy_hand_computed():
    # two types equally: log 2 / log 4 = 0.5
    assert celltype_entropy([0, 0, 1, 1], 4) == pytest.approx(0.5)
    assert celltype_entropy([0, 1, 2, 3], 4) == pytest.approx(1.0)
    assert celltype_entropy([2, 2, 2], 4) == pytest.approx(0.0)
    # p = (2/3, 1/3) over 3 reference types: H = -(2/3 ln 2/3 + 1/3 ln 1/3) / ln 3
    h = -(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3)) / np.log(3)
    assert celltype_entropy([0, 0, 1], 3) == pytest.approx(h)
    # proportions: column means (0.25 each) -> 1
    props = np.array([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    assert celltype_entropy(props, 4) == pytest.approx(1.0)
    assert celltype_entropy([0, 0], 1) == 0.0


def test_weights_and_total():
    w = RewardWeights.parse("2,1,1")
    t = RewardTerms(0.5, 0.5, 0.7)
    assert t.total(w) == pytest.approx(2 * 0.5 + 0.5 + 0.7)
    assert np.allclose(w.normalized(), [0.5, 0.25, 0.25, 0.0])  # three numbers: r_unc weighs 0
    assert t.as_dict(w)["total"] == pytest.approx(2.2)
    assert RewardWeights.parse(None) == RewardWeights(1, 1, 1)
    assert RewardWeights.parse("2,1,1,0.5").unc == 0.5
    for bad in ("1,2", "a,b,c", "-1,1,1", "0,0,0", "0,0,0,0", "1,1,1,1,1"):
        with pytest.raises(ValueError):
            RewardWeights.parse(bad)


def test_evaluator_matches_direct_terms(small):
    """The evaluator's terms equal the terms computed by hand from the revealed expression."""
    from napari_scr2st.sampling import Pool, RewardEvaluator, SelectionState, SimulatedOracle

    a, space = small
    pool = Pool.from_adata(a)
    state = SelectionState.for_pool(pool)
    idx = np.arange(0, pool.n, 7)
    state.mark_selected(idx, source="test")
    SimulatedOracle(a, pool).reveal(state, idx)
    terms = RewardEvaluator(space, pool).terms(state)
    Z = space.embed(a, rows=idx)
    assert terms.sc == pytest.approx(len(np.unique(space.nearest_cluster(Z))) / space.n_clusters)
    assert terms.type == pytest.approx(celltype_entropy(space.transfer_labels(Z).codes, space.n_types))
    assert terms.sp == pytest.approx(spatial_coverage(a.obsm["spatial"], a.obs["section"].to_numpy(), idx))
    # monotone in the measured set for coverage terms
    more = np.arange(0, pool.n, 3)
    state2 = SelectionState.for_pool(pool)
    state2.mark_selected(more)
    SimulatedOracle(a, pool).reveal(state2, more)
    t2 = RewardEvaluator(space, pool).terms(state2)
    assert t2.sc >= terms.sc and t2.sp >= terms.sp
