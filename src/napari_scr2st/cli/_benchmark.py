"""``scr2st benchmark sampling`` (alias ``label-efficiency``) / ``within-slide``: the paired protocols on any data.

Examples::

    # every sampler, budgets 5-100 %, 5 seeds (SCRL re-trained per seed), SCR2Net downstream
    scr2st benchmark sampling path/to/her2st --sections B4 C2 C3 C4 C5 C6 \\
        --reference wu2021.h5ad --protocol within --out bench/
    # the embedded synthetic sample (no inputs), a quick run
    scr2st benchmark sampling --samplers random,grid,kcenter --budgets 0.1,1.0 --seeds 2
    # within-slide prediction: SCR2Net (+ spatial correction) vs ridge, kNN and the spatial kernel
    scr2st benchmark within-slide path/to/her2st --sections C3 C6 --budgets 0.15 --seeds 3

Inputs are any files the readers accept (one fully measured section each, or a folder with
``--sections``); importing this module is cheap.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import (
    CLIError,
    add_input_args,
    check_output,
    check_range,
    load_measured_sections,
    read_kwargs,
)

__all__ = ["register", "run_label_efficiency", "run_within_slide"]


def _fractions(text: str, option: str) -> list[float]:
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            v = float(part[:-1]) / 100 if part.endswith("%") else float(part)
        except ValueError as e:
            raise CLIError(f"{option}: {part!r} is not a fraction (0.15) or a percentage (15%)") from e
        if not 0 < v <= 1:
            raise CLIError(f"{option}: {part!r} must be in (0, 1] (or 0-100 %)")
        out.append(v)
    if not out:
        raise CLIError(f"{option}: no budget given")
    return out


def register(bench_sub) -> None:
    """Add ``sampling`` (alias ``label-efficiency``) and ``within-slide`` to the ``benchmark`` verb group."""
    from ..benchmark.protocol import DEFAULT_BUDGETS
    from ..sampling.registry import SAMPLER_NAMES

    p = bench_sub.add_parser("sampling", aliases=["label-efficiency"],
                             help="paired protocol: samplers x budgets x seeds, one common test set, SCR2Net downstream")
    add_input_args(p, extra_help=" (fully measured sections)")
    p.add_argument("--reference", default=None, help="single-cell reference .h5ad (the synthetic sample brings its own)")
    p.add_argument("--celltype-key", default=None, help="obs column of the reference with cell types (default: best)")
    p.add_argument("--protocol", default="within", choices=("within", "cross"))
    p.add_argument("--samplers", default=",".join(SAMPLER_NAMES), help="comma-separated samplers (default all)")
    p.add_argument("--budgets", default=",".join(f"{b:g}" for b in DEFAULT_BUDGETS),
                   help="comma-separated fractions or percentages (default %(default)s)")
    p.add_argument("--seeds", type=int, default=5, help="seeds; each re-trains the SCRL policy (default 5)")
    p.add_argument("--rounds", type=int, default=2, help="acquisition rounds (default 2)")
    p.add_argument("--episodes", type=int, default=60, help="SCRL REINFORCE episodes per seed (default 60)")
    p.add_argument("--imitation-episodes", type=int, default=30, help="SCRL imitation episodes per seed (default 30)")
    p.add_argument("--epochs", type=int, default=30, help="SCR2Net epochs (default 30)")
    p.add_argument("--n-genes", type=int, default=250, help="gene panel size (default 250)")
    p.add_argument("--encoder", default="efficientnet_lite0", help="vision encoder when a section has no embedding")
    p.add_argument("--out", default="benchmark-sampling", help="output folder")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_label_efficiency, benchmark_what="sampling")  # the alias reports as "sampling"

    p = bench_sub.add_parser("within-slide", help="sequence part of a slide, predict the rest: SCR2Net vs baselines")
    add_input_args(p, extra_help=" (fully measured sections)")
    p.add_argument("--budgets", default="0.1,0.15,0.3", help="comma-separated fractions (default %(default)s)")
    p.add_argument("--seeds", type=int, default=3, help="seeds (default 3)")
    p.add_argument("--epochs", type=int, default=30, help="SCR2Net epochs (default 30)")
    p.add_argument("--n-genes", type=int, default=250, help="gene panel size (default 250)")
    p.add_argument("--encoder", default="efficientnet_lite0", help="vision encoder when a section has no embedding")
    p.add_argument("--out", default="within_slide.csv", help="CSV of the runs")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_within_slide)


def _sections(args) -> tuple[dict[str, Any], Any]:
    """Fully measured sections with a vision embedding, and the embedded reference (if any)."""
    from ..features import ensure_vision_embedding

    secs, ref = load_measured_sections(args.inputs, sections=args.sections, read_kw=read_kwargs(args),
                                       n_spots=args.n_spots, seed=args.sample_seed)
    for a in secs.values():
        ensure_vision_embedding(a, args.encoder)
    return secs, ref


def run_label_efficiency(args: argparse.Namespace) -> int:
    from ..benchmark.protocol import (
        fit_shared_space,
        iter_label_efficiency,
        paired_differences,
        plot_label_efficiency,
        write_results,
    )
    from ..progress import drive
    from ..sampling.registry import SAMPLER_NAMES

    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    bad = [s for s in samplers if s not in SAMPLER_NAMES]
    if bad or not samplers:
        raise CLIError(f"--samplers: unknown sampler(s) {', '.join(bad) or '(none given)'}; "
                       f"choose from {', '.join(SAMPLER_NAMES)}")
    budgets = _fractions(args.budgets, "--budgets")
    for opt, lo in (("seeds", 1), ("rounds", 1), ("episodes", 0), ("imitation_episodes", 0), ("epochs", 1),
                    ("n_genes", 1)):
        check_range(getattr(args, opt), f"--{opt.replace('_', '-')}", lo=lo)
    out = check_output(args.out, "--out", folder=True)
    secs, ref = _sections(args)
    if args.reference:
        from ..reference import read_reference

        ref = read_reference(args.reference, celltype_key=args.celltype_key)
    if ref is None and any(s in ("greedy", "scrl") for s in samplers):
        raise CLIError("the greedy and scrl samplers need --reference (a single-cell reference .h5ad)")
    space = fit_shared_space(ref, secs, celltype_key=args.celltype_key) if ref is not None else None
    dataset = "synthetic" if not args.inputs else Path(args.inputs[0]).name
    frames = drive(iter_label_efficiency(secs, space, protocol=args.protocol, samplers=samplers, budgets=budgets,
                                         seeds=list(range(args.seeds)), rounds=args.rounds, episodes=args.episodes,
                                         imitation_episodes=args.imitation_episodes, n_genes=args.n_genes,
                                         epochs=args.epochs, dataset=dataset),
                   desc="label efficiency", use_tqdm=not args.quiet)
    out.mkdir(parents=True, exist_ok=True)
    written = list(write_results(frames, out))
    main = next(iter(frames.values()))
    written.append(plot_label_efficiency(main, out / "label_efficiency.png"))
    diffs = paired_differences(main, "random") if "random" in samplers else None
    if diffs is not None:
        print(diffs.round(3).to_string(index=False))
    print("written: " + ", ".join(map(str, written)))
    return 0


def run_within_slide(args: argparse.Namespace) -> int:
    from ..atomic import atomic_path
    from ..benchmark.within_slide import iter_within_slide
    from ..progress import drive

    budgets = _fractions(args.budgets, "--budgets")
    for opt, lo in (("seeds", 1), ("epochs", 1), ("n_genes", 1)):
        check_range(getattr(args, opt), f"--{opt.replace('_', '-')}", lo=lo)
    out = check_output(args.out, "--out", suffixes=(".csv",))
    secs, _ = _sections(args)
    df = drive(iter_within_slide(secs, budgets=budgets, seeds=list(range(args.seeds)), n_genes=args.n_genes,
                                 epochs=args.epochs, dataset="synthetic" if not args.inputs else Path(args.inputs[0]).name),
               desc="within-slide", use_tqdm=not args.quiet)
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
    summ = df.groupby(["budget", "model"])[["pcc_all", "pcc_heg50", "mse"]].agg(["mean", "std"]).round(3)
    print(summ.to_string())
    print(f"written: {out} ({len(df)} rows)")
    return 0
