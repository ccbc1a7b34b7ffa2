"""Training engine, predictor, checkpoints/resume, cancellation, prediction and inspection."""

import numpy as np
import pytest
import torch

from napari_scr2st.data.expression import log1p_normalized
from napari_scr2st.evaluation import regression_metrics
from napari_scr2st.model import (
    SCR2NetPredictor,
    TrainConfig,
    inspect_spot,
    iter_train,
    predict_expression,
)
from napari_scr2st.model.protocol import ExpressionPredictor
from napari_scr2st.model.train import CHECKPOINT_NAME, METRICS_NAME, load_checkpoint
from napari_scr2st.progress import CancelToken, Progress, drive

# the network on its own (the within-slide correction is tested in test_within_slide.py)
SMALL = dict(n_genes=60, hidden_dim=64, proj_dim=32, device="cpu", batch_size=32, seed=0, spatial_residual=False)


def _cfg(**kw):
    return TrainConfig(**{**SMALL, **kw})


@pytest.fixture(scope="module")
def fitted(section, half_mask):
    """One trained full-mode predictor shared by the read-only tests."""
    return SCR2NetPredictor(_cfg(epochs=15)).fit(section, half_mask)


def _test_pcc(pred, section, mask):
    y = log1p_normalized(section, pred.genes, rows=~mask)
    return regression_metrics(y, pred.predict(section)[~mask])["pcc_all"]


@pytest.mark.parametrize("mode", ["full", "regression", "retrieval"])
def test_modes_learn_something(section, half_mask, mode):
    pred = SCR2NetPredictor(_cfg(mode=mode, epochs=15)).fit(section, half_mask)
    assert isinstance(pred, ExpressionPredictor)
    out = pred.predict(section)
    assert out.shape == (section.n_obs, 60) and out.dtype == np.float32 and np.isfinite(out).all()
    # compartments are visible in the stand-in embedding: held-out spots are predicted well
    assert _test_pcc(pred, section, half_mask) > 0.3
    # and better than a model whose image inputs carry no information
    noise = section.copy()
    noise.obsm["X_vision"] = (
        np.random.default_rng(0).normal(size=noise.obsm["X_vision"].shape).astype(np.float32)
    )
    pred0 = SCR2NetPredictor(_cfg(mode=mode, epochs=15)).fit(noise, half_mask)
    assert _test_pcc(pred, section, half_mask) > _test_pcc(pred0, noise, half_mask) + 0.15


def test_options_ar_and_energy_run(section, half_mask):
    pred = SCR2NetPredictor(_cfg(epochs=4, adaptive_resampling=True, energy_loss=True)).fit(
        section, half_mask
    )
    h = pred.history[-1]
    assert np.isfinite(h["energy"]) and np.isfinite(h["loss"])
    assert _test_pcc(pred, section, half_mask) > 0.2


