"""Readers for the legacy Spatial Transcriptomics (ST) platform and the her2st data set.

Legacy ST (Stahl et al. 2016) ships one section as

- a **counts** table (``.tsv`` or ``.tsv.gz``): spots x genes, tab-separated; the first column
  is the spot id ``"{x}x{y}"`` (array position), the other columns are genes;
- a **spot file** (``*_selection.tsv``, from the ST spot detector) with columns
  ``x y pixel_x pixel_y`` and usually ``new_x new_y selected``;
- optionally the **H&E image** the pixel coordinates refer to.

:func:`read_legacy_st` reads such a triple by explicit paths; :func:`read_her2st` reads one
section of the HER2-positive breast cancer data of Andersson et al. (2021) in the layout of the
authors' repository (almaan/her2st)::

    data/ST-cnts/{S}.tsv.gz
    data/ST-spotfiles/{S}_selection.tsv
    data/ST-imgs/{P}/{S}/*.jpg                          (P = first letter; 6 sections only)
    res/ST-cluster/lbl/{S}-cluster-annotation.tsv.gz     (optional -> obs["her2st_cluster"])
    res/ST-deconv/props/{tier}.zip: {tier}/{S}-proportion.tsv
                                                         (optional -> obsm["stereoscope_{tier}"])

The spot diameter in pixels is not stored by the platform: it is computed from the lattice as
``pitch * spot_diameter_um / center_distance_um``, where the pitch (pixels per array step) is
the median pixel distance between lattice neighbours divided by their array distance.
``obsm["spatial"]`` is the spot file's ``pixel_x, pixel_y`` (the image's own pixels), and
``metadata["microns_per_pixel"]`` = ``center_distance_um / pitch``.
"""

from __future__ import annotations

import gzip
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.images import open_slide
from ..data.model import LOWRES_MAX_SIDE, SectionError, make_section
from ._common import check_spots_inside, estimate_pixel_pitch, require_file

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = [
    "read_legacy_st",
    "read_her2st",
    "her2st_paths",
    "list_her2st_sections",
    "is_her2st_root",
    "read_counts_table",
    "read_spot_file",
    "reader_report",
    "looks_like_counts_file",
    "find_companions",
    "section_stem",
    "SPOT_ID_PATTERN",
    "IMAGE_SUFFIXES",
]

PathLike = str | os.PathLike

#: legacy ST spot ids: "{x}x{y}" with integer array positions
SPOT_ID_PATTERN = re.compile(r"^\s*(-?\d+)x(-?\d+)\s*$")
#: image file suffixes looked for beside counts files and in the her2st image folders
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
#: the minimum fraction of counts spots that must be found in the spot file
MIN_MATCH_FRACTION = 0.5
SPOT_FILE_COLUMNS = ("x", "y", "pixel_x", "pixel_y")
DECONV_TIERS = ("major", "minor", "subset")


