"""One scripted acquisition through the public Python API (``napari_scr2st.select`` /
``import_counts``), the session object, the ``scr2st`` CLI and the napari docks gives identical
selections: the front ends drive the same AcquisitionSession."""

import numpy as np
import pandas as pd
import pytest

BUDGET, ROUNDS, WEIGHTS = 20, 2, (1.0, 0.5, 2.0)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from napari_scr2st.data import make_sample

    d = tmp_path_factory.mktemp("one_session")
    smp = make_sample(n_spots=300, seed=0)
    smp.section.write_h5ad(d / "section.h5ad")
    smp.reference.write_h5ad(d / "reference.h5ad")
    ids = [str(x) for x in smp.section.obs_names]
    return d, smp, ids[:2], ids[2:8]  # locked, excluded


def _lab_counts(section, table, path):
    """What the lab sends back: counts of the exported spots (the section is fully measured)."""
    ids = table["spot_id"].astype(str).tolist()
    X = section[ids].X.toarray()
    df = pd.DataFrame(X, columns=list(map(str, section.var_names)))
    df.insert(0, "spot_id", ids)
    df.to_csv(path, index=False)
    return path


def _ids(path):
    return pd.read_csv(path)["spot_id"].astype(str).tolist()


def run_api(d, locked, excluded, out):
    from napari_scr2st import io
    from napari_scr2st.config import SamplingSettings
    from napari_scr2st.reference import read_reference
    from napari_scr2st.session import AcquisitionSession

    section = io.read(d / "section.h5ad")
    settings = SamplingSettings(budget=f"{BUDGET}%", rounds=ROUNDS, sampler="greedy").with_weights(WEIGHTS)
    s = AcquisitionSession(section, reference=read_reference(d / "reference.h5ad"), settings=settings, simulate=False)
    s.prepare(encoder="patch-stats")
    s.exclude(excluded)
    s.lock(locked)
    t0, _ = s.export_round(out / "api_r0.csv")
    s.import_results(_lab_counts(section, t0, out / "api_c0.csv"))
    s.export_round(out / "api_r1.csv")
    return _ids(out / "api_r0.csv"), _ids(out / "api_r1.csv")


def run_public_api(d, locked, excluded, out):
    import napari_scr2st as st
    from napari_scr2st.reference import read_reference

    section = st.read(d / "section.h5ad")
    s = st.select(section, reference=read_reference(d / "reference.h5ad"), budget=f"{BUDGET}%", rounds=ROUNDS,
                  sampler="greedy", weights=WEIGHTS, lock=locked, exclude=excluded, simulate=False,
                  encoder="patch-stats")
    t0, _ = s.export_round(out / "pub_r0.csv")
    st.import_counts(s, _lab_counts(section, t0, out / "pub_c0.csv"))
    s.export_round(out / "pub_r1.csv")
    return _ids(out / "pub_r0.csv"), _ids(out / "pub_r1.csv")


def run_cli(d, locked, excluded, out):
    from napari_scr2st.cli import main
    from napari_scr2st.io import read

    common = ["select", str(d / "section.h5ad"), "--reference", str(d / "reference.h5ad"), "--encoder", "patch-stats",
              "--sampler", "greedy", "--budget", f"{BUDGET}%", "--rounds", str(ROUNDS), "--weights",
              ",".join(map(str, WEIGHTS)), "--lock", ",".join(locked), "--exclude", ",".join(excluded),
              "--state", str(out / "cli.npz"), "--quiet"]
    assert main([*common, "--out", str(out / "cli_r0.csv")]) == 0
    t0 = pd.read_csv(out / "cli_r0.csv")
    _lab_counts(read(d / "section.h5ad"), t0, out / "cli_c0.csv")
    assert main(["import-counts", str(out / "cli_c0.csv"), "--state", str(out / "cli.npz")]) == 0
    assert main([*common, "--out", str(out / "cli_r1.csv")]) == 0
    return _ids(out / "cli_r0.csv"), _ids(out / "cli_r1.csv")


def run_docks(d, locked, excluded, out, viewer):
    from napari_scr2st import io
    from napari_scr2st._napari._export_widget import ExportWidget
    from napari_scr2st._napari._sampling_widget import SamplingWidget
    from napari_scr2st.layers import section_layers

    section = io.read(d / "section.h5ad")
    layers = section_layers(section)
    for data, kw, kind in layers:
        layer = getattr(viewer, f"add_{kind}")(data, **kw)
    w = SamplingWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.load_reference(d / "reference.h5ad")
    w.encoder_combo.setCurrentText("patch-stats")
    w.budget_unit.setCurrentText("%")
    w.budget_spin.setValue(BUDGET)
    w.rounds_spin.setValue(ROUNDS)
    w.sampler_combo.setCurrentIndex(w.sampler_combo.findData("greedy"))
    w.set_weights(*WEIGHTS)
    w.prepare()
    s = w.session
    assert s is layer.metadata["scr2st_session"] and s.is_prepared, w.status.text()
    # exclusions drawn as an ROI around the excluded spots, manual picks by clicking
    from napari_scr2st.layers import layer_name, spot_yx

    w.draw_rois()
    ex_layer = viewer.layers[layer_name(s.library, "exclude")]
    yx = spot_yx(s.adata)  # world coordinates of the spots (full-resolution pixels)
    pos = s.adata.obs_names.get_indexer(excluded)
    r = 1.0
    for p in pos:
        corners = [ex_layer.world_to_data(c) for c in (yx[p] - r, yx[p] + r)]
        ex_layer.add_rectangles(np.array(corners))
    w.update_rois()
    assert s.excluded[pos].all() and s.excluded.sum() == len(excluded)
    w.pick_check.setChecked(True)
    for i in s.adata.obs_names.get_indexer(locked):
        assert "manual pick" in w.toggle_pick(int(i))
    e = ExportWidget(viewer)
    viewer.window.add_dock_widget(e)
    e.pending_radio.setChecked(True)
    assert e.export_csv(out / "dock_r0.csv") is not None, e.status.text()
    t0 = pd.read_csv(out / "dock_r0.csv")
    assert e.import_results(_lab_counts(section, t0, out / "dock_c0.csv")) is not None, e.status.text()
    assert e.export_csv(out / "dock_r1.csv") is not None, e.status.text()
    return _ids(out / "dock_r0.csv"), _ids(out / "dock_r1.csv")


def test_api_cli_and_docks_select_the_same_spots(files, tmp_path, make_napari_viewer, sync_workers):
    d, _smp, locked, excluded = files
    api = run_api(d, locked, excluded, tmp_path)
    public = run_public_api(d, locked, excluded, tmp_path)
    cli = run_cli(d, locked, excluded, tmp_path)
    docks = run_docks(d, locked, excluded, tmp_path, make_napari_viewer())
    total = round(BUDGET / 100 * (300 - len(excluded)))  # the budget is a share of the selectable spots
    new = total - len(locked)  # manual picks count toward it; the rest is spread over the rounds
    assert len(api[0]) == len(locked) + (new + 1) // 2 and len(api[1]) == new // 2
    assert set(locked) <= set(api[0]) and not set(excluded) & set(api[0] + api[1]) and not set(api[0]) & set(api[1])
    assert public == api
    assert cli == api
    assert docks == api
