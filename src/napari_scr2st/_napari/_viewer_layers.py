"""Layers of a session in the viewer: find sections, create or update fixed-name layers, ROIs,
the spot under the cursor."""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd

from .. import layers as L
from .. import palette as P
from ..session import AcquisitionSession
from . import _dock_kit as K
from ._sessions import get_session


# ------------------------------------------------------------------ sessions and layers
def spots_layers(viewer) -> list:
    """Layers that carry a section (the plugin's spots layers)."""
    return [ly for ly in viewer.layers if ly.__class__.__name__ == "Points" and "adata" in ly.metadata]


def session_for(layer) -> AcquisitionSession | None:
    return None if layer is None else get_session(layer)


def map_layer(viewer, section: str, kind: str):
    """The layer of map ``kind`` (``metadata["map"]``: "selected", "expression", "cell_types",
    "inspect") of a section, or None. Expression maps are found this way because their name
    follows the gene and the source."""
    for ly in viewer.layers:
        md = ly.metadata
        if md.get("map") == kind and md.get("section") == section:
            return ly
    return None


def apply_layer(viewer, data, kwargs: dict, kind: str, built=None):
    """Create the layer named ``kwargs['name']`` or update it in place (fixed-name layers; a map
    layer of the same section and ``metadata["map"]`` is renamed and updated). Adding a layer
    keeps the active layer (so the spots layer stays active and its hover table shows); map
    layers are kept in their order (:func:`order_map_layers`) and the canvas legend follows
    (:func:`sync_canvas_legend`). ``built``: the same layer already made as a napari layer (in a
    worker, :func:`~._workers.build_layers`), added instead of building it here when the
    viewer has no such layer yet."""
    name = kwargs["name"]
    kwargs = dict(kwargs)
    meta = kwargs.get("metadata", {})
    colorbar = bool(meta.get("colorbar"))
    layer = viewer.layers[name] if name in viewer.layers else None
    if layer is None and meta.get("map"):
        layer = map_layer(viewer, meta.get("section"), meta["map"])
    if layer is not None:
        if layer.__class__.__name__.lower() == kind:
            if layer.name != name:
                layer.name = name
            _update_in_place(layer, data, kwargs, kind)
            if colorbar and hasattr(layer, "face_colorbar"):
                layer.face_colorbar.visible = True
            _after_map_change(viewer, layer)
            return layer
        viewer.layers.remove(layer)
    active = viewer.layers.selection.active
    if built is not None:
        layer = viewer.add_layer(built)
    else:
        layer = getattr(viewer, f"add_{kind}")(data, **kwargs)
    if colorbar and hasattr(layer, "face_colorbar"):
        # shown by the legend sync (only the top expression map's bar shows), in a turn of its own
        layer.face_colorbar.position = COLORBAR_POSITION
    if active is not None and active in viewer.layers and meta.get("map"):
        viewer.layers.selection.active = active
    _after_map_change(viewer, layer)
    return layer


def _after_map_change(viewer, layer) -> None:
    md = layer.metadata
    if not md.get("map"):
        return
    order_map_layers(viewer, md.get("section"))
    install_canvas_legend(viewer)
    request_legend_sync(viewer)


#: map layers of a section from bottom to top: measured/predicted values and cell types are
#: drawn ABOVE the selection rings (which are larger than a spot and stay visible around them)
MAP_ORDER = ("selected", "cell_types", "expression", "inspect")


def order_map_layers(viewer, section: str) -> None:
    """Keep the map layers of ``section`` in :data:`MAP_ORDER` above the section's other layers
    (image, spots, ROIs); nothing moves when they already are (no event at slider speed, and
    the maps of two open sections do not keep trading places)."""
    layers = viewer.layers
    present = [ly for k in MAP_ORDER if (ly := map_layer(viewer, section, k)) is not None]
    if not present:
        return
    idx = [layers.index(ly) for ly in present]
    others = [i for i, ly in enumerate(layers) if ly.metadata.get("section") == section and not ly.metadata.get("map")]
    if idx == sorted(idx) and (not others or idx[0] > max(others)):
        return
    for ly in present:
        layers.move(layers.index(ly), len(layers))


