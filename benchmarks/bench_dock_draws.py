"""How many full matplotlib draws opening the sampling and training docks costs, at which
canvas sizes, and how long each takes (run under Xvfb):

    xvfb-run -a python benchmarks/bench_dock_draws.py --spots 1000

A draw at a size the dock does not keep (before it is laid out) is wasted work on the UI thread.
"""

from __future__ import annotations

import argparse
import os
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spots", type=int, default=1000)
    ap.add_argument("--settle-s", type=float, default=0.6, help="event-loop time after each dock opens")
    args = ap.parse_args(argv)
    os.environ.setdefault("SCR2ST_SYNC_WORKERS", "1")
    import napari
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from qtpy.QtWidgets import QApplication

    from napari_scr2st._napari._sampling_widget import SamplingWidget
    from napari_scr2st._napari._training_widget import TrainingWidget
    from napari_scr2st.data import make_sample
    from napari_scr2st.layers import section_layers

    draws: list[tuple[tuple[int, int], float]] = []
    real = FigureCanvasAgg.draw

    def timed_draw(self, *a, **k):
        t0 = time.perf_counter()
        out = real(self, *a, **k)
        draws.append((self.get_width_height(), (time.perf_counter() - t0) * 1000))
        return out

    FigureCanvasAgg.draw = timed_draw

    def settle(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            QApplication.processEvents()
            time.sleep(0.01)

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    for data, kw, kind in section_layers(make_sample(n_spots=args.spots, seed=0).section.copy()):
        getattr(viewer, f"add_{kind}")(data, **kw)
    settle(args.settle_s)
    for cls in (SamplingWidget, TrainingWidget):
        draws.clear()
        w = cls(viewer)
        viewer.window.add_dock_widget(w, name=cls.__name__, area="right")
        settle(args.settle_s)
        sizes = ", ".join(f"{wh[0]}x{wh[1]} px {ms:.0f} ms" for wh, ms in draws)
        print(f"{cls.__name__}: {len(draws)} full draws ({sum(ms for _, ms in draws):.0f} ms): {sizes}")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
