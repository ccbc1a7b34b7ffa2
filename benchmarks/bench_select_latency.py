"""Latency from a reward-weight change to a new SCRL selection (live tuning), on CPU.

For each size: ``make_sample(n_spots, with_image=False)`` (synthetic expression, no image),
random stand-in vision features (64-d), the sample's reference space, a state where 5 % of the
spots are measured (so predictions and predicted cell types are part of the features), and the
SCRL policy (untrained by default: the latency does not depend on the weights' values; with
``--train-episodes N`` it is trained first on a small synthetic section). The round features
are computed once (reported as ``features_s``); then, repeatedly, a new random weight vector is
drawn and ``policy.select(features, weights, k)`` picks 15 % of the spots (``k``) - the time of
that call is the latency (median and 90th percentile of ``--repeats`` calls).

    python benchmarks/bench_select_latency.py                 # 5,000 and 50,000 spots
    python benchmarks/bench_select_latency.py --sizes 5000 --repeats 50 --json out.json

Targets (METHOD section 4, live tuning): < 50 ms for 5,000 spots, < 500 ms for 50,000.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np


def measure(n_spots: int, *, repeats: int, budget: float, train_episodes: int, seed: int = 0) -> dict:
    from napari_scr2st.data import make_sample
    from napari_scr2st.reference import ReferenceSpace, prepare_reference
    from napari_scr2st.sampling import (
        MeasuredEmbedder,
        Pool,
        SelectionState,
        SimulatedOracle,
        SpacePredictor,
    )
    from napari_scr2st.sampling.scrl import PolicyEnv, SCRLPolicy, train_policy

    t0 = time.perf_counter()
    smp = make_sample(n_spots, seed=seed, with_image=False)
    a = smp.section
    rng = np.random.default_rng(seed)
    a.obsm["X_vision"] = rng.normal(size=(a.n_obs, 64)).astype(np.float32)
    space = ReferenceSpace.fit(prepare_reference(smp.reference, a.var_names), seed=seed)
    policy = SCRLPolicy.for_space(space, seed=seed)
    if train_episodes:
        small = make_sample(600, seed=seed + 1, with_image=False)
        small.section.obsm["X_vision"] = rng.normal(size=(small.section.n_obs, 64)).astype(np.float32)
        sp2 = ReferenceSpace.fit(prepare_reference(small.reference, small.section.var_names), seed=seed + 1)
        train_policy(policy, [PolicyEnv.from_adata(small.section, sp2)], episodes=train_episodes, seed=seed)
    setup = time.perf_counter() - t0

    pool = Pool.from_adata(a)
    state = SelectionState.for_pool(pool)
    k = int(round(budget * pool.n))
    state.budget, state.n_rounds, state.current_round = k, 3, 1
    first = rng.choice(pool.n, int(0.05 * pool.n), replace=False)
    state.mark_selected(first)
    SimulatedOracle(a, pool).reveal(state, first)
    t1 = time.perf_counter()
    m = MeasuredEmbedder(space)(state)
    zp = SpacePredictor(space)(pool, state, m.index, m.z)
    feats = policy.features(pool, state, space, measured=m, zp=zp)
    features_s = time.perf_counter() - t1
    k_new = min(k, int(feats.available.sum()))
    policy.select(feats, (1, 1, 1), k_new)  # warm-up (first trunk pass, allocations)
    times = []
    picks = []
    for _ in range(repeats):
        w = rng.dirichlet(np.ones(3))
        t = time.perf_counter()
        idx = policy.select(feats, w, k_new)
        times.append(time.perf_counter() - t)
        picks.append(set(idx.tolist()))
    changed = np.mean([len(picks[i] ^ picks[i - 1]) > 0 for i in range(1, len(picks))]) if len(picks) > 1 else float("nan")
    return {
        "n_spots": int(pool.n),
        "k": int(k_new),
        "repeats": repeats,
        "median_ms": 1000 * float(np.median(times)),
        "p90_ms": 1000 * float(np.percentile(times, 90)),
        "min_ms": 1000 * float(np.min(times)),
        "features_s": features_s,
        "setup_s": setup,
        "frac_weight_changes_that_changed_selection": float(changed),
        "trained_episodes": train_episodes,
        "substeps": policy.config.substeps,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--budget", type=float, default=0.15)
    ap.add_argument("--train-episodes", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results as JSON")
    args = ap.parse_args(argv)
    import torch

    rows = [measure(n, repeats=args.repeats, budget=args.budget, train_episodes=args.train_episodes) for n in args.sizes]
    print(f"# SCRL re-selection latency after a weight change ({platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} torch threads available; select runs single-threaded)")
    print("| spots | k (15 %) | median ms | p90 ms | target ms | round features s | selection changed |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        target = 50 if r["n_spots"] <= 5500 else 500
        print(f"| {r['n_spots']:,} | {r['k']:,} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | {target} | "
              f"{r['features_s']:.2f} | {r['frac_weight_changes_that_changed_selection']:.0%} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
