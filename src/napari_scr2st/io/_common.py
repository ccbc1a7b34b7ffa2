"""Helpers shared by the readers: path checks, lattice geometry, image checks.

Everything here raises :class:`~napari_scr2st.data.model.SectionError` with a message that
names the offending file, so the napari reader glue and the CLI can show it as is.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..data.images import SlideImage, check_not_blank
from ..data.model import SectionError, as_rgb_uint8

__all__ = [
    "require_file",
    "estimate_pixel_pitch",
    "infer_array_coords",
    "check_spots_inside",
    "image_size",
    "as_rgb_uint8",
    "image_to_rgb_uint8",
    "warn_if_blank",
    "first_nonfinite",
    "check_finite_counts",
]

PathLike = str | os.PathLike


def require_file(path: PathLike, what: str) -> Path:
    """Return ``path`` as a :class:`Path`; raise a :class:`SectionError` if it is not a file."""
    p = Path(path)
    if not p.exists():
        raise SectionError(f"{what} not found: {p}")
    if not p.is_file():
        raise SectionError(f"{what} is not a file: {p}")
    return p


def estimate_pixel_pitch(
    array_xy: np.ndarray, pixel_xy: np.ndarray, *, where: str = "spots"
) -> float:
    """Pixels per array step, from lattice neighbours.

    For every spot, its nearest neighbour in array (lattice) coordinates is found; the ratio of
    their distance in pixels to their distance in array units is one estimate of the pitch; the
    median over spots is returned (robust to a few misplaced spots).
    """
    from scipy.spatial import cKDTree

    a = np.asarray(array_xy, dtype=float)
    p = np.asarray(pixel_xy, dtype=float)
    if len(a) < 2:
        raise SectionError(
            f"{where}: cannot estimate the pixel pitch from {len(a)} spot(s); pass the spot diameter in pixels explicitly"
        )
    dist, idx = cKDTree(a).query(a, k=2)
    d_arr = dist[:, 1]
    d_px = np.linalg.norm(p - p[idx[:, 1]], axis=1)
    ok = d_arr > 0
    if not ok.any():
        raise SectionError(
            f"{where}: all spots share one array position; cannot estimate the pixel pitch"
        )
    pitch = float(np.median(d_px[ok] / d_arr[ok]))
    if not np.isfinite(pitch) or pitch <= 0:
        raise SectionError(
            f"{where}: spot pixel coordinates give no usable pixel pitch (got {pitch})"
        )
    return pitch


def _levels(values: np.ndarray) -> tuple[float, float]:
    """Origin and step of the (approximately) equally spaced levels of ``values``."""
    v = np.sort(np.asarray(values, dtype=float))
    gaps = np.diff(v)
    span = v[-1] - v[0] if len(v) else 0.0
    if span <= 0:
        return (float(v[0]) if len(v) else 0.0), 1.0
    # gaps within a level are small jitter; gaps between levels are at least ~1/4 of a step
    big = gaps[gaps > 0.02 * span]
    if len(big) == 0:
        return float(v[0]), float(span)
    step = float(np.median(big))
    # refine: steps larger than 1.5 * step are multiples (missing levels); keep single steps
    single = big[big < 1.5 * step]
    step = float(np.median(single)) if len(single) else step
    return float(v[0]), step


def infer_array_coords(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Approximate integer lattice positions ``(array_row, array_col)`` from pixel centres.

    Rows come from the equally spaced levels of y, columns from those of x (for a hexagonal
    Visium lattice this gives the usual even/odd column convention). Sections that are rotated
    relative to the image axes give only approximate indices; they are used for display and
    neighbourhoods, never for joins.
    """
    xy = np.asarray(xy, dtype=float)
    if len(xy) == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    x0, sx = _levels(xy[:, 0])
    y0, sy = _levels(xy[:, 1])
    col = np.rint((xy[:, 0] - x0) / sx).astype(int)
    row = np.rint((xy[:, 1] - y0) / sy).astype(int)
    return row, col


