"""Benchmark of the SCR2Net predictor on her2st (frozen-embedding CPU path).

Protocol
--------
- Sections with images: C2, C3, C4, C5, C6 (patient C, serial sections) and B4 (patient B).
- Measured (training) spots: a RANDOM selection of 15 %, 30 % or 100 % of the spots of C2-C5
  (seeded; the random-sampling baseline of the acquisition loop).
- Test sets: C6 (a new section of the SAME patient: within-patient generalisation) and B4
  (a new patient: the cross-patient case; B4 is also a low-quality section, median ~650 UMI
  per spot). No spot of a test section is ever read during training.
- Gene panel: 250 highly variable genes of the training spots (``model.panel``).
- Vision features: EfficientNet-Lite0 ImageNet embeddings (1280-d) of 2-spot-diameter crops,
  computed once and cached by ``napari_scr2st.features``.
- Cell types of the measured spots (majority filter): argmax of the authors' stereoscope
  "major" proportions (``obsm["stereoscope_major"]``), standing in for label transfer from the
  single-cell reference.
- Variants: full (SCR2Net), regression only (ST-Net-like), retrieval only (BLEEP-like),
  full + adaptive resampling, full + energy-distance loss; plus the training-mean predictor
  (PCC 0 by construction, an MSE/MAE reference). Defaults of ``TrainConfig`` otherwise
  (30 epochs, batch 64, k 8, m 2, alpha 0.3).
- Seeds 0, 1, 2 (the seed draws the selection, the validation split and the initialisation);
  mean and sd over seeds.

Run (from the repository root)::

    python3 benchmarks/bench_model.py --out benchmarks/results/model_her2st.json

``--quick`` runs one seed and one budget (a smoke test). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HER2ST = ROOT.parent / "shared" / "data" / "her2st"
TRAIN_SECTIONS = ["C2", "C3", "C4", "C5"]
TEST_SECTIONS = ["C6", "B4"]
VARIANTS = {
    "full": {},
    "regression": {"mode": "regression"},
    "retrieval": {"mode": "retrieval"},
    "full+AR": {"adaptive_resampling": True},
    "full+energy": {"energy_loss": True},
}
METRICS = ("pcc_all", "pcc_heg50", "pcc_hvg50", "mse", "mae")


def load_her2st(root: Path):
    from napari_scr2st.data.model import concat_sections
    from napari_scr2st.features import compute_vision_embeddings
    from napari_scr2st.io import read_her2st

    secs = {s: read_her2st(root, s) for s in TRAIN_SECTIONS + TEST_SECTIONS}
    adata = concat_sections(secs)
    t0 = time.perf_counter()
    compute_vision_embeddings(adata, "efficientnet_lite0", device="cpu")
    emb_s = time.perf_counter() - t0
    props = adata.obsm["stereoscope_major"]
    vals = props.to_numpy(dtype=float)
    ok = np.isfinite(vals).all(axis=1)
    types = np.where(
        ok, np.asarray(props.columns)[np.nan_to_num(vals, nan=-1).argmax(axis=1)], None
    )
    adata.obs["cell_type"] = types
    return adata, emb_s


def run(args) -> dict:
    import torch

    from napari_scr2st.data.expression import log1p_normalized
    from napari_scr2st.evaluation.metrics import regression_metrics
    from napari_scr2st.evaluation.splits import random_budget_mask, train_test_by_group
    from napari_scr2st.model import SCR2NetPredictor, TrainConfig

    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    adata, emb_s = load_her2st(Path(args.her2st))
    sec = adata.obs["section"].astype(str).to_numpy()
    pool, _ = train_test_by_group(sec, TEST_SECTIONS, train_groups=TRAIN_SECTIONS)
    tests = {s: sec == s for s in TEST_SECTIONS}
    # the cross-patient test set is patient-disjoint from the training pool
    train_test_by_group(adata.obs["patient"].astype(str).to_numpy(), ["B"], train_groups=["C"])
    print(
        f"her2st: {adata.n_obs} spots, pool {int(pool.sum())} (C2-C5), test C6 {int(tests['C6'].sum())}, "
        f"B4 {int(tests['B4'].sum())}; embeddings {emb_s:.1f} s (cached after the first run)",
        flush=True,
    )

    runs = []
    for budget in args.budgets:
        for seed in args.seeds:
            mask = random_budget_mask(pool, budget, seed=seed) if budget < 1 else pool.copy()
            for variant in args.variants:
                cfg = TrainConfig(device="cpu", seed=seed, epochs=args.epochs, panel_method=args.panel_method,
                                  **VARIANTS[variant])  # fmt: skip
                t0 = time.perf_counter()
                pred = SCR2NetPredictor(cfg).fit(adata, mask)
                fit_s = time.perf_counter() - t0
                rec = pred.metrics()
                out = pred.predict(adata)
                pcc = {}
                for tname, tmask in tests.items():
                    y = log1p_normalized(adata, pred.genes, rows=tmask)
                    m = regression_metrics(y, out[tmask])
                    pcc[tname] = m["pcc_all"]
                    common = dict(budget=budget, seed=seed, test=tname, n_train=int(mask.sum()))
                    runs.append(dict(common, variant=variant, fit_s=fit_s, steps_per_s=rec["steps_per_s"],
                                     val_pcc=rec["final"]["val_pcc"], **{k: m[k] for k in METRICS}))  # fmt: skip
                    if variant == args.variants[0]:
                        # training-mean reference: the mean measured expression of the panel
                        base = np.broadcast_to(
                            log1p_normalized(adata, pred.genes, rows=mask).mean(0), y.shape
                        )
                        mb = regression_metrics(y, base)
                        runs.append(dict(common, variant="train-mean", fit_s=0.0, steps_per_s=float("nan"),
                                         val_pcc=float("nan"), **{k: mb[k] for k in METRICS}))  # fmt: skip
                print(
                    f"budget {budget:.2f} seed {seed} {variant:12s} n={int(mask.sum()):3d} fit {fit_s:5.1f} s "
                    f"{rec['steps_per_s']:6.1f} steps/s  val PCC {rec['final']['val_pcc']:.3f}  C6 PCC {pcc['C6']:.3f}  B4 PCC {pcc['B4']:.3f}",
                    flush=True,
                )
    total_s = time.perf_counter() - t_all
    return {
        "protocol": "her2st; train: random budget of C2-C5 spots; test: C6 (same patient), B4 (other patient)",
        "embedding": "efficientnet_lite0 (packaged ImageNet weights), frozen, cached",
        "epochs": args.epochs,
        "panel_method": args.panel_method,
        "threads": args.threads,
        "budgets": args.budgets,
        "seeds": args.seeds,
        "variants": args.variants,
        "embedding_s": emb_s,
        "total_s": total_s,
        "runs": runs,
        "summary": summarize(runs),
        "machine": f"{os.cpu_count()} CPU cores visible, torch threads {args.threads}",
    }


def summarize(runs: list[dict]) -> list[dict]:
    keys = sorted(
        {(r["test"], r["budget"], r["variant"]) for r in runs},
        key=lambda k: (k[0] != "C6", k[1], k[2]),
    )
    out = []
    for test, budget, variant in keys:
        rs = [r for r in runs if (r["test"], r["budget"], r["variant"]) == (test, budget, variant)]
        row = {
            "test": test,
            "budget": budget,
            "variant": variant,
            "n_seeds": len(rs),
            "n_train": rs[0]["n_train"],
        }
        for k in (*METRICS, "fit_s", "steps_per_s"):
            v = np.array([r[k] for r in rs], dtype=float)
            row[k] = [float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
                      float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else 0.0]  # fmt: skip
        out.append(row)
    return out


def markdown(summary: list[dict], variants_order: list[str]) -> str:
    order = {v: i for i, v in enumerate([*variants_order, "train-mean"])}
    lines = []
    for test in TEST_SECTIONS:
        lines.append(f"\n**Test on {test}** (mean ± sd over seeds)\n")
        lines.append(
            "| budget | n train | variant | PCC all | PCC top-50 HEG | PCC top-50 HVG | MSE | MAE |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        rows = sorted(
            (r for r in summary if r["test"] == test),
            key=lambda r: (r["budget"], order.get(r["variant"], 99)),
        )
        for r in rows:
            cells = [f"{r[k][0]:.3f} ± {r[k][1]:.3f}" for k in METRICS]
            lines.append(
                f"| {r['budget']:.0%} | {r['n_train']} | {r['variant']} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--her2st", default=str(DEFAULT_HER2ST))
    p.add_argument("--budgets", type=float, nargs="+", default=[0.15, 0.3, 1.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: fastest for these small models on a shared 2-core machine)",
    )
    p.add_argument(
        "--panel-method",
        choices=("hvg", "heg"),
        default="hvg",
        help="gene panel: 250 HVG (default) or HEG",
    )
    p.add_argument("--out", default=None, help="results JSON")
    p.add_argument("--quick", action="store_true", help="one seed, one budget (smoke test)")
    args = p.parse_args(argv)
    if not Path(args.her2st).is_dir():
        print(
            f"her2st data not found at {args.her2st}: skipping the model benchmark", file=sys.stderr
        )
        return 0
    if args.quick:
        args.budgets, args.seeds = [0.3], [0]
    res = run(args)
    print(markdown(res["summary"], args.variants))
    full = [
        r
        for r in res["summary"]
        if r["variant"] == "full" and r["budget"] == max(args.budgets) and r["test"] == "C6"
    ]
    if full:
        print(
            f"\nthroughput (full, budget {max(args.budgets):.0%}, batch 64): {full[0]['steps_per_s'][0]:.1f} "
            f"± {full[0]['steps_per_s'][1]:.1f} training steps/s"
        )
    print(f"total {res['total_s']:.0f} s (embeddings {res['embedding_s']:.1f} s)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
