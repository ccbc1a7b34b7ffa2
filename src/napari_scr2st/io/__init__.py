"""Readers: files and folders -> section AnnData (see :mod:`napari_scr2st.data.model`).

Formats (names as returned by :func:`sniff`):

``"legacy_st"``
    a legacy ST counts table (``.tsv``/``.tsv.gz``, first column ``"{x}x{y}"``); the spot file
    and image are found beside it or in the her2st layout (:func:`read_legacy_st`);
``"her2st"``
    the root folder of the her2st repository; give ``section=`` (:func:`read_her2st`);
``"visium"``
    a Space Ranger ``outs/`` folder or its parent, Visium or Visium HD (:func:`read_visium`);
``"h5ad"``
    an AnnData file in the squidpy convention (:func:`read_h5ad_section`);
``"spatialdata"``
    a SpatialData zarr store with a table annotating spot circles and an image
    (:func:`read_spatialdata`; :func:`write_spatialdata` and :func:`write_run_spatialdata`
    write a section or a whole run as one);
``"hest"``
    a HEST-1k folder (``st/{id}.h5ad``, ``metadata/{id}.json``, ``wsis/{id}.tif``); give
    ``section=`` (the sample id) when it holds several samples (:func:`read_hest`).
``"folder"``
    a plain folder of sections: counts tables paired with their spot files and images by
    file-name stem (``S1_counts.tsv`` or ``S1.tsv.gz`` + ``S1_spots.tsv`` or
    ``S1_selection.tsv`` + ``S1.jpg``; see :func:`~.legacy_st.find_companions`), ``.h5ad``
    files, Space Ranger folders and SpatialData stores side by side (:func:`read_collection`);
``"image"``
    an H&E image before sequencing (``.tif``/``.tiff``/``.ome.tif``/``.svs``/``.ndpi``/
    ``.jpg``/``.jpeg``/``.png``), read as a section with spots but no genes
    (:func:`read_slide`; images inside a Space Ranger ``spatial/`` folder belong to that run
    and are not sniffed as ``"image"``).

:func:`read` dispatches on the format; :func:`read_collection` reads several sections into a
``{section: AnnData}`` dict. Every bad input raises
:class:`~napari_scr2st.data.model.SectionError` naming the file and the problem.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.images import SlideImage, is_image_file, open_slide
from ..data.model import SectionError
from .h5ad import read_h5ad_section, write_h5ad_section
from .hest import is_hest_root, list_hest_samples, read_hest
from .legacy_st import (
    find_companions,
    is_her2st_root,
    list_her2st_sections,
    looks_like_counts_file,
    read_her2st,
    read_legacy_st,
)
from .slide import read_layout, read_slide
from .spatialdata import (
    is_spatialdata_store,
    read_spatialdata,
    write_run_spatialdata,
    write_spatialdata,
)
from .visium import is_visium_dir, read_visium

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = [
    "FORMATS",
    "read",
    "sniff",
    "read_collection",
    "read_legacy_st",
    "read_her2st",
    "read_visium",
    "read_h5ad_section",
    "write_h5ad_section",
    "list_her2st_sections",
    "read_spatialdata",
    "write_spatialdata",
    "write_run_spatialdata",
    "read_hest",
    "list_hest_samples",
    "read_slide",
    "read_layout",
    "open_slide",
    "SlideImage",
]

PathLike = str | os.PathLike
FORMATS = ("legacy_st", "her2st", "visium", "h5ad", "spatialdata", "hest", "folder", "image")
#: entries of a folder looked at by :func:`sniff` to decide whether it is a folder of sections
SNIFF_MAX_ENTRIES = 500


def sniff(path: PathLike) -> str | None:
    """The format of ``path`` (one of :data:`FORMATS`) or ``None`` if it is not one we read.

    Cheap (looks at names, folder contents and at most the first two lines of a text file;
    a folder is ``"folder"`` when one of its first :data:`SNIFF_MAX_ENTRIES` entries is a
    counts table, an ``.h5ad`` file, a Space Ranger folder or a SpatialData store) and never
    raises, so napari's reader hook can call it on anything.
    """
    try:
        p = Path(path)
        if p.is_dir():
            if is_spatialdata_store(p):
                return "spatialdata"
            if is_hest_root(p):
                return "hest"
            if is_her2st_root(p):
                return "her2st"
            if is_visium_dir(p):
                return "visium"
            return "folder" if _holds_sections(p) else None
        if not p.is_file():
            return None
        if p.name.lower().endswith(".h5ad"):
            return "h5ad"
        if looks_like_counts_file(p):
            return "legacy_st"
        if is_image_file(p) and not (p.parent.name == "spatial" and is_visium_dir(p.parent.parent)):
            return "image"
    except (OSError, ValueError):
        return None
    return None


def _holds_sections(folder: Path) -> bool:
    for i, child in enumerate(sorted(folder.iterdir())):
        if i >= SNIFF_MAX_ENTRIES:
            return False
        if child.is_dir():
            if is_visium_dir(child) or is_spatialdata_store(child):
                return True
        elif child.name.lower().endswith(".h5ad") or looks_like_counts_file(child):
            return True
    return False


def read(
    path: PathLike, *, section: str | Iterable[str] | None = None, **kw: Any
) -> AnnData | dict[str, AnnData]:
    """Read ``path`` (any format of :func:`sniff`) as a section AnnData or a collection dict.

    - legacy ST counts file: the spot file and image beside it are found by the file-name stem
      (:func:`~.legacy_st.find_companions`); inside the her2st layout the section is read with
      :func:`read_her2st` (image and annotations included). ``spots=``/``image=`` give them
      explicitly, whatever their names; with either, ``path`` is read as a counts table
      whatever its name (its content is still checked).
    - folder of sections: :func:`read_collection` (a dict), or the one named by ``section=``.
    - her2st root: ``section="C3"`` gives one section, a list of ids a dict, ``None`` every
      section (a dict; about one second per section).
    - Space Ranger folder: one section (keywords go to :func:`read_visium`; ``image=`` names the
      original full-resolution H&E, read lazily, as ``source_image_path``).
    - ``.h5ad``: one section, or a dict when the file holds several (``section=`` picks one).
    - SpatialData store: one section (``table=``, ``image=``, ``shapes=`` pick elements;
      ``section=`` names it).
    - HEST folder: ``section="TENX95"`` gives that sample; ``None`` the only sample (an error
      listing the ids when there are several); a list of ids a dict.
    - image: a slide before sequencing, one section with no genes; keywords go to
      :func:`read_slide` (``platform=``, ``um_per_px=``, ``layout=``, ``spot_um=``,
      ``pitch_um=``, ``hexagonal=``); ``section=`` names it.
    """
    p = Path(path)
    if not p.exists():
        raise SectionError(f"file or folder not found: {p}")
    fmt = sniff(p)
    if fmt is None and p.is_file() and (kw.get("spots") is not None or kw.get("image") is not None):
        fmt = "legacy_st"  # companions given explicitly: a counts table under any name
    if fmt is None:
        raise SectionError(
            f"{p}: not a recognised spatial transcriptomics input; expected a legacy ST counts "
            "table (.tsv/.tsv.gz with '{x}x{y}' spot ids), a her2st folder, a Space Ranger outs "
            "folder (spatial/ + a feature-barcode matrix, or Visium HD binned_outputs/), an .h5ad file, "
            "a SpatialData .zarr store, a HEST folder (st/ + metadata/), a folder of such "
            "sections or an H&E image (.tif/.tiff/.svs/.ndpi/.jpg/.jpeg/.png); a counts table "
            "under another name is read when its spot file is given (--spots FILE on the "
            "command line, spots=PATH in Python)"
        )
    if fmt == "her2st":
        if section is None or not isinstance(section, str):
            return read_collection(p, sections=section, **kw)
        return read_her2st(p, section, **kw)
    if fmt == "visium":
        if section is not None:
            kw.setdefault("library_id", section)
        if "image" in kw:  # the original full-resolution H&E the run was aligned to
            kw["source_image_path"] = kw.pop("image")
        return read_visium(p, **kw)
    if fmt == "h5ad":
        return read_h5ad_section(p, section=section, **kw)
    if fmt == "spatialdata":
        return read_spatialdata(p, section=section if isinstance(section, str) else None, **kw)
    if fmt == "hest":
        if section is not None and not isinstance(section, str):
            return read_collection(p, sections=section, **kw)
        return read_hest(p, section, **kw)
    if fmt == "folder":
        if isinstance(section, str):
            return read_collection(p, sections=[section], **kw)[section]
        return read_collection(p, sections=section, **kw)
    if fmt == "image":
        if section is not None and not isinstance(section, str):
            raise SectionError(f"{p}: an image is one section; pass section= as a name, got {section!r}")
        return read_slide(p, section=section, **kw)
    # legacy ST counts table
    comp = find_companions(p)
    spots = kw.pop("spots", None)
    image = kw.pop("image", None)
    if comp["her2st_root"] is not None and spots is None and image is None:
        return read_her2st(comp["her2st_root"], comp["section"], **kw)
    spots = spots or comp["spots"]
    if spots is None:
        raise SectionError(
            f"no spot file found for counts file {p}: expected {comp['section']}_selection.tsv "
            f"(or {comp['section']}_spots.tsv, spots.tsv) in {p.parent}; give it with "
            "--spots FILE (scr2st command) or spots=PATH (Python)"
        )
    kw.setdefault("section", section if isinstance(section, str) else comp["section"])
    return read_legacy_st(p, spots, image or comp["image"], **kw)


def read_collection(
    root: PathLike, sections: Iterable[str] | None = None, **kw: Any
) -> dict[str, AnnData]:
    """Read several sections into ``{section: AnnData}``.

    ``root`` may be a her2st or HEST folder (``sections`` = section or sample ids, default all), an ``.h5ad``
    file (all or the named sections), or a folder whose entries are inputs :func:`sniff`
    recognises (Space Ranger folders, SpatialData stores, ``.h5ad`` files, counts tables
    paired with their spot files and images by stem; ``sections`` filters by section name).
    Images and spot files in such a folder are skipped: they are the companions of counts
    tables (read a slide before sequencing with :func:`read` or :func:`read_slide`), and so
    are sub-folders that are themselves folders of sections (no recursion).
    """
    r = Path(root)
    if not r.exists():
        raise SectionError(f"file or folder not found: {r}")
    wanted = None if sections is None else [str(s) for s in sections]
    fmt = sniff(r)
    if fmt == "her2st":
        names = wanted if wanted is not None else list_her2st_sections(r)
        return {s: read_her2st(r, s, **kw) for s in names}
    if fmt == "hest":
        names = wanted if wanted is not None else list_hest_samples(r)
        return {s: read_hest(r, s, **kw) for s in names}
    if fmt not in (None, "folder"):
        got = read(r, **kw)
        coll = got if isinstance(got, dict) else {_name_of(got): got}
    elif r.is_dir():
        coll = {}
        for child in sorted(r.iterdir()):
            if sniff(child) in (None, "image", "folder"):
                continue
            got = read(child, **kw)
            for a in got.values() if isinstance(got, dict) else [got]:
                name = _name_of(a)
                if name in coll:
                    raise SectionError(f"{child}: section {name!r} occurs twice in {r}")
                coll[name] = a
    else:
        raise SectionError(f"{r}: not a recognised input or folder of inputs")
    if wanted is not None:
        missing = [s for s in wanted if s not in coll]
        if missing:
            raise SectionError(f"{r}: section(s) {missing} not found; available: {sorted(coll)}")
        coll = {s: coll[s] for s in wanted}
    if not coll:
        raise SectionError(f"{r}: no readable sections found")
    return coll


def _name_of(adata) -> str:
    return str(next(iter(adata.uns["spatial"])))
