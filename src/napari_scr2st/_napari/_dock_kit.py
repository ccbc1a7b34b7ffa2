"""What every dock shares that is not data: plugin settings, shortcuts, tooltips, themed canvases."""

from __future__ import annotations

import threading
from dataclasses import replace

from ..config import SamplingSettings, TrainingSettings

PLUGIN = "napari-scr2st"

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
    "w_unc": "Weight of the expected-error reduction: how much the sequenced spots lower the predictor's "
             "uncertainty about the unsequenced ones (from histology and position only).",
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


def unwrap(obj):
    """The object behind napari's public-only proxy (napari hands plugins a proxy of the viewer
    and its layers); weak references, sets and ``id`` keys need the real one."""
    return getattr(obj, "__wrapped__", obj)


# ------------------------------------------------------------------ plugin settings
_SETTINGS_LOCK = threading.Lock()
_SETTINGS_BUILT = False


def settings_built() -> bool:
    """True once napari's plugin settings were read here (later reads are a dictionary lookup)."""
    return _SETTINGS_BUILT


def warm_plugin_settings() -> bool:
    """Read napari's plugin settings ahead of the first dock, meant for a worker thread.

    napari builds every plugin's settings model on the first ``get_plugin_settings`` call, which
    re-reads all installed plugin manifests (npe2 ``discover``: 0.2-0.3 s of YAML parsing here);
    on the GUI thread that froze the first dock's opening. The lock makes a dock opened meanwhile
    wait for the same result instead of racing it. Returns whether the settings are readable; a
    failure is silent (the dock falls back to the built-in defaults, as always)."""
    plugin_defaults()  # never raises: a failure leaves the built-in defaults
    return _SETTINGS_BUILT


def plugin_defaults() -> tuple[SamplingSettings, TrainingSettings]:
    """Dock defaults: the settings dataclasses' defaults, overridden by napari's plugin settings
    (npe2 ``configurations``, napari >= 0.9) when that API exists and works."""
    sampling, training = SamplingSettings(), TrainingSettings()
    try:
        from napari.settings import get_plugin_settings
    except ImportError:
        return sampling, training
    try:
        with _SETTINGS_LOCK:  # a worker may be building them (warm_plugin_settings)
            s = get_plugin_settings(PLUGIN)
        global _SETTINGS_BUILT
        _SETTINGS_BUILT = True
        sm, tr = s.sampling, s.training
        sampling = replace(sampling, budget=str(sm.budget), rounds=int(sm.rounds), w_sc=float(sm.weight_sc),
                           w_type=float(sm.weight_type), w_sp=float(sm.weight_sp),
                           w_unc=float(getattr(sm, "weight_unc", sampling.w_unc)),
                           policy_path=str(sm.policy_path or ""))
        training = replace(training, device=str(tr.device), epochs=int(tr.epochs), backbone=str(tr.backbone))
    except Exception:  # noqa: BLE001 - settings are a convenience; never break the dock
        return SamplingSettings(), TrainingSettings()
    return sampling, training


# ------------------------------------------------------------------ matplotlib, themed
def theme_colors(viewer) -> dict[str, str]:
    try:
        from napari.utils.theme import get_theme

        t = get_theme(viewer.theme)
        return {"bg": t.background.as_hex(), "fg": t.text.as_hex(), "grid": t.primary.as_hex(),
                "accent": t.current.as_hex() if hasattr(t, "current") else "#00bfff"}
    except Exception:  # noqa: BLE001
        return {"bg": "#262930", "fg": "#f0f1f2", "grid": "#414851", "accent": "#00bfff"}


