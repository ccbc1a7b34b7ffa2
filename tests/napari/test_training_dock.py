"""Training dock: synchronous handlers, cancel, errors, and the real threaded path once."""

import numpy as np
import pytest

TINY = {"n_genes": 30, "hidden_dim": 32, "proj_dim": 16, "batch_size": 16}


def _train_dock(viewer, sampling):
    from napari_scr2st._napari._training_widget import TrainingWidget

    t = TrainingWidget(viewer)
    viewer.window.add_dock_widget(t, name="Train SCR2Net")
    t.backbone_combo.setCurrentText("patch-stats")
    t.epochs_spin.setValue(2)
    t.device_combo.setCurrentText("cpu")
    t.extra_config = dict(TINY)
    return t


@pytest.fixture
def sequenced(make_napari_viewer, small_sample, sync_workers, helpers):
    viewer = make_napari_viewer(show=True)
    w, spots = helpers.prepared_sampling(viewer, small_sample)
    w.sequence_round()
    return viewer, w, spots


def test_training_adds_prediction_layers(sequenced):
    viewer, w, spots = sequenced
    t = _train_dock(viewer, w)
    assert "60 sequenced spots" in t.status.text()
    t.start()
    s = w.session
    assert s.predictor is not None and s.predictions is not None, t.status.text()
    assert s.predictions.shape == (s.n, TINY["n_genes"])
    expr = viewer.layers[f"SYN1 · {s.gene} · predicted"]
    assert expr.metadata["gene"] == s.gene and expr.face_colorbar.visible
    assert np.isfinite(expr.features[s.gene]).all()
    assert expr.visible and expr.shown.all()
    assert f"pred_{s.gene}" in spots.features
    assert len(t.losses) >= 2 and len(t.canvas.ax.lines) == 1
    assert len(t.canvas.ax.lines[0].get_xdata()) == len(t.losses)
    assert "Trained" in t.status.text()


def test_training_errors_become_notifications(make_napari_viewer, small_sample, sync_workers, helpers, monkeypatch):
    viewer = make_napari_viewer(show=True)
    w, _ = helpers.prepared_sampling(viewer, small_sample)
    t = _train_dock(viewer, w)
    errors = []
    monkeypatch.setattr("napari_scr2st._napari._workers.notify_error", errors.append)
    t.start()  # nothing sequenced yet
    assert errors and "need at least 8 sequenced spots" in errors[0]
    w.sequence_round()
    t.backbone_combo.setCurrentText("no-such-backbone-xyz")
    t.start()
    assert len(errors) == 2 and "Training failed" in errors[1]
    assert w.session.predictor is None and t.train_btn.isEnabled()


def _cancel_after(t, monkeypatch, n: int) -> list:
    """Make the training dock ``t`` press Cancel after its ``n``-th progress event; returns the
    list the events are appended to."""
    seen = []

    def on_progress(ev, orig=t._on_progress):
        orig(ev)
        seen.append(ev)
        if len(seen) == n:
            t.cancel()

    monkeypatch.setattr(t, "_on_progress", on_progress)
    return seen


def test_cancel_stops_the_worker(sequenced, monkeypatch):
    viewer, w, _ = sequenced
    t = _train_dock(viewer, w)
    seen = _cancel_after(t, monkeypatch, 2)
    t.epochs_spin.setValue(50)
    t.start()
    assert w.session.predictor is None
    assert "cancel" in t.status.text().lower()
    assert len(seen) < 20  # stopped long before 50 epochs


def test_threaded_training_keeps_the_viewer_responsive(make_napari_viewer, small_sample, helpers, qtbot, monkeypatch):
    """The real path: a napari thread worker, progress in the activity dock, returned in the GUI thread."""
    monkeypatch.delenv("SCR2ST_SYNC_WORKERS", raising=False)
    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "1")
    viewer = make_napari_viewer(show=True)
    w, _ = helpers.prepared_sampling(viewer, small_sample)
    w.sequence_round()
    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "0")
    t = _train_dock(viewer, w)
    t.epochs_spin.setValue(3)
    t.start()
    worker = t.worker
    assert worker is not None and hasattr(worker, "yielded")
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    assert w.session.predictor is not None, t.status.text()
    assert f"SYN1 · {w.session.gene} · predicted" in viewer.layers
    assert t.worker is None and t.train_btn.isEnabled()


