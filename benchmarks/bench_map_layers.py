"""Time to build and draw the map layers (selection, expression, cell types, hover table) of a
large section, e.g. Visium HD scale (300,000 spots); no per-spot Python loop is involved.

A synthetic section of ``--spots`` spots on a square lattice (sparse counts of 50 genes, no
image), a selection of 15 % of the spots over two rounds (``--manual``: 1 % of the spots picked by hand,
drawn as stars; round 1 sequenced),
predictions for one gene and a cell type per spot. Reports, in seconds (median of
``--repeats``): each pure builder (``napari_scr2st.layers``), and with ``--viewer`` the first
draw in a napari viewer (create the layers + one screenshot) and a recolour (in-place update of
the selection and expression layers + one screenshot), i.e. what a slider move redraws.

    python benchmarks/bench_map_layers.py                       # 300,000 spots, builders only
    xvfb-run -a python benchmarks/bench_map_layers.py --viewer  # + napari draw and recolour
"""

from __future__ import annotations

import argparse
import json
import time
from types import SimpleNamespace

import numpy as np


def section(n: int, seed: int = 0, manual: float = 0.01):
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    rr, cc = np.divmod(np.arange(n), side)
    X = sp.random(n, 50, density=0.2, format="csr", random_state=seed, dtype=np.float32) * 10
    a = ad.AnnData(X=X, var=pd.DataFrame(index=[f"G{i}" for i in range(50)]),
                   obs=pd.DataFrame({"array_row": rr, "array_col": cc}, index=[f"s{i}" for i in range(n)]))
    a.obsm["spatial"] = np.c_[cc * 20.0 + 10, rr * 20.0 + 10]
    a.uns["spatial"] = {"HD": {"scalefactors": {"spot_diameter_fullres": 16.0}, "images": {}}}
    a.obs["section"] = "HD"
    rnd = np.full(n, -1)
    pick = rng.choice(n, int(0.15 * n), replace=False)
    rnd[pick[: len(pick) // 2]] = 0
    rnd[pick[len(pick) // 2 :]] = 1
    src = np.where(rnd >= 0, "scrl", "").astype(object)
    src[pick[: int(manual * n)]] = "manual"
    rank = np.full(n, -1)
    rank[pick] = np.arange(len(pick))
    sel = SimpleNamespace(round=rnd, source=src, measured=rnd == 0, rank=rank, score=rng.random(n), budget=len(pick))
    values = rng.gamma(2.0, 1.0, n).astype(np.float32)
    types = np.array([f"type {i}" for i in range(12)], dtype=object)[rng.integers(0, 12, n)]
    return a, sel, values, types


def _median(f, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def measure(n: int, repeats: int, viewer: bool, manual: float = 0.01) -> dict:
    from napari_scr2st import layers as L

    a, sel, values, types = section(n, manual=manual)
    measured = np.where(sel.measured, values, np.nan).astype(np.float32)
    out = {"spots": n, "selected": int((sel.round >= 0).sum()), "manual": int((sel.source == "manual").sum())}
    out["selection_layer_s"] = _median(lambda: L.selection_layer(a, sel), repeats)
    out["expression_layer_predicted_s"] = _median(lambda: L.expression_layer(a, "G0", values), repeats)
    out["expression_layer_measured_s"] = _median(lambda: L.expression_layer(a, "G0", measured, source="measured"), repeats)
    out["celltype_layer_s"] = _median(lambda: L.celltype_layer(a, types), repeats)
    out["spot_features_s"] = _median(lambda: L.spot_features(a, selection=sel, cell_types=types), repeats)
    if viewer:
        import napari

        from napari_scr2st._napari import _viewer_layers as V

        v = napari.Viewer(show=True)
        t0 = time.perf_counter()
        for data, kw, kind in (L.selection_layer(a, sel), L.expression_layer(a, "G0", measured, source="measured")):
            V.apply_layer(v, data, kw, kind)
        v.screenshot(canvas_only=True, flash=False)
        out["viewer_first_draw_s"] = time.perf_counter() - t0

        def recolour():
            sel.round = np.roll(sel.round, 1)
            sel.measured = np.roll(sel.measured, 1)
            for data, kw, kind in (L.selection_layer(a, sel), L.expression_layer(a, "G0", np.roll(measured, 1), source="measured")):
                V.apply_layer(v, data, kw, kind)
            v.screenshot(canvas_only=True, flash=False)

        out["viewer_recolour_s"] = _median(recolour, repeats)
        v.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spots", type=int, nargs="+", default=[300_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--viewer", action="store_true", help="also time the napari draw (needs a display, e.g. xvfb-run)")
    ap.add_argument("--manual", type=float, default=0.01, help="fraction of the spots picked by hand (stars)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = [measure(n, args.repeats, args.viewer, args.manual) for n in args.spots]
    for r in rows:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}))
    if args.json:
        from napari_scr2st.atomic import atomic_write

        with atomic_write(args.json) as f:
            f.write(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
