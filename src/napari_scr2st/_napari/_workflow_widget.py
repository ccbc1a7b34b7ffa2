"""Workflow dock: the seven steps of a run, what each has done and what comes next.

data -> reference -> budget and weights -> review and manual picks -> export -> import results
-> train and predict. Every text is computed from the section's ONE
:class:`~napari_scr2st.session.AcquisitionSession` (:func:`workflow_steps`; no copy of its
counters), so it cannot contradict the other docks, and refreshed by the session's signals only
(no polling: every change a step shows fires one). Each step has buttons that open (or raise)
the dock doing it; they open one at a time below this dock, or tabified with it where both
would not fit the window's height.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..config import SAMPLER_LABELS
from . import _dock_kit as K
from . import _heap
from . import _workers as W
from ._section_dock import SectionDock

#: display names of the docks in napari.yaml, and the short labels of their buttons here
SAMPLING, EXPORT, TRAINING, MAPS, INSPECTOR = (
    "Spot sampling", "Export and import", "Train SCR2Net", "Expression and cell-type maps", "Retrieval inspector")
DOCK_LABELS = {SAMPLING: "Sampling", EXPORT: "Export / import", TRAINING: "Training", MAPS: "Maps",
               INSPECTOR: "Inspector"}
OPEN = "open"  # the data step's button: a file dialog, not a dock

DONE, CURRENT, TODO = "done", "current", "to do"
BADGE = {DONE: "\u2714", CURRENT: "\u25b6", TODO: "\u25cb"}
BADGE_COLOR = {DONE: "#32cd32", CURRENT: "#ffb000", TODO: "#8a8f98"}
#: the session signals the steps follow (every state a step shows changes with one of them)
SIGNALS = ("prepared", "selection_changed", "predictions_changed", "rois_changed", "reference_changed", "exported")
NAME_PX = 170  # section and file names longer than this are elided in the middle (tooltip: all of it)
MIN_TRAIN = 8  # AcquisitionSession.training_snapshot's minimum
MIN_SCROLL_PX = 110  # the step list scrolls: with Spot sampling below, the window stays <= 1000 px tall
MIN_WIDTH_PX = 280
GROW_PX = 80  # room left for a step dock's status to grow by a few lines once it is open


@dataclass
class Step:
    """One row of the workflow: its state, what is done and what comes next."""

    title: str
    docks: tuple[str, ...]
    state: str = TODO
    done: str = ""
    next: str = ""
    round: int | None = None  # the round a per-round step waits for (shown with "to do")
    names: tuple[str, ...] = field(default_factory=tuple)  # long names inside the texts (elided)


TITLES = ("Data", "Reference", "Budget and weights", "Review and manual picks", "Export for the lab",
          "Import the lab's counts", "Train and predict")


def _reference_name(s) -> str:
    """The reference file's name, else its size ("3,000 cells")."""
    info = s.reference.uns.get("scr2st_reference", {})
    src = info.get("source")
    return Path(str(src)).stem if src else f"of {_n(s.reference.n_obs)} cells"


def _reference_types(s) -> int | None:
    """Cell types of the fitted space, else of the reference column chosen (None: unknown)."""
    if s.space is not None:
        return int(s.space.n_types)
    ref = s.reference
    if ref is None:
        return None
    cache = s.__dict__.setdefault("_workflow_types", {})  # (reference, column) -> count
    ck = (id(ref), ref.n_obs, s.celltype_key)
    if ck not in cache:
        key = s.celltype_key or ref.uns.get("scr2st_reference", {}).get("celltype_key")
        if not key:
            from ..reference import list_celltype_columns

            cols = list_celltype_columns(ref)  # the column Spot sampling proposes first
            key = cols[0] if cols else None
        cache.clear()
        cache[ck] = int(ref.obs[key].nunique()) if key and key in ref.obs else None
    return cache[ck]


def _n(x: int) -> str:
    return f"{int(x):,}"


def _trained_on(s) -> int:
    bank = getattr(s.predictor, "bank", None)
    expr = getattr(bank, "expr", None)
    if expr is not None:
        return int(len(expr))
    return int(s.committed.measured.sum()) if s.committed is not None else 0


