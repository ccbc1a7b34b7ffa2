"""Training dock: train SCR2Net on the sequenced spots in a thread worker, with a live loss curve."""

from __future__ import annotations

import math
import time

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QPushButton, QSpinBox

from ..config import DEFAULT_ENCODER, ENCODERS
from ..device import pick_device
from ..progress import CancelToken, Progress
from . import _dock_kit as K
from . import _heap
from . import _viewer_layers as V
from . import _workers as W
from ._section_dock import SectionDock

DEVICES = ("auto", "cpu", "gpu")
MODES = ("full", "regression", "retrieval")
REDRAW_S = 0.25  # the loss curve is redrawn at most 4 times per second
AXES_DEBOUNCE_MS = 300  # the chart's axes follow the epochs box once it rests this long
LOSS_YLIM = (0.0, 1.3)  # the chart's empty axes: relative loss (left) and validation PCC (right)
VAL_YLIM = (-0.2, 1.0)


def _warm_up():
    """Import the training code once, in the background, when the dock opens: importing torch's
    optimiser stack (``torch._dynamo``) holds the GIL for ~0.3 s, which would otherwise stall
    the viewer at the start of the first training."""
    yield Progress(0, 1, "importing")
    from ..session import warm_up_training

    warm_up_training()
    yield Progress(1, 1, "ready")


