"""Re-selection in a worker (the sampling dock's live path): the newest request wins, stale
results are dropped, the selection layer is the same object updated in place."""

import threading

import numpy as np
import pytest


@pytest.fixture
def dock(make_napari_viewer, small_sample, sync_workers, helpers):
    viewer = make_napari_viewer(show=True)
    w, spots = helpers.prepared_sampling(viewer, small_sample, sampler="greedy")
    return viewer, w, spots


def _threaded(monkeypatch):
    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "0")


def _drawn_yx(layer):
    return np.asarray(layer.data)[:, -2:]


def test_the_selection_layer_is_reused(dock):
    from napari_scr2st.layers import spot_yx

    viewer, w, _ = dock
    s = w.session
    sel = viewer.layers["SYN1 selected"]
    w.set_weights(w_sc=1.0, w_type=1.0, w_sp=0.0, w_unc=0.0)
    w.reselect()
    assert viewer.layers["SYN1 selected"] is sel
    before = set(s.preview.proposal.tolist())
    w.set_weights(w_unc=5.0)  # before any spot is sequenced greedy follows w_sp / w_unc only
    w.reselect()
    assert set(s.preview.proposal.tolist()) != before
    assert viewer.layers["SYN1 selected"] is sel
    assert sum(ly.name == "SYN1 selected" for ly in viewer.layers) == 1
    idx = np.flatnonzero(s.preview.state.selected)
    np.testing.assert_allclose(np.sort(_drawn_yx(sel), axis=0), np.sort(spot_yx(s.adata)[idx], axis=0))


def test_reselection_runs_in_a_worker_and_drops_stale_results(dock, qtbot, monkeypatch):
    from napari_scr2st._napari._reselect import Reselector
    from napari_scr2st.layers import spot_yx

    viewer, w, spots = dock
    s = w.session
    r = Reselector.of(s)
    assert r is not None and s.reselect_runner is r
    sel = viewer.layers["SYN1 selected"]
    threads = []
    real = s.acq.propose

    def propose(sampler):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(sampler)

    monkeypatch.setattr(s.acq, "propose", propose)
    _threaded(monkeypatch)
    shown = s.preview
    stats = dict(r.stats)
    s.update_settings(w_sp=0.0, w_unc=5.0)
    s.reselect()
    assert r.busy and s.preview is shown  # nothing computed on the UI thread, nothing shown yet
    # a second move before the first result is back: the first result is stale
    s.update_settings(w_sp=5.0, w_unc=0.0, w_sc=5.0)
    s.reselect()
    assert r.pending
    qtbot.waitUntil(lambda: not r.busy and not r.pending, timeout=60000)
    assert r.stats["dropped"] - stats["dropped"] >= 1 and r.stats["shown"] - stats["shown"] == 1
    assert threads and not any(threads)  # every proposal was computed off the main thread
    # what is shown is the newest request's proposal, on the same layer object
    assert s.preview is not shown and s.sampling.w_sc == 5.0
    assert s._cache.get("proposal", s.selection_key()) is s.preview.result
    assert viewer.layers["SYN1 selected"] is sel
    idx = np.flatnonzero(s.preview.state.selected)
    np.testing.assert_allclose(np.sort(_drawn_yx(sel), axis=0), np.sort(spot_yx(s.adata)[idx], axis=0))
    # the hover table was built in the worker and follows the new selection
    state = spots.features["state"].to_numpy()
    st = s.preview.state
    assert set(np.flatnonzero(state == "selected")) == set(np.flatnonzero(st.selected & ~st.measured))
    # the reward terms followed in a second step: the chart shows the shown proposal's terms
    assert s.preview.terms_ready
    np.testing.assert_allclose(s.preview.terms_expected, s.expected_terms(st))
    assert w.chart_values()["expected"] == pytest.approx(s.preview.terms_expected)


def test_a_failed_reselection_in_a_worker_says_so(dock, qtbot, monkeypatch):
    from napari_scr2st._napari._reselect import Reselector

    viewer, w, _ = dock
    s = w.session
    r = Reselector.of(s)
    failed = r.stats["failed"]
    _threaded(monkeypatch)
    w.budget_unit.setCurrentText("spots")
    w.budget_spin.setValue(10 * s.n)
    w.reselect()
    qtbot.waitUntil(lambda: not r.busy and not r.pending, timeout=60000)
    assert "Selection failed" in w.status.text() and r.stats["failed"] > failed


def test_a_manual_pick_reselects_in_the_worker(dock, qtbot, monkeypatch):
    from napari_scr2st._napari._reselect import Reselector

    viewer, w, _ = dock
    s = w.session
    r = Reselector.of(s)
    _threaded(monkeypatch)
    i = int(np.flatnonzero(~s.preview.state.selected)[0])
    assert "manual pick" in w.toggle_pick(i)
    qtbot.waitUntil(lambda: not r.busy and not r.pending, timeout=60000)
    assert s.preview.state.source[i] == "manual"
    sel = viewer.layers["SYN1 selected"]
    row = sel.features.index[sel.features["spot_id"] == s.adata.obs_names[i]][0]
    assert sel.symbol[row].value == "star"


