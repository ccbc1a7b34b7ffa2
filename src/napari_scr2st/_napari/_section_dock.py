"""Base dock: pick the section (spots layer), bind its session, keep layers in sync."""

from __future__ import annotations

import weakref

from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from .. import layers as L
from ..session import AcquisitionSession
from . import _dock_kit as K
from . import _viewer_layers as V
from . import _vispy_speedups
from . import _workers as W

HOVER_DELAY_MS = 250


class LayerSync:
    """One per (viewer, session): turns session signals into layer updates, so several docks
    can change the session without each redrawing the same layers."""

    def __init__(self, viewer, session: AcquisitionSession, spots_layer) -> None:
        # napari hands plugins a PublicOnlyProxy: keep weak references to the real objects
        self._viewer = weakref.ref(K.unwrap(viewer))
        self.session = session
        self._spots = weakref.ref(K.unwrap(spots_layer))
        session.selection_changed.connect(self.on_selection)
        session.predictions_changed.connect(self.on_predictions)
        session.prepared.connect(self.on_prepared)
        # re-selections run in a worker, which also builds the layers' arrays (the main thread
        # only assigns them to the existing layers)
        from ._reselect import Reselector

        r = Reselector.install(session)
        r.builders.setdefault("hover", lambda s, prev, _built: V.hover_features(s, prev.state))
        r.builders.setdefault("selection", self._build_selection)
        # the hover table of all spots follows a little later: it is not needed at slider speed
        from qtpy.QtCore import QTimer

        self._hover_timer = QTimer()
        self._hover_timer.setSingleShot(True)
        self._hover_timer.setInterval(HOVER_DELAY_MS)
        self._hover_timer.timeout.connect(self.update_hover)

    @property
    def viewer(self):
        return self._viewer()

    def _build_selection(self, s, prev, built):
        """(In the re-selection worker) the selection layer's arrays with the hover columns of
        its spots; the napari layer too while the viewer has none (the first selection)."""
        out = V.selection_layer_data(s, prev.state, hover=built.get("hover"))
        v = self.viewer
        if out is not None and v is not None and V.map_layer(v, s.library, "selected") is None \
                and out[1]["name"] not in v.layers:
            from ._workers import build_layers

            (layer,) = build_layers([(out[0], dict(out[1]), out[2])])
            out = (*out, layer)
        return out

    @classmethod
    def get(cls, viewer, session: AcquisitionSession, spots_layer) -> LayerSync:
        syncs = session.__dict__.setdefault("_syncs", {})
        key = id(K.unwrap(viewer))
        old = syncs.get(key)
        if old is not None and (old.viewer is None or old._spots() is None):
            del syncs[key]
        if key not in syncs:
            syncs[key] = cls(viewer, session, spots_layer)
        return syncs[key]

    def _alive(self) -> bool:
        v = self.viewer
        return v is not None and self._spots() is not None and self._spots() in v.layers

    def on_prepared(self) -> None:
        """The include/exclude ROI layers, each added in a turn of the event loop of its own
        (W.run_in_turns: the viewer repaints between them), then the spots layer active again."""
        if not self._alive():
            return

        def _roi(kind: str) -> None:
            if self._alive():
                V.ensure_roi_layers(self.viewer, self.session, kinds=(kind,))

        def _activate() -> None:
            if self._alive():
                self.viewer.layers.selection.active = self._spots()

        W.run_in_turns([lambda: _roi("include"), lambda: _roi("exclude"), _activate])

    def on_selection(self) -> None:
        if not self._alive():
            return
        from ._reselect import Reselector

        s = self.session
        r = Reselector.of(s)
        built = r.built_for(s.preview, "selection") if r is not None else None
        hover = r.built_for(s.preview, "hover") if r is not None else None
        V.update_selection_layer(self.viewer, s, built)
        if hover is not None:  # built in the worker: assigning it is cheap
            V.update_spots_features(s, self._spots(), self.viewer, feats=hover)
        elif W.sync_workers():  # tests: everything at once
            self.update_hover()
        else:
            self._hover_timer.start()

    def update_hover(self) -> None:
        if self._alive():
            V.update_spots_features(self.session, self._spots(), self.viewer)

    def on_predictions(self) -> None:
        if not self._alive():
            return
        s = self.session
        if s.predictions is not None and s.gene:
            V.update_expression_layer(self.viewer, s, s.gene)
        name = L.layer_name(s.library, "cell_types")
        if s.space is not None and name in self.viewer.layers:  # created by the maps dock
            V.update_celltype_layer(self.viewer, s)
        V.update_spots_features(s, self._spots(), self.viewer)


