"""Figures (matplotlib, Agg backend; written atomically): overview of a section, curves."""

from __future__ import annotations

import os

import numpy as np

from .atomic import atomic_path
from .data.model import get_lowres_image, library_id, spot_diameter_px

__all__ = ["plot_overview"]


def plot_overview(
    adata,
    path: str | os.PathLike,
    *,
    color: str | None = None,
    selected: np.ndarray | None = None,
    title: str | None = None,
    dpi: int = 120,
) -> str:
    """Write a PNG: the histology with the spot grid (circles at the real spot size).

    ``color`` names an ``obs`` column (categorical -> legend, numeric -> colourbar);
    ``selected`` (boolean mask) draws those spots with a thick outline.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.collections import EllipseCollection

    lib = library_id(adata)
    img = get_lowres_image(adata, lib)
    xy = np.asarray(adata.obsm["spatial"], dtype=float)[:, :2]
    scale = 1.0
    fig, ax = plt.subplots(figsize=(8, 8 * (img[0].shape[0] / img[0].shape[1]) if img else 8))
    if img is not None:
        ax.imshow(img[0])
        scale = img[1]
    d = spot_diameter_px(adata, lib) * scale
    pts = xy * scale
    facec = "none"
    handles = None
    if color is not None:
        vals = adata.obs[color]
        if vals.dtype.name == "category" or vals.dtype == object:
            cats = vals.astype("category")
            cmap = plt.get_cmap("tab10" if len(cats.cat.categories) <= 10 else "tab20")
            cols = [cmap(i % cmap.N) for i in range(len(cats.cat.categories))]
            facec = [cols[c] for c in cats.cat.codes]
            from matplotlib.patches import Patch

            handles = [Patch(color=cols[i], label=str(c)) for i, c in enumerate(cats.cat.categories)]
        else:
            v = vals.to_numpy(dtype=float)
            facec = plt.get_cmap("viridis")((v - np.nanmin(v)) / (np.nanmax(v) - np.nanmin(v) + 1e-12))
    coll = EllipseCollection(
        widths=d, heights=d, angles=0, units="xy", offsets=pts, offset_transform=ax.transData,
        facecolors=facec, edgecolors="black" if color is None else "none", linewidths=0.4, alpha=0.85,
    )
    ax.add_collection(coll)
    if selected is not None and np.any(selected):
        sel = EllipseCollection(
            widths=d * 1.25, heights=d * 1.25, angles=0, units="xy", offsets=pts[np.asarray(selected)],
            offset_transform=ax.transData, facecolors="none", edgecolors="#00e5ff", linewidths=1.5,
        )
        ax.add_collection(sel)
    if img is None:
        ax.set_xlim(pts[:, 0].min() - d, pts[:, 0].max() + d)
        ax.set_ylim(pts[:, 1].max() + d, pts[:, 1].min() - d)
        ax.set_aspect("equal")
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
    ax.set_axis_off()
    ax.set_title(title or f"{lib}: {adata.n_obs} spots")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return str(path)
