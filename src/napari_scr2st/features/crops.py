"""Image crops centred on spots, streamed in batches from the full-resolution image.

Geometry
--------
``obsm["spatial"]`` holds spot centres ``(x, y)`` in full-resolution pixels, where pixel
``(row, col)`` has its centre at coordinate ``(x=col, y=row)`` (the scanpy/squidpy convention).
A crop of ``crop_px`` pixels around a centre ``(x, y)`` covers rows
``round(y) - crop_px // 2 ... round(y) - crop_px // 2 + crop_px - 1`` (and the same for columns),
so the spot's own pixel is ``crop[crop_px // 2, crop_px // 2]``: the exact centre for odd sizes,
the pixel just below/right of the geometric centre for even sizes. ``round`` is half-up
(``floor(v + 0.5)``).

Default size
------------
:data:`DEFAULT_CROP_FACTOR` = 2 spot diameters. The spot itself is in the middle and the
surrounding tissue is context. This follows the HEST-1k convention (224 px at 0.5 um/px, which
is 112 um around a 55 um Visium spot). For Visium (55 um spots, 100 um apart) and legacy ST
(100 um spots, 200 um apart), this size is about the centre-to-centre distance, so crops of
neighbouring spots touch but hardly overlap. Pass ``crop_px`` (pixels) or ``crop_um``
(micrometres) to choose another size.

Micrometres to pixels
---------------------
``um_per_px`` is ``uns["spatial"][lib]["scalefactors"]["microns_per_pixel"]`` when present.
Otherwise it is ``spot_diameter_um / spot_diameter_fullres``. Unless passed, the physical spot
diameter comes from ``metadata["spot_diameter_um"]``, then from ``metadata["platform"]``
(Visium 55 um, legacy ST / her2st 100 um), and last from the lattice: hexagonal (six equidistant
neighbours, Visium-like) means 55 um, square (four, legacy ST) means 100 um.

Borders
-------
Crops that reach past the image edge are padded with a constant near-white value (default 255 in
each channel), the colour of bare glass in a bright-field H&E scan. Mirroring would invent
tissue that is not there. ``pad_mode="reflect"`` is available when mirroring is preferred.

Speed
-----
A batch is cut without Python loops: crops fully inside the image are taken from a strided
read-only view of all windows (one fancy-indexing copy of whole crops), and border crops from a
gather with broadcast row/column index arrays. Resizing to ``out_size`` is done per batch with
Pillow, one call per crop: bilinear with antialiasing when shrinking, bicubic when enlarging.
Only one batch of crops is in memory at a time.

Whole-slide images
------------------
When the section's full-resolution image is a whole-slide file (a lazy image, see
:func:`~napari_scr2st.data.model.get_fullres_slide`), crops are read region by region with
:func:`extract_crops_from_slide`: each crop decodes only the tiles it touches, with the same
geometry, padding and values as :func:`extract_crops` on the decoded image.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np

from ..data.model import (
    SECTION_KEY,
    SPATIAL_KEY,
    SectionError,
    get_fullres_image,
    get_fullres_slide,
    library_id,
    spot_diameter_px,
)

__all__ = [
    "DEFAULT_CROP_FACTOR",
    "DEFAULT_PAD_VALUE",
    "SPOT_DIAMETER_UM",
    "round_half_up",
    "um_per_px",
    "infer_spot_diameter_um",
    "resolve_crop_px",
    "extract_crops",
    "extract_crops_from_slide",
    "resize_batch",
    "iter_crops",
    "section_groups",
]

#: default crop edge, in spot diameters
DEFAULT_CROP_FACTOR = 2.0
#: default border fill (per channel): white, like glass in a bright-field scan
DEFAULT_PAD_VALUE = 255
#: physical spot diameters (micrometres) per platform
SPOT_DIAMETER_UM = {"visium": 55.0, "legacy_st": 100.0, "her2st": 100.0, "st": 100.0}

PadMode = Literal["constant", "reflect"]


def round_half_up(v: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, halves up (``floor(v + 0.5)``), as ``int64``."""
    return np.floor(np.asarray(v, dtype=np.float64) + 0.5).astype(np.int64)


# --------------------------------------------------------------------------------------------
# physical size
# --------------------------------------------------------------------------------------------
def _lattice_is_hexagonal(xy: np.ndarray) -> bool | None:
    """True for a hexagonal spot lattice, False for a square one, None when undecidable."""
    xy = np.asarray(xy, dtype=np.float64)[:, :2]
    if len(xy) < 10:
        return None
    from scipy.spatial import cKDTree

    tree = cKDTree(xy)
    k = min(8, len(xy) - 1)
    d, _ = tree.query(xy, k=k + 1)
    d = d[:, 1:]
    nn = np.median(d[:, 0])
    if not np.isfinite(nn) or nn <= 0:
        return None
    # neighbours at about the nearest distance: 6 on a hexagonal lattice, 4 on a square one
    counts = (d <= nn * 1.15).sum(axis=1)
    return bool(np.median(counts) >= 5)