def check_spots_inside(
    xy: np.ndarray, height: int, width: int, *, spot_ids, spots_file, image_file
) -> None:
    """Raise if any spot centre lies outside an image of ``height x width`` pixels."""
    xy = np.asarray(xy, dtype=float)
    outside = (xy[:, 0] < 0) | (xy[:, 1] < 0) | (xy[:, 0] >= width) | (xy[:, 1] >= height)
    n = int(outside.sum())
    if n:
        i = int(np.flatnonzero(outside)[0])
        raise SectionError(
            f"{n} of {len(xy)} spot centres in {spots_file} lie outside the image {image_file} "
            f"({width} x {height} px, width x height); e.g. spot {list(spot_ids)[i]} at "
            f"x={xy[i, 0]:.1f}, y={xy[i, 1]:.1f}. Is it the image of this section, at full resolution?"
        )


def image_size(path: PathLike) -> tuple[int, int, int]:
    """``(height, width, channels)`` from an image header, without decoding the pixels."""
    from ..data.images import open_pillow_unguarded

    p = require_file(path, "image file")
    try:
        with open_pillow_unguarded(p) as im:  # header only; Pillow's global guard stays on
            w, h = im.size
            c = len(im.getbands())
    except Exception as e:  # PIL raises several types for broken files
        raise SectionError(f"cannot read image {p}: {e}") from e
    return h, w, 3 if c >= 3 else c




def image_to_rgb_uint8(image) -> np.ndarray:
    """An RGB ``uint8`` copy of an in-memory image stored by another tool (an h5ad's or a
    SpatialData store's image).

    8-bit samples, floats (in [0, 1] or 0..255) and integers within 0..255 are converted by
    :func:`~napari_scr2st.data.model.as_rgb_uint8`; wider integer samples (16-bit, 32-bit
    greyscale or RGB) are scaled by their range exactly as
    :func:`~napari_scr2st.data.images.open_slide` scales such a file, so they never turn white.
    """
    a = np.asarray(image)
    if a.dtype.kind in "iu" and a.dtype.itemsize > 1 and a.size and (a.min() < 0 or a.max() > 255):
        return np.array(SlideImage.from_array(a).level0)
    return as_rgb_uint8(a)


def warn_if_blank(image: np.ndarray, source) -> bool:
    """Warn (naming ``source``) when :func:`~napari_scr2st.data.images.check_not_blank` finds
    ``image`` blank; return True when it did."""
    try:
        check_not_blank(image, source)
    except SectionError as e:
        warnings.warn(str(e), stacklevel=3)
        return True
    return False


def first_nonfinite(X) -> tuple[int, int, int, float] | None:
    """``(count, row, column, value)`` of the infinite or NaN entries of a count matrix
    (dense or sparse); None when every entry is finite (integer matrices always are)."""
    import scipy.sparse as sp

    if sp.issparse(X):
        coo = X.tocoo()
        data, rows, cols = coo.data, coo.row, coo.col
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            return None
        data, rows, cols = arr.ravel(), None, None
    if data.size == 0 or data.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(data)
    if not bad.any():
        return None
    k = int(np.argmax(bad))
    if rows is None:
        r, c = divmod(k, np.asarray(X).shape[1])
    else:
        r, c = int(rows[k]), int(cols[k])
    return int(bad.sum()), int(r), int(c), float(data[k])


def nonfinite_message(bad: tuple[int, int, int, float], genes, spots, where: str, what: str = "X") -> str:
    """The one-line error for :func:`first_nonfinite`'s finding: file, matrix, gene and spot."""
    n, r, c, v = bad
    return (
        f"{where}: {what} holds {n} infinite or NaN values (first {v:g} in gene {str(genes[c])!r} "
        f"at spot {str(spots[r])!r}); raw counts must be finite"
    )


def check_finite_counts(X, genes, spots, where: str, what: str = "X") -> None:
    """Refuse infinite or NaN counts (a :class:`SectionError` naming the file, gene and spot);
    run it BEFORE an integer test (numpy calls inf non-integer, with a RuntimeWarning)."""
    bad = first_nonfinite(X)
    if bad is not None:
        raise SectionError(nonfinite_message(bad, genes, spots, where, what))
