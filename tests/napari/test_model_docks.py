"""Inspector, maps and export docks on a trained model (one trained session for the module)."""

import json

import numpy as np
import pandas as pd
import pytest

TINY = {"n_genes": 30, "hidden_dim": 32, "proj_dim": 16, "batch_size": 16}


@pytest.fixture
def trained(make_napari_viewer, small_sample, sync_workers, helpers):
    from napari_scr2st._napari._training_widget import TrainingWidget

    viewer = make_napari_viewer(show=True)
    w, spots = helpers.prepared_sampling(viewer, small_sample)
    w.sequence_round()
    t = TrainingWidget(viewer)
    t.backbone_combo.setCurrentText("patch-stats")
    t.epochs_spin.setValue(2)
    t.device_combo.setCurrentText("cpu")
    t.extra_config = dict(TINY)
    t.start()
    assert w.session.predictor is not None, t.status.text()
    return viewer, w, spots


def test_inspector_shows_neighbours_and_reacts_to_k_and_m(trained, qtbot):
    from napari_scr2st._napari._inspector_widget import InspectorWidget

    viewer, w, _ = trained
    s = w.session
    ins = InspectorWidget(viewer)
    viewer.window.add_dock_widget(ins)
    assert ins.gene_combo.count() == TINY["n_genes"]
    q = int(np.flatnonzero(~s.committed.measured)[0])
    ins.inspect(q)
    r = ins.result
    assert r.index == q and len(r.neighbours) == ins.k_spin.value()
    assert ins.grid.count() == len(r.neighbours)
    assert not r.was_measured and r.soft_label is not None and r.regression is not None
    # neighbours are sequenced spots of this section, with thumbnails
    assert all(s.committed.measured[nb.obs_index] for nb in r.neighbours)
    assert len(ins.chart.ax.patches) == 3  # soft label, regression, prediction (no measured value)
    layer = viewer.layers["SYN1 inspected"]
    assert list(layer.features["role"][:1]) == ["query"]
    ins.k_spin.setValue(4)
    qtbot.waitUntil(lambda: len(ins.result.neighbours) == 4, timeout=3000)
    ins.m_spin.setValue(1)
    qtbot.waitUntil(lambda: ins.result.m == 1, timeout=3000)
    kept_types = {nb.cell_type for nb in ins.result.neighbours if nb.kept}
    assert len(kept_types) <= 1
    # a sequenced spot shows its measured value too
    ins.inspect(int(np.flatnonzero(s.committed.measured)[0]))
    assert ins.result.was_measured and len(ins.chart.ax.patches) == 4
    # typing an id
    ins.spot_edit.setText(str(s.adata.obs_names[q]))
    ins._from_edit()
    assert ins.result.index == q


def test_maps_dock_switches_predicted_and_measured(trained):
    from napari_scr2st._napari._maps_widget import MapsWidget

    viewer, w, _ = trained
    s = w.session
    m = MapsWidget(viewer)
    viewer.window.add_dock_widget(m)
    gene = s.predictions.columns[0]
    m.gene_combo.setCurrentText(gene)
    layer = m.show_expression(gene)
    assert layer.metadata["source"] == "predicted" and layer.shown.all()
    m.cmap_combo.setCurrentText("viridis")
    assert layer.face_colormap.name == "viridis"
    m.meas_radio.setChecked(True)
    layer = m.show_expression(gene)
    assert layer.metadata["source"] == "measured"
    # unmeasured spots are not in the layer: nothing draws them
    assert len(layer.data) == s.committed.measured.sum() and layer.shown.all()
    assert layer.name == f"{s.library} · {gene} · measured"
    lo, hi = layer.face_contrast_limits
    assert lo < hi
    ct = m.show_cell_types()
    assert ct.visible and set(ct.metadata["legend"]) == set(s.space.celltypes)
    # the first (sequenced) round is "round 1" in the dock's legend, as on the canvas and in the files
    assert "Cell types" in m.legend.text() and "round 1" in m.legend.text() and "round 0" not in m.legend.text()