def test_status_texts_after_finish_and_cancel_are_final(sequenced, monkeypatch):
    """What the dock says once a run is over: after a cancel, where it stopped and that nothing
    changed (no progress line such as "epoch 3/50" left behind); after training, the result (no
    "prediction - step 1/1"); the progress panel is gone both times and the buttons are ready."""
    import re

    viewer, w, _ = sequenced
    s = w.session
    t = _train_dock(viewer, w)
    _cancel_after(t, monkeypatch, 3)
    t.epochs_spin.setValue(50)
    layers_before = [ly.name for ly in viewer.layers]
    t.start()
    text = t.status.text()
    assert re.fullmatch(r"Training cancelled at [^;]+; no model yet; the layers are unchanged\.", text), text
    assert "loss" not in text and "/50 ·" not in text
    assert [ly.name for ly in viewer.layers] == layers_before and s.predictor is None
    assert not t.panel.widget.isVisible() and t.train_btn.isEnabled() and not t.cancel_btn.isEnabled()
    # a selection change after the cancel: the idle text, not the cancelled run's progress
    w.sequence_round()
    assert t.status.text() == (f"{int(s.committed.measured.sum())} sequenced spots to train on. "
                               "Embedding: patch-stats (as prepared).")
    monkeypatch.setattr(t, "_on_progress", type(t)._on_progress.__get__(t))
    t.epochs_spin.setValue(2)
    t.start()
    text = t.status.text()
    assert s.predictor is not None, text
    assert re.fullmatch(r"Trained in \d+\.\d s on cpu: 30 genes, 2 epochs, validation PCC -?\d\.\d{3} "
                        r"\(held-out sequenced spots\)\.", text), text
    assert "step" not in text and not t.panel.widget.isVisible() and not t.cancel_btn.isEnabled()



def test_the_loss_chart_keeps_its_size_through_a_run(sequenced, qtbot):
    # the chart used to take the dock's spare height: the progress panel and status lines coming
    # and going during a run resized it, and each resize was a full matplotlib redraw on the UI
    # thread (one ~70 ms as the predicted map appeared)
    from qtpy.QtCore import QEvent, QObject

    viewer, w, _ = sequenced
    t = _train_dock(viewer, w)
    qtbot.wait(50)
    h0 = t.canvas.height()
    assert h0 > 0

    class Resizes(QObject):
        n = 0

        def eventFilter(self, obj, ev):  # noqa: N802 - Qt's name
            if ev.type() == QEvent.Type.Resize and ev.oldSize().height() > 0:
                Resizes.n += 1
            return False

    f = Resizes()
    t.canvas.installEventFilter(f)
    t.start()
    qtbot.wait(100)
    assert "Trained" in t.status.text()
    t.set_status("line\n" * 4 + "five lines")
    qtbot.wait(50)
    assert t.canvas.height() == h0
    assert Resizes.n == 0


def test_the_train_click_needs_no_full_chart_draw(sequenced, qtbot):
    # the empty axes for the epochs in the box are drawn with the dock and when the box rests,
    # so the click only clears the lines (a full matplotlib draw was ~85 ms of the click)
    viewer, w, _ = sequenced
    t = _train_dock(viewer, w)  # sets 2 epochs
    qtbot.waitUntil(lambda: t._axes_ready(2), timeout=3000)
    assert t.canvas.ax.get_xlim() == (0.0, 2.0)
    t.epochs_spin.setValue(3)
    assert not t._axes_ready(3)
    qtbot.waitUntil(lambda: t._axes_ready(3), timeout=3000)  # debounced redraw
    assert t.canvas.ax.get_xlim() == (0.0, 3.0)
    calls, full = [], []
    orig_setup, orig_full = t._setup_axes, t._full_draw
    t._setup_axes = lambda *a, **k: (calls.append(a), orig_setup(*a, **k))[1]
    t._full_draw = lambda: (full.append(len(t.losses)), orig_full())[1]
    t.start()  # synchronous here: the whole run
    assert calls == []
    assert not full or full[0] > 0  # any full draw came from the curve growing, not from the click
    assert "Trained" in t.status.text() and len(t.losses) >= 2
    assert len(t.canvas.ax.lines[0].get_xdata()) == len(t.losses)
