"""Sampling dock: preparation, live re-selection by the weight sliders, manual picks, ROIs."""

import numpy as np
import pytest


@pytest.fixture
def dock(make_napari_viewer, small_sample, sync_workers, helpers):
    viewer = make_napari_viewer(show=True)
    w, spots = helpers.prepared_sampling(viewer, small_sample)
    return viewer, w, spots


def test_prepare_proposes_a_first_round(dock):
    viewer, w, spots = dock
    s = w.session
    assert s.space is not None and s.policy is not None
    p = s.preview
    assert p.total_budget == round(0.3 * s.n) and p.n_new == round(0.3 * s.n) // 2
    sel = viewer.layers["SYN1 selected"]
    assert len(sel.data) == len(p.proposal)
    assert set(sel.features["picked_by"]) == {"policy"}
    assert "SYN1 include ROI" in viewer.layers and "SYN1 exclude ROI" in viewer.layers
    assert {"state", "round", "picked_by", "cell_type"} <= set(spots.features.columns)
    assert "Round 1 of 2" in w.status.text()


def test_weight_sliders_reselect_live(dock, qtbot):
    viewer, w, _ = dock
    s = w.session
    before = set(s.preview.proposal.tolist())
    w.set_weights(w_sc=0.0, w_type=0.0, w_sp=5.0)
    qtbot.waitUntil(lambda: s.sampling.w_sp == 5.0 and s.sampling.w_sc == 0.0, timeout=2000)
    assert s.preview.seconds < 1.0
    assert len(s.preview.proposal) == len(before)
    # the chart follows the selection: bars for the four terms, twice
    assert len(w.chart.ax.patches) == 8


def test_expected_error_slider_changes_the_proposal(dock, qtbot):
    """The r_unc weight has its own slider; moving it re-selects (greedy) and the chart shows the
    term of the sequenced set and of the proposal (exact: it needs no expression)."""
    from napari_scr2st.sampling.measured import variance_index

    viewer, w, _ = dock
    s = w.session
    assert set(w.sliders) == {"w_sc", "w_type", "w_sp", "w_unc"}
    assert w.sliders["w_unc"].value() == pytest.approx(s.sampling.w_unc)
    w.sampler_combo.setCurrentIndex(w.sampler_combo.findData("greedy"))
    w.set_weights(w_sc=1.0, w_type=1.0, w_sp=0.0, w_unc=0.0)
    qtbot.waitUntil(lambda: s.sampling.sampler == "greedy" and s.sampling.w_unc == 0.0, timeout=2000)
    off = set(s.preview.proposal.tolist())
    w.set_weights(w_unc=5.0)
    qtbot.waitUntil(lambda: s.sampling.w_unc == 5.0, timeout=2000)
    on = s.preview.proposal
    assert set(on.tolist()) != off and len(on) == len(off)
    index = variance_index(s.pool)
    sel = np.flatnonzero(s.preview.state.selected & ~s.pool.excluded)
    assert s.preview.terms_expected[3] == pytest.approx(index.value(sel)) and s.preview.terms_expected[3] > 0
    heights = [r.get_height() for r in w.chart.ax.patches]
    assert heights[7] == pytest.approx(s.preview.terms_expected[3])


def test_manual_pick_is_respected_by_the_policy(dock):
    viewer, w, spots = dock
    s = w.session
    unpicked = np.flatnonzero(~s.preview.state.selected)
    i = int(unpicked[0])
    msg = w.toggle_pick(i)
    assert "manual pick" in msg
    st = s.preview.state
    assert st.source[i] == "manual" and st.selected[i]
    # the manual pick counts toward the budget: the rest is spread over the rounds
    rest = s.preview.total_budget - 1
    assert len(s.preview.proposal) == (rest + 1) // 2 and i not in s.preview.proposal
    sel = viewer.layers["SYN1 selected"]
    row = sel.features.index[sel.features["spot_id"] == s.adata.obs_names[i]][0]
    assert sel.symbol[row].value == "star"
    # clicking at the spot's position toggles it back
    from napari_scr2st.layers import spot_yx

    w.toggle_pick_at(spot_yx(s.adata)[i])
    assert not s.preview.state.source[i] == "manual"


def test_exclude_roi_removes_spots_from_the_pool(dock, qtbot, helpers):
    viewer, w, _ = dock
    s = w.session
    rect, inside = helpers.left_half_roi(s.adata)
    viewer.layers["SYN1 exclude ROI"].add_rectangles(rect)
    w.update_rois()
    assert s.pool.excluded[inside].all() and not s.pool.excluded[~inside].any()
    assert not s.preview.state.selected[inside].any()
    # an include ROI restricts to its inside
    viewer.layers["SYN1 exclude ROI"].data = []
    viewer.layers["SYN1 include ROI"].add_rectangles(rect)
    w.update_rois()
    sel = s.preview.state.selected
    assert sel.any() and not sel[~inside].any()


def test_sequence_round_and_reset(dock):
    viewer, w, _ = dock
    s = w.session
    n = len(s.preview.proposal)
    w.sequence_round()
    assert s.committed.measured.sum() == n and s.current_round == 1
    assert s.history and 0 <= s.history[-1]["r_type"] <= 1
    assert s.preview.has_prediction  # the next proposal's terms use predicted cell types
    assert "Round 2 of 2" in w.status.text()
    w.sequence_round()
    assert s.rounds_done and "all rounds done" in w.status.text()
    w.reset()
    assert s.committed.n_selected == 0


