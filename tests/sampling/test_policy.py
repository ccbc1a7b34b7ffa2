"""SCRL policy: Plackett-Luce log-probabilities, learning, save/load, live re-weighting."""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_scr2st.sampling import Pool, SelectionState  # noqa: E402
from napari_scr2st.sampling.scrl import (  # noqa: E402
    PolicyEnv,
    SCRLPolicy,
    SCRLSampler,
    plackett_luce_log_prob,
    rollout,
    train_policy,
)


def _pl_brute(s, seq, avail):
    """Product formula: P(seq) = prod_j exp(s_ij) / sum over the not-yet-picked available items."""
    p, left = 1.0, [i for i in range(len(s)) if avail[i]]
    for i in seq:
        p *= np.exp(s[i]) / sum(np.exp(s[j]) for j in left)
        left.remove(i)
    return p


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_plackett_luce_matches_brute_force(k):
    s = np.array([0.3, -1.2, 2.0, 0.7])
    st = torch.tensor(s, dtype=torch.float64)
    total = 0.0
    for seq in itertools.permutations(range(4), k):
        lp = float(plackett_luce_log_prob(st, list(seq)))
        assert np.exp(lp) == pytest.approx(_pl_brute(s, seq, [True] * 4), rel=1e-10)
        total += np.exp(lp)
    assert total == pytest.approx(1.0)


def test_plackett_luce_with_unavailable_items_and_gumbel_frequencies():
    s = np.array([0.3, -1.2, 2.0, 0.7, 5.0])
    avail = np.array([True, True, True, True, False])  # item 4 is taken: never in the denominators
    st = torch.tensor(s, dtype=torch.float64)
    av = torch.tensor(avail)
    probs = {}
    for seq in itertools.permutations(range(4), 2):
        lp = float(plackett_luce_log_prob(st, list(seq), av))
        probs[seq] = np.exp(lp)
        assert probs[seq] == pytest.approx(_pl_brute(s, seq, avail), rel=1e-10)
    assert sum(probs.values()) == pytest.approx(1.0)
    # Gumbel-top-k draws follow the same law (the sampler used in training)
    rng = np.random.default_rng(0)
    n = 40000
    key = s[None, :4] + rng.gumbel(size=(n, 4))
    top = np.argsort(-key, axis=1)[:, :2]
    emp = {seq: np.mean((top[:, 0] == seq[0]) & (top[:, 1] == seq[1])) for seq in probs}
    for seq, p in probs.items():
        assert emp[seq] == pytest.approx(p, abs=0.01)
    # gradients flow
    st.requires_grad_(True)
    plackett_luce_log_prob(st, [2, 0], av).backward()
    assert torch.isfinite(st.grad).all() and st.grad[4] == 0


@pytest.fixture(scope="module")
def env(small):
    a, space = small
    return PolicyEnv.from_adata(a, space)


def _mean_return(policy, env, weights_list, budget=30, rounds=3):
    out = []
    for w in weights_list:
        gains, *_ = rollout(policy, env, w, budget, rounds, rng=np.random.default_rng(0), train=False)
        out.append(gains.sum())
    return float(np.mean(out))


WEIGHTS = [(1, 1, 1), (0, 0, 1), (1, 0, 0), (0, 1, 0)]


#: with four reward terms 40 episodes left the spatial-only corner barely trained, and with the
#: torch 2.14 / scikit-learn 1.9 stack 60 missed the spatial margin below by 0.001
EPISODES = 80


@pytest.fixture(scope="module")
def trained(env):
    pol = SCRLPolicy.for_space(env.space, seed=0)
    pol.fit_vision([env.pool.vision])
    before = _mean_return(pol, env, WEIGHTS)
    hist = train_policy(pol, [env], episodes=EPISODES, group_size=4, rounds=3, budget_range=(0.1, 0.1), lr=1e-2, seed=0)
    return pol, before, hist


def test_training_raises_mean_reward(trained, env):
    pol, before, hist = trained
    after = _mean_return(pol, env, WEIGHTS)
    assert len(hist) == EPISODES and all(np.isfinite([h["loss"] for h in hist]))
    assert after > before + 0.05, (before, after)


def test_gradients_flow(env):
    pol = SCRLPolicy.for_space(env.space, seed=1)
    before = {k: v.clone() for k, v in pol.net.state_dict().items()}
    train_policy(pol, [env], episodes=1, group_size=3, rounds=2, seed=1)
    after = pol.net.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("trunk") for k in changed) and any(k.startswith("film") for k in changed)


def _round_features(pol, env, n_pre=20):
    """Features after a first round of n_pre revealed random spots (predictions available)."""
    from napari_scr2st.sampling.surrogate import SpacePredictor

    pool, space = env.pool, env.space
    st = SelectionState.for_pool(pool)
    st.budget, st.n_rounds, st.current_round = 60, 3, 1
    idx = np.random.default_rng(0).choice(pool.n, n_pre, replace=False)
    st.mark_selected(idx)
    env.oracle.reveal(st, idx)
    m = env.evaluator.measured(st)
    zp = SpacePredictor(space)(pool, st, m.index, m.z)
    assert zp is not None
    return pol.features(pool, st, space, measured=m, zp=zp), st


