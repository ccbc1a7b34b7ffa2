"""Within-slide prediction on her2st: SCR2Net (+ spatial residual) vs ridge, kNN and spatial kernel.

Protocol (napari_scr2st.benchmark.within_slide): per imaged section (B4, C2-C6), a fixed 20 % of
the spots is the common test set; a random ``budget`` of the rest is sequenced (seeded); the
250-gene panel (most expressed on the sequenced spots) is scored on the test set. Vision features:
EfficientNet-Lite0 ImageNet embeddings, computed once and cached.

    python benchmarks/bench_within_slide.py                       # budgets 0.1 0.15 0.3, seeds 0-2
    python benchmarks/bench_within_slide.py --budgets 0.15 --seeds 0 1 2 3 4

Writes benchmarks/results/model/within_slide.csv and prints mean +- sd per model and budget, and
the paired ratio of SCR2Net to ridge and to the spatial kernel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
HER2ST = ROOT.parent / "shared" / "data" / "her2st"
SECTIONS = ("B4", "C2", "C3", "C4", "C5", "C6")


def load(root: Path, sections) -> dict:
    from napari_scr2st.features import compute_vision_embeddings
    from napari_scr2st.io import read_her2st

    out = {}
    for s in sections:
        a = read_her2st(root, s)
        compute_vision_embeddings(a, "efficientnet_lite0", device="cpu")
        out[s] = a
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--her2st", default=str(HER2ST))
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS))
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.1, 0.15, 0.3])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "model" / "within_slide.csv"))
    args = ap.parse_args(argv)
    root = Path(args.her2st)
    if not root.is_dir():
        print(f"her2st not found at {root}", file=sys.stderr)
        return 1
    from napari_scr2st.benchmark.within_slide import iter_within_slide
    from napari_scr2st.progress import drive

    secs = load(root, args.sections)
    df = drive(iter_within_slide(secs, budgets=args.budgets, seeds=args.seeds, epochs=args.epochs, folds=args.folds),
               desc="within-slide")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    summ = df.groupby(["budget", "model"])[["pcc_all", "pcc_heg50", "mse"]].agg(["mean", "std"]).round(3)
    print(summ.to_string())
    key = ["test_section", "budget", "seed"]
    wide = df.pivot_table(index=key, columns="model", values="pcc_heg50")
    for other in ("ridge", "spatial_kernel", "scr2net_histology"):
        if "scr2net" in wide and other in wide:
            g = wide.groupby(level="budget")
            r = g.apply(lambda w, o=other: w["scr2net"].mean() / w[o].mean())
            d = g.apply(lambda w, o=other: pd.Series({"mean_diff": (w["scr2net"] - w[o]).mean(),
                                                       "sd_diff": (w["scr2net"] - w[o]).std()}))
            print(f"\nscr2net vs {other} (pcc_heg50): ratio of means per budget\n{r.round(2).to_string()}")
            print(d.round(3).to_string())
    print(f"\nwritten: {out} ({len(df)} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
