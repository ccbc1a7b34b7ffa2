"""A new slide before sequencing: an H&E image and a capture layout, no counts yet.

The job starts before any counts exist: a pathologist has an H&E slide and a capture area,
and must choose the spots to sequence. :func:`read_slide` turns such a slide into a section in
the package's data model (:mod:`napari_scr2st.data.model`) with no genes: ``X`` is an empty
``(n_spots, 0)`` CSR matrix, spots come either from a layout file written by the platform's
alignment step (:func:`read_layout`) or from the platform's spot lattice laid over the tissue
(:func:`detect_tissue` + :func:`spot_lattice`). Vision features (crops from the image) and the
sampling policy then work on it as on any section.

Spot lattices (:data:`PLATFORMS`)
---------------------------------
``visium``
    55 um spots, 100 um centre to centre, hexagonal: rows are ``pitch * sqrt(3) / 2`` apart
    and odd rows are offset by half a pitch. Positions follow Space Ranger's doubled-column
    convention: ``array_row`` counts rows from 0, ``array_col`` counts half pitches from 0
    (even on even rows, odd on odd rows); spot ids are ``"r{array_row}c{array_col}"``.
``legacy_st``
    100 um spots, 200 um apart, square. ``array_col``/``array_row`` count from 1 (the x/y of
    the legacy ST array) and spot ids are ``"{array_col}x{array_row}"``, the her2st convention.
``custom``
    ``spot_um``, ``pitch_um`` and ``hexagonal`` given by the caller; ids and positions as for
    Visium (hexagonal) or legacy ST (square).

The lattice is centred on the image (equal margins); spots whose centre falls on tissue are
kept. Pixel positions are full-resolution pixels, ``x`` = column, ``y`` = row.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.images import open_slide
from ..data.model import LOWRES_MAX_SIDE, SectionError, make_section, validate_section
from ._common import check_spots_inside, infer_array_coords, require_file

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = [
    "PLATFORMS",
    "SpotLattice",
    "platform_geometry",
    "detect_tissue",
    "spot_lattice",
    "read_layout",
    "read_slide",
]

PathLike = str | os.PathLike

#: platform -> (spot diameter um, centre-to-centre pitch um, hexagonal)
PLATFORMS: dict[str, tuple[float, float, bool]] = {
    "visium": (55.0, 100.0, True),
    "legacy_st": (100.0, 200.0, False),
}
#: tissue detection works on a thumbnail reduced to at most this many pixels a side
TISSUE_WORK_SIDE = 1024
#: the most lattice positions laid over one image (a guard against a wrong scale)
MAX_LATTICE_POSITIONS = 5_000_000

#: Space Ranger tissue positions columns, in file order
SPACERANGER_COLUMNS = (
    "barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres",
)  # fmt: skip


def platform_geometry(
    platform: str,
    spot_um: float | None = None,
    pitch_um: float | None = None,
    hexagonal: bool | None = None,
) -> tuple[float, float, bool]:
    """``(spot_um, pitch_um, hexagonal)`` of ``platform``; given values override the defaults.

    ``platform="custom"`` needs ``spot_um`` and ``pitch_um`` (``hexagonal`` defaults to False).
    """
    name = str(platform).lower()
    if name == "custom":
        if spot_um is None or pitch_um is None:
            raise SectionError(
                "platform 'custom' needs spot_um (spot diameter) and pitch_um (centre-to-centre "
                "distance), in micrometres"
            )
        base = (float(spot_um), float(pitch_um), bool(hexagonal))
    elif name in PLATFORMS:
        base = PLATFORMS[name]
    else:
        raise SectionError(
            f"unknown platform {platform!r}; expected one of {sorted(PLATFORMS)} or 'custom'"
        )
    d = float(spot_um) if spot_um is not None else base[0]
    p = float(pitch_um) if pitch_um is not None else base[1]
    hexa = bool(hexagonal) if hexagonal is not None else base[2]
    if not (d > 0 and p > 0):
        raise SectionError(f"spot_um and pitch_um must be positive, got {d} and {p}")
    return d, p, hexa


# --------------------------------------------------------------------------------------------
# tissue
# --------------------------------------------------------------------------------------------
def detect_tissue(
    thumbnail: np.ndarray,
    *,
    method: str = "grey",
    min_object_frac: float = 0.001,
    max_hole_frac: float = 0.01,
    smooth_px: float = 2.0,
) -> np.ndarray:
    """Boolean tissue mask of an RGB ``uint8`` thumbnail (same height and width).

    The thumbnail is first reduced to at most :data:`TISSUE_WORK_SIDE` pixels a side. A
    tissue score (``method="grey"``: darkness, ``1 - grey``; ``"saturation"``: HSV
    saturation) is smoothed (Gaussian, ``smooth_px`` working pixels) and thresholded with
    Otsu's method; the mask is then closed and opened with a disk of about 0.5% of the longer
    side, objects smaller than ``min_object_frac`` of the image are removed, and holes smaller
    than ``max_hole_frac`` are filled; it is returned at the thumbnail's size (nearest
    neighbour). Bright-field H&E on glass: tissue is darker and more saturated than the
    background.
    """
    from PIL import Image
    from scipy import ndimage
    from skimage import color, filters, morphology

    img = np.asarray(thumbnail)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"thumbnail must be RGB (h, w, 3), got shape {img.shape}")
    h, w = img.shape[:2]
    rgb = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
    f = min(1.0, TISSUE_WORK_SIDE / max(h, w))
    if f < 1.0:
        size = (max(1, round(w * f)), max(1, round(h * f)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))
    if method == "grey":
        score = 1.0 - color.rgb2gray(rgb)
    elif method == "saturation":
        score = color.rgb2hsv(rgb)[..., 1]
    else:
        raise ValueError(f"method must be 'grey' or 'saturation', got {method!r}")
    if smooth_px > 0:
        score = filters.gaussian(score, sigma=smooth_px)
    if float(score.max() - score.min()) < 1e-6:
        return np.zeros((h, w), dtype=bool)
    mask = score > filters.threshold_otsu(score)
    r = max(1, round(0.005 * max(mask.shape)))
    disk = morphology.disk(r)
    padded = np.pad(mask, 2 * r, mode="edge")  # tissue touching the border is not eroded
    mask = ndimage.binary_opening(ndimage.binary_closing(padded, disk), disk)[2 * r : -2 * r, 2 * r : -2 * r]
    area = mask.size
    mask = morphology.remove_small_objects(mask, max_size=max(1, int(min_object_frac * area)))
    mask = morphology.remove_small_holes(mask, max_size=max(1, int(max_hole_frac * area)))
    if mask.shape != (h, w):
        mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.Resampling.NEAREST))
    return mask


# --------------------------------------------------------------------------------------------
# lattice
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpotLattice:
    """Spots laid over an image.

    ``spots``: DataFrame indexed by spot id with ``array_row``, ``array_col`` (int) and
    ``pixel_x``, ``pixel_y`` (full-resolution pixel centres); ``spot_diameter_px`` and
    ``pitch_px`` in full-resolution pixels; the physical geometry it was built from.
    """

    spots: pd.DataFrame
    spot_diameter_px: float
    pitch_px: float
    hexagonal: bool
    spot_um: float
    pitch_um: float


def _lattice_ids(rows: np.ndarray, cols: np.ndarray, hexagonal: bool) -> list[str]:
    if hexagonal:
        return [f"r{r}c{c}" for r, c in zip(rows, cols, strict=True)]
    return [f"{c}x{r}" for r, c in zip(rows, cols, strict=True)]


def spot_lattice(
    image_shape: tuple[int, ...],
    um_per_px: float,
    *,
    platform: str = "visium",
    spot_um: float | None = None,
    pitch_um: float | None = None,
    hexagonal: bool | None = None,
    tissue: np.ndarray | None = None,
    tissue_scale: float | None = None,
    origin_xy: tuple[float, float] | None = None,
) -> SpotLattice:
    """Lay a platform's spot lattice over an image of ``image_shape`` (full-resolution pixels).

    The geometry comes from :func:`platform_geometry` (see the module docstring for positions
    and ids); the pitch in pixels is ``pitch_um / um_per_px``. ``origin_xy`` is the pixel
    centre of the first lattice position (array row 0/1, column 0/1); by default the lattice is
    centred on the image. With ``tissue`` (a boolean mask of the image at ``tissue_scale``
    mask pixels per full-resolution pixel; default: mask width / image width) only spots whose
    centre falls on tissue are kept.
    """
    d_um, p_um, hexa = platform_geometry(platform, spot_um, pitch_um, hexagonal)
    if not (um_per_px is not None and float(um_per_px) > 0):
        raise SectionError(f"um_per_px (micrometres per pixel) must be positive, got {um_per_px}")
    um_per_px = float(um_per_px)
    H, W = int(image_shape[0]), int(image_shape[1])
    pitch = p_um / um_per_px
    step_x = pitch / 2.0 if hexa else pitch  # one array_col step in pixels
    step_y = pitch * np.sqrt(3.0) / 2.0 if hexa else pitch
    n_cols = int(np.floor((W - 1) / step_x)) + 1 if W > 0 else 0
    n_rows = int(np.floor((H - 1) / step_y)) + 1 if H > 0 else 0
    if n_cols * n_rows / (2 if hexa else 1) > MAX_LATTICE_POSITIONS:
        raise SectionError(
            f"a {p_um:g} um lattice at {um_per_px:g} um/px has more than "
            f"{MAX_LATTICE_POSITIONS:,} positions on a {W} x {H} px image; is the scale right?"
        )
    if origin_xy is None:
        ox = (W - 1 - (n_cols - 1) * step_x) / 2.0
        oy = (H - 1 - (n_rows - 1) * step_y) / 2.0
    else:
        ox, oy = float(origin_xy[0]), float(origin_xy[1])
    r, c = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    r, c = r.ravel(), c.ravel()
    if hexa:
        keep = (r + c) % 2 == 0  # doubled columns: odd rows sit half a pitch to the right
        r, c = r[keep], c[keep]
    x = ox + c * step_x
    y = oy + r * step_y
    inside = (x >= 0) & (y >= 0) & (x <= W - 1) & (y <= H - 1)
    if tissue is not None:
        mask = np.asarray(tissue, dtype=bool)
        if mask.ndim != 2:
            raise ValueError(f"tissue must be a 2-D mask, got shape {mask.shape}")
        s = float(tissue_scale) if tissue_scale is not None else mask.shape[1] / max(W, 1)
        mi = np.clip(np.floor(y * s).astype(np.int64), 0, mask.shape[0] - 1)
        mj = np.clip(np.floor(x * s).astype(np.int64), 0, mask.shape[1] - 1)
        inside &= mask[mi, mj]
    r, c, x, y = r[inside], c[inside], x[inside], y[inside]
    if not hexa:
        r, c = r + 1, c + 1
    spots = pd.DataFrame(
        {"array_row": r.astype(int), "array_col": c.astype(int), "pixel_x": x, "pixel_y": y},
        index=pd.Index(_lattice_ids(r, c, hexa), name="spot_id"),
    )
    return SpotLattice(
        spots=spots,
        spot_diameter_px=d_um / um_per_px,
        pitch_px=pitch,
        hexagonal=hexa,
        spot_um=d_um,
        pitch_um=p_um,
    )


# --------------------------------------------------------------------------------------------
# layout files
# --------------------------------------------------------------------------------------------
_ID_COLUMNS = ("spot_id", "barcode")
_XY_COLUMNS = (("pixel_x", "pixel_y"), ("pxl_col_in_fullres", "pxl_row_in_fullres"))
_LEGACY_ID = re.compile(r"^-?\d+$")


def _first_line(p: Path) -> str:
    import gzip

    opener = gzip.open if p.name.lower().endswith(".gz") else open
    try:
        with opener(p, "rt", encoding="utf-8", errors="replace") as fh:
            return fh.readline()
    except (OSError, EOFError) as e:
        raise SectionError(f"cannot read layout file {p}: {e}") from e


def read_layout(path: PathLike) -> pd.DataFrame:
    """Read a capture layout (spot ids with pixel positions, no counts).

    Accepted: a Space Ranger ``tissue_positions.csv`` (with header) or
    ``tissue_positions_list.csv`` (no header; columns :data:`SPACERANGER_COLUMNS`), or a
    CSV/TSV with a ``spot_id`` or ``barcode`` column and ``pixel_x``/``pixel_y`` or
    ``pxl_col_in_fullres``/``pxl_row_in_fullres`` columns (optional ``array_row``,
    ``array_col``, ``in_tissue``). A legacy ST spot file (``x y pixel_x pixel_y [selected]``)
    is read too: ids ``"{x}x{y}"``, ``array_col = x``, ``array_row = y``, ``in_tissue =
    selected``.

    Returns a DataFrame indexed by spot id with float ``pixel_x``, ``pixel_y`` (full-resolution
    pixels), int ``array_row``, ``array_col`` (inferred from the positions when absent) and int
    ``in_tissue`` (1 when absent). Bad input raises :class:`SectionError` naming the file.
    """
    p = require_file(path, "layout file")
    line = _first_line(p)
    if not line.strip():
        raise SectionError(f"layout file {p} is empty")
    sep = "\t" if "\t" in line else ","
    first = [f.strip().strip('"') for f in line.rstrip("\r\n").split(sep)]
    headerless = len(first) == 6 and all(_is_number(v) for v in first[1:])
    try:
        if headerless:
            df = pd.read_csv(p, sep=sep, header=None, names=list(SPACERANGER_COLUMNS))
        else:
            df = pd.read_csv(p, sep=sep)
    except pd.errors.EmptyDataError as e:
        raise SectionError(f"layout file {p} is empty") from e
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError, EOFError) as e:
        raise SectionError(f"cannot parse layout file {p} as CSV/TSV: {e}") from e
    df.columns = [str(c).strip() for c in df.columns]
    if len(df) == 0:
        raise SectionError(f"layout file {p} has no spots (only a header line)")

    id_col = next((c for c in _ID_COLUMNS if c in df.columns), None)
    xy_cols = next((xy for xy in _XY_COLUMNS if all(c in df.columns for c in xy)), None)
    legacy = id_col is None and {"x", "y"} <= set(df.columns)
    if xy_cols is None or (id_col is None and not legacy):
        raise SectionError(
            f"layout file {p}: expected a spot id column ('spot_id' or 'barcode') and pixel "
            "position columns ('pixel_x'/'pixel_y' or 'pxl_col_in_fullres'/'pxl_row_in_fullres'), "
            f"or a Space Ranger tissue_positions file; found columns {list(df.columns)}"
        )
    out = pd.DataFrame(index=df.index)
    for name, col in zip(("pixel_x", "pixel_y"), xy_cols, strict=True):
        out[name] = _numeric(df[col], p, col)
    if legacy:
        ax, ay = _integer(df["x"], p, "x"), _integer(df["y"], p, "y")
        ids = [f"{a}x{b}" for a, b in zip(ax, ay, strict=True)]
        out["array_row"], out["array_col"] = ay, ax
        tissue_col = "selected" if "selected" in df.columns else None
    else:
        ids = df[id_col].astype(str).str.strip().tolist()
        if "array_row" in df.columns and "array_col" in df.columns:
            out["array_row"] = _integer(df["array_row"], p, "array_row")
            out["array_col"] = _integer(df["array_col"], p, "array_col")
        else:
            row, col = infer_array_coords(out[["pixel_x", "pixel_y"]].to_numpy())
            out["array_row"], out["array_col"] = row, col
        tissue_col = "in_tissue" if "in_tissue" in df.columns else None
    out["in_tissue"] = _integer(df[tissue_col], p, tissue_col) if tissue_col else 1
    out.index = pd.Index(ids, name="spot_id")
    if not out.index.is_unique:
        dup = out.index[out.index.duplicated()].unique()
        raise SectionError(f"layout file {p}: {len(dup)} spot id(s) occur more than once, e.g. {dup[0]!r}")
    return out[["array_row", "array_col", "pixel_x", "pixel_y", "in_tissue"]]


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _numeric(s: pd.Series, p: Path, col: str) -> np.ndarray:
    v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(v)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SectionError(
            f"layout file {p}: {int(bad.sum())} non-numeric or missing value(s) in column {col!r}, "
            f"first {s.iloc[i]!r} on data row {i + 1}"
        )
    return v


def _integer(s: pd.Series, p: Path, col: str) -> np.ndarray:
    v = _numeric(s, p, col)
    if not np.all(np.mod(v, 1) == 0):
        i = int(np.flatnonzero(np.mod(v, 1) != 0)[0])
        raise SectionError(f"layout file {p}: column {col!r} must hold integers, got {v[i]!r} on data row {i + 1}")
    return v.astype(int)


# --------------------------------------------------------------------------------------------
# the slide as a section
# --------------------------------------------------------------------------------------------
def _default_section_name(p: Path) -> str:
    name = p.name
    low = name.lower()
    for suffix in (".ome.tiff", ".ome.tif"):
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return p.stem


def read_slide(
    image_path: PathLike,
    *,
    platform: str = "visium",
    um_per_px: float | None = None,
    layout: PathLike | None = None,
    spot_um: float | None = None,
    pitch_um: float | None = None,
    hexagonal: bool | None = None,
    section: str | None = None,
    patient: str = "",
    tissue_method: str = "grey",
) -> AnnData:
    """Read a slide before sequencing (an H&E image, no counts) as a section with no genes.

    Parameters
    ----------
    image_path
        The H&E image (any format of :func:`~napari_scr2st.data.images.open_slide`); it is read
        lazily and stays the section's full-resolution image (``source_image_path``).
    platform, spot_um, pitch_um, hexagonal
        The capture geometry (:func:`platform_geometry`): ``"visium"``, ``"legacy_st"`` or
        ``"custom"`` (then ``spot_um`` and ``pitch_um`` are required).
    um_per_px
        Micrometres per full-resolution pixel; default: from the image's metadata. Without
        either, :class:`SectionError` asks for it.
    layout
        A layout file (:func:`read_layout`); its spots with ``in_tissue == 1`` are used.
        Without it, the platform lattice is laid over the tissue found by
        :func:`detect_tissue` (``tissue_method``) on the thumbnail.
    section, patient
        Section name (default: the image file name without suffix) and patient id.

    Returns an AnnData in the package's data model: ``X`` empty CSR ``(n_spots, 0)``;
    ``obs`` ``section``, ``patient``, ``array_row``, ``array_col``, ``in_tissue``;
    ``obsm["spatial"]`` full-resolution pixel centres; ``uns["spatial"][section]`` with the
    thumbnail as ``images["lowres"]``, ``scalefactors`` (``spot_diameter_fullres``,
    ``tissue_lowres_scalef``, ``fiducial_diameter_fullres``, ``microns_per_pixel``) and
    ``metadata`` (``source_image_path``, ``fullres_shape``, ``platform``, ``um_per_px``,
    ``um_per_px_source``, ``microns_per_pixel`` (the exports' micrometres), ``spot_diameter_um``, ``pitch_um``, ``hexagonal``, ``layout_path``,
    ``image_reader="slide"``).
    """
    img_p = require_file(image_path, "image file")
    d_um, p_um, hexa = platform_geometry(platform, spot_um, pitch_um, hexagonal)
    slide = open_slide(img_p)
    if um_per_px is not None:
        scale, scale_source = float(um_per_px), "argument"
        if not scale > 0:
            raise SectionError(f"um_per_px must be positive, got {um_per_px}")
    elif slide.um_per_px is not None:
        scale, scale_source = float(slide.um_per_px), "file metadata"
    else:
        raise SectionError(
            f"image {img_p} does not state its pixel size: pass the scale as um_per_px "
            "(micrometres per full-resolution pixel, e.g. 0.5 for a 20x scan)"
        )
    H, W = slide.shape[:2]
    thumb, tscale = slide.thumbnail(LOWRES_MAX_SIDE)
    name = section or _default_section_name(img_p)

    if layout is not None:
        lay = read_layout(layout)
        if lay["in_tissue"].eq(1).any():
            lay = lay[lay["in_tissue"] == 1]
        else:
            raise SectionError(f"layout file {layout}: no spot has in_tissue == 1")
        xy = lay[["pixel_x", "pixel_y"]].to_numpy(dtype=np.float64)
        check_spots_inside(xy, H, W, spot_ids=lay.index, spots_file=layout, image_file=img_p)
        spots = lay
    else:
        tissue = detect_tissue(thumb, method=tissue_method)
        lattice = spot_lattice(
            (H, W), scale, platform=platform, spot_um=d_um, pitch_um=p_um, hexagonal=hexa,
            tissue=tissue, tissue_scale=tscale,
        )  # fmt: skip
        spots = lattice.spots
        if len(spots) == 0:
            raise SectionError(
                f"image {img_p}: no tissue found under the {platform} lattice "
                f"({tissue.mean():.1%} of the thumbnail detected as tissue); pass a layout file"
            )
        xy = spots[["pixel_x", "pixel_y"]].to_numpy(dtype=np.float64)

    n = len(spots)
    adata = make_section(
        sp.csr_matrix((n, 0), dtype=np.float32),
        [],
        spots.index,
        xy,
        section=name,
        patient=patient,
        array_row=spots["array_row"].to_numpy(),
        array_col=spots["array_col"].to_numpy(),
        image_path=img_p.resolve(),
        image_shape=tuple(slide.shape),
        spot_diameter_fullres=d_um / scale,
    )
    adata.obs["in_tissue"] = np.ones(n, dtype=int)
    entry = adata.uns["spatial"][name]
    entry["images"]["lowres"] = np.array(thumb)
    entry["scalefactors"]["tissue_lowres_scalef"] = float(tscale)
    entry["scalefactors"]["microns_per_pixel"] = scale
    entry["metadata"].update(
        {
            "platform": str(platform).lower(),
            "um_per_px": scale,
            "um_per_px_source": scale_source,
            "microns_per_pixel": scale,  # exports: micrometres of the full-res pixels (frame_scale 1)
            "spot_diameter_um": d_um,
            "pitch_um": p_um,
            "hexagonal": hexa,
            "layout_path": str(Path(layout).resolve()) if layout is not None else "",
            "image_reader": "slide",
        }
    )
    validate_section(adata, name=str(img_p))
    return adata
