"""Distributed training: the SAME ``scr2st train`` run under PyTorch DistributedDataParallel.

Launch with torchrun (``python -m torch.distributed.run``), which sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address::

    python -m torch.distributed.run --standalone --nproc_per_node=2 -m napari_scr2st.cli.ddp \\
        data.h5ad --train-fraction 0.3 --epochs 30 --device cpu --out model/

Arguments are those of ``scr2st train``. The process group uses NCCL when CUDA is available
(and ``--device`` is not ``cpu``; each rank takes GPU ``LOCAL_RANK``) and gloo otherwise.
:func:`napari_scr2st.model.train.iter_train` detects the initialised group: it wraps the
network in ``DistributedDataParallel`` and shards each epoch with a ``DistributedSampler``
(per-rank batch = ``--batch-size``, so the global batch is ``world_size`` times larger); the
contrastive and energy-distance terms are computed over that global batch (the ranks gather
each other's projections and predictions), as one process seeing it would. Only rank 0
writes ``last.pt``, ``model.pt`` and ``metrics.json`` (same format as a single-process run,
with ``world_size``). Cancellation is not supported across processes.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    import torch
    import torch.distributed as dist

    from ._model import add_input_args, add_train_args, run_train

    parser = argparse.ArgumentParser(
        prog="python -m torch.distributed.run --nproc_per_node=N -m napari_scr2st.cli.ddp",
        description="scr2st train under DistributedDataParallel (launch with torchrun)",
    )
    add_input_args(parser)
    add_train_args(parser)
    args = parser.parse_args(argv)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        parser.error(
            "not launched by torchrun: use python -m torch.distributed.run --nproc_per_node=N -m napari_scr2st.cli.ddp ..."
        )
    use_cuda = torch.cuda.is_available() and args.device not in ("cpu", "mps")
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    try:
        if dist.get_rank() != 0:
            args.quiet = True
        rc = run_train(args)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return rc


if __name__ == "__main__":  # pragma: no cover - exercised by tests/model/test_ddp.py in subprocesses
    sys.exit(main())
