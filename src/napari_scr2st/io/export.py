"""Exports of a selection and of predictions, for the sequencing lab, QuPath and Python.

Qt-free; used by the napari export dock and usable from scripts. Every file is written
atomically (:func:`napari_scr2st.atomic.atomic_path`): it appears complete or not at all, an
existing file is left untouched when writing fails, and the file gets the usual
``0o666 & ~umask`` mode.

- :func:`selection_table`: the list of spots to sequence, one row per spot, with the columns
  of :data:`SELECTION_COLUMNS`:

  ``section``, ``spot_id`` (the Visium barcode, the legacy ST ``"{x}x{y}"``), ``array_row``,
  ``array_col`` (lattice position; what a Visium or ST lab uses to find a spot), ``pixel_x``,
  ``pixel_y`` (spot centre in full-resolution pixels of the ORIGINAL image the platform's
  coordinates refer to, e.g. Space Ranger's ``pxl_col_in_fullres``/``pxl_row_in_fullres``,
  whatever frame the section is displayed in; see
  :func:`~napari_scr2st.data.model.fullres_coordinates`), ``x_um``, ``y_um`` (the same in
  micrometres; empty where the scale is unknown), ``round`` (acquisition round counted from 1:
  1 = the first round, as the docks, the canvas legend and the CLI say), ``rank`` (selection
  order over the whole acquisition, 0-based), ``picked_by``
  (``policy`` = the SCRL policy, ``manual`` = picked by hand, else the sampler's name:
  ``random``, ``grid``, ``kcenter``...), ``score`` (the sampler's score; empty for manual
  picks) and ``predicted_cell_type`` (from the current model's predicted expression, or the
  transferred label of a sequenced spot; empty when unknown).
- :func:`write_selection`: writes such a table in the format its extension names: ``.csv``
  and ``.tsv`` (:func:`write_selection_csv`), ``.geojson``/``.json``
  (:func:`write_selection_geojson`), ``.h5ad`` (:func:`write_selection_h5ad`); any other
  extension is refused, and so is a writer called with an extension of another format.
- CSV/TSV: text cells that a spreadsheet would run as a formula (starting with ``= + - @``,
  tab or carriage return) get a leading single quote, and so do text cells that start with a
  quote; numbers are written as is. :func:`read_selection_csv` removes that one quote, so a
  written table reads back as an IDENTICAL DataFrame (dtypes and float values included).
- :func:`selection_geojson`: the same spots as a GeoJSON ``FeatureCollection`` of ``Point``
  features in original full-resolution pixels that QuPath imports as point annotations:
  ``properties`` = ``objectType: "annotation"``, ``name`` (spot id), ``classification``
  (``{"name": picked_by, or "round N" when empty, "color": [r, g, b]}``), ``isLocked``,
  ``measurements`` (numbers: round, rank, score, array row/col, pixel and um coordinates) and
  ``metadata`` (every column of the table as a string; QuPath keeps ``metadata``, it drops
  other keys).
- :func:`write_predictions_h5ad`: the section with predictions (``obsm["X_pred"]``...), the
  selection (``obs`` columns ``scr2st_round``, ``scr2st_picked_by``, ``scr2st_sequenced``) and
  the predicted cell type, as ``.h5ad``.
- :func:`write_run_spatialdata` (from :mod:`.spatialdata`): a whole run (selection and rounds
  as table columns, spot circles, image, predictions as a second table, cell types) as a
  SpatialData ``.zarr`` store; :data:`SPATIALDATA_SUFFIX` is its extension, so a caller that
  dispatches on the extension sends ``.zarr`` there and the rest to :func:`write_selection`.
- :func:`write_counts_csv`: counts of some spots as a spots x genes CSV in the format
  :func:`napari_scr2st.sampling.state.import_counts` reads (``spot_id``, ``section``, genes): what
  a sequencing lab sends back; used to simulate a round trip.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..data.model import SECTION_KEY, fullres_coordinates
from ..palette import PALETTE, picked_by_label, picked_by_labels, user_rounds
from .spatialdata import SPATIALDATA_SUFFIX, write_run_spatialdata

__all__ = [
    "SELECTION_COLUMNS",
    "SELECTION_SUFFIXES",
    "SPATIALDATA_SUFFIX",
    "write_run_spatialdata",
    "selection_table",
    "write_selection",
    "write_selection_csv",
    "write_selection_h5ad",
    "read_selection_csv",
    "selection_geojson",
    "write_selection_geojson",
    "write_predictions_h5ad",
    "write_counts_csv",
]

SELECTION_COLUMNS = [
    "section",
    "spot_id",
    "array_row",
    "array_col",
    "pixel_x",
    "pixel_y",
    "x_um",
    "y_um",
    "round",
    "rank",
    "picked_by",
    "score",
    "predicted_cell_type",
]
_DTYPES = {
    "section": object,
    "spot_id": object,
    "array_row": np.int64,
    "array_col": np.int64,
    "pixel_x": np.float64,
    "pixel_y": np.float64,
    "x_um": np.float64,
    "y_um": np.float64,
    "round": np.int64,
    "rank": np.int64,
    "picked_by": object,
    "score": np.float64,
    "predicted_cell_type": object,
}
_STR_COLS = [c for c, t in _DTYPES.items() if t is object]
_FLOAT_COLS = [c for c, t in _DTYPES.items() if t is np.float64]
#: first characters that make a spreadsheet evaluate a cell (CSV/formula injection)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def selection_table(
    adata,
    selection,
    *,
    which: str = "pending",
    predicted_cell_type: Sequence[str] | None = None,
    rounds: Sequence[int] | None = None,
) -> pd.DataFrame:
    """The selected spots of ``adata`` as a table with :data:`SELECTION_COLUMNS` (in rank order).

    Coordinates are in the original full-resolution frame
    (:func:`~napari_scr2st.data.model.fullres_coordinates`), not the display frame.

    ``selection``: per-spot arrays ``round`` (0-based, -1 = not selected), ``source``, ``measured``,
    ``rank``, ``score`` aligned with ``adata`` rows (a ``sampling.SelectionState``).
    ``which``: ``"pending"`` (selected, not yet sequenced: what the lab must sequence next),
    ``"all"`` (every selected spot) or ``"sequenced"``. The table's ``round`` column counts
    from 1 (:func:`~napari_scr2st.palette.user_rounds`); ``rounds`` keeps only those rounds,
    numbered the same way (``rounds=[1]``: the first round).
    """
    rnd = np.asarray(selection.round, dtype=np.int64)
    n = adata.n_obs
    if rnd.shape != (n,):
        raise ValueError(f"the selection describes {rnd.shape[0]} spots, the section has {n}")
    measured = np.asarray(selection.measured, dtype=bool)
    keep = rnd >= 0
    if which == "pending":
        keep &= ~measured
    elif which == "sequenced":
        keep &= measured
    elif which != "all":
        raise ValueError(f"which must be 'pending', 'all' or 'sequenced', got {which!r}")
    if rounds is not None:
        keep &= np.isin(user_rounds(rnd), np.asarray(list(rounds), dtype=np.int64))
    rank = np.asarray(getattr(selection, "rank", np.arange(n)), dtype=np.int64)
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(rank[idx], kind="stable")]
    obs = adata.obs
    xy, xy_um = fullres_coordinates(adata)
    sections = obs[SECTION_KEY].astype(str).to_numpy() if SECTION_KEY in obs else np.full(n, "")
    score = np.asarray(getattr(selection, "score", np.full(n, np.nan)), dtype=np.float64)
    ct = (
        np.asarray(predicted_cell_type, dtype=object).astype(str)
        if predicted_cell_type is not None
        else np.full(n, "", dtype=object)
    )
    if len(ct) != n:
        raise ValueError(f"predicted_cell_type has {len(ct)} entries for {n} spots")
    ids = np.asarray(adata.obs_names).astype(str)
    # concatenated collections prefix obs_names with "section:"; the lab wants the plain id
    pref = np.char.add(sections.astype(str), ":")
    if len(ids) and np.char.startswith(ids, pref).all():
        ids = np.array([s[len(p) :] for s, p in zip(ids, pref, strict=True)])
    df = pd.DataFrame(
        {
            "section": sections[idx].astype(object),
            "spot_id": ids[idx].astype(object),
            "array_row": obs["array_row"].to_numpy()[idx].astype(np.int64) if "array_row" in obs else np.zeros(len(idx), np.int64),
            "array_col": obs["array_col"].to_numpy()[idx].astype(np.int64) if "array_col" in obs else np.zeros(len(idx), np.int64),
            "pixel_x": xy[idx, 0],
            "pixel_y": xy[idx, 1],
            "x_um": xy_um[idx, 0],
            "y_um": xy_um[idx, 1],
            "round": user_rounds(rnd[idx]),
            "rank": rank[idx],
            "picked_by": picked_by_labels(np.asarray(selection.source, dtype=object)[idx]),
            "score": score[idx],
            "predicted_cell_type": np.array([("" if c in ("nan", "None") else c) for c in ct[idx]], dtype=object),
        }
    )
    return _coerce(df)


def _coerce(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in SELECTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"selection table lacks columns {missing}")
    df = df[SELECTION_COLUMNS].copy()
    for c, t in _DTYPES.items():
        if t is object:
            df[c] = df[c].fillna("").astype(str).astype(object)
        else:
            df[c] = df[c].astype(t)
    return df.reset_index(drop=True)


def _suffix(path: Path, allowed: tuple[str, ...], what: str) -> str:
    suf = path.suffix.lower()
    if suf not in allowed:
        raise ValueError(
            f"refusing to write {what} to {path}: the file name must end with "
            f"{' or '.join(allowed)} (use write_selection to pick the format by extension)"
        )
    return suf


def _neutralise(v: str) -> str:
    return "'" + v if v.startswith(_FORMULA_START) or v.startswith("'") else v


def _restore(v: str) -> str:
    return v[1:] if v.startswith("'") else v


def write_selection_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a selection table (see :func:`selection_table`) as ``.csv`` or ``.tsv``
    (separator by extension), atomically, with formula-like text cells neutralised."""
    path = Path(path)
    sep = "\t" if _suffix(path, (".csv", ".tsv"), "a selection table") == ".tsv" else ","
    df = _coerce(df)
    for c in _STR_COLS:
        df[c] = df[c].map(_neutralise)
    with atomic_path(path) as tmp:
        # floats as the shortest repr that round-trips; NaN written as an empty cell
        df.to_csv(tmp, sep=sep, index=False, float_format=None, lineterminator="\n")
    return path


