"""``scr2st train / predict / evaluate`` and the demo step, on a tiny synthetic h5ad."""

import json

import numpy as np
import pandas as pd
import pytest

from napari_scr2st.cli import main

TRAIN = ["--epochs", "3", "--device", "cpu", "--n-genes", "40", "--batch-size", "32", "--quiet"]


@pytest.fixture(scope="module")
def h5ad(section, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "tiny.h5ad"
    section.write_h5ad(path)
    return path


def test_train_predict_evaluate(h5ad, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", str(h5ad), "--train-fraction", "0.5", "--out", str(out), *TRAIN]) == 0
    assert {"model.pt", "metrics.json", "last.pt"} <= {p.name for p in out.iterdir()}
    rec = json.loads((out / "metrics.json").read_text())
    assert (
        rec["format"] == "scr2st-train-metrics"
        and rec["world_size"] == 1
        and rec["epochs_completed"] == 3
    )
    assert rec["n_genes"] == 40 and len(rec["history"]) == 3

    pred = tmp_path / "pred.h5ad"
    assert (
        main(
            [
                "predict",
                "--model",
                str(out),
                str(h5ad),
                "--out",
                str(pred),
                "--mc-samples",
                "3",
                "--quiet",
            ]
        )
        == 0
    )
    import anndata as ad

    a = ad.read_h5ad(pred)
    assert a.obsm["X_pred"].shape == (a.n_obs, 40) and "X_pred_sd" in a.obsm
    assert 0 < a.obs["scr2st_measured"].sum() < a.n_obs

    mfile = tmp_path / "metrics.json"
    capsys.readouterr()
    assert main(["evaluate", str(pred), "--out", str(mfile)]) == 0
    printed = capsys.readouterr().out
    assert "pcc_all" in printed and "unmeasured spots" in printed
    m = json.loads(mfile.read_text())
    assert m["n_spots"] == int((~a.obs["scr2st_measured"]).sum()) and m["pcc_all"] > 0.2


def test_train_mask_from_selection_csv(h5ad, section, tmp_path):
    ids = section.obs_names[::3]
    csv = tmp_path / "sel.csv"
    pd.DataFrame({"spot_id": ids, "selected": True}).to_csv(csv, index=False)
    out = tmp_path / "m"
    assert (
        main(
            [
                "train",
                str(h5ad),
                "--train-mask",
                str(csv),
                "--out",
                str(out),
                "--mode",
                "regression",
                *TRAIN,
            ]
        )
        == 0
    )
    rec = json.loads((out / "metrics.json").read_text())
    assert rec["n_measured"] == len(ids)


def test_cli_errors_are_one_line(h5ad, tmp_path, capsys):
    assert main(["train", str(h5ad), "--out", str(tmp_path / "x"), *TRAIN]) == 2
    assert "--train-mask" in capsys.readouterr().err
    assert (
        main(["train", str(h5ad), "--train-sections", "NOPE", "--out", str(tmp_path / "x"), *TRAIN])
        == 2
    )


def test_demo_model_step(section, half_mask):
    a = section.copy()
    m = np.array(half_mask)
    metrics = pytest.importorskip("napari_scr2st.cli._model").demo_model_step(
        a, m, epochs=5, n_genes=40, mc_samples=2
    )
    assert {
        "pcc_all",
        "pcc_heg50",
        "pcc_hvg50",
        "mse",
        "mae",
        "n_train",
        "n_test",
        "train_s",
    } <= set(metrics)
    assert metrics["n_test"] == int((~m).sum()) and metrics["pcc_all"] > 0.2
    assert "X_pred" in a.obsm and "pred_uncertainty" in a.obs
