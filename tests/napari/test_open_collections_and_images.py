"""File > Open on a collection (a section chooser, nothing read until a section is chosen) and on
an H&E image before sequencing (the image at once, then the platform/scale dialog lays spots)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("napari")


def _click(qtbot, button) -> None:
    from qtpy.QtCore import Qt

    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def _slides():
    spec = importlib.util.spec_from_file_location("_slides", Path(__file__).parents[1] / "io" / "_slides.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_her2st(root: Path, sections=("A1", "B1", "C3"), imaged="C3") -> Path:
    """A her2st-layout folder: 4 x 5 spots of 12 genes per section, one section with an image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "data" / "ST-cnts").mkdir(parents=True)
    (root / "data" / "ST-spotfiles").mkdir(parents=True)
    xs, ys = np.meshgrid(np.arange(2, 7), np.arange(2, 6))
    xs, ys = xs.ravel(), ys.ravel()
    ids = [f"{x}x{y}" for x, y in zip(xs, ys, strict=True)]
    for s in sections:
        counts = pd.DataFrame(rng.poisson(5, size=(len(ids), 12)), index=ids, columns=[f"G{i}" for i in range(12)])
        counts.to_csv(root / "data" / "ST-cnts" / f"{s}.tsv.gz", sep="\t")
        spots = pd.DataFrame({"x": xs, "y": ys, "new_x": xs, "new_y": ys, "pixel_x": xs * 60.0, "pixel_y": ys * 60.0,
                              "selected": 1})
        spots.to_csv(root / "data" / "ST-spotfiles" / f"{s}_selection.tsv", sep="\t", index=False)
    img_dir = root / "data" / "ST-imgs" / imaged[0] / imaged
    img_dir.mkdir(parents=True)
    Image.fromarray(_slides().tissue_image(420, 480, box=(0.1, 0.1, 0.9, 0.9))).save(img_dir / "HE_x.jpg")
    return root


def _chooser(viewer):
    from napari_scr2st._napari._section_chooser import SectionChooser

    found = [w for w in viewer.window.dock_widgets.values() if isinstance(w, SectionChooser)]
    assert len(found) == 1, list(viewer.window.dock_widgets)
    return found[0]


def test_her2st_folder_opens_a_chooser_and_only_the_chosen_section(make_napari_viewer, tmp_path, sync_workers,
                                                                    qtbot):
    from napari_scr2st.data.images import (
        _decode_pil_cached as _read_image_cached,  # images are decoded here
    )

    root = _fake_her2st(tmp_path / "her2st")
    viewer = make_napari_viewer()
    _read_image_cached.cache_clear()
    viewer.open(str(root), plugin="napari-scr2st")
    assert len(viewer.layers) == 0  # nothing read: no section layers until one is chosen
    assert _read_image_cached.cache_info().misses == 0
    w = _chooser(viewer)
    assert w.section_ids == ["A1", "B1", "C3"]
    assert not w.open_btn.isEnabled()
    w.set_checked(["C3"])
    assert w.open_btn.isEnabled()
    _click(qtbot, w.open_btn)
    assert [ly.name for ly in viewer.layers] == ["C3 H&E", "C3 spots"]
    spots = viewer.layers["C3 spots"]
    assert len(spots.data) == 20 and spots.metadata["adata"].n_vars == 12
    assert _read_image_cached.cache_info().misses == 1  # the image was decoded once
    assert w.opened == ["C3"]
    with pytest.raises(KeyError, match="Z9"):
        w.set_checked(["Z9"])