def test_progress_every_step_with_loss_and_val_pcc(section, half_mask):
    events = []
    cfg = _cfg(epochs=2)
    result = drive(iter_train(section, half_mask, cfg), use_tqdm=False, callback=events.append)
    steps = [e for e in events if "done" not in e.message]
    n_fit = len(result.data.fit)
    per_epoch = max(1, n_fit // cfg.batch_size)  # last short batch is its own step unless of size 1
    assert len(steps) == result.history[0]["steps"] + result.history[1]["steps"]
    assert result.history[0]["steps"] in (per_epoch, per_epoch + 1)
    assert all(isinstance(e, Progress) and {"loss", "val_pcc"} <= set(e.metrics) for e in events)
    assert [e.step for e in steps] == list(range(1, len(steps) + 1))
    assert steps[-1].total == len(steps)
    assert np.isnan(steps[0].metrics["val_pcc"]) and np.isfinite(steps[-1].metrics["val_pcc"])


def test_fit_reads_only_training_counts_and_predict_reads_none(section, half_mask):
    a = section.copy()
    p1 = SCR2NetPredictor(_cfg(epochs=3)).fit(a, half_mask)
    b = section.copy()
    X = b.X.tolil()
    X[np.flatnonzero(~half_mask), :] = 12345  # counts of unmeasured spots are garbage
    b.X = X.tocsr()
    p2 = SCR2NetPredictor(_cfg(epochs=3)).fit(b, half_mask)
    assert p1.genes == p2.genes
    np.testing.assert_array_equal(p1.predict(a), p2.predict(b))
    c = section.copy()
    c.X = c.X * 0  # predict must not look at counts at all
    np.testing.assert_array_equal(p1.predict(a), p1.predict(c))


def test_measured_spots_do_not_retrieve_themselves(fitted, section, half_mask):
    ex = fitted.exclusion(section)
    assert (ex[half_mask] >= 0).all() and (ex[~half_mask] == -1).all()
    out = fitted.infer(section, np.flatnonzero(half_mask), return_neighbours=True)
    assert (out.index != ex[half_mask][:, None]).all()


def test_alpha_blends_regression_and_retrieval(fitted, section):
    o = fitted.infer(section, np.arange(20), alpha=0.4)
    np.testing.assert_allclose(o.final, 0.6 * o.regression + 0.4 * o.soft, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        fitted.predict(section, alpha=0.0)[:20], o.regression, rtol=1e-6, atol=1e-6
    )


def test_save_load_roundtrip(fitted, section, tmp_path):
    path = fitted.save(tmp_path / "model.pt")
    loaded = SCR2NetPredictor.load(path)
    assert loaded.genes == fitted.genes and loaded.config == fitted.config
    np.testing.assert_allclose(
        loaded.predict(section), fitted.predict(section), rtol=1e-6, atol=1e-6
    )
    torch.load(path, weights_only=True)  # tensors and plain values only


def test_cancel_keeps_last_completed_epoch(section, half_mask, tmp_path):
    token = CancelToken()
    cfg = _cfg(epochs=5, checkpoint_dir=str(tmp_path))
    gen = iter_train(section, half_mask, cfg, cancel=token)
    n_epoch_ends = 0
    try:
        while True:
            ev = next(gen)
            if "done" in ev.message:
                n_epoch_ends += 1
                if n_epoch_ends == 2:
                    ck = load_checkpoint(tmp_path / CHECKPOINT_NAME)
            elif n_epoch_ends == 2 and ev.step > 0:
                token.cancel()  # one step into epoch 3
    except StopIteration as stop:
        result = stop.value
    assert result.cancelled and result.epochs_completed == 2
    assert ck["epoch"] == 1
    for k, v in result.net.state_dict().items():
        torch.testing.assert_close(v, ck["model"][k])
    assert (tmp_path / METRICS_NAME).is_file()


def test_resume_equals_uninterrupted(section, half_mask, tmp_path):
    kw = dict(
        epochs=4, adaptive_resampling=True, energy_loss=True, checkpoint_dir=str(tmp_path / "a")
    )
    full = drive(iter_train(section, half_mask, _cfg(**kw)), use_tqdm=False)
    # stop after 2 epochs (cancel in epoch 3), then resume from the epoch-2 checkpoint
    token = CancelToken()
    gen = iter_train(
        section, half_mask, _cfg(**{**kw, "checkpoint_dir": str(tmp_path / "b")}), cancel=token
    )
    done = 0
    for ev in gen:
        if "done" in ev.message:
            done += 1
        elif done == 2:
            token.cancel()
    resumed = drive(
        iter_train(section, half_mask, _cfg(**kw), resume_from=tmp_path / "b" / CHECKPOINT_NAME),
        use_tqdm=False,
    )
    assert resumed.epochs_completed == 4 and len(resumed.history) == 4
    for k, v in full.net.state_dict().items():
        torch.testing.assert_close(resumed.net.state_dict()[k], v, rtol=0, atol=0)
    assert resumed.history[-1]["val_pcc"] == pytest.approx(full.history[-1]["val_pcc"])


def test_keep_best(section, half_mask):
    r = drive(iter_train(section, half_mask, _cfg(epochs=3, keep="best")), use_tqdm=False)
    assert r.weights == "best"


def test_predict_expression_writes_anndata(fitted, section):
    a = section.copy()
    predict_expression(fitted, a, mc_samples=4)
    df = a.obsm["X_pred"]
    assert list(df.columns) == fitted.genes and (df.index == a.obs_names).all()
    sd = a.obsm["X_pred_sd"].to_numpy()
    assert sd.shape == df.shape and (sd >= 0).all() and sd.mean() > 0
    np.testing.assert_allclose(a.obs["pred_uncertainty"].to_numpy(), sd.mean(1), rtol=1e-5)
    info = a.uns["scr2st_prediction"]
    assert info["genes"] == fitted.genes and info["mc_samples"] == 4 and info["mode"] == "full"
    np.testing.assert_allclose(df.to_numpy(), fitted.predict(a), rtol=1e-6, atol=1e-6)


def test_inspect_spot(fitted, section, half_mask):
    measured = int(np.flatnonzero(half_mask)[0])
    r = inspect_spot(fitted, section, measured, k=6, m=1)
    assert len(r.neighbours) == 6 and r.k == 6 and r.m == 1
    sims = [n.similarity for n in r.neighbours]
    assert sims == sorted(sims, reverse=True)
    assert all(n.spot_id != section.obs_names[measured] for n in r.neighbours)
    kept = [n for n in r.neighbours if n.kept]
    assert len({n.cell_type for n in kept}) == 1 and r.kept_types == [kept[0].cell_type]
    bank = fitted.bank.expr.numpy()
    np.testing.assert_allclose(
        r.soft_label, bank[[n.bank_index for n in kept]].mean(0), rtol=1e-5, atol=1e-6
    )
    a = fitted.config.alpha
    np.testing.assert_allclose(
        r.blended, (1 - a) * r.regression + a * r.soft_label, rtol=1e-5, atol=1e-5
    )
    truth = log1p_normalized(section, fitted.genes, rows=[measured])[0]
    np.testing.assert_allclose(r.measured, truth, rtol=1e-6)
    assert all(section.obs_names[n.obs_index] == n.spot_id for n in r.neighbours)
    # edit k and m live, one gene, an unmeasured spot by id
    spot = section.obs_names[np.flatnonzero(~half_mask)[0]]
    g = fitted.genes[0]
    r2 = inspect_spot(fitted, section, spot, gene=g, k=3, m=3, alpha=0.0)
    assert len(r2.neighbours) == 3 and all(n.kept for n in r2.neighbours)
    assert (
        r2.measured is None
        and r2.soft_label.shape == (1,)
        and r2.blended == pytest.approx(r2.regression)
    )
    with pytest.raises(KeyError):
        inspect_spot(fitted, section, spot, gene="NOPE")


def test_config_validation():
    with pytest.raises(ValueError):
        TrainConfig(mode="bogus").validate()
    with pytest.raises(ValueError):
        TrainConfig(alpha=1.5).validate()
    with pytest.raises(ValueError):
        SCR2NetPredictor(k=0)


def test_missing_embedding_is_a_clear_error(section, half_mask):
    a = section.copy()
    del a.obsm["X_vision"]
    with pytest.raises(KeyError, match="compute vision embeddings"):
        SCR2NetPredictor(_cfg(epochs=1)).fit(a, half_mask)


def test_without_cell_types_every_neighbour_is_kept(section, half_mask):
    pred = SCR2NetPredictor(_cfg(epochs=2, cell_type_key=None)).fit(section, half_mask)
    r = inspect_spot(pred, section, 0, m=1)
    assert all(n.kept and n.cell_type is None for n in r.neighbours)
