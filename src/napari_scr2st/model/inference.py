"""Batched inference shared by validation, prediction and inspection (torch).

One function, :func:`run_inference`, computes for a set of query inputs the regression output,
the retrieval of the memory bank (top-k, majority filter, soft label, confidence) and the
final (blended) prediction, so training-time validation, ``predict`` and ``inspect_spot`` can
never disagree.

Final prediction by mode:

- ``regression``: the regression output;
- ``retrieval``: the soft label (mean expression of the kept retrieved neighbours);
- ``full``: ``(1 - alpha) * regression + alpha * soft`` (retrieval-augmented inference;
  ``alpha = 0`` is the regression output alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .retrieval import retrieve

__all__ = ["Bank", "InferenceOutput", "run_inference", "enable_mc_dropout"]


@dataclass
class Bank:
    """The memory bank of measured spots (expression, cell-type codes, keys)."""

    expr: torch.Tensor  # (N, G) log1p-normalised panel
    types: torch.Tensor | None  # (N,) long, -1 unknown; None = no cell types
    keys: np.ndarray | None = None  # (N,) "{section}|{obs_name}"
    z: torch.Tensor | None = None  # (N, P) gene projections (filled by :meth:`project`)

    def to(self, device) -> Bank:
        return Bank(
            self.expr.to(device),
            None if self.types is None else self.types.to(device),
            self.keys,
            None if self.z is None else self.z.to(device),
        )

    @torch.no_grad()
    def project(self, net, batch_size: int = 4096) -> torch.Tensor:
        """Gene projections of the bank with the gene encoder in eval mode (no dropout)."""
        enc = net.gene_encoder
        was = enc.training
        enc.eval()
        try:
            zs = [
                net.encode_genes(self.expr[i : i + batch_size])
                for i in range(0, len(self.expr), batch_size)
            ]
        finally:
            enc.train(was)
        self.z = (
            torch.cat(zs)
            if zs
            else torch.zeros(0, net.img_proj.out_features, device=self.expr.device)
        )
        return self.z


@dataclass
class InferenceOutput:
    """Per-query arrays (numpy); retrieval fields are None when no retrieval was done."""

    final: np.ndarray  # (n, G)
    regression: np.ndarray | None  # (n, G)
    soft: np.ndarray | None  # (n, G)
    confidence: np.ndarray | None  # (n,)
    index: np.ndarray | None = None  # (n, k) bank rows
    similarity: np.ndarray | None = None  # (n, k)
    kept: np.ndarray | None = None  # (n, k)


def enable_mc_dropout(net: nn.Module, on: bool = True) -> None:
    """Eval mode everywhere except Dropout layers (train mode when ``on``): MC-dropout."""
    net.eval()
    if on:
        for mod in net.modules():
            if isinstance(mod, nn.Dropout):
                mod.train()


@torch.no_grad()
def run_inference(
    net,
    inputs,
    bank: Bank | None,
    *,
    mode: str,
    k: int,
    m: int,
    alpha: float,
    device=None,
    batch_size: int = 256,
    exclude: np.ndarray | None = None,
    return_neighbours: bool = False,
    mc_dropout: bool = False,
    retrieve_always: bool = False,
) -> InferenceOutput:
    """Predict for ``inputs`` (numpy or tensor, (n, ...)); see the module docstring.

    ``exclude[i]`` (>= 0) bars bank row ``exclude[i]`` from query i's neighbours (a measured spot
    does not retrieve itself). ``retrieve_always`` runs the retrieval even when it does not
    enter the final prediction (``alpha = 0``), to show it. The net is left in eval mode.
    """
    device = device or next(net.parameters()).device
    enable_mc_dropout(net, mc_dropout)
    use_retrieval = (
        bank is not None
        and net.has_contrastive
        and (mode == "retrieval" or (mode == "full" and (alpha > 0 or retrieve_always)))
    )
    if mode == "retrieval" and not use_retrieval:
        raise ValueError("retrieval mode needs a memory bank of measured spots")
    if use_retrieval:
        bank = bank.to(device)
        if bank.z is None:
            bank.project(net)
    outs: dict[str, list] = {
        k_: [] for k_ in ("final", "reg", "soft", "conf", "idx", "sim", "kept")
    }
    n = len(inputs)
    for s in range(0, n, batch_size):
        x = torch.as_tensor(
            np.asarray(inputs[s : s + batch_size])
            if not torch.is_tensor(inputs)
            else inputs[s : s + batch_size]
        )
        x = x.to(device)
        h, z = net.encode_image(x)
        reg = net.regress(h) if net.head is not None else None
        soft = conf = None
        if use_retrieval:
            ex = None
            if exclude is not None:
                ex = torch.as_tensor(
                    np.asarray(exclude[s : s + batch_size], dtype=np.int64), device=device
                )
            r = retrieve(z, bank.z, bank.expr, bank.types, k, m, exclude=ex)
            soft, conf = r.soft, r.confidence
            if return_neighbours:
                outs["idx"].append(r.index.cpu().numpy())
                outs["sim"].append(r.similarity.float().cpu().numpy())
                outs["kept"].append(r.kept.cpu().numpy())
        if mode == "retrieval":
            final = soft
        elif use_retrieval and alpha > 0:
            final = (1.0 - alpha) * reg + alpha * soft
        else:
            final = reg
        outs["final"].append(final.float().cpu().numpy())
        if reg is not None:
            outs["reg"].append(reg.float().cpu().numpy())
        if soft is not None:
            outs["soft"].append(soft.float().cpu().numpy())
            outs["conf"].append(conf.float().cpu().numpy())
    net.eval()

    def cat(key):
        return np.concatenate(outs[key]) if outs[key] else None

    g = net.n_genes
    final = cat("final")
    return InferenceOutput(
        final=final if final is not None else np.zeros((0, g), np.float32),
        regression=cat("reg"),
        soft=cat("soft"),
        confidence=cat("conf"),
        index=cat("idx"),
        similarity=cat("sim"),
        kept=cat("kept"),
    )
