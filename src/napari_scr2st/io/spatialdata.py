"""SpatialData zarr stores in and out: a section read from one, a run's result written to one.

:func:`read_spatialdata` turns a SpatialData store holding a table (an AnnData that annotates
spot circles through ``table.uns["spatialdata_attrs"]`` ``region``/``region_key``/
``instance_key``), the spot shapes and an image into the package's section AnnData (see
:mod:`napari_scr2st.data.model`). Spot centres and diameters are expressed in the pixels of the
image's full-resolution level: the transformation from the shapes' intrinsic coordinates to the
image's intrinsic coordinates is composed by
:func:`spatialdata.transformations.get_transformation_between_coordinate_systems` and applied
to the centres; the radius is scaled by the square root of its determinant.

:func:`write_spatialdata` writes a section with its selection and predictions as a store that
napari-spatialdata and spatialdata-plot open: image ``"image"`` in the ``"global"`` coordinate
system (= the section's full-resolution pixel frame), circles ``"spots"`` and two tables
annotating them, ``"table"`` (counts, selection columns in ``obs``) and ``"predictions"``.
``tables["table"].uns["scr2st_frame"]`` records how ``"global"`` relates to the ORIGINAL
full-resolution image (``frame_scale``, ``microns_per_pixel``; a Visium section works in its
hires pixels), and :func:`read_spatialdata` restores them, so exports of a store read back give
the original pixels and micrometres.
:func:`write_run_spatialdata` writes a whole acquisition run the same way (per-round columns,
original full-resolution coordinates, cell types and the run's budget in the table).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.images import check_not_blank
from ..data.model import (
    LOWRES_MAX_SIDE,
    PATIENT_KEY,
    SECTION_KEY,
    SPATIAL_KEY,
    SectionError,
    as_rgb_uint8,
    downscale_image,
    fullres_coordinates,
    get_fullres_image,
    get_lowres_image,
    library_frame,
    library_id,
    make_section,
    spot_diameter_px,
    validate_section,
)
from ._common import check_finite_counts, image_to_rgb_uint8, infer_array_coords

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = [
    "read_spatialdata",
    "write_spatialdata",
    "write_run_spatialdata",
    "is_spatialdata_store",
    "DEFAULT_TABLE",
    "SPATIALDATA_SUFFIX",
]

PathLike = str | os.PathLike
#: The extension of the SpatialData stores written here (a folder).
SPATIALDATA_SUFFIX = ".zarr"
#: The table picked when a store has several and none is named (spatialdata-io's name).
DEFAULT_TABLE = "table"
#: Full-resolution images up to this many pixels are kept in memory as the section's ``hires``.
FULLRES_IN_MEMORY_MAX_PIXELS = 40_000_000
REGION_KEY = "region"
INSTANCE_KEY = "instance_id"
SPOTS = "spots"
IMAGE = "image"
PREDICTIONS = "predictions"
#: ``tables["table"].uns`` key: how the store's ``"global"`` frame relates to the original
#: full-resolution image (``frame_scale``, ``microns_per_pixel`` as in
#: :func:`~napari_scr2st.data.model.fullres_coordinates`), so a store read back exports the
#: original pixels
FRAME_KEY = "scr2st_frame"
_SD_ELEMENT_GROUPS = ("images", "labels", "points", "shapes", "tables")


def is_spatialdata_store(path: PathLike) -> bool:
    """True for a zarr folder with SpatialData metadata (cheap: reads at most 64 KiB of one file).

    Accepted: a root ``zarr.json`` (zarr v3), ``.zattrs`` or ``.zmetadata`` (zarr v2) that
    mentions ``spatialdata_attrs``, or a ``*.zarr`` zarr group with SpatialData element groups
    (``images``, ``shapes``, ``tables``...; stores written before that attribute existed).
    """
    p = Path(path)
    if not p.is_dir():
        return False
    for name in ("zarr.json", ".zattrs", ".zmetadata"):
        f = p / name
        if f.is_file():
            with open(f, "rb") as fh:
                if b"spatialdata_attrs" in fh.read(65536):
                    return True
    is_group = (p / "zarr.json").is_file() or (p / ".zgroup").is_file()
    return p.suffix.lower() == ".zarr" and is_group and any((p / g).is_dir() for g in _SD_ELEMENT_GROUPS)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def _pick(kind: str, available: list[str], wanted: str | None, where: Path, default: str | None = None) -> str:
    if wanted is not None:
        if wanted not in available:
            raise SectionError(f"{where}: no {kind} '{wanted}'; available {kind}s: {', '.join(available) or '(none)'}")
        return wanted
    if len(available) == 1:
        return available[0]
    if default is not None and default in available:
        return default
    if not available:
        raise SectionError(f"{where}: the SpatialData store has no {kind}")
    raise SectionError(
        f"{where}: the SpatialData store has {len(available)} {kind}s ({', '.join(available)}); "
        f"name one with {kind}=..."
    )


def _image_levels(element) -> list:
    """The pyramid levels (DataArrays, finest first) of an image element."""
    import spatialdata as sd
    from xarray import DataTree

    if isinstance(element, DataTree):  # multiscale
        return list(sd.get_pyramid_levels(element))
    return [element]


def _to_rgb(level) -> np.ndarray:
    """A DataArray (c, y, x) -> RGB uint8 (y, x, 3); 16-bit samples scaled by their range."""
    arr = np.asarray(level.transpose("y", "x", "c").values)
    c = arr.shape[2]
    return image_to_rgb_uint8(arr[..., :3] if c >= 3 else arr[..., 0])


def _read_image(element, name: str, where: Path) -> dict[str, Any]:
    """Full-resolution shape, a lowres copy with its scale and, if small, the full image
    (a blank image raises :class:`SectionError` naming ``where``)."""
    levels = _image_levels(element)
    full = levels[0]
    h, w = int(full.sizes["y"]), int(full.sizes["x"])
    out: dict[str, Any] = {"shape": (h, w, 3), "hires": None}
    if h * w <= FULLRES_IN_MEMORY_MAX_PIXELS:
        out["hires"] = _to_rgb(full)
        source = out["hires"]
    else:  # the coarsest level still at least LOWRES_MAX_SIDE on its longer side
        ok = [lv for lv in levels if max(int(lv.sizes["y"]), int(lv.sizes["x"])) >= LOWRES_MAX_SIDE]
        source = _to_rgb(ok[-1] if ok else levels[-1])
    check_not_blank(source, f"'{name}' of SpatialData store {where}")
    low, s = downscale_image(source, LOWRES_MAX_SIDE)
    out["lowres"] = low
    out["lowres_scalef"] = float(low.shape[1]) / w
    out["name"] = name
    return out


def _affine(sdata, source, target) -> np.ndarray:
    from spatialdata.transformations import get_transformation_between_coordinate_systems

    t = get_transformation_between_coordinate_systems(sdata, source, target)
    return np.asarray(t.to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")), dtype=np.float64)


def _centres_and_diameters(shapes, where: str) -> tuple[np.ndarray, np.ndarray]:
    geom = shapes.geometry
    kinds = set(geom.geom_type.unique())
    if kinds <= {"Point"}:
        if "radius" not in shapes.columns:
            raise SectionError(f"{where}: circle shapes without a 'radius' column")
        xy = np.column_stack([geom.x.to_numpy(), geom.y.to_numpy()])
        return xy, 2.0 * shapes["radius"].to_numpy(dtype=np.float64)
    if kinds <= {"Polygon", "MultiPolygon"}:  # spots drawn as polygons: centroid, equal-area diameter
        c = geom.centroid
        return np.column_stack([c.x.to_numpy(), c.y.to_numpy()]), 2.0 * np.sqrt(geom.area.to_numpy() / np.pi)
    raise SectionError(f"{where}: spot shapes must be circles or polygons, found {sorted(kinds)}")


def _table_counts(table, where: str) -> sp.csr_matrix:
    X = table.layers["counts"] if "counts" in table.layers else table.X
    if X is None:
        raise SectionError(f"{where}: the table has no X")
    X = X.tocsr() if sp.issparse(X) else sp.csr_matrix(np.asarray(X))
    data = X.data
    check_finite_counts(X, table.var_names, table.obs_names, where,
                        "the table's layers['counts']" if "counts" in table.layers else "the table's X")
    if data.size:
        if data.min() < 0 or not np.all(np.mod(data, 1) == 0):
            raise SectionError(
                f"{where}: the table's {'layers[counts]' if 'counts' in table.layers else 'X'} is not raw counts "
                "(expected finite non-negative integers)"
            )
    return X.astype(np.float32)


def read_spatialdata(
    path: PathLike,
    *,
    table: str | None = None,
    image: str | None = None,
    shapes: str | None = None,
    section: str | None = None,
    patient: str | None = None,
) -> AnnData:
    """Read a SpatialData zarr store as one section (see the module docstring for the frame).

    ``table``: the AnnData with the spot counts (default: the only table, else
    :data:`DEFAULT_TABLE`); ``shapes``: the spot circles (default: the shapes element the
    table annotates); ``image``: the H&E image (default: the only image; a store without
    image gives a section without image, in the shapes' own coordinates). Several candidates
    and no name, or an unknown name, raise :class:`SectionError` listing them.

    Counts come from the table's ``layers["counts"]`` or ``X`` (raw integers expected); table
    rows are joined with the circles by the table's ``instance_key``. Images of at most
    :data:`FULLRES_IN_MEMORY_MAX_PIXELS` pixels are kept as ``hires`` (scale 1); larger ones
    give only a lowres copy, read from the coarsest fitting pyramid level.
    ``metadata`` records ``source_path`` and the element names, and, for a store this package
    wrote (``uns["scr2st_frame"]`` in the table), ``frame_scale``/``microns_per_pixel`` so
    exports give the original full-resolution pixels.
    """
    p = Path(path)
    if not p.exists():
        raise SectionError(f"SpatialData store not found: {p}")
    import spatialdata as sd
    from spatialdata.models import get_table_keys

    try:
        sdata = sd.read_zarr(p)
    except Exception as e:  # zarr/ome-zarr raise many types for broken stores
        raise SectionError(f"cannot read SpatialData store {p}: {type(e).__name__}: {e}") from e

    table_name = _pick("table", list(sdata.tables.keys()), table, p, DEFAULT_TABLE)
    tab = sdata.tables[table_name]
    frame_in = dict(tab.uns.get(FRAME_KEY) or {})
    where = f"{p} (table '{table_name}')"
    try:
        regions, region_key, instance_key = get_table_keys(tab)
    except Exception as e:
        raise SectionError(f"{where}: the table does not annotate any element (no spatialdata_attrs): {e}") from e
    regions = [regions] if isinstance(regions, str) else list(regions)
    shape_regions = [r for r in regions if r in sdata.shapes]
    if shapes is not None and shapes not in sdata.shapes:
        raise SectionError(f"{p}: no shapes '{shapes}'; available shapes: {', '.join(sdata.shapes.keys()) or '(none)'}")
    shapes_name = _pick("shapes", shape_regions, shapes, p)
    if shapes_name not in regions:
        raise SectionError(f"{where} annotates {regions}, not the shapes '{shapes_name}'")
    circles = sdata.shapes[shapes_name]

    rows = (tab.obs[region_key].astype(str) == shapes_name).to_numpy() if region_key in tab.obs else np.ones(tab.n_obs, bool)
    if not rows.any():
        raise SectionError(f"{where}: no rows annotate the shapes '{shapes_name}'")
    tab = tab[rows]
    ids = tab.obs[instance_key].to_numpy()
    pos = circles.index.get_indexer(pd.Index(ids))
    if (pos < 0).any():
        bad = ids[np.argmax(pos < 0)]
        raise SectionError(
            f"{where}: {int((pos < 0).sum())} table rows have no circle in shapes '{shapes_name}' "
            f"(e.g. {instance_key}={bad!r})"
        )
    xy, diam = _centres_and_diameters(circles.iloc[pos], f"{p} (shapes '{shapes_name}')")
    counts = _table_counts(tab, where)

    image_name = _pick("image", list(sdata.images.keys()), image, p) if (image or len(sdata.images)) else None
    img = None
    A = np.eye(3)
    if image_name is not None:
        elem = sdata.images[image_name]
        try:
            A = _affine(sdata, circles, elem)
        except Exception as e:  # no path between the coordinate systems
            raise SectionError(
                f"{p}: shapes '{shapes_name}' and image '{image_name}' share no coordinate system: {e}"
            ) from e
        xy = xy @ A[:2, :2].T + A[:2, 2]
        diam = diam * float(np.sqrt(abs(np.linalg.det(A[:2, :2]))))
        img = _read_image(elem, image_name, p)
    if not np.isfinite(xy).all():
        raise SectionError(f"{p}: spot centres of shapes '{shapes_name}' are not finite")

    obs = tab.obs
    name = section or _single(obs, SECTION_KEY) or (p.name[: -len(".zarr")] if p.name.endswith(".zarr") else p.name)
    if "array_row" in obs and "array_col" in obs:
        row, col = obs["array_row"].to_numpy(dtype=int), obs["array_col"].to_numpy(dtype=int)
    else:
        row, col = infer_array_coords(xy)
    skip = {SECTION_KEY, PATIENT_KEY, "array_row", "array_col", region_key, instance_key}
    extra = obs[[c for c in obs.columns if c not in skip]]
    spot_ids = obs.index.astype(str) if obs.index.is_unique else pd.Index(ids).astype(str)
    adata = make_section(
        counts,
        tab.var_names,
        spot_ids,
        xy,
        section=str(name),
        patient=patient if patient is not None else (_single(obs, PATIENT_KEY) or ""),
        array_row=row,
        array_col=col,
        image_shape=img["shape"] if img else None,
        spot_diameter_fullres=float(np.median(diam)),
        extra_obs=extra if len(extra.columns) else None,
    )
    for c in tab.var.columns:
        adata.var[c] = tab.var[c].to_numpy()
    entry = adata.uns[SPATIAL_KEY][str(name)]
    if img is not None:
        entry["images"]["lowres"] = img["lowres"]
        entry["scalefactors"]["tissue_lowres_scalef"] = img["lowres_scalef"]
        if img["hires"] is not None:
            entry["images"]["hires"] = img["hires"]
            entry["scalefactors"]["tissue_hires_scalef"] = 1.0
    entry["metadata"].update(
        {
            "platform": "spatialdata",
            "source_path": str(p.resolve()),
            "table": table_name,
            "shapes": shapes_name,
            "image": image_name or "",
            "frame": f"pixels of image '{image_name}' (full resolution)" if image_name else f"shapes '{shapes_name}'",
            **_restored_frame(frame_in, A),
        }
    )
    return adata


def _restored_frame(frame_in: dict, A: np.ndarray) -> dict[str, float]:
    """``frame_scale``/``microns_per_pixel`` of a section read from a store this package wrote
    (``frame_in``: the table's :data:`FRAME_KEY`, relative to the store's ``"global"``), given
    the affine ``A`` from the circles' (= global) to the section's pixels. Only a scaling ``A``
    (what the writer produces) can be expressed; anything else records nothing."""
    if not frame_in:
        return {}
    lin, shift = A[:2, :2], A[:2, 2]
    a = float(lin[0, 0])
    if not (a > 0 and np.allclose(lin, a * np.eye(2), rtol=1e-9, atol=1e-12) and np.allclose(shift, 0, atol=1e-9)):
        return {}
    out = {}
    try:
        fs = float(frame_in.get("frame_scale", 1.0))
        mpp = float(frame_in.get("microns_per_pixel", "nan"))
    except (TypeError, ValueError):
        return {}
    if np.isfinite(fs) and fs > 0:
        out["frame_scale"] = fs * a
    if np.isfinite(mpp) and mpp > 0:
        out["microns_per_pixel"] = mpp
    return out


def _single(obs: pd.DataFrame, col: str) -> str | None:
    if col not in obs:
        return None
    vals = obs[col].astype(str).unique()
    return str(vals[0]) if len(vals) == 1 and vals[0] else None


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def _selection_obs(selection, n: int) -> pd.DataFrame:
    from ..palette import picked_by_labels, user_rounds

    rnd = np.asarray(selection.round, dtype=np.int64)
    if rnd.shape != (n,):
        raise ValueError(f"the selection describes {rnd.shape[0]} spots, the section has {n}")
    picked = picked_by_labels(selection.source).astype(str)
    picked[rnd < 0] = ""
    out = {
        "selected": rnd >= 0,
        "round": user_rounds(rnd),
        "picked_by": pd.Categorical(picked),
        "rank": np.asarray(selection.rank, dtype=np.int64),
        "measured": np.asarray(selection.measured, dtype=bool),
    }
    if getattr(selection, "score", None) is not None:
        out["score"] = np.asarray(selection.score, dtype=np.float64)
    return pd.DataFrame(out)


def _predictions_frame(adata, predictions) -> pd.DataFrame | None:
    pred = predictions if predictions is not None else adata.obsm.get("X_pred")
    if pred is None:
        return None
    if not isinstance(pred, pd.DataFrame):
        arr = np.asarray(pred)
        if arr.ndim != 2 or arr.shape[0] != adata.n_obs:
            raise ValueError(f"predictions must be (n_spots={adata.n_obs}, n_genes), got {arr.shape}")
        pred = pd.DataFrame(arr, index=adata.obs_names, columns=[f"gene_{i}" for i in range(arr.shape[1])])
    missing = ~adata.obs_names.isin(pred.index)
    if missing.any():
        raise ValueError(
            f"predictions lack {int(missing.sum())} of the section's {adata.n_obs} spots "
            f"(e.g. {adata.obs_names[np.argmax(missing)]!r})"
        )
    return pred.loc[adata.obs_names]


def _image_element(adata, lib: str):
    """The section's image as an Image2DModel in the full-resolution pixel frame (or None)."""
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Identity, Scale

    full = get_fullres_image(adata, lib)
    if full is not None:
        img, transform = as_rgb_uint8(full), Identity()
    else:
        low = get_lowres_image(adata, lib)
        if low is None:
            return None
        img, s = as_rgb_uint8(low[0]), low[1]
        transform = Scale([1.0 / s, 1.0 / s], axes=("x", "y"))
    side = max(img.shape[:2])
    factors = []
    while side / 2 ** (len(factors) + 1) >= 512 and side > 2048:
        factors.append(2)
    return Image2DModel.parse(
        np.ascontiguousarray(img.transpose(2, 0, 1)),
        dims=("c", "y", "x"),
        c_coords=["r", "g", "b"],
        transformations={"global": transform},
        scale_factors=factors or None,
        chunks=(3, 1024, 1024),
    )


def write_spatialdata(
    adata,
    path: PathLike,
    *,
    selection=None,
    predictions: pd.DataFrame | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a section, its selection and its predictions as a SpatialData zarr store.

    Elements (coordinate system ``"global"`` = full-resolution pixels of the section):

    - ``images["image"]``: the full-resolution image (a pyramid when large) or, when only a
      lowres copy exists, that copy with a ``Scale`` transform back to full resolution;
    - ``shapes["spots"]``: circles at ``obsm["spatial"]``, radius ``spot_diameter_fullres / 2``,
      index 0..n-1;
    - ``tables["table"]``: the counts, annotating ``spots`` (``region_key="region"``,
      ``instance_key="instance_id"``), ``obs`` with section, patient, array_row, array_col and,
      with ``selection`` (per-spot arrays ``round`` (0-based, -1 not selected), ``source``,
      ``rank``, ``measured``, optionally ``score``, aligned with ``adata`` rows: a
      ``sampling.SelectionState``), ``selected``, ``round`` (counted from 1 as in the lab's
      table; 0 = not selected), ``picked_by``, ``rank``, ``measured`` (and ``score``);
      ``uns["scr2st_frame"]``: ``frame_scale`` (global pixels per original full-res pixel) and
      ``microns_per_pixel`` when known;
    - ``tables["predictions"]``: ``predictions`` (spots x genes DataFrame; default
      ``obsm["X_pred"]``) as ``X``, annotating the same circles.

    The store is written to a temporary folder beside ``path`` and renamed into place;
    an existing ``path`` raises ``FileExistsError`` unless ``overwrite``.
    """
    return _write_store(adata, path, selection=selection, predictions=predictions, overwrite=overwrite)


def _write_store(
    adata,
    path: PathLike,
    *,
    selection=None,
    predictions=None,
    overwrite: bool = False,
    extra_obs: pd.DataFrame | None = None,
    table_uns: dict[str, Any] | None = None,
) -> Path:
    """:func:`write_spatialdata`, with ``extra_obs`` columns (rows aligned with ``adata``)
    and ``table_uns`` entries added to ``tables["table"]``."""
    import anndata as ad
    import spatialdata as sd
    from spatialdata.models import ShapesModel, TableModel
    from spatialdata.transformations import Identity

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    validate_section(adata)
    lib = library_id(adata)
    n = adata.n_obs
    xy = np.asarray(adata.obsm[SPATIAL_KEY], dtype=np.float64)[:, :2]
    radius = np.full(n, spot_diameter_px(adata, lib) / 2.0)
    circles = ShapesModel.parse(
        xy, geometry=0, radius=radius, index=pd.RangeIndex(n), transformations={"global": Identity()}
    )

    def annotating(obs: pd.DataFrame) -> pd.DataFrame:
        obs = obs.copy()
        obs[REGION_KEY] = pd.Categorical([SPOTS] * n)
        obs[INSTANCE_KEY] = np.arange(n)
        return obs

    obs = pd.DataFrame(index=adata.obs_names.astype(str))
    for c in (SECTION_KEY, PATIENT_KEY, "array_row", "array_col"):
        if c in adata.obs:
            obs[c] = adata.obs[c].to_numpy()
    if selection is not None:
        sel = _selection_obs(selection, n)
        for c in sel.columns:
            obs[c] = sel[c].to_numpy()
    if extra_obs is not None:
        for c in extra_obs.columns:
            obs[c] = extra_obs[c].to_numpy()
    X = adata.X.tocsr() if sp.issparse(adata.X) else sp.csr_matrix(np.asarray(adata.X))
    tables = {
        DEFAULT_TABLE: TableModel.parse(
            ad.AnnData(X=X, obs=annotating(obs), var=adata.var.copy()),
            region=SPOTS, region_key=REGION_KEY, instance_key=INSTANCE_KEY,
        )
    }
    fs, mpp = library_frame(adata, lib)
    tables[DEFAULT_TABLE].uns[FRAME_KEY] = {"frame_scale": fs, **({"microns_per_pixel": mpp} if np.isfinite(mpp) else {})}
    tables[DEFAULT_TABLE].uns.update(table_uns or {})
    pred = _predictions_frame(adata, predictions)
    if pred is not None:
        tables[PREDICTIONS] = TableModel.parse(
            ad.AnnData(
                X=pred.to_numpy(dtype=np.float32),
                obs=annotating(pd.DataFrame(index=obs.index)),
                var=pd.DataFrame(index=pd.Index([str(g) for g in pred.columns])),
            ),
            region=SPOTS, region_key=REGION_KEY, instance_key=INSTANCE_KEY,
        )
    image = _image_element(adata, lib)
    sdata = sd.SpatialData(images={IMAGE: image} if image is not None else {}, shapes={SPOTS: circles}, tables=tables)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.rmdir()  # spatialdata creates the store itself (with the umask's permissions)
    old = None
    try:
        sdata.write(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        if old is not None and not path.exists():
            os.replace(old, path)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _check_state_rows(adata, state) -> None:
    n = adata.n_obs
    rnd = np.asarray(state.round)
    if rnd.shape != (n,):
        raise ValueError(f"the selection state describes {rnd.shape[0]} spots, the section has {n}")
    ids = getattr(state, "spot_ids", None)
    if ids is None:
        return
    ids = np.asarray(ids).astype(str)
    names = np.asarray(adata.obs_names).astype(str)
    lib = library_id(adata)
    bare = np.array([i[len(lib) + 1 :] if i.startswith(f"{lib}:") else i for i in names])
    if not (np.array_equal(ids, names) or np.array_equal(ids, bare)):
        i = int(np.argmax((ids != names) & (ids != bare)))
        raise ValueError(
            f"the selection state's spots are not the section's rows: row {i} is "
            f"{ids[i]!r} in the state, {names[i]!r} in the section"
        )


def write_run_spatialdata(
    adata,
    state,
    path: PathLike,
    *,
    predictions=None,
    cell_types=None,
    overwrite: bool = False,
) -> Path:
    """Write an acquisition run (a section, its selection state, predictions, cell types) as a
    SpatialData zarr store that napari-spatialdata and spatialdata-plot open.

    The store holds the elements of :func:`write_spatialdata` (image, circles ``"spots"`` at
    ``obsm["spatial"]`` in ``"global"`` = the section's full-resolution pixels, ``"table"``,
    ``"predictions"``), and ``tables["table"]`` gets, per spot:

    - the selection columns ``selected``, ``round`` (counted from 1, as in the lab's table;
      0 = not selected), ``picked_by``, ``rank``, ``measured``, ``score``;
    - ``round_1`` ... ``round_{R}``: selected in that round (one boolean column per round,
      counted from 1, up to the later of the last round with a pick and the last committed
      round, ``current_round``);
    - ``pixel_x``, ``pixel_y``, ``x_um``, ``y_um``: the centre in the ORIGINAL full-resolution
      frame (:func:`~napari_scr2st.data.model.fullres_coordinates`; NaN um where the scale is
      unknown), the coordinates the lab's table uses;
    - ``cell_type``: ``cell_types`` (one label per spot, "" = unknown) when given;

    and ``uns["scr2st_run"]`` = ``current_round`` (the number of committed rounds), ``budget`` and ``n_rounds`` (-1 = not set),
    ``n_selected``, ``n_measured``.

    ``state`` is a :class:`~napari_scr2st.sampling.state.SelectionState` of this section (its
    rows are ``adata``'s rows; ``spot_ids`` are checked when present); ``predictions`` a spots x
    genes DataFrame or array (default ``obsm["X_pred"]``). Written atomically like
    :func:`write_spatialdata`; an existing ``path`` raises ``FileExistsError`` unless
    ``overwrite``.
    """
    validate_section(adata)
    _check_state_rows(adata, state)
    n = adata.n_obs
    rnd = np.asarray(state.round, dtype=np.int64)
    current = int(getattr(state, "current_round", 0) or 0)
    last = max(int(rnd.max()) if n else -1, current - 1)
    px, um = fullres_coordinates(adata)
    extra = pd.DataFrame(
        {f"round_{r + 1}": rnd == r for r in range(last + 1)}
        | {"pixel_x": px[:, 0], "pixel_y": px[:, 1], "x_um": um[:, 0], "y_um": um[:, 1]}
    )
    if cell_types is not None:
        labels = np.asarray(cell_types, dtype=object)
        if labels.shape != (n,):
            raise ValueError(f"cell_types must hold one label per spot ({n}), got shape {labels.shape}")
        extra["cell_type"] = pd.Categorical(["" if v is None else str(v) for v in labels])

    def _int(v) -> int:
        return -1 if v is None else int(v)

    run = {
        "current_round": current,
        "budget": _int(getattr(state, "budget", None)),
        "n_rounds": _int(getattr(state, "n_rounds", None)),
        "n_selected": int((rnd >= 0).sum()),
        "n_measured": int(np.asarray(state.measured, dtype=bool).sum()),
    }
    return _write_store(
        adata, path, selection=state, predictions=predictions, overwrite=overwrite,
        extra_obs=extra, table_uns={"scr2st_run": run},
    )  # fmt: skip