def read_selection_csv(path: str | Path) -> pd.DataFrame:
    """Read a selection ``.csv``/``.tsv`` back, with the dtypes :func:`selection_table` produces
    and the quote added by :func:`write_selection_csv` to formula-like cells removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"selection file not found: {path}")
    df = pd.read_csv(
        path,
        sep="\t" if path.suffix.lower() == ".tsv" else ",",
        dtype={c: str for c in _STR_COLS},
        keep_default_na=False,
        na_values={c: [""] for c in _FLOAT_COLS},
        float_precision="round_trip",
    )
    missing = [c for c in SELECTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a selection file, missing columns {missing}")
    for c in _STR_COLS:
        df[c] = df[c].map(_restore)
    return _coerce(df)


def _rgb(hex_color: str) -> list[int]:
    h = hex_color.lstrip("#")
    return [int(h[i : i + 2], 16) for i in (0, 2, 4)]


_PICKED_COLORS = {"policy": "#00bfff", "manual": "#ffffff"}


def _text(v) -> str:
    if isinstance(v, (float, np.floating)):
        return repr(float(v)) if np.isfinite(v) else ""
    return str(v)


def selection_geojson(df: pd.DataFrame, *, colors: dict[str, str] | None = None) -> dict:
    """A GeoJSON FeatureCollection (QuPath point annotations) of a selection table; see the
    module docstring for the properties of each feature."""
    df = _coerce(df)
    classes = [p if p else f"round {r}" for p, r in zip(df["picked_by"], df["round"], strict=True)]
    palette = dict(_PICKED_COLORS)
    palette.update(colors or {})
    others = [p for p in dict.fromkeys(classes) if p not in palette]
    for i, p in enumerate(others):
        palette[p] = PALETTE[i % len(PALETTE)]
    feats = []
    for cls, row in zip(classes, df.to_dict("records"), strict=True):
        meas = {k: int(row[k]) for k in ("round", "rank", "array_row", "array_col")}
        for k in ("score", "pixel_x", "pixel_y", "x_um", "y_um"):
            if np.isfinite(row[k]):
                meas[k] = float(row[k])
        feats.append(
            {
                "type": "Feature",
                "id": f"{row['section']}:{row['spot_id']}",
                "geometry": {
                    "type": "Point",
                    "coordinates": [float(row["pixel_x"]), float(row["pixel_y"])],
                },
                "properties": {
                    "objectType": "annotation",
                    "name": str(row["spot_id"]),
                    "classification": {"name": cls, "color": _rgb(palette[cls])},
                    "isLocked": False,
                    "measurements": meas,
                    "metadata": {c: _text(row[c]) for c in SELECTION_COLUMNS},
                },
            }
        )
    return {"type": "FeatureCollection", "features": feats}


def write_selection_geojson(df: pd.DataFrame, path: str | Path, **kwargs) -> Path:
    """Write :func:`selection_geojson` to ``path`` (``.geojson`` or ``.json``), atomically."""
    path = Path(path)
    _suffix(path, (".geojson", ".json"), "QuPath GeoJSON")
    gj = selection_geojson(df, **kwargs)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(gj, indent=1))
    return path


def write_selection_h5ad(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a selection table as ``.h5ad``, atomically: one observation per spot (``obs`` =
    the table, ``obs_names`` = ``"{section}:{spot_id}"``, no genes) and ``obsm["spatial"]`` =
    ``pixel_x, pixel_y``."""
    import anndata as ad

    path = Path(path)
    _suffix(path, (".h5ad",), "a selection table")
    df = _coerce(df)
    obs = df.copy()
    obs.index = pd.Index((df["section"] + ":" + df["spot_id"]).astype(str))
    out = ad.AnnData(obs=obs, obsm={"spatial": df[["pixel_x", "pixel_y"]].to_numpy()})
    with atomic_path(path) as tmp:
        out.write_h5ad(tmp)
    return path


