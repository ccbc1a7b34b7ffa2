"""Torch device choice from a user preference (``auto``, ``cpu``, ``cuda[:N]``, ``mps``, ``gpu``)."""

from __future__ import annotations

__all__ = ["pick_device"]


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
