"""What napari itself costs for the first layer of a session (no plugin code involved).

A fresh viewer, then an empty Points layer added in the GUI thread, as napari does with the
placeholder a sample function returns. Printed in ms, per run: ``cold`` (pandas and pint's unit
registry not yet loaded, as in a new session) and ``warm`` (both loaded beforehand, their cost
printed apart); then a second layer for comparison. Each run is a new process (a viewer's
first layer happens once).

    xvfb-run -a python benchmarks/bench_napari_first_layer.py --runs 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def one(mode: str) -> str:
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    for _ in range(30):  # let the window settle
        app.processEvents()
        time.sleep(0.02)
    t0 = time.perf_counter()
    if mode == "warm":
        import pandas  # noqa: F401
        import pint

        pint.get_application_registry().pixel  # noqa: B018 - builds the lazy registry
    t1 = time.perf_counter()
    viewer.add_points(np.zeros((0, 2)), name="first")
    t2 = time.perf_counter()
    app.processEvents()
    t3 = time.perf_counter()
    viewer.add_points(np.zeros((0, 2)), name="second")
    t4 = time.perf_counter()
    return (f"{mode:4s}: pandas+pint {1000 * (t1 - t0):5.0f} ms, first layer {1000 * (t2 - t1):5.0f} ms, "
            f"events after it {1000 * (t3 - t2):4.0f} ms, second layer {1000 * (t4 - t3):4.0f} ms")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2, help="runs of each mode (cold, warm), alternating")
    ap.add_argument("--one", choices=["cold", "warm"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(one(args.one), flush=True)
        os._exit(0)  # no teardown: the numbers are printed
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for _ in range(args.runs):
        for mode in ("cold", "warm"):
            out = subprocess.run([sys.executable, __file__, "--one", mode], capture_output=True, text=True)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith(mode)]
            print(lines[0] if lines else f"{mode}: failed (rc {out.returncode}): {out.stderr.strip()[-300:]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