def test_the_chart_is_blitted_with_the_new_terms(dock, qtbot):
    """After the first full draw the reward chart's bars are redrawn over a cached background:
    the pixels of the expected bars change with the proposal, the axes' pixels do not."""
    viewer, w, _ = dock
    s = w.session
    canvas = w.chart
    canvas.draw()  # a full draw: the background is cached and the bars painted on it
    assert w._chart_bg is not None
    shot0 = np.asarray(canvas.buffer_rgba()).copy()
    full_draws = []
    cid = canvas.mpl_connect("draw_event", lambda _e: full_draws.append(1))
    w.set_weights(w_sc=1.0, w_type=1.0, w_sp=0.0, w_unc=0.0)
    w.reselect()
    e0 = s.preview.terms_expected
    w.set_weights(w_unc=5.0)
    w.reselect()
    assert s.preview.terms_expected != e0
    shot1 = np.asarray(canvas.buffer_rgba()).copy()
    canvas.mpl_disconnect(cid)
    assert w.chart_values()["expected"] == pytest.approx(s.preview.terms_expected)
    assert not full_draws  # no full figure draw (layout, ticks, labels) per re-selection
    changed = np.any(shot0 != shot1, axis=-1)
    assert changed.any()
    # left of the axes: the y axis's labels, untouched by the bars
    x0 = int(w.chart.ax.get_window_extent().x0)
    assert x0 > 5 and not changed[:, : x0 - 2].any()


def test_the_sequence_click_runs_in_a_worker(dock, qtbot, monkeypatch):
    """Sequencing a round (simulated) stages the proposal and the revealed counts in a worker:
    the click returns with nothing changed; the round is taken on the main thread when the
    worker is done, and the canvas then shows the sequenced spots."""
    viewer, w, _ = dock
    s = w.session
    threads = []
    real = s.stage_sequence_simulated

    def stage():
        threads.append(threading.current_thread() is threading.main_thread())
        return real()

    monkeypatch.setattr(s, "stage_sequence_simulated", stage)
    _threaded(monkeypatch)
    picks = np.flatnonzero(s.preview.state.selected)
    w.sequence_round()
    assert w._busy() and not w.sequence_btn.isEnabled()
    assert s.current_round == 0 and not s.committed.measured.any()  # nothing changed at the click
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert threads == [False]
    assert s.current_round == 1 and set(np.flatnonzero(s.committed.measured)) == set(picks)
    assert w.sequence_btn.isEnabled()
    from napari_scr2st._napari._reselect import Reselector

    r = Reselector.of(s)
    qtbot.waitUntil(lambda: not r.busy and not r.pending, timeout=60000)
    sel = viewer.layers["SYN1 selected"]
    state = sel.features["state"].to_numpy()
    assert (state == "sequenced").sum() == len(picks)


def test_a_pick_while_sequencing_refuses_the_stale_round(dock, qtbot, monkeypatch):
    viewer, w, _ = dock
    s = w.session
    _threaded(monkeypatch)
    staged, gate = threading.Event(), threading.Event()
    real = s.stage_sequence_simulated

    def slow_stage():
        out = real()
        staged.set()
        gate.wait(30)
        return out

    monkeypatch.setattr(s, "stage_sequence_simulated", slow_stage)
    from napari_scr2st._napari import _workers as W

    errors = []
    monkeypatch.setattr(W, "notify_error", errors.append)
    w.sequence_round()
    assert staged.wait(30)
    i = int(np.flatnonzero(~s.preview.state.selected)[0])
    s.toggle_manual(i)  # the picks change after the worker staged the round, before it is taken
    gate.set()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert s.current_round == 0 and not s.committed.measured.any() and i in s.manual
    assert len(errors) == 1 and "selection changed while the round was being sequenced" in errors[0]


def test_the_chart_keeps_its_layout_between_resizes(dock):
    """The sampling chart lays itself out (constrained) on its first full draw and after a
    resize, and keeps that layout for the full draws in between: the same pixels, no layout."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    viewer, w, _ = dock
    canvas = w.chart
    fig = canvas.figure
    canvas.relayout()
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    canvas.draw()
    assert not isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)  # frozen after the draw
    laid_out = np.asarray(canvas.buffer_rgba()).copy()
    pos = canvas.ax.get_position().bounds
    canvas.draw()
    np.testing.assert_array_equal(np.asarray(canvas.buffer_rgba()), laid_out)
    assert canvas.ax.get_position().bounds == pos
    # the y label is inside the figure (the layout made room for it)
    fig_box = fig.bbox
    label_box = canvas.ax.yaxis.label.get_window_extent(canvas.get_renderer())
    assert label_box.x0 >= fig_box.x0 - 1 and label_box.y0 >= fig_box.y0 - 1
    canvas.resize(canvas.width() + 80, canvas.height())  # a resize lays it out again
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
