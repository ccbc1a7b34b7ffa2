"""``scr2st select`` / ``import-counts`` / ``train-policy`` (and the ``benchmark`` verb group, see ``_benchmark.py``).

Examples::

    # the embedded SYNTHETIC sample: 15 % of the spots in 3 simulated rounds, greedy reward maximiser
    scr2st select --sampler greedy --budget 15% --rounds 3 --out selection.csv

    # a real section (no counts yet): round 1 of an SCRL selection, state kept for the next rounds
    scr2st select section.h5ad --reference wu2021.h5ad --sampler scrl --policy policy.pt \\
        --budget 15% --rounds 3 --weights 1,1,0.5 --state run.npz --out round1.csv
    # ... sequence the spots of round1.csv, then import the counts and select the next round
    scr2st import-counts --state run.npz round1_counts.csv
    scr2st select section.h5ad --reference wu2021.h5ad --sampler scrl --policy policy.pt \\
        --budget 15% --rounds 3 --state run.npz --out round2.csv

    # an H&E slide before sequencing (no counts): the legacy ST lattice over the tissue; ids {x}x{y}
    scr2st select slide.jpg --platform legacy_st --um-per-px 0.69 --sampler kcenter --budget 10% \
        --lock @must_have.txt --exclude previous_round.csv --state run.npz --out r1.geojson

    # pre-train the SCRL policy on fully measured sections, then benchmark the samplers
    scr2st train-policy /path/her2st --sections C2 C3 C4 C5 --reference wu2021.h5ad --out policy.pt
    scr2st benchmark sampling /path/her2st --sections B4 C2 C3 C4 C5 C6 --reference wu2021.h5ad --out bench/

Heavy imports happen inside the verbs; importing this module is cheap (no numpy, no torch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._common import (
    CLIError,
    add_input_args,
    check_budget,
    check_counts,
    check_embedding,
    check_file,
    check_inputs,
    check_output,
    check_range,
    load_sections,
    short_reason,
)
from ._spot_lists import parse_spot_list

__all__ = ["register", "run_select", "run_import_counts", "run_train_policy",
           "demo_selection_step", "DemoSelection"]

from ..config import SAMPLERS as SAMPLER_CHOICES
from ..config import PolicyTrainingSettings, SamplingSettings

_D = SamplingSettings()  # the defaults of select's options


# ------------------------------------------------------------------------------ registration
def register(subparsers) -> None:
    """Add ``select``, ``import-counts``, ``train-policy`` and ``benchmark sampling``."""
    p = subparsers.add_parser("select", help="choose which spots to sequence (active sampling)",
                              description="Choose which spots to sequence. With no input, the embedded SYNTHETIC "
                                          "sample is used and all rounds are simulated (its counts are held back "
                                          "and revealed round by round).")
    _add_inputs(p)
    _add_reference(p)
    p.add_argument("--sampler", default=_D.sampler, choices=SAMPLER_CHOICES, help=f"sampler (default {_D.sampler})")
    p.add_argument("--budget", default=_D.budget,
                   help=f"spots to sequence: a count (30) or a percentage (15%%) (default {_D.budget.replace('%', '%%')})")
    p.add_argument("--rounds", type=int, default=_D.rounds, help=f"acquisition rounds (default {_D.rounds})")
    p.add_argument("--weights", default=",".join(f"{w:g}" for w in _D.weights),
                   help="reward weights sc,type,sp (default %(default)s; the r_unc weight is --weight-unc), or "
                        "sc,type,sp,unc")
    p.add_argument("--weight-unc", type=float, default=None,
                   help=f"weight of the expected-error term r_unc, the predictor's posterior-variance reduction over "
                        f"the unsequenced spots (default {_D.w_unc:g}; or the fourth number of --weights)")
    p.add_argument("--policy", default=None, help="trained SCRL policy (.pt) for --sampler scrl")
    p.add_argument("--seed", type=int, default=_D.seed, help=f"random seed of the samplers (default {_D.seed})")
    p.add_argument("--per-section", action="store_true", help="apply the budget to each section instead of the pooled spots")
    p.add_argument("--lock", default=None,
                   help="spots that must be sequenced (count toward the budget): ids separated by commas (section:id "
                        "where ids repeat across sections), or @FILE / a file: one id per line, a selection table of "
                        "'scr2st select', or a spot_id[,section] CSV/TSV")
    p.add_argument("--exclude", default=None, help="spots never to pick (the forms of --lock)")
    p.add_argument("--state", default=None, help="selection state file (.npz): continued if it exists, written after the round")
    p.add_argument("--simulate", action="store_true", help="inputs are fully measured: hold their counts back and simulate all rounds")
    p.add_argument("--out", default="selection.csv",
                   help="selection table; the extension picks the format: .csv, .tsv, .geojson/.json (QuPath), "
                        ".h5ad (default selection.csv)")
    p.set_defaults(func=run_select)

    p = subparsers.add_parser("import-counts", help="import sequencing results (spots x genes CSV/TSV) into a selection state")
    p.add_argument("counts", help="CSV/TSV: spot id column (or 'spot_id'), optional 'section' column, one column per gene")
    p.add_argument("--state", required=True, help="selection state file (.npz) written by 'scr2st select --state'")
    p.add_argument("--section", default=None, help="section of all spots in the file (when ids repeat across sections)")
    p.add_argument("--overwrite", action="store_true", help="replace counts of spots imported before")
    p.set_defaults(func=run_import_counts)

    p = subparsers.add_parser("train-policy", help="pre-train the SCRL policy on fully measured sections (simulated episodes)")
    _add_inputs(p)
    _add_reference(p)
    _R = PolicyTrainingSettings()
    p.add_argument("--episodes", type=int, default=_R.episodes, help=f"REINFORCE episodes (default {_R.episodes})")
    p.add_argument("--rounds", type=int, default=_R.rounds, help=f"rounds per episode (default {_R.rounds})")
    p.add_argument("--group-size", type=int, default=_R.group_size,
                   help=f"rollouts per episode for the group baseline (default {_R.group_size})")
    budget_range = ",".join(f"{b:g}" for b in _R.budget_range)
    p.add_argument("--budget-range", default=budget_range,
                   help=f"budget fractions drawn per episode (default {budget_range})")
    p.add_argument("--imitation-episodes", type=int, default=_R.imitation_episodes,
                   help="warm-start episodes imitating the greedy reward maximiser before REINFORCE "
                        f"(default {_R.imitation_episodes}; 0: pure REINFORCE)")
    p.add_argument("--lr", type=float, default=_R.lr, help=f"REINFORCE learning rate (default {_R.lr:g})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="policy.pt", help="policy file (default policy.pt; a .json sidecar is written too)")
    p.set_defaults(func=run_train_policy)

    bench = subparsers.choices.get("benchmark") if hasattr(subparsers, "choices") else None
    if bench is None:
        bench = subparsers.add_parser("benchmark", help="benchmarks (sampling, ...)")
        bench.set_defaults(func=lambda _args, _p=bench: (_p.print_help(), 1)[1])
    sub = next((a for a in bench._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None:
        sub = bench.add_subparsers(dest="benchmark_what", metavar="WHAT")
    from ._benchmark import register as register_protocols

    register_protocols(sub)


def _add_inputs(p: argparse.ArgumentParser) -> None:
    add_input_args(p)
    p.add_argument("--vision-key", default=_D.vision_key, help="obsm key of the vision embedding (computed if missing)")
    p.add_argument("--encoder", default=_D.encoder,
                   help="vision encoder used when the embedding is missing (timm name, or 'patch-stats' for the instant stand-in)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_reference(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", default=None, help="single-cell reference .h5ad (raw counts, cell types in obs)")
    p.add_argument("--celltype-key", default=None,
                   help="obs column of the reference with cell types (default: the best candidate, named on stderr; "
                        "'scr2st info REFERENCE.h5ad' lists them)")
    p.add_argument("--embedding-key", default=None, help="use this reference obsm embedding instead of a PCA (spots must bring it)")


# ------------------------------------------------------------------------------ helpers
def _load(args) -> tuple[Any, Any, bool]:
    """(AnnData of all input sections, embedded reference or None, is_embedded_sample)."""
    adata, ref = load_sections(args)
    return adata, ref, not args.inputs


def _ensure_vision(adata, args) -> str:
    from ..features import ensure_vision_embedding

    name = ensure_vision_embedding(adata, args.encoder, key=args.vision_key)
    check_embedding(adata, args.vision_key, "+".join(map(str, adata.obs["section"].astype(str).unique())))
    return name


def _check_reference_args(args) -> None:
    if args.reference:
        check_file(args.reference, "--reference", suffixes=(".h5ad",), what="single-cell reference .h5ad")


def _reference(args, embedded_ref):
    """The single-cell reference of ``--reference`` (or the embedded sample's), else None."""
    from ..reference import read_reference

    if args.reference:
        return read_reference(args.reference, celltype_key=args.celltype_key)
    return embedded_ref


def _celltype_key(args, ref) -> str | None:
    """``--celltype-key``, else the column :func:`~napari_scr2st.reference.read_reference` chose."""
    if args.celltype_key or ref is None:
        return args.celltype_key
    return ref.uns.get("scr2st_reference", {}).get("celltype_key")


def _space(args, adata, embedded_ref, spots_name: str):
    from ..session import fit_reference_space

    ref = _reference(args, embedded_ref)
    if ref is None:
        return None
    space, overlap = fit_reference_space(ref, list(map(str, adata.var_names)), celltype_key=_celltype_key(args, ref),
                                         embedding_key=args.embedding_key, spots_name=spots_name, return_overlap=True)
    print(f"gene overlap: {overlap}", file=sys.stderr)
    return space


def _load_policy_arg(path: str):
    """The SCRL policy of ``--policy`` (a corrupt or foreign file is a :class:`CLIError`)."""
    from ..session import load_policy

    check_file(path, "--policy", suffixes=(".pt",), what="policy file (.pt)")
    try:
        return load_policy(path)
    except Exception as e:  # torch raises many types for a file that is not a policy
        raise CLIError(f"--policy {path}: not a policy written by 'scr2st train-policy' "
                       f"({short_reason(e)})") from e


# ------------------------------------------------------------------------------ verbs
def _settings(args) -> SamplingSettings:
    from ..sampling.reward import RewardWeights

    check_budget(args.budget)
    check_range(args.rounds, "--rounds", lo=1)
    given = [p for p in str(args.weights).replace(";", ",").split(",") if p.strip()]
    unc = getattr(args, "weight_unc", None)
    if len(given) == 4 and unc is not None:
        raise CLIError("--weight-unc: give the r_unc weight once (the fourth number of --weights or --weight-unc)")
    if unc is not None and not unc >= 0:
        raise CLIError(f"--weight-unc: the unc weight must be >= 0, got {unc:g}")
    text = args.weights if len(given) != 3 else f"{args.weights},{float(_D.w_unc if unc is None else unc)!r}"
    try:
        weights = RewardWeights.parse(text)
    except ValueError as e:
        raise CLIError(f"--weights: {e}") from e
    return SamplingSettings(budget=args.budget, rounds=args.rounds, sampler=args.sampler, seed=args.seed,
                            per_section=args.per_section, policy_path=args.policy or "", encoder=args.encoder,
                            vision_key=args.vision_key).with_weights(weights)


def _check_state(path: Path | None):
    """``--state``: a readable selection state when it exists, in a writable folder."""
    from ..sampling.state import SelectionState

    if path is None:
        return None
    check_output(path, "--state", suffixes=(".npz",))
    if not path.exists():
        return None
    check_file(path, "--state")
    try:
        return SelectionState.load(path)
    except (ValueError, KeyError, OSError) as e:
        raise CLIError(f"--state {path}: not a selection state written by 'scr2st select' ({e})") from e


def run_select(args: argparse.Namespace) -> int:
    from ..io.export import SELECTION_SUFFIXES
    from ..progress import drive
    from ..sampling.pool import Pool
    from ..sampling.reward import spatial_coverage
    from ..session import AcquisitionSession, has_counts

    # every argument is checked before anything slow (reading, the reference, embedding)
    settings = _settings(args)
    if settings.sampler == "scrl" and not settings.policy_path:
        raise CLIError("--sampler scrl needs --policy FILE (train one with 'scr2st train-policy')")
    if settings.sampler in ("greedy", "scrl") and not args.reference and args.inputs:
        raise CLIError(f"--sampler {settings.sampler} needs --reference (a single-cell reference .h5ad)")
    _check_reference_args(args)
    check_inputs(args)
    check_output(args.out, "--out", suffixes=SELECTION_SUFFIXES)
    state_path = Path(args.state) if args.state else None
    saved_state = _check_state(state_path)
    exclude = parse_spot_list(args.exclude, "--exclude")
    lock = parse_spot_list(args.lock, "--lock")
    policy = _load_policy_arg(settings.policy_path) if settings.policy_path else None

    adata, embedded_ref, embedded = _load(args)
    simulate = args.simulate or embedded
    if simulate and not has_counts(adata):
        raise CLIError("--simulate needs fully measured sections (their counts are revealed round by round)")
    # the spot ids are known once the sections are read: check --state and resolve --lock/--exclude
    # now, before the reference and the embedding (the session's pool has the same spots in order)
    ids_pool = Pool.from_adata(adata, vision_key=None)
    if saved_state is not None:
        try:
            saved_state.check_pool(ids_pool)
        except ValueError as e:
            raise CLIError(f"--state {state_path}: {e}") from e
    exclude_idx = exclude.resolve(ids_pool, "--exclude") if len(exclude) else None
    lock_idx = lock.resolve(ids_pool, "--lock") if len(lock) else None
    ref = _reference(args, embedded_ref)
    if settings.sampler in ("greedy", "scrl") and ref is None:
        raise CLIError(f"--sampler {settings.sampler} needs --reference (a single-cell reference .h5ad)")
    session = AcquisitionSession(adata, reference=ref, settings=settings, simulate=simulate,
                                 celltype_key=_celltype_key(args, ref), embedding_key=args.embedding_key)
    if state_path is not None and state_path.exists():
        session.load(state_path)
        session.sampling = settings  # the command line decides this round's settings
    drive(session.iter_prepare(encoder=args.encoder, policy=policy), desc="prepare", use_tqdm=not args.quiet)
    session.finish_prepare()
    check_embedding(adata, args.vision_key, session.library)
    if session.gene_overlap is not None:
        print(f"gene overlap: {session.gene_overlap}", file=sys.stderr)
    names = session.library
    vis = f"existing obsm['{args.vision_key}']" if session.vision_model is None else str(session.vision_model)
    print(f"{adata.n_obs} spots in {names}; vision: {vis}", file=sys.stderr)
    if exclude_idx is not None:
        session.exclude(exclude_idx)
    if lock_idx is not None:
        session.lock(lock_idx)
    if simulate:
        drive(session.iter_run_simulated(), desc="selection", use_tqdm=not args.quiet)
    was_waiting = session.waiting_for_counts
    st = session.committed
    st.meta.update(weights=str(session.weights), inputs=list(map(str, args.inputs)) or ["embedded synthetic sample"])
    if adata.n_vars:
        st.meta["section_genes"] = [str(g) for g in adata.var_names]  # import-counts checks the lab's gene naming
    session.export_round(args.out, state_path=state_path)
    st = session.committed
    msg = (f"selected {st.n_selected} of {session.pool.n_in_pool} spots (budget {st.budget}) with "
           f"{settings.sampler} -> {args.out}")
    if simulate and session.acq.history:
        t = session.acq.history[-1].terms
        w = session.weights
        msg += (f"\nreward of the measured set (weights {w}): r_sc={t.sc:.3f} r_type={t.type:.3f} "
                f"r_sp={t.sp:.3f} r_unc={t.unc:.3f} total={t.total(w):.3f}")
    elif not simulate:
        sp = spatial_coverage(session.pool.spatial_index(), selected=st.selected.nonzero()[0])
        # rounds count from 1 (as the table's round column): current_round rounds are committed
        head = (f"round {st.current_round} of {settings.rounds} is still waiting for its counts (written again)"
                if was_waiting else f"round {st.current_round} of {settings.rounds} selected")
        msg += (f"\n{head}; spatial coverage of the selection r_sp={sp:.3f}; sequence these spots, then run "
                "'scr2st import-counts' and select again with the same --state"
                + ("" if state_path is not None else " (add --state run.npz to keep this selection for the next round)"))
    if state_path is not None:
        msg += f"\nstate: {state_path}"
    print(msg)
    return 0


def run_import_counts(args: argparse.Namespace) -> int:
    from ..session import import_counts_into

    check_file(args.counts, "counts file", suffixes=(".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz"),
               what="spots x genes CSV/TSV")
    check_file(args.state, "--state", what="selection state (.npz)")
    check_output(args.state, "--state")
    _check_state(Path(args.state))
    idx, state = import_counts_into(args.state, args.counts, section=args.section, overwrite=args.overwrite)
    print(f"imported counts of {len(idx)} spots ({len(state.genes or [])} genes); "
          f"{int(state.measured.sum())} of {state.n_selected} selected spots are measured; "
          f"{_round_status(state)} -> {args.state}")
    return 0


def _round_status(state) -> str:
    """Where the run stands after an import, rounds counted from 1 (as the selection table's
    ``round`` column and the docks count them)."""
    r, total = int(state.current_round), state.n_rounds
    of = f" of {total}" if total else ""
    pending = int(state.pending.sum())
    if pending:
        return f"round {r}{of}: {pending} spots still wait for their counts"
    if total and r >= total:
        return f"round {r}{of} sequenced: all rounds done"
    nxt = f"; next: round {r + 1}{of} ('scr2st select' with the same --state)" if r else ""
    return f"round {r}{of} sequenced{nxt}"


def _parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError as e:
        raise CLIError(f"--budget-range must be 'lo,hi' fractions, got {text!r}") from e
    if not 0 < lo <= hi <= 1:
        raise CLIError(f"--budget-range must satisfy 0 < lo <= hi <= 1, got {text!r}")
    return lo, hi


def run_train_policy(args: argparse.Namespace) -> int:
    from ..data.model import split_sections
    from ..progress import drive
    from ..sampling.scrl import PolicyEnv, SCRLPolicy, iter_train_policy

    rng_range = _parse_range(args.budget_range)
    check_range(args.episodes, "--episodes", lo=1)
    check_range(args.rounds, "--rounds", lo=1)
    check_range(args.group_size, "--group-size", lo=1)
    check_range(args.imitation_episodes, "--imitation-episodes", lo=0)
    check_range(args.lr, "--lr", lo=0, lo_open=True)
    check_output(args.out, "--out", suffixes=(".pt",))
    _check_reference_args(args)
    check_inputs(args)
    if args.inputs and not args.reference:
        raise CLIError("train-policy needs --reference (a single-cell reference .h5ad)")
    if not args.inputs:
        # the embedded sample family: train on synthetic samples other than the demo's seed
        from ..data import make_sample
        from ..reference import ReferenceSpace, prepare_reference

        envs = []
        for s in (args.sample_seed + 1, args.sample_seed + 2, args.sample_seed + 3):
            smp = make_sample(min(args.n_spots, 800), seed=s, section=f"SYN-train{s}")
            _ensure_vision(smp.section, args)  # the same encoder 'select' will use
            space = ReferenceSpace.fit(prepare_reference(smp.reference, smp.section.var_names), seed=s)
            envs.append(PolicyEnv.from_adata(smp.section, space, vision_key=args.vision_key))
        print(f"training on SYNTHETIC samples (seeds {[e.name for e in envs]})", file=sys.stderr)
    else:
        from ..session import has_counts

        adata, embedded_ref, _ = _load(args)
        if not has_counts(adata):
            raise CLIError("train-policy needs fully measured sections (with counts)")
        check_counts(adata, ", ".join(map(str, args.inputs)))
        vis = _ensure_vision(adata, args)
        space = _space(args, adata, embedded_ref, "+".join(adata.obs["section"].astype(str).unique()))
        if space is None:
            raise CLIError("train-policy needs --reference (a single-cell reference .h5ad)")
        parts = split_sections(adata) if adata.obs["section"].nunique() > 1 else {str(adata.obs["section"].iloc[0]): adata}
        envs = [PolicyEnv.from_adata(a, space, name=n, vision_key=args.vision_key) for n, a in parts.items()]
        print(f"training on {', '.join(e.name for e in envs)}; vision: {vis}", file=sys.stderr)
    policy = SCRLPolicy.for_space(envs[0].space, seed=args.seed)
    hist = drive(iter_train_policy(policy, envs, episodes=args.episodes, rounds=args.rounds,
                                   group_size=args.group_size, budget_range=rng_range, lr=args.lr, seed=args.seed,
                                   imitation_episodes=args.imitation_episodes),
                 desc="train SCRL", use_tqdm=not args.quiet)
    policy.save(args.out)
    import numpy as np

    rl = [h["return"] for h in hist if h.get("phase") == "reinforce"]
    k = max(1, len(rl) // 10)
    first = float(np.mean(rl[:k])) if rl else float("nan")
    last = float(np.mean(rl[-k:])) if rl else float("nan")
    print(f"trained {args.imitation_episodes} imitation + {len(rl)} REINFORCE episodes; mean REINFORCE episode return "
          f"first {k}: {first:.3f}, last {k}: {last:.3f} -> {args.out}")
    return 0


# ------------------------------------------------------------------------------ demo hook
class DemoSelection:
    """Result of :func:`demo_selection_step`: ``state``, ``table`` (selected spots), ``terms``
    (final reward terms), ``history`` (terms after each round), ``space``, ``sampler``, ``weights``."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    def __repr__(self) -> str:
        return f"DemoSelection(sampler={self.sampler!r}, selected={len(self.table)}, terms={self.terms})"


def demo_selection_step(sample, *, sampler: str = "greedy", budget: str | int | float = "15%", rounds: int = 3,
                        weights: Any = None, seed: int = 0, policy: Any = None, vision_key: str = "X_vision") -> DemoSelection:
    """Select spots on a (synthetic) sample in simulated rounds with an
    :class:`~napari_scr2st.session.AcquisitionSession`; returns the selection and reward.

    ``sample``: a :class:`~napari_scr2st.data.synthetic.SyntheticSample` (``.section``,
    ``.reference``). A missing vision embedding is replaced by patch statistics. Prints nothing.
    """
    from ..config import PATCH_STATS
    from ..sampling.reward import RewardWeights
    from ..session import AcquisitionSession

    w = RewardWeights.parse(weights)
    settings = SamplingSettings(budget=str(budget), rounds=rounds, sampler=sampler, seed=seed,
                                encoder=PATCH_STATS, vision_key=vision_key).with_weights(w)
    session = AcquisitionSession(sample.section, reference=sample.reference, settings=settings, simulate=True)
    for _ in session.iter_prepare(policy=policy):
        pass
    for _ in session.iter_run_simulated():
        pass
    hist = [h.terms for h in session.acq.history]
    return DemoSelection(state=session.committed, table=session.committed.to_frame(), terms=hist[-1] if hist else None,
                         history=hist, space=session.space, sampler=sampler, weights=w, session=session)
