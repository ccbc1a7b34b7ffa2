"""The paired label-efficiency protocol on her2st (and the synthetic sample), section by section.

Runs :func:`napari_scr2st.benchmark.protocol.iter_label_efficiency` (``within`` protocol: a fixed
20 % test set per section, samplers choose a budget of the rest, SCR2Net and the ridge surrogate
train on the chosen spots and are scored on the test set; every seed re-trains the SCRL policy on
the OTHER sections) one test section at a time, so that a long run keeps what it finished:
``benchmarks/results/sampling/parts/<dataset>_<section>[_ridge].csv``. At the end (or with
``--merge-only``) the parts are merged into ``benchmarks/results/sampling/label_efficiency.csv``
(SCR2Net), ``label_efficiency_ridge.csv``, ``label_efficiency.md`` (curves and paired
differences to random with 95 % confidence intervals) and ``label_efficiency.png`` (PCC vs
budget with bands).

    python benchmarks/bench_label_efficiency.py                         # her2st B4 C6, 5 seeds
    python benchmarks/bench_label_efficiency.py --test-sections B4 C2 C3 C4 C5 C6
    python benchmarks/bench_label_efficiency.py --dataset synthetic --n-spots 800
    python benchmarks/bench_label_efficiency.py --protocol cross --test-sections B4 C3   # new patient
    python benchmarks/bench_label_efficiency.py --merge-only

The same protocol runs on any data the readers accept with ``scr2st benchmark sampling DATA ...``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
HER2ST = ROOT.parent / "shared" / "data" / "her2st"
REFERENCE = ROOT.parent / "shared" / "data" / "sc_reference" / "wu2021_breast_CID4465.h5ad"
SECTIONS = ("B4", "C2", "C3", "C4", "C5", "C6")
OUT = ROOT / "benchmarks" / "results" / "sampling"


def load_her2st(encoder: str):
    from napari_scr2st.benchmark.protocol import fit_shared_space
    from napari_scr2st.features import ensure_vision_embedding
    from napari_scr2st.io import read_her2st
    from napari_scr2st.reference import read_reference

    secs = {}
    for s in SECTIONS:
        a = read_her2st(HER2ST, s)
        ensure_vision_embedding(a, encoder)
        secs[s] = a
    ref = read_reference(REFERENCE, celltype_key="celltype_major")
    return secs, fit_shared_space(ref, secs, celltype_key="celltype_major")


def load_synthetic(n_spots: int, encoder: str):
    from napari_scr2st.data import make_sample
    from napari_scr2st.features import ensure_vision_embedding
    from napari_scr2st.session import fit_reference_space

    sample = make_sample(n_spots=n_spots, seed=0)
    a = sample.section
    ensure_vision_embedding(a, encoder)
    name = str(a.obs["section"].iloc[0])
    return {name: a}, fit_reference_space(sample.reference, a)


def merge(out: Path) -> None:
    from napari_scr2st.benchmark.protocol import COLUMNS, plot_label_efficiency, write_results

    parts = sorted((out / "parts").glob("*.csv"))
    frames: dict[str, list[pd.DataFrame]] = {"scr2net": [], "ridge": []}
    for p in parts:
        frames["ridge" if p.stem.endswith("_ridge") else "scr2net"].append(pd.read_csv(p))
    results = {k: pd.concat(v, ignore_index=True)[COLUMNS] for k, v in frames.items() if v}
    if not results:
        print(f"no parts under {out / 'parts'}", file=sys.stderr)
        return
    for p in write_results(results, out):
        print("wrote", p)
    print("wrote", plot_label_efficiency(results["scr2net"], out / "label_efficiency.png", metric="pcc_heg50"))
    print(default_choice(results["scr2net"]))


def default_choice(df: pd.DataFrame, lo: float = 0.1, hi: float = 0.25) -> str:
    """The rule that picks the default sampler: per dataset, the mean paired difference of
    pcc_heg50 to random over (test section, budget in [lo, hi], seed) with its 95 % t CI, in the
    ``within`` protocol (the use case: sequence part of this slide); samplers significantly below
    random on any dataset are out; the best mean over datasets wins."""
    import numpy as np
    from scipy import stats

    df = df[df["protocol"] == "within"]
    rows = []
    for ds, g in df.groupby("dataset"):
        g = g[(g["budget"] >= lo) & (g["budget"] <= hi)]
        piv = g.pivot_table(index=["test_section", "budget", "seed"], columns="sampler", values="pcc_heg50")
        for s in piv.columns:
            d = (piv[s] - piv["random"]).dropna()
            half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if s != "random" else 0.0
            rows.append({"dataset": ds, "sampler": s, "diff": d.mean(), "ci_high": d.mean() + half})
    t = pd.DataFrame(rows)
    worse = set(t.loc[t["ci_high"] < 0, "sampler"])
    mean = t.groupby("sampler")["diff"].mean().drop(sorted(worse), errors="ignore").sort_values(ascending=False)
    lines = [f"default-sampler rule (pcc_heg50 - random at {lo:g}-{hi:g}, mean over datasets; "
             f"significantly worse on a dataset: {', '.join(sorted(worse)) or 'none'}):"]
    lines += [f"  {s:12s} {v:+.4f}" for s, v in mean.items()]
    lines.append(f"best: {mean.index[0]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from napari_scr2st.benchmark.protocol import COLUMNS, DEFAULT_BUDGETS, iter_label_efficiency
    from napari_scr2st.progress import drive

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=("her2st", "synthetic"), default="her2st")
    ap.add_argument("--protocol", choices=("within", "cross"), default="within",
                    help="cross: selections over the sections of OTHER patients, scored on the whole test section")
    ap.add_argument("--test-sections", nargs="+", default=["B4", "C6"])
    ap.add_argument("--budgets", type=float, nargs="+", default=list(DEFAULT_BUDGETS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--samplers", default=None, help="comma-separated (default all)")
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--imitation-episodes", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--n-spots", type=int, default=800, help="synthetic sample size")
    ap.add_argument("--encoder", default="efficientnet_lite0")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--merge-only", action="store_true")
    args = ap.parse_args(argv)
    out = args.out
    (out / "parts").mkdir(parents=True, exist_ok=True)
    if not args.merge_only:
        if args.dataset == "her2st":
            secs, space = load_her2st(args.encoder)
            tests = args.test_sections
        else:
            secs, space = load_synthetic(args.n_spots, args.encoder)
            tests = list(secs)
        samplers = args.samplers.split(",") if args.samplers else None
        for t in tests:
            t0 = time.time()
            res = drive(iter_label_efficiency(secs, space, samplers=samplers, budgets=args.budgets,
                                              seeds=list(range(args.seeds)), episodes=args.episodes,
                                              imitation_episodes=args.imitation_episodes, epochs=args.epochs,
                                              dataset=args.dataset, test_sections=[t], protocol=args.protocol),
                        desc=f"{args.dataset} {args.protocol} {t}")
            prefix = args.dataset if args.protocol == "within" else f"{args.dataset}_{args.protocol}"
            for kind, df in res.items():
                suffix = "" if kind == "scr2net" else f"_{kind}"
                df[COLUMNS].to_csv(out / "parts" / f"{prefix}_{t}{suffix}.csv", index=False)
            print(f"{args.dataset} {args.protocol} {t}: {len(res['scr2net'])} rows in {time.time() - t0:.0f} s",
                  flush=True)
    merge(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