class TrainingWidget(SectionDock):
    """Backbone, epochs, device; start and cancel; progress in the activity dock; loss curve.

    Training runs in a napari ``thread_worker`` on the core's generator (``SCR2ST_SYNC_WORKERS=1``
    runs it synchronously, for tests). Cancel sets the core's cancel token and quits the worker
    at its next step. When training ends the predictions appear as layers.
    """

    def __init__(self, napari_viewer, parent=None) -> None:
        self._ready = False
        super().__init__(napari_viewer, parent)
        _, d = K.plugin_defaults()
        box = QGroupBox("SCR2Net")
        form = QFormLayout(box)
        self.backbone_combo = QComboBox()
        self.backbone_combo.setEditable(True)
        self.backbone_combo.addItems(list(ENCODERS))
        self.backbone_combo.setCurrentText(d.backbone)
        self.backbone_combo.setToolTip(K.tip("backbone"))
        form.addRow("Backbone", self.backbone_combo)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.setValue(int(d.epochs))
        self.epochs_spin.setToolTip(K.tip("epochs"))
        form.addRow("Epochs", self.epochs_spin)
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.device_combo.setCurrentText(d.device if d.device in DEVICES else "auto")
        self.device_combo.setToolTip(K.tip("device"))
        form.addRow("Device", self.device_combo)
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(list(MODES))
        self.mode_combo.setToolTip("full: regression + retrieval soft labels (SCR2Net); regression: ST-Net-like; "
                                   "retrieval: BLEEP-like")
        form.addRow("Model", self.mode_combo)
        row = QHBoxLayout()
        self.train_btn = QPushButton("Train")
        self.train_btn.setToolTip(K.tip("train"))
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip(K.tip("cancel"))
        self.cancel_btn.setEnabled(False)
        row.addWidget(self.train_btn)
        row.addWidget(self.cancel_btn)
        form.addRow(row)
        self._layout.addWidget(box)
        self.panel = W.WorkerPanel()
        self.panel.cancel_btn.hide()  # the dock's own Cancel button stops the run
        self._layout.addWidget(self.panel.widget)
        self.canvas = K.make_canvas(self.viewer, height=3.0, freeze_layout=True)  # 180 px: the axis labels fit
        self.canvas.setToolTip("Training loss per step and validation PCC per epoch")
        self._layout.addWidget(self.canvas)
        self._layout.addWidget(self.status)
        self._layout.addStretch(1)
        self.train_btn.clicked.connect(self.start)
        self.cancel_btn.clicked.connect(self.cancel)
        self.worker = None
        self.token: CancelToken | None = None
        self._draw_cid = None
        self._total_steps = 0
        self.losses: list[float] = []
        self._loss_x: list[float] = []
        self._epochs = 1
        self.val: list[tuple[int, float]] = []
        self._last_draw = 0.0
        self.extra_config: dict = {}
        self._backbone_user_set = False
        self._last_progress: Progress | None = None
        self._loss: float | None = None
        self._final = True  # no run in progress: progress events change nothing
        self.backbone_combo.currentTextChanged.connect(self._backbone_edited)
        # the chart's axes for the epochs shown: drawn with the dock and again (debounced) when the
        # epochs change, so that the Train click itself needs no full matplotlib draw
        self._setup_axes(int(self.epochs_spin.value()), draw=False)
        self._axes_timer = QTimer(self)
        self._axes_timer.setSingleShot(True)
        self._axes_timer.setInterval(AXES_DEBOUNCE_MS)
        self._axes_timer.timeout.connect(self._epochs_settled)
        self.epochs_spin.valueChanged.connect(lambda *_: self._axes_timer.start())
        self._ready = True
        self.on_session_changed()
        self._warm = W.start_worker(_warm_up, desc="SCR2-ST: loading the model code", quiet=True)

    # ------------------------------------------------------------------ binding
    def _bind(self, session) -> None:
        self._link(session.selection_changed, self._refresh_status)
        self._link(session.prepared, self._follow_prepared_encoder)

    def _backbone_edited(self, *_) -> None:
        if not getattr(self, "_setting_backbone", False):
            self._backbone_user_set = True

    def _follow_prepared_encoder(self) -> None:
        """Train on the embedding the section was prepared with (no second embedding run),
        unless the user chose another backbone in this dock."""
        s = self.session
        model = getattr(s, "vision_model", None) if s is not None else None
        if not model or self._backbone_user_set or self.backbone_combo.currentText() == model:
            return
        self._setting_backbone = True
        try:
            self.backbone_combo.setCurrentText(str(model))
        finally:
            self._setting_backbone = False

    def on_session_changed(self) -> None:
        if not getattr(self, "_ready", False):
            return
        self._follow_prepared_encoder()
        self._refresh_status()

    def _refresh_status(self) -> None:
        if self.is_running:
            return
        s = self.session
        if s is None:
            self.set_status("Open a section first.")
        elif not s.is_prepared:
            self.set_status("Prepare the section in the sampling dock first.")
        else:
            n = int(s.committed.measured.sum())
            model = f"; current model: {s.predictor.config.mode}, {len(s.predictor.genes)} genes" if s.predictor else ""
            emb = f" Embedding: {s.vision_model} (as prepared)." if s.vision_model else ""
            self.set_status(f"{n} sequenced spots to train on{model}.{emb}")
        self.train_btn.setEnabled(s is not None and s.is_prepared and not self.is_running)

    @property
    def is_running(self) -> bool:
        return self.worker is not None and bool(getattr(self.worker, "is_running", False))

    # ------------------------------------------------------------------ actions
    def start(self) -> None:
        """Start training (in a worker); returns immediately."""
        try:
            s = self.require_session()
            n_seq = _check_trainable(s)
        except Exception as e:  # noqa: BLE001
            W.notify_error(f"Cannot train: {e}")
            self.set_status(f"Cannot train: {e}")
            return
        s.training.backbone = self.backbone_combo.currentText().strip() or DEFAULT_ENCODER
        s.training.epochs = int(self.epochs_spin.value())
        s.training.device = self.device_combo.currentText()
        s.training.mode = self.mode_combo.currentText()
        for k, v in self.extra_config.items():
            setattr(s.training, k, v)
        self.token = CancelToken()
        token = self.token
        self.losses, self.val, self._loss_x = [], [], []
        self._total_steps = 0
        self._epochs = int(s.training.epochs)
        self._axes_timer.stop()
        if self._axes_ready(self._epochs):  # the empty axes are on screen: only the lines change
            self._artists[0].set_data([], [])
            self._artists[1].set_data([], [])
            self._blit()
        else:
            self._setup_axes(self._epochs)
        # nothing in the viewer changes until training and prediction finish (cancel keeps it all)
        self._t0 = time.perf_counter()
        self._last_progress, self._loss, self._final = None, None, False
        self.set_status(f"training on {n_seq} sequenced spots…")
        self.train_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        snap: dict = {}

        def _train():  # the snapshot (counts of the sequenced spots, cell types) in the worker too
            yield Progress(0, 0, f"taking the {n_seq} sequenced spots")
            adata, mask = s.training_snapshot()
            snap["adata"] = adata
            res = yield from s.iter_train(adata, mask, token=token, threads=_gui_training_threads())
            if res is not None and res[1] is not None and not token.cancelled:
                yield Progress(0, 0, "building the expression map")
                V.prebuild_expression_layer(s, res[1])  # the GUI thread only adds it
            return res

        self.worker = W.start_worker(
            _train,
            desc="SCR2-ST: training SCR2Net",
            on_progress=lambda ev: self._on_progress(ev),
            on_done=lambda res: self._on_done(s, snap.get("adata"), res),
            on_error=self._on_error,
            on_finished=self._on_finished,
            on_aborted=self._on_aborted,
            token=token,
            panel=self.panel,
            status=self._progress_status,
        )

    def cancel(self) -> None:
        """Cancel at the next step: the core's token and the worker's quit."""
        if self._final:
            return
        if self.token is not None:
            self.token.cancel()
        if self.worker is not None and hasattr(self.worker, "quit"):
            self.worker.quit()
        self.set_status("cancelling…")

    def _progress_status(self, text: str) -> None:
        if self._final or (self.token is not None and self.token.cancelled):
            return
        loss = f" · loss {self._loss:.3f}" if self._loss is not None and math.isfinite(self._loss) else ""
        self.set_status(f"{text}{loss}")

    def _where(self) -> str:
        """Where a run stopped, from its last progress event (``epoch 3/30``, ``prediction``)."""
        ev = self._last_progress
        if ev is None:
            return "before the first step"
        msg = ev.message.replace(" done", "")
        return f"at {msg}" if msg else f"at step {ev.step}/{ev.total}"

    def _on_progress(self, ev: Progress) -> None:
        if self._final:
            return
        self._last_progress = ev
        if "loss" in ev.metrics:
            self._loss = float(ev.metrics["loss"])
        is_train = "epoch" in ev.message and ev.total > 0
        if is_train:
            self._total_steps = int(ev.total)
        per_epoch = self._total_steps / max(1, self._epochs) if self._total_steps else 1.0
        loss = ev.metrics.get("loss")
        if is_train and loss is not None and "done" not in ev.message and math.isfinite(loss):
            self.losses.append(float(loss))
            self._loss_x.append(ev.step / per_epoch)
        vp = ev.metrics.get("val_pcc")
        if is_train and "done" in ev.message and vp is not None and math.isfinite(vp):
            self.val.append((float(ev.metrics.get("epoch", ev.step / per_epoch)), float(vp)))
        now = time.perf_counter()
        if now - self._last_draw >= REDRAW_S:
            self._last_draw = now
            self.draw_curve()

    def _epochs_settled(self) -> None:
        if not self.is_running and not self._axes_ready(int(self.epochs_spin.value())):
            self.losses, self.val, self._loss_x = [], [], []
            self._setup_axes(int(self.epochs_spin.value()))

    def _axes_ready(self, epochs: int) -> bool:
        """The chart shows (and has cached as its background) the empty axes of a run of
        ``epochs``: a new run only clears the lines."""
        a = getattr(self, "_artists", None)
        if a is None or a[0].axes is None or getattr(self, "_background", None) is None:
            return False
        ax = self.canvas.ax
        return (tuple(ax.get_xlim()) == (0.0, float(max(1, epochs))) and tuple(ax.get_ylim()) == LOSS_YLIM
                and tuple(a[2].get_ylim()) == VAL_YLIM)

    def _setup_axes(self, epochs: int, *, draw: bool = True) -> None:
        """Axes of the curve for a run of ``epochs`` (one full matplotlib draw, in the GUI thread;
        ``draw=False``: at the canvas's next paint); during training only the lines are blitted."""
        canvas = self.canvas
        ax = canvas.ax
        if getattr(self, "_artists", None) is None or self._artists[0].axes is None:
            ax.clear()
            for other in list(canvas.figure.axes[1:]):
                other.remove()
            (loss_line,) = ax.plot([], [], color="#00bfff", lw=1.0, label="loss", animated=True)
            ax.set_xlabel("epoch")
            ax.set_ylabel("loss / first-step loss")
            ax2 = ax.twinx()
            (val_line,) = ax2.plot([], [], "o-", color="#ffb000", ms=3, lw=1.0, label="val PCC", animated=True)
            ax2.set_ylabel("validation PCC")
            self._artists = (loss_line, val_line, ax2)
            if getattr(self, "_draw_cid", None) is None:
                # matplotlib's blitting pattern: after every full draw (also Qt repaints on
                # resize/show) cache the background and paint the animated lines on it
                self._draw_cid = canvas.mpl_connect("draw_event", self._on_mpl_draw)
        loss_line, val_line, ax2 = self._artists
        loss_line.set_data([], [])
        val_line.set_data([], [])
        ax.set_xlim(0, max(1, epochs))
        ax.set_ylim(*LOSS_YLIM)
        ax2.set_ylim(*VAL_YLIM)
        canvas.restyle(draw=False)  # no deferred redraw: it would land in the middle of training
        canvas.relayout()  # new limits, new tick labels: lay the axes out again on this draw
        self._background = None  # cached again by the draw (_on_mpl_draw)
        if draw:
            self._full_draw()

    def _full_draw(self) -> None:
        self.canvas.draw()  # -> _on_mpl_draw

    def _on_mpl_draw(self, event=None) -> None:  # noqa: ARG002 - matplotlib's draw_event callback
        if getattr(self, "_artists", None) is None:
            return
        canvas = self.canvas
        self._background = canvas.copy_from_bbox(canvas.figure.bbox)
        loss_line, val_line, ax2 = self._artists
        canvas.ax.draw_artist(loss_line)
        ax2.draw_artist(val_line)

    def _blit(self) -> None:
        canvas = self.canvas
        loss_line, val_line, ax2 = self._artists
        canvas.restore_region(self._background)
        canvas.ax.draw_artist(loss_line)
        ax2.draw_artist(val_line)
        canvas.update()  # a deferred paint of the buffer (``blit`` repaints the whole window at once)

    def draw_curve(self) -> None:
        """Loss per step (relative to the first step) and validation PCC per epoch, against
        epochs. Limits only grow when a value leaves them (then one full redraw)."""
        if getattr(self, "_artists", None) is None or getattr(self, "_background", None) is None:
            self._setup_axes(int(self.epochs_spin.value()))
        loss_line, val_line, ax2 = self._artists
        ax = self.canvas.ax
        full = False
        if self.losses:
            x = np.asarray(self._loss_x, dtype=float)
            y = np.asarray(self.losses, dtype=float) / max(self.losses[0], 1e-12)
            loss_line.set_data(x, y)
            if y.max() > ax.get_ylim()[1]:
                ax.set_ylim(0, float(y.max()) * 1.15)
                full = True
            if x.max() > ax.get_xlim()[1]:
                ax.set_xlim(0, float(x.max()) * 1.2)
                full = True
        if self.val:
            xs, ys = zip(*self.val, strict=True)
            val_line.set_data(xs, ys)
            y0, y1 = ax2.get_ylim()
            if min(ys) < y0 or max(ys) > y1:
                ax2.set_ylim(min(y0, min(ys) - 0.05), max(y1, max(ys) + 0.05))
                full = True
        if full:
            self._full_draw()
        else:
            self._blit()

    def _on_done(self, s, adata, res) -> None:
        if res is None or res[1] is None or (self.token is not None and self.token.cancelled):
            self._on_aborted()
            return
        predictor, pred = res
        self._final = True
        try:
            s.set_model(predictor, adata, pred)
        except Exception as e:  # noqa: BLE001
            self._on_error(e)
            return
        took = time.perf_counter() - self._t0
        h = predictor.history[-1] if predictor.history else {}
        vp = h.get("val_pcc", float("nan"))
        try:
            device = str(pick_device(predictor.config.device))
        except Exception:  # noqa: BLE001
            device = predictor.config.device
        self.set_status(f"Trained in {took:.1f} s on {device}: {len(predictor.genes)} genes, "
                        f"{predictor.result.epochs_completed if predictor.result else '?'} epochs, "
                        f"validation PCC {vp:.3f} (held-out sequenced spots).")
        self.draw_curve()
        W.notify_info(f"SCR2Net trained: predictions for {len(predictor.genes)} genes are in the layer list")
        _heap.freeze_later(self.viewer, again=True)  # the model and its maps live on: out of the collections

    def _on_error(self, e: BaseException) -> None:
        self._final = True
        W.notify_error(f"Training failed: {e}")
        self.set_status(f"Training failed: {e}")

    def _on_aborted(self) -> None:
        if self._final:
            return
        self._final = True
        s = self.session
        kept = (f"the previous model ({len(s.predictor.genes)} genes) and its maps are kept"
                if s is not None and s.predictor is not None else "no model yet; the layers are unchanged")
        self.set_status(f"Training cancelled {self._where()}; {kept}.")

    def _on_finished(self) -> None:
        if not self._final:  # ended without a result, an error or a cancel: say so
            self._on_aborted()
        self.worker = None
        self.cancel_btn.setEnabled(False)
        self.train_btn.setEnabled(self.session is not None and self.session.is_prepared)


def _check_trainable(s) -> int:
    """The number of sequenced spots, or the error :meth:`AcquisitionSession.training_snapshot`
    would raise (checked at the click; the snapshot itself is taken in the worker)."""
    if not s.is_prepared:
        raise RuntimeError("prepare the section and sequence some spots first")
    n = int(s.committed.measured.sum())
    if n < 8:
        raise RuntimeError(f"need at least 8 sequenced spots to train, have {n}")
    return n


def _gui_training_threads() -> int:
    """Intra-op threads for training inside napari: all cores but one, kept for the event loop."""
    import os

    return max(1, (os.cpu_count() or 2) - 1)
