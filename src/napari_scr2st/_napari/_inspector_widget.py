"""Retrieval inspector: why did the model predict this spot? Patch, neighbours, soft label."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .. import layers as L
from . import _dock_kit as K
from . import _viewer_layers as V
from . import _workers as W
from ._section_dock import SectionDock

THUMB = 72
KEPT, FILTERED = "#32cd32", "#ff3030"


def to_pixmap(rgb: np.ndarray) -> QPixmap:
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    h, w = rgb.shape[:2]
    img = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(img.copy())


class InspectorWidget(SectionDock):
    """Select a spot: its patch, the ``k`` retrieved sequenced spots (thumbnails with similarity,
    section and cell type, kept or filtered by the majority filter) and the soft label vs the
    regression vs the measured value of the chosen gene. ``k`` and ``m`` update live.

    The gene is the session's (:attr:`~napari_scr2st.session.AcquisitionSession.gene`): choosing
    one in the Maps dock shows it here, and choosing one here shows it there (``gene_changed``)."""

    def __init__(self, napari_viewer, parent=None) -> None:
        self._ready = False
        super().__init__(napari_viewer, parent)
        lay = self._layout
        row = QHBoxLayout()
        self.click_check = QCheckBox(f"Inspect on click ({K.SHORTCUTS['inspect']})")
        self.click_check.setToolTip(K.tip("inspect"))
        self.spot_edit = QLineEdit()
        self.spot_edit.setPlaceholderText("spot id")
        row.addWidget(self.click_check)
        row.addWidget(self.spot_edit)
        lay.addLayout(row)
        form = QFormLayout()
        self.gene_combo = QComboBox()
        self.gene_combo.setToolTip(K.tip("gene"))
        form.addRow("Gene", self.gene_combo)
        krow = QHBoxLayout()
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 200)
        self.k_spin.setValue(8)
        self.k_spin.setToolTip(K.tip("k"))
        self.m_spin = QSpinBox()
        self.m_spin.setRange(0, 50)
        self.m_spin.setValue(2)
        self.m_spin.setToolTip(K.tip("m"))
        krow.addWidget(QLabel("k"))
        krow.addWidget(self.k_spin)
        krow.addWidget(QLabel("m"))
        krow.addWidget(self.m_spin)
        form.addRow("Neighbours", krow)
        lay.addLayout(form)
        qrow = QHBoxLayout()
        self.query_img = QLabel()
        self.query_img.setFixedSize(2 * THUMB, 2 * THUMB)
        self.query_img.setStyleSheet("border: 3px solid #00ffff;")
        self.query_text = QLabel("")
        self.query_text.setWordWrap(True)
        qrow.addWidget(self.query_img)
        qrow.addWidget(self.query_text, 1)
        lay.addLayout(qrow)
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setSpacing(4)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.grid_host)
        scroll.setMinimumHeight(2 * (THUMB + 56))
        lay.addWidget(scroll)
        self.chart = K.make_canvas(self.viewer, height=1.8)
        self.chart.setToolTip("Soft label (mean of the kept neighbours), regression output, the blended "
                              "prediction and the measured value (sequenced spots only)")
        lay.addWidget(self.chart)
        lay.addWidget(self.status)
        lay.addStretch(1)
        self.index: int | None = None
        self.result = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(60)
        self._timer.timeout.connect(self.refresh)
        self.k_spin.valueChanged.connect(self._timer.start)
        self.m_spin.valueChanged.connect(self._timer.start)
        self.gene_combo.currentIndexChanged.connect(self._gene_chosen)
        self.spot_edit.returnPressed.connect(self._from_edit)
        K.exclusive_click_mode(self.viewer, self.click_check, "inspect on click")
        self.add_viewer_mouse("_on_mouse")
        self.bind_viewer_key(K.SHORTCUTS["inspect"], "_key_inspect")
        self._ready = True
        self.on_session_changed()

    # ------------------------------------------------------------------ binding
    def _bind(self, session) -> None:
        self._link(session.predictions_changed, self._on_predictions)
        self._link(session.gene_changed, self._on_gene)

    def _gene_chosen(self, *_) -> None:
        """The user chose a gene here: the session's gene (the Maps dock follows) and a refresh."""
        s = self.session
        gene = self.gene_combo.currentText()
        if s is not None and gene:
            s.gene = gene
        self._timer.start()

    def _on_gene(self, gene: str) -> None:
        """The session's gene changed (e.g. in the Maps dock): show it when the model predicts it."""
        if self.gene_combo.currentText() == gene:
            return
        i = self.gene_combo.findText(gene)
        if i < 0:
            if self.gene_combo.count():
                self.set_status(f"{gene} is not among the model's {self.gene_combo.count()} genes; "
                                f"the inspector shows {self.gene_combo.currentText()}.")
            return
        self.gene_combo.blockSignals(True)
        self.gene_combo.setCurrentIndex(i)
        self.gene_combo.blockSignals(False)
        self._timer.start()

    def on_session_changed(self) -> None:
        if not getattr(self, "_ready", False):
            return
        self._on_predictions()

    def _on_predictions(self) -> None:
        s = self.session
        genes = list(s.predictor.genes) if s is not None and s.predictor is not None else []
        cur = self.gene_combo.currentText()
        self.gene_combo.blockSignals(True)
        self.gene_combo.clear()
        self.gene_combo.addItems(genes)
        if s is not None and s.gene in genes:  # the session's gene first: the Maps dock shows it
            self.gene_combo.setCurrentText(s.gene)
        elif cur in genes:
            self.gene_combo.setCurrentText(cur)
        self.gene_combo.blockSignals(False)
        if s is not None and s.predictor is not None:
            self.k_spin.blockSignals(True)
            self.m_spin.blockSignals(True)
            self.k_spin.setValue(int(s.predictor.config.k))
            self.m_spin.setValue(int(s.predictor.config.m))
            self.k_spin.blockSignals(False)
            self.m_spin.blockSignals(False)
            self.set_status("Click a spot (inspect on click) or type its id.")
            if self.index is not None:
                self.refresh()
        else:
            self.set_status("Train a model in the training dock to inspect its retrievals.")

    # ------------------------------------------------------------------ actions
    def inspect(self, index: int) -> None:
        self.index = int(index)
        s = self.session
        if s is not None:
            self.spot_edit.setText(str(s.adata.obs_names[self.index]))
        self.refresh()

    def _from_edit(self) -> None:
        s = self.session
        if s is None:
            return
        pos = s.adata.obs_names.get_indexer([self.spot_edit.text().strip()])[0]
        if pos < 0:
            self.set_status(f"no spot named {self.spot_edit.text()!r}")
            return
        self.inspect(int(pos))

    def refresh(self) -> None:
        s = self.session
        if s is None or s.predictor is None or self.index is None:
            return
        gene = self.gene_combo.currentText() or None
        try:
            r = s.inspect(self.index, gene, self.k_spin.value(), self.m_spin.value())
        except Exception as e:  # noqa: BLE001
            W.notify_error(f"Inspection failed: {e}")
            self.set_status(f"Inspection failed: {e}")
            return
        self.result = r
        self._show(s, r)

    def _show(self, s, r) -> None:
        ad = s.adata
        self.query_img.setPixmap(to_pixmap(L.spot_patch(ad, r.index, out_size=2 * THUMB)))
        ct = s.cell_types()[r.index] if s.space is not None else ""
        measured = "sequenced" if r.was_measured else "not sequenced"
        self.query_text.setText(
            f"<b>{r.spot_id}</b> ({s.library}) · {measured}<br>cell type: {ct or 'unknown'}<br>"
            f"kept types: {', '.join(r.kept_types) or '-'}<br>retrieval confidence: {r.confidence:.2f}"
        )
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        cols = 4
        for j, nb in enumerate(r.neighbours):
            cell = QWidget()
            v = QVBoxLayout(cell)
            v.setContentsMargins(0, 0, 0, 0)
            v.setSpacing(1)
            img = QLabel()
            img.setFixedSize(THUMB + 6, THUMB + 6)
            color = KEPT if nb.kept else FILTERED
            img.setStyleSheet(f"border: 3px solid {color};")
            if nb.obs_index >= 0:
                img.setPixmap(to_pixmap(L.spot_patch(ad, nb.obs_index, out_size=THUMB)))
            txt = QLabel(f"{nb.similarity:.2f} · {nb.section}<br>{nb.cell_type or '?'}<br>"
                         f"<span style='color:{color}'>{'kept' if nb.kept else 'filtered'}</span>")
            txt.setTextFormat(Qt.TextFormat.RichText)
            txt.setStyleSheet("font-size: 9px;")
            txt.setToolTip(f"spot {nb.spot_id}, similarity {nb.similarity:.3f}")
            v.addWidget(img)
            v.addWidget(txt)
            self.grid.addWidget(cell, j // cols, j % cols)
        self._draw_values(r)
        # the query and its neighbours on the canvas
        data, kw, kind = L.inspect_layer(ad, r.index, [nb.obs_index for nb in r.neighbours],
                                         [nb.kept for nb in r.neighbours], library=s.library)
        V.apply_layer(self.viewer, data, kw, kind)
        n_kept = sum(nb.kept for nb in r.neighbours)
        self.set_status(f"{len(r.neighbours)} neighbours, {n_kept} kept by the majority filter (m={r.m})")

    def _draw_values(self, r) -> None:
        ax = self.chart.ax
        ax.clear()
        labels, vals, colors = [], [], []
        for name, arr, col in (("soft label", r.soft_label, "#32cd32"), ("regression", r.regression, "#00bfff"),
                               ("prediction", r.blended, "#ffb000"), ("measured", r.measured, "#e0e0e0")):
            if arr is not None and len(arr):
                labels.append(name)
                vals.append(float(np.asarray(arr).ravel()[0]))
                colors.append(col)
        ax.bar(range(len(vals)), vals, color=colors)
        ax.set_xticks(range(len(vals)), labels, fontsize=7)
        ax.set_ylabel(f"{r.genes[0] if r.genes else ''} (log1p)")
        self.chart.restyle()

    def _on_mouse(self, viewer, event):  # noqa: ARG002 - napari's mouse-callback signature
        if not self.click_check.isChecked() or self.session is None:
            return
        pos = event.position
        if (yield from V.released_without_drag(event)):
            i = V.nearest_spot(self.session, pos)
            if i is not None:
                self.inspect(i)

    def _key_inspect(self, viewer):
        """SCR2-ST: inspect the spot under the mouse"""
        if self.session is None:
            return
        i = V.nearest_spot(self.session, viewer.cursor.position)
        if i is not None:
            self.inspect(i)
