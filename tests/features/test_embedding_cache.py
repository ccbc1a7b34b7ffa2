"""The embedding cache refuses entries that no encoder could have written and recomputes them."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scr2st.features.cache import load_cached, save_cached


def _entry(tmp_path, arr):
    save_cached(tmp_path, "k" * 32, arr, {"model": "m"})
    return tmp_path / f"{'k' * 32}.npy"


def test_good_entry_is_returned(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    _entry(tmp_path, arr)
    np.testing.assert_array_equal(load_cached(tmp_path, "k" * 32, 4), arr)
    assert load_cached(tmp_path, "k" * 32, 5) is None  # wrong shape: missing, silently


@pytest.mark.parametrize(
    ("fill", "what", "n_bad"),
    [("zeros", "all-zero vectors", 4), ("one_row", "all-zero vectors", 1), ("inf", "non-finite values", 1)],
)
def test_zeroed_or_non_finite_entry_is_refused_with_a_warning(tmp_path, fill, what, n_bad):
    arr = np.ones((4, 3), np.float32)
    if fill == "zeros":
        arr[:] = 0
    elif fill == "one_row":
        arr[2] = 0
    else:
        arr[1, 1] = np.inf
    npy = _entry(tmp_path, arr)
    with pytest.warns(UserWarning, match=rf"{npy.name}.*{what} \({n_bad} of 4 spots\).*recomputing"):
        assert load_cached(tmp_path, "k" * 32, 4) is None


class _MeanColour:
    """A stand-in encoder: the mean colour of each crop, plus one (never a zero vector)."""

    num_features = 3

    def embed(self, crops):
        return np.asarray(crops, np.float32).reshape(len(crops), -1, 3).mean(axis=1) + 1.0


def test_zeroed_cache_is_recomputed(sample300, tmp_path, monkeypatch):
    """A zeroed entry of the right shape is not used: the encoder runs again, the entry is rewritten."""
    from napari_scr2st.features import compute_vision_embeddings, encoders

    sub = sample300[:6].copy()
    kw = dict(crop_px=16, out_size=16, batch_size=8, cache_dir=tmp_path)
    monkeypatch.setattr(encoders, "weights_identity", lambda *a, **k: "mean-colour-v1")
    calls = []
    monkeypatch.setattr(encoders, "load_encoder", lambda name, **k: calls.append(name) or _MeanColour())
    first = compute_vision_embeddings(sub, "mean_colour", **kw)
    (npy,) = tmp_path.glob("*.npy")
    assert len(calls) == 1 and np.array_equal(np.load(npy), first)
    np.save(npy, np.zeros_like(first))
    with pytest.warns(UserWarning, match="all-zero vectors"):
        again = compute_vision_embeddings(sub.copy(), "mean_colour", **kw)
    assert len(calls) == 2
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(np.load(npy), first)  # the entry is rewritten