def test_export_dock_writes_csv_geojson_h5ad_and_imports(trained, tmp_path):
    from napari_scr2st._napari._export_widget import ExportWidget
    from napari_scr2st.io.export import SELECTION_COLUMNS, read_selection_csv, write_counts_csv

    viewer, w, _ = trained
    s = w.session
    e = ExportWidget(viewer)
    viewer.window.add_dock_widget(e)
    n_next = len(s.preview.proposal)
    path = e.export_csv(tmp_path / "next.csv")
    df = read_selection_csv(path)
    assert list(df.columns) == SELECTION_COLUMNS and len(df) == n_next
    assert set(df["round"]) == {2} and set(df["picked_by"]) == {"policy"}  # the second round, counted from 1
    assert e.status.text() == (f"Exported round 2 to {path}: {n_next} spots (run state: next.scr2st-state.npz)")
    assert (df["predicted_cell_type"] != "").all()
    assert s.committed.pending.sum() == n_next  # exported = sent for sequencing
    gj = json.loads(e.export_geojson(tmp_path / "next.geojson").read_text())
    assert len(gj["features"]) == n_next
    assert gj["features"][0]["properties"]["objectType"] == "annotation"
    h5 = e.export_h5ad(tmp_path / "pred.h5ad")
    import anndata as ad

    back = ad.read_h5ad(h5)
    assert "X_pred" in back.obsm and (back.obs["scr2st_round"] >= 1).sum() == s.committed.n_selected
    assert set(back.obs["scr2st_round"]) == {0, 1, 2}  # 0 = not selected
    # the lab's counts come back
    rows = s.adata.obs_names.get_indexer(df["spot_id"])
    res = write_counts_csv(s.adata, rows, tmp_path / "results.csv")
    idx = e.import_results(res)
    assert sorted(idx.tolist()) == sorted(rows.tolist())
    assert s.committed.measured.sum() == 2 * n_next and s.rounds_done
    # after the import every dock tells the same story: round 2 of 2 is in, all rounds done
    assert e.status.text() == (f"{n_next} sequenced spots imported from results.csv; round 2 of 2 sequenced: "
                               "all rounds done (raise the rounds in the sampling dock to pick more).")
    assert w.status.text().split("\n")[:2] == ["all rounds done", f"Round 2 of 2; budget {s.preview.total_budget} spots"]
    # errors are notifications: a file with unknown spots
    bad = pd.DataFrame({"spot_id": ["nope"], "GENE": [1]})
    bad.to_csv(tmp_path / "bad.csv", index=False)
    assert e.import_results(tmp_path / "bad.csv") is None and "failed" in e.status.text()


def test_inspector_gene_follows_the_maps_dock_and_back(trained, qtbot):
    """One gene for the maps and the inspector, through the session's gene_changed: choosing a gene in
    the maps dock shows it in the inspector (combo, chart axis, retrieval result), and the other way round."""
    from napari_scr2st._napari import _viewer_layers as V
    from napari_scr2st._napari._inspector_widget import InspectorWidget
    from napari_scr2st._napari._maps_widget import MapsWidget

    viewer, w, _ = trained
    s = w.session
    maps = MapsWidget(viewer)
    viewer.window.add_dock_widget(maps)
    ins = InspectorWidget(viewer)
    viewer.window.add_dock_widget(ins)
    # both start at the session's gene (the maps combo's chosen item, not only its edit text)
    assert ins.gene_combo.currentText() == s.gene == maps.gene_combo.itemText(maps.gene_combo.currentIndex())
    ins.inspect(int(np.flatnonzero(~s.committed.measured)[0]))
    genes = [ins.gene_combo.itemText(i) for i in range(ins.gene_combo.count())]
    a, b = [g for g in genes if g != s.gene][:2]
    maps.gene_combo.setCurrentIndex(maps.gene_combo.findText(a))  # the user picks gene a in the maps dock
    assert s.gene == a and ins.gene_combo.currentText() == a
    qtbot.waitUntil(lambda: ins.result.genes[0] == a, timeout=5000)
    assert ins.chart.ax.get_ylabel() == f"{a} (log1p)"
    assert V.map_layer(viewer, s.library, "expression").name == f"{s.library} · {a} · predicted"
    ins.gene_combo.setCurrentIndex(ins.gene_combo.findText(b))  # and gene b in the inspector
    assert s.gene == b and maps.gene_combo.currentText() == b
    layer = V.map_layer(viewer, s.library, "expression")  # the shown map follows
    assert layer.name == f"{s.library} · {b} · predicted" and layer.visible
    qtbot.waitUntil(lambda: ins.result.genes[0] == b, timeout=5000)
