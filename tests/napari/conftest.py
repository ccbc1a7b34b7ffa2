"""Fixtures for the dock tests: a small synthetic section in a real (Xvfb) viewer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

N_SPOTS = 400


@pytest.fixture(scope="session")
def small_sample():
    from napari_scr2st.data import make_sample

    return make_sample(n_spots=N_SPOTS, seed=0)


_SPACE = {}


def _space_for(sample):
    """The reference space of the sample, fitted once per test session (k-means is the slow part)."""
    key = id(sample)
    if key not in _SPACE:
        from napari_scr2st.session import fit_reference_space

        _SPACE[key] = fit_reference_space(sample.reference, list(map(str, sample.section.var_names)))
    return _SPACE[key]


@pytest.fixture
def sync_workers(monkeypatch):
    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "1")


@pytest.fixture(autouse=True)
def _no_glyph_warming(monkeypatch):
    """The docks warm the canvas's glyphs in idle turns (a user's idle time); tests have none
    to fill, so only the tests of that warming turn it on."""
    from napari_scr2st._napari import _vispy_speedups

    monkeypatch.setattr(_vispy_speedups, "WARM_ON_ATTACH", False)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCR2ST_CACHE_DIR", str(tmp_path / "cache"))


def add_section(viewer, sample):
    """Image + spots of a fresh copy of the sample, with its reference (as the sample menu does)."""
    from napari_scr2st.layers import section_layers

    adata = sample.section.copy()
    layers = section_layers(adata)
    layers[-1][1]["metadata"]["reference"] = sample.reference
    out = []
    for data, kw, kind in layers:
        out.append(getattr(viewer, f"add_{kind}")(data, **kw))
    return out[-1]


def prepared_sampling(viewer, sample, *, budget=30, rounds=2, sampler="scrl"):
    """A sampling dock on a prepared section (patch-statistics embedding: instant)."""
    from napari_scr2st._napari._sampling_widget import SamplingWidget

    spots = add_section(viewer, sample)
    w = SamplingWidget(viewer)
    viewer.window.add_dock_widget(w, name="Spot sampling")
    w.encoder_combo.setCurrentText("patch-stats")
    w.budget_unit.setCurrentText("%")
    w.budget_spin.setValue(budget)
    w.rounds_spin.setValue(rounds)
    w.sampler_combo.setCurrentIndex(w.sampler_combo.findData(sampler))
    w.session.space = _space_for(sample)
    w.prepare()
    assert w.session is not None and w.session.is_prepared, w.status.text()
    return w, spots


def left_half_roi(adata) -> tuple[np.ndarray, np.ndarray]:
    """A rectangle (napari ``(y, x)`` corners) over the left half of the section's spots, 5 px
    beyond them, and the mask of the spots inside it."""
    from napari_scr2st.layers import spot_yx

    yx = spot_yx(adata)
    lo, hi = yx.min(0), yx.max(0)
    mid = (lo + hi) / 2
    rect = np.array([[lo[0] - 5, lo[1] - 5], [lo[0] - 5, mid[1]], [hi[0] + 5, mid[1]], [hi[0] + 5, lo[1] - 5]])
    return rect, yx[:, 1] < mid[1]


def not_blank(shot: np.ndarray) -> bool:
    rgb = shot[..., :3].astype(float)
    return rgb.std() > 10


@pytest.fixture
def helpers():
    """The helper functions above, for tests (test modules cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(add_section=add_section, prepared_sampling=prepared_sampling, not_blank=not_blank,
                           left_half_roi=left_half_roi,
                           space_for=_space_for)
