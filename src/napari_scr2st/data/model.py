"""The section data model: one AnnData per ST section, scanpy/squidpy spatial conventions.

A *section* is an :class:`anndata.AnnData` with

- ``X``: raw integer counts, ``scipy.sparse.csr_matrix`` (spots x genes);
- ``obs``: ``section`` (str), ``patient`` (str, "" when unknown), ``array_row``, ``array_col``
  (integer lattice position); ``obs_names`` are spot ids, unique within the section;
- ``obsm["spatial"]``: spot centres in full-resolution image pixels, columns ``x, y``;
- ``uns["spatial"][library_id]`` (``library_id`` == the section name) with
  ``images``: ``{"lowres": uint8 array (H, W, 3)}`` (and optionally ``"hires"``),
  ``scalefactors``: ``spot_diameter_fullres``, ``tissue_lowres_scalef`` (and
  ``tissue_hires_scalef`` when ``hires`` exists), ``fiducial_diameter_fullres``,
  ``metadata``: ``{"source_image_path": str | None, "fullres_shape": [H, W, C], ...}``.

The full-resolution image is never stored twice: it is reached lazily with
:func:`get_fullres_image`, which reads ``metadata["source_image_path"]`` once per process (a
small LRU cache keyed by path and mtime) or, for in-memory sections such as the synthetic sample,
returns the ``hires`` image when its scale factor is 1. A source that is a whole-slide image
(tiled or pyramidal TIFF, SVS, NDPI, OME-TIFF; see
:func:`napari_scr2st.data.images.is_whole_slide`), or any source of a section whose
``metadata["image_reader"]`` is ``"slide"`` (sections made by
:func:`napari_scr2st.io.slide.read_slide`), is opened with
:func:`napari_scr2st.data.images.open_slide`; for a whole slide the image returned is then a lazy
dask array (slice it before ``np.asarray``), and :func:`get_fullres_slide` gives the
:class:`~napari_scr2st.data.images.SlideImage` itself (pyramid levels, region reads).

A *collection* is a ``dict[str, AnnData]`` keyed by section name; :func:`concat_sections`
joins one into a single AnnData (``obs["section"]`` tells the sections apart and
``uns["spatial"]`` keeps one entry per library).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import SectionError
from .images import LOWRES_MAX_SIDE

SPATIAL_KEY = "spatial"
VISION_KEY = "X_vision"
SECTION_KEY = "section"
PATIENT_KEY = "patient"

__all__ = [
    "SPATIAL_KEY",
    "VISION_KEY",
    "SECTION_KEY",
    "PATIENT_KEY",
    "SectionError",
    "make_section",
    "validate_section",
    "library_id",
    "spot_diameter_px",
    "fullres_coordinates",
    "library_frame",
    "get_fullres_image",
    "get_fullres_slide",
    "get_lowres_image",
    "concat_sections",
    "split_sections",
    "downscale_image",
    "summarize",
]


def downscale_image(image: np.ndarray, max_side: int = LOWRES_MAX_SIDE) -> tuple[np.ndarray, float]:
    """Downscale ``image`` so that its longer side is at most ``max_side``; return (image, scale)."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return np.ascontiguousarray(image), 1.0
    from PIL import Image

    out = Image.fromarray(np.asarray(image)).resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR
    )
    return np.asarray(out), scale


