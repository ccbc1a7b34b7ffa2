"""A cheap stand-in vision embedding: colour and texture statistics of the patch at each spot.

Not a learned encoder: mean/sd of RGB, grey-level percentiles, dark-pixel fractions (nuclei),
gradient and Laplacian energy, and haematoxylin/eosin channel statistics (``skimage.color.rgb2hed``)
of a square patch of ``patch_scale`` spot diameters around each spot (20 numbers per spot).
Instant (no network weights, no torch); asked for by the encoder name ``"patch-stats"`` (see
:func:`napari_scr2st.features.ensure_vision_embedding`). Reads the image only (no expression).
"""

from __future__ import annotations

import numpy as np

from ..data.model import SPATIAL_KEY, get_fullres_image, split_sections, spot_diameter_px

__all__ = ["patch_statistics_embedding", "PATCH_STATS_NAMES"]

#: encoder names that ask for this stand-in
PATCH_STATS_NAMES = ("patch-stats", "patch_stats", "standin")


def _one_section(adata, patch_scale: float, max_patch: int) -> np.ndarray:
    from scipy import ndimage

    img = get_fullres_image(adata)
    if img is None:
        raise ValueError(f"section {adata.obs['section'].iloc[0]!r} has no image; cannot compute patch statistics")
    diam = spot_diameter_px(adata)
    half = int(max(2, round(diam * patch_scale / 2)))
    step = max(1, (2 * half) // max_patch)  # subsample big patches (her2st: ~145 px spots)
    H, W = img.shape[:2]
    xy = np.asarray(adata.obsm[SPATIAL_KEY], dtype=np.float64)
    out = np.zeros((adata.n_obs, 20), dtype=np.float32)
    hed_m = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
    hed_inv = np.linalg.inv(hed_m)
    for i, (x, y) in enumerate(xy):
        x0, x1 = int(max(0, x - half)), int(min(W, x + half))
        y0, y1 = int(max(0, y - half)), int(min(H, y + half))
        p = np.asarray(img[y0:y1:step, x0:x1:step, :3], dtype=np.float32) / 255.0
        if p.size == 0:
            continue
        g = p.mean(axis=2)
        od = -np.log(np.clip(p, 1e-3, 1.0))
        hed = od.reshape(-1, 3) @ hed_inv
        gx = np.abs(np.diff(g, axis=1)).mean() if g.shape[1] > 1 else 0.0
        gy = np.abs(np.diff(g, axis=0)).mean() if g.shape[0] > 1 else 0.0
        lap = np.abs(ndimage.laplace(g)).mean() if min(g.shape) > 2 else 0.0
        out[i] = np.concatenate([
            p.reshape(-1, 3).mean(axis=0),
            p.reshape(-1, 3).std(axis=0),
            np.percentile(g, [10, 25, 50, 90]),
            [(g < 0.35).mean(), (g < 0.55).mean(), gx, gy, lap],
            hed[:, :2].mean(axis=0), hed[:, :2].std(axis=0),
            [np.percentile(hed[:, 0], 90)],
        ]).astype(np.float32)
    return out


def patch_statistics_embedding(adata, *, patch_scale: float = 1.5, max_patch: int = 48) -> np.ndarray:
    """(n_spots, 20) colour/texture statistics per spot (see module docstring), per section."""
    if "section" in adata.obs and adata.obs["section"].nunique() > 1:
        parts = split_sections(adata)
        out = np.zeros((adata.n_obs, 20), dtype=np.float32)
        sec = adata.obs["section"].astype(str).to_numpy()
        for name, sub in parts.items():
            out[sec == name] = _one_section(sub, patch_scale, max_patch)
        return out
    return _one_section(adata, patch_scale, max_patch)
