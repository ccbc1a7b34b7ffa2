"""Long work off the UI thread: progress texts with the time left, Cancel that leaves the layers as
they were, and status texts that are never stale after finish, cancel and import."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

pytest.importorskip("napari")

TINY = {"n_genes": 30, "hidden_dim": 32, "proj_dim": 16, "batch_size": 16}
PROGRESS_TEXT = re.compile(r"\d+/\d+ \(\d+%\)( · (estimating time left|about .+ left))?")


def _snapshot(viewer):
    """What a person sees in the layer list: names, kinds, order, data, colours, visibility."""
    out = []
    for ly in viewer.layers:
        item = [ly.name, type(ly).__name__, bool(ly.visible)]
        if type(ly).__name__ == "Points":
            item += [np.asarray(ly.data).copy(), np.asarray(ly.face_color).copy(), np.asarray(ly.shown).copy()]
        out.append(item)
    return out


def _same(a, b) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x[:3] != y[:3] or len(x) != len(y):
            return False
        if not all(np.array_equal(u, v) for u, v in zip(x[3:], y[3:], strict=True)):
            return False
    return True


def _train_dock(viewer, *, backbone="patch-stats"):
    from napari_scr2st._napari._training_widget import TrainingWidget

    t = TrainingWidget(viewer)
    viewer.window.add_dock_widget(t, name="Train SCR2Net")
    if backbone:
        t.backbone_combo.setCurrentText(backbone)
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


def _record_status(monkeypatch, dock) -> list[str]:
    seen: list[str] = []
    orig = dock.set_status

    def rec(text):
        seen.append(text)
        orig(text)

    monkeypatch.setattr(dock, "set_status", rec)
    return seen


def test_training_dock_trains_on_the_prepared_embedding(sequenced):
    viewer, w, _ = sequenced
    t = _train_dock(viewer, backbone=None)  # the plugin default would be efficientnet_lite0
    assert t.backbone_combo.currentText() == "patch-stats" == w.session.vision_model
    assert "Embedding: patch-stats (as prepared)." in t.status.text()
    keys = set(w.session.adata.obsm)
    t.start()
    assert w.session.predictor is not None, t.status.text()
    assert set(w.session.adata.obsm) - keys <= {"X_pred"}  # no second embedding


def test_progress_texts_then_one_final_status(sequenced, monkeypatch):
    viewer, w, _ = sequenced
    t = _train_dock(viewer)
    seen = _record_status(monkeypatch, t)
    monkeypatch.setattr("napari_scr2st._napari._workers.STATUS_EVERY_S", 0.0)
    t.start()
    progress = [x for x in seen if x.startswith("epoch")]
    assert progress and all(PROGRESS_TEXT.search(x) for x in progress), progress[:3]
    assert any("left" in x for x in progress) and any("loss" in x for x in progress)
    assert re.fullmatch(r"Trained in \d+\.\d s on cpu: 30 genes, 2 epochs, validation PCC -?\d\.\d{3} "
                        r"\(held-out sequenced spots\)\.", t.status.text()), t.status.text()
    assert seen[-1] == t.status.text()  # nothing after the final text (no 'prediction · 1/1')
    assert not t.panel.widget.isVisible() and not t.cancel_btn.isEnabled()


def test_cancel_leaves_the_layers_as_they_were(sequenced, monkeypatch):
    viewer, w, _ = sequenced
    t = _train_dock(viewer)
    before = _snapshot(viewer)
    names = [ly.name for ly in viewer.layers]
    from napari_scr2st._napari._viewer_layers import map_layer

    assert map_layer(viewer, "SYN1", "expression") is None  # nothing trained yet, no map
    seen = []

    def on_progress(ev, orig=t._on_progress):
        orig(ev)
        seen.append(ev)
        if len(seen) == 3:
            t.cancel()

    monkeypatch.setattr(t, "_on_progress", on_progress)
    t.epochs_spin.setValue(50)
    t.start()
    assert w.session.predictor is None and w.session.predictions is None
    assert [ly.name for ly in viewer.layers] == names and _same(_snapshot(viewer), before)
    assert re.fullmatch(r"Training cancelled at epoch 1/50; no model yet; the layers are unchanged\.",
                        t.status.text()), t.status.text()
    assert t.train_btn.isEnabled() and not t.cancel_btn.isEnabled() and not t.panel.widget.isVisible()


def test_cancel_keeps_the_previous_model_and_its_map(sequenced, monkeypatch):
    viewer, w, _ = sequenced
    t = _train_dock(viewer)
    t.start()
    first = w.session.predictor
    from napari_scr2st._napari._viewer_layers import map_layer

    expr = map_layer(viewer, "SYN1", "expression")
    assert first is not None and expr is not None and expr.name.endswith(" · predicted") and expr.visible
    before = _snapshot(viewer)
    n = {"k": 0}

    def on_progress(ev, orig=t._on_progress):
        orig(ev)
        n["k"] += 1
        if n["k"] == 2:
            t.cancel()

    monkeypatch.setattr(t, "_on_progress", on_progress)
    t.start()
    assert w.session.predictor is first and _same(_snapshot(viewer), before)
    assert re.fullmatch(r"Training cancelled at epoch 1/2; the previous model \(30 genes\) and its maps are kept\.",
                        t.status.text()), t.status.text()


def test_threaded_cancel_is_not_overwritten_by_late_progress(make_napari_viewer, small_sample, helpers, qtbot,
                                                             monkeypatch):
    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "1")
    viewer = make_napari_viewer(show=True)
    w, _ = helpers.prepared_sampling(viewer, small_sample)
    w.sequence_round()
    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "0")
    t = _train_dock(viewer)
    t.epochs_spin.setValue(200)
    before = _snapshot(viewer)
    t.start()
    worker = t.worker
    assert t.panel.widget.isVisibleTo(t)  # shown in the dock (the dock itself appears on the next paint)
    qtbot.waitUntil(lambda: t._last_progress is not None and "epoch" in t._last_progress.message, timeout=120_000)
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        t.cancel()
    for _ in range(20):  # late events, if any, would land now
        qtbot.wait(10)
    assert re.fullmatch(r"Training cancelled at epoch \d+/200; no model yet; the layers are unchanged\.",
                        t.status.text()), t.status.text()
    assert w.session.predictor is None and _same(_snapshot(viewer), before)
    assert t.worker is None and t.train_btn.isEnabled() and not t.panel.widget.isVisible()


def test_sampling_status_names_the_reference_and_prepare_reports_progress(make_napari_viewer, small_sample,
                                                                          sync_workers, helpers, monkeypatch):
    from napari_scr2st._napari._sampling_widget import SamplingWidget

    viewer = make_napari_viewer(show=True)
    helpers.add_section(viewer, small_sample)
    w = SamplingWidget(viewer)
    viewer.window.add_dock_widget(w)
    n_cells = small_sample.reference.n_obs
    assert w.status.text() == (f"SYN1: {small_sample.section.n_obs} spots, with a single-cell reference of "
                               f"{n_cells} cells. Press 'Prepare section'.")
    w.encoder_combo.setCurrentText("patch-stats")
    w.session.space = helpers.space_for(small_sample)
    seen = _record_status(monkeypatch, w)
    monkeypatch.setattr("napari_scr2st._napari._workers.STATUS_EVERY_S", 0.0)
    w.prepare()
    assert w.session.is_prepared
    assert any(PROGRESS_TEXT.search(x) for x in seen), seen
    assert w.status.text().startswith("Round 1 of 2")
    assert not w.panel.widget.isVisible()


def test_cancelled_prepare_leaves_the_section_unprepared(make_napari_viewer, small_sample, sync_workers, helpers,
                                                         monkeypatch):
    from napari_scr2st._napari._sampling_widget import SamplingWidget

    viewer = make_napari_viewer(show=True)
    helpers.add_section(viewer, small_sample)
    w = SamplingWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.encoder_combo.setCurrentText("patch-stats")
    before = _snapshot(viewer)
    orig = w.panel.show

    def show(ev, text):  # the user presses the panel's Cancel during the first step
        orig(ev, text)
        w.panel.cancel_btn.click()

    monkeypatch.setattr(w.panel, "show", show)
    w.prepare()
    assert not w.session.is_prepared and _same(_snapshot(viewer), before)
    assert w.status.text() == "Preparing cancelled; the section is unchanged (press 'Prepare section' to start again)."
    assert w.prepare_btn.isEnabled()


def test_export_writes_h5ad_in_a_worker_and_import_status_matches_the_rounds(
        make_napari_viewer, small_sample, helpers, qtbot, monkeypatch, tmp_path):
    from napari_scr2st._napari._export_widget import ExportWidget
    from napari_scr2st.io.export import read_selection_csv, write_counts_csv

    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "1")
    viewer = make_napari_viewer(show=True)
    w, _ = helpers.prepared_sampling(viewer, small_sample)
    w.sequence_round()
    t = _train_dock(viewer)
    t.start()
    s = w.session
    e = ExportWidget(viewer)
    viewer.window.add_dock_widget(e)
    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "0")
    writers = []
    import napari_scr2st.io.export as X

    real = X.write_predictions_h5ad
    monkeypatch.setattr(X, "write_predictions_h5ad",
                        lambda *a, **k: writers.append(threading.current_thread()) or real(*a, **k))
    out = tmp_path / "pred.h5ad"
    assert e.export_h5ad(out) is None  # returns at once; the file follows
    assert not e.h5ad_btn.isEnabled()
    qtbot.waitUntil(lambda: e.worker is None, timeout=60_000)
    assert out.exists() and writers and writers[0] is not threading.main_thread()
    assert e.status.text() == f"predictions written to {out}" and e.h5ad_btn.isEnabled()
    # import of the second (last) round: the export dock and the sampling dock agree
    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "1")
    df = read_selection_csv(e.export_csv(tmp_path / "next.csv"))
    rows = s.adata.obs_names.get_indexer(df["spot_id"])
    e.import_results(write_counts_csv(s.adata, rows, tmp_path / "results.csv"))
    assert e.status.text() == (f"{len(rows)} sequenced spots imported from results.csv; round 2 of 2 sequenced: "
                               "all rounds done (raise the rounds in the sampling dock to pick more).")
    assert "Round 2 of 2" in w.status.text()


def test_import_status_names_the_next_round(make_napari_viewer, small_sample, sync_workers, helpers, tmp_path):
    from napari_scr2st._napari._export_widget import ExportWidget
    from napari_scr2st.io.export import read_selection_csv, write_counts_csv

    viewer = make_napari_viewer(show=True)
    w, _ = helpers.prepared_sampling(viewer, small_sample, rounds=3)
    s = w.session
    e = ExportWidget(viewer)
    viewer.window.add_dock_widget(e)
    df = read_selection_csv(e.export_csv(tmp_path / "r1.csv"))
    rows = s.adata.obs_names.get_indexer(df["spot_id"])
    e.import_results(write_counts_csv(s.adata, rows, tmp_path / "results.csv"))
    assert e.status.text() == (f"{len(rows)} sequenced spots imported from results.csv; round 1 of 3 sequenced; "
                               "next: round 2 of 3 (proposed in the sampling dock).")
    assert "Round 2 of 3" in w.status.text()


def test_partial_import_says_the_round_still_waits(make_napari_viewer, small_sample, sync_workers, helpers, tmp_path):
    """A lab file with only some of the round's spots: the export dock, the sampling dock and the
    workflow dock all say that round 1 still waits (none says the next round started)."""
    from napari_scr2st._napari._export_widget import ExportWidget
    from napari_scr2st._napari._workflow_widget import WorkflowWidget
    from napari_scr2st.io.export import read_selection_csv, write_counts_csv

    viewer = make_napari_viewer(show=True)
    w, _ = helpers.prepared_sampling(viewer, small_sample, rounds=2)
    s = w.session
    e = ExportWidget(viewer)
    viewer.window.add_dock_widget(e)
    wf = WorkflowWidget(viewer)
    viewer.window.add_dock_widget(wf)
    df = read_selection_csv(e.export_csv(tmp_path / "r1.csv"))
    rows = s.adata.obs_names.get_indexer(df["spot_id"])
    e.import_results(write_counts_csv(s.adata, rows[:5], tmp_path / "part.csv"))
    left = len(rows) - 5
    assert e.status.text() == (f"5 sequenced spots imported from part.csv; round 1 of 2: {left} spots still wait "
                               "for their counts (import them to continue).")
    assert w.status.text().split("\n")[:2] == ["round 1 was sent for sequencing: import its counts to continue",
                                                f"Round 1 of 2; budget {s.preview.total_budget} spots"]
    assert wf.steps[4].done == f"exported round 1 to {tmp_path / 'r1.csv'}: {left} spots wait for the lab's counts"
    assert wf.steps[5].done == "counts in for 5 spots"


def test_section_opens_in_a_worker_with_a_progress_dock(make_napari_viewer, shared_data, qtbot, monkeypatch):
    import napari_scr2st.io as io

    monkeypatch.delenv("SCR2ST_SYNC_WORKERS", raising=False)
    readers = []
    real = io.read
    monkeypatch.setattr(io, "read", lambda *a, **k: readers.append(threading.current_thread()) or real(*a, **k))
    viewer = make_napari_viewer(show=True)
    path = shared_data / "her2st" / "data" / "ST-cnts" / "C3.tsv.gz"
    assert viewer.open(str(path), plugin="napari-scr2st") == []  # returns at once
    title = "SCR2-ST: opening C3.tsv.gz"
    assert title in viewer.window.dock_widgets
    qtbot.waitUntil(lambda: "C3 spots" in viewer.layers and title not in viewer.window.dock_widgets, timeout=120_000)
    assert readers and readers[0] is not threading.main_thread()
    assert [ly.name for ly in viewer.layers] == ["C3 H&E", "C3 spots"]
    assert len(viewer.layers["C3 spots"].data) == 180


@pytest.fixture
def threaded_sample(monkeypatch):
    """The synthetic sample (300 spots) read in thread workers, as for a user; returns the threads
    in which its reader began (a list, filled as it runs)."""
    monkeypatch.delenv("SCR2ST_SYNC_WORKERS", raising=False)
    monkeypatch.setenv("SCR2ST_SAMPLE_SPOTS", "300")
    from napari_scr2st._napari import _sample_data as SD

    began = []
    real = SD.iter_synthetic_layers

    def spy(n):
        began.append(threading.current_thread())
        return real(n)

    monkeypatch.setattr(SD, "iter_synthetic_layers", spy)
    return began


def test_sample_opens_in_a_worker_behind_a_placeholder(make_napari_viewer, qtbot, threaded_sample):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-scr2st", "synthetic")
    assert [ly.name for ly in viewer.layers] == ["SYN1 (loading)"] and len(viewer.layers[0].data) == 0
    qtbot.waitUntil(lambda: "SYN1 true compartments" in viewer.layers, timeout=120_000)  # the last one
    assert [ly.name for ly in viewer.layers] == ["SYN1 H&E", "SYN1 spots", "SYN1 true compartments"]
    assert 250 < len(viewer.layers["SYN1 spots"].data) < 350


def test_sample_layers_are_made_in_the_worker(make_napari_viewer, qtbot, monkeypatch, threaded_sample):
    """The read worker makes the napari layers too; the GUI thread only adds those objects."""
    from napari_scr2st._napari import _workers as W

    made = []
    real = W.build_layers

    def build(layers):
        out = real(layers)
        made.append((threading.current_thread(), out))
        return out

    monkeypatch.setattr(W, "build_layers", build)
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-scr2st", "synthetic")
    qtbot.waitUntil(lambda: "SYN1 true compartments" in viewer.layers, timeout=120_000)
    ((thread, layers),) = made
    assert thread is not threading.main_thread()
    assert [ly.name for ly in layers] == ["SYN1 H&E", "SYN1 spots", "SYN1 true compartments"]
    assert all(viewer.layers[ly.name] is ly for ly in layers)  # the very objects, not rebuilt


def test_cancelled_sample_adds_nothing(make_napari_viewer, qtbot, threaded_sample):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-scr2st", "synthetic")
    assert [ly.name for ly in viewer.layers] == ["SYN1 (loading)"]
    title = "SCR2-ST: opening the synthetic sample"
    panel_widget = viewer.window.dock_widgets[title]
    from qtpy.QtWidgets import QPushButton

    (cancel,) = [b for b in panel_widget.findChildren(QPushButton) if b.text() == "Cancel"]
    cancel.click()
    qtbot.waitUntil(lambda: title not in viewer.window.dock_widgets, timeout=120_000)
    assert list(viewer.layers) == []
    # the worker starts a turn after the sample returns (its placeholder, the session's first
    # layer, is made without the worker's imports competing): a Cancel before that starts nothing
    assert threaded_sample == []


def test_sample_reads_in_a_worker_that_starts_after_its_placeholder(make_napari_viewer, qtbot, threaded_sample):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-scr2st", "synthetic")
    assert threaded_sample == []  # not yet: the placeholder was made first
    assert "SCR2-ST: opening the synthetic sample" in viewer.window.dock_widgets
    qtbot.waitUntil(lambda: "SYN1 true compartments" in viewer.layers, timeout=120_000)
    assert len(threaded_sample) == 1 and threaded_sample[0] is not threading.main_thread()
    assert "SYN1 (loading)" not in viewer.layers


def test_cancelled_chooser_opens_nothing_more(make_napari_viewer, small_sample, sync_workers, monkeypatch, tmp_path):
    from napari_scr2st._napari._section_chooser import SectionChooser

    viewer = make_napari_viewer()
    calls = []

    def opener(sid):
        def read():
            calls.append(sid)
            a = small_sample.section.copy()
            a.obs["section"] = sid
            return a
        return read

    w = SectionChooser(viewer, tmp_path / "her2st", {sid: opener(sid) for sid in ("A1", "B1")})
    viewer.window.add_dock_widget(w)
    w.set_checked(["A1", "B1"])
    texts = []
    orig = w.panel.show

    def show(ev, text):
        orig(ev, text)
        texts.append(w.panel.label.text())
        if ev.message == "A1 read":
            w.panel.cancel_btn.click()

    monkeypatch.setattr(w.panel, "show", show)
    monkeypatch.setattr("napari_scr2st._napari._workers.STATUS_EVERY_S", 0.0)
    w.open_checked()
    assert calls == ["A1"] and w.opened == ["A1"]
    assert texts[0] == "SCR2-ST: opening her2st: reading A1 · 0/4 (0%) · estimating time left"
    assert w.status.text() == "Cancelled: opened A1; not opened: B1."
    assert not w.panel.widget.isVisible() and w.open_btn.isEnabled()


def test_chooser_adds_each_layer_in_a_turn_of_its_own(make_napari_viewer, small_sample, qtbot, monkeypatch):
    """Threaded: the chosen sections' layers (image, spots) are added one per call from the event
    loop (``add_in_turns``), in section order, and the final status waits for the last of them.
    (napari's progress bar runs ``processEvents`` on each update, so a turn may run nested in
    one of its updates: what is asserted is one layer per step, not the Qt stack depth.)"""
    from napari_scr2st._napari import _workers as W
    from napari_scr2st._napari._section_chooser import SectionChooser

    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "0")
    viewer = make_napari_viewer()
    steps = []
    real_add = W.add_layer_tuples

    def add(v, items):
        steps.append((len(items), len(viewer.layers), w.status.text()))
        return real_add(v, items)

    monkeypatch.setattr(W, "add_layer_tuples", add)

    def opener(sid):
        def read():
            a = small_sample.section.copy()
            a.uns["spatial"] = {sid: next(iter(a.uns["spatial"].values()))}  # the library names the layers
            return a
        return read

    w = SectionChooser(viewer, "her2st", {sid: opener(sid) for sid in ("A1", "B1")})
    viewer.window.add_dock_widget(w)
    w.set_checked(["A1", "B1"])
    w.open_checked()
    qtbot.waitUntil(lambda: w.status.text().startswith("Opened"), timeout=60_000)
    assert [ly.name for ly in viewer.layers] == ["A1 H&E", "A1 spots", "B1 H&E", "B1 spots"]
    assert [(n, k) for n, k, _ in steps] == [(1, 0), (1, 1), (1, 2), (1, 3)]  # one layer per step
    assert not any(t.startswith("Opened") for *_, t in steps)  # "Opened" only once all are in
    assert w.status.text() == "Opened A1, B1." and w.opened == ["A1", "B1"]


def test_warm_docks_loads_the_chart_code_once_in_a_worker(monkeypatch):
    import sys

    from napari_scr2st._napari import _workers as W

    calls = []
    monkeypatch.setattr(W, "start_worker", lambda gen, **kw: calls.append((gen, kw)))
    monkeypatch.setattr(W, "_DOCKS_WARMED", False)
    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "1")
    W.warm_docks()
    assert calls == []  # synchronous workers (tests): nothing in the background
    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "0")
    monkeypatch.delitem(sys.modules, "matplotlib.backends.backend_qtagg", raising=False)
    W.warm_docks()
    W.warm_docks()  # once per process
    assert len(calls) == 1 and calls[0][1]["quiet"] is True
    monkeypatch.setattr(W, "_DOCKS_WARMED", False)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_qtagg", object())  # already loaded
    monkeypatch.setattr(W._dock_kit, "_SETTINGS_BUILT", True)  # and the settings read
    W.warm_docks()
    assert len(calls) == 1
    monkeypatch.setattr(W._dock_kit, "_SETTINGS_BUILT", False)  # the settings alone still warm
    W.warm_docks()
    assert len(calls) == 2


def test_warm_docks_reads_the_plugin_settings_in_the_worker(monkeypatch):
    """The worker of warm_docks reads napari's plugin settings (what the first dock would read on
    the GUI thread otherwise)."""
    import sys

    from napari_scr2st._napari import _workers as W

    gens = []
    monkeypatch.setattr(W, "start_worker", lambda gen, **kw: gens.append(gen))
    monkeypatch.setattr(W, "_DOCKS_WARMED", False)
    monkeypatch.setattr(W._dock_kit, "_SETTINGS_BUILT", False)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_qtagg", sys.modules.get(
        "matplotlib.backends.backend_qtagg", object()))
    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "0")
    W.warm_docks()
    assert len(gens) == 1 and not W._dock_kit.settings_built()
    for _ in gens[0]():  # the generator the worker would run
        pass
    assert W._dock_kit.settings_built()


def test_plugin_settings_are_read_by_one_thread_at_a_time(monkeypatch):
    """A dock opened while the warm-up worker reads the settings waits for it: napari's first
    get_plugin_settings fills its cache in a loop, and a second reader must not see it half
    full (it would fall back to the built-in defaults)."""
    import threading
    import time

    import napari.settings

    from napari_scr2st._napari import _dock_kit as K

    inside, most = [0], [0]
    real = napari.settings.get_plugin_settings

    def slow(name):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        inside[0] -= 1
        return real(name)

    monkeypatch.setattr(napari.settings, "get_plugin_settings", slow)
    out = []
    threads = [threading.Thread(target=lambda: out.append(K.plugin_defaults())) for _ in range(3)]
    for t in threads:
        t.start()
    out.append(K.plugin_defaults())
    for t in threads:
        t.join()
    assert most[0] == 1 and len(out) == 4
    assert all(o == out[0] for o in out)


def test_layers_are_added_one_per_event_loop_turn(make_napari_viewer, qtbot, monkeypatch):
    """add_in_turns: the step before, then one layer per turn of the event loop (the viewer
    repaints in between), then ``then`` with every layer in order; all at once when synchronous."""
    import numpy as np

    from napari_scr2st._napari import _workers as W

    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "0")
    viewer = make_napari_viewer()
    viewer.add_points(np.zeros((1, 2)), name="placeholder")
    tuples = [(np.zeros((8, 8)), {"name": f"L{i}"}, "image") for i in range(3)]
    got, seen = [], []
    ret = W.add_in_turns(viewer, tuples, got.append, before=lambda: viewer.layers.remove("placeholder"))
    assert ret is None and got == []
    assert [ly.name for ly in viewer.layers] == []  # only the first step ran in this turn
    timer = __import__("qtpy.QtCore", fromlist=["QTimer"]).QTimer()
    timer.timeout.connect(lambda: seen.append(len(viewer.layers)))
    timer.start(0)
    qtbot.waitUntil(lambda: bool(got), timeout=10_000)
    timer.stop()
    assert [ly.name for ly in got[0]] == ["L0", "L1", "L2"] and [ly.name for ly in viewer.layers] == ["L0", "L1", "L2"]
    assert {1, 2} <= set(seen)  # other events ran while the layers came one by one

    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "1")
    more = [(np.zeros((8, 8)), {"name": f"M{i}"}, "image") for i in range(2)]
    out = W.add_in_turns(viewer, more, got.append)
    assert [ly.name for ly in out] == ["M0", "M1"] and [ly.name for ly in got[1]] == ["M0", "M1"]


def test_the_activity_bar_appears_only_for_work_that_lasts(make_napari_viewer, qtbot):
    """LazyBar: no napari progress bar for work that ends within its delay; after the delay one
    with the progress made so far, which then follows (total, steps, description) at most every
    ``every_s``, a burst of events in one update, the latest state always shown, and closes."""
    from napari.utils import progress

    from napari_scr2st._napari._workers import LazyBar

    make_napari_viewer()  # the activity dock that shows napari's bars
    before = set(progress._all_instances)
    quick = LazyBar("quick", after_s=0.05)
    quick.total = 4
    quick.update(4)
    quick.close()
    qtbot.wait(150)
    assert quick.bar is None and set(progress._all_instances) == before

    slow = LazyBar("slow", after_s=0.05, every_s=0.3)
    slow.total = 10
    slow.update(3)
    slow.set_description("slow: reading")
    qtbot.waitUntil(lambda: slow.bar is not None, timeout=5_000)
    bar = slow.bar
    assert (bar.n, bar.total, bar.desc.rstrip(": ")) == (3, 10, "slow: reading")
    assert bar in progress._all_instances
    pushes = []
    orig = bar.update
    bar.update = lambda k=1: (pushes.append(k), orig(k))
    slow.total = 30
    for _ in range(12):  # a burst of events within every_s of the bar's making
        slow.update(1)
    slow.set_description("slow: writing")
    assert (bar.n, bar.total) == (3, 10) and pushes == []  # not yet: each push runs processEvents
    qtbot.waitUntil(lambda: bar.n == 15, timeout=5_000)  # the latest state, without another event
    assert (bar.total, bar.desc.rstrip(": ")) == (30, "slow: writing") and pushes == [12]
    slow.close()
    assert bar not in progress._all_instances