def workflow_steps(s) -> list[Step]:
    """The seven steps for session ``s`` (None: no section open), from its state only."""
    steps = [Step(TITLES[0], (OPEN,)), Step(TITLES[1], (SAMPLING,)), Step(TITLES[2], (SAMPLING,)),
             Step(TITLES[3], (SAMPLING, MAPS)), Step(TITLES[4], (EXPORT,)), Step(TITLES[5], (EXPORT,)),
             Step(TITLES[6], (TRAINING, MAPS, INSPECTOR))]
    data, ref, budget, review, export, imp, train = steps
    if s is None:
        data.next = ("Open a section: File > Open Sample > SCR2-ST spot sampling, or 'Open…' here (counts table, "
                     "Space Ranger folder, .h5ad, SpatialData .zarr or an H&E image).")
        _assign_states(steps, [False] * 7)
        return steps
    prepared = s.is_prepared
    lib = str(s.library)
    data.names = (lib,)
    how = ("fully measured: sequencing is simulated from its own counts" if s.simulate
           else "not sequenced yet: the lab sequences what you export")
    data.done = f"{lib}: {_n(s.n)} spots ({how})"

    # reference and preparation
    n_types = _reference_types(s)
    types = f" ({n_types} cell types)" if n_types is not None else ""
    if s.reference is not None or s.space is not None:
        name = _reference_name(s) if s.reference is not None else "reference space"
        ref.names = (name,)
        fitted = f", {s.space.n_clusters} cell states; section prepared" if s.space is not None and prepared else ""
        ref.done = f"reference {name}{types}{fitted}"
        if not (prepared and s.space is not None):
            ref.next = "Press 'Prepare section' in Spot sampling: it embeds the spots and fits the reference."
    elif prepared:
        ref.done = "prepared WITHOUT a single-cell reference: histology samplers only, no cell-type maps"
        ref.next = "Optional: load a reference in Spot sampling ('Single-cell reference…') and prepare again."
    else:
        ref.done = "no single-cell reference yet"
        ref.next = ("Spot sampling: 'Single-cell reference…' (an .h5ad of cells with a cell-type column), "
                    "then 'Prepare section'.")
    ref_ok = prepared and (s.space is not None or s.reference is None)

    if not prepared:
        budget.next = "After preparing: the budget, the rounds and the three reward weights, in Spot sampling."
        review.next = "After preparing: the proposal appears on the canvas."
        export.next = "Export and import: the spots of each round, for the sequencing lab."
        imp.next = "Export and import: the lab's counts file reveals the round."
        train.next = "Train SCR2Net on the sequenced spots; it predicts every other spot."
        _assign_states(steps, [True, ref_ok, False, False, False, False, False])
        return steps

    st = s.sampling
    p = s.preview
    r, rounds = s.current_round, s.acq.n_rounds
    waiting, all_chosen = s.waiting_for_counts, s.rounds_done
    measured = int(s.committed.measured.sum())
    pending = int(s.committed.pending.sum())
    total = p.total_budget if p is not None else int(s.committed.budget or 0)
    sampler = (f"SCRL policy ({s.policy_source})" if st.sampler == "scrl"
               else f"sampler: {SAMPLER_LABELS.get(st.sampler, st.sampler)}")
    budget.done = (f"budget {_n(total)} spots ({st.budget}) over {rounds} round{'s' if rounds != 1 else ''}; "
                   f"{sampler}; weights: cell states {st.w_sc:.2f}, cell types {st.w_type:.2f}, spatial {st.w_sp:.2f}")
    if not waiting and not all_chosen:
        budget.next = f"Change them in Spot sampling before exporting round {r + 1}: the proposal follows live."

    # the round cycle: review -> export -> import (1-based rounds, as the lab sees them)
    open_round = not waiting and not all_chosen
    n_manual = len(s.manual)
    if open_round:
        chosen = (len(p.proposal) if p is not None else 0) + n_manual
        before = f"; {_n(measured)} sequenced in earlier rounds" if measured else ""
        review.done = f"Round {r + 1} of {rounds}: {_n(chosen)} spots chosen ({n_manual} manual){before}"
        review.next = ("Check the proposal on the canvas; pick or un-pick spots ('Click spots to pick manually') "
                       f"or draw exclusion ROIs in Spot sampling; then export round {r + 1}.")
        for step in (review, export, imp):
            step.round = r + 1
    elif waiting:
        review.done = f"Round {r} of {rounds}: {_n(pending)} spots sent for sequencing"
    else:
        review.done = f"all {rounds} rounds chosen: {_n(s.committed.n_selected)} spots"

    sim = " (simulation: 'Sequence round (simulate)' in Spot sampling does export + import at once)" \
        if s.oracle is not None else ""
    rec = s.last_export  # the file the session wrote last (export dock, File > Save, the CLI)
    if rec is not None:
        export.names = (str(rec.path),)
    if waiting:
        export.done = (f"{rec.message}: {_n(pending)} spots wait for the lab's counts" if rec is not None
                       and rec.round == r else f"round {r} sent for sequencing: {_n(pending)} spots wait for the "
                       "lab's counts")
        imp.done = f"counts in for {_n(measured)} spots" if measured else "no counts imported yet"
        imp.next = (f"When the lab sends round {r}'s counts: Export and import > 'Sequencing results…' "
                    "(a spots x genes table with a spot_id column).")
    else:
        sent = r if open_round else rounds
        export.done = (f"{sent} of {rounds} round{'s' if rounds != 1 else ''} sent and sequenced" if sent
                       else "nothing exported yet")
        if rec is not None:
            export.done += f"; {rec.message}"
        rounds_in = f" (rounds 1-{sent})" if sent > 1 else ""
        imp.done = f"counts for {_n(measured)} spots{rounds_in}" if measured else "no counts yet"
        if open_round:
            export.next = (f"Export and import > 'Selection CSV (sequencing lab)…' writes round {r + 1}'s spots "
                           f"with the run state beside it{sim}.")
            imp.next = f"After the export: import the counts of round {r + 1}."

    # train and predict
    stale = False
    if s.predictions is not None:
        n_train = _trained_on(s)
        stale = measured > n_train
        train.done = (f"SCR2Net trained on {_n(n_train)} spots; predictions for {_n(s.n - measured)} "
                      f"unsequenced spots (every spot: {_n(s.n)})")
        if stale:
            train.next = f"{_n(measured - n_train)} more spots were sequenced since: train again in Train SCR2Net."
        else:
            train.next = "See them in Maps (gene, predicted vs measured) and why in the Retrieval inspector."
    elif measured >= MIN_TRAIN:
        train.done = f"{_n(measured)} sequenced spots to train on"
        train.next = ("Train SCR2Net: 'Train' learns expression from the H&E of the sequenced spots and predicts "
                      "every other spot" + ("; now, or after the last round." if open_round or waiting else "."))
    else:
        train.done = f"{_n(measured)} sequenced spots (training needs at least {MIN_TRAIN})"
        train.next = "Sequence a round first (steps 4-6)."
    cycle_done = not open_round and not waiting
    flags = [True, ref_ok, True, not open_round, not open_round, cycle_done,
             s.predictions is not None and not stale]
    _assign_states(steps, flags)
    return steps


