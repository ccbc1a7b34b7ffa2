"""Decoding the her2st H&E JPEGs: Pillow against imagecodecs' libjpeg-turbo (what
``data.images`` now uses for RGB and greyscale JPEGs), side by side in one run, with the pixels
compared and the longest time the GIL was held while a second thread decoded:

    python benchmarks/bench_jpeg_decode.py --repeats 3

"GIL held" is measured by a Python thread that wakes every 1 ms and records its longest gap:
a decoder that holds the GIL long blocks that thread (and the napari UI thread) as long.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HER2ST = ROOT.parent / "shared" / "data" / "her2st" / "data" / "ST-imgs"


def _pillow(path: Path) -> np.ndarray:
    from napari_scr2st.data.images import open_pillow_unguarded

    with open_pillow_unguarded(path) as im:
        return np.asarray(im.convert("RGB"))


def _turbo(path: Path) -> np.ndarray:
    import imagecodecs

    return imagecodecs.jpeg8_decode(path.read_bytes())


def _timed(fn, path: Path) -> tuple[float, float, np.ndarray]:
    """(seconds, the heartbeat thread's longest gap in seconds, pixels)."""
    stop, gaps = threading.Event(), [0.0]

    def beat() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps[0] = max(gaps[0], now - last)
            last = now

    t = threading.Thread(target=beat, daemon=True)
    t.start()
    t0 = time.perf_counter()
    out = fn(path)
    dt = time.perf_counter() - t0
    stop.set()
    t.join()
    return dt, gaps[0], out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--root", type=Path, default=HER2ST, help="folder searched for *.jpg")
    args = ap.parse_args(argv)
    paths = sorted(args.root.rglob("*.jpg"))
    if not paths:
        raise SystemExit(f"no JPEG under {args.root}")
    print(f"{'file':<28} {'Mpx':>5} {'Pillow s':>9} {'turbo s':>8} {'ratio':>6} "
          f"{'GIL Pillow ms':>13} {'GIL turbo ms':>12} identical")
    ratios = []
    for p in paths:
        rows = {"pillow": [], "turbo": []}
        for _ in range(args.repeats):  # alternate, so that both see the same machine
            for name, fn in (("pillow", _pillow), ("turbo", _turbo)):
                rows[name].append(_timed(fn, p))
        same = np.array_equal(rows["pillow"][0][2], rows["turbo"][0][2])
        tp = statistics.median(r[0] for r in rows["pillow"])
        tt = statistics.median(r[0] for r in rows["turbo"])
        gp = max(r[1] for r in rows["pillow"]) * 1000
        gt = max(r[1] for r in rows["turbo"]) * 1000
        h, w = rows["turbo"][0][2].shape[:2]
        ratios.append(tp / tt)
        print(f"{p.name:<28} {h * w / 1e6:5.1f} {tp:9.2f} {tt:8.2f} {tp / tt:6.2f} {gp:13.0f} {gt:12.0f} {same}")
    print(f"Pillow / turbo time: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
