"""Export / import dock: selection CSV for the lab, QuPath GeoJSON, predictions .h5ad, and the
import of the lab's counts file that reveals the next round."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
)

from ..io import export as X
from ..progress import Progress
from . import _workers as W
from ._section_dock import SectionDock


class ExportWidget(SectionDock):
    """Write the spots to sequence (CSV, GeoJSON), the predictions (.h5ad); import the results.

    Exporting the spots to sequence next fixes the current proposal: it is 'sent for
    sequencing' and the sampler waits until its counts are imported.
    """

    def __init__(self, napari_viewer, parent=None) -> None:
        self._ready = False
        super().__init__(napari_viewer, parent)
        box = QGroupBox("Export")
        v = QVBoxLayout(box)
        row = QHBoxLayout()
        self.pending_radio = QRadioButton("spots to sequence next")
        self.all_radio = QRadioButton("every selected spot")
        self.pending_radio.setChecked(True)
        row.addWidget(self.pending_radio)
        row.addWidget(self.all_radio)
        v.addLayout(row)
        self.csv_btn = QPushButton("Selection CSV (sequencing lab)…")
        self.csv_btn.setToolTip("Columns: " + ", ".join(X.SELECTION_COLUMNS))
        self.geojson_btn = QPushButton("QuPath GeoJSON (point annotations)…")
        self.geojson_btn.setToolTip("Opens in QuPath (File > Import objects); coordinates in full-resolution pixels")
        self.h5ad_btn = QPushButton("Predictions .h5ad…")
        self.h5ad_btn.setToolTip("The section with obsm['X_pred'] and the selection columns, for scanpy/squidpy")
        for b in (self.csv_btn, self.geojson_btn, self.h5ad_btn):
            v.addWidget(b)
        self._layout.addWidget(box)
        ibox = QGroupBox("Import")
        iv = QVBoxLayout(ibox)
        self.import_btn = QPushButton("Sequencing results (counts CSV/TSV)…")
        self.import_btn.setToolTip("A spots x genes table with a spot_id column (and section): the counts of the "
                                   "spots you sent for sequencing. They are revealed and the next round starts.")
        iv.addWidget(self.import_btn)
        self._layout.addWidget(ibox)
        self.panel = W.WorkerPanel()
        self._layout.addWidget(self.panel.widget)
        self._layout.addWidget(self.status)
        self._layout.addStretch(1)
        self.csv_btn.clicked.connect(lambda: self._dialog("csv"))
        self.geojson_btn.clicked.connect(lambda: self._dialog("geojson"))
        self.h5ad_btn.clicked.connect(lambda: self._dialog("h5ad"))
        self.import_btn.clicked.connect(self._import_dialog)
        self.last_path: Path | None = None
        self.worker = None
        self._busy = False  # a write runs (set before the worker starts, cleared when it ends)
        self._ready = True
        self.on_session_changed()

    def _bind(self, session) -> None:
        self._link(session.selection_changed, self._update_buttons)
        self._link(session.predictions_changed, self._update_buttons)

    def on_session_changed(self) -> None:
        if getattr(self, "_ready", False):
            self._update_buttons()

    def _update_buttons(self) -> None:
        s = self.session
        ready = s is not None and s.is_prepared and not self.is_running
        for b in (self.csv_btn, self.geojson_btn, self.import_btn):
            b.setEnabled(ready)
        self.h5ad_btn.setEnabled(ready and s.predictions is not None)

    @property
    def is_running(self) -> bool:
        return self._busy

    @property
    def which(self) -> str:
        return "pending" if self.pending_radio.isChecked() else "all"

    # ------------------------------------------------------------------ handlers (paths given)
    def export_csv(self, path) -> Path | None:
        return self._write(path, "selection CSV")

    def export_geojson(self, path) -> Path | None:
        return self._write(path, "QuPath GeoJSON")

    def _write(self, path, what: str) -> Path | None:
        """The selection (format by extension) and the run's state beside it, as one step.

        The round is fixed for the lab here (main thread: it changes the selection); the
        table and both files are written in a worker. Returns the written path once done (at
        once with synchronous workers, else None and the status says when it is written)."""
        s = self.require_session()
        path = Path(path)
        state = state_path_for(path)
        which = self.which
        try:
            suffixes = (*X.SELECTION_SUFFIXES, X.SPATIALDATA_SUFFIX)
            if path.suffix.lower() not in suffixes:  # checked before anything changes
                raise ValueError(f"cannot write a selection to {path}: unknown extension {path.suffix!r}; "
                                 f"use one of {', '.join(suffixes)}")
            if which == "pending":
                s.commit_for_export()  # no-op when a round already waits for its counts
        except Exception as e:  # noqa: BLE001
            self._write_failed(what, e)
            return None
        done: dict = {}

        def _gen():
            yield Progress(0, 1, f"writing {path.name}")
            df, out = s.export_round(path, state_path=state, which=which)
            yield Progress(1, 1, "written")
            return df, out

        def _done(res) -> None:
            df, out = res
            self.last_path = done["path"] = Path(out)
            rec = s.last_export  # set by export_round: the same record the workflow dock names
            self.set_status(f"{rec.message.capitalize()}: {len(df)} spots (run state: {state.name})")
            W.notify_info(f"{what}: {rec.round_text}, {len(df)} spots written to {Path(out).name}")

        self._busy = True
        self._update_buttons()
        self.worker = W.start_worker(_gen, desc=f"SCR2-ST: writing the {what}", on_done=_done,
                                     on_error=lambda e: self._write_failed(what, e),
                                     on_aborted=lambda: self.set_status(f"Writing the {what} cancelled."),
                                     on_finished=self._finished, panel=self.panel)
        if not self._busy:  # synchronous workers: already done
            self.worker = None
        return done.get("path")

    def _write_failed(self, what: str, e: BaseException) -> None:
        W.notify_error(f"Writing the {what} failed: {e}")
        self.set_status(f"Writing the {what} failed: {e}")

    def export_h5ad(self, path) -> Path | None:
        """Write the predictions in a worker (the selection and cell types are taken now, in
        the GUI thread); returns the written path once done (at once with synchronous workers,
        else None and the status says when it is written)."""
        s = self.require_session()
        path = Path(path)
        try:
            if path.suffix != ".h5ad":
                raise ValueError(f"refusing to write {path}: the file name must end with .h5ad")
            st = s.selection_for_layers()
            st = st.copy() if st is not None else None
            cell_types = s.cell_types()
        except Exception as e:  # noqa: BLE001
            self._h5ad_failed(e)
            return None
        adata = s.adata
        done: dict = {}

        def _gen():
            yield Progress(0, 2, f"copying {adata.n_obs} spots")
            yield Progress(1, 2, f"writing {path.name}")
            out = X.write_predictions_h5ad(adata, path, selection=st, predicted_cell_type=cell_types)
            yield Progress(2, 2, "written")
            return out

        def _done(out) -> None:
            self.last_path = done["path"] = Path(out)
            self.set_status(f"predictions written to {out}")
            W.notify_info(f"predictions written to {Path(out).name}")

        def _aborted() -> None:
            self.set_status(f"Writing {path.name} cancelled; no file was written.")

        self.set_status(f"writing the predictions to {path.name}…")
        self._busy = True
        self._update_buttons()
        self.worker = W.start_worker(_gen, desc="SCR2-ST: writing the predictions", on_done=_done,
                                     on_error=self._h5ad_failed, on_aborted=_aborted,
                                     on_finished=self._finished, panel=self.panel, status=self.set_status)
        if not self._busy:  # synchronous workers: already done
            self.worker = None
        return done.get("path")

    def _h5ad_failed(self, e: BaseException) -> None:
        W.notify_error(f"Writing the predictions failed: {e}")
        self.set_status(f"Writing the predictions failed: {e}")

    def _finished(self) -> None:
        self.worker = None
        self._busy = False
        self._update_buttons()

    def import_results(self, path):
        s = self.require_session()
        try:
            idx = s.import_results(path)
        except Exception as e:  # noqa: BLE001
            W.notify_error(f"Importing {Path(path).name} failed: {e}")
            self.set_status(f"Import failed: {e}")
            return None
        self.set_status(import_status(len(idx), Path(path).name, s))
        W.notify_info(f"{len(idx)} sequenced spots imported")
        return idx

    # ------------------------------------------------------------------ dialogs
    def _dialog(self, kind: str) -> None:
        s = self.session
        base = f"{s.library if s else 'section'}_"
        spec = {
            "csv": ("Save selection", base + "to_sequence.csv", "CSV (*.csv)", self.export_csv),
            "geojson": ("Save QuPath GeoJSON", base + "to_sequence.geojson", "GeoJSON (*.geojson *.json)", self.export_geojson),
            "h5ad": ("Save predictions", base + "predictions.h5ad", "AnnData (*.h5ad)", self.export_h5ad),
        }[kind]
        path, _ = QFileDialog.getSaveFileName(self, spec[0], spec[1], spec[2])
        if path:
            spec[3](path)

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import sequencing results", "", "Counts (*.csv *.tsv *.txt *.gz)")
        if path:
            self.import_results(path)


def import_status(n: int, name: str, s) -> str:
    """After an import: what was imported and what comes next, in the sampling dock's words
    (``Round k of R``, counted from 1)."""
    total = int(s.sampling.rounds)
    done = min(int(s.current_round), total)
    if s.waiting_for_counts:  # a partial file: the round is not in yet (the sampling dock says so too)
        left = int(s.committed.pending.sum())
        return (f"{n} sequenced spots imported from {name}; round {done} of {total}: {left} spots still wait "
                "for their counts (import them to continue).")
    head = f"{n} sequenced spots imported from {name}; round {done} of {total} sequenced"
    if s.rounds_done:
        return f"{head}: all rounds done (raise the rounds in the sampling dock to pick more)."
    return f"{head}; next: round {done + 1} of {total} (proposed in the sampling dock)."


def state_path_for(path: Path) -> Path:
    """The run's state file written beside an exported selection (``name.scr2st-state.npz``)."""
    return path.with_name(f"{path.stem}.scr2st-state.npz")
