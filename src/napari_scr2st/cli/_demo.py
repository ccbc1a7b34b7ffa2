"""``scr2st demo``: the paper's loop on the embedded synthetic sample, end to end, with SCRL.

sample -> vision embeddings -> SCRL policy (shipped, or trained here) -> select in simulated rounds
with every sampler on the same pool and seed (rare-compartment recovery side by side) -> cell
types of the sequenced spots (label transfer from the single-cell reference) -> SCR2Net trained on
the sequenced spots of the demo's sampler -> predict every spot -> evaluate on the unsequenced
spots -> the paired label-efficiency protocol (:mod:`napari_scr2st.benchmark.protocol`, ridge
downstream) -> the PCC-vs-budget figure, tables and ``summary.json``.

The SCRL policy: ``src/napari_scr2st/_resources/demo_policy.pt`` is built by
``scripts/build_demo_policy.py`` with :data:`SHIPPED_POLICY` (synthetic samples of OTHER seeds
than the demo's, the default encoder); the demo uses it when it fits (same encoder, a demo seed
it was not trained on) and otherwise trains a small policy in the demo
(:func:`iter_demo_policy`, deterministic for ``--seed``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..config import DEFAULT_ENCODER, SAMPLERS, SamplingSettings

__all__ = ["register", "run", "DemoPolicySpec", "SHIPPED_POLICY", "TABLE_SAMPLERS", "DEMO_N_SPOTS",
           "shipped_policy_path", "iter_demo_policy", "build_policy_file", "load_shipped_policy"]

_D = SamplingSettings()
DEMO_N_SPOTS = 1000
#: the samplers of the side-by-side table and of the PCC-vs-budget figure (``ar`` is left out: slow, not asked)
TABLE_SAMPLERS = ("random", "grid", "kcenter", "typiclust", "greedy", "scrl", "uncertainty", "gp", "lcmd")
BENCH_BUDGETS = (0.05, 0.1, 0.15, 0.3, 1.0)
POLICY_FILE = "demo_policy.pt"


@dataclass(frozen=True)
class DemoPolicySpec:
    """How a demo policy is trained: on synthetic samples of ``train_seeds`` (``train_spots``
    spots each, ``encoder`` embeddings, each with its own reference space), ``imitation_episodes``
    greedy-imitation then ``episodes`` REINFORCE episodes of ``rounds`` rounds, policy seed ``seed``."""

    encoder: str = DEFAULT_ENCODER
    train_seeds: tuple[int, ...] = (1, 2, 3)
    train_spots: int = 800
    imitation_episodes: int = 30
    episodes: int = 30
    rounds: int = 3
    group_size: int = 4
    budget_range: tuple[float, float] = (0.08, 0.3)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train_seeds"] = list(self.train_seeds)
        d["budget_range"] = list(self.budget_range)
        return d


#: the spec of the shipped policy file (``scripts/build_demo_policy.py`` builds it)
SHIPPED_POLICY = DemoPolicySpec()


def shipped_policy_path() -> Path:
    """The shipped demo policy (package data); its sidecar is ``<path>.json``."""
    from importlib.resources import files

    return Path(str(files("napari_scr2st").joinpath("_resources", POLICY_FILE)))


def iter_demo_policy(spec: DemoPolicySpec, *, device: str = "auto", batch_size: int = 64,
                     vision_key: str = "X_vision") -> Generator[Any, None, Any]:
    """Train an SCRL policy as ``spec`` says; yields progress, returns the policy. Deterministic
    for a spec on a machine (fixed sample, policy and episode seeds)."""
    from ..data import make_sample
    from ..features import iter_ensure_vision_embedding
    from ..progress import Progress
    from ..sampling.scrl import PolicyEnv, SCRLPolicy, iter_train_policy
    from ..session import fit_reference_space

    envs = []
    for k, s in enumerate(spec.train_seeds):
        smp = make_sample(spec.train_spots, seed=s, section=f"SYN-train{s}")
        yield Progress(k, len(spec.train_seeds), f"training sample {s}: vision embeddings")
        for _ in iter_ensure_vision_embedding(smp.section, spec.encoder, key=vision_key, device=device,
                                              batch_size=batch_size):
            pass
        space = fit_reference_space(smp.reference, smp.section, seed=s)
        envs.append(PolicyEnv.from_adata(smp.section, space, name=f"SYN-train{s}", vision_key=vision_key))
    policy = SCRLPolicy.for_space(envs[0].space, seed=spec.seed)
    yield from iter_train_policy(policy, envs, episodes=spec.episodes, rounds=spec.rounds, group_size=spec.group_size,
                                 budget_range=tuple(spec.budget_range), seed=spec.seed,
                                 imitation_episodes=spec.imitation_episodes)
    return policy


def build_policy_file(spec: DemoPolicySpec, path: str | Path, *, use_tqdm: bool = True) -> Path:
    """Train a policy with ``spec`` and save it to ``path`` (.pt) with a ``<path>.json`` sidecar
    that also records ``demo_policy`` (the spec) and ``vision_dim``."""
    from .. import __version__
    from ..atomic import atomic_write
    from ..progress import drive

    policy = drive(iter_demo_policy(spec), desc="train demo SCRL policy", use_tqdm=use_tqdm)
    path = Path(path)
    policy.save(path)
    side = path.with_name(path.name + ".json")
    meta = json.loads(side.read_text())
    meta["demo_policy"] = spec.to_dict()
    meta["built_by"] = {"script": "scripts/build_demo_policy.py", "napari_scr2st": __version__}
    with atomic_write(side) as fh:
        fh.write(json.dumps(meta, indent=1))
    return path


def load_shipped_policy():
    """``(policy, spec dict)`` of the shipped file, or ``(None, reason)`` when it is missing."""
    from ..sampling.scrl import SCRLPolicy

    path = shipped_policy_path()
    side = path.with_name(path.name + ".json")
    if not path.is_file() or not side.is_file():
        return None, f"no shipped policy at {path}"
    meta = json.loads(side.read_text()).get("demo_policy")
    if not meta:
        return None, f"{side} does not say how the policy was built"
    return SCRLPolicy.load(path), meta


# ------------------------------------------------------------------------------ CLI
def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole loop (SCRL and every baseline) on the embedded SYNTHETIC sample (offline); tables and figures",
        description="The paper's loop on the embedded SYNTHETIC sample: select in simulated rounds with SCRL and the "
                    "baselines on the same pool, cell types of the sequenced spots, SCR2Net, evaluation, and the "
                    "paired label-efficiency protocol (PCC vs budget, ridge downstream).",
    )
    p.add_argument("--n-spots", type=int, default=DEMO_N_SPOTS,
                   help=f"spots of the synthetic sample (default {DEMO_N_SPOTS})")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample, the samplers and the models (default 0)")
    p.add_argument("--out", default="scr2st-demo", help="output folder (default ./scr2st-demo)")
    p.add_argument("--model", default=DEFAULT_ENCODER,
                   help=f"vision encoder: a timm name or 'patch-stats' (default {DEFAULT_ENCODER}, offline ImageNet weights)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sampler", default=_D.sampler, choices=SAMPLERS,
                   help=f"the sampler whose selection is exported and modelled (default {_D.sampler}); the table "
                        "shows every sampler")
    p.add_argument("--budget", default=_D.budget,
                   help=f"spots to sequence: a count or a percentage (default {_D.budget.replace('%', '%%')})")
    p.add_argument("--rounds", type=int, default=3, help="sequencing rounds (default 3)")
    p.add_argument("--policy", default="auto",
                   help="SCRL policy: 'auto' (the shipped one when it fits the encoder and seed, else trained here), "
                        "'train' (train one here) or a policy file (.pt) (default auto)")
    p.add_argument("--policy-episodes", type=int, default=10,
                   help="a policy trained here: imitation and REINFORCE episodes each (default 10)")
    p.add_argument("--bench-seeds", type=int, default=3,
                   help="seeds of the paired label-efficiency protocol (default 3)")
    p.add_argument("--epochs", type=int, default=25, help="SCR2Net epochs on the frozen embeddings (default 25)")
    p.add_argument("--no-model", action="store_true",
                   help="stop after the selection step (no SCR2Net, no label-efficiency protocol)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    from ._common import check_budget, check_file, check_output, check_range

    check_range(args.n_spots, "--n-spots", lo=100)
    check_range(args.rounds, "--rounds", lo=1)
    check_range(args.batch_size, "--batch-size", lo=1)
    check_range(args.policy_episodes, "--policy-episodes", lo=1)
    check_range(args.bench_seeds, "--bench-seeds", lo=1)
    check_range(args.epochs, "--epochs", lo=1)
    check_budget(args.budget)
    check_output(args.out, "--out", folder=True)
    if args.policy not in ("auto", "train"):
        check_file(args.policy, "--policy", suffixes=(".pt",), what="policy file (.pt)")


def _policy(args: argparse.Namespace, space, vision_dim: int):
    """``(policy, description, spec dict or None)`` for ``--policy``."""
    from ..progress import drive
    from ._common import CLIError
    from ._sampling import _load_policy_arg

    if args.policy not in ("auto", "train"):
        pol = _load_policy_arg(args.policy)
        how = f"loaded from {args.policy}"
        meta = None
    else:
        pol, meta, why = None, None, ""
        if args.policy == "auto":
            shipped, meta = load_shipped_policy()
            if shipped is None:
                why = meta
            elif meta.get("encoder") != args.model:
                why = f"the shipped policy was built for encoder {meta.get('encoder')}, not {args.model}"
            elif args.seed in meta.get("train_seeds", []):
                why = f"the shipped policy was trained on synthetic seed {args.seed}, the demo's sample"
            else:
                pol = shipped
                how = (f"shipped ({shipped_policy_path().name}: {meta['imitation_episodes']} imitation + "
                       f"{meta['episodes']} REINFORCE episodes on synthetic samples of seeds {meta['train_seeds']}, "
                       f"never this one; built by scripts/build_demo_policy.py)")
        if pol is None:
            seeds = (args.seed + 1, args.seed + 2)
            spec = replace(SHIPPED_POLICY, encoder=args.model, train_seeds=seeds,
                           train_spots=min(args.n_spots, 400), imitation_episodes=args.policy_episodes,
                           episodes=args.policy_episodes, seed=args.seed)
            pol = drive(iter_demo_policy(spec, device=args.device, batch_size=args.batch_size),
                        desc="train SCRL policy", use_tqdm=not args.quiet)
            meta = spec.to_dict()
            how = (f"trained here{' (' + why + ')' if why else ''}: {spec.imitation_episodes} imitation + "
                   f"{spec.episodes} REINFORCE episodes on synthetic samples of seeds {list(spec.train_seeds)} "
                   f"({spec.train_spots} spots each)")
    try:
        pol.check_space(space)
    except ValueError as e:
        raise CLIError(f"--policy: {e}") from e
    if pol.config.vision_dim not in (0, None, vision_dim):
        raise CLIError(f"--policy: the policy was trained on {pol.config.vision_dim}-dimensional vision embeddings; "
                       f"--model {args.model} gives {vision_dim}")
    return pol, how, meta


def _select_all(section, space, policy, *, samplers: Sequence[str], budget, rounds: int, seed: int, weights,
                use_tqdm: bool):
    """Every sampler on the same pool, budget, rounds and seed: ``{name: AcquisitionResult}``."""
    from ..progress import drive
    from ..sampling.loop import iter_acquisition
    from ..sampling.measured import MeasuredEmbedder, RewardEvaluator
    from ..sampling.oracle import SimulatedOracle
    from ..sampling.pool import Pool, SelectionRequest
    from ..sampling.registry import make_sampler
    from ..sampling.thread_limits import single_thread

    pool = Pool.from_adata(section, require_vision=True)
    embedder = MeasuredEmbedder(space)
    out = {}
    for name in samplers:
        evaluator = RewardEvaluator(space, pool, weights, embedder=embedder)
        sampler = make_sampler(name, seed=seed, space=space, weights=weights, policy=policy)
        request = SelectionRequest(budget=budget, rounds=rounds, seed=seed)
        with single_thread():
            out[name] = drive(iter_acquisition(pool, sampler, request, oracle=SimulatedOracle(section, pool),
                                               evaluator=evaluator), desc=f"select {name}", use_tqdm=use_tqdm)
    return out


def _fmt(mean: float, sd: float, pct: bool = False) -> str:
    import math

    if mean is None or math.isnan(mean):
        return "n/a"
    return f"{100 * mean:.1f} ± {100 * sd:.1f}" if pct else f"{mean:.3f} ± {sd:.3f}"


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from ..atomic import atomic_path, atomic_write
    from ..data import make_sample, summarize
    from ..data.synthetic import RARE_COMPARTMENT
    from ..features import iter_ensure_vision_embedding
    from ..io.export import selection_table, write_selection_csv
    from ..palette import user_rounds
    from ..plotting import plot_overview
    from ..progress import drive
    from ..sampling.reward import RewardWeights
    from ..session import fit_reference_space

    _check(args)
    tq = not args.quiet
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    sample = make_sample(n_spots=args.n_spots, seed=args.seed)
    section, reference = sample.section, sample.reference
    name = str(section.obs["section"].iloc[0])
    rare = section.obs["true_compartment"].astype(str).to_numpy() == RARE_COMPARTMENT
    n_rare, share = int(rare.sum()), float(rare.mean())
    print(f"[1] synthetic sample (seed {args.seed}): {section.n_obs} spots, reference {reference.n_obs} cells "
          f"of {reference.obs['celltype_major'].nunique()} types; rare compartment '{RARE_COMPARTMENT}': {n_rare} "
          f"spots ({100 * share:.1f}%)  ({time.perf_counter() - t0:.1f} s)")

    t = time.perf_counter()
    desc = drive(iter_ensure_vision_embedding(section, args.model, key="X_vision", device=args.device,
                                              batch_size=args.batch_size), desc="vision embeddings", use_tqdm=tq)
    emb = np.asarray(section.obsm["X_vision"])
    seconds["embeddings"] = time.perf_counter() - t
    print(f"[2] vision embeddings {desc}: {emb.shape[0]} x {emb.shape[1]}  ({seconds['embeddings']:.1f} s)")
    print(summarize(section))
    clean = section.copy()  # for the protocol: no selection columns
    files.append(Path(plot_overview(section, out / "overview.png", color="true_compartment",
                                    title=f"synthetic section {name} (ground-truth compartments)")))
    print(f"    overview written: {files[-1]}")

    t = time.perf_counter()
    space = fit_reference_space(reference, section, seed=args.seed, spots_name=name)
    policy, how, policy_meta = _policy(args, space, emb.shape[1])
    seconds["policy"] = time.perf_counter() - t
    print(f"[3] SCRL policy {how}  ({seconds['policy']:.1f} s)")

    t = time.perf_counter()
    weights = RewardWeights(*_D.weights)
    samplers = list(dict.fromkeys([*TABLE_SAMPLERS, args.sampler]))
    results = _select_all(section, space, policy, samplers=samplers, budget=args.budget, rounds=args.rounds,
                          seed=args.seed, weights=weights, use_tqdm=tq)
    seconds["selection"] = time.perf_counter() - t
    res = results[args.sampler]
    mask = np.asarray(res.state.measured, dtype=bool)
    terms = res.final
    print(f"[4] selection, every sampler on the same pool ({args.budget}, {args.rounds} rounds, seed {args.seed}); "
          f"the demo's sampler {args.sampler}: {mask.sum()} spots; reward coverage={terms.sc:.3f} "
          f"cell types={terms.type:.3f} spatial={terms.sp:.3f} total={terms.total(weights):.3f}  "
          f"({seconds['selection']:.1f} s)")
    # cell types of the SEQUENCED spots only (label transfer of their measured expression)
    lt = space.transfer_labels(space.embed_counts(section.X[mask], list(section.var_names)))
    section.obs["cell_type"] = "unmeasured"
    section.obs.loc[mask, "cell_type"] = np.asarray(lt.celltypes)[lt.codes]
    section.obs["cell_type"] = section.obs["cell_type"].astype("category")
    section.obs["selected"] = mask
    section.obs["round"] = np.where(mask, user_rounds(res.state.round), 0)  # counted from 1, 0 = not selected
    table = selection_table(section, res.state, which="all", predicted_cell_type=section.obs["cell_type"])
    files.append(Path(write_selection_csv(table, out / "selection.csv")))
    print(f"    selection CSV for the sequencing lab: {files[-1]}; rare compartment spots picked: "
          f"{int((mask & rare).sum())} of {n_rare}")
    files.append(Path(plot_overview(section, out / "selection.png", selected=mask, color="true_compartment",
                                    title=f"{args.sampler}: {mask.sum()} spots to sequence (outlined)")))

    rows = []
    for s, r in results.items():
        m = np.asarray(r.state.measured, dtype=bool)
        k = int((m & rare).sum())
        rows.append({"sampler": s, "demo_sampler": s == args.sampler, "n_selected": int(m.sum()), "rare_selected": k,
                     "rare_fraction": k / max(int(m.sum()), 1), "rare_share": share,
                     "enrichment": (k / max(int(m.sum()), 1)) / share if share > 0 else float("nan")})
    recovery = pd.DataFrame(rows)

    metrics: dict[str, Any] = {}
    bench = None
    if not args.no_model:
        from ._model import demo_model_step

        t = time.perf_counter()
        metrics = demo_model_step(section, mask, cell_type_key="cell_type", epochs=args.epochs,
                                  seed=args.seed, device=args.device)
        seconds["scr2net"] = time.perf_counter() - t
        print(f"[5] SCR2Net trained on {metrics['n_train']} spots of {args.sampler}, predicted {section.n_obs} spots "
              f"({seconds['scr2net']:.1f} s)")
        print(f"    evaluation on the {metrics['n_test']} unsequenced spots ({len(metrics['genes'])} genes): "
              f"PCC all={metrics['pcc_all']:.3f} top-50 HEG={metrics['pcc_heg50']:.3f} "
              f"top-50 HVG={metrics['pcc_hvg50']:.3f} MSE={metrics['mse']:.3f} MAE={metrics['mae']:.3f}")
        gene = "EPCAM" if "EPCAM" in metrics["genes"] else metrics["genes"][0]
        section.obs[f"pred_{gene}"] = section.obsm["X_pred"][gene].to_numpy()
        files.append(Path(plot_overview(section, out / f"predicted_{gene}.png", color=f"pred_{gene}",
                                        title=f"predicted {gene} (log1p normalised), trained on {mask.sum()} spots")))
        keep = {k: v for k, v in metrics.items() if k != "genes"}
        with atomic_write(out / "metrics.json") as fh:
            fh.write(json.dumps(keep, indent=2, default=float))
        files.append(out / "metrics.json")

        t = time.perf_counter()
        bench, paths = _protocol(clean, space, policy, args, samplers=samplers, rare_keys=rare, out=out, use_tqdm=tq)
        files += paths
        seconds["protocol"] = time.perf_counter() - t
        frac = bench.attrs["demo_budget"]
        recovery = recovery.merge(bench.attrs["at_budget"], on="sampler", how="left")
        print(f"[6] paired label-efficiency protocol (within; a fixed 20% test set never selectable; budgets "
              f"{', '.join(f'{b:g}' for b in sorted(set(bench['budget'])))} of the other spots; seeds "
              f"{sorted(set(bench['seed']))}; ridge on the frozen embedding, SCR2Net is too slow for the demo): "
              f"{paths[0].name} ({seconds['protocol']:.1f} s)")
    else:
        frac = None

    with atomic_write(out / "samplers.csv", newline="") as fh:
        recovery.to_csv(fh, index=False)
    files.append(out / "samplers.csv")
    n_sel = int(mask.sum())
    print(f"[7] samplers side by side at {args.budget} ({n_sel} of {section.n_obs} spots, {args.rounds} rounds); "
          f"rare compartment '{RARE_COMPARTMENT}': {n_rare} spots = {100 * share:.1f}% of the tissue (what random "
          f"picks expect); * = the demo's sampler (selection.csv)")
    print(f"    left: this selection (seed {args.seed}, every spot selectable, the same pool for every sampler)")
    if frac is not None:
        print(f"    right: the paired protocol at {100 * frac:g}% (mean ± sd over {args.bench_seeds} seeds; a fixed 20% "
              "test set held out; ridge downstream; greedy and the one SCRL policy do not depend on the seed)")
    head = f"    {'sampler':<12} {'picked':>6} {'rare':>5} {'rare %':>7} {'x share':>7}"
    if frac is not None:
        head += f" | {'rare %':>11} {'PCC HEG50':>13} {'PCC all':>13}"
    print(head)
    for r in recovery.itertuples():
        line = (f"    {r.sampler + ('*' if r.demo_sampler else ''):<12} {r.n_selected:>6d} {r.rare_selected:>5d} "
                f"{100 * r.rare_fraction:>6.1f}% {r.enrichment:>7.2f}")
        if frac is not None:
            line += (f" | {_fmt(r.p_rare_mean, r.p_rare_sd, pct=True):>11} {_fmt(r.pcc_heg50_mean, r.pcc_heg50_sd):>13} "
                     f"{_fmt(r.pcc_all_mean, r.pcc_all_sd):>13}")
        print(line)

    summary = {
        "sample": {"kind": "SYNTHETIC", "n_spots": int(section.n_obs), "seed": args.seed,
                   "rare_compartment": RARE_COMPARTMENT, "n_rare": n_rare, "rare_share": share},
        "encoder": desc, "sampler": args.sampler, "budget": args.budget, "rounds": args.rounds,
        "policy": {"how": how, "spec": policy_meta},
        "samplers": json.loads(recovery.to_json(orient="records")),
        "model": {k: v for k, v in metrics.items() if k != "genes"},
        "files": [p.name for p in files] + ["summary.json"],
        "seconds": {k: round(v, 1) for k, v in seconds.items()} | {"total": round(time.perf_counter() - t0, 1)},
    }
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1, default=float))
    print(f"    written to {out}/: {', '.join(summary['files'])}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def _protocol(section, space, policy, args, *, samplers, rare_keys, out: Path, use_tqdm: bool):
    """The paired protocol on the demo's section (ridge downstream, the demo's policy); returns the
    ridge frame (``attrs``: ``demo_budget``, ``at_budget`` per sampler) and the paths written."""
    import numpy as np
    import pandas as pd

    from ..benchmark.protocol import iter_label_efficiency, plot_label_efficiency, write_results
    from ..progress import drive
    from ..sampling.pool import resolve_budget

    name = str(section.obs["section"].iloc[0])
    frac = resolve_budget(args.budget, section.n_obs) / section.n_obs
    frac = round(float(frac), 4)
    budgets = sorted({*BENCH_BUDGETS, frac})
    rare_of = dict(zip((f"{name}:{i}" for i in section.obs_names), np.asarray(rare_keys, dtype=bool), strict=True))
    runs = []

    def record(run) -> None:
        if run.budget == frac:
            picked = run.keys[run.train]
            runs.append({"sampler": run.sampler, "seed": run.seed,
                         "p_rare": float(np.mean([rare_of[k] for k in picked])) if len(picked) else float("nan")})

    seeds = [args.seed + k for k in range(args.bench_seeds)]
    frames = drive(iter_label_efficiency({name: section}, space, protocol="within", samplers=samplers,
                                         budgets=budgets, seeds=seeds, rounds=args.rounds, n_genes=100,
                                         downstream="ridge", dataset="synthetic", on_run=record, scrl_policy=policy),
                   desc="PCC vs budget", use_tqdm=use_tqdm)
    df = frames["ridge"]
    df.attrs["notes"] = [*df.attrs.get("notes", []),
                         f"SCRL policy: {'the demo policy' if policy is not None else 'none'}; synthetic sample "
                         f"seed {args.seed}, {section.n_obs} spots"]
    paths = write_results(frames, out)
    label = "pcc_heg50 (ridge downstream)"
    fig = plot_label_efficiency(df.assign(**{label: df["pcc_heg50"]}), out / "label_efficiency.png", metric=label)
    at = df[df["budget"] == frac].groupby("sampler", sort=False).agg(
        pcc_heg50_mean=("pcc_heg50", "mean"), pcc_heg50_sd=("pcc_heg50", "std"),
        pcc_all_mean=("pcc_all", "mean"), pcc_all_sd=("pcc_all", "std"))
    rr = pd.DataFrame(runs).groupby("sampler", sort=False)["p_rare"].agg(p_rare_mean="mean", p_rare_sd="std")
    at = at.join(rr).reset_index().fillna({"pcc_heg50_sd": 0.0, "pcc_all_sd": 0.0, "p_rare_sd": 0.0})
    df.attrs["demo_budget"] = frac
    df.attrs["at_budget"] = at
    return df, [Path(fig), *[Path(p) for p in paths]]