def infer_spot_diameter_um(adata, library: str | None = None) -> float:
    """The physical spot diameter in micrometres (see the module docstring for the order)."""
    lib = library or library_id(adata)
    entry = adata.uns[SPATIAL_KEY][lib]
    meta = entry.get("metadata", {}) or {}
    if meta.get("spot_diameter_um") not in (None, ""):
        return float(meta["spot_diameter_um"])
    platform = str(meta.get("platform", "")).lower()
    if platform in SPOT_DIAMETER_UM:
        return SPOT_DIAMETER_UM[platform]
    xy = np.asarray(adata.obsm[SPATIAL_KEY])
    if SECTION_KEY in adata.obs and len(adata.uns[SPATIAL_KEY]) > 1:
        xy = xy[(adata.obs[SECTION_KEY].astype(str) == lib).to_numpy()]
    hexagonal = _lattice_is_hexagonal(xy)
    return (
        SPOT_DIAMETER_UM["visium"] if hexagonal in (True, None) else SPOT_DIAMETER_UM["legacy_st"]
    )


def um_per_px(adata, library: str | None = None, *, spot_diameter_um: float | None = None) -> float:
    """Micrometres per full-resolution pixel.

    ``scalefactors["microns_per_pixel"]`` when present. Otherwise the physical spot diameter
    (``spot_diameter_um``, or :func:`infer_spot_diameter_um`) divided by
    ``spot_diameter_fullres``.
    """
    lib = library or library_id(adata)
    sf = adata.uns[SPATIAL_KEY][lib].get("scalefactors", {})
    mpp = sf.get("microns_per_pixel")
    if mpp is not None and float(mpp) > 0:
        return float(mpp)
    d_um = (
        float(spot_diameter_um)
        if spot_diameter_um is not None
        else infer_spot_diameter_um(adata, lib)
    )
    d_px = spot_diameter_px(adata, lib)
    if not d_px > 0:
        raise SectionError(f"section {lib!r}: spot_diameter_fullres must be positive, got {d_px}")
    return d_um / d_px


def resolve_crop_px(
    adata,
    crop_px: int | None = None,
    crop_um: float | None = None,
    *,
    library: str | None = None,
    spot_diameter_um: float | None = None,
) -> int:
    """The crop edge in full-resolution pixels.

    ``crop_px`` if given, else ``crop_um`` converted with :func:`um_per_px`, else
    :data:`DEFAULT_CROP_FACTOR` spot diameters. The result is at least 1.
    """
    if crop_px is not None and crop_um is not None:
        raise ValueError("give crop_px or crop_um, not both")
    if crop_px is not None:
        c = int(round(float(crop_px)))
        if c < 1:
            raise ValueError(f"crop_px must be >= 1, got {crop_px}")
        return c
    lib = library or library_id(adata)
    if crop_um is not None:
        if not float(crop_um) > 0:
            raise ValueError(f"crop_um must be positive, got {crop_um}")
        return max(
            1, int(round(float(crop_um) / um_per_px(adata, lib, spot_diameter_um=spot_diameter_um)))
        )
    return max(1, int(round(DEFAULT_CROP_FACTOR * spot_diameter_px(adata, lib))))


