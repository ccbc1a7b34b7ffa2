"""Honest weights and explicit budgets in the session (Qt-free): the policy-vs-greedy check, the
budget note when exclusions change the pool, pre-training a copy."""

import re

import numpy as np
import pytest


def _session(sample, space, **settings):
    from napari_scr2st.config import SamplingSettings
    from napari_scr2st.progress import drive
    from napari_scr2st.session import AcquisitionSession

    s = AcquisitionSession(sample.section.copy(), reference=sample.reference, space=space,
                           settings=SamplingSettings(**settings))
    drive(s.iter_prepare(encoder="patch-stats"), use_tqdm=False)
    s.finish_prepare()
    return s


@pytest.fixture
def session(sample, space):
    return _session(sample, space, sampler="scrl", budget="30%", rounds=2)


def _greedy_gain(s):
    """Greedy's expected reward gain this round, computed independently of check_policy."""
    from napari_scr2st.sampling.registry import make_sampler

    greedy = s.acq.propose(make_sampler("greedy", seed=s.sampling.seed, space=s.space, weights=s.weights,
                                        embedder=s.embedder))
    w = s.weights.as_array()
    base = s.expected_terms(s.acq.base_state())
    return float(w @ np.asarray(s.expected_terms(greedy.state)) - w @ np.asarray(base)), greedy


def test_untrained_policy_is_compared_with_greedy_on_the_expected_terms(session):
    s = session
    s.update_settings(w_sc=0.5, w_type=0.5, w_sp=5.0)
    s.reselect()
    assert s.cached_policy_check() is None
    c = s.check_policy()
    assert c.verdict == "untrained" and not c.trained
    # the policy's side is the shown proposal: the chart's expected terms
    assert c.policy_terms == pytest.approx(s.preview.terms_expected)
    w = s.weights.as_array()
    assert c.policy_gain == pytest.approx(float(w @ np.asarray(s.preview.terms_expected)))  # nothing selected before
    gain, greedy = _greedy_gain(s)
    assert c.greedy_gain == pytest.approx(gain) and c.n_new == len(greedy.picks) == len(s.preview.proposal)
    assert c.ratio == pytest.approx(c.policy_gain / c.greedy_gain)
    assert c.message.startswith("Policy untrained: its reward is ")
    assert c.message.endswith("greedy's at these weights. Pre-train it, load a trained one, or use greedy.")
    # cached per state and weights; a weight change asks again
    assert s.check_policy() is c and s.cached_policy_check() is c
    s.update_settings(w_sp=1.0)
    s.reselect()
    assert s.cached_policy_check() is None
    c2 = s.check_policy()
    assert c2 is not c and c2.weights == (0.5, 0.5, 1.0, 0.0)  # (w_sc, w_type, w_sp, w_unc)
    # with manual picks the gain is what the round adds to them
    i = int(np.flatnonzero(~s.preview.state.selected)[0])
    s.toggle_manual(i)
    c3 = s.check_policy()
    assert c3.greedy_gain == pytest.approx(_greedy_gain(s)[0])


def test_verdicts_and_messages():
    from napari_scr2st.session import POLICY_WEAK_SHORTFALL, PolicyCheck

    def check(policy_gain, greedy_gain=1.0, trained=True, n_new=10, predicted=True):
        return PolicyCheck(trained, (1.0, 1.0, 1.0), (0, 0, 0), (0, 0, 0), policy_gain, greedy_gain, n_new, predicted)

    weak = check(0.66)
    assert weak.verdict == "weak" and weak.shortfall == pytest.approx(0.34)
    assert weak.message == "Policy weak: its reward is 34% below greedy's at these weights. Pre-train it longer or use greedy."
    ok = check(1.0 - POLICY_WEAK_SHORTFALL / 2)
    assert ok.verdict == "ok" and ok.message == "Policy OK: its reward is within 5% of greedy's at these weights."
    assert check(1.2).message == "Policy OK: its reward is 20% above greedy's at these weights."
    assert check(0.5, trained=False).message.startswith("Policy untrained: its reward is 50% below greedy's")
    lower = check(-0.2)  # the expected reward can fall (the cell-type entropy is not monotone)
    assert lower.verdict == "weak" and lower.message == (
        "Policy weak: its proposal adds nothing to the expected reward at these weights, greedy's does. "
        "Pre-train it longer or use greedy.")
    none = check(0.0, greedy_gain=0.0, predicted=False)
    assert none.verdict == "none" and none.ratio is None
    assert "until 5 spots are sequenced only spatial coverage" in none.message
    assert check(0.0, n_new=0).message == "Policy check: no new picks this round to compare with greedy."


def test_pretraining_a_copy_then_the_check_is_no_longer_untrained(session):
    from napari_scr2st.progress import Cancelled, CancelToken, drive

    s = session
    old = s.policy
    before = [p.detach().clone() for p in old.net.parameters()]
    # a cancelled copy leaves the policy as it was
    token = CancelToken()
    gen = s.iter_pretrain(3, token=token, copy=True)
    next(gen)
    token.cancel()
    with pytest.raises(Cancelled):
        drive(gen, use_tqdm=False)
    assert s.policy is old and old.history == []
    trained = drive(s.iter_pretrain(2, copy=True), use_tqdm=False)
    assert trained is not old and len(trained.history) == 2 and s.policy is old and old.history == []
    assert all(np.array_equal(a.numpy(), b.detach().numpy()) for a, b in zip(before, old.net.parameters(), strict=True))
    assert any(not np.array_equal(a.numpy(), b.detach().numpy())
               for a, b in zip(before, trained.net.parameters(), strict=True))
    assert s.check_policy().verdict == "untrained"
    s.set_policy(trained, "pre-trained here (2 episodes)")
    c = s.check_policy()
    assert c.trained and c.verdict in ("weak", "ok")
    if c.policy_gain <= 0:
        assert c.message.startswith("Policy weak: its proposal adds nothing to the expected reward")
        return
    m = re.fullmatch(r"Policy (weak|OK): its reward is (within )?(\d+)% (below|of|above) greedy's at these weights\..*", c.message)
    assert m, c.message
    pct = abs(100 * c.shortfall)
    assert m.group(3) == f"{max(pct, 1) if m.group(2) else pct:.0f}"
    assert (m.group(1) == "weak") == (c.shortfall > 0.10)


def test_exclusions_say_what_the_budget_buys_now(session):
    s = session
    n = s.n
    assert s.budget_spots() == round(0.3 * n) and s.pool_note == ""
    excl = np.zeros(n, bool)
    excl[:75] = True
    notes = s.set_rois(None, excl)
    b = round(0.3 * (n - 75))
    expected = (f"Exclusion ROI: 75 of {n} spots excluded (was 0); the 30% budget is now {b} spots "
                f"(was {round(0.3 * n)}), 30% of the {n - 75} selectable spots")
    assert notes == [expected] and s.pool_note == expected
    assert s.budget_spots() == b == s.preview.total_budget
    # an include ROI next to it
    inc = np.zeros(n, bool)
    inc[:200] = True
    notes = s.set_rois(inc, excl)
    assert notes[0].startswith(f"Include ROI: {n - 125} of {n} spots excluded (was 75); the 30% budget is now "
                               f"{round(0.3 * 125)} spots (was {b})")
    # a new budget forgets the note (its "was" was about the old budget)
    s.update_settings(budget="20%")
    assert s.pool_note == ""
    # a count budget stays what it was
    s.update_settings(budget="30")
    notes = s.set_rois(None, None)
    assert notes == [f"ROIs: 0 of {n} spots excluded (was {n - 125}); the 30-spot budget stays 30 spots"]