def _assign_states(steps: list[Step], done: list[bool]) -> None:
    """The first step not done is the current one; the other open ones are to do."""
    current = next((i for i, d in enumerate(done) if not d), None)
    for i, (step, d) in enumerate(zip(steps, done, strict=True)):
        step.state = DONE if d else (CURRENT if i == current else TODO)
        if d:
            step.round = None


def summary(steps: list[Step]) -> str:
    """The one line on top: which step is now and what to do."""
    for i, step in enumerate(steps, 1):
        if step.state == CURRENT:
            return f"Now: step {i} of {len(steps)}, {step.title.lower()}"
    return "All steps done: every spot has a prediction"


class _StepRow(QFrame):
    """One step: badge, title, buttons; below, what is done and what comes next (wrapped)."""

    def __init__(self, index: int, step: Step, open_dock, open_data) -> None:
        super().__init__()
        self.setObjectName(f"scr2st_step_{index}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        v = QVBoxLayout(self)
        v.setContentsMargins(6, 4, 6, 4)
        v.setSpacing(2)
        top = QHBoxLayout()
        self.badge = QLabel()
        self.badge.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)  # its text's width
        self.title = QLabel(f"<b>{index}. {step.title}</b>")
        self.title.setWordWrap(True)
        self.state_label = QLabel()
        self.state_label.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)
        top.addWidget(self.badge)
        top.addWidget(self.title, 1)
        top.addWidget(self.state_label)
        v.addLayout(top)
        self.done_label = K.wrapping_label()
        self.next_label = K.wrapping_label()
        self.next_label.setStyleSheet("font-style: italic")
        v.addWidget(self.done_label)
        v.addWidget(self.next_label)
        brow = QHBoxLayout()
        brow.addStretch(1)
        self.buttons: dict[str, QPushButton] = {}
        for name in step.docks:
            if name == OPEN:
                b = QPushButton("Open…")
                b.setToolTip("Open a section (File > Open); File > Open Sample has the synthetic and her2st samples")
                b.clicked.connect(open_data)
            else:
                b = QPushButton(DOCK_LABELS[name])
                b.setToolTip(f"Open (or raise) the '{name}' dock")
                b.clicked.connect(lambda _=False, n=name: open_dock(n))
            self.buttons[name] = b
            brow.addWidget(b)
        v.addLayout(brow)

    def show_badge(self, state: str) -> None:
        self.badge.setText(f"<span style='color:{BADGE_COLOR[state]}'>{BADGE[state]}</span>")

    def show_step(self, step: Step) -> None:
        color = BADGE_COLOR[step.state]
        self.show_badge(step.state)
        state = step.state if step.round is None else f"{step.state} (round {step.round})"
        self.state_label.setText(f"<span style='color:{color}'>{state}</span>")
        K.set_elided_text(self.done_label, step.done, step.names, NAME_PX)
        self.done_label.setVisible(bool(step.done))
        self.next_label.setText(step.next)
        self.next_label.setVisible(bool(step.next))
        self.setProperty("state", step.state)


