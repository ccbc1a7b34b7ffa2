"""The workflow dock: seven steps whose states and texts follow the section's ONE session through
a whole run (prepare, manual pick, export, import, simulated round, training), buttons that open
the docks doing each step, and a window that stays readable at 1600x1000."""

import numpy as np
import pandas as pd
import pytest
from qtpy.QtWidgets import QApplication, QDockWidget, QLabel, QTabBar

WF = "SCR2-ST workflow"
DONE, CURRENT, TODO = "done", "current", "to do"


def _states(w):
    return [st.state for st in w.steps]


def _done(w, i):
    return w.rows[i - 1].done_label.text()


def _next(w, i):
    return w.rows[i - 1].next_label.text()


@pytest.fixture
def viewer(make_napari_viewer, monkeypatch, sync_workers):
    monkeypatch.setenv("SCR2ST_SAMPLE_SPOTS", "400")
    return make_napari_viewer(show=True)


def test_steps_follow_the_session(viewer, tmp_path):
    from napari_scr2st._napari._export_widget import ExportWidget
    from napari_scr2st._napari._sampling_widget import SamplingWidget
    from napari_scr2st._napari._training_widget import TrainingWidget
    from napari_scr2st.io.export import write_counts_csv
    from napari_scr2st.reference import list_celltype_columns

    _, wf = viewer.window.add_plugin_dock_widget("napari-scr2st", WF)
    # nothing open: step 1 is the current one and says how to open a section
    assert wf.session is None
    assert _states(wf) == [CURRENT] + [TODO] * 6
    assert wf.summary.text() == "Now: step 1 of 7, data"
    assert "File > Open Sample" in _next(wf, 1)

    viewer.open_sample("napari-scr2st", "synthetic")
    s = wf.session
    assert s is not None and s is viewer.layers["SYN1 spots"].metadata["scr2st_session"]
    assert _states(wf) == [DONE, CURRENT] + [TODO] * 5
    assert _done(wf, 1) == f"SYN1: {s.n} spots (fully measured: sequencing is simulated from its own counts)"
    n_types = s.reference.obs[list_celltype_columns(s.reference)[0]].nunique()
    assert _done(wf, 2) == f"reference of {s.reference.n_obs:,} cells ({n_types} cell types)"
    assert "Prepare section" in _next(wf, 2)

    # step 2's button opens Spot sampling, bound to the same session
    wf.rows[1].buttons["Spot sampling"].click()
    sampling = viewer.window.dock_widgets["Spot sampling (napari-scr2st)"]
    assert isinstance(sampling, SamplingWidget) and sampling.session is s
    sampling.encoder_combo.setCurrentText("patch-stats")
    sampling.sampler_combo.setCurrentIndex(sampling.sampler_combo.findData("greedy"))  # not the default (grid)
    sampling.budget_unit.setCurrentText("%")
    sampling.budget_spin.setValue(30)
    sampling.rounds_spin.setValue(2)
    sampling.prepare()
    assert s.is_prepared, sampling.status.text()
    assert _states(wf) == [DONE, DONE, DONE, CURRENT, TODO, TODO, TODO]
    assert wf.summary.text() == "Now: step 4 of 7, review and manual picks"
    p = s.preview
    assert _done(wf, 2) == (f"reference of {s.reference.n_obs:,} cells ({s.space.n_types} cell types), "
                            f"{s.space.n_clusters} cell states; section prepared")
    assert _done(wf, 3).startswith(f"budget {p.total_budget} spots (30%) over 2 rounds; sampler: ")
    assert _done(wf, 3).endswith("weights: cell states 1.00, cell types 1.00, spatial 1.00")
    assert _done(wf, 4) == f"Round 1 of 2: {len(p.proposal)} spots chosen (0 manual)"
    assert f"{len(p.proposal)} by greedy" in sampling.status.text()  # the sampling dock says the same
    assert wf.rows[3].state_label.text().endswith(">current (round 1)</span>")
    assert "(round 1)" in wf.rows[4].state_label.text()

    # a manual pick counts toward the budget; the rest is spread over the rounds
    free = np.flatnonzero(~s.preview.state.selected & ~s.excluded)
    assert "manual pick" in sampling.toggle_pick(int(free[0]))
    chosen = len(s.preview.proposal) + 1
    assert chosen == 1 + (p.total_budget - 1 + 1) // 2
    assert _done(wf, 4) == f"Round 1 of 2: {chosen} spots chosen (1 manual)"

    # export round 1 for the lab: steps 4 and 5 done, step 6 (import) is next
    wf.rows[4].buttons["Export and import"].click()
    export = viewer.window.dock_widgets["Export and import (napari-scr2st)"]
    assert isinstance(export, ExportWidget) and export.session is s
    export.pending_radio.setChecked(True)
    csv = export.export_csv(tmp_path / "round1.csv")
    n1 = len(pd.read_csv(csv))
    assert n1 == chosen and int(s.committed.pending.sum()) == n1
    assert _states(wf) == [DONE] * 5 + [CURRENT, TODO]
    assert _done(wf, 4) == f"Round 1 of 2: {n1} spots sent for sequencing"
    # step 5 names the file the session recorded (the label elides a long path; its tooltip has it all)
    assert s.last_export.path == csv and s.last_export.round == 1
    assert wf.steps[4].done == f"exported round 1 to {csv}: {n1} spots wait for the lab's counts"
    assert _done(wf, 5).startswith("exported round 1 to ") and _done(wf, 5).endswith(
        f": {n1} spots wait for the lab's counts")
    assert wf.rows[4].done_label.toolTip() in ("", wf.steps[4].done)
    assert export.status.text() == (f"Exported round 1 to {csv}: {n1} spots "
                                    f"(run state: {csv.stem}.scr2st-state.npz)")
    # the sampling dock counts the same round: round 1 is with the lab (not "Round 2 of 2")
    lines = sampling.status.text().split("\n")
    assert lines[0] == "round 1 was sent for sequencing: import its counts to continue"
    assert lines[1].startswith("Round 1 of 2; budget ")
    assert "round 1's counts" in _next(wf, 6)
    assert wf.summary.text() == "Now: step 6 of 7, import the lab's counts"

    # the lab's counts come back: round 2 opens (steps 4-6 again, for round 2)
    ids = pd.read_csv(csv)["spot_id"].astype(str)
    results = write_counts_csv(s.adata, s.adata.obs_names.get_indexer(ids), tmp_path / "lab1.csv")
    assert export.import_results(results) is not None, export.status.text()
    assert _states(wf) == [DONE, DONE, DONE, CURRENT, TODO, TODO, TODO]
    assert _done(wf, 4).startswith(f"Round 2 of 2: {len(s.preview.proposal)} spots chosen (0 manual); "
                                   f"{n1} sequenced in earlier rounds")
    assert wf.steps[4].done == f"1 of 2 rounds sent and sequenced; exported round 1 to {csv}"
    assert _done(wf, 6) == f"counts for {n1} spots"
    assert export.status.text() == (f"{n1} sequenced spots imported from lab1.csv; round 1 of 2 sequenced; "
                                    "next: round 2 of 2 (proposed in the sampling dock).")
    assert sampling.status.text().startswith("Round 2 of 2: ")
    assert wf.rows[5].state_label.text().endswith(">to do (round 2)</span>")
    assert _done(wf, 7) == f"{n1} sequenced spots to train on"

    # round 2 by simulation: every round is in, training is next
    sampling.sequence_round()
    m = int(s.committed.measured.sum())
    assert m > n1 and s.rounds_done
    assert _states(wf) == [DONE] * 6 + [CURRENT]
    assert _done(wf, 4) == f"all 2 rounds chosen: {s.committed.n_selected} spots"
    assert wf.steps[4].done == f"2 of 2 rounds sent and sequenced; exported round 1 to {csv}"
    assert _done(wf, 6) == f"counts for {m} spots (rounds 1-2)"
    assert wf.summary.text() == "Now: step 7 of 7, train and predict"

    # train a tiny model: every step done
    wf.rows[6].buttons["Train SCR2Net"].click()
    training = viewer.window.dock_widgets["Train SCR2Net (napari-scr2st)"]
    assert isinstance(training, TrainingWidget) and training.session is s
    training.backbone_combo.setCurrentText("patch-stats")
    training.epochs_spin.setValue(2)
    training.device_combo.setCurrentText("cpu")
    training.extra_config = {"n_genes": 20, "hidden_dim": 16, "proj_dim": 8, "batch_size": 16}
    training.start()
    assert s.predictions is not None, training.status.text()
    assert _states(wf) == [DONE] * 7
    assert _done(wf, 7) == f"SCR2Net trained on {m} spots; predictions for {s.n - m} unsequenced spots " \
                           f"(every spot: {s.n})"
    assert "Maps" in _next(wf, 7)
    assert wf.summary.text().startswith("All steps done")
    assert wf.current_step() is None