# ------------------------------------------------------------------ the legend on the canvas
LEGEND_PREFIX = "scr2st_legend_"
#: the colour bar and its title stack vertically in the bottom-right corner; the legend in the
#: top-left one (napari tiles both corners vertically by default)
COLORBAR_POSITION = "bottom_right"
TITLE_KEY = "scr2st_colorbar_title"
_LEGEND_VIEWERS: weakref.WeakSet = weakref.WeakSet()
_LAST_LEGEND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LEGEND_PENDING: weakref.WeakSet = weakref.WeakSet()


def legend_entries(viewer) -> list[tuple[str, str]]:
    """``(text, hex colour)`` of the canvas legend, from the VISIBLE map layers: the rounds,
    sampler/policy rings vs manual stars (with the manual count against the budget) and the
    faded "not yet sequenced" state of the selection; the cell types of a cell-type map."""
    out: list[tuple[str, str]] = []
    for ly in list(viewer.layers)[::-1]:  # top layer first
        md = ly.metadata
        if not ly.visible or md.get("map") not in ("selected", "cell_types"):
            continue
        if md["map"] == "selected" and md.get("n_selected", 0):
            # the white lines first, together (one overlay for them: see legend_blocks), then
            # one line per round in its colour
            out.append((f"Selection ({md.get('section')})", "#ffffff"))
            n_manual, budget = md.get("n_manual", 0), md.get("budget")
            of = f" of a budget of {budget}" if budget else ""
            out.append((f"\u2605 manual picks: {n_manual}{of} (large white stars)", P.MANUAL_COLOR))
            out.append(("\u25cb ring: sampler/policy pick; faded: not yet sequenced", "#ffffff"))
            out += [(f"\u25cb {name}", c) for name, c in md.get("legend", {}).items()]
        elif md["map"] == "cell_types":
            out.append((f"Cell types ({md.get('section')})", "#ffffff"))
            out += [(f"\u25cf {name}", c) for name, c in md.get("legend", {}).items()]
    return out


def _box_for(color: str) -> tuple:
    """The box behind a legend line: black or white, whichever contrasts more with the text's
    colour (WCAG relative luminance), nearly opaque so the tissue does not show through."""
    c = P.hex_to_rgba(color)[:3].astype(float)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    lum = float(lin @ np.array([0.2126, 0.7152, 0.0722]))
    on_black, on_white = (lum + 0.05) / 0.05, 1.05 / (lum + 0.05)
    return (0.0, 0.0, 0.0, 0.8) if on_black >= on_white else (1.0, 1.0, 1.0, 0.85)


def _colorbar_layer(viewer):
    """The expression map whose colour bar shows: the top visible one that no visible cell-type
    map of its section covers; None when there is none."""
    covered: set = set()
    for ly in list(viewer.layers)[::-1]:
        md = ly.metadata
        if not ly.visible:
            continue
        if md.get("map") == "cell_types":
            covered.add(md.get("section"))
        elif md.get("map") == "expression" and md.get("section") not in covered and len(ly.data):
            return ly
    return None


def sync_canvas_legend(viewer) -> None:
    """Show the legend of the visible map layers on the canvas (top left, one coloured line per
    entry; consecutive lines of one colour in one overlay), the title of the shown colour bar
    (bottom right, with the bar: gene, predicted/measured, scale) and hide every colour bar but that one (never over a cell-type
    map). Nothing is set when nothing changed (no overlay event at slider speed)."""
    from napari.components.overlays import TextOverlay

    overlays = viewer.canvas.overlays
    entries = legend_entries(viewer)
    real = K.unwrap(viewer)
    if _LAST_LEGEND.get(real) != entries:
        _LAST_LEGEND[real] = entries
        _set_legend(overlays, entries, TextOverlay)
    shown = _colorbar_layer(viewer)
    for ly in viewer.layers:
        if ly.metadata.get("map") == "expression" and hasattr(ly, "face_colorbar"):
            want = ly is shown
            if ly.face_colorbar.visible != want:
                ly.face_colorbar.visible = want
    title = shown.metadata.get("title", shown.name) if shown is not None else ""
    if TITLE_KEY not in overlays:
        overlays[TITLE_KEY] = TextOverlay(text=title, position=COLORBAR_POSITION, font_size=10, box=True,
                                          box_color=(0, 0, 0, 0.55), color="#ffffff", visible=bool(title))
        return
    o = overlays[TITLE_KEY]
    if o.text != title:
        o.text = title
    if o.visible != bool(title):
        o.visible = bool(title)