def test_save_load_round_trip_identical_selection(trained, env, tmp_path):
    pol = trained[0]
    f, _ = _round_features(pol, env)
    sel = pol.select(f, (1, 2, 0.5), 25)
    p = pol.save(tmp_path / "policy.pt")
    assert (tmp_path / "policy.pt.json").is_file()
    pol2 = SCRLPolicy.load(p)
    f2, _ = _round_features(pol2, env)
    assert np.array_equal(f.x_round, f2.x_round)
    assert np.array_equal(pol2.select(f2, (1, 2, 0.5), 25), sel)
    assert pol2.history == pol.history


def test_weight_change_changes_selection_with_one_head_pass(trained, env, monkeypatch):
    pol = trained[0]
    f, _ = _round_features(pol, env)
    a = pol.select(f, (1, 0, 0), 25)
    calls = []
    orig = pol.net.trunk.forward
    monkeypatch.setattr(pol.net.trunk, "forward", lambda x: calls.append(1) or orig(x))
    b = pol.select(f, (0, 0, 1), 25)
    c = pol.select(f, (0, 1, 0), 25)
    assert calls == []  # the trunk output is cached: only the weight-conditioned head ran
    assert set(a) != set(b) and set(b) != set(c)
    assert len(set(a)) == 25 and f.available[a].all()


def test_trained_policy_follows_the_weights(trained, env):
    """Live tuning after training: the spatial-only and manifold-only selections differ, and the
    spatial term is higher where its weight is 1 (the loop, scored on REVEALED expression)."""
    pol = trained[0]
    budget = int(0.15 * env.pool.n_in_pool)
    out = {}
    for w in [(1, 0, 0), (0, 0, 1), (1, 1, 1), (0, 0, 0, 1)]:
        _, _, _, terms, st = rollout(pol, env, w, budget, 3, rng=np.random.default_rng(0), train=False)
        out[w] = (terms, set(np.flatnonzero(st.selected).tolist()))
    a, b = out[(1, 0, 0)][1], out[(0, 0, 1)][1]
    assert len(a & b) / len(a | b) < 0.5, (len(a & b), len(a | b))
    assert out[(0, 0, 1)][0].sp > out[(1, 0, 0)][0].sp + 0.02, {w: t.as_array() for w, (t, _) in out.items()}
    assert out[(0, 0, 1)][0].sp > 0.8  # no spatial collapse (random ~0.80 at 15 % of these 300 spots)
    # the expected-error weight alone raises r_unc over the manifold-only selection
    assert out[(0, 0, 0, 1)][0].unc > out[(1, 0, 0)][0].unc + 0.02


def test_term_gains_match_the_reward(env):
    """The auxiliary targets are the true marginal gains of the four reward terms."""
    from napari_scr2st.sampling.scrl import TermGains

    st = SelectionState.for_pool(env.pool)
    first = np.random.default_rng(1).choice(env.pool.n, 20, replace=False)
    st.mark_selected(first)
    env.oracle.reveal(st, first)
    before = env.evaluator.terms(st).as_array()
    tg = TermGains(env, st, max_anchors=10_000)
    cand = np.setdiff1d(np.arange(env.pool.n), first)[:5]
    g = tg.gains(cand, np.random.default_rng(0))
    for c, gc in zip(cand, g, strict=True):
        s2 = SelectionState.for_pool(env.pool)
        s2.mark_selected(np.r_[first, c])
        env.oracle.reveal(s2, np.r_[first, c])
        np.testing.assert_allclose(gc, env.evaluator.terms(s2).as_array() - before, atol=1e-9)


def test_deploy_on_a_section_without_expression(trained, small):
    """A new section with NO counts: round 0 uses vision/location only, no error, no counts read."""
    a, space = small
    b = a.copy()
    b.X = b.X * 0
    pool = Pool.from_adata(b)
    st = SelectionState.for_pool(pool)
    st.budget, st.n_rounds = 30, 1
    smp = SCRLSampler(trained[0], space, (1, 1, 1))
    idx = smp.select(pool, 30, st)
    assert len(np.unique(idx)) == 30
    assert smp.last_features.x_round[:, -3].max() == 0  # no prediction in round 0


def test_policy_refuses_another_reference(trained, small):
    from dataclasses import replace

    _, space = small
    other = replace(space, celltypes=list(space.celltypes[:-1]) + ["Other"])
    with pytest.raises(ValueError, match="trained with reference"):
        SCRLSampler(trained[0], other)


def test_imitation_warm_start_learns_the_teacher(env):
    """Behaviour cloning of the greedy maximiser: the NLL of the teacher's picks goes down."""
    pol = SCRLPolicy.for_space(env.space, seed=2)
    # the imitation loss alone (aux_coef=0): the auxiliary term-gain regression moves the scores
    # towards the TRUE gains, which the teacher (greedy on PREDICTED gains) does not follow
    hist = train_policy(pol, [env], episodes=0, imitation_episodes=16, rounds=2, budget_range=(0.1, 0.1),
                        fixed_weights=None, seed=3, aux_coef=0.0)
    nll = [h["loss"] for h in hist]
    assert len(nll) == 16 and all(h["phase"] == "imitation" for h in hist)
    assert np.mean(nll[-4:]) < np.mean(nll[:4])


def test_substeps_rule():
    from napari_scr2st.sampling.scrl import PolicyConfig, n_substeps

    c = PolicyConfig(n_types=9, celltypes=list("abcdefghi"), space_dims=50, n_clusters=100)
    assert n_substeps(c, 180, 7) == 7  # small sections: one pick per sub-step
    assert n_substeps(c, 5000, 750) == 5 and n_substeps(c, 50000, 7500) == 4  # bounded work
