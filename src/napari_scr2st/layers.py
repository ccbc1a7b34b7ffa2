"""Pure layer builders: section AnnData -> napari ``LayerDataTuple`` ``(data, kwargs, type)``.

No napari or Qt import here: these functions are tested headless, used by the reader and
sample-data glue, and by the widgets. Coordinates follow napari's (row, col) = (y, x) order;
``obsm["spatial"]`` is (x, y) in full-resolution pixels, so every layer lives in full-res pixel
space and images are placed with a ``scale`` when only a downscaled copy is shown.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data.model import (
    SECTION_KEY,
    SPATIAL_KEY,
    get_fullres_image,
    get_fullres_slide,
    get_lowres_image,
    library_id,
    spot_diameter_px,
)
from .palette import (
    MANUAL,
    MANUAL_COLOR,
    ROUND_COLORS,
    celltype_colors,
    hex_to_rgba,
    hex_to_rgba_array,
    picked_by_labels,
    round_color,
    round_label,
    user_rounds,
)

__all__ = [
    "image_layer",
    "slide_image_layer",
    "slide_display_levels",
    "spots_layer",
    "section_layers",
    "image_pyramid",
    "spot_yx",
    "spot_features",
    "spot_static_features",
    "selection_layer",
    "expression_layer",
    "celltype_layer",
    "roi_layer",
    "inspect_layer",
    "spots_in_shapes",
    "spot_patch",
    "measured_expression",
    "expression_values",
    "celltype_colors",
    "round_color",
    "layer_name",
    "expression_layer_name",
    "expression_title",
    "EXPRESSION_SCALE",
    "SPOTS_SUFFIX",
    "LAYER_SUFFIXES",
]

SPOTS_SUFFIX = " spots"
IMAGE_SUFFIX = " H&E"

#: fixed layer names (``f"{section}{suffix}"``): widgets find these layers or create them
LAYER_SUFFIXES = {
    "image": IMAGE_SUFFIX,
    "spots": SPOTS_SUFFIX,
    "selected": " selected",
    "expression": " expression",
    "cell_types": " cell types",
    "include": " include ROI",
    "exclude": " exclude ROI",
    "inspect": " inspected",
}

#: the scale of every expression value the maps show (measured and predicted alike)
EXPRESSION_SCALE = "log1p normalised counts"

#: selection rings and manual stars are drawn larger than a spot, so that the maps drawn ABOVE
#: them (measured or predicted values, cell types) leave the ring visible around each spot
SELECTION_RING_SIZE = 1.5
MANUAL_STAR_SIZE = 2.2


def layer_name(section: str, kind: str) -> str:
    """The fixed name of a layer of ``kind`` (a key of :data:`LAYER_SUFFIXES`) for a section."""
    return f"{section}{LAYER_SUFFIXES[kind]}"


def expression_layer_name(section: str, gene: str, source: str) -> str:
    """The name of an expression map: section, gene and predicted/measured (``"C3 · ERBB2 ·
    predicted"``), so that the layer list never leaves in doubt what a map shows."""
    return f"{section} · {gene} · {source}"



def image_pyramid(image: np.ndarray, min_side: int = 1024) -> list[np.ndarray]:
    """Levels of a 2x pyramid (full resolution first) down to ``min_side`` pixels."""
    from PIL import Image

    levels = [image]
    cur = image
    while max(cur.shape[:2]) > min_side * 2:
        h, w = cur.shape[:2]
        cur = np.asarray(Image.fromarray(cur).resize((w // 2, h // 2), Image.Resampling.BOX))
        levels.append(cur)
    return levels


def spot_yx(adata) -> np.ndarray:
    """Spot centres as napari (y, x) coordinates in full-resolution pixels."""
    xy = np.asarray(adata.obsm[SPATIAL_KEY], dtype=float)[:, :2]
    return xy[:, ::-1].copy()


def slide_display_levels(slide, min_side: int = 1024) -> list:
    """The lazy pyramid napari shows for a whole slide (a lazy ``SlideImage``), largest first.

    The file's own levels (dask arrays over its tiles); when the smallest is still longer than
    ``2 * min_side`` pixels, strided 2x levels are appended so the zoomed-out view reads a
    subsample of the tiles instead of a full-resolution plane. Nothing is decoded here.
    """
    levels = list(slide.levels)
    while max(levels[-1].shape[:2]) > 2 * min_side:
        levels.append(levels[-1][::2, ::2])
    return levels


def slide_image_layer(slide, *, section: str, name: str | None = None, multiscale: bool | None = None):
    """The image layer of a :class:`~napari_scr2st.data.images.SlideImage` in full-res pixels.

    A lazy slide (TIFF family) becomes a multiscale layer over :func:`slide_display_levels`
    (one lazy level when it has a single small one) and is never decoded whole; a decoded image
    is shown as :func:`image_layer` shows a decoded full-resolution image (a pyramid when it is
    longer than 4096 pixels or ``multiscale``).
    """
    kw = {"name": name or f"{section}{IMAGE_SUFFIX}", "rgb": True, "metadata": {"section": section}}
    if slide.is_lazy:
        levels = slide_display_levels(slide)
        if len(levels) == 1:
            return levels[0], kw, "image"
        return levels, {**kw, "multiscale": True}, "image"
    return _decoded_image_layer(np.asarray(slide.level0), kw, multiscale)


def _decoded_image_layer(full: np.ndarray, kw: dict, multiscale: bool | None):
    big = max(full.shape[:2]) > 4096
    if multiscale or (multiscale is None and big):
        return image_pyramid(full), {**kw, "multiscale": True}, "image"
    return full, kw, "image"


def image_layer(adata, *, library: str | None = None, multiscale: bool | None = None, name: str | None = None):
    """The H&E of a section in full-res pixel space.

    A section backed by a whole slide gets the slide's lazy multiscale pyramid
    (:func:`slide_image_layer`; only the tiles napari shows are decoded); a decoded
    full-resolution image a pyramid when it is large (longer than 4096 pixels) or
    ``multiscale``, else the array; without one, the stored low-res image scaled up to
    full-res pixel space. Returns ``None`` when the section has no image.
    """
    lib = library or library_id(adata)
    kw = {"name": name or f"{lib}{IMAGE_SUFFIX}", "rgb": True, "metadata": {"section": lib}}
    full = get_fullres_image(adata, lib)
    if full is not None:
        if not isinstance(full, np.ndarray):  # a whole slide's lazy level 0
            return slide_image_layer(get_fullres_slide(adata, lib), section=lib, name=kw["name"])
        return _decoded_image_layer(full, kw, multiscale)
    low = get_lowres_image(adata, lib)
    if low is None:
        return None
    img, s = low
    return img, {**kw, "scale": (1 / s, 1 / s)}, "image"


def spot_features(
    adata,
    *,
    selection=None,
    excluded: np.ndarray | None = None,
    cell_types=None,
    predicted: pd.DataFrame | None = None,
    genes=None,
    static: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per-spot table shown on hover: id, section, lattice position, total counts, cell type,
    selection state, round (1 = the first round, 0 = not selected: :func:`~napari_scr2st.palette.user_rounds`),
    picked by, and predicted expression of ``genes``.

    ``static``: the columns that never change for a section (:func:`spot_static_features`),
    computed once and reused (a shallow copy: at 300,000 spots this saves the total-counts sum
    and the id columns per re-selection).

    ``selection`` is any object with per-spot arrays ``round`` (0-based, -1 = not selected), ``source``
    and ``measured`` aligned with ``adata`` rows (a ``sampling.SelectionState``); ``excluded``
    a boolean mask; ``cell_types`` an (n,) array of names ("" unknown); ``predicted`` a
    DataFrame (rows = spots, columns = genes), e.g. ``obsm["X_pred"]``. Without ``selection``,
    ``obs`` columns ``selected``/``round``/``picked_by`` are used when present.
    """
    obs = adata.obs
    feats = (static if static is not None and len(static) == adata.n_obs else spot_static_features(adata)).copy(
        deep=False)
    if cell_types is not None:
        feats["cell_type"] = np.asarray(cell_types, dtype=object).astype(str)
    elif "cell_type" in obs:
        feats["cell_type"] = obs["cell_type"].astype(str).to_numpy()
    if selection is not None:
        rnd = np.asarray(selection.round)
        measured = np.asarray(selection.measured, dtype=bool)
        state = np.where(measured, "sequenced", np.where(rnd >= 0, "selected", "not selected")).astype(object)
        if excluded is not None:
            state[np.asarray(excluded, dtype=bool) & (rnd < 0)] = "excluded"
        feats["state"] = state
        feats["round"] = user_rounds(rnd).astype(int)
        picked = picked_by_labels(selection.source)
        picked[rnd < 0] = ""
        feats["picked_by"] = picked
    else:
        for col in ("selected", "round", "picked_by"):
            if col in obs:
                feats[col] = obs[col].to_numpy()
    if predicted is not None and genes:
        for g in genes:
            if g in predicted.columns:
                feats[f"pred_{g}"] = np.asarray(predicted[g], dtype=float)
    return feats


def spot_static_features(adata) -> pd.DataFrame:
    """The columns of :func:`spot_features` that never change: id, section, lattice position
    and total counts."""
    obs = adata.obs
    n = adata.n_obs
    X = adata.X
    total = np.asarray(X.sum(axis=1)).ravel() if X is not None else np.zeros(n)
    return pd.DataFrame(
        {
            "spot_id": np.asarray(adata.obs_names, dtype=object),
            "section": obs[SECTION_KEY].astype(str).to_numpy() if SECTION_KEY in obs else "",
            "array_row": obs["array_row"].to_numpy() if "array_row" in obs else 0,
            "array_col": obs["array_col"].to_numpy() if "array_col" in obs else 0,
            "total_counts": total.astype(float),
        }
    )


def spots_layer(
    adata,
    *,
    library: str | None = None,
    name: str | None = None,
    color_by: str | None = None,
    extra_features: dict | None = None,
    selection=None,
    excluded: np.ndarray | None = None,
    cell_types=None,
    predicted: pd.DataFrame | None = None,
    genes=None,
):
    """The spot grid as a Points layer sized by the real spot diameter, with per-spot
    ``features`` (shown on hover; see :func:`spot_features`). ``color_by`` names a feature
    column (an ``obs`` column or a key of ``extra_features``) to colour faces by."""
    lib = library or library_id(adata)
    feats = spot_features(
        adata, selection=selection, excluded=excluded, cell_types=cell_types, predicted=predicted, genes=genes
    )
    if color_by is not None and color_by not in feats and color_by in adata.obs:
        feats[color_by] = adata.obs[color_by].to_numpy()
    for key, values in (extra_features or {}).items():
        feats[key] = np.asarray(values)
    kwargs = {
        "name": name or f"{lib}{SPOTS_SUFFIX}",
        "size": spot_diameter_px(adata, lib),
        "features": feats,
        "face_color": "transparent",
        "border_color": "#ffffff",
        "border_width": 0.12,
        "border_width_is_relative": True,
        "opacity": 0.9,
        # the section travels with its layer, as napari-spatialdata does, so widgets find it
        "metadata": {"section": lib, "adata": adata},
    }
    if color_by is not None:
        kwargs["face_color"] = color_by
        if pd.api.types.is_numeric_dtype(feats[color_by]):
            kwargs["face_colormap"] = "viridis"
    return spot_yx(adata), kwargs, "points"


def selection_layer(adata, selection, *, library: str | None = None, name: str | None = None):
    """The selected spots as rings around the spots, coloured by ROUND (sampler and policy picks),
    and large white stars outlined in their round's colour (manual picks); sequenced spots
    opaque, pending ones (chosen, not yet sequenced) faded.

    Rings (:data:`SELECTION_RING_SIZE` spot diameters, transparent inside) and stars
    (:data:`MANUAL_STAR_SIZE`) are larger than a spot, so a map drawn above this layer leaves
    them visible around each spot. ``selection`` as in :func:`spot_features` (also ``rank``,
    ``score`` and ``budget`` when present). ``metadata``: ``legend`` (``{"round r": hex}``, r
    counted from 1), ``symbols``, ``index`` (the spot row of each point), ``n_manual`` and ``budget``.
    Vectorised: no per-spot Python loop.
    """
    lib = library or library_id(adata)
    rnd = np.asarray(selection.round)
    idx = np.flatnonzero(rnd >= 0)
    rank = np.asarray(getattr(selection, "rank", np.full(len(rnd), -1)))
    idx = idx[np.argsort(rank[idx], kind="stable")]
    picked = picked_by_labels(np.asarray(selection.source, dtype=object)[idx])
    manual = picked == MANUAL
    measured = np.asarray(selection.measured, dtype=bool)[idx]
    score = np.asarray(getattr(selection, "score", np.full(len(rnd), np.nan)), dtype=float)[idx]
    palette = hex_to_rgba_array(ROUND_COLORS)
    ring = palette[rnd[idx] % len(ROUND_COLORS)].reshape(-1, 4)
    ring[~measured, 3] = 0.5
    face = np.zeros((len(idx), 4), np.float32)  # rings: transparent inside
    face[manual] = hex_to_rgba(MANUAL_COLOR)
    face[manual & ~measured, 3] = 0.75
    diam = spot_diameter_px(adata, lib)
    size = np.where(manual, MANUAL_STAR_SIZE, SELECTION_RING_SIZE) * diam
    # a ring of width 0.25 spot diameters around the spot; a thin outline of the star
    width = np.where(manual, 0.03, 0.25 / SELECTION_RING_SIZE)
    feats = pd.DataFrame(
        {
            "spot_id": np.asarray(adata.obs_names, dtype=object)[idx],
            "round": user_rounds(rnd[idx]).astype(int),
            "rank": rank[idx].astype(int),
            "picked_by": picked,
            "score": score,
            "state": np.where(measured, "sequenced", "selected").astype(object),
        }
    )
    legend = {round_label(r): round_color(r) for r in np.unique(rnd[idx]).tolist()}
    budget = getattr(selection, "budget", None)
    kwargs = {
        "name": name or layer_name(lib, "selected"),
        "size": size.astype(np.float32),
        "features": feats,
        "face_color": face if len(idx) else "transparent",
        "border_color": ring if len(idx) else "black",
        "border_width": width.astype(np.float32),
        "border_width_is_relative": True,
        "symbol": np.where(manual, "star", "disc").tolist() if manual.any() else "disc",
        "opacity": 1.0,
        "metadata": {
            "section": lib, "map": "selected", "legend": legend,
            "symbols": {"manual pick": "star", "sampler/policy": "ring"},
            "index": idx, "n_manual": int(manual.sum()), "n_selected": len(idx),
            "budget": None if budget is None else int(budget),
        },
    }
    return spot_yx(adata)[idx].reshape(-1, 2), kwargs, "points"


def measured_expression(adata, gene: str, measured: np.ndarray) -> np.ndarray:
    """log1p-normalised values of ``gene`` for the ``measured`` rows, NaN elsewhere (reads the
    counts of measured rows only)."""
    from .data.expression import log1p_normalized

    measured = np.asarray(measured, dtype=bool)
    out = np.full(adata.n_obs, np.nan, dtype=np.float32)
    if measured.any():
        out[measured] = log1p_normalized(adata, [gene], rows=measured)[:, 0]
    return out


def expression_values(adata, gene: str, *, source: str = "predicted", measured=None, predicted=None) -> np.ndarray:
    """Per-spot values of ``gene`` (NaN where unknown).

    ``source="predicted"``: the column of ``predicted`` (default ``obsm["X_pred"]``);
    ``"measured"``: log1p-normalised counts where ``measured`` is True (a mask, or an (n,) array
    of values with NaN for unmeasured spots).
    """
    if source == "measured":
        if measured is None:
            raise ValueError("measured values need a mask of sequenced spots")
        m = np.asarray(measured)
        if m.dtype != bool:
            return m.astype(np.float32)
        return measured_expression(adata, gene, m)
    if source != "predicted":
        raise ValueError(f"source must be 'predicted' or 'measured', got {source!r}")
    pred = predicted if predicted is not None else adata.obsm.get("X_pred")
    if pred is None:
        raise KeyError("no prediction: train a model and predict first (obsm['X_pred'] is missing)")
    if not isinstance(pred, pd.DataFrame):
        raise TypeError("predictions must be a DataFrame with gene columns")
    if gene not in pred.columns:
        raise KeyError(f"gene {gene!r} is not in the predicted panel ({len(pred.columns)} genes)")
    return np.asarray(pred[gene], dtype=np.float32)


def expression_title(gene: str, source: str, n_values: int | None = None, n_spots: int | None = None) -> str:
    """The title of an expression map's colour bar: gene, predicted/measured and the scale; a
    measured map also says how many spots have a value (the others are not drawn)."""
    head = f"{gene} · {source}"
    lines = [head, EXPRESSION_SCALE]
    if source == "measured" and n_values is not None and n_spots is not None:
        lines.append(f"{n_values} of {n_spots} spots sequenced; no data: not drawn")
    return "\n".join(lines)


def expression_layer(
    adata,
    gene: str,
    values: np.ndarray,
    *,
    source: str = "predicted",
    library: str | None = None,
    name: str | None = None,
    colormap: str = "magma",
    contrast_limits: tuple[float, float] | None = None,
):
    """Expression map of ``gene``: one filled spot per spot WITH a value, coloured with
    ``colormap`` between ``contrast_limits`` (default: 1st-99th percentile).

    Spots without a value (NaN: not sequenced, for a measured map) are left out of the layer,
    so they are never drawn (on magma the lowest colour is black, which reads as "no
    expression"). The name says section, gene and source (:func:`expression_layer_name`);
    ``metadata["colorbar"]`` asks the viewer glue to show the layer's colour bar and
    ``metadata["title"]`` is its title (:func:`expression_title`); ``metadata["index"]`` the
    spot row of each point.
    """
    lib = library or library_id(adata)
    v = np.asarray(values, dtype=np.float32)
    if v.shape != (adata.n_obs,):
        raise ValueError(f"values must have one entry per spot ({adata.n_obs}), got {v.shape}")
    ok = np.isfinite(v)
    idx = np.flatnonzero(ok)
    if contrast_limits is None:
        if ok.any():
            lo, hi = np.percentile(v[ok], [1, 99])
        else:
            lo, hi = 0.0, 1.0
        if hi <= lo:
            hi = lo + 1e-3
        contrast_limits = (float(lo), float(hi))
    vals = v[idx]
    feats = pd.DataFrame({"spot_id": np.asarray(adata.obs_names, dtype=object)[idx], "value": vals})
    feats[gene] = vals
    kwargs = {
        "name": name or expression_layer_name(lib, gene, source),
        "size": spot_diameter_px(adata, lib),
        "features": feats,
        "face_color": "value",
        "face_colormap": colormap,
        "face_contrast_limits": tuple(map(float, contrast_limits)),
        "border_width": 0,
        "opacity": 1.0,
        "metadata": {
            "section": lib, "map": "expression", "gene": gene, "source": source, "colorbar": True,
            "title": expression_title(gene, source, len(idx), adata.n_obs), "index": idx,
        },
    }
    return spot_yx(adata)[idx].reshape(-1, 2), kwargs, "points"


def celltype_layer(adata, cell_types, *, categories=None, library: str | None = None, name: str | None = None):
    """Cell types as categorical spot colours (precomputed RGBA, :func:`celltype_colors`: never
    a selection colour) with a legend in ``metadata["legend"]`` (``{type: hex}``); spots of
    unknown type ("") are transparent and hidden. Vectorised (categorical codes)."""
    lib = library or library_id(adata)
    raw = np.asarray(cell_types, dtype=object)
    if raw.shape != (adata.n_obs,):
        raise ValueError(f"cell_types must have one entry per spot ({adata.n_obs}), got {raw.shape}")
    found = pd.Categorical(raw)  # on objects: fast (a unicode array is ~30x slower)
    names = np.append(np.asarray(found.categories.astype(str), dtype=object), "")  # code -1: ""
    ct = names[found.codes]
    cats = [str(c) for c in (categories if categories is not None else sorted(set(names.tolist()) - {""}))]
    colors = celltype_colors(cats)
    pos = {c: i for i, c in enumerate(cats)}
    lut = np.array([pos.get(n, -1) for n in names], dtype=np.int64)  # one entry per distinct type
    codes = lut[found.codes]  # -1: unknown or not a category
    table = np.vstack([hex_to_rgba_array(list(colors.values())), np.zeros((1, 4), np.float32)])
    rgba = table[codes]  # code -1 picks the transparent last row
    kwargs = {
        "name": name or layer_name(lib, "cell_types"),
        "size": spot_diameter_px(adata, lib),
        "features": pd.DataFrame({"spot_id": np.asarray(adata.obs_names, dtype=object), "cell_type": ct}),
        "face_color": rgba.reshape(-1, 4),
        "border_width": 0,
        "shown": codes >= 0,
        "opacity": 1.0,
        "metadata": {"section": lib, "map": "cell_types", "legend": colors},
    }
    return spot_yx(adata), kwargs, "points"


def roi_layer(kind: str, *, library: str, name: str | None = None):
    """An empty Shapes layer for ``kind`` = ``"include"`` (green: only spots inside may be
    picked) or ``"exclude"`` (red: spots inside are never picked)."""
    if kind not in ("include", "exclude"):
        raise ValueError(f"kind must be 'include' or 'exclude', got {kind!r}")
    color = "#32cd32" if kind == "include" else "#ff3030"
    kwargs = {
        "name": name or layer_name(library, kind),
        "shape_type": "polygon",
        "edge_color": color,
        "face_color": hex_to_rgba(color, 0.12),
        "edge_width": 4,
        "metadata": {"section": library, "roi": kind},
    }
    return [], kwargs, "shapes"


def inspect_layer(adata, query: int, neighbours=(), kept=(), *, library: str | None = None, name: str | None = None):
    """The inspected spot (cyan ring) and its retrieved neighbours in this section (kept: green
    ring, filtered: red cross)."""
    lib = library or library_id(adata)
    yx = spot_yx(adata)
    nb = np.asarray(list(neighbours), dtype=np.int64).ravel()
    kp = np.asarray(list(kept), dtype=bool).ravel() if len(nb) else np.zeros(0, bool)
    ok = nb >= 0
    nb, kp = nb[ok], kp[ok]
    idx = np.concatenate([[int(query)], nb]).astype(np.int64)
    role = np.concatenate([["query"], np.where(kp, "kept", "filtered")]).astype(object)
    code = np.concatenate([[0], np.where(kp, 1, 2)])
    border = hex_to_rgba_array(["#00ffff", "#32cd32", "#ff3030"])[code]
    kwargs = {
        "name": name or layer_name(lib, "inspect"),
        "size": spot_diameter_px(adata, lib) * 1.5,
        "features": pd.DataFrame({"spot_id": np.asarray(adata.obs_names, dtype=object)[idx], "role": role}),
        "face_color": "transparent",
        "border_color": border,
        "border_width": 0.2,
        "border_width_is_relative": True,
        "symbol": np.where(role == "filtered", "x", "ring").tolist(),
        "metadata": {"section": lib, "map": "inspect"},
    }
    return yx[idx].reshape(-1, 2), kwargs, "points"


def _in_polygon(yx: np.ndarray, poly: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
    """Even-odd rule, vectorised over points (``poly`` (k, 2) vertices, any order), in blocks
    of points so that memory stays bounded (``chunk`` point-vertex pairs) at 300,000 spots."""
    step = max(1, chunk // max(1, len(poly)))
    if len(yx) > step:
        return np.concatenate([_in_polygon(yx[i : i + step], poly, chunk) for i in range(0, len(yx), step)])
    y, x = yx[:, 0][:, None], yx[:, 1][:, None]
    py, px = poly[:, 0][None, :], poly[:, 1][None, :]
    qy, qx = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]
    crosses = (py > y) != (qy > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = px + (y - py) * (qx - px) / (qy - py)
    return (crosses & (x < xint)).sum(axis=1) % 2 == 1


def _in_ellipse(yx: np.ndarray, corners: np.ndarray) -> np.ndarray:
    c = corners.mean(axis=0)
    u = (corners[1] - corners[0]) / 2.0
    w = (corners[3] - corners[0]) / 2.0
    d = yx - c
    nu, nw = float(u @ u), float(w @ w)
    if nu <= 0 or nw <= 0:
        return np.zeros(len(yx), dtype=bool)
    return (d @ u) ** 2 / nu**2 + (d @ w) ** 2 / nw**2 <= 1.0


def spots_in_shapes(yx: np.ndarray, shapes, shape_types=None) -> np.ndarray:
    """Boolean mask of points (napari (y, x)) inside ANY of ``shapes`` (list of vertex arrays
    in (y, x), as a napari Shapes layer's ``data``). Polygons and rectangles use their
    outline; ellipses their 4 bounding-box corners; lines and paths enclose nothing."""
    yx = np.asarray(yx, dtype=float).reshape(-1, 2)
    out = np.zeros(len(yx), dtype=bool)
    types = list(shape_types) if shape_types is not None else ["polygon"] * len(shapes)
    for verts, kind in zip(shapes, types, strict=True):
        v = np.asarray(verts, dtype=float)[:, -2:]
        if kind in ("line", "path") or len(v) < 3:
            continue
        out |= _in_ellipse(yx, v) if kind == "ellipse" else _in_polygon(yx, v)
    return out


def section_layers(adata, *, library: str | None = None):
    """Image (if any) + spots for one section, ready for napari's reader/sample-data protocol."""
    out = []
    img = image_layer(adata, library=library)
    if img is not None:
        out.append(img)
    out.append(spots_layer(adata, library=library))
    return out


def spot_patch(adata, index: int, *, scale: float = 2.0, out_size: int = 96, library: str | None = None) -> np.ndarray:
    """RGB uint8 patch (``out_size`` square) around spot ``index``: ``scale`` spot diameters of
    the full-resolution image (or the stored low-resolution one), padded white at the border.
    A grey square when the section has no image."""
    from PIL import Image

    lib = library or library_id(adata)
    x, y = np.asarray(adata.obsm[SPATIAL_KEY], dtype=float)[int(index), :2]
    half = max(2.0, scale * spot_diameter_px(adata, lib) / 2.0)
    img = get_fullres_image(adata, lib)
    f = 1.0
    if img is None:
        low = get_lowres_image(adata, lib)
        if low is None:
            return np.full((out_size, out_size, 3), 128, np.uint8)
        img, f = low
    cx, cy, h = x * f, y * f, max(1.0, half * f)
    x0, x1, y0, y1 = int(round(cx - h)), int(round(cx + h)), int(round(cy - h)), int(round(cy + h))
    H, W = img.shape[:2]
    out = np.full((y1 - y0, x1 - x0, 3), 255, np.uint8)
    sx0, sx1, sy0, sy1 = max(0, x0), min(W, x1), max(0, y0), min(H, y1)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = np.asarray(img[sy0:sy1, sx0:sx1, :3])
    return np.asarray(Image.fromarray(out).resize((out_size, out_size), Image.Resampling.BILINEAR))