# --------------------------------------------------------------------------------------------
# cutting and resizing
# --------------------------------------------------------------------------------------------
def _reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Mirror indices into ``[0, n)`` without repeating the edge pixel (NumPy's ``reflect``)."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    i = np.abs(idx) % period
    return np.where(i >= n, period - i, i)


def extract_crops(
    image: np.ndarray,
    centers_xy: np.ndarray,
    crop_px: int,
    *,
    pad_mode: PadMode = "constant",
    pad_value: int | Sequence[int] = DEFAULT_PAD_VALUE,
) -> np.ndarray:
    """Cut square crops of ``crop_px`` pixels centred on ``centers_xy`` (``(B, 2)``, x then y).

    Returns ``uint8`` ``(B, crop_px, crop_px, C)`` (``C`` = the image's channels). The whole
    batch is one gather. Pixels outside the image are ``pad_value`` (``pad_mode="constant"``)
    or mirrored (``"reflect"``). Crops fully inside the image are copied through a strided
    window view, border crops through an index gather; neither loops in Python.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    crop_px = int(crop_px)
    if crop_px < 1:
        raise ValueError(f"crop_px must be >= 1, got {crop_px}")
    if pad_mode not in ("constant", "reflect"):
        raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
    h, w, c = image.shape
    xy = np.asarray(centers_xy, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(xy).all():
        raise ValueError("spot centres must be finite")
    y0 = round_half_up(xy[:, 1]) - crop_px // 2
    x0 = round_half_up(xy[:, 0]) - crop_px // 2
    out = np.empty((len(xy), crop_px, crop_px, c), dtype=image.dtype)
    inside = (y0 >= 0) & (x0 >= 0) & (y0 + crop_px <= h) & (x0 + crop_px <= w)
    if inside.any():
        # a read-only view of every crop_px x crop_px window: (H-c+1, W-c+1, c, c, C); indexing
        # it with the corners copies whole crops (contiguous rows), much faster than a pixel gather
        s0, s1, s2 = image.strides
        windows = np.lib.stride_tricks.as_strided(
            image,
            shape=(h - crop_px + 1, w - crop_px + 1, crop_px, crop_px, c),
            strides=(s0, s1, s0, s1, s2),
            writeable=False,
        )
        out[inside] = windows[y0[inside], x0[inside]]
    border = ~inside
    if border.any():
        off = np.arange(crop_px, dtype=np.int64)
        rows = y0[border, None] + off  # (b, crop)
        cols = x0[border, None] + off
        if pad_mode == "reflect":
            out[border] = image[
                _reflect_index(rows, h)[:, :, None], _reflect_index(cols, w)[:, None, :]
            ]
        else:
            part = image[np.clip(rows, 0, h - 1)[:, :, None], np.clip(cols, 0, w - 1)[:, None, :]]
            mask = ((rows < 0) | (rows >= h))[:, :, None] | ((cols < 0) | (cols >= w))[:, None, :]
            part[mask] = np.broadcast_to(np.asarray(pad_value, dtype=image.dtype), (c,))
            out[border] = part
    return out


def extract_crops_from_slide(
    slide,
    centers_xy: np.ndarray,
    crop_px: int,
    *,
    pad_mode: PadMode = "constant",
    pad_value: int | Sequence[int] = DEFAULT_PAD_VALUE,
) -> np.ndarray:
    """:func:`extract_crops` for a :class:`~napari_scr2st.data.images.SlideImage`, read lazily.

    Same geometry, padding and result (``uint8`` ``(B, crop_px, crop_px, 3)``); each crop is
    one full-resolution region read (``slide.read_region``), so only the tiles under the crops
    are decoded. Border crops read the part inside the image and are padded or mirrored here.
    """
    crop_px = int(crop_px)
    if crop_px < 1:
        raise ValueError(f"crop_px must be >= 1, got {crop_px}")
    if pad_mode not in ("constant", "reflect"):
        raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {pad_mode!r}")
    h, w, c = slide.shape
    xy = np.asarray(centers_xy, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(xy).all():
        raise ValueError("spot centres must be finite")
    y0 = round_half_up(xy[:, 1]) - crop_px // 2
    x0 = round_half_up(xy[:, 0]) - crop_px // 2
    out = np.empty((len(xy), crop_px, crop_px, c), dtype=np.uint8)
    off = np.arange(crop_px, dtype=np.int64)
    fill = np.broadcast_to(np.asarray(pad_value, dtype=np.uint8), (c,))
    for i in range(len(xy)):
        if y0[i] >= 0 and x0[i] >= 0 and y0[i] + crop_px <= h and x0[i] + crop_px <= w:
            out[i] = slide.read_region(x0[i], y0[i], crop_px, crop_px)
            continue
        rows, cols = y0[i] + off, x0[i] + off
        if pad_mode == "reflect":
            ri, ci = _reflect_index(rows, h), _reflect_index(cols, w)
        else:
            ri, ci = np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)
        r0, c0 = int(ri.min()), int(ci.min())
        part = slide.read_region(c0, r0, int(ci.max()) - c0 + 1, int(ri.max()) - r0 + 1)
        crop = part[(ri - r0)[:, None], (ci - c0)[None, :]]
        if pad_mode == "constant":
            mask = ((rows < 0) | (rows >= h))[:, None] | ((cols < 0) | (cols >= w))[None, :]
            crop[mask] = fill
        out[i] = crop
    return out


def resize_batch(crops: np.ndarray, out_size: int | None) -> np.ndarray:
    """Resize a ``uint8`` batch ``(B, h, w, C)`` to ``(B, out_size, out_size, C)``.

    Pillow, one call per crop (cheap next to the encoder): bilinear with antialiasing when
    shrinking, bicubic when enlarging. ``out_size=None`` or an equal size returns the input.
    """
    crops = np.asarray(crops)
    if out_size is None or (crops.shape[1] == out_size and crops.shape[2] == out_size):
        return crops
    out_size = int(out_size)
    if out_size < 1:
        raise ValueError(f"out_size must be >= 1, got {out_size}")
    from PIL import Image

    resample = Image.Resampling.BILINEAR if crops.shape[1] >= out_size else Image.Resampling.BICUBIC
    squeeze = crops.shape[-1] == 1
    out = np.empty((crops.shape[0], out_size, out_size, crops.shape[-1]), dtype=np.uint8)
    for i, crop in enumerate(crops):
        im = Image.fromarray(crop[..., 0] if squeeze else crop)
        res = np.asarray(im.resize((out_size, out_size), resample))
        out[i] = res[..., None] if squeeze else res
    return out


def section_groups(adata) -> list[tuple[str, np.ndarray]]:
    """``[(library_id, row indices)]``: one entry per section of a single or concatenated AnnData."""
    libs = list(adata.uns.get(SPATIAL_KEY, {}).keys())
    if not libs:
        raise SectionError("uns['spatial'] is missing or empty: the AnnData has no image metadata")
    if len(libs) == 1:
        return [(libs[0], np.arange(adata.n_obs))]
    if SECTION_KEY not in adata.obs:
        raise SectionError(
            f"{len(libs)} libraries in uns['spatial'] but obs['{SECTION_KEY}'] is missing"
        )
    sec = adata.obs[SECTION_KEY].astype(str).to_numpy()
    missing = sorted(set(sec) - set(libs))
    if missing:
        raise SectionError(
            f"sections {missing} of obs['{SECTION_KEY}'] have no entry in uns['spatial']"
        )
    return [(lib, np.flatnonzero(sec == lib)) for lib in libs if (sec == lib).any()]


def iter_crops(
    adata,
    crop_px: int | None = None,
    batch_size: int = 64,
    out_size: int | None = 224,
    *,
    crop_um: float | None = None,
    library: str | None = None,
    indices: np.ndarray | None = None,
    spot_diameter_um: float | None = None,
    pad_mode: PadMode = "constant",
    pad_value: int | Sequence[int] = DEFAULT_PAD_VALUE,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(indices, crops)`` batches for the spots of one section.

    ``indices`` are row positions in ``adata`` (``int64``, at most ``batch_size``); ``crops`` is
    ``uint8`` ``(B, out_size, out_size, 3)`` (``out_size=None`` keeps ``crop_px``). The crop size
    is resolved by :func:`resolve_crop_px`. ``library`` selects the section of a concatenated
    AnnData; its spots are all those with ``obs["section"] == library`` unless ``indices`` is
    given. Only one batch is held in memory; the full-resolution image is read lazily once,
    or, for a whole-slide image, region by region (:func:`extract_crops_from_slide`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    groups = dict(section_groups(adata))
    if library is None:
        if len(groups) != 1:
            raise SectionError(
                f"{len(groups)} sections in this AnnData: pass library= (one of {list(groups)})"
            )
        library = next(iter(groups))
    if library not in groups:
        raise SectionError(f"no spots of section {library!r} in this AnnData")
    idx = groups[library] if indices is None else np.asarray(indices, dtype=np.int64).ravel()
    size = resolve_crop_px(
        adata, crop_px, crop_um, library=library, spot_diameter_um=spot_diameter_um
    )
    image = get_fullres_image(adata, library)
    if image is None:
        raise SectionError(
            f"section {library!r} has no full-resolution image (no in-memory 'hires' at scale 1 and no "
            "metadata['source_image_path']): vision features need the H&E image"
        )
    xy = np.asarray(adata.obsm[SPATIAL_KEY], dtype=np.float64)[:, :2]
    slide = None if isinstance(image, np.ndarray) else get_fullres_slide(adata, library)
    for start in range(0, len(idx), batch_size):
        b = idx[start : start + batch_size]
        if slide is None:
            crops = extract_crops(image, xy[b], size, pad_mode=pad_mode, pad_value=pad_value)
        else:
            crops = extract_crops_from_slide(
                slide, xy[b], size, pad_mode=pad_mode, pad_value=pad_value
            )
        if crops.shape[-1] == 1:
            crops = np.repeat(crops, 3, axis=-1)
        elif crops.shape[-1] == 4:
            crops = crops[..., :3]
        yield b, resize_batch(crops, out_size)
