"""The process group seen by training, and the global batch of the batch-level losses.

Under DistributedDataParallel every rank holds a shard of the global batch. The contrastive
(CLIP) loss and the energy distance compare every sample with every other one, so each rank
gathers the shards (:func:`gather_batch`) and computes them over the GLOBAL batch: the same
value on every rank, and after DDP averages the gradients, the same gradient as one process
that sees the whole batch. Without an initialised process group nothing here calls
``torch.distributed`` beyond asking whether it is initialised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["dist_info", "gather_batch"]


def dist_info() -> tuple[bool, int, int]:
    """``(distributed, rank, world_size)``; ``(False, 0, 1)`` without an initialised group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return True, dist.get_rank(), dist.get_world_size()
    return False, 0, 1


def gather_batch(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor's rows concatenated over all ranks, in rank order: the global batch.

    Without an initialised process group (or with one process) the tensors come back as they
    are. Otherwise every rank must call this with the same number of tensors, in the same
    order, each with the same trailing shape and dtype on every rank; the tensors of one call
    must have the same number of rows on a rank, and ranks may hold different numbers of rows
    (the shards are zero-padded to the largest, gathered, and the padding dropped).

    Gradients flow back to every rank's own rows (``torch.distributed.nn.functional
    .all_gather``, whose backward sums the gradients of all ranks' losses): a loss computed on
    the gathered tensors on every rank and then averaged by DistributedDataParallel has exactly
    the gradient of that loss on one process holding the global batch.
    """
    distributed, _, n_ranks = dist_info()
    if not distributed or n_ranks == 1:
        return tensors
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_gather

    n_rows = {int(t.shape[0]) for t in tensors}
    if len(n_rows) != 1:
        raise ValueError(
            f"gather_batch: the tensors must have the same number of rows, got {n_rows}"
        )
    n = n_rows.pop()
    local = torch.tensor([n], device=tensors[0].device, dtype=torch.int64)
    sizes = [torch.empty_like(local) for _ in range(n_ranks)]
    dist.all_gather(sizes, local)
    sizes_ = [int(s.item()) for s in sizes]
    longest = max(sizes_)
    out = []
    for t in tensors:
        if n < longest:  # pad rows only: F.pad's pairs run from the last dimension backwards
            t = F.pad(t, (0, 0) * (t.ndim - 1) + (0, longest - n))
        shards = all_gather(t.contiguous())
        out.append(torch.cat([s[:k] for s, k in zip(shards, sizes_, strict=True)]))
    return tuple(out)
