"""The public API (napari_scr2st.read/embed/fit_reference/select/import_counts/train/predict/evaluate)."""

import subprocess
import sys

import numpy as np
import pandas as pd


def test_importing_the_package_loads_nothing_heavy():
    code = ("import sys, napari_scr2st as n; assert callable(n.select.__call__); "
            "print([m for m in ('torch', 'scanpy', 'napari', 'qtpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", "import sys, napari_scr2st; "
                          "print([m for m in ('numpy', 'torch', 'scanpy', 'napari') if m in sys.modules])"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "torch" not in out.stdout and "napari" not in out.stdout


def test_the_whole_job_through_the_api(tmp_path):
    import napari_scr2st as st
    from napari_scr2st.data import make_sample

    smp = make_sample(n_spots=300, seed=1)
    a, ref = smp.section, smp.reference
    assert st.embed(a, "patch-stats") and a.obsm["X_vision"].shape[0] == a.n_obs
    space = st.fit_reference(ref, a)
    assert space.n_clusters >= 10 and space.n_types == ref.obs["celltype_major"].nunique()

    # simulation: every round is run on the section's own (held back) counts
    s = st.select(a, space=space, budget="20%", rounds=2, sampler="kcenter", seed=0)
    assert s.rounds_done and s.committed.measured.sum() == 60 and len(s.history) == 2
    measured = s.committed.measured.copy()

    # real use: the first round is committed for the lab; its counts come back by import
    s2 = st.select(a, space=space, budget="20%", rounds=2, sampler="kcenter", seed=0, simulate=False)
    pending = np.flatnonzero(s2.committed.pending)
    assert len(pending) == 30 and not s2.committed.measured.any()
    ids = a.obs_names[pending]
    df = pd.DataFrame(a[ids].X.toarray(), columns=list(a.var_names))
    df.insert(0, "spot_id", list(ids))
    df.to_csv(tmp_path / "lab.csv", index=False)
    idx = st.import_counts(s2, tmp_path / "lab.csv")
    assert sorted(idx.tolist()) == sorted(pending.tolist()) and s2.committed.measured.sum() == 30
    # the same picks as the simulation's first round (one session, one seed)
    assert set(pending) <= set(np.flatnonzero(measured))

    pred = st.train(a, measured, epochs=3, n_genes=40, batch_size=32, backbone="efficientnet_lite0")
    out = st.predict(pred, a)
    assert out.shape == (a.n_obs, 40) and np.isfinite(out.to_numpy()).all()
    m = st.evaluate(a, ~measured)
    assert {"pcc_all", "mse", "mae"} <= set(m) and -1 <= m["pcc_all"] <= 1 and m["n_spots"] == int((~measured).sum())
