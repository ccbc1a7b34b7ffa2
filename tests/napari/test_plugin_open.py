"""napari under Xvfb: the plugin's sample data and reader render real tissue."""

import numpy as np
import pytest

pytest.importorskip("napari")


def _assert_tissue_visible(viewer):
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot.shape[0] > 100 and shot.shape[1] > 100
    rgb = shot[..., :3].astype(float)
    assert rgb.std() > 10, "screenshot is uniform"
    # H&E tissue is pink/purple: red and blue well above green somewhere in the picture
    pinkish = ((rgb[..., 0] - rgb[..., 1]) > 25) & ((rgb[..., 2] - rgb[..., 1]) > 10)
    assert pinkish.mean() > 0.05, f"no tissue-coloured pixels ({pinkish.mean():.3f})"
    return shot


def test_open_synthetic_sample_through_the_plugin(make_napari_viewer, sync_workers):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-scr2st", "synthetic")
    names = [layer.name for layer in viewer.layers]
    assert "SYN1 H&E" in names and "SYN1 spots" in names
    spots = viewer.layers["SYN1 spots"]
    adata = spots.metadata["adata"]
    assert len(spots.data) == adata.n_obs
    assert np.allclose(spots.size, adata.uns["spatial"]["SYN1"]["scalefactors"]["spot_diameter_fullres"])
    assert {"spot_id", "total_counts"} <= set(spots.features.columns)
    viewer.reset_view()
    _assert_tissue_visible(viewer)


def test_open_her2st_section_through_the_reader(make_napari_viewer, shared_data, sync_workers):
    viewer = make_napari_viewer(show=True)
    path = shared_data / "her2st" / "data" / "ST-cnts" / "C3.tsv.gz"
    layers = viewer.open(str(path), plugin="napari-scr2st")
    names = [layer.name for layer in layers]
    assert any(n.endswith("H&E") for n in names), names
    spots = next(layer for layer in layers if layer.name.endswith("spots"))
    assert len(spots.data) == 180
    assert 120 < float(np.mean(spots.size)) < 170
    viewer.reset_view()
    _assert_tissue_visible(viewer)


def test_her2st_sample_entry_reads_a_local_copy(make_napari_viewer, shared_data, monkeypatch, sync_workers):
    """The real-data sample reads SCR2ST_HER2ST_ROOT (here ../shared/data/her2st stands in for
    the download)."""
    monkeypatch.setenv("SCR2ST_HER2ST_ROOT", str(shared_data / "her2st"))
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-scr2st", "her2st_c3")
    assert "C3 spots" in [layer.name for layer in viewer.layers]
    assert len(viewer.layers["C3 spots"].data) == 180
    viewer.reset_view()
    _assert_tissue_visible(viewer)
