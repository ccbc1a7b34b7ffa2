"""The training engine of SCR2Net: one generator used by the CLI, the GUI, the tests and DDP.

``iter_train(adata, train_mask, config)`` yields a :class:`napari_scr2st.progress.Progress` after
EVERY optimizer step (``metrics``: ``loss`` of the step, ``val_pcc`` of the last completed
epoch, NaN before the first) and returns a :class:`TrainResult`.

Data
----
``train_mask`` marks the measured spots; only their counts are read. The gene panel is chosen
on them (:func:`napari_scr2st.model.panel.select_panel`). A random ``val_fraction`` of them
(seeded) is held out of the loss for monitoring (``val_pcc``: mean per-gene PCC of the final
prediction on those spots); the rest are the *fit* spots. During training the memory bank is
the fit spots (their gene projections are recomputed, without dropout, at every step) and each
spot is EXCLUDED from its own neighbours. After training, the predictor's bank is every
measured spot (fit + validation).

Loss (per step, batch B)::

    full:        MSE(pred, y) + lambda_soft * mean_i conf_i * MSE_i(pred, soft)
                 + lambda_con * CLIP(z_img, z_gene) [+ lambda_energy * E(pred, y)]
    regression:  MSE(pred, y) [+ lambda_energy * E(pred, y)]
    retrieval:   CLIP(z_img, z_gene)           (prediction = mean of retrieved expression)

Options: adaptive resampling (``adaptive_resampling``: per-epoch weights from the latent of
the fit spots, :mod:`.resampling`, drawn with a ``WeightedRandomSampler``) and the energy
distance between the predicted and measured expression of the batch (``energy_loss``, the
batch being a random region sample of the slide; :func:`.losses.energy_distance`).

Devices and precision
---------------------
``device`` "auto" picks CUDA, then MPS, then CPU. Mixed precision (float16 autocast and a
GradScaler) is used on CUDA only when ``amp`` is True; CPU and MPS train in float32.

Cancellation and the weights you get back
-----------------------------------------
The cancel token is checked before every step. A cancelled run stops at once and returns the
weights of the LAST COMPLETED EPOCH (the initial weights if no epoch completed,
``epochs_completed == 0``), with ``cancelled=True``. A finished run returns the last epoch's
weights (``keep="last"``, default) or those of the epoch with the best validation PCC
(``keep="best"``, when a validation set exists). Closing the generator instead (napari's
``worker.quit()``) abandons the run without a result: the GUI should cancel through the token
and keep consuming events until the generator returns.

Checkpoints and resume
----------------------
With ``checkpoint_dir`` set, ``last.pt`` is written atomically at the end of every epoch:
model, optimizer, LR scheduler and grad-scaler states, epoch, config, gene panel, the best
weights so far, history and RNG states (torch, CUDA, numpy, python). ``resume_from`` (a
checkpoint path) continues at the next epoch; the data order of an epoch depends only on
``(seed, epoch)``, so a resumed run gives the same weights as an uninterrupted one (on CPU;
on GPUs up to non-deterministic kernels). On resume the checkpoint's config is used, except
``epochs``, ``device``, ``amp``, ``num_threads`` and ``checkpoint_dir``, which the new config
may change.
``metrics.json`` (same format for single-process and DDP runs, see :func:`metrics_record`) is
written next to it.

Distributed
-----------
When ``torch.distributed`` is initialised (see :mod:`napari_scr2st.cli.ddp`), the network is
wrapped in ``DistributedDataParallel``, each epoch's order is sharded with a
``DistributedSampler`` (the per-rank batch size is ``batch_size``, so a step's global batch is
``world_size`` times larger), and only rank 0 writes checkpoints and metrics.

The contrastive and energy terms are computed over the GLOBAL batch: every rank gathers the
image and gene projections, the predictions and the measured expression of all ranks
(:func:`.distributed.gather_batch`, gradients flowing back to each rank's own rows), so their
value and, after DDP's averaging, their gradient are those of one process that sees the
global batch. The per-sample terms (MSE, soft labels) stay per rank; DDP's average of the
rank means is the global mean because the ranks' batches have the same size: the
``DistributedSampler`` pads the epoch by repeating up to ``world_size - 1`` spots so that every
rank takes the same number of steps on batches of the same sizes (a repeated spot is a second
copy in its global batch, as a spot drawn twice by adaptive resampling is). Without an
initialised group no collective is called.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..atomic import atomic_path
from ..config import TrainConfig
from ..data.expression import log1p_normalized
from ..device import pick_device
from ..progress import CancelToken, Progress
from ..torch_runtime import triton_blocked
from .distributed import dist_info, gather_batch
from .inference import Bank, run_inference
from .inputs import as_index, cell_type_codes, crop_inputs, embedding_inputs, spot_keys
from .losses import clip_loss, energy_distance, weighted_soft_mse
from .panel import select_panel
from .resampling import adaptive_resampling_weights
from .retrieval import retrieve
from .scr2net import SCR2Net

__all__ = [
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "iter_train",
    "train",
    "prepare_data",
    "metrics_record",
    "write_metrics",
    "CHECKPOINT_NAME",
    "METRICS_NAME",
]

CHECKPOINT_NAME = "last.pt"
METRICS_NAME = "metrics.json"
_RESUME_OVERRIDABLE = ("epochs", "device", "amp", "checkpoint_dir", "num_threads")
FORMAT_VERSION = 1


@dataclass
class TrainData:
    """Everything read from the section for training (rows = measured spots, in adata order)."""

    rows: np.ndarray  # positions in adata of the measured spots
    inputs: np.ndarray  # (n, d) float32 embeddings or (n, 3, S, S) uint8 crops
    targets: np.ndarray  # (n, G) float32 log1p-normalised panel
    types: np.ndarray | None  # (n,) int64 codes, -1 unknown
    type_names: list[str]
    keys: np.ndarray  # (n,) spot keys
    panel: list[str]
    fit: np.ndarray  # positions (into the arrays above) used in the loss
    val: np.ndarray  # positions held out for validation


@dataclass
class TrainResult:
    """What :func:`iter_train` returns."""

    net: SCR2Net  # on CPU, eval mode
    config: TrainConfig
    data: TrainData
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_completed: int = 0
    cancelled: bool = False
    weights: str = "last"  # last | best | initial
    wall_s: float = 0.0
    world_size: int = 1

    @property
    def panel(self) -> list[str]:
        return self.data.panel


# ---------------------------------------------------------------------------- helpers
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "python": _py_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _py_state_to_plain(st):
    version, internal, gauss = st
    return [int(version), [int(v) for v in internal], gauss]


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except RuntimeError:  # different number of GPUs
            pass


def _device_for(config: TrainConfig, distributed: bool):
    if distributed and config.device in ("auto", "cuda", "gpu") and torch.cuda.is_available():
        import os

        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return pick_device(config.device)


def _val_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n_val = int(round(n * fraction))
    if n_val < 3 or n - n_val < 2:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    perm = np.random.default_rng([seed, 7919]).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def prepare_data(
    adata, train_mask, config: TrainConfig, panel: list[str] | None = None
) -> TrainData:
    """Read the measured spots: panel, inputs, targets, cell types, keys; split fit/validation."""
    rows = as_index(train_mask, adata.n_obs, unique=True)
    if len(rows) < 4:
        raise ValueError(f"need at least 4 measured spots to train, got {len(rows)}")
    mask = np.zeros(adata.n_obs, dtype=bool)
    mask[rows] = True
    if panel is None:
        panel = select_panel(
            adata,
            mask,
            config.n_genes,
            method=config.panel_method,
            genes=config.genes,
            min_frac=config.panel_min_frac,
        )
    targets = log1p_normalized(adata, panel, rows=rows)
    if config.fine_tune:
        inputs = crop_inputs(adata, rows, config.crop_px, config.image_size)
    else:
        inputs = embedding_inputs(adata, rows, config.embedding_key)
    types, names = cell_type_codes(adata, rows, config.cell_type_key)
    fit, val = _val_split(len(rows), config.val_fraction, config.seed)
    return TrainData(
        rows, inputs, targets, types, names, spot_keys(adata, rows), list(panel), fit, val
    )


def _build_backbone(config: TrainConfig, pretrained: bool = True):
    """(module, num_features, mean, std) of the backbone for the fine-tune path.

    The module is :func:`napari_scr2st.features.encoders.load_encoder`'s pooled-feature model,
    made trainable. ``backbone="random:<name>"`` (or ``pretrained=False``, used when loading a
    saved predictor whose weights follow) starts from random weights.
    """
    from ..features.encoders import load_encoder

    name = config.backbone
    random_init = name.startswith("random:")
    name = name.split(":", 1)[1] if random_init else name
    enc = load_encoder(
        name, weights="auto" if (pretrained and not random_init) else None, device="cpu", amp=False
    )
    module = enc.model
    module.requires_grad_(True)
    cfg = enc.data_config or {}
    mean = tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225)))
    return module, int(enc.num_features), mean, std


def build_net(
    config: TrainConfig, in_dim: int | None, n_genes: int, *, pretrained: bool = True
) -> SCR2Net:
    """A fresh SCR2Net for ``config`` (the backbone is loaded on the fine-tune path)."""
    backbone, mean, std = None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    if config.fine_tune:
        backbone, in_dim, mean, std = _build_backbone(config, pretrained)
    return SCR2Net(
        int(in_dim),
        n_genes,
        mode=config.mode,
        hidden_dim=config.hidden_dim,
        proj_dim=config.proj_dim,
        dropout=config.dropout,
        temperature=config.temperature,
        backbone=backbone,
        image_mean=mean,
        image_std=std,
    )


def _lr_lambda(total_steps: int, warmup_frac: float):
    warm = max(1, int(round(total_steps * warmup_frac)))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total_steps - warm)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return f


def _augment(x: torch.Tensor) -> torch.Tensor:
    """One random dihedral transform (flip / 90-degree rotation) for the whole batch of crops."""
    t = int(torch.randint(0, 8, (1,)).item())
    if t & 1:
        x = x.flip(-1)
    return torch.rot90(x, t >> 1, dims=(-2, -1))


def _epoch_order(
    epoch: int,
    n_fit: int,
    config: TrainConfig,
    weights: np.ndarray | None,
    rank: int,
    world: int,
    distributed: bool,
) -> list[int]:
    """Positions (into the fit set) this rank visits in ``epoch``; depends only on (seed, epoch)."""
    from torch.utils.data import DistributedSampler, RandomSampler, WeightedRandomSampler

    g = torch.Generator().manual_seed(int(config.seed) * 1_000_003 + epoch)
    if weights is not None:
        base = list(
            WeightedRandomSampler(
                torch.as_tensor(weights, dtype=torch.double), n_fit, replacement=True, generator=g
            )
        )
        if not distributed:
            return base
        shard = DistributedSampler(base, num_replicas=world, rank=rank, shuffle=False)
        return [base[i] for i in shard]
    if not distributed:
        return list(RandomSampler(range(n_fit), generator=g))
    shard = DistributedSampler(
        range(n_fit), num_replicas=world, rank=rank, shuffle=True, seed=int(config.seed)
    )
    shard.set_epoch(epoch)
    return list(shard)


def _batches(order: list[int], batch_size: int) -> list[list[int]]:
    out = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if len(out) > 1 and len(out[-1]) < 2:  # contrastive / energy terms need >= 2 samples
        out[-2].extend(out.pop())
    return out


def _n_steps(n_fit: int, config: TrainConfig, world: int) -> int:
    per_rank = int(math.ceil(n_fit / world))
    return len(_batches(list(range(per_rank)), config.batch_size))


def _state_copy(net: SCR2Net) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}


def _validate(net: SCR2Net, data: TrainData, config: TrainConfig, device) -> dict[str, float]:
    if len(data.val) == 0:
        return {"val_pcc": float("nan"), "val_mse": float("nan")}
    from ..evaluation.metrics import pearson_per_gene

    bank = _bank(data, data.fit)
    out = run_inference(
        net,
        data.inputs[data.val],
        bank,
        mode=config.mode,
        k=config.k,
        m=config.m,
        alpha=config.alpha,
        device=device,
    )
    y = data.targets[data.val]
    r = pearson_per_gene(y, out.final)
    r = r[np.isfinite(r)]
    return {
        "val_pcc": float(r.mean()) if r.size else float("nan"),
        "val_mse": float(np.mean((y - out.final) ** 2)),
    }


def _bank(data: TrainData, positions: np.ndarray) -> Bank:
    types = None if data.types is None else torch.as_tensor(data.types[positions])
    return Bank(torch.as_tensor(data.targets[positions]), types, data.keys[positions])


def metrics_record(result: TrainResult, **extra) -> dict[str, Any]:
    """The metrics JSON written by single-process and DDP runs alike (``format`` 1)."""
    hist = result.history
    last = hist[-1] if hist else {}
    steps = sum(h.get("steps", 0) for h in hist)
    step_time = sum(h.get("train_s", 0.0) for h in hist)
    rec = {
        "format": "scr2st-train-metrics",
        "version": FORMAT_VERSION,
        "mode": result.config.mode,
        "world_size": result.world_size,
        "n_measured": int(len(result.data.rows)),
        "n_fit": int(len(result.data.fit)),
        "n_val": int(len(result.data.val)),
        "n_genes": len(result.data.panel),
        "epochs_completed": result.epochs_completed,
        "cancelled": result.cancelled,
        "weights": result.weights,
        "final": {k: last.get(k, float("nan")) for k in ("loss", "val_pcc", "val_mse")},
        "steps_per_s": (steps / step_time) if step_time > 0 else float("nan"),
        "wall_s": result.wall_s,
        "history": hist,
        "config": result.config.to_dict(),
    }
    rec.update(extra)
    return rec


def plain(v):
    """Numpy scalars/arrays inside dicts and lists -> Python values (for ``weights_only`` files)."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _nan_to_none(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _nan_to_none(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_nan_to_none(x) for x in v]
    return v


