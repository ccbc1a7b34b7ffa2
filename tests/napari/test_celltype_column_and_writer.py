"""The sampling dock's cell-type column, and the npe2 writer of a section's selection."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("napari")


def _reference_with_columns(reference):
    """The sample's reference plus a finer cell-type column and a batch column."""
    ref = reference.copy()
    major = ref.obs["celltype_major"].astype(str).to_numpy()
    half = np.arange(ref.n_obs) % 2
    ref.obs["celltype_minor"] = pd.Categorical([f"{m} {'ab'[h]}" for m, h in zip(major, half, strict=True)])
    ref.obs["batch"] = pd.Categorical(np.where(half == 0, "run1", "run2"))
    return ref


def test_sampling_dock_offers_and_uses_the_celltype_column(make_napari_viewer, small_sample, sync_workers, qtbot):
    from napari_scr2st._napari._sampling_widget import SamplingWidget
    from napari_scr2st.layers import section_layers

    viewer = make_napari_viewer()
    ref = _reference_with_columns(small_sample.reference)
    layers = section_layers(small_sample.section.copy())
    layers[-1][1]["metadata"]["reference"] = ref
    for data, kw, kind in layers:
        getattr(viewer, f"add_{kind}")(data, **kw)
    w = SamplingWidget(viewer)
    qtbot.addWidget(w)
    combo = w.celltype_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["celltype_major", "celltype_minor", "batch"]
    assert combo.currentText() == "celltype_major" and combo.isEnabled()
    s = w.session
    assert s.celltype_key == "celltype_major"
    w.set_celltype_column("celltype_minor")
    assert s.celltype_key == "celltype_minor"
    with pytest.raises(ValueError, match="candidates"):
        w.set_celltype_column("nope")
    w.encoder_combo.setCurrentText("patch-stats")
    w.budget_spin.setValue(20)
    w.prepare()
    assert s.is_prepared, w.status.text()
    assert s.space.meta["celltype_key"] == "celltype_minor"
    assert sorted(s.space.celltypes) == sorted(ref.obs["celltype_minor"].cat.categories)
    # choosing another column forgets the fitted space: Prepare refits it
    w.set_celltype_column("celltype_major")
    assert s.space is None and "Prepare" in w.status.text()


def _selection_layer(viewer, w):
    from napari_scr2st.layers import layer_name

    return viewer.layers[layer_name(w.session.library, "selected")]


def test_writer_saves_the_selection_through_the_session(make_napari_viewer, small_sample, sync_workers, helpers,
                                                       tmp_path):
    from napari_scr2st._napari._writer import write_selection
    from napari_scr2st.io.export import SELECTION_COLUMNS

    viewer = make_napari_viewer()
    w, _ = helpers.prepared_sampling(viewer, small_sample, budget=20, rounds=2)
    s = w.session
    sel = _selection_layer(viewer, w)
    shown = set(sel.features["spot_id"])
    assert shown
    data, attrs, kind = sel.as_layer_data_tuple()
    assert kind == "points"
    out = tmp_path / "to_sequence.csv"
    assert write_selection(str(out), data, attrs) == [str(out)]
    df = pd.read_csv(out)
    assert list(df.columns[: len(SELECTION_COLUMNS)]) == SELECTION_COLUMNS
    assert set(df["spot_id"].astype(str)) == shown  # the shown proposal, now sent for sequencing
    assert (tmp_path / "to_sequence.scr2st-state.npz").is_file()
    assert s.waiting_for_counts and int(s.committed.pending.sum()) == len(df)
    # GeoJSON by extension, through napari's File > Save Layers path
    viewer.layers.selection = {sel}
    gj = tmp_path / "to_sequence.geojson"
    written = viewer.layers.save(str(gj), selected=True, plugin="napari-scr2st")
    assert written == [str(gj)]
    feats = json.loads(gj.read_text())["features"]
    assert len(feats) == len(df)


def test_writer_refuses_a_layer_without_a_prepared_section(make_napari_viewer, small_sample, helpers, tmp_path):
    from napari_scr2st._napari._writer import write_selection

    viewer = make_napari_viewer()
    spots = helpers.add_section(viewer, small_sample)
    with pytest.raises(ValueError, match="Prepare section"):
        write_selection(str(tmp_path / "x.csv"), spots.data, spots.as_layer_data_tuple()[1])
    assert not (tmp_path / "x.csv").exists()


def test_manifest_contributes_the_writer_and_image_patterns():
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-scr2st")
    (writer,) = pm.contributions.writers
    assert writer.command == "napari-scr2st.write_selection"
    assert [str(t) for t in writer.layer_types] == ["points"]
    assert set(writer.filename_extensions) == {".csv", ".geojson"}
    (reader,) = pm.contributions.readers
    assert {"*.tif", "*.tiff", "*.svs", "*.ndpi", "*.jpg", "*.jpeg", "*.png", "*.zarr"} <= set(reader.filename_patterns)
    pm.validate_imports()
