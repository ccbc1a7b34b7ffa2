"""A dock that lists the sections of a collection (her2st or HEST folder, a folder of sections)
and opens only the chosen ones, off the UI thread.

Opening the folder reads nothing heavy: the reader lists section ids (file names) and opens
this dock. "Open" reads each checked section in a thread worker with a progress bar
(:func:`~napari_scr2st._napari._workers.start_worker`); the layers of a section (image +
spots, :func:`napari_scr2st.layers.section_layers`, built in the worker so the viewer only
adds them) appear as soon as it is read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from . import _workers as W


class SectionChooser(QWidget):
    """Check sections of ``source`` and press Open; ``openers`` maps a section id to a function
    reading it (an AnnData, or a ``{section: AnnData}`` dict)."""

    def __init__(self, napari_viewer, source, openers: Mapping[str, Callable], parent=None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.source = Path(source)
        self.openers = dict(openers)
        self.setObjectName("SectionChooser")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(QLabel(f"<b>{self.source.name}</b>: {len(self.openers)} sections. "
                             "Check the ones to open."))
        self.list = QListWidget()
        for sid in self.openers:
            item = QListWidgetItem(sid)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.list.addItem(item)
        lay.addWidget(self.list, 1)
        row = QHBoxLayout()
        self.all_btn = QPushButton("All")
        self.none_btn = QPushButton("None")
        self.open_btn = QPushButton("Open")
        self.open_btn.setToolTip("Read the checked sections (in the background) and add their image and spots")
        for b in (self.all_btn, self.none_btn, self.open_btn):
            row.addWidget(b)
        lay.addLayout(row)
        self.panel = W.WorkerPanel()  # progress, time left and Cancel while sections are read
        lay.addWidget(self.panel.widget)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.all_btn.clicked.connect(lambda: self._check_all(True))
        self.none_btn.clicked.connect(lambda: self._check_all(False))
        self.open_btn.clicked.connect(self.open_checked)
        self.list.itemChanged.connect(self._update_buttons)
        self.worker = None
        self.opened: list[str] = []
        self._update_buttons()

    # ------------------------------------------------------------------ choice
    @property
    def section_ids(self) -> list[str]:
        return list(self.openers)

    def checked(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())
                if self.list.item(i).checkState() == Qt.CheckState.Checked]

    def set_checked(self, ids: Iterable[str]) -> None:
        """Check exactly ``ids`` (unknown ids raise a ``KeyError`` listing the known ones)."""
        ids = set(map(str, ids))
        unknown = ids - set(self.openers)
        if unknown:
            raise KeyError(f"no section(s) {sorted(unknown)} in {self.source}; available: {self.section_ids}")
        for i in range(self.list.count()):
            item = self.list.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.text() in ids else Qt.CheckState.Unchecked)

    def _check_all(self, on: bool) -> None:
        self.set_checked(self.section_ids if on else [])

    def _update_buttons(self, *_) -> None:
        busy = self.worker is not None and getattr(self.worker, "is_running", False)
        self.open_btn.setEnabled(bool(self.checked()) and not busy)

    # ------------------------------------------------------------------ opening
    def open_checked(self):
        """Read the checked sections in a worker; each one's layers are added when it is read."""
        ids = self.checked()
        if not ids:
            return None
        ready: deque = deque()

        def _gen():
            from ..layers import section_layers
            from ..progress import Progress

            n = 2 * len(ids)  # each section: read, then its layers (image pyramid, spots)
            for i, sid in enumerate(ids):
                yield Progress(2 * i, n, f"reading {sid}")
                got = self.openers[sid]()
                sections = got if isinstance(got, dict) else {sid: got}
                yield Progress(2 * i + 1, n, f"building the layers of {sid}")
                tuples = [lt for a in sections.values() for lt in section_layers(a)]
                ready.append((W.build_layers(tuples), sid))  # built here, only added in the GUI thread
                yield Progress(2 * i + 2, n, f"{sid} read")

        opened: list[str] = []
        adding = {"busy": False, "end": None}

        def _drain(*_) -> None:
            # one section's layers at a time, one layer per turn of the event loop
            # (W.add_in_turns): the viewer repaints between them instead of freezing for all
            if adding["busy"]:
                return
            if not ready:
                end, adding["end"] = adding["end"], None
                if end is not None:
                    end()
                return
            layers, sid = ready.popleft()
            adding["busy"] = True

            def _added(_, sid=sid) -> None:
                opened.append(sid)
                adding["busy"] = False
                _drain()

            W.add_in_turns(self.viewer, layers, _added)

        def _at_end(fn) -> None:
            """Run ``fn`` once every section read so far has its layers in the viewer."""
            adding["end"] = fn
            _drain()

        def _done(_) -> None:
            def _end() -> None:
                self.opened.extend(opened)
                self.status.setText(f"Opened {', '.join(opened)}.")

            _at_end(_end)

        def _aborted() -> None:
            def _end() -> None:  # sections read before the cancel stay
                self.opened.extend(opened)
                rest = [i for i in ids if i not in opened]
                self.status.setText(f"Cancelled: opened {', '.join(opened) or 'nothing'}; "
                                    f"not opened: {', '.join(rest)}.")

            _at_end(_end)

        def _error(e: BaseException) -> None:
            W.notify_error(f"napari-scr2st could not open a section of {self.source.name}: {e}")

            def _end() -> None:
                self.opened.extend(opened)
                self.status.setText(f"Failed: {e}")

            _at_end(_end)

        self.status.setText(f"reading {len(ids)} section(s)…")
        self.worker = W.start_worker(_gen, desc=f"SCR2-ST: opening {self.source.name}", on_progress=_drain,
                                     on_done=_done, on_error=_error, on_aborted=_aborted,
                                     on_finished=self._finished, panel=self.panel, status=self.status.setText)
        self._update_buttons()
        return self.worker

    def _finished(self) -> None:
        self.worker = None
        self._update_buttons()


def open_chooser(viewer, source, openers: Mapping[str, Callable]) -> SectionChooser:
    """Dock a :class:`SectionChooser` for ``source`` in ``viewer`` (replacing the one of an
    earlier open of the same folder) and return it."""
    name = f"SCR2-ST sections: {Path(source).name}"
    old = viewer.window.dock_widgets.get(name)
    if old is not None:
        viewer.window.remove_dock_widget(old)
    w = SectionChooser(viewer, source, openers)
    viewer.window.add_dock_widget(w, name=name, area="right")
    return w