class WorkflowWidget(SectionDock):
    """The main dock: the seven steps of the section's run, each with its state, what is done,
    what comes next and a button opening the dock that does it."""

    def __init__(self, napari_viewer, parent=None) -> None:
        self._ready = False
        super().__init__(napari_viewer, parent)
        W.warm_docks()  # the docks opened from here draw charts: load their code in a worker now
        _heap.freeze_later(napari_viewer)  # short garbage collections from now on (see _heap)
        K.compact_combo(self.layer_combo)
        self.summary = K.wrapping_label()
        self.summary.setObjectName("scr2st_workflow_summary")
        self.summary.setStyleSheet("font-weight: bold")
        self._layout.addWidget(self.summary)
        self.steps = workflow_steps(None)
        body = QWidget()
        bl = QVBoxLayout(body)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.setSpacing(4)
        self.rows = [_StepRow(i, st, self.open_dock, self._open_dialog) for i, st in enumerate(self.steps, 1)]
        for row in self.rows:
            bl.addWidget(row)
        bl.addStretch(1)
        # the rows' height follows the dock's width (wrapped texts), not the wrap at the labels'
        # minimum width: otherwise the list scrolls with blank space below the last row
        bl.setSizeConstraint(QVBoxLayout.SizeConstraint.SetNoConstraint)
        body.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Ignored)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(body)
        self.scroll.setMinimumHeight(MIN_SCROLL_PX)
        self._layout.addWidget(self.scroll, 1)
        self._layout.addWidget(self.status)
        self.status.setVisible(False)
        self.setMinimumWidth(MIN_WIDTH_PX)
        self._ready = True
        self.on_session_changed()

    # ------------------------------------------------------------------ binding
    def _bind(self, session) -> None:
        for name in SIGNALS:
            self._link(getattr(session, name), self.refresh)

    def on_session_changed(self) -> None:
        if getattr(self, "_ready", False):
            self.layer_combo.setToolTip(self.layer_combo.currentText() or K.tip("layer"))
            self.refresh()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        """Recompute every step from the session (cheap: counters and flags only)."""
        if not self._life["ok"]:
            return
        try:
            steps = workflow_steps(self.session)
        except Exception as e:  # noqa: BLE001 - a half-built session must not break the dock
            self.summary.setText(f"Status unavailable: {e}")
            return
        self.steps = steps
        for row, st in zip(self.rows, steps, strict=True):
            row.show_step(st)
        text = summary(steps)
        if text != self.summary.text():
            self.summary.setText(text)
            cur = next((row for row, st in zip(self.rows, steps, strict=True) if st.state == CURRENT), None)
            if cur is not None:
                self.scroll.ensureWidgetVisible(cur, 0, 0)

    def set_status(self, text: str) -> None:
        super().set_status(text)
        self.status.setVisible(bool(text))

    def current_step(self) -> int | None:
        """1-based index of the current step (None: all done)."""
        return next((i for i, st in enumerate(self.steps, 1) if st.state == CURRENT), None)

    # ------------------------------------------------------------------ opening docks
    def open_dock(self, name: str):
        """Open (or raise) the plugin dock ``name``; returns its widget.

        The dock opens below this one when both fit the window's height, else tabified with it;
        the plugin's other step docks are hidden (one at a time), so the window keeps its size.
        """
        win = self.viewer.window
        dock, widget = win.add_plugin_dock_widget(K.PLUGIN, name)
        main = dock.parentWidget()
        mine = self._own_dock()
        if isinstance(main, QMainWindow) and mine is not None and not mine.isFloating() \
                and main.dockWidgetArea(mine) == main.dockWidgetArea(dock):
            self._place(main, mine, dock)
        dock.show()
        dock.raise_()
        return widget

    @staticmethod
    def _place(main: QMainWindow, mine: QDockWidget, dock: QDockWidget) -> None:
        """The plugin's other step docks leave the area (hidden, re-added so that the Plugins menu
        shows them in the area again); ``dock`` goes below ``mine`` when both fit the area's
        height, else into a tab beside it."""
        area = main.dockWidgetArea(mine)
        others = [d for d in main.findChildren(QDockWidget) if d is not mine and d is not dock
                  and isinstance(d.widget(), SectionDock) and not isinstance(d.widget(), WorkflowWidget)]
        # out of any tab group, this dock too: Qt keeps hidden docks in a group (and its tab bar
        # on screen), and a dock in a group cannot be split
        tabbed = bool(main.tabifiedDockWidgets(mine)) or any(main.tabifiedDockWidgets(d) for d in others)
        for d in [*others, dock] + ([mine] if tabbed else []):
            main.removeDockWidget(d)
        if tabbed:
            main.addDockWidget(area, mine)
            mine.show()
        for d in others:  # back in the area, hidden: the Plugins menu shows them there again
            main.addDockWidget(area, d)
            d.hide()
        avail = main.centralWidget().height() if main.centralWidget() is not None else main.height()
        top = mine.minimumSizeHint().height()
        sep = main.style().pixelMetric(main.style().PixelMetric.PM_DockWidgetSeparatorExtent)
        if top + dock.minimumSizeHint().height() + 2 * sep + GROW_PX <= avail:
            main.splitDockWidget(mine, dock, Qt.Orientation.Vertical)
            main.resizeDocks([mine, dock], [top, max(1, avail - top)], Qt.Orientation.Vertical)
        else:
            main.addDockWidget(area, dock)
            main.tabifyDockWidget(mine, dock)

    def _own_dock(self) -> QDockWidget | None:
        w = self.parentWidget()
        while w is not None and not isinstance(w, QDockWidget):
            w = w.parentWidget()
        return w

    def open_data(self, path) -> list:
        """Open a section file or folder with the plugin's reader (File > Open)."""
        try:
            return self.viewer.open(str(path), plugin=K.PLUGIN)
        except Exception as e:  # noqa: BLE001
            W.notify_error(f"Opening {Path(str(path)).name} failed: {e}")
            self.set_status(f"Opening {path} failed: {e}")
            return []

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a section", "", "Sections (*.tsv *.tsv.gz *.h5ad *.tif "
                                              "*.tiff *.svs *.ndpi *.jpg *.jpeg *.png);;All files (*)")
        if path:
            self.open_data(path)

