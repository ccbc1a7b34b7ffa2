"""Vision encoders: the offline EfficientNet-Lite0 weights really load (ImageNet top-1 on two
photographs), local checkpoints, random init, and clear errors for hub models offline."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from napari_scr2st.features import encoders  # noqa: E402
from napari_scr2st.features.encoders import (  # noqa: E402
    load_encoder,
    map_state_dict_in_order,
    packaged_lite0_path,
    weights_identity,
)


def _imagenet_batch():
    from PIL import Image
    from skimage import data

    def prep(img):
        return np.asarray(Image.fromarray(img).resize((224, 224), Image.Resampling.BICUBIC))

    return np.stack([prep(data.chelsea()), prep(data.coffee())])


def test_lite0_classifies_imagenet_photos(lite0):
    """Egyptian cat (285) and espresso (967): the packaged weights are loaded correctly."""
    logits = lite0.classify(_imagenet_batch())
    assert logits.shape == (2, 1000)
    assert logits.argmax(axis=1).tolist() == [285, 967]
    prob = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    # with the matching TF-style architecture the predictions are confident (0.77 / 0.90)
    assert prob[0, 285] > 0.6 and prob[1, 967] > 0.8


def test_lite0_encoder_attributes(lite0):
    assert lite0.name == "efficientnet_lite0"
    assert lite0.num_features == 1280
    assert lite0.device.type == "cpu"
    assert lite0.has_classifier
    assert lite0.data_config["mean"] == (0.5, 0.5, 0.5)
    assert lite0.data_config["std"] == (0.5, 0.5, 0.5)
    assert lite0.weights_id == weights_identity("efficientnet_lite0")
    assert lite0.weights_id.startswith("packaged:")
    assert not lite0.model.training and not any(p.requires_grad for p in lite0.model.parameters())


def test_lite0_embed_and_preprocess(lite0):
    batch = _imagenet_batch()
    x = lite0.preprocess(batch)
    assert tuple(x.shape) == (2, 3, 224, 224) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 - 1e-6 and float(x.max()) <= 1.0 + 1e-6  # mean = std = 0.5
    emb = lite0.embed(batch)
    assert emb.shape == (2, 1280) and emb.dtype == np.float32 and np.isfinite(emb).all()
    # pooled features equal the backbone's pre-logits; one image alone gives the same vector
    np.testing.assert_allclose(lite0.embed(batch[1]), emb[1:2], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        lite0.preprocess(batch.astype(np.float32))


def test_packaged_checkpoint_as_explicit_path(lite0):
    """The lukemelas-named file given as a path is mapped the same way as weights='auto'."""
    path = packaged_lite0_path()
    assert path is not None and path.name == "efficientnet-lite0-57934424.pth"
    enc = load_encoder("efficientnet_lite0", weights=str(path), device="cpu")
    for (ka, a), (kb, b) in zip(
        enc.backbone.state_dict().items(), lite0.backbone.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(a, b)
    assert enc.weights_id.startswith("file:")


def test_in_order_mapping_checks_shapes():
    src = {"a.w": torch.zeros(3, 2), "b.w": torch.zeros(4)}
    tgt = {"x.weight": torch.zeros(3, 2), "y.weight": torch.zeros(4)}
    assert list(map_state_dict_in_order(src, tgt)) == ["x.weight", "y.weight"]
    with pytest.raises(RuntimeError, match="shape"):
        map_state_dict_in_order(src, {"x.weight": torch.zeros(3, 2), "y.weight": torch.zeros(5)})
    with pytest.raises(RuntimeError, match="tensors"):
        map_state_dict_in_order(src, {"x.weight": torch.zeros(3, 2)})


def test_local_checkpoint_roundtrip(tmp_path):
    """A state dict saved from a small timm model (nested, DataParallel prefixes) loads back."""
    import timm

    torch.manual_seed(0)
    ref = timm.create_model("test_vit", pretrained=False).eval()
    path = tmp_path / "vit.pth"
    torch.save(
        {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path
    )
    enc = load_encoder("test_vit", weights=path, device="cpu")
    assert enc.weights_id.startswith("file:") and enc.has_classifier
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 255, size=(3, 160, 160, 3), dtype=np.uint8)
    x = enc.preprocess(batch)
    with torch.no_grad():
        expected = ref.forward_head(ref.forward_features(x), pre_logits=True).numpy()
    np.testing.assert_allclose(enc.embed(batch), expected, rtol=1e-5, atol=1e-5)
    # a fixed-input-size model gets other sizes resized by preprocess
    assert enc.fixed_input_size == (160, 160)
    assert enc.embed(batch[:, :64, :64]).shape == (3, enc.num_features)


def test_local_checkpoint_without_head(tmp_path):
    import timm

    headless = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    path = tmp_path / "headless.pt"
    torch.save(headless.state_dict(), path)
    enc = load_encoder("test_efficientnet", weights=str(path), device="cpu")
    assert not enc.has_classifier
    assert enc.embed(np.zeros((1, 64, 64, 3), np.uint8)).shape == (1, enc.num_features)
    with pytest.raises(RuntimeError, match="no classification head"):
        enc.classify(np.zeros((1, 64, 64, 3), np.uint8))


def test_local_checkpoint_wrong_architecture(tmp_path):
    import timm

    path = tmp_path / "eff.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), path)
    with pytest.raises(RuntimeError, match="does not match timm model 'test_vit'"):
        load_encoder("test_vit", weights=path, device="cpu")
    with pytest.raises(FileNotFoundError):
        load_encoder("test_vit", weights=tmp_path / "missing.pth")


def test_random_weights_and_unknown_names():
    enc = load_encoder("test_efficientnet", weights=None, device="cpu")
    assert enc.weights_id is None and weights_identity("resnet18", None) is None
    assert enc.embed(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, enc.num_features)
    with pytest.raises(ValueError, match="unknown timm model"):
        load_encoder("no_such_model_xyz", weights=None)


@pytest.mark.parametrize("name", ["hf-hub:MahmoodLab/UNI", "hf_hub:bioptimus/H-optimus-0"])
def test_hub_model_offline_gives_clear_error(name, monkeypatch):
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # fail fast, no network retries
    with pytest.raises(RuntimeError) as err:
        load_encoder(name, device="cpu")
    msg = str(err.value)
    assert name in msg  # which model
    assert "cache" in msg and "no network" in msg  # why
    assert "HF_HUB_OFFLINE" in msg and "weights='path/to/file.pth'" in msg and "login" in msg  # how
    assert weights_identity(name) == f"pretrained:{name}"


def test_module_imports_without_torch_at_top_level():
    import inspect

    src = inspect.getsource(encoders)
    top = [ln for ln in src.splitlines() if ln.startswith(("import ", "from "))]
    assert not any("torch" in ln or "timm" in ln for ln in top), top
