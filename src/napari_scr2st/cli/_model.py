"""``scr2st train`` / ``predict`` / ``evaluate``: the expression predictor from the command line.

Examples::

    # train on the measured spots of sections C2-C5 (frozen EfficientNet-Lite0 embeddings)
    scr2st train /path/her2st --sections C2 C3 C4 C5 --train-fraction 0.3 --out model/
    # predict another section, with MC-dropout uncertainty, and score it
    scr2st predict --model model/ /path/her2st --sections C6 --out c6_pred.h5ad
    scr2st evaluate c6_pred.h5ad --all --out c6_metrics.json

    # the same training with DistributedDataParallel on 2 processes (gloo on CPU, NCCL on GPUs)
    python -m torch.distributed.run --standalone --nproc_per_node=2 -m napari_scr2st.cli.ddp \
        /path/her2st --sections C2 C3 C4 C5 --train-fraction 0.3 --out model/

Inputs are any files :func:`napari_scr2st.io.read` understands (``.h5ad``, legacy ST counts,
Space Ranger folders, a her2st folder with ``--sections``); with none, the embedded SYNTHETIC
sample is used. Several sections are joined with
:func:`~napari_scr2st.data.model.concat_sections`.

Heavy imports (torch, scanpy, anndata) happen inside the verbs: importing this module is cheap.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..config import MODES, PANEL_METHODS, TrainConfig
from ._common import (
    CLIError,
    check_counts,
    check_device,
    check_embedding,
    check_file,
    check_inputs,
    check_output,
    check_range,
    short_reason,
)
from ._common import add_input_args as _add_common_inputs
from ._common import load_sections as _load_common

__all__ = [
    "register",
    "add_input_args",
    "add_train_args",
    "load_sections",
    "train_mask_from_args",
    "config_from_args",
    "run_train",
    "run_predict",
    "run_evaluate",
    "demo_model_step",
]

MEASURED_KEY = "scr2st_measured"


# ------------------------------------------------------------------------------ arguments
def add_input_args(p: argparse.ArgumentParser) -> None:
    """The inputs of ``train``/``predict`` (those of every verb that reads sections) and ``--quiet``."""
    _add_common_inputs(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_train_args(p: argparse.ArgumentParser) -> None:
    from_mask = p.add_argument_group("measured (training) spots")
    from_mask.add_argument(
        "--train-mask",
        default=None,
        help="selection CSV (column spot_id/obs_name or the first; optional section, selected)",
    )
    from_mask.add_argument(
        "--train-sections", nargs="+", default=None, help="train on the spots of these sections"
    )
    from_mask.add_argument(
        "--train-fraction",
        type=float,
        default=None,
        help="random fraction (0-1] of the candidate spots (seeded by --seed)",
    )
    g = p.add_argument_group("model and training")
    _C = TrainConfig()  # the one source of the defaults
    g.add_argument("--out", required=True, help="output folder: model.pt, metrics.json, last.pt")
    g.add_argument("--mode", choices=MODES, default=_C.mode)
    g.add_argument("--epochs", type=int, default=_C.epochs)
    g.add_argument("--batch-size", type=int, default=_C.batch_size)
    g.add_argument("--lr", type=float, default=_C.lr)
    g.add_argument("--weight-decay", type=float, default=_C.weight_decay)
    g.add_argument("--k", type=int, default=_C.k, help="retrieved neighbours")
    g.add_argument(
        "--m", type=int, default=_C.m, help="majority filter: keep the m most frequent cell types"
    )
    g.add_argument(
        "--alpha",
        type=float,
        default=_C.alpha,
        help="retrieval blend at inference (0 = regression only)",
    )
    g.add_argument("--lambda-soft", type=float, default=_C.lambda_soft)
    g.add_argument("--lambda-con", type=float, default=_C.lambda_con)
    g.add_argument("--lambda-energy", type=float, default=_C.lambda_energy)
    g.add_argument("--ar", action="store_true", help="adaptive resampling of training spots")
    g.add_argument(
        "--energy",
        action="store_true",
        help="energy-distance loss between predicted and measured batches",
    )
    g.add_argument(
        "--n-genes",
        type=int,
        default=_C.n_genes,
        help="panel size (genes chosen on the training spots, see --panel)",
    )
    g.add_argument(
        "--panel",
        dest="panel_method",
        choices=PANEL_METHODS,
        default=_C.panel_method,
        help="gene panel: heg (most expressed), hvg (most variable, detected in >= 10%% of the "
        "training spots) or union (half of each); default %(default)s, the one that measured best",
    )
    g.add_argument(
        "--cell-type-key",
        default=_C.cell_type_key,
        help="obs column with cell types of measured spots (majority filter)",
    )
    g.add_argument("--embedding-key", default=_C.embedding_key)
    g.add_argument("--val-fraction", type=float, default=_C.val_fraction)
    g.add_argument("--seed", type=int, default=_C.seed)
    g.add_argument("--device", default=_C.device, help="auto | cpu | cuda | mps")
    g.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (1 is fastest for small models on a busy machine)",
    )
    g.add_argument(
        "--fine-tune", action="store_true", help="fine-tune the backbone on crops (slow on CPU)"
    )
    g.add_argument("--backbone", default=_C.backbone)
    g.add_argument(
        "--crop-px",
        type=int,
        default=_C.crop_px,
        help="crop edge in full-resolution pixels (default: 2 spot diameters)",
    )
    g.add_argument(
        "--image-size", type=int, default=_C.image_size, help="backbone input size on the fine-tune path"
    )
    g.add_argument("--resume", default=None, help="checkpoint (last.pt) to continue from")


def register(subparsers) -> None:
    """Add ``train``, ``predict`` and ``evaluate`` to the ``scr2st`` command."""
    p = subparsers.add_parser(
        "train", help="train the SCR2Net expression predictor on measured spots"
    )
    add_input_args(p)
    add_train_args(p)
    p.set_defaults(func=run_train)

    p = subparsers.add_parser(
        "predict", help="predict expression (and uncertainty) with a trained model"
    )
    add_input_args(p)
    p.add_argument("--model", required=True, help="model folder or model.pt")
    p.add_argument(
        "--out", required=True, help="output .h5ad with obsm['X_pred'], obsm['X_pred_sd']"
    )
    p.add_argument(
        "--mc-samples", type=int, default=20, help="MC-dropout passes for uncertainty (0: none)"
    )
    p.add_argument("--k", type=int, default=None)
    p.add_argument("--m", type=int, default=None)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--device", default=None, help="override the model's device")
    p.set_defaults(func=run_predict)

    p = subparsers.add_parser(
        "evaluate", help="score predictions against measured truth (PCC, MSE, MAE)"
    )
    p.add_argument("predictions", help=".h5ad written by 'scr2st predict'")
    p.add_argument(
        "--truth",
        default=None,
        help="h5ad with the measured counts (default: the predictions file)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--test-sections", nargs="+", default=None, help="evaluate the spots of these sections"
    )
    which.add_argument("--mask", default=None, help="selection CSV of the spots to evaluate")
    which.add_argument("--all", action="store_true", help="evaluate every spot")
    p.add_argument("--out", default=None, help="metrics JSON")
    p.add_argument("--per-gene", action="store_true", help="also store the PCC of every gene")
    p.set_defaults(func=run_evaluate)


# ------------------------------------------------------------------------------ helpers
def load_sections(args: argparse.Namespace):
    """One AnnData from the inputs of ``args`` (joined when there are several sections)."""
    return _load_common(args)[0]


def _mask_from_csv(adata, path: str | Path):
    import numpy as np
    import pandas as pd

    from ..model.inputs import spot_keys

    p = check_file(path, "selection CSV", suffixes=(".csv", ".tsv"))
    try:
        df = pd.read_csv(p, sep="\t" if p.suffix.lower() == ".tsv" else ",", dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as e:
        raise CLIError(f"selection CSV {p}: cannot read it ({e})") from e
    if df.empty:
        raise CLIError(f"{p}: no rows")
    id_col = next(
        (c for c in ("spot_id", "spot", "obs_name", "barcode", "id") if c in df.columns),
        df.columns[0],
    )
    if "selected" in df.columns:
        sel = df["selected"]
        keep = sel.astype(str).str.lower().isin(("1", "true", "yes", "1.0"))
        df = df[keep.to_numpy()]
    ids = df[id_col].astype(str).to_numpy()
    keys = spot_keys(adata)
    if "section" in df.columns:
        wanted = set(
            np.char.add(
                np.char.add(df["section"].astype(str).to_numpy().astype(str), "|"), ids.astype(str)
            )
        )
        mask = np.isin(keys, list(wanted))
    else:
        bare = np.array([k.split("|", 1)[1] for k in keys])
        mask = np.isin(bare, ids) | np.isin(np.asarray(adata.obs_names).astype(str), ids)
    if not mask.any():
        raise CLIError(f"selection CSV {p}: none of its {len(ids)} spot ids ({id_col!r}) match the input's spots")
    if mask.sum() < len(ids):
        print(
            f"warning: {len(ids) - int(mask.sum())} spot id(s) of {p.name} not found in the input",
            file=sys.stderr,
        )
    return mask


def train_mask_from_args(adata, args: argparse.Namespace):
    """The measured-spot mask from ``--train-mask`` / ``--train-sections`` / ``--train-fraction``."""
    import numpy as np

    from ..evaluation.splits import random_budget_mask

    if args.train_mask:
        mask = _mask_from_csv(adata, args.train_mask)
    elif args.train_sections:
        sec = adata.obs["section"].astype(str).to_numpy()
        unknown = sorted(set(args.train_sections) - set(sec))
        if unknown:
            raise CLIError(
                f"--train-sections: unknown section(s) {unknown}; present: {sorted(set(sec))}"
            )
        mask = np.isin(sec, args.train_sections)
    elif args.train_fraction is not None:
        mask = np.ones(adata.n_obs, dtype=bool)
    else:
        raise CLIError(
            "say which spots are measured: --train-mask CSV, --train-sections S.. and/or --train-fraction F"
        )
    if args.train_fraction is not None:  # in (0, 1]: checked by config_from_args
        mask = random_budget_mask(mask, float(args.train_fraction), seed=args.seed)
    return mask


def config_from_args(args: argparse.Namespace):
    """The training configuration of ``args``; every number is checked here, before any work."""
    from ..model.train import TrainConfig

    for opt, lo in (("epochs", 1), ("batch_size", 2), ("n_genes", 1), ("k", 1), ("m", 0), ("threads", 1),
                    ("crop_px", 8), ("image_size", 32)):
        check_range(getattr(args, opt), f"--{opt.replace('_', '-')}", lo=lo)
    for opt in ("lr", "weight_decay", "lambda_soft", "lambda_con", "lambda_energy"):
        check_range(getattr(args, opt), f"--{opt.replace('_', '-')}", lo=0)
    check_range(args.alpha, "--alpha", lo=0, hi=1)
    check_range(args.val_fraction, "--val-fraction", lo=0, hi=0.9, hi_open=True)
    check_range(args.train_fraction, "--train-fraction", lo=0, hi=1, lo_open=True)
    return TrainConfig(
        mode=args.mode, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, k=args.k, m=args.m, alpha=args.alpha,
        lambda_soft=args.lambda_soft, lambda_con=args.lambda_con, lambda_energy=args.lambda_energy,
        adaptive_resampling=args.ar, energy_loss=args.energy, n_genes=args.n_genes, panel_method=args.panel_method,
        cell_type_key=args.cell_type_key or None, embedding_key=args.embedding_key,
        val_fraction=args.val_fraction, seed=args.seed, device=args.device, amp=not args.no_amp, num_threads=args.threads,
        fine_tune=args.fine_tune, backbone=args.backbone, crop_px=args.crop_px, image_size=args.image_size,
        checkpoint_dir=str(Path(args.out)),
    ).validate()  # fmt: skip


# ------------------------------------------------------------------------------ verbs
def run_train(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from ..model.predictor import SCR2NetPredictor
    from ..model.train import METRICS_NAME, metrics_record, write_metrics
    from ..progress import drive

    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    config = config_from_args(args)
    check_device(args.device)
    check_inputs(args)
    out = check_output(args.out, "--out", folder=True)
    if args.train_mask:
        check_file(args.train_mask, "--train-mask", suffixes=(".csv", ".tsv"))
    if args.resume:
        _check_checkpoint(args.resume)
    if not (args.train_mask or args.train_sections or args.train_fraction is not None):
        raise CLIError("say which spots are measured: --train-mask CSV, --train-sections S.. and/or --train-fraction F")
    adata = load_sections(args)
    what = ", ".join(map(str, args.inputs)) or "the synthetic sample"
    if adata.n_vars == 0:
        raise CLIError(f"{what}: no genes; training needs sections with measured counts")
    if config.n_genes > adata.n_vars:
        raise CLIError(f"--n-genes {config.n_genes}: the input has only {adata.n_vars} genes")
    check_counts(adata, what)
    mask = train_mask_from_args(adata, args)
    if not config.fine_tune and config.embedding_key not in adata.obsm:
        if distributed and rank != 0:
            dist.barrier()  # rank 0 fills the embedding cache first
        from ..features import ensure_vision_embedding

        ensure_vision_embedding(
            adata,
            config.backbone,
            key=config.embedding_key,
            crop_px=config.crop_px,
            device="cpu" if distributed else config.device,
            progress=not (args.quiet or rank != 0),
        )
        if distributed and rank == 0:
            dist.barrier()
    if not config.fine_tune:
        check_embedding(adata, config.embedding_key, what)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    pred = SCR2NetPredictor(config)
    drive(
        pred.iter_fit(adata, mask, resume_from=args.resume),
        desc="training",
        use_tqdm=not args.quiet and rank == 0,
    )
    if rank == 0:
        path = pred.save(out / "model.pt")
        rec = metrics_record(pred.result)
        write_metrics(out / METRICS_NAME, rec)
        final = rec["final"]
        print(
            f"trained {config.mode} on {rec['n_fit']} spots (+{rec['n_val']} validation), {rec['n_genes']} genes, "
            f"{rec['epochs_completed']} epochs on {rec['world_size']} process(es): val PCC {final['val_pcc']:.3f}, "
            f"{rec['steps_per_s']:.1f} steps/s -> {path}"
        )
    return 0


def _check_checkpoint(path: str) -> None:
    """``--resume``: a training checkpoint written by ``scr2st train`` (``last.pt``)."""
    from ..model.train import load_checkpoint

    check_file(path, "--resume", suffixes=(".pt",), what="checkpoint (.pt)")
    try:
        ckpt = load_checkpoint(path)
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise CLIError(f"--resume {path}: not a checkpoint written by 'scr2st train' "
                       f"({short_reason(e)})") from e
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise CLIError(f"--resume {path}: not a checkpoint written by 'scr2st train' (no config/model entries)")


def _load_model(path: str, device: str | None):
    """``--model``: a predictor folder or ``model.pt`` written by ``scr2st train``."""
    from ..model.predictor import SCR2NetPredictor

    p = check_file(path, "--model", what="model folder or model.pt", folder_ok=True)
    if p.is_dir() and not (p / "model.pt").is_file():
        raise CLIError(f"--model {p}: the folder has no model.pt (write one with 'scr2st train --out {p}')")
    try:
        return SCR2NetPredictor.load(p, device=device)
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise CLIError(f"--model {path}: not a model written by 'scr2st train' "
                       f"({short_reason(e)})") from e


def run_predict(args: argparse.Namespace) -> int:
    from ..model.predictor import iter_predict_expression
    from ..progress import drive

    out = check_output(args.out, "--out", suffixes=(".h5ad",))
    check_range(args.mc_samples, "--mc-samples", lo=0)
    check_range(args.k, "--k", lo=1)
    check_range(args.m, "--m", lo=0)
    check_range(args.alpha, "--alpha", lo=0, hi=1)
    check_device(args.device)
    check_inputs(args)
    pred = _load_model(args.model, args.device)
    adata = load_sections(args)
    what = ", ".join(map(str, args.inputs)) or "the synthetic sample"
    cfg = pred.config
    if not cfg.fine_tune:
        from ..features import ensure_vision_embedding

        ensure_vision_embedding(
            adata,
            cfg.backbone,
            key=cfg.embedding_key,
            crop_px=cfg.crop_px,
            device=cfg.device,
            progress=not args.quiet,
        )
        check_embedding(adata, cfg.embedding_key, what)
    drive(
        iter_predict_expression(
            pred, adata, mc_samples=args.mc_samples, k=args.k, m=args.m, alpha=args.alpha
        ),
        desc="predicting",
        use_tqdm=not args.quiet,
    )
    adata.obs[MEASURED_KEY] = pred.exclusion(adata) >= 0
    from ..atomic import atomic_path

    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp)
    print(
        f"predicted {len(pred.genes)} genes for {adata.n_obs} spots ({int(adata.obs[MEASURED_KEY].sum())} measured) -> {out}"
    )
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from ..evaluation.metrics import evaluate_adata, format_metrics_table
    from ..model.train import write_metrics

    p = check_file(args.predictions, "predictions", suffixes=(".h5ad",), what="predictions .h5ad")
    if args.truth:
        check_file(args.truth, "--truth", suffixes=(".h5ad",), what=".h5ad file")
    if args.mask:
        check_file(args.mask, "--mask", suffixes=(".csv", ".tsv"))
    if args.out:
        check_output(args.out, "--out", suffixes=(".json",))
    adata = _read_h5ad(p, "predictions")
    if "X_pred" not in adata.obsm:
        raise CLIError(f"{p} has no obsm['X_pred']: write it with 'scr2st predict'")
    truth = _read_h5ad(Path(args.truth), "--truth") if args.truth else None
    if args.all:
        mask, what = np.ones(adata.n_obs, dtype=bool), "all spots"
    elif args.test_sections:
        have = sorted(set(adata.obs["section"].astype(str))) if "section" in adata.obs else []
        unknown = [s for s in args.test_sections if s not in have]
        if unknown:
            raise CLIError(f"--test-sections: {p} has no section(s) {', '.join(unknown)}; "
                           f"available: {', '.join(have) or '(none)'}")
        mask, what = (
            adata.obs["section"].astype(str).isin(args.test_sections).to_numpy(),
            f"sections {args.test_sections}",
        )
    elif args.mask:
        mask, what = _mask_from_csv(adata, args.mask), f"spots of {args.mask}"
    elif MEASURED_KEY in adata.obs:
        mask, what = ~adata.obs[MEASURED_KEY].to_numpy(dtype=bool), "unmeasured spots"
    else:
        mask, what = np.ones(adata.n_obs, dtype=bool), "all spots"
    if not mask.any():
        raise CLIError(f"no spots to evaluate ({what})")
    metrics = evaluate_adata(adata, mask, truth=truth, per_gene=args.per_gene)
    metrics["evaluated"] = what
    print(
        f"{int(mask.sum())} spots ({what}), {metrics['n_genes']} genes ({metrics['n_genes_scored']} with a defined PCC)"
    )
    print(format_metrics_table({p.stem: metrics}))
    if args.out:
        write_metrics(args.out, metrics)
    return 0


def _read_h5ad(path: Path, what: str):
    import anndata as ad

    try:
        return ad.read_h5ad(path)
    except Exception as e:  # h5py/anndata raise many types for a corrupt or truncated file
        raise CLIError(f"{what} {path}: cannot read it as .h5ad ({type(e).__name__}: "
                       f"{' '.join(str(e).split())[:200]})") from e


# ------------------------------------------------------------------------------ demo
def demo_model_step(
    section_adata,
    train_mask,
    *,
    cell_type_key: str | None = "cell_type",
    mode: str = "full",
    epochs: int = 25,
    n_genes: int = 100,
    seed: int = 0,
    device: str = "cpu",
    embedding_key: str = "X_vision",
    mc_samples: int = 5,
) -> dict[str, Any]:
    """Train a small fast SCR2Net on the frozen embeddings, predict every spot, score the unmeasured.

    Quiet (no output). Needs ``obsm[embedding_key]`` (computed with the features package when
    missing). Writes ``obsm["X_pred"]``, ``obsm["X_pred_sd"]``, ``obs["pred_uncertainty"]`` into
    ``section_adata`` and returns the metrics of the unmeasured spots plus ``n_train``,
    ``n_test``, ``train_s``, ``val_pcc``, ``mode``, ``genes`` (the panel).
    """
    import time

    import numpy as np

    from ..evaluation.metrics import evaluate_adata
    from ..model.predictor import SCR2NetPredictor, predict_expression

    mask = np.asarray(train_mask, dtype=bool)
    from ..features import ensure_vision_embedding

    ensure_vision_embedding(section_adata, key=embedding_key, device=device)
    t0 = time.perf_counter()
    pred = SCR2NetPredictor(
        mode=mode, epochs=epochs, n_genes=n_genes, seed=seed, device=device,
        cell_type_key=cell_type_key, embedding_key=embedding_key, batch_size=64,
    ).fit(section_adata, mask)  # fmt: skip
    train_s = time.perf_counter() - t0
    predict_expression(pred, section_adata, mc_samples=mc_samples)
    test = ~mask
    metrics = evaluate_adata(section_adata, test) if test.sum() >= 2 else {}
    hist = pred.history[-1] if pred.history else {}
    metrics.update(
        n_train=int(mask.sum()), n_test=int(test.sum()), train_s=train_s, mode=mode,
        val_pcc=float(hist.get("val_pcc", float("nan"))), genes=list(pred.genes),
    )  # fmt: skip
    return metrics
