"""What a person sees on the canvas: selection rings and manual stars under the value maps,
unmeasured spots not drawn, a titled colour bar only while its map shows, a legend on the
canvas, names that say section, gene and source, and the hover table on the selection layer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scr2st.layers import MANUAL_STAR_SIZE, SELECTION_RING_SIZE, spot_yx
from napari_scr2st.palette import MANUAL_COLOR, hex_to_rgba, round_color

GREY = (60, 60, 60)  # canvas background of the pixel checks: neither black nor any map colour


def _screen(viewer, shot, yx) -> tuple[int, int]:
    """Pixel (row, col) of the screenshot at world position ``yx`` (2D view, no rotation)."""
    cam = viewer.camera
    h, w = viewer.canvas.size
    sy, sx = shot.shape[0] / h, shot.shape[1] / w
    cy, cx = cam.center[-2:]
    row = (yx[0] - cy) * cam.zoom + h / 2
    col = (yx[1] - cx) * cam.zoom + w / 2
    return int(round(row * sy)), int(round(col * sx))


def _rgb(shot, rc, r: int = 1) -> np.ndarray:
    y, x = rc
    return shot[y - r : y + r + 1, x - r : x + r + 1, :3].reshape(-1, 3).astype(float).mean(0)


def _close(a, b, tol=40.0) -> bool:
    return float(np.abs(np.asarray(a, float) - np.asarray(b, float)).max()) <= tol


@pytest.fixture
def measured_map(make_napari_viewer, small_sample, sync_workers, helpers):
    """A prepared section, one manual pick, round 1 sequenced, the maps dock on a measured gene."""
    from napari_scr2st._napari._maps_widget import MapsWidget

    viewer = make_napari_viewer(show=True)
    w, spots = helpers.prepared_sampling(viewer, small_sample)
    s = w.session
    free = np.flatnonzero(~s.selection_for_layers().selected & ~s.excluded)
    manual = int(free[0])
    assert "manual pick" in w.toggle_pick(manual)
    w.sequence_round()
    m = MapsWidget(viewer)
    viewer.window.add_dock_widget(m)
    m.meas_radio.setChecked(True)
    gene = s.measured_genes()[0]
    layer = m.show_expression(gene)
    return viewer, w, m, spots, layer, gene, manual


def test_measured_map_names_order_title_and_legend(measured_map):
    from napari_scr2st._napari import _viewer_layers as V

    viewer, w, m, spots, layer, gene, manual = measured_map
    s = w.session
    lib = s.library
    assert layer.name == f"{lib} · {gene} · measured"
    assert len(layer.data) == s.committed.measured.sum() > 0  # the unmeasured are not in the layer
    sel = viewer.layers[f"{lib} selected"]
    names = [ly.name for ly in viewer.layers]
    assert names.index(layer.name) > names.index(sel.name)  # the values above the selection
    # the active layer stays the spots layer (hover), adding map layers does not steal it
    assert viewer.layers.selection.active is spots
    # the colour bar and its title: gene, source, scale
    overlays = viewer.canvas.overlays
    title = overlays[V.TITLE_KEY]
    assert layer.face_colorbar.visible and title.visible
    assert title.text.splitlines()[:2] == [f"{gene} · measured", "log1p normalised counts"]
    assert "no data: not drawn" in title.text
    # the legend on the canvas: rounds, manual vs policy, with the manual count vs the budget
    legend = [o.text for k, o in overlays.items() if k.startswith(V.LEGEND_PREFIX) and o.visible]
    assert any("round 1" in t for t in legend) and not any("round 0" in t for t in legend)  # counted from 1
    budget = sel.metadata["budget"]
    assert budget and any(f"manual picks: 1 of a budget of {budget}" in t for t in legend), legend
    assert any("sampler/policy" in t for t in legend)
    colors = {o.text: o.color for k, o in overlays.items() if k.startswith(V.LEGEND_PREFIX) and o.visible}
    r0 = next(t for t in colors if "round 1" in t)
    np.testing.assert_allclose(np.asarray(colors[r0])[:3], hex_to_rgba(round_color(0))[:3], atol=1e-6)
    assert "1 manual" in m.legend.text()
    # one overlay per run of one colour: the white lines of the selection share one, each round
    # has its own (fewer overlays: shorter first paints), and every line keeps its colour
    shown = [o for k, o in overlays.items() if k.startswith(V.LEGEND_PREFIX) and o.visible]
    white = next(o for o in shown if "manual picks" in o.text)
    assert white.text.splitlines()[0].startswith("Selection (") and "sampler/policy" in white.text
    np.testing.assert_allclose(np.asarray(white.color)[:3], 1.0)
    n_rounds = len(sel.metadata["legend"])
    assert len(shown) == 1 + n_rounds, [o.text for o in shown]
    assert all(len(o.text.splitlines()) == 1 for o in shown if o is not white)
    # the cell-type map hides the expression map, its colour bar and title; its legend shows
    ct = m.show_cell_types()
    assert ct.visible and not layer.visible
    assert not title.visible and not layer.face_colorbar.visible
    legend = [o.text for k, o in overlays.items() if k.startswith(V.LEGEND_PREFIX) and o.visible]
    assert any(t.startswith("Cell types") for t in legend)
    assert all(any(c in t for t in legend) for c in ct.metadata["legend"])
    # and back: a predicted-free gene switch renames the same layer (one map layer per section)
    m.show_expression(s.measured_genes()[1])
    assert layer.visible and not ct.visible and layer.name == f"{lib} · {s.measured_genes()[1]} · measured"
    assert sum(ly.metadata.get("map") == "expression" for ly in viewer.layers) == 1
    assert title.visible and s.measured_genes()[1] in title.text


def test_pixels_of_selected_manual_and_no_data_spots(measured_map):
    viewer, w, m, spots, layer, gene, manual = measured_map
    s = w.session
    st = s.committed
    yx = spot_yx(s.adata)
    d = float(spots.size[0])
    for ly in viewer.layers:  # the maps and the selection only, on a plain grey canvas
        if ly.metadata.get("map") not in ("expression", "selected"):
            ly.visible = False
    viewer.canvas.background_color_override = "#3c3c3c"  # GREY
    value = layer.features["value"].to_numpy()
    index = layer.metadata["index"]
    policy = [i for i in np.flatnonzero(st.measured & (st.source != "manual"))]
    pending = np.flatnonzero(s.selection_for_layers().pending & (s.selection_for_layers().round >= 0))
    selected = s.selection_for_layers().selected
    empty = [i for i in np.flatnonzero(~selected) if np.min(np.linalg.norm(yx[selected] - yx[i], axis=1)) > 2.5 * d]
    assert policy and len(pending) and empty
    cmap = layer.face_colormap
    lo, hi = layer.face_contrast_limits

    def look(i):
        viewer.camera.center = tuple(yx[i])
        viewer.camera.zoom = 60.0 / d  # a spot 60 screen pixels wide
        shot = viewer.screenshot(canvas_only=True, flash=False)
        return shot, np.array(yx[i])

    # a sequenced policy pick: its measured value at the centre, its round's ring around it
    i = policy[0]
    shot, c = look(i)
    v = value[np.searchsorted(index, i)]
    want = np.asarray(cmap.map(np.array([(np.clip(v, lo, hi) - lo) / (hi - lo)]))[0, :3]) * 255
    assert _close(_rgb(shot, _screen(viewer, shot, c)), want), (_rgb(shot, _screen(viewer, shot, c)), want)
    ring_r = d * SELECTION_RING_SIZE / 2  # napari centres a border on the marker's edge
    ring = _rgb(shot, _screen(viewer, shot, c + (0, -ring_r)))
    assert _close(ring, hex_to_rgba(round_color(0))[:3] * 255), ring
    # the manual pick (sequenced): its value at the centre, a white star arm above it
    shot, c = look(manual)
    assert manual in set(index.tolist())
    arm = _rgb(shot, _screen(viewer, shot, c + (-0.33 * MANUAL_STAR_SIZE * d, 0)))
    assert _close(arm, hex_to_rgba(MANUAL_COLOR)[:3] * 255), arm
    # a pending pick of the next round has no value: its centre shows the canvas, not black
    j = int(pending[0])
    assert j not in set(index.tolist())
    shot, c = look(j)
    assert _close(_rgb(shot, _screen(viewer, shot, c)), GREY, tol=12), _rgb(shot, _screen(viewer, shot, c))
    ring = _rgb(shot, _screen(viewer, shot, c + (0, -ring_r)))
    faded = 0.5 * hex_to_rgba(round_color(1))[:3] * 255 + 0.5 * np.array(GREY)
    assert _close(ring, faded), (ring, faded)
    # an unselected, unmeasured spot: nothing drawn at all (on magma a drawn NaN is black)
    shot, c = look(empty[0])
    assert _close(_rgb(shot, _screen(viewer, shot, c), r=4), GREY, tol=12)


def test_hover_shows_spot_features_on_the_selection_layer(measured_map):
    viewer, w, m, spots, layer, gene, manual = measured_map
    sel = viewer.layers[f"{w.session.library} selected"]
    idx = sel.metadata["index"]
    assert len(sel.features) == len(idx)
    row = list(idx).index(manual)
    # the selection layer's own columns and the spot's features (counts, state, cell type)
    for col in ("round", "picked_by", "rank", "total_counts", "state", "cell_type"):
        assert col in sel.features, col
    assert sel.features.loc[row, "picked_by"] == "manual"
    assert sel.features.loc[row, "round"] == 1 and spots.features.loc[manual, "round"] == 1  # the first round
    np.testing.assert_allclose(sel.features.loc[row, "total_counts"], spots.features.loc[manual, "total_counts"])
    viewer.layers.selection.active = sel
    status = sel.get_status(tuple(sel.data[row]), world=True)
    text = status["coordinates"] if isinstance(status, dict) else str(status)
    assert "total_counts" in text and "manual" in text, text
    assert "round: 1" in text and "round: 0" not in text, text


def test_the_expression_layer_made_before_training_is_hidden_and_empty(make_napari_viewer, small_sample, sync_workers,
                                                                       helpers):
    """Made before a long run (so the result is an in-place update), it draws nothing and shows no
    colour bar or title until a result fills it; then it is renamed and shown."""
    import pandas as pd

    from napari_scr2st._napari import _viewer_layers as V

    viewer = make_napari_viewer(show=True)
    w, spots = helpers.prepared_sampling(viewer, small_sample)
    s = w.session
    layer = V.prepare_expression_layer(viewer, s)
    assert not layer.visible and len(layer.data) == 0 and not layer.face_colorbar.visible
    assert not viewer.canvas.overlays[V.TITLE_KEY].visible
    assert viewer.layers.selection.active is spots
    s.predictions = pd.DataFrame({"ERBB2": np.linspace(0, 3, s.n)}, index=s.adata.obs_names)
    s.gene = "ERBB2"
    shown = V.update_expression_layer(viewer, s, "ERBB2")
    assert shown is layer and layer.name == f"{s.library} · ERBB2 · predicted"
    assert layer.visible and len(layer.data) == s.n and layer.face_colorbar.visible
    assert viewer.canvas.overlays[V.TITLE_KEY].text.startswith("ERBB2 · predicted\nlog1p normalised counts")
    layer.visible = False  # hiding the map hides its colour bar title too
    assert not viewer.canvas.overlays[V.TITLE_KEY].visible


def test_legend_boxes_contrast_with_their_text():
    from napari_scr2st._napari._viewer_layers import _box_for
    from napari_scr2st.palette import CELLTYPE_COLORS, ROUND_COLORS

    assert _box_for(round_color(0))[:3] == (0.0, 0.0, 0.0)  # gold text on black
    assert _box_for("#000080")[:3] == (1.0, 1.0, 1.0)  # navy text on white
    assert _box_for(MANUAL_COLOR)[:3] == (0.0, 0.0, 0.0)

    def lum(h):
        c = hex_to_rgba(h)[:3].astype(float)
        lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return float(lin @ [0.2126, 0.7152, 0.0722])

    for h in [*CELLTYPE_COLORS, *ROUND_COLORS]:
        box = _box_for(h)
        lb = 1.0 if box[0] == 1.0 else 0.0
        hi, lo = max(lum(h), lb), min(lum(h), lb)
        assert (hi + 0.05) / (lo + 0.05) >= 3.0, h  # WCAG: readable large text


def test_map_order_is_kept_per_section_without_moves(make_napari_viewer):
    from napari_scr2st._napari import _viewer_layers as V

    viewer = make_napari_viewer()
    pts = np.zeros((1, 2))
    for sec in ("A", "B"):
        viewer.add_points(pts, name=f"{sec} spots", metadata={"section": sec})
    for sec in ("A", "B"):
        for kind in ("expression", "selected", "cell_types"):  # the wrong order on purpose
            viewer.add_points(pts, name=f"{sec} {kind}", metadata={"section": sec, "map": kind})
    for sec in ("A", "B"):
        V.order_map_layers(viewer, sec)
    names = [ly.name for ly in viewer.layers]
    for sec in ("A", "B"):
        i = [names.index(f"{sec} {k}") for k in ("selected", "cell_types", "expression")]
        assert i == sorted(i) and i[0] > names.index(f"{sec} spots")  # values above the selection
    moved = []
    viewer.layers.events.moved.connect(moved.append)
    for _ in range(3):
        for sec in ("A", "B"):
            V.order_map_layers(viewer, sec)
    assert moved == []  # in order: nothing moves (no events at slider speed, no trading places)


def test_legend_blocks_join_consecutive_lines_of_one_colour_only():
    from napari_scr2st._napari._viewer_layers import legend_blocks

    entries = [("Selection (S)", "#ffffff"), ("manual", "#FFFFFF"), ("ring", "#ffffff"),
               ("round 1", "#ffd700"), ("round 2", "#00bfff"), ("Cell types (S)", "#ffffff"), ("Tumour", "#ffd700")]
    assert legend_blocks(entries) == [("Selection (S)\nmanual\nring", "#ffffff"), ("round 1", "#ffd700"),
                                      ("round 2", "#00bfff"), ("Cell types (S)", "#ffffff"), ("Tumour", "#ffd700")]
    assert legend_blocks([]) == []
    assert legend_blocks([("a", "#ff0000"), ("b", "#ff0000")]) == [("a\nb", "#ff0000")]


def test_legend_follows_in_the_next_turn_once_for_many_changes(measured_map, monkeypatch, qtbot):
    """Outside synchronous mode the legend and colour bar follow a map change in a later turn
    of the event loop (apart from the layer's insertion), and only once for a burst of changes."""
    from napari_scr2st._napari import _viewer_layers as V

    viewer, w, m, spots, layer, gene, manual = measured_map
    monkeypatch.delenv("SCR2ST_SYNC_WORKERS")
    calls = []
    real = V.sync_canvas_legend
    monkeypatch.setattr(V, "sync_canvas_legend", lambda v: (calls.append(v), real(v)))
    layer.visible = False  # the only expression map hidden: its bar and title must go
    layer.visible = True
    layer.visible = False
    assert calls == [] and layer.face_colorbar.visible  # nothing yet: it waits for the next turn
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=2000)
    qtbot.wait(50)
    assert len(calls) == 1  # three changes, one sync
    assert not layer.face_colorbar.visible and not viewer.canvas.overlays[V.TITLE_KEY].visible
    layer.visible = True
    qtbot.waitUntil(lambda: layer.face_colorbar.visible, timeout=2000)
    assert viewer.canvas.overlays[V.TITLE_KEY].visible and len(calls) == 2
