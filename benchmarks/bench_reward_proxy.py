"""How well does each reward term rank selections by what the user gets (downstream PCC)?

For every section (her2st B4, C2-C6 with EfficientNet-Lite0 embeddings, cached on disk; and the
embedded synthetic sample with its patch-statistics stand-in), the ``within`` protocol's fixed
20 % test set (:func:`napari_scr2st.benchmark.within_slide.test_split`) is excluded from the
pool. Many selections of 10-25 % of the remaining spots are drawn (2 simulated rounds each):
random ones (several seeds) and those of the existing samplers (grid, kcenter, typiclust, ar,
uncertainty, gp, lcmd, and the greedy reward maximiser at five weight settings: the defaults and
each term alone). For each
selection the script records

- the reward terms of the selected (revealed) set, from the package's ``RewardEvaluator``, and
  their sums at the old equal weights (``total_old``: sc, type, sp) and at the current defaults
  (``total``);
- candidate "expected error" terms computed from inputs only (vision embedding, coordinates):
  the GP posterior-variance reduction over the unsequenced spots with a vision x space RBF kernel
  (``gpvs_*``), a vision-only RBF kernel (``gpv_*``), a linear kernel on the ridge
  surrogate's design (Bayesian ridge, ``blr_*``) and the sum of that linear kernel and a spatial
  RBF (``sum_*``: a histology regression plus a spatial residual, SCR2Net's structure), at
  observation noise 0.1 and 1;
- the downstream PCC on the common test set (top-50 most expressed genes and all 250 panel
  genes, the protocol's HEG panel): of the ridge on the frozen embedding (the protocol's
  surrogate) and of the spatial kernel interpolation of the measured spots (within-slide); with
  ``--scr2net N``, of SCR2Net (frozen embedding + spatial residual) on N selections per budget of
  each her2st section (``--scr2net-synthetic`` for the synthetic sample).

It prints, and writes to ``benchmarks/results/sampling/reward_proxy.md``, the Spearman rank
correlation of every term with every downstream PCC: per section, and mean +- sd over the
her2st sections, both over all selections (budgets pooled: size dominates) and within a budget
(the mean over budgets of the correlation among selections of the same size: what a sampler
at a fixed budget needs). Raw rows go to ``reward_proxy.csv``.

    python benchmarks/bench_reward_proxy.py                    # 17 min on 2 idle-ish cores, 36 min at load 10
    python benchmarks/bench_reward_proxy.py --from-csv benchmarks/results/sampling/reward_proxy.csv  # report only
    python benchmarks/bench_reward_proxy.py --random-seeds 2 --scr2net 0 --sections B4 C2 --no-synthetic
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
HER2ST = SHARED / "her2st"
REFERENCE = SHARED / "sc_reference" / "wu2021_breast_CID4465.h5ad"
SECTIONS = ("B4", "C2", "C3", "C4", "C5", "C6")
OUT = ROOT / "benchmarks" / "results" / "sampling"
SAMPLERS = ("grid", "kcenter", "typiclust", "ar", "uncertainty", "gp", "lcmd")
GREEDY_WEIGHTS = {"greedy": None, "greedy_sc": "1,0,0,0", "greedy_type": "0,1,0,0", "greedy_sp": "0,0,1,0",
                  "greedy_unc": "0,0,0,1"}
DOWNSTREAM = ("ridge_heg50", "ridge_all", "skern_heg50", "skern_all")


# ------------------------------------------------------------------------------ kernels
class _RBF:
    """``exp(-|z_a - z_b|^2 / 2)`` within a section, 0 across (prior variance 1)."""

    def __init__(self, z: np.ndarray, sections: np.ndarray) -> None:
        self.z = np.asarray(z, dtype=np.float64)
        self.sec = np.unique(np.asarray(sections).astype(str), return_inverse=True)[1]

    def __call__(self, a, b):
        from napari_scr2st.sampling.baselines import _sqdist

        K = np.exp(-0.5 * _sqdist(self.z[a], self.z[b]))
        K[self.sec[a][:, None] != self.sec[b][None, :]] = 0.0
        return K


class _Linear(_RBF):
    """``x_a . x_b / d`` within a section (Bayesian linear regression on the design ``x``)."""

    def __call__(self, a, b):
        K = self.z[a] @ self.z[b].T / self.z.shape[1]
        K[self.sec[a][:, None] != self.sec[b][None, :]] = 0.0
        return K

    def diag(self, a):
        return (self.z[a] ** 2).sum(axis=1) / self.z.shape[1]


class _Sum:
    """``(k_1 + k_2) / 2``: a histology regression plus a spatial residual (SCR2Net's structure)."""

    def __init__(self, k1, k2) -> None:
        self.k1, self.k2 = k1, k2

    def __call__(self, a, b):
        return 0.5 * (self.k1(a, b) + self.k2(a, b))

    def diag(self, a):
        d = [getattr(k, "diag", None) for k in (self.k1, self.k2)]
        return 0.5 * sum(f(a) if f is not None else np.ones(len(a)) for f in d)


def candidate_indices(pool) -> dict:
    from napari_scr2st.sampling.design import vision_space_kernel
    from napari_scr2st.sampling.reward import VarianceIndex
    from napari_scr2st.sampling.surrogate import design_matrix

    inpool = ~pool.excluded
    vs = vision_space_kernel(pool)
    nv = vs._z.shape[1] - 2
    kernels = {"gpvs": vs, "gpv": _RBF(vs._z[:, :nv], pool.sections),
               "blr": _Linear(design_matrix(pool.vision, pool.coords, pool.sections), pool.sections)}
    lin = kernels["blr"]
    lin.z = lin.z / np.sqrt(lin.diag(np.flatnonzero(inpool)).mean())  # mean prior variance 1
    kernels["sum"] = _Sum(lin, _RBF(vs._z[:, nv:], pool.sections))
    return {f"{k}_{tag}": VarianceIndex(kern, pool.sections, inpool, noise=noise)
            for k, kern in kernels.items() for tag, noise in (("n0.1", 0.1), ("n1", 1.0))}


# ------------------------------------------------------------------------------ data
def her2st_sections(names) -> tuple[dict, object]:
    from napari_scr2st.features import ensure_vision_embedding
    from napari_scr2st.io import read_her2st
    from napari_scr2st.reference import ReferenceSpace, prepare_reference, read_reference

    secs = {}
    for s in names:
        a = read_her2st(HER2ST, s)
        ensure_vision_embedding(a, "efficientnet_lite0", device="cpu")
        secs[s] = a
    genes = None
    for a in secs.values():
        genes = a.var_names if genes is None else genes.intersection(a.var_names)
    prepared = prepare_reference(read_reference(REFERENCE), list(genes), spots_name="her2st")
    return secs, ReferenceSpace.fit(prepared, seed=0)


def synthetic_section():
    from napari_scr2st.data import make_sample
    from napari_scr2st.features.patch_stats import patch_statistics_embedding
    from napari_scr2st.reference import ReferenceSpace, prepare_reference

    smp = make_sample(2000, seed=0, section="SYN")
    a = smp.section
    a.obsm["X_vision"] = patch_statistics_embedding(a)
    return a, ReferenceSpace.fit(prepare_reference(smp.reference, a.var_names, spots_name="SYN"), seed=0)


# ------------------------------------------------------------------------------ one section
def run_section(dataset: str, name: str, adata, space, *, budgets, random_seeds: int, sampler_seeds: int,
                scr2net: int, epochs: int) -> list[dict]:
    from napari_scr2st.benchmark.protocol import _keyed, _scores
    from napari_scr2st.benchmark.within_slide import _ridge, _scr2net_predict, test_split
    from napari_scr2st.data.expression import log1p_normalized
    from napari_scr2st.data.model import SPATIAL_KEY
    from napari_scr2st.model.panel import select_panel
    from napari_scr2st.model.spatial import SpatialResidual, spot_pitch
    from napari_scr2st.sampling.loop import run_acquisition
    from napari_scr2st.sampling.measured import MeasuredEmbedder, RewardEvaluator
    from napari_scr2st.sampling.oracle import SimulatedOracle
    from napari_scr2st.sampling.pool import Pool, SelectionRequest
    from napari_scr2st.sampling.registry import make_sampler
    from napari_scr2st.sampling.reward import RewardWeights
    from napari_scr2st.sampling.thread_limits import single_thread

    a = _keyed(adata, name)
    test = test_split(a)
    genes = select_panel(a, ~test, 250, method="heg")
    Y_te = log1p_normalized(a, genes, rows=np.flatnonzero(test))
    V = np.asarray(a.obsm["X_vision"], dtype=np.float64)
    xy = np.asarray(a.obsm[SPATIAL_KEY], dtype=np.float64)[:, :2]
    secs = np.full(a.n_obs, name)
    ids = np.asarray(a.obs_names).astype(str)
    pitch = spot_pitch(xy)
    pool = Pool.from_adata(a, require_vision=True, excluded=test)
    oracle = SimulatedOracle(a, pool)
    embedder = MeasuredEmbedder(space)
    default = RewardWeights()
    old = RewardWeights.parse("1,1,1,0") if hasattr(default, "unc") else RewardWeights(1, 1, 1)
    evaluator = RewardEvaluator(space, pool, default, embedder=embedder)
    cands = candidate_indices(pool)
    jobs = [(b, "random", s, None) for b in budgets for s in range(random_seeds)]
    jobs += [(b, smp, s, None) for b in budgets for smp in SAMPLERS for s in range(sampler_seeds)]
    jobs += [(b, smp, s, w) for b in budgets for smp, w in GREEDY_WEIGHTS.items() for s in range(sampler_seeds)]
    rng = np.random.default_rng(12345)
    net_jobs = set()
    for b in budgets:  # SCR2Net on ``scr2net`` selections per budget (enough for a within-budget rho)
        of_b = [j for j, job in enumerate(jobs) if job[0] == b]
        net_jobs |= set(rng.choice(of_b, min(scr2net, len(of_b)), replace=False).tolist()) if scr2net else set()
    rows = []
    t0 = time.perf_counter()
    for j, (budget, smp, seed, w) in enumerate(jobs):
        kind = "greedy" if smp.startswith("greedy") else smp
        weights = RewardWeights.parse(w) if w is not None else default
        sampler = make_sampler(kind, seed=seed, space=space, weights=weights)
        with single_thread():
            res = run_acquisition(pool, sampler, SelectionRequest(budget=budget, rounds=2, seed=seed, excluded=test),
                                  oracle=oracle)
            chosen = np.asarray(res.state.measured, dtype=bool)
            idx = np.flatnonzero(chosen)
            terms = evaluator.terms(res.state)
            row = {"dataset": dataset, "section": name, "budget": budget, "sampler": smp, "seed": seed,
                   "n_selected": int(chosen.sum()), **terms.as_dict(),
                   "total": terms.total(default), "total_old": terms.total(old)}
            for k, index in cands.items():
                row[k] = index.value(idx)
            Y_tr = log1p_normalized(a, genes, rows=idx)
            P = _ridge(V, chosen, Y_tr)
            sc = _scores(Y_te, P[test], genes)
            row["ridge_heg50"], row["ridge_all"] = sc["pcc_heg50"], sc["pcc_all"]
            resid = Y_tr - Y_tr.mean(axis=0)
            sk = SpatialResidual(pitch=pitch).fit(xy[idx], secs[idx], ids[idx], resid)
            P = Y_tr.mean(axis=0) + sk.correction(xy, secs, ids, xy[idx], secs[idx], ids[idx], resid)
            sc = _scores(Y_te, P[test], genes)
            row["skern_heg50"], row["skern_all"] = sc["pcc_heg50"], sc["pcc_all"]
        if j in net_jobs:
            P = _scr2net_predict(a, idx, genes, epochs=epochs, seed=seed, spatial=True, folds=3)
            sc = _scores(Y_te, P[test], genes)
            row["scr2net_heg50"], row["scr2net_all"] = sc["pcc_heg50"], sc["pcc_all"]
        rows.append(row)
    print(f"{dataset} {name}: {len(jobs)} selections in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows


# ------------------------------------------------------------------------------ statistics
def rank_correlations(df: pd.DataFrame, terms: list[str], targets: list[str]) -> pd.DataFrame:
    """Spearman rho of each term with each target per section: pooled over budgets and the
    mean over budgets of the within-budget rho."""
    from scipy.stats import spearmanr

    out = []
    for (data, sec), d in df.groupby(["dataset", "section"], sort=False):
        for tgt in targets:
            if tgt not in d or d[tgt].notna().sum() < 5:
                continue
            for term in terms:
                dd = d[[term, tgt, "budget"]].dropna()
                pooled = spearmanr(dd[term], dd[tgt]).statistic if dd[term].nunique() > 1 else np.nan
                within = [spearmanr(g[term], g[tgt]).statistic for _, g in dd.groupby("budget")
                          if len(g) >= 5 and g[term].nunique() > 1]
                out.append({"dataset": data, "section": sec, "target": tgt, "term": term, "rho_pooled": pooled,
                            "rho_within": float(np.nanmean(within)) if within else np.nan, "n": len(dd)})
    return pd.DataFrame(out)


def markdown(rc: pd.DataFrame, df: pd.DataFrame, terms: list[str], targets: list[str], meta: str) -> str:
    lines = ["# Reward terms as proxies of downstream PCC", "", meta, "",
             "Spearman rank correlation of each term (computed on the selection, from inputs and the revealed "
             "counts of the selected spots only) with the downstream PCC on the common test set. "
             "`within`: mean over budgets of the correlation among selections of the same budget; "
             "`pooled`: all budgets together. her2st: mean ± sd over the sections.", ""]
    for how in ("within", "pooled"):
        lines += [f"## {how}", "", "| term | " + " | ".join(f"her2st {t}" for t in targets)
                  + " | " + " | ".join(f"synthetic {t}" for t in targets) + " |",
                  "|---|" + "---|" * (2 * len(targets))]
        for term in terms:
            cells = []
            for data in ("her2st", "synthetic"):
                for tgt in targets:
                    v = rc[(rc["dataset"] == data) & (rc["term"] == term) & (rc["target"] == tgt)][f"rho_{how}"]
                    if v.notna().sum() == 0:
                        cells.append("")
                    elif data == "her2st" and v.notna().sum() > 1:
                        cells.append(f"{v.mean():+.2f} ± {v.std():.2f}")
                    else:
                        cells.append(f"{v.mean():+.2f}")
            lines.append(f"| {term} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## per section (within-budget rho with ridge_heg50 / skern_heg50)", "",
              "| term | " + " | ".join(dict.fromkeys(rc["section"])) + " |", "|---|" + "---|" * rc["section"].nunique()]
    for term in terms:
        cells = []
        for sec in dict.fromkeys(rc["section"]):
            v = [rc[(rc["section"] == sec) & (rc["term"] == term) & (rc["target"] == t)]["rho_within"]
                 for t in ("ridge_heg50", "skern_heg50")]
            cells.append(" / ".join(f"{x.iloc[0]:+.2f}" if len(x) else "" for x in v))
        lines.append(f"| {term} | " + " | ".join(cells) + " |")
    tg = [t for t in targets if t in df]
    lines += ["", "## downstream PCC by sampler (mean over sections and budgets)", "",
              "| dataset | sampler | " + " | ".join(tg) + " |", "|---|---|" + "---|" * len(tg)]
    for (data, smp), g in df.groupby(["dataset", "sampler"], sort=False):
        lines.append(f"| {data} | {smp} | " + " | ".join(f"{g[t].mean():.3f}" for t in tg) + " |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS))
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.25])
    ap.add_argument("--random-seeds", type=int, default=6, help="random selections per budget (default 6)")
    ap.add_argument("--sampler-seeds", type=int, default=1, help="seeds of every other sampler per budget (default 1)")
    ap.add_argument("--scr2net", type=int, default=6,
                    help="selections per budget of each her2st section also scored with SCR2Net (default 6)")
    ap.add_argument("--scr2net-synthetic", type=int, default=0,
                    help="the same on the synthetic sample (default 0: its 2,000 spots make SCR2Net slow)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--no-her2st", action="store_true")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--from-csv", default=None, help="rebuild the report from a reward_proxy.csv of an earlier run")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    kw = dict(budgets=args.budgets, random_seeds=args.random_seeds, sampler_seeds=args.sampler_seeds,
              epochs=args.epochs)
    rows = []
    if args.from_csv:
        args.no_her2st = args.no_synthetic = True
    if not args.no_her2st:
        if not HER2ST.is_dir() or not REFERENCE.is_file():
            print(f"her2st or the reference not found under {SHARED}", file=sys.stderr)
            return 1
        secs, space = her2st_sections(args.sections)
        for s, a in secs.items():
            rows += run_section("her2st", s, a, space, scr2net=args.scr2net, **kw)
    if not args.no_synthetic:
        a, space = synthetic_section()
        rows += run_section("synthetic", "SYN", a, space, scr2net=args.scr2net_synthetic, **kw)
    df = pd.read_csv(args.from_csv) if args.from_csv else pd.DataFrame(rows)
    from napari_scr2st.sampling.reward import RewardWeights

    default = RewardWeights()
    base = ["r_sc", "r_type", "r_sp"] + (["r_unc"] if "r_unc" in df else []) + ["total_old"]
    if "r_unc" in df:  # the sum at the default weights, and at other r_unc weights (sc = type = sp = 1)
        terms_ = df[["r_sc", "r_type", "r_sp", "r_unc"]].to_numpy()
        df["total"] = terms_ @ default.as_array()
        for w in (1, 3, 5):
            df[f"total_unc{w}"] = terms_ @ np.array([1.0, 1.0, 1.0, w])
        base += ["total", "total_unc1", "total_unc3", "total_unc5"]
    cand = [c for c in df.columns if c.split("_")[0] in ("gpvs", "gpv", "blr", "sum")]
    terms = base + cand + ["n_selected"]
    targets = list(DOWNSTREAM) + [t for t in ("scr2net_heg50", "scr2net_all") if t in df]
    rc = rank_correlations(df, terms, targets)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from napari_scr2st.atomic import atomic_write

    with atomic_write(out / "reward_proxy.csv", newline="") as fh:
        df.to_csv(fh, index=False)
    with atomic_write(out / "reward_proxy_rho.csv", newline="") as fh:
        rc.to_csv(fh, index=False)
    n_sel = df.groupby(["dataset", "section"]).size()
    meta = (f"{len(df)} selections ({n_sel.iloc[0]} per section: budgets {sorted(set(df['budget']))} of the non-test spots; "
            f"{args.random_seeds} random per budget, {args.sampler_seeds} seed(s) of {', '.join(SAMPLERS)} and of "
            f"greedy at 5 weight settings), 2 rounds each; SCR2Net scored {args.scr2net} selections per budget of "
            f"each her2st section and {args.scr2net_synthetic} of the synthetic one; "
            + (f"report rebuilt from {Path(args.from_csv).name}. " if args.from_csv
               else f"{time.perf_counter() - t0:.0f} s on 2 shared cores. ")
            + "`total`: the sum at the default weights "
            f"({default}); `total_old`: sc = type = sp = 1 without r_unc; `total_uncW`: sc = type = sp = 1, unc = W. "
            "Re-measure: `python benchmarks/bench_reward_proxy.py`.")
    md = markdown(rc, df, terms, targets, meta)
    with atomic_write(out / "reward_proxy.md") as fh:
        fh.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
