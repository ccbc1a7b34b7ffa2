"""The GUI-thread floor of napari itself: the longest UI stall of the elementary viewer
operations the plugin's steps are made of, with NO plugin code (run under Xvfb).

Measured exactly as ``bench_gui.py`` measures the plugin (its 10 ms heartbeat, its stall
definition, the canvas's paints timed apart), in one 1600 x 1000 viewer that holds what a
5,000-spot section shows (an RGB H&E image and a Points layer of 5,000 spots), each operation
timed from its call until the canvas has drawn the result:

- ``add_points``: a new Points layer of 5,000 spots with per-spot colours (a map: predictions,
  measured values, cell types);
- ``recolour``: new per-spot colours on that layer (what a re-selection does);
- ``remove_layer``: removing it again;
- ``add_image``: a new 2,000 x 2,000 RGB image layer (a section's H&E);
- ``progress``: a ``napari.utils.progress`` bar (the activity dock) updated 20 times while the
  event loop runs, as a worker's progress does;
- ``dock``: a dock widget of ten labelled spin boxes added to the window;
- ``repaint``: one repaint of the canvas with nothing changed.

If an operation's stall is above 100 ms here, a plugin step that needs it cannot meet "no stall
> 100 ms" on this machine, whatever the plugin does around it.

    xvfb-run -a python benchmarks/bench_napari_floor.py --repeats 3 [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gui import STALL_TARGET_MS, DrawWatch, Heartbeat, step, wait_until  # noqa: E402

N_SPOTS = 5000


def _settle(ms: float = 300.0) -> None:
    t = time.perf_counter() + ms / 1000
    wait_until(lambda: time.perf_counter() > t, 5.0)


def run(repeats: int) -> dict[str, list[dict]]:
    import napari
    import numpy as np
    from qtpy.QtWidgets import QFormLayout, QSpinBox, QWidget

    rng = np.random.default_rng(0)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    side = int(np.ceil(np.sqrt(N_SPOTS)))
    yx = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)[:N_SPOTS]
    coords = 30.0 + 36.0 * yx.astype(float)
    he = rng.integers(0, 255, (2000, 2000, 3), dtype=np.uint8)
    viewer.add_image(he, name="H&E", rgb=True, scale=(side * 36 / 2000,) * 2)
    viewer.add_points(coords, size=30, face_color="gray", name="spots")
    hb = Heartbeat()
    draw = DrawWatch(viewer, hb)
    _settle(800)
    hb.start()

    def colours():
        return np.concatenate([rng.random((N_SPOTS, 3)), np.ones((N_SPOTS, 1))], axis=1)

    def ops(k: int):
        made = {}

        def add_points():
            made["pts"] = viewer.add_points(coords, size=30, face_color=colours(), name=f"map {k}")

        def recolour():
            made["pts"].face_color = colours()

        def remove_layer():
            viewer.layers.remove(made["pts"])

        def add_image():
            made["img"] = viewer.add_image(he, name=f"H&E {k}", rgb=True, scale=(side * 36 / 2000,) * 2)

        def progress():
            from napari.utils import progress as napari_progress

            bar = napari_progress(total=20, desc=f"work {k}")
            made["bar"], made["n"] = bar, 0

        def progress_done():
            if made["n"] < 20:
                made["bar"].update(1)
                made["n"] += 1
                _settle(25)
                return False
            made["bar"].close()
            return True

        def dock():
            w = QWidget()
            form = QFormLayout(w)
            for i in range(10):
                form.addRow(f"setting {i}", QSpinBox())
            made["dock"] = viewer.window.add_dock_widget(w, name=f"dock {k}")

        def repaint():
            viewer.window._qt_viewer.canvas._scene_canvas.update()

        return [("add_points", add_points, lambda: True), ("recolour", recolour, lambda: True),
                ("remove_layer", remove_layer, lambda: True), ("add_image", add_image, lambda: True),
                ("progress", progress, progress_done), ("dock", dock, lambda: True),
                ("repaint", repaint, lambda: True)], made

    out: dict[str, list[dict]] = {}
    for k in range(repeats):
        steps, made = ops(k)
        for name, start, done in steps:
            key = f"{name}#{k}"
            step(hb, draw, key, start, done)
            _settle()
        viewer.layers.remove(made["img"])
        viewer.window.remove_dock_widget(made["dock"])
        _settle()
    rep = hb.report(draw.paints)
    for key, r in rep.items():
        out.setdefault(key.split("#")[0], []).append(r)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="times each operation is run (in one viewer)")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the per-repeat stalls (ms) here")
    args = ap.parse_args(argv)
    os.environ.setdefault("NAPARI_ASYNC", "0")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"pure napari, {N_SPOTS} spots, {args.repeats} repeats")
    res = run(args.repeats)
    print("longest UI stall per operation, ms, each repeat (without the canvas's paints in brackets):")
    for name, rs in res.items():
        cells = " / ".join(f"{r['stall_ms_max']:.0f} ({r['stall_ms_max_without_paints']:.0f})" for r in rs)
        best = min(r["stall_ms_max"] for r in rs)
        med = statistics.median(r["stall_ms_max"] for r in rs)
        flag = f"  > {STALL_TARGET_MS:.0f} ms in every repeat" if best > STALL_TARGET_MS else ""
        print(f"  {name:13s} {cells}; median {med:.0f}{flag}")
    if args.json:
        meta = {"cpus": os.cpu_count(), "load_average": os.getloadavg()[0], "spots": N_SPOTS,
                "repeats": args.repeats}
        Path(args.json).write_text(json.dumps({"machine": meta, "operations": res}, indent=1))
        print(f"written {args.json}")
    sys.stdout.flush()
    os._exit(0)  # no teardown: the numbers are printed


if __name__ == "__main__":
    raise SystemExit(main())
