"""The model-based batch designs (``uncertainty``, ``gp``, ``lcmd``): the sampler rules, what each
criterion does on small synthetic pools, and a speed print on 5,000 spots."""

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from napari_scr2st.sampling import Pool, SelectionState, SimulatedOracle, make_sampler
from napari_scr2st.sampling.design import (
    GPVarianceSampler,
    LCMDSampler,
    UncertaintySampler,
    joint_features,
    vision_space_kernel,
)

NAMES = ["uncertainty", "gp", "lcmd"]


def _measured_state(adata, pool, idx):
    state = SelectionState.for_pool(pool)
    idx = np.asarray(idx)
    state.mark_selected(idx)
    SimulatedOracle(adata, pool).reveal(state, idx)
    return state


def _coverage(xy, picks):
    """Mean distance from every spot to its nearest pick (lower: picks spread over the tissue)."""
    return float(cKDTree(xy[picks]).query(xy)[0].mean())


@pytest.mark.parametrize("n_measured", [0, 20])
@pytest.mark.parametrize("name", NAMES)
def test_rules_candidates_exclusions_and_seed(name, n_measured, small):
    a, _ = small
    pool = Pool.from_adata(a)
    pool.exclude(np.arange(100, 130))
    state = _measured_state(a, pool, np.arange(0, 3 * n_measured, 3))
    picks = make_sampler(name, seed=3).select(pool, 25, state)
    assert len(picks) == 25 and len(np.unique(picks)) == 25
    assert not state.selected[picks].any() and not pool.excluded[picks].any()
    # deterministic for a seed (a fresh sampler, the same state)
    assert make_sampler(name, seed=3).select(pool, 25, state).tolist() == picks.tolist()
    # candidates as indices and as a mask
    cand = np.arange(150, 300, 2)
    for c in (cand, np.isin(np.arange(pool.n), cand)):
        got = make_sampler(name, seed=3).select(pool, 10, state, candidates=c)
        assert len(np.unique(got)) == 10 and np.isin(got, cand).all()
    with pytest.raises(ValueError, match="asked for 76 spots but only 75"):
        make_sampler(name).select(pool, 76, state, candidates=cand)


@pytest.mark.parametrize("name", NAMES)
def test_needs_the_vision_embedding(name, small):
    a, _ = small
    pool = Pool.from_adata(a, vision_key=None)
    with pytest.raises(ValueError, match="vision embedding"):
        make_sampler(name).select(pool, 5, SelectionState.for_pool(pool))


def test_registered_in_registry_and_config():
    from napari_scr2st.config import SAMPLER_LABELS, SAMPLERS
    from napari_scr2st.sampling import SAMPLER_NAMES

    assert SAMPLERS[-3:] == ("uncertainty", "gp", "lcmd") and SAMPLERS[0] == "greedy"
    assert set(NAMES) <= set(SAMPLER_NAMES) and set(NAMES) <= set(SAMPLER_LABELS)
    for name, cls in zip(NAMES, (UncertaintySampler, GPVarianceSampler, LCMDSampler), strict=True):
        smp = make_sampler(name, seed=4)
        assert isinstance(smp, cls) and smp.seed == 4 and smp.name == name
    with pytest.raises(ValueError, match="noise variance must be > 0"):
        GPVarianceSampler(noise=0)


