"""compute_vision_embeddings: shape, separability of synthetic compartments, on-disk cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

from napari_scr2st.data.model import concat_sections  # noqa: E402
from napari_scr2st.features import compute_vision_embeddings, encoders, iter_vision_embeddings  # noqa: E402
from napari_scr2st.features.cache import default_cache_dir, image_identity  # noqa: E402
from napari_scr2st.progress import Progress, drive  # noqa: E402


@pytest.fixture(scope="module")
def embedded(lite0, sample300, tmp_path_factory):
    """The 300-spot synthetic section embedded once (224 px crops, small batches)."""
    adata = sample300.copy()
    cache = tmp_path_factory.mktemp("emb_cache")
    events: list[Progress] = []
    X = compute_vision_embeddings(
        adata, lite0, batch_size=16, cache_dir=cache, progress=events.append
    )
    return adata, X, cache, events


def _counting_loader(monkeypatch, encoder):
    calls = []

    def fake(name, **kwargs):
        calls.append(name)
        return encoder

    monkeypatch.setattr(encoders, "load_encoder", fake)
    return calls


@pytest.mark.slow  # embeds 300 crops at 224 px once (module fixture)
def test_embedding_shape_and_metadata(embedded):
    adata, X, cache, events = embedded
    assert X.shape == (adata.n_obs, 1280) and X.dtype == np.float32 and np.isfinite(X).all()
    assert adata.obsm["X_vision"] is X
    meta = adata.uns["vision_embedding"]
    assert meta["model"] == "efficientnet_lite0"
    assert meta["crop_px"] == 32 and meta["out_size"] == 224  # 2 x the 16 px spot diameter
    assert len(meta["cache_key"]) == 32
    assert (cache / f"{meta['cache_key']}.npy").is_file()
    sidecar = json.loads((cache / f"{meta['cache_key']}.json").read_text())
    assert sidecar["crop_px"] == 32 and sidecar["shape"] == [adata.n_obs, 1280]
    assert sidecar["image"].startswith("memory:")
    steps = [e.step for e in events]
    assert steps == sorted(steps) and steps[-1] == events[-1].total == adata.n_obs


@pytest.mark.slow  # embeds 300 crops at 224 px once (module fixture)
def test_compartments_are_separable(embedded):
    """Spots of different tissue compartments look different to the encoder."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    adata, X, _, _ = embedded
    y = adata.obs["true_compartment"].astype(str).to_numpy()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(Xtr, ytr)
    acc = clf.score(Xte, yte)
    chance = np.unique(yte, return_counts=True)[1].max() / len(yte)
    assert chance < 0.4
    assert acc > 0.7, f"accuracy {acc:.3f} (majority class {chance:.3f})"


@pytest.mark.slow  # embeds 300 crops at 224 px once (module fixture)
def test_cache_hit_does_not_load_the_encoder(embedded, monkeypatch):
    adata, X, cache, _ = embedded

    def boom(*args, **kwargs):
        raise AssertionError("the encoder must not be loaded on a cache hit")

    monkeypatch.setattr(encoders, "load_encoder", boom)
    again = adata.copy()
    del again.obsm["X_vision"]
    events: list[Progress] = []
    X2 = compute_vision_embeddings(
        again, "efficientnet_lite0", batch_size=16, cache_dir=cache, progress=events.append
    )
    np.testing.assert_array_equal(X2, X)
    assert again.uns["vision_embedding"]["cache_key"] == adata.uns["vision_embedding"]["cache_key"]
    assert events[0].step == adata.n_obs and "cache" in events[0].message


