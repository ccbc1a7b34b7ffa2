"""File > Open on an H&E image before sequencing: ask the capture platform and the scale, then
lay the spot lattice.

The reader shows the image at once and opens :class:`SlideOptionsDialog` (not blocking the
viewer). On OK, :func:`napari_scr2st.io.read` lays the platform's spots over the tissue (or
reads the layout file) in a thread worker and the spots layer is added, carrying the section
as every reader's spots layer does. The micrometres per pixel are prefilled from the file's
metadata; when the file does not state them the dialog cannot be accepted until they are
entered. Open dialogs (these and the other File > Open dialogs, registered with
:func:`track`) are listed by :func:`pending_dialogs` (tests accept them with qtbot).
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from ..io.slide import PLATFORMS
from . import _workers as W

#: the platforms offered, in order (``custom`` asks for the spot size and pitch)
PLATFORM_CHOICES = (*PLATFORMS, "custom")
PLATFORM_LABELS = {"visium": "10x Visium (55 um spots, 100 um pitch)",
                   "legacy_st": "Legacy ST (100 um spots, 200 um pitch)",
                   "custom": "Custom lattice"}

_PENDING: list[QDialog] = []


class SlideOptionsDialog(QDialog):
    """Platform (Visium, legacy ST, custom spot/pitch), micrometres per pixel, layout file.

    ``um_per_px`` is prefilled with the file's value (``None``: the field starts empty and OK
    stays disabled until a positive scale is entered). :meth:`options` gives the keyword
    arguments of :func:`napari_scr2st.io.read`.
    """

    def __init__(self, image_path, um_per_px: float | None, parent=None) -> None:
        super().__init__(parent)
        self.image_path = Path(image_path)
        self.setWindowTitle(f"SCR2-ST: lay spots on {self.image_path.name}")
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel(f"<b>{self.image_path.name}</b>: which capture area will be sequenced?"))
        form = QFormLayout()
        self.platform_combo = QComboBox()
        for name in PLATFORM_CHOICES:
            self.platform_combo.addItem(PLATFORM_LABELS.get(name, name), name)
        form.addRow("Platform", self.platform_combo)
        self.spot_spin = _um_spin(55.0)
        self.pitch_spin = _um_spin(100.0)
        self.hex_check = QCheckBox("hexagonal (odd rows offset by half a pitch)")
        form.addRow("Spot diameter", self.spot_spin)
        form.addRow("Centre-to-centre pitch", self.pitch_spin)
        form.addRow("", self.hex_check)
        self.scale_spin = QDoubleSpinBox()
        self.scale_spin.setRange(0.0, 50.0)
        self.scale_spin.setDecimals(4)
        self.scale_spin.setSingleStep(0.05)
        self.scale_spin.setSuffix(" um/px")
        self.scale_spin.setSpecialValueText("required")
        self.scale_spin.setValue(float(um_per_px) if um_per_px else 0.0)
        self.scale_spin.setToolTip("Micrometres per full-resolution pixel (about 0.25 at 40x, 0.5 at 20x)")
        source = "from the file's metadata" if um_per_px else "the file does not state it: enter it"
        self.scale_note = QLabel(source)
        form.addRow("Pixel size", self.scale_spin)
        form.addRow("", self.scale_note)
        lrow = QHBoxLayout()
        self.layout_edit = QLineEdit()
        self.layout_edit.setPlaceholderText("optional: the platform's spot layout (tissue_positions.csv, …)")
        self.layout_btn = QPushButton("…")
        lrow.addWidget(self.layout_edit, 1)
        lrow.addWidget(self.layout_btn)
        form.addRow("Layout file", lrow)
        lay.addLayout(form)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        lay.addWidget(self.buttons)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.platform_combo.currentIndexChanged.connect(self._update)
        self.scale_spin.valueChanged.connect(self._update)
        self.layout_btn.clicked.connect(self._browse_layout)
        self._update()

    @property
    def ok_button(self):
        return self.buttons.button(QDialogButtonBox.StandardButton.Ok)

    @property
    def platform(self) -> str:
        return str(self.platform_combo.currentData())

    def set_platform(self, name: str) -> None:
        i = self.platform_combo.findData(name)
        if i < 0:
            raise ValueError(f"unknown platform {name!r}; expected one of {PLATFORM_CHOICES}")
        self.platform_combo.setCurrentIndex(i)

    def _update(self, *_) -> None:
        custom = self.platform == "custom"
        if not custom:
            d, p, hexa = PLATFORMS[self.platform]
            self.spot_spin.setValue(d)
            self.pitch_spin.setValue(p)
            self.hex_check.setChecked(hexa)
        for w in (self.spot_spin, self.pitch_spin, self.hex_check):
            w.setEnabled(custom)
        self.ok_button.setEnabled(self.scale_spin.value() > 0)

    def _browse_layout(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Spot layout", str(self.image_path.parent),
                                              "Layout (*.csv *.tsv *.txt)")
        if path:
            self.layout_edit.setText(path)

    def accept(self) -> None:
        if self.scale_spin.value() <= 0:  # OK is disabled then; guard the programmatic path too
            self.scale_note.setText("enter the pixel size (micrometres per pixel) to lay the spots")
            return
        super().accept()

    def options(self) -> dict:
        """Keyword arguments of :func:`napari_scr2st.io.read` for this image."""
        opts = {"platform": self.platform, "um_per_px": float(self.scale_spin.value())}
        if self.platform == "custom":
            opts.update(spot_um=float(self.spot_spin.value()), pitch_um=float(self.pitch_spin.value()),
                        hexagonal=self.hex_check.isChecked())
        layout = self.layout_edit.text().strip()
        if layout:
            opts["layout"] = layout
        return opts


def _um_spin(value: float) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(0.1, 10_000.0)
    s.setDecimals(1)
    s.setSuffix(" um")
    s.setValue(value)
    return s


def pending_dialogs() -> list[QDialog]:
    """The File > Open dialogs shown and not yet answered, oldest first."""
    return list(_PENDING)


def track(dlg: QDialog) -> QDialog:
    """List ``dlg`` in :func:`pending_dialogs` until it is answered (before its ``accepted`` /
    ``rejected`` handlers run)."""
    _PENDING.append(dlg)

    def _forget(*_) -> None:
        if dlg in _PENDING:
            _PENDING.remove(dlg)

    dlg.finished.connect(_forget)
    return dlg


def ask_slide_options(viewer, image_path, *, section: str, um_per_px: float | None) -> SlideOptionsDialog:
    """Show the dialog for ``image_path`` (not blocking); on OK lay the spots of ``section``.

    Cancel leaves the image alone and says how to get the spots later.
    """
    dlg = track(SlideOptionsDialog(image_path, um_per_px))

    def _accepted() -> None:
        lay_spots(viewer, image_path, section=section, options=dlg.options())

    def _rejected() -> None:
        W.notify_info(f"{Path(image_path).name}: no spots laid (open the image again to choose a platform)")

    dlg.accepted.connect(_accepted)
    dlg.rejected.connect(_rejected)
    dlg.open()
    return dlg


def lay_spots(viewer, image_path, *, section: str, options: dict):
    """Read the image as a section with ``options`` in a thread worker and add its spots layer."""
    from ..io import read
    from ..layers import spots_layer
    from ..progress import Progress

    name = Path(image_path).name

    def _gen():
        yield Progress(0, 0, f"laying spots on {name}")
        return read(image_path, section=section, **options)

    def _add(adata) -> None:
        data, kw, kind = spots_layer(adata)
        getattr(viewer, f"add_{kind}")(data, **kw)
        W.notify_info(f"{name}: {adata.n_obs} spots on the tissue ({options['platform']})")

    return W.start_worker(_gen, desc=f"SCR2-ST: opening {name}", on_done=_add,
                          on_error=lambda e: W.notify_error(f"napari-scr2st could not lay spots on {name}: {e}"))
