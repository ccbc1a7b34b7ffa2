"""Which gene panel should SCR2Net learn by default: HEG, HVG (detection-filtered) or their union?

Panels (``napari_scr2st.model.panel.select_panel``, always chosen on the TRAINING spots only):
``heg`` (most expressed), ``hvg`` (scanpy ``seurat`` HVG among genes detected in >= 10 % of the
training spots) and ``union`` (half of each, deduplicated, filled to n). Models: SCR2Net on the
frozen EfficientNet-Lite0 embedding (default config; within-slide with its spatial correction,
cross-section without, as there is nothing measured on the test section) and ridge (penalty by
leave-one-out) on the same embedding.

Protocols, her2st (the 6 imaged sections B4, C2-C6; embeddings cached):

- ``within``: per section, the common 20 % test split of ``benchmark/within_slide.py``; a random
  15 % of the other spots is sequenced (seeded); the panel is chosen on those spots;
- ``cross``: train on every spot of the other patient's sections, test on a whole section
  (B4 <- C2-C6; each C section <- B4); the panel is chosen on the training sections;

and the synthetic sample (1,000 spots, ``within`` only: one section; panel of 100 of its 300 genes).

Scores on log1p-normalised counts of the test spots. On the panel's OWN genes: ``pcc_all``,
``pcc_heg50`` (top 50 of the panel by test-truth mean), ``mse``. On the SAME genes for every
panel (chosen on the training spots, before any model): ``pcc_common`` over the union of the
three panels, ``pcc_common_heg50`` / ``pcc_common_hvg50`` over the top-50 HEG / top-50 HVG of
the training spots; a gene the panel does not contain has no prediction and scores r = 0 (a
constant prediction carries no information; the metrics' convention), a gene constant over the
test spots is left out. Pairs: (test section, seed); paired differences with a 95 % t CI.

    python benchmarks/bench_panel.py                     # everything (~12 min on 2 busy cores)
    python benchmarks/bench_panel.py --seeds 0 --no-synthetic --protocols within

Writes benchmarks/results/model/panel.csv (one row per run) and prints mean +- sd and the paired
differences.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
HER2ST = ROOT.parent / "shared" / "data" / "her2st"
SECTIONS = ("B4", "C2", "C3", "C4", "C5", "C6")
PANELS = ("heg", "hvg", "union")
MODELS = ("scr2net", "ridge")
METRICS = ("pcc_common", "pcc_common_heg50", "pcc_common_hvg50", "pcc_all", "pcc_heg50", "mse")
COLUMNS = ["dataset", "protocol", "test_section", "model", "panel", "budget", "seed", *METRICS,
           "n_genes", "n_common", "n_train", "n_test"]


def load_her2st(root: Path, sections) -> dict:
    from napari_scr2st.features import compute_vision_embeddings
    from napari_scr2st.io import read_her2st

    out = {}
    for s in sections:
        a = read_her2st(root, s)
        compute_vision_embeddings(a, "efficientnet_lite0", device="cpu")
        out[s] = a
    return out


def load_synthetic(n_spots: int) -> dict:
    from napari_scr2st.cli._common import load_measured_sections
    from napari_scr2st.features import ensure_vision_embedding

    secs, _ = load_measured_sections([], n_spots=n_spots, seed=0)
    for a in secs.values():
        ensure_vision_embedding(a, "efficientnet_lite0", device="cpu")
    return secs


def _r_on(genes_scored, panel, r_panel, truth_const) -> float:
    """Mean r over ``genes_scored``: the panel's r where it has the gene, 0 elsewhere; genes
    constant in the test truth left out."""
    pos = {g: i for i, g in enumerate(panel)}
    r = np.array([r_panel[pos[g]] if g in pos else 0.0 for g in genes_scored], dtype=np.float64)
    r[truth_const] = np.nan
    r = r[np.isfinite(r)]
    return float(r.mean()) if r.size else float("nan")


def _const(Y: np.ndarray) -> np.ndarray:
    return Y.std(axis=0) <= 1e-12 * max(1.0, float(np.abs(Y).max(initial=0.0)))


def run_split(a, train: np.ndarray, test: np.ndarray, *, n_genes: int, seed: int, epochs: int, folds: int,
              spatial: bool, models, panels) -> list[dict]:
    """Every (model, panel) of one split: train spots ``train``, test spots ``test`` of ``a``."""
    from napari_scr2st.benchmark.within_slide import _ridge, _scr2net_predict
    from napari_scr2st.data.expression import log1p_normalized
    from napari_scr2st.evaluation.metrics import pearson_per_gene, regression_metrics
    from napari_scr2st.model.panel import select_panel

    chosen = {p: select_panel(a, train, n_genes, method=p) for p in PANELS}
    ref_heg = select_panel(a, train, 50, method="heg")
    ref_hvg = select_panel(a, train, 50, method="hvg")
    common = [g for g in a.var_names if any(g in set(chosen[p]) for p in PANELS)]
    sets = {"pcc_common": common, "pcc_common_heg50": ref_heg, "pcc_common_hvg50": ref_hvg}
    consts = {k: _const(log1p_normalized(a, g, rows=test)) for k, g in sets.items()}
    V = np.asarray(a.obsm["X_vision"], dtype=np.float64)
    train_idx = np.flatnonzero(train)
    rows = []
    for panel in panels:
        genes = chosen[panel]
        Y_tr = log1p_normalized(a, genes, rows=train_idx)
        Y_te = log1p_normalized(a, genes, rows=test)
        for model in models:
            if model == "ridge":
                P = _ridge(V, train, Y_tr)
            else:
                P = _scr2net_predict(a, train_idx, genes, epochs=epochs, seed=seed, spatial=spatial, folds=folds)
            P_te = np.asarray(P, dtype=np.float64)[test]
            own = regression_metrics(Y_te, P_te, genes, n_top=50)
            r = pearson_per_gene(Y_te, P_te)
            rows.append({"model": model, "panel": panel, "seed": int(seed),
                         **{k: _r_on(g, genes, r, consts[k]) for k, g in sets.items()},
                         "pcc_all": own["pcc_all"], "pcc_heg50": own["pcc_heg50"], "mse": own["mse"],
                         "n_genes": len(genes), "n_common": len(common), "n_train": int(train.sum()),
                         "n_test": int(test.sum())})
    return rows


def within(sections: dict, dataset: str, *, budget: float, seeds, **kw):
    from napari_scr2st.benchmark.within_slide import test_split

    for name, a in sections.items():
        test = test_split(a)
        pool = np.flatnonzero(~test)
        for seed in seeds:
            rng = np.random.default_rng([seed, 7])  # as benchmark/within_slide.py
            n_tr = max(8, int(round(budget * len(pool))))
            train = np.zeros(a.n_obs, dtype=bool)
            train[rng.choice(pool, min(n_tr, len(pool)), replace=False)] = True
            t = time.perf_counter()
            for row in run_split(a, train, test, seed=seed, spatial=True, **kw):
                yield {"dataset": dataset, "protocol": "within", "test_section": name, "budget": budget, **row}
            print(f"  {dataset} within {name} seed {seed}: {time.perf_counter() - t:.1f} s", flush=True)


def cross(sections: dict, dataset: str, *, seeds, **kw):
    import anndata as ad

    patient = {s: set(a.obs["patient"].astype(str)) for s, a in sections.items()}
    for name in sections:
        others = [s for s in sections if not (patient[s] & patient[name])]
        if not others:
            continue
        parts = []
        for s in [*others, name]:
            b = sections[s].copy()
            b.obs_names = [f"{s}:{i}" for i in b.obs_names]
            parts.append(b)
        a = ad.concat(parts, join="inner")
        test = np.zeros(a.n_obs, dtype=bool)
        test[-sections[name].n_obs:] = True
        for seed in seeds:
            t = time.perf_counter()
            for row in run_split(a, ~test, test, seed=seed, spatial=False, **kw):
                yield {"dataset": dataset, "protocol": "cross", "test_section": name, "budget": 1.0, **row}
            print(f"  {dataset} cross {name} <- {'+'.join(others)} seed {seed}: {time.perf_counter() - t:.1f} s",
                  flush=True)


def paired(df: pd.DataFrame, a: str, b: str, metric: str) -> pd.DataFrame:
    """Mean paired difference ``metric(a) - metric(b)`` per (dataset, protocol, model), 95 % t CI."""
    from scipy import stats

    key = ["dataset", "protocol", "model", "test_section", "seed"]
    w = df.pivot_table(index=key, columns="panel", values=metric)
    d = (w[a] - w[b]).dropna().rename("d").reset_index()
    g = d.groupby(["dataset", "protocol", "model"])["d"]
    out = g.agg(mean_diff="mean", sd="std", n="count").reset_index()
    half = stats.t.ppf(0.975, np.maximum(out["n"] - 1, 1)) * out["sd"] / np.sqrt(out["n"])
    out["ci_low"], out["ci_high"] = out["mean_diff"] - half, out["mean_diff"] + half
    out.insert(3, "pair", f"{a}-{b}")
    out.insert(4, "metric", metric)
    return out


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """mean ± sd over (test section, seed) per (dataset, protocol, model, panel)."""
    g = df.groupby(["dataset", "protocol", "model", "panel"], sort=False)
    cells = {m: g[m].agg(lambda v: f"{v.mean():.3f} ± {v.std():.3f}") for m in METRICS}
    return pd.DataFrame(cells)


def _run(args, root: Path) -> pd.DataFrame:
    kw = {"epochs": args.epochs, "folds": args.folds, "models": args.models, "panels": PANELS}
    rows: list[dict] = []
    her = load_her2st(root, args.sections)
    if "within" in args.protocols:
        rows += within(her, "her2st", budget=args.budget, seeds=args.seeds, n_genes=args.n_genes, **kw)
    if "cross" in args.protocols:
        rows += cross(her, "her2st", seeds=args.seeds, n_genes=args.n_genes, **kw)
    if not args.no_synthetic:
        syn = load_synthetic(args.synthetic_spots)
        rows += within(syn, "synthetic", budget=args.budget, seeds=args.seeds, n_genes=args.synthetic_genes, **kw)
    return pd.DataFrame(rows, columns=COLUMNS)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--her2st", default=str(HER2ST))
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS))
    ap.add_argument("--protocols", nargs="+", default=["within", "cross"], choices=["within", "cross"])
    ap.add_argument("--budget", type=float, default=0.15, help="within: sequenced fraction of the non-test spots")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--n-genes", type=int, default=250, help="her2st panel size")
    ap.add_argument("--synthetic-spots", type=int, default=1000)
    ap.add_argument("--synthetic-genes", type=int, default=100, help="synthetic panel size (it has 300 genes)")
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--all-threads", action="store_true",
                    help="let torch/BLAS use every core (default: 1 thread; 5x faster on a busy 2-core machine)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "model" / "panel.csv"))
    args = ap.parse_args(argv)
    root = Path(args.her2st)
    if not root.is_dir():
        print(f"her2st not found at {root}", file=sys.stderr)
        return 1
    import contextlib

    from napari_scr2st.atomic import atomic_path
    from napari_scr2st.sampling.thread_limits import single_thread

    t0 = time.perf_counter()
    with contextlib.nullcontext() if args.all_threads else single_thread():
        df = _run(args, root)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.5f")
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 20)
    print("\nmean ± sd over (test section, seed):")
    print(summary(df).to_string())
    diffs = pd.concat([paired(df, a, b, m) for m in ("pcc_common", "pcc_all", "pcc_common_heg50", "pcc_common_hvg50")
                       for a, b in (("heg", "hvg"), ("union", "hvg"), ("union", "heg"))], ignore_index=True)
    print("\npaired differences (pairs: test section x seed), 95 % t CI:")
    print(diffs.round(4).to_string(index=False))
    print(f"\nwritten: {out} ({len(df)} rows) in {time.perf_counter() - t0:.0f} s "
          f"(epochs {args.epochs}, seeds {args.seeds}, budget {args.budget})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
