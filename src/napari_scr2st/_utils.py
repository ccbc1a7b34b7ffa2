"""Small shared helpers: device choice, atomic file writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["pick_device", "atomic_write", "atomic_path", "save_npz_atomic"]


def pick_device(preference: str = "auto"):
    """Return a ``torch.device``: ``auto`` picks CUDA, then MPS, then CPU.

    ``preference`` may also be ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``gpu`` (any GPU);
    asking for a GPU that is not there is a clear error.
    """
    import torch

    pref = (preference or "auto").lower()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if has_mps:
            return torch.device("mps")
        return torch.device("cpu")
    if pref == "gpu":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if has_mps:
            return torch.device("mps")
        raise RuntimeError("device 'gpu' requested but neither CUDA nor MPS is available; use 'cpu' or 'auto'")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{preference}' requested but CUDA is not available; use 'cpu' or 'auto'")
    if pref == "mps" and not has_mps:
        raise RuntimeError("device 'mps' requested but MPS is not available; use 'cpu' or 'auto'")
    return torch.device(pref)


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    The file gets the mode a plain ``open(path, "w")`` would give (``0o666 & ~umask``), not
    the private ``0o600`` of :func:`tempfile.mkstemp`. On error the temporary file is removed
    and an existing ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs):
    """Open a file for writing that appears at ``path`` only when the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh


def save_npz_atomic(path: str | os.PathLike, **arrays) -> Path:
    """``np.savez_compressed`` to ``path`` through :func:`atomic_path` (no half-written file)."""
    import numpy as np

    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return path
