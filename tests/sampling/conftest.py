"""Fixtures for the sampling tests: a small synthetic section with a stand-in vision embedding.

The vision embedding is computed here from the synthetic H&E image (patch colour/texture
statistics), not from expression, so the tests do not depend on the features package.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def small():
    """(section AnnData with obsm['X_vision'], reference space) - ~300 spots; do not mutate."""
    from napari_scr2st.data import make_sample
    from napari_scr2st.features.patch_stats import patch_statistics_embedding
    from napari_scr2st.reference import ReferenceSpace, prepare_reference

    s = make_sample(300, seed=0)
    a = s.section
    a.obsm["X_vision"] = patch_statistics_embedding(a)
    space = ReferenceSpace.fit(prepare_reference(s.reference, a.var_names), seed=0)
    return a, space


@pytest.fixture
def section(small):
    """A fresh copy of the small section (safe to modify)."""
    return small[0].copy()


@pytest.fixture(scope="session")
def space(small):
    return small[1]


@pytest.fixture(scope="session")
def two_sections(small):
    """The small section split into two sections 'L' and 'R' at the median x (shared spot-id
    namespaces are kept distinct by section)."""
    import pandas as pd

    a = small[0].copy()
    x = a.obsm["spatial"][:, 0]
    sec = np.where(x < np.median(x), "L", "R")
    a.obs["section"] = pd.Categorical(sec)
    return a
