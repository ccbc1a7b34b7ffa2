"""Sampling dock, what a person reads: the policy-vs-greedy check, the budget after an exclusion
ROI, manual vs policy counts, the chart following the proposal, exclusive click modes."""

import re

import numpy as np
import pytest


@pytest.fixture
def dock(make_napari_viewer, small_sample, sync_workers, helpers):
    viewer = make_napari_viewer(show=True)
    w, spots = helpers.prepared_sampling(viewer, small_sample)
    return viewer, w, spots


@pytest.fixture
def notes(monkeypatch):
    from napari_scr2st._napari import _workers as W

    seen = []
    orig = W.notify_info
    monkeypatch.setattr(W, "notify_info", lambda msg: (seen.append(msg), orig(msg)))
    return seen


def _lines(w) -> list[str]:
    return w.status.text().split("\n")


def test_exclusion_roi_says_what_the_budget_buys_now(dock, notes, helpers):
    viewer, w, _ = dock
    s = w.session
    n = s.n
    assert s.preview.total_budget == round(0.3 * n)
    rect, inside = helpers.left_half_roi(s.adata)
    viewer.layers["SYN1 exclude ROI"].add_rectangles(rect)
    w.update_rois()
    k = int(inside.sum())
    b = round(0.3 * (n - k))
    msg = (f"Exclusion ROI: {k} of {n} spots excluded (was 0); the 30% budget is now {b} spots "
           f"(was {round(0.3 * n)}), 30% of the {n - k} selectable spots")
    assert msg in _lines(w)
    assert msg in notes
    assert s.preview.total_budget == b
    assert f"Budget {b} spots (30% of {n - k} selectable spots): {len(s.preview.proposal)} this round, " \
           f"{b - len(s.preview.proposal)} for the later rounds" in _lines(w)
    # a slider move keeps the note; a new budget drops it
    w.set_weights(w_sp=2.0)
    w.reselect()
    assert msg in _lines(w)
    w.budget_spin.setValue(20)
    w.reselect()
    assert not any(line.startswith("Exclusion ROI") for line in _lines(w))


def test_manual_picks_count_against_the_budget_in_the_status(dock):
    viewer, w, _ = dock
    s = w.session
    total = s.preview.total_budget
    free = np.flatnonzero(~s.preview.state.selected)
    for i in free[:3]:
        w.toggle_pick(int(i))
    n_new = len(s.preview.proposal)
    assert n_new == (total - 3 + 1) // 2
    lines = _lines(w)
    assert f"Round 1 of 2: {n_new + 3} spots = 3 manual + {n_new} by the policy" in lines
    assert f"Budget {total} spots (30% of {s.n} selectable spots): {n_new + 3} this round, " \
           f"{total - 3 - n_new} for the later rounds" in lines
    # round 2 counts what round 1 took
    w.sequence_round()
    first = int(s.committed.selected.sum())
    n2 = len(s.preview.proposal)
    assert f"Round 2 of 2: {n2} spots = 0 manual + {n2} by the policy" in _lines(w)
    assert f"Budget {total} spots (30% of {s.n} selectable spots): {first} in earlier rounds, {n2} this round" \
        in _lines(w) and first + n2 == total
    # another sampler is named as such
    w.use_greedy()
    assert f"Round 2 of 2: {n2} spots = 0 manual + {n2} by greedy" in _lines(w)


