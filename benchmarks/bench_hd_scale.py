"""Visium HD scale: a section of ~300,000 8 um bins in the napari viewer (run under Xvfb).

    xvfb-run -a python benchmarks/bench_hd_scale.py                      # 300,000 bins
    xvfb-run -a python benchmarks/bench_hd_scale.py --bins 30000         # a quick run
    xvfb-run -a python benchmarks/bench_hd_scale.py --samplers greedy,random,grid,kcenter

The section is written to disk in the real Space Ranger Visium HD layout
(``outs/binned_outputs/square_008um/filtered_feature_bc_matrix.h5`` with the 10x writer of the
test fixtures, ``spatial/tissue_positions.parquet``, ``scalefactors_json.json`` and the
``tissue_hires_image.png`` / ``tissue_lowres_image.png`` images) and opened with the plugin's
reader (:func:`napari_scr2st.io.visium.read_visium`). Its content is the synthetic sample
(:func:`napari_scr2st.data.make_sample`, 100 genes, with its single-cell reference) drawn at
coarse spots 32 px apart and binned on a square 8 px lattice: each bin is the nearest coarse
spot's counts thinned binomially to the bin's share of the spot's area (about 1/14), so bins are
sparse (tens of UMIs) as HD 8 um bins are, and expression varies smoothly across the tissue. The
folder is built once and reused (``--data-dir``, ``--rebuild``).

Measured in a napari viewer (``show=True``), each as wall clock from the action to the canvas's
next ``draw`` event (the event loop is run until vispy's SceneCanvas fires ``draw``):

- open: read (``read_visium``), build the layers (``section_layers``), add them, first draw;
- pan: the camera centre moves by a quarter of the view -> repaint (median of several);
- recolour: the spots layer's face colour set to a feature (total counts, then a gene);
- prepare: the sampling dock's Prepare with the patch-stats encoder and the reference (vision
  embedding, reference space, pool; then the first proposal and its layers drawn);
- weight change end-to-end: the spatial-weight slider set -> 40 ms debounce -> re-selection
  (in a worker, as for a user) -> the new selection shown -> the canvas's next draw, with the
  longest UI-thread stall meanwhile (a 10 ms heartbeat), for each sampler of ``--samplers`` (a
  sampler switch is measured first: the new sampler's first proposal drawn).

Prints the numbers and writes ``benchmarks/results/bench_hd_scale.json``. Memory: the peak RSS
of the process is reported (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_hd_scale.json"
BIN_UM = 8
COARSE_PX = 32.0  # synthetic sample's spot spacing (px); bins are BIN_UM px (1 um per px)


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def build_hd_outs(folder: Path, n_bins: int, seed: int = 0) -> dict:
    """Write ``folder/outs`` (Visium HD, 8 um bins only) and ``folder/reference.h5ad``."""
    import pandas as pd
    import scipy.sparse as sp
    from PIL import Image
    from scipy.spatial import cKDTree

    sys.path.insert(0, str(ROOT / "tests" / "io"))
    from _spaceranger import GEX, write_10x_h5  # the fixtures' 10x .h5 writer

    from napari_scr2st.data import make_sample
    from napari_scr2st.data.model import get_fullres_image

    t0 = time.perf_counter()
    bins_per_spot = COARSE_PX**2 * np.sqrt(3) / 2 / BIN_UM**2  # hex cell area / bin area
    sample = make_sample(n_spots=int(round(n_bins / bins_per_spot)), n_genes=100, spacing_px=COARSE_PX, seed=seed)
    sec = sample.section
    img = np.asarray(get_fullres_image(sec))
    H, W = img.shape[:2]
    xy_c = np.asarray(sec.obsm["spatial"], dtype=np.float64)
    r, c = np.divmod(np.arange((H // BIN_UM) * (W // BIN_UM)), W // BIN_UM)
    x, y = (c + 0.5) * BIN_UM, (r + 0.5) * BIN_UM
    d, near = cKDTree(xy_c).query(np.column_stack([x, y]), k=1)
    inside = d <= COARSE_PX / np.sqrt(3)  # within the coarse spot's hexagonal cell (circumradius)
    r, c, x, y, near = r[inside], c[inside], x[inside], y[inside], near[inside]
    rng = np.random.default_rng(seed)
    Xc = sp.csr_matrix(sec.X).astype(np.int64)
    rows = Xc[near]  # the nearest coarse spot's counts, thinned to the bin's share
    rows.data = rng.binomial(rows.data, 1.0 / bins_per_spot)
    rows.eliminate_zeros()
    counts = sp.csr_matrix(rows, dtype=np.int32)
    barcodes = np.char.add(np.char.add(np.char.add("s_008um_", np.char.zfill(r.astype(str), 5)), "_"),
                           np.char.add(np.char.zfill(c.astype(str), 5), "-1"))
    outs = folder / "outs"
    d8 = outs / "binned_outputs" / f"square_{BIN_UM:03d}um"
    (d8 / "spatial").mkdir(parents=True, exist_ok=True)
    (outs / "spatial").mkdir(parents=True, exist_ok=True)
    genes = [str(g) for g in sec.var_names]
    write_10x_h5(d8 / "filtered_feature_bc_matrix.h5", counts, list(barcodes),
                 [f"ENSG{i:011d}" for i in range(len(genes))], genes, [GEX] * len(genes), library="hd_bench")
    pd.DataFrame({"barcode": barcodes, "in_tissue": np.ones(len(r), np.int32), "array_row": r, "array_col": c,
                  "pxl_row_in_fullres": y, "pxl_col_in_fullres": x}).to_parquet(
        d8 / "spatial" / "tissue_positions.parquet", index=False)
    sf = {"tissue_hires_scalef": 1.0, "tissue_lowres_scalef": 0.1, "regist_target_img_scalef": 1.0,
          "spot_diameter_fullres": float(BIN_UM), "bin_size_um": float(BIN_UM), "microns_per_pixel": 1.0,
          "fiducial_diameter_fullres": 10.0 * BIN_UM}
    (d8 / "spatial" / "scalefactors_json.json").write_text(json.dumps(sf))
    (outs / "spatial" / "scalefactors_json.json").write_text(json.dumps({**sf, "spot_diameter_fullres": 2.0}))
    Image.fromarray(img).save(outs / "spatial" / "tissue_hires_image.png", compress_level=1)
    Image.fromarray(img).resize((W // 10, H // 10), Image.Resampling.BOX).save(outs / "spatial" / "tissue_lowres_image.png")
    sample.reference.write_h5ad(folder / "reference.h5ad")
    info = {"bins": int(len(r)), "genes": len(genes), "image_hw": [int(H), int(W)], "coarse_spots": int(sec.n_obs),
            "mean_umis_per_bin": float(counts.sum() / max(1, len(r))), "build_s": time.perf_counter() - t0}
    (folder / "build.json").write_text(json.dumps(info, indent=1))
    return info


def ensure_data(folder: Path, n_bins: int, rebuild: bool) -> dict:
    meta = folder / "build.json"
    if not rebuild and meta.is_file():
        info = json.loads(meta.read_text())
        if abs(info["bins"] - n_bins) <= 0.05 * n_bins:
            return info
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    print(f"building a Visium HD section of ~{n_bins:,} bins in {folder} ...", flush=True)
    return build_hd_outs(folder, n_bins)


# ---------------------------------------------------------------------------------- viewer
class Frames:
    """Counts the draws of the viewer's vispy SceneCanvas; ``wait(n0)`` runs the event loop until
    a draw after ``n0`` happened and returns the seconds waited."""

    def __init__(self, viewer) -> None:
        self.n = 0
        viewer.window._qt_viewer.canvas._scene_canvas.events.draw.connect(self._on_draw)

    def _on_draw(self, _event=None) -> None:
        self.n += 1

    def wait(self, n0: int, t0: float, timeout: float = 600.0) -> float:
        from qtpy.QtWidgets import QApplication

        while self.n <= n0 and time.perf_counter() - t0 < timeout:
            QApplication.processEvents()
            time.sleep(0.0005)
        return time.perf_counter() - t0


def _settle(seconds: float = 0.3) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.005)


def run_viewer(folder: Path, args) -> dict:
    import anndata as ad
    import napari

    from napari_scr2st._napari._sampling_widget import SamplingWidget
    from napari_scr2st.data.expression import log1p_normalized
    from napari_scr2st.io.visium import read_visium
    from napari_scr2st.layers import section_layers

    res: dict = {}
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    frames = Frames(viewer)
    _settle(1.0)
    # open: read + layers + add + first draw
    t0 = time.perf_counter()
    adata = read_visium(folder / "outs", bin_size_um=BIN_UM)
    t_read = time.perf_counter() - t0
    t1 = time.perf_counter()
    layers = section_layers(adata)
    t_layers = time.perf_counter() - t1
    layers[-1][1]["metadata"]["reference"] = ad.read_h5ad(folder / "reference.h5ad")
    t2 = time.perf_counter()
    n0 = frames.n
    added = [getattr(viewer, f"add_{kind}")(data, **kw) for data, kw, kind in layers]
    t_add = time.perf_counter() - t2
    t_first = frames.wait(frames.n, t2, timeout=30.0)  # the first draw with every layer added
    spots = added[-1]
    res["open"] = {"bins": int(adata.n_obs), "read_s": t_read, "layers_s": t_layers, "add_layers_s": t_add,
                   "add_to_first_draw_s": t_first, "total_s": time.perf_counter() - t0, "rss_gb": _rss_gb()}
    print(f"open {adata.n_obs:,} bins: read {t_read:.1f} s, section_layers {t_layers:.2f} s, add layers "
          f"{t_add:.2f} s, first draw after {t_first:.2f} s (from add); total {res['open']['total_s']:.1f} s", flush=True)
    _settle(0.5)
    # pan: camera centre moves by a quarter of the view
    pans = []
    for k in range(args.repeats):
        c = np.asarray(viewer.camera.center, dtype=float)
        shift = (1 if k % 2 == 0 else -1) * 0.25 * np.ptp(adata.obsm["spatial"][:, 0])
        n0, t0 = frames.n, time.perf_counter()
        viewer.camera.center = (*c[:-1], c[-1] + shift)
        pans.append(frames.wait(n0, t0) * 1000)
        _settle(0.1)
    res["pan_ms"] = {"median": statistics.median(pans), "max": max(pans), "all": pans}
    print(f"pan -> repaint: median {res['pan_ms']['median']:.0f} ms, max {res['pan_ms']['max']:.0f} ms", flush=True)
    # recolour the spots layer: by total counts, then by a gene (log1p-normalised)
    gene = str(adata.var_names[int(np.argmax(np.asarray(adata.X.sum(axis=0)).ravel()))])
    rec = {}
    for what in ("total_counts", gene):
        t0 = time.perf_counter()
        if what != "total_counts":  # a new feature column: the layer's table is replaced
            feats = spots.features.copy()
            feats[what] = log1p_normalized(adata, [what])[:, 0]
            spots.features = feats
        n0 = frames.n
        spots.face_colormap = "viridis"
        spots.face_color = what
        rec[what] = frames.wait(n0, t0) * 1000
        print(f"recolour by {what}: {rec[what]:.0f} ms to the drawn canvas", flush=True)
        _settle(0.3)
    res["recolour_ms"] = rec
    # prepare (patch-stats encoder) in the sampling dock
    os.environ["SCR2ST_SYNC_WORKERS"] = "1"
    w = SamplingWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.encoder_combo.setCurrentText("patch-stats")
    if args.budget.endswith("%"):
        w.budget_unit.setCurrentText("%")
        w.budget_spin.setValue(int(float(args.budget[:-1])))
    else:
        w.budget_unit.setCurrentText("spots")
        w.budget_spin.setValue(int(args.budget))
    w.rounds_spin.setValue(2)
    s_box = {}
    orig = SamplingWidget._prepared_done

    def timed_done(self, s):
        s_box["worker_s"] = time.perf_counter() - s_box["t0"]
        t = time.perf_counter()
        orig(self, s)
        s_box["first_selection_s"] = time.perf_counter() - t

    SamplingWidget._prepared_done = timed_done
    s_box["t0"] = time.perf_counter()
    n0 = frames.n
    w.prepare()
    t_draw = frames.wait(n0, s_box["t0"])
    SamplingWidget._prepared_done = orig
    s = w.session
    assert s is not None and s.is_prepared, w.status.text()
    res["prepare"] = {"prepare_worker_s": s_box.get("worker_s"), "first_selection_s": s_box.get("first_selection_s"),
                      "to_drawn_s": t_draw, "sampler": s.sampling.sampler, "budget": args.budget,
                      "proposal": int(len(s.preview.proposal)), "rss_gb": _rss_gb()}
    print(f"prepare (patch-stats + reference + pool): {res['prepare']['prepare_worker_s']:.1f} s; first proposal "
          f"({s.sampling.sampler}, {len(s.preview.proposal)} picks) + layers {res['prepare']['first_selection_s']:.1f} s; "
          f"drawn after {t_draw:.1f} s", flush=True)
    os.environ["SCR2ST_SYNC_WORKERS"] = "0"  # as for a user: re-selections in a worker
    # weight change end-to-end per sampler: slider.setValue -> 40 ms debounce -> re-selection (a
    # worker) -> the new selection shown (``selection_changed``) -> the canvas's next draw; and the
    # longest UI-thread stall meanwhile (a 10 ms heartbeat, as bench_gui.py)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_gui import Heartbeat

    from napari_scr2st._napari._reselect import Reselector

    hb = Heartbeat()
    draws: list[float] = []
    viewer.window._qt_viewer.canvas._scene_canvas.events.draw.connect(lambda *_: draws.append(hb.now()))
    shown: list[float] = []
    s.selection_changed.connect(lambda: shown.append(hb.now()), priority=100)  # before the layers update
    r = Reselector.of(s)

    def settle_workers() -> None:
        t = time.perf_counter()
        while (r is not None and (r.busy or r.pending) or w._check_worker is not None or w._check_timer.isActive()) \
                and time.perf_counter() - t < args.timeout:
            _settle(0.01)

    def until_shown(n0: int, t0: float) -> tuple[float, float]:
        """(ms to the new selection shown, ms to the first draw after it) from ``t0`` (hb ms)."""
        while len(shown) <= n0 and (hb.now() - t0) / 1000 < args.timeout:
            _settle(0.002)
        t_shown = shown[-1] if len(shown) > n0 else float("nan")
        while not any(d > t_shown for d in draws) and (hb.now() - t_shown) / 1000 < 30:
            _settle(0.002)
        t_draw = next((d for d in draws if d > t_shown), float("nan"))
        return t_shown - t0, t_draw - t0

    hb.start()
    rng = np.random.default_rng(0)
    res["weight_change"] = {}
    for name in args.samplers.split(","):
        entry = {}
        settle_workers()
        i = w.sampler_combo.findData(name)
        n0, t0 = len(shown), hb.now()
        if i >= 0 and w.sampler_combo.currentIndex() != i:
            w.sampler_combo.setCurrentIndex(i)
        else:
            s.update_settings(sampler=name)
            w.reselect()
        _, t_drawn = until_shown(n0, t0)
        entry["switch_to_drawn_s"] = t_drawn / 1000
        entry["switch_core_s"] = float(s.preview.seconds)
        entry["switch_stall_ms_max"] = hb.max_stall(t0, t0 + t_drawn)[0]
        times, to_shown, cores, stalls = [], [], [], []
        slider = w.sliders["w_sp"]
        for _ in range(args.weight_repeats):
            settle_workers()
            v = float(rng.uniform(0.1, 5.0))
            while abs(v - slider.value()) < 0.1:
                v = float(rng.uniform(0.1, 5.0))
            n0, t0 = len(shown), hb.now()
            slider.setValue(v)
            t_shown, t_drawn = until_shown(n0, t0)
            times.append(t_drawn)
            to_shown.append(t_shown)
            cores.append(float(s.preview.seconds) * 1000)
            stalls.append(hb.max_stall(t0, t0 + t_drawn)[0])
            _settle(0.4)  # the hover table follows
        entry.update({"weight_to_drawn_ms": times, "weight_to_drawn_ms_median": statistics.median(times),
                      "weight_to_shown_ms": to_shown, "core_reselect_ms": cores, "ui_stall_ms_max": stalls,
                      "picks": int(len(s.preview.proposal))})
        res["weight_change"][name] = entry
        print(f"{name}: switch -> drawn {entry['switch_to_drawn_s']:.2f} s (core {entry['switch_core_s']:.2f} s, "
              f"longest UI stall {entry['switch_stall_ms_max']:.0f} ms); weight slider -> new selection drawn: "
              f"median {entry['weight_to_drawn_ms_median']:.0f} ms (shown after {statistics.median(to_shown):.0f} ms, "
              f"core {statistics.median(cores):.0f} ms, longest UI stall {max(stalls):.0f} ms), "
              f"{entry['picks']} picks", flush=True)
    hb.stop()
    settle_workers()
    res["rss_gb_peak"] = _rss_gb()
    viewer.close()
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bins", type=int, default=300_000)
    ap.add_argument("--data-dir", default=None, help="where the HD folder is built (default: a temp dir)")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--budget", default="1%", help="sampling budget: a count or a percentage (default 1%%)")
    ap.add_argument("--samplers", default="greedy,random,grid,kcenter")
    ap.add_argument("--repeats", type=int, default=3, help="pans")
    ap.add_argument("--weight-repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--json", default=str(RESULTS))
    args = ap.parse_args(argv)
    import tempfile

    import napari

    folder = Path(args.data_dir or Path(tempfile.gettempdir()) / f"scr2st_hd_{args.bins}")
    machine = {"cpus": os.cpu_count(), "load_avg_1min_start": os.getloadavg()[0], "python": sys.version.split()[0],
               "napari": napari.__version__}
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, napari {napari.__version__}", flush=True)
    info = ensure_data(folder, args.bins, args.rebuild)
    print(f"section: {info['bins']:,} bins x {info['genes']} genes, image {info['image_hw']}, "
          f"{info['mean_umis_per_bin']:.0f} UMIs per bin (built in {info['build_s']:.0f} s)", flush=True)
    t0 = time.perf_counter()
    res = run_viewer(folder, args)
    machine["load_avg_1min_end"] = os.getloadavg()[0]
    out = {"machine": machine, "section": info, "args": vars(args), **res, "wall_s": time.perf_counter() - t0}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    print(f"done in {out['wall_s']:.0f} s; peak RSS {res['rss_gb_peak']:.1f} GB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
