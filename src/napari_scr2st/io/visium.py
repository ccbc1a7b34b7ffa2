"""Reader for 10x Genomics Visium and Visium HD (Space Ranger ``outs/``) -> section AnnData.

Layouts read (Space Ranger 1.x-3.x)::

    outs/filtered_feature_bc_matrix.h5        or  outs/filtered_feature_bc_matrix/
                                                      barcodes.tsv.gz features.tsv.gz matrix.mtx.gz
    (only raw_feature_bc_matrix[.h5|/] present: the barcodes with in_tissue == 1 are kept, with
    a warning giving the counts)
    outs/spatial/tissue_positions_list.csv    (1.x, no header)
               or tissue_positions.csv        (2.x, header)
               or tissue_positions.parquet    (3.x)
    outs/spatial/scalefactors_json.json
    outs/spatial/tissue_hires_image.png, tissue_lowres_image.png
    outs/spatial/cytassist_image.tiff         (CytAssist runs; recorded, never used as the H&E)

Visium HD: ``outs/binned_outputs/square_002um|square_008um|square_016um/``, each with its
matrix (as above) and ``spatial/tissue_positions.parquet`` + ``spatial/scalefactors_json.json``;
the images are taken from the bin's ``spatial/`` or else from ``outs/spatial/``. One bin size
is read (``bin_size_um``); its bins are the section's spots (``metadata["spot_shape"] ==
"square"``), with a diameter of one bin in pixels.

Counts are read with scanpy's 10x readers (:func:`scanpy.read_10x_h5`,
:func:`scanpy.read_10x_mtx`; ``Gene Expression`` features only, so probe-based and CytAssist
gene + protein runs give genes); positions and scale factors are parsed here with pandas (all
vectorised: an 8 um HD section has several hundred thousand bins). The images are read with
:func:`~napari_scr2st.data.images.open_slide` (16-bit and greyscale images scaled by their
range) and checked with :func:`~napari_scr2st.data.images.check_not_blank`: a blank or
near-uniform image is refused when the section is built on it, warned about otherwise.

Coordinate frame. Space Ranger gives spot centres (``pxl_col_in_fullres``,
``pxl_row_in_fullres``) in the pixels of the *full-resolution* image it was run on, which
``outs/`` does not contain.

- With ``source_image_path`` (that image: the H&E for CytAssist runs), ``obsm["spatial"]``
  keeps Space Ranger's full-resolution coordinates and the image is read lazily from that path.
- Without it, the section is expressed in the frame of ``tissue_hires_image.png``:
  coordinates and ``spot_diameter_fullres`` are multiplied by ``tissue_hires_scalef``, the
  hires image becomes the "full-resolution" image (``source_image_path`` points to it), so
  :func:`~napari_scr2st.data.model.get_fullres_image` returns an image that matches
  ``obsm["spatial"]``.

Either way ``metadata["frame_scale"]`` (``obsm["spatial"]`` = Space Ranger full-res *
frame_scale) and ``metadata["microns_per_pixel"]`` (per Space Ranger full-res pixel: the
scale factors' ``microns_per_pixel`` when present, else 65 um / ``spot_diameter_fullres``, the
theoretical spot Space Ranger sizes that diameter on) let
:func:`~napari_scr2st.data.model.fullres_coordinates` give exports in the original frame.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.images import check_not_blank, open_slide
from ..data.model import SectionError, make_section
from ._common import check_spots_inside, require_file

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = [
    "read_visium",
    "find_outs_dir",
    "is_visium_dir",
    "visium_hd_bins",
    "read_count_matrix",
    "read_tissue_positions",
    "COUNT_FILES",
    "POSITION_FILES",
]

PathLike = str | os.PathLike
#: count matrices looked for, in order; the raw ones are filtered to in_tissue == 1
COUNT_FILES = (
    "filtered_feature_bc_matrix.h5",
    "filtered_feature_bc_matrix",
    "raw_feature_bc_matrix.h5",
    "raw_feature_bc_matrix",
)
#: spot position files looked for, in order (Space Ranger 3.x, 2.x, 1.x)
POSITION_FILES = ("tissue_positions.parquet", "tissue_positions.csv", "tissue_positions_list.csv")
POSITION_COLUMNS = (
    "barcode",
    "in_tissue",
    "array_row",
    "array_col",
    "pxl_row_in_fullres",
    "pxl_col_in_fullres",
)
HD_BINS_DIR = "binned_outputs"
#: the diameter (um) of the theoretical spot that ``spot_diameter_fullres`` measures (Visium)
THEORETICAL_SPOT_UM = 65.0


def _matrix_in(folder: Path, count_file: str | None) -> Path | None:
    names = (count_file,) if count_file else COUNT_FILES
    for name in names:
        p = folder / name
        if p.is_file() and p.suffix == ".h5":
            return p
        if p.is_dir() and (p / "matrix.mtx.gz").is_file():
            return p
    return None


def visium_hd_bins(outs: PathLike) -> dict[int, Path]:
    """``{bin size in um: folder}`` of the ``binned_outputs/square_NNNum`` folders of ``outs``."""
    d = Path(outs) / HD_BINS_DIR
    if not d.is_dir():
        return {}
    out = {}
    for child in sorted(d.iterdir()):
        m = re.fullmatch(r"square_(\d+)um", child.name)
        if m and child.is_dir():
            out[int(m.group(1))] = child
    return out


def find_outs_dir(path: PathLike, count_file: str | None = None) -> Path | None:
    """The Space Ranger ``outs`` folder at or directly below ``path`` (None if there is none).

    A folder qualifies with ``spatial/`` and a count matrix (:data:`COUNT_FILES`, or
    ``count_file``), or with Visium HD ``binned_outputs/square_NNNum/`` folders.
    """
    p = Path(path)
    for cand in (p, p / "outs"):
        if (cand / "spatial").is_dir() and _matrix_in(cand, count_file) is not None:
            return cand
        if visium_hd_bins(cand):
            return cand
    return None


def is_visium_dir(path: PathLike) -> bool:
    """True if ``path`` (or ``path/outs``) is a Visium or Visium HD Space Ranger output."""
    return find_outs_dir(path) is not None


def read_count_matrix(path: PathLike) -> AnnData:
    """A 10x matrix (``.h5`` or MEX folder) as spots x genes, ``Gene Expression`` rows only.

    Gene symbols are ``var_names`` (made unique); ``var`` keeps ``gene_ids``,
    ``feature_types`` and the file's other feature fields (``probe_ids`` for probe matrices).
    """
    import scanpy as sc

    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if p.is_dir():
                ad = sc.read_10x_mtx(p, var_names="gene_symbols", gex_only=True)
            else:
                ad = sc.read_10x_h5(p, gex_only=True)
    except Exception as e:
        raise SectionError(f"cannot read 10x count matrix {p}: {e}") from e
    ad.var_names_make_unique()
    if ad.n_obs == 0:
        raise SectionError(f"10x count matrix {p} has no barcodes")
    if ad.n_vars == 0:
        raise SectionError(f"10x count matrix {p} has no 'Gene Expression' features")
    X = sp.csr_matrix(ad.X)
    if X.nnz and X.data.min() < 0:
        raise SectionError(f"10x count matrix {p} holds negative counts")
    ad.X = X
    return ad


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


def _h5_attrs(h5: Path) -> dict[str, str]:
    import h5py

    with h5py.File(h5, "r") as f:
        attrs = dict(f.attrs)
    out = {}
    for k in ("chemistry_description", "software_version"):
        if k in attrs:
            v = attrs[k]
            out[k] = v.decode() if isinstance(v, bytes) else str(v)
    return out


def read_tissue_positions(spatial_dir: PathLike) -> tuple[pd.DataFrame, Path]:
    """The spot positions of a ``spatial/`` folder, indexed by barcode, and the file read.

    Columns: ``in_tissue``, ``array_row``, ``array_col`` (int), ``pxl_row_in_fullres``,
    ``pxl_col_in_fullres`` (float). Reads :data:`POSITION_FILES` (the first one present).
    """
    d = Path(spatial_dir)
    path = next((d / n for n in POSITION_FILES if (d / n).is_file()), None)
    if path is None:
        raise SectionError(
            f"Visium spot positions file not found in {d}: expected one of {', '.join(POSITION_FILES)}"
        )
    try:
        if path.suffix == ".parquet":
            pos = pd.read_parquet(path)
        else:
            with open(path) as fh:
                first = fh.readline()
            has_header = "in_tissue" in first or path.name == "tissue_positions.csv"
            pos = pd.read_csv(
                path, header=0 if has_header else None, names=None if has_header else POSITION_COLUMNS
            )
    except Exception as e:
        raise SectionError(f"cannot read Visium spot positions file {path}: {e}") from e
    pos.columns = [str(c).strip() for c in pos.columns]
    missing = [c for c in POSITION_COLUMNS if c not in pos.columns]
    if missing:
        raise SectionError(
            f"Visium spot positions file {path} lacks column(s) {missing}; found {list(pos.columns)[:8]}"
        )
    pos = pos.set_index(pos["barcode"].astype(str))[list(POSITION_COLUMNS[1:])]
    if not pos.index.is_unique:
        dup = pos.index[pos.index.duplicated()][0]
        raise SectionError(f"Visium spot positions file {path}: barcode {dup!r} occurs more than once")
    for c in POSITION_COLUMNS[1:]:
        v = pd.to_numeric(pos[c], errors="coerce")
        if v.isna().any():
            i = int(np.argmax(v.isna().to_numpy()))
            raise SectionError(
                f"Visium spot positions file {path}: column {c!r} has a non-numeric or missing "
                f"value for barcode {pos.index[i]!r}"
            )
        pos[c] = v.astype(int) if c in POSITION_COLUMNS[1:4] else v.astype(np.float64)
    return pos, path


def _read_png(path: Path) -> np.ndarray:
    """A Space Ranger image as RGB uint8 (16-bit and greyscale PNGs scaled by their range)."""
    return np.array(open_slide(path, check_blank=False).level0)


def _find_image(name: str, *folders: Path) -> Path:
    for d in folders:
        if (d / name).is_file():
            return d / name
    return require_file(folders[0] / name, f"Visium {name.split('_')[1]} image")


def _hd_bin_folder(outs: Path, bin_size_um: int) -> Path:
    bins = visium_hd_bins(outs)
    if int(bin_size_um) not in bins:
        raise SectionError(
            f"Visium HD output {outs}: no {int(bin_size_um)} um bins (binned_outputs/"
            f"square_{int(bin_size_um):03d}um); bin sizes present: "
            f"{', '.join(f'{b} um' for b in bins)}"
        )
    return bins[int(bin_size_um)]


def read_visium(
    path: PathLike,
    *,
    library_id: str | None = None,
    source_image_path: PathLike | None = None,
    patient: str = "",
    count_file: str | None = None,
    bin_size_um: int = 8,
) -> AnnData:
    """Read a Space Ranger ``outs/`` folder (or its parent), Visium or Visium HD, as one section.

    Parameters
    ----------
    path
        The ``outs`` folder, or a folder that contains ``outs/``.
    library_id
        Section name; default: the ``library_ids`` attribute of an ``.h5`` matrix, else the
        sample folder's name.
    source_image_path
        The full-resolution image Space Ranger was run on (for CytAssist runs the H&E, not
        ``cytassist_image.tiff``); see the module docstring for the coordinate frame used with
        and without it.
    patient
        Patient/donor id stored in ``obs["patient"]``.
    count_file
        Matrix file or MEX folder name inside ``outs`` (or inside the HD bin folder); default:
        the first of :data:`COUNT_FILES` present.
    bin_size_um
        Visium HD only: the bin size to read (a folder ``binned_outputs/square_NNNum``).
    """
    p = Path(path)
    if not p.exists():
        raise SectionError(f"Visium folder not found: {p}")
    outs = find_outs_dir(p, count_file)
    if outs is None:
        if not (p / "spatial").is_dir() and not (p / "outs" / "spatial").is_dir():
            raise SectionError(f"{p}: not a Space Ranger outs folder (no spatial/ sub-folder)")
        base = p / "outs" if (p / "outs" / "spatial").is_dir() else p
        wanted = count_file or " or ".join(COUNT_FILES)
        raise SectionError(f"Visium count matrix not found in {base}: expected {wanted}")
    hd = bool(visium_hd_bins(outs))
    data_dir = _hd_bin_folder(outs, bin_size_um) if hd else outs
    matrix = _matrix_in(data_dir, count_file)
    if matrix is None:
        wanted = count_file or " or ".join(COUNT_FILES)
        raise SectionError(f"Visium count matrix not found in {data_dir}: expected {wanted}")
    spatial_dir = data_dir / "spatial"
    image_dirs = (spatial_dir, outs / "spatial") if hd else (spatial_dir,)
    sf_file = require_file(spatial_dir / "scalefactors_json.json", "Visium scale factors file")
    try:
        scalef = json.loads(sf_file.read_text())
        hs = float(scalef["tissue_hires_scalef"])
        ls = float(scalef["tissue_lowres_scalef"])
        sd = float(scalef["spot_diameter_fullres"])
        mpp = float(scalef.get("microns_per_pixel", 0.0)) or (
            float(bin_size_um) / sd if hd else THEORETICAL_SPOT_UM / sd
        )
    except (ValueError, KeyError, TypeError, ZeroDivisionError) as e:
        raise SectionError(f"invalid Visium scale factors file {sf_file}: {e!r}") from e
    if hd:
        sd = float(bin_size_um) / mpp  # one bin, in full-res pixels
    pos, positions = read_tissue_positions(spatial_dir)
    hires_p = _find_image("tissue_hires_image.png", *image_dirs)
    lowres_p = _find_image("tissue_lowres_image.png", *image_dirs)
    hires = _read_png(hires_p)
    lowres = _read_png(lowres_p)

    ad = read_count_matrix(matrix)
    rows = pos.index.get_indexer(ad.obs_names)
    missing = rows < 0
    if missing.any():
        raise SectionError(
            f"{int(missing.sum())} of {ad.n_obs} barcodes of {matrix} have no row in {positions} "
            f"(e.g. {ad.obs_names[np.argmax(missing)]!r}); are they from the same run?"
        )
    pos = pos.iloc[rows]
    under = (pos["in_tissue"] == 1).to_numpy()
    if not under.all():
        if not under.any():
            raise SectionError(
                f"none of the {ad.n_obs} barcodes of {matrix} is under tissue (in_tissue == 1 in {positions})"
            )
        warnings.warn(
            f"{matrix}: kept {int(under.sum())} of {ad.n_obs} barcodes under tissue "
            f"(in_tissue == 1 in {positions})",
            stacklevel=2,
        )
        ad, pos = ad[under].copy(), pos.iloc[under]
    xy = pos[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(dtype=np.float64)

    lib = (
        library_id
        or (_library_id_from_h5(matrix) if matrix.is_file() else None)
        or (outs.parent.name if outs.name == "outs" else outs.name)
    )
    for img, img_p, is_frame in ((hires, hires_p, source_image_path is None), (lowres, lowres_p, False)):
        try:
            check_not_blank(img, img_p)
        except SectionError as e:
            if is_frame:
                raise SectionError(
                    f"{e}; the section would be built on it: pass the full-resolution image "
                    "Space Ranger was run on as source_image_path"
                ) from e
            warnings.warn(str(e), stacklevel=2)
    if source_image_path is not None:
        src = require_file(source_image_path, "source image")
        source = open_slide(src)  # any bit depth; a blank source image is refused
        shape = source.shape
        decoded_like_slide = not source.is_lazy  # TIFFs go by is_whole_slide
        frame_scale = 1.0
        images = {"hires": hires, "lowres": lowres}
        sfs = {"tissue_hires_scalef": hs, "tissue_lowres_scalef": ls}
    else:
        src = hires_p
        decoded_like_slide = True  # a 16-bit PNG is scaled by its range, never clipped
        frame_scale = hs
        shape = hires.shape
        xy = xy * hs
        sd = sd * hs
        images = {"lowres": lowres}
        sfs = {"tissue_lowres_scalef": ls / hs}
    check_spots_inside(
        xy, shape[0], shape[1], spot_ids=ad.obs_names, spots_file=positions, image_file=src
    )

    adata = make_section(
        ad.X.astype(np.float32),
        ad.var_names,
        ad.obs_names,
        xy,
        section=str(lib),
        patient=patient,
        array_row=pos["array_row"].to_numpy(),
        array_col=pos["array_col"].to_numpy(),
        image_path=Path(src).resolve(),
        image_shape=tuple(shape),
        spot_diameter_fullres=sd,
    )
    for c in ad.var.columns:
        adata.var[c] = ad.var[c].to_numpy()
    adata.obs["in_tissue"] = pos["in_tissue"].to_numpy(dtype=int)
    entry = adata.uns["spatial"][str(lib)]
    entry["images"] = images
    entry["scalefactors"].update(sfs)
    if "fiducial_diameter_fullres" in scalef:
        entry["scalefactors"]["fiducial_diameter_fullres"] = (
            float(scalef["fiducial_diameter_fullres"]) * frame_scale
        )
    meta = entry["metadata"]
    if matrix.is_file():
        meta.update(_h5_attrs(matrix))
    cytassist = next(
        (d / "cytassist_image.tiff" for d in image_dirs if (d / "cytassist_image.tiff").is_file()), None
    )
    meta.update(
        {
            "platform": "visium_hd" if hd else "visium",
            "outs_path": str(outs.resolve()),
            "count_matrix_path": str(matrix.resolve()),
            "positions_path": str(positions.resolve()),
            "frame": "fullres" if source_image_path is not None else "tissue_hires_image",
            "frame_scale": float(frame_scale),
            "microns_per_pixel": float(mpp),
            "spot_shape": "square" if hd else "circle",
            "spaceranger_scalefactors": {
                k: float(v) for k, v in scalef.items() if isinstance(v, (int, float))
            },
        }
    )
    if decoded_like_slide:
        meta["image_reader"] = "slide"
    if hd:
        meta["bin_size_um"] = int(bin_size_um)
    if cytassist is not None:
        meta["cytassist_image_path"] = str(cytassist.resolve())
    return adata
