"""``scr2st demo``: the pipeline on the embedded synthetic sample, end to end."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ._common import add_sample_args


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the pipeline on the embedded SYNTHETIC sample (offline) and write figures",
    )
    add_sample_args(p)
    p.add_argument("--out", default="scr2st-demo", help="output folder (default ./scr2st-demo)")
    p.add_argument("--model", default="efficientnet_lite0", help="timm vision encoder (default efficientnet_lite0, offline ImageNet weights)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._engine import drive
    from ..data import make_sample, summarize
    from ..features import iter_vision_embeddings
    from ..plotting import plot_overview

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sample = make_sample(n_spots=args.n_spots, seed=args.seed)
    section, reference = sample.section, sample.reference
    print(f"[1] synthetic sample (seed {args.seed}): {section.n_obs} spots, reference {reference.n_obs} cells "
          f"of {reference.obs['celltype_major'].nunique()} types  ({time.perf_counter() - t0:.1f} s)")

    t1 = time.perf_counter()
    emb = drive(
        iter_vision_embeddings(section, model=args.model, batch_size=args.batch_size, device=args.device),
        desc="vision embeddings",
    )
    print(f"[2] vision embeddings {args.model}: {emb.shape[0]} x {emb.shape[1]}  ({time.perf_counter() - t1:.1f} s)")
    print(summarize(section))
    png = plot_overview(section, out / "overview.png", color="true_compartment",
                        title=f"synthetic section {section.obs['section'].iloc[0]} (ground-truth compartments)")
    print(f"[3] overview written: {png}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0