def test_buttons_open_the_docks_one_at_a_time(viewer):
    from napari_scr2st._napari._export_widget import ExportWidget
    from napari_scr2st._napari._inspector_widget import InspectorWidget
    from napari_scr2st._napari._maps_widget import MapsWidget
    from napari_scr2st._napari._sampling_widget import SamplingWidget
    from napari_scr2st._napari._training_widget import TrainingWidget

    classes = {"Spot sampling": SamplingWidget, "Export and import": ExportWidget, "Train SCR2Net": TrainingWidget,
               "Expression and cell-type maps": MapsWidget, "Retrieval inspector": InspectorWidget}
    viewer.open_sample("napari-scr2st", "synthetic")
    wf_dock, wf = viewer.window.add_plugin_dock_widget("napari-scr2st", WF)
    seen = set()
    for row in wf.rows:
        for name, button in row.buttons.items():
            if name == "open":
                continue
            button.click()
            QApplication.processEvents()
            w = viewer.window.dock_widgets[f"{name} (napari-scr2st)"]
            assert isinstance(w, classes[name]) and w.session is wf.session
            step_docks = [d for d in wf.window().findChildren(QDockWidget) if d.isVisible()
                          and d.widget() is not wf and type(d.widget()) in classes.values()]
            assert [d.widget() for d in step_docks] == [w]  # one at a time, beside the workflow
            assert wf_dock.isVisible()
            seen.add(name)
    assert seen == set(classes)