def test_untrained_policy_warning_then_pretraining(dock, monkeypatch):
    viewer, w, _ = dock
    s = w.session
    c = s.cached_policy_check()
    assert c is not None and c.verdict == "untrained" and w.policy_label.text() == c.message
    assert w.policy_label.text().startswith("Policy untrained: its reward is ")
    assert "#ffa500" in w.policy_label.styleSheet()
    # cancel after the first episode: the policy stays as it was
    old = s.policy
    real = w._pretrain_progress

    def progress_then_cancel(ev):
        real(ev)
        assert re.fullmatch(r"Pre-training the policy: 1 of 3 episodes \(reinforcement\), about \d+ s left", w.policy_label.text())
        w.cancel_pretrain_btn.click()

    monkeypatch.setattr(w, "_pretrain_progress", progress_then_cancel)
    assert w.pretrain_btn.isEnabled()
    w.pretrain(3)
    assert s.policy is old and old.history == []
    assert w.policy_label.text().startswith("Pre-training cancelled after 1 of 3 episodes: the policy is as it was.\n"
                                            "Policy untrained")
    monkeypatch.setattr(w, "_pretrain_progress", real)
    # pre-training (tiny): the check is no longer "untrained"
    w.pretrain(2)
    assert s.policy is not old and len(s.policy.history) == 2
    assert s.policy_source == "pre-trained here (2 episodes)" and "Policy: pre-trained here (2 episodes)" in _lines(w)
    c = s.cached_policy_check()
    assert c.trained and c.verdict in ("weak", "ok")
    assert w.policy_label.text() == f"Pre-trained: 2 episodes.\n{c.message}"
    assert re.match(r"Policy (weak: its reward is \d+% below|OK: its reward is (within \d+% of|\d+% above)) greedy's"
                    r"|Policy weak: its proposal adds nothing to the expected reward", c.message)
    assert ("#ffa500" in w.policy_label.styleSheet()) == (c.verdict == "weak")
    # the weights move: the check follows them
    w.set_weights(w_sp=5.0)
    w.reselect()
    c2 = s.cached_policy_check()
    assert c2 is not c and c2.weights[2] == 5.0 and w.policy_label.text() == c2.message
    # the other way out: greedy
    w.use_greedy_btn.click()
    assert s.sampling.sampler == "greedy" and w.sampler_combo.currentData() == "greedy"
    assert w.policy_label.text() == "The policy is checked against greedy while it is the sampler."
    assert not w.use_greedy_btn.isEnabled()


def test_chart_shows_the_expected_terms_of_the_proposal(dock, qtbot):
    viewer, w, _ = dock
    s = w.session
    before = w.chart_values()
    assert before["expected"] == pytest.approx(s.preview.terms_expected)
    assert before["sequenced"] == pytest.approx(s.preview.terms_measured)
    old_proposal = set(s.preview.proposal.tolist())
    w.set_weights(w_sc=0.0, w_type=0.0, w_sp=5.0)  # the spatial slider to its maximum
    qtbot.waitUntil(lambda: s.sampling.w_sp == 5.0 and s.sampling.w_sc == 0.0, timeout=3000)
    assert set(s.preview.proposal.tolist()) != old_proposal
    after = w.chart_values()["expected"]
    assert after == pytest.approx(s.preview.terms_expected)
    assert after[2] != pytest.approx(before["expected"][2])
    labels = [t.get_text() for t in w._bars[2]]
    assert labels == [f"{v:.2f}" for v in s.preview.terms_expected]
    # the policy check compared at these weights
    assert s.cached_policy_check().weights == (0.0, 0.0, 5.0, 0.0)  # (w_sc, w_type, w_sp, w_unc)


def test_pick_and_inspect_modes_are_exclusive(dock):
    viewer, w, _ = dock
    from napari_scr2st._napari._inspector_widget import InspectorWidget

    ins = InspectorWidget(viewer)
    viewer.window.add_dock_widget(ins, name="Inspector")
    w.pick_check.setChecked(True)
    ins.click_check.setChecked(True)
    assert not w.pick_check.isChecked() and ins.click_check.isChecked()
    assert viewer.status == "'inspect on click' is on, so 'pick manually' is off: a click does one thing."
    w.pick_check.setChecked(True)
    assert not ins.click_check.isChecked()
    assert viewer.status == "'pick manually' is on, so 'inspect on click' is off: a click does one thing."
    # turning one off leaves the other off
    w.pick_check.setChecked(False)
    assert not ins.click_check.isChecked()
