"""The gene panel (model.panel.select_panel): HEG, detection-filtered HVG and their union, chosen
on the training spots only; the configured default reaches training and the CLI."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from napari_scr2st.config import DEFAULT_PANEL_METHOD, PANEL_METHODS, TrainConfig
from napari_scr2st.model.panel import select_panel


def _hand_made() -> ad.AnnData:
    """20 spots x 8 genes with known ranks.

    hi0, hi1: high, flat (the HEG); var2, var3: zero in half of the spots, large elsewhere (the
    HVG); rare4: huge in 2 of 20 spots (the most variable, but detected in 10 % < 3 spots);
    low5-low7: low, flat background.
    """
    n = 20
    on = np.arange(n) % 2 == 0
    X = np.zeros((n, 8))
    X[:, 0] = 300
    X[:, 1] = 200
    X[:, 2] = np.where(on, 60, 0)
    X[:, 3] = np.where(~on, 40, 0)
    X[[3, 7], 4] = 150
    X[:, 5] = 5
    X[:, 6] = 4
    X[:, 7] = 3
    genes = ["hi0", "hi1", "var2", "var3", "rare4", "low5", "low6", "low7"]
    return ad.AnnData(X=sp.csr_matrix(X), obs=pd.DataFrame(index=[f"s{i}" for i in range(n)]),
                      var=pd.DataFrame(index=genes))


ALL = np.ones(20, dtype=bool)


def test_heg_hvg_and_the_detection_filter():
    a = _hand_made()
    assert select_panel(a, ALL, 2, method="heg") == ["hi0", "hi1"]
    hvg = select_panel(a, ALL, 2, method="hvg")
    assert hvg == ["var2", "var3"]
    # rare4 is detected in 2 spots (< 10 % and < min_spots=3): never a candidate, whatever n
    for method in PANEL_METHODS:
        assert "rare4" not in select_panel(a, ALL, 8, method=method)
        assert len(select_panel(a, ALL, 8, method=method)) == 7  # every candidate, no more
    # without the filter it is a candidate again
    for method in PANEL_METHODS:
        assert "rare4" in select_panel(a, ALL, 8, method=method, min_frac=0.0, min_spots=1)
    # a stricter detection rate drops the half-detected genes too
    assert set(select_panel(a, ALL, 8, method="hvg", min_frac=0.6)) == {"hi0", "hi1", "low5", "low6", "low7"}


def test_union_is_half_heg_half_hvg_deduplicated_and_filled():
    a = _hand_made()
    heg = select_panel(a, ALL, 2, method="heg")
    u = select_panel(a, ALL, 4, method="union")
    assert len(u) == len(set(u)) == 4
    assert set(heg) <= set(u) and {"var2", "var3"} <= set(u)
    assert u == [g for g in a.var_names if g in set(u)]  # var_names order
    # odd n: ceil(n/2) HEG, then HVG until full
    u3 = select_panel(a, ALL, 3, method="union")
    assert len(u3) == 3 and set(heg) <= set(u3) and len(set(u3) & {"var2", "var3"}) == 1
    # when the HVG overlap the HEG, the union still fills to n from the HVG ranking
    big = select_panel(a, ALL, 6, method="union")
    assert len(big) == 6 and "rare4" not in big


def test_panels_are_deterministic_and_sized_on_real_like_counts(section):
    train = np.zeros(section.n_obs, dtype=bool)
    train[::2] = True
    for method in PANEL_METHODS:
        p = select_panel(section, train, 40, method=method)
        assert len(p) == len(set(p)) == 40
        assert select_panel(section.copy(), train.copy(), 40, method=method) == p
    h, v, u = (set(select_panel(section, train, 40, method=m)) for m in ("heg", "hvg", "union"))
    assert len(u & h) >= 20 and len(u - h) <= 20 and (u - h) <= v | set(select_panel(section, train, 80,
                                                                                      method="hvg"))


@pytest.mark.parametrize("method", PANEL_METHODS)
def test_panel_ignores_the_test_spots(section, method):
    """Permuting, zeroing or inflating the counts of test spots leaves the panel unchanged."""
    a = section.copy()
    train = np.zeros(a.n_obs, dtype=bool)
    train[np.random.default_rng(1).choice(a.n_obs, a.n_obs // 3, replace=False)] = True
    panel = select_panel(a, train, 40, method=method)
    X = a.X.toarray() if sp.issparse(a.X) else np.array(a.X)
    rng = np.random.default_rng(2)
    test = np.flatnonzero(~train)
    changed = X.copy()
    changed[test] = changed[test][:, rng.permutation(X.shape[1])]  # genes shuffled within test spots
    changed[test[:10]] *= 50
    changed[test[10:20]] = 0
    b = a.copy()
    b.X = sp.csr_matrix(changed)
    assert not np.allclose(changed, X)
    assert select_panel(b, train, 40, method=method) == panel
    # the same change on TRAINING spots does move it (the test is sensitive)
    c = a.copy()
    moved = X.copy()
    tr = np.flatnonzero(train)
    moved[tr] = moved[tr][:, rng.permutation(X.shape[1])]
    c.X = sp.csr_matrix(moved)
    assert select_panel(c, train, 40, method=method) != panel


def test_bad_panel_requests_fail_with_one_line():
    a = _hand_made()
    with pytest.raises(ValueError, match="panel method must be one of heg, hvg, union"):
        select_panel(a, ALL, 2, method="top")
    with pytest.raises(ValueError, match="n_genes"):
        select_panel(a, ALL, 0)
    with pytest.raises(ValueError, match="boolean mask of the 20 spots"):
        select_panel(a, ALL[:5], 2)
    with pytest.raises(ValueError, match="no gene is detected"):
        select_panel(a, ALL, 2, min_frac=1.1)
    with pytest.raises(ValueError, match="panel_method"):
        TrainConfig(panel_method="top").validate()


def test_the_default_panel_kind_reaches_training_and_the_cli(section, half_mask):
    import inspect

    from napari_scr2st.cli import build_parser
    from napari_scr2st.model.train import prepare_data

    assert DEFAULT_PANEL_METHOD in PANEL_METHODS
    assert TrainConfig().panel_method == DEFAULT_PANEL_METHOD
    assert inspect.signature(select_panel).parameters["method"].default == DEFAULT_PANEL_METHOD
    p = build_parser()
    assert p.parse_args(["train", "--out", "m"]).panel_method == DEFAULT_PANEL_METHOD
    for other in PANEL_METHODS:
        assert p.parse_args(["train", "--out", "m", "--panel", other]).panel_method == other
        cfg = TrainConfig(n_genes=30, panel_method=other, cell_type_key=None)
        data = prepare_data(section, half_mask, cfg)
        assert data.panel == select_panel(section, half_mask, 30, method=other)
        assert data.targets.shape == (int(half_mask.sum()), 30)