def test_open_button_reads_a_section(viewer, tmp_path, monkeypatch):
    from qtpy.QtWidgets import QFileDialog

    from napari_scr2st.data import make_sample

    path = tmp_path / "MYSEC.h5ad"
    make_sample(n_spots=120, seed=1).section.write_h5ad(path)
    _, wf = viewer.window.add_plugin_dock_widget("napari-scr2st", WF)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    wf.rows[0].buttons["open"].click()
    s = wf.session
    assert s is not None and s.n == 120
    assert _states(wf)[0] == DONE and _done(wf, 1).startswith(f"{s.library}: 120 spots")
    assert viewer.layers[wf.layer_combo.currentText()].metadata["scr2st_session"] is s


def _title_fits(dock) -> tuple[int, int]:
    """(text width, label width) of a dock's title in its title bar."""
    from qtpy.QtGui import QFontMetrics

    bar = dock.titleBarWidget()
    labels = [lab for lab in bar.findChildren(QLabel) if lab.text() == dock.windowTitle()]
    assert labels, f"no title label in {dock.windowTitle()}"
    lab = labels[0]
    return QFontMetrics(lab.font()).horizontalAdvance(lab.text()), lab.contentsRect().width()


def test_readable_at_1600x1000(viewer):
    from qtpy.QtGui import QFontMetrics

    viewer.open_sample("napari-scr2st", "synthetic")
    _, wf = viewer.window.add_plugin_dock_widget("napari-scr2st", WF)
    main = wf.window()
    main.resize(1600, 1000)
    QApplication.processEvents()
    assert (main.width(), main.height()) == (1600, 1000)
    # a prepared section: the docks show their full content (charts, status lines)
    sampling = wf.open_dock("Spot sampling")
    sampling.encoder_combo.setCurrentText("patch-stats")
    sampling.prepare()
    assert wf.session.is_prepared, sampling.status.text()
    visible_titles = set()
    for row in wf.rows:
        for name, button in row.buttons.items():
            if name == "open":
                continue
            button.click()
            for _ in range(3):
                QApplication.processEvents()
            assert main.height() <= 1000, f"the window grew to {main.height()} px with {name}"
            docks = [d for d in main.findChildren(QDockWidget) if d.isVisible()]
            for d in docks:
                text_w, label_w = _title_fits(d)
                assert text_w <= label_w, f"title of {d.windowTitle()} cut off: {text_w} > {label_w} px"
            titles = {d.windowTitle() for d in docks}
            visible_titles |= titles
            for bar in main.findChildren(QTabBar):
                if not bar.isVisible():
                    continue
                fm = QFontMetrics(bar.font())
                for i in range(bar.count()):
                    assert bar.tabText(i) in titles, f"a tab of the hidden dock {bar.tabText(i)!r} is on screen"
                    need = fm.horizontalAdvance(bar.tabText(i))
                    assert need <= bar.tabRect(i).width(), f"tab {bar.tabText(i)!r} cut off"
    ours = {f"{n} (napari-scr2st)" for n in (WF, "Spot sampling", "Export and import", "Train SCR2Net",
                                              "Expression and cell-type maps", "Retrieval inspector")}
    assert ours <= visible_titles  # the workflow and each of the five docks it opens were measured
    # every label of the workflow dock wraps or fits: none is clipped
    wrapped = 0
    for lab in wf.findChildren(QLabel):
        if not lab.isVisible() or not lab.text():
            continue
        if lab.wordWrap():
            assert lab.height() >= lab.heightForWidth(lab.width()), lab.text()
            wrapped += lab.heightForWidth(lab.width()) > 1.5 * QFontMetrics(lab.font()).height()
        else:
            assert lab.sizeHint().width() <= lab.width(), lab.text()
    assert wrapped >= 3  # the long texts take several lines instead of running off the dock
    # a long section name is elided in the middle; the tooltip has it whole (the other docks are
    # hidden: Spot sampling's status does not elide it yet and would widen the dock area)
    wf.open_dock("Export and import")
    s = wf.session
    long_name = "her2st_" + "very_long_collection_name_" * 4 + "C3"
    s.library = long_name
    wf.refresh()
    shown = wf.rows[0].done_label.text()
    assert "\u2026" in shown and long_name not in shown and long_name in wf.rows[0].done_label.toolTip()
    assert wf.rows[0].done_label.height() >= wf.rows[0].done_label.heightForWidth(wf.rows[0].done_label.width())


