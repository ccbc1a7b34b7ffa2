"""Does the SCRL policy respond to the reward weights? (live tuning, METHOD section 4)

On the embedded synthetic sample (``make_sample(2000, seed)``, patch-statistics vision stand-in,
its own reference space) a policy is prepared by each recipe below; then, for each weight vector
(1,0,0), (0,1,0), (0,0,1), (1,1,1), the acquisition loop runs in simulation (``rounds`` rounds,
15 % of the spots, deployment top-k, picks revealed only after they are chosen) and the reward
terms of the final measured set are computed from the REVEALED expression (as the loop and the
sampling benchmark do). Printed per recipe: the terms of each selection and the Jaccard overlap
between the selections of the four weight vectors; random and grid selections as yardsticks.

A policy that honours the weights has: r_sc higher at (1,0,0) than at the two other corners,
r_type higher at (0,1,0), r_sp higher at (0,0,1) (the bold cells), and selections that differ
(Jaccard well below 1). r_sc moves in steps of 1/100 (one reference cluster) here, so its
differences are mostly noise; r_type depends on the cell types PREDICTED from the measured spots.

Recipes (``--recipes``):

- ``untrained``: a fresh policy (vision PCA fitted on the section).
- ``legacy-gui``: what the napari "Pre-train" button did before the fix: pure REINFORCE on the
  section itself, ``--episodes`` episodes, 2 rounds, group 4, Dirichlet(1) weights, no imitation,
  no auxiliary term-gain loss.
- ``gui``: the napari "Pre-train" button now (``AcquisitionSession.iter_pretrain`` with
  ``--episodes`` episodes, 2 rounds), trained on the section itself.
- ``imitation``: the CLI recipe (``--imitation`` imitation episodes of the greedy maximiser,
  then ``--episodes`` REINFORCE episodes, 4 rounds; current defaults of ``iter_train_policy``),
  trained on the section itself.

    python3 benchmarks/bench_policy_weights.py                        # all recipes, ~5-8 min on 2 cores
    python3 benchmarks/bench_policy_weights.py --recipes untrained gui --episodes 25
"""

from __future__ import annotations

import argparse
import time

import numpy as np

WEIGHTS = {"(1,0,0)": (1, 0, 0), "(0,1,0)": (0, 1, 0), "(0,0,1)": (0, 0, 1), "(1,1,1)": (1, 1, 1)}
RECIPES = ("untrained", "legacy-gui", "gui", "imitation")


def _setup(n_spots: int, seed: int):
    from napari_scr2st.data import make_sample
    from napari_scr2st.features.patch_stats import patch_statistics_embedding
    from napari_scr2st.reference import ReferenceSpace, prepare_reference
    from napari_scr2st.sampling.scrl import PolicyEnv

    smp = make_sample(n_spots, seed=seed)
    a = smp.section
    a.obsm["X_vision"] = patch_statistics_embedding(a)
    space = ReferenceSpace.fit(prepare_reference(smp.reference, a.var_names), seed=seed)
    return a, space, PolicyEnv.from_adata(a, space)


def make_policy(recipe: str, a, space, env, *, episodes: int, imitation: int, seed: int):
    from napari_scr2st.progress import drive
    from napari_scr2st.sampling.scrl import SCRLPolicy, iter_train_policy

    pol = SCRLPolicy.for_space(space, seed=seed)
    pol.fit_vision([env.pool.vision])
    if recipe == "untrained":
        return pol
    if recipe == "legacy-gui":
        drive(iter_train_policy(pol, [env], space, episodes=episodes, rounds=2, group_size=4, seed=seed,
                                **_legacy_kwargs()), use_tqdm=False)
    elif recipe == "gui":
        from napari_scr2st.config import SamplingSettings
        from napari_scr2st.session import AcquisitionSession

        s = AcquisitionSession(a, space=space, settings=SamplingSettings(sampler="scrl", rounds=2, seed=seed))
        s.policy = pol
        drive(s.iter_pretrain(episodes), use_tqdm=False)
    elif recipe == "imitation":
        drive(iter_train_policy(pol, [env], space, episodes=episodes, rounds=4, seed=seed,
                                imitation_episodes=imitation), use_tqdm=False)
    else:
        raise ValueError(f"unknown recipe {recipe!r}; choose from {RECIPES}")
    return pol


def _legacy_kwargs() -> dict:
    """Options that reproduce the pre-fix REINFORCE (only those this version of the code knows)."""
    import inspect

    from napari_scr2st.sampling.scrl import iter_train_policy

    legacy = {"dirichlet_alpha": 1.0, "imitation_episodes": 0, "aux_coef": 0.0, "corner_prob": 0.0}
    params = inspect.signature(iter_train_policy).parameters
    return {k: v for k, v in legacy.items() if k in params}


