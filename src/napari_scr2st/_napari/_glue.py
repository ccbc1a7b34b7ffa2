"""Shared napari/Qt glue: finding sessions, creating or updating fixed-name layers, running
core generators in thread workers, plugin settings, themed matplotlib canvases, tooltips."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import layers as L
from ..progress import Progress
from ._state import Session, get_session

PLUGIN = "napari-scr2st"
SYNC_ENV = "SCR2ST_SYNC_WORKERS"

# ------------------------------------------------------------------ shortcuts and tooltips
SHORTCUTS = {
    "toggle_pick": "Shift-M",
    "reselect": "Shift-R",
    "inspect": "Shift-I",
}

TIPS = {
    "layer": "The spots layer (section) the dock works on.",
    "prepare": "Compute the vision embedding of every spot (if missing), fit the single-cell reference "
    "space and build the candidate pool. Needed once per section.",
    "reference": "A single-cell reference (.h5ad of cells with a cell-type column, e.g. celltype_major) "
    "shared genes with the spots: it defines the cell states and types the sampler tries to cover.",
    "budget": "How many spots to sequence in total, over all rounds: a count or a percentage of the "
    "selectable spots.",
    "rounds": "Number of acquisition rounds; each round proposes its share of the budget.",
    "sampler": "How spots are chosen. The SCRL policy follows the reward weights live; the others are the "
    "baselines of the method paper.",
    "w_sc": "Weight of manifold coverage: reach many distinct cell states of the single-cell reference.",
    "w_type": "Weight of cell-type diversity: a balanced mix of the reference's cell types.",
    "w_sp": "Weight of spatial coverage: spread the spots over the tissue.",
    "pick": f"Click spots on the canvas to add or remove a manual pick ({SHORTCUTS['toggle_pick']} toggles the "
    "spot under the cursor). Manual picks count toward the budget and the policy plans around them.",
    "reselect": f"Run the sampler again with the current settings ({SHORTCUTS['reselect']}).",
    "sequence": "Simulation: reveal the proposed spots from this section's own counts, as if they had been "
    "sequenced, and start the next round.",
    "roi": "Draw polygons/rectangles in the include (green) or exclude (red) ROI layer: spots outside include "
    "regions or inside exclude regions are never picked.",
    "pretrain": "Train the policy by simulated acquisition episodes on this fully sequenced section "
    "(demonstration and benchmarks; for a new slide, load a policy trained on other slides).",
    "backbone": "Image encoder whose embedding of each spot's patch feeds the predictor. efficientnet_lite0 "
    "works offline; patch-stats is an instant colour/texture stand-in; other timm or hf-hub names need their "
    "weights.",
    "epochs": "Passes over the sequenced spots.",
    "device": "auto picks a GPU (CUDA, Apple MPS) when there is one, else the CPU.",
    "train": "Train SCR2Net on the sequenced spots and predict every spot (runs in the background).",
    "cancel": "Stop training at the next step; nothing is kept.",
    "k": "Number of sequenced spots retrieved as neighbours of the inspected spot.",
    "m": "Majority filter: keep neighbours whose cell type is among the m most frequent ones.",
    "inspect": f"Click a spot on the canvas with 'inspect on click' on, or press {SHORTCUTS['inspect']} over it.",
    "gene": "Gene shown on the expression map.",
    "source": "Predicted values (every spot) or measured values (sequenced spots only).",
}


def tip(key: str) -> str:
    return TIPS.get(key, "")


# ------------------------------------------------------------------ plugin settings
@dataclass
class PluginDefaults:
    budget: str = "15%"
    rounds: int = 2
    w_sc: float = 1.0
    w_type: float = 1.0
    w_sp: float = 1.0
    device: str = "auto"
    epochs: int = 30
    backbone: str = "efficientnet_lite0"
    policy_path: str = ""
    source: str = "built-in defaults"


def plugin_defaults() -> PluginDefaults:
    """Defaults from napari's plugin settings (npe2 ``configurations``, napari >= 0.9), falling
    back to the built-in values when the settings API is missing or fails."""
    d = PluginDefaults()
    try:
        from napari.settings import get_plugin_settings
    except ImportError:
        return d
    try:
        s = get_plugin_settings(PLUGIN)
        sm, tr = s.sampling, s.training
        d = PluginDefaults(
            budget=str(sm.budget), rounds=int(sm.rounds), w_sc=float(sm.weight_sc), w_type=float(sm.weight_type),
            w_sp=float(sm.weight_sp), device=str(tr.device), epochs=int(tr.epochs), backbone=str(tr.backbone),
            policy_path=str(sm.policy_path or ""), source="napari plugin settings",
        )
    except Exception:  # noqa: BLE001 - settings are a convenience; never break the dock
        return PluginDefaults()
    return d


# ------------------------------------------------------------------ sessions and layers
def spots_layers(viewer) -> list:
    """Layers that carry a section (the plugin's spots layers)."""
    return [ly for ly in viewer.layers if ly.__class__.__name__ == "Points" and "adata" in ly.metadata]


def session_for(layer) -> Session | None:
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


def ensure_roi_layers(viewer, session: Session):
    out = {}
    for kind in ("include", "exclude"):
        name = L.layer_name(session.library, kind)
        if name not in viewer.layers:
            data, kw, _ = L.roi_layer(kind, library=session.library)
            viewer.add_shapes(data, **kw)
        out[kind] = viewer.layers[name]
    return out


def roi_masks(viewer, session: Session) -> tuple[np.ndarray | None, np.ndarray | None]:
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


def update_selection_layer(viewer, session: Session):
    st = session.selection_for_layers()
    if st is None:
        return None
    data, kw, kind = L.selection_layer(session.adata, st, library=session.library)
    return apply_layer(viewer, data, kw, kind)


def update_spots_features(session: Session, spots_layer) -> None:
    """Refresh the hover table of the spots layer (state, round, picked by, cell type, gene)."""
    st = session.selection_for_layers()
    genes = [session.gene] if session.gene else None
    feats = L.spot_features(
        session.adata, selection=st, excluded=session.excluded if session.pool is not None else None,
        cell_types=session.cell_types() if session.space is not None and st is not None else None,
        predicted=session.predictions, genes=genes,
    )
    spots_layer.features = feats


def update_celltype_layer(viewer, session: Session, *, visible: bool | None = None):
    ct = session.cell_types()
    data, kw, kind = L.celltype_layer(session.adata, ct, categories=session.celltype_categories(), library=session.library)
    if visible is not None:
        kw["visible"] = visible
    return apply_layer(viewer, data, kw, kind)


def update_expression_layer(viewer, session: Session, gene: str, *, source: str = "predicted",
                            colormap: str = "magma", contrast_limits=None):
    if source == "measured":
        values = session.measured_values(gene)
    else:
        values = L.expression_values(session.adata, gene, predicted=session.predictions)
    data, kw, kind = L.expression_layer(session.adata, gene, values, source=source, library=session.library,
                                        colormap=colormap, contrast_limits=contrast_limits)
    return apply_layer(viewer, data, kw, kind)


def prepare_expression_layer(viewer, session: Session):
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


def nearest_spot(session: Session, position, *, max_dist_factor: float = 0.75) -> int | None:
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
def sync_workers() -> bool:
    """``SCR2ST_SYNC_WORKERS=1`` runs generators in the calling thread (tests), as stardist-napari."""
    return os.environ.get(SYNC_ENV, "").strip().lower() not in ("", "0", "false", "no")


class _NoBar:
    """A progress bar that shows nothing (background warm-ups)."""

    n = 0
    total = 0

    def update(self, k=1):
        self.n += k

    def set_description(self, _):
        pass

    def close(self):
        pass


class _SyncHandle:
    """What :func:`start_worker` returns in synchronous mode (same surface as a worker)."""

    is_running = False

    def quit(self) -> None:  # pragma: no cover - nothing to stop
        pass


def start_worker(
    gen_factory: Callable[[], Generator[Progress, None, Any]],
    *,
    desc: str,
    on_progress: Callable[[Progress], Any] | None = None,
    on_done: Callable[[Any], Any] | None = None,
    on_error: Callable[[BaseException], Any] | None = None,
    on_finished: Callable[[], Any] | None = None,
    on_aborted: Callable[[], Any] | None = None,
    quiet: bool = False,
):
    """Run a core generator in a napari thread worker with a progress bar in the activity dock.

    ``worker.quit()`` stops it at the next yield. Errors go to ``on_error`` (default: a napari
    error notification), never to a crash. With ``SCR2ST_SYNC_WORKERS=1`` the generator runs
    synchronously and the same callbacks fire.
    """
    from napari.utils import progress

    from ..progress import drive

    pbar = progress(total=0, desc=desc) if not quiet else _NoBar()
    state = {"desc": ""}

    def _progress(ev: Progress) -> None:
        if ev.total and pbar.total != ev.total:
            pbar.total = ev.total
        if ev.step > pbar.n:
            pbar.update(ev.step - pbar.n)
        if ev.message and ev.message != state["desc"]:
            state["desc"] = ev.message
            pbar.set_description(f"{desc}: {ev.message}")
        if on_progress is not None:
            on_progress(ev)

    def _error(e: BaseException) -> None:
        if on_error is not None:
            on_error(e)
        else:
            notify_error(f"{desc} failed: {e}")

    if sync_workers():
        try:
            result = drive(gen_factory(), use_tqdm=False, callback=_progress)
        except Exception as e:  # noqa: BLE001 - reported, not raised (as the threaded path)
            pbar.close()
            _error(e)
            if on_finished is not None:
                on_finished()
            return _SyncHandle()
        pbar.close()
        if on_done is not None:
            on_done(result)
        if on_finished is not None:
            on_finished()
        return _SyncHandle()

    from napari.qt.threading import thread_worker

    def _run():  # a generator function, so napari makes a GeneratorWorker (quit at each yield)
        return (yield from gen_factory())

    worker = thread_worker(_run, start_thread=False)()
    worker.yielded.connect(_progress)
    if on_done is not None:
        worker.returned.connect(on_done)
    worker.errored.connect(_error)
    if on_aborted is not None:
        worker.aborted.connect(on_aborted)
    worker.finished.connect(pbar.close)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    worker.start()
    return worker


def notify_error(msg: str) -> None:
    from napari.utils.notifications import show_error

    show_error(msg)


def notify_info(msg: str) -> None:
    from napari.utils.notifications import show_info

    show_info(msg)


# ------------------------------------------------------------------ matplotlib, themed
def theme_colors(viewer) -> dict[str, str]:
    try:
        from napari.utils.theme import get_theme

        t = get_theme(viewer.theme)
        return {"bg": t.background.as_hex(), "fg": t.text.as_hex(), "grid": t.primary.as_hex(),
                "accent": t.current.as_hex() if hasattr(t, "current") else "#00bfff"}
    except Exception:  # noqa: BLE001
        return {"bg": "#262930", "fg": "#f0f1f2", "grid": "#414851", "accent": "#00bfff"}


def make_canvas(viewer, *, height: float = 2.2, width: float = 4.0):
    """A small FigureCanvasQTAgg styled with the napari theme (re-styled on theme change)."""
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90, layout="constrained")
    canvas = FigureCanvasQTAgg(fig)
    ax = fig.add_subplot(111)
    canvas.ax = ax

    def restyle(*_, draw: bool = True):
        c = theme_colors(viewer)
        fig.set_facecolor(c["bg"])
        for a in fig.axes:
            a.set_facecolor(c["bg"])
            a.tick_params(colors=c["fg"], labelsize=7)
            for sp in a.spines.values():
                sp.set_color(c["grid"])
            a.xaxis.label.set_color(c["fg"])
            a.yaxis.label.set_color(c["fg"])
            a.title.set_color(c["fg"])
            leg = a.get_legend()
            if leg is not None:
                leg.get_frame().set_facecolor(c["bg"])
                for t in leg.get_texts():
                    t.set_color(c["fg"])
        if draw:
            canvas.draw_idle()

    canvas.restyle = restyle
    canvas.colors = lambda: theme_colors(viewer)
    restyle()
    try:
        viewer.events.theme.connect(restyle)
    except Exception:  # noqa: BLE001
        pass
    canvas.setMinimumHeight(int(height * 60))
    return canvas