def make_section(
    counts: sp.spmatrix | np.ndarray,
    genes: list[str] | pd.Index,
    spot_ids: list[str] | pd.Index,
    spatial: np.ndarray,
    *,
    section: str,
    patient: str = "",
    array_row: np.ndarray | None = None,
    array_col: np.ndarray | None = None,
    image: np.ndarray | None = None,
    image_path: str | os.PathLike | None = None,
    image_shape: tuple[int, ...] | None = None,
    spot_diameter_fullres: float,
    lowres_max_side: int = LOWRES_MAX_SIDE,
    extra_obs: pd.DataFrame | None = None,
    keep_fullres_in_memory: bool = False,
):
    """Build a section AnnData in the package's convention (see module docstring).

    ``image`` is the full-resolution RGB image (if already decoded); only a downscaled copy is
    stored, unless ``keep_fullres_in_memory`` (then it is stored as ``hires`` with scale 1, used
    for in-memory sections without a file). ``image_path`` lets :func:`get_fullres_image` re-read
    the full image lazily.
    """
    import anndata as ad

    X = sp.csr_matrix(counts)
    if X.dtype.kind == "f" and X.nnz and np.all(np.mod(X.data, 1) == 0):
        X = X.astype(np.float32)
    spatial = np.asarray(spatial, dtype=np.float64)
    obs = pd.DataFrame(index=pd.Index([str(s) for s in spot_ids], name=None))
    obs[SECTION_KEY] = pd.Categorical([section] * len(obs))
    obs[PATIENT_KEY] = pd.Categorical([patient or ""] * len(obs))
    obs["array_row"] = np.asarray(array_row if array_row is not None else np.zeros(len(obs)), dtype=int)
    obs["array_col"] = np.asarray(array_col if array_col is not None else np.zeros(len(obs)), dtype=int)
    if extra_obs is not None:
        for c in extra_obs.columns:
            obs[c] = extra_obs[c].to_numpy()
    var = pd.DataFrame(index=pd.Index([str(g) for g in genes]))
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.obsm[SPATIAL_KEY] = spatial

    images: dict[str, np.ndarray] = {}
    scalefactors: dict[str, float] = {
        "spot_diameter_fullres": float(spot_diameter_fullres),
        "fiducial_diameter_fullres": float(spot_diameter_fullres) * 1.6,
    }
    if image is not None:
        image = as_rgb_uint8(image)
        image_shape = image.shape
        low, s = downscale_image(image, lowres_max_side)
        images["lowres"] = low
        scalefactors["tissue_lowres_scalef"] = float(s)
        if keep_fullres_in_memory:
            images["hires"] = image
            scalefactors["tissue_hires_scalef"] = 1.0
    adata.uns[SPATIAL_KEY] = {
        section: {
            "images": images,
            "scalefactors": scalefactors,
            "metadata": {
                "source_image_path": str(image_path) if image_path is not None else "",
                "fullres_shape": list(image_shape) if image_shape is not None else [],
            },
        }
    }
    return adata


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 copy of ``image`` (grey, RGBA, float in [0, 1] or 0..255 accepted)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.shape[-1] == 4:
        image = image[..., :3]
    if image.dtype != np.uint8:
        image = image.astype(np.float64)
        if image.size and np.nanmax(image) <= 1.0:
            image = image * 255.0
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def library_id(adata) -> str:
    """The library id of a single-section AnnData (its only key in ``uns["spatial"]``)."""
    libs = list(adata.uns.get(SPATIAL_KEY, {}).keys())
    if len(libs) != 1:
        raise SectionError(
            f"expected exactly one library in uns['spatial'], found {len(libs)}: {libs}; "
            "use split_sections() on a multi-section AnnData"
        )
    return libs[0]


def spot_diameter_px(adata, library: str | None = None) -> float:
    """Spot diameter in full-resolution pixels."""
    lib = library or library_id(adata)
    return float(adata.uns[SPATIAL_KEY][lib]["scalefactors"]["spot_diameter_fullres"])


def fullres_coordinates(adata) -> tuple[np.ndarray, np.ndarray]:
    """Spot centres in pixels of the ORIGINAL full-resolution image, and in micrometres.

    ``obsm["spatial"]`` is the section's working frame, the frame of the image that
    :func:`get_fullres_image` returns. Each library's ``uns["spatial"][lib]["metadata"]`` may
    record how it relates to the original image the platform's coordinates refer to:

    - ``frame_scale``: working pixels = original full-res pixels * ``frame_scale`` (absent: 1);
    - ``microns_per_pixel``: micrometres per original full-res pixel (absent: the library's
      ``scalefactors["microns_per_pixel"]`` when the frame is the original one, i.e. without
      ``frame_scale``, as squidpy/scanpy and Visium HD files record it; else unknown).

    Works on one section and on a concatenated collection (spots are matched to their library
    through ``obs["section"]``). Returns ``(xy_px, xy_um)``, both ``(n_spots, 2)`` float64
    arrays of ``x, y``; ``xy_um`` is NaN where the scale is unknown. Raises
    :class:`SectionError` naming the library when a recorded value is not a positive number.
    """
    xy = np.asarray(adata.obsm[SPATIAL_KEY], dtype=np.float64)[:, :2]
    libs = adata.uns.get(SPATIAL_KEY, {}) or {}
    if SECTION_KEY in adata.obs:
        sections = adata.obs[SECTION_KEY].astype(str).to_numpy()
    else:
        sections = np.full(adata.n_obs, library_id(adata) if len(libs) == 1 else "")
    names, inverse = np.unique(sections, return_inverse=True)
    scale = np.ones(len(names))
    mpp = np.full(len(names), np.nan)
    for i, name in enumerate(names):
        scale[i], mpp[i] = _frame(libs.get(name) or {}, name)
    px = xy / scale[inverse][:, None]
    return px, px * mpp[inverse][:, None]


