"""Group-aware splits never put one group on both sides."""

import numpy as np
import pytest

from napari_scr2st.evaluation import (
    assert_disjoint_groups,
    leave_one_patient_out,
    random_budget_mask,
    train_test_by_group,
)

GROUPS = np.array(["A", "A", "B", "B", "B", "C"])


def test_train_test_by_group():
    tr, te = train_test_by_group(GROUPS, ["B"])
    assert te.tolist() == [False, False, True, True, True, False]
    assert tr.tolist() == [True, True, False, False, False, True]
    tr, te = train_test_by_group(GROUPS, ["C"], train_groups=["A"])
    assert tr.sum() == 2 and te.sum() == 1 and not (tr | te)[2:5].any()


def test_unknown_group_is_an_error():
    with pytest.raises(KeyError):
        train_test_by_group(GROUPS, ["Z"])


def test_leakage_is_detected():
    tr = np.array([True, False, True, False, False, False])
    te = np.array([False, True, False, True, False, False])
    with pytest.raises(ValueError, match="both sides"):
        assert_disjoint_groups(GROUPS, tr, te)
    with pytest.raises(ValueError, match="both train and test"):
        assert_disjoint_groups(GROUPS, tr, tr)


def test_leave_one_patient_out_covers_every_group_once():
    folds = list(leave_one_patient_out(GROUPS))
    assert [f[0] for f in folds] == ["A", "B", "C"]
    total = np.zeros(len(GROUPS), dtype=int)
    for name, tr, te in folds:
        assert set(GROUPS[te]) == {name} and name not in set(GROUPS[tr])
        total += te
    assert (total == 1).all()


def test_leave_one_patient_out_from_adata(section_like):
    folds = list(leave_one_patient_out(section_like, key="patient"))
    assert len(folds) == 2


@pytest.fixture
def section_like():
    import anndata as ad
    import pandas as pd

    a = ad.AnnData(X=np.zeros((4, 1), dtype=np.float32))
    a.obs["patient"] = pd.Categorical(["P1", "P1", "P2", "P2"])
    return a


def test_random_budget_mask():
    pool = np.array([True] * 10 + [False] * 10)
    m = random_budget_mask(pool, 0.3, seed=1)
    assert m.sum() == 3 and not m[10:].any()
    assert (m == random_budget_mask(pool, 0.3, seed=1)).all()
    assert random_budget_mask(pool, 5, seed=0).sum() == 5
    with pytest.raises(ValueError):
        random_budget_mask(pool, 11)
