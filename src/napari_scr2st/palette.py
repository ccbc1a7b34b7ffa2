"""Shared display vocabulary of selections: the category palette and "picked by" labels.

Pure helpers used by the layer builders (:mod:`napari_scr2st.layers`) and the exports
(:mod:`napari_scr2st.io.export`), so neither imports the other.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PALETTE", "MANUAL", "POLICY", "picked_by_label", "picked_by_labels"]

# A colour-blind-friendly qualitative palette (Okabe-Ito first, then Paul Tol's muted), as hex.
PALETTE = [
    "#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7", "#999999",
    "#882255", "#44aa99", "#117733", "#332288", "#ddcc77", "#aa4499", "#88ccee", "#cc6677",
    "#999933", "#000000",
]  # fmt: skip

#: "picked by" label of spots the user picked by hand
MANUAL = "manual"
#: "picked by" label of spots the SCRL policy picked
POLICY = "policy"


def picked_by_labels(sources) -> np.ndarray:
    """Vectorised :func:`picked_by_label` (one call per distinct source)."""
    src = np.asarray(sources, dtype=object)
    if src.size == 0:
        return np.zeros(0, dtype=object)
    uniq, inv = np.unique(src.astype(str), return_inverse=True)
    return np.array([picked_by_label(u) for u in uniq], dtype=object)[inv.ravel()]


def picked_by_label(source: str, policy_sources=("scrl", "policy", "rl")) -> str:
    """User-facing 'picked by': ``manual``, ``policy`` (the SCRL policy) or the sampler's name."""
    s = str(source or "")
    if s == MANUAL:
        return MANUAL
    if s.lower() in policy_sources or s.lower().startswith("scrl"):
        return POLICY
    return s or "unknown"