def test_real_her2st_root_lists_sections_without_reading(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    viewer.open(str(shared_data / "her2st"), plugin="napari-scr2st")
    assert len(viewer.layers) == 0
    ids = _chooser(viewer).section_ids
    assert len(ids) == 36 and {"A1", "C3", "H3"} <= set(ids)
    viewer.open(str(shared_data / "her2st"), plugin="napari-scr2st")  # again: one chooser, not two
    assert _chooser(viewer).section_ids == ids


def test_folder_of_sections_lists_its_entries(tmp_path):
    from napari_scr2st._napari._reader import collection_openers, get_reader, read_collection_lazily
    from napari_scr2st.data import make_sample
    from napari_scr2st.io import write_h5ad_section

    folder = tmp_path / "runs"
    folder.mkdir()
    for name in ("s1", "s2"):
        a = make_sample(n_spots=60, seed=1).section
        write_h5ad_section(a, folder / f"{name}.h5ad")
    (folder / "notes.txt").write_text("not a section")
    assert get_reader(str(folder)) is read_collection_lazily
    assert sorted(collection_openers(folder)) == ["s1.h5ad", "s2.h5ad"]
    (folder / "s2.h5ad").unlink()  # one section: read at once, no chooser
    layers = read_collection_lazily(str(folder))
    assert [kind for _, _, kind in layers] == ["image", "points"]


def test_open_image_shows_it_then_the_dialog_lays_spots(make_napari_viewer, tmp_path, sync_workers, qtbot):
    from napari_scr2st._napari._open_dialog import pending_dialogs

    S = _slides()
    path = tmp_path / "slide.ome.tif"
    S.write_ome_pyramid(path, S.tissue_image(1024, 1536, seed=1), um_per_px=2.0, n_sub=2)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-scr2st")
    assert [ly.name for ly in viewer.layers] == ["slide H&E"]
    image = viewer.layers["slide H&E"]
    assert image.multiscale and image.level_shapes.tolist() == [[1024, 1536], [512, 768], [256, 384]]
    (dlg,) = pending_dialogs()
    assert dlg.scale_spin.value() == pytest.approx(2.0) and dlg.ok_button.isEnabled()
    dlg.set_platform("legacy_st")
    assert dlg.options() == {"platform": "legacy_st", "um_per_px": 2.0}
    _click(qtbot, dlg.ok_button)
    assert pending_dialogs() == []
    spots = viewer.layers["slide spots"]
    adata = spots.metadata["adata"]
    meta = adata.uns["spatial"]["slide"]["metadata"]
    assert meta["platform"] == "legacy_st" and meta["um_per_px_source"] == "argument"
    assert len(spots.data) == adata.n_obs > 10 and adata.n_vars == 0
    assert np.allclose(spots.size, 100.0 / 2.0)  # 100 um spots at 2 um per pixel


def test_image_without_scale_needs_it_before_spots(make_napari_viewer, tmp_path, sync_workers, qtbot):
    from PIL import Image

    from napari_scr2st._napari._open_dialog import pending_dialogs

    path = tmp_path / "he.png"
    Image.fromarray(_slides().tissue_image(400, 600, seed=4)).save(path)  # no dpi: no scale
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-scr2st")
    (dlg,) = pending_dialogs()
    assert dlg.scale_spin.value() == 0 and not dlg.ok_button.isEnabled()
    dlg.accept()  # refused without a scale
    assert pending_dialogs() == [dlg] and "he spots" not in viewer.layers
    dlg.set_platform("custom")
    dlg.spot_spin.setValue(30.0)
    dlg.pitch_spin.setValue(60.0)
    dlg.hex_check.setChecked(True)
    dlg.scale_spin.setValue(1.5)
    assert dlg.ok_button.isEnabled()
    _click(qtbot, dlg.ok_button)
    spots = viewer.layers["he spots"]
    assert np.allclose(spots.size, 30.0 / 1.5)
    meta = spots.metadata["adata"].uns["spatial"]["he"]["metadata"]
    assert meta["hexagonal"] is True and meta["pitch_um"] == 60.0


def test_cancelled_dialog_keeps_only_the_image(make_napari_viewer, tmp_path):
    from PIL import Image

    from napari_scr2st._napari._open_dialog import pending_dialogs

    path = tmp_path / "he.jpg"
    Image.fromarray(_slides().tissue_image(300, 300, seed=5)).save(path)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-scr2st")
    (dlg,) = pending_dialogs()
    dlg.reject()
    assert pending_dialogs() == [] and [ly.name for ly in viewer.layers] == ["he H&E"]


def test_chosen_section_is_read_in_a_thread(make_napari_viewer, tmp_path, qtbot):
    """Without SCR2ST_SYNC_WORKERS the section is read in a napari thread worker."""
    import threading

    root = _fake_her2st(tmp_path / "her2st")
    viewer = make_napari_viewer()
    viewer.open(str(root), plugin="napari-scr2st")
    w = _chooser(viewer)
    readers = []
    opener = w.openers["A1"]
    w.openers["A1"] = lambda: readers.append(threading.current_thread()) or opener()
    w.set_checked(["A1"])
    worker = w.open_checked()
    qtbot.waitUntil(lambda: "A1 spots" in viewer.layers and w.worker is None, timeout=30_000)
    assert worker is not None and readers and readers[0] is not threading.main_thread()
    assert [ly.name for ly in viewer.layers] == ["A1 spots"]  # A1 has no image
