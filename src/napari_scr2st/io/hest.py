"""Reader for HEST-1k samples (Jaume et al. 2024, mahmoodlab/HEST) -> section AnnData.

Layout of a HEST-1k download (one file per sample id in each folder)::

    st/{id}.h5ad         spots x genes; obsm["spatial"] (or obs pxl_col_in_fullres /
                         pxl_row_in_fullres) = spot centres in full-resolution pixels of the
                         WSI; uns["spatial"]["ST"] with images["downscaled_fullres"] and
                         scalefactors tissue_downscaled_fullres_scalef, spot_diameter_fullres
    wsis/{id}.tif        the whole-slide image (pyramidal TIFF)
    metadata/{id}.json   pixel_size_um_estimated / pixel_size_um_embedded, spot_diameter and
                         inter_spot_dist (um), patient, tissue, organ, species, st_technology...

The section keeps the WSI's full-resolution pixel frame: ``metadata["source_image_path"]`` is
the WSI path, opened with :func:`~napari_scr2st.data.images.open_slide` (only a thumbnail is
decoded here, to refuse a blank slide; pixels are read lazily elsewhere), the downscaled image
becomes ``lowres`` (16-bit ones scaled by their range, a blank one warned about), and the pixel
size is recorded as ``scalefactors["microns_per_pixel"]``, ``metadata["um_per_px"]`` and
``metadata["microns_per_pixel"]`` (exports give micrometres with it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from ..data.images import open_slide
from ..data.model import LOWRES_MAX_SIDE, SPATIAL_KEY, SectionError, downscale_image, make_section
from ._common import (
    check_finite_counts,
    check_spots_inside,
    image_to_rgb_uint8,
    infer_array_coords,
    require_file,
    warn_if_blank,
)

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["read_hest", "is_hest_root", "list_hest_samples"]

PathLike = str | os.PathLike
#: Metadata fields copied into ``uns["spatial"][id]["metadata"]`` when present.
META_FIELDS = (
    "id", "patient", "tissue", "organ", "species", "disease_state", "oncotree_code", "st_technology",
    "preservation_method", "spot_diameter", "inter_spot_dist", "pixel_size_um_embedded",
    "pixel_size_um_estimated", "magnification", "fullres_px_width", "fullres_px_height",
    "dataset_title", "subseries",
)


def is_hest_root(path: PathLike) -> bool:
    """True for a folder with ``st/`` and ``metadata/`` sub-folders (a HEST-1k download)."""
    p = Path(path)
    return (p / "st").is_dir() and (p / "metadata").is_dir()


def list_hest_samples(root: PathLike) -> list[str]:
    """Sample ids of a HEST folder: the ``st/{id}.h5ad`` files, sorted."""
    return sorted(f.name[: -len(".h5ad")] for f in Path(root, "st").glob("*.h5ad"))


def _number(meta: dict, key: str) -> float | None:
    v = meta.get(key)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def read_hest(root: PathLike, sample_id: str | None = None, *, patient: str | None = None) -> AnnData:
    """Read HEST-1k sample ``sample_id`` of the folder ``root`` as one section.

    ``sample_id`` None: the only sample of ``root`` (several raise :class:`SectionError`
    listing them). ``st/{id}.h5ad`` and ``metadata/{id}.json`` are required; ``wsis/{id}.tif``
    is optional (without it the section has only the downscaled image). The spot diameter is
    ``scalefactors["spot_diameter_fullres"]`` of the h5ad, else the metadata's
    ``spot_diameter`` (um) divided by the pixel size (``pixel_size_um_estimated``, else
    ``pixel_size_um_embedded``). ``patient`` defaults to the metadata's ``patient``. Counts
    must be raw (finite, non-negative integers).
    """
    import anndata as ad

    r = Path(root)
    if not r.is_dir():
        raise SectionError(f"HEST folder not found: {r}")
    if not is_hest_root(r):
        raise SectionError(f"{r}: not a HEST folder (expected st/ and metadata/ sub-folders)")
    if sample_id is None:
        ids = list_hest_samples(r)
        if len(ids) != 1:
            raise SectionError(
                f"{r}: {len(ids)} HEST samples ({', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}); "
                "name one with section=..."
            )
        sample_id = ids[0]
    st = r / "st" / f"{sample_id}.h5ad"
    if not st.is_file():
        known = list_hest_samples(r)
        raise SectionError(
            f"HEST expression file not found: {st}; samples in {r / 'st'}: {', '.join(known[:20]) or '(none)'}"
        )
    meta_file = require_file(r / "metadata" / f"{sample_id}.json", "HEST metadata file")
    try:
        meta: dict[str, Any] = json.loads(meta_file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise SectionError(f"invalid HEST metadata file {meta_file}: {e}") from e
    if not isinstance(meta, dict):
        raise SectionError(f"invalid HEST metadata file {meta_file}: expected a JSON object")
    try:
        a = ad.read_h5ad(st)
    except Exception as e:  # h5py/anndata raise many types for broken files
        raise SectionError(f"cannot read HEST expression file {st}: {type(e).__name__}: {e}") from e
    if a.n_obs == 0 or a.n_vars == 0:
        raise SectionError(f"HEST expression file {st} is empty ({a.n_obs} spots x {a.n_vars} genes)")
    a.var_names_make_unique()

    if SPATIAL_KEY in a.obsm:
        xy = np.asarray(a.obsm[SPATIAL_KEY], dtype=np.float64)[:, :2]
    elif {"pxl_col_in_fullres", "pxl_row_in_fullres"} <= set(a.obs.columns):
        xy = a.obs[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(dtype=np.float64)
    else:
        raise SectionError(f"{st}: no spot centres (obsm['spatial'] or obs pxl_col_in_fullres/pxl_row_in_fullres)")
    if not np.isfinite(xy).all():
        raise SectionError(f"{st}: obsm['spatial'] has non-finite spot centres")

    X = a.X.tocsr() if sp.issparse(a.X) else sp.csr_matrix(np.asarray(a.X))
    check_finite_counts(X, a.var_names, a.obs_names, str(st))
    if X.nnz and (X.data.min() < 0 or not np.all(np.mod(X.data, 1) == 0)):
        raise SectionError(f"{st}: X is not raw counts (expected finite non-negative integers)")

    libs = a.uns.get(SPATIAL_KEY, {})
    entry_in = libs.get("ST") or (next(iter(libs.values())) if libs else {})
    sf_in = {k: v for k, v in dict(entry_in.get("scalefactors", {})).items()}
    images_in = dict(entry_in.get("images", {}))

    mpp = _number(meta, "pixel_size_um_estimated") or _number(meta, "pixel_size_um_embedded")
    mpp_key = "pixel_size_um_estimated" if _number(meta, "pixel_size_um_estimated") else "pixel_size_um_embedded"
    diam = _number(sf_in, "spot_diameter_fullres")
    if diam is None:
        d_um = _number(meta, "spot_diameter")
        if d_um is None or mpp is None:
            raise SectionError(
                f"{st}: no spot_diameter_fullres in uns['spatial'] and {meta_file} lacks spot_diameter "
                "or a pixel size (pixel_size_um_estimated / pixel_size_um_embedded)"
            )
        diam = d_um / mpp

    wsi = r / "wsis" / f"{sample_id}.tif"
    if wsi.is_file():
        shape = open_slide(wsi).shape  # header and smallest level only; a blank WSI is refused
        check_spots_inside(xy, shape[0], shape[1], spot_ids=a.obs_names, spots_file=st, image_file=wsi)
    else:
        wsi = None
        w, h = _number(meta, "fullres_px_width"), _number(meta, "fullres_px_height")
        shape = (int(h), int(w), 3) if w and h else None

    if "array_row" in a.obs and "array_col" in a.obs and not a.obs[["array_row", "array_col"]].isna().any().any():
        row, col = a.obs["array_row"].to_numpy(dtype=int), a.obs["array_col"].to_numpy(dtype=int)
    else:
        row, col = infer_array_coords(xy)
    pat = patient if patient is not None else meta.get("patient")
    pat = "" if pat is None or (isinstance(pat, float) and not np.isfinite(pat)) else str(pat)
    extra = a.obs[[c for c in a.obs.columns if c not in ("array_row", "array_col")]]
    adata = make_section(
        X.astype(np.float32),
        a.var_names,
        a.obs_names,
        xy,
        section=str(sample_id),
        patient=pat,
        array_row=row,
        array_col=col,
        image_path=wsi.resolve() if wsi is not None else None,
        image_shape=shape,
        spot_diameter_fullres=float(diam),
        extra_obs=extra if len(extra.columns) else None,
    )
    for c in a.var.columns:
        adata.var[c] = a.var[c].to_numpy()
    entry = adata.uns[SPATIAL_KEY][str(sample_id)]
    low = images_in.get("downscaled_fullres")
    low_s = _number(sf_in, "tissue_downscaled_fullres_scalef")
    if low is not None and low_s is not None:
        low, extra_s = downscale_image(image_to_rgb_uint8(low), LOWRES_MAX_SIDE)
        warn_if_blank(low, f"{st} uns['spatial'] images['downscaled_fullres']")
        entry["images"]["lowres"] = low
        entry["scalefactors"]["tissue_lowres_scalef"] = low_s * extra_s
    entry["metadata"].update(
        {
            "platform": "hest",
            "source_path": str(st.resolve()),
            "metadata_path": str(meta_file.resolve()),
            "hest": {k: meta[k] for k in META_FIELDS if k in meta and meta[k] is not None},
        }
    )
    if wsi is not None:
        entry["metadata"]["image_reader"] = "slide"
    if mpp is not None:
        entry["scalefactors"]["microns_per_pixel"] = float(mpp)
        entry["metadata"].update({"um_per_px": float(mpp), "um_per_px_from": mpp_key,
                                  "microns_per_pixel": float(mpp)})  # exports: micrometres per full-res px
    return adata
