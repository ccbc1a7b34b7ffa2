"""Small histology images for the slide/image reader tests, written with the field's writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tissue_image(h: int, w: int, *, seed: int = 0, box=(0.25, 0.2, 0.75, 0.6)) -> np.ndarray:
    """RGB uint8: near-white glass with an H&E-coloured, textured elliptical 'tissue' inside
    ``box`` (fractions x0, y0, x1, y1 of the width/height)."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (238, 234, 240)
    yy, xx = np.mgrid[0:h, 0:w]
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2 * w, (y0 + y1) / 2 * h, (x1 - x0) / 2 * w, (y1 - y0) / 2 * h
    inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    texture = rng.integers(-40, 40, size=(h, w, 1))
    base = np.array([150, 80, 160])[None, None, :] + texture
    img[inside] = np.clip(base, 0, 255).astype(np.uint8)[inside]
    return img


def tissue_mask(h: int, w: int, *, box=(0.25, 0.2, 0.75, 0.6)) -> np.ndarray:
    """The boolean ellipse :func:`tissue_image` paints."""
    yy, xx = np.mgrid[0:h, 0:w]
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2 * w, (y0 + y1) / 2 * h, (x1 - x0) / 2 * w, (y1 - y0) / 2 * h
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def write_ome_pyramid(
    path: Path, image: np.ndarray, *, um_per_px: float = 0.5, n_sub: int = 2, tile: int = 256
) -> list[np.ndarray]:
    """A tiled pyramidal OME-TIFF (zlib) with ``n_sub`` 2x sub-resolutions and PhysicalSizeX/Y.

    Returns the levels written (full resolution first)."""
    import tifffile

    levels = [image]
    for _ in range(n_sub):
        levels.append(levels[-1][::2, ::2])
    opts = {"tile": (tile, tile), "photometric": "rgb", "compression": "zlib"}
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(
            image,
            subifds=n_sub,
            metadata={
                "axes": "YXS",
                "PhysicalSizeX": um_per_px,
                "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": um_per_px,
                "PhysicalSizeYUnit": "µm",
            },
            **opts,
        )
        for lv in levels[1:]:
            tw.write(lv, subfiletype=1, **opts)
    return levels
