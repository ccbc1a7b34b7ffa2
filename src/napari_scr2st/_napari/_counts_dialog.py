"""File > Open on a legacy ST counts table whose spot file or image is not found beside it:
ask for them, then read the section.

The napari counterpart of ``--spots FILE`` / ``--image FILE``. :class:`CountsCompanionsDialog`
(not blocking the viewer) asks for the spot file (required) and the H&E image (optional),
prefilled with the companions :func:`napari_scr2st.io.find_companions` did find. On OK the
section is read with :func:`napari_scr2st.io.read` (``spots=``, ``image=``) in a thread worker
and its layers are added as the reader would return them; on Cancel nothing is added and a
notification says what was missing. The dialog is listed by
:func:`~napari_scr2st._napari._open_dialog.pending_dialogs` until answered.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from ..io.legacy_st import IMAGE_SUFFIXES
from . import _open_dialog
from . import _workers as W


class CountsCompanionsDialog(QDialog):
    """Spot file (required) and H&E image (optional) of the counts table ``counts_path``.

    ``spots`` / ``image`` prefill the fields. OK stays disabled while the spot file field is
    empty. :meth:`options` gives the keyword arguments of :func:`napari_scr2st.io.read`.
    """

    def __init__(self, counts_path, *, spots=None, image=None, parent=None) -> None:
        super().__init__(parent)
        self.counts_path = Path(counts_path)
        name = self.counts_path.name
        self.setWindowTitle(f"SCR2-ST: spot file and image of {name}")
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel(f"<b>{name}</b>: which spot file (and H&amp;E image) belong to this counts table?"))
        form = QFormLayout()
        self.spots_edit, self.spots_btn = _path_row(
            form, "Spot file", spots, "required: x y new_x new_y pixel_x pixel_y selected (.tsv)")
        self.image_edit, self.image_btn = _path_row(
            form, "H&E image", image, "optional: the image the pixel coordinates refer to")
        lay.addLayout(form)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        lay.addWidget(self.buttons)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.spots_edit.textChanged.connect(self._update)
        self.spots_btn.clicked.connect(self._browse_spots)
        self.image_btn.clicked.connect(self._browse_image)
        self._update()

    @property
    def ok_button(self):
        return self.buttons.button(QDialogButtonBox.StandardButton.Ok)

    def _update(self, *_) -> None:
        self.ok_button.setEnabled(bool(self.spots_edit.text().strip()))

    def _browse(self, edit: QLineEdit, title: str, filt: str) -> None:
        start = edit.text().strip() or str(self.counts_path.parent)
        path, _ = QFileDialog.getOpenFileName(self, title, start, filt)
        if path:
            edit.setText(path)

    def _browse_spots(self) -> None:
        self._browse(self.spots_edit, "Spot file", "Spot file (*.tsv *.tsv.gz *.txt *.txt.gz);;All files (*)")

    def _browse_image(self) -> None:
        pattern = " ".join(f"*{s}" for s in IMAGE_SUFFIXES)
        self._browse(self.image_edit, "H&E image", f"Image ({pattern});;All files (*)")

    def accept(self) -> None:
        if not self.spots_edit.text().strip():  # OK is disabled then; guard the programmatic path too
            return
        super().accept()

    def options(self) -> dict:
        """Keyword arguments of :func:`napari_scr2st.io.read` for the counts table."""
        opts = {"spots": self.spots_edit.text().strip()}
        image = self.image_edit.text().strip()
        if image:
            opts["image"] = image
        return opts


def _path_row(form: QFormLayout, label: str, value, placeholder: str) -> tuple[QLineEdit, QPushButton]:
    row = QHBoxLayout()
    edit = QLineEdit("" if value is None else str(value))
    edit.setPlaceholderText(placeholder)
    btn = QPushButton("…")
    row.addWidget(edit, 1)
    row.addWidget(btn)
    form.addRow(label, row)
    return edit, btn


def missing_description(spots, image) -> str:
    """What was not found beside a counts table, in words ("" when both were found)."""
    missing = [what for what, got in (("no spot file", spots), ("no H&E image", image)) if got is None]
    return " and ".join(missing)


def ask_counts_companions(viewer, counts_path, *, spots=None, image=None) -> CountsCompanionsDialog:
    """Show the dialog for ``counts_path`` (not blocking); on OK read the section and add its layers.

    ``spots`` / ``image``: the companions found beside the table (``None``: not found).
    """
    dlg = _open_dialog.track(CountsCompanionsDialog(counts_path, spots=spots, image=image))
    missing = missing_description(spots, image)

    def _accepted() -> None:
        open_counts_table(viewer, counts_path, options=dlg.options())

    def _rejected() -> None:
        W.notify_info(f"{Path(counts_path).name}: nothing opened ({missing} found beside it; "
                      "open it again to give them)")

    dlg.accepted.connect(_accepted)
    dlg.rejected.connect(_rejected)
    dlg.open()
    return dlg


def open_counts_table(viewer, counts_path, *, options: dict):
    """Read the counts table with ``options`` (``spots=``, ``image=``) in a thread worker and add
    the section's layers (image, spots)."""
    from ..io import read
    from ..layers import section_layers
    from ..progress import Progress

    name = Path(counts_path).name

    def _gen():
        yield Progress(0, 0, f"reading {name}")
        return read(counts_path, **options)

    def _add(adata) -> None:
        for data, kw, kind in section_layers(adata):
            getattr(viewer, f"add_{kind}")(data, **kw)
        W.notify_info(f"{name}: {adata.n_obs} spots, {adata.n_vars} genes")

    return W.start_worker(_gen, desc=f"SCR2-ST: opening {name}", on_done=_add,
                          on_error=lambda e: W.notify_error(f"napari-scr2st could not open {name}: {e}"))
