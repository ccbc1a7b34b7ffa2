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


_HED_INV = np.linalg.inv(np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]]))
#: pixels gathered per vectorised batch (float32 RGB: ~24 MB per array)
_BATCH_PIXELS = 2_000_000


def _patch_features(p: np.ndarray) -> np.ndarray:
    """The 20 statistics of one patch (``p``: (h, w, 3) float in [0, 1], not empty)."""
    from scipy import ndimage

    g = p.mean(axis=2)
    od = -np.log(np.clip(p, 1e-3, 1.0))
    hed = od.reshape(-1, 3) @ _HED_INV
    gx = np.abs(np.diff(g, axis=1)).mean() if g.shape[1] > 1 else 0.0
    gy = np.abs(np.diff(g, axis=0)).mean() if g.shape[0] > 1 else 0.0
    lap = np.abs(ndimage.laplace(g)).mean() if min(g.shape) > 2 else 0.0
    return np.concatenate([
        p.reshape(-1, 3).mean(axis=0),
        p.reshape(-1, 3).std(axis=0),
        np.percentile(g, [10, 25, 50, 90]),
        [(g < 0.35).mean(), (g < 0.55).mean(), gx, gy, lap],
        hed[:, :2].mean(axis=0), hed[:, :2].std(axis=0),
        [np.percentile(hed[:, 0], 90)],
    ]).astype(np.float32)


def _batch_features(P: np.ndarray) -> np.ndarray:
    """:func:`_patch_features` of a stack of equal patches ``P`` (n, h, w, 3), without a loop
    over spots (the same statistics; only the summation order of the means may differ)."""
    from scipy import ndimage

    n, h, w = P.shape[:3]
    flat = P.reshape(n, -1, 3)
    g = P.mean(axis=3)
    gflat = g.reshape(n, -1)
    od = -np.log(np.clip(flat, 1e-3, 1.0))
    hed = od @ _HED_INV
    zero = np.zeros(n)
    gx = np.abs(np.diff(g, axis=2)).mean(axis=(1, 2)) if w > 1 else zero
    gy = np.abs(np.diff(g, axis=1)).mean(axis=(1, 2)) if h > 1 else zero
    if min(h, w) > 2:  # ndimage.laplace of each patch: the second differences along its two axes
        lap = ndimage.correlate1d(g, [1, -2, 1], axis=1, mode="reflect")
        lap += ndimage.correlate1d(g, [1, -2, 1], axis=2, mode="reflect")
        lap = np.abs(lap).mean(axis=(1, 2))
    else:
        lap = zero
    return np.column_stack([
        flat.mean(axis=1),
        flat.std(axis=1),
        np.percentile(gflat, [10, 25, 50, 90], axis=1).T,
        (gflat < 0.35).mean(axis=1), (gflat < 0.55).mean(axis=1), gx, gy, lap,
        hed[..., :2].mean(axis=1), hed[..., :2].std(axis=1),
        np.percentile(hed[..., 0], 90, axis=1),
    ]).astype(np.float32)


def _one_section(adata, patch_scale: float, max_patch: int) -> np.ndarray:
    img = get_fullres_image(adata)
    if img is None:
        raise ValueError(f"section {adata.obs['section'].iloc[0]!r} has no image; cannot compute patch statistics")
    diam = spot_diameter_px(adata)
    half = int(max(2, round(diam * patch_scale / 2)))
    step = max(1, (2 * half) // max_patch)  # subsample big patches (her2st: ~145 px spots)
    H, W = img.shape[:2]
    xy = np.asarray(adata.obsm[SPATIAL_KEY], dtype=np.float64)
    out = np.zeros((adata.n_obs, 20), dtype=np.float32)
    # the patch of a spot: [y - half, y + half) x [x - half, x + half), clipped to the image
    x0 = np.maximum(0, xy[:, 0] - half).astype(np.int64)
    x1 = np.minimum(W, xy[:, 0] + half).astype(np.int64)
    y0 = np.maximum(0, xy[:, 1] - half).astype(np.int64)
    y1 = np.minimum(H, xy[:, 1] + half).astype(np.int64)
    # spots whose patch lies inside the image share one patch shape: gathered and reduced in
    # batches (an 8 um Visium HD section has ~300,000 bins); the others one by one
    inner = (x1 - x0 == 2 * half) & (y1 - y0 == 2 * half) & isinstance(img, np.ndarray)
    rest = np.flatnonzero(~inner)
    if inner.any():
        idx = np.flatnonzero(inner)
        oy, ox = np.arange(0, 2 * half, step), np.arange(0, 2 * half, step)
        per = max(1, _BATCH_PIXELS // (len(oy) * len(ox)))
        for a in range(0, len(idx), per):
            b = idx[a:a + per]
            ys = (y0[b, None] + oy)[:, :, None]
            xs = (x0[b, None] + ox)[:, None, :]
            P = np.asarray(img[ys, xs, :3], dtype=np.float32) / 255.0
            out[b] = _batch_features(P)
    for i in rest:
        p = np.asarray(img[y0[i]:y1[i]:step, x0[i]:x1[i]:step, :3], dtype=np.float32) / 255.0
        if p.size:
            out[i] = _patch_features(p)
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