# --------------------------------------------------------------------------------------------
# low-level tables
# --------------------------------------------------------------------------------------------
def read_counts_table(path: PathLike) -> pd.DataFrame:
    """Read a legacy ST counts table (spots x genes) and check it; return a numeric DataFrame.

    Raises :class:`SectionError` naming ``path`` for: a missing or unparsable file, no spots,
    no genes, duplicated spot ids, and non-numeric, missing, infinite, negative or non-integer
    (normalised) values, naming the first column holding one, its spot and value.
    """
    p = require_file(path, "counts file")
    try:
        df = pd.read_csv(p, sep="\t", index_col=0, low_memory=False)
    except pd.errors.EmptyDataError as e:
        raise SectionError(f"counts file {p} is empty") from e
    except (EOFError, OSError, zipfile.BadZipFile) as e:
        raise SectionError(
            f"counts file {p} is truncated or not a valid (gzip) text file: {e}"
        ) from e
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise SectionError(f"cannot parse counts file {p} as a tab-separated table: {e}") from e
    if df.shape[1] == 0:
        raise SectionError(
            f"counts file {p} has no gene columns (found only the spot id column; is it tab-separated?)"
        )
    if df.shape[0] == 0:
        raise SectionError(f"counts file {p} has no spots (only a header line)")
    df.index = df.index.astype(str)
    if not df.index.is_unique:
        dup = df.index[df.index.duplicated()].unique()
        raise SectionError(
            f"counts file {p}: {len(dup)} spot id(s) occur more than once, e.g. {dup[0]!r}"
        )

    bad_cols = [c for c, t in df.dtypes.items() if t.kind not in "iufb"]
    for col in bad_cols:
        num = pd.to_numeric(df[col], errors="coerce")
        bad = num.isna() & df[col].notna()
        if bad.any():
            spot = bad.index[np.argmax(bad.to_numpy())]
            raise SectionError(
                f"counts file {p}: non-numeric count {df.at[spot, col]!r} in column {col!r} "
                f"(spot {spot!r})"
            )
        df[col] = num
    values = df.to_numpy(dtype=np.float64, na_value=np.nan)
    checks = (
        (np.isnan(values), "missing value(s) (empty cells or short lines, is the file truncated?)", ""),
        (np.isinf(values), "infinite value(s)", "; raw counts must be finite"),
        (values < 0, "negative count(s)", "; raw counts must be >= 0"),
        (
            np.mod(np.nan_to_num(values), 1) != 0,
            "non-integer value(s)",
            "; the table looks normalised or log-transformed, raw integer counts are expected",
        ),
    )
    for bad, what, hint in checks:
        if bad.any():
            c = int(np.flatnonzero(bad.any(axis=0))[0])
            r = int(np.flatnonzero(bad[:, c])[0])
            raise SectionError(
                f"counts file {p}: {int(bad.sum())} {what}, first in column {df.columns[c]!r}: "
                f"{values[r, c]:g} at spot {df.index[r]!r}{hint}"
            )
    return pd.DataFrame(values, index=df.index, columns=df.columns.astype(str))


def read_spot_file(path: PathLike) -> pd.DataFrame:
    """Read a legacy ST spot file; return it indexed by the spot id ``"{x}x{y}"``.

    The columns ``x, y, pixel_x, pixel_y`` are required (``selected`` is kept when present).
    """
    p = require_file(path, "spot file")
    try:
        df = pd.read_csv(p, sep="\t")
    except pd.errors.EmptyDataError as e:
        raise SectionError(f"spot file {p} is empty") from e
    except (EOFError, OSError) as e:
        raise SectionError(
            f"spot file {p} is truncated or not a valid (gzip) text file: {e}"
        ) from e
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise SectionError(f"cannot parse spot file {p} as a tab-separated table: {e}") from e
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in SPOT_FILE_COLUMNS if c not in df.columns]
    if missing:
        raise SectionError(
            f"spot file {p} lacks column(s) {missing}; found {list(df.columns)[:10]} "
            f"(expected a tab-separated table with columns {' '.join(SPOT_FILE_COLUMNS)} [selected])"
        )
    if len(df) == 0:
        raise SectionError(f"spot file {p} has no spots (only a header line)")
    for c in [*SPOT_FILE_COLUMNS, *(["selected"] if "selected" in df.columns else [])]:
        num = pd.to_numeric(df[c], errors="coerce")
        bad = num.isna()
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            v = df[c].iloc[i]
            first = "an empty/NA cell" if pd.isna(v) else repr(str(v))
            raise SectionError(
                f"spot file {p}: column {c!r} has {int(bad.sum())} non-numeric or missing value(s), "
                f"first {first} on data line {i + 1}"
            )
        df[c] = num
    for c in ("x", "y"):
        if not np.all(np.mod(df[c].to_numpy(), 1) == 0):
            raise SectionError(f"spot file {p}: array positions in column {c!r} must be integers")
    df["x"] = df["x"].astype(int)
    df["y"] = df["y"].astype(int)
    df.index = pd.Index([f"{x}x{y}" for x, y in zip(df["x"], df["y"], strict=True)])
    if not df.index.is_unique:
        dup = df.index[df.index.duplicated()].unique()
        raise SectionError(
            f"spot file {p}: {len(dup)} array position(s) occur more than once, e.g. {dup[0]}"
        )
    return df


def _normalise_spot_id(s: str) -> str:
    m = SPOT_ID_PATTERN.match(str(s))
    return f"{int(m.group(1))}x{int(m.group(2))}" if m else str(s)


