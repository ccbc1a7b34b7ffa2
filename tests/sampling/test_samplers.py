"""The selection rules for EVERY sampler, and THE leakage test (METHOD section 8).

Rules: no spot is picked twice; locked (manual) picks count toward the budget; excluded spots
are never picked; a budget larger than the non-excluded pool is a ValueError with the numbers.
Leakage: permuting the hidden expression of spots that were never picked does not change any
pick (the samplers cannot read unrevealed expression); a deliberately leaky sampler shows that
the test would catch leakage.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from napari_scr2st.sampling import (
    Pool,
    Sampler,
    SelectionRequest,
    SelectionState,
    SimulatedOracle,
    make_sampler,
    run_acquisition,
)

ALL = ["random", "grid", "kcenter", "typiclust", "ar", "greedy", "scrl", "uncertainty", "gp", "lcmd"]


def _sampler(name, space, seed=0):
    policy = None
    if name == "scrl":
        from napari_scr2st.sampling.scrl import SCRLPolicy

        policy = SCRLPolicy.for_space(space, seed=0)
    return make_sampler(name, seed=seed, space=space, policy=policy)


def _run(adata, name, space, request, *, seed=0):
    pool = Pool.from_adata(adata)
    res = run_acquisition(pool, _sampler(name, space, seed), request, oracle=SimulatedOracle(adata, pool))
    return pool, res


@pytest.mark.parametrize("name", ALL)
def test_rules_locks_exclusions_no_repicks(name, small):
    a, space = small
    ids = np.asarray(a.obs_names)
    locked = list(ids[[3, 50, 120, 200, 250]])
    excluded = list(ids[10:40])
    req = SelectionRequest(budget=45, rounds=3, seed=1, locked=locked, excluded=excluded)
    pool, res = _run(a, name, space, req)
    st = res.state
    sel = np.flatnonzero(st.selected)
    assert st.n_selected == 45 == st.budget  # locks count toward the budget
    assert set(locked) <= set(st.spot_ids[sel])
    assert set(st.source[pool.lookup(locked)]) == {"manual"}
    assert not st.selected[pool.lookup(excluded)].any()  # excluded never picked
    picks = np.concatenate(res.picks)
    assert len(picks) == 40 and len(np.unique(picks)) == 40  # no re-picks across rounds
    assert not np.isin(picks, pool.lookup(locked)).any()
    assert [len(p) for p in res.picks] == [14, 13, 13]
    assert st.measured[sel].all() and not st.measured[~st.selected].any()
    assert sorted(st.rank[sel]) == list(range(45))


@pytest.mark.parametrize("name", ALL)
def test_budget_larger_than_pool_is_an_error(name, small):
    a, space = small
    n = a.n_obs
    excl = list(np.asarray(a.obs_names)[:20])
    with pytest.raises(ValueError, match=rf"{n - 20 + 1}.*{n - 20}"):
        _run(a, name, space, SelectionRequest(budget=n - 20 + 1, excluded=excl))
    # the sampler itself refuses more spots than are available, with the numbers
    pool = Pool.from_adata(a)
    pool.exclude(excl)
    state = SelectionState.for_pool(pool)
    with pytest.raises(ValueError, match=rf"asked for {n - 19} spots but only {n - 20}"):
        _sampler(name, space).select(pool, n - 19, state)


@pytest.mark.parametrize("name", ALL)
def test_whole_pool_and_per_section_budget(name, small, two_sections):
    a, space = small
    # the whole non-excluded pool can be selected
    excl = list(np.asarray(a.obs_names)[:250])
    pool, res = _run(a, name, space, SelectionRequest(budget=1.0, rounds=2, excluded=excl))
    assert res.state.n_selected == 50 and not res.state.selected[:250].any()
    # per-section: 10 % of each section
    pool, res = _run(two_sections, name, space, SelectionRequest(budget="10%", rounds=2, per_section=True))
    for s in ("L", "R"):
        m = pool.sections == s
        assert res.state.selected[m].sum() == round(0.1 * m.sum())


def test_locks_beyond_budget_and_locked_excluded_are_errors(small):
    a, space = small
    ids = list(np.asarray(a.obs_names)[:12])
    with pytest.raises(ValueError, match="12 spots are already selected/locked, more than the budget of 10"):
        _run(a, "random", space, SelectionRequest(budget=10, locked=ids))
    with pytest.raises(ValueError, match="cannot also be excluded"):
        _run(a, "random", space, SelectionRequest(budget=20, locked=ids[:2], excluded=ids[:1]))
    with pytest.raises(ValueError, match="not in the pool"):
        _run(a, "random", space, SelectionRequest(budget=20, locked=["nope"]))


def test_budget_parsing():
    from napari_scr2st.sampling import resolve_budget

    assert resolve_budget("15%", 200) == 30
    assert resolve_budget(0.15, 200) == 30
    assert resolve_budget(30, 200) == 30
    assert resolve_budget("30", 200) == 30
    assert resolve_budget(1.0, 200) == 200
    for bad in ("x", "-5%", "0%", -1, 0.0):
        with pytest.raises(ValueError):
            resolve_budget(bad, 200)
    with pytest.raises(ValueError, match="201 spots is larger than the pool of 200"):
        resolve_budget(201, 200)
    with pytest.raises(ValueError, match="larger than the pool of 200"):
        resolve_budget("150%", 200)


def test_grid_is_regular(small):
    """Grid picks are spread evenly: nearest-neighbour distances between picks are larger and far
    less variable than for random picks, and no two picks are lattice neighbours."""
    from scipy.spatial import cKDTree

    a, space = small
    xy = a.obsm["spatial"]
    spacing = cKDTree(xy).query(xy, k=2)[0][:, 1].min()

    def nn(name, seed):
        _, res = _run(a, name, space, SelectionRequest(budget=30, seed=seed))
        p = xy[np.flatnonzero(res.state.selected)]
        return cKDTree(p).query(p, k=2)[0][:, 1]

    for seed in (0, 1):
        g, r = nn("grid", seed), nn("random", seed)
        assert g.min() > 1.5 * spacing
        assert g.mean() > r.mean()
        assert g.std() / g.mean() < r.std() / r.mean()


def test_kcenter_farthest_first(small):
    a, space = small
    pool = Pool.from_adata(a)
    state = SelectionState.for_pool(pool)
    X = pool.vision_features(32)
    state.mark_selected([0])
    idx = make_sampler("kcenter").select(pool, 1, state)
    assert idx[0] == np.argmax(((X - X[0]) ** 2).sum(axis=1))


# ------------------------------------------------------------------------------ leakage


def _permute_hidden(adata, revealed: np.ndarray, seed: int = 0):
    """A copy whose counts are permuted across the spots NOT in ``revealed``."""
    b = adata.copy()
    never = np.setdiff1d(np.arange(b.n_obs), revealed)
    perm = np.random.default_rng(seed).permutation(never)
    X = b.X.tocsr()
    rows = np.arange(b.n_obs)
    rows[never] = perm
    b.X = sp.csr_matrix(X[rows])
    assert (b.X[never] != adata.X[never]).nnz > 0  # the hidden data really changed
    assert (b.X[revealed] != adata.X[revealed]).nnz == 0
    return b


@pytest.mark.parametrize("name", ALL)
def test_leakage_permuting_hidden_expression_changes_no_pick(name, small):
    a, space = small
    req = SelectionRequest(budget=60, rounds=3, seed=2)
    _, res = _run(a, name, space, req, seed=2)
    revealed = np.flatnonzero(res.state.measured)
    b = _permute_hidden(a, revealed)
    _, res_b = _run(b, name, space, req, seed=2)
    assert [p.tolist() for p in res.picks] == [p.tolist() for p in res_b.picks]


def test_leakage_unc_term_features_and_selection_ignore_hidden_expression(small):
    """Permuting the counts of never-revealed spots changes neither r_unc, nor the SCRL features
    (the r_unc gain column included), nor the greedy r_unc-only and SCRL selections."""
    from napari_scr2st.sampling.measured import RewardEvaluator
    from napari_scr2st.sampling.scrl import SCRLPolicy, SCRLSampler

    a, space = small
    policy = SCRLPolicy.for_space(space, seed=0)
    assert policy.config.unc_feature and policy.config.round_feature_names()[-1] == "unc_gain"
    req = SelectionRequest(budget=45, rounds=3, seed=1)

    def run(adata):
        pool = Pool.from_adata(adata)
        out = {}
        for name in ("greedy", "scrl"):
            smp = (SCRLSampler(policy, space, weights=(0.2, 0.2, 0.2, 1.0)) if name == "scrl"
                   else make_sampler("greedy", seed=1, space=space, weights=(0, 0, 0, 1)))
            res = run_acquisition(pool, smp, req, oracle=SimulatedOracle(adata, pool))
            st = res.state
            feats = smp.features(pool, st, pool.available_mask(st)) if name == "scrl" else None
            out[name] = (res, feats, RewardEvaluator(space, pool).terms(st).unc)
        return out

    before = run(a)
    revealed = np.union1d(*[np.flatnonzero(r.state.measured) for r, _, _ in before.values()])
    after = run(_permute_hidden(a, revealed))
    for name in before:
        (r0, f0, u0), (r1, f1, u1) = before[name], after[name]
        assert [p.tolist() for p in r0.picks] == [p.tolist() for p in r1.picks], name
        assert u0 == u1 and u0 > 0
        if f0 is not None:
            np.testing.assert_array_equal(f0.x_round, f1.x_round)
            assert np.ptp(f0.x_round[:, -1]) > 0  # the r_unc gain column is informative, not constant


class _LeakySampler(Sampler):
    """A WRONG sampler that reads the hidden counts (negative control for the leakage test)."""

    name = "leaky"

    def __init__(self, adata):
        super().__init__()
        self.adata = adata

    def _select(self, pool, n, state, available, rng):
        # any decision that depends on which spot holds which hidden profile is leakage
        tot = np.asarray(self.adata.X.sum(axis=1)).ravel()
        seed = int((np.arange(len(tot)) * tot).sum()) % (2**32)
        return np.random.default_rng(seed).choice(np.flatnonzero(available), n, replace=False)


def test_leakage_test_catches_a_leaky_sampler(small):
    a, _ = small
    req = SelectionRequest(budget=60, rounds=3, seed=2)

    def run(adata):
        pool = Pool.from_adata(adata)
        return run_acquisition(pool, _LeakySampler(adata), req, oracle=SimulatedOracle(adata, pool))

    res = run(a)
    b = _permute_hidden(a, np.flatnonzero(res.state.measured))
    assert [p.tolist() for p in res.picks] != [p.tolist() for p in run(b).picks]


def test_pool_and_state_hold_no_unrevealed_counts(small):
    a, space = small
    pool = Pool.from_adata(a)
    for v in vars(pool).values():  # no array of the pool is (part of) the counts
        assert not (isinstance(v, np.ndarray) and v.shape[0] == a.n_obs and v.ndim == 2 and v.shape[1] == a.n_vars)
    state = SelectionState.for_pool(pool)
    idx = np.array([1, 5, 9])
    state.mark_selected(idx)
    SimulatedOracle(a, pool).reveal(state, idx)
    view = state.measured_view()
    assert view.index.tolist() == [1, 5, 9] and view.counts.shape == (3, a.n_vars)
    tad = pool.training_adata(state)
    assert (tad.X[idx] != a.X[idx]).nnz == 0
    unrevealed = np.setdiff1d(np.arange(a.n_obs), idx)
    assert tad.X[unrevealed].nnz == 0  # physically absent


def test_per_section_count_is_split_by_section_size(two_sections):
    from napari_scr2st.sampling import plan_rounds

    pool = Pool.from_adata(two_sections)
    sizes = {s: int((pool.sections == s).sum()) for s in ("L", "R")}
    for budget in (30, "30"):
        total, sched = plan_rounds(pool, SelectionRequest(budget=budget, rounds=2, per_section=True),
                                   SelectionState.for_pool(pool))
        assert total == 30 and sum(sum(r.values()) for r in sched) == 30
        got = {s: sum(r[s] for r in sched) for s in ("L", "R")}
        assert abs(got["L"] - 30 * sizes["L"] / pool.n) < 1
    total, sched = plan_rounds(pool, SelectionRequest(budget="0.1", per_section=True), SelectionState.for_pool(pool))
    assert {s: sched[0][s] for s in ("L", "R")} == {s: round(0.1 * n) for s, n in sizes.items()}