def test_other_samplers_and_errors(dock):
    viewer, w, _ = dock
    s = w.session
    i = w.sampler_combo.findData("grid")
    w.sampler_combo.setCurrentIndex(i)
    w.reselect()
    assert s.sampling.sampler == "grid" and set(s.preview.state.source[s.preview.proposal]) == {"grid"}
    # a budget larger than the pool is a notification, not a crash
    w.budget_unit.setCurrentText("spots")
    w.budget_spin.setValue(10 * s.n)
    w.reselect()
    assert "failed" in w.status.text()


def test_keyboard_shortcuts_are_bound_and_in_tooltips(dock):
    viewer, w, _ = dock
    from napari_scr2st._napari._dock_kit import SHORTCUTS

    assert SHORTCUTS["toggle_pick"] in w.pick_check.text()
    assert SHORTCUTS["reselect"] in w.reselect_btn.text() and SHORTCUTS["reselect"] in w.reselect_btn.toolTip()
    assert SHORTCUTS["toggle_pick"] in w.pick_check.toolTip()
    keymap = {str(k) for k in viewer.keymap}
    assert any("M" in k for k in keymap), keymap


def test_reference_from_a_file(make_napari_viewer, small_sample, sync_workers, helpers, tmp_path):
    """A section without a reference: histology samplers only, until a reference file is loaded."""
    from napari_scr2st._napari._sampling_widget import SamplingWidget
    from napari_scr2st.layers import section_layers

    viewer = make_napari_viewer(show=True)
    for data, kw, kind in section_layers(small_sample.section.copy()):
        getattr(viewer, f"add_{kind}")(data, **kw)
    w = SamplingWidget(viewer)
    assert "none" in w.reference_label.text()
    path = tmp_path / "ref.h5ad"
    small_sample.reference.write_h5ad(path)
    w.load_reference(tmp_path / "missing.h5ad")
    assert "failed" in w.status.text()
    w.load_reference(path)
    assert w.session.reference is not None and "not fitted" in w.reference_label.text()
    w.session.space = helpers.space_for(small_sample)
    w.encoder_combo.setCurrentText("patch-stats")
    w.prepare()
    assert w.session.policy is not None and "cell types" in w.reference_label.text()


def test_mouse_click_toggles_a_pick_and_closed_docks_unhook(dock):
    """The canvas click path (a mouse-drag callback without movement) and clean-up on close."""
    from types import SimpleNamespace

    from napari_scr2st.layers import spot_yx

    viewer, w, _ = dock
    s = w.session
    i = int(np.flatnonzero(~s.preview.state.selected)[0])
    w.pick_check.setChecked(True)
    hooks = list(w._mouse_hooks)
    assert hooks and all(h in viewer.mouse_drag_callbacks for h in hooks)
    event = SimpleNamespace(position=tuple(spot_yx(s.adata)[i]), type="mouse_press")
    gen = hooks[0](viewer, event)
    next(gen)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)
    assert s.preview.state.source[i] == "manual"
    # a drag (pan) is not a click
    gen = hooks[0](viewer, SimpleNamespace(position=event.position, type="mouse_press"))
    ev2 = SimpleNamespace(position=event.position, type="mouse_press")
    gen = hooks[0](viewer, ev2)
    next(gen)
    ev2.type = "mouse_move"
    next(gen)
    ev2.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)
    assert s.preview.state.source[i] == "manual"
    # closing the dock removes its canvas hooks
    viewer.window.remove_dock_widget(w)
    w.deleteLater()
    from qtpy.QtCore import QCoreApplication, QEvent
    from qtpy.QtWidgets import QApplication

    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QApplication.processEvents()
    assert not any(h in viewer.mouse_drag_callbacks for h in hooks)


def test_threaded_prepare_adds_the_roi_layers_in_turns_and_watches_them(make_napari_viewer, small_sample, helpers,
                                                                        qtbot, monkeypatch):
    """Threaded prepare: the include and exclude ROI layers come one per event-loop turn, the
    spots layer is active afterwards, and a region drawn in the exclude layer (added after the
    dock's prepared handler ran) still takes its spots out of the pool."""
    from napari_scr2st._napari import _viewer_layers as V
    from napari_scr2st._napari._sampling_widget import SamplingWidget

    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "0")
    viewer = make_napari_viewer(show=True)
    spots = helpers.add_section(viewer, small_sample)
    w = SamplingWidget(viewer)
    viewer.window.add_dock_widget(w, name="Spot sampling")
    w.encoder_combo.setCurrentText("patch-stats")
    w.session.space = helpers.space_for(small_sample)
    calls = []
    real = V.ensure_roi_layers

    def spy(v, s, kinds=("include", "exclude")):
        calls.append(tuple(kinds))
        return real(v, s, kinds=kinds)

    monkeypatch.setattr(V, "ensure_roi_layers", spy)
    w.prepare()
    qtbot.waitUntil(lambda: w.session.is_prepared and "SYN1 exclude ROI" in viewer.layers
                    and w.session.preview is not None, timeout=60_000)
    qtbot.waitUntil(lambda: viewer.layers.selection.active is spots, timeout=10_000)
    assert calls[:2] == [("include",), ("exclude",)]  # one layer per turn
    assert [ly.name for ly in viewer.layers].count("SYN1 include ROI") == 1
    s = w.session
    rect, inside = helpers.left_half_roi(s.adata)
    viewer.layers["SYN1 exclude ROI"].add_rectangles(rect)
    qtbot.waitUntil(lambda: s.pool.excluded[inside].all(), timeout=20_000)  # the dock's ROI timer fired
    assert not s.pool.excluded[~inside].any()
