"""Maps dock: expression map of a gene (predicted or measured), cell types with a legend, and
the legend of the selection layer."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QPushButton, QRadioButton
from superqt import QLabeledDoubleRangeSlider

from .. import layers as L
from . import _dock_kit as K
from . import _viewer_layers as V
from ._section_dock import SectionDock

COLORMAPS = ("magma", "viridis", "inferno", "plasma", "turbo", "gray")


def legend_html(entries: dict[str, str], symbols: dict[str, str] | None = None) -> str:
    rows = [f"<span style='color:{c}'>&#9632;</span> {name}" for name, c in entries.items()]
    glyph = {"star": "&#9733;", "ring": "&#9675;"}
    for name, sym in (symbols or {}).items():
        rows.append(f"{glyph.get(sym, '&#9679;')} {name}")
    return "<br>".join(rows)


class MapsWidget(SectionDock):
    """Expression map of a chosen gene (colormap, contrast limits, colour bar; predicted or
    measured values) and the cell-type map with its legend.

    The gene is the session's (:attr:`~napari_scr2st.session.AcquisitionSession.gene`, shared
    with the inspector through ``gene_changed``)."""

    def __init__(self, napari_viewer, parent=None) -> None:
        self._ready = False
        super().__init__(napari_viewer, parent)
        form = QFormLayout()
        self.gene_combo = QComboBox()
        self.gene_combo.setEditable(True)
        self.gene_combo.setToolTip(K.tip("gene"))
        form.addRow("Gene", self.gene_combo)
        srow = QHBoxLayout()
        self.pred_radio = QRadioButton("predicted")
        self.meas_radio = QRadioButton("measured")
        self.pred_radio.setChecked(True)
        for w in (self.pred_radio, self.meas_radio):
            w.setToolTip(K.tip("source"))
            srow.addWidget(w)
        form.addRow("Values", srow)
        self.cmap_combo = QComboBox()
        self.cmap_combo.addItems(list(COLORMAPS))
        form.addRow("Colormap", self.cmap_combo)
        self.clim = QLabeledDoubleRangeSlider(Qt.Orientation.Horizontal)
        self.clim.setRange(0.0, 10.0)
        self.clim.setValue((0.0, 5.0))
        self.clim.setDecimals(2)
        self.clim.setToolTip("Contrast limits of the colour scale (log1p expression)")
        form.addRow("Contrast", self.clim)
        brow = QHBoxLayout()
        self.show_btn = QPushButton("Show expression")
        self.auto_btn = QPushButton("Auto contrast")
        brow.addWidget(self.show_btn)
        brow.addWidget(self.auto_btn)
        form.addRow(brow)
        self._layout.addLayout(form)
        self.types_btn = QPushButton("Show cell types")
        self._layout.addWidget(self.types_btn)
        self.legend = QLabel("")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self._layout.addWidget(self.legend)
        self._layout.addWidget(self.status)
        self._layout.addStretch(1)
        self.show_btn.clicked.connect(lambda: self.show_expression())
        self.auto_btn.clicked.connect(self.auto_contrast)
        self.types_btn.clicked.connect(self.show_cell_types)
        self.pred_radio.toggled.connect(self._source_changed)
        self.cmap_combo.currentTextChanged.connect(self._restyle)
        self.clim.valueChanged.connect(self._restyle)
        self.gene_combo.currentIndexChanged.connect(lambda *_: self.show_expression(auto=True))
        self._ready = True
        self.on_session_changed()

    def _bind(self, session) -> None:
        self._link(session.predictions_changed, self._fill_genes)
        self._link(session.selection_changed, self._legend)
        self._link(session.gene_changed, self._on_gene)

    def _on_gene(self, gene: str) -> None:
        """The session's gene changed (e.g. in the inspector): choose it here and redraw the
        expression map if it is shown."""
        if self.gene_combo.currentText() == gene:
            return
        i = self.gene_combo.findText(gene)
        if i < 0:
            return
        self.gene_combo.blockSignals(True)
        self.gene_combo.setCurrentIndex(i)
        self.gene_combo.blockSignals(False)
        s = self.session
        layer = V.map_layer(self.viewer, s.library, "expression") if s is not None else None
        if layer is not None and layer.visible and len(layer.data):
            self.show_expression(gene, auto=True)

    def on_session_changed(self) -> None:
        if not getattr(self, "_ready", False):
            return
        self._fill_genes()
        self._legend()

    @property
    def source(self) -> str:
        return "predicted" if self.pred_radio.isChecked() else "measured"

    def _genes(self) -> list[str]:
        s = self.session
        if s is None:
            return []
        if self.source == "predicted":
            return list(s.predictions.columns) if s.predictions is not None else []
        return s.measured_genes()

    def _fill_genes(self) -> None:
        s = self.session
        genes = self._genes()
        # the session's gene first (the inspector shows it too), else what the combo held
        cur = s.gene if s is not None and s.gene in genes else self.gene_combo.currentText()
        self.gene_combo.blockSignals(True)
        self.gene_combo.clear()
        self.gene_combo.addItems(genes)
        if cur in genes:  # by index: an editable combo's setCurrentText only sets the edit text
            self.gene_combo.setCurrentIndex(genes.index(cur))
        self.gene_combo.blockSignals(False)
        self.show_btn.setEnabled(bool(genes))
        self._legend()

    def _source_changed(self, *_) -> None:
        self._fill_genes()
        self.show_expression(auto=True)

    def values(self, gene: str) -> np.ndarray:
        s = self.require_session()
        if self.source == "measured":
            return s.measured_values(gene)
        return L.expression_values(s.adata, gene, predicted=s.predictions)

    def show_expression(self, gene: str | None = None, *, auto: bool = True):
        """Show (or update) the expression layer of ``gene`` with the current source."""
        s = self.session
        gene = gene or self.gene_combo.currentText()
        if s is None or not gene:
            return None
        try:
            vals = self.values(gene)
        except Exception as e:  # noqa: BLE001
            self.set_status(str(e))
            return None
        ok = np.isfinite(vals)
        if auto and ok.any():
            lo, hi = np.percentile(vals[ok], [1, 99])
            top = float(max(np.nanmax(vals[ok]), hi, 1e-3))
            self.clim.blockSignals(True)
            self.clim.setRange(0.0, top * 1.05)
            self.clim.setValue((float(lo), float(max(hi, lo + 1e-3))))
            self.clim.blockSignals(False)
        s.gene = gene
        data, kw, kind = L.expression_layer(s.adata, gene, vals, source=self.source, library=s.library,
                                            colormap=self.cmap_combo.currentText(),
                                            contrast_limits=tuple(self.clim.value()))
        kw["visible"] = True
        V.show_only_map(self.viewer, s.library, "expression")
        layer = V.apply_layer(self.viewer, data, kw, kind)
        missing = len(vals) - int(ok.sum())
        note = f"; {missing} without a value are not drawn" if missing else ""
        self.set_status(f"{gene}, {self.source} ({L.EXPRESSION_SCALE}): {int(ok.sum())} spots with a value{note}")
        self._legend()
        return layer

    def auto_contrast(self) -> None:
        self.show_expression(auto=True)

    def _restyle(self, *_) -> None:
        s = self.session
        if s is None:
            return
        layer = V.map_layer(self.viewer, s.library, "expression")
        if layer is not None:
            layer.face_colormap = self.cmap_combo.currentText()
            layer.face_contrast_limits = tuple(self.clim.value())
            layer.refresh_colors() if hasattr(layer, "refresh_colors") else None

    def show_cell_types(self):
        s = self.session
        if s is None or s.space is None or s.committed is None:
            self.set_status("cell types need a prepared section with a single-cell reference")
            return None
        layer = V.update_celltype_layer(self.viewer, s, visible=True)
        self._legend()
        return layer

    def _legend(self) -> None:
        s = self.session
        if s is None:
            self.legend.setText("")
            return
        parts = []
        name = L.layer_name(s.library, "cell_types")
        if name in self.viewer.layers:
            parts.append("<b>Cell types</b><br>" + legend_html(self.viewer.layers[name].metadata.get("legend", {})))
        sel = L.layer_name(s.library, "selected")
        if sel in self.viewer.layers:
            md = self.viewer.layers[sel].metadata
            budget = md.get("budget")
            count = f"{md.get('n_manual', 0)} manual of {md.get('n_selected', 0)} selected" + (
                f" (budget {budget})" if budget else "")
            parts.append(f"<b>Selected spots</b>: {count}; faded = not yet sequenced<br>" +
                         legend_html(md.get("legend", {}), md.get("symbols", {})))
        self.legend.setText("<br>".join(parts))