def write_metrics(path: str | Path, record: dict[str, Any]) -> Path:
    """Write a metrics record atomically as JSON (NaN written as null)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_nan_to_none(plain(record)), indent=2, default=str))
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint (tensors and plain values only: ``weights_only`` safe)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


# ---------------------------------------------------------------------------- engine
def iter_train(
    adata,
    train_mask,
    config: TrainConfig | None = None,
    cancel: CancelToken | None = None,
    resume_from: str | Path | None = None,
    *,
    data: TrainData | None = None,
) -> Generator[Progress, None, TrainResult]:
    """Train SCR2Net on the measured spots; see the module docstring for everything."""
    t_start = time.perf_counter()
    config = (config or TrainConfig()).validate()
    ckpt = None
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from)
        saved = TrainConfig.from_dict(ckpt["config"])
        config = saved.replace(**{k: getattr(config, k) for k in _RESUME_OVERRIDABLE}).validate()
    distributed, rank, world = dist_info()
    device = _device_for(config, distributed)
    use_amp = bool(config.amp and device.type == "cuda")
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    _seed_everything(config.seed)

    if data is None:
        data = prepare_data(
            adata, train_mask, config, panel=None if ckpt is None else list(ckpt["panel"])
        )
    if ckpt is not None and list(ckpt["keys"]) != [str(k) for k in data.keys]:
        raise ValueError(
            "resume_from: the checkpoint was trained on a different set of measured spots"
        )
    n_fit = len(data.fit)
    if n_fit < 2:
        raise ValueError("need at least 2 spots in the fit set")

    in_dim = None if config.fine_tune else data.inputs.shape[1]
    net = build_net(config, in_dim, len(data.panel))
    net.set_statistics(
        None if config.fine_tune else torch.as_tensor(data.inputs[data.fit]),
        torch.as_tensor(data.targets[data.fit]),
    )
    net.to(device)

    X = torch.as_tensor(data.inputs[data.fit]).to(device)
    Y = torch.as_tensor(data.targets[data.fit]).to(device)
    bank_types = None if data.types is None else torch.as_tensor(data.types[data.fit]).to(device)

    backbone_params = list(net.backbone.parameters()) if net.backbone is not None else []
    bb_ids = {id(p) for p in backbone_params}
    groups = [{"params": [p for p in net.parameters() if id(p) not in bb_ids], "lr": config.lr}]
    if backbone_params:
        groups.append({"params": backbone_params, "lr": config.lr * config.backbone_lr_scale})
    with triton_blocked():  # the first optimiser imports torch._dynamo (see torch_runtime)
        opt = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = _n_steps(n_fit, config, world)
    total = steps_per_epoch * config.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, config.warmup_frac))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    history: list[dict[str, float]] = []
    start_epoch = 0
    best_val, best_state = -float("inf"), None
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if use_amp and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        history = list(ckpt["history"])
        start_epoch = int(ckpt["epoch"]) + 1
        best_val = float(ckpt["best_val"])
        best_state = ckpt.get("best_model")
        _set_rng_state(ckpt["rng"])
    last_good = _state_copy(net)

    train_net = net
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_net = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)

    ckpt_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    is_main = rank == 0
    cancelled = False
    step = start_epoch * steps_per_epoch
    val_pcc = history[-1]["val_pcc"] if history else float("nan")
    result = TrainResult(net, config, data, history, start_epoch, False, "last", 0.0, world)

    for epoch in range(start_epoch, config.epochs):
        weights = None
        if config.adaptive_resampling:
            with torch.no_grad():
                net.eval()
                lat = torch.cat([net.latent(X[i : i + 256]).float() for i in range(0, n_fit, 256)])
            weights = adaptive_resampling_weights(
                lat.cpu().numpy(),
                n_bins=config.ar_bins,
                sigma=config.ar_sigma,
                alpha=config.ar_alpha,
            )
        order = _epoch_order(epoch, n_fit, config, weights, rank, world, distributed)
        net.train()
        sums: dict[str, float] = {}
        t_ep = time.perf_counter()
        n_steps_done = 0
        for batch in _batches(order, config.batch_size):
            if cancel is not None and cancel.cancelled:
                cancelled = True
                break
            idx = torch.as_tensor(batch, device=device)
            x, y = X[idx], Y[idx]
            if config.fine_tune:
                x = _augment(x)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                out = train_net(x, y if net.has_contrastive else None)
                loss, parts = _loss(net, out, y, idx, Y, bank_types, config)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            n_steps_done += 1
            for k_, v in parts.items():
                sums[k_] = sums.get(k_, 0.0) + v
            yield Progress(
                step,
                total,
                f"epoch {epoch + 1}/{config.epochs}",
                {"loss": parts["loss"], "val_pcc": val_pcc, "epoch": float(epoch + 1)},
            )
        train_s = time.perf_counter() - t_ep
        if cancelled:
            net.load_state_dict(last_good)
            break
        val = _validate(net, data, config, device)
        val_pcc = val["val_pcc"]
        rec = {k_: v / max(1, n_steps_done) for k_, v in sums.items()}
        rec.update(val)
        rec.update(
            {
                "epoch": epoch + 1,
                "steps": n_steps_done,
                "train_s": train_s,
                "lr": float(opt.param_groups[0]["lr"]),
            }
        )
        history.append(rec)
        last_good = _state_copy(net)
        if math.isfinite(val_pcc) and val_pcc > best_val:
            best_val, best_state = val_pcc, last_good
        result.epochs_completed = epoch + 1
        if ckpt_dir is not None and is_main:
            _write_checkpoint(
                ckpt_dir / CHECKPOINT_NAME,
                net,
                opt,
                sched,
                scaler,
                epoch,
                config,
                data,
                history,
                best_val,
                best_state,
            )
            result.wall_s = time.perf_counter() - t_start
            write_metrics(ckpt_dir / METRICS_NAME, metrics_record(result))
        yield Progress(
            step,
            total,
            f"epoch {epoch + 1}/{config.epochs} done",
            {"loss": rec.get("loss", float("nan")), "val_pcc": val_pcc, "epoch": float(epoch + 1)},
        )

    if not cancelled and config.keep == "best" and best_state is not None:
        net.load_state_dict(best_state)
        result.weights = "best"
    if result.epochs_completed == 0:
        result.weights = "initial"
    net.eval()
    net.to("cpu")
    result.cancelled = cancelled
    result.wall_s = time.perf_counter() - t_start
    if ckpt_dir is not None and is_main:
        write_metrics(ckpt_dir / METRICS_NAME, metrics_record(result))
    return result


def _loss(net: SCR2Net, out, y, idx, bank_y, bank_types, config: TrainConfig):
    """Total loss and its parts (floats) for one batch; see the module docstring.

    ``out`` and ``y`` are this rank's shard; the contrastive and energy terms are computed on
    the global batch (:func:`.distributed.gather_batch`, the shard itself without a process
    group), the MSE and soft-label terms on the shard.
    """
    total = y.new_zeros(())
    parts: dict[str, float] = {}
    pred = out["pred"]
    if pred is not None:
        pred = pred.float()
        mse = F.mse_loss(pred, y)
        total = total + mse
        parts["mse"] = float(mse.detach())
        if config.mode == "full" and config.lambda_soft > 0:
            with torch.no_grad():
                bank_z = Bank(bank_y, None).project(net)
                r = retrieve(
                    out["z_img"].detach().float(),
                    bank_z.float(),
                    bank_y,
                    bank_types,
                    config.k,
                    config.m,
                    exclude=idx,
                )
            soft = weighted_soft_mse(pred, r.soft, r.confidence)
            total = total + config.lambda_soft * soft
            parts["soft"] = float(soft.detach())
            parts["conf"] = float(r.confidence.mean())
        if config.energy_loss and config.lambda_energy > 0:
            pred_all, y_all = gather_batch(pred, y)
            e = energy_distance(pred_all, y_all, unbiased=config.energy_unbiased)
            total = total + config.lambda_energy * e
            parts["energy"] = float(e.detach())
    if out["z_gene"] is not None:
        z_img, z_gene = gather_batch(out["z_img"].float(), out["z_gene"].float())
        con = clip_loss(z_img, z_gene, out["logit_scale"].float())
        w = 1.0 if config.mode == "retrieval" else config.lambda_con
        total = total + w * con
        parts["con"] = float(con.detach())
        parts["temperature"] = float(1.0 / out["logit_scale"].detach())
    parts["loss"] = float(total.detach())
    return total, parts


def _write_checkpoint(
    path: Path, net, opt, sched, scaler, epoch, config, data, history, best_val, best_state
) -> None:
    state = {
        "format_version": FORMAT_VERSION,
        "model": _state_copy(net),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "epoch": int(epoch),
        "config": plain(config.to_dict()),
        "panel": [str(g) for g in data.panel],
        "keys": [str(k) for k in data.keys],
        "history": plain(history),
        "best_val": float(best_val),
        "best_model": best_state,
        "rng": _rng_state(),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train(adata, train_mask, config: TrainConfig | None = None, **kwargs) -> TrainResult:
    """Run :func:`iter_train` to completion without a progress bar."""
    from ..progress import drive

    return drive(iter_train(adata, train_mask, config, **kwargs), use_tqdm=False)
