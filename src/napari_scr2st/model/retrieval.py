"""Retrieval of measured spots, majority cell-type filtering and soft labels (torch, batched).

The *memory bank* is the set of measured spots: their gene projections ``z_gene`` (unit norm),
their measured expression (log1p-normalised panel) and their cell-type codes (int, -1 unknown).
A query is an image projection (unit norm); similarity is the cosine (dot product).

Majority filtering (METHOD.md section 5): among the ``k`` neighbours of a query, the cell types
are ranked by their count among the neighbours; ties are broken by the rank of the type's most
similar neighbour (the type seen first in similarity order wins), which is deterministic. The
neighbours whose type is among the top ``m`` types are KEPT. Unknown types (code -1) form one
category of their own; with no cell types at all every neighbour is kept.

Soft label = mean measured expression of the kept neighbours. Confidence (per query, in [0, 1])
= mean over the kept neighbours of ``max(cosine similarity, 0)``: high when the kept neighbours
are close in the shared space, near 0 early in training or for out-of-distribution patches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Retrieval", "retrieve", "majority_filter", "soft_labels"]


@dataclass
class Retrieval:
    """Result of retrieving ``k`` neighbours for ``b`` queries."""

    index: torch.Tensor  # (b, k) long, bank rows in decreasing similarity
    similarity: torch.Tensor  # (b, k) float
    kept: torch.Tensor  # (b, k) bool, majority filter
    soft: torch.Tensor  # (b, G) mean expression of kept neighbours
    confidence: torch.Tensor  # (b,) in [0, 1]


def topk_neighbours(
    query: torch.Tensor, bank: torch.Tensor, k: int, exclude: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` bank rows by cosine similarity; ``exclude[i]`` (>= 0) is a bank row barred for query i.

    Ties in similarity are broken by bank order (stable). ``k`` is capped at the usable bank size.
    """
    sim = query.float() @ bank.float().t()
    if exclude is not None:
        rows = torch.nonzero(exclude >= 0, as_tuple=True)[0]
        sim[rows, exclude[rows]] = float("-inf")
    n_usable = bank.shape[0] - (1 if exclude is not None and bool((exclude >= 0).any()) else 0)
    k = max(1, min(int(k), n_usable))
    # stable top-k: sort is stable on CPU and CUDA for equal keys with stable=True
    sims, idx = torch.sort(sim, dim=1, descending=True, stable=True)
    return idx[:, :k], sims[:, :k]


def majority_filter(types: torch.Tensor, m: int) -> torch.Tensor:
    """Boolean mask (b, k): neighbours whose type is among the ``m`` most frequent (see module doc).

    ``types`` (b, k) long codes in similarity order, -1 = unknown (its own category).
    ``m <= 0`` or ``m >= k`` keeps everything.
    """
    b, k = types.shape
    if m <= 0 or m >= k:
        return torch.ones_like(types, dtype=torch.bool)
    codes = types + 1  # unknown -> 0
    n_codes = int(codes.max().item()) + 1 if codes.numel() else 1
    onehot = torch.nn.functional.one_hot(codes, n_codes)  # (b, k, T)
    counts = onehot.sum(dim=1)  # (b, T)
    pos = torch.arange(k, device=types.device)[None, :, None].expand(b, k, n_codes)
    first = torch.where(onehot.bool(), pos, torch.full_like(pos, k)).min(dim=1).values  # (b, T)
    key = counts * (k + 1) + (k - first)  # more neighbours first, then earliest neighbour
    key = torch.where(counts > 0, key, torch.full_like(key, -1))
    top = torch.topk(key, k=min(m, n_codes), dim=1).indices  # (b, m)
    chosen = torch.zeros_like(counts, dtype=torch.bool).scatter_(1, top, True) & (counts > 0)
    return torch.gather(chosen, 1, codes)


def soft_labels(
    bank_expr: torch.Tensor, index: torch.Tensor, kept: torch.Tensor, similarity: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft label (mean expression of kept neighbours) and confidence per query."""
    w = kept.float()
    nk = w.sum(dim=1).clamp_min(1.0)
    soft = (bank_expr[index] * w[..., None]).sum(dim=1) / nk[:, None]
    conf = (similarity.float().clamp_min(0.0) * w).sum(dim=1) / nk
    return soft, conf.clamp(0.0, 1.0)


def retrieve(
    query: torch.Tensor,
    bank_z: torch.Tensor,
    bank_expr: torch.Tensor,
    bank_types: torch.Tensor | None,
    k: int,
    m: int,
    exclude: torch.Tensor | None = None,
) -> Retrieval:
    """Full retrieval step: top-k, majority filter, soft label and confidence."""
    idx, sims = topk_neighbours(query, bank_z, k, exclude)
    if bank_types is None:
        kept = torch.ones_like(idx, dtype=torch.bool)
    else:
        kept = majority_filter(bank_types[idx], m)
    soft, conf = soft_labels(bank_expr, idx, kept, sims)
    return Retrieval(idx, sims, kept, soft, conf)
