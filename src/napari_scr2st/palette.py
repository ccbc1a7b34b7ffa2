"""Shared display vocabulary: every colour the maps use, and the "picked by" labels.

One module owns the colours of the selection (acquisition rounds, manual picks) AND the
categorical colours of cell types, so that they never collide: the round colours are saturated
"signal" colours, the cell-type colours muted ones chosen at least :data:`MIN_DELTA_E` (CIE76
Delta E in CIELAB) away from every round colour and from the manual-pick colour
(``tests/test_palette.py`` checks it). Pure helpers used by the layer builders
(:mod:`napari_scr2st.layers`) and the exports (:mod:`napari_scr2st.io.export`), so neither
imports the other.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PALETTE",
    "CELLTYPE_COLORS",
    "ROUND_COLORS",
    "MANUAL_COLOR",
    "MIN_DELTA_E",
    "MANUAL",
    "POLICY",
    "round_color",
    "round_label",
    "user_rounds",
    "celltype_colors",
    "hex_to_rgba",
    "hex_to_rgba_array",
    "picked_by_label",
    "picked_by_labels",
]

#: acquisition rounds: the first round (round 1; index 0 of the arrays) gold, then sky blue, lime,
#: orange, pink, violet, turquoise, yellow-green (saturated colours that read on H&E pink and on a dark canvas); cycles after 8
ROUND_COLORS = ["#ffd700", "#00bfff", "#32cd32", "#ff8c00", "#ff1493", "#8a2be2", "#00ced1", "#adff2f"]

#: manual picks: a large white star (outlined in the colour of its round)
MANUAL_COLOR = "#ffffff"

#: cell types and other categories: muted colours, every one >= MIN_DELTA_E from the round and
#: manual colours (no yellow or ochre, no sky blue: round 1 and "Endothelial" once shared one
#: yellow); the first nine (a breast atlas's major types) are the most distinct
CELLTYPE_COLORS = [
    "#4b4b8f", "#ee99aa", "#556b2f", "#dda0dd", "#800000", "#708090", "#009e73", "#882255",
    "#8b4513", "#80ba5a", "#ee8866", "#000080", "#bbcc33", "#8fbc8f", "#663333", "#bc8f8f",
]  # fmt: skip

#: the categorical palette of exports and layers (an alias kept for the exports)
PALETTE = CELLTYPE_COLORS

#: the least CIE76 Delta E between a category colour and a selection colour
MIN_DELTA_E = 25.0

#: "picked by" label of spots the user picked by hand
MANUAL = "manual"
#: "picked by" label of spots the SCRL policy picked
POLICY = "policy"


def hex_to_rgba(h: str, alpha: float = 1.0) -> np.ndarray:
    """``"#rrggbb"`` -> float32 RGBA in [0, 1]."""
    h = h.lstrip("#")
    return np.array([int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)] + [alpha], dtype=np.float32)


def hex_to_rgba_array(colors, alpha: float = 1.0) -> np.ndarray:
    """A list of hex colours -> an (n, 4) float32 RGBA array."""
    return np.array([hex_to_rgba(c, alpha) for c in colors], dtype=np.float32).reshape(-1, 4)


def round_color(r: int) -> str:
    """Hex colour of acquisition round ``r`` (the 0-based index of the arrays; cycles after 8 rounds)."""
    return ROUND_COLORS[int(r) % len(ROUND_COLORS)]


def user_rounds(rounds) -> np.ndarray:
    """Round numbers as a person reads them: the 0-based ``round`` arrays of a selection state
    (-1 = not selected) -> 1, 2, ... (1 = the first round), 0 = not selected. Every table, layer
    feature, legend and message shown to a person counts rounds this way; only the arrays inside
    (:class:`~napari_scr2st.sampling.state.SelectionState`, its ``.npz``) are 0-based."""
    r = np.asarray(rounds, dtype=np.int64)
    return np.where(r >= 0, r + 1, 0)


def round_label(r: int) -> str:
    """``"round 1"`` for the 0-based round index 0 (see :func:`user_rounds`)."""
    return f"round {int(r) + 1}"


def celltype_colors(categories) -> dict[str, str]:
    """A stable ``{category: hex colour}`` map (the order of ``categories`` decides colours)."""
    return {str(c): CELLTYPE_COLORS[i % len(CELLTYPE_COLORS)] for i, c in enumerate(categories)}


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
