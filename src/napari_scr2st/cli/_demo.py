"""``scr2st demo``: the pipeline on the embedded synthetic sample, end to end.

sample -> vision embeddings -> select (simulated rounds) -> cell types of the sequenced spots
(label transfer from the single-cell reference) -> train SCR2Net on the sequenced spots ->
predict every spot -> evaluate on the unsequenced spots -> figures and a selection CSV.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ._common import add_sample_args


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on the embedded SYNTHETIC sample (offline) and write figures",
    )
    add_sample_args(p)
    p.add_argument("--out", default="scr2st-demo", help="output folder (default ./scr2st-demo)")
    p.add_argument("--model", default="efficientnet_lite0", help="timm vision encoder (default efficientnet_lite0, offline ImageNet weights)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sampler", default="greedy",
                   help="random | grid | kcenter | typiclust | ar | greedy | scrl (default greedy)")
    p.add_argument("--budget", default="15%", help="spots to sequence: a count or a percentage (default 15%%)")
    p.add_argument("--rounds", type=int, default=3, help="sequencing rounds (default 3)")
    p.add_argument("--epochs", type=int, default=25, help="SCR2Net epochs on the frozen embeddings (default 25)")
    p.add_argument("--no-model", action="store_true", help="stop after the selection step")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data import make_sample, summarize
    from ..features import iter_vision_embeddings
    from ..io.export import selection_table, write_selection_csv
    from ..plotting import plot_overview
    from ..progress import drive

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sample = make_sample(n_spots=args.n_spots, seed=args.seed)
    section, reference = sample.section, sample.reference
    name = str(section.obs["section"].iloc[0])
    print(f"[1] synthetic sample (seed {args.seed}): {section.n_obs} spots, reference {reference.n_obs} cells "
          f"of {reference.obs['celltype_major'].nunique()} types  ({time.perf_counter() - t0:.1f} s)")

    t = time.perf_counter()
    emb = drive(
        iter_vision_embeddings(section, model=args.model, batch_size=args.batch_size, device=args.device),
        desc="vision embeddings",
    )
    print(f"[2] vision embeddings {args.model}: {emb.shape[0]} x {emb.shape[1]}  ({time.perf_counter() - t:.1f} s)")
    print(summarize(section))
    png = plot_overview(section, out / "overview.png", color="true_compartment",
                        title=f"synthetic section {name} (ground-truth compartments)")
    print(f"    overview written: {png}")

    from ._sampling import demo_selection_step

    t = time.perf_counter()
    sel = demo_selection_step(sample, sampler=args.sampler, budget=args.budget, rounds=args.rounds, seed=args.seed)
    mask = np.zeros(section.n_obs, dtype=bool)
    pos = section.obs_names.get_indexer(sel.table["spot_id"].astype(str))
    mask[pos] = True
    terms = sel.terms
    print(f"[3] selection ({args.sampler}, budget {args.budget}, {args.rounds} rounds): {mask.sum()} spots; reward "
          f"coverage={terms.sc:.3f} cell types={terms.type:.3f} spatial={terms.sp:.3f} total={terms.total(sel.weights):.3f}  "
          f"({time.perf_counter() - t:.1f} s)")
    # cell types of the SEQUENCED spots only (label transfer of their measured expression)
    space = sel.space
    lt = space.transfer_labels(space.embed_counts(section.X[mask], list(section.var_names)))
    section.obs["cell_type"] = "unmeasured"
    section.obs.loc[mask, "cell_type"] = np.asarray(lt.celltypes)[lt.codes]
    section.obs["cell_type"] = section.obs["cell_type"].astype("category")
    section.obs["selected"] = mask
    rounds = sel.state.round
    section.obs["round"] = np.where(mask, rounds, -1)
    table = selection_table(section, sel.state, which="all", predicted_cell_type=section.obs["cell_type"])
    csv = write_selection_csv(table, out / "selection.csv")
    rare = section.obs["true_compartment"].astype(str).to_numpy() == "plasma aggregate"
    print(f"    selection CSV for the sequencing lab: {csv}; rare compartment spots picked: "
          f"{int((mask & rare).sum())} of {int(rare.sum())}")
    plot_overview(section, out / "selection.png", selected=mask, color="true_compartment",
                  title=f"{args.sampler}: {mask.sum()} spots to sequence (outlined)")

    if args.no_model:
        print(f"done in {time.perf_counter() - t0:.1f} s")
        return 0

    from ._model import demo_model_step

    t = time.perf_counter()
    metrics = demo_model_step(section, mask, cell_type_key="cell_type", epochs=args.epochs,
                              seed=args.seed, device=args.device)
    print(f"[4] SCR2Net trained on {metrics['n_train']} sequenced spots, predicted {section.n_obs} spots "
          f"({time.perf_counter() - t:.1f} s)")
    print(f"[5] evaluation on the {metrics['n_test']} unsequenced spots ({len(metrics['genes'])} genes): "
          f"PCC all={metrics['pcc_all']:.3f} top-50 HEG={metrics['pcc_heg50']:.3f} "
          f"top-50 HVG={metrics['pcc_hvg50']:.3f} MSE={metrics['mse']:.3f} MAE={metrics['mae']:.3f}")
    gene = "EPCAM" if "EPCAM" in metrics["genes"] else metrics["genes"][0]
    section.obs[f"pred_{gene}"] = section.obsm["X_pred"][gene].to_numpy()
    plot_overview(section, out / f"predicted_{gene}.png", color=f"pred_{gene}",
                  title=f"predicted {gene} (log1p normalised), trained on {mask.sum()} spots")
    keep = {k: v for k, v in metrics.items() if k != "genes"}
    (out / "metrics.json").write_text(json.dumps(keep, indent=2, default=float))
    print(f"    figures and metrics in {out}/")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0