def reader_report(
    n_counts: int, kept: int, not_under_tissue: int, without_spot_row: int, counts, spots
) -> dict[str, Any]:
    """What a legacy ST read kept of the counts table's spots, and why it dropped the others.

    Returns ``{"n_counts_spots", "kept", "not_under_tissue", "without_spot_row", "message"}``
    (stored as ``uns["spatial"][section]["metadata"]["reader_report"]``); ``message`` reads
    "kept N of M spots of COUNTS: K not under tissue (selected == 0 in SPOTS), J without a
    spot-file row".
    """
    return {
        "n_counts_spots": int(n_counts),
        "kept": int(kept),
        "not_under_tissue": int(not_under_tissue),
        "without_spot_row": int(without_spot_row),
        "message": (
            f"kept {int(kept)} of {int(n_counts)} spots of {counts}: {int(not_under_tissue)} not "
            f"under tissue (selected == 0 in {spots}), {int(without_spot_row)} without a "
            "spot-file row"
        ),
    }


# --------------------------------------------------------------------------------------------
# the generic legacy ST reader
# --------------------------------------------------------------------------------------------
def read_legacy_st(
    counts: PathLike,
    spots: PathLike,
    image: PathLike | None = None,
    *,
    section: str | None = None,
    patient: str | None = None,
    spot_diameter_um: float = 100.0,
    center_distance_um: float = 200.0,
    spot_diameter_px: float | None = None,
    min_match_fraction: float = MIN_MATCH_FRACTION,
) -> AnnData:
    """Read one legacy ST section from a counts table, a spot file and (optionally) an image.

    Parameters
    ----------
    counts
        Counts table (``.tsv``/``.tsv.gz``): first column spot id ``"{x}x{y}"``, then genes.
    spots
        Spot file with columns ``x y pixel_x pixel_y`` (``selected`` honoured when present).
    image
        Full-resolution H&E image the pixel coordinates refer to (read once, stored only
        downscaled; its path is kept for :func:`~napari_scr2st.data.model.get_fullres_image`).
    section
        Section name (library id); default: the counts file name without ``.tsv[.gz]``.
    patient
        Patient/donor id (``""`` when unknown).
    spot_diameter_um, center_distance_um
        Physical spot diameter and centre-to-centre distance (legacy ST: 100 and 200 um).
    spot_diameter_px
        Override the estimated spot diameter in full-resolution pixels.
    min_match_fraction
        Error if fewer than this fraction of the counts spots are found in the spot file.

    Returns
    -------
    A section AnnData (see :mod:`napari_scr2st.data.model`): ``obs_names`` are the spot ids
    ``"{x}x{y}"``; ``obs["array_col"] = x``, ``obs["array_row"] = y``; ``obsm["spatial"]`` is
    ``(pixel_x, pixel_y)``.
    """
    counts_p = require_file(counts, "counts file")
    spots_p = require_file(spots, "spot file")
    image_p = require_file(image, "image file") if image is not None else None
    if section is None:
        section = (
            re.sub(r"\.tsv(\.gz)?$|\.txt(\.gz)?$", "", counts_p.name, flags=re.I) or counts_p.stem
        )

    df = read_counts_table(counts_p)
    df.index = pd.Index([_normalise_spot_id(s) for s in df.index])
    spot_df = read_spot_file(spots_p)

    # ---- join counts and spot file by "{x}x{y}" -------------------------------------------
    in_spots = df.index.isin(spot_df.index)
    n_match, n_counts = int(in_spots.sum()), len(df)
    if n_match == 0:
        raise SectionError(
            f"none of the {n_counts} spot ids of counts file {counts_p} (e.g. {list(df.index[:3])}) "
            f"match the {len(spot_df)} spots of spot file {spots_p} (e.g. {list(spot_df.index[:3])}); "
            "are they files of the same section?"
        )
    if n_match < min_match_fraction * n_counts:
        raise SectionError(
            f"only {n_match} of {n_counts} spot ids of counts file {counts_p} match spot file "
            f"{spots_p} ({len(spot_df)} spots); fewer than {min_match_fraction:.0%}: are they files "
            "of the same section?"
        )
    df = df.loc[in_spots]
    pos = spot_df.loc[df.index]
    n_not_under = 0
    if "selected" in pos.columns:
        keep = (pos["selected"] == 1).to_numpy()
        if not keep.any():
            raise SectionError(
                f"none of the {len(pos)} matched spots is selected (selected == 1) in spot file {spots_p}"
            )
        n_not_under = int((~keep).sum())
        df, pos = df.loc[keep], pos.loc[keep]
    report = reader_report(n_counts, len(df), n_not_under, n_counts - n_match, counts_p, spots_p)
    if report["kept"] < n_counts:
        warnings.warn(report["message"], stacklevel=2)

    xy = pos[["pixel_x", "pixel_y"]].to_numpy(dtype=np.float64)
    arr = pos[["x", "y"]].to_numpy()
    if spot_diameter_px is None:
        pitch = estimate_pixel_pitch(arr, xy, where=str(spots_p))
        spot_diameter_px = pitch * float(spot_diameter_um) / float(center_distance_um)
    else:
        pitch = float(spot_diameter_px) * float(center_distance_um) / float(spot_diameter_um)

    # ---- image ---------------------------------------------------------------------------------
    slide = None
    if image_p is not None:
        slide = open_slide(image_p)  # RGB uint8 whatever the bit depth; a blank image is refused
        check_spots_inside(
            xy,
            slide.shape[0],
            slide.shape[1],
            spot_ids=df.index,
            spots_file=spots_p,
            image_file=image_p,
        )

    X = sp.csr_matrix(df.to_numpy(dtype=np.float32))
    adata = make_section(
        X,
        df.columns,
        df.index,
        xy,
        section=str(section),
        patient=patient or "",
        array_row=arr[:, 1],
        array_col=arr[:, 0],
        image_path=image_p.resolve() if image_p is not None else None,
        image_shape=slide.shape if slide is not None else None,
        spot_diameter_fullres=spot_diameter_px,
    )
    entry = adata.uns["spatial"][str(section)]
    if slide is not None:
        low, scale = slide.thumbnail(LOWRES_MAX_SIDE)
        entry["images"]["lowres"] = np.array(low)
        entry["scalefactors"]["tissue_lowres_scalef"] = float(scale)
        if not slide.is_lazy:  # decoded like open_slide (16-bit PNG); TIFFs go by is_whole_slide
            entry["metadata"]["image_reader"] = "slide"
    entry["metadata"]["reader_report"] = report
    meta = adata.uns["spatial"][str(section)]["metadata"]
    meta.update(
        {
            "platform": "legacy_st",
            "counts_path": str(counts_p.resolve()),
            "spots_path": str(spots_p.resolve()),
            "pixel_pitch": float(pitch),
            "microns_per_pixel": float(center_distance_um) / float(pitch),
            "spot_diameter_um": float(spot_diameter_um),
            "center_distance_um": float(center_distance_um),
        }
    )
    return adata