def evaluate(select_fn, env, *, budget: int, rounds: int) -> dict:
    """Run the loop for each weight vector with ``select_fn(weights, state, k, t)``; terms and sets."""
    from napari_scr2st.sampling.pool import round_schedule
    from napari_scr2st.sampling.state import SelectionState

    out = {}
    for name, w in WEIGHTS.items():
        state = SelectionState.for_pool(env.pool)
        state.budget, state.n_rounds = budget, rounds
        for t, k in enumerate(round_schedule(budget, rounds)):
            state.current_round = t
            picks = select_fn(w, state, k, t)
            state.mark_selected(picks)
            env.oracle.reveal(state, picks)
        terms = env.evaluator.terms(state)
        out[name] = (terms, set(np.flatnonzero(state.selected).tolist()))
    return out


def policy_select(policy, env):
    from napari_scr2st.sampling.surrogate import SpacePredictor

    def fn(w, state, k, _t):
        m = env.evaluator.measured(state)
        zp = SpacePredictor(env.space)(env.pool, state, m.index, m.z)
        feats = policy.features(env.pool, state, env.space, measured=m, zp=zp)
        return policy.select(feats, w, k)

    return fn


def sampler_select(name, env, seed):
    from napari_scr2st.sampling.registry import make_sampler

    smp = make_sampler(name, seed=seed)
    return lambda _w, state, k, _t: smp.select(env.pool, k, state)


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(len(a | b), 1)


def report(label: str, res: dict, seconds: float | None = None) -> list[str]:
    names = list(WEIGHTS)
    lines = [f"### {label}" + (f" (trained in {seconds:.0f} s)" if seconds else ""), "",
             "| weights | r_sc | r_type | r_sp | J(1,0,0) | J(0,1,0) | J(0,0,1) | J(1,1,1) |",
             "|---|---|---|---|---|---|---|---|"]
    for n in names:
        t = res[n][0].as_array()
        cells = [f"**{t[j]:.3f}**" if n == names[j] else f"{t[j]:.3f}" for j in range(3)]
        js = [f"{jaccard(res[n][1], res[m][1]):.2f}" for m in names]
        lines.append(f"| {n} | " + " | ".join(cells + js) + " |")
    corners = names[:3]
    ok = [all(res[corners[j]][0].as_array()[j] > res[c][0].as_array()[j] for c in corners if c != corners[j])
          for j in range(3)]
    lines.append("")
    lines.append("term higher at its own corner than at the two other corners (sc, type, sp): "
                 + ", ".join("yes" if o else "NO" for o in ok))
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-spots", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=0.15)
    ap.add_argument("--rounds", type=int, default=4, help="acquisition rounds of the evaluation loop (default 4)")
    ap.add_argument("--episodes", type=int, default=25, help="REINFORCE episodes (GUI default 20)")
    ap.add_argument("--imitation", type=int, default=30, help="imitation episodes of the 'imitation' recipe")
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    ap.add_argument("--no-baselines", action="store_true", help="skip the random/grid yardsticks")
    args = ap.parse_args(argv)

    from napari_scr2st.sampling.thread_limits import single_thread

    t0 = time.perf_counter()
    a, space, env = _setup(args.n_spots, args.seed)
    budget = int(round(args.budget * env.pool.n_in_pool))
    print(f"# SCRL weight sensitivity: make_sample({args.n_spots}, seed={args.seed}) ({env.pool.n_in_pool} spots), "
          f"patch-statistics vision, budget {budget} ({args.budget:.0%}), {args.rounds} rounds, top-k deployment "
          f"(setup {time.perf_counter() - t0:.0f} s)\n")
    with single_thread():
        if not args.no_baselines:
            for name in ("random", "grid"):
                res = evaluate(sampler_select(name, env, args.seed), env, budget=budget, rounds=args.rounds)
                t = np.mean([r[0].as_array() for r in res.values()], axis=0)  # weight-blind: mean over the 4 runs
                print(f"yardstick {name}: r_sc {t[0]:.3f}  r_type {t[1]:.3f}  r_sp {t[2]:.3f}")
            print()
        for recipe in args.recipes:
            t1 = time.perf_counter()
            pol = make_policy(recipe, a, space, env, episodes=args.episodes, imitation=args.imitation, seed=args.seed)
            dt = time.perf_counter() - t1
            res = evaluate(policy_select(pol, env), env, budget=budget, rounds=args.rounds)
            label = {"untrained": "untrained",
                     "legacy-gui": f"legacy GUI pre-train ({args.episodes} REINFORCE episodes, no imitation)",
                     "gui": f"GUI pre-train now (iter_pretrain_policy, {args.episodes} episodes)",
                     "imitation": f"CLI recipe ({args.imitation} imitation + {args.episodes} REINFORCE episodes)"}[recipe]
            print("\n".join(report(label, res, dt if recipe != "untrained" else None)))
            print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
