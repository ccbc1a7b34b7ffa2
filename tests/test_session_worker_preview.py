"""The session's re-selection split for workers: compute_preview (any thread) / show_preview
(main thread, drops stale results) and the reselect_runner hook a GUI installs."""

import threading

import numpy as np
import pytest


@pytest.fixture
def session(sample, space):
    from napari_scr2st.config import SamplingSettings
    from napari_scr2st.progress import drive
    from napari_scr2st.session import AcquisitionSession

    s = AcquisitionSession(sample.section.copy(), reference=sample.reference, space=space,
                           settings=SamplingSettings(sampler="greedy", budget="20%", rounds=2))
    drive(s.iter_prepare(encoder="patch-stats"), use_tqdm=False)
    s.finish_prepare()
    return s


def test_compute_preview_changes_nothing_and_show_preview_shows_it(session):
    s = session
    shown = s.preview
    events = []
    s.selection_changed.connect(lambda: events.append(1))
    s.update_settings(w_sp=4.0, w_sc=0.1)
    token, prev = s.compute_preview()
    assert s.preview is shown and not events  # computing shows nothing
    assert s.is_current(token)
    assert s.show_preview(prev, token) is True
    assert s.preview is prev and events == [1]


def test_a_stale_preview_is_dropped(session):
    """A proposal computed before a settings change, a manual pick or a policy change is not
    shown: the newest request wins."""
    s = session
    token, prev = s.compute_preview()
    s.update_settings(w_sp=0.5)  # the slider moved on while it was computed
    assert not s.is_current(token)
    before = s.preview
    assert s.show_preview(prev, token) is False and s.preview is before
    token, prev = s.compute_preview()
    i = int(np.flatnonzero(~prev.state.selected)[0])
    s.acq.lock([i])  # a manual pick meanwhile
    assert s.show_preview(prev, token) is False
    # the same settings again are current again only with a fresh token (the counter moved on)
    token2, prev2 = s.compute_preview()
    assert s.show_preview(prev2, token2) is True and prev2.state.source[i] == "manual"


def test_compute_preview_runs_in_a_thread(session):
    s = session
    s.update_settings(w_type=3.0)
    out = {}
    t = threading.Thread(target=lambda: out.update(res=s.compute_preview()))
    t.start()
    t.join(120)
    token, prev = out["res"]
    assert s.show_preview(prev, token)
    assert len(prev.proposal) == prev.n_new > 0 and len(prev.terms_expected) == 4


def test_a_runner_takes_over_reselect(session):
    s = session
    calls = []
    s.reselect_runner = lambda: calls.append(s.selection_token())
    shown = s.preview
    s.update_settings(w_sp=2.5)
    assert s.reselect() is shown and len(calls) == 1  # the runner computes; nothing shown yet
    i = int(np.flatnonzero(~shown.state.selected)[0])
    s.toggle_manual(i)
    assert len(calls) == 2 and s.preview is shown
    s.reselect_runner = None
    assert s.reselect() is not shown and s.preview.state.source[i] == "manual"


def test_a_proposal_changed_while_computed_is_not_cached(session, monkeypatch):
    """A settings change DURING a computation (main thread vs worker) must not leave its
    result in the proposal cache under the old key."""
    s = session
    acq = s.acq
    real = acq.propose

    def propose_and_move(sampler):
        prop = real(sampler)
        s.update_settings(w_sp=s.sampling.w_sp + 1.0)  # the main thread meanwhile
        return prop

    monkeypatch.setattr(acq, "propose", propose_and_move)
    s.update_settings(w_sc=2.0)
    key = s.selection_key()
    s.propose()
    monkeypatch.setattr(acq, "propose", real)
    assert s._cache.get("proposal", key) is None
