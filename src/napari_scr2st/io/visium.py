"""Reader for 10x Genomics Visium: a Space Ranger ``outs/`` folder -> section AnnData.

Expected layout (Space Ranger 1.x-3.x)::

    outs/filtered_feature_bc_matrix.h5
    outs/spatial/tissue_positions.csv  (or tissue_positions_list.csv, no header)
    outs/spatial/scalefactors_json.json
    outs/spatial/tissue_hires_image.png
    outs/spatial/tissue_lowres_image.png

Counts, positions and scale factors are parsed by :func:`scanpy.read_visium` (deprecated in
favour of squidpy, still available; squidpy is not a dependency); the images are decoded here
with Pillow (uint8) and checked.

Coordinate frame. Space Ranger gives spot centres in the pixels of the *full-resolution*
microscope image, which ``outs/`` does not contain.

- With ``source_image_path`` (that full-resolution image), ``obsm["spatial"]`` keeps Space
  Ranger's full-resolution coordinates and the image is read lazily from that path.
- Without it, the section is expressed in the frame of ``spatial/tissue_hires_image.png``:
  coordinates and ``spot_diameter_fullres`` are multiplied by ``tissue_hires_scalef``, the
  hires image becomes the "full-resolution" image (``source_image_path`` points to it,
  ``tissue_hires_scalef == 1``), so :func:`~napari_scr2st.data.model.get_fullres_image`
  returns an image that matches ``obsm["spatial"]``. ``metadata["frame_scale"]`` records the
  factor (Space Ranger full-res coordinate * frame_scale = ``obsm["spatial"]``).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from ..data.model import SectionError, make_section
from ._common import as_rgb_uint8, check_spots_inside, image_size, require_file

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["read_visium", "find_outs_dir", "is_visium_dir"]

PathLike = str | os.PathLike
COUNT_FILE = "filtered_feature_bc_matrix.h5"


def find_outs_dir(path: PathLike, count_file: str = COUNT_FILE) -> Path | None:
    """The Space Ranger ``outs`` folder at or directly below ``path`` (None if there is none)."""
    p = Path(path)
    for cand in (p, p / "outs"):
        if (cand / "spatial").is_dir() and (cand / count_file).is_file():
            return cand
    return None


def is_visium_dir(path: PathLike) -> bool:
    """True if ``path`` (or ``path/outs``) has ``spatial/`` and a filtered feature matrix."""
    return find_outs_dir(path) is not None


def _library_id_from_h5(h5: Path) -> str | None:
    import h5py

    try:
        with h5py.File(h5, "r") as f:
            ids = f.attrs.get("library_ids")
    except Exception as e:
        raise SectionError(f"cannot read 10x matrix {h5}: {e}") from e
    if ids is None or len(np.atleast_1d(ids)) == 0:
        return None
    first = np.atleast_1d(ids)[0]
    return first.decode() if isinstance(first, bytes) else str(first)


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return as_rgb_uint8(np.asarray(im.convert("RGB")))
    except Exception as e:  # PIL raises several types for broken files
        raise SectionError(f"cannot read image {path}: {e}") from e


def read_visium(
    path: PathLike,
    *,
    library_id: str | None = None,
    source_image_path: PathLike | None = None,
    patient: str = "",
    count_file: str = COUNT_FILE,
) -> AnnData:
    """Read a Space Ranger ``outs/`` folder (or its parent) as one section.

    Parameters
    ----------
    path
        The ``outs`` folder, or a folder that contains ``outs/``.
    library_id
        Section name; default: the ``library_ids`` attribute of the matrix file, else the
        sample folder's name.
    source_image_path
        The full-resolution image Space Ranger was run on; see the module docstring for the
        coordinate frame used with and without it.
    patient
        Patient/donor id stored in ``obs["patient"]``.
    count_file
        Matrix file name inside ``outs``.
    """
    p = Path(path)
    if not p.exists():
        raise SectionError(f"Visium folder not found: {p}")
    outs = find_outs_dir(p, count_file)
    if outs is None:
        if not (p / "spatial").is_dir() and not (p / "outs" / "spatial").is_dir():
            raise SectionError(f"{p}: not a Space Ranger outs folder (no spatial/ sub-folder)")
        base = p / "outs" if (p / "outs" / "spatial").is_dir() else p
        raise SectionError(f"Visium count matrix not found: {base / count_file}")
    h5 = outs / count_file
    spatial_dir = outs / "spatial"
    positions = spatial_dir / "tissue_positions.csv"
    if not positions.is_file():
        positions = spatial_dir / "tissue_positions_list.csv"
    require_file(
        positions, "Visium spot positions file (tissue_positions.csv or tissue_positions_list.csv)"
    )
    sf_file = require_file(spatial_dir / "scalefactors_json.json", "Visium scale factors file")
    hires_p = require_file(spatial_dir / "tissue_hires_image.png", "Visium hires image")
    lowres_p = require_file(spatial_dir / "tissue_lowres_image.png", "Visium lowres image")
    try:
        scalef = json.loads(sf_file.read_text())
        hs = float(scalef["tissue_hires_scalef"])
        ls = float(scalef["tissue_lowres_scalef"])
        sd = float(scalef["spot_diameter_fullres"])
    except (ValueError, KeyError, TypeError) as e:
        raise SectionError(f"invalid Visium scale factors file {sf_file}: {e!r}") from e

    hires = _read_png(hires_p)
    lowres = _read_png(lowres_p)
    lib = (
        library_id
        or _library_id_from_h5(h5)
        or (outs.parent.name if outs.name == "outs" else outs.name)
    )

    import scanpy as sc

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ad = sc.read_visium(outs, count_file=count_file, library_id=lib, load_images=True)
    except Exception as e:
        raise SectionError(
            f"cannot read Visium data in {outs} (matrix {h5}, positions {positions}): {e}"
        ) from e

    ad.var_names_make_unique()
    if ad.n_obs == 0:
        raise SectionError(f"Visium matrix {h5} has no spots (barcodes)")
    if ad.n_vars == 0:
        raise SectionError(f"Visium matrix {h5} has no genes (features)")
    xy = np.asarray(ad.obsm["spatial"], dtype=np.float64)
    missing = ~np.isfinite(xy).all(axis=1) | ad.obs["array_row"].isna().to_numpy()
    if missing.any():
        raise SectionError(
            f"{int(missing.sum())} of {ad.n_obs} barcodes of {h5} have no row in {positions} "
            f"(e.g. {ad.obs_names[np.argmax(missing)]!r}); are they from the same run?"
        )
    X = sp.csr_matrix(ad.X)
    if X.nnz and (X.data.min() < 0):
        raise SectionError(f"Visium matrix {h5} holds negative counts")

    if source_image_path is not None:
        src = require_file(source_image_path, "source image")
        shape = image_size(src)
        frame_scale = 1.0
        check_spots_inside(
            xy, shape[0], shape[1], spot_ids=ad.obs_names, spots_file=positions, image_file=src
        )
        images = {"hires": hires, "lowres": lowres}
        sfs = {"tissue_hires_scalef": hs, "tissue_lowres_scalef": ls}
    else:
        src = hires_p
        frame_scale = hs
        shape = hires.shape
        xy = xy * hs
        sd = sd * hs
        check_spots_inside(
            xy, shape[0], shape[1], spot_ids=ad.obs_names, spots_file=positions, image_file=hires_p
        )
        images = {"lowres": lowres}
        sfs = {"tissue_lowres_scalef": ls / hs}

    adata = make_section(
        X.astype(np.float32),
        ad.var_names,
        ad.obs_names,
        xy,
        section=str(lib),
        patient=patient,
        array_row=ad.obs["array_row"].to_numpy(dtype=int),
        array_col=ad.obs["array_col"].to_numpy(dtype=int),
        image_path=Path(src).resolve(),
        image_shape=tuple(shape),
        spot_diameter_fullres=sd,
    )
    for c in ad.var.columns:
        adata.var[c] = ad.var[c].to_numpy()
    if "in_tissue" in ad.obs:
        adata.obs["in_tissue"] = ad.obs["in_tissue"].to_numpy(dtype=int)
    entry = adata.uns["spatial"][str(lib)]
    entry["images"] = images
    entry["scalefactors"].update(sfs)
    if "fiducial_diameter_fullres" in scalef:
        entry["scalefactors"]["fiducial_diameter_fullres"] = (
            float(scalef["fiducial_diameter_fullres"]) * frame_scale
        )
    meta = ad.uns["spatial"][lib].get("metadata", {})
    entry["metadata"].update({k: str(v) for k, v in meta.items() if k != "source_image_path"})
    entry["metadata"].update(
        {
            "platform": "visium",
            "outs_path": str(outs.resolve()),
            "frame": "fullres" if source_image_path is not None else "tissue_hires_image",
            "frame_scale": float(frame_scale),
            "spaceranger_scalefactors": {
                k: float(v) for k, v in scalef.items() if isinstance(v, (int, float))
            },
        }
    )
    return adata
