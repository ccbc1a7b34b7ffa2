"""Run small numeric work single-threaded.

The policy's tensors and the per-round linear algebra are tiny; with several threads on a busy
machine (thread pools spinning against other processes) they get 10x slower, not faster.
"""

from __future__ import annotations

import contextlib

__all__ = ["single_thread"]


@contextlib.contextmanager
def single_thread(torch_too: bool = True, blas: bool = True):
    """Limit BLAS/OpenMP pools (threadpoolctl) and torch intra-op threads to 1 inside the block."""
    stack = contextlib.ExitStack()
    if blas:
        try:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=1))
        except Exception:  # pragma: no cover - threadpoolctl is a scikit-learn dependency
            pass
    prev = None
    if torch_too:
        import torch

        prev = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        with stack:
            yield
    finally:
        if prev is not None:
            import torch

            torch.set_num_threads(prev)
