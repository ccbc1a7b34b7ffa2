"""Exports of a selection and of predictions, for the sequencing lab, QuPath and Python.

Qt-free; used by the napari export dock and usable from scripts. Every file is written
atomically (:func:`napari_scr2st.atomic.atomic_path`): it appears complete or not at all, and an
existing file is left untouched when writing fails.

- :func:`selection_table` / :func:`write_selection_csv` / :func:`read_selection_csv`: the list
  of spots to sequence, one row per spot, with the columns of :data:`SELECTION_COLUMNS`:

  ``section``, ``spot_id``, ``array_row``, ``array_col`` (lattice position; what a Visium or ST
  lab uses to find a spot), ``pixel_x``, ``pixel_y`` (spot centre in full-resolution image
  pixels), ``round`` (acquisition round, 0 = initial picks), ``rank`` (selection order over the
  whole acquisition, 0-based), ``picked_by`` (``policy`` = the SCRL policy, ``manual`` = picked
  by hand, else the sampler's name: ``random``, ``grid``, ``kcenter``...), ``score`` (the
  sampler's score; empty for manual picks) and ``predicted_cell_type`` (from the current model's
  predicted expression, or the transferred label of a sequenced spot; empty when unknown).

  A CSV written by :func:`write_selection_csv` reads back with :func:`read_selection_csv` as an
  IDENTICAL DataFrame (dtypes and float values included).
- :func:`selection_geojson` / :func:`write_selection_geojson`: the same spots as a GeoJSON
  ``FeatureCollection`` of ``Point`` features in full-resolution pixel coordinates that QuPath
  imports as point annotations (``objectType: "annotation"``, ``classification`` = picked_by with
  a colour, ``name`` = spot id, ``measurements`` = round, rank, score, array row/col).
- :func:`write_predictions_h5ad`: the section with predictions (``obsm["X_pred"]``...), the
  selection (``obs`` columns ``scr2st_round``, ``scr2st_picked_by``, ``scr2st_sequenced``) and
  the predicted cell type, as ``.h5ad``.
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
from ..data.model import SECTION_KEY, SPATIAL_KEY
from ..palette import PALETTE, picked_by_label, picked_by_labels

__all__ = [
    "SELECTION_COLUMNS",
    "selection_table",
    "write_selection_csv",
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
    "round": np.int64,
    "rank": np.int64,
    "picked_by": object,
    "score": np.float64,
    "predicted_cell_type": object,
}
_STR_COLS = [c for c, t in _DTYPES.items() if t is object]


def selection_table(
    adata,
    selection,
    *,
    which: str = "pending",
    predicted_cell_type: Sequence[str] | None = None,
    rounds: Sequence[int] | None = None,
) -> pd.DataFrame:
    """The selected spots of ``adata`` as a table with :data:`SELECTION_COLUMNS` (in rank order).

    ``selection``: per-spot arrays ``round`` (-1 = not selected), ``source``, ``measured``,
    ``rank``, ``score`` aligned with ``adata`` rows (a ``sampling.SelectionState``).
    ``which``: ``"pending"`` (selected, not yet sequenced: what the lab must sequence next),
    ``"all"`` (every selected spot) or ``"sequenced"``. ``rounds`` keeps only those rounds.
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
        keep &= np.isin(rnd, np.asarray(list(rounds), dtype=np.int64))
    rank = np.asarray(getattr(selection, "rank", np.arange(n)), dtype=np.int64)
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(rank[idx], kind="stable")]
    obs = adata.obs
    xy = np.asarray(adata.obsm[SPATIAL_KEY], dtype=np.float64)[:, :2]
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
            "round": rnd[idx],
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


def write_selection_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a selection table (see :func:`selection_table`) as CSV, atomically."""
    path = Path(path)
    df = _coerce(df)
    with atomic_path(path) as tmp:
        # floats as the shortest repr that round-trips; NaN score written as an empty cell
        df.to_csv(tmp, index=False, float_format=None, lineterminator="\n")
    return path


def read_selection_csv(path: str | Path) -> pd.DataFrame:
    """Read a selection CSV back, with the dtypes :func:`selection_table` produces."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"selection file not found: {path}")
    df = pd.read_csv(
        path,
        dtype={c: str for c in _STR_COLS},
        keep_default_na=False,
        na_values={"score": [""], "pixel_x": [""], "pixel_y": [""]},
        float_precision="round_trip",
    )
    missing = [c for c in SELECTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a selection file, missing columns {missing}")
    return _coerce(df)


def _rgb(hex_color: str) -> list[int]:
    h = hex_color.lstrip("#")
    return [int(h[i : i + 2], 16) for i in (0, 2, 4)]


_PICKED_COLORS = {"policy": "#00bfff", "manual": "#ffffff"}


def selection_geojson(df: pd.DataFrame, *, colors: dict[str, str] | None = None) -> dict:
    """A GeoJSON FeatureCollection (QuPath point annotations) of a selection table."""
    df = _coerce(df)
    palette = dict(_PICKED_COLORS)
    palette.update(colors or {})
    others = [p for p in dict.fromkeys(df["picked_by"]) if p not in palette]
    for i, p in enumerate(others):
        palette[p] = PALETTE[i % len(PALETTE)]
    feats = []
    for row in df.itertuples(index=False):
        meas = {"round": int(row.round), "rank": int(row.rank), "array_row": int(row.array_row), "array_col": int(row.array_col)}
        if np.isfinite(row.score):
            meas["score"] = float(row.score)
        props = {
            "objectType": "annotation",
            "name": f"{row.spot_id}",
            "classification": {"name": str(row.picked_by), "color": _rgb(palette[row.picked_by])},
            "isLocked": False,
            "measurements": meas,
            "section": str(row.section),
            "spot_id": str(row.spot_id),
            "round": int(row.round),
            "picked_by": str(row.picked_by),
            "predicted_cell_type": str(row.predicted_cell_type),
        }
        feats.append(
            {
                "type": "Feature",
                "id": f"{row.section}:{row.spot_id}",
                "geometry": {"type": "Point", "coordinates": [float(row.pixel_x), float(row.pixel_y)]},
                "properties": props,
            }
        )
    return {"type": "FeatureCollection", "features": feats}


def write_selection_geojson(df: pd.DataFrame, path: str | Path, **kwargs) -> Path:
    """Write :func:`selection_geojson` to ``path`` (``.geojson``), atomically."""
    path = Path(path)
    gj = selection_geojson(df, **kwargs)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(gj, indent=1))
    return path


def write_predictions_h5ad(
    adata,
    path: str | Path,
    *,
    selection=None,
    predicted_cell_type: Sequence[str] | None = None,
) -> Path:
    """Write the section with its predictions (and selection columns) as ``.h5ad``, atomically.

    ``adata`` is not modified: a shallow copy gets ``obs["scr2st_round"]`` (-1 = not selected),
    ``obs["scr2st_picked_by"]``, ``obs["scr2st_sequenced"]`` and ``obs["scr2st_cell_type"]``.
    """
    from .h5ad import write_h5ad_section

    path = Path(path)
    if path.suffix != ".h5ad":
        raise ValueError(f"refusing to write {path}: the file name must end with .h5ad")
    out = adata.copy()
    if selection is not None:
        rnd = np.asarray(selection.round, dtype=np.int64)
        out.obs["scr2st_round"] = rnd
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
