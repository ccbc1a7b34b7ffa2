"""Read and write sections as ``.h5ad`` in the squidpy/scanpy spatial convention.

Reading accepts files written by this package, by scanpy/squidpy (``obsm["spatial"]``,
``uns["spatial"][library_id]``) and by tools that follow them loosely (HEST, older pipelines),
and fills what the data model (:mod:`napari_scr2st.data.model`) needs:

- ``obs["section"]``: from ``obs["section"]``, else ``obs["library_id"]``, else the only
  library of ``uns["spatial"]``, else the file name;
- ``obs["patient"]``: from ``patient``/``patient_id``/``donor``/``donor_id``/``individual``,
  else ``""``;
- ``obs["array_row"]``/``["array_col"]``: from those columns or ``row``/``col``, else inferred
  from the pixel coordinates (equally spaced levels of y and x; approximate for rotated
  sections);
- raw counts in ``X``: when ``X`` is not integer-valued, ``layers["counts"]`` or ``.raw`` are
  used if they hold integer counts, otherwise it is an error; a section with no genes (a
  slide before sequencing, ``X`` of shape ``(n_spots, 0)``) is valid;
- ``uns["spatial"][section]``: images converted to RGB uint8 (16-bit ones scaled by their
  range; a blank one is warned about), ``spot_diameter_fullres``
  estimated as half the lattice pitch when absent, ``metadata`` with ``source_image_path`` and
  ``fullres_shape``; the metadata's ``frame_scale`` and ``microns_per_pixel`` (see
  :func:`~napari_scr2st.data.model.fullres_coordinates`) are kept, so exports of a re-read
  section give the original full-resolution pixels; without ``frame_scale``,
  ``obsm["spatial"]`` is taken as the original frame (the squidpy convention).

A file holding several sections (several libraries) is returned as a collection
``{section: AnnData}``; spot ids prefixed ``"{section}:"`` by
:func:`~napari_scr2st.data.model.concat_sections` are restored on the way back.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..atomic import atomic_path
from ..data.model import (
    PATIENT_KEY,
    SECTION_KEY,
    SPATIAL_KEY,
    SectionError,
    concat_sections,
    validate_section,
)
from ._common import (
    check_spots_inside,
    first_nonfinite,
    image_to_rgb_uint8,
    infer_array_coords,
    nonfinite_message,
    require_file,
    warn_if_blank,
)

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["read_h5ad_section", "write_h5ad_section", "normalize_section"]

PathLike = str | os.PathLike
PATIENT_CANDIDATES = ("patient", "patient_id", "donor", "donor_id", "individual", "subject")
SECTION_CANDIDATES = (SECTION_KEY, "library_id")


def _is_integer_valued(X) -> bool:
    data = X.data if sp.issparse(X) else np.asarray(X)
    if data.size == 0:
        return True
    if data.dtype.kind in "iub":
        return True
    sample = data.ravel()[:200_000]
    with np.errstate(invalid="ignore"):  # inf/NaN: refused by first_nonfinite first
        return bool(np.all(np.mod(sample, 1) == 0))


def _pick_counts(adata, where: str):
    """Return the raw-count matrix of ``adata`` (X, layers['counts'] or raw.X).

    Infinite or NaN values are checked BEFORE the integer test (numpy would call them
    non-integer, with a RuntimeWarning): a candidate holding them is skipped, and when no
    candidate holds raw counts the error names the first such value, its gene and spot.
    """
    candidates = [("X", adata.X, adata.var_names)]
    if "counts" in adata.layers:
        candidates.append(("layers['counts']", adata.layers["counts"], adata.var_names))
    if (
        adata.raw is not None
        and adata.raw.shape[1] == adata.n_vars
        and list(adata.raw.var_names) == list(adata.var_names)
    ):
        candidates.append(("raw.X", adata.raw.X, adata.raw.var_names))
    nonfinite = None
    for name, X, genes in candidates:
        if X is None:
            continue
        bad = first_nonfinite(X)
        if bad is not None:
            nonfinite = nonfinite or (name, genes, bad)
            continue
        if _is_integer_valued(X):
            return X
    if nonfinite is not None:
        name, genes, bad = nonfinite
        raise SectionError(nonfinite_message(bad, genes, adata.obs_names, where, name))
    raise SectionError(
        f"{where}: X does not hold raw counts (non-integer values) and neither layers['counts'] "
        "nor .raw holds integer counts for the same genes; the package needs raw counts"
    )


def normalize_section(
    adata,
    name: str,
    *,
    where: str,
    patient: str | None = None,
    spot_diameter_fullres: float | None = None,
) -> AnnData:
    """A copy of a single-section AnnData brought into the data model (see module docstring).

    ``where`` (usually the file name) prefixes every error message.
    """
    a = adata.copy()
    if SPATIAL_KEY not in a.obsm:
        raise SectionError(f"{where}: obsm['spatial'] (spot centres in pixels) is missing")
    if a.n_obs == 0:
        raise SectionError(f"{where}: section {name!r} has no spots")
    X = sp.csr_matrix((a.n_obs, 0)) if a.n_vars == 0 else _pick_counts(a, where)
    Xc = sp.csr_matrix(X, dtype=np.float32)
    if Xc.nnz and Xc.data.min() < 0:
        raise SectionError(f"{where}: section {name!r} holds negative counts")
    a.X = Xc
    xy = np.asarray(a.obsm[SPATIAL_KEY], dtype=np.float64)[:, :2]
    a.obsm[SPATIAL_KEY] = xy

    prefix = f"{name}:"
    names = pd.Index(a.obs_names.astype(str))
    if len(names) and names.str.startswith(prefix).all():
        a.obs_names = names.str.slice(len(prefix))

    a.obs[SECTION_KEY] = pd.Categorical([name] * a.n_obs)
    if patient is not None:
        a.obs[PATIENT_KEY] = pd.Categorical([patient] * a.n_obs)
    else:
        src = next((c for c in PATIENT_CANDIDATES if c in a.obs), None)
        vals = a.obs[src].astype(str).to_numpy() if src else np.array([""] * a.n_obs)
        a.obs[PATIENT_KEY] = pd.Categorical(vals)

    have_rc = "array_row" in a.obs and "array_col" in a.obs
    if not have_rc and "row" in a.obs and "col" in a.obs:
        a.obs["array_row"], a.obs["array_col"] = a.obs["row"].to_numpy(), a.obs["col"].to_numpy()
        have_rc = True
    if have_rc:
        rc = a.obs[["array_row", "array_col"]].apply(pd.to_numeric, errors="coerce")
        have_rc = bool(rc.notna().all().all())
    if have_rc:
        a.obs["array_row"] = rc["array_row"].to_numpy().astype(int)
        a.obs["array_col"] = rc["array_col"].to_numpy().astype(int)
    else:
        row, col = infer_array_coords(xy)
        a.obs["array_row"], a.obs["array_col"] = row, col

    spatial = a.uns.get(SPATIAL_KEY, {}) or {}
    if not isinstance(spatial, Mapping):
        spatial = {}
    if name not in spatial and len(spatial) == 1:  # one library under another key
        spatial = {name: next(iter(spatial.values()))}
    entry = dict(spatial.get(name, {}) or {})
    images = {
        k: image_to_rgb_uint8(v)
        for k, v in dict(entry.get("images", {}) or {}).items()
        if k in ("hires", "lowres") and v is not None and np.asarray(v).ndim in (2, 3)
    }
    for k, v in images.items():
        warn_if_blank(v, f"{where} uns['spatial'][{name!r}]['images'][{k!r}]")
    scalefactors = {
        k: float(v)
        for k, v in dict(entry.get("scalefactors", {}) or {}).items()
        if np.isscalar(v) and not isinstance(v, str)
    }
    for k in images:
        scalefactors.setdefault(f"tissue_{k}_scalef", 1.0)
    if spot_diameter_fullres is not None:
        scalefactors["spot_diameter_fullres"] = float(spot_diameter_fullres)
    if "spot_diameter_fullres" not in scalefactors:
        from scipy.spatial import cKDTree

        if a.n_obs < 2:
            raise SectionError(
                f"{where}: cannot estimate the spot diameter from one spot; pass spot_diameter_fullres"
            )
        d, _ = cKDTree(xy).query(xy, k=2)
        scalefactors["spot_diameter_fullres"] = float(np.median(d[:, 1])) / 2
        warnings.warn(
            f"{where}: no spot_diameter_fullres in uns['spatial']; estimated as half the spot pitch "
            f"({scalefactors['spot_diameter_fullres']:.1f} px)",
            stacklevel=3,
        )
    scalefactors.setdefault(
        "fiducial_diameter_fullres", scalefactors["spot_diameter_fullres"] * 1.6
    )
    meta = dict(entry.get("metadata", {}) or {})
    sip = meta.get("source_image_path")
    meta["source_image_path"] = (
        "" if sip is None or (isinstance(sip, float) and np.isnan(sip)) else str(sip)
    )
    shape = meta.get("fullres_shape")
    meta["fullres_shape"] = [int(v) for v in np.asarray(shape).ravel()] if shape is not None else []
    if len(meta["fullres_shape"]) >= 2:
        h, w = meta["fullres_shape"][:2]
        check_spots_inside(
            xy,
            h,
            w,
            spot_ids=a.obs_names,
            spots_file=where,
            image_file=meta["source_image_path"] or "(fullres_shape in metadata)",
        )
    a.uns[SPATIAL_KEY] = {name: {"images": images, "scalefactors": scalefactors, "metadata": meta}}
    validate_section(a, name=f"{where} [{name}]")
    return a


def read_h5ad_section(
    path: PathLike,
    *,
    section: str | None = None,
    patient: str | None = None,
    spot_diameter_fullres: float | None = None,
) -> AnnData | dict[str, AnnData]:
    """Read an ``.h5ad`` file as a section, or as ``{section: AnnData}`` when it holds several.

    ``section`` picks one section of a multi-section file (or names the section of a file
    without library information); ``patient`` and ``spot_diameter_fullres`` override what the
    file holds. See the module docstring for how missing fields are filled.
    """
    p = require_file(path, "h5ad file")
    import anndata as ad

    try:
        adata = ad.read_h5ad(p)
    except Exception as e:
        raise SectionError(f"cannot read h5ad file {p}: {e}") from e
    where = str(p)
    libs = (
        list((adata.uns.get(SPATIAL_KEY) or {}).keys())
        if isinstance(adata.uns.get(SPATIAL_KEY), Mapping)
        else []
    )
    col = next((c for c in SECTION_CANDIDATES if c in adata.obs), None)
    if col is not None:
        names = [str(v) for v in pd.unique(adata.obs[col].astype(str))]
    elif len(libs) <= 1:
        names = [libs[0] if libs else (section or p.name.removesuffix(".h5ad"))]
    else:
        raise SectionError(
            f"{where}: uns['spatial'] holds {len(libs)} libraries ({libs[:5]}) but obs has no "
            "'section' or 'library_id' column to tell their spots apart"
        )
    kw: dict[str, Any] = {
        "where": where,
        "patient": patient,
        "spot_diameter_fullres": spot_diameter_fullres,
    }
    if len(names) == 1:
        name = names[0]
        if section is not None and col is None:
            name = section
            if libs and libs[0] != section:
                adata.uns[SPATIAL_KEY] = {section: adata.uns[SPATIAL_KEY][libs[0]]}
        elif section is not None and section != name:
            raise SectionError(f"{where}: no section {section!r}; the file holds {names}")
        return normalize_section(adata, name, **kw)
    if section is not None:
        if section not in names:
            raise SectionError(f"{where}: no section {section!r}; the file holds {names}")
        names = [section]
    out = {}
    values = adata.obs[col].astype(str).to_numpy()
    for name in names:
        sub = adata[values == name].copy()
        out[name] = normalize_section(sub, name, **kw)
    return out[section] if section is not None else out


def write_h5ad_section(adata, path: PathLike, *, compression: str | None = "gzip") -> Path:
    """Write a section (or a collection ``{name: AnnData}``, joined) to ``.h5ad`` atomically.

    The file appears at ``path`` only when writing succeeded; an existing file is replaced in
    one step and left untouched on error. Returns the path.
    """
    if isinstance(adata, Mapping):
        adata = concat_sections(adata)
    p = Path(path)
    if p.suffix != ".h5ad":
        raise SectionError(f"refusing to write {p}: the file name must end with .h5ad")
    with atomic_path(p) as tmp:
        try:
            adata.write_h5ad(tmp, compression=compression)
        except Exception as e:
            raise SectionError(f"cannot write {p}: {e}") from e
    return p