def test_design_module_never_reaches_scrl():
    path = Path(__file__).resolve().parents[1] / "test_architecture.py"
    spec = importlib.util.spec_from_file_location("_architecture", path)
    arch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(arch)
    graph = arch.import_graph(arch.SRC)
    assert "napari_scr2st.sampling.baselines" in graph["napari_scr2st.sampling.design"]
    seen, todo = set(), ["napari_scr2st.sampling.design"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    assert not [m for m in seen if m.startswith("napari_scr2st.sampling.scrl")]


@pytest.mark.parametrize("n_measured", [0, 20])
def test_gp_and_lcmd_spread_picks_over_the_tissue(n_measured, small):
    a, _ = small
    pool = Pool.from_adata(a)
    xy = pool.coords
    measured = np.random.default_rng(0).choice(pool.n, n_measured, replace=False)
    state = _measured_state(a, pool, measured)

    def cov(name, seed):
        return _coverage(xy, np.concatenate([measured, make_sampler(name, seed=seed).select(pool, 30, state)]))

    random = np.mean([cov("random", s) for s in range(8)])
    for name in ("gp", "lcmd"):
        for seed in (0, 1):
            assert cov(name, seed) < random, name


def test_uncertainty_falls_back_to_kcenter_then_follows_the_model(small):
    a, _ = small
    pool = Pool.from_adata(a)
    # fewer than 5 measured spots: exactly the k-center picks, and no scores
    state = _measured_state(a, pool, [5, 80, 160, 240])
    rng = np.random.default_rng(7)
    smp = make_sampler("uncertainty")
    got = smp.select(pool, 12, state, rng=np.random.default_rng(7))
    assert got.tolist() == make_sampler("kcenter").select(pool, 12, state, rng=rng).tolist()
    assert smp.last_scores is None
    # measured spots on the left of the tissue: the picks are where the model extrapolates, far
    # from the measured spots in its feature space (vision PCA + coordinates)
    from napari_scr2st.sampling.surrogate import design_matrix

    X = design_matrix(pool.vision, pool.coords, pool.sections)
    x = pool.coords[:, 0]
    left = np.flatnonzero(x < np.quantile(x, 0.4))
    ratios = []
    for seed in range(4):
        measured = np.random.default_rng(seed + 1).choice(left, 25, replace=False)
        state = _measured_state(a, pool, measured)
        smp = UncertaintySampler(seed=seed, batch_aware=False)
        picks = smp.select(pool, 20, state)
        assert smp.last_scores is not None and len(smp.last_scores) == 20
        assert (np.diff(smp.last_scores) <= 1e-12).all()  # greedy on a score that only decreases
        rand = make_sampler("random", seed=seed).select(pool, 20, state)
        assert len(np.intersect1d(picks, rand)) <= 5
        tree = cKDTree(X[measured])
        ratios.append(tree.query(X[picks])[0].mean() / tree.query(X[rand])[0].mean())
    assert min(ratios) > 1.0 and np.mean(ratios) > 1.3, ratios


def test_uncertainty_batch_is_spread_by_the_discount(small):
    a, _ = small
    pool = Pool.from_adata(a)
    state = _measured_state(a, pool, np.random.default_rng(0).choice(pool.n, 20, replace=False))

    def nn(picks):
        p = pool.coords[picks]
        return cKDTree(p).query(p, k=2)[0][:, 1].mean()

    aware = UncertaintySampler(seed=1).select(pool, 30, state)
    plain = UncertaintySampler(seed=1, batch_aware=False).select(pool, 30, state)
    assert nn(aware) > 1.3 * nn(plain)
    assert aware[0] == plain[0]  # the first pick is the most uncertain spot either way


def test_gp_scores_are_the_exact_posterior_variance(small):
    a, _ = small
    pool = Pool.from_adata(a)
    pool.exclude([7, 8, 9])
    state = _measured_state(a, pool, [0, 50, 100, 150, 200, 250])
    smp = GPVarianceSampler(seed=0, noise=0.05)
    picks = smp.select(pool, 8, state)
    kern = vision_space_kernel(pool)
    avail = np.flatnonzero(pool.available_mask(state))
    cond = list(np.flatnonzero(state.selected))
    for t, p in enumerate(picks):
        S = np.array(cond)
        A = kern(S, S) + 0.05 * np.eye(len(S))
        kc = kern(S, avail)
        var = 1.0 - np.einsum("ij,ij->j", kc, np.linalg.solve(A, kc))
        var[np.isin(avail, picks[:t])] = -np.inf
        assert smp.last_scores[t] == pytest.approx(var.max(), abs=1e-8)
        assert p == avail[np.argmax(var)]
        cond.append(p)


def test_vision_space_kernel_is_zero_across_sections(two_sections):
    from scipy.spatial.distance import pdist

    pool = Pool.from_adata(two_sections)
    kern = vision_space_kernel(pool)
    assert kern is vision_space_kernel(pool)  # cached on the pool
    L, R = np.flatnonzero(pool.sections == "L"), np.flatnonzero(pool.sections == "R")
    assert np.allclose(np.diag(kern(L, L)), 1.0) and not kern(L, R).any()
    assert kern(L[:5], L[:5]).min() > 0
    assert kern.vision_lengthscale == pytest.approx(np.median(pdist(pool.vision_features(32).astype(np.float64))))
    xy = pool.coords[L]
    assert kern.pitch["L"] == pytest.approx(np.median(cKDTree(xy).query(xy, k=2)[0][:, 1]))
    # each section gets picks from an empty start
    for name in ("gp", "lcmd"):
        picks = make_sampler(name, seed=0).select(pool, 12, SelectionState.for_pool(pool))
        assert min((pool.sections[picks] == s).sum() for s in ("L", "R")) >= 4, name


def test_lcmd_picks_the_farthest_spot_of_the_largest_cluster(small):
    a, _ = small
    pool = Pool.from_adata(a)
    state = _measured_state(a, pool, [3, 90, 180, 270])
    smp = LCMDSampler()
    picks = smp.select(pool, 4, state)
    F = joint_features(pool)
    centres = list(np.flatnonzero(state.selected))
    for t, p in enumerate(picks):
        avail = np.setdiff1d(np.flatnonzero(pool.available_mask(state)), picks[:t])
        D = ((F[avail][:, None, :] - F[centres][None, :, :]) ** 2).sum(axis=2)
        near, d = D.argmin(axis=1), D.min(axis=1)
        ssd = np.bincount(near, weights=d, minlength=len(centres))
        inc = near == np.argmax(ssd)
        assert p == avail[inc][np.argmax(d[inc])]
        assert smp.last_scores[t] == pytest.approx(np.sqrt(d[inc].max()))
        centres.append(p)


def test_large_pools_subsample_candidates(small):
    a, _ = small
    pool = Pool.from_adata(a)
    state = _measured_state(a, pool, np.arange(0, 60, 3))
    for smp in (GPVarianceSampler(max_candidates=40, max_conditioning=8), LCMDSampler(max_points=40),
                UncertaintySampler(max_candidates=40)):
        picks = smp.select(pool, 30, state)
        assert len(np.unique(picks)) == 30 and not state.selected[picks].any()
        assert smp.select(pool, 50, state).shape == (50,)  # more picks than the subset limit


def test_speed_on_5000_spots():
    """Benchmark print (``-s`` shows it); not asserted against a time limit."""
    rng = np.random.default_rng(0)
    r, c = np.divmod(np.arange(5000), 71)
    xy = np.column_stack([c * 100.0, r * 100.0])
    vis = np.column_stack([np.sin(xy / 700.0), np.cos(xy / 500.0)]) @ rng.normal(size=(4, 64))
    vis += 0.3 * rng.normal(size=vis.shape)
    pool = Pool(spot_ids=np.arange(5000).astype(str), sections=np.full(5000, "s"), coords=xy, vision=vis)
    state = SelectionState.for_pool(pool)
    measured = rng.choice(5000, 500, replace=False)
    state.mark_selected(measured)
    state.add_counts(measured, rng.poisson(2.0, size=(500, 200)), [f"g{i}" for i in range(200)])
    pool.vision_features(32)  # the shared PCA, outside the timings
    for name in NAMES:
        t = time.perf_counter()
        picks = make_sampler(name, seed=0).select(pool, 250, state)
        print(f"{name}: 250 picks from 4,500 candidates (500 measured) in {time.perf_counter() - t:.2f} s")
        assert len(np.unique(picks)) == 250 and not state.selected[picks].any()
