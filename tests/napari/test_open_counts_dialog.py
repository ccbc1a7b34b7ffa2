"""File > Open on a legacy ST counts table whose spot file and image have unrelated names: a dialog
asks for them (the napari counterpart of --spots / --image); Cancel adds nothing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("napari")


def _tissue_image(h: int, w: int) -> np.ndarray:
    spec = importlib.util.spec_from_file_location("_slides", Path(__file__).parents[1] / "io" / "_slides.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.tissue_image(h, w, box=(0.05, 0.05, 0.95, 0.95))


def _unpaired_counts(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A 4 x 5 legacy ST section (one spot not under tissue) in files whose names do not pair."""
    from PIL import Image

    xs, ys = np.meshgrid(np.arange(2, 7), np.arange(2, 6))
    xs, ys = xs.ravel(), ys.ravel()
    ids = [f"{x}x{y}" for x, y in zip(xs, ys, strict=True)]
    counts = pd.DataFrame(np.random.default_rng(0).poisson(5, size=(len(ids), 8)), index=ids,
                          columns=[f"G{i}" for i in range(8)])
    (tmp_path / "counts").mkdir()
    (tmp_path / "coords").mkdir()
    counts_p = tmp_path / "counts" / "run7.tsv"
    counts.to_csv(counts_p, sep="\t")
    selected = np.ones(len(ids), dtype=int)
    selected[0] = 0
    spots_p = tmp_path / "coords" / "alignment_final.tsv"
    pd.DataFrame({"x": xs, "y": ys, "new_x": xs, "new_y": ys, "pixel_x": xs * 60.0, "pixel_y": ys * 60.0,
                  "selected": selected}).to_csv(spots_p, sep="\t", index=False)
    image_p = tmp_path / "coords" / "scan_0042.jpg"
    Image.fromarray(_tissue_image(420, 480)).save(image_p)
    return counts_p, spots_p, image_p


def test_dialog_asks_for_spots_and_image_then_adds_the_layers(make_napari_viewer, tmp_path, sync_workers, qtbot):
    from qtpy.QtCore import Qt

    from napari_scr2st._napari._counts_dialog import CountsCompanionsDialog
    from napari_scr2st._napari._open_dialog import pending_dialogs

    counts_p, spots_p, image_p = _unpaired_counts(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(counts_p), plugin="napari-scr2st")
    assert len(viewer.layers) == 0  # nothing read until the spot file is given
    (dlg,) = pending_dialogs()
    assert isinstance(dlg, CountsCompanionsDialog)
    assert dlg.spots_edit.text() == "" and dlg.image_edit.text() == "" and not dlg.ok_button.isEnabled()
    dlg.accept()  # refused without a spot file
    assert pending_dialogs() == [dlg]
    dlg.spots_edit.setText(str(spots_p))
    dlg.image_edit.setText(str(image_p))
    assert dlg.ok_button.isEnabled()
    assert dlg.options() == {"spots": str(spots_p), "image": str(image_p)}
    qtbot.mouseClick(dlg.ok_button, Qt.MouseButton.LeftButton)
    assert pending_dialogs() == []
    assert [ly.name for ly in viewer.layers] == ["run7 H&E", "run7 spots"]
    spots = viewer.layers["run7 spots"]
    adata = spots.metadata["adata"]
    assert len(spots.data) == adata.n_obs == 19 and adata.n_vars == 8  # the unselected spot dropped
    assert viewer.layers["run7 H&E"].data.shape[:2] == (420, 480)


def test_found_spot_file_is_prefilled_and_the_image_stays_optional(make_napari_viewer, tmp_path, sync_workers,
                                                                    qtbot):
    from napari_scr2st._napari._open_dialog import pending_dialogs

    counts_p, spots_p, _ = _unpaired_counts(tmp_path)
    paired = counts_p.parent / "run7_selection.tsv"
    paired.write_bytes(spots_p.read_bytes())
    viewer = make_napari_viewer()
    viewer.open(str(counts_p), plugin="napari-scr2st")
    (dlg,) = pending_dialogs()  # the image was not found: asked for, not required
    assert dlg.spots_edit.text() == str(paired) and dlg.ok_button.isEnabled()
    assert dlg.options() == {"spots": str(paired)}
    dlg.accept()
    assert [ly.name for ly in viewer.layers] == ["run7 spots"]
    assert len(viewer.layers["run7 spots"].data) == 19


def test_cancel_adds_nothing_and_says_what_was_missing(make_napari_viewer, tmp_path, monkeypatch):
    from napari_scr2st._napari import _counts_dialog
    from napari_scr2st._napari._open_dialog import pending_dialogs

    said = []
    monkeypatch.setattr(_counts_dialog.W, "notify_info", said.append)
    counts_p, _, _ = _unpaired_counts(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(counts_p), plugin="napari-scr2st")
    (dlg,) = pending_dialogs()
    dlg.reject()
    assert pending_dialogs() == [] and len(viewer.layers) == 0
    assert len(said) == 1 and "run7.tsv" in said[0] and "no spot file and no H&E image" in said[0]
