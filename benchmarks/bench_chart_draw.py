"""A full matplotlib draw of the sampling dock's reward chart, with the constrained layout
computed on every draw and with it kept from the last layout (``make_canvas(freeze_layout=True)``),
side by side in one run (run under Xvfb):

    xvfb-run -a python benchmarks/bench_chart_draw.py --repeats 20

The chart's bars are blitted on a slider move; a full draw happens on its first show, after a
resize of the dock area (a dock opened or closed) and on a theme change, on the UI thread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    os.environ["SCR2ST_SYNC_WORKERS"] = "1"
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_scr2st._napari._sampling_widget import SamplingWidget

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open_sample("napari-scr2st", "synthetic")
    w = SamplingWidget(viewer)
    viewer.window.add_dock_widget(w, name="Spot sampling")
    w.encoder_combo.setCurrentText("patch-stats")
    w.prepare()
    QApplication.instance().processEvents()
    canvas, fig = w.chart, w.chart.figure
    times = {"layout every draw": [], "layout kept": []}
    shots = {}
    for _ in range(args.repeats):  # interleaved
        for name in times:
            fig.set_layout_engine("constrained")
            if name == "layout kept":
                canvas.draw()  # the layout pass, then frozen (draw_event)
            t = time.perf_counter()
            canvas.draw()
            times[name].append((time.perf_counter() - t) * 1000)
            shots[name] = np.asarray(canvas.buffer_rgba()).copy()
    same = np.array_equal(*shots.values())
    for name, v in times.items():
        print(f"  {name:18s} median {statistics.median(v):6.1f} ms (min {min(v):.1f}, max {max(v):.1f})")
    a, b = (statistics.median(v) for v in times.values())
    print(f"  ratio {a / b:.2f}x; the same pixels: {same}")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