class SectionDock(QWidget):
    """A dock bound to one section: a combo of the viewer's spots layers and its session."""

    title = "SCR2-ST"

    def __init__(self, napari_viewer, parent=None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.setObjectName(type(self).__name__)
        _vispy_speedups.attach(napari_viewer, glyphs=not W.sync_workers())  # shorter first paints of the layers it adds
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(6, 6, 6, 6)
        form = QFormLayout()
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip(K.tip("layer"))
        form.addRow("Section", self.layer_combo)
        self._layout.addLayout(form)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self._session: AcquisitionSession | None = None
        self._connections: list = []
        self._life = {"ok": True}
        self._mouse_hooks: list = []
        self._refresh_layers()
        self.layer_combo.currentIndexChanged.connect(self._on_layer_changed)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        alive, viewer, hooks = self._life, self.viewer, self._mouse_hooks

        def _cleanup(*_):  # must not touch self: the C++ widget is gone
            alive["ok"] = False
            for cb in hooks:
                if cb in viewer.mouse_drag_callbacks:
                    viewer.mouse_drag_callbacks.remove(cb)

        self.destroyed.connect(_cleanup)

    # ------------------------------------------------------------------ viewer hooks
    def add_viewer_mouse(self, method_name: str) -> None:
        """A viewer mouse-drag callback calling ``self.<method_name>`` while the dock lives."""
        ref, alive = weakref.ref(self), self._life

        def cb(viewer, event):
            w = ref()
            if w is None or not alive["ok"]:
                return
            gen = getattr(w, method_name)(viewer, event)
            if gen is not None:
                yield from gen

        self.viewer.mouse_drag_callbacks.append(cb)
        self._mouse_hooks.append(cb)

    def bind_viewer_key(self, key: str, method_name: str) -> None:
        """A viewer key binding calling ``self.<method_name>(viewer)`` while the dock lives."""
        ref, alive = weakref.ref(self), self._life

        def cb(viewer):
            w = ref()
            if w is not None and alive["ok"]:
                getattr(w, method_name)(viewer)

        cb.__doc__ = getattr(type(self), method_name).__doc__
        self.viewer.bind_key(key, cb, overwrite=True)

    # ------------------------------------------------------------------ section binding
    def _refresh_layers(self, *_) -> None:
        if not self._life["ok"]:
            return
        layers = V.spots_layers(self.viewer)
        names = [ly.name for ly in layers]
        current = self.layer_combo.currentText()
        old = [self.layer_combo.itemText(i) for i in range(self.layer_combo.count())]
        if names == old:
            return
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)
        self._on_layer_changed()

    @property
    def spots_layer(self):
        name = self.layer_combo.currentText()
        if name and name in self.viewer.layers:
            return self.viewer.layers[name]
        return None

    @property
    def session(self) -> AcquisitionSession | None:
        return self._session

    def _on_layer_changed(self, *_) -> None:
        layer = self.spots_layer
        new = V.session_for(layer)
        if new is self._session:
            return
        if self._session is not None:
            self._unbind()
        self._session = new
        if new is not None:
            LayerSync.get(self.viewer, new, layer)
            self._bind(new)
        self.on_session_changed()

    def _bind(self, session: AcquisitionSession) -> None:
        """Connect to the session signals with :meth:`_link` (override)."""

    def _link(self, signal, slot) -> None:
        """Connect a session signal; disconnected when the dock changes section."""
        signal.connect(slot)
        self._connections.append((signal, slot))

    def _unbind(self) -> None:
        for sig, slot in self._connections:
            try:
                sig.disconnect(slot)
            except Exception:  # noqa: BLE001
                pass
        self._connections = []

    def on_session_changed(self) -> None:
        """The dock's section changed (override)."""

    def require_session(self) -> AcquisitionSession:
        if self._session is None:
            raise RuntimeError("open a section first (File > Open Sample > SCR2-ST, or File > Open)")
        return self._session

    def set_status(self, text: str) -> None:
        self.status.setText(text)
