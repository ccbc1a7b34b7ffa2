"""Screenshots of every dock for the user guide (run under Xvfb).

    xvfb-run -a python scripts/make_screenshots.py            # efficientnet_lite0 embeddings
    xvfb-run -a python scripts/make_screenshots.py --fast     # patch statistics (seconds)

Opens the synthetic sample (File > Open Sample), prepares it, pre-trains the policy for a few
episodes, sequences one round (simulated), trains a small SCR2Net, inspects a spot, shows the
maps and exports the next round; after each step it saves the whole window (canvas + the dock
of that step) to ``docs/screenshots/``; last, the workflow dock with the state of every step.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--fast", action="store_true", help="patch-statistics embedding instead of efficientnet_lite0")
    ap.add_argument("--spots", type=int, default=2000)
    ap.add_argument("--episodes", type=int, default=12, help="policy pre-training episodes")
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args(argv)
    os.environ["SCR2ST_SYNC_WORKERS"] = "1"  # deterministic order of steps
    # a throw-away napari settings file: the changes below must not touch the user's settings
    os.environ["NAPARI_CONFIG"] = str(Path(tempfile.mkdtemp(prefix="scr2st-shots-")) / "settings.yaml")
    os.environ["SCR2ST_SAMPLE_SPOTS"] = str(args.spots)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import napari
    import numpy as np
    from napari.settings import get_settings
    from qtpy.QtWidgets import QApplication

    get_settings().application.gui_notification_level = "error"  # no info toasts over the canvas
    encoder = "patch-stats" if args.fast else "efficientnet_lite0"
    t0 = time.perf_counter()
    viewer = napari.Viewer(show=True, title="napari-scr2st")
    qt_window = viewer.window._qt_window  # screenshots only: a fixed window size
    qt_window.resize(1500, 950)
    viewer.open_sample("napari-scr2st", "synthetic")
    viewer.layers["SYN1 spots"].opacity = 0.5

    docks = {}

    def dock(name):
        if name not in docks:
            dw, w = viewer.window.add_plugin_dock_widget("napari-scr2st", name, tabify=False)
            docks[name] = (dw, w)
        for n, (dw, _) in docks.items():
            dw.setVisible(n == name)
        return docks[name][1]

    def shot(fname, note=""):
        viewer.reset_view()
        for _ in range(5):
            QApplication.processEvents()
            time.sleep(0.05)
        img = viewer.screenshot(canvas_only=False, flash=False)
        from PIL import Image

        Image.fromarray(img).save(out / fname)
        print(f"{fname}: {img.shape[1]}x{img.shape[0]} {note} ({time.perf_counter() - t0:.0f} s)")

    sampling = dock("Spot sampling")
    sampling.encoder_combo.setCurrentText(encoder)
    sampling.budget_unit.setCurrentText("%")
    sampling.budget_spin.setValue(30)
    sampling.rounds_spin.setValue(2)
    sampling.prepare()
    s = sampling.session
    if not s.is_prepared:
        print("preparing failed:", sampling.status.text(), file=sys.stderr)
        return 1
    if args.episodes:
        sampling.pretrain(args.episodes)
    sampling.set_weights(w_sc=1.0, w_type=1.5, w_sp=2.0)
    sampling.reselect()
    # one manual pick and one exclusion region, to show both
    unpicked = np.flatnonzero(~s.preview.state.selected & ~s.excluded)
    sampling.toggle_pick(int(unpicked[len(unpicked) // 3]))
    from napari_scr2st.layers import spot_yx

    yx = spot_yx(s.adata)
    lo, hi = yx.min(0), yx.max(0)
    h = (hi - lo) * 0.18
    rect = np.array([[hi[0] - h[0], lo[1]], [hi[0] - h[0], lo[1] + h[1]], [hi[0], lo[1] + h[1]], [hi[0], lo[1]]])
    viewer.layers["SYN1 exclude ROI"].add_rectangles(rect)
    sampling.update_rois()
    viewer.layers.selection.active = viewer.layers["SYN1 spots"]
    shot("sampling_dock.png", "proposal of round 1")

    sampling.sequence_round()
    training = dock("Train SCR2Net")
    training.backbone_combo.setCurrentText(s.vision_model if s.vision_model == encoder else encoder)
    training.epochs_spin.setValue(args.epochs)
    training.device_combo.setCurrentText("auto")
    training.extra_config = {"n_genes": 100, "batch_size": 32}
    training.start()
    if s.predictor is None:
        print("training failed:", training.status.text(), file=sys.stderr)
        return 1
    maps = dock("Expression and cell-type maps")
    gene = "ERBB2" if "ERBB2" in s.predictions.columns else s.gene
    maps.gene_combo.setCurrentText(gene)
    expr = maps.show_expression(gene)  # "SYN1 · <gene> · predicted"
    for name in ("SYN1 selected", "SYN1 spots"):
        viewer.layers[name].visible = False
    viewer.layers["SYN1 H&E"].opacity = 0.35
    expr.opacity = 1.0
    dock("Train SCR2Net")
    shot("training_dock.png", f"expression map of {gene}")

    maps = dock("Expression and cell-type maps")
    expr.visible = False
    ct = maps.show_cell_types()
    ct.opacity = 1.0
    shot("maps_dock.png", "cell types with legend")
    viewer.layers["SYN1 cell types"].visible = False
    viewer.layers["SYN1 H&E"].opacity = 1.0
    viewer.layers["SYN1 selected"].visible = True

    inspector = dock("Retrieval inspector")
    q = int(np.flatnonzero(~s.committed.measured & ~s.excluded)[len(s.adata) // 7])
    inspector.gene_combo.setCurrentText(gene)
    inspector.inspect(q)
    expr.visible = True
    shot("inspector_dock.png", f"spot {s.adata.obs_names[q]}")
    expr.visible = False

    viewer.layers["SYN1 spots"].visible = True
    export = dock("Export and import")
    with tempfile.TemporaryDirectory() as tmp:
        export.export_csv(Path(tmp) / "SYN1_to_sequence.csv")
    shot("export_dock.png", "round 2 sent for sequencing")

    # the main dock: every step's state after the run above (round 2 waits for the lab's counts)
    dock("SCR2-ST workflow")
    shot("workflow_dock.png", "the seven steps, step 6 current")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
