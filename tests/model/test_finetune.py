"""FULL PATH: fine-tune a (tiny, randomly initialised) timm backbone on crops, end to end."""

import numpy as np
import pytest

from napari_scr2st.model import SCR2NetPredictor

pytest.importorskip("napari_scr2st.features.encoders")
pytest.importorskip("timm")


def test_finetune_tiny_backbone_and_roundtrip(section, half_mask, tmp_path):
    a = section.copy()
    del a.obsm["X_vision"]  # the fine-tune path reads the image, not the embedding
    pred = SCR2NetPredictor(
        fine_tune=True, backbone="random:test_efficientnet", image_size=32, crop_px=24,
        epochs=2, n_genes=30, hidden_dim=32, proj_dim=16, batch_size=32, device="cpu",
    ).fit(a, half_mask)  # fmt: skip
    assert pred.net.backbone is not None
    # the backbone was trained: its weights moved away from the (seeded) initial ones
    import torch

    from napari_scr2st.model.train import build_net

    torch.manual_seed(pred.config.seed)
    init = build_net(pred.config, None, 30).backbone.state_dict()
    trained = pred.net.backbone.state_dict()
    moved = [k for k, v in init.items() if v.is_floating_point() and not torch.equal(v, trained[k])]
    assert len(moved) > len(init) // 2
    out = pred.predict(a)
    assert out.shape == (a.n_obs, 30) and np.isfinite(out).all()
    loaded = SCR2NetPredictor.load(pred.save(tmp_path / "ft.pt"))
    np.testing.assert_allclose(loaded.predict(a), out, rtol=1e-5, atol=1e-5)