def library_frame(adata, library: str | None = None) -> tuple[float, float]:
    """``(frame_scale, microns_per_pixel)`` of one library, as :func:`fullres_coordinates` uses
    them: working pixels = original full-res pixels * ``frame_scale``; micrometres per original
    full-res pixel (NaN: unknown)."""
    lib = library or library_id(adata)
    return _frame((adata.uns.get(SPATIAL_KEY, {}) or {}).get(lib) or {}, lib)


def _frame(entry: dict, name: str) -> tuple[float, float]:
    meta = dict(entry.get("metadata", {}) or {})
    sf = entry.get("scalefactors", {}) or {}
    if "microns_per_pixel" not in meta and "frame_scale" not in meta and "microns_per_pixel" in sf:
        meta["microns_per_pixel"] = sf["microns_per_pixel"]
    out = {"frame_scale": 1.0, "microns_per_pixel": float("nan")}
    for key in out:
        if key not in meta:
            continue
        try:
            v = float(meta[key])
        except (TypeError, ValueError):
            v = float("nan")
        if not (np.isfinite(v) and v > 0):
            raise SectionError(
                f"uns['spatial'][{name!r}]['metadata'][{key!r}] must be a positive number, "
                f"got {meta[key]!r}"
            )
        out[key] = v
    return out["frame_scale"], out["microns_per_pixel"]