def test_cache_miss_when_settings_change(sample300, lite0, tmp_path, monkeypatch):
    sub = sample300[:12].copy()
    calls = _counting_loader(monkeypatch, lite0)
    kw = dict(crop_px=20, out_size=64, batch_size=8, cache_dir=tmp_path)
    a = compute_vision_embeddings(sub, "efficientnet_lite0", **kw)
    assert len(calls) == 1 and len(list(tmp_path.glob("*.npy"))) == 1
    b = compute_vision_embeddings(sub, "efficientnet_lite0", **kw)
    assert len(calls) == 1
    np.testing.assert_array_equal(a, b)
    # another crop size, another output size, moved spots, another image: new entries
    compute_vision_embeddings(sub, "efficientnet_lite0", **{**kw, "crop_px": 24})
    compute_vision_embeddings(sub, "efficientnet_lite0", **{**kw, "out_size": 48})
    moved = sub.copy()
    moved.obsm["spatial"] = moved.obsm["spatial"] + 3.0
    compute_vision_embeddings(moved, "efficientnet_lite0", **kw)
    assert len(calls) == 4 and len(list(tmp_path.glob("*.npy"))) == 4
    # sub-pixel jitter that does not move the crops reuses the entry
    jitter = sub.copy()
    jitter.obsm["spatial"] = np.floor(jitter.obsm["spatial"] + 0.5) + 0.2
    compute_vision_embeddings(jitter, "efficientnet_lite0", **kw)
    assert len(calls) == 4
    # a changed in-memory image changes its identity
    lib = "SYN1"
    painted = sub.copy()
    before = image_identity(painted, lib)
    hires = np.array(painted.uns["spatial"][lib]["images"]["hires"])
    hires[::7, ::7] = 0
    painted.uns["spatial"][lib]["images"]["hires"] = hires
    assert image_identity(painted, lib) != before


def test_no_cache_for_random_weights_or_when_disabled(sample300, tmp_path):
    sub = sample300[:6].copy()
    X = compute_vision_embeddings(
        sub,
        "test_efficientnet",
        weights=None,
        out_size=32,
        crop_px=16,
        cache_dir=tmp_path,
        device="cpu",
    )
    assert X.shape[0] == 6 and sub.uns["vision_embedding"]["weights"] == "random"
    assert sub.uns["vision_embedding"]["cache_key"] == ""
    assert not list(tmp_path.iterdir())


def test_use_cache_false_and_default_dir(sample300, lite0, tmp_path, monkeypatch):
    monkeypatch.setenv("SCR2ST_CACHE_DIR", str(tmp_path / "env_cache"))
    assert default_cache_dir() == tmp_path / "env_cache"
    sub = sample300[:4].copy()
    compute_vision_embeddings(sub, lite0, out_size=32, use_cache=False)
    assert not (tmp_path / "env_cache").exists()
    compute_vision_embeddings(sub, lite0, out_size=32, key_added="X_alt")
    assert len(list((tmp_path / "env_cache").glob("*.npy"))) == 1
    assert "X_alt" in sub.obsm and sub.uns["vision_embedding"]["key_added"] == "X_alt"


def test_collection_of_sections_matches_per_section(lite0, tmp_path):
    from napari_scr2st.data.synthetic import make_sample

    a = make_sample(n_spots=20, seed=1, section="A").section
    b = make_sample(n_spots=20, seed=2, section="B").section
    kw = dict(out_size=48, batch_size=16, use_cache=False)
    xa = compute_vision_embeddings(a, lite0, **kw)
    xb = compute_vision_embeddings(b, lite0, **kw)
    joint = concat_sections({"A": a, "B": b})
    xj = compute_vision_embeddings(joint, lite0, **{**kw, "use_cache": True, "cache_dir": tmp_path})
    sec = joint.obs["section"].astype(str).to_numpy()
    np.testing.assert_allclose(xj[sec == "A"], xa, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(xj[sec == "B"], xb, rtol=1e-4, atol=1e-4)
    assert set(joint.uns["vision_embedding"]["cache_key"]) == {"A", "B"}
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_generator_can_be_driven_and_stopped(sample300, lite0, tmp_path):
    sub = sample300[:10].copy()
    gen = iter_vision_embeddings(sub, lite0, out_size=32, batch_size=4, cache_dir=tmp_path)
    first = next(gen)
    assert isinstance(first, Progress) and first.total == 10
    gen.close()  # cancelled: nothing stored
    assert "X_vision" not in sub.obsm and not list(tmp_path.glob("*.npy"))
    X = drive(
        iter_vision_embeddings(sub, lite0, out_size=32, batch_size=4, cache_dir=tmp_path),
        use_tqdm=False,
    )
    assert X.shape == (10, 1280) and "X_vision" in sub.obsm