def make_canvas(viewer, *, height: float = 2.2, width: float = 4.0, freeze_layout: bool = False):
    """A small FigureCanvasQTAgg styled with the napari theme (re-styled on theme change), of a
    fixed height (``height`` x 60 px) so that other widgets of the dock never resize it.

    ``freeze_layout``: the constrained layout is computed on the first full draw and after each
    resize (or ``canvas.relayout()``, for axes whose labels change), and kept as it is for the
    full draws in between (the same pixels; a full draw of the sampling chart takes about half
    the time without the layout pass)."""
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    fig = Figure(figsize=(width, height), dpi=90, layout="constrained")
    canvas = FigureCanvasQTAgg(fig)
    ax = fig.add_subplot(111)
    canvas.ax = ax

    def relayout() -> None:
        if freeze_layout:
            fig.set_layout_engine("constrained")

    def _freeze(_event=None) -> None:
        if isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
            fig.set_layout_engine("none")  # the axes keep the positions just computed

    canvas.relayout = relayout
    if freeze_layout:
        canvas.mpl_connect("draw_event", _freeze)
        canvas.mpl_connect("resize_event", lambda _event: relayout())

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
    # a fixed height: a chart that took the dock's spare height was resized (and fully redrawn,
    # ~70 ms of matplotlib on the UI thread) whenever a status line or a progress panel below it
    # came or went, e.g. as the predicted map appeared
    canvas.setFixedHeight(int(height * 60))
    return canvas


# ------------------------------------------------------------------ canvas click modes
_CLICK_MODES: list = []  # (weakref to the viewer, weakref to the check box, its label)


def exclusive_click_mode(viewer, check, label: str) -> None:
    """Make ``check`` one of the viewer's canvas-click modes ("pick manually", "inspect on click"):
    turning one on turns the others off, so one click never does two things; the viewer's status
    bar and a notification say which mode was turned off."""
    import weakref

    vref, cref = weakref.ref(unwrap(viewer)), weakref.ref(check)
    _CLICK_MODES.append((vref, cref, label))

    def on_toggled(on: bool) -> None:
        v = vref()
        if not on or v is None:
            return
        off = []
        for entry in list(_CLICK_MODES):
            r, c, other_label = entry
            other = c()
            if r() is None or other is None:
                _CLICK_MODES.remove(entry)
                continue
            if r() is not v or other is cref():
                continue
            try:
                if other.isChecked():
                    other.setChecked(False)
                    off.append(other_label)
            except RuntimeError:  # its dock was closed
                _CLICK_MODES.remove(entry)
        if off:
            from napari.utils.notifications import show_info

            msg = f"'{label}' is on, so '{' and '.join(off)}' is off: a click does one thing."
            v.status = msg
            show_info(msg)

    check.toggled.connect(on_toggled)
# ------------------------------------------------------------------ readable labels (wrap, elide)
def elide_middle(widget, text: str, max_px: int) -> str:
    """``text`` shortened in the middle ("C3_very…name.h5ad") to at most ``max_px`` in ``widget``'s font."""
    from qtpy.QtCore import Qt
    from qtpy.QtGui import QFontMetrics

    return QFontMetrics(widget.font()).elidedText(str(text), Qt.TextElideMode.ElideMiddle, int(max_px))


def wrapping_label(text: str = "", min_width: int = 200):
    """A QLabel that wraps its words instead of clipping and never forces the dock wider; its
    height is planned for ``min_width`` (a narrow minimum would make the dock's minimum tall)."""
    from qtpy.QtWidgets import QLabel, QSizePolicy

    lab = QLabel(text)
    lab.setWordWrap(True)
    lab.setTextFormat(_plain())
    lab.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
    lab.setMinimumWidth(int(min_width))
    return lab


def _plain():
    from qtpy.QtCore import Qt

    return Qt.TextFormat.PlainText


def set_elided_text(label, text: str, names=(), max_px: int = 170) -> None:
    """Show ``text`` with each long name in ``names`` elided in the middle; the tooltip holds the
    full text whenever something was elided."""
    shown = str(text)
    for name in names:
        name = str(name)
        short = elide_middle(label, name, max_px)
        if short != name:
            shown = shown.replace(name, short)
    if shown != label.text():
        label.setText(shown)
    label.setToolTip(str(text) if shown != str(text) else "")


def compact_combo(combo, min_chars: int = 12) -> None:
    """A combo that does not widen the dock for long entries; its tooltip is the full current text."""
    from qtpy.QtWidgets import QComboBox

    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(int(min_chars))
    combo.currentTextChanged.connect(lambda t: combo.setToolTip(t))
