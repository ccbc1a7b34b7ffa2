"""The whole job in the GUI: open the sample -> select at 15% -> train a tiny model -> predict
-> export the next round as CSV -> import the lab's results. Layers, files and screenshots."""

import numpy as np
import pytest


def test_end_to_end(make_napari_viewer, sync_workers, monkeypatch, tmp_path, helpers):
    from napari_scr2st.io.export import read_selection_csv, write_counts_csv

    monkeypatch.setenv("SCR2ST_SAMPLE_SPOTS", "500")
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-scr2st", "synthetic")
    spots = viewer.layers["SYN1 spots"]
    n = len(spots.data)
    assert 450 < n < 550

    # docks come from the manifest, as from the Plugins menu
    _, sampling = viewer.window.add_plugin_dock_widget("napari-scr2st", "Spot sampling")
    _, training = viewer.window.add_plugin_dock_widget("napari-scr2st", "Train SCR2Net")
    _, export = viewer.window.add_plugin_dock_widget("napari-scr2st", "Export and import")
    _, maps = viewer.window.add_plugin_dock_widget("napari-scr2st", "Expression and cell-type maps")
    assert sampling.session is training.session is export.session

    # select at 15%: a 30% budget over two rounds
    sampling.encoder_combo.setCurrentText("patch-stats")
    sampling.budget_unit.setCurrentText("%")
    sampling.budget_spin.setValue(30)
    sampling.rounds_spin.setValue(2)
    sampling.prepare()
    s = sampling.session
    assert s.is_prepared, sampling.status.text()
    first = len(s.preview.proposal)
    assert first == pytest.approx(0.15 * n, abs=1)
    assert len(viewer.layers["SYN1 selected"].data) == first
    sampling.sequence_round()
    assert s.committed.measured.sum() == first

    # train a tiny model -> predictions as layers
    training.backbone_combo.setCurrentText("patch-stats")
    training.epochs_spin.setValue(2)
    training.device_combo.setCurrentText("cpu")
    training.extra_config = {"n_genes": 30, "hidden_dim": 32, "proj_dim": 16, "batch_size": 16}
    training.start()
    assert s.predictions is not None, training.status.text()
    expr = viewer.layers[f"SYN1 · {s.gene} · predicted"]
    assert expr.visible and np.isfinite(expr.features[s.gene]).all()
    maps.show_cell_types()
    assert viewer.layers["SYN1 cell types"].visible

    # the next round goes to the lab as a CSV
    csv = export.export_csv(tmp_path / "round2.csv")
    df = read_selection_csv(csv)
    assert len(df) == len(s.committed.pending.nonzero()[0]) > 0
    assert (df["round"] == 2).all() and df["spot_id"].isin(s.adata.obs_names).all()  # the second round
    # the lab sends counts back; importing them reveals the round
    rows = s.adata.obs_names.get_indexer(df["spot_id"])
    results = write_counts_csv(s.adata, rows, tmp_path / "lab_results.csv")
    export.import_results(results)
    assert s.committed.measured.sum() == first + len(df) and s.rounds_done
    sel = viewer.layers["SYN1 selected"]
    assert (sel.features["state"] == "sequenced").all() and set(sel.features["round"]) == {1, 2}

    # what the user sees is not blank: the canvas and each dock
    for name in ("SYN1 cell types", expr.name):
        viewer.layers[name].visible = False
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert helpers.not_blank(shot)
    rgb = shot[..., :3].astype(int)
    yellow = (rgb[..., 0] > 200) & (rgb[..., 1] > 170) & (rgb[..., 2] < 80)  # round-0 spots
    assert yellow.sum() > 30
    for dock in (sampling, training, export, maps):
        img = dock.grab().toImage()
        assert img.width() > 100 and img.height() > 100
        ptr = img.constBits()
        ptr.setsize(img.sizeInBytes())
        arr = np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine())
        assert arr.std() > 5
