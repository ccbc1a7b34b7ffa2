"""Pure layer builders: section AnnData -> napari ``LayerDataTuple`` ``(data, kwargs, type)``.

No napari or Qt import here: these functions are tested headless, used by the reader and
sample-data glue, and by the widgets. Coordinates follow napari's (row, col) = (y, x) order;
``obsm["spatial"]`` is (x, y) in full-resolution pixels, so every layer lives in full-res pixel
space and images are placed with a ``scale`` when only a downscaled copy is shown.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data.model import (
    SECTION_KEY,
    SPATIAL_KEY,
    get_fullres_image,
    get_lowres_image,
    library_id,
    spot_diameter_px,
)

__all__ = ["image_layer", "spots_layer", "section_layers", "image_pyramid", "spot_yx", "SPOTS_SUFFIX"]

SPOTS_SUFFIX = " spots"
IMAGE_SUFFIX = " H&E"


def image_pyramid(image: np.ndarray, min_side: int = 1024) -> list[np.ndarray]:
    """Levels of a 2x pyramid (full resolution first) down to ``min_side`` pixels."""
    from PIL import Image

    levels = [image]
    cur = image
    while max(cur.shape[:2]) > min_side * 2:
        h, w = cur.shape[:2]
        cur = np.asarray(Image.fromarray(cur).resize((w // 2, h // 2), Image.Resampling.BOX))
        levels.append(cur)
    return levels


def spot_yx(adata) -> np.ndarray:
    """Spot centres as napari (y, x) coordinates in full-resolution pixels."""
    xy = np.asarray(adata.obsm[SPATIAL_KEY], dtype=float)[:, :2]
    return xy[:, ::-1].copy()


def image_layer(adata, *, library: str | None = None, multiscale: bool | None = None, name: str | None = None):
    """The H&E of a section: a multiscale pyramid of the full-res image when it is large and
    reachable, else the stored low-res image scaled up to full-res pixel space.

    Returns ``None`` when the section has no image.
    """
    lib = library or library_id(adata)
    name = name or f"{lib}{IMAGE_SUFFIX}"
    meta = {"section": lib}
    full = get_fullres_image(adata, lib)
    if full is not None:
        big = max(full.shape[:2]) > 4096
        if multiscale or (multiscale is None and big):
            return image_pyramid(full), {"name": name, "rgb": True, "multiscale": True, "metadata": meta}, "image"
        return full, {"name": name, "rgb": True, "metadata": meta}, "image"
    low = get_lowres_image(adata, lib)
    if low is None:
        return None
    img, s = low
    return img, {"name": name, "rgb": True, "scale": (1 / s, 1 / s), "metadata": meta}, "image"


def _features(adata) -> pd.DataFrame:
    obs = adata.obs
    X = adata.X
    total = np.asarray(X.sum(axis=1)).ravel() if X is not None else np.zeros(adata.n_obs)
    feats = pd.DataFrame(
        {
            "spot_id": np.asarray(adata.obs_names, dtype=object),
            "section": obs[SECTION_KEY].astype(str).to_numpy() if SECTION_KEY in obs else "",
            "array_row": obs["array_row"].to_numpy() if "array_row" in obs else 0,
            "array_col": obs["array_col"].to_numpy() if "array_col" in obs else 0,
            "total_counts": total.astype(float),
        }
    )
    for col in ("cell_type", "selected", "round", "picked_by"):
        if col in obs:
            feats[col] = obs[col].to_numpy()
    return feats


def spots_layer(
    adata,
    *,
    library: str | None = None,
    name: str | None = None,
    color_by: str | None = None,
    extra_features: dict | None = None,
):
    """The spot grid as a Points layer sized by the real spot diameter, with per-spot
    ``features`` (shown on hover). ``color_by`` names a feature column (an ``obs`` column or a
    key of ``extra_features``) to colour faces by."""
    lib = library or library_id(adata)
    feats = _features(adata)
    if color_by is not None and color_by not in feats and color_by in adata.obs:
        feats[color_by] = adata.obs[color_by].to_numpy()
    for key, values in (extra_features or {}).items():
        feats[key] = np.asarray(values)
    kwargs = {
        "name": name or f"{lib}{SPOTS_SUFFIX}",
        "size": spot_diameter_px(adata, lib),
        "features": feats,
        "face_color": "transparent",
        "border_color": "#ffffff",
        "border_width": 0.12,
        "border_width_is_relative": True,
        "opacity": 0.9,
        # the section travels with its layer, as napari-spatialdata does, so widgets find it
        "metadata": {"section": lib, "adata": adata},
    }
    if color_by is not None:
        kwargs["face_color"] = color_by
        if pd.api.types.is_numeric_dtype(feats[color_by]):
            kwargs["face_colormap"] = "viridis"
    return spot_yx(adata), kwargs, "points"


def section_layers(adata, *, library: str | None = None):
    """Image (if any) + spots for one section, ready for napari's reader/sample-data protocol."""
    out = []
    img = image_layer(adata, library=library)
    if img is not None:
        out.append(img)
    out.append(spots_layer(adata, library=library))
    return out
