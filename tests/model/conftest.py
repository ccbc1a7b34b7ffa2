"""Shared fixtures: a small synthetic section with a stand-in vision embedding.

The stand-in embedding (colour and texture statistics of the patch around each spot) is
computed here so the model tests do not depend on the features package. Cell types for the
majority filter stand in for label transfer: the dominant type of the synthetic mixture.
"""

from __future__ import annotations

import numpy as np
import pytest


def patch_stats(adata, half: int | None = None) -> np.ndarray:
    """Colour/texture statistics of the square patch around every spot (float32, (n, 21))."""
    from napari_scr2st.data import get_fullres_image, spot_diameter_px

    img = get_fullres_image(adata).astype(np.float32) / 255.0
    half = half or max(4, int(round(spot_diameter_px(adata))))
    xy = np.rint(np.asarray(adata.obsm["spatial"])).astype(int)
    feats = []
    for x, y in xy:
        p = img[max(0, y - half) : y + half + 1, max(0, x - half) : x + half + 1].reshape(-1, 3)
        gray = p.mean(1)
        feats.append(
            np.concatenate(
                [
                    p.mean(0),
                    p.std(0),
                    np.quantile(p, [0.1, 0.5, 0.9], axis=0).ravel(),
                    [(gray < 0.45).mean(), (gray > 0.85).mean(), gray.std()],
                    # saturation-like contrast between channels
                    [
                        np.mean(p[:, 0] - p[:, 1]),
                        np.mean(p[:, 2] - p[:, 1]),
                        np.mean(p[:, 0] - p[:, 2]),
                    ],
                ]
            )
        )
    return np.asarray(feats, dtype=np.float32)


def make_section(n_spots: int = 300, seed: int = 0, n_genes: int = 150):
    from napari_scr2st.data import make_sample

    ad = make_sample(n_spots=n_spots, seed=seed, n_genes=n_genes, n_cells=200).section
    ad.obsm["X_vision"] = patch_stats(ad)
    props = ad.obsm["true_proportions"]
    ad.obs["cell_type"] = props.columns.to_numpy()[np.argmax(props.to_numpy(), axis=1)]
    return ad


@pytest.fixture(scope="session")
def section():
    """A ~300-spot synthetic section with obsm['X_vision'] and obs['cell_type'] (do not modify)."""
    return make_section()


@pytest.fixture(scope="session")
def half_mask(section):
    """Half of the spots, at random, as the measured set (read-only)."""
    rng = np.random.default_rng(0)
    m = np.zeros(section.n_obs, dtype=bool)
    m[rng.choice(section.n_obs, size=section.n_obs // 2, replace=False)] = True
    m.setflags(write=False)
    return m


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models on a shared machine: one thread avoids oversubscription stalls."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
