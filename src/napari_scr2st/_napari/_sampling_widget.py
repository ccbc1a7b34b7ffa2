"""Sampling dock: budget, rounds, sampler, reward weights (live), manual picks, ROIs, rounds."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)
from superqt import QLabeledDoubleSlider

from .. import layers as L
from ..config import DEFAULT_ENCODER, ENCODERS, SAMPLER_LABELS, SAMPLERS
from ..progress import Progress
from . import _dock_kit as K
from . import _heap
from . import _viewer_layers as V
from . import _workers as W
from ._section_dock import SectionDock

DEBOUNCE_MS = 40
#: the policy-vs-greedy check runs this long after the selection settles (it runs greedy too)
CHECK_DELAY_MS = 300
#: how the status names who made the new picks
_PICKED_BY = {"scrl": "the policy", "greedy": "greedy"}


class SamplingWidget(SectionDock):
    """Choose spots to sequence: budget, rounds, sampler and the four reward weights.

    Moving a weight slider re-selects live (debounced; the SCRL policy re-runs only its
    weight-conditioned head). Clicking a spot with "pick manually" on toggles a manual pick;
    ROI shapes restrict (include) or exclude spots. "Sequence round" reveals the proposal from
    the section's own counts (simulation); in real use export it from the export dock.
    """

    def __init__(self, napari_viewer, parent=None) -> None:
        self._ready = False
        super().__init__(napari_viewer, parent)
        d, self.train_defaults = K.plugin_defaults()
        self.defaults = d
        lay = self._layout

        row = QHBoxLayout()
        self.prepare_btn = QPushButton("Prepare section")
        self.prepare_btn.setToolTip(K.tip("prepare"))
        self.encoder_combo = QComboBox()
        self.encoder_combo.setEditable(True)
        self.encoder_combo.addItems(list(ENCODERS))
        self.encoder_combo.setCurrentText(d.encoder)
        self.encoder_combo.setToolTip(K.tip("backbone"))
        row.addWidget(self.prepare_btn)
        row.addWidget(self.encoder_combo)
        lay.addLayout(row)
        rrow = QHBoxLayout()
        self.reference_btn = QPushButton("Single-cell reference…")
        self.reference_btn.setToolTip(K.tip("reference"))
        self.reference_label = QLabel("")
        self.reference_label.setWordWrap(True)
        rrow.addWidget(self.reference_btn)
        rrow.addWidget(self.reference_label, 1)
        lay.addLayout(rrow)
        crow = QHBoxLayout()
        self.celltype_combo = QComboBox()
        self.celltype_combo.setToolTip("The reference's obs column with cell types (the cell-type diversity "
                                       "reward and the cell-type maps use it); the most likely column first")
        crow.addWidget(QLabel("Cell types"))
        crow.addWidget(self.celltype_combo, 1)
        lay.addLayout(crow)

        box = QGroupBox("Budget")
        form = QFormLayout(box)
        brow = QHBoxLayout()
        self.budget_spin = QSpinBox()
        self.budget_spin.setRange(1, 1_000_000)
        self.budget_unit = QComboBox()
        self.budget_unit.addItems(["%", "spots"])
        value, unit = _parse_budget(d.budget)
        self.budget_unit.setCurrentText(unit)
        self.budget_spin.setValue(value)
        for w in (self.budget_spin, self.budget_unit):
            w.setToolTip(K.tip("budget"))
        brow.addWidget(self.budget_spin)
        brow.addWidget(self.budget_unit)
        form.addRow("Budget", brow)
        self.rounds_spin = QSpinBox()
        self.rounds_spin.setRange(1, 50)
        self.rounds_spin.setValue(int(d.rounds))
        self.rounds_spin.setToolTip(K.tip("rounds"))
        form.addRow("Rounds", self.rounds_spin)
        self.sampler_combo = QComboBox()
        for name in SAMPLERS:
            self.sampler_combo.addItem(SAMPLER_LABELS[name], name)
        self.sampler_combo.setCurrentIndex(max(self.sampler_combo.findData(d.sampler), 0))
        self.sampler_combo.setToolTip(K.tip("sampler"))
        form.addRow("Sampler", self.sampler_combo)
        lay.addWidget(box)

        wbox = QGroupBox("Reward weights")
        wform = QFormLayout(wbox)
        self.sliders = {}
        for key, label, val in (("w_sc", "Cell-state coverage", d.w_sc), ("w_type", "Cell-type diversity", d.w_type),
                                ("w_sp", "Spatial coverage", d.w_sp), ("w_unc", "Expected-error reduction", d.w_unc)):
            s = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            s.setRange(0.0, 5.0)
            s.setDecimals(2)
            s.setSingleStep(0.05)
            s.setValue(float(val))
            s.setToolTip(K.tip(key))
            wform.addRow(label, s)
            self.sliders[key] = s
        self.chart = K.make_canvas(self.viewer, height=1.9, freeze_layout=True)
        self.chart.setToolTip("Reward terms of the sequenced spots and those expected with the proposal "
                              "(cell states and types of unsequenced spots are predicted)")
        wform.addRow(self.chart)
        lay.addWidget(wbox)

        pbox = QGroupBox("Picks")
        pl = QVBoxLayout(pbox)
        self.pick_check = QCheckBox(f"Click spots to pick manually ({K.SHORTCUTS['toggle_pick']})")
        self.pick_check.setToolTip(K.tip("pick"))
        K.exclusive_click_mode(self.viewer, self.pick_check, "pick manually")
        pl.addWidget(self.pick_check)
        r2 = QHBoxLayout()
        self.roi_btn = QPushButton("Draw ROIs")
        self.roi_btn.setToolTip(K.tip("roi"))
        self.reselect_btn = QPushButton(f"Re-select ({K.SHORTCUTS['reselect']})")
        self.reselect_btn.setToolTip(K.tip("reselect"))
        r2.addWidget(self.roi_btn)
        r2.addWidget(self.reselect_btn)
        pl.addLayout(r2)
        r3 = QHBoxLayout()
        self.sequence_btn = QPushButton("Sequence round (simulate)")
        self.sequence_btn.setToolTip(K.tip("sequence"))
        self.reset_btn = QPushButton("Reset")
        self.reset_btn.setToolTip("Forget every pick and revealed count of this section")
        r3.addWidget(self.sequence_btn)
        r3.addWidget(self.reset_btn)
        pl.addLayout(r3)
        lay.addWidget(pbox)

        polbox = QGroupBox("Policy")
        polv = QVBoxLayout(polbox)
        pol = QHBoxLayout()
        self.load_policy_btn = QPushButton("Load…")
        self.save_policy_btn = QPushButton("Save…")
        self.pretrain_spin = QSpinBox()
        self.pretrain_spin.setRange(1, 10_000)
        self.pretrain_spin.setValue(20)
        self.pretrain_spin.setSuffix(" episodes")
        self.pretrain_btn = QPushButton("Pre-train")
        self.pretrain_btn.setToolTip(K.tip("pretrain"))
        self.cancel_pretrain_btn = QPushButton("Cancel")
        self.cancel_pretrain_btn.setToolTip("Stop pre-training at the next episode; the policy stays as it was")
        for w in (self.load_policy_btn, self.save_policy_btn, self.pretrain_spin, self.pretrain_btn,
                  self.cancel_pretrain_btn):
            pol.addWidget(w)
        polv.addLayout(pol)
        self.policy_label = QLabel("")
        self.policy_label.setWordWrap(True)
        self.policy_label.setToolTip(
            "The policy's proposal against the greedy reward maximiser's on this section, at these weights: "
            "the reward is the weighted total of the expected terms (the chart), counted as what this round "
            "adds. 'Weak' means more than 10% below greedy's.")
        self.use_greedy_btn = QPushButton("Use greedy instead")
        self.use_greedy_btn.setToolTip("Switch the sampler to the greedy reward maximiser (no training needed)")
        prow = QHBoxLayout()
        prow.addWidget(self.policy_label, 1)
        prow.addWidget(self.use_greedy_btn)
        polv.addLayout(prow)
        lay.addWidget(polbox)
        self.panel = W.WorkerPanel()  # progress, time left and Cancel of Prepare / Pre-train
        lay.addWidget(self.panel.widget)
        lay.addWidget(self.status)
        lay.addStretch(1)

        # debounced live re-selection and ROI updates
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.reselect)
        self._roi_timer = QTimer(self)
        self._roi_timer.setSingleShot(True)
        self._roi_timer.setInterval(150)
        self._roi_timer.timeout.connect(self.update_rois)
        self._check_timer = QTimer(self)
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(CHECK_DELAY_MS)
        self._check_timer.timeout.connect(self.run_policy_check)
        self._check_worker = None
        self._check_again = False
        self._token = None
        self.policy_check = None  # the PolicyCheck shown
        self._policy_note = ""  # the outcome of the last pre-training, shown until the selection changes
        for s in self.sliders.values():
            s.valueChanged.connect(self._schedule)
        self.budget_spin.valueChanged.connect(self._schedule)
        self.budget_unit.currentIndexChanged.connect(self._schedule)
        self.rounds_spin.valueChanged.connect(self._schedule)
        self.sampler_combo.currentIndexChanged.connect(self._schedule)
        self.prepare_btn.clicked.connect(self.prepare)
        self.reference_btn.clicked.connect(self._reference_dialog)
        self.celltype_combo.currentIndexChanged.connect(self._on_celltype_chosen)
        self.reselect_btn.clicked.connect(self.reselect)
        self.sequence_btn.clicked.connect(self.sequence_round)
        self.reset_btn.clicked.connect(self.reset)
        self.roi_btn.clicked.connect(self.draw_rois)
        self.load_policy_btn.clicked.connect(self._load_policy_dialog)
        self.save_policy_btn.clicked.connect(self._save_policy_dialog)
        self.pretrain_btn.clicked.connect(lambda: self.pretrain())
        self.cancel_pretrain_btn.clicked.connect(self.cancel_pretrain)
        self.use_greedy_btn.clicked.connect(self.use_greedy)
        self.worker = None
        self._roi_layers = []
        self.add_viewer_mouse("_on_mouse")
        self.bind_viewer_key(K.SHORTCUTS["toggle_pick"], "_key_toggle")
        self.bind_viewer_key(K.SHORTCUTS["reselect"], "_key_reselect")
        self._ready = True
        self.on_session_changed()

    # ------------------------------------------------------------------ binding
    def _bind(self, session) -> None:
        self._link(session.selection_changed, self._on_selection)
        self._link(session.selection_failed, self._on_selection_failed)
        self._link(session.terms_changed, self._on_terms)
        self._link(session.prepared, self._on_prepared)

    def on_session_changed(self) -> None:
        if not getattr(self, "_ready", False):
            return
        s = self.session
        self._apply_settings_to(s)
        self._update_celltype_combo()
        self._update_buttons()
        if s is not None and s.is_prepared:
            self._on_prepared()
            self._on_selection()
        elif s is not None:
            ref = (f"with a single-cell reference of {s.reference.n_obs} cells" if s.reference is not None
                   else "WITHOUT a single-cell reference (load one from the reference field)")
            self.set_status(f"{s.library}: {s.n} spots, {ref}. Press 'Prepare section'.")
        else:
            self.set_status("Open a section (File > Open Sample > SCR2-ST spot sampling).")

    def load_reference(self, path) -> None:
        """Use a single-cell reference (.h5ad with a cell-type column) for this section."""
        s = self.require_session()
        try:
            ref = _read_reference(path)
        except Exception as e:  # noqa: BLE001
            self._failed("Reading the reference", e)
            return
        # the new reference's best column, unless the user picks another; a fitted space is
        # dropped (Prepare refits it); the session says so with reference_changed
        s.set_reference(ref)
        self._update_celltype_combo()
        self._update_reference_label()
        self.set_status(f"Reference {Path(str(path)).name}: {ref.n_obs} cells. Press 'Prepare section'.")

    def _reference_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Single-cell reference", "", "AnnData (*.h5ad)")
        if path:
            self.load_reference(path)

    # ------------------------------------------------------------------ cell-type column
    def _update_celltype_combo(self) -> None:
        """List the reference's candidate cell-type columns; select the session's (or the best)
        and give it to the session."""
        s = self.session
        combo = self.celltype_combo
        combo.blockSignals(True)
        combo.clear()
        cols = _celltype_columns(s.reference) if s is not None and s.reference is not None else []
        current = None
        if cols:
            fitted = s.space.meta.get("celltype_key") if s.space is not None else None
            chosen = s.reference.uns.get("scr2st_reference", {}).get("celltype_key")
            current = next((c for c in (s.celltype_key, fitted, chosen) if c in cols), cols[0])
            combo.addItems(cols)
            combo.setCurrentText(current)
        combo.blockSignals(False)
        combo.setEnabled(bool(cols))
        if s is not None and current is not None:
            self._use_celltype_key(current)

    def set_celltype_column(self, column: str) -> None:
        """Choose the reference's cell-type column (as a user would in the combo)."""
        i = self.celltype_combo.findText(column)
        if i < 0:
            items = [self.celltype_combo.itemText(k) for k in range(self.celltype_combo.count())]
            raise ValueError(f"{column!r} is not a cell-type column of the reference; candidates: {items}")
        self.celltype_combo.setCurrentIndex(i)

    def _on_celltype_chosen(self, *_) -> None:
        key = self.celltype_combo.currentText()
        if self.session is None or not key:
            return
        if self._use_celltype_key(key):
            self._update_reference_label()
            self.set_status(f"Cell types from obs['{key}']: press 'Prepare section' to refit the reference space.")

    def _use_celltype_key(self, key: str) -> bool:
        """Give the session ``key``; forget a space fitted on another column. True if forgotten."""
        return self.session.set_celltype_key(key)

    def _update_reference_label(self) -> None:
        s = self.session
        if s is None:
            self.reference_label.setText("")
        elif s.space is not None:
            self.reference_label.setText(f"{s.space.n_types} cell types, {s.space.n_clusters} cell states")
        elif s.reference is not None:
            self.reference_label.setText(f"{s.reference.n_obs} cells (not fitted yet)")
        else:
            self.reference_label.setText("none: only histology samplers")

    def _busy(self) -> bool:
        """A prepare, pre-train or sequencing worker runs (a synchronous one is over at once)."""
        return W.active(self.worker)

    def _update_buttons(self) -> None:
        self._update_reference_label()
        s = self.session
        busy = self._busy()
        ready = s is not None and s.is_prepared
        self.prepare_btn.setEnabled(s is not None and not busy)
        self.reference_btn.setEnabled(s is not None and not busy)
        self.celltype_combo.setEnabled(s is not None and s.reference is not None and not busy
                                       and self.celltype_combo.count() > 0)
        for w in (self.reselect_btn, self.reset_btn, self.roi_btn):
            w.setEnabled(ready and not busy)
        self.sequence_btn.setEnabled(ready and not busy and s.oracle is not None)
        has_policy = ready and s.policy is not None
        self.save_policy_btn.setEnabled(has_policy and not busy)
        self.load_policy_btn.setEnabled(ready and s.space is not None and not busy)
        self.pretrain_btn.setEnabled(has_policy and s.has_counts and not busy)
        self.cancel_pretrain_btn.setEnabled(self._token is not None)  # set while pre-training
        self.use_greedy_btn.setEnabled(ready and s.space is not None and s.sampling.sampler != "greedy")

    # ------------------------------------------------------------------ settings
    def budget_text(self) -> str:
        v = self.budget_spin.value()
        return f"{v}%" if self.budget_unit.currentText() == "%" else str(v)

    def _collect(self) -> dict:
        return {
            "budget": self.budget_text(),
            "rounds": int(self.rounds_spin.value()),
            "sampler": self.sampler_combo.currentData(),
            "w_sc": float(self.sliders["w_sc"].value()),
            "w_type": float(self.sliders["w_type"].value()),
            "w_sp": float(self.sliders["w_sp"].value()),
            "w_unc": float(self.sliders["w_unc"].value()),
        }

    def _apply_settings_to(self, s) -> None:
        if s is None:
            return
        if s.is_prepared:  # the session keeps its own settings: show them
            st = s.sampling
            widgets = [self.budget_spin, self.budget_unit, self.rounds_spin, self.sampler_combo, *self.sliders.values()]
            for w in widgets:
                w.blockSignals(True)
            v, u = _parse_budget(st.budget)
            self.budget_spin.setValue(v)
            self.budget_unit.setCurrentText(u)
            self.rounds_spin.setValue(st.rounds)
            i = self.sampler_combo.findData(st.sampler)
            if i >= 0:
                self.sampler_combo.setCurrentIndex(i)
            for k in ("w_sc", "w_type", "w_sp", "w_unc"):
                self.sliders[k].setValue(getattr(st, k))
            for w in widgets:
                w.blockSignals(False)
        else:
            s.update_settings(**self._collect())

    def set_weights(self, w_sc: float | None = None, w_type: float | None = None, w_sp: float | None = None,
                    w_unc: float | None = None) -> None:
        """Move the sliders (as a user would); the re-selection is debounced."""
        for k, v in (("w_sc", w_sc), ("w_type", w_type), ("w_sp", w_sp), ("w_unc", w_unc)):
            if v is not None:
                self.sliders[k].setValue(float(v))

    def _schedule(self, *_) -> None:
        self._timer.start()

    # ------------------------------------------------------------------ actions
    def prepare(self) -> None:
        try:
            s = self.require_session()
        except RuntimeError as e:
            W.notify_error(str(e))
            return
        s.update_settings(**self._collect())
        if self.celltype_combo.count():
            self._use_celltype_key(self.celltype_combo.currentText())
        encoder = self.encoder_combo.currentText().strip() or DEFAULT_ENCODER
        policy_path = self.defaults.policy_path or None
        device = self.train_defaults.device
        self.set_status("preparing…")
        def _prepare():
            yield from s.iter_prepare(encoder=encoder, policy=policy_path, device=device)
            V.prebuild_roi_layers(s)  # the GUI thread only adds them

        self.worker = W.start_worker(
            _prepare,
            desc="SCR2-ST: preparing section",
            on_done=lambda _: self._prepared_done(s),
            on_error=lambda e: self._failed("Preparing the section", e),
            on_aborted=lambda: self.set_status("Preparing cancelled; the section is unchanged "
                                               "(press 'Prepare section' to start again)."),
            on_finished=self._finished,
            panel=self.panel, status=self.set_status,
        )
        self._update_buttons()

    def _prepared_done(self, s) -> None:
        try:
            s.finish_prepare()
        except Exception as e:  # noqa: BLE001
            self._failed("The first selection", e)
        _heap.freeze_later(self.viewer, again=True)  # the prepared section lives on: out of the collections

    def _finished(self) -> None:
        self.worker = None
        self._update_buttons()

    def _failed(self, what: str, e: BaseException) -> None:
        W.notify_error(f"{what} failed: {e}")
        self.set_status(f"{what} failed: {e}")

    def reselect(self) -> None:
        """Apply the dock's settings and recompute the proposal (live path)."""
        s = self.session
        if s is None or not s.is_prepared:
            return
        s.update_settings(**self._collect())
        try:
            s.reselect()  # in napari: in a worker, the newest request wins (see _reselect.py)
        except Exception as e:  # noqa: BLE001 - e.g. a budget larger than the pool
            self._on_selection_failed(str(e))

    def _on_selection_failed(self, msg: str) -> None:
        W.notify_error(f"Selection failed: {msg}")
        self.set_status(f"Selection failed: {msg}")

    def sequence_round(self) -> None:
        """Send this round's picks for (simulated) sequencing: the proposal, the revealed counts
        and the round's reward are computed in a worker; the main thread only takes the result
        (refused, with a message, if the picks changed meanwhile)."""
        s = self.session
        if s is None or self._busy():
            return
        self.set_status("sequencing this round (simulated from the section's counts)…")

        def _sequence():
            yield Progress(0, 1, "revealing the counts of this round's spots")
            staged = s.stage_sequence_simulated()
            yield Progress(1, 1, f"{len(staged.revealed)} spots revealed")
            return staged

        self.worker = W.start_worker(
            _sequence,
            desc="SCR2-ST: sequencing (simulated)",
            on_done=lambda staged: self._sequenced(s, staged),
            on_error=lambda e: self._failed("Sequencing (simulated)", e),
            on_aborted=lambda: self.set_status("Sequencing cancelled; the selection is unchanged."),
            on_finished=self._finished,
            panel=self.panel, status=self.set_status,
        )
        self._update_buttons()

    def _sequenced(self, s, staged) -> None:
        try:
            idx = s.apply_sequenced(staged)
        except Exception as e:  # noqa: BLE001 - e.g. picks changed while the worker ran
            self._failed("Sequencing (simulated)", e)
            return
        W.notify_info(f"{len(idx)} spots sequenced (simulated from this section's counts)")

    def reset(self) -> None:
        if self.session is not None:
            self.session.reset_selection()

    def toggle_pick(self, index: int) -> str:
        s = self.session
        if s is None:
            return ""
        try:
            msg = s.toggle_manual(index)
        except Exception as e:  # noqa: BLE001
            msg = f"manual pick failed: {e}"
            W.notify_error(msg)
        self.viewer.status = msg
        return msg

    def toggle_pick_at(self, position) -> str | None:
        s = self.session
        if s is None:
            return None
        i = V.nearest_spot(s, position)
        if i is None:
            return None
        return self.toggle_pick(i)

    def _on_mouse(self, viewer, event):
        if not self.pick_check.isChecked() or self.session is None or not self.session.is_prepared:
            return
        active = viewer.layers.selection.active
        if active is not None and getattr(active, "mode", "pan_zoom") not in ("pan_zoom", "select", "transform"):
            return  # the user is drawing or editing a layer
        pos = event.position
        if (yield from V.released_without_drag(event)):
            self.toggle_pick_at(pos)

    def _key_toggle(self, viewer):
        """SCR2-ST: add or remove a manual pick at the spot under the mouse"""
        self.toggle_pick_at(viewer.cursor.position)

    def _key_reselect(self, viewer):  # noqa: ARG002 - napari calls key bindings with the viewer
        """SCR2-ST: run the sampler again"""
        self.reselect()

    # ------------------------------------------------------------------ ROIs
    def draw_rois(self) -> None:
        s = self.session
        if s is None:
            return
        layers = V.ensure_roi_layers(self.viewer, s)
        self._watch_rois(layers)
        inc = layers["include"]
        self.viewer.layers.selection.active = inc
        inc.mode = "add_polygon"
        self.viewer.status = "Draw include (green) or exclude (red) regions; select the other ROI layer to switch."

    def _watch_rois(self, layers) -> None:
        for ly in layers.values():
            if ly not in self._roi_layers:
                ly.events.data.connect(self._roi_changed)
                self._roi_layers.append(ly)

    def _roi_changed(self, *_) -> None:
        self._roi_timer.start()

    def update_rois(self) -> None:
        s = self.session
        if s is None or not s.is_prepared:
            return
        inc, exc = V.roi_masks(self.viewer, s)
        notes = s.set_rois(inc, exc)
        for n in notes:
            W.notify_info(n)
        self.reselect()

    # ------------------------------------------------------------------ policy
    def pretrain(self, episodes: int | None = None) -> None:
        """Pre-train (a copy of) the policy on this section in a worker, with progress and cancel;
        the trained copy replaces the policy when done (a cancel keeps the policy as it was)."""
        s = self.session
        if s is None or s.policy is None or (self.worker is not None and getattr(self.worker, "is_running", False)):
            return
        from ..progress import CancelToken

        token = CancelToken()
        n = int(episodes or self.pretrain_spin.value())
        self._token = token
        self._pretrain_t0 = time.perf_counter()
        self._pretrain_done = 0
        self.policy_label.setText(f"Pre-training the policy: 0 of {n} episodes…")
        self._update_buttons()  # Cancel on
        self.worker = W.start_worker(
            lambda: s.iter_pretrain(n, token=token, copy=True),
            desc="SCR2-ST: pre-training the policy",
            on_progress=self._pretrain_progress,
            on_done=lambda pol: self._pretrained(s, pol, n),
            on_error=lambda e: self._pretrain_failed(e, n),
            on_aborted=lambda: self._pretrain_failed(None, n),
            on_finished=self._pretrain_finished,
            token=token, panel=self.panel,
        )
        self._update_buttons()

    def _pretrain_progress(self, ev) -> None:
        self._pretrain_done = int(ev.step)
        left = ""
        if ev.step and ev.total:
            per = (time.perf_counter() - self._pretrain_t0) / ev.step
            left = f", about {_duration(per * (ev.total - ev.step))} left"
        phase = " (imitating greedy)" if ev.message.startswith("imitation") else " (reinforcement)"
        self.policy_label.setText(f"Pre-training the policy: {ev.step} of {ev.total} episodes{phase}{left}")

    def _pretrained(self, s, pol, n: int) -> None:
        if pol is None:  # cancelled
            self._pretrain_failed(None, n)
            return
        if s is not self.session:
            return
        s.set_policy(pol, f"pre-trained here ({len(pol.history)} episodes)")
        self._policy_note = f"Pre-trained: {len(pol.history)} episodes."
        W.notify_info(f"policy pre-trained ({len(pol.history)} episodes)")

    def _pretrain_failed(self, e: BaseException | None, n: int) -> None:
        from ..progress import Cancelled

        if e is None or isinstance(e, Cancelled):
            msg = (f"Pre-training cancelled after {self._pretrain_done} of {n} episodes: "
                   "the policy is as it was.")
            self._policy_note = msg
            self.viewer.status = msg
            return
        self._failed("Pre-training the policy", e)
        self._policy_note = f"Pre-training failed: {e}"

    def _pretrain_finished(self) -> None:
        self._token = None
        self._finished()
        self._schedule_check()

    def cancel_pretrain(self) -> None:
        """Stop pre-training at the next episode (the policy is left as it was)."""
        if self._token is not None:
            self._token.cancel()
            self.policy_label.setText("Cancelling pre-training at the end of this episode…")

    def use_greedy(self) -> None:
        """Switch the sampler to the greedy reward maximiser."""
        i = self.sampler_combo.findData("greedy")
        if i >= 0:
            self.sampler_combo.setCurrentIndex(i)
            self.reselect()

    # ------------------------------------------------------------------ policy check
    def _schedule_check(self) -> None:
        """Show the policy-vs-greedy check for the current state (cached), or compute it soon."""
        s = self.session
        if s is None or not s.is_prepared:
            return
        if s.sampling.sampler != "scrl" or s.policy is None or s.space is None:
            self.policy_check = None
            if self._token is None:
                self.policy_label.setText("" if s.space is None else
                                          "The policy is checked against greedy while it is the sampler.")
            return
        c = s.cached_policy_check()
        if c is not None:
            self._show_check(c)
            return
        if self._token is None and self.policy_check is not None:
            self.policy_label.setText(f"{self.policy_check.message} (re-checking at the new weights…)")
        if W.sync_workers():
            self.run_policy_check()
        else:
            self._check_timer.start()

    def run_policy_check(self) -> None:
        """Compare the policy's proposal with greedy's (in a worker; the result is cached)."""
        s = self.session
        if s is None or not s.is_prepared or s.policy is None or s.space is None:
            return
        if self._check_worker is not None and getattr(self._check_worker, "is_running", False):
            self._check_again = True
            return
        self._check_again = False
        self._check_worker = W.start_worker(
            s.iter_check_policy, desc="SCR2-ST: policy check", quiet=True,
            on_done=lambda c: self._check_done(s, c),
            on_error=lambda e: self._check_failed(s, e),
            on_finished=self._check_finished,
        )

    def _check_done(self, s, c) -> None:
        if s is self.session and c is not None and s.cached_policy_check() is c:
            self._show_check(c)
        else:
            self._check_again = True  # the state or weights moved on meanwhile

    def _check_failed(self, s, e: BaseException) -> None:
        if s is self.session and self._token is None:
            self.policy_label.setText(f"Policy check failed: {e}")

    def _check_finished(self) -> None:
        self._check_worker = None
        s = self.session
        if self._check_again and s is not None and s.cached_policy_check() is None:
            self._check_again = False
            self._schedule_check()

    def _show_check(self, c) -> None:
        self.policy_check = c
        if self._token is not None:  # pre-training: its progress has the label
            return
        self.policy_label.setText(f"{self._policy_note}\n{c.message}" if self._policy_note else c.message)
        warn = c.verdict in ("untrained", "weak")
        self.policy_label.setStyleSheet("color: #ffa500;" if warn else "")

    def load_policy(self, path) -> None:
        s = self.require_session()
        try:
            pol = _load_policy(path)
            s.set_policy(pol, f"loaded from {path}")
        except Exception as e:  # noqa: BLE001
            self._failed("Loading the policy", e)

    def save_policy(self, path) -> None:
        s = self.require_session()
        try:
            s.policy.save(path)
            W.notify_info(f"policy saved to {path}")
        except Exception as e:  # noqa: BLE001
            self._failed("Saving the policy", e)

    def _load_policy_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load SCRL policy", "", "Policy (*.pt)")
        if path:
            self.load_policy(path)

    def _save_policy_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save SCRL policy", "scrl_policy.pt", "Policy (*.pt)")
        if path:
            self.save_policy(path)

    # ------------------------------------------------------------------ session events
    def _on_prepared(self) -> None:
        if self.session is None:
            return
        self._watch_present_rois()
        self._update_buttons()

    def _refresh_layers(self, *args) -> None:
        super()._refresh_layers(*args)
        if self._life["ok"]:  # the ROI layers come in turns of their own after a prepare
            self._watch_present_rois()

    def _watch_present_rois(self) -> None:
        s = self.session
        if s is None or getattr(self, "_roi_layers", None) is None:  # (during __init__)
            return
        names = {k: L.layer_name(s.library, k) for k in ("include", "exclude")}
        self._watch_rois({k: self.viewer.layers[n] for k, n in names.items() if n in self.viewer.layers})

    def _on_selection(self) -> None:
        s = self.session
        if s is None or s.preview is None:
            return
        p = s.preview
        self._policy_note = ""
        lines = [p.message] if p.message else []
        if s.pool_note:
            lines.append(s.pool_note)
        lines += self.budget_lines()
        lines += [f"{int(s.committed.measured.sum())} sequenced",
                  f"Policy: {s.policy_source}" if s.sampling.sampler == "scrl" else f"Sampler: {s.sampling.sampler}",
                  f"Re-selection took {p.seconds * 1000:.0f} ms"]
        self.set_status("\n".join(lines))
        self._draw_chart(p)
        self._update_buttons()
        self._schedule_check()

    def _on_terms(self) -> None:
        """The expected reward terms of the shown proposal arrived (computed after it was drawn)."""
        s = self.session
        if s is not None and s.preview is not None:
            self._draw_chart(s.preview)

    def budget_lines(self) -> list[str]:
        """``Round 1 of 2: 48 spots = 5 manual + 43 by the policy`` and where the budget goes."""
        s = self.session
        p = s.preview
        rounds = s.sampling.rounds
        if s.rounds_done or s.waiting_for_counts:
            # the last committed round (counted from 1): the one sent to the lab, or the last one
            rnd = min(s.current_round, rounds)
            return [f"Round {rnd} of {rounds}; budget {p.total_budget} spots"]
        n_manual, n_new = len(s.manual), len(p.proposal)
        who = _PICKED_BY.get(s.sampling.sampler, f"the {s.sampling.sampler} sampler")
        earlier = int((s.committed.selected & ~s.pool.excluded).sum())
        later = p.total_budget - earlier - n_manual - n_new
        b = str(s.sampling.budget).strip()
        of = f" ({b} of {s.pool.n_in_pool} selectable spots)" if b.endswith("%") else ""
        parts = [f"{earlier} in earlier rounds"] if earlier else []
        parts.append(f"{n_manual + n_new} this round")
        if later:
            parts.append(f"{later} for the later rounds")
        return [f"Round {s.current_round + 1} of {rounds}: {n_manual + n_new} spots = {n_manual} manual + {n_new} by {who}",
                f"Budget {p.total_budget} spots{of}: {', '.join(parts)}"]

    def _draw_chart(self, p) -> None:
        """Bars of the reward terms; built once, then only their heights and the values written
        over the expected bars change (live path): the bars and values are animated artists
        blitted over a cached background (no layout, axes or text redraw per move)."""
        ax = self.chart.ax
        bars = getattr(self, "_bars", None)
        if bars is None:
            ax.clear()
            c = self.chart.colors()
            x = np.arange(4)
            accent = c["accent"] if c["accent"] not in ("#000000", "#000") else "#00bfff"
            b1 = ax.bar(x - 0.2, [0] * 4, 0.4, label="sequenced", color="#8a8f98")
            b2 = ax.bar(x + 0.2, [0] * 4, 0.4, label="with proposal (expected)", color=accent)
            ax.set_xticks(x, ["cell states", "cell types", "spatial", "exp. error"])
            ax.set_ylim(0, 1.15)
            ax.set_ylabel("reward term")
            ax.legend(fontsize=6, loc="upper left", frameon=False)
            labels = [ax.text(xi + 0.2, 0, "", ha="center", va="bottom", fontsize=6, color=c["fg"]) for xi in x]
            for a in (*b1, *b2, *labels):
                a.set_animated(True)
            self.chart.restyle(draw=False)
            self.chart.relayout()  # new ticks and labels: lay out again on the next full draw
            bars = self._bars = (list(b1), list(b2), labels)
            self._chart_bg = None
            self.chart.mpl_connect("draw_event", self._on_chart_draw)
        for rect, v in zip(bars[0], p.terms_measured, strict=True):
            rect.set_height(float(v))
        if p.terms_ready:  # else the expected bars keep their values until the terms arrive
            for rect, v, label in zip(bars[1], p.terms_expected, bars[2], strict=True):
                rect.set_height(float(v))
                label.set_y(float(v))
                label.set_text(f"{float(v):.2f}")
        bg = getattr(self, "_chart_bg", None)
        canvas = self.chart
        if bg is None or not canvas.isVisible() or bg[1] != canvas.figure.bbox.bounds:
            canvas.draw_idle()  # the first (or a resized) draw: full, then cached by _on_chart_draw
            return
        canvas.restore_region(bg[0])
        self._draw_bars()
        canvas.update()  # a deferred paint of the buffer (``blit`` would repaint the window now)

    def _draw_bars(self) -> None:
        ax = self.chart.ax
        for a in (*self._bars[0], *self._bars[1], *self._bars[2]):
            ax.draw_artist(a)

    def _on_chart_draw(self, _event=None) -> None:
        """After every full draw (first show, resize, theme): cache the background without the
        bars, then paint the bars on it."""
        canvas = self.chart
        self._chart_bg = (canvas.copy_from_bbox(canvas.figure.bbox), canvas.figure.bbox.bounds)
        self._draw_bars()

    def chart_values(self) -> dict[str, tuple[float, float, float]]:
        """What the chart shows now: ``{"sequenced": (...), "expected": (...)}`` (bar heights)."""
        bars = getattr(self, "_bars", None)
        if bars is None:
            return {}
        return {"sequenced": tuple(float(r.get_height()) for r in bars[0]),
                "expected": tuple(float(r.get_height()) for r in bars[1])}


def _duration(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def _parse_budget(text: str) -> tuple[int, str]:
    t = str(text).strip()
    if t.endswith("%"):
        try:
            return max(1, int(round(float(t[:-1])))), "%"
        except ValueError:
            return 15, "%"
    try:
        v = float(t)
    except ValueError:
        return 15, "%"
    if 0 < v < 1:
        return max(1, int(round(v * 100))), "%"
    return max(1, int(v)), "spots"


def _celltype_columns(reference) -> list[str]:
    from ..reference import list_celltype_columns

    return list_celltype_columns(reference)


def _read_reference(path):
    from ..reference import read_reference

    return read_reference(path)


def _load_policy(path):
    from ..session import load_policy

    return load_policy(path)