_WRITERS = {
    ".csv": write_selection_csv,
    ".tsv": write_selection_csv,
    ".geojson": write_selection_geojson,
    ".json": write_selection_geojson,
    ".h5ad": write_selection_h5ad,
}
#: the extensions :func:`write_selection` knows
SELECTION_SUFFIXES = tuple(_WRITERS)


def write_selection(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a selection table in the format named by the extension of ``path``
    (:data:`SELECTION_SUFFIXES`); any other extension raises a ``ValueError``."""
    path = Path(path)
    writer = _WRITERS.get(path.suffix.lower())
    if writer is None:
        raise ValueError(
            f"cannot write a selection to {path}: unknown extension {path.suffix!r}; "
            f"use one of {', '.join(SELECTION_SUFFIXES)}"
        )
    return writer(df, path)


def write_predictions_h5ad(
    adata,
    path: str | Path,
    *,
    selection=None,
    predicted_cell_type: Sequence[str] | None = None,
) -> Path:
    """Write the section with its predictions (and selection columns) as ``.h5ad``, atomically.

    ``adata`` is not modified: a shallow copy gets ``obs["scr2st_round"]`` (the round counted
    from 1 as in the selection table; 0 = not selected),
    ``obs["scr2st_picked_by"]``, ``obs["scr2st_sequenced"]`` and ``obs["scr2st_cell_type"]``.
    """
    from .h5ad import write_h5ad_section

    path = Path(path)
    if path.suffix != ".h5ad":
        raise ValueError(f"refusing to write {path}: the file name must end with .h5ad")
    out = adata.copy()
    if selection is not None:
        rnd = np.asarray(selection.round, dtype=np.int64)
        out.obs["scr2st_round"] = user_rounds(rnd)
        out.obs["scr2st_picked_by"] = pd.Categorical(
            [picked_by_label(s) if r >= 0 else "" for s, r in zip(selection.source, rnd, strict=True)]
        )
        out.obs["scr2st_sequenced"] = np.asarray(selection.measured, dtype=bool)
    if predicted_cell_type is not None:
        out.obs["scr2st_cell_type"] = pd.Categorical(np.asarray(predicted_cell_type, dtype=object).astype(str))
    # uns values must be h5ad-serialisable; drop live objects other packages may have parked there
    for k in [k for k, v in out.uns.items() if not isinstance(v, (dict, str, int, float, bool, list, np.ndarray, np.generic))]:
        del out.uns[k]
    return write_h5ad_section(out, path)


def write_counts_csv(adata, rows, path: str | Path) -> Path:
    """Counts of ``rows`` (mask or indices) as a spots x genes CSV (``spot_id``, ``section``,
    then one column per gene), atomically: the format of a sequencing result to import."""
    import scipy.sparse as sp

    rows = np.asarray(rows)
    idx = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
    X = adata.X[idx]
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    df = pd.DataFrame(X, columns=[str(g) for g in adata.var_names])
    if np.allclose(X, np.round(X)):
        df = df.astype(np.int64)
    sections = adata.obs[SECTION_KEY].astype(str).to_numpy()[idx] if SECTION_KEY in adata.obs else np.full(len(idx), "")
    df.insert(0, "section", sections)
    df.insert(0, "spot_id", np.asarray(adata.obs_names).astype(str)[idx])
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n")
    return path
