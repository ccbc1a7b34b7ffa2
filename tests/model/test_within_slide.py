"""SCR2Net with the within-slide correction: fitted from out-of-fold residuals, applied where the
section has measured spots, saved with the model; the benchmark harness runs end to end."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def section():
    from napari_scr2st.data import make_sample
    from napari_scr2st.features import ensure_vision_embedding

    a = make_sample(300, seed=3).section
    ensure_vision_embedding(a, "patch-stats")
    return a


def test_predictor_fits_applies_and_saves_the_correction(section, tmp_path):
    from napari_scr2st.config import TrainConfig
    from napari_scr2st.model import SCR2NetPredictor

    a = section
    mask = np.zeros(a.n_obs, dtype=bool)
    mask[np.random.default_rng(0).choice(a.n_obs, 60, replace=False)] = True
    cfg = TrainConfig(epochs=3, n_genes=30, batch_size=32, seed=0, cell_type_key=None)
    p = SCR2NetPredictor(cfg).fit(a, mask)
    assert p.spatial is not None and len(p.spatial["keys"]) == 60
    m = p.spatial["model"]
    assert m.loo_mse <= m.base_loo_mse and m.bandwidth > 0
    plain = SCR2NetPredictor(cfg.replace(spatial_residual=False)).fit(a, mask)
    assert plain.spatial is None
    base = p.infer(a).final
    pred = p.predict(a)
    corr = p.spatial_correction(a)
    if np.isfinite(m.shrinkage):
        assert np.allclose(pred, base + corr, atol=1e-5) and np.abs(corr).max() > 0
    else:
        assert corr is None and np.allclose(pred, base, atol=1e-6)
    # another section (no measured spot there): histology only
    b = a.copy()
    b.obs["section"] = "OTHER"
    c = p.spatial_correction(b)
    assert c is None or np.abs(c).max() == 0
    # saved with the model
    p.save(tmp_path / "m.pt")
    q = SCR2NetPredictor.load(tmp_path / "m.pt")
    assert np.allclose(q.predict(a), pred, atol=1e-5)


def test_within_slide_harness_scores_every_model_on_one_test_set(section):
    from napari_scr2st.benchmark.within_slide import COLUMNS, MODELS, iter_within_slide, test_split
    from napari_scr2st.progress import drive

    df = drive(iter_within_slide({"SYN": section}, budgets=[0.2], seeds=[0], n_genes=30, epochs=2, folds=2,
                                 dataset="synthetic"), use_tqdm=False)
    assert list(df.columns) == COLUMNS and set(df["model"]) == set(MODELS)
    assert (df["n_test"] == int(test_split(section).sum())).all() and df["pcc_all"].between(-1, 1).all()
    assert np.array_equal(test_split(section), test_split(section.copy()))  # fixed per section
