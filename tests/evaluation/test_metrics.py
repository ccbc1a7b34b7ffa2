"""Metrics against hand-computed values."""

import math

import numpy as np
import pandas as pd
import pytest

from napari_scr2st.evaluation import (
    evaluate_adata,
    format_metrics_table,
    pearson_per_gene,
    regression_metrics,
    top_genes,
)


def test_pearson_hand_values():
    t = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    p = np.array([[2.0, 3.0], [4.0, 2.0], [6.0, 1.0]])
    # gene 0: perfectly linear -> 1; gene 1: reversed -> -1
    np.testing.assert_allclose(pearson_per_gene(t, p), [1.0, -1.0])
    # a hand example: x = (1, 2, 3, 4), y = (1, 3, 2, 4): cov = 4, var_x = 5, var_y = 5 -> r = 0.8
    r = pearson_per_gene(np.array([[1.0], [2], [3], [4]]), np.array([[1.0], [3], [2], [4]]))
    assert r[0] == pytest.approx(0.8)


def test_constant_truth_is_nan_and_excluded_constant_prediction_is_zero():
    t = np.array([[1.0, 5.0, 0.0], [2.0, 5.0, 1.0], [3.0, 5.0, 2.0]])
    p = np.array([[1.0, 1.0, 7.0], [2.0, 2.0, 7.0], [3.0, 3.0, 7.0]])
    r = pearson_per_gene(t, p)
    assert r[0] == pytest.approx(1.0)
    assert math.isnan(r[1])  # truth constant: undefined, left out
    assert r[2] == 0.0  # prediction constant, truth varies: no information
    m = regression_metrics(t, p)
    assert m["pcc_all"] == pytest.approx(0.5)  # mean of (1, 0), the NaN gene left out
    assert m["n_genes_scored"] == 2


def test_all_constant_gives_nan_not_error():
    t = np.ones((4, 3))
    m = regression_metrics(t, t)
    assert math.isnan(m["pcc_all"]) and m["mse"] == 0.0 and m["mae"] == 0.0


def test_mse_mae_hand_values():
    t = np.array([[0.0, 1.0], [2.0, 3.0]])
    p = np.array([[1.0, 1.0], [2.0, 1.0]])
    m = regression_metrics(t, p)
    assert m["mse"] == pytest.approx((1 + 0 + 0 + 4) / 4)
    assert m["mae"] == pytest.approx((1 + 0 + 0 + 2) / 4)


def test_top_genes_by_truth_with_stable_ties():
    t = np.array([[1.0, 3.0, 3.0, 0.0], [1.0, 3.0, 3.0, 4.0]])
    assert list(top_genes(t, 2, "mean")) == [1, 2]  # tie between 1 and 2 -> column order
    assert list(top_genes(t, 1, "var")) == [3]


def test_heg_hvg_subsets_use_the_truth():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(30, 60))
    t[:, :10] += 5.0  # highly expressed
    t[:, 50:] *= 10.0  # highly variable
    p = t.copy()
    p[:, 10:50] = rng.normal(size=(30, 40))  # uninformative for the middle genes
    m = regression_metrics(t, p, n_top=10)
    assert m["pcc_heg50"] == pytest.approx(1.0)
    assert m["pcc_hvg50"] == pytest.approx(1.0)
    assert m["pcc_all"] < 0.5


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        pearson_per_gene(np.zeros((3, 2)), np.zeros((3, 3)))


def test_evaluate_adata_reads_truth_of_masked_spots():
    import anndata as ad
    import scipy.sparse as sp

    counts = np.array([[10, 0, 5], [0, 10, 5], [5, 5, 10], [10, 10, 0]], dtype=np.float32)
    a = ad.AnnData(X=sp.csr_matrix(counts), var=pd.DataFrame(index=["g1", "g2", "g3"]))
    a.obs_names = [f"s{i}" for i in range(4)]
    total = counts.sum(1, keepdims=True)
    truth = np.log1p(counts / total * 1e4)
    a.obsm["X_pred"] = pd.DataFrame(truth[:, :2] * 2 + 1, index=a.obs_names, columns=["g1", "g2"])
    mask = np.array([True, True, True, False])
    m = evaluate_adata(a, mask)
    assert m["n_spots"] == 3 and m["n_genes"] == 2
    assert m["pcc_all"] == pytest.approx(1.0)
    exp = np.mean((truth[:3, :2] - (truth[:3, :2] * 2 + 1)) ** 2)
    assert m["mse"] == pytest.approx(exp, rel=1e-5)


def test_format_table():
    s = format_metrics_table(
        {"a": {"pcc_all": 0.5, "pcc_heg50": (0.1, 0.02), "pcc_hvg50": 0.3, "mse": 1.0, "mae": 0.5}}
    )
    assert "0.100±0.020" in s and s.splitlines()[0].startswith("name")