def request_legend_sync(viewer) -> None:
    """:func:`sync_canvas_legend` in the next turn of the event loop, once for however many
    changes come before it; at once with synchronous workers (tests, scripts).

    A layer's insertion (its visual, its controls: 0.1-0.3 s here) and the legend's overlays and
    colour bar (their visuals, ~50-150 ms) then freeze the viewer one after the other, with a
    repaint and input in between, instead of together."""
    from ._workers import sync_workers

    real = K.unwrap(viewer)
    if sync_workers():
        sync_canvas_legend(real)
        return
    if real in _LEGEND_PENDING:
        return
    _LEGEND_PENDING.add(real)
    ref = weakref.ref(real)

    def _go() -> None:
        v = ref()
        if v is None:
            return
        _LEGEND_PENDING.discard(v)
        try:
            sync_canvas_legend(v)
        except RuntimeError:  # the window (its Qt objects) went away meanwhile
            pass

    from qtpy.QtCore import QTimer

    QTimer.singleShot(0, _go)


def legend_blocks(entries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Consecutive legend lines of one colour as one multi-line block ``(text, colour)``.

    Each block is one napari text overlay on the canvas, and each overlay costs its first paint
    two GL programs (text and box) and ~20 ms to create (`benchmarks/bench_first_paint.py`,
    created + first paint of 8 lines: ~160 + 400 ms as 8 overlays, ~20 + 130 ms as one); a
    line's colour is its key, so only lines of the same colour share one."""
    blocks: list[tuple[str, str]] = []
    for text, color in entries:
        if blocks and blocks[-1][1].lower() == color.lower():
            blocks[-1] = (f"{blocks[-1][0]}\n{text}", blocks[-1][1])
        else:
            blocks.append((text, color))
    return blocks


def _set_legend(overlays, entries, text_overlay) -> None:
    keys = sorted((k for k in overlays if k.startswith(LEGEND_PREFIX)), key=lambda k: int(k[len(LEGEND_PREFIX):]))
    blocks = legend_blocks(entries)
    for i, (text, color) in enumerate(blocks):
        key = f"{LEGEND_PREFIX}{i}"
        box = _box_for(color)
        if key not in overlays:
            overlays[key] = text_overlay(text=text, color=color, position="top_left", font_size=10,
                                         box=True, box_color=box, visible=True)
            continue
        o = overlays[key]
        o.text, o.color, o.box_color, o.visible = text, color, box, True
    for k in keys[len(blocks):]:
        overlays[k].visible = False


def install_canvas_legend(viewer) -> None:
    """Keep the canvas legend in sync with the layers (inserted, removed, moved, shown or
    hidden); once per viewer."""
    real = K.unwrap(viewer)
    if real in _LEGEND_VIEWERS:
        return
    _LEGEND_VIEWERS.add(real)
    ref = weakref.ref(real)

    def on_change(*_):
        v = ref()
        if v is not None:
            request_legend_sync(v)

    def on_inserted(event):
        layer = event.value
        if layer.metadata.get("map"):
            layer.events.visible.connect(on_change)
        on_change()

    for ly in real.layers:
        if ly.metadata.get("map"):
            ly.events.visible.connect(on_change)
    real.layers.events.inserted.connect(on_inserted)
    real.layers.events.removed.connect(on_change)
    real.layers.events.moved.connect(on_change)


def _update_in_place(layer, data, kw: dict, kind: str) -> None:
    """Set data, features and styling with events blocked, then ONE refresh (a vispy redraw per
    property would cost ~50 ms per update on 5,000 spots)."""
    meta = kw.pop("metadata", None)
    kw.pop("name", None)
    visible = kw.pop("visible", None)
    if kind == "shapes":
        kw.pop("shape_type", None)  # keep the user's shapes
        kw = {}
    with layer.events.blocker_all():
        if kind == "points":
            feats = kw.pop("features", None)
            layer.data = np.asarray(data).reshape(-1, 2)
            if feats is not None:
                layer.features = feats
            order = ["size", "symbol", "border_width", "border_width_is_relative", "face_colormap",
                     "face_contrast_limits", "face_color", "border_color", "shown", "opacity"]
            for key in order:
                if key in kw:
                    setattr(layer, key, kw.pop(key))
        if meta is not None:
            layer.metadata.update(meta)
    if visible is not None:
        layer.visible = visible
    layer.refresh()


def prebuild_roi_layers(session: AcquisitionSession) -> None:
    """In the Prepare worker: the empty include/exclude ROI layers as napari layers, so that
    :func:`ensure_roi_layers` only adds them in the GUI thread."""
    from ._workers import build_layers

    tuples = [L.roi_layer(kind, library=session.library) for kind in ("include", "exclude")]
    layers = build_layers(tuples)
    session.__dict__.setdefault(PREBUILT_KEY, {})["roi"] = dict(zip(("include", "exclude"), layers, strict=True))


def ensure_roi_layers(viewer, session: AcquisitionSession, kinds=("include", "exclude")):
    """The section's include/exclude ROI layers (``kinds`` of them) by kind, added when missing
    (the ones prebuilt by :func:`prebuild_roi_layers` when there are)."""
    out = {}
    pre = session.__dict__.get(PREBUILT_KEY, {}).get("roi", {})
    for kind in kinds:
        name = L.layer_name(session.library, kind)
        if name not in viewer.layers:
            if kind in pre and pre[kind].name == name:
                viewer.add_layer(pre.pop(kind))
            else:
                data, kw, _ = L.roi_layer(kind, library=session.library)
                viewer.add_shapes(data, **kw)
        out[kind] = viewer.layers[name]
    return out


def roi_masks(viewer, session: AcquisitionSession) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Include/exclude masks from the section's ROI layers (world coordinates = pixels)."""
    yx = L.spot_yx(session.adata)
    res = []
    for kind in ("include", "exclude"):
        name = L.layer_name(session.library, kind)
        if name not in viewer.layers or len(viewer.layers[name].data) == 0:
            res.append(None)
            continue
        layer = viewer.layers[name]
        shapes = [np.array([layer.data_to_world(p) for p in v])[:, -2:] for v in layer.data]
        res.append(L.spots_in_shapes(yx, shapes, layer.shape_type))
    return res[0], res[1]


def selection_layer_data(session: AcquisitionSession, state=None, hover: pd.DataFrame | None = None):
    """The selection layer's ``(data, kwargs, kind)`` for ``state`` (default: the one shown);
    with ``hover`` (:func:`hover_features`), its per-spot rows are joined to the layer's own
    columns, so the hover shows a spot's features on either layer. Qt-free and vectorised: a
    re-selection worker builds it, the main thread only assigns it (:func:`apply_layer`)."""
    st = session.selection_for_layers() if state is None else state
    if st is None:
        return None
    data, kw, kind = L.selection_layer(session.adata, st, library=session.library)
    if hover is not None and len(hover) == session.n:
        own = kw["features"]
        rows = hover.iloc[np.asarray(kw["metadata"]["index"])].reset_index(drop=True)
        extra = rows.drop(columns=[c for c in rows.columns if c in own.columns])
        kw["features"] = pd.concat([own.reset_index(drop=True), extra], axis=1)
    return data, kw, kind


def update_selection_layer(viewer, session: AcquisitionSession, built=None):
    """Show the selection: ``built`` (:func:`selection_layer_data`, made in a worker, with a
    napari layer as a 4th item when the viewer had none yet) or built now; an existing layer
    is updated in place (the same layer object)."""
    if built is None:
        built = selection_layer_data(session)
    if built is None:
        return None
    data, kw, kind = built[:3]
    layer = built[3] if len(built) > 3 else None
    return apply_layer(viewer, data, kw, kind, built=layer)


def hover_features(session: AcquisitionSession, state=None) -> pd.DataFrame:
    """The hover table of every spot (state, round, picked by, cell type, gene) for ``state``
    (default: the selection shown). Qt-free: a worker builds it."""
    st = session.selection_for_layers() if state is None else state
    genes = [session.gene] if session.gene else None
    static = session.__dict__.get(STATIC_KEY)
    if static is None or len(static) != session.n:  # ids, sections, lattice, total counts: once
        static = session.__dict__[STATIC_KEY] = L.spot_static_features(session.adata)
    return L.spot_features(
        session.adata, selection=st, excluded=session.excluded if session.pool is not None else None,
        cell_types=session.cell_types() if session.space is not None and st is not None else None,
        predicted=session.predictions, genes=genes, static=static,
    )


STATIC_KEY = "_scr2st_static_features"


def _same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    """The same memory, shape and strides (so equal without comparing the values)."""
    return (a.dtype == b.dtype and a.shape == b.shape and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def assign_features(layer, feats: pd.DataFrame) -> None:
    """Give ``layer`` the table ``feats``: when it has the same rows and columns, only the columns
    that changed are written in place (no table validation, no colour-manager refresh, no
    event: the hover reads the table when the mouse moves); else the full setter."""
    cur = layer.features
    if len(cur) == len(feats) and list(cur.columns) == list(feats.columns):
        for c in feats.columns:
            new = feats[c].to_numpy()
            old = cur[c].to_numpy()
            if old.dtype != new.dtype:
                break
            if not _same_buffer(old, new) and not np.array_equal(old, new):
                cur[c] = new
        else:
            return
    layer.features = feats


def update_spots_features(session: AcquisitionSession, spots_layer, viewer=None, feats=None) -> None:
    """Refresh the hover table of the spots layer (state, round, picked by, cell type, gene) and,
    with ``viewer``, the same rows on the selection layer (its own columns kept), so that the
    hover shows a spot's features whichever of the two layers is active. ``feats``: the table
    already built (:func:`hover_features`, in a worker)."""
    if feats is None:
        feats = hover_features(session)
    assign_features(spots_layer, feats)
    sel = map_layer(viewer, session.library, "selected") if viewer is not None else None
    if sel is not None and "index" in sel.metadata and len(sel.metadata["index"]) == len(sel.data):
        own = sel.features
        rows = feats.iloc[np.asarray(sel.metadata["index"])].reset_index(drop=True)
        extra = rows.drop(columns=[c for c in rows.columns if c in own.columns])
        if extra.shape[1]:
            with sel.events.blocker_all():
                sel.features = pd.concat([own.reset_index(drop=True), extra], axis=1)


def show_only_map(viewer, section: str, kind: str) -> None:
    """Hide the other value map of ``section`` (expression vs cell types), so one map, its colour
    bar and its legend show at a time."""
    other = {"expression": "cell_types", "cell_types": "expression"}[kind]
    ly = map_layer(viewer, section, other)
    if ly is not None and ly.visible:
        ly.visible = False


def update_celltype_layer(viewer, session: AcquisitionSession, *, visible: bool | None = None):
    ct = session.cell_types()
    data, kw, kind = L.celltype_layer(session.adata, ct, categories=session.celltype_categories(), library=session.library)
    if visible is not None:
        kw["visible"] = visible
    if visible:
        show_only_map(viewer, session.library, "cell_types")
    return apply_layer(viewer, data, kw, kind)


def update_expression_layer(viewer, session: AcquisitionSession, gene: str, *, source: str = "predicted",
                            colormap: str = "magma", contrast_limits=None):
    """Show the expression map of ``gene`` (``source`` predicted or measured): one layer per
    section, renamed to say section, gene and source; shown, and the colour bar with it."""
    built = None
    pre = session.__dict__.get(PREBUILT_KEY, {}).pop("expression", None)
    if (pre is not None and source == "predicted" and pre[0] == (gene, colormap, contrast_limits)
            and session.predictions is not None and gene in session.predictions.columns
            and np.array_equal(pre[1], np.asarray(session.predictions[gene], dtype=np.float32), equal_nan=True)):
        data, kw, kind, built = pre[2]  # made in the training worker, for these very values
    else:
        if source == "measured":
            values = session.measured_values(gene)
        else:
            values = L.expression_values(session.adata, gene, predicted=session.predictions)
        data, kw, kind = L.expression_layer(session.adata, gene, values, source=source, library=session.library,
                                            colormap=colormap, contrast_limits=contrast_limits)
        kw["visible"] = True
    show_only_map(viewer, session.library, "expression")
    if built is not None and (kw["name"] in viewer.layers or map_layer(viewer, session.library, "expression")):
        built = None  # a map to update in place: the prebuilt layer is not needed
    return apply_layer(viewer, data, kw, kind, built=built)


#: where :func:`prebuild_expression_layer` leaves its layer for :func:`update_expression_layer`
PREBUILT_KEY = "_scr2st_prebuilt_maps"


def prebuild_expression_layer(session: AcquisitionSession, predictions, *, colormap: str = "magma") -> None:
    """In the training worker, before the predictions are handed to the session: the expression
    map the viewer will show first (the gene :meth:`~AcquisitionSession.set_model` picks),
    built as a napari layer there, so the GUI thread only adds it. Used only when the map does
    not exist yet and the session's predictions are ``predictions`` by then."""
    from ..session import default_gene
    from ._workers import build_layers

    if predictions is None or not len(predictions.columns):
        return
    gene = session.gene if session.gene in predictions.columns else default_gene(predictions)
    values = L.expression_values(session.adata, gene, predicted=predictions)
    data, kw, kind = L.expression_layer(session.adata, gene, values, library=session.library, colormap=colormap)
    kw["visible"] = True
    (layer,) = build_layers([(data, dict(kw), kind)])
    session.__dict__.setdefault(PREBUILT_KEY, {})["expression"] = ((gene, colormap, None), values,
                                                                   (data, kw, kind, layer))


def prepare_expression_layer(viewer, session: AcquisitionSession):
    """An empty, HIDDEN expression layer, made before a long run so that showing its result later
    is an in-place update (creating a points layer and its colour bar takes ~0.3 s in the GUI
    thread). It draws nothing and shows no colour bar until a result fills it."""
    old = map_layer(viewer, session.library, "expression")
    if old is not None:
        return old
    values = np.full(session.n, np.nan, dtype=np.float32)
    data, kw, kind = L.expression_layer(session.adata, session.gene or "prediction", values, library=session.library,
                                        name=L.layer_name(session.library, "expression"))
    kw["visible"] = False
    return apply_layer(viewer, data, kw, kind)


def released_without_drag(event):
    """For napari mouse-drag callbacks: ``if (yield from released_without_drag(event)):`` runs the
    body only when the press ended without a drag (a click, not a pan)."""
    dragged = False
    yield
    while event.type == "mouse_move":
        dragged = True
        yield
    return not dragged


def nearest_spot(session: AcquisitionSession, position, *, max_dist_factor: float = 0.75) -> int | None:
    """Index of the spot under a canvas position (world (y, x)), or None."""
    from scipy.spatial import cKDTree

    tree = getattr(session, "_tree", None)
    if tree is None:
        tree = cKDTree(L.spot_yx(session.adata))
        session._tree = tree
    pos = np.asarray(position, dtype=float)[-2:]
    d, i = tree.query(pos)
    diam = L.spot_diameter_px(session.adata)
    if not np.isfinite(d) or d > max_dist_factor * diam:
        return None
    return int(i)


# ------------------------------------------------------------------ workers