# --------------------------------------------------------------------------------------------
# her2st layout
# --------------------------------------------------------------------------------------------
def is_her2st_root(root: PathLike) -> bool:
    """True if ``root`` looks like the her2st repository (has ``data/ST-cnts`` and ``data/ST-spotfiles``)."""
    r = Path(root)
    return (r / "data" / "ST-cnts").is_dir() and (r / "data" / "ST-spotfiles").is_dir()


def list_her2st_sections(root: PathLike) -> list[str]:
    """Section ids with a counts file under ``root/data/ST-cnts`` (sorted)."""
    d = Path(root) / "data" / "ST-cnts"
    if not d.is_dir():
        return []
    names = {
        re.sub(r"\.tsv(\.gz)?$", "", p.name)
        for p in d.iterdir()
        if re.search(r"\.tsv(\.gz)?$", p.name)
    }
    return sorted(names)


def _find_image(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    imgs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return imgs[0] if imgs else None


def her2st_paths(root: PathLike, section: str) -> dict[str, Path | None]:
    """Paths of one her2st section's files; optional ones are ``None`` when absent.

    Keys: ``counts``, ``spots`` (always paths, may not exist), ``image``, ``cluster``,
    and ``deconv_{tier}`` for the stereoscope zip files (``None`` when absent).
    """
    r = Path(root)
    s = str(section)
    counts = r / "data" / "ST-cnts" / f"{s}.tsv.gz"
    if not counts.exists() and (r / "data" / "ST-cnts" / f"{s}.tsv").exists():
        counts = r / "data" / "ST-cnts" / f"{s}.tsv"
    out: dict[str, Path | None] = {
        "counts": counts,
        "spots": r / "data" / "ST-spotfiles" / f"{s}_selection.tsv",
        "image": _find_image(r / "data" / "ST-imgs" / s[:1] / s),
    }
    cl = r / "res" / "ST-cluster" / "lbl" / f"{s}-cluster-annotation.tsv.gz"
    out["cluster"] = cl if cl.is_file() else None
    for tier in DECONV_TIERS:
        z = r / "res" / "ST-deconv" / "props" / f"{tier}.zip"
        out[f"deconv_{tier}"] = z if z.is_file() else None
    return out


def read_her2st(
    root: PathLike,
    section: str,
    *,
    load_image: bool = True,
    annotations: bool = True,
    deconv_tiers: tuple[str, ...] = ("major",),
    **kwargs,
) -> AnnData:
    """Read her2st section ``section`` (e.g. ``"C3"``) from the repository folder ``root``.

    The patient is the first letter of the section. The image (six sections have one) is read
    when present and ``load_image``. With ``annotations``, the authors' expression clusters go
    to ``obs["her2st_cluster"]`` and the stereoscope proportions of each tier in
    ``deconv_tiers`` to ``obsm["stereoscope_{tier}"]`` (a DataFrame, rows = spots, NaN for
    spots without a value); missing annotation files are skipped silently, unreadable ones
    with a warning. Other keyword arguments go to :func:`read_legacy_st`.
    """
    r = Path(root)
    if not r.is_dir():
        raise SectionError(f"her2st folder not found: {r}")
    section = str(section).strip()
    paths = her2st_paths(r, section)
    if not paths["counts"].exists():
        avail = list_her2st_sections(r)
        hint = (
            f"; available sections: {', '.join(avail)}"
            if avail
            else " (no data/ST-cnts/*.tsv.gz there: is it the her2st folder?)"
        )
        raise SectionError(
            f"her2st section {section!r}: counts file not found: {paths['counts']}{hint}"
        )
    kwargs.setdefault("patient", section[:1])
    adata = read_legacy_st(
        paths["counts"],
        paths["spots"],
        paths["image"] if load_image else None,
        section=section,
        **kwargs,
    )
    meta = adata.uns["spatial"][section]["metadata"]
    meta["platform"] = "her2st"
    if not load_image and paths["image"] is not None:
        meta["available_image_path"] = str(paths["image"].resolve())
    if annotations:
        _attach_cluster(adata, paths["cluster"])
        for tier in deconv_tiers:
            _attach_deconv(adata, paths.get(f"deconv_{tier}"), section, tier)
    return adata


def _attach_cluster(adata, path: Path | None) -> None:
    if path is None:
        return
    try:
        lbl = pd.read_csv(path, sep="\t")
        key = [f"{int(x)}x{int(y)}" for x, y in zip(lbl["x"], lbl["y"], strict=True)]
        labels = pd.Series(lbl["label"].astype(str).to_numpy(), index=key)
        labels = labels[~labels.index.duplicated()]
    except Exception as e:  # optional extra: never fail the read for it
        warnings.warn(f"ignoring unreadable her2st cluster annotation {path}: {e}", stacklevel=3)
        return
    values = labels.reindex(adata.obs_names)
    cats = sorted(labels.unique(), key=lambda v: (len(v), v))
    adata.obs["her2st_cluster"] = pd.Categorical(values.to_numpy(), categories=cats)


def _attach_deconv(adata, zpath: Path | None, section: str, tier: str) -> None:
    if zpath is None:
        return
    member = f"{tier}/{section}-proportion.tsv"
    try:
        with zipfile.ZipFile(zpath) as z:
            if member not in z.namelist():
                return
            with z.open(member) as fh:
                props = pd.read_csv(fh, sep="\t", index_col=0)
        props.index = pd.Index([_normalise_spot_id(s) for s in props.index.astype(str)])
        props = props.apply(pd.to_numeric, errors="raise").astype(np.float32)
    except Exception as e:  # optional extra: never fail the read for it
        warnings.warn(
            f"ignoring unreadable stereoscope proportions {zpath}:{member}: {e}", stacklevel=3
        )
        return
    props = props[~props.index.duplicated()]
    props.columns = [str(c) for c in props.columns]
    adata.obsm[f"stereoscope_{tier}"] = props.reindex(adata.obs_names)


def _peek_first_lines(path: Path, n: int = 2) -> list[str]:
    """The first ``n`` lines of a (possibly gzipped) text file, or [] if unreadable."""
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rt", errors="replace") as fh:  # type: ignore[operator]
            return [fh.readline() for _ in range(n)]
    except Exception:
        return []


def looks_like_counts_file(path: PathLike) -> bool:
    """Cheap check: a ``.tsv[.gz]`` whose second line starts with a ``"{x}x{y}"`` spot id."""
    p = Path(path)
    if not p.is_file() or not re.search(r"\.(tsv|txt)(\.gz)?$", p.name, flags=re.I):
        return False
    lines = _peek_first_lines(p, 2)
    if len(lines) < 2 or "\t" not in lines[0]:
        return False
    return bool(SPOT_ID_PATTERN.match(lines[1].split("\t", 1)[0]))


#: name endings that mark a counts table, stripped to get the section's stem ("S1_counts.tsv" -> "S1")
COUNTS_NAME_SUFFIXES = ("_counts", "-counts", ".counts", "_stdata", "_cnts", "_count_matrix")
#: spot-file names looked for beside a counts table of section stem ``{S}``, in order
SPOT_FILE_NAMES = (
    "{S}_selection.tsv",
    "{S}_selection.tsv.gz",
    "{S}_spots.tsv",
    "{S}_spots.tsv.gz",
    "spots.tsv",
    "selection.tsv",
)
_SEPARATORS = ("_", "-", ".", " ")


def section_stem(counts: PathLike) -> str:
    """The section name of a counts table: its file name without ``.tsv[.gz]``/``.txt[.gz]`` and
    without one of :data:`COUNTS_NAME_SUFFIXES` (``S1_counts.tsv`` and ``S1.tsv.gz`` give ``S1``)."""
    name = re.sub(r"\.(tsv|txt)(\.gz)?$", "", Path(counts).name, flags=re.I)
    for suf in COUNTS_NAME_SUFFIXES:
        if name.lower().endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)]
    return name


