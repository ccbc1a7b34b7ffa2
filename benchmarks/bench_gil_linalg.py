"""How long a worker's dense linear algebra keeps the UI (main) thread from running: SciPy's
LAPACK wrappers against ``napari_scr2st.sampling._linalg``, side by side in one run.

A worker thread runs each operation ``--calls`` times on a conditioning set of ``--n`` spots
(the reward's ``r_unc`` and the GP sampler: a Cholesky factor, then ``L^-1 K`` over ``--m``
anchors) while the main thread sleeps in 5 ms steps, as the napari event loop's heartbeat
would; printed: the longest and the median gap the main thread saw beyond its 5 ms, and the
worker's wall time.

    python benchmarks/bench_gil_linalg.py --n 1500 --m 2048
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
from scipy.linalg import cholesky, solve_triangular  # noqa: E402

from napari_scr2st.sampling._linalg import cholesky_lower, solve_lower  # noqa: E402


def measure(fn, calls: int) -> tuple[float, float, float]:
    gaps: list[float] = []
    t = threading.Thread(target=lambda: [fn() for _ in range(calls)])
    t0 = last = time.perf_counter()
    t.start()
    while t.is_alive():
        time.sleep(0.005)
        now = time.perf_counter()
        gaps.append(max(0.0, now - last - 0.005))
        last = now
    wall = time.perf_counter() - t0
    return 1000 * max(gaps, default=0.0), 1000 * statistics.median(gaps or [0.0]), wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1500, help="conditioning spots (the Cholesky's size)")
    ap.add_argument("--m", type=int, default=2048, help="right-hand columns (anchors)")
    ap.add_argument("--calls", type=int, default=4)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(args.n, args.n))
    a = a @ a.T / args.n + np.eye(args.n)
    b = rng.normal(size=(args.n, args.m))
    L = np.linalg.cholesky(a)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; n={args.n}, m={args.m}, "
          f"{args.calls} calls each; main thread's gaps beyond its 5 ms sleep, ms")
    cases = [
        ("cholesky  scipy.linalg", lambda: cholesky(a, lower=True)),
        ("cholesky  _linalg     ", lambda: cholesky_lower(a)),
        ("L^-1 K    scipy.linalg", lambda: solve_triangular(L, b, lower=True)),
        ("L^-1 K    _linalg     ", lambda: solve_lower(L, b)),
    ]
    for name, fn in cases:
        worst, med, wall = measure(fn, args.calls)
        print(f"  {name}: longest gap {worst:6.1f}, median {med:5.1f}; worker {wall:5.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
