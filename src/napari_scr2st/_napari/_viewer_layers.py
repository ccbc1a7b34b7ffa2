"""Layers of a session in the viewer: find sections, create or update fixed-name layers, ROIs,
the spot under the cursor."""

from __future__ import annotations

import numpy as np

from .. import layers as L
from ..session import AcquisitionSession
from ._sessions import get_session


# ------------------------------------------------------------------ sessions and layers
def spots_layers(viewer) -> list:
    """Layers that carry a section (the plugin's spots layers)."""
    return [ly for ly in viewer.layers if ly.__class__.__name__ == "Points" and "adata" in ly.metadata]


def session_for(layer) -> AcquisitionSession | None:
    return None if layer is None else get_session(layer)


def apply_layer(viewer, data, kwargs: dict, kind: str):
    """Create the layer named ``kwargs['name']`` or update it in place (fixed-name layers)."""
    name = kwargs["name"]
    kwargs = dict(kwargs)
    colorbar = bool(kwargs.get("metadata", {}).get("colorbar"))
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer.__class__.__name__.lower() == kind:
            _update_in_place(layer, data, kwargs, kind)
            if colorbar and hasattr(layer, "face_colorbar"):
                layer.face_colorbar.visible = True
            return layer
        viewer.layers.remove(layer)
    add = getattr(viewer, f"add_{kind}")
    layer = add(data, **kwargs)
    if colorbar and hasattr(layer, "face_colorbar"):
        layer.face_colorbar.visible = True
    return layer


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


def ensure_roi_layers(viewer, session: AcquisitionSession):
    out = {}
    for kind in ("include", "exclude"):
        name = L.layer_name(session.library, kind)
        if name not in viewer.layers:
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


def update_selection_layer(viewer, session: AcquisitionSession):
    st = session.selection_for_layers()
    if st is None:
        return None
    data, kw, kind = L.selection_layer(session.adata, st, library=session.library)
    return apply_layer(viewer, data, kw, kind)


def update_spots_features(session: AcquisitionSession, spots_layer) -> None:
    """Refresh the hover table of the spots layer (state, round, picked by, cell type, gene)."""
    st = session.selection_for_layers()
    genes = [session.gene] if session.gene else None
    feats = L.spot_features(
        session.adata, selection=st, excluded=session.excluded if session.pool is not None else None,
        cell_types=session.cell_types() if session.space is not None and st is not None else None,
        predicted=session.predictions, genes=genes,
    )
    spots_layer.features = feats


def update_celltype_layer(viewer, session: AcquisitionSession, *, visible: bool | None = None):
    ct = session.cell_types()
    data, kw, kind = L.celltype_layer(session.adata, ct, categories=session.celltype_categories(), library=session.library)
    if visible is not None:
        kw["visible"] = visible
    return apply_layer(viewer, data, kw, kind)


def update_expression_layer(viewer, session: AcquisitionSession, gene: str, *, source: str = "predicted",
                            colormap: str = "magma", contrast_limits=None):
    if source == "measured":
        values = session.measured_values(gene)
    else:
        values = L.expression_values(session.adata, gene, predicted=session.predictions)
    data, kw, kind = L.expression_layer(session.adata, gene, values, source=source, library=session.library,
                                        colormap=colormap, contrast_limits=contrast_limits)
    return apply_layer(viewer, data, kw, kind)


def prepare_expression_layer(viewer, session: AcquisitionSession):
    """An empty expression layer, made before a long run so that showing its result later is an
    in-place update (creating a points layer and its colour bar takes ~0.3 s in the GUI thread)."""
    name = L.layer_name(session.library, "expression")
    if name in viewer.layers:
        return viewer.layers[name]
    gene = session.gene or "prediction"
    values = np.full(session.n, np.nan, dtype=np.float32)
    data, kw, kind = L.expression_layer(session.adata, gene, values, library=session.library)
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
