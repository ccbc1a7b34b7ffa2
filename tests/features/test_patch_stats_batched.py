"""The batched patch statistics equal the per-spot statistics (interior and border spots)."""

from __future__ import annotations

import numpy as np

from napari_scr2st.data import make_sample
from napari_scr2st.data.model import SPATIAL_KEY, get_fullres_image, spot_diameter_px
from napari_scr2st.features.patch_stats import _patch_features, patch_statistics_embedding


def _per_spot(adata, patch_scale=1.5, max_patch=48) -> np.ndarray:
    """The former implementation: one patch at a time."""
    img = get_fullres_image(adata)
    half = int(max(2, round(spot_diameter_px(adata) * patch_scale / 2)))
    step = max(1, (2 * half) // max_patch)
    H, W = img.shape[:2]
    out = np.zeros((adata.n_obs, 20), dtype=np.float32)
    for i, (x, y) in enumerate(np.asarray(adata.obsm[SPATIAL_KEY], dtype=np.float64)):
        x0, x1 = int(max(0, x - half)), int(min(W, x + half))
        y0, y1 = int(max(0, y - half)), int(min(H, y + half))
        p = np.asarray(img[y0:y1:step, x0:x1:step, :3], dtype=np.float32) / 255.0
        if p.size:
            out[i] = _patch_features(p)
    return out


def test_batched_patch_statistics_equal_the_per_spot_ones():
    adata = make_sample(n_spots=300, n_genes=100, spacing_px=20.0, seed=3).section
    xy = np.asarray(adata.obsm[SPATIAL_KEY], dtype=np.float64)
    xy[:3] = [[1.0, 1.0], [2.5, 40.0], [-30.0, -30.0]]  # clipped patches
    adata.obsm[SPATIAL_KEY] = xy
    got = patch_statistics_embedding(adata)
    want = _per_spot(adata)
    assert got.shape == (adata.n_obs, 20)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.ptp(got[3:, 0]) > 0  # the statistics vary across spots


def test_batched_patch_statistics_with_subsampled_patches():
    adata = make_sample(n_spots=200, n_genes=100, spacing_px=140.0, seed=4).section  # step > 1
    np.testing.assert_allclose(patch_statistics_embedding(adata), _per_spot(adata), rtol=1e-6, atol=1e-7)