@functools.lru_cache(maxsize=2)
def _read_image_cached(path: str, mtime: float) -> np.ndarray:  # noqa: ARG001 - mtime keys the cache
    from .images import open_pillow_unguarded

    with open_pillow_unguarded(path) as im:  # Pillow's global guard stays on
        arr = np.asarray(im.convert("RGB"))
    arr.setflags(write=False)
    return arr


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an RGB image once per process (cached by path and modification time)."""
    p = Path(path)
    if not p.is_file():
        raise SectionError(f"image file not found: {p}")
    try:
        return _read_image_cached(str(p.resolve()), p.stat().st_mtime)
    except SectionError:
        raise
    except Exception as e:  # PIL raises several types for broken files
        raise SectionError(f"cannot read image {p}: {e}") from e


def _fullres_source(entry: Mapping[str, Any]) -> tuple[str, Any] | None:
    """Where a library's full-resolution image comes from: ``("hires", array)``, ``("slide",
    path)`` (opened with :func:`napari_scr2st.data.images.open_slide`), ``("file", path)``
    (:func:`read_image`) or ``None``."""
    sf = entry.get("scalefactors", {})
    images = entry.get("images", {})
    if "hires" in images and float(sf.get("tissue_hires_scalef", 0)) == 1.0:
        return "hires", images["hires"]
    meta = entry.get("metadata", {}) or {}
    path = meta.get("source_image_path", "")
    if not path:
        return None
    from .images import is_whole_slide

    if meta.get("image_reader") == "slide" or is_whole_slide(path):
        return "slide", path
    return "file", path


def get_fullres_image(adata, library: str | None = None) -> np.ndarray | None:
    """The full-resolution image of a section, read lazily; ``None`` if the section has none.

    A NumPy array, except for a whole-slide source (see the module docstring): then a lazy RGB
    ``uint8`` dask array of the same shape, of which only the sliced part is ever decoded.
    """
    lib = library or library_id(adata)
    src = _fullres_source(adata.uns[SPATIAL_KEY][lib])
    if src is None:
        return None
    kind, value = src
    if kind == "hires":
        return np.asarray(value)
    if kind == "slide":
        from .images import open_slide

        return open_slide(value, check_blank=False).level0
    return read_image(value)


def get_fullres_slide(adata, library: str | None = None):
    """The full-resolution image as a :class:`~napari_scr2st.data.images.SlideImage`, or ``None``.

    The source is the one :func:`get_fullres_image` uses. Whole-slide sources are lazy
    (``is_lazy``: region reads decode only the tiles they touch, ``levels`` are the file's
    pyramid as dask arrays); other images wrap the decoded array without copying it.
    """
    from .images import SlideImage, open_slide

    lib = library or library_id(adata)
    src = _fullres_source(adata.uns[SPATIAL_KEY][lib])
    if src is None:
        return None
    kind, value = src
    if kind == "slide":
        return open_slide(value, check_blank=False)
    return SlideImage.from_array(get_fullres_image(adata, lib))


def get_lowres_image(adata, library: str | None = None) -> tuple[np.ndarray, float] | None:
    """The downscaled image and its scale factor (full-res pixels * scale = lowres pixels)."""
    lib = library or library_id(adata)
    entry = adata.uns[SPATIAL_KEY][lib]
    images = entry.get("images", {})
    for key in ("lowres", "hires"):
        if key in images:
            return np.asarray(images[key]), float(entry["scalefactors"][f"tissue_{key}_scalef"])
    return None


def validate_section(adata, *, name: str = "section") -> None:
    """Check the data model; raise :class:`SectionError` naming the first field that is wrong."""
    if adata.n_obs == 0:
        raise SectionError(f"{name}: the section has no spots")
    if SPATIAL_KEY not in adata.obsm:
        raise SectionError(f"{name}: obsm['spatial'] (spot centres in pixels) is missing")
    xy = np.asarray(adata.obsm[SPATIAL_KEY])
    if xy.ndim != 2 or xy.shape[1] < 2 or not np.isfinite(xy[:, :2]).all():
        raise SectionError(f"{name}: obsm['spatial'] must be a finite (n_spots, 2) array")
    for col in (SECTION_KEY, "array_row", "array_col"):
        if col not in adata.obs:
            raise SectionError(f"{name}: obs['{col}'] is missing")
    if not adata.obs_names.is_unique:
        raise SectionError(f"{name}: spot ids (obs_names) are not unique")
    if SPATIAL_KEY not in adata.uns:
        raise SectionError(f"{name}: uns['spatial'] is missing")
    for lib, entry in adata.uns[SPATIAL_KEY].items():
        if "spot_diameter_fullres" not in entry.get("scalefactors", {}):
            raise SectionError(f"{name}: uns['spatial']['{lib}']['scalefactors'] lacks spot_diameter_fullres")


def concat_sections(sections: Mapping[str, Any]):
    """Join a collection ``{name: AnnData}`` into one AnnData, genes intersected."""
    import anndata as ad

    if not sections:
        raise SectionError("no sections to concatenate")
    adatas = []
    for name, a in sections.items():
        a = a.copy()
        a.obs_names = [f"{name}:{i}" if not str(i).startswith(f"{name}:") else str(i) for i in a.obs_names]
        adatas.append(a)
    out = ad.concat(adatas, join="inner", merge="same", uns_merge="unique")
    spatial = {}
    for a in sections.values():
        spatial.update(a.uns.get(SPATIAL_KEY, {}))
    out.uns[SPATIAL_KEY] = spatial
    out.obs[SECTION_KEY] = pd.Categorical(out.obs[SECTION_KEY].astype(str))
    out.obs[PATIENT_KEY] = pd.Categorical(out.obs[PATIENT_KEY].astype(str))
    return out


def split_sections(adata) -> dict[str, Any]:
    """Inverse of :func:`concat_sections`: ``{section: AnnData}`` with one library each."""
    out = {}
    for name in adata.obs[SECTION_KEY].astype(str).unique():
        sub = adata[adata.obs[SECTION_KEY].astype(str) == name].copy()
        sub.uns[SPATIAL_KEY] = {name: adata.uns[SPATIAL_KEY][name]} if name in adata.uns.get(SPATIAL_KEY, {}) else {}
        out[name] = sub
    return out


def summarize(adata) -> str:
    """A short human-readable summary of a section or a concatenated collection."""
    lines = []
    sections = adata.obs[SECTION_KEY].astype(str) if SECTION_KEY in adata.obs else pd.Series(["?"] * adata.n_obs)
    X = adata.X
    totals = np.asarray(X.sum(axis=1)).ravel() if X is not None else np.zeros(adata.n_obs)
    lines.append(f"{adata.n_obs} spots x {adata.n_vars} genes in {sections.nunique()} section(s)")
    for name in sections.unique():
        m = (sections == name).to_numpy()
        patient = ""
        if PATIENT_KEY in adata.obs:
            patient = str(adata.obs[PATIENT_KEY][m].iloc[0])
        lib = adata.uns.get(SPATIAL_KEY, {}).get(name, {})
        shape = lib.get("metadata", {}).get("fullres_shape") or []
        diam = lib.get("scalefactors", {}).get("spot_diameter_fullres", float("nan"))
        lines.append(
            f"  {name}: {m.sum()} spots, patient={patient or '?'}, median UMI/spot="
            f"{np.median(totals[m]):.0f}, image={'x'.join(map(str, shape)) or 'none'}, "
            f"spot diameter={diam:.1f} px"
        )
    keys = [k for k in adata.obsm.keys()]
    if keys:
        lines.append(f"  obsm: {', '.join(keys)}")
    return "\n".join(lines)