def test_steps_follow_reference_signals_without_polling(make_napari_viewer, small_sample, sync_workers, helpers,
                                                         tmp_path):
    """A reference loaded, fitted or dropped changes the Reference step at once: the dock listens to
    the session's reference_changed (no timer: no event loop runs between the change and the assert)."""
    from qtpy.QtCore import QTimer

    from napari_scr2st._napari._sampling_widget import SamplingWidget

    viewer = make_napari_viewer(show=True)
    spots = helpers.add_section(viewer, small_sample)
    spots.metadata.pop("reference")  # a section opened without a reference
    _, wf = viewer.window.add_plugin_dock_widget("napari-scr2st", WF)
    assert not [t for t in wf.findChildren(QTimer) if t.isActive()]  # nothing polls
    s = wf.session
    assert s.reference is None and _done(wf, 2) == "no single-cell reference yet"
    sampling = SamplingWidget(viewer)
    viewer.window.add_dock_widget(sampling)
    path = tmp_path / "breast_atlas.h5ad"
    small_sample.reference.write_h5ad(path)
    sampling.load_reference(path)  # what 'Single-cell reference…' does
    assert s.reference is not None
    assert _done(wf, 2).startswith("reference breast_atlas (") and _done(wf, 2).endswith(" cell types)")
    assert _states(wf)[1] == CURRENT and "Prepare section" in _next(wf, 2)
    s.space = helpers.space_for(small_sample)  # a fitted space (as Prepare sets it): the text follows
    assert _done(wf, 2) == f"reference breast_atlas ({s.space.n_types} cell types)"
    s.set_reference(None)  # cleared
    assert _done(wf, 2) == "no single-cell reference yet"
