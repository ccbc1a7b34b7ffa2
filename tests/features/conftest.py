"""Fixtures for the histology-feature tests: one EfficientNet-Lite0 encoder per session, an
isolated embedding cache, and the small synthetic sample."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never write to the user's ~/.cache during tests."""
    monkeypatch.setenv("SCR2ST_CACHE_DIR", str(tmp_path_factory.mktemp("default_cache")))


@pytest.fixture(scope="session")
def lite0():
    """The default encoder (packaged ImageNet EfficientNet-Lite0 weights) on CPU."""
    pytest.importorskip("timm")
    from napari_scr2st.features.encoders import load_encoder

    return load_encoder("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="session")
def sample300():
    """The synthetic section with about 300 spots (seed 0)."""
    from napari_scr2st.data.synthetic import make_sample

    return make_sample(n_spots=300, seed=0).section