def _by_stem(folder: Path, stem: str, exclude: Path, wanted) -> Path | None:
    """The only file of ``folder`` named ``{stem}`` + separator + ... that ``wanted(rest)`` accepts."""
    s = stem.lower()
    hits = []
    for f in sorted(folder.iterdir()):
        n = f.name.lower()
        if f == exclude or not f.is_file() or not n.startswith(s) or len(n) == len(s):
            continue
        if n[len(s)] in _SEPARATORS and wanted(n[len(s) :]):
            hits.append(f)
    return hits[0] if len(hits) == 1 else None


def _is_spot_file_rest(rest: str) -> bool:
    return ("spot" in rest or "selection" in rest) and bool(re.search(r"\.(tsv|txt)(\.gz)?$", rest))


def find_companions(counts: PathLike) -> dict[str, Any]:
    """Locate the spot file, image and (if any) her2st root for a counts file.

    Returns ``{"section": str, "spots": Path | None, "image": Path | None,
    "her2st_root": Path | None}``. The section is :func:`section_stem` of the file name; a
    counts file at ``ROOT/data/ST-cnts/{S}.tsv.gz`` is recognised as part of the her2st layout.
    Elsewhere the files beside it are paired by that stem ``S``: the spot file is the first of
    :data:`SPOT_FILE_NAMES` present, else the only ``{S}_*`` file naming ``spot`` or
    ``selection`` (``.tsv``/``.txt``); the image is ``{S}.{jpg,png,tif,...}``, else the only
    ``{S}_*`` image (e.g. ``S1_HE.jpg``). Ambiguous or absent companions are ``None``.
    """
    p = Path(counts)
    section = section_stem(p)
    out: dict[str, Any] = {"section": section, "spots": None, "image": None, "her2st_root": None}
    if p.parent.name == "ST-cnts" and p.parent.parent.name == "data":
        root = p.parent.parent.parent
        if is_her2st_root(root):
            out["her2st_root"] = root
            hp = her2st_paths(root, section)
            out["spots"] = hp["spots"] if hp["spots"].exists() else None
            out["image"] = hp["image"]
            return out
    d = p.parent
    for name in SPOT_FILE_NAMES:
        if (d / name.format(S=section)).is_file():
            out["spots"] = d / name.format(S=section)
            break
    else:
        out["spots"] = _by_stem(d, section, p, _is_spot_file_rest)
    for suf in IMAGE_SUFFIXES:
        for cand in (d / f"{section}{suf}", d / f"{section}{suf.upper()}"):
            if cand.is_file():
                out["image"] = cand
                break
        if out["image"] is not None:
            break
    else:
        out["image"] = _by_stem(d, section, p, lambda rest: rest.endswith(IMAGE_SUFFIXES))
    return out
